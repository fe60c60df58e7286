/* Unit tests for the pure parts of the IMAP client: modified UTF-7 and the
 * translation between our node names and IMAP names (src/imap/imap_name.c),
 * and who is held back after failures (src/imap/imap_backoff.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_backoff.h"
#include "imap/imap_name.h"

static void enc(const char *utf8, const char *want)
{
	const char *err = NULL;
	char *out = NULL;

	if (imap_mutf7_encode(utf8, &out, &err) < 0)
		fail_msg("encode %s: %s", utf8, err);
	assert_string_equal(out, want);
	free(out);
}

static void dec(const char *mutf7, const char *want)
{
	const char *err = NULL;
	char *out = NULL;

	if (imap_mutf7_decode(mutf7, &out, &err) < 0)
		fail_msg("decode %s: %s", mutf7, err);
	assert_string_equal(out, want);
	free(out);
}

static void roundtrip(const char *utf8, const char *mutf7)
{
	enc(utf8, mutf7);
	dec(mutf7, utf8);
}

static void test_mutf7_roundtrip(void **state)
{
	(void)state;
	roundtrip("", "");
	roundtrip("INBOX", "INBOX");
	roundtrip("Entw\xc3\xbcrfe", "Entw&APw-rfe");
	roundtrip("&", "&-");
	roundtrip("a&b", "a&-b");
	roundtrip("Stra\xc3\x9f" "e & Co", "Stra&AN8-e &- Co");
	roundtrip("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-");
	/* outside the BMP: a surrogate pair */
	roundtrip("\xf0\x9f\x98\x80", "&2D3eAA-");
	/* base64 '/' is ',' in the modified alphabet */
	roundtrip("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		  "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	/* separate runs around ASCII, control characters are shifted too */
	roundtrip("\xc3\x84/\xc3\x96", "&AMQ-/&ANY-");
	roundtrip("x\x1fy", "x&AB8-y");
}

static void bad_enc(const char *utf8)
{
	const char *err = NULL;
	char *out = NULL;

	assert_int_equal(imap_mutf7_encode(utf8, &out, &err), -1);
	assert_non_null(err);
	assert_null(out);
}

static void bad_dec(const char *mutf7)
{
	const char *err = NULL;
	char *out = NULL;

	if (imap_mutf7_decode(mutf7, &out, &err) == 0)
		fail_msg("decode %s accepted: %s", mutf7, out);
	assert_non_null(err);
}

static void test_mutf7_invalid(void **state)
{
	(void)state;
	bad_enc("\xc3");              /* truncated */
	bad_enc("\xc0\x80");          /* overlong NUL */
	bad_enc("\xed\xa0\x80");      /* UTF-8 encoded surrogate */
	bad_enc("\xf4\x90\x80\x80");  /* > U+10FFFF */
	bad_dec("Entw&APw");          /* unterminated shift */
	bad_dec("&A-");               /* one base64 char is not a byte */
	bad_dec("&AP-");              /* odd number of UTF-16 bytes */
	bad_dec("&2D0-");             /* lone high surrogate */
	bad_dec("&3gA-");             /* lone low surrogate */
	bad_dec("&AAA-");             /* U+0000 */
	bad_dec("Entw\xc3\xbcrfe");   /* raw 8-bit */
	bad_dec("a&A/w-");            /* '/' is not in the modified alphabet */
}

/* Namespaces as Cyrus announces them (tests/integration shows the real
 * replies): a user with unixhierarchysep, the admin (no personal namespace),
 * altnamespace, and '.' as separator. */
static struct imap_namespaces ns_make(const char *personal, const char *other,
				      const char *shared, char sep)
{
	struct imap_namespaces ns = {
		{ personal ? strdup(personal) : NULL, sep },
		{ other ? strdup(other) : NULL, sep },
		{ shared ? strdup(shared) : NULL, sep },
		false,
	};
	return ns;
}

static void from_node(const struct imap_namespaces *ns, const char *self,
		      const char *account, const char *node, const char *want)
{
	const char *err = NULL;
	char *name = NULL;

	if (want == NULL) {
		assert_int_equal(imap_name_from_node(ns, self, account, node,
						     &name, &err), -1);
		assert_non_null(err);
		return;
	}
	if (imap_name_from_node(ns, self, account, node, &name, &err) < 0)
		fail_msg("%s/%s as %s: %s", account, node, self, err);
	assert_string_equal(name, want);
	free(name);
}

