#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/changelog.h"
#include "model/event.h"
#include "store/journal.h"
#include "store/store.h"
#include "temp_store.h"

static const char envelope[] =
	"(\"Mon, 1 Jan 2024 00:00:00 +0000\" \"a \\\"quoted\\\" subject\" "
	"((\"Sender Name\" NIL \"Sender\" \"Example.COM\")) "
	"((NIL NIL \"sender\" \"example.com\")) ((NIL NIL \"sender\" \"example.com\")) "
	"((NIL NIL \"alice\" \"localhost\") (NIL NIL \"bob\" \"localhost\")) "
	"NIL NIL NIL \"<id-1@test>\")";


/* The way the daemon journals: the changelog is the journal's append hook. */
static void journal(struct store *store, const char *json, long long t)
{
	struct journal *j;
	struct event *ev;
	const char *err;
	long long seq;

	assert_int_equal(journal_new(store, &j, &err), 0);
	assert_int_equal(changelog_attach(j), 0);
	assert_int_equal(event_decode(json, strlen(json), '/', &ev, &err), 0);
	assert_int_equal(journal_append(j, "cyrus", ev, json, strlen(json), t, NULL, &seq), 0);
	event_free(&ev);
	journal_free(&j);
}

static void test_envelope(void **state)
{
	char *mid = changelog_envelope_message_id(envelope);
	char *addrs = changelog_envelope_addresses(envelope);

	(void)state;
	assert_string_equal(mid, "<id-1@test>");
	assert_non_null(strstr(addrs, " sender@example.com "));
	assert_non_null(strstr(addrs, " bob@localhost "));
	free(mid);
	free(addrs);
	assert_null(changelog_envelope_message_id("(garbage"));
}

static const char login[] =
	"{\"event\":\"Login\",\"uri\":\"imap://localhost\",\"user\":\"alice\",\"service\":\"imap\","
	"\"clientIP\":\"192.0.2.7\",\"clientPort\":4242,\"vnd.cmu.sessionId\":\"s1\"}";
static const char new_msg[] =
	"{\"event\":\"MessageNew\",\"uri\":\"imap://localhost/user/alice;UIDVALIDITY=9/;UID=4\","
	"\"user\":\"\",\"service\":\"lmtp\",\"vnd.cmu.envelope\":\"(NIL NIL NIL NIL NIL NIL NIL"
	" NIL NIL \\\"<m4@test>\\\")\"}";
static const char read_msg[] =
	"{\"event\":\"MessageRead\",\"uri\":\"imap://localhost/user/alice;UIDVALIDITY=9\","
	"\"uidset\":\"4\",\"user\":\"alice\",\"vnd.cmu.sessionId\":\"s1\"}";
static const char move_msg[] =
	"{\"event\":\"vnd.cmu.MessageMove\",\"uri\":\"imap://localhost/user/alice/Sub;UIDVALIDITY=11\","
	"\"oldMailboxID\":\"imap://localhost/user/alice;UIDVALIDITY=9\",\"vnd.cmu.oldUidset\":\"4\","
	"\"uidset\":\"1\",\"user\":\"alice\",\"vnd.cmu.sessionId\":\"s1\"}";
static const char expunge_msg[] =
	"{\"event\":\"MessageExpunge\",\"uri\":\"imap://localhost/user/alice/Sub;UIDVALIDITY=11\","
	"\"uidset\":\"1\",\"user\":\"alice\"}";

/* The Message-ID follows the message from its delivery through a move
 * (no midset: the uid map alone), and the session gives the client IP. */
static void test_identity_and_session(void **state)
{
	struct temp_store *f = *state;
	sqlite3_stmt *st;
	int n = 0;

	journal(f->store, login, 1);
	journal(f->store, new_msg, 2);
	journal(f->store, read_msg, 3);
	journal(f->store, move_msg, 4);
	journal(f->store, expunge_msg, 5);
	assert_int_equal(sqlite3_prepare_v2(store_db(f->store),
		"SELECT c.record FROM changelog_msgids m JOIN changelog c ON c.id = m.id"
		" WHERE m.message_id = '<m4@test>' ORDER BY c.id", -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *rec = (const char *)sqlite3_column_text(st, 0);

		n++;
		if (strstr(rec, "\"MessageRead\"") != NULL) {
			assert_non_null(strstr(rec, "\"client_ip\":\"192.0.2.7\""));
			assert_non_null(strstr(rec, "\"login_user\":\"alice\""));
		}
	}
	sqlite3_finalize(st);
	assert_int_equal(n, 4);   /* new, read, move, expunge */
}

static void verify(struct temp_store *f, const unsigned char *key, int expect_rc,
		   long long expect_bad)
{
	struct changelog_verify_result r;
	const char *err;

	assert_int_equal(changelog_verify(store_db(f->store), key, key ? 16 : 0, &r, &err),
			 expect_rc);
	assert_int_equal(r.bad_id, expect_bad);
}

static void test_tamper(void **state)
{
	struct temp_store *f = *state;

	journal(f->store, login, 1);
	journal(f->store, new_msg, 2);
	journal(f->store, read_msg, 3);
	verify(f, NULL, 0, 0);
	/* one byte of record 2 */
	assert_int_equal(sqlite3_exec(store_db(f->store),
		"UPDATE changelog SET record = replace(record, 'lmtp', 'lmtq') WHERE id = 2",
		NULL, NULL, NULL), SQLITE_OK);
	verify(f, NULL, 1, 2);
	assert_int_equal(sqlite3_exec(store_db(f->store),
		"UPDATE changelog SET record = replace(record, 'lmtq', 'lmtp') WHERE id = 2",
		NULL, NULL, NULL), SQLITE_OK);
	verify(f, NULL, 0, 0);
	/* a removed record */
	assert_int_equal(sqlite3_exec(store_db(f->store), "DELETE FROM changelog WHERE id = 2",
				      NULL, NULL, NULL), SQLITE_OK);
	verify(f, NULL, 1, 3);
}

static void test_prune_checkpoint(void **state)
{
	struct temp_store *f = *state;
	static const unsigned char key[16] = "0123456789abcdef";
	static const unsigned char other[16] = "fedcba9876543210";
	const char *err;
	long long dropped;

	journal(f->store, login, 1);
	journal(f->store, new_msg, 2);
	journal(f->store, read_msg, 300);
	assert_int_equal(changelog_prune(f->store, 100, NULL, 0, 400, &dropped, &err), -1);
	assert_int_equal(changelog_prune(f->store, 100, key, sizeof(key), 400, &dropped, &err), 0);
	assert_int_equal(dropped, 2);
	verify(f, key, 0, 0);
	verify(f, other, 1, 3);
	verify(f, NULL, 1, 3);
	/* the chain goes on after the checkpoint */
	journal(f->store, expunge_msg, 500);
	verify(f, key, 0, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_envelope),
		cmocka_unit_test_setup_teardown(test_identity_and_session, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_tamper, temp_store_setup, temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_prune_checkpoint, temp_store_setup, temp_store_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
