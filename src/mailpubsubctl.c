/* mailpubsubctl: the e-Discovery changelog from the command line (verify
 * the chain, per-message / per-user / per-mailbox histories, retention)
 * and interception taps. Reads mailpubsubd's configuration for the store;
 * queries open it read-only, which SQLite's WAL mode allows while the
 * daemon runs. See mailpubsubctl(8). */
#include "build-config.h"

#include <getopt.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "changelog.h"
#include "config.h"
#include "log.h"
#include "store.h"
#include "tap.h"

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
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mailpubsubctl [-c config] changelog verify\n"
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

static int run_query(const struct config *config, const char *sql, const char *const *texts,
		     unsigned ntexts, const long long *nums, unsigned nnums, const char *events)
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
	rc = print_records(db, st, events);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
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
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	log_open("mailpubsubctl", false, LOG_LEVEL_WARN);
	if (config_load(a.config_path, &config, &error) < 0) {
		fprintf(stderr, "mailpubsubctl: %s: %s\n", a.config_path, error);
		return 2;
	}
	if (strcmp(argv[optind], "tap") == 0) {
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
