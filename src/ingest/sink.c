#include "ingest/sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

/* main's two (publisher, firehose), the bus producer, tests */
#define SINK_LISTENERS_MAX 8
/* the sources that hold received bytes back (cyrus, json, bus) */
#define SINK_WAITING_MAX 8

/* An event appended in the open batch, for the listeners after commit. */
struct pending {
	long long seq;
	long long received_us;
	char *text;                  /* owned: source '\0' json '\0' */
	size_t source_len, json_len;
	struct event *owned;         /* decoded here; NULL: the caller's */
	const struct event *event;
};

struct sink {
	struct store *store;
	struct stats_counters *stats;
	struct journal *journal;
	struct sink_listener listeners[SINK_LISTENERS_MAX];
	unsigned nlisteners;
	unsigned depth;              /* sink_begin nesting */
	struct pending *pending;
	size_t npending, pending_cap;
	struct {
		const char *source;
		size_t bytes;
	} waiting[SINK_WAITING_MAX];
	char hier_sep;
	char error[160];             /* the store error sink_submit reports */
};

int sink_new(struct store *store, struct stats_counters *stats,
	     struct sink **sink_r, const char **error_r)
{
	struct sink *sink = calloc(1, sizeof(*sink));

	if (sink == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (journal_new(store, &sink->journal, error_r) < 0) {
		free(sink);
		return -1;
	}
	sink->store = store;
	sink->stats = stats;
	sink->hier_sep = '.';
	*sink_r = sink;
	return 0;
}

static void pending_clear(struct sink *sink)
{
	for (size_t i = 0; i < sink->npending; i++) {
		free(sink->pending[i].text);
		event_free(&sink->pending[i].owned);
	}
	sink->npending = 0;
}

void sink_free(struct sink **sinkp)
{
	struct sink *sink = *sinkp;

	if (sink == NULL)
		return;
	pending_clear(sink);
	free(sink->pending);
	journal_free(&sink->journal);
	free(sink);
	*sinkp = NULL;
}

struct journal *sink_journal(struct sink *sink)
{
	return sink->journal;
}

void sink_set_hierarchy_separator(struct sink *sink, char sep)
{
	sink->hier_sep = sep;
}

int sink_listener_register(struct sink *sink, const struct sink_listener *listener)
{
	if (sink->nlisteners == SINK_LISTENERS_MAX)
		return -1;
	sink->listeners[sink->nlisteners++] = *listener;
	return 0;
}

void sink_listener_unregister(struct sink *sink, const struct sink_listener *listener)
{
	for (unsigned i = 0; i < sink->nlisteners; i++) {
		if (sink->listeners[i].committed != listener->committed ||
		    sink->listeners[i].context != listener->context)
			continue;
		memmove(&sink->listeners[i], &sink->listeners[i + 1],
			(sink->nlisteners - i - 1) * sizeof(sink->listeners[0]));
		sink->nlisteners--;
		return;
	}
}

int sink_begin(struct sink *sink)
{
	if (store_begin(sink->store) < 0)
		return -1;
	sink->depth++;
	return 0;
}

/* The listeners get the batch as one array; a listener that submits from
 * its callback starts a batch of its own, so the array is taken first. */
static void notify(struct sink *sink)
{
	struct pending *batch = sink->pending;
	size_t count = sink->npending;
	struct sink_event *events;

	if (count == 0)
		return;
	sink->pending = NULL;
	sink->npending = sink->pending_cap = 0;
	events = calloc(count, sizeof(*events));
	for (size_t i = 0; events != NULL && i < count; i++) {
		events[i] = (struct sink_event){
			.seq = batch[i].seq,
			.received_us = batch[i].received_us,
			.source = batch[i].text,
			.json = batch[i].text + batch[i].source_len + 1,
			.json_len = batch[i].json_len,
			.event = batch[i].event,
		};
	}
	/* without memory for the array, listeners catch up from the journal
	 * when next told: they are all watermark readers */
	for (unsigned l = 0; events != NULL && l < sink->nlisteners; l++)
		sink->listeners[l].committed(sink->listeners[l].context, events, count);
	free(events);
	for (size_t i = 0; i < count; i++) {
		free(batch[i].text);
		event_free(&batch[i].owned);
	}
	free(batch);
}

int sink_commit(struct sink *sink, const char **error_r)
{
	if (sink->depth == 0) {
		*error_r = "sink_commit without sink_begin";
		return -1;
	}
	sink->depth--;
	if (store_commit(sink->store) < 0) {
		log_error("sink: journal commit failed: %zu events of this batch are lost",
			  sink->npending);
		if (sink->depth == 0)
			pending_clear(sink);
		*error_r = "journal commit failed";
		return -1;
	}
	if (sink->depth == 0)
		notify(sink);
	return 0;
}

void sink_rollback(struct sink *sink)
{
	store_rollback(sink->store);
	sink->depth = 0;
	pending_clear(sink);
}

static int pending_add(struct sink *sink, const struct sink_input *in, long long seq,
		       struct event **owned, const struct event *event)
{
	size_t slen = strlen(in->source);
	struct pending *p;

