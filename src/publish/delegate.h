/* Delegated fan-out ([delegate] service): the Jabber server's own pubsub
 * service sends the notifications.
 *
 * One stanza per subscriber from a component costs Prosody more CPU than
 * fanning one publish out itself. So a node's plain subscriptions (on the
 * node itself, default options) are mirrored onto a node of the server's
 * pubsub service, named "<account>/<mailbox>", and each event goes there
 * as one publish.
 *
 * The ACL guarantee still holds, because mailpubsubd alone decides who is
 * on that node:
 * - the node is created whitelist-only, with no stored items and silent
 *   deletion;
 * - only subscribers whose rights are cached as granted are put on it,
 *   as members, by mailpubsubd (an admin of the service);
 * - whenever the set shrinks (unsubscribed, rights lost or due a
 *   re-check), and on the first event after every (re)connection, the
 *   node is deleted and rebuilt with the current set before the publish.
 *   The server handles our stream in order, so nobody left out gets the
 *   publish.
 * Everyone else keeps getting notifications directly, as before. */
#ifndef MAILPUBSUB_DELEGATE_H
#define MAILPUBSUB_DELEGATE_H

#include <stdbool.h>

#include <strophe.h>

struct publish_service;
struct subscription;
struct delegate;

/* NULL in *delegate_r when [delegate] service is empty. */
int delegate_new(struct publish_service *service, struct delegate **delegate_r,
		 const char **error_r);
void delegate_free(struct delegate **delegate);

/* The component connected (probes the service) or lost its connection
 * (whatever the server holds is unknown from now on). */
void delegate_connected(struct delegate *delegate, bool connected);

/* Could sub's notifications on node go through the server? (A plain
 * subscription on node itself, rights cached as granted, nothing of its
 * own waiting in the delivery queue.) */
bool delegate_eligible(struct delegate *delegate, const struct subscription *sub,
		       const char *account, const char *node);

/* One event's publish: begin, add each eligible subscriber, publish. The
 * server node is brought in line with the subscribers added before the
 * item goes out. */
void delegate_begin(struct delegate *delegate, const char *account,
		    const char *node);
void delegate_add(struct delegate *delegate, const char *jid);
void delegate_publish(struct delegate *delegate, long long seq,
		      const char *payload);

/* The mailbox is gone or was renamed: its server node goes too. */
void delegate_drop(struct delegate *delegate, const char *account,
		   const char *node);

/* A reply to one of our requests? Then handled (true). */
bool delegate_handle_reply(struct delegate *delegate, xmpp_stanza_t *iq);

#endif
