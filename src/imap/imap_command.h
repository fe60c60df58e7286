/* The questions the client asks, each as one blocking exchange on a
 * connected imap_conn: MYRIGHTS, LIST (an account's mailboxes as nodes),
 * STATUS and UID FETCH. Builds the commands from (account, node) through
 * the connection's namespaces (imap_name.h) and parses the answers into
 * the command's result fields. Runs on the worker thread that holds the
 * connection; the pool (imap_pool.c) queues commands and hands the
 * results to the callers.
 *
 * Also the libetpan helpers the IMAP client source shares (it runs its
 * own FETCH and LIST on a dedicated session). */
#ifndef MAILPUBSUB_IMAP_COMMAND_H
#define MAILPUBSUB_IMAP_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libetpan/clist.h>

#include "imap/imap_conn.h"
#include "imap/imap_types.h"

enum imap_command_kind {
	IMAP_COMMAND_MYRIGHTS,
	IMAP_COMMAND_LIST,
	IMAP_COMMAND_STATUS,
	IMAP_COMMAND_FETCH,
};

struct imap_command {
	enum imap_command_kind kind;
	/* the question; owned by the command */
	char *account, *node;      /* node "" for LIST */
	uint32_t uid, uidvalidity; /* FETCH: uidvalidity 0 is not checked */
	enum imap_fetch_part part;
	/* the answer, written by the worker; owned by the command */
	enum imap_result result;
	char *rights;              /* MYRIGHTS */
	char **nodes;              /* LIST: sorted, distinct */
	size_t n_nodes;
	struct imap_status st;     /* STATUS */
	char *body;                /* FETCH */
	size_t body_len;
	char *flags;
	char internaldate[40];
	char error[320];           /* why not IMAP_OK */
};

enum imap_run {
	IMAP_RUN_DONE,             /* answered (result says how) */
	IMAP_RUN_BROKEN,           /* the connection is gone: drop it */
};

/* Asks cmd's question on c, setting cmd's result and answer. */
enum imap_run imap_command_run(struct imap_conn *c, struct imap_command *cmd);
/* Frees and clears the answer (not the question), for a retry or free. */
void imap_command_reset(struct imap_command *cmd);

/* Appends a flag's name to the space separated *flags (NULL: empty). */
void imap_flag_append(char **flags, const struct mailimap_flag *f);
/* False for \Noselect and \NonExistent LIST entries. */
bool imap_mailbox_selectable(const struct mailimap_mailbox_list *mb);

struct imap_namespaces;
/* Called with each node; the node is handed over (cb frees or keeps it).
 * Non-zero stops. */
typedef int imap_list_node_cb(void *context, char *node);
/* The selectable mailboxes of a LIST result (of struct mailimap_mailbox_list)
 * that are mailboxes of account, as nodes (imap_name_to_node); a name that
 * does not map is logged and passed over. Returns what cb returned to stop,
 * or 0. */
int imap_list_each_node(clist *list, const struct imap_namespaces *ns,
			const char *self, const char *account,
			imap_list_node_cb *cb, void *context);

#endif
