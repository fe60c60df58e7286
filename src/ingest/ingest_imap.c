/* The IMAP client source's public face and its loop-thread side: the
 * watchers (ingest_imap_watch.h) are started and stopped here, and the
 * batches they hand over are journaled here, events and sync state in one
 * transaction. The parts, bottom up: flags, URLs, the mailbox model and
 * its diff (pure); the IMAP commands on a dedicated session; batches and
 * their hand-over; the watcher threads; the sync state in the store
 * (store/imap_source_state.h). */
#include "base/clock.h"
#include "ingest/ingest_imap.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "base/config.h"
#include "model/event.h"
#include "model/mailbox_uri.h"
#include "imap/imap_client.h"
#include "imap/imap_name.h"
#include "ingest/ingest_imap_batch.h"
#include "ingest/ingest_imap_watch.h"
#include "ingest/sink.h"
#include "store/journal.h"
#include "base/log.h"
#include "store/node_tree.h"
#include "store/store.h"

#define SOURCE_NAME "imap"

struct ingest_imap {
	struct store *store;         /* the watchers' state (borrowed) */
	struct sink *sink;           /* where the events go (borrowed) */
	struct stats_counters *stats;
	struct imap_client *imap;
	const struct config *config;
	char sep;
	struct ingest_imap_queue queue;
	struct ingest_imap_watch *watchers;
};

static void iso_now(char *buf, size_t size)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);

	snprintf(buf + n, size - n, ".%03u+00:00", (unsigned)(tv.tv_usec / 1000) % 1000u);
}

/* Journals one synthesized event exactly as the generic source would. */
static int journal_event(struct ingest_imap *in, json_t *obj, long long now)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	struct sink_input input = { .source = SOURCE_NAME, .received_us = now };
	const char *error;
	int rc;

	if (text == NULL)
		return -1;
	in->stats->sources[STATS_IMAP].received++;
	input.json = text;
	input.json_len = strlen(text);
	rc = sink_submit(in->sink, &input, NULL, &error);
	/* ours: a bug, not bad input; skip it rather than wedge the source */
	if (rc == SINK_REFUSED)
		log_error("imap source: cannot decode our own event (%s): %s", error, text);
	free(text);
	return rc == SINK_STORE_ERROR ? -1 : 0;
}

/* Events and state in one transaction: both or neither. */
static int batch_apply(struct ingest_imap *in, struct ingest_imap_batch *b)
{
	struct store *store = in->store;
	long long now = clock_now_us();
	const char *error;
	char stamp[40];
	size_t i;

	iso_now(stamp, sizeof(stamp));
	if (sink_begin(in->sink) < 0)
		return -1;
	if (ingest_imap_batch_store(b, store, b->w->account) < 0)
		goto fail;
	for (i = 0; i < json_array_size(b->events); i++) {
		json_t *ev = json_array_get(b->events, i);

		json_object_set_new(ev, "timestamp", json_string(stamp));
		json_object_set_new(ev, "vnd.mailpubsub.origin", json_string("IMAP"));
		if (journal_event(in, ev, now) < 0)
			goto fail;
	}
	if (sink_commit(in->sink, &error) < 0)
		return -1;
	return 0;
fail:
	sink_rollback(in->sink);
	return -1;
}

/* Loop thread: commits what the watchers handed over and wakes them. */
static void process_queue(struct ingest_imap *in)
{
	struct store *store = in->store;
	struct ingest_imap_batch *b;

	while ((b = ingest_imap_queue_take(&in->queue)) != NULL) {
		if (b->reload) {
			b->result = ingest_imap_watch_load(b->w, store);
		} else if ((b->result = batch_apply(in, b)) != 0) {
			/* the thread changed its state ahead of the store: it
			 * is blocked until we answer, so put the stored one
			 * back (it then reconnects and goes on from there) */
			log_error("imap source: %s: journal write failed; resynchronising "
				  "from the stored state", b->w->account);
			ingest_imap_watch_load(b->w, store);
		}
		ingest_imap_queue_answer(&in->queue, b);
	}
}

static void on_async(uv_async_t *async)
{
	process_queue(async->data);
}

static void async_closed(uv_handle_t *handle)
{
	struct ingest_imap *in = handle->data;

	uv_mutex_destroy(&in->queue.lock);
	free(in);
}

