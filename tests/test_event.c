#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "ingest/cyrus_wire.h"
#include "model/event.h"
#include "testdata.h"

static struct event *decode_ok(const char *json)
{
	struct event *ev = NULL;
	const char *err = NULL;

	if (event_decode(json, strlen(json), '/', &ev, &err) < 0)
		fail_msg("%s: %s", json, err);
	return ev;
}

/* Every RFC 5423 type (and the Kolab and Cyrus ones) decodes. */
static void test_every_type(void **state)
{
	for (unsigned t = 0; t < EVENT_TYPE_COUNT; t++) {
		const struct event_type_info *info = event_type_info((enum event_type)t);
		char json[512];
		struct event *ev;

		if (info->mailbox)
			snprintf(json, sizeof(json),
				 "{\"event\":\"%s\",\"uri\":\"imap://h/user/alice/X;UIDVALIDITY=3\","
				 "\"oldMailboxID\":\"imap://h/user/alice/Y;UIDVALIDITY=3\"}",
				 info->name);
		else
			snprintf(json, sizeof(json),
				 "{\"event\":\"%s\",\"uri\":\"imap://alice@h/\",\"clientIP\":\"::1\"}",
				 info->name);
		ev = decode_ok(json);
		assert_int_equal(ev->type, t);
		assert_string_equal(ev->mailbox.account, "alice");
		if (info->mailbox)
			assert_string_equal(ev->mailbox.node, "INBOX/X");
		else
			assert_null(ev->mailbox.node);
		event_free(&ev);
		assert_null(ev);
	}
}

static void test_parameters(void **state)
{
	struct event *ev = decode_ok(
		"{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/bob;UIDVALIDITY=7/;UID=12\","
		"\"messages\":4,\"vnd.cmu.unseenMessages\":2,\"modseq\":\"99\","
		"\"flagNames\":\"\\\\Seen $Junk\",\"user\":\"bob\",\"vnd.x.custom\":{\"a\":1}}");
	uint64_t v;
	char buf[32];

	assert_int_equal(ev->mailbox.uid, 12);
	assert_int_equal(ev->mailbox.uidvalidity, 7);
	assert_int_equal(event_param_u64(ev, "messages", &v), 0);
	assert_int_equal(v, 4);
	assert_int_equal(event_param_u64(ev, "modseq", &v), 0);
	assert_int_equal(v, 99);
	assert_string_equal(event_param_string(ev, "messages", buf, sizeof(buf)), "4");
	assert_string_equal(ev->acting_user, "bob");
	/* unknown vendor parameters are kept */
	assert_non_null(json_object_get(ev->json, "vnd.x.custom"));
	event_free(&ev);
}

/* Counts are 0..2^63-1: 20 digits once saturated to UINT64_MAX and were
 * published as -1. Beyond it, negative or fractional: malformed. */
