#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authz/authz.h"
#include "fake_imap.h"

struct fixture {
	char dir[64], db[96], conf[96];
	struct config *config;
	struct store *store;
	struct authz *authz;
	enum authz_result last;
	unsigned answers;
};

static struct fixture *current;

static int setup_with(void **state, bool with_imap)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *err;
	char cerr[CONFIG_ERROR_MAX];
	FILE *c;

	strcpy(f->dir, "/tmp/mps-authz-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/db", f->dir);
	snprintf(f->conf, sizeof(f->conf), "%s/conf", f->dir);
	c = fopen(f->conf, "w");
	fprintf(c, "[component]\ndomain = events.localhost\nsecret = s\n"
		   "[accounts]\njid_domains = localhost example.org\n"
		   "[account_map]\nboss@corp.example = alice\n");
	fclose(c);
	assert_int_equal(config_load(f->conf, &f->config, cerr, sizeof(cerr)), 0);
	assert_int_equal(store_open(f->db, false, &f->store, &err), 0);
	/* the fake stands in for the client: any non-NULL pointer will do */
	assert_int_equal(authz_new(f->config, f->store,
				   with_imap ? (struct imap_client *)f : NULL,
				   &f->authz, &err), 0);
	memset(&fake_imap, 0, sizeof(fake_imap));
	current = f;
	*state = f;
	return 0;
}

static int setup_imap(void **state) { return setup_with(state, true); }
static int setup_owner_only(void **state) { return setup_with(state, false); }

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	authz_free(&f->authz);
	store_close(&f->store);
	config_free(&f->config);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void answered(void *context, enum authz_result result)
{
	struct fixture *f = context;

	f->last = result;
	f->answers++;
}

static enum authz_result check(struct fixture *f, const char *jid,
			       const char *account, const char *node)
{
	unsigned before = f->answers;

	authz_check(f->authz, jid, account, node, answered, f);
	assert_int_equal(f->answers, before + 1);   /* exactly once */
	return f->last;
}

/* authz_identity(jid) is want. */
static void expect_identity(struct fixture *f, const char *jid, const char *want)
{
	char *id = authz_identity(f->authz, jid);

	assert_non_null(id);
	assert_string_equal(id, want);
	free(id);
}

static void test_identity_rules(void **state)
{
	struct fixture *f = *state;

	expect_identity(f, "alice@localhost/phone", "alice");
	expect_identity(f, "bob@example.org", "bob");
	/* the table wins over the domain rule */
	expect_identity(f, "boss@corp.example/x", "alice");
	expect_identity(f, "d.smith-2_x@localhost", "d.smith-2_x");
	assert_null(authz_identity(f->authz, "mallory@evil.example"));
	assert_null(authz_identity(f->authz, "localhost"));
	assert_null(authz_identity(f->authz, "not a jid@@"));
}

/* No JID names another account: escapes are not undone and what an IMAP
 * server would trim, fold, split or match as a pattern is refused. */
static void test_identity_refusals(void **state)
{
	struct fixture *f = *state;
	static const char *const refused[] = {
		"alice\\20@localhost",        /* "alice " once unescaped */
		"\\20alice@localhost",
		"alice\\40localhost@localhost",
		"user\\2falice@localhost",
		"alice\\5c20@localhost",
		"ALICE@localhost", "Alice@localhost",
		"alice+x@localhost", "alice%@localhost", "al*@localhost",
		"%@localhost", "*@localhost", ".alice@localhost", "-x@localhost",
		"al ice@localhost", "al\tice@localhost", "j\xc3\xb6rg@localhost",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@localhost",
		/* [imap] admin_user, in any case */
		"mailpubsub@localhost", "mailpubsub@example.org/r",
	};

	free(f->config->imap_admin_user);
	f->config->imap_admin_user = strdup("MailPubSub");
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		char *id = authz_identity(f->authz, refused[i]);

		if (id != NULL)
			fail_msg("%s -> %s", refused[i], id);
	}
	/* refused before the store is asked, and logged as such */
	fake_imap.result = IMAP_OK;
	fake_imap.rights = "lr";
	assert_int_equal(check(f, "alice\\20@localhost", "alice", "INBOX"), AUTHZ_DENIED);
	assert_int_equal(check(f, "mailpubsub@localhost", "alice", "INBOX"), AUTHZ_DENIED);
	assert_int_equal(fake_imap.calls, 0);
}

/* The server's other admins are refused like admin_user: the defaults,
 * a configured list in any case and with identity_domain, and only the
 * table reaches them. */
