#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/config.h"

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
		"[account_map]\nboss@corp.example = alice\n"
		"mwi-gateway.localhost = gateway\n");
	struct config *c;
	char err[CONFIG_ERROR_MAX];

	assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
	unlink(path);
	assert_string_equal(c->component_domain, "events.localhost");
	assert_int_equal(c->component_port, 5999);
	assert_int_equal(c->notify_socket_mode, 0600);
	assert_string_equal(c->shared_service, "events.localhost");
	assert_true(c->store_full_sync);
	assert_true(config_list_contains(c->suppress_events, "MailboxModseq"));
	assert_int_equal(c->account_map_count, 2);
	assert_string_equal(c->account_map[0].jid, "boss@corp.example");
	assert_string_equal(c->account_map[0].account, "alice");
	/* a component's JID is a bare domain */
	assert_string_equal(c->account_map[1].jid, "mwi-gateway.localhost");
	assert_string_equal(c->account_map[1].account, "gateway");
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
		"[component]\ndomain = d\nsecret = x\n[account_map]\na@b/res = a\n",
		"[component]\ndomain = d\nsecret = x\n[account_map]\na@b@c = a\n",
		"[component]\ndomain = d\nsecret = x\n[account_map]\n@b = a\n",
		"[component]\ndomain = d\nsecret = x\n[account_map]\nBoss@b = a\n",
		"[component]\ndomain = d\nsecret = x\n[account_map]\nb = \n",
		"[component]\ndomain = d\nsecret = x\n[imap]\ntls = ssl\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\nhost = h\n",   /* no admin_user */
		"[component]\ndomain = d\nsecret = x\n[imap]\npassword_file = /nonexistent\n",
		"[component]\ndomain = d\nsecret = x\n[log]\nlevel = loud\n",
		/* a sweep must leave sessions to ACL questions */
		"[component]\ndomain = d\nsecret = x\n[imap]\nlist_concurrency = 0\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\nmax_sessions = 4\nlist_concurrency = 4\n",
		"garbage line\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *path = write_tmp(bad[i]);
		struct config *c = NULL;
		char err[CONFIG_ERROR_MAX] = "";

		if (config_load(path, &c, err, sizeof(err)) == 0)
			fail_msg("accepted: %s", bad[i]);
		assert_true(err[0] != '\0');
		unlink(path);
	}
	{
		struct config *c;
		char err[CONFIG_ERROR_MAX];

		assert_int_equal(config_load("/nonexistent/x.conf", &c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "cannot open"));
	}
}

/* [bus]: off by default; credentials_file gives the user and password
 * (two lines); bad values and a file without a user are refused. */
static void test_bus(void **state)
{
	char creds[] = "/tmp/mps-creds-XXXXXX";
	int fd = mkstemp(creds);
	char text[512];
	struct config *c;
	char err[CONFIG_ERROR_MAX];
	char *path;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "mailpubsub\npw word\n", 20), 20);
	close(fd);
	path = write_tmp("[component]\ndomain = d\nsecret = x\n");
	assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
	unlink(path);
	assert_string_equal(c->bus_urls, "");
	assert_string_equal(c->bus_content, "none");
	assert_null(c->bus_user);
	config_free(&c);
	snprintf(text, sizeof(text), "[component]\ndomain = d\nsecret = x\n[bus]\n"
		 "urls = amqp://a amqps://b:5671\ncredentials_file = %s\ncontent = full\n", creds);
	path = write_tmp(text);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
	unlink(path);
	assert_string_equal(c->bus_user, "mailpubsub");
	assert_string_equal(c->bus_password, "pw word");
	assert_string_equal(c->bus_address, "/queue/mailpubsub");
	assert_int_equal(c->bus_window, 1000);
	assert_true(c->bus_durable);
	config_free(&c);
	static const char *const bad[] = {
		"content = everything\n", "window = 0\n", "reconnect_max = 0\n",
		"credentials_file = /nonexistent\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[component]\ndomain = d\nsecret = x\n[bus]\n"
			 "urls = amqp://a\n%s", bad[i]);
		path = write_tmp(text);
		if (config_load(path, &c, err, sizeof(err)) == 0)
			fail_msg("accepted: %s", bad[i]);
		unlink(path);
	}
	/* a credentials file whose first line is empty names no user */
	fd = open(creds, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "\npw\n", 4), 4);
	close(fd);
	snprintf(text, sizeof(text), "[component]\ndomain = d\nsecret = x\n[bus]\n"
		 "urls = amqp://a\ncredentials_file = %s\n", creds);
	path = write_tmp(text);
	assert_int_equal(config_load(path, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "user name"));
	unlink(path);
	unlink(creds);
}

