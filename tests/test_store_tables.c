/* The store functions named for what they mean (README "The store
 * interface"): each table's questions and changes, on a real store in a
 * temp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/event.h"
#include "store/acl_cache.h"
#include "store/changelog.h"
#include "store/content.h"
#include "store/firehose_subs.h"
#include "store/inspect.h"
#include "store/journal.h"
#include "store/journal_query.h"
#include "store/node_tree.h"
#include "store/store.h"
#include "store/store_sql.h"
#include "store/subscription.h"
#include "store/taps.h"
#include "temp_store.h"

static long long append(struct store *store, const char *json, long long received_us)
{
	struct journal *journal;
	struct event *ev;
	const char *err;
	long long seq = 0;

	assert_int_equal(journal_new(store, &journal, &err), 0);
	/* as main does: every journaled event gets its changelog record */
	assert_int_equal(changelog_attach(journal), 0);
	assert_int_equal(event_decode(json, strlen(json), '/', &ev, &err), 0);
	assert_int_equal(journal_append(journal, "cyrus", ev, json, strlen(json), received_us,
					NULL, &seq), 0);
	event_free(&ev);
	journal_free(&journal);
	return seq;
}

#define NEW_IN(user, box) \
	"{\"event\":\"MessageNew\",\"uri\":\"imap://localhost/user/" user box \
	";UIDVALIDITY=9/;UID=4\",\"user\":\"" user "\"}"
#define RENAME_IN(user) \
	"{\"event\":\"MailboxRename\",\"uri\":\"imap://localhost/user/" user "/B;UIDVALIDITY=9\"," \
	"\"oldMailboxID\":\"imap://localhost/user/" user "/A;UIDVALIDITY=9\",\"user\":\"" user "\"}"

/* ---- the row loop ---- */

static int count_rows(void *context, sqlite3_stmt *row)
{
	(void)row;
	return ++*(int *)context == 2;
}

static void test_each_row_and_first(void **state)
{
	struct temp_store *f = *state;
	static const char sql[] = "SELECT value FROM (SELECT 1 AS value UNION SELECT 2"
				  " UNION SELECT 3) ORDER BY value DESC";
	static const char none_sql[] = "SELECT 1 WHERE 0";
	static const char bad_sql[] = "SELECT abs(-9223372036854775807 - 1)";
	long long v = 0;
	unsigned rows;
	int seen = 0;

	/* the callback stops the loop: two rows handed over, not three */
	assert_int_equal(store_each_row(f->store, store_stmt(f->store, sql), "test",
					count_rows, &seen, &rows), 0);
	assert_int_equal(rows, 2);
	assert_int_equal(store_first_i64(f->store, store_stmt(f->store, sql), "test", &v), 1);
	assert_int_equal(v, 3);
	v = 7;
	assert_int_equal(store_first_i64(f->store, store_stmt(f->store, none_sql), "test", &v), 0);
	assert_int_equal(v, 7);
	/* a step error (integer overflow) is -1, not "no rows" */
	assert_int_equal(store_first_i64(f->store, store_stmt(f->store, bad_sql), "test", &v), -1);
}

/* ---- the ACL cache ---- */

static void test_acl_cache(void **state)
{
	struct temp_store *f = *state;
	const char *err;
	char rights[16];

	assert_int_equal(acl_cache_init(f->store, &err), 0);
	assert_int_equal(acl_cache_get(f->store, "bob", "alice", "INBOX", 10, rights,
				       sizeof(rights)), 0);
	assert_int_equal(acl_cache_put(f->store, "bob", "alice", "INBOX", "lr", 100), 0);
	assert_int_equal(acl_cache_put(f->store, "bob", "alice", "INBOX/Sub", "lrs", 100), 0);
	assert_int_equal(acl_cache_put(f->store, "bob", "alice", "INBOX0", "l", 100), 0);
	assert_int_equal(acl_cache_get(f->store, "bob", "alice", "INBOX", 10, rights,
				       sizeof(rights)), 1);
	assert_string_equal(rights, "lr");
	/* expired at 100 */
	assert_int_equal(acl_cache_get(f->store, "bob", "alice", "INBOX", 100, rights,
				       sizeof(rights)), 0);
	/* the subtree goes, a sibling sharing the prefix stays */
	assert_int_equal(acl_cache_drop_mailbox(f->store, "alice", "INBOX", true), 0);
	assert_int_equal(acl_cache_get(f->store, "bob", "alice", "INBOX/Sub", 10, rights,
				       sizeof(rights)), 0);
	assert_int_equal(acl_cache_get(f->store, "bob", "alice", "INBOX0", 10, rights,
				       sizeof(rights)), 1);
	assert_int_equal(acl_cache_drop(f->store, "bob", "alice", "INBOX0"), 0);
	assert_int_equal(acl_cache_get(f->store, "bob", "alice", "INBOX0", 10, rights,
				       sizeof(rights)), 0);
	assert_int_equal(acl_cache_put(f->store, "carol", "", "Shared", "l", 100), 0);
	assert_int_equal(acl_cache_clear(f->store), 0);
	assert_int_equal(acl_cache_get(f->store, "carol", "", "Shared", 10, rights,
				       sizeof(rights)), 0);
}

