/* The published item: <mailbox-event xmlns='urn:mailpubsub:event:0'/>
 * (pubsub-schemas/mailbox-event.rng), and the notification <message/>
 * around it, serialized once per event with the addressee spliced in. */
#ifndef MAILPUBSUB_ITEM_H
#define MAILPUBSUB_ITEM_H

#include <strophe.h>

#include "event.h"
#include "node_tree.h"

#define ITEM_NS "urn:mailpubsub:event:0"
#define PUBSUB_EVENT_NS "http://jabber.org/protocol/pubsub#event"

/* Serializes the payload for event number seq (seq 0: not journaled, no
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
/* head + XML-escaped to + tail, malloc()ed; *len_r set. */
char *item_message_for(const struct item_message *msg, const char *to,
		       size_t *len_r);

/* XML-escapes text for an attribute value or text node. malloc()ed. */
char *item_xml_escape(const char *text);

/* ISO 8601 UTC with milliseconds, e.g. for urn:xmpp:delay. */
void item_format_time(long long us, char *buf, size_t size);

#endif
