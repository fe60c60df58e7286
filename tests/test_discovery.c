/* discovery_lookup, the on-demand LIST behind first-contact requests,
 * against a stand-in for imap_client_list that answers when the test says
 * so: concurrent lookups share one LIST, the answer is the tree after it,
 * the wait is bounded by [imap] timeout_ms, and nothing waits past
 * shutdown. The real LIST against Cyrus is tests/integration/
 * test_first_contact.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "ingest/discovery.h"
#include "store/node_tree.h"
#include "ingest/sink.h"

/* ---- stand-ins, linked before the library ---- */

typedef void list_cb(void *ctx, enum imap_result r, char **nodes, size_t n);

static struct {
	unsigned lists;
	list_cb *cb;
	void *ctx;
	char account[64];
} fake_list;

void imap_client_list(struct imap_client *c, const char *account,
		      list_cb *cb, void *ctx)
{
	(void)c;
	fake_list.lists++;
	fake_list.cb = cb;
	fake_list.ctx = ctx;
	snprintf(fake_list.account, sizeof(fake_list.account), "%s", account);
}

/* The start sweep's LISTs: answered at once as failed, so that the
 * lookups under test are the only LISTs the fake keeps waiting. */
void imap_client_list_background(struct imap_client *c, const char *account,
				 list_cb *cb, void *ctx)
{
	(void)c;
	(void)account;
	cb(ctx, IMAP_TEMPFAIL, NULL, 0);
}

const char *imap_client_last_error(const struct imap_client *c)
{
	(void)c;
	return "fake failure";
}

long long clock_now_us(void)
{
	return 1;
}

/* ---- fixture ---- */

struct fixture {
	char dir[64], db[96], conf[96];
	struct config *config;
	struct store *store;
	struct stats_counters stats;
	struct sink *sink;
	uv_loop_t loop;
	struct discovery *discovery;
};

/* One waiter's answer. */
struct answer {
	bool done;
	enum discovery_result result;
};

static void answered(void *context, enum discovery_result result)
{
	struct answer *a = context;

	assert_false(a->done);
	a->done = true;
	a->result = result;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *err;
	FILE *c;

	strcpy(f->dir, "/tmp/mps-discovery-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/db", f->dir);
	snprintf(f->conf, sizeof(f->conf), "%s/conf", f->dir);
	c = fopen(f->conf, "w");
	fprintf(c, "[component]\ndomain = events.localhost\nsecret = s\n"
		   "[imap]\nhost = 127.0.0.1\nadmin_user = a\npassword = p\n"
		   "timeout_ms = 50\n");
	fclose(c);
	assert_int_equal(config_load(f->conf, &f->config, &err), 0);
	assert_int_equal(store_open(f->db, false, &f->store, &err), 0);
	assert_int_equal(sink_new(f->store, &f->stats, &f->sink, &err), 0);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	memset(&fake_list, 0, sizeof(fake_list));
	/* the stand-in needs no client: any non-NULL pointer will do */
	assert_int_equal(discovery_new(&f->loop, f->config, f->store, f->sink,
				       (struct imap_client *)f, &f->discovery,
				       &err), 0);
	*state = f;
	return 0;
}

/* Answers the LIST under way (as imap_client_close would: every call gets
 * its callback) so that the discovery can be freed. */
