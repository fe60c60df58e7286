#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/event.h"
#include "publish/item.h"
#include "base/utf8.h"
#include "base/timefmt.h"
#include "base/xml_escape.h"

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

static void test_utf8_xml_clean(void **state)
{
	/* tab/LF/CR stay; C0 controls, NUL, U+FFFE, U+FFFF, a surrogate
	 * encoded in UTF-8, a lone continuation byte and a truncated
	 * sequence each become one U+FFFD per offending byte or character */
	static const char in[] = "a\tb\nc\rd\x01" "e\x00" "f\xef\xbf\xbe" "g\xef\xbf\xbf"
				 "h\xed\xa0\x80" "i\x80" "j\xe2\x82" "k\xf0\x9f\x98\x80";
	static const char want[] = "a\tb\nc\rd" UTF8_REPLACEMENT "e" UTF8_REPLACEMENT
				   "f" UTF8_REPLACEMENT "g" UTF8_REPLACEMENT
				   "h" UTF8_REPLACEMENT UTF8_REPLACEMENT UTF8_REPLACEMENT
				   "i" UTF8_REPLACEMENT "j" UTF8_REPLACEMENT UTF8_REPLACEMENT
				   "k\xf0\x9f\x98\x80";
	size_t replaced, len;
	char *out;

	(void)state;
	assert_false(utf8_xml_valid(in, sizeof(in) - 1));
	out = utf8_xml_clean(in, sizeof(in) - 1, &replaced, &len);
	assert_string_equal(out, want);
	assert_int_equal(len, strlen(want));
	assert_int_equal(replaced, 10);
	assert_true(utf8_xml_valid(out, len));
	free(out);
	assert_true(utf8_xml_valid("plain \xc3\xa9 \xef\xbf\xbd", 12));
	assert_false(utf8_xml_valid("\x7f\x0b", 2));
	assert_true(utf8_xml_valid("\x7f", 1));   /* DEL is an XML character */
}

static void test_event_strings_repaired(void **state)
{
	/* escaped controls and NUL, a lone surrogate escape (jansson alone
	 * refuses the line), U+FFFF, a raw invalid byte, a bad key */
	static const char json[] =
		"{\"event\":\"FlagsSet\",\"uri\":\"imap://h/user/alice;UIDVALIDITY=7/;UID=3\","
		"\"flagNames\":\"\\\\Seen $a\\u0001b\",\"vnd.s\":\"x\\u0000y\\ud800z\\uffff\xff\","
		"\"vnd.k\\u0007\":[\"\\u001f\",{\"\\u0002\":1}],\"vnd.pair\":\"\\ud83d\\ude00\"}";
	xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, NULL);
	struct event *ev;
	const char *err;
	char *xml;

	(void)state;
	assert_int_equal(event_decode(json, strlen(json), '/', &ev, &err), 0);
	assert_string_equal(json_string_value(json_object_get(ev->json, "vnd.s")),
			    "x" UTF8_REPLACEMENT "y" UTF8_REPLACEMENT "z" UTF8_REPLACEMENT
			    UTF8_REPLACEMENT);
	assert_string_equal(json_string_value(json_object_get(ev->json, "vnd.pair")),
			    "\xf0\x9f\x98\x80");
	assert_non_null(json_object_get(ev->json, "vnd.k" UTF8_REPLACEMENT));
	assert_int_equal(ev->repaired, 8);
	xml = item_payload_build(ctx, ev, 1, 1700000000000000LL, NULL);
	assert_non_null(xml);
	assert_true(utf8_xml_valid(xml, strlen(xml)));
	assert_non_null(strstr(xml, "<flag>$a" UTF8_REPLACEMENT "b</flag>"));
	assert_non_null(strstr(xml, "name=\"vnd.k" UTF8_REPLACEMENT "\""));
	free(xml);
	event_free(&ev);
	xmpp_ctx_free(ctx);
}

static void test_event_bad_names_refused(void **state)
{
	static const char *const bad[] = {
		"{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/alice/a%EF%BF%BE;UIDVALIDITY=1\"}",
		"{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/alice/a%01;UIDVALIDITY=1\"}",
		"{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/alice/a\\u0001;UIDVALIDITY=1\"}",
	};
	struct event *ev = NULL;
	const char *err = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(event_decode(bad[i], strlen(bad[i]), '/', &ev, &err), -1);
		assert_null(ev);
		assert_non_null(err);
	}
}

