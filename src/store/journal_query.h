/* Questions readers of the journal ask about it besides reading it in
 * order (store/journal.h): the firehose's catch-up and MAM, discovery's
 * "did anything happen meanwhile". */
#ifndef MAILPUBSUB_JOURNAL_QUERY_H
#define MAILPUBSUB_JOURNAL_QUERY_H

#include <stdbool.h>

#include "store/journal.h"
#include "store/store.h"

/* The last record before seq about one of accounts (space separated; an
 * event without an account counts for its acting user), 0 when none or on
 * error. */
long long journal_query_prev_of_accounts(struct store *store, const char *accounts,
					 long long seq);

/* Whether a record about account follows seq: any record, or with
 * renames_only only MailboxRename. true on error (the cautious answer for
 * both callers: nothing is concluded from a stale view). */
bool journal_query_changed_after(struct store *store, const char *account,
				 long long seq, bool renames_only);

/* Records with seq <= upto and received_us in [start_us, end_us]: forward,
 * in order, those after bound; backward, newest first, those before
 * bound. cb returns non-zero to stop. 0, or -1 on error. */
int journal_query_window(struct store *store, long long bound, bool backward,
			 long long upto, long long start_us, long long end_us,
			 journal_record_cb *cb, void *context);

#endif