static void test_identity_reserved(void **state)
{
	struct fixture *f = *state;
	static const char *const defaults[] = {
		"cyrus@localhost", "admin@example.org/r", "root@localhost",
		"postmaster@localhost", "mailpubsub@localhost",
	};

	fake_imap.result = IMAP_OK;
	fake_imap.rights = "la";
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		assert_null(authz_identity(f->authz, defaults[i]));
		assert_int_equal(check(f, defaults[i], "alice", "INBOX"), AUTHZ_DENIED);
	}
	assert_int_equal(fake_imap.calls, 0);
	expect_identity(f, "cyrusx@localhost", "cyrusx");

	free(f->config->reserved_identities);
	f->config->reserved_identities = strdup("CyrAdm  ops@mail.example.org");
	assert_null(authz_identity(f->authz, "cyradm@localhost"));
	expect_identity(f, "cyrus@localhost", "cyrus");
	expect_identity(f, "ops@localhost", "ops");
	free(f->config->identity_domain);
	f->config->identity_domain = strdup("mail.example.org");
	assert_null(authz_identity(f->authz, "ops@localhost"));
	assert_null(authz_identity(f->authz, "cyradm@example.org"));

	free(f->config->account_map[0].account);
	f->config->account_map[0].account = strdup("cyradm");
	expect_identity(f, "boss@corp.example", "cyradm");
}

/* With the '.' separator a dot would split the name into levels. */
static void test_identity_separator(void **state)
{
	struct fixture *f = *state;

	free(f->config->hierarchy_separator);
	f->config->hierarchy_separator = strdup(".");
	assert_null(authz_identity(f->authz, "d.smith@localhost"));
	expect_identity(f, "d_smith@localhost", "d_smith");
}

/* Only [account_map] reaches what the domain rule refuses, the admin
 * and components (a bare domain JID) included. */
static void test_identity_map_exceptions(void **state)
{
	struct fixture *f = *state;

	free(f->config->imap_admin_user);
	f->config->imap_admin_user = strdup("admin");
	expect_identity(f, "boss@corp.example", "alice");
	free(f->config->account_map[0].jid);
	f->config->account_map[0].jid = strdup("mwi-gateway.localhost");
	expect_identity(f, "mwi-gateway.localhost", "alice");
	expect_identity(f, "mwi-gateway.localhost/any", "alice");
	assert_null(authz_identity(f->authz, "admin@localhost"));
}

static void test_domain_rewrite(void **state)
{
	struct fixture *f = *state;

	free(f->config->identity_domain);
	f->config->identity_domain = strdup("mail.example.org");
	expect_identity(f, "alice@example.org/r", "alice@mail.example.org");
	/* the explicit table is taken as written */
	expect_identity(f, "boss@corp.example", "alice");
	/* the admin in its virtual domain is refused like the bare one */
	free(f->config->imap_admin_user);
	f->config->imap_admin_user = strdup("mailpubsub@mail.example.org");
	assert_null(authz_identity(f->authz, "mailpubsub@example.org"));
}

static void test_owner_only(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(f, "alice@localhost", "alice", "INBOX"), AUTHZ_GRANTED);
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX"), AUTHZ_DENIED);
	assert_int_equal(check(f, "mallory@evil.example", "alice", "INBOX"), AUTHZ_DENIED);
	assert_int_equal(check(f, "alice@localhost", "", "Shared"), AUTHZ_DENIED);
	assert_int_equal(fake_imap.calls, 0);
}

static void test_rights_decide(void **state)
{
	struct fixture *f = *state;
	static const struct { const char *rights; enum authz_result want; } cases[] = {
		{ "lrswipkxtecdan", AUTHZ_GRANTED },
		{ "lr", AUTHZ_GRANTED },
		{ "l", AUTHZ_DENIED },
		{ "r", AUTHZ_DENIED },
		{ "", AUTHZ_DENIED },
	};

	fake_imap.result = IMAP_OK;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fake_imap.rights = cases[i].rights;
		authz_invalidate(f->authz, "alice", "INBOX/P", false);
		assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), cases[i].want);
	}
	assert_string_equal(fake_imap.last_identity, "bob");
	assert_string_equal(fake_imap.last_mailbox, "alice/INBOX/P");
	/* unmapped JIDs never reach the store */
	fake_imap.calls = 0;
	assert_int_equal(check(f, "mallory@evil.example", "alice", "INBOX/P"), AUTHZ_DENIED);
	assert_int_equal(fake_imap.calls, 0);
}

/* [backends]: an account's rights are asked of the server holding it, the
 * [imap] one for accounts no pattern matches. */
static void test_backends_route(void **state)
{
	struct fixture *f = *state;
	char b1, b2;     /* stand-ins: only their addresses matter */
	struct imap_backend list[] = {
		{ "alice", (struct imap_client *)&b1 },
		{ "*@b2.example", (struct imap_client *)&b2 },
	};
	struct imap_backends backends = { .list = list, .count = 2 };

	authz_set_backends(f->authz, &backends);
	fake_imap.result = IMAP_OK;
	fake_imap.rights = "lr";
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX"), AUTHZ_GRANTED);
	assert_ptr_equal(fake_imap.last_client, &b1);
	assert_int_equal(check(f, "bob@localhost", "carol@b2.example", "INBOX"),
			 AUTHZ_GRANTED);
	assert_ptr_equal(fake_imap.last_client, &b2);
	assert_int_equal(check(f, "bob@localhost", "dave", "INBOX"), AUTHZ_GRANTED);
	assert_ptr_equal(fake_imap.last_client, f);
	authz_set_backends(f->authz, NULL);
}

