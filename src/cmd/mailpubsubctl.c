/* mailpubsubctl: the running daemon's status (over its control socket),
 * what the store holds (accounts, nodes, subscriptions), the e-Discovery
 * changelog from the command line (verify the chain, per-message /
 * per-user / per-mailbox histories, retention) and interception taps.
 * Reads mailpubsubd's configuration for the store; queries open it
 * read-only, which SQLite's WAL mode allows while the daemon runs, and
 * which works when the daemon is down too. See mailpubsubctl(8). */
#include "build-config.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "store/changelog.h"
#include "base/config.h"
#include "base/log.h"
#include "store/store.h"
#include "downstream/tap.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

struct args {
	const char *config_path;
	const char *message_id;
	const char *user;
	const char *account;
	const char *node;
	const char *events;
	const char *from;
	const char *to;
	const char *before;
	const char *target;
	const char *authorities;
	const char *reference;
	const char *id;
	const char *jid;
	bool json;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mailpubsubctl [-c config] status [--json]\n"
		"       mailpubsubctl [-c config] accounts [--json]\n"
		"       mailpubsubctl [-c config] nodes --account A [--json]\n"
		"       mailpubsubctl [-c config] subscriptions (--jid J | --account A [--node N]) [--json]\n"
		"       mailpubsubctl [-c config] changelog verify\n"
		"       mailpubsubctl [-c config] changelog message --message-id ID\n"
		"       mailpubsubctl [-c config] changelog user --user U [--from T] [--to T] [--events E,E]\n"
		"       mailpubsubctl [-c config] changelog mailbox --account A [--node N]\n"
		"       mailpubsubctl [-c config] changelog prune --before T\n"
		"       mailpubsubctl [-c config] tap add --target T --authority JID[,JID]\n"
		"                     [--from T] --to T --reference REF\n"
		"       mailpubsubctl [-c config] tap list\n"
		"       mailpubsubctl [-c config] tap remove --id N\n"
		"Times: ISO 8601 UTC (2026-11-23T10:00:00Z) or seconds since the epoch.\n");
}

static long long parse_time_us(const char *text)
{
	return tap_parse_time_us(text);
}

static sqlite3 *open_readonly(const struct config *config)
{
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(config->store_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "mailpubsubctl: cannot open %s: %s\n", config->store_path,
			db != NULL ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static int load_key(const struct config *config, unsigned char **key_r, size_t *len_r)
{
	const char *error;

	*key_r = NULL;
	*len_r = 0;
	if (*config->changelog_key_file == '\0')
		return 0;
	if (changelog_key_load(config->changelog_key_file, key_r, len_r, &error) < 0) {
		fprintf(stderr, "mailpubsubctl: %s: %s\n", config->changelog_key_file, error);
		return -1;
	}
	return 0;
}

static int cmd_verify(const struct config *config)
{
	struct changelog_verify_result r;
	unsigned char *key;
	size_t key_len;
	const char *error;
	sqlite3 *db;
	int rc;

	if (load_key(config, &key, &key_len) < 0 || (db = open_readonly(config)) == NULL) {
		free(key);
		return 2;
	}
	rc = changelog_verify(db, key, key_len, &r, &error);
	sqlite3_close(db);
	free(key);
	if (rc < 0) {
		fprintf(stderr, "mailpubsubctl: cannot verify: %s\n", error);
		return 2;
	}
	if (rc > 0) {
		printf("FAILED at record %lld: %s\n", r.bad_id, r.reason);
		return 1;
	}
	printf("OK: %lld records verified (chain from record %lld)\n", r.records, r.first_id);
	return 0;
}

/* Prints each row's record (column 0) as one JSON line, keeping only the
 * events named in events when given. */
static int print_records(sqlite3 *db, sqlite3_stmt *st, const char *events)
{
	int rc, n = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *record = (const char *)sqlite3_column_text(st, 0);

		if (events != NULL) {
			json_t *rec = json_loads(record, 0, NULL);
			const char *ev = json_string_value(json_object_get(rec, "event"));
			bool keep = ev != NULL && config_list_contains(events, ev);

			json_decref(rec);
			if (!keep)
				continue;
		}
		printf("%s\n", record);
		n++;
	}
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "mailpubsubctl: query failed: %s\n", sqlite3_errmsg(db));
		return 2;
	}
	return 0;
}