static void test_payload_bounded(void **state)
{
	size_t big = 300000;
	char *json = malloc(big + 400), *xml;
	xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, NULL);
	struct event *ev;
	const char *err;
	int n;

	(void)state;
	n = sprintf(json, "{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/alice;"
		    "UIDVALIDITY=7/;UID=3\",\"messages\":4,\"vnd.small\":\"kept\",\"vnd.big\":\"");
	memset(json + n, 'x', big);
	strcpy(json + n + big, "\"}");
	item_set_max_stanza(65536);
	assert_int_equal(event_decode(json, strlen(json), '/', &ev, &err), 0);
	xml = item_payload_build(ctx, ev, 5, 1700000000000000LL, NULL);
	assert_non_null(xml);
	assert_true(strlen(xml) <= item_max_payload());
	/* libstrophe writes attributes in no fixed order */
	assert_non_null(strstr(xml, "<omitted "));
	assert_non_null(strstr(xml, "name=\"vnd.big\""));
	assert_non_null(strstr(xml, "size=\"300000\""));
	assert_non_null(strstr(xml, ">kept</extension>"));
	assert_non_null(strstr(xml, "<messages>4</messages>"));
	free(xml);
	event_free(&ev);
	free(json);
	xmpp_ctx_free(ctx);
	item_set_max_stanza(ITEM_DEFAULT_MAX_STANZA);
}

static void test_notification_notice(void **state)
{
	char *payload = malloc(50001), *text;
	struct item_message msg;
	size_t len;

	(void)state;
	strcpy(payload, "<p>");
	memset(payload + 3, 'y', 49990);
	strcpy(payload + 49993, "</p>");
	item_set_max_stanza(40000);
	assert_int_equal(item_message_build("alice@events.localhost", "INBOX\x01", 17,
					    payload, 0, &msg), 0);
	text = item_message_for(&msg, "alice@localhost/r", &len);
	assert_non_null(text);
	assert_true(len <= 40000);
	assert_true(item_message_is_notice(text, len));
	assert_string_equal(text,
		"<message from='alice@events.localhost' type='headline' to='alice@localhost/r'"
		" id='mps-17'><event xmlns='" PUBSUB_EVENT_NS "'><items node='INBOX"
		UTF8_REPLACEMENT "'><item id='17'/></items></event><payload-omitted xmlns='"
		ITEM_NS "' size='49997' max='40000'/></message>");
	free(text);
	item_message_clear(&msg);
	/* a small one goes whole */
	assert_int_equal(item_message_build("a@e", "INBOX", 18, "<p/>", 0, &msg), 0);
	text = item_message_for(&msg, "b@l", &len);
	assert_false(item_message_is_notice(text, len));
	free(text);
	item_message_clear(&msg);
	item_set_max_stanza(ITEM_DEFAULT_MAX_STANZA);
	free(payload);
}

static void test_escape_filters(void **state)
{
	char *e = xml_escape("a<\x01'\xef\xbf\xbf&");

	(void)state;
	assert_string_equal(e, "a&lt;" UTF8_REPLACEMENT "&apos;" UTF8_REPLACEMENT "&amp;");
	free(e);
}

static void test_timefmt(void **state)
{
	char buf[40];

	(void)state;
	timefmt_iso8601_ms(1795428000123456LL, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-23T10:00:00.123Z");
	assert_int_equal(timefmt_iso8601(1795428000999999LL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2026-11-23T10:00:00Z");
	assert_int_equal(timefmt_iso8601(0, buf, sizeof(buf)), -1);
	assert_int_equal(timefmt_iso8601(1795428000000000LL, buf, 10), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload),
		cmocka_unit_test(test_message_splice),
		cmocka_unit_test(test_utf8_xml_clean),
		cmocka_unit_test(test_event_strings_repaired),
		cmocka_unit_test(test_event_bad_names_refused),
		cmocka_unit_test(test_payload_bounded),
		cmocka_unit_test(test_notification_notice),
		cmocka_unit_test(test_escape_filters),
		cmocka_unit_test(test_timefmt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
