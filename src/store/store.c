#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "store/store_sql.h"

#define STORE_STMT_CACHE 64

struct store {
	sqlite3 *db;
	unsigned txn_depth;
	bool txn_failed;
	unsigned nstmts;
	struct {
		const char *sql;
		sqlite3_stmt *stmt;
	} stmts[STORE_STMT_CACHE];
};

/* Version 1 schema. `account` is the mailbox owner as the store names it
 * ("" for shared folders); `node` the '/' separated node name. */
static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS meta ("
	"  key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS journal ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  received_us INTEGER NOT NULL,"
	"  source TEXT NOT NULL,"
	"  type TEXT NOT NULL,"
	"  account TEXT,"
	"  node TEXT,"
	"  json TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS nodes ("
	"  account TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  mailbox_id TEXT,"
	"  uidvalidity INTEGER,"
	"  messages INTEGER,"                     /* last known counts, NULL: unknown */
	"  unseen INTEGER,"
	"  uidnext INTEGER,"
	"  modseq INTEGER,"
	"  created_us INTEGER NOT NULL,"
	"  PRIMARY KEY (account, node)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS subscriptions ("
	"  account TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  jid TEXT NOT NULL,"
	"  subid TEXT NOT NULL,"
	"  created_us INTEGER NOT NULL,"
	"  depth INTEGER NOT NULL DEFAULT 0,"     /* 0 node, 1 children, -1 all */
	"  events TEXT,"                          /* NULL: the default set */
	"  deliver INTEGER NOT NULL DEFAULT 1,"
	"  heartbeat INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (account, node, jid)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS subscriptions_jid ON subscriptions (jid);"
	"CREATE TABLE IF NOT EXISTS items ("
	"  account TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  published_us INTEGER NOT NULL,"
	"  payload TEXT NOT NULL,"
	"  PRIMARY KEY (account, node, seq)) WITHOUT ROWID;"
	"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1);";

static int exec_sql(sqlite3 *db, const char *sql, const char **error_r)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	log_error("store: %s", msg != NULL ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	*error_r = "cannot initialise the store (see log)";
	return -1;
}

/* Migrations from version 1 on: migrations[i] brings the schema from
 * version i + 1 to i + 2. Each runs once, in its own transaction with the
 * schema_version bump, so a database is always at one exact version. */
static const char *const migrations[] = {
	/* 2: the IMAP client source's sync state (src/store/imap_source_state.c): what
	 * it last saw of each watched mailbox, so a restart resynchronises
	 * from there (CHANGEDSINCE / VANISHED) instead of replaying. */
	"CREATE TABLE IF NOT EXISTS imap_source_accounts ("
	"  account TEXT PRIMARY KEY,"
	"  listed_us INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS imap_source_mailboxes ("
	"  account TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  uidvalidity INTEGER NOT NULL,"
	"  uidnext INTEGER NOT NULL,"
	"  highestmodseq INTEGER NOT NULL,"
	"  PRIMARY KEY (account, node)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS imap_source_messages ("
	"  account TEXT NOT NULL,"
	"  node TEXT NOT NULL,"
	"  uid INTEGER NOT NULL,"
	"  flags TEXT NOT NULL,"               /* sorted, space separated */
	"  PRIMARY KEY (account, node, uid)) WITHOUT ROWID;",
	/* 3: the e-Discovery changelog (src/store/changelog.c): the hash-chained
	 * records, the Message-ID index, what it remembers to attribute
	 * events (uid -> Message-ID, Cyrus sessions), retention checkpoints;
	 * and the interception taps (src/downstream/tap.c). */
	"CREATE TABLE IF NOT EXISTS changelog ("
	"  id INTEGER PRIMARY KEY,"
	"  time_us INTEGER NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  record TEXT NOT NULL,"               /* canonical JSON, hashed */
	"  hash TEXT NOT NULL);"                /* hex SHA-256(prev || record) */
	"CREATE INDEX IF NOT EXISTS changelog_time ON changelog (time_us);"
	"CREATE TABLE IF NOT EXISTS changelog_msgids ("
	"  message_id TEXT NOT NULL,"
	"  id INTEGER NOT NULL,"
	"  PRIMARY KEY (message_id, id)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS changelog_msgmap ("
	"  account TEXT NOT NULL,"
	"  uidvalidity INTEGER NOT NULL,"
	"  uid INTEGER NOT NULL,"
	"  message_id TEXT NOT NULL,"
	"  PRIMARY KEY (account, uidvalidity, uid)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS changelog_sessions ("
	"  session TEXT PRIMARY KEY,"
	"  user TEXT, client_ip TEXT, client_port INTEGER, service TEXT,"
	"  login_us INTEGER) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS changelog_checkpoints ("
	"  id INTEGER PRIMARY KEY,"
	"  time_us INTEGER NOT NULL,"
	"  last_dropped_id INTEGER NOT NULL,"
	"  last_dropped_hash TEXT NOT NULL,"
	"  signature TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS taps ("
	"  id INTEGER PRIMARY KEY,"
	"  target TEXT NOT NULL,"               /* account, or an address */
	"  authorities TEXT NOT NULL,"          /* space separated JIDs */
	"  not_before_us INTEGER NOT NULL,"
	"  not_after_us INTEGER NOT NULL,"
	"  reference TEXT NOT NULL,"
	"  created_by TEXT NOT NULL,"
	"  created_us INTEGER NOT NULL,"
	"  expired INTEGER NOT NULL DEFAULT 0);",
};

static int migrate(sqlite3 *db, const char **error_r)
{
	sqlite3_stmt *stmt;
	int version = 0;

	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'",
			       -1, &stmt, NULL) != SQLITE_OK) {
		*error_r = "cannot read the schema version";
		return -1;
	}
	if (sqlite3_step(stmt) == SQLITE_ROW)
		version = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);
	if (version < 1 || version > (int)(sizeof(migrations) / sizeof(migrations[0])) + 1) {
		log_error("store: schema version %d is not one this mailpubsubd knows", version);
		*error_r = "unknown store schema version (a newer mailpubsubd's store?)";
		return -1;
	}
	for (; version <= (int)(sizeof(migrations) / sizeof(migrations[0])); version++) {
		char bump[96];

		snprintf(bump, sizeof(bump), "UPDATE meta SET value = %d "
			 "WHERE key = 'schema_version';", version + 1);
		if (exec_sql(db, "BEGIN IMMEDIATE;", error_r) < 0)
			return -1;
		if (exec_sql(db, migrations[version - 1], error_r) < 0 ||
		    exec_sql(db, bump, error_r) < 0 ||
		    exec_sql(db, "COMMIT;", error_r) < 0) {
			sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
			return -1;
		}
		log_info("store: schema migrated to version %d", version + 1);
	}
	return 0;
}

