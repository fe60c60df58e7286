/* The pure parts of status and metrics: control requests, latency
 * histograms, refusal reasons, listen addresses, a bus connection's
 * history. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "amqp/amqp_history.h"
#include "ops/control.h"
#include "base/listen.h"
#include "base/stats.h"

static int parse(const char *text)
{
	enum control_command command = (enum control_command)-1;
	const char *error = NULL;
	int rc = control_request_parse(text, strlen(text), &command, &error);

	if (rc == 0)
		assert_int_equal(command, CONTROL_STATUS);
	else
		assert_non_null(error);
	return rc;
}

static void test_request(void **state)
{
	char big[CONTROL_MAX_REQUEST + 2];

	assert_int_equal(parse("{\"command\":\"status\"}"), 0);
	assert_int_equal(parse(" {\"command\" : \"status\"} "), 0);
	assert_int_equal(parse("{\"command\":\"stop\"}"), -1);
	assert_int_equal(parse("{\"command\":\"status\",\"x\":1}"), -1);
	assert_int_equal(parse("{\"command\":\"status\",\"command\":\"status\"}"), -1);
	assert_int_equal(parse("{\"command\":1}"), -1);
	assert_int_equal(parse("{}"), -1);
	assert_int_equal(parse("[\"status\"]"), -1);
	assert_int_equal(parse("status"), -1);
	assert_int_equal(parse("{\"command\":\"status\"} {}"), -1);
	assert_int_equal(parse(""), -1);
	/* the bound counts, even for a well-formed request padded out */
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "{\"command\":\"status\"}", 20);
	assert_int_equal(parse(big), -1);
}

static void test_histogram(void **state)
{
	struct stats_histogram h = { 0 };

	stats_histogram_observe(&h, 0.0002);   /* first bucket */
	stats_histogram_observe(&h, 0.001);    /* bounds are inclusive (le) */
	stats_histogram_observe(&h, 0.3);
	stats_histogram_observe(&h, 60);       /* above every bound: +Inf only */
	stats_histogram_observe(&h, -1);       /* a clock step: counted as 0 */
	assert_int_equal(h.count, 5);
	assert_true(h.sum > 60.30 && h.sum < 60.31);
	assert_int_equal(h.buckets[0], 2);
	assert_true(stats_bucket_bound(1) == 0.001);
	assert_int_equal(h.buckets[1], 1);
	assert_true(stats_bucket_bound(8) == 0.25 && stats_bucket_bound(9) == 0.5);
	assert_int_equal(h.buckets[9], 1);
	unsigned long long total = 0;
	for (unsigned i = 0; i < STATS_BUCKETS; i++)
		total += h.buckets[i];
	assert_int_equal(total, 4);
}

static void test_reasons(void **state)
{
	assert_int_equal(stats_reject_for_decode("invalid JSON"), STATS_REJECT_INVALID_JSON);
	assert_int_equal(stats_reject_for_decode("unknown event type"),
			 STATS_REJECT_UNKNOWN_EVENT);
	assert_int_equal(stats_reject_for_decode("missing uri"), STATS_REJECT_BAD_FIELDS);
	assert_string_equal(stats_reject_name(STATS_REJECT_WIRE_FORMAT), "wire_format");
	assert_string_equal(stats_source_name(STATS_IMAP), "imap");
}

static void test_hostport(void **state)
{
	struct sockaddr_storage ss;
	char err[128];

	assert_int_equal(listen_parse_hostport("127.0.0.1:9498", &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9498);
	assert_int_equal(listen_parse_hostport("[::1]:80", &ss, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(listen_parse_hostport("127.0.0.1", &ss, err, sizeof(err)), -1);
	assert_int_equal(listen_parse_hostport("127.0.0.1:", &ss, err, sizeof(err)), -1);
	assert_int_equal(listen_parse_hostport("127.0.0.1:70000", &ss, err, sizeof(err)), -1);
	assert_int_equal(listen_parse_hostport("127.0.0.1:80x", &ss, err, sizeof(err)), -1);
	assert_int_equal(listen_parse_hostport("localhost:80", &ss, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "numeric"));
	assert_int_equal(listen_parse_hostport(":80", &ss, err, sizeof(err)), -1);
}

/* Failed attempts before the first connection, the connection, its loss
 * and the attempts after: each counted once, the time of the last flip,
 * the last error kept until the connection is back. */
static void test_amqp_history(void **state)
{
	struct amqp_history st = { .changed_us = 100 };
	char longer[400];

	(void)state;
	amqp_history_note(&st, false, "amqp://b:5672: connection refused", 200);
	amqp_history_note(&st, false, NULL, 300);
	assert_int_equal(st.failures, 2);
	assert_int_equal(st.connects + st.disconnects, 0);
	assert_int_equal(st.changed_us, 100);         /* still down: no flip */
	assert_string_equal(st.last_error, "disconnected");
	amqp_history_note(&st, true, NULL, 400);
	assert_true(st.connected);
	assert_int_equal(st.connects, 1);
	assert_int_equal(st.changed_us, 400);
	assert_string_equal(st.last_error, "");
	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	amqp_history_note(&st, false, longer, 500);
	assert_false(st.connected);
	assert_int_equal(st.disconnects, 1);
	assert_int_equal(st.failures, 2);             /* a loss, not a failed attempt */
	assert_int_equal(st.changed_us, 500);
	assert_int_equal(strlen(st.last_error), sizeof(st.last_error) - 1);
	amqp_history_note(&st, false, "amqp:unauthorized-access: no", 600);
	assert_int_equal(st.failures, 3);
	assert_int_equal(st.disconnects, 1);
	assert_int_equal(st.changed_us, 500);
	assert_string_equal(st.last_error, "amqp:unauthorized-access: no");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_hostport),
		cmocka_unit_test(test_amqp_history),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
