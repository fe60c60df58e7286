/* The journal listeners' steps, the publisher's and the firehose's, fed by
 * the real sink over a real store, sending through a component the test
 * drives (tests/fuzz/fake_component.c, linked explicitly before the
 * library): live, they take the events the sink decoded, in journal order;
 * behind (the component down), they read the journal from their
 * watermark; the publisher's watermark moves only on the server's word.
 * On a front ([backends]) the firehose and the taps fetch a message from
 * the server holding its account (an IMAP stand-in, tests/fake_fetch.c,
 * records which).
 * The same path through real Prosody and Cyrus: tests/integration/
 * test_reliability.py and test_firehose.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz/authz.h"
#include "base/config.h"
#include "downstream/firehose.h"
#include "downstream/tap.h"
#include "fake_fetch.h"
#include "fuzz/fake_component.h"
#include "imap/imap_backends.h"
#include "ingest/sink.h"
#include "model/subopts.h"
#include "publish/counts.h"
#include "publish/delegate.h"
#include "publish/delivery.h"
#include "publish/publish_service.h"
#include "publish/publisher.h"
#include "store/journal.h"
#include "store/store.h"
#include "store/store_sql.h"
#include "store/subscription.h"

#define MSG(uid) \
	"{\"event\":\"MessageNew\",\"uri\":\"imap://localhost/user/alice;" \
	"UIDVALIDITY=9/;UID=" #uid "\"}"
#define MSG_OF(account) \
	"{\"event\":\"MessageNew\",\"uri\":\"imap://localhost/user/" account ";" \
	"UIDVALIDITY=9/;UID=1\"}"

struct fixture {
	char dir[64], db[96], conf[96];
	struct config *config;
	xmpp_ctx_t *xmpp;
	uv_loop_t loop;
	struct publish_service service;
	struct publisher *publisher;
	struct firehose *firehose;
	struct tap_relay *taps;
	struct imap_client *imap;    /* the [imap] host: a stand-in, or NULL */
};

static void write_conf(const char *path)
{
	FILE *c = fopen(path, "w");

	assert_non_null(c);
	fprintf(c, "[component]\ndomain = events.localhost\nsecret = s\n"
		   "[accounts]\njid_domains = localhost\n"
		   "[firehose]\nsubscribers = archive@localhost:archive\n");
	fclose(c);
}

/* As main does: the publisher first, then the firehose. */
static void register_listeners(struct fixture *f)
{
	const struct sink_listener p = { publisher_committed, f->publisher };
	const struct sink_listener h = { firehose_committed, f->firehose };

	assert_int_equal(sink_listener_register(f->service.sink, &p), 0);
	assert_int_equal(sink_listener_register(f->service.sink, &h), 0);
}

/* What main's start() does, with the component the test drives and no
 * IMAP server (rights: the owner's only). */
static int setup_with(void **state, struct imap_client *imap)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct publish_service *s = &f->service;
	const char *err;
	char cerr[CONFIG_ERROR_MAX];

	assert_non_null(f);
	strcpy(f->dir, "/tmp/mps-listeners-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/db", f->dir);
	snprintf(f->conf, sizeof(f->conf), "%s/conf", f->dir);
	write_conf(f->conf);
	assert_int_equal(config_load(f->conf, &f->config, cerr, sizeof(cerr)), 0);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->xmpp = xmpp_ctx_new(NULL, NULL);
	s->config = f->config;
	assert_int_equal(store_open(f->db, false, &s->store, &err), 0);
	assert_int_equal(sink_new(s->store, &s->stats, &s->sink, &err), 0);
	sink_set_hierarchy_separator(s->sink, '/');
	s->component = fake_component_new(f->xmpp);
	fake_component_record(s->component, true);
	fake_component_hold_confirms(s->component, true);
	assert_int_equal(authz_new(f->config, s->store, NULL, &s->authz, &err), 0);
	assert_int_equal(delivery_new(s, &s->delivery, &err), 0);
	assert_int_equal(delegate_new(s, &s->delegate, &err), 0);
	assert_int_equal(publisher_new(&f->loop, s, &f->publisher, &err), 0);
	s->publisher = f->publisher;
	f->imap = imap;
	assert_int_equal(firehose_new(&f->loop, s, imap, &f->firehose, &err), 0);
	assert_int_equal(tap_relay_new(&f->loop, s, imap, &f->taps, &err), 0);
	assert_int_equal(counts_new(&f->loop, s, NULL, &s->counts, &err), 0);
	register_listeners(f);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, NULL);
}

