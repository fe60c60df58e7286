#include "store/journal.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>

/* The changelog and, later, a replication log: a short fixed table. */
#define JOURNAL_HOOKS_MAX 4

struct journal {
	struct store *store;
	struct journal_hook hooks[JOURNAL_HOOKS_MAX];
	unsigned nhooks;
};

/* Origin ids of events taken from another instance (the bus): a separate
 * table, so the journal's own rows stay as they are and an id is unique
 * by construction. */
static const char origin_schema[] =
	"CREATE TABLE IF NOT EXISTS journal_origin ("
	"  origin_id TEXT PRIMARY KEY,"
	"  seq INTEGER NOT NULL) WITHOUT ROWID";

int journal_new(struct store *store, struct journal **journal_r, const char **error_r)
{
	struct journal *j;

	if (sqlite3_exec(store_db(store), origin_schema, NULL, NULL, NULL) != SQLITE_OK) {
		*error_r = "cannot create the journal_origin table";
		return -1;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	j->store = store;
	*journal_r = j;
	return 0;
}

void journal_free(struct journal **journal)
{
	free(*journal);
	*journal = NULL;
}

int journal_hook_register(struct journal *j, const struct journal_hook *hook)
{
	if (j->nhooks == JOURNAL_HOOKS_MAX)
		return -1;
	j->hooks[j->nhooks++] = *hook;
	return 0;
}

void journal_hook_unregister(struct journal *j, const struct journal_hook *hook)
{
	for (unsigned i = 0; i < j->nhooks; i++) {
		if (j->hooks[i].appended != hook->appended ||
		    j->hooks[i].context != hook->context)
			continue;
		memmove(&j->hooks[i], &j->hooks[i + 1],
			(j->nhooks - i - 1) * sizeof(j->hooks[0]));
		j->nhooks--;
		return;
	}
}

static int remember_origin(struct journal *j, const char *origin_id, long long seq)
{
	static const char sql[] =
		"INSERT INTO journal_origin (origin_id, seq) VALUES (?, ?)";
	sqlite3_stmt *stmt = store_stmt(j->store, sql);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, origin_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, seq);
	return store_exec_stmt(j->store, stmt);
}

int journal_origin_seq(struct journal *j, const char *origin_id, long long *seq_r)
{
	static const char sql[] = "SELECT seq FROM journal_origin WHERE origin_id = ?";
	sqlite3_stmt *stmt = store_stmt(j->store, sql);
	int rc;

	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, origin_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		*seq_r = sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_error("journal: origin lookup failed: %s", sqlite3_errmsg(store_db(j->store)));
		return -1;
	}
	return rc == SQLITE_ROW ? 1 : 0;
}

int journal_append(struct journal *j, const char *source,
		   const struct event *event, const char *json, size_t json_len,
		   long long received_us, const char *origin_id, long long *seq_r)
{
	static const char sql[] =
		"INSERT INTO journal (received_us, source, type, account, node, json) "
		"VALUES (?, ?, ?, ?, ?, ?)";
	sqlite3_stmt *stmt = store_stmt(j->store, sql);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, received_us);
	sqlite3_bind_text(stmt, 2, source, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, event_type_info(event->type)->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, event->mailbox.account, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, event->mailbox.node, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 6, json, (int)json_len, SQLITE_STATIC);
	if (store_exec_stmt(j->store, stmt) < 0)
		return -1;
	*seq_r = sqlite3_last_insert_rowid(store_db(j->store));
	if (origin_id != NULL && remember_origin(j, origin_id, *seq_r) < 0)
		return -1;
	for (unsigned i = 0; i < j->nhooks; i++) {
		if (j->hooks[i].appended(j->hooks[i].context, j->store, *seq_r, event,
					 received_us) != 0)
			return -1;
	}
	return 0;
}

int journal_read_after(struct store *store, long long after_seq, unsigned limit,
		       journal_record_cb *cb, void *context, unsigned *count_r)
{
	static const char sql[] =
		"SELECT seq, received_us, source, json FROM journal "
		"WHERE seq > ? ORDER BY seq LIMIT ?";
	sqlite3_stmt *stmt = store_stmt(store, sql);
	int rc;

	*count_r = 0;
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, after_seq);
	sqlite3_bind_int(stmt, 2, (int)limit);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct journal_record rec = {
			.seq = sqlite3_column_int64(stmt, 0),
			.received_us = sqlite3_column_int64(stmt, 1),
			.source = (const char *)sqlite3_column_text(stmt, 2),
			.json = (const char *)sqlite3_column_text(stmt, 3),
			.json_len = (size_t)sqlite3_column_bytes(stmt, 3),
		};

		(*count_r)++;
		if (cb(context, &rec) != 0)
			break;
	}
	sqlite3_reset(stmt);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_error("journal: read failed: %s", sqlite3_errmsg(store_db(store)));
		return -1;
	}
	return 0;
}

long long journal_published_seq(struct store *store)
{
	long long seq = 0;

	store_meta_get_i64(store, "published_seq", &seq);
	return seq;
}

int journal_set_published_seq(struct store *store, long long seq)
{
	return store_meta_set_i64(store, "published_seq", seq);
}

long long journal_last_seq(struct store *store)
{
	static const char sql[] = "SELECT max(seq) FROM journal";
	sqlite3_stmt *stmt = store_stmt(store, sql);
	long long seq = 0;

	if (stmt == NULL)
		return 0;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		seq = sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	return seq;
}