/* How a query's rows are printed; ctx is the printer's. */
typedef int query_printer(sqlite3 *db, sqlite3_stmt *st, const void *ctx);

/* sql's parameters: ?1.. the texts (NULL binds NULL), then the numbers. */
static int query_print(const struct config *config, const char *sql,
		       const char *const *texts, unsigned ntexts, const long long *nums,
		       unsigned nnums, query_printer *print, const void *ctx)
{
	sqlite3 *db = open_readonly(config);
	sqlite3_stmt *st;
	unsigned i;
	int rc;

	if (db == NULL)
		return 2;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "mailpubsubctl: %s\n", sqlite3_errmsg(db));
		sqlite3_close(db);
		return 2;
	}
	for (i = 0; i < ntexts; i++)
		sqlite3_bind_text(st, (int)i + 1, texts[i], -1, SQLITE_STATIC);
	for (i = 0; i < nnums; i++)
		sqlite3_bind_int64(st, (int)(ntexts + i) + 1, nums[i]);
	rc = print(db, st, ctx);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

static int print_events(sqlite3 *db, sqlite3_stmt *st, const void *events)
{
	return print_records(db, st, events);
}

static int run_query(const struct config *config, const char *sql, const char *const *texts,
		     unsigned ntexts, const long long *nums, unsigned nnums, const char *events)
{
	return query_print(config, sql, texts, ntexts, nums, nnums, print_events, events);
}

static int cmd_message(const struct config *config, const struct args *a)
{
	static const char sql[] =
		"SELECT c.record FROM changelog_msgids m JOIN changelog c ON c.id = m.id"
		" WHERE m.message_id = ?1 ORDER BY c.id";
	char *mid;
	int rc;

	if (a->message_id == NULL) {
		fprintf(stderr, "mailpubsubctl: changelog message needs --message-id\n");
		return 2;
	}
	/* with or without the angle brackets */
	if (a->message_id[0] == '<')
		mid = strdup(a->message_id);
	else if (asprintf(&mid, "<%s>", a->message_id) < 0)
		mid = NULL;
	if (mid == NULL)
		return 2;
	rc = run_query(config, sql, (const char *[]){ mid }, 1, NULL, 0, a->events);
	free(mid);
	return rc;
}

static int cmd_user(const struct config *config, const struct args *a)
{
	static const char sql[] =
		"SELECT record FROM changelog WHERE time_us >= ?2 AND time_us < ?3"
		" AND kind = 'event' AND (json_extract(record, '$.user') = ?1"
		" OR json_extract(record, '$.login_user') = ?1) ORDER BY id";
	long long from = a->from != NULL ? parse_time_us(a->from) : 0;
	long long to = a->to != NULL ? parse_time_us(a->to) : (long long)9e18;

	if (a->user == NULL || from < 0 || to < 0) {
		fprintf(stderr, "mailpubsubctl: changelog user needs --user (and valid times)\n");
		return 2;
	}
	return run_query(config, sql, (const char *[]){ a->user }, 1,
			 (const long long[]){ from, to }, 2, a->events);
}

static int cmd_mailbox(const struct config *config, const struct args *a)
{
	static const char sql[] =
		"SELECT record FROM changelog WHERE kind = 'event'"
		" AND ((json_extract(record, '$.account') = ?1 AND (?2 IS NULL"
		"       OR json_extract(record, '$.mailbox') = ?2))"
		"  OR (json_extract(record, '$.old_account') = ?1 AND (?2 IS NULL"
		"       OR json_extract(record, '$.old_mailbox') = ?2)))"
		" ORDER BY id";

	if (a->account == NULL) {
		fprintf(stderr, "mailpubsubctl: changelog mailbox needs --account\n");
		return 2;
	}
	return run_query(config, sql, (const char *[]){ a->account, a->node }, 2,
			 NULL, 0, a->events);
}

static int open_store(const struct config *config, struct store **store_r)
{
	const char *error;

	if (store_open(config->store_path, config->store_full_sync, store_r, &error) < 0) {
		fprintf(stderr, "mailpubsubctl: %s: %s\n", config->store_path, error);
		return -1;
	}
	return 0;
}