/* Any address stands for a client: the stand-in only records it. */
static int b1_client, b2_client, imap_host;

static int setup_imap(void **state)
{
	memset(&fake_fetch, 0, sizeof(fake_fetch));
	return setup_with(state, (struct imap_client *)&imap_host);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	struct publish_service *s = &f->service;
	char cmd[128];

	publisher_close(&f->publisher);
	firehose_close(&f->firehose);
	tap_relay_close(&f->taps);
	counts_close(&s->counts);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	delivery_free(&s->delivery);
	delegate_free(&s->delegate);
	authz_free(&s->authz);
	fake_component_free(&s->component);
	sink_free(&s->sink);
	store_close(&s->store);
	xmpp_ctx_free(f->xmpp);
	config_free(&f->config);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void subscribe(struct fixture *f, const char *account, const char *node,
		      const char *jid)
{
	char subid[SUBSCRIPTION_SUBID_LEN + 1];
	struct subopts opts;
	bool created;

	subopts_defaults(&opts);
	assert_int_equal(subscription_add(f->service.store, account, node, jid, &opts, 1,
					  subid, &created), 0);
}

static void firehose_subscribe_content(struct fixture *f, const char *jid,
				       const char *content)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "INSERT INTO firehose_subs (jid, subid, content,"
		 " created_us) VALUES ('%s', 'sub1', '%s', 1)", jid, content);
	assert_int_equal(sqlite3_exec(store_db(f->service.store), sql, NULL, NULL, NULL),
			 SQLITE_OK);
}

static void firehose_subscribe(struct fixture *f, const char *jid)
{
	firehose_subscribe_content(f, jid, "none");
}

/* Submits the JSON texts as one batch; their seqs go to seqs. */
static void journal_batch(struct fixture *f, const char *const *json, size_t n,
			  long long *seqs)
{
	const char *err;

	assert_int_equal(sink_begin(f->service.sink), 0);
	for (size_t i = 0; i < n; i++) {
		struct sink_input in = { .source = "cyrus", .json = json[i],
					 .json_len = strlen(json[i]), .received_us = 1 };

		assert_int_equal(sink_submit(f->service.sink, &in, &seqs[i], &err),
				 SINK_APPENDED);
	}
	assert_int_equal(sink_commit(f->service.sink, &err), 0);
}

/* The items sent on node, by item id, in the order they went out. */
static size_t items_sent(struct fixture *f, const char *node, long long *ids, size_t max)
{
	char pattern[128];
	size_t count = fake_component_count(f->service.component), n = 0;

	snprintf(pattern, sizeof(pattern), "<items node='%s'><item id='", node);
	for (size_t i = 0; i < count; i++) {
		const char *p = strstr(fake_component_sent(f->service.component, i), pattern);

		if (p == NULL)
			continue;
		if (n < max)
			ids[n] = atoll(p + strlen(pattern));
		n++;
	}
	return n;
}

