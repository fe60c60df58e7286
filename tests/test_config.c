#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char *write_tmp(const char *text)
{
	static char path[64];
	int fd;

	strcpy(path, "/tmp/mps-conf-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_load(void **state)
{
	char *path = write_tmp(
		"[component]\ndomain = events.localhost\nsecret = s3cret\nport = 5999\n"
		"[cyrus]\nnotify_socket = /tmp/x.sock\nsocket_mode = 0600\n"
		"[accounts]\njid_domains = localhost example.org\n"
		"[account_map]\nboss@corp.example = alice\n");
	struct config *c;
	const char *err;

	assert_int_equal(config_load(path, &c, &err), 0);
	unlink(path);
	assert_string_equal(c->component_domain, "events.localhost");
	assert_int_equal(c->component_port, 5999);
	assert_int_equal(c->notify_socket_mode, 0600);
	assert_string_equal(c->shared_service, "events.localhost");
	assert_true(c->store_full_sync);
	assert_true(config_list_contains(c->suppress_events, "MailboxModseq"));
	assert_int_equal(c->account_map_count, 1);
	assert_string_equal(c->account_map[0].jid, "boss@corp.example");
	assert_string_equal(c->account_map[0].account, "alice");
	assert_true(config_list_contains(c->jid_domains, "example.org"));
	/* the start sweep is on, in the background, two LISTs at a time */
	assert_true(c->imap_list_at_start);
	assert_int_equal(c->imap_list_concurrency, 2);
	assert_false(config_list_contains(c->jid_domains, "example"));
	config_free(&c);
	assert_null(c);
}

static void test_errors(void **state)
{
	static const char *const bad[] = {
		"[component]\nsecret = x\n",                           /* no domain */
		"[component]\ndomain = d\n",                           /* no secret */
		"[component]\ndomain = d\nsecret = x\nport = abc\n",
		"[component]\ndomain = d\nsecret = x\nbogus = 1\n",
		"[component]\ndomain = d\nsecret = x\n[store]\nfull_sync = maybe\n",
		"[component]\ndomain = d\nsecret = x\n[cyrus]\nhierarchy_separator = :\n",
		"[component]\ndomain = d\nsecret = x\n[account_map]\nnot-a-jid = a\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\ntls = ssl\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\nhost = h\n",   /* no admin_user */
		"[component]\ndomain = d\nsecret = x\n[imap]\npassword_file = /nonexistent\n",
		/* a sweep must leave sessions to ACL questions */
		"[component]\ndomain = d\nsecret = x\n[imap]\nlist_concurrency = 0\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\nmax_sessions = 4\nlist_concurrency = 4\n",
		"garbage line\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *path = write_tmp(bad[i]);
		struct config *c = NULL;
		const char *err = NULL;

		if (config_load(path, &c, &err) == 0)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(err);
		unlink(path);
	}
	{
		struct config *c;
		const char *err;

		assert_int_equal(config_load("/nonexistent/x.conf", &c, &err), -1);
		assert_non_null(strstr(err, "cannot open"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
