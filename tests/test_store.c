#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/items.h"
#include "store/journal.h"
#include "store/node_tree.h"
#include "store/store.h"
#include "temp_store.h"
#include "store/subscription.h"

static struct subopts defaults = { .deliver = true, .events = "MessageNew" };


struct names {
	char buf[512];
};

static int collect(void *context, const char *node)
{
	struct names *n = context;

	strcat(n->buf, node);
	strcat(n->buf, ";");
	return 0;
}

static const char *children(struct store *s, const char *acct, const char *parent)
{
	static struct names n;

	n.buf[0] = '\0';
	node_tree_children(s, acct, parent, collect, &n);
	return n.buf;
}

static void test_tree(void **state)
{
	struct temp_store *f = *state;

	assert_int_equal(node_tree_touch(f->store, "alice", "INBOX/A/B", NULL, 0, 1), 0);
	assert_int_equal(node_tree_touch(f->store, "alice", "INBOX/A0", "id", 5, 1), 0);
	assert_int_equal(node_tree_touch(f->store, "bob", "INBOX", NULL, 0, 1), 0);
	/* ancestors appear */
	assert_true(node_tree_exists(f->store, "alice", "INBOX"));
	assert_true(node_tree_exists(f->store, "alice", "INBOX/A"));
	assert_string_equal(children(f->store, "alice", NULL), "INBOX;");
	assert_string_equal(children(f->store, "alice", "INBOX"), "INBOX/A;INBOX/A0;");
	assert_string_equal(children(f->store, "alice", "INBOX/A"), "INBOX/A/B;");
}

static int count_item(void *context, long long seq, long long published_us,
		      const char *payload)
{
	return 0;
}

static void test_rename_moves_subtree(void **state)
{
	struct temp_store *f = *state;
	char subid[SUBSCRIPTION_SUBID_LEN + 1];
	bool created;

	node_tree_touch(f->store, "alice", "INBOX/A/B", NULL, 0, 1);
	node_tree_touch(f->store, "alice", "INBOX/A0", NULL, 0, 1);
	assert_int_equal(subscription_add(f->store, "alice", "INBOX/A/B", "alice@x/r", &defaults, 1,
					  subid, &created), 0);
	assert_true(created);
	assert_int_equal(items_put(f->store, "alice", "INBOX/A", 7, 1, "<x/>", 5), 0);
	assert_int_equal(node_tree_rename(f->store, "alice", "INBOX/A", "alice", "INBOX/Z"), 0);
	assert_false(node_tree_exists(f->store, "alice", "INBOX/A"));
	assert_false(node_tree_exists(f->store, "alice", "INBOX/A/B"));
	assert_true(node_tree_exists(f->store, "alice", "INBOX/Z/B"));
	/* a sibling sharing the prefix is not part of the subtree */
	assert_true(node_tree_exists(f->store, "alice", "INBOX/A0"));
	assert_int_equal(subscription_find(f->store, "alice", "INBOX/Z/B", "alice@x/r", NULL), 1);
	assert_int_equal(subscription_find(f->store, "alice", "INBOX/A/B", "alice@x/r", NULL), 0);
	assert_int_equal(items_get(f->store, "alice", "INBOX/Z", 7, count_item, NULL), 1);
}

static void test_delete(void **state)
{
	struct temp_store *f = *state;
	char subid[SUBSCRIPTION_SUBID_LEN + 1];
	bool created;

	node_tree_touch(f->store, "alice", "INBOX/A/B", NULL, 0, 1);
	subscription_add(f->store, "alice", "INBOX/A", "alice@x", &defaults, 1, subid, &created);
	assert_int_equal(node_tree_delete(f->store, "alice", "INBOX/A"), 0);
	assert_false(node_tree_exists(f->store, "alice", "INBOX/A"));
	assert_true(node_tree_exists(f->store, "alice", "INBOX/A/B"));
	assert_int_equal(subscription_find(f->store, "alice", "INBOX/A", "alice@x", NULL), 0);
	/* deleting INBOX is deleting the user */
	assert_int_equal(node_tree_delete(f->store, "alice", "INBOX"), 0);
	assert_false(node_tree_exists(f->store, "alice", "INBOX/A/B"));
}

static void test_subscriptions(void **state)
{
	struct temp_store *f = *state;
	char s1[SUBSCRIPTION_SUBID_LEN + 1], s2[SUBSCRIPTION_SUBID_LEN + 1];
	bool created;

	node_tree_touch(f->store, "alice", "INBOX", NULL, 0, 1);
	assert_int_equal(subscription_add(f->store, "alice", "INBOX", "alice@x", &defaults, 1, s1, &created), 0);
	assert_true(created);
	assert_int_equal(strlen(s1), SUBSCRIPTION_SUBID_LEN);
	assert_int_equal(subscription_add(f->store, "alice", "INBOX", "alice@x", &defaults, 1, s2, &created), 0);
	assert_false(created);
	assert_string_equal(s1, s2);
	assert_true(subscription_any_for_bare(f->store, "alice", "INBOX", "alice@x"));
	assert_false(subscription_any_for_bare(f->store, "alice", "INBOX", "alice@y"));
	assert_int_equal(subscription_count_for_jid(f->store, "alice@x"), 1);
	assert_int_equal(subscription_remove(f->store, "alice", "INBOX", "alice@x", "wrong"), 0);
	assert_int_equal(subscription_remove(f->store, "alice", "INBOX", "alice@x", s1), 1);
	assert_int_equal(subscription_remove(f->store, "alice", "INBOX", "alice@x", NULL), 0);
}

struct seqs {
	long long got[16];
	int n;
};

static int collect_seq(void *context, long long seq, long long published_us,
		       const char *payload)
{
	struct seqs *s = context;

	s->got[s->n++] = seq;
	return 0;
}

static void test_items_trim(void **state)
{
	struct temp_store *f = *state;
	struct seqs s = { .n = 0 };

	for (long long i = 1; i <= 8; i++)
		assert_int_equal(items_put(f->store, "a", "INBOX", i, i, "<p/>", 3), 0);
	items_each_newest(f->store, "a", "INBOX", 0, collect_seq, &s);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.got[0], 8);
	assert_int_equal(s.got[2], 6);
}

static void test_journal_persists(void **state)
{
	struct temp_store *f = *state;
	const char *err;

	assert_int_equal(journal_published_seq(f->store), 0);
	assert_int_equal(journal_set_published_seq(f->store, 42), 0);
	store_close(&f->store);
	assert_int_equal(store_open(f->path, true, &f->store, &err), 0);
	assert_int_equal(journal_published_seq(f->store), 42);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tree, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_rename_moves_subtree, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_delete, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_subscriptions, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_items_trim, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_journal_persists, temp_store_setup, temp_store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