static int cmd_prune(const struct config *config, const struct args *a)
{
	long long before = parse_time_us(a->before);
	struct timespec ts;
	unsigned char *key;
	size_t key_len;
	long long dropped;
	const char *error;
	struct store *store;
	int rc;

	if (before < 0) {
		fprintf(stderr, "mailpubsubctl: changelog prune needs --before TIME\n");
		return 2;
	}
	if (load_key(config, &key, &key_len) < 0)
		return 2;
	if (key == NULL) {
		fprintf(stderr, "mailpubsubctl: [changelog] key_file is needed to sign the checkpoint\n");
		return 2;
	}
	if (open_store(config, &store) < 0) {
		free(key);
		return 2;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	rc = changelog_prune(store, before, key, key_len,
			     (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, &dropped, &error);
	store_close(&store);
	free(key);
	if (rc < 0) {
		fprintf(stderr, "mailpubsubctl: %s\n", error);
		return 2;
	}
	printf("dropped %lld records\n", dropped);
	return 0;
}

static int cmd_tap(const struct config *config, const char *verb, const struct args *a)
{
	struct timespec ts;
	struct store *store;
	long long now, id;
	const char *error;
	char by[64];
	int rc = 0;

	/* the audit trail names who ran us */
	snprintf(by, sizeof(by), "mailpubsubctl (uid %u)", (unsigned)getuid());
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	if (open_store(config, &store) < 0)
		return 2;
	if (strcmp(verb, "add") == 0) {
		struct tap t = {
			.target = (char *)a->target,
			.authorities = (char *)a->authorities,
			.reference = (char *)a->reference,
			.not_before_us = a->from != NULL ? parse_time_us(a->from) : now,
			.not_after_us = parse_time_us(a->to),
		};

		if (tap_add(store, &t, by, now, &id, &error) < 0) {
			fprintf(stderr, "mailpubsubctl: tap add: %s\n", error);
			rc = 2;
		} else {
			printf("tap %lld added\n", id);
		}
	} else if (strcmp(verb, "list") == 0) {
		char *text = tap_list_json(store, now);

		if (text == NULL) {
			rc = 2;
		} else {
			printf("%s\n", text);
			free(text);
		}
	} else if (strcmp(verb, "remove") == 0) {
		id = a->id != NULL ? atoll(a->id) : 0;
		if (tap_remove(store, id, by, now, &error) < 0) {
			fprintf(stderr, "mailpubsubctl: tap remove: %s\n", error);
			rc = 2;
		} else {
			printf("tap %lld removed\n", id);
		}
	} else {
		usage(stderr);
		rc = 2;
	}
	store_close(&store);
	return rc;
}

/* ---- status: asks the daemon over [control] socket ---- */

/* One request line, one reply line (src/ops/control.h). NULL on error (said). */
static json_t *control_ask(const struct config *config, const char *request)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 10 };
	char *buf = NULL;
	size_t len = 0, cap = 0;
	json_t *reply;
	int fd;

	if (*config->control_socket == '\0') {
		fprintf(stderr, "mailpubsubctl: [control] socket is not set in the configuration\n");
		return NULL;
	}
	if (strlen(config->control_socket) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "mailpubsubctl: [control] socket path too long\n");
		return NULL;
	}
	strcpy(sun.sun_path, config->control_socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "mailpubsubctl: cannot connect to %s: %s\n",
			config->control_socket, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* a refusal may come before the request is read: then sending fails
	 * and the daemon's reason is still there to read */
	send(fd, request, strlen(request), MSG_NOSIGNAL);
	/* the reply ends with a newline, then the daemon closes */
	for (;;) {
		ssize_t n;

		if (len + 4096 > cap) {
			char *bigger = len + 4096 <= (16u << 20) ? realloc(buf, cap = len + 65536) : NULL;

			if (bigger == NULL)
				break;
			buf = bigger;
		}
		n = read(fd, buf + len, cap - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	reply = buf != NULL ? json_loadb(buf, len, 0, NULL) : NULL;
	free(buf);
	if (reply == NULL)
		fprintf(stderr, "mailpubsubctl: no valid reply from %s\n", config->control_socket);
	return reply;
}

static long long jint(const json_t *obj, const char *key)
{
	return (long long)json_integer_value(json_object_get(obj, key));
}

static const char *jstr(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : "-";
}

static void print_duration(long long seconds)
{
	if (seconds >= 86400)
		printf("%lldd %02lldh%02lldm", seconds / 86400, seconds % 86400 / 3600,
		       seconds % 3600 / 60);
	else if (seconds >= 3600)
		printf("%lldh%02lldm%02llds", seconds / 3600, seconds % 3600 / 60, seconds % 60);
	else
		printf("%lldm%02llds", seconds / 60, seconds % 60);
}

static void print_status_imap(const json_t *imap)
{
	const json_t *cache = json_object_get(imap, "acl_cache");
	const json_t *authz = json_object_get(imap, "authz");
	const json_t *rate = json_object_get(cache, "hit_rate");

	printf("IMAP:         %s, %lld sessions (%lld busy, %lld idle), %lld commands, %lld errors\n",
	       jstr(imap, "host"), jint(imap, "sessions"), jint(imap, "busy"),
	       jint(imap, "idle"), jint(imap, "commands"), jint(imap, "errors"));
	printf("ACL cache:    %lld hits, %lld misses", jint(cache, "hits"), jint(cache, "misses"));
	if (json_is_number(rate))
		printf(" (hit rate %.1f%%)", json_number_value(rate) * 100);
	printf("\nAuthz:        %lld granted, %lld denied, %lld errors\n",
	       jint(authz, "granted"), jint(authz, "denied"), jint(authz, "errors"));
}

static void print_status(const json_t *st)
{
	const json_t *comp = json_object_get(st, "component");
	const json_t *journal = json_object_get(st, "journal");
	const json_t *taps = json_object_get(st, "taps");
	const json_t *item;
	size_t i;

	printf("mailpubsubd %s, pid %lld, up ", jstr(st, "version"), jint(st, "pid"));
	print_duration(jint(st, "uptime_seconds"));
	printf(" (since %s)\n", jstr(st, "started"));
	printf("Component:    %s %s since %s (", jstr(comp, "domain"),
	       json_is_true(json_object_get(comp, "connected")) ? "connected" : "DISCONNECTED",
	       jstr(comp, "since"));
	print_duration(jint(comp, "for_seconds"));
	printf("), connections %lld, disconnects %lld, failed attempts %lld\n",
	       jint(comp, "connections"), jint(comp, "disconnects"), jint(comp, "failures"));
	printf("Sources:\n");
	json_array_foreach(json_object_get(st, "sources"), i, item) {
		printf("  %-6s %s", jstr(item, "name"), jstr(item, "state"));
		if (strcmp(jstr(item, "state"), "off") == 0) {
			putchar('\n');
			continue;
		}
		if (json_object_get(item, "watchers") != NULL)
			printf(" (%s: %lld of %lld watchers connected)", jstr(item, "accounts"),
			       jint(item, "connected"), jint(item, "watchers"));
		else if (json_object_get(item, "connections") != NULL)
			printf(" (%s, %lld connections)", jstr(item, "address"),
			       jint(item, "connections"));
		else
			printf(" (%s)", jstr(item, "address"));
		printf(": %lld received, %lld journaled, %lld malformed, %lld dropped, "
		       "%.2f/s over the last minute\n", jint(item, "received"),
		       jint(item, "journaled"), jint(item, "malformed"), jint(item, "dropped"),
		       json_number_value(json_object_get(item, "rate_per_second")));
	}
	printf("Journal:      head %lld, ingest queue %lld bytes\n", jint(journal, "head"),
	       jint(journal, "ingest_queue_bytes"));
	json_array_foreach(json_object_get(journal, "consumers"), i, item)
		printf("  %-10s at %lld, backlog %lld\n", jstr(item, "name"),
		       jint(item, "sequence"), jint(item, "backlog"));
	printf("Published:    %lld events, %lld notifications sent, %lld through [delegate]\n",
	       jint(st, "events_published"), jint(st, "notifications_sent"),
	       jint(st, "delegated_publishes"));
	if (json_object_get(st, "imap") != NULL)
		print_status_imap(json_object_get(st, "imap"));
	printf("Subscriptions: %lld\n", jint(st, "subscriptions"));
	printf("Taps active:  %lld\n", jint(taps, "active"));
	json_array_foreach(json_object_get(taps, "list"), i, item)
		printf("  tap %lld: %s (reference %s)\n", jint(item, "id"), jstr(item, "target"),
		       jstr(item, "reference"));
	printf("Memory:       %lld KiB resident\n", jint(st, "rss_bytes") / 1024);
}

static int cmd_status(const struct config *config, const struct args *a)
{
	json_t *reply = control_ask(config, "{\"command\":\"status\"}\n");
	const json_t *status;

	if (reply == NULL)
		return 2;
	status = json_object_get(reply, "status");
	if (!json_is_true(json_object_get(reply, "ok")) || !json_is_object(status)) {
		fprintf(stderr, "mailpubsubctl: the daemon refused: %s\n", jstr(reply, "error"));
		json_decref(reply);
		return 2;
	}
	if (a->json)
		json_dumpf(status, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	else
		print_status(status);
	if (a->json)
		putchar('\n');
	json_decref(reply);
	return 0;
}

/* ---- what the store holds ---- */

static json_t *column_json(sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		return json_integer(sqlite3_column_int64(st, i));
	case SQLITE_NULL:
		return json_null();
	default:
		return json_string((const char *)sqlite3_column_text(st, i));
	}
}

/* Rows as a JSON array (--json) or a tab-separated table with a header. */
static int print_rows(sqlite3 *db, sqlite3_stmt *st, bool as_json)
{
	json_t *rows = json_array();
	int rc, ncols = sqlite3_column_count(st);

	for (int i = 0; !as_json && i < ncols; i++)
		printf("%s%s", sqlite3_column_name(st, i), i + 1 < ncols ? "\t" : "\n");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *row = json_object();

		for (int i = 0; i < ncols; i++) {
			if (as_json) {
				json_object_set_new(row, sqlite3_column_name(st, i), column_json(st, i));
				continue;
			}
			printf("%s%s", sqlite3_column_type(st, i) == SQLITE_NULL ? "-" :
			       (const char *)sqlite3_column_text(st, i), i + 1 < ncols ? "\t" : "\n");
		}
		json_array_append_new(rows, row);
	}
	if (as_json) {
		json_dumpf(rows, stdout, JSON_INDENT(2));
		putchar('\n');
	}
	json_decref(rows);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "mailpubsubctl: query failed: %s\n", sqlite3_errmsg(db));
		return 2;
	}
	return 0;
}

