#include "store/bus_mark.h"

#include <stddef.h>

#define BUS_MARK_KEY "bus_seq"

long long bus_mark_get(struct store *store)
{
	long long seq = 0;

	if (store_meta_get_i64(store, BUS_MARK_KEY, &seq) < 0)
		return 0;
	return seq;
}

int bus_mark_set(struct store *store, long long seq)
{
	return store_meta_set_i64(store, BUS_MARK_KEY, seq);
}

bool bus_mark_renamed_after(struct store *store, const char *account, long long seq)
{
	static const char sql[] =
		"SELECT 1 FROM journal WHERE seq > ? AND account = ?"
		" AND type = 'MailboxRename' LIMIT 1";
	sqlite3_stmt *st = store_stmt(store, sql);
	bool found;

	if (st == NULL)
		return false;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_reset(st);
	return found;
}
