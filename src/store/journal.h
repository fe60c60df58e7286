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
	/* decoded already (handed on by the sink: src/ingest/sink.h), or
	 * NULL when read from the journal: the reader decodes json */
	const struct event *event;
};

/* The appending side of the journal: its append hooks and the origin ids
 * already journaled. Only the sink (src/ingest/sink.c) appends. */
struct journal;

/* Runs inside the append's transaction, after the record is written: what
 * it writes exists exactly when the event does. Non-zero fails the append
 * (and so the event). */
struct journal_hook {
	int (*appended)(void *context, struct store *store, long long seq,
			const struct event *event, long long received_us);
	void *context;
};

/* store is borrowed and must outlive the journal. */
int journal_new(struct store *store, struct journal **journal_r, const char **error_r);
void journal_free(struct journal **journal);

/* hook is copied; unregister with an equal one. -1 when the table is full. */
int journal_hook_register(struct journal *journal, const struct journal_hook *hook);
void journal_hook_unregister(struct journal *journal, const struct journal_hook *hook);

/* Appends the event's JSON (as received), then runs the hooks. Call
 * inside a transaction for group commit. origin_id: NULL, or an id to
 * remember with the record (see journal_origin_seq). */
int journal_append(struct journal *journal, const char *source,
		   const struct event *event, const char *json, size_t json_len,
		   long long received_us, const char *origin_id, long long *seq_r);

/* The seq journaled with origin_id: 1 found (*seq_r), 0 not, -1 error. */
int journal_origin_seq(struct journal *journal, const char *origin_id, long long *seq_r);

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
