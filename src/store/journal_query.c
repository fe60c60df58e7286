#include "store/journal_query.h"

#include "store/store_sql.h"

long long journal_query_prev_of_accounts(struct store *store, const char *accounts,
					 long long seq)
{
	static const char sql[] =
		"SELECT max(seq) FROM journal WHERE seq < ?1 AND instr(' ' || ?2 || ' ',"
		" ' ' || coalesce(nullif(account, ''), json_extract(json, '$.user'), '')"
		" || ' ') > 0";
	sqlite3_stmt *st = store_stmt(store, sql);
	long long prev = 0;

	if (st == NULL)
		return 0;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, accounts, -1, SQLITE_STATIC);
	if (store_first_i64(store, st, "journal", &prev) < 0)
		return 0;
	return prev;
}

bool journal_query_changed_after(struct store *store, const char *account,
				 long long seq, bool renames_only)
{
	static const char any_sql[] =
		"SELECT 1 FROM journal WHERE seq > ? AND account = ? LIMIT 1";
	static const char rename_sql[] =
		"SELECT 1 FROM journal WHERE seq > ? AND account = ?"
		" AND type = 'MailboxRename' LIMIT 1";
	sqlite3_stmt *st = store_stmt(store, renames_only ? rename_sql : any_sql);
	long long one;

	if (st == NULL)
		return true;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
	return store_first_i64(store, st, "journal", &one) != 0;
}

struct records {
	journal_record_cb *cb;
	void *context;
};

static int record_row(void *context, sqlite3_stmt *row)
{
	struct records *r = context;
	struct journal_record rec = {
		.seq = sqlite3_column_int64(row, 0),
		.received_us = sqlite3_column_int64(row, 1),
		.source = (const char *)sqlite3_column_text(row, 2),
		.json = (const char *)sqlite3_column_text(row, 3),
		.json_len = (size_t)sqlite3_column_bytes(row, 3),
	};

	return r->cb(r->context, &rec);
}

int journal_query_window(struct store *store, long long bound, bool backward,
			 long long upto, long long start_us, long long end_us,
			 journal_record_cb *cb, void *context)
{
	static const char fwd_sql[] =
		"SELECT seq, received_us, source, json FROM journal WHERE seq > ?1 AND seq <= ?2"
		" AND received_us >= ?3 AND received_us <= ?4 ORDER BY seq";
	static const char back_sql[] =
		"SELECT seq, received_us, source, json FROM journal WHERE seq < ?1 AND seq <= ?2"
		" AND received_us >= ?3 AND received_us <= ?4 ORDER BY seq DESC";
	sqlite3_stmt *st = store_stmt(store, backward ? back_sql : fwd_sql);
	struct records r = { cb, context };

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, bound);
	sqlite3_bind_int64(st, 2, upto);
	sqlite3_bind_int64(st, 3, start_us);
	sqlite3_bind_int64(st, 4, end_us);
	return store_each_row(store, st, "journal", record_row, &r, NULL);
}