static void answer_list(enum imap_result r, const char *const *nodes, size_t n)
{
	list_cb *cb = fake_list.cb;

	assert_non_null(cb);
	fake_list.cb = NULL;
	cb(fake_list.ctx, r, (char **)nodes, n);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	discovery_close(&f->discovery);
	if (fake_list.cb != NULL)
		answer_list(IMAP_TEMPFAIL, NULL, 0);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	sink_free(&f->sink);
	store_close(&f->store);
	config_free(&f->config);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void lookup(struct fixture *f, const char *account, const char *node,
		   struct answer *a)
{
	discovery_lookup(f->discovery, f->store, account, node, answered, a);
}

static const char *const alice_nodes[] = { "INBOX", "INBOX/Projects" };

/* ---- tests ---- */

static void test_concurrent_lookups_share_one_list(void **state)
{
	struct fixture *f = *state;
	struct answer account = { 0 }, inbox = { 0 }, projects = { 0 }, nope = { 0 };

	lookup(f, "alice", NULL, &account);
	lookup(f, "alice", "INBOX", &inbox);
	lookup(f, "alice", "INBOX/Projects", &projects);
	lookup(f, "alice", "INBOX/Nope", &nope);
	assert_int_equal(fake_list.lists, 1);
	assert_string_equal(fake_list.account, "alice");
	assert_false(account.done || inbox.done || projects.done || nope.done);

	answer_list(IMAP_OK, alice_nodes, 2);
	assert_true(account.done && inbox.done && projects.done && nope.done);
	assert_int_equal(account.result, DISCOVERY_FOUND);
	assert_int_equal(inbox.result, DISCOVERY_FOUND);
	assert_int_equal(projects.result, DISCOVERY_FOUND);
	assert_int_equal(nope.result, DISCOVERY_NOT_FOUND);
	assert_true(node_tree_exists(f->store, "alice", "INBOX/Projects"));
}

static void test_known_node_asks_nothing(void **state)
{
	struct fixture *f = *state;
	struct answer a = { 0 };

	assert_int_equal(node_tree_touch(f->store, "bob", "INBOX", NULL, 0, 1), 0);
	lookup(f, "bob", "INBOX", &a);
	assert_true(a.done);
	assert_int_equal(a.result, DISCOVERY_FOUND);
	lookup(f, "bob", NULL, &(struct answer){ 0 });
	assert_int_equal(fake_list.lists, 0);
}

static void test_account_without_mailboxes_is_not_found(void **state)
{
	struct fixture *f = *state;
	struct answer a = { 0 };

	lookup(f, "nosuch", NULL, &a);
	answer_list(IMAP_OK, NULL, 0);
	assert_true(a.done);
	assert_int_equal(a.result, DISCOVERY_NOT_FOUND);
}

static void test_failed_list_is_tempfail(void **state)
{
	struct fixture *f = *state;
	struct answer a = { 0 };

	lookup(f, "alice", "INBOX", &a);
	answer_list(IMAP_TEMPFAIL, NULL, 0);
	assert_true(a.done);
	assert_int_equal(a.result, DISCOVERY_TEMPFAIL);
}

static void test_wait_is_bounded(void **state)
{
	struct fixture *f = *state;
	struct answer a = { 0 }, late = { 0 };

	lookup(f, "alice", "INBOX", &a);
	/* the sweep's timer repeats: run until the 50 ms deadline passed */
	for (int i = 0; i < 200 && !a.done; i++) {
		usleep(5000);
		uv_run(&f->loop, UV_RUN_NOWAIT);
	}
	assert_true(a.done);
	assert_int_equal(a.result, DISCOVERY_TEMPFAIL);
	/* the LIST still lands in the tree; the next ask needs no other */
	answer_list(IMAP_OK, alice_nodes, 2);
	lookup(f, "alice", "INBOX", &late);
	assert_true(late.done);
	assert_int_equal(late.result, DISCOVERY_FOUND);
	assert_int_equal(fake_list.lists, 1);
}

static void test_wildcards_never_reach_the_store(void **state)
{
	struct fixture *f = *state;
	struct answer star = { 0 }, percent = { 0 };

	lookup(f, "*", NULL, &star);
	lookup(f, "al%", "INBOX", &percent);
	assert_true(star.done && percent.done);
	assert_int_equal(star.result, DISCOVERY_NOT_FOUND);
	assert_int_equal(percent.result, DISCOVERY_NOT_FOUND);
	assert_int_equal(fake_list.lists, 0);
}

static void test_close_answers_waiters(void **state)
{
	struct fixture *f = *state;
	struct answer a = { 0 }, after = { 0 };

	lookup(f, "alice", NULL, &a);
	discovery_close(&f->discovery);
	assert_true(a.done);
	assert_int_equal(a.result, DISCOVERY_TEMPFAIL);
	/* closed: nobody is LISTed for any more, the tree alone answers */
	discovery_lookup(f->discovery, f->store, "carol", NULL, answered, &after);
	assert_true(after.done);
	assert_int_equal(after.result, DISCOVERY_NOT_FOUND);
	assert_int_equal(fake_list.lists, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_concurrent_lookups_share_one_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_known_node_asks_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_account_without_mailboxes_is_not_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_list_is_tempfail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_is_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wildcards_never_reach_the_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_answers_waiters, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
