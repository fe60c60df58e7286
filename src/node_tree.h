/* The mailbox tree of every account, learned from events (and IMAP LIST
 * later) and kept in the store. Renames and deletes carry the node's
 * subscriptions and items with it. */
#ifndef MAILPUBSUB_NODE_TREE_H
#define MAILPUBSUB_NODE_TREE_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

/* Records node and its ancestors. mailbox_id/uidvalidity update the node
 * itself when given (NULL/0 keep what is known). */
int node_tree_touch(struct store *store, const char *account, const char *node,
		    const char *mailbox_id, uint32_t uidvalidity, long long now_us);
bool node_tree_exists(struct store *store, const char *account, const char *node);
/* Removes node with its subscriptions and items; the account's INBOX takes
 * the whole account with it (that is how Cyrus reports a deleted user).
 * Descendants of other nodes stay: IMAP DELETE does not remove inferiors. */
int node_tree_delete(struct store *store, const char *account, const char *node);
/* Moves node and all its descendants, with their subscriptions and items. */
int node_tree_rename(struct store *store, const char *old_account,
		     const char *old_node, const char *new_account,
		     const char *new_node);

/* Return non-zero to stop. */
typedef int node_tree_cb(void *context, const char *node);
/* Direct children of parent (NULL: the account's top-level nodes). */
int node_tree_children(struct store *store, const char *account,
		       const char *parent, node_tree_cb *cb, void *context);
/* node and every descendant of it. */
int node_tree_subtree(struct store *store, const char *account,
		      const char *node, node_tree_cb *cb, void *context);

#endif