void ingest_imap_watchers(struct ingest_imap *in, unsigned *watchers_r,
			  unsigned *connected_r)
{
	*watchers_r = *connected_r = 0;
	if (in == NULL)
		return;
	uv_mutex_lock(&in->queue.lock);
	for (const struct ingest_imap_watch *w = in->watchers; w != NULL; w = w->next) {
		++*watchers_r;
		if (ingest_imap_watch_connected(w))
			++*connected_r;
	}
	uv_mutex_unlock(&in->queue.lock);
}

void ingest_imap_close(struct ingest_imap **ingest)
{
	struct ingest_imap *in = *ingest;

	if (in == NULL)
		return;
	*ingest = NULL;
	uv_mutex_lock(&in->queue.lock);
	atomic_store(&in->queue.stop, true);
	for (struct ingest_imap_watch *w = in->watchers; w != NULL; w = w->next)
		ingest_imap_watch_interrupt(w);
	uv_mutex_unlock(&in->queue.lock);
	/* what was handed over is journaled; the threads see stop then */
	process_queue(in);
	while (in->watchers != NULL) {
		struct ingest_imap_watch *w = in->watchers;

		in->watchers = w->next;
		ingest_imap_watch_free(&w);
	}
	uv_close((uv_handle_t *)&in->queue.async, async_closed);
}

static int add_watcher(struct ingest_imap *in, const char *account,
		       const char *idle_node, bool poller, const char *mailboxes,
		       const char **error_r)
{
	struct ingest_imap_watch *w, **tail;

	if (ingest_imap_watch_new(&in->queue, in->imap, in->config, in->sep, account,
				  idle_node, poller, mailboxes, &w, error_r) < 0)
		return -1;
	for (tail = &in->watchers; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = w;
	if (ingest_imap_watch_load(w, in->store) < 0) {
		*error_r = "cannot read the IMAP source's state from the store";
		return -1;
	}
	return 0;
}

int ingest_imap_new(uv_loop_t *loop, const struct config *c, struct store *store,
		    struct sink *sink, struct stats_counters *stats,
		    struct imap_client *imap, struct ingest_imap **ingest_r,
		    const char **error_r)
{
	struct ingest_imap *in;
	char *accounts, *save = NULL;
	const char *mailboxes = *c->imap_source_mailboxes != '\0' ?
				c->imap_source_mailboxes : "INBOX";

	if (imap == NULL) {
		*error_r = "[imap_source] needs [imap] host";
		return -1;
	}
	in = calloc(1, sizeof(*in));
	if (in == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	in->store = store;
	in->sink = sink;
	in->stats = stats;
	in->imap = imap;
	in->config = c;
	in->sep = c->hierarchy_separator[0];
	in->queue.tail = &in->queue.head;
	atomic_init(&in->queue.stop, false);
	if (uv_mutex_init(&in->queue.lock) != 0) {
		free(in);
		*error_r = "cannot create a mutex";
		return -1;
	}
	uv_async_init(loop, &in->queue.async, on_async);
	in->queue.async.data = in;
	*ingest_r = in;

	accounts = strdup(c->imap_source_accounts);
	if (accounts == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	for (char *a = strtok_r(accounts, " \t,", &save); a != NULL;
	     a = strtok_r(NULL, " \t,", &save)) {
		char *boxes = strdup(mailboxes), *bsave = NULL;
		bool first = true;

		if (boxes == NULL) {
			*error_r = "out of memory";
			free(accounts);
			goto fail;
		}
		for (char *m = strtok_r(boxes, " \t,", &bsave); m != NULL;
		     m = strtok_r(NULL, " \t,", &bsave)) {
			if (!mailbox_uri_node_valid(m)) {
				log_error("imap source: [imap_source] mailboxes: '%s' is "
					  "not a node name (INBOX, INBOX/Sub...)", m);
				*error_r = "[imap_source] mailboxes names something that is "
					   "not a node name (see the log)";
				free(boxes);
				free(accounts);
				goto fail;
			}
			if (add_watcher(in, a, m, first, mailboxes, error_r) < 0) {
				free(boxes);
				free(accounts);
				goto fail;
			}
			first = false;
		}
		free(boxes);
	}
	free(accounts);
	for (struct ingest_imap_watch *w = in->watchers; w != NULL; w = w->next) {
		if (ingest_imap_watch_start(w) < 0) {
			*error_r = "cannot start an IMAP source thread";
			goto fail;
		}
	}
	return 0;
fail:
	ingest_imap_close(ingest_r);
	return -1;
}
