#include "store/taps.h"

#include <stddef.h>

#include "store/store_sql.h"

#define ROW_COLUMNS "id, target, authorities, not_before_us, not_after_us, reference," \
	" created_by, created_us, expired"

int taps_insert(struct store *store, const struct tap *t, const char *by,
		long long now_us, long long *id_r)
{
	static const char sql[] =
		"INSERT INTO taps (target, authorities, not_before_us, not_after_us,"
		" reference, created_by, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, t->target, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, t->authorities, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, t->not_before_us);
	sqlite3_bind_int64(st, 4, t->not_after_us);
	sqlite3_bind_text(st, 5, t->reference, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, now_us);
	if (store_exec_stmt(store, st) < 0)
		return -1;
	*id_r = sqlite3_last_insert_rowid(store_db(store));
	return 0;
}

struct rows {
	taps_cb *cb;
	void *context;
};

static int tap_row(void *context, sqlite3_stmt *row)
{
	struct rows *r = context;
	struct tap_row t = {
		.tap = {
			.id = sqlite3_column_int64(row, 0),
			.target = (char *)sqlite3_column_text(row, 1),
			.authorities = (char *)sqlite3_column_text(row, 2),
			.not_before_us = sqlite3_column_int64(row, 3),
			.not_after_us = sqlite3_column_int64(row, 4),
			.reference = (char *)sqlite3_column_text(row, 5),
		},
		.created_by = (const char *)sqlite3_column_text(row, 6),
		.created_us = sqlite3_column_int64(row, 7),
		.expired = sqlite3_column_int(row, 8) != 0,
	};

	return r->cb(r->context, &t);
}

static int each(struct store *store, sqlite3_stmt *st, taps_cb *cb, void *context,
		unsigned *rows_r)
{
	struct rows r = { cb, context };

	return store_each_row(store, st, "taps", tap_row, &r, rows_r);
}

int taps_get(struct store *store, long long id, taps_cb *cb, void *context)
{
	static const char sql[] = "SELECT " ROW_COLUMNS " FROM taps WHERE id = ?";
	sqlite3_stmt *st = store_stmt(store, sql);
	unsigned rows;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	if (each(store, st, cb, context, &rows) < 0)
		return -1;
	return rows > 0;
}

/* Runs sql (static storage) with parameter 1 the tap's id. */
static int exec_on_id(struct store *store, const char *sql, long long id)
{
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	return store_exec_stmt(store, st);
}

int taps_delete(struct store *store, long long id)
{
	static const char sql[] = "DELETE FROM taps WHERE id = ?";

	return exec_on_id(store, sql, id);
}

int taps_each(struct store *store, taps_cb *cb, void *context)
{
	static const char sql[] = "SELECT " ROW_COLUMNS " FROM taps ORDER BY id";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	return each(store, st, cb, context, NULL);
}

int taps_each_active(struct store *store, long long now_us, taps_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT " ROW_COLUMNS " FROM taps"
		" WHERE expired = 0 AND not_before_us <= ?1 AND not_after_us > ?1 ORDER BY id";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, now_us);
	return each(store, st, cb, context, NULL);
}

long long taps_count_active(struct store *store, long long now_us)
{
	static const char sql[] =
		"SELECT count(*) FROM taps WHERE expired = 0"
		" AND not_before_us <= ?1 AND not_after_us > ?1";
	sqlite3_stmt *st = store_stmt(store, sql);
	long long n = 0;

	if (st == NULL)
		return 0;
	sqlite3_bind_int64(st, 1, now_us);
	if (store_first_i64(store, st, "taps", &n) < 0)
		return 0;
	return n;
}

struct ids {
	long long *ids;
	unsigned max, n;
};

static int id_row(void *context, sqlite3_stmt *row)
{
	struct ids *ids = context;

	ids->ids[ids->n++] = sqlite3_column_int64(row, 0);
	return ids->n == ids->max;
}

int taps_ended(struct store *store, long long now_us, long long *ids, unsigned max,
	       unsigned *n_r)
{
	static const char sql[] =
		"SELECT id FROM taps WHERE expired = 0 AND not_after_us <= ? LIMIT ?";
	sqlite3_stmt *st = store_stmt(store, sql);
	struct ids found = { ids, max, 0 };
	int rc;

	*n_r = 0;
	if (st == NULL)
		return -1;
	if (max == 0)
		return 0;
	sqlite3_bind_int64(st, 1, now_us);
	sqlite3_bind_int(st, 2, (int)max);
	rc = store_each_row(store, st, "taps", id_row, &found, NULL);
	*n_r = found.n;
	return rc;
}

int taps_mark_expired(struct store *store, long long id)
{
	static const char sql[] = "UPDATE taps SET expired = 1 WHERE id = ?";

	return exec_on_id(store, sql, id);
}