int store_open(const char *path, bool full_sync, struct store **store_r,
	       const char **error_r)
{
	struct store *store = calloc(1, sizeof(*store));
	mode_t old_umask;
	int rc;

	if (store == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	/* The journal holds mail metadata: readable by us alone. */
	old_umask = umask(077);
	rc = sqlite3_open_v2(path, &store->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			     SQLITE_OPEN_NOMUTEX, NULL);
	umask(old_umask);
	if (rc != SQLITE_OK) {
		log_error("store: cannot open %s: %s", path,
			  store->db != NULL ? sqlite3_errmsg(store->db) : "out of memory");
		*error_r = "cannot open the store";
		goto fail;
	}
	sqlite3_busy_timeout(store->db, 5000);
	if (exec_sql(store->db, "PRAGMA journal_mode=WAL;", error_r) < 0 ||
	    exec_sql(store->db, full_sync ? "PRAGMA synchronous=FULL;"
					  : "PRAGMA synchronous=NORMAL;", error_r) < 0 ||
	    exec_sql(store->db, "PRAGMA foreign_keys=OFF;", error_r) < 0 ||
	    exec_sql(store->db, schema_sql, error_r) < 0 ||
	    migrate(store->db, error_r) < 0)
		goto fail;
	*store_r = store;
	return 0;
fail:
	store_close(&store);
	return -1;
}

void store_close(struct store **storep)
{
	struct store *store = *storep;

	if (store == NULL)
		return;
	for (unsigned i = 0; i < store->nstmts; i++)
		sqlite3_finalize(store->stmts[i].stmt);
	sqlite3_close(store->db);
	free(store);
	*storep = NULL;
}

sqlite3 *store_db(struct store *store)
{
	return store->db;
}

sqlite3_stmt *store_stmt(struct store *store, const char *sql)
{
	sqlite3_stmt *stmt;

	for (unsigned i = 0; i < store->nstmts; i++) {
		if (store->stmts[i].sql == sql) {
			stmt = store->stmts[i].stmt;
			sqlite3_reset(stmt);
			sqlite3_clear_bindings(stmt);
			return stmt;
		}
	}
	if (store->nstmts == STORE_STMT_CACHE) {
		log_error("store: statement cache full");
		return NULL;
	}
	if (sqlite3_prepare_v3(store->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
			       &stmt, NULL) != SQLITE_OK) {
		log_error("store: cannot prepare \"%s\": %s", sql,
			  sqlite3_errmsg(store->db));
		return NULL;
	}
	store->stmts[store->nstmts].sql = sql;
	store->stmts[store->nstmts].stmt = stmt;
	store->nstmts++;
	return stmt;
}

int store_exec_stmt(struct store *store, sqlite3_stmt *stmt)
{
	int rc = sqlite3_step(stmt);

	sqlite3_reset(stmt);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	log_error("store: %s", sqlite3_errmsg(store->db));
	store->txn_failed = true;
	return -1;
}

int store_changes(struct store *store)
{
	return sqlite3_changes(store->db);
}

int store_exec_sql(struct store *store, const char *sql, const char *who)
{
	char *msg = NULL;

	if (sqlite3_exec(store->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	log_error("%s: %s", who, msg != NULL ? msg : sqlite3_errmsg(store->db));
	sqlite3_free(msg);
	return -1;
}

int store_each_row(struct store *store, sqlite3_stmt *stmt, const char *who,
		   store_row_cb *row, void *context, unsigned *rows_r)
{
	unsigned rows = 0;
	int rc;

	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		rows++;
		if (row(context, stmt) != 0)
			break;
	}
	sqlite3_reset(stmt);
	if (rows_r != NULL)
		*rows_r = rows;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_error("%s: %s", who, sqlite3_errmsg(store->db));
		return -1;
	}
	return 0;
}

sqlite3_stmt *store_stmt_mailbox(struct store *store, const char *sql,
				 const char *account, const char *node)
{
	sqlite3_stmt *stmt = store_stmt(store, sql);

	if (stmt == NULL)
		return NULL;
	if (account != NULL)
		sqlite3_bind_text(stmt, 1, account, -1, SQLITE_STATIC);
	if (node != NULL)
		sqlite3_bind_text(stmt, 2, node, -1, SQLITE_STATIC);
	return stmt;
}

struct text_rows {
	store_text_cb *cb;
	void *context;
};

static int text_row(void *context, sqlite3_stmt *row)
{
	struct text_rows *t = context;

	return t->cb(t->context, (const char *)sqlite3_column_text(row, 0));
}

int store_each_text(struct store *store, sqlite3_stmt *stmt, const char *who,
		    store_text_cb *cb, void *context)
{
	struct text_rows t = { cb, context };

	return store_each_row(store, stmt, who, text_row, &t, NULL);
}

static int first_i64(void *context, sqlite3_stmt *row)
{
	*(long long *)context = sqlite3_column_int64(row, 0);
	return 1;
}

int store_first_i64(struct store *store, sqlite3_stmt *stmt, const char *who,
		    long long *value_r)
{
	unsigned rows;

	if (store_each_row(store, stmt, who, first_i64, value_r, &rows) < 0)
		return -1;
	return rows > 0 ? 1 : 0;
}

int store_begin(struct store *store)
{
	const char *error;

	if (store->txn_depth++ > 0)
		return 0;
	store->txn_failed = false;
	if (exec_sql(store->db, "BEGIN IMMEDIATE;", &error) < 0) {
		store->txn_depth = 0;
		return -1;
	}
	return 0;
}

int store_commit(struct store *store)
{
	const char *error;

	if (store->txn_depth == 0 || --store->txn_depth > 0)
		return 0;
	if (exec_sql(store->db, "COMMIT;", &error) < 0) {
		exec_sql(store->db, "ROLLBACK;", &error);
		return -1;
	}
	return 0;
}

void store_rollback(struct store *store)
{
	const char *error;

	if (store->txn_depth == 0)
		return;
	store->txn_depth = 0;
	exec_sql(store->db, "ROLLBACK;", &error);
}

int store_meta_get_i64(struct store *store, const char *key, long long *value_r)
{
	static const char sql[] = "SELECT value FROM meta WHERE key = ?";
	sqlite3_stmt *stmt = store_stmt(store, sql);
	int rc;

	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		*value_r = sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	return rc == SQLITE_ROW ? 0 : -1;
}

int store_meta_set_i64(struct store *store, const char *key, long long value)
{
	static const char sql[] =
		"INSERT INTO meta (key, value) VALUES (?, ?) "
		"ON CONFLICT (key) DO UPDATE SET value = excluded.value";
	sqlite3_stmt *stmt = store_stmt(store, sql);

	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, value);
	return store_exec_stmt(store, stmt);
}
