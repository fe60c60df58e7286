/* libFuzzer target: arbitrary event JSON all the way to the finished
 * stanza, as the publisher makes it: event_decode -> item_payload_build
 * -> item_message_build -> item_message_for (and the node-deleted
 * notification). The first byte picks the stanza bound (1-17 KiB), so
 * that long values are left out of items and notifications turn into the
 * notice. Every stanza must parse with expat, carry only characters XML
 * 1.0 allows (checked again here, apart from expat) and stay within the
 * bound. */
#include <expat.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strophe.h>

#include "model/event.h"
#include "publish/item.h"
#include "base/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static xmpp_ctx_t *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_ERROR);
	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, NULL);
	if (ctx == NULL)
		abort();
	return 0;
}

static _Noreturn void fail(const char *why, const char *text)
{
	fprintf(stderr, "fuzz_notification: %s: %s\n", why, text);
	abort();
}

/* XML 1.0 Char, decoded here without src/base/utf8.c: the filter is what is
 * under test. */
static void check_chars(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;

	for (size_t i = 0; i < len;) {
		unsigned cp, n;

		if (s[i] < 0x80) {
			cp = s[i];
			n = 0;
		} else if ((s[i] & 0xe0) == 0xc0) {
			cp = s[i] & 0x1f;
			n = 1;
		} else if ((s[i] & 0xf0) == 0xe0) {
			cp = s[i] & 0x0f;
			n = 2;
		} else if ((s[i] & 0xf8) == 0xf0) {
			cp = s[i] & 0x07;
			n = 3;
		} else {
			fail("invalid UTF-8 lead byte", text);
		}
		if (len - i <= n && n > 0)
			fail("truncated UTF-8", text);
		for (unsigned k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				fail("invalid UTF-8 continuation", text);
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000))
			fail("overlong UTF-8", text);
		if ((cp < 0x20 && cp != 0x9 && cp != 0xa && cp != 0xd) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff ||
		    cp > 0x10ffff)
			fail("a character XML 1.0 forbids", text);
		i += n + 1;
	}
}

static void check_stanza(const char *text, size_t len)
{
	XML_Parser p = XML_ParserCreate("UTF-8");

	if (p == NULL)
		abort();
	if (strlen(text) != len)
		fail("length differs from the C string", text);
	if (len > item_max_stanza())
		fail("stanza over the bound", text);
	check_chars(text, len);
	if (XML_Parse(p, text, (int)len, 1) != XML_STATUS_OK) {
		fprintf(stderr, "expat: %s at %lu\n", XML_ErrorString(XML_GetErrorCode(p)),
			(unsigned long)XML_GetCurrentByteIndex(p));
		fail("not well-formed", text);
	}
	XML_ParserFree(p);
}

/* msg addressed to `to`, checked, and cleared */
static void check_message(struct item_message *msg, const char *to)
{
	size_t len;
	char *text = item_message_for(msg, to, &len);

	if (text != NULL)
		check_stanza(text, len);
	free(text);
	item_message_clear(msg);
}

static void notify(const struct event *ev, const char *payload, long long delay_us)
{
	const char *node = ev->mailbox.node != NULL ? ev->mailbox.node : "INBOX";
	struct item_message msg;

	if (item_message_build("alice@events.localhost", node, 42, payload, delay_us,
			       &msg) == 0)
		check_message(&msg, "alice@localhost/r");
	if (item_message_build_delete("alice@events.localhost", node, &msg) == 0)
		check_message(&msg, "bob@localhost/\x01r");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct node_counts counts = { 12, 3, 40, 77 };
	struct event *ev = NULL;
	const char *error = NULL;
	char *payload;

	if (size < 1)
		return 0;
	item_set_max_stanza(1024 + (size_t)data[0] * 64);
	if (event_decode((const char *)data + 1, size - 1, '/', &ev, &error) < 0)
		return 0;
	payload = item_payload_build(ctx, ev, 42, 1700000000123456LL, &counts);
	if (payload != NULL) {
		check_chars(payload, strlen(payload));
		notify(ev, payload, 0);
		notify(ev, payload, 1700000000123456LL);
	}
	free(payload);
	event_free(&ev);
	return 0;
}
