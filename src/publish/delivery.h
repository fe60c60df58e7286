/* Sends notifications to subscribers, each after the check it needs, in
 * the order they were queued per subscriber.
 *
 * A subscription to a node was authorized when it was made and is
 * re-checked when the node's ACL changes: its notifications go out at
 * once. A subscription to an ancestor (depth 1 or all) covers mailboxes it
 * was never checked against, so each notification from another mailbox
 * waits for the subscriber's rights on that mailbox (usually cached). Until
 * that answer is in, later notifications to the same subscriber queue
 * behind it, so nobody sees events out of order. */
#ifndef MAILPUBSUB_DELIVERY_H
#define MAILPUBSUB_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>

struct publish_service;
struct delivery;

int delivery_new(struct publish_service *service, struct delivery **delivery_r,
		 const char **error_r);
/* Pending checks still answer; their notifications are dropped. */
void delivery_free(struct delivery **delivery);

enum delivery_check {
	DELIVERY_NOW,      /* authorized already */
	DELIVERY_CHECK,    /* only if jid may read (account, node) */
	DELIVERY_CACHED,   /* same, decided from cached answers alone (the
			    * mailbox is gone); unknown means no */
	DELIVERY_VERIFY,   /* authorized when subscribed, asked again: a
			    * denial drops it, a temporary failure does not
			    * (the store being away must not lose events) */
};

/* Queues text (a complete stanza, copied) for jid, after the check. */
void delivery_send(struct delivery *delivery, const char *jid, const char *text,
		   size_t len, enum delivery_check check, const char *account,
		   const char *node);

/* Is anything for jid still queued behind a pending decision? */
bool delivery_waiting(const struct delivery *delivery, const char *jid);

/* Notifications waiting for a decision (the stanza fuzz target checks
 * none is left behind). */
size_t delivery_pending(const struct delivery *delivery);

#endif
