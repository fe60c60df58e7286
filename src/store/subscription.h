/* XEP-0060 subscriptions: (account, node, jid) with a subscription id,
 * persisted in the store. */
#ifndef MAILPUBSUB_SUBSCRIPTION_H
#define MAILPUBSUB_SUBSCRIPTION_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"
#include "model/subopts.h"

#define SUBSCRIPTION_SUBID_LEN 32

struct subscription {
	const char *account;
	const char *node;       /* the node subscribed to */
	const char *jid;
	const char *subid;
	struct subopts opts;
};

/* Adds, or finds the existing subscription of jid to the node; the subid
 * is copied to subid_r (SUBSCRIPTION_SUBID_LEN + 1 bytes). */
int subscription_add(struct store *store, const char *account, const char *node,
		     const char *jid, const struct subopts *opts, long long now_us,
		     char *subid_r, bool *created_r);
/* Returns 1 and fills *opts_r if jid is subscribed, 0 if not, -1 on error. */
int subscription_get_options(struct store *store, const char *account,
			     const char *node, const char *jid,
			     struct subopts *opts_r);
int subscription_set_options(struct store *store, const char *account,
			     const char *node, const char *jid,
			     const struct subopts *opts);
/* Returns 1 if removed, 0 if there was none, -1 on error. subid may be NULL. */
int subscription_remove(struct store *store, const char *account,
			const char *node, const char *jid, const char *subid);
/* Returns 1 and copies the subid if jid is subscribed, 0 if not, -1 on error. */
int subscription_find(struct store *store, const char *account,
		      const char *node, const char *jid, char *subid_r);
/* True if jid or any full JID of its bare JID is subscribed. */
bool subscription_any_for_bare(struct store *store, const char *account,
			       const char *node, const char *bare_jid);
/* Subscriptions held by jid's bare JID and all its full JIDs, whichever
 * of them jid is: a limit per JID must not grow with the resources a
 * client invents. SIZE_MAX when they cannot be counted. */
size_t subscription_count_for_jid(struct store *store, const char *jid);
/* Every subscription in the store (0 on error). */
long long subscription_count(struct store *store);

/* Return non-zero to stop. */
typedef int subscription_cb(void *context, const struct subscription *sub);
/* Subscribers of one node. */
int subscription_each_on_node(struct store *store, const char *account,
			      const char *node, subscription_cb *cb, void *context);
/* Every subscription an event on node reaches: on the node itself, on its
 * parent with depth 1 or all, on further ancestors with depth all. */
int subscription_each_covering(struct store *store, const char *account,
			       const char *node, subscription_cb *cb,
			       void *context);
/* Subscriptions that asked for heartbeats. */
int subscription_each_heartbeat(struct store *store, subscription_cb *cb,
				void *context);
/* Subscriptions of a bare JID and its full JIDs on one account (node NULL:
 * all nodes), as XEP-0060 5.6 lists them. */
int subscription_each_of_jid(struct store *store, const char *account,
			     const char *node, const char *bare_jid,
			     subscription_cb *cb, void *context);

#endif