	if (sink->npending == sink->pending_cap) {
		size_t cap = sink->pending_cap == 0 ? 64 : sink->pending_cap * 2;
		struct pending *grown = realloc(sink->pending, cap * sizeof(*grown));

		if (grown == NULL)
			return -1;
		sink->pending = grown;
		sink->pending_cap = cap;
	}
	p = &sink->pending[sink->npending];
	p->text = malloc(slen + 1 + in->json_len + 1);
	if (p->text == NULL)
		return -1;
	memcpy(p->text, in->source, slen + 1);
	memcpy(p->text + slen + 1, in->json, in->json_len);
	p->text[slen + 1 + in->json_len] = '\0';
	p->source_len = slen;
	p->json_len = in->json_len;
	p->seq = seq;
	p->received_us = in->received_us;
	p->owned = *owned;
	p->event = event;
	*owned = NULL;
	sink->npending++;
	return 0;
}

/* The per-source counters exist for the three wire sources only. */
static struct stats_source_stats *source_stats(struct sink *sink, const char *source)
{
	for (int i = 0; i < STATS_NSOURCES; i++) {
		if (strcmp(source, stats_source_name((enum stats_source)i)) == 0)
			return &sink->stats->sources[i];
	}
	return NULL;
}

/* The words each source's lines always had (tests and operators grep for
 * "ingest: #<seq> <type> <account>/<node>"). */
static const char *log_prefix(const char *source, char *buf, size_t size)
{
	if (strcmp(source, "cyrus") == 0)
		return "ingest";
	if (strcmp(source, "json") == 0)
		return "json source";
	if (strcmp(source, "imap") == 0)
		return "imap source";
	snprintf(buf, size, "ingest (%s)", source);
	return buf;
}

static int refuse(struct sink *sink, const char *source, const char *why)
{
	struct stats_source_stats *ss = source_stats(sink, source);

	sink->stats->malformed++;
	if (ss != NULL)
		ss->malformed[stats_reject_for_decode(why)]++;
	return SINK_REFUSED;
}

static int append(struct sink *sink, const struct sink_input *in, long long *seq_r,
		  const char **error_r)
{
	struct stats_source_stats *ss;
	struct event *owned = NULL;
	const struct event *ev = in->event;
	char prefix[48];
	long long seq = 0;
	int rc;

	if (in->origin_id != NULL) {
		rc = journal_origin_seq(sink->journal, in->origin_id, &seq);
		if (rc != 0) {
			*seq_r = seq;
			*error_r = rc < 0 ? "journal read failed" : NULL;
			return rc < 0 ? SINK_STORE_ERROR : SINK_DUPLICATE;
		}
	}
	if (ev == NULL) {
		if (event_decode(in->json, in->json_len, sink->hier_sep, &owned, error_r) < 0)
			return refuse(sink, in->source, *error_r);
		ev = owned;
	}
	if (journal_append(sink->journal, in->source, ev, in->json, in->json_len,
			   in->received_us, in->origin_id, &seq) < 0) {
		event_free(&owned);
		*error_r = "journal write failed";
		return SINK_STORE_ERROR;
	}
	log_debug("%s: #%lld %s %s/%s", log_prefix(in->source, prefix, sizeof(prefix)),
		  seq, event_type_info(ev->type)->name,
		  ev->mailbox.account != NULL ? ev->mailbox.account : "",
		  ev->mailbox.node != NULL ? ev->mailbox.node : "");
	sink->stats->journaled++;
	ss = source_stats(sink, in->source);
	if (ss != NULL)
		ss->journaled++;
	*seq_r = seq;
	if (pending_add(sink, in, seq, &owned, ev) < 0) {
		/* journaled all the same: listeners catch up from the journal */
		log_error("sink: out of memory: #%lld reaches listeners late", seq);
		event_free(&owned);
	}
	return SINK_APPENDED;
}

int sink_submit(struct sink *sink, const struct sink_input *in, long long *seq_r,
		const char **error_r)
{
	long long seq = 0;
	const char *error = NULL;
	int rc;

	if (sink->depth > 0) {
		rc = append(sink, in, &seq, error_r);
	} else {
		if (sink_begin(sink) < 0) {
			*error_r = "journal write failed";
			return SINK_STORE_ERROR;
		}
		rc = append(sink, in, &seq, error_r);
		if (sink_commit(sink, &error) < 0 && rc >= 0) {
			*error_r = error;
			rc = SINK_STORE_ERROR;
		}
	}
	if (seq_r != NULL)
		*seq_r = seq;
	return rc;
}

void sink_set_waiting(struct sink *sink, const char *source, size_t bytes)
{
	unsigned free_slot = SINK_WAITING_MAX;

	for (unsigned i = 0; i < SINK_WAITING_MAX; i++) {
		if (sink->waiting[i].source == NULL) {
			if (free_slot == SINK_WAITING_MAX)
				free_slot = i;
			continue;
		}
		if (strcmp(sink->waiting[i].source, source) == 0) {
			sink->waiting[i].bytes = bytes;
			return;
		}
	}
	if (free_slot < SINK_WAITING_MAX && bytes > 0) {
		sink->waiting[free_slot].source = source;
		sink->waiting[free_slot].bytes = bytes;
	}
}

size_t sink_waiting(const struct sink *sink)
{
	size_t total = 0;

	for (unsigned i = 0; i < SINK_WAITING_MAX; i++)
		total += sink->waiting[i].bytes;
	return total;
}

void sink_events_read(const struct sink_event *events, size_t count, unsigned limit,
		      journal_record_cb *cb, void *context, unsigned *count_r)
{
	*count_r = 0;
	for (size_t i = 0; i < count && *count_r < limit; i++) {
		const struct journal_record rec = {
			.seq = events[i].seq,
			.received_us = events[i].received_us,
			.source = events[i].source,
			.json = events[i].json,
			.json_len = events[i].json_len,
			.event = events[i].event,
		};

		(*count_r)++;
		if (cb(context, &rec) != 0)
			break;
	}
}
