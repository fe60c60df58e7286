/* Read-only questions on a store file, for mailpubsubctl(8) while the
 * daemon runs: the e-Discovery changelog by message, user or mailbox, its
 * chain verification, and what the store holds (accounts, nodes,
 * subscriptions). Opened read-only: nothing here writes, migrates or
 * creates. */
#ifndef MAILPUBSUB_INSPECT_H
#define MAILPUBSUB_INSPECT_H

#include <stdbool.h>
#include <stddef.h>

#include "store/changelog.h"

struct inspect;

/* On failure, errbuf (caller-owned) says why. */
int inspect_open(const char *path, struct inspect **inspect_r, char *errbuf,
		 size_t errsize);
void inspect_close(struct inspect **inspect);

/* The reason of the last failed query; valid until the next call. */
const char *inspect_error(struct inspect *inspect);

/* Changelog records (canonical JSON), in chain order. cb returns non-zero
 * to stop. Each query returns 0, or -1 (inspect_error says why). */
typedef int inspect_record_cb(void *context, const char *record);
int inspect_changelog_by_message_id(struct inspect *inspect, const char *message_id,
				    inspect_record_cb *cb, void *context);
/* Event records of user (as the actor or the login) in [from_us, to_us). */
int inspect_changelog_by_user(struct inspect *inspect, const char *user,
			      long long from_us, long long to_us,
			      inspect_record_cb *cb, void *context);
/* Event records about a mailbox of account (node NULL: any), also as the
 * old name of a rename. */
int inspect_changelog_by_mailbox(struct inspect *inspect, const char *account,
				 const char *node, inspect_record_cb *cb, void *context);
int inspect_changelog_verify(struct inspect *inspect, const unsigned char *key,
			     size_t key_len, struct changelog_verify_result *result,
			     const char **error_r);

/* One cell of a table row: NULL, an integer, or text. */
struct inspect_cell {
	bool null;
	bool integer;
	long long number;
	const char *text;          /* every non-NULL cell, integers too */
};

/* Called once with cells NULL before the rows (so that an empty table
 * still has its header), then once per row; names are the column names.
 * Return non-zero to stop. */
typedef int inspect_row_cb(void *context, unsigned ncols, const char *const *names,
			   const struct inspect_cell *cells);
/* Each account with its node and subscription counts. */
int inspect_accounts(struct inspect *inspect, inspect_row_cb *cb, void *context);
/* The nodes of account ("" for shared folders) with their counts. */
int inspect_nodes(struct inspect *inspect, const char *account, inspect_row_cb *cb,
		  void *context);
/* Subscriptions of jid (a bare JID also finds its full JIDs'), or on
 * account [and node]; NULL: any. */
int inspect_subscriptions(struct inspect *inspect, const char *jid, const char *account,
			  const char *node, inspect_row_cb *cb, void *context);

#endif
