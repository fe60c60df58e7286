#include "store/journal.h"

#include "store/changelog.h"
#include "base/log.h"
#include "store/store_sql.h"

int journal_append(struct store *store, const char *source,
		   const struct event *event, const char *json, size_t json_len,
		   long long received_us, long long *seq_r)
{
	static const char sql[] =
		"INSERT INTO journal (received_us, source, type, account, node, json) "
		"VALUES (?, ?, ?, ?, ?, ?)";
	sqlite3_stmt *stmt = store_stmt(store, sql);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, received_us);
	sqlite3_bind_text(stmt, 2, source, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, event_type_info(event->type)->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, event->mailbox.account, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, event->mailbox.node, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 6, json, (int)json_len, SQLITE_STATIC);
	if (store_exec_stmt(store, stmt) < 0)
		return -1;
	*seq_r = sqlite3_last_insert_rowid(store_db(store));
	/* every source comes through here: the e-Discovery record is part
	 * of the same transaction, so it exists exactly when the event does */
	return changelog_append_event(store, *seq_r, event, received_us);
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
