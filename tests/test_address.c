/* xmpp/address: which account a service JID names, and back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/config.h"
#include "xmpp/address.h"

static int setup(void **state)
{
	char path[] = "/tmp/mps-address-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	struct config *config;
	char err[CONFIG_ERROR_MAX];

	assert_non_null(f);
	fprintf(f, "[component]\ndomain = events.localhost\nsecret = s\n"
		   "[cyrus]\nhierarchy_separator = /\n"
		   "[pubsub]\nshared_service = shared.events.localhost\n");
	fclose(f);
	assert_int_equal(config_load(path, &config, err, sizeof(err)), 0);
	unlink(path);
	*state = config;
	return 0;
}

static int teardown(void **state)
{
	struct config *config = *state;

	config_free(&config);
	return 0;
}

static void expect_account(const struct config *c, const char *jid, const char *want)
{
	char *account = address_account_for_jid(c, jid);

	if (want == NULL) {
		assert_null(account);
		return;
	}
	assert_non_null(account);
	assert_string_equal(account, want);
	free(account);
}

static void test_account_for_jid(void **state)
{
	const struct config *c = *state;

	expect_account(c, "shared.events.localhost", "");
	expect_account(c, "shared.events.localhost/res", "");
	expect_account(c, "alice@events.localhost", "alice");
	expect_account(c, "alice@events.localhost/r", "alice");
	/* XEP-0106: an account with a domain */
	expect_account(c, "alice\\40mail.example.org@events.localhost", "alice@mail.example.org");
	/* not ours */
	expect_account(c, "alice@other.example", NULL);
	expect_account(c, "events.localhost", NULL);
	/* names a server would rewrite, or take as a LIST pattern */
	expect_account(c, "%25@events.localhost", NULL);
	expect_account(c, "%@events.localhost", NULL);
	expect_account(c, "alice\\20@events.localhost", NULL);
	expect_account(c, "Alice@events.localhost", NULL);
	expect_account(c, "a/b@events.localhost", NULL);
	expect_account(c, "", NULL);
}

static void test_is_domain(void **state)
{
	const struct config *c = *state;

	assert_true(address_is_domain(c, "events.localhost"));
	assert_true(address_is_domain(c, "events.localhost/r"));
	assert_false(address_is_domain(c, "alice@events.localhost"));
	assert_false(address_is_domain(c, "shared.events.localhost"));
	assert_false(address_is_domain(c, "other.example"));
}

static void test_jid_for_account_round_trip(void **state)
{
	const struct config *c = *state;
	static const char *const accounts[] = { "", "alice", "alice@mail.example.org" };

	for (size_t i = 0; i < sizeof(accounts) / sizeof(accounts[0]); i++) {
		char *jid = address_jid_for_account(c, accounts[i]);

		assert_non_null(jid);
		expect_account(c, jid, accounts[i]);
		free(jid);
	}
	{
		char *jid = address_jid_for_account(c, "alice@mail.example.org");

		assert_string_equal(jid, "alice\\40mail.example.org@events.localhost");
		free(jid);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_account_for_jid),
		cmocka_unit_test(test_is_domain),
		cmocka_unit_test(test_jid_for_account_round_trip),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
