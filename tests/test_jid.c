#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
