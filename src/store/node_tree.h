/* The mailbox tree of every account, learned from events (and IMAP LIST
 * later) and kept in the store. Renames and deletes carry the node's
 * subscriptions and items with it. */
#ifndef MAILPUBSUB_NODE_TREE_H
#define MAILPUBSUB_NODE_TREE_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* How many nodes account has (-1 on error). */
long long node_tree_count(struct store *store, const char *account);

/* Records node and its ancestors. mailbox_id/uidvalidity update the node
 * itself when given (NULL/0 keep what is known). */
int node_tree_touch(struct store *store, const char *account, const char *node,
		    const char *mailbox_id, uint32_t uidvalidity, long long now_us);
bool node_tree_exists(struct store *store, const char *account, const char *node);
/* The node (newly allocated) a mailbox of account is known under now if
 * not node_then, or NULL: by the store's unique mailbox id, else (id NULL)
 * by its UIDVALIDITY when no other mailbox of the account has the same
 * (Cyrus gives mailboxes created in the same second the same one). Both
 * survive RENAME: an event may name a mailbox that has moved since. */
char *node_tree_find_moved(struct store *store, const char *account,
			   const char *node_then, const char *mailbox_id,
			   uint32_t uidvalidity);
/* Removes node with its subscriptions and items; the account's INBOX takes
 * the whole account with it (that is how Cyrus reports a deleted user).
 * Descendants of other nodes stay: IMAP DELETE does not remove inferiors. */
int node_tree_delete(struct store *store, const char *account, const char *node);
/* Moves node and all its descendants, with their subscriptions and items. */
int node_tree_rename(struct store *store, const char *old_account,
		     const char *old_node, const char *new_account,
		     const char *new_node);

/* A mailbox's last known counts. */
struct node_counts {
	long long messages, unseen, uidnext, modseq;   /* -1: unknown */
};

/* Records what is known (fields < 0 keep the stored value). */
int node_tree_set_counts(struct store *store, const char *account,
			 const char *node, const struct node_counts *counts);
/* Returns 1 and fills *counts_r when messages is known, 0 if not. */
int node_tree_get_counts(struct store *store, const char *account,
			 const char *node, struct node_counts *counts_r);

/* Distinct accounts with any node. */
typedef int node_tree_account_cb(void *context, const char *account);
int node_tree_accounts(struct store *store, node_tree_account_cb *cb, void *context);

/* Return non-zero to stop. */
/* The first account with nodes after `after` in byte order (NULL: the
 * first of all), newly allocated; NULL when there is none. One index seek:
 * a walk over every account that needs no list of them in memory. */
char *node_tree_next_account(struct store *store, const char *after);
typedef int node_tree_cb(void *context, const char *node);
/* Direct children of parent (NULL: the account's top-level nodes). */
int node_tree_children(struct store *store, const char *account,
		       const char *parent, node_tree_cb *cb, void *context);
/* Every node of account. */
int node_tree_all(struct store *store, const char *account, node_tree_cb *cb,
		  void *context);
/* node and every descendant of it. */
int node_tree_subtree(struct store *store, const char *account,
		      const char *node, node_tree_cb *cb, void *context);

#endif
