#include "store/content.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "store/store_sql.h"

static const char *const schema =
	"CREATE TABLE IF NOT EXISTS content ("
	" seq INTEGER PRIMARY KEY,"
	" part TEXT NOT NULL DEFAULT 'full',"
	" size INTEGER NOT NULL DEFAULT 0,"
	" header_size INTEGER NOT NULL DEFAULT 0,"
	" sha256 TEXT NOT NULL DEFAULT '',"
	" flags TEXT, internaldate TEXT, data BLOB,"
	" error TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
	" stored_us INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS content_stored ON content (stored_us);";

int content_init(struct store *store, const char **error_r)
{
	if (store_exec_sql(store, schema, "content") < 0) {
		*error_r = "cannot create the content table";
		return -1;
	}
	return 0;
}

int content_store_bytes(struct store *store, const struct content_record *rec,
			const void *data, long long now_us)
{
	static const char sql[] =
		"INSERT OR REPLACE INTO content (seq, part, size, header_size, sha256,"
		" flags, internaldate, data, error, attempts, stored_us)"
		" VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?)";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, rec->seq);
	sqlite3_bind_text(st, 2, rec->part, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)rec->size);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)rec->header_size);
	sqlite3_bind_text(st, 5, rec->sha256, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, rec->flags, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, rec->internaldate, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 8, data, rec->size, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, now_us);
	return store_exec_stmt(store, st);
}

int content_put_error(struct store *store, long long seq, const char *reason,
		      unsigned attempts, long long now_us)
{
	static const char sql[] =
		"INSERT OR REPLACE INTO content (seq, error, attempts, stored_us)"
		" VALUES (?, ?, ?, ?)";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, (int)attempts);
	sqlite3_bind_int64(st, 4, now_us);
	return store_exec_stmt(store, st);
}

static char *column_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t != NULL ? strdup((const char *)t) : NULL;
}

int content_get(struct store *store, long long seq, struct content_record *rec)
{
	static const char sql[] =
		"SELECT part, size, header_size, sha256, flags, internaldate, error,"
		" attempts FROM content WHERE seq = ?";
	sqlite3_stmt *st = store_stmt(store, sql);
	int r;

	memset(rec, 0, sizeof(*rec));
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		const unsigned char *hex = sqlite3_column_text(st, 3);

		rec->seq = seq;
		rec->part = column_dup(st, 0);
		rec->size = (size_t)sqlite3_column_int64(st, 1);
		rec->header_size = (size_t)sqlite3_column_int64(st, 2);
		snprintf(rec->sha256, sizeof(rec->sha256), "%s", hex != NULL ? (const char *)hex : "");
		rec->flags = column_dup(st, 4);
		rec->internaldate = column_dup(st, 5);
		rec->error = column_dup(st, 6);
		rec->attempts = (unsigned)sqlite3_column_int(st, 7);
	}
	sqlite3_reset(st);
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		log_error("content: lookup of %lld: %s", seq, sqlite3_errmsg(store_db(store)));
		return -1;
	}
	return r == SQLITE_ROW ? 1 : 0;
}

void content_record_clear(struct content_record *rec)
{
	free(rec->part);
	free(rec->flags);
	free(rec->internaldate);
	free(rec->error);
	memset(rec, 0, sizeof(*rec));
}

int content_read(struct store *store, long long seq, size_t offset,
		 size_t length, char **data_r, size_t *len_r)
{
	static const char sql[] =
		"SELECT substr(data, ?, ?) FROM content WHERE seq = ? AND data IS NOT NULL";
	sqlite3_stmt *st = store_stmt(store, sql);
	int r;

	*data_r = NULL;
	*len_r = 0;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)offset + 1);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)length);
	sqlite3_bind_int64(st, 3, seq);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		int n = sqlite3_column_bytes(st, 0);
		const void *p = sqlite3_column_blob(st, 0);

		*data_r = malloc((size_t)n + 1);
		if (*data_r != NULL) {
			if (n > 0)
				memcpy(*data_r, p, (size_t)n);
			*len_r = (size_t)n;
		}
	}
	sqlite3_reset(st);
	if (r != SQLITE_ROW)
		return -1;
	return *data_r != NULL ? 0 : -1;
}

int content_prune(struct store *store, long long before_us)
{
	static const char sql[] = "DELETE FROM content WHERE stored_us < ?";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, before_us);
	return store_exec_stmt(store, st);
}
