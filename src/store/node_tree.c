#include "store/node_tree.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "store/store_sql.h"

/* Descendants of N are the keys in ("N/", "N0"): '0' follows '/' in ASCII,
 * so one index range scan finds a subtree. */
#define SUBTREE_WHERE "account = ?1 AND (node = ?2 OR (node > ?2 || '/' AND node < ?2 || '0'))"

static int insert_one(struct store *store, const char *account, const char *node,
		      long long now_us)
{
	static const char sql[] =
		"INSERT OR IGNORE INTO nodes (account, node, created_us) VALUES (?, ?, ?)";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 3, now_us);
	return store_exec_stmt(store, stmt);
}

static int update_identity(struct store *store, const char *account,
			   const char *node, const char *mailbox_id,
			   uint32_t uidvalidity)
{
	static const char sql[] =
		"UPDATE nodes SET mailbox_id = coalesce(?3, mailbox_id),"
		" uidvalidity = coalesce(?4, uidvalidity)"
		" WHERE account = ?1 AND node = ?2";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);

	if (stmt == NULL)
		return -1;
	if (mailbox_id != NULL)
		sqlite3_bind_text(stmt, 3, mailbox_id, -1, SQLITE_STATIC);
	if (uidvalidity != 0)
		sqlite3_bind_int64(stmt, 4, uidvalidity);
	return store_exec_stmt(store, stmt);
}

long long node_tree_count(struct store *store, const char *account)
{
	static const char sql[] = "SELECT count(*) FROM nodes WHERE account = ?";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, NULL);
	long long n = 0;

	if (stmt == NULL)
		return -1;
	if (store_first_i64(store, stmt, "node_tree", &n) < 0)
		return -1;
	return n;
}

int node_tree_touch(struct store *store, const char *account, const char *node,
		    const char *mailbox_id, uint32_t uidvalidity, long long now_us)
{
	char *path = strdup(node);
	int ret = 0;

	if (path == NULL)
		return -1;
	/* ancestors first, so disco can always walk down to the node */
	for (char *p = strchr(path, '/'); p != NULL && ret == 0; p = strchr(p + 1, '/')) {
		*p = '\0';
		ret = insert_one(store, account, path, now_us);
		*p = '/';
	}
	free(path);
	if (ret == 0)
		ret = insert_one(store, account, node, now_us);
	if (ret == 0 && (mailbox_id != NULL || uidvalidity != 0))
		ret = update_identity(store, account, node, mailbox_id, uidvalidity);
	return ret;
}

char *node_tree_find_moved(struct store *store, const char *account,
			   const char *node_then, const char *mailbox_id,
			   uint32_t uidvalidity)
{
	/* not the old name: an event Cyrus sent about it after the rename
	 * can bring that node back */
	static const char by_id[] =
		"SELECT node FROM nodes WHERE account = ? AND mailbox_id = ? AND node != ?3"
		" LIMIT 2";
	static const char by_uidvalidity[] =
		"SELECT node FROM nodes WHERE account = ? AND uidvalidity = ? AND node != ?3"
		" LIMIT 2";
	sqlite3_stmt *st = store_stmt_mailbox(store, mailbox_id != NULL ? by_id : by_uidvalidity,
					      account, mailbox_id);
	char *node = NULL;

	if (st == NULL || (mailbox_id == NULL && uidvalidity == 0))
		return NULL;
	if (mailbox_id == NULL)
		sqlite3_bind_int64(st, 2, uidvalidity);
	sqlite3_bind_text(st, 3, node_then, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		node = strdup((const char *)sqlite3_column_text(st, 0));
	if (node != NULL && sqlite3_step(st) == SQLITE_ROW) {
		free(node);   /* ambiguous */
		node = NULL;
	}
	sqlite3_reset(st);
	return node;
}

bool node_tree_exists(struct store *store, const char *account, const char *node)
{
	static const char sql[] = "SELECT 1 FROM nodes WHERE account = ? AND node = ?";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);
	bool found;

	if (stmt == NULL)
		return false;
	found = sqlite3_step(stmt) == SQLITE_ROW;
	sqlite3_reset(stmt);
	return found;
}

static int run_bound(struct store *store, const char *sql, const char *account,
		     const char *node)
{
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);

	if (stmt == NULL)
		return -1;
	return store_exec_stmt(store, stmt);
}

int node_tree_delete(struct store *store, const char *account, const char *node)
{
	static const char *const by_node[] = {
		"DELETE FROM nodes WHERE account = ?1 AND node = ?2",
		"DELETE FROM subscriptions WHERE account = ?1 AND node = ?2",
		"DELETE FROM items WHERE account = ?1 AND node = ?2",
	};
	static const char *const by_account[] = {
		"DELETE FROM nodes WHERE account = ?1",
		"DELETE FROM subscriptions WHERE account = ?1",
		"DELETE FROM items WHERE account = ?1",
	};
	bool whole = *account != '\0' && strcmp(node, "INBOX") == 0;
	const char *const *sqls = whole ? by_account : by_node;
	int ret = 0;

	store_begin(store);
	for (unsigned i = 0; i < 3 && ret == 0; i++)
		ret = run_bound(store, sqls[i], account, whole ? NULL : node);
	if (ret < 0) {
		store_rollback(store);
		return -1;
	}
	return store_commit(store);
}

static int rename_table(struct store *store, const char *sql,
			const char *old_account, const char *old_node,
			const char *new_account, const char *new_node)
{
	sqlite3_stmt *stmt = store_stmt(store, sql);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, old_account, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, old_node, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, new_account, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, new_node, -1, SQLITE_STATIC);
	return store_exec_stmt(store, stmt);
}