static int print_table(sqlite3 *db, sqlite3_stmt *st, const void *as_json)
{
	return print_rows(db, st, *(const bool *)as_json);
}

static int store_query(const struct config *config, const char *sql,
		       const char *const *texts, unsigned ntexts, bool as_json)
{
	return query_print(config, sql, texts, ntexts, NULL, 0, print_table, &as_json);
}

static int cmd_accounts(const struct config *config, const struct args *a)
{
	static const char sql[] =
		"SELECT a.account,"
		" (SELECT count(*) FROM nodes n WHERE n.account = a.account) AS nodes,"
		" (SELECT count(*) FROM subscriptions s WHERE s.account = a.account) AS subscriptions"
		" FROM (SELECT account FROM nodes UNION SELECT account FROM subscriptions) a"
		" ORDER BY a.account";

	return store_query(config, sql, NULL, 0, a->json);
}

static int cmd_nodes(const struct config *config, const struct args *a)
{
	static const char sql[] =
		"SELECT n.node, n.messages, n.unseen, n.uidnext, n.uidvalidity,"
		" (SELECT count(*) FROM subscriptions s WHERE s.account = n.account"
		"  AND s.node = n.node) AS subscriptions,"
		" strftime('%Y-%m-%dT%H:%M:%SZ', n.created_us / 1000000, 'unixepoch') AS created"
		" FROM nodes n WHERE n.account = ?1 ORDER BY n.node";

	if (a->account == NULL) {
		fprintf(stderr, "mailpubsubctl: nodes needs --account (\"\" for shared folders)\n");
		return 2;
	}
	return store_query(config, sql, (const char *[]){ a->account }, 1, a->json);
}

