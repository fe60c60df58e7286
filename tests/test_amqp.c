/* src/amqp/ without a broker: which broker URLs amqp_connection_new takes,
 * and a connection closed before it started frees itself (the live
 * behaviour is tests/integration/test_amqp.py's, against RabbitMQ). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <string.h>
#include <uv.h>

#include "amqp/amqp.h"

static int closed_calls;

static void on_closed(void *context)
{
	(void)context;
	closed_calls++;
}

static void no_outcome(void *context, uint64_t tag, enum amqp_outcome outcome,
		       const char *detail)
{
	(void)context; (void)tag; (void)outcome; (void)detail;
	fail_msg("an outcome without a connection");
}

static void no_message(void *context, struct amqp_delivery *delivery,
		       const struct amqp_message_in *msg)
{
	(void)context; (void)delivery; (void)msg;
	fail_msg("a message without a connection");
}

static int try_url(uv_loop_t *loop, const char *url)
{
	const char *urls[] = { url };
	struct amqp_settings set = { .urls = urls, .url_count = 1 };
	struct amqp_connection *conn = NULL;
	const char *error = NULL;
	int rc = amqp_connection_new(loop, &set, NULL, NULL, &conn, &error);

	if (rc < 0) {
		assert_non_null(error);
		assert_null(conn);
		return -1;
	}
	assert_string_equal(amqp_connection_url(conn), url);
	assert_false(amqp_connection_is_up(conn));
	closed_calls = 0;
	amqp_connection_close(&conn, on_closed, NULL);
	assert_null(conn);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(closed_calls, 1);
	return 0;
}

static void test_urls(void **state)
{
	static const char *const good[] = {
		"amqp://broker", "amqp://broker:5673", "amqp://127.0.0.1:1",
		"amqp://[::1]:5672", "amqp://broker/", "amqps://broker.example.org",
	};
	static const char *const bad[] = {
		"", "broker:5672", "http://broker", "amqp://", "amqp://:5672",
		"amqp://broker:0", "amqp://broker:65536", "amqp://broker:12x",
		"amqp://user:pw@broker", "amqp://broker/queue", "amqp://[::1",
		"amqp://broker:", "amqp://broker:123456789",
	};
	uv_loop_t loop;

	(void)state;
	uv_loop_init(&loop);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (try_url(&loop, good[i]) < 0)
			fail_msg("refused: %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (try_url(&loop, bad[i]) == 0)
			fail_msg("accepted: %s", bad[i]);
	uv_loop_close(&loop);
}

/* A sender and a receiver registered on a connection that never came up
 * report no room and are freed with it. */
static void test_links_without_connection(void **state)
{
	const char *urls[] = { "amqp://127.0.0.1:1" };
	struct amqp_settings set = { .urls = urls, .url_count = 1 };
	struct amqp_sender_settings ss = { .address = "/queue/q" };
	struct amqp_receiver_settings rs = { .source = "/queue/q" };
	struct amqp_connection *conn;
	struct amqp_sender *sender;
	struct amqp_receiver *receiver;
	struct amqp_message_out msg = { .message_id = "x", .body = "b", .body_len = 1 };
	const char *error;
	uv_loop_t loop;

	(void)state;
	uv_loop_init(&loop);
	assert_int_equal(amqp_connection_new(&loop, &set, NULL, NULL, &conn, &error), 0);
	assert_int_equal(amqp_sender_new(conn, &ss, no_outcome, NULL, NULL,
					 &sender, &error), 0);
	assert_int_equal(amqp_receiver_new(conn, &rs, no_message, NULL,
					   &receiver, &error), 0);
	assert_int_equal(amqp_sender_room(sender), 0);
	assert_int_equal(amqp_sender_send(sender, &msg, 1, &error), -1);
	assert_non_null(error);
	closed_calls = 0;
	amqp_connection_close(&conn, on_closed, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(closed_calls, 1);
	uv_loop_close(&loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_links_without_connection),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
