/* The durable event journal: every accepted event gets a sequence number
 * here before anything is published. The publish watermark records how far
 * the publisher got, so a restart publishes exactly what was left. */
#ifndef MAILPUBSUB_JOURNAL_H
#define MAILPUBSUB_JOURNAL_H

#include <stddef.h>

#include "model/event.h"
#include "store/store.h"

struct journal_record {
	long long seq;
	long long received_us;
	const char *source;
	const char *json;
	size_t json_len;
};

/* Appends the event's JSON (as received). Call inside a transaction for
 * group commit. */
int journal_append(struct store *store, const char *source,
		   const struct event *event, const char *json, size_t json_len,
		   long long received_us, long long *seq_r);

/* Return non-zero from the callback to stop early. */
typedef int journal_record_cb(void *context, const struct journal_record *record);

/* Calls cb for up to limit records with seq > after_seq, in order.
 * *count_r is the number of records visited. */
int journal_read_after(struct store *store, long long after_seq, unsigned limit,
		       journal_record_cb *cb, void *context, unsigned *count_r);

long long journal_published_seq(struct store *store);
int journal_set_published_seq(struct store *store, long long seq);
long long journal_last_seq(struct store *store);

#endif
