/* The bus source's body handling: the event the front journals is the
 * backend's, without the keys the producer added, with its reception
 * time; anything else is refused before the sink sees it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/bus_in.h"

static char *event_of(const char *body, long long *received_us)
{
	size_t len = 0;
	char *out = bus_in_event_json(body, strlen(body), &len, received_us);

	if (out != NULL)
		assert_int_equal(len, strlen(out));
	return out;
}

static void test_producer_keys_removed(void **state)
{
	long long us;
	char *out = event_of(
		"{\"event\":\"MessageNew\",\"uri\":\"imap://localhost/user/alice;UIDVALIDITY=7;UID=3\","
		"\"messageSize\":120,\"vnd.cmu.unseenMessages\":2,\"account\":\"alice\","
		"\"node\":\"INBOX\",\"uidvalidity\":7,\"seq\":42,"
		"\"received\":\"2026-12-07T21:20:39.123Z\",\"source\":\"cyrus\","
		"\"instance\":\"b1\",\"content\":{\"part\":\"full\",\"data\":\"eA==\"}}",
		&us);

	(void)state;
	assert_non_null(out);
	assert_string_equal(out,
		"{\"event\":\"MessageNew\",\"uri\":\"imap://localhost/user/alice;UIDVALIDITY=7;UID=3\","
		"\"messageSize\":120,\"vnd.cmu.unseenMessages\":2}");
	assert_true(us == 1796678439123000LL);
	free(out);
}

static void test_received_forms(void **state)
{
	long long us;
	char *out;

	(void)state;
	out = event_of("{\"event\":\"Login\",\"received\":1796678439}", &us);
	assert_true(us == 1796678439000000LL);
	free(out);
	out = event_of("{\"event\":\"Login\",\"received\":1796678439123}", &us);
	assert_true(us == 1796678439123000LL);
	free(out);
	out = event_of("{\"event\":\"Login\",\"received\":\"yesterday\"}", &us);
	assert_non_null(out);
	assert_true(us == 0);   /* the caller takes now */
	free(out);
	out = event_of("{\"event\":\"Login\",\"received\":\"2026-12-07T21:20:39+02:00\"}", &us);
	assert_true(us == 0);   /* only UTC is what a producer writes */
	free(out);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"", "[]", "\"MessageNew\"", "{}", "{\"event\":3}",
		"{\"event\":\"MessageNew\"", "{\"event\":\"A\",\"event\":\"B\"}",
		"{\"journaled\":\"raw text the producer could not decode\"}",
	};
	long long us = 5;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = 0;

		if (bus_in_event_json(bad[i], strlen(bad[i]), &len, &us) != NULL)
			fail_msg("accepted: %s", bad[i]);
		assert_true(us == 0);
	}
	/* a NUL inside the body is not the end of it */
	{
		size_t len = 0;
		static const char nul[] = "{\"event\":\"Login\"}\0trailing";

		assert_null(bus_in_event_json(nul, sizeof(nul) - 1, &len, &us));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_producer_keys_removed),
		cmocka_unit_test(test_received_forms),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
