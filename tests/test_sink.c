/* The journal sink (src/ingest/sink.c) over a real store: listeners hear
 * of a batch once, after its commit, in journal order, with the decoded
 * events; a malformed event is refused and counted while the good ones
 * around it are journaled; an origin_id is journaled once; the journal's
 * append hooks run inside the append; back-pressure adds up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/sink.h"
#include "store/journal.h"
#include "temp_store.h"

#define MSG(uid) \
	"{\"event\":\"MessageNew\",\"uri\":\"imap://localhost/user/alice;" \
	"UIDVALIDITY=9/;UID=" #uid "\"}"

/* What a listener saw: a copy of each call. */
struct heard {
	unsigned calls;
	size_t count;
	long long seqs[16];
	int types[16];
	const struct event *events[16];
	unsigned order[16];        /* the call number each event came with */
	unsigned *clock;           /* shared between listeners: who came first */
	unsigned my_turn;
};

static void committed(void *context, const struct sink_event *events, size_t count)
{
	struct heard *h = context;

	h->calls++;
	if (h->clock != NULL)
		h->my_turn = ++*h->clock;
	for (size_t i = 0; i < count && h->count < 16; i++) {
		assert_non_null(events[i].event);
		assert_string_equal(events[i].source, "cyrus");
		assert_int_equal(strlen(events[i].json), events[i].json_len);
		h->seqs[h->count] = events[i].seq;
		h->types[h->count] = (int)events[i].event->type;
		h->events[h->count] = events[i].event;
		h->order[h->count++] = h->calls;
	}
}

struct fixture {
	struct temp_store *ts;
	struct stats_counters stats;
	struct sink *sink;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	void *ts;
	const char *err;

	assert_non_null(f);
	assert_int_equal(temp_store_setup(&ts), 0);
	f->ts = ts;
	assert_int_equal(sink_new(f->ts->store, &f->stats, &f->sink, &err), 0);
	sink_set_hierarchy_separator(f->sink, '/');
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	void *ts = f->ts;

	sink_free(&f->sink);
	assert_null(f->sink);
	free(f);
	return temp_store_teardown(&ts);
}

static int submit(struct fixture *f, const char *json, const char *origin, long long *seq_r)
{
	struct sink_input in = { .source = "cyrus", .json = json, .json_len = strlen(json),
				 .received_us = 1000, .origin_id = origin };
	const char *err = NULL;

	return sink_submit(f->sink, &in, seq_r, &err);
}

