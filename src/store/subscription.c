#include "store/subscription.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include "base/jid.h"
#include "base/log.h"
#include "store/store_sql.h"

static void new_subid(char *out)
{
	unsigned char raw[SUBSCRIPTION_SUBID_LEN / 2];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		/* never fatal: a subid must only be unique per node and JID */
		for (size_t i = 0; i < sizeof(raw); i++)
			raw[i] = (unsigned char)(i * 37 + 11);
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static void bind_options(sqlite3_stmt *stmt, int first, const struct subopts *opts)
{
	sqlite3_bind_int(stmt, first, opts->depth);
	if (strcmp(opts->events, SUBOPTS_DEFAULT_EVENTS) != 0)
		sqlite3_bind_text(stmt, first + 1, opts->events, -1, SQLITE_STATIC);
	sqlite3_bind_int(stmt, first + 2, opts->deliver);
	sqlite3_bind_int(stmt, first + 3, opts->heartbeat);
}

static void column_options(sqlite3_stmt *stmt, int first, struct subopts *opts)
{
	const char *events = (const char *)sqlite3_column_text(stmt, first + 1);

	subopts_defaults(opts);
	opts->depth = sqlite3_column_int(stmt, first);
	if (events != NULL)
		snprintf(opts->events, sizeof(opts->events), "%s", events);
	opts->deliver = sqlite3_column_int(stmt, first + 2) != 0;
	opts->heartbeat = sqlite3_column_int(stmt, first + 3) != 0;
}

/* sql's parameters 1-3 are the key: account, node, jid. */
static sqlite3_stmt *keyed_stmt(struct store *store, const char *sql,
				const char *account, const char *node,
				const char *jid)
{
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);

	if (stmt == NULL)
		return NULL;
	sqlite3_bind_text(stmt, 3, jid, -1, SQLITE_STATIC);
	return stmt;
}

/* One row by key: its subid and options, each copied when asked for. */
static int lookup(struct store *store, const char *account, const char *node,
		  const char *jid, char *subid_r, struct subopts *opts_r)
{
	static const char sql[] =
		"SELECT subid, depth, events, deliver, heartbeat FROM subscriptions"
		" WHERE account = ? AND node = ? AND jid = ?";
	sqlite3_stmt *stmt = keyed_stmt(store, sql, account, node, jid);
	int rc;

	if (stmt == NULL)
		return -1;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW && subid_r != NULL)
		snprintf(subid_r, SUBSCRIPTION_SUBID_LEN + 1, "%s",
			 (const char *)sqlite3_column_text(stmt, 0));
	if (rc == SQLITE_ROW && opts_r != NULL)
		column_options(stmt, 1, opts_r);
	sqlite3_reset(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

int subscription_find(struct store *store, const char *account,
		      const char *node, const char *jid, char *subid_r)
{
	return lookup(store, account, node, jid, subid_r, NULL);
}

int subscription_get_options(struct store *store, const char *account,
			     const char *node, const char *jid,
			     struct subopts *opts_r)
{
	return lookup(store, account, node, jid, NULL, opts_r);
}

int subscription_set_options(struct store *store, const char *account,
			     const char *node, const char *jid,
			     const struct subopts *opts)
{
	static const char sql[] =
		"UPDATE subscriptions SET depth = ?4, events = ?5, deliver = ?6,"
		" heartbeat = ?7 WHERE account = ?1 AND node = ?2 AND jid = ?3";
	sqlite3_stmt *stmt = keyed_stmt(store, sql, account, node, jid);

	if (stmt == NULL)
		return -1;
	bind_options(stmt, 4, opts);
	return store_exec_stmt(store, stmt);
}

int subscription_add(struct store *store, const char *account, const char *node,
		     const char *jid, const struct subopts *opts, long long now_us,
		     char *subid_r, bool *created_r)
{
	static const char sql[] =
		"INSERT INTO subscriptions (account, node, jid, subid, created_us,"
		" depth, events, deliver, heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
	sqlite3_stmt *stmt;
	int found = subscription_find(store, account, node, jid, subid_r);

	*created_r = false;
	/* subscribing again with options replaces them (XEP-0060 6.3.7) */
	if (found != 0)
		return found < 0 ? -1 :
		       subscription_set_options(store, account, node, jid, opts);
	stmt = keyed_stmt(store, sql, account, node, jid);
	if (stmt == NULL)
		return -1;
	new_subid(subid_r);
	sqlite3_bind_text(stmt, 4, subid_r, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, now_us);
	bind_options(stmt, 6, opts);
	if (store_exec_stmt(store, stmt) < 0)
		return -1;
	*created_r = true;
	return 0;
}

int subscription_remove(struct store *store, const char *account,
			const char *node, const char *jid, const char *subid)
{
	static const char sql[] =
		"DELETE FROM subscriptions WHERE account = ? AND node = ? AND jid = ?"
		" AND (?4 IS NULL OR subid = ?4)";
	sqlite3_stmt *stmt = keyed_stmt(store, sql, account, node, jid);

	if (stmt == NULL)
		return -1;
	if (subid != NULL)
		sqlite3_bind_text(stmt, 4, subid, -1, SQLITE_STATIC);
	if (store_exec_stmt(store, stmt) < 0)
		return -1;
	return sqlite3_changes(store_db(store)) > 0 ? 1 : 0;
}

size_t subscription_count_for_jid(struct store *store, const char *jid)
{
	/* the bare JID and every full JID under it: '0' follows '/' */
	static const char sql[] =
		"SELECT count(*) FROM subscriptions WHERE jid = ?1"
		" OR (jid > ?1 || '/' AND jid < ?1 || '0')";
	sqlite3_stmt *stmt = store_stmt(store, sql);
	char *bare = jid_bare(jid);
	size_t n = 0;

	if (stmt == NULL || bare == NULL) {
		free(bare);
		/* unknown: as if at any limit */
		return SIZE_MAX;
	}
	sqlite3_bind_text(stmt, 1, bare, -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		n = (size_t)sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	free(bare);
	return n;
}

long long subscription_count(struct store *store)
{
	static const char sql[] = "SELECT count(*) FROM subscriptions";
	sqlite3_stmt *stmt = store_stmt(store, sql);
	long long n = 0;

	if (stmt == NULL || store_first_i64(store, stmt, "subscription", &n) < 0)
		return 0;
	return n;
}

struct subscription_rows {
	subscription_cb *cb;
	void *context;
};

static int subscription_row(void *context, sqlite3_stmt *row)
{
	struct subscription_rows *r = context;
	struct subscription sub = {
		.account = (const char *)sqlite3_column_text(row, 0),
		.node = (const char *)sqlite3_column_text(row, 1),
		.jid = (const char *)sqlite3_column_text(row, 2),
		.subid = (const char *)sqlite3_column_text(row, 3),
	};

	column_options(row, 4, &sub.opts);
	return r->cb(r->context, &sub);
}

static int iterate(struct store *store, sqlite3_stmt *stmt, subscription_cb *cb,
		   void *context)
{
	struct subscription_rows r = { cb, context };

	return store_each_row(store, stmt, "subscription", subscription_row, &r, NULL);
}

int subscription_each_on_node(struct store *store, const char *account,
			      const char *node, subscription_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT account, node, jid, subid, depth, events, deliver, heartbeat FROM subscriptions"
		" WHERE account = ? AND node = ?";
	sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, node);

	if (stmt == NULL)
		return -1;
	return iterate(store, stmt, cb, context);
}

/* A bare JID's full JIDs are the keys in ("b/", "b0"), as in node_tree.c. */
int subscription_each_of_jid(struct store *store, const char *account,
			     const char *node, const char *bare_jid,
			     subscription_cb *cb, void *context)
{
	static const char sql[] =
		"SELECT account, node, jid, subid, depth, events, deliver, heartbeat FROM subscriptions"
		" WHERE (jid = ?2 OR (jid > ?2 || '/' AND jid < ?2 || '0'))"
		" AND account = ?1 AND (?3 IS NULL OR node = ?3) ORDER BY node, jid";
	sqlite3_stmt *stmt = store_stmt(store, sql);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, bare_jid, -1, SQLITE_STATIC);
	if (node != NULL)
		sqlite3_bind_text(stmt, 3, node, -1, SQLITE_STATIC);
	return iterate(store, stmt, cb, context);
}

