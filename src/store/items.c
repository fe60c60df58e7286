#include "store/items.h"

#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "store/store_sql.h"

int items_put(struct store *store, const char *account, const char *node,
	      long long seq, long long published_us, const char *payload,
	      unsigned max_items)
{
	static const char insert_sql[] =
		"INSERT OR REPLACE INTO items (account, node, seq, published_us, payload)"
		" VALUES (?, ?, ?, ?, ?)";
	static const char trim_sql[] =
		"DELETE FROM items WHERE account = ?1 AND node = ?2 AND seq <="
		" (SELECT seq FROM items WHERE account = ?1 AND node = ?2"
		"  ORDER BY seq DESC LIMIT 1 OFFSET ?3)";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, insert_sql, account, node);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 3, seq);
	sqlite3_bind_int64(stmt, 4, published_us);
	sqlite3_bind_text(stmt, 5, payload, -1, SQLITE_STATIC);
	if (store_exec_stmt(store, stmt) < 0)
		return -1;
	stmt = store_stmt_mailbox(store, trim_sql, account, node);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int(stmt, 3, (int)(max_items > 0 ? max_items : 1));
	return store_exec_stmt(store, stmt);
}

struct item_rows {
	items_cb *cb;
	void *context;
};

static int item_row(void *context, sqlite3_stmt *row)
{
	struct item_rows *r = context;

	return r->cb(r->context, sqlite3_column_int64(row, 0), sqlite3_column_int64(row, 1),
		     (const char *)sqlite3_column_text(row, 2));
}

/* *found_r: whether there was a row. */
static int iterate(struct store *store, sqlite3_stmt *stmt, items_cb *cb,
		   void *context, int *found_r)
{
	struct item_rows r = { cb, context };
	unsigned rows;
	int rc = store_each_row(store, stmt, "items", item_row, &r, &rows);

	*found_r = rows > 0;
	return rc;
}

int items_each_newest(struct store *store, const char *account, const char *node,
		      unsigned limit, items_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT seq, published_us, payload FROM items"
		" WHERE account = ? AND node = ? ORDER BY seq DESC LIMIT ?";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);
	int found;

	if (stmt == NULL)
		return -1;
	sqlite3_bind_int(stmt, 3, limit > 0 ? (int)limit : -1);
	return iterate(store, stmt, cb, context, &found);
}

int items_get(struct store *store, const char *account, const char *node,
	      long long seq, items_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT seq, published_us, payload FROM items"
		" WHERE account = ? AND node = ? AND seq = ?";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);
	int found;

	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 3, seq);
	if (iterate(store, stmt, cb, context, &found) < 0)
		return -1;
	return found;
}

int items_each_between(struct store *store, const char *account, const char *node,
		       long long after, long long before, bool newest_first,
		       unsigned limit, items_cb *cb, void *context)
{
	static const char newest_sql[] =
		"SELECT seq, published_us, payload FROM items WHERE account = ?"
		" AND node = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?";
	static const char oldest_sql[] =
		"SELECT seq, published_us, payload FROM items WHERE account = ?"
		" AND node = ? AND seq > ? AND seq < ? ORDER BY seq ASC LIMIT ?";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, newest_first ? newest_sql : oldest_sql,
					      account, node);
	int found;

	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 3, after > 0 ? after : 0);
	sqlite3_bind_int64(stmt, 4, before > 0 ? before : INT64_MAX);
	sqlite3_bind_int(stmt, 5, limit > 0 ? (int)limit : -1);
	return iterate(store, stmt, cb, context, &found);
}

long long items_count(struct store *store, const char *account, const char *node)
{
	static const char sql[] =
		"SELECT count(*) FROM items WHERE account = ? AND node = ?";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);
	long long n = -1;

	if (stmt == NULL)
		return -1;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		n = sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	return n;
}