static void test_notified_after_commit_in_order(void **state)
{
	struct fixture *f = *state;
	unsigned clock = 0;
	struct heard a = { .clock = &clock }, b = { .clock = &clock };
	const struct sink_listener la = { committed, &a }, lb = { committed, &b };
	long long s1, s2, s3;
	const char *err;

	assert_int_equal(sink_listener_register(f->sink, &la), 0);
	assert_int_equal(sink_listener_register(f->sink, &lb), 0);
	assert_int_equal(sink_begin(f->sink), 0);
	assert_int_equal(submit(f, MSG(1), NULL, &s1), SINK_APPENDED);
	assert_int_equal(submit(f, MSG(2), NULL, &s2), SINK_APPENDED);
	assert_int_equal(submit(f, "{\"event\":\"MailboxCreate\",\"uri\":"
				   "\"imap://localhost/user/alice/New;UIDVALIDITY=3\"}",
				NULL, &s3), SINK_APPENDED);
	/* journaled, not yet committed: nobody is told */
	assert_int_equal(a.calls, 0);
	assert_true(s1 < s2 && s2 < s3);
	assert_int_equal(sink_commit(f->sink, &err), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	/* in registration order, each with the whole batch in journal order */
	assert_true(a.my_turn < b.my_turn);
	assert_int_equal(a.count, 3);
	assert_int_equal(a.seqs[0], s1);
	assert_int_equal(a.seqs[2], s3);
	assert_int_equal(a.types[0], EVENT_MESSAGE_NEW);
	assert_int_equal(a.types[2], EVENT_MAILBOX_CREATE);
	/* decoded once: both listeners got the same decoded event */
	assert_ptr_equal(a.events[1], b.events[1]);
	assert_int_equal(journal_last_seq(f->ts->store), s3);
	assert_int_equal(f->stats.journaled, 3);
	assert_int_equal(f->stats.sources[STATS_CYRUS].journaled, 3);
}

static void test_nested_batches_commit_once(void **state)
{
	struct fixture *f = *state;
	struct heard a = { 0 };
	const struct sink_listener la = { committed, &a };
	const char *err;

	sink_listener_register(f->sink, &la);
	assert_int_equal(sink_begin(f->sink), 0);
	assert_int_equal(sink_begin(f->sink), 0);
	assert_int_equal(submit(f, MSG(1), NULL, NULL), SINK_APPENDED);
	assert_int_equal(sink_commit(f->sink, &err), 0);
	assert_int_equal(a.calls, 0);
	assert_int_equal(submit(f, MSG(2), NULL, NULL), SINK_APPENDED);
	assert_int_equal(sink_commit(f->sink, &err), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.count, 2);
	/* one outside a batch is a batch of its own */
	assert_int_equal(submit(f, MSG(3), NULL, NULL), SINK_APPENDED);
	assert_int_equal(a.calls, 2);
	assert_int_equal(a.count, 3);
}

static void test_malformed_refused_others_journaled(void **state)
{
	struct fixture *f = *state;
	struct heard a = { 0 };
	const struct sink_listener la = { committed, &a };
	struct sink_input bad = { .source = "cyrus", .json = "{\"event\":", .json_len = 9 };
	const char *err = NULL;
	long long before, s1, s3;

	sink_listener_register(f->sink, &la);
	before = journal_last_seq(f->ts->store);
	assert_int_equal(sink_begin(f->sink), 0);
	assert_int_equal(submit(f, MSG(1), NULL, &s1), SINK_APPENDED);
	assert_int_equal(sink_submit(f->sink, &bad, NULL, &err), SINK_REFUSED);
	assert_non_null(err);
	assert_int_equal(submit(f, "{\"event\":\"NoSuchEvent\",\"uri\":\"imap://localhost/\"}",
				NULL, NULL), SINK_REFUSED);
	assert_int_equal(submit(f, MSG(3), NULL, &s3), SINK_APPENDED);
	assert_int_equal(sink_commit(f->sink, &err), 0);
	assert_int_equal(a.count, 2);
	assert_int_equal(a.seqs[0], s1);
	assert_int_equal(a.seqs[1], s3);
	assert_int_equal(journal_last_seq(f->ts->store), before + 2);
	assert_int_equal(f->stats.malformed, 2);
	assert_int_equal(f->stats.sources[STATS_CYRUS].malformed[STATS_REJECT_INVALID_JSON], 1);
	assert_int_equal(f->stats.sources[STATS_CYRUS].malformed[STATS_REJECT_UNKNOWN_EVENT], 1);
	assert_int_equal(f->stats.journaled, 2);
}

static void test_duplicate_origin_id(void **state)
{
	struct fixture *f = *state;
	struct heard a = { 0 };
	const struct sink_listener la = { committed, &a };
	long long first, again = 0, other;
	const char *err;

	sink_listener_register(f->sink, &la);
	assert_int_equal(submit(f, MSG(1), "alpha:17", &first), SINK_APPENDED);
	/* redelivered by the broker, later: the seq it has, nothing new */
	assert_int_equal(submit(f, MSG(1), "alpha:17", &again), SINK_DUPLICATE);
	assert_int_equal(again, first);
	/* and twice within one batch */
	assert_int_equal(sink_begin(f->sink), 0);
	assert_int_equal(submit(f, MSG(2), "alpha:18", &other), SINK_APPENDED);
	assert_int_equal(submit(f, MSG(2), "alpha:18", &again), SINK_DUPLICATE);
	assert_int_equal(again, other);
	assert_int_equal(sink_commit(f->sink, &err), 0);
	assert_int_equal(journal_last_seq(f->ts->store), other);
	assert_int_equal(other, first + 1);
	assert_int_equal(a.count, 2);
	assert_int_equal(f->stats.journaled, 2);
	/* another instance's seq 17 is another event */
	assert_int_equal(submit(f, MSG(1), "beta:17", &other), SINK_APPENDED);
	assert_int_equal(other, first + 2);
}

static void test_listener_unregistered(void **state)
{
	struct fixture *f = *state;
	struct heard a = { 0 }, b = { 0 };
	const struct sink_listener la = { committed, &a }, lb = { committed, &b };

	sink_listener_register(f->sink, &la);
	sink_listener_register(f->sink, &lb);
	assert_int_equal(submit(f, MSG(1), NULL, NULL), SINK_APPENDED);
	sink_listener_unregister(f->sink, &la);
	assert_int_equal(submit(f, MSG(2), NULL, NULL), SINK_APPENDED);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 2);
	sink_listener_unregister(f->sink, &lb);
	assert_int_equal(submit(f, MSG(3), NULL, NULL), SINK_APPENDED);
	assert_int_equal(b.calls, 2);
}