int node_tree_rename(struct store *store, const char *old_account,
		     const char *old_node, const char *new_account,
		     const char *new_node)
{
	/* OR REPLACE: an event about the new name may have created the node
	 * before the rename event was processed. */
	static const char *const sqls[] = {
		"UPDATE OR REPLACE nodes SET account = ?3,"
		" node = ?4 || substr(node, length(?2) + 1) WHERE " SUBTREE_WHERE,
		"UPDATE OR REPLACE subscriptions SET account = ?3,"
		" node = ?4 || substr(node, length(?2) + 1) WHERE " SUBTREE_WHERE,
		"UPDATE OR REPLACE items SET account = ?3,"
		" node = ?4 || substr(node, length(?2) + 1) WHERE " SUBTREE_WHERE,
	};
	int ret = 0;

	if (strcmp(old_account, new_account) == 0 && strcmp(old_node, new_node) == 0)
		return 0;
	store_begin(store);
	for (unsigned i = 0; i < 3 && ret == 0; i++)
		ret = rename_table(store, sqls[i], old_account, old_node,
				   new_account, new_node);
	if (ret < 0) {
		store_rollback(store);
		return -1;
	}
	return store_commit(store);
}

/* Hands column 0 of each row to cb. */
static int iterate(struct store *store, sqlite3_stmt *stmt, node_tree_cb *cb,
		   void *context)
{
	return store_each_text(store, stmt, "node_tree", cb, context);
}

int node_tree_children(struct store *store, const char *account,
		       const char *parent, node_tree_cb *cb, void *context)
{
	static const char top_sql[] =
		"SELECT node FROM nodes WHERE account = ?1 AND instr(node, '/') = 0"
		" ORDER BY node";
	static const char child_sql[] =
		"SELECT node FROM nodes WHERE account = ?1"
		" AND node > ?2 || '/' AND node < ?2 || '0'"
		" AND instr(substr(node, length(?2) + 2), '/') = 0 ORDER BY node";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, parent == NULL ? top_sql : child_sql,
					      account, parent);

	if (stmt == NULL)
		return -1;
	return iterate(store, stmt, cb, context);
}

int node_tree_subtree(struct store *store, const char *account,
		      const char *node, node_tree_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT node FROM nodes WHERE " SUBTREE_WHERE " ORDER BY node";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);

	if (stmt == NULL)
		return -1;
	return iterate(store, stmt, cb, context);
}

static void bind_known(sqlite3_stmt *stmt, int col, long long v)
{
	if (v >= 0)
		sqlite3_bind_int64(stmt, col, v);
}

int node_tree_set_counts(struct store *store, const char *account,
			 const char *node, const struct node_counts *c)
{
	static const char sql[] =
		"UPDATE nodes SET messages = coalesce(?3, messages),"
		" unseen = coalesce(?4, unseen), uidnext = coalesce(?5, uidnext),"
		" modseq = coalesce(?6, modseq) WHERE account = ?1 AND node = ?2";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);

	if (stmt == NULL)
		return -1;
	bind_known(stmt, 3, c->messages);
	bind_known(stmt, 4, c->unseen);
	bind_known(stmt, 5, c->uidnext);
	bind_known(stmt, 6, c->modseq);
	return store_exec_stmt(store, stmt);
}

static long long column_or_unknown(sqlite3_stmt *stmt, int col)
{
	return sqlite3_column_type(stmt, col) == SQLITE_NULL ? -1 :
	       sqlite3_column_int64(stmt, col);
}

int node_tree_get_counts(struct store *store, const char *account,
			 const char *node, struct node_counts *c)
{
	static const char sql[] =
		"SELECT messages, unseen, uidnext, modseq FROM nodes"
		" WHERE account = ? AND node = ? AND messages IS NOT NULL";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);
	int found = 0;

	if (stmt == NULL)
		return 0;
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		c->messages = column_or_unknown(stmt, 0);
		c->unseen = column_or_unknown(stmt, 1);
		c->uidnext = column_or_unknown(stmt, 2);
		c->modseq = column_or_unknown(stmt, 3);
		found = 1;
	}
	sqlite3_reset(stmt);
	return found;
}

int node_tree_accounts(struct store *store, node_tree_account_cb *cb, void *context)
{
	static const char sql[] = "SELECT DISTINCT account FROM nodes ORDER BY account";
	sqlite3_stmt *stmt = store_stmt(store, sql);

	if (stmt == NULL)
		return -1;
	return iterate(store, stmt, cb, context);
}

char *node_tree_next_account(struct store *store, const char *after)
{
	static const char first_sql[] = "SELECT account FROM nodes ORDER BY account LIMIT 1";
	static const char next_sql[] =
		"SELECT account FROM nodes WHERE account > ? ORDER BY account LIMIT 1";
	sqlite3_stmt *stmt = store_stmt(store, after == NULL ? first_sql : next_sql);
	char *account = NULL;

	if (stmt == NULL)
		return NULL;
	if (after != NULL)
		sqlite3_bind_text(stmt, 1, after, -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		account = strdup((const char *)sqlite3_column_text(stmt, 0));
	sqlite3_reset(stmt);
	return account;
}

int node_tree_all(struct store *store, const char *account, node_tree_cb *cb,
		  void *context)
{
	static const char sql[] = "SELECT node FROM nodes WHERE account = ? ORDER BY node";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, NULL);

	if (stmt == NULL)
		return -1;
	return iterate(store, stmt, cb, context);
}
