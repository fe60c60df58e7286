/* The journal sink: the one way an event enters mailpubsubd. Every producer
 * (the Cyrus, JSON and IMAP sources, counts' STATUS items, discovery's
 * deletions, the bus consumer) submits here; the sink decodes (once),
 * appends to the journal, logs and counts, and after each commit hands the
 * decoded events to its listeners (publisher, firehose, bus producer), in
 * journal order, on the loop thread.
 *
 * Final interface (as in DESIGN.md, with one addition: the two failure
 * kinds of sink_submit have distinct values, SINK_REFUSED and
 * SINK_STORE_ERROR, both < 0, so a caller testing "< 0" is unaffected):
 *
 *   struct sink_input    { source, json, json_len, event, received_us, origin_id }
 *   struct sink_event    { seq, received_us, source, json, json_len, event }
 *   struct sink_listener { committed(context, events, count), context }
 *   sink_new / sink_free / sink_set_hierarchy_separator
 *   sink_listener_register / sink_listener_unregister
 *   sink_begin / sink_submit / sink_commit / sink_rollback
 *   sink_set_waiting / sink_waiting
 *   sink_journal (the journal the sink appends to: its hooks)
 *
 * A listener that is behind (its component or broker down, a restart
 * backlog) reads the journal from its own watermark (journal_read_after)
 * and decodes there: the sink keeps nothing once listeners were told. */
#ifndef MAILPUBSUB_SINK_H
#define MAILPUBSUB_SINK_H

#include <stddef.h>

#include "base/stats.h"
#include "model/event.h"
#include "store/journal.h"
#include "store/store.h"

struct sink;

struct sink_input {
	/* "cyrus", "json", "imap", "mailpubsub", "imap-list", "bus": the
	 * journal's source column; borrowed for the call */
	const char *source;
	/* the event as received, journaled as is; borrowed for the call */
	const char *json;
	size_t json_len;
	/* already decoded by the caller, or NULL: the sink decodes json.
	 * Borrowed: must stay valid until sink_commit() has returned (the
	 * listeners get it) */
	const struct event *event;
	long long received_us;
	/* NULL, or an id unique across the origin (the bus: the AMQP
	 * message-id "<instance>:<seq>"); one already journaled is not
	 * appended again (exactly-once for the bus consumer) */
	const char *origin_id;
};

/* One journaled event; valid only during the listener's callback. */
struct sink_event {
	long long seq;
	long long received_us;
	const char *source;
	const char *json;
	size_t json_len;
	const struct event *event;    /* decoded once, by the sink (or its caller) */
};

struct sink_listener {
	/* After each commit, in journal order, on the loop thread. The
	 * listener may submit to the sink itself (a new batch). */
	void (*committed)(void *context, const struct sink_event *events, size_t count);
	void *context;
};

/* Calls cb for up to limit of events, in order, as journal records that
 * carry their decoded event: what journal_read_after() does over the
 * journal, for a listener that steps through either the same way.
 * *count_r is the number of records visited. */
void sink_events_read(const struct sink_event *events, size_t count, unsigned limit,
		      journal_record_cb *cb, void *context, unsigned *count_r);

/* sink_submit()'s results. */
#define SINK_APPENDED 0
#define SINK_DUPLICATE 1        /* origin_id already journaled: *seq_r is its seq */
#define SINK_REFUSED (-1)       /* malformed: counted here; *error_r says why (the
				 * caller logs it with what it knows: peer,
				 * datagram number); nothing else in the batch
				 * is lost */
#define SINK_STORE_ERROR (-2)   /* the journal write failed: *error_r; retry later */

/* store and stats are borrowed and must outlive the sink. */
int sink_new(struct store *store, struct stats_counters *stats,
	     struct sink **sink_r, const char **error_r);
/* Clears *sink. Listeners are not told of a batch still open. */
void sink_free(struct sink **sink);
/* [cyrus] hierarchy_separator, for the events the sink decodes ('.'
 * until set). */
void sink_set_hierarchy_separator(struct sink *sink, char sep);

/* The journal the sink appends to: for journal_hook_register(). */
struct journal *sink_journal(struct sink *sink);

/* listener is copied; unregister with an equal one (same callback and
 * context). Returns -1 when the table is full. */
int sink_listener_register(struct sink *sink, const struct sink_listener *listener);
void sink_listener_unregister(struct sink *sink, const struct sink_listener *listener);

/* Group commit: one transaction for a batch of submits. Nests (only the
 * outermost sink_commit commits and notifies). A sink_submit() outside
 * any batch is a batch of its own: a caller with a store transaction of
 * its own open brackets it with sink_begin/sink_commit instead of
 * store_begin/store_commit, so listeners hear only of what was committed. */
int sink_begin(struct sink *sink);
/* SINK_APPENDED (*seq_r set), SINK_DUPLICATE (*seq_r = the seq it has),
 * SINK_REFUSED or SINK_STORE_ERROR (*error_r: static text or valid until
 * the next call). seq_r may be NULL. */
int sink_submit(struct sink *sink, const struct sink_input *in, long long *seq_r,
		const char **error_r);
/* Commits the batch, then notifies the listeners of what it appended. On
 * a failed commit the batch is gone (logged) and nobody is notified. */
int sink_commit(struct sink *sink, const char **error_r);
/* Abandons the whole batch (store_rollback: the store's transaction too,
 * with whatever else the caller wrote in it); nobody is notified. */
void sink_rollback(struct sink *sink);

/* Back-pressure as data: a source reports the bytes it holds received and
 * not yet submitted (source: a static name; bytes 0 clears it). Loop
 * thread only; the publisher yields while the total is large. */
void sink_set_waiting(struct sink *sink, const char *source, size_t bytes);
size_t sink_waiting(const struct sink *sink);

#endif