static void test_counts_fit_int64(void **state)
{
	static const char *const bad[] = {
		"\"99999999999999999999\"", "\"18446744073709551615\"",
		"\"9223372036854775808\"", "\"00000000000000000000009223372036854775808\"",
		"99999999999999999999", "9223372036854775808", "-1", "\"-1\"", "2.5",
		"1.0", "1e3", "\"\"", "\" 1\"", "\"+1\"", "true", "[1]",
	};
	static const char *const names[] = { "messages", "vnd.cmu.unseenMessages" };
	char json[256];
	struct event *ev;
	uint64_t v;

	for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			const char *err = NULL;

			ev = NULL;
			snprintf(json, sizeof(json), "{\"event\":\"MessageNew\","
				 "\"uri\":\"imap://h/user/a;UIDVALIDITY=1\",\"%s\":%s}",
				 names[n], bad[i]);
			if (event_decode(json, strlen(json), '/', &ev, &err) == 0)
				fail_msg("accepted %s", json);
			assert_null(ev);
			assert_non_null(err);
		}
	}
	ev = decode_ok("{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a;UIDVALIDITY=1\","
		       "\"messages\":9223372036854775807,"
		       "\"vnd.cmu.unseenMessages\":\"0009223372036854775807\",\"modseq\":0}");
	assert_int_equal(event_param_u64(ev, "messages", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(event_param_u64(ev, "vnd.cmu.unseenMessages", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(event_param_u64(ev, "modseq", &v), 0);
	assert_true(v == 0);
	assert_int_equal(event_param_u64(ev, "uidnext", &v), -1);
	event_free(&ev);
}

static void test_rename_needs_old(void **state)
{
	static const char json[] =
		"{\"event\":\"MailboxRename\",\"uri\":\"imap://h/user/a/N;UIDVALIDITY=1\"}";
	struct event *ev = NULL;
	const char *err = NULL;

	assert_int_equal(event_decode(json, strlen(json), '/', &ev, &err), -1);
	assert_non_null(err);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"{",
		"[]",
		"{\"uri\":\"imap://h/user/a;UIDVALIDITY=1\"}",
		"{\"event\":\"NoSuchEvent\",\"uri\":\"imap://h/user/a\"}",
		"{\"event\":\"MessageNew\"}",
		"{\"event\":\"MessageNew\",\"uri\":\"imap://h/\"}",
		"{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a\",\"messages\":\"many\"}",
		"{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a\",\"messages\":-1}",
		"{\"event\":\"MessageNew\",\"uri\":5}",
		"{\"event\":\"MessageNew\",\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct event *ev = NULL;
		const char *err = NULL;

		if (event_decode(bad[i], strlen(bad[i]), '/', &ev, &err) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_null(ev);
		assert_non_null(err);
	}
}

/* Real payloads captured from Cyrus 3.6 (tests/data/cyrus/README.md). */
static void test_captured(void **state)
{
	struct testdata_file *files;
	size_t n = testdata_load(TEST_DATA_DIR "/cyrus", ".dgram", &files);
	unsigned seen[EVENT_TYPE_COUNT] = { 0 };

	assert_true(n >= 10);
	for (size_t i = 0; i < n; i++) {
		struct cyrus_wire w;
		struct event *ev;
		const char *err;
		char sep = strstr(files[i].name, "-dot") != NULL ? '.' : '/';

		if (cyrus_wire_parse(files[i].data, files[i].len, &w, &err) < 0)
			fail_msg("%s: %s", files[i].name, err);
		assert_string_equal(w.class, "EVENT");
		if (event_decode(w.message, w.message_len, sep, &ev, &err) < 0)
			fail_msg("%s: %s", files[i].name, err);
		/* the file is named after the event it holds */
		assert_non_null(strstr(files[i].name, event_type_info(ev->type)->name));
		if (event_type_info(ev->type)->mailbox) {
			assert_non_null(ev->mailbox.node);
			assert_int_equal(strncmp(ev->mailbox.node, "INBOX", 5), 0);
		}
		seen[ev->type]++;
		event_free(&ev);
	}
	assert_true(seen[EVENT_MESSAGE_NEW] > 0);
	assert_true(seen[EVENT_MESSAGE_READ] > 0);
	assert_true(seen[EVENT_MAILBOX_RENAME] > 0);
	testdata_free(files, n);
}

static struct event *decode_file(const char *name, char sep)
{
	struct testdata_file *files;
	size_t n = testdata_load(TEST_DATA_DIR "/cyrus", ".dgram", &files);
	struct event *ev = NULL;

	for (size_t i = 0; i < n; i++) {
		struct cyrus_wire w;
		const char *err;

		if (strcmp(files[i].name, name) != 0)
			continue;
		assert_int_equal(cyrus_wire_parse(files[i].data, files[i].len, &w, &err), 0);
		if (event_decode(w.message, w.message_len, sep, &ev, &err) < 0)
			fail_msg("%s: %s", name, err);
	}
	testdata_free(files, n);
	if (ev == NULL)
		fail_msg("no file %s", name);
	return ev;
}

/* The same actions under both Cyrus separators map to the same nodes. */
static void test_captured_mapping(void **state)
{
	static const struct {
		const char *file;
		enum event_type type;
		const char *node;
		const char *old_node;
		unsigned uid;
	} golden[] = {
		{ "08-MessageNew", EVENT_MESSAGE_NEW, "INBOX", NULL, 1 },
		{ "10-MessageNew", EVENT_MESSAGE_NEW, "INBOX/Sub", NULL, 1 },
		{ "24-MailboxCreate", EVENT_MAILBOX_CREATE, "INBOX/Projects", NULL, 0 },
		{ "27-MailboxRename", EVENT_MAILBOX_RENAME, "INBOX/Archive", "INBOX/Projects", 0 },
		{ "36-MailboxCreate", EVENT_MAILBOX_CREATE, "INBOX/Entw\xc3\xbcrfe", NULL, 0 },
		{ "37-MailboxCreate", EVENT_MAILBOX_CREATE,
		  "INBOX/Entw\xc3\xbcrfe/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", NULL, 0 },
		{ "39-MailboxRename", EVENT_MAILBOX_RENAME, "INBOX/\xc3\x9c" "n\xc3\xaf" "code & Co",
		  "INBOX/My Folder", 0 },
	};

	for (size_t i = 0; i < sizeof(golden) / sizeof(golden[0]); i++) {
		for (int dot = 0; dot < 2; dot++) {
			char name[64];
			struct event *ev;

			snprintf(name, sizeof(name), "%s%s.dgram", golden[i].file, dot ? "-dot" : "");
			ev = decode_file(name, dot ? '.' : '/');
			assert_int_equal(ev->type, golden[i].type);
			assert_string_equal(ev->mailbox.account, "alice");
			assert_string_equal(ev->mailbox.node, golden[i].node);
			assert_int_equal(ev->mailbox.uid, golden[i].uid);
			assert_true(ev->mailbox.uidvalidity > 0);
			if (golden[i].old_node != NULL)
				assert_string_equal(ev->old_mailbox.node, golden[i].old_node);
			event_free(&ev);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type),
		cmocka_unit_test(test_parameters),
		cmocka_unit_test(test_counts_fit_int64),
		cmocka_unit_test(test_rename_needs_old),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_captured),
		cmocka_unit_test(test_captured_mapping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
