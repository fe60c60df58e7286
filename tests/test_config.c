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
		"[component]\ndomain = d\nsecret = x\n[log]\nlevel = loud\n",
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

static struct config *load_text(const char *text)
{
	char *path = write_tmp(text);
	struct config *c = NULL;
	const char *err = NULL;

	if (config_load(path, &c, &err) < 0)
		fail_msg("%s: %s", text, err);
	unlink(path);
	return c;
}

struct seen {
	char lines[8][160];
	unsigned n;
};

static void record_change(void *context, const char *section, const char *name,
			  const char *was, const char *now, bool applied)
{
	struct seen *s = context;

	assert_true(s->n < 8);
	snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s %s %s>%s %s",
		 section, name, was, now, applied ? "live" : "restart");
}

/* What SIGHUP would do: live options move over, the rest stay and are
 * reported; secrets never appear in what is reported. */
static void test_apply_reload(void **state)
{
	struct config *live = load_text(
		"[component]\ndomain = d\nsecret = one\n"
		"[log]\nlevel = info\n[firehose]\nsubscribers = a@x:archive\n"
		"[store]\npath = /tmp/a.db\n[imap]\nacl_cache_ttl = 300\n");
	struct config *fresh = load_text(
		"[component]\ndomain = d\nsecret = two\n"
		"[log]\nlevel = debug\n[firehose]\nsubscribers =\n"
		"[store]\npath = /tmp/b.db\n[imap]\nacl_cache_ttl = 300\n"
		"[account_map]\nboss@corp.example = alice\n");
	struct seen seen = { .n = 0 };

	assert_int_equal(config_apply_reload(live, fresh, record_change, &seen), 2);
	config_free(&fresh);
	assert_string_equal(live->log_level, "debug");
	assert_string_equal(live->firehose_subscribers, "");
	assert_string_equal(live->store_path, "/tmp/a.db");
	assert_string_equal(live->component_secret, "one");
	assert_int_equal(live->account_map_count, 0);
	assert_int_equal(seen.n, 5);
	/* the table's order: [component], [firehose], [store], [log], then the map */
	assert_string_equal(seen.lines[0],
			    "component secret (set, not shown)>(set, not shown) restart");
	assert_string_equal(seen.lines[1], "firehose subscribers a@x:archive> live");
	assert_string_equal(seen.lines[2], "store path /tmp/a.db>/tmp/b.db restart");
	assert_string_equal(seen.lines[3], "log level info>debug live");
	assert_string_equal(seen.lines[4], "account_map * > restart");
	config_free(&live);
}

/* The same file again changes nothing. */
static void test_apply_reload_unchanged(void **state)
{
	static const char text[] = "[component]\ndomain = d\nsecret = s\n"
				   "[pubsub]\nheartbeat_interval = 7\n";
	struct config *live = load_text(text), *fresh = load_text(text);
	struct seen seen = { .n = 0 };

	assert_int_equal(config_apply_reload(live, fresh, record_change, &seen), 0);
	assert_int_equal(seen.n, 0);
	config_free(&fresh);
	assert_int_equal(live->heartbeat_interval, 7);
	config_free(&live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_apply_reload),
		cmocka_unit_test(test_apply_reload_unchanged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
