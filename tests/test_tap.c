#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>

#include "downstream/tap.h"

static void test_times_parse(void **state)
{
	(void)state;
	assert_true(tap_parse_time_us("0") == 0);
	assert_true(tap_parse_time_us("1795428000") == 1795428000LL * 1000000);
	assert_true(tap_parse_time_us("2026-11-23T10:00:00Z") == 1795428000LL * 1000000);
	assert_true(tap_parse_time_us("2026-11-23T10:00:00.25+00:00") ==
		    1795428000LL * 1000000 + 250000);
	assert_true(tap_parse_time_us("1970-01-01T00:00:00.1234567Z") == 123456);
	assert_true(tap_parse_time_us("9999-12-31T23:59:59Z") == 253402300799LL * 1000000);
	/* the largest second whose microseconds fit */
	assert_true(tap_parse_time_us("9223372036853") == 9223372036853LL * 1000000);
}

/* A huge start once overflowed a signed multiplication (undefined
 * behaviour; this test runs under UBSan in the sanitizer build). */
static void test_times_out_of_range(void **state)
{
	static const char *const bad[] = {
		"9223372036854", "9223372036854775", "9223372036854775807",
		"9223372036854775808", "99999999999999999999999999", "-1",
		"-9223372036854775808", "1969-12-31T23:59:59Z", "", "now",
		"2026-11-23T10:00:00+01:00", "12x",
	};

	(void)state;
	assert_true(tap_parse_time_us(NULL) == -1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (tap_parse_time_us(bad[i]) != -1)
			fail_msg("accepted %s", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_times_parse),
		cmocka_unit_test(test_times_out_of_range),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