static char *dump_text(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	assert_non_null(out);
	config_dump(c, out);
	fclose(out);
	return text;
}

/* --dump-config with no file: the defaults (nothing required is there,
 * so config_load refuses), each section once, required options marked,
 * and the text reads back as a configuration file. */
static void test_dump_defaults(void **state)
{
	static const char *const sections[] = {
		"component", "cyrus", "json", "delegate", "firehose", "changelog", "taps",
		"store", "pubsub", "imap", "imap_source", "accounts", "log", "control", "metrics", "account_map",
	};
	struct config *c, *again;
	char err[CONFIG_ERROR_MAX];
	char *text, *lines, *path, header[32];

	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), -1);
	assert_string_equal(err, "[component] domain is required");
	assert_int_equal(config_parse(NULL, &c, err, sizeof(err)), 0);
	text = dump_text(c);
	/* every header then starts with a newline, the first one too */
	assert_true(asprintf(&lines, "\n%s", text) > 0);
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		const char *first;

		snprintf(header, sizeof(header), "\n[%s]\n", sections[i]);
		first = strstr(lines, header);
		if (first == NULL || strstr(first + 1, header) != NULL)
			fail_msg("section [%s] not printed exactly once:\n%s", sections[i], text);
	}
	assert_int_equal(strstr(lines, "\n[") - lines, 0);
	free(lines);
	assert_non_null(strstr(text, "\n# Required.\ndomain = \n"));
	assert_non_null(strstr(text, "\n# Required unless secret_file is set.\nsecret = \n"));
	assert_non_null(strstr(text, "\n# Required with host.\nadmin_user = \n"));
	assert_non_null(strstr(text, "\nmax_unauthenticated = 32\n"));
	path = write_tmp(text);
	assert_int_equal(config_parse(path, &again, err, sizeof(err)), 0);
	unlink(path);
	assert_int_equal(again->json_auth_timeout, c->json_auth_timeout);
	assert_int_equal(again->heartbeat_interval, c->heartbeat_interval);
	assert_string_equal(again->store_path, c->store_path);
	config_free(&again);
	config_free(&c);
	free(text);
}

/* With a file: its values over the defaults, secrets hidden. */
static void test_dump_effective(void **state)
{
	char *path = write_tmp(
		"[component]\ndomain = events.example.org\nsecret = s3cret\n"
		"[pubsub]\nheartbeat_interval = 60\n[imap]\nlist_interval = 10\n"
		"[account_map]\nboss@corp.example = alice\n");
	struct config *c;
	char err[CONFIG_ERROR_MAX];
	char *text;

	assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
	unlink(path);
	text = dump_text(c);
	assert_non_null(strstr(text, "\ndomain = events.example.org\n"));
	assert_non_null(strstr(text, "\nsecret = (set, not shown)\n"));
	assert_null(strstr(text, "s3cret"));
	/* listed in the table after [imap]'s first options, printed in [pubsub] */
	assert_true(strstr(text, "\nheartbeat_interval = 60\n") < strstr(text, "\n[imap]\n"));
	assert_true(strstr(text, "\nlist_interval = 10\n") > strstr(text, "\n[imap]\n"));
	assert_true(strstr(text, "\nlist_interval = 10\n") < strstr(text, "\n[imap_source]\n"));
	assert_non_null(strstr(text, "\nshared_service = events.example.org\n"));
	assert_non_null(strstr(text, "\n[account_map]\n# bare-jid = imap-account, one per line\n"
			       "# A change needs a restart.\nboss@corp.example = alice\n"));
	free(text);
	config_free(&c);
}

static struct config *load_text(const char *text)
{
	char *path = write_tmp(text);
	struct config *c = NULL;
	char err[CONFIG_ERROR_MAX];

