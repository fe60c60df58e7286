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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "store/changelog.h"
#include "store/inspect.h"
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

static struct inspect *open_readonly(const struct config *config)
{
	struct inspect *inspect;
	char error[256];

	if (inspect_open(config->store_path, &inspect, error, sizeof(error)) < 0) {
		fprintf(stderr, "mailpubsubctl: cannot open %s: %s\n", config->store_path, error);
		return NULL;
	}
	return inspect;
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
	struct inspect *inspect;
	int rc;

	if (load_key(config, &key, &key_len) < 0 || (inspect = open_readonly(config)) == NULL) {
		free(key);
		return 2;
	}
	rc = inspect_changelog_verify(inspect, key, key_len, &r, &error);
	inspect_close(&inspect);
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

/* Prints a record as one JSON line, keeping only the events named in
 * events when given. */
static int print_record(void *events, const char *record)
{
	if (events != NULL) {
		json_t *rec = json_loads(record, 0, NULL);
		const char *ev = json_string_value(json_object_get(rec, "event"));
		bool keep = ev != NULL && config_list_contains(events, ev);

		json_decref(rec);
		if (!keep)
			return 0;
	}
	printf("%s\n", record);
	return 0;
}

/* A read-only query on the store and how its result is printed. */
typedef int inspect_query(struct inspect *inspect, const struct args *a, void *printer);

static int run_inspect(const struct config *config, const struct args *a,
		       inspect_query *q, void *printer)
{
	struct inspect *inspect = open_readonly(config);
	int rc;

	if (inspect == NULL)
		return 2;
	rc = q(inspect, a, printer);
	if (rc < 0)
		fprintf(stderr, "mailpubsubctl: query failed: %s\n", inspect_error(inspect));
	inspect_close(&inspect);
	return rc < 0 ? 2 : 0;
}

static int by_message_id(struct inspect *inspect, const struct args *a, void *mid)
{
	return inspect_changelog_by_message_id(inspect, mid, print_record, (void *)a->events);
}

static int by_user(struct inspect *inspect, const struct args *a, void *range)
{
	const long long *r = range;

	return inspect_changelog_by_user(inspect, a->user, r[0], r[1], print_record,
					 (void *)a->events);
}

static int by_mailbox(struct inspect *inspect, const struct args *a, void *unused)
{
	(void)unused;
	return inspect_changelog_by_mailbox(inspect, a->account, a->node, print_record,
					    (void *)a->events);
}

static int cmd_message(const struct config *config, const struct args *a)
{
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
	rc = run_inspect(config, a, by_message_id, mid);
	free(mid);
	return rc;
}

static int cmd_user(const struct config *config, const struct args *a)
{
	long long from = a->from != NULL ? parse_time_us(a->from) : 0;
	long long to = a->to != NULL ? parse_time_us(a->to) : (long long)9e18;

	if (a->user == NULL || from < 0 || to < 0) {
		fprintf(stderr, "mailpubsubctl: changelog user needs --user (and valid times)\n");
		return 2;
	}
	return run_inspect(config, a, by_user, (long long[]){ from, to });
}

static int cmd_mailbox(const struct config *config, const struct args *a)
{
	if (a->account == NULL) {
		fprintf(stderr, "mailpubsubctl: changelog mailbox needs --account\n");
		return 2;
	}
	return run_inspect(config, a, by_mailbox, NULL);
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

/* The bus source: its own words for its own counters. */
static void print_status_bus(const json_t *item)
{
	printf(" (%s, %lld connections, %lld disconnects, %lld failed attempts, since %s)",
	       jstr(item, "address"), jint(item, "connections"), jint(item, "disconnects"),
	       jint(item, "failures"), jstr(item, "since"));
	printf(": %lld received, %lld journaled, %.2f/s over the last minute\n",
	       jint(item, "received"), jint(item, "journaled"),
	       json_number_value(json_object_get(item, "rate_per_second")));
	printf("         %lld duplicates skipped, %lld rejected, %lld released for "
	       "redelivery, %lld commits\n", jint(item, "duplicates"), jint(item, "rejected"),
	       jint(item, "released"), jint(item, "commits"));
	if (json_is_string(json_object_get(item, "last_error")))
		printf("         last error: %s\n", jstr(item, "last_error"));
}

/* The bus producer: where it is in the journal, and its connection. */
static void print_status_bus_out(const json_t *bus)
{
	bool backing_off = json_is_true(json_object_get(bus, "backing_off"));

	if (strcmp(jstr(bus, "state"), "off") == 0) {
		printf("Bus:          off\n");
		return;
	}
	printf("Bus:          %s %s %s since %s (", jstr(bus, "address"),
	       strcmp(jstr(bus, "state"), "connected") == 0 ? "connected to" : "CONNECTING to",
	       jstr(bus, "broker"), jstr(bus, "since"));
	print_duration(jint(bus, "for_seconds"));
	printf("), connections %lld, disconnects %lld, failed attempts %lld\n",
	       jint(bus, "connections"), jint(bus, "disconnects"), jint(bus, "failures"));
	printf("  watermark %lld, last sent %lld, journal head %lld, backlog %lld%s\n",
	       jint(bus, "watermark"), jint(bus, "sent_seq"), jint(bus, "journal_head"),
	       jint(bus, "backlog"), backing_off ? " (backing off after a refusal)" : "");
	printf("  %lld sent, %lld accepted, %lld refused, %lld resent\n", jint(bus, "sent"),
	       jint(bus, "accepted"), jint(bus, "refused"), jint(bus, "resent"));
	if (json_is_string(json_object_get(bus, "last_error")))
		printf("  last error: %s\n", jstr(bus, "last_error"));
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
		if (json_object_get(item, "duplicates") != NULL) {
			print_status_bus(item);
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
	if (json_object_get(st, "bus") != NULL)
		print_status_bus_out(json_object_get(st, "bus"));
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

static json_t *cell_json(const struct inspect_cell *cell)
{
	if (cell->null)
		return json_null();
	if (cell->integer)
		return json_integer(cell->number);
	return json_string(cell->text);
}

/* Rows as a JSON array (--json) or a tab-separated table with a header. */
struct table {
	bool as_json;
	json_t *rows;
};

static int print_row(void *context, unsigned ncols, const char *const *names,
		     const struct inspect_cell *cells)
{
	struct table *t = context;
	json_t *row;

	if (cells == NULL) {
		for (unsigned i = 0; !t->as_json && i < ncols; i++)
			printf("%s%s", names[i], i + 1 < ncols ? "\t" : "\n");
		return 0;
	}
	if (!t->as_json) {
		for (unsigned i = 0; i < ncols; i++)
			printf("%s%s", cells[i].null ? "-" : cells[i].text,
			       i + 1 < ncols ? "\t" : "\n");
		return 0;
	}
	row = json_object();
	for (unsigned i = 0; i < ncols; i++)
		json_object_set_new(row, names[i], cell_json(&cells[i]));
	json_array_append_new(t->rows, row);
	return 0;
}

static int table_accounts(struct inspect *inspect, const struct args *a, void *table)
{
	(void)a;
	return inspect_accounts(inspect, print_row, table);
}

static int table_nodes(struct inspect *inspect, const struct args *a, void *table)
{
	return inspect_nodes(inspect, a->account, print_row, table);
}

static int table_subscriptions(struct inspect *inspect, const struct args *a, void *table)
{
	return inspect_subscriptions(inspect, a->jid, a->account, a->node, print_row, table);
}

static int print_table(const struct config *config, const struct args *a, inspect_query *q)
{
	struct table t = { a->json, json_array() };
	int rc = run_inspect(config, a, q, &t);

	if (rc == 0 && t.as_json) {
		json_dumpf(t.rows, stdout, JSON_INDENT(2));
		putchar('\n');
	}
	json_decref(t.rows);
	return rc;
}

static int cmd_accounts(const struct config *config, const struct args *a)
{
	return print_table(config, a, table_accounts);
}

static int cmd_nodes(const struct config *config, const struct args *a)
{
	if (a->account == NULL) {
		fprintf(stderr, "mailpubsubctl: nodes needs --account (\"\" for shared folders)\n");
		return 2;
	}
	return print_table(config, a, table_nodes);
}

static int cmd_subscriptions(const struct config *config, const struct args *a)
{
	if ((a->jid == NULL) == (a->account == NULL) || (a->node != NULL && a->account == NULL)) {
		fprintf(stderr, "mailpubsubctl: subscriptions needs --jid J or --account A [--node N]\n");
		return 2;
	}
	return print_table(config, a, table_subscriptions);
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
	char error[CONFIG_ERROR_MAX];
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
	if (config_load(a.config_path, &config, error, sizeof(error)) < 0) {
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