int subscription_each_covering(struct store *store, const char *account,
			       const char *node, subscription_cb *cb,
			       void *context)
{
	static const char sql[] =
		"SELECT account, node, jid, subid, depth, events, deliver, heartbeat"
		" FROM subscriptions WHERE account = ?1 AND node = ?2"
		" AND (?3 = 0 OR depth = -1 OR (?3 = 1 AND depth = 1))";
	char *path = strdup(node);
	int ret = 0;
	int level = 0;

	if (path == NULL)
		return -1;
	/* the node, then each ancestor from the nearest up */
	for (;;) {
		sqlite3_stmt *stmt = store_stmt_mailbox(store, sql, account, path);
		char *slash;

		if (stmt == NULL) {
			ret = -1;
			break;
		}
		sqlite3_bind_int(stmt, 3, level);
		if (iterate(store, stmt, cb, context) < 0) {
			ret = -1;
			break;
		}
		slash = strrchr(path, '/');
		if (slash == NULL)
			break;
		*slash = '\0';
		level++;
	}
	free(path);
	return ret;
}

int subscription_each_heartbeat(struct store *store, subscription_cb *cb,
				void *context)
{
	static const char sql[] =
		"SELECT account, node, jid, subid, depth, events, deliver, heartbeat"
		" FROM subscriptions WHERE heartbeat != 0 AND deliver != 0";
	sqlite3_stmt *stmt = store_stmt(store, sql);

	if (stmt == NULL)
		return -1;
	return iterate(store, stmt, cb, context);
}

static int found_one(void *context, const struct subscription *sub)
{
	*(bool *)context = true;
	return 1;
}

bool subscription_any_for_bare(struct store *store, const char *account,
			       const char *node, const char *bare_jid)
{
	bool found = false;

	subscription_each_of_jid(store, account, node, bare_jid, found_one, &found);
	return found;
}