	if (config_load(path, &c, err, sizeof(err)) < 0)
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

/* [backends]: account patterns to IMAP servers, in file order; it
 * borrows the [imap] credentials, so it needs [imap] host. */
static void test_backends(void **state)
{
	static const char *const bad[] = {
		"[component]\ndomain = d\nsecret = x\n[backends]\nalice = b1:143\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\nhost = h\nadmin_user = a\n"
		"[backends]\nalice = b1:0\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\nhost = h\nadmin_user = a\n"
		"[backends]\nalice = b1:x\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\nhost = h\nadmin_user = a\n"
		"[backends]\nalice = [::1\n",
		"[component]\ndomain = d\nsecret = x\n[imap]\nhost = h\nadmin_user = a\n"
		"[backends]\nalice = :143\n",
	};
	struct config *c = load_text(
		"[component]\ndomain = d\nsecret = x\n[imap]\nhost = h\nadmin_user = a\n"
		"[backends]\nalice = 127.0.0.1:1143\n*@b2.example = b2.example\n"
		"bob = [::1]:2143\n");

	assert_int_equal(c->backend_count, 3);
	assert_string_equal(c->backends[0].pattern, "alice");
	assert_string_equal(c->backends[0].host, "127.0.0.1");
	assert_int_equal(c->backends[0].port, 1143);
	assert_string_equal(c->backends[1].pattern, "*@b2.example");
	assert_string_equal(c->backends[1].host, "b2.example");
	assert_int_equal(c->backends[1].port, 0);
	assert_string_equal(c->backends[2].host, "::1");
	assert_int_equal(c->backends[2].port, 2143);
	config_free(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *path = write_tmp(bad[i]);
		char err[CONFIG_ERROR_MAX];

		if (config_load(path, &c, err, sizeof(err)) == 0)
			fail_msg("accepted: %s", bad[i]);
		unlink(path);
	}
}

/* config_load refuses text with a message containing why. */
static void assert_refused(const char *text, const char *why)
{
	char *path = write_tmp(text);
	struct config *c = NULL;
	char err[CONFIG_ERROR_MAX] = "";

	if (config_load(path, &c, err, sizeof(err)) == 0)
		fail_msg("accepted: %s", text);
	unlink(path);
	if (strstr(err, why) == NULL)
		fail_msg("%s: '%s', not '%s'", text, err, why);
}

#define BUS_CONF "[component]\ndomain = d\nsecret = x\n[bus]\n"

/* [bus]: an instance produces (address, or neither key: the default
 * address), consumes (consume alone: no producer, address stays empty),
 * or both; a consume-only configuration dumps and reads back as one. */
static void test_bus_roles(void **state)
{
	struct config *c = load_text(BUS_CONF "urls = amqp://a\nconsume = /queue/front\n");
	struct config *again;
	char *text;

	(void)state;
	assert_string_equal(c->bus_consume, "/queue/front");
	assert_string_equal(c->bus_address, "");
	text = dump_text(c);
	assert_non_null(strstr(text, "\nconsume = /queue/front\n"));
	assert_non_null(strstr(text, "\naddress = \n"));
	again = load_text(text);
	assert_string_equal(again->bus_address, "");
	assert_string_equal(again->bus_consume, "/queue/front");
	free(text);
	config_free(&again);
	config_free(&c);

	c = load_text(BUS_CONF "urls = amqp://a\nconsume = /queue/front\naddress = /queue/all\n");
	assert_string_equal(c->bus_address, "/queue/all");
	assert_string_equal(c->bus_consume, "/queue/front");
	config_free(&c);
	c = load_text(BUS_CONF "urls = amqp://a\naddress = /queue/b1\n");
	assert_string_equal(c->bus_address, "/queue/b1");
	assert_string_equal(c->bus_consume, "");
	config_free(&c);
	/* an empty address names none: the default, as when left out */
	c = load_text(BUS_CONF "urls = amqp://a\naddress =\n");
	assert_string_equal(c->bus_address, "/queue/mailpubsub");
	config_free(&c);
	c = load_text(BUS_CONF);
	assert_string_equal(c->bus_urls, "");
	assert_string_equal(c->bus_address, "");
	config_free(&c);

	assert_refused(BUS_CONF "consume = /queue/front\n", "[bus] consume needs [bus] urls");
	assert_refused(BUS_CONF "address = /queue/b1\n", "[bus] address needs [bus] urls");
	assert_refused(BUS_CONF "consume = /queue/f\naddress = /queue/f\n",
		       "[bus] consume needs [bus] urls");
	assert_refused(BUS_CONF "urls = amqp://a\nconsume = /queue/f\naddress = /queue/f\n",
		       "[bus] consume must differ from [bus] address");
	/* the producer's own checks hold with consume set too */
	assert_refused(BUS_CONF "urls = amqp://a\nconsume = /queue/f\nwindow = 0\n",
		       "[bus] window must be at least 1");
	assert_refused(BUS_CONF "urls = amqp://a\nconsume = /queue/f\ncredentials_file = /nonexistent\n",
		       "cannot read /nonexistent");
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
		cmocka_unit_test(test_bus),
		cmocka_unit_test(test_bus_roles),
		cmocka_unit_test(test_dump_defaults),
		cmocka_unit_test(test_dump_effective),
		cmocka_unit_test(test_apply_reload),
		cmocka_unit_test(test_apply_reload_unchanged),
		cmocka_unit_test(test_backends),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
