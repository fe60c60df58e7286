/* The published item: <mailbox-event xmlns='urn:mailpubsub:event:0'/>
 * (pubsub-schemas/mailbox-event.rng), and the notification <message/>
 * around it, serialized once per event with the addressee spliced in. */
#ifndef MAILPUBSUB_ITEM_H
#define MAILPUBSUB_ITEM_H

#include <stdbool.h>
#include <stddef.h>
#include <strophe.h>

#include "model/event.h"
#include "store/node_tree.h"

#define ITEM_NS "urn:mailpubsub:event:0"
#define PUBSUB_EVENT_NS "http://jabber.org/protocol/pubsub#event"

/* [component] max_stanza_size's default: below Prosody's 256 KiB c2s
 * limit (its component limit is 512 KiB), so a notification is never
 * refused on its way to a client either. */
#define ITEM_DEFAULT_MAX_STANZA (240 * 1024)
/* What a notification or an items reply adds around one payload (from,
 * to, node, ids, delay), generously: a payload within the bound minus
 * this can always be sent, alone in a reply or as a notification. */
#define ITEM_WRAPPER_RESERVE (16 * 1024)

/* The bound on every stanza we send ([component] max_stanza_size), set
 * once at start. */
void item_set_max_stanza(size_t bytes);
size_t item_max_stanza(void);
/* The most a payload may take: item_payload_build leaves long values out
 * (<omitted name= size=/>) beyond it. */
size_t item_max_payload(void);

/* Serializes the payload for event number seq (at most
 * item_max_payload() bytes: long values are left out and named in
 * <omitted/> elements until it fits) (seq 0: not journaled, no
 * seq attribute: a heartbeat). counts, when given, supplies the mailbox's
 * messages/unseen where the event itself has none, so that every item
 * about a mailbox carries them. Returns a malloc()ed string, or NULL. */
char *item_payload_build(xmpp_ctx_t *ctx, const struct event *event,
			 long long seq, long long received_us,
			 const struct node_counts *counts);

/* A notification <message/> serialized up to and after its `to` value. */
struct item_message {
	char *head;   /* "<message ... to='" */
	char *tail;   /* "'>...</message>" */
	char *notice_tail; /* the same without the payload, for when the
			    * whole would pass item_max_stanza() */
};

/* kind: the <items/> notification for payload (with a delay stamp when
 * delay_us > 0, for the last item sent on subscribe). */
int item_message_build(const char *from, const char *node, long long seq,
		       const char *payload, long long delay_us,
		       struct item_message *out);
/* The XEP-0060 node-deleted notification. */
int item_message_build_delete(const char *from, const char *node,
			      struct item_message *out);
void item_message_clear(struct item_message *msg);
/* head + XML-escaped to + tail, malloc()ed; *len_r set. Over
 * item_max_stanza(), the notice instead: the item without its payload
 * (XEP-0060: retrieve it by id) and <payload-omitted size= max=/>; NULL
 * when even that would not fit. */
char *item_message_for(const struct item_message *msg, const char *to,
		       size_t *len_r);
/* Is this notification (of len bytes) the notice? For counting. */
bool item_message_is_notice(const char *text, size_t len);

#endif
