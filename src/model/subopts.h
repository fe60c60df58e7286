/* Subscription options (XEP-0060 6.3, XEP-0248 depth) as an XEP-0004 form
 * of type http://jabber.org/protocol/pubsub#subscribe_options:
 *   pubsub#deliver             boolean   send notifications at all
 *   pubsub#subscription_type   items     (the only type we publish)
 *   pubsub#subscription_depth  0, 1, all the node; and its children; and
 *                                        all its descendants, also those
 *                                        created later
 *   mailpubsub#events          list-multi RFC 5423 event types to receive
 *   mailpubsub#heartbeat       boolean   periodic current-count items
 * One table drives parsing, validation and the form we return. */
#ifndef MAILPUBSUB_SUBOPTS_H
#define MAILPUBSUB_SUBOPTS_H

#include <stdbool.h>
#include <strophe.h>

#define SUBOPTS_FORM_TYPE "http://jabber.org/protocol/pubsub#subscribe_options"

/* The events a subscriber gets unless it asks otherwise: everything that
 * changes a mailbox's counts or the folder tree, what a message-waiting
 * indicator needs. */
#define SUBOPTS_DEFAULT_EVENTS \
	"MessageNew MessageAppend MessageExpunge MessageExpire MessageRead " \
	"MessageTrash FlagsSet FlagsClear vnd.cmu.MessageCopy vnd.cmu.MessageMove " \
	"MailboxCreate MailboxDelete MailboxRename vnd.mailpubsub.MailboxStatus"

struct subopts {
	bool deliver;
	int depth;           /* 0, 1, or -1 for all */
	char events[1024];   /* space separated, never empty */
	bool heartbeat;
};

void subopts_defaults(struct subopts *opts);
/* Applies a submitted form (<x xmlns='jabber:x:data' type='submit'/>) over
 * opts. Returns -1 with a reason for anything invalid: a wrong FORM_TYPE,
 * an unknown field, a value of the wrong type or out of range. */
int subopts_apply_form(xmpp_stanza_t *x, struct subopts *opts,
		       const char **error_r);
/* The form describing opts (type form), for an options request. */
xmpp_stanza_t *subopts_form(xmpp_ctx_t *ctx, const struct subopts *opts);
/* Should a subscriber with opts get an event of this type? */
bool subopts_wants(const struct subopts *opts, const char *event_type);

#endif