static int cmd_subscriptions(const struct config *config, const struct args *a)
{
	/* a bare JID also finds its full JIDs' subscriptions */
	static const char sql[] =
		"SELECT jid, account, node, subid,"
		" CASE depth WHEN 0 THEN 'node' WHEN 1 THEN 'children' ELSE 'all' END AS depth,"
		" coalesce(events, 'default') AS events, deliver, heartbeat,"
		" strftime('%Y-%m-%dT%H:%M:%SZ', created_us / 1000000, 'unixepoch') AS created"
		" FROM subscriptions WHERE"
		" (?1 IS NULL OR jid = ?1 OR substr(jid, 1, length(?1) + 1) = ?1 || '/')"
		" AND (?2 IS NULL OR account = ?2) AND (?3 IS NULL OR node = ?3)"
		" ORDER BY jid, account, node";

	if ((a->jid == NULL) == (a->account == NULL) || (a->node != NULL && a->account == NULL)) {
		fprintf(stderr, "mailpubsubctl: subscriptions needs --jid J or --account A [--node N]\n");
		return 2;
	}
	return store_query(config, sql, (const char *[]){ a->jid, a->account, a->node }, 3,
			   a->json);
}

/* The one-word commands. */
static int run_single(const struct config *config, const char *command, const struct args *a)
{
	if (strcmp(command, "status") == 0)
		return cmd_status(config, a);
	if (strcmp(command, "accounts") == 0)
		return cmd_accounts(config, a);
	if (strcmp(command, "nodes") == 0)
		return cmd_nodes(config, a);
	if (strcmp(command, "subscriptions") == 0)
		return cmd_subscriptions(config, a);
	usage(stderr);
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "message-id", required_argument, NULL, 'm' },
		{ "user", required_argument, NULL, 'u' },
		{ "account", required_argument, NULL, 'a' },
		{ "node", required_argument, NULL, 'n' },
		{ "events", required_argument, NULL, 'e' },
		{ "from", required_argument, NULL, 'F' },
		{ "to", required_argument, NULL, 'T' },
		{ "before", required_argument, NULL, 'B' },
		{ "target", required_argument, NULL, 't' },
		{ "authority", required_argument, NULL, 'A' },
		{ "reference", required_argument, NULL, 'r' },
		{ "id", required_argument, NULL, 'i' },
		{ "jid", required_argument, NULL, 'j' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct args a = { .config_path = SYSCONFDIR "/mailpubsub.conf" };
	struct config *config;
	const char *error;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': a.config_path = optarg; break;
		case 'm': a.message_id = optarg; break;
		case 'u': a.user = optarg; break;
		case 'a': a.account = optarg; break;
		case 'n': a.node = optarg; break;
		case 'e': a.events = optarg; break;
		case 'F': a.from = optarg; break;
		case 'T': a.to = optarg; break;
		case 'B': a.before = optarg; break;
		case 't': a.target = optarg; break;
		case 'A': a.authorities = optarg; break;
		case 'r': a.reference = optarg; break;
		case 'i': a.id = optarg; break;
		case 'j': a.jid = optarg; break;
		case 'J': a.json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind != 2 && argc - optind != 1) {
		usage(stderr);
		return 2;
	}
	log_open("mailpubsubctl", false, LOG_LEVEL_WARN);
	if (config_load(a.config_path, &config, &error) < 0) {
		fprintf(stderr, "mailpubsubctl: %s: %s\n", a.config_path, error);
		return 2;
	}
	if (argc - optind == 1) {
		rc = run_single(config, argv[optind], &a);
	} else if (strcmp(argv[optind], "tap") == 0) {
		rc = cmd_tap(config, argv[optind + 1], &a);
	} else if (strcmp(argv[optind], "changelog") != 0) {
		usage(stderr);
		rc = 2;
	} else if (strcmp(argv[optind + 1], "verify") == 0) {
		rc = cmd_verify(config);
	} else if (strcmp(argv[optind + 1], "message") == 0) {
		rc = cmd_message(config, &a);
	} else if (strcmp(argv[optind + 1], "user") == 0) {
		rc = cmd_user(config, &a);
	} else if (strcmp(argv[optind + 1], "mailbox") == 0) {
		rc = cmd_mailbox(config, &a);
	} else if (strcmp(argv[optind + 1], "prune") == 0) {
		rc = cmd_prune(config, &a);
	} else {
		usage(stderr);
		rc = 2;
	}
	config_free(&config);
	return rc;
}