static void to_node(const struct imap_namespaces *ns, const char *self,
		    const char *account, const char *name, char sep,
		    int want_r, const char *want)
{
	const char *err = NULL;
	char *node = NULL;
	int r = imap_name_to_node(ns, self, account, name, sep, &node, &err);

	if (r != want_r)
		fail_msg("%s as %s for %s: r=%d (%s)", name, self, account, r,
			 r < 0 ? err : r == 0 ? node : "skip");
	if (want != NULL)
		assert_string_equal(node, want);
	free(node);
}

static void test_node_to_name_unix_sep(void **state)
{
	(void)state;
	struct imap_namespaces user = ns_make("INBOX/", "user/", "", '/');
	struct imap_namespaces admin = ns_make(NULL, "user/", "", '/');

	/* the owner: personal namespace */
	from_node(&user, "alice", "alice", "INBOX", "INBOX");
	from_node(&user, "alice", "alice", "INBOX/A", "INBOX/A");
	from_node(&user, "alice", "alice", "INBOX/A/B", "INBOX/A/B");
	from_node(&user, "alice", "alice", "INBOX/Entw\xc3\xbcrfe", "INBOX/Entw&APw-rfe");
	/* someone else: other users' namespace */
	from_node(&user, "bob", "alice", "INBOX", "user/alice");
	from_node(&user, "bob", "alice", "INBOX/Projects", "user/alice/Projects");
	from_node(&user, "bob", "alice", "INBOX/R&D", "user/alice/R&-D");
	/* the admin has no personal namespace, also not for itself */
	from_node(&admin, "admin", "alice", "INBOX/A", "user/alice/A");
	from_node(&admin, "admin", "admin", "INBOX", "user/admin");
	/* shared */
	from_node(&user, "bob", "", "Shared/Team", "Shared/Team");
	from_node(&admin, "admin", "", "Shared", "Shared");
	/* escapes: '%' is fine, '/' cannot be a level with '/' as separator */
	from_node(&user, "alice", "alice", "INBOX/100%25", "INBOX/100%");
	from_node(&user, "alice", "alice", "INBOX/a%2Fb", NULL);
	/* malformed nodes */
	from_node(&user, "alice", "alice", "Projects", NULL);
	from_node(&user, "alice", "alice", "INBOX//A", NULL);
	from_node(&user, "alice", "alice", "INBOX/", NULL);
	from_node(&user, "alice", "alice", "INBOX/%zz", NULL);
	from_node(&user, "alice", "alice", "INBOX/%2", NULL);
	from_node(&user, "alice", "alice", "INBOX/\xff", NULL);
	imap_namespaces_clear(&user);
	imap_namespaces_clear(&admin);
}

static void test_node_to_name_dot_sep(void **state)
{
	(void)state;
	struct imap_namespaces user = ns_make("INBOX.", "user.", "", '.');

	from_node(&user, "alice", "alice", "INBOX/A/B", "INBOX.A.B");
	from_node(&user, "bob", "alice", "INBOX/A", "user.alice.A");
	/* with '.' as separator, '/' is an ordinary character of a level */
	from_node(&user, "bob", "alice", "INBOX/a%2Fb", "user.alice.a/b");
	from_node(&user, "bob", "alice", "INBOX/a.b", NULL);
	from_node(&user, "bob", "al.ice", "INBOX", NULL);
	from_node(&user, "bob", "", "Shared/Team", "Shared.Team");
	imap_namespaces_clear(&user);
}

static void test_node_to_name_altnamespace(void **state)
{
	(void)state;
	struct imap_namespaces alt = ns_make("", "Other Users/", "Shared Folders/", '/');
	struct imap_namespaces none = ns_make("", NULL, NULL, '/');

	from_node(&alt, "alice", "alice", "INBOX", "INBOX");
	from_node(&alt, "alice", "alice", "INBOX/A/B", "A/B");
	from_node(&alt, "bob", "alice", "INBOX/A", "Other Users/alice/A");
	from_node(&alt, "bob", "", "Shared/X", "Shared Folders/Shared/X");
	/* a server without those namespaces cannot name the mailbox */
	from_node(&none, "bob", "alice", "INBOX", NULL);
	from_node(&none, "bob", "", "Shared/X", NULL);
	imap_namespaces_clear(&alt);
	imap_namespaces_clear(&none);
}