static void test_cache(void **state)
{
	struct fixture *f = *state;

	fake_imap.result = IMAP_OK;
	fake_imap.rights = "lr";
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_GRANTED);
	assert_int_equal(check(f, "bob@localhost/other", "alice", "INBOX/P"), AUTHZ_GRANTED);
	assert_int_equal(fake_imap.calls, 1);
	/* per identity and per mailbox */
	assert_int_equal(check(f, "carol@localhost", "alice", "INBOX/P"), AUTHZ_GRANTED);
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/Q"), AUTHZ_GRANTED);
	assert_int_equal(fake_imap.calls, 3);
	/* an ACL change on the node drops its answers, not the sibling's */
	fake_imap.rights = "l";
	authz_invalidate(f->authz, "alice", "INBOX/P", false);
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_DENIED);
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/Q"), AUTHZ_GRANTED);
	assert_int_equal(fake_imap.calls, 4);
	/* a subtree invalidation (rename, delete) reaches descendants only */
	check(f, "bob@localhost", "alice", "INBOX/P/Sub");
	check(f, "bob@localhost", "alice", "INBOX/P0");
	fake_imap.calls = 0;
	authz_invalidate(f->authz, "alice", "INBOX/P", true);
	check(f, "bob@localhost", "alice", "INBOX/P");
	check(f, "bob@localhost", "alice", "INBOX/P/Sub");
	check(f, "bob@localhost", "alice", "INBOX/P0");
	assert_int_equal(fake_imap.calls, 2);
}

static void subscribe_answered(struct fixture *f, enum authz_result want)
{
	unsigned before = f->answers;

	authz_check_request(f->authz, "bob@localhost", "alice", "INBOX/P",
			    answered, f);
	assert_int_equal(f->answers, before + 1);
	assert_int_equal(f->last, want);
}

/* A subscribe asks again when the cache says no (the grant may be ahead
 * of its AclChange event); a cached yes stands, for every kind of check. */
static void test_subscribe_asks_again_if_denied(void **state)
{
	struct fixture *f = *state;

	fake_imap.result = IMAP_OK;
	fake_imap.rights = "l";
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_DENIED);
	assert_int_equal(fake_imap.calls, 1);
	/* SETACL done, its event not yet seen: the cache still says no */
	fake_imap.rights = "lr";
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_DENIED);
	assert_int_equal(fake_imap.calls, 1);
	subscribe_answered(f, AUTHZ_GRANTED);
	assert_int_equal(fake_imap.calls, 2);
	/* the fresh answer is cached for the others */
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_GRANTED);
	subscribe_answered(f, AUTHZ_GRANTED);
	assert_int_equal(fake_imap.calls, 2);
}

static void invalidate_now(void)
{
	authz_invalidate(current->authz, "alice", "INBOX/P", false);
}

/* An AclChange arriving while the store is asked: the answer may describe
 * the old ACL, so it is asked again rather than cached. */
static void test_change_while_asking(void **state)
{
	struct fixture *f = *state;

	fake_imap.result = IMAP_OK;
	fake_imap.rights = "lr";
	fake_imap.during_call = invalidate_now;
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_GRANTED);
	assert_int_equal(fake_imap.calls, 2);
}

static void test_fail_closed(void **state)
{
	struct fixture *f = *state;

	fake_imap.result = IMAP_TEMPFAIL;
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_TEMPFAIL);
	/* not cached: asked again */
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_TEMPFAIL);
	assert_int_equal(fake_imap.calls, 2);
	/* NO (no such mailbox, or not even l) is a definite no, and cached */
	fake_imap.result = IMAP_NO;
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_DENIED);
	assert_int_equal(check(f, "bob@localhost", "alice", "INBOX/P"), AUTHZ_DENIED);
	assert_int_equal(fake_imap.calls, 3);
}

static void test_account_listing(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(f, "alice@localhost", "alice", NULL), AUTHZ_GRANTED);
	assert_int_equal(check(f, "bob@localhost", "alice", NULL), AUTHZ_DENIED);
	assert_int_equal(fake_imap.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_rules, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_backends_route, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_identity_refusals, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_identity_reserved, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_identity_separator, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_identity_map_exceptions, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_domain_rewrite, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_owner_only, setup_owner_only, teardown),
		cmocka_unit_test_setup_teardown(test_rights_decide, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_asks_again_if_denied,
						setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_change_while_asking, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_fail_closed, setup_imap, teardown),
		cmocka_unit_test_setup_teardown(test_account_listing, setup_imap, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
