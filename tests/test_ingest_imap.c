/* Unit tests for the pure part of the IMAP client source
 * (src/ingest/ingest_imap_{flags,uri,box,diff}.c): flag normalization, UID sets, URLs, and the diff of
 * what the server says against what was known into RFC 5423 events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "model/event.h"
#include "ingest/ingest_imap_diff.h"
#include "ingest/ingest_imap_flags.h"
#include "ingest/ingest_imap_uri.h"
#include "model/mailbox_uri.h"

static void test_flags_normalize(void **state)
{
	(void)state;
	char *f = ingest_imap_flags_normalize("\\Seen $Label1 \\Recent \\seen \\Answered");

	assert_string_equal(f, "$Label1 \\Answered \\Seen");
	free(f);
	f = ingest_imap_flags_normalize("");
	assert_string_equal(f, "");
	free(f);
	f = ingest_imap_flags_normalize("\\Recent");
	assert_string_equal(f, "");
	free(f);
}

static void test_uidset(void **state)
{
	(void)state;
	static const uint32_t a[] = { 1, 2, 3, 7, 9, 10 };
	static const uint32_t b[] = { 42 };
	char *s = ingest_imap_uidset(a, 6);

	assert_string_equal(s, "1:3,7,9:10");
	free(s);
	s = ingest_imap_uidset(b, 1);
	assert_string_equal(s, "42");
	free(s);
}

static void uri_roundtrip(const char *node, char sep, const char *want)
{
	char *uri = ingest_imap_uri("mail.example.org", "alice", node, sep, 5, 7);
	struct mailbox_uri mb;
	const char *err = NULL;

	assert_non_null(uri);
	assert_string_equal(uri, want);
	if (mailbox_uri_parse(uri, sep, &mb, &err) < 0)
		fail_msg("%s: %s", uri, err);
	assert_string_equal(mb.account, "alice");
	assert_string_equal(mb.node, node);
	assert_int_equal(mb.uidvalidity, 5);
	assert_int_equal(mb.uid, 7);
	mailbox_uri_clear(&mb);
	free(uri);
}

static void test_uri(void **state)
{
	(void)state;
	char *uri;

	uri_roundtrip("INBOX", '/', "imap://alice@mail.example.org/INBOX;UIDVALIDITY=5/;UID=7");
	uri_roundtrip("INBOX/Sub b", '/',
		      "imap://alice@mail.example.org/INBOX/Sub%20b;UIDVALIDITY=5/;UID=7");
	uri_roundtrip("INBOX/Entw\xc3\xbcrfe", '/',
		      "imap://alice@mail.example.org/INBOX/Entw%C3%BCrfe;UIDVALIDITY=5/;UID=7");
	uri_roundtrip("INBOX/a;b", '/',
		      "imap://alice@mail.example.org/INBOX/a%3Bb;UIDVALIDITY=5/;UID=7");
	/* a level with '/' exists only with the '.' separator */
	uri_roundtrip("INBOX/a%2Fb", '.',
		      "imap://alice@mail.example.org/INBOX.a%2Fb;UIDVALIDITY=5/;UID=7");
	assert_null(ingest_imap_uri("h", "alice", "INBOX/a%2Fb", '/', 5, 0));
	assert_null(ingest_imap_uri("h", "alice", "INBOX/a.b", '.', 5, 0));
	uri = ingest_imap_uri("h", "alice", "INBOX", '/', 0, 0);
	assert_string_equal(uri, "imap://alice@h/INBOX");
	free(uri);
}

/* msgs for a box or a FETCH answer: "uid:flags" strings */
static struct ingest_imap_msg *msgs(const char *const *spec, size_t n)
{
	struct ingest_imap_msg *m = calloc(n + 1, sizeof(*m));

	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(spec[i], ':');

		m[i].uid = (uint32_t)strtoul(spec[i], NULL, 10);
		m[i].flags = ingest_imap_flags_normalize(colon + 1);
	}
	return m;
}

static void msgs_free(struct ingest_imap_msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].flags);
	free(m);
}

static void load(struct ingest_imap_box *box, const char *const *spec, size_t n)
{
	struct ingest_imap_msg *m = msgs(spec, n);

	memset(box, 0, sizeof(*box));
	assert_int_equal(ingest_imap_box_load(box, 5, 0, 100, m, n), 0);
	free(m);   /* the strings are the box's now */
}