/* ---- content ---- */

static void test_content(void **state)
{
	struct temp_store *f = *state;
	struct content_record rec = {
		.seq = 5, .part = "full", .size = 10, .header_size = 4,
		.sha256 = "ab", .flags = "\\Seen", .internaldate = "1-Jan-2026",
	}, got;
	const char *err;
	char *data;
	size_t len;

	assert_int_equal(content_init(f->store, &err), 0);
	assert_int_equal(content_get(f->store, 5, &got), 0);
	assert_int_equal(content_store_bytes(f->store, &rec, "A: b\n\nbody", 100), 0);
	assert_int_equal(content_get(f->store, 5, &got), 1);
	assert_string_equal(got.part, "full");
	assert_int_equal(got.size, 10);
	assert_int_equal(got.header_size, 4);
	assert_string_equal(got.sha256, "ab");
	assert_string_equal(got.flags, "\\Seen");
	assert_null(got.error);
	content_record_clear(&got);
	assert_int_equal(content_read(f->store, 5, 6, 100, &data, &len), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(data, "body", 4);
	free(data);
	assert_int_equal(content_put_error(f->store, 6, "expunged", 2, 200), 0);
	assert_int_equal(content_get(f->store, 6, &got), 1);
	assert_string_equal(got.error, "expunged");
	assert_int_equal(got.attempts, 2);
	content_record_clear(&got);
	/* stored before 150: 5 goes, 6 stays */
	assert_int_equal(content_prune(f->store, 150), 0);
	assert_int_equal(content_get(f->store, 5, &got), 0);
	assert_int_equal(content_get(f->store, 6, &got), 1);
	content_record_clear(&got);
}

/* ---- firehose subscribers ---- */

static int list_subs(void *context, const char *jid, const char *content)
{
	char *out = context;

	strcat(out, jid);
	strcat(out, "=");
	strcat(out, content);
	strcat(out, ";");
	return 0;
}

static void test_firehose_subs(void **state)
{
	struct temp_store *f = *state;
	char subid[33] = "first", content[16], listing[256] = "";
	const char *err;

	assert_int_equal(firehose_subs_init(f->store, &err), 0);
	assert_false(firehose_subs_any(f->store));
	assert_null(firehose_subs_strongest(f->store));
	assert_int_equal(firehose_subs_put(f->store, "b@x", "headers", 1, subid, sizeof(subid)), 0);
	assert_string_equal(subid, "first");
	/* again with another policy: the subscription keeps its subid */
	strcpy(subid, "second");
	assert_int_equal(firehose_subs_put(f->store, "b@x", "none", 2, subid, sizeof(subid)), 0);
	assert_string_equal(subid, "first");
	strcpy(subid, "third");
	assert_int_equal(firehose_subs_put(f->store, "a@x", "headers", 3, subid, sizeof(subid)), 0);
	assert_true(firehose_subs_any(f->store));
	assert_string_equal(firehose_subs_strongest(f->store), "headers");
	assert_int_equal(firehose_subs_get(f->store, "b@x", NULL, 0, content, sizeof(content)), 1);
	assert_string_equal(content, "none");
	assert_int_equal(firehose_subs_get(f->store, "c@x", subid, sizeof(subid), NULL, 0), 0);
	assert_int_equal(firehose_subs_each(f->store, list_subs, listing), 0);
	assert_string_equal(listing, "a@x=headers;b@x=none;");
	assert_int_equal(firehose_subs_drop(f->store, "a@x"), 1);
	assert_int_equal(firehose_subs_drop(f->store, "a@x"), 0);
	assert_null(firehose_subs_strongest(f->store));
}

/* ---- journal queries ---- */

struct seqs {
	long long got[8];
	unsigned n, stop_at;
};

static int collect_seq(void *context, const struct journal_record *rec)
{
	struct seqs *s = context;

	s->got[s->n++] = rec->seq;
	return s->n == s->stop_at;
}

static void test_journal_query(void **state)
{
	struct temp_store *f = *state;
	long long a1 = append(f->store, NEW_IN("alice", ""), 1000);
	long long b1 = append(f->store, NEW_IN("bob", ""), 2000);
	long long a2 = append(f->store, RENAME_IN("alice"), 3000);
	long long b2 = append(f->store, NEW_IN("bob", "/Sub"), 4000);
	struct seqs s = { .n = 0 };

	assert_int_equal(journal_query_prev_of_accounts(f->store, "alice carol", b2), a2);
	assert_int_equal(journal_query_prev_of_accounts(f->store, "bob", a2), b1);
	assert_int_equal(journal_query_prev_of_accounts(f->store, "carol", b2), 0);
	assert_true(journal_query_changed_after(f->store, "alice", a1, false));
	assert_true(journal_query_changed_after(f->store, "alice", a1, true));
	assert_false(journal_query_changed_after(f->store, "alice", a2, false));
	assert_true(journal_query_changed_after(f->store, "bob", b1, false));
	assert_false(journal_query_changed_after(f->store, "bob", 0, true));
	/* forward after a1, up to b2, received from 1500 to 3500 */
	assert_int_equal(journal_query_window(f->store, a1, false, b2, 1500, 3500,
					      collect_seq, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.got[0], b1);
	assert_int_equal(s.got[1], a2);
	/* backward before b2 + 1, up to a2: newest first, stopped after one */
	s = (struct seqs){ .n = 0, .stop_at = 1 };
	assert_int_equal(journal_query_window(f->store, b2 + 1, true, a2, 0, 9999,
					      collect_seq, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.got[0], a2);
}

/* ---- taps ---- */

static int list_taps(void *context, const struct tap_row *row)
{
	char *out = context;
	char one[128];

	snprintf(one, sizeof(one), "%lld:%s:%s:%s:%s;", row->tap.id, row->tap.target,
		 row->tap.reference, row->created_by, row->expired ? "expired" : "on");
	strcat(out, one);
	return 0;
}

static void test_taps(void **state)
{
	struct temp_store *f = *state;
	struct tap t1 = { 0, "alice", "agent@x", 100, 200, "W-1" };
	struct tap t2 = { 0, "bob@example.com", "agent@x other@y", 150, 400, "W-2" };
	long long id1, id2, ids[4];
	char listing[256] = "";
	unsigned n;

	assert_int_equal(taps_insert(f->store, &t1, "admin@x", 10, &id1), 0);
	assert_int_equal(taps_insert(f->store, &t2, "admin@x", 11, &id2), 0);
	assert_true(id2 > id1);
	assert_int_equal(taps_count_active(f->store, 120), 1);
	assert_int_equal(taps_count_active(f->store, 160), 2);
	assert_int_equal(taps_each_active(f->store, 300, list_taps, listing), 0);
	assert_non_null(strstr(listing, ":bob@example.com:W-2:admin@x:on;"));
	assert_null(strstr(listing, "W-1"));
	assert_int_equal(taps_ended(f->store, 250, ids, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], id1);
	assert_int_equal(taps_mark_expired(f->store, id1), 0);
	assert_int_equal(taps_ended(f->store, 250, ids, 4, &n), 0);
	assert_int_equal(n, 0);
	listing[0] = '\0';
	assert_int_equal(taps_get(f->store, id1, list_taps, listing), 1);
	assert_non_null(strstr(listing, ":alice:W-1:admin@x:expired;"));
	assert_int_equal(taps_delete(f->store, id1), 0);
	assert_int_equal(taps_get(f->store, id1, list_taps, listing), 0);
	listing[0] = '\0';
	assert_int_equal(taps_each(f->store, list_taps, listing), 0);
	assert_null(strstr(listing, "W-1"));
	assert_non_null(strstr(listing, "W-2"));
}

/* ---- counts ---- */

static void test_counts(void **state)
{
	struct temp_store *f = *state;
	struct subopts opts = { .deliver = true, .events = "MessageNew" };
	char subid[SUBSCRIPTION_SUBID_LEN + 1];
	bool created;

	assert_int_equal(node_tree_count(f->store, "alice"), 0);
	assert_int_equal(node_tree_touch(f->store, "alice", "INBOX/A/B", NULL, 0, 1), 0);
	assert_int_equal(node_tree_touch(f->store, "bob", "INBOX", NULL, 0, 1), 0);
	assert_int_equal(node_tree_count(f->store, "alice"), 3);
	assert_int_equal(subscription_count(f->store), 0);
	assert_int_equal(subscription_add(f->store, "alice", "INBOX", "c@x/r", &opts, 1,
					  subid, &created), 0);
	assert_int_equal(subscription_add(f->store, "bob", "INBOX", "c@x/r", &opts, 1,
					  subid, &created), 0);
	assert_int_equal(subscription_count(f->store), 2);
}

/* ---- read-only inspection (mailpubsubctl) ---- */

struct table {
	int headers, rows;
	char text[512];
};

static int table_row(void *context, unsigned ncols, const char *const *names,
		     const struct inspect_cell *cells)
{
	struct table *t = context;

	if (cells == NULL) {
		t->headers++;
		for (unsigned i = 0; i < ncols; i++) {
			strcat(t->text, names[i]);
			strcat(t->text, i + 1 < ncols ? "," : "|");
		}
		return 0;
	}
	t->rows++;
	for (unsigned i = 0; i < ncols; i++) {
		char one[64];

		snprintf(one, sizeof(one), "%s%s", cells[i].null ? "NULL" :
			 cells[i].integer ? "#" : "", cells[i].null ? "" : cells[i].text);
		strcat(t->text, one);
		strcat(t->text, i + 1 < ncols ? "," : "|");
	}
	return 0;
}

static int count_record(void *context, const char *record)
{
	(void)record;
	(*(int *)context)++;
	return 0;
}

static void test_inspect(void **state)
{
	struct temp_store *f = *state;
	struct subopts opts = { .deliver = true, .events = "MessageNew" };
	char subid[SUBSCRIPTION_SUBID_LEN + 1], error[256];
	struct changelog_verify_result vr;
	struct table t = { 0, 0, "" };
	struct inspect *in;
	const char *err;
	bool created;
	int records = 0;

	assert_int_equal(inspect_open("/nonexistent/dir/x.db", &in, error, sizeof(error)), -1);
	assert_true(error[0] != '\0');
	node_tree_touch(f->store, "alice", "INBOX", NULL, 0, 1);
	subscription_add(f->store, "alice", "INBOX", "c@x/r", &opts, 1, subid, &created);
	append(f->store, NEW_IN("alice", ""), 1000);
	assert_int_equal(inspect_open(f->path, &in, error, sizeof(error)), 0);
	assert_int_equal(inspect_accounts(in, table_row, &t), 0);
	assert_int_equal(t.headers, 1);
	assert_int_equal(t.rows, 1);
	assert_string_equal(t.text, "account,nodes,subscriptions|alice,#1,#1|");
	t = (struct table){ 0, 0, "" };
	/* an empty answer still has its header */
	assert_int_equal(inspect_nodes(in, "nobody", table_row, &t), 0);
	assert_int_equal(t.headers, 1);
	assert_int_equal(t.rows, 0);
	t = (struct table){ 0, 0, "" };
	assert_int_equal(inspect_subscriptions(in, "c@x", NULL, NULL, table_row, &t), 0);
	assert_int_equal(t.rows, 1);
	assert_non_null(strstr(t.text, "c@x/r,alice,INBOX,"));
	assert_int_equal(inspect_changelog_by_mailbox(in, "alice", NULL, count_record,
						      &records), 0);
	/* the MessageNew journaled above, as its changelog record */
	assert_int_equal(records, 1);
	assert_int_equal(inspect_changelog_by_mailbox(in, "bob", NULL, count_record,
						      &records), 0);
	assert_int_equal(records, 1);
	assert_int_equal(inspect_changelog_verify(in, NULL, 0, &vr, &err), 0);
	assert_int_equal(vr.records, 1);
	inspect_close(&in);
	assert_null(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_each_row_and_first, temp_store_setup,
						temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_acl_cache, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_content, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_firehose_subs, temp_store_setup,
						temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_journal_query, temp_store_setup,
						temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_taps, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_counts, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_inspect, temp_store_setup, temp_store_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
