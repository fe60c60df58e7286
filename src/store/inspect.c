#include "store/inspect.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/store_sql.h"

#define INSPECT_COLS_MAX 16

struct inspect {
	sqlite3 *db;
	char error[256];           /* why the last query failed */
};

int inspect_open(const char *path, struct inspect **inspect_r, char *errbuf,
		 size_t errsize)
{
	struct inspect *in = calloc(1, sizeof(*in));

	if (in == NULL) {
		snprintf(errbuf, errsize, "out of memory");
		return -1;
	}
	if (sqlite3_open_v2(path, &in->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		snprintf(errbuf, errsize, "%s",
			 in->db != NULL ? sqlite3_errmsg(in->db) : "out of memory");
		inspect_close(&in);
		return -1;
	}
	sqlite3_busy_timeout(in->db, 5000);
	*inspect_r = in;
	return 0;
}

void inspect_close(struct inspect **inspect)
{
	if (*inspect == NULL)
		return;
	sqlite3_close((*inspect)->db);
	free(*inspect);
	*inspect = NULL;
}

const char *inspect_error(struct inspect *inspect)
{
	return inspect->error;
}

/* Row handlers: each is handed the statement positioned on a row, or with
 * header set, before the first. */
typedef int row_fn(void *context, sqlite3_stmt *st, bool header);

/* sql's parameters: ?1.. the texts (NULL binds NULL), then the numbers. */
static int query(struct inspect *in, const char *sql, const char *const *texts,
		 unsigned ntexts, const long long *nums, unsigned nnums, row_fn *fn,
		 void *context)
{
	sqlite3_stmt *st;
	int rc = SQLITE_DONE, stop;
	unsigned i;

	if (sqlite3_prepare_v2(in->db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(in->error, sizeof(in->error), "%s", sqlite3_errmsg(in->db));
		return -1;
	}
	for (i = 0; i < ntexts; i++)
		sqlite3_bind_text(st, (int)i + 1, texts[i], -1, SQLITE_STATIC);
	for (i = 0; i < nnums; i++)
		sqlite3_bind_int64(st, (int)(ntexts + i) + 1, nums[i]);
	stop = fn(context, st, true);
	while (stop == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		stop = fn(context, st, false);
	if (stop == 0 && rc != SQLITE_DONE)
		snprintf(in->error, sizeof(in->error), "%s", sqlite3_errmsg(in->db));
	sqlite3_finalize(st);
	return stop == 0 && rc != SQLITE_DONE ? -1 : 0;
}

struct records {
	inspect_record_cb *cb;
	void *context;
};

static int record_row(void *context, sqlite3_stmt *st, bool header)
{
	struct records *r = context;

	if (header)
		return 0;
	return r->cb(r->context, (const char *)sqlite3_column_text(st, 0));
}

int inspect_changelog_by_message_id(struct inspect *inspect, const char *message_id,
				    inspect_record_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT c.record FROM changelog_msgids m JOIN changelog c ON c.id = m.id"
		" WHERE m.message_id = ?1 ORDER BY c.id";
	struct records r = { cb, context };

	return query(inspect, sql, (const char *[]){ message_id }, 1, NULL, 0,
		     record_row, &r);
}

int inspect_changelog_by_user(struct inspect *inspect, const char *user,
			      long long from_us, long long to_us,
			      inspect_record_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT record FROM changelog WHERE time_us >= ?2 AND time_us < ?3"
		" AND kind = 'event' AND (json_extract(record, '$.user') = ?1"
		" OR json_extract(record, '$.login_user') = ?1) ORDER BY id";
	struct records r = { cb, context };

	return query(inspect, sql, (const char *[]){ user }, 1,
		     (const long long[]){ from_us, to_us }, 2, record_row, &r);
}

int inspect_changelog_by_mailbox(struct inspect *inspect, const char *account,
				 const char *node, inspect_record_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT record FROM changelog WHERE kind = 'event'"
		" AND ((json_extract(record, '$.account') = ?1 AND (?2 IS NULL"
		"       OR json_extract(record, '$.mailbox') = ?2))"
		"  OR (json_extract(record, '$.old_account') = ?1 AND (?2 IS NULL"
		"       OR json_extract(record, '$.old_mailbox') = ?2)))"
		" ORDER BY id";
	struct records r = { cb, context };

	return query(inspect, sql, (const char *[]){ account, node }, 2, NULL, 0,
		     record_row, &r);
}

int inspect_changelog_verify(struct inspect *inspect, const unsigned char *key,
			     size_t key_len, struct changelog_verify_result *result,
			     const char **error_r)
{
	return changelog_verify(inspect->db, key, key_len, result, error_r);
}

struct table {
	inspect_row_cb *cb;
	void *context;
};

static int table_row(void *context, sqlite3_stmt *st, bool header)
{
	struct table *t = context;
	const char *names[INSPECT_COLS_MAX];
	struct inspect_cell cells[INSPECT_COLS_MAX];
	int ncols = sqlite3_column_count(st);

	if (ncols > INSPECT_COLS_MAX)
		ncols = INSPECT_COLS_MAX;
	for (int i = 0; i < ncols; i++) {
		int type = sqlite3_column_type(st, i);

		names[i] = sqlite3_column_name(st, i);
		if (header)
			continue;
		cells[i].null = type == SQLITE_NULL;
		cells[i].integer = type == SQLITE_INTEGER;
		cells[i].number = sqlite3_column_int64(st, i);
		cells[i].text = (const char *)sqlite3_column_text(st, i);
	}
	return t->cb(t->context, (unsigned)ncols, names, header ? NULL : cells);
}

int inspect_accounts(struct inspect *inspect, inspect_row_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT a.account,"
		" (SELECT count(*) FROM nodes n WHERE n.account = a.account) AS nodes,"
		" (SELECT count(*) FROM subscriptions s WHERE s.account = a.account) AS subscriptions"
		" FROM (SELECT account FROM nodes UNION SELECT account FROM subscriptions) a"
		" ORDER BY a.account";
	struct table t = { cb, context };

	return query(inspect, sql, NULL, 0, NULL, 0, table_row, &t);
}

int inspect_nodes(struct inspect *inspect, const char *account, inspect_row_cb *cb,
		  void *context)
{
	static const char sql[] =
		"SELECT n.node, n.messages, n.unseen, n.uidnext, n.uidvalidity,"
		" (SELECT count(*) FROM subscriptions s WHERE s.account = n.account"
		"  AND s.node = n.node) AS subscriptions,"
		" strftime('%Y-%m-%dT%H:%M:%SZ', n.created_us / 1000000, 'unixepoch') AS created"
		" FROM nodes n WHERE n.account = ?1 ORDER BY n.node";
	struct table t = { cb, context };

	return query(inspect, sql, (const char *[]){ account }, 1, NULL, 0, table_row, &t);
}

int inspect_subscriptions(struct inspect *inspect, const char *jid, const char *account,
			  const char *node, inspect_row_cb *cb, void *context)
{
	/* a bare JID also finds its full JIDs' subscriptions */
	static const char sql[] =
		"SELECT jid, account, node, subid,"
		" CASE depth WHEN 0 THEN 'node' WHEN 1 THEN 'children' ELSE 'all' END AS depth,"
		" coalesce(events, 'default') AS events, deliver, heartbeat,"
		" strftime('%Y-%m-%dT%H:%M:%SZ', created_us / 1000000, 'unixepoch') AS created"
		" FROM subscriptions WHERE"
		" (?1 IS NULL OR jid = ?1 OR substr(jid, 1, length(?1) + 1) = ?1 || '/')"
		" AND (?2 IS NULL OR account = ?2) AND (?3 IS NULL OR node = ?3)"
		" ORDER BY jid, account, node";
	struct table t = { cb, context };

	return query(inspect, sql, (const char *[]){ jid, account, node }, 3, NULL, 0,
		     table_row, &t);
}