static void test_name_to_node(void **state)
{
	(void)state;
	struct imap_namespaces admin = ns_make(NULL, "user/", "", '/');
	struct imap_namespaces user = ns_make("INBOX/", "user/", "", '/');
	struct imap_namespaces dot = ns_make(NULL, "user.", "", '.');
	struct imap_namespaces alt = ns_make("", "Other Users/", "Shared Folders/", '/');

	/* what the admin's LIST returns for alice */
	to_node(&admin, "admin", "alice", "user/alice", '/', 0, "INBOX");
	to_node(&admin, "admin", "alice", "user/alice/Projects", '/', 0, "INBOX/Projects");
	to_node(&admin, "admin", "alice", "user/alice/Entw&APw-rfe", '/', 0,
		"INBOX/Entw\xc3\xbcrfe");
	to_node(&admin, "admin", "alice", "user/alice/A/B", '/', 0, "INBOX/A/B");
	to_node(&admin, "admin", "alice", "user/alice/100%", '/', 0, "INBOX/100%25");
	/* other users, prefixes of alice's name, shared: not alice's */
	to_node(&admin, "admin", "alice", "user/alicex", '/', 1, NULL);
	to_node(&admin, "admin", "alice", "user/bob/alice", '/', 1, NULL);
	to_node(&admin, "admin", "alice", "Shared/alice", '/', 1, NULL);
	to_node(&admin, "admin", "alice", "user/alice/Bad&", '/', -1, NULL);
	/* '.' separator: a '/' inside a level gets escaped */
	to_node(&dot, "admin", "alice", "user.alice.a/b.c", '.', 0, "INBOX/a%2Fb/c");
	/* the owner's own view */
	to_node(&user, "alice", "alice", "INBOX", '/', 0, "INBOX");
	to_node(&user, "alice", "alice", "INBOX/A", '/', 0, "INBOX/A");
	to_node(&user, "alice", "alice", "user/bob/A", '/', 1, NULL);
	to_node(&alt, "alice", "alice", "A/B", '/', 0, "INBOX/A/B");
	to_node(&alt, "alice", "alice", "Shared Folders/Shared/X", '/', 1, NULL);
	to_node(&alt, "bob", "alice", "Other Users/alice/A", '/', 0, "INBOX/A");
	/* shared: with an empty prefix everything but INBOX and user/ */
	to_node(&admin, "admin", "", "Shared/Team", '/', 0, "Shared/Team");
	to_node(&admin, "admin", "", "Shared", '/', 0, "Shared");
	to_node(&admin, "admin", "", "user/alice", '/', 1, NULL);
	to_node(&admin, "admin", "", "user", '/', 1, NULL);
	to_node(&user, "bob", "", "INBOX/Sub", '/', 1, NULL);
	to_node(&alt, "bob", "", "Shared Folders/Shared/X", '/', 0, "Shared/X");
	to_node(&alt, "bob", "", "Other Users/alice", '/', 1, NULL);
	imap_namespaces_clear(&admin);
	imap_namespaces_clear(&user);
	imap_namespaces_clear(&dot);
	imap_namespaces_clear(&alt);
}

/* Dovecot: NAMESPACE (("" "/")) (("shared/" "/")) NIL with
 * [imap] other_inbox_named, as tests/integration/test_sources.py sees it. */
static void test_dovecot_views(void **state)
{
	struct imap_namespaces dc = ns_make("", "shared/", NULL, '/');

	(void)state;
	dc.other_inbox_named = true;
	from_node(&dc, "alice", "alice", "INBOX", "INBOX");
	from_node(&dc, "alice", "alice", "INBOX/Sub", "Sub");
	from_node(&dc, "bob", "alice", "INBOX", "shared/alice/INBOX");
	from_node(&dc, "bob", "alice", "INBOX/Sub", "shared/alice/Sub");
	to_node(&dc, "bob", "alice", "shared/alice/INBOX", '/', 0, "INBOX");
	to_node(&dc, "bob", "alice", "shared/alice/Sub/Deep", '/', 0, "INBOX/Sub/Deep");
	to_node(&dc, "bob", "alice", "shared/alice", '/', 1, NULL);   /* \Noselect */
	to_node(&dc, "bob", "alice", "shared/alice/INBOXES", '/', 0, "INBOX/INBOXES");
	imap_namespaces_clear(&dc);
}

/* node -> name -> node gives the node back, for every view. */
static void test_roundtrip_views(void **state)
{
	(void)state;
	static const char *const nodes[] = {
		"INBOX", "INBOX/Projects", "INBOX/Entw\xc3\xbcrfe/2024",
		"INBOX/R&D", "INBOX/100%25", "INBOX/\xe6\x97\xa5\xe6\x9c\xac",
	};
	struct imap_namespaces views[] = {
		ns_make("INBOX/", "user/", "", '/'),
		ns_make(NULL, "user/", "", '/'),
		ns_make("", "Other Users/", "Shared Folders/", '/'),
	};
	static const char *const selves[] = { "alice", "bob" };

	for (size_t v = 0; v < sizeof(views) / sizeof(views[0]); v++) {
		for (size_t s = 0; s < 2; s++) {
			for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
				const char *err = NULL;
				char *name, *back;

				if (imap_name_from_node(&views[v], selves[s], "alice",
							nodes[i], &name, &err) < 0)
					fail_msg("%s: %s", nodes[i], err);
				assert_int_equal(imap_name_to_node(&views[v], selves[s],
								   "alice", name, '/',
								   &back, &err), 0);
				assert_string_equal(back, nodes[i]);
				free(name);
				free(back);
			}
		}
		imap_namespaces_clear(&views[v]);
	}
}

