/* The IMAP client source's sync state (tables imap_source_*, store.c
 * migration 2): which accounts have a baseline, and per watched mailbox
 * what the source last saw of it (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, and
 * every UID with its flags), so a restart resynchronises from there
 * (CHANGEDSINCE / VANISHED) instead of replaying or missing anything.
 *
 * The writes belong in the transaction that journals the events they go
 * with (the caller's store_begin/store_commit). Loop thread only. Every
 * function returns 0 or -1 (logged by the store). */
#ifndef MAILPUBSUB_IMAP_SOURCE_STATE_H
#define MAILPUBSUB_IMAP_SOURCE_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* Whether account's first LIST and syncs were taken as the baseline. */
int imap_source_state_account_known(struct store *store, const char *account,
				    bool *known_r);
/* Records account as known (its baseline taken), listed at listed_us. */
int imap_source_state_account_listed(struct store *store, const char *account,
				     long long listed_us);

/* Creates or updates a mailbox's header; its messages stay. */
int imap_source_state_mailbox_put(struct store *store, const char *account,
				  const char *node, uint32_t uidvalidity,
				  uint32_t uidnext, uint64_t modseq);
/* Forgets a mailbox with its messages. */
int imap_source_state_mailbox_delete(struct store *store, const char *account,
				     const char *node);
/* The mailbox and its messages are known as new_node from now on. */
int imap_source_state_mailbox_rename(struct store *store, const char *account,
				     const char *node, const char *new_node);

/* Every message row of a mailbox goes (before a new baseline). */
int imap_source_state_messages_forget(struct store *store, const char *account,
				      const char *node);
/* A message's flags (normalized, space separated), new or changed. */
int imap_source_state_message_put(struct store *store, const char *account,
				  const char *node, uint32_t uid, const char *flags);
/* An expunged message. */
int imap_source_state_message_forget(struct store *store, const char *account,
				     const char *node, uint32_t uid);

/* Calls each for every mailbox of account, by node name; each returning
 * -1 stops the walk, which then returns -1. node and the values are valid
 * during the call only. */
typedef int imap_source_state_mailbox_cb(void *context, const char *node,
					 uint32_t uidvalidity, uint32_t uidnext,
					 uint64_t modseq);
int imap_source_state_mailboxes(struct store *store, const char *account,
				imap_source_state_mailbox_cb *each, void *context);

/* Calls each for every message of (account, node), by UID; flags valid
 * during the call only. Stops as imap_source_state_mailboxes does. */
typedef int imap_source_state_message_cb(void *context, uint32_t uid,
					 const char *flags);
int imap_source_state_messages(struct store *store, const char *account,
			       const char *node, imap_source_state_message_cb *each,
			       void *context);

#endif
