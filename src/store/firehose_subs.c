#include "store/firehose_subs.h"

#include <stdio.h>

#include "store/store_sql.h"

int firehose_subs_init(struct store *store, const char **error_r)
{
	static const char *const schema =
		"CREATE TABLE IF NOT EXISTS firehose_subs ("
		" jid TEXT PRIMARY KEY, subid TEXT NOT NULL,"
		" content TEXT NOT NULL, created_us INTEGER NOT NULL)";

	if (store_exec_sql(store, schema, "firehose") < 0) {
		*error_r = "cannot create the firehose table";
		return -1;
	}
	return 0;
}

int firehose_subs_put(struct store *store, const char *jid, const char *content,
		      long long now_us, char *subid, size_t subid_size)
{
	static const char sql[] =
		"INSERT INTO firehose_subs (jid, subid, content, created_us) VALUES (?, ?, ?, ?)"
		" ON CONFLICT (jid) DO UPDATE SET content = excluded.content";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, subid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, content, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_us);
	if (store_exec_stmt(store, st) < 0)
		return -1;
	firehose_subs_get(store, jid, subid, subid_size, NULL, 0);
	return 0;
}

struct sub_bufs {
	char *subid, *content;
	size_t subid_size, content_size;
};

static int sub_row(void *context, sqlite3_stmt *row)
{
	struct sub_bufs *b = context;

	if (b->subid != NULL)
		snprintf(b->subid, b->subid_size, "%s", (const char *)sqlite3_column_text(row, 0));
	if (b->content != NULL)
		snprintf(b->content, b->content_size, "%s",
			 (const char *)sqlite3_column_text(row, 1));
	return 1;
}

int firehose_subs_get(struct store *store, const char *jid, char *subid,
		      size_t subid_size, char *content, size_t content_size)
{
	static const char sql[] = "SELECT subid, content FROM firehose_subs WHERE jid = ?";
	sqlite3_stmt *st = store_stmt(store, sql);
	struct sub_bufs b = { subid, content, subid_size, content_size };
	unsigned rows;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, jid, -1, SQLITE_STATIC);
	if (store_each_row(store, st, "firehose", sub_row, &b, &rows) < 0)
		return -1;
	return rows > 0;
}

int firehose_subs_drop(struct store *store, const char *jid)
{
	static const char sql[] = "DELETE FROM firehose_subs WHERE jid = ?";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT);
	if (store_exec_stmt(store, st) < 0)
		return -1;
	return store_changes(store) > 0;
}

struct each {
	firehose_subs_cb *cb;
	void *context;
};

static int each_row(void *context, sqlite3_stmt *row)
{
	struct each *e = context;

	return e->cb(e->context, (const char *)sqlite3_column_text(row, 0),
		     (const char *)sqlite3_column_text(row, 1));
}

int firehose_subs_each(struct store *store, firehose_subs_cb *cb, void *context)
{
	static const char sql[] = "SELECT jid, content FROM firehose_subs ORDER BY jid";
	sqlite3_stmt *st = store_stmt(store, sql);
	struct each e = { cb, context };

	if (st == NULL)
		return -1;
	return store_each_row(store, st, "firehose", each_row, &e, NULL);
}

bool firehose_subs_any(struct store *store)
{
	static const char sql[] = "SELECT 1 FROM firehose_subs LIMIT 1";
	sqlite3_stmt *st = store_stmt(store, sql);
	long long one;

	return st != NULL && store_first_i64(store, st, "firehose", &one) == 1;
}

const char *firehose_subs_strongest(struct store *store)
{
	static const char sql[] =
		"SELECT max(CASE content WHEN 'full' THEN 2 WHEN 'headers' THEN 1"
		" ELSE 0 END) FROM firehose_subs";
	sqlite3_stmt *st = store_stmt(store, sql);
	long long level = 0;

	if (st == NULL || store_first_i64(store, st, "firehose", &level) < 0)
		return NULL;
	return level == 2 ? "full" : level == 1 ? "headers" : NULL;
}
