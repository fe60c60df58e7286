#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/jid.h"

static void expect(char *got, const char *want)
{
	if (want == NULL) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_split(void **state)
{
	expect(jid_bare("alice@localhost/phone"), "alice@localhost");
	expect(jid_bare("events.localhost"), "events.localhost");
	expect(jid_domain("alice@localhost/x/y"), "localhost");
	expect(jid_local("alice@localhost"), "alice");
	expect(jid_local("localhost"), "");
	expect(jid_bare("@localhost"), NULL);
	expect(jid_bare("a@b@c"), NULL);
	expect(jid_bare("alice@localhost/"), NULL);
	expect(jid_bare(""), NULL);
}

static void test_escape(void **state)
{
	expect(jid_escape_local("alice"), "alice");
	expect(jid_escape_local("alice@example.com"), "alice\\40example.com");
	expect(jid_escape_local("d'artagnan smith"), "d\\27artagnan\\20smith");
	expect(jid_unescape_local("alice\\40example.com"), "alice@example.com");
	expect(jid_unescape_local("a\\5cb"), "a\\b");
	/* not one of the ten sequences: left alone */
	expect(jid_unescape_local("a\\41b"), "a\\41b");
}

static void test_account_valid(void **state)
{
	static const char *const valid[] = {
		"alice", "a", "d.smith", "x_y-z9", "0day",
		"alice@example.org", "alice@mail.example-2.org",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 64 */
	};
	static const char *const invalid[] = {
		"", "alice ", " alice", "Alice", "ALICE", "al ice", "alice\t",
		"alice\x01", "alice%", "al*ce", "*", "%", "alice+x", "user/alice",
		"alice\\20", "\xc3\xa9", ".alice", "-alice", "_alice",
		"alice@", "@example.org", "alice@example..org", "alice@.org",
		"alice@example.org.", "alice@Example.org", "alice@ex ample.org",
		"a@b@c", "alice@ex/ample",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 65 */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		if (!jid_account_valid(valid[i], '/'))
			fail_msg("refused: '%s'", valid[i]);
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		if (jid_account_valid(invalid[i], '/'))
			fail_msg("accepted: '%s'", invalid[i]);
	}
	/* the hierarchy separator splits a name into levels */
	assert_false(jid_account_valid("d.smith", '.'));
	assert_true(jid_account_valid("d_smith@example.org", '.'));
	/* every escaped service localpart that unescapes to an account
	 * round-trips: the service JID names exactly that account */
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		char *local = jid_escape_local(valid[i]);
		char *back = jid_unescape_local(local);

		assert_string_equal(back, valid[i]);
		free(local);
		free(back);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_account_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
