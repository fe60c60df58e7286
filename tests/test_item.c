#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "item.h"

static void test_payload(void **state)
{
	static const char json[] =
		"{\"event\":\"FlagsSet\",\"uri\":\"imap://h/user/alice/A%26B;UIDVALIDITY=7/;UID=3\","
		"\"uidset\":\"3\",\"flagNames\":\"\\\\Flagged $Work\",\"messages\":5,"
		"\"vnd.cmu.unseenMessages\":1,\"vnd.cmu.sessionId\":\"s<1>\",\"vnd.x\":[1,2]}";
	xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, NULL);
	struct event *ev;
	const char *err;
	char *xml;

	assert_int_equal(event_decode(json, strlen(json), '/', &ev, &err), 0);
	xml = item_payload_build(ctx, ev, 42, 1700000000123456LL, NULL);
	assert_non_null(xml);
	assert_int_equal(strncmp(xml, "<mailbox-event ", 15), 0);
	assert_non_null(strstr(xml, "xmlns=\"" ITEM_NS "\""));
	assert_non_null(strstr(xml, "type=\"FlagsSet\""));
	assert_non_null(strstr(xml, "seq=\"42\""));
	assert_non_null(strstr(xml, "received=\"2023-11-14T22:13:20.123Z\""));
	assert_non_null(strstr(xml, "node=\"INBOX/A&amp;B\""));
	assert_non_null(strstr(xml, "uid=\"3\""));
	assert_non_null(strstr(xml, "<unseen>1</unseen>"));
	assert_non_null(strstr(xml, "<messages>5</messages>"));
	assert_non_null(strstr(xml, "<flag>\\Flagged</flag><flag>$Work</flag>"));
	assert_non_null(strstr(xml, "name=\"vnd.cmu.sessionId\">s&lt;1&gt;</extension>"));
	assert_non_null(strstr(xml, "json=\"true\""));
	assert_non_null(strstr(xml, ">[1,2]</extension>"));
	free(xml);
	event_free(&ev);
	xmpp_ctx_free(ctx);
}

static void test_message_splice(void **state)
{
	struct item_message msg;
	size_t len;
	char *text;

	assert_int_equal(item_message_build("alice@events.localhost", "INBOX/a'b", 9,
					    "<p/>", 0, &msg), 0);
	text = item_message_for(&msg, "alice@localhost/r&1", &len);
	assert_string_equal(text,
		"<message from='alice@events.localhost' type='headline' "
		"to='alice@localhost/r&amp;1' id='mps-9'><event xmlns='"
		PUBSUB_EVENT_NS "'><items node='INBOX/a&apos;b'><item id='9'><p/></item>"
		"</items></event></message>");
	assert_int_equal(len, strlen(text));
	free(text);
	item_message_clear(&msg);
	assert_int_equal(item_message_build("s", "n", 9, "<p/>", 1000000, &msg), 0);
	text = item_message_for(&msg, "x", &len);
	assert_non_null(strstr(text, "<delay xmlns='urn:xmpp:delay' stamp='1970-01-01T00:00:01.000Z'/>"));
	free(text);
	item_message_clear(&msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload),
		cmocka_unit_test(test_message_splice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
