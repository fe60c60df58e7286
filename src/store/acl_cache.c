#include "store/acl_cache.h"

#include <stdio.h>

#include "base/log.h"
#include "store/store_sql.h"

int acl_cache_init(struct store *store, const char **error_r)
{
	if (store_exec_sql(store,
			   "CREATE TEMP TABLE IF NOT EXISTS acl_cache ("
			   " identity TEXT NOT NULL, account TEXT NOT NULL,"
			   " node TEXT NOT NULL, rights TEXT NOT NULL,"
			   " expires_us INTEGER NOT NULL,"
			   " PRIMARY KEY (account, node, identity)) WITHOUT ROWID",
			   "authz") < 0) {
		*error_r = "cannot create the ACL cache";
		return -1;
	}
	return 0;
}

/* A statement whose parameters 1-3 are the key: account, node, identity. */
static sqlite3_stmt *key_stmt(struct store *store, const char *sql, const char *identity,
			      const char *account, const char *node)
{
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);

	if (stmt == NULL)
		return NULL;
	sqlite3_bind_text(stmt, 3, identity, -1, SQLITE_STATIC);
	return stmt;
}

struct rights_buf {
	char *rights;
	size_t size;
};

static int rights_row(void *context, sqlite3_stmt *row)
{
	struct rights_buf *b = context;

	snprintf(b->rights, b->size, "%s", (const char *)sqlite3_column_text(row, 0));
	return 1;
}

int acl_cache_get(struct store *store, const char *identity, const char *account,
		  const char *node, long long now_us, char *rights, size_t size)
{
	static const char sql[] =
		"SELECT rights FROM temp.acl_cache WHERE account = ?1 AND node = ?2"
		" AND identity = ?3 AND expires_us > ?4";
	sqlite3_stmt *stmt = key_stmt(store, sql, identity, account, node);
	struct rights_buf b = { rights, size };
	unsigned rows;

	if (stmt == NULL)
		return 0;
	sqlite3_bind_int64(stmt, 4, now_us);
	if (store_each_row(store, stmt, "authz", rights_row, &b, &rows) < 0)
		return 0;
	return rows > 0;
}

int acl_cache_put(struct store *store, const char *identity, const char *account,
		  const char *node, const char *rights, long long expires_us)
{
	static const char sql[] =
		"INSERT OR REPLACE INTO temp.acl_cache"
		" (account, node, identity, rights, expires_us) VALUES (?1, ?2, ?3, ?4, ?5)";
	sqlite3_stmt *stmt = key_stmt(store, sql, identity, account, node);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 4, rights, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, expires_us);
	return store_exec_stmt(store, stmt);
}

int acl_cache_drop(struct store *store, const char *identity, const char *account,
		   const char *node)
{
	static const char sql[] =
		"DELETE FROM temp.acl_cache WHERE account = ?1 AND node = ?2 AND identity = ?3";
	sqlite3_stmt *stmt = key_stmt(store, sql, identity, account, node);

	if (stmt == NULL)
		return -1;
	return store_exec_stmt(store, stmt);
}

int acl_cache_drop_mailbox(struct store *store, const char *account, const char *node,
			   bool subtree)
{
	static const char node_sql[] =
		"DELETE FROM temp.acl_cache WHERE account = ?1 AND node = ?2";
	static const char subtree_sql[] =
		"DELETE FROM temp.acl_cache WHERE account = ?1 AND (node = ?2"
		" OR (node > ?2 || '/' AND node < ?2 || '0'))";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, subtree ? subtree_sql : node_sql,
						account, node);

	if (stmt == NULL)
		return -1;
	return store_exec_stmt(store, stmt);
}

int acl_cache_clear(struct store *store)
{
	static const char sql[] = "DELETE FROM temp.acl_cache";
	sqlite3_stmt *stmt = store_stmt(store, sql);

	if (stmt == NULL)
		return -1;
	return store_exec_stmt(store, stmt);
}
