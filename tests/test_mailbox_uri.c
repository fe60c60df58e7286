#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "model/mailbox_uri.h"

static void check(const char *uri, char sep, const char *account,
		  const char *node, uint32_t uidvalidity, uint32_t uid)
{
	struct mailbox_uri mb;
	const char *err = NULL;

	if (mailbox_uri_parse(uri, sep, &mb, &err) < 0)
		fail_msg("%s: %s", uri, err);
	if (account == NULL)
		assert_null(mb.account);
	else
		assert_string_equal(mb.account, account);
	if (node == NULL)
		assert_null(mb.node);
	else
		assert_string_equal(mb.node, node);
	assert_int_equal(mb.uidvalidity, uidvalidity);
	assert_int_equal(mb.uid, uid);
	mailbox_uri_clear(&mb);
}

static void test_unix_separator(void **state)
{
	check("imap://mail.example.org/user/alice;UIDVALIDITY=17", '/', "alice", "INBOX", 17, 0);
	check("imap://mail.example.org/user/alice/Lists/xmpp;UIDVALIDITY=5", '/', "alice",
	      "INBOX/Lists/xmpp", 5, 0);
	check("imap://h/user/alice;UIDVALIDITY=17/;UID=42", '/', "alice", "INBOX", 17, 42);
}

static void test_dot_separator(void **state)
{
	check("imap://h/user.alice;UIDVALIDITY=1", '.', "alice", "INBOX", 1, 0);
	check("imap://h/user.alice.Sub.Deep;UIDVALIDITY=1/;UID=3", '.', "alice",
	      "INBOX/Sub/Deep", 1, 3);
	/* the separator is configured, not guessed: with '/' this is a shared
	 * folder "user.archive", with '.' a shared "user/x" (whose / is escaped) */
	check("imap://h/user.archive/2024;UIDVALIDITY=1", '/', "", "user.archive/2024", 1, 0);
	check("imap://h/user/x.y;UIDVALIDITY=1", '.', "", "user%2Fx/y", 1, 0);
	/* with '.' as separator a '/' is an ordinary character in a level */
	check("imap://h/user.alice.a%2Fb;UIDVALIDITY=1", '.', "alice", "INBOX/a%2Fb", 1, 0);
}

/* RFC 5092 with the owner in the authority (the generic source, Dovecot):
 * names in the owner's personal namespace, with or without the INBOX
 * prefix, map to the same nodes as Cyrus's admin namespace. */
static void test_personal_namespace(void **state)
{
	check("imap://alice@h/INBOX;UIDVALIDITY=9", '/', "alice", "INBOX", 9, 0);
	check("imap://alice@h/inbox/Sub;UIDVALIDITY=9/;UID=4", '/', "alice",
	      "INBOX/Sub", 9, 4);
	check("imap://alice@h/Sent/2026;UIDVALIDITY=9", '/', "alice",
	      "INBOX/Sent/2026", 9, 0);
	check("imap://alice@h/INBOX.Sub;UIDVALIDITY=9", '.', "alice", "INBOX/Sub", 9, 0);
	check("imap://al%40ice;AUTH=*@h/INBOXES;UIDVALIDITY=1", '/', "al@ice",
	      "INBOX/INBOXES", 1, 0);
	check("imap://alice@h/My%20F%C3%BCr/a%2Fb", '.', "alice",
	      "INBOX/My F\xc3\xbcr%2Fa%2Fb", 0, 0);
}

static void test_encoding(void **state)
{
	check("imap://h/user/alice/My%20Folder;UIDVALIDITY=2", '/', "alice",
	      "INBOX/My Folder", 2, 0);
	check("imap://h/user/alice/Entw%C3%BCrfe;UIDVALIDITY=2", '/', "alice",
	      "INBOX/Entw\xc3\xbcrfe", 2, 0);
	check("imap://h/user/alice/100%25;UIDVALIDITY=2", '/', "alice", "INBOX/100%25", 2, 0);
}

static void test_shared_and_server(void **state)
{
	check("imap://h/Shared/Team;UIDVALIDITY=9", '/', "", "Shared/Team", 9, 0);
	check("imap://h/Shared.Team;UIDVALIDITY=9", '.', "", "Shared/Team", 9, 0);
	check("imap://alice@mail.example.org/", '/', "alice", NULL, 0, 0);
	check("imap://mail.example.org", '/', NULL, NULL, 0, 0);
}

static void test_rejects(void **state)
{
	static const char *const bad[] = {
		"http://h/user/alice",
		"imap://h/user/alice/%ZZ",
		"imap://h/user/alice/%C3",           /* truncated UTF-8 */
		"imap://h/user/alice/%C0%AF",        /* overlong */
		"imap://h/user/alice/a%00b",         /* NUL */
		"imap://h/user/alice/a%0Ab",         /* control character */
		"imap://h/user//x",
		"imap://h/user/alice;UIDVALIDITY=x",
		"imap://h/user/alice;UIDVALIDITY=99999999999",
		"imap://h/user/alice//x",
		"imap://@h/INBOX",                   /* empty owner */
		"imap://alice@h/INBOX//x",
		"imap://alice@h/Sub//x",
		"imap://al%2Fice@h/INBOX",           /* the separator in the owner */
		NULL,
	};
	struct mailbox_uri mb;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = NULL;

		if (mailbox_uri_parse(bad[i], '/', &mb, &err) == 0)
			fail_msg("accepted %s", bad[i] != NULL ? bad[i] : "NULL");
		assert_non_null(err);
	}
}

/* mailbox_uri_build is the inverse of mailbox_uri_parse, also for the
 * inputs the fuzzer found (tests/fuzz/regressions/mailbox_uri). */
static void test_build_round_trip(void **state)
{
	static const struct { const char *uri; char sep; } cases[] = {
		{ "imap://h/user/alice/A%20B/%C3%BC;UIDVALIDITY=9", '/' },
		{ "imap://h/user.alice.a%2Fb.100%25;UIDVALIDITY=9", '.' },
		{ "imap://h/user/a%2525", '/' },
		{ "imap://localhost/user.archive/2024", '/' },
		{ "imap://localhost/user/x.y", '.' },
		{ "imap://h/Shared/Team", '/' },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mailbox_uri a, b;
		const char *err;
		char *built;

		assert_int_equal(mailbox_uri_parse(cases[i].uri, cases[i].sep, &a, &err), 0);
		built = mailbox_uri_build("h", a.account, a.node, cases[i].sep, a.uidvalidity);
		assert_non_null(built);
		if (mailbox_uri_parse(built, cases[i].sep, &b, &err) < 0)
			fail_msg("%s -> %s: %s", cases[i].uri, built, err);
		assert_string_equal(a.account, b.account);
		assert_string_equal(a.node, b.node);
		assert_int_equal(a.uidvalidity, b.uidvalidity);
		free(built);
		mailbox_uri_clear(&a);
		mailbox_uri_clear(&b);
	}
}

static void test_node_valid(void **state)
{
	assert_true(mailbox_uri_node_valid("INBOX"));
	assert_true(mailbox_uri_node_valid("INBOX/a b/c"));
	assert_false(mailbox_uri_node_valid(""));
	assert_false(mailbox_uri_node_valid("/INBOX"));
	assert_false(mailbox_uri_node_valid("INBOX/"));
	assert_false(mailbox_uri_node_valid("INBOX//x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unix_separator),
		cmocka_unit_test(test_dot_separator),
		cmocka_unit_test(test_personal_namespace),
		cmocka_unit_test(test_encoding),
		cmocka_unit_test(test_shared_and_server),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_build_round_trip),
		cmocka_unit_test(test_node_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