static void test_rollback_tells_nobody(void **state)
{
	struct fixture *f = *state;
	struct heard a = { 0 };
	const struct sink_listener la = { committed, &a };
	long long before = journal_last_seq(f->ts->store);

	sink_listener_register(f->sink, &la);
	assert_int_equal(sink_begin(f->sink), 0);
	assert_int_equal(submit(f, MSG(1), "gamma:1", NULL), SINK_APPENDED);
	sink_rollback(f->sink);
	assert_int_equal(a.calls, 0);
	assert_int_equal(journal_last_seq(f->ts->store), before);
	/* the origin went with it */
	assert_int_equal(submit(f, MSG(1), "gamma:1", NULL), SINK_APPENDED);
	assert_int_equal(a.calls, 1);
}

/* The caller's decoded event is the one listeners get. */
static void test_caller_decoded_event(void **state)
{
	struct fixture *f = *state;
	struct heard a = { 0 };
	const struct sink_listener la = { committed, &a };
	struct event *ev;
	const char *err;
	struct sink_input in = { .source = "cyrus", .json = MSG(5), .json_len = strlen(MSG(5)) };

	assert_int_equal(event_decode(in.json, in.json_len, '/', &ev, &err), 0);
	in.event = ev;
	sink_listener_register(f->sink, &la);
	assert_int_equal(sink_submit(f->sink, &in, NULL, &err), SINK_APPENDED);
	assert_ptr_equal(a.events[0], ev);
	event_free(&ev);
}

struct hook_seen {
	unsigned calls;
	long long seq;
	int fail;
};

static int hook(void *context, struct store *store, long long seq,
		const struct event *event, long long received_us)
{
	struct hook_seen *h = context;

	(void)store;
	assert_int_equal(event->type, EVENT_MESSAGE_NEW);
	assert_int_equal(received_us, 1000);
	h->calls++;
	h->seq = seq;
	return h->fail;
}

static void test_append_hook(void **state)
{
	struct fixture *f = *state;
	struct hook_seen h = { 0 };
	const struct journal_hook jh = { hook, &h };
	long long seq, before;

	assert_int_equal(journal_hook_register(sink_journal(f->sink), &jh), 0);
	assert_int_equal(submit(f, MSG(1), NULL, &seq), SINK_APPENDED);
	assert_int_equal(h.calls, 1);
	assert_int_equal(h.seq, seq);
	/* a hook that fails fails the append */
	h.fail = 1;
	before = journal_last_seq(f->ts->store);
	assert_int_equal(submit(f, MSG(2), NULL, NULL), SINK_STORE_ERROR);
	assert_int_equal(f->stats.journaled, 1);
	journal_hook_unregister(sink_journal(f->sink), &jh);
	assert_int_equal(submit(f, MSG(3), NULL, &seq), SINK_APPENDED);
	assert_int_equal(h.calls, 2);
	assert_true(seq > before);
}

static void test_waiting_adds_up(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(sink_waiting(f->sink), 0);
	sink_set_waiting(f->sink, "cyrus", 10);
	sink_set_waiting(f->sink, "bus", 5);
	assert_int_equal(sink_waiting(f->sink), 15);
	sink_set_waiting(f->sink, "cyrus", 0);
	assert_int_equal(sink_waiting(f->sink), 5);
	sink_set_waiting(f->sink, "cyrus", 7);
	assert_int_equal(sink_waiting(f->sink), 12);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_notified_after_commit_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested_batches_commit_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_refused_others_journaled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_origin_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_unregistered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback_tells_nobody, setup, teardown),
		cmocka_unit_test_setup_teardown(test_caller_decoded_event, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waiting_adds_up, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
