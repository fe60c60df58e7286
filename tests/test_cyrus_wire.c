#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "ingest/cyrus_wire.h"

#define DG(s) s, sizeof(s) - 1

static void test_event_datagram(void **state)
{
	static const char dg[] = "pubsub\0EVENT\0\0\0\0" "0\0" "{\"event\":\"MessageNew\"}\0";
	struct cyrus_wire w;
	const char *err;

	assert_int_equal(cyrus_wire_parse(DG(dg), &w, &err), 0);
	assert_string_equal(w.method, "pubsub");
	assert_string_equal(w.class, "EVENT");
	assert_string_equal(w.user, "");
	assert_int_equal(w.nopt, 0);
	assert_string_equal(w.message, "{\"event\":\"MessageNew\"}");
	assert_int_equal(w.message_len, strlen(w.message));
	assert_null(w.fname);
}

static void test_options_and_fname(void **state)
{
	static const char dg[] = "log\0MAIL\0high\0bob\0INBOX\0" "2\0a\0b\0" "msg\0" "file\0";
	struct cyrus_wire w;
	const char *err;

	assert_int_equal(cyrus_wire_parse(DG(dg), &w, &err), 0);
	assert_int_equal(w.nopt, 2);
	assert_string_equal(w.options[0], "a");
	assert_string_equal(w.options[1], "b");
	assert_string_equal(w.message, "msg");
	assert_string_equal(w.fname, "file");
}

static void test_malformed(void **state)
{
	static const struct { const char *buf; size_t len; } bad[] = {
		{ "", sizeof("") - 1 },
		{ "pubsub", sizeof("pubsub") - 1 },                                  /* no NUL */
		{ "pubsub\0EVENT\0\0\0\0", sizeof("pubsub\0EVENT\0\0\0\0") - 1 },                  /* no count */
		{ "pubsub\0EVENT\0\0\0\0x\0m\0", sizeof("pubsub\0EVENT\0\0\0\0x\0m\0") - 1 },            /* bad count */
		{ "pubsub\0EVENT\0\0\0\0" "3\0a\0m\0", sizeof("pubsub\0EVENT\0\0\0\0" "3\0a\0m\0") - 1 },      /* options run out */
		{ "pubsub\0EVENT\0\0\0\0" "0\0{}", sizeof("pubsub\0EVENT\0\0\0\0" "0\0{}") - 1 },          /* unterminated message */
		{ "pubsub\0EVENT\0\0\0\0" "0\0{}\0f\0x", sizeof("pubsub\0EVENT\0\0\0\0" "0\0{}\0f\0x") - 1 },    /* trailing garbage */
		{ "pubsub\0EVENT\0\0\0\0" "99999\0", sizeof("pubsub\0EVENT\0\0\0\0" "99999\0") - 1 },        /* count too large */
	};
	struct cyrus_wire w;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = NULL;

		assert_int_equal(cyrus_wire_parse(bad[i].buf, bad[i].len, &w, &err), -1);
		assert_non_null(err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_datagram),
		cmocka_unit_test(test_options_and_fname),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