static void test_backoff_delay(void **state)
{
	(void)state;
	assert_int_equal(imap_backoff_delay(1), 100);
	assert_int_equal(imap_backoff_delay(2), 200);
	assert_int_equal(imap_backoff_delay(9), 25600);
	assert_int_equal(imap_backoff_delay(10), IMAP_BACKOFF_MAX_MS);
	assert_int_equal(imap_backoff_delay(4000000000u), IMAP_BACKOFF_MAX_MS);
}

/* identity is held back at now until `until` (0: not), after `failures` */
static void held(const struct imap_backoff *b, const char *identity, uint64_t now,
		 uint64_t until, unsigned failures)
{
	unsigned n = 99;

	assert_int_equal(imap_backoff_until(b, identity, now, &n), until);
	assert_int_equal(n, failures);
}

/* A refused identity is held back with a growing delay, nobody else is,
 * and a success forgets it. */
static void test_backoff_per_identity(void **state)
{
	struct imap_backoff *b = imap_backoff_new(8);
	uint64_t retry_at = 0;

	(void)state;
	assert_non_null(b);
	held(b, "carol", 1000, 0, 0);
	assert_int_equal(imap_backoff_fail(b, "carol", 1000, &retry_at), 1);
	assert_int_equal(retry_at, 1100);
	held(b, "carol", 1050, 1100, 1);
	held(b, "alice", 1050, 0, 0);
	/* may try again at 1100; fails again: twice as long */
	held(b, "carol", 1100, 0, 1);
	assert_int_equal(imap_backoff_fail(b, "carol", 1120, &retry_at), 2);
	assert_int_equal(retry_at, 1320);
	assert_int_equal(imap_backoff_fail(b, "carol", 1400, &retry_at), 3);
	assert_int_equal(retry_at, 1800);
	imap_backoff_forget(b, "carol");
	held(b, "carol", 1500, 0, 0);
	assert_int_equal(imap_backoff_fail(b, "carol", 1500, &retry_at), 1);
	/* a failure long after the backoff ended counts afresh */
	assert_int_equal(imap_backoff_fail(b, "carol", 1600, &retry_at), 2);
	assert_int_equal(imap_backoff_fail(b, "carol", 1800 + IMAP_BACKOFF_MAX_MS,
					   &retry_at), 1);
	imap_backoff_forget(b, "nobody");
	imap_backoff_free(&b);
	assert_null(b);
	imap_backoff_free(&b);
}

/* Bounded: more refused identities than the table holds push out the one
 * whose backoff ends first; the others keep theirs. */
static void test_backoff_bounded(void **state)
{
	struct imap_backoff *b = imap_backoff_new(3);
	uint64_t retry_at;

	(void)state;
	assert_null(imap_backoff_new(0));
	imap_backoff_fail(b, "a", 0, &retry_at);         /* until 100 */
	imap_backoff_fail(b, "b", 0, &retry_at);
	imap_backoff_fail(b, "b", 100, &retry_at);       /* until 300 */
	imap_backoff_fail(b, "c", 50, &retry_at);        /* until 150 */
	imap_backoff_fail(b, "d", 60, &retry_at);        /* pushes out a */
	held(b, "a", 60, 0, 0);
	held(b, "b", 60, 300, 2);
	held(b, "c", 60, 150, 1);
	held(b, "d", 60, 160, 1);
	/* a forgotten slot is reused before anyone is pushed out */
	imap_backoff_forget(b, "c");
	imap_backoff_fail(b, "e", 70, &retry_at);
	held(b, "b", 70, 300, 2);
	held(b, "d", 70, 160, 1);
	held(b, "e", 70, 170, 1);
	imap_backoff_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mutf7_roundtrip),
		cmocka_unit_test(test_mutf7_invalid),
		cmocka_unit_test(test_node_to_name_unix_sep),
		cmocka_unit_test(test_node_to_name_dot_sep),
		cmocka_unit_test(test_node_to_name_altnamespace),
		cmocka_unit_test(test_name_to_node),
		cmocka_unit_test(test_roundtrip_views),
		cmocka_unit_test(test_dovecot_views),
		cmocka_unit_test(test_backoff_delay),
		cmocka_unit_test(test_backoff_per_identity),
		cmocka_unit_test(test_backoff_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
