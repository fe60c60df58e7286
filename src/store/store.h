/* The embedded store: one SQLite database in WAL mode holding the event
 * journal, the node tree, subscriptions and the last items of each node.
 * Used from the loop thread only. */
#ifndef MAILPUBSUB_STORE_H
#define MAILPUBSUB_STORE_H

#include <sqlite3.h>
#include <stdbool.h>

struct store;

/* full_sync: fsync every commit (survives power loss) rather than only at
 * checkpoints (survives a crash of the daemon). */
int store_open(const char *path, bool full_sync, struct store **store_r,
	       const char **error_r);
void store_close(struct store **store);

/* A prepared statement for sql, cached by the address of sql: pass a string
 * with static storage. Reset and unbound, ready for binding. NULL on error
 * (logged). */
sqlite3_stmt *store_stmt(struct store *store, const char *sql);
sqlite3 *store_db(struct store *store);

/* Nested calls are flattened: only the outermost begin/commit pair acts. */
int store_begin(struct store *store);
int store_commit(struct store *store);
void store_rollback(struct store *store);

/* Small key/value table for counters and watermarks. */
int store_meta_get_i64(struct store *store, const char *key, long long *value_r);
int store_meta_set_i64(struct store *store, const char *key, long long value);

/* Runs a statement that returns no rows; returns 0 or -1 (logged). */
int store_exec_stmt(struct store *store, sqlite3_stmt *stmt);

#endif