static void run_loop(struct fixture *f)
{
	for (int i = 0; i < 5; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void test_publisher_live(void **state)
{
	struct fixture *f = *state;
	const char *const json[] = { MSG(1), MSG(2), MSG(3) };
	long long seqs[3], ids[8];

	subscribe(f, "alice", "INBOX", "alice@localhost");
	journal_batch(f, json, 3, seqs);
	/* at once, from the sink's hand: no loop turn needed */
	assert_int_equal(items_sent(f, "INBOX", ids, 8), 3);
	assert_int_equal(ids[0], seqs[0]);
	assert_int_equal(ids[1], seqs[1]);
	assert_int_equal(ids[2], seqs[2]);
	assert_int_equal(f->service.stats.published, 3);
	/* handed to the server, not yet confirmed: the watermark stays */
	assert_int_equal(journal_published_seq(f->service.store), 0);
	assert_true(fake_component_confirm_pending(f->service.component));
	fake_component_confirm_answer(f->service.component);
	assert_int_equal(journal_published_seq(f->service.store), seqs[2]);
}

/* Live, the publisher uses the event the sink decoded: the text beside
 * it is not read again (here it would not decode). */
static void test_publisher_decodes_once(void **state)
{
	struct fixture *f = *state;
	const char *json = MSG(7);
	struct event *ev;
	const char *err;
	long long ids[4];
	struct sink_event se = { .seq = 1, .received_us = 1, .source = "cyrus",
				 .json = "not JSON: never decoded", .json_len = 23 };

	subscribe(f, "alice", "INBOX", "alice@localhost");
	assert_int_equal(event_decode(json, strlen(json), '/', &ev, &err), 0);
	se.event = ev;
	publisher_committed(f->publisher, &se, 1);
	event_free(&ev);
	assert_int_equal(items_sent(f, "INBOX", ids, 4), 1);
	assert_int_equal(ids[0], 1);
	assert_int_equal(f->service.stats.published, 1);
}

/* Down, nothing goes; once up, the journal from the watermark, in order,
 * and what commits meanwhile waits its turn behind it. */
static void test_publisher_behind_reads_journal(void **state)
{
	struct fixture *f = *state;
	const char *const first[] = { MSG(1), MSG(2) };
	const char *const later[] = { MSG(3) };
	long long seqs[3], ids[8];

	subscribe(f, "alice", "INBOX", "alice@localhost");
	fake_component_set_connected(f->service.component, false);
	journal_batch(f, first, 2, seqs);
	run_loop(f);
	assert_int_equal(items_sent(f, "INBOX", ids, 8), 0);
	fake_component_set_connected(f->service.component, true);
	journal_batch(f, later, 1, seqs + 2);
	/* behind: the new batch is not published before the old ones */
	assert_int_equal(items_sent(f, "INBOX", ids, 8), 0);
	run_loop(f);
	assert_int_equal(items_sent(f, "INBOX", ids, 8), 3);
	assert_int_equal(ids[0], seqs[0]);
	assert_int_equal(ids[1], seqs[1]);
	assert_int_equal(ids[2], seqs[2]);
	fake_component_confirm_answer(f->service.component);
	assert_int_equal(journal_published_seq(f->service.store), seqs[2]);
}

/* A lost connection takes what was not confirmed: it goes again, from
 * the journal, with the same item ids, one at a time, each confirmed
 * before the next (the server may have closed the stream on one). */
static void test_publisher_resends_unconfirmed(void **state)
{
	struct fixture *f = *state;
	const char *const json[] = { MSG(1), MSG(2) };
	long long seqs[2], ids[8];

	subscribe(f, "alice", "INBOX", "alice@localhost");
	journal_batch(f, json, 2, seqs);
	assert_int_equal(items_sent(f, "INBOX", ids, 8), 2);
	fake_component_set_connected(f->service.component, false);
	publisher_reset(f->publisher);
	assert_int_equal(journal_published_seq(f->service.store), 0);
	fake_component_set_connected(f->service.component, true);
	publisher_kick(f->publisher);
	run_loop(f);
	assert_int_equal(items_sent(f, "INBOX", ids, 8), 3);
	assert_int_equal(ids[2], seqs[0]);
	fake_component_confirm_answer(f->service.component);
	assert_int_equal(journal_published_seq(f->service.store), seqs[0]);
	run_loop(f);
	assert_int_equal(items_sent(f, "INBOX", ids, 8), 4);
	assert_int_equal(ids[3], seqs[1]);
	fake_component_confirm_answer(f->service.component);
	assert_int_equal(journal_published_seq(f->service.store), seqs[1]);
}

static void test_firehose_live(void **state)
{
	struct fixture *f = *state;
	const char *const json[] = { MSG(1), MSG(2) };
	long long seqs[2], ids[8], pos = 0;

	firehose_subscribe(f, "archive@localhost");
	journal_batch(f, json, 2, seqs);
	assert_int_equal(items_sent(f, FIREHOSE_NODE, ids, 8), 2);
	assert_int_equal(ids[0], seqs[0]);
	assert_int_equal(ids[1], seqs[1]);
	assert_int_equal(store_meta_get_i64(f->service.store, "firehose_seq", &pos), 0);
	assert_int_equal(pos, seqs[1]);
}

static void test_firehose_behind_reads_journal(void **state)
{
	struct fixture *f = *state;
	const char *const first[] = { MSG(1) };
	const char *const later[] = { MSG(2), MSG(3) };
	long long seqs[3], ids[8];

	firehose_subscribe(f, "archive@localhost");
	fake_component_set_connected(f->service.component, false);
	journal_batch(f, first, 1, seqs);
	run_loop(f);
	assert_int_equal(items_sent(f, FIREHOSE_NODE, ids, 8), 0);
	fake_component_set_connected(f->service.component, true);
	journal_batch(f, later, 2, seqs + 1);
	run_loop(f);
	assert_int_equal(items_sent(f, FIREHOSE_NODE, ids, 8), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ids[i], seqs[i]);
}

/* [backends]: alice on b1, bob on b2, anyone else on the [imap] host. */
static struct imap_backend front_list[] = {
	{ "alice", (struct imap_client *)&b1_client },
	{ "bob", (struct imap_client *)&b2_client },
};
static const struct imap_backends front_backends = { .list = front_list, .count = 2 };

static void test_firehose_content_from_the_accounts_server(void **state)
{
	struct fixture *f = *state;
	const char *const json[] = { MSG_OF("bob"), MSG_OF("alice"), MSG_OF("carol") };
	long long seqs[3], ids[8];

	firehose_set_backends(f->firehose, &front_backends);
	firehose_subscribe_content(f, "archive@localhost", "full");
	journal_batch(f, json, 3, seqs);
	/* one retrieval at a time, in journal order, each of its own server */
	for (int i = 0; i < 3; i++) {
		run_loop(f);
		fake_fetch_answer_all();
	}
	run_loop(f);
	assert_int_equal(fake_fetch.count, 3);
	assert_string_equal(fake_fetch.calls[0].account, "bob");
	assert_ptr_equal(fake_fetch.calls[0].client, &b2_client);
	assert_string_equal(fake_fetch.calls[1].account, "alice");
	assert_ptr_equal(fake_fetch.calls[1].client, &b1_client);
	assert_string_equal(fake_fetch.calls[2].account, "carol");
	assert_ptr_equal(fake_fetch.calls[2].client, &imap_host);
	assert_int_equal(items_sent(f, FIREHOSE_NODE, ids, 8), 3);
}

static void test_tap_content_from_the_accounts_server(void **state)
{
	struct fixture *f = *state;
	struct tap t = { .target = "bob", .authorities = "police@localhost",
			 .not_before_us = 0, .not_after_us = LLONG_MAX / 2,
			 .reference = "W-1" };
	struct journal_record rec = { .seq = 1, .received_us = 1, .source = "bus",
				      .json = MSG_OF("bob"), .json_len = strlen(MSG_OF("bob")) };
	struct event *ev;
	long long id;
	const char *err;

	tap_relay_set_backends(f->taps, &front_backends);
	assert_int_equal(taps_insert(f->service.store, &t, "boss@localhost", 1, &id), 0);
	assert_int_equal(event_decode(rec.json, rec.json_len, '/', &ev, &err), 0);
	tap_relay_event(f->taps, &rec, ev);
	event_free(&ev);
	assert_int_equal(fake_fetch.count, 1);
	assert_ptr_equal(fake_fetch.calls[0].client, &b2_client);
	fake_fetch_answer_all();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_publisher_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_decodes_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_behind_reads_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publisher_resends_unconfirmed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firehose_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firehose_behind_reads_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_firehose_content_from_the_accounts_server,
						setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_tap_content_from_the_accounts_server,
						setup_imap, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