#define URI "imap://alice@h/INBOX;UIDVALIDITY=5"

static const char *str(json_t *ev, const char *key)
{
	const char *s = json_string_value(json_object_get(ev, key));

	return s != NULL ? s : "(none)";
}

static long long num(json_t *ev, const char *key)
{
	json_t *v = json_object_get(ev, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* Every event must be one the generic source accepts. */
static void decodable(json_t *events)
{
	for (size_t i = 0; i < json_array_size(events); i++) {
		char *text = json_dumps(json_array_get(events, i), JSON_COMPACT);
		struct event *ev = NULL;
		const char *err = NULL;

		if (event_decode(text, strlen(text), '/', &ev, &err) < 0)
			fail_msg("%s: %s", text, err);
		assert_string_equal(ev->mailbox.account, "alice");
		assert_string_equal(ev->mailbox.node, "INBOX");
		event_free(&ev);
		free(text);
	}
}

static void test_diff_complete(void **state)
{
	(void)state;
	static const char *const was[] = { "1:\\Seen", "2:", "3:\\Flagged", "4:" };
	static const char *const now[] = {
		"6:\\Deleted", "1:\\Seen", "2:\\Seen \\Flagged", "3:", "5:",
	};
	struct ingest_imap_box box;
	struct ingest_imap_msg *f = msgs(now, 5);
	struct ingest_imap_changes ch = {
		.fetched = f, .n_fetched = 5, .complete = true, .exists = 5,
		.uidnext = 7, .modseq = 120,
	};
	struct ingest_imap_delta d;
	json_t *events = json_array();

	load(&box, was, 4);
	assert_int_equal(ingest_imap_diff(&box, &ch, URI, events, &d), 0);
	decodable(events);
	assert_int_equal(json_array_size(events), 6);
	assert_string_equal(str(json_array_get(events, 0), "event"), "MessageNew");
	assert_string_equal(str(json_array_get(events, 0), "uri"), URI "/;UID=5");
	assert_string_equal(str(json_array_get(events, 1), "event"), "MessageNew");
	assert_string_equal(str(json_array_get(events, 1), "uri"), URI "/;UID=6");
	assert_string_equal(str(json_array_get(events, 2), "event"), "MessageRead");
	assert_string_equal(str(json_array_get(events, 2), "uidset"), "2");
	assert_string_equal(str(json_array_get(events, 3), "event"), "FlagsSet");
	assert_string_equal(str(json_array_get(events, 3), "uidset"), "2");
	assert_string_equal(str(json_array_get(events, 3), "flagNames"), "\\Flagged");
	assert_string_equal(str(json_array_get(events, 4), "event"), "FlagsClear");
	assert_string_equal(str(json_array_get(events, 4), "uidset"), "3");
	assert_string_equal(str(json_array_get(events, 4), "flagNames"), "\\Flagged");
	assert_string_equal(str(json_array_get(events, 5), "event"), "MessageExpunge");
	assert_string_equal(str(json_array_get(events, 5), "uidset"), "4");
	/* the counts after the change, in every event */
	for (size_t i = 0; i < 6; i++) {
		json_t *ev = json_array_get(events, i);

		assert_int_equal(num(ev, "messages"), 5);
		assert_int_equal(num(ev, "vnd.cmu.unseenMessages"), 3);
		assert_int_equal(num(ev, "uidnext"), 7);
		assert_int_equal(num(ev, "modseq"), 120);
	}
	/* the new state and what the store must record */
	assert_int_equal(box.n, 5);
	assert_int_equal(box.msgs[0].uid, 1);
	assert_int_equal(box.msgs[4].uid, 6);
	assert_string_equal(box.msgs[1].flags, "\\Flagged \\Seen");
	assert_int_equal(box.modseq, 120);
	assert_int_equal(d.n_put, 4);   /* 2, 3, 5, 6; 1 unchanged */
	assert_int_equal(d.n_gone, 1);
	assert_int_equal(d.gone[0], 4);
	ingest_imap_delta_clear(&d);
	msgs_free(f, 5);
	json_decref(events);
	ingest_imap_box_clear(&box);
}

static void test_diff_trash_and_groups(void **state)
{
	(void)state;
	static const char *const was[] = { "1:", "2:", "3:", "4:\\Seen" };
	static const char *const now[] = {
		"1:\\Flagged", "2:\\Flagged", "3:\\Flagged \\Deleted", "4:\\Seen $Junk",
	};
	struct ingest_imap_box box;
	struct ingest_imap_msg *f = msgs(now, 4);
	struct ingest_imap_changes ch = {
		.fetched = f, .n_fetched = 4, .complete = false, .exists = 4,
		.uidnext = 5, .modseq = 101,
	};
	struct ingest_imap_delta d;
	json_t *events = json_array();

	load(&box, was, 4);
	assert_int_equal(ingest_imap_diff(&box, &ch, URI, events, &d), 0);
	decodable(events);
	assert_int_equal(json_array_size(events), 3);
	assert_string_equal(str(json_array_get(events, 0), "event"), "MessageTrash");
	assert_string_equal(str(json_array_get(events, 0), "uidset"), "3");
	assert_string_equal(str(json_array_get(events, 1), "event"), "FlagsSet");
	assert_string_equal(str(json_array_get(events, 1), "uidset"), "1:3");
	assert_string_equal(str(json_array_get(events, 1), "flagNames"), "\\Flagged");
	assert_string_equal(str(json_array_get(events, 2), "event"), "FlagsSet");
	assert_string_equal(str(json_array_get(events, 2), "uidset"), "4");
	assert_string_equal(str(json_array_get(events, 2), "flagNames"), "$Junk");
	assert_int_equal(num(json_array_get(events, 0), "vnd.cmu.unseenMessages"), 3);
	ingest_imap_delta_clear(&d);
	msgs_free(f, 4);
	json_decref(events);
	ingest_imap_box_clear(&box);
}

static void test_diff_vanished(void **state)
{
	(void)state;
	static const char *const was[] = { "1:", "2:", "3:", "4:" };
	static const char *const now[] = { "2:\\Seen" };
	static const struct ingest_imap_range van[] = { { 3, 3 }, { 100, 200 } };
	struct ingest_imap_box box;
	struct ingest_imap_msg *f = msgs(now, 1);
	struct ingest_imap_changes ch = {
		.fetched = f, .n_fetched = 1, .complete = false,
		.vanished = van, .n_vanished = 2, .exists = 2,
		.uidnext = 5, .modseq = 130,
	};
	struct ingest_imap_delta d;
	json_t *events = json_array();

	load(&box, was, 4);
	/* 4 known - 1 vanished = 3, not 2: an expunge went unreported, and
	 * nothing may change before everything is fetched */
	assert_int_equal(ingest_imap_diff(&box, &ch, URI, events, &d), 1);
	assert_int_equal(json_array_size(events), 0);
	assert_int_equal(box.n, 4);
	assert_int_equal(box.modseq, 100);
	assert_string_equal(f[0].flags, "\\Seen");

	ch.exists = 3;
	assert_int_equal(ingest_imap_diff(&box, &ch, URI, events, &d), 0);
	decodable(events);
	assert_int_equal(json_array_size(events), 2);
	assert_string_equal(str(json_array_get(events, 0), "event"), "MessageRead");
	assert_string_equal(str(json_array_get(events, 1), "event"), "MessageExpunge");
	assert_string_equal(str(json_array_get(events, 1), "uidset"), "3");
	assert_int_equal(num(json_array_get(events, 1), "messages"), 3);
	assert_int_equal(num(json_array_get(events, 1), "vnd.cmu.unseenMessages"), 2);
	ingest_imap_delta_clear(&d);
	msgs_free(f, 1);
	json_decref(events);
	ingest_imap_box_clear(&box);
}

static void test_diff_nothing_and_repeat(void **state)
{
	(void)state;
	static const char *const was[] = { "1:\\Seen", "2:" };
	/* an unsolicited FETCH repeated a message; flags unchanged */
	static const char *const now[] = { "2:", "1:\\Seen", "2:" };
	struct ingest_imap_box box;
	struct ingest_imap_msg *f = msgs(now, 3);
	struct ingest_imap_changes ch = {
		.fetched = f, .n_fetched = 3, .complete = true, .exists = 2,
		.uidnext = 3,
	};
	struct ingest_imap_delta d;
	json_t *events = json_array();

	load(&box, was, 2);
	assert_int_equal(ingest_imap_diff(&box, &ch, URI, events, &d), 0);
	assert_int_equal(json_array_size(events), 0);
	assert_int_equal(d.n_put, 0);
	assert_int_equal(d.n_gone, 0);
	assert_int_equal(box.n, 2);
	assert_int_equal(box.modseq, 100);   /* 0: unchanged */
	assert_int_equal(ingest_imap_box_unseen(&box), 1);
	ingest_imap_delta_clear(&d);
	msgs_free(f, 3);
	json_decref(events);
	ingest_imap_box_clear(&box);
}

static void test_diff_mark_unread(void **state)
{
	(void)state;
	static const char *const was[] = { "1:\\Seen \\Answered" };
	static const char *const now[] = { "1:\\Answered" };
	struct ingest_imap_box box;
	struct ingest_imap_msg *f = msgs(now, 1);
	struct ingest_imap_changes ch = {
		.fetched = f, .n_fetched = 1, .complete = true, .exists = 1, .uidnext = 2,
	};
	struct ingest_imap_delta d;
	json_t *events = json_array();

	load(&box, was, 1);
	assert_int_equal(ingest_imap_diff(&box, &ch, URI, events, &d), 0);
	assert_int_equal(json_array_size(events), 1);
	assert_string_equal(str(json_array_get(events, 0), "event"), "FlagsClear");
	assert_string_equal(str(json_array_get(events, 0), "flagNames"), "\\Seen");
	assert_int_equal(num(json_array_get(events, 0), "vnd.cmu.unseenMessages"), 1);
	ingest_imap_delta_clear(&d);
	msgs_free(f, 1);
	json_decref(events);
	ingest_imap_box_clear(&box);
}

/* ---- the phases of the diff, one by one ---- */

static void test_flags_compare(void **state)
{
	(void)state;
	struct ingest_imap_flag_change fc;

	assert_int_equal(ingest_imap_flags_compare("$A \\Seen", "$B \\Deleted \\seen", &fc), 0);
	assert_false(fc.seen);          /* \Seen stayed, whatever its case */
	assert_true(fc.deleted);
	assert_string_equal(fc.added, "$B");
	assert_string_equal(fc.removed, "$A");
	ingest_imap_flag_change_clear(&fc);
	assert_int_equal(ingest_imap_flags_compare("\\Seen", "", &fc), 0);
	assert_false(fc.seen);
	assert_null(fc.added);
	assert_string_equal(fc.removed, "\\Seen");   /* mark unread */
	ingest_imap_flag_change_clear(&fc);
	assert_int_equal(ingest_imap_flags_compare("", "\\Seen", &fc), 0);
	assert_true(fc.seen);
	assert_null(fc.added);
	assert_null(fc.removed);
	ingest_imap_flag_change_clear(&fc);
}

static void test_phase_unique(void **state)
{
	(void)state;
	static const char *const f[] = { "5:\\Seen", "3:", "5:\\Seen", "1:$A", "3:" };
	struct ingest_imap_msg *m = msgs(f, 5);
	struct ingest_imap_changes ch = { .fetched = m, .n_fetched = 5 };
	struct ingest_imap_diff_work w = { 0 };

	ingest_imap_diff_unique(&ch, &w);
	assert_int_equal(w.n_fetched, 3);
	assert_int_equal(ch.n_fetched, 5);   /* the duplicates stay the caller's */
	assert_int_equal(m[0].uid, 1);
	assert_string_equal(m[0].flags, "$A");
	assert_int_equal(m[1].uid, 3);
	assert_int_equal(m[2].uid, 5);
	assert_string_equal(m[2].flags, "\\Seen");
	ingest_imap_diff_work_clear(&w);
	msgs_free(m, 5);
}

static void test_phase_adds_up(void **state)
{
	(void)state;
	static const char *const known[] = { "1:", "2:", "3:" };
	static const char *const f[] = { "3:\\Seen", "4:" };
	static const struct ingest_imap_range van[] = { { 2, 2 } };
	struct ingest_imap_box box;
	struct ingest_imap_msg *m = msgs(f, 2);
	struct ingest_imap_changes ch = { .fetched = m, .n_fetched = 2, .vanished = van,
					  .n_vanished = 1, .exists = 3 };
	struct ingest_imap_diff_work w = { 0 };

	load(&box, known, 3);
	ingest_imap_diff_unique(&ch, &w);
	/* 3 known, 2 vanished, 4 new: 3 */
	assert_true(ingest_imap_diff_adds_up(&box, &ch, &w));
	/* an expunge not reported */
	ch.exists = 2;
	assert_false(ingest_imap_diff_adds_up(&box, &ch, &w));
	/* a vanished UID listed again is not gone */
	m[0].uid = 2;
	ch.exists = 4;
	assert_true(ingest_imap_diff_adds_up(&box, &ch, &w));
	ingest_imap_diff_work_clear(&w);
	msgs_free(m, 2);
	ingest_imap_box_clear(&box);
}

static void test_phase_changed(void **state)
{
	(void)state;
	static const char *const known[] = { "1:", "2:\\Seen", "3:$A", "4:$A" };
	static const char *const f[] = { "1:\\Seen", "2:\\Seen", "3:$B", "4:$B", "9:\\Seen" };
	struct ingest_imap_box box;
	struct ingest_imap_msg *m = msgs(f, 5);
	struct ingest_imap_changes ch = { .fetched = m, .n_fetched = 5, .complete = true };
	struct ingest_imap_diff_work w = { 0 };
	struct ingest_imap_delta delta = { 0 };

	load(&box, known, 4);
	ingest_imap_diff_unique(&ch, &w);
	assert_int_equal(ingest_imap_diff_changed(&box, &ch, &w, &delta), 0);
	/* new: MessageNew only, whatever its flags */
	assert_int_equal(w.n_new, 1);
	assert_int_equal(w.new_uids[0], 9);
	/* 1 read; 3 and 4 share both their FlagsSet and their FlagsClear */
	assert_int_equal(w.n_groups, 3);
	assert_ptr_equal(w.groups[0].type, INGEST_IMAP_EVENT_READ);
	assert_int_equal(w.groups[0].n, 1);
	assert_int_equal(w.groups[0].uids[0], 1);
	assert_ptr_equal(w.groups[1].type, INGEST_IMAP_EVENT_SET);
	assert_string_equal(w.groups[1].flags, "$B");
	assert_int_equal(w.groups[1].n, 2);
	assert_ptr_equal(w.groups[2].type, INGEST_IMAP_EVENT_CLEAR);
	assert_string_equal(w.groups[2].flags, "$A");
	assert_int_equal(w.groups[2].uids[1], 4);
	/* unchanged 2 is not written again */
	assert_int_equal(delta.n_put, 4);
	assert_int_equal(delta.put[0].uid, 1);
	assert_string_equal(delta.put[0].flags, "\\Seen");
	assert_int_equal(delta.put[3].uid, 9);
	/* nothing applied yet */
	assert_int_equal(box.n, 4);
	assert_string_equal(box.msgs[0].flags, "");
	ingest_imap_delta_clear(&delta);
	ingest_imap_diff_work_clear(&w);
	msgs_free(m, 5);
	ingest_imap_box_clear(&box);
}

static void test_phase_expunged(void **state)
{
	(void)state;
	static const char *const known[] = { "1:", "2:", "3:", "7:" };
	static const char *const f[] = { "3:\\Seen" };
	static const struct ingest_imap_range van[] = { { 2, 3 }, { 7, 9 } };
	struct ingest_imap_box box;
	struct ingest_imap_msg *m = msgs(f, 1);
	struct ingest_imap_changes ch = { .fetched = m, .n_fetched = 1, .vanished = van,
					  .n_vanished = 2 };
	struct ingest_imap_diff_work w = { 0 };

	load(&box, known, 4);
	ingest_imap_diff_unique(&ch, &w);
	/* incomplete: only what VANISHED named and FETCH did not list */
	assert_int_equal(ingest_imap_diff_expunged(&box, &ch, &w), 0);
	assert_int_equal(w.n_gone, 2);
	assert_int_equal(w.gone[0], 2);
	assert_int_equal(w.gone[1], 7);
	ingest_imap_diff_work_clear(&w);
	/* complete: whatever is not listed */
	ch.complete = true;
	ingest_imap_diff_unique(&ch, &w);
	assert_int_equal(ingest_imap_diff_expunged(&box, &ch, &w), 0);
	assert_int_equal(w.n_gone, 3);
	assert_int_equal(w.gone[0], 1);
	assert_int_equal(w.gone[2], 7);
	ingest_imap_diff_work_clear(&w);
	msgs_free(m, 1);
	ingest_imap_box_clear(&box);
}

static void test_phase_apply(void **state)
{
	(void)state;
	static const char *const known[] = { "1:", "2:", "3:$A" };
	static const char *const f[] = { "3:$B", "8:" };
	static const uint32_t gone[] = { 2 };
	struct ingest_imap_box box;
	struct ingest_imap_msg *m = msgs(f, 2);
	struct ingest_imap_changes ch = { .fetched = m, .n_fetched = 2, .uidnext = 6,
					  .modseq = 200 };
	struct ingest_imap_diff_work w = { 0 };

	load(&box, known, 3);
	ingest_imap_diff_unique(&ch, &w);
	w.gone = (uint32_t *)gone;
	w.n_gone = 1;
	assert_int_equal(ingest_imap_diff_apply(&box, &ch, &w), 0);
	assert_int_equal(box.n, 3);
	assert_int_equal(box.msgs[0].uid, 1);
	assert_int_equal(box.msgs[1].uid, 3);
	assert_string_equal(box.msgs[1].flags, "$B");
	assert_int_equal(box.msgs[2].uid, 8);
	/* the flags strings were taken from the answer */
	assert_null(m[0].flags);
	assert_null(m[1].flags);
	/* a UID above the server's UIDNEXT moves it on */
	assert_int_equal(box.uidnext, 9);
	assert_int_equal(box.modseq, 200);
	w.gone = NULL;
	w.n_gone = 0;
	ingest_imap_diff_work_clear(&w);
	msgs_free(m, 2);
	ingest_imap_box_clear(&box);
}

static void test_phase_events(void **state)
{
	(void)state;
	static const char *const known[] = { "1:\\Seen", "4:" };
	static uint32_t new_uids[] = { 4 };
	static uint32_t read_uids[] = { 1 };
	static uint32_t gone[] = { 2, 3 };
	struct ingest_imap_group g = { INGEST_IMAP_EVENT_READ, NULL, read_uids, 1, 1 };
	struct ingest_imap_diff_work w = {
		.new_uids = new_uids, .n_new = 1, .groups = &g, .n_groups = 1,
		.gone = gone, .n_gone = 2,
	};
	struct ingest_imap_diff_work none = { 0 };
	struct ingest_imap_box box;
	json_t *events = json_array();

	load(&box, known, 2);
	assert_int_equal(ingest_imap_diff_events(&box, URI, &none, events), 0);
	assert_int_equal(json_array_size(events), 0);
	assert_int_equal(ingest_imap_diff_events(&box, URI, &w, events), 0);
	assert_int_equal(json_array_size(events), 3);
	assert_string_equal(str(json_array_get(events, 0), "event"), "MessageNew");
	assert_string_equal(str(json_array_get(events, 0), "uri"), URI "/;UID=4");
	assert_string_equal(str(json_array_get(events, 1), "event"), "MessageRead");
	assert_string_equal(str(json_array_get(events, 1), "uidset"), "1");
	assert_string_equal(str(json_array_get(events, 2), "event"), "MessageExpunge");
	assert_string_equal(str(json_array_get(events, 2), "uidset"), "2:3");
	for (size_t i = 0; i < 3; i++) {
		/* the box's counts as they are now, on every event */
		assert_int_equal(num(json_array_get(events, i), "messages"), 2);
		assert_int_equal(num(json_array_get(events, i), "vnd.cmu.unseenMessages"), 1);
		assert_int_equal(num(json_array_get(events, i), "uidnext"), 5);
		assert_int_equal(num(json_array_get(events, i), "modseq"), 100);
	}
	decodable(events);
	json_decref(events);
	ingest_imap_box_clear(&box);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags_normalize),
		cmocka_unit_test(test_uidset),
		cmocka_unit_test(test_uri),
		cmocka_unit_test(test_diff_complete),
		cmocka_unit_test(test_diff_trash_and_groups),
		cmocka_unit_test(test_diff_vanished),
		cmocka_unit_test(test_diff_nothing_and_repeat),
		cmocka_unit_test(test_diff_mark_unread),
		cmocka_unit_test(test_flags_compare),
		cmocka_unit_test(test_phase_unique),
		cmocka_unit_test(test_phase_adds_up),
		cmocka_unit_test(test_phase_changed),
		cmocka_unit_test(test_phase_expunged),
		cmocka_unit_test(test_phase_apply),
		cmocka_unit_test(test_phase_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
