/* The embedded store: one SQLite database in WAL mode holding the event
 * journal, the node tree, subscriptions and the last items of each node.
 * Used from the loop thread only.
 *
 * The rest of the daemon sees an opaque struct store and, per table, the
 * functions of the store/ module that owns it (README "The store
 * interface"); SQLite itself is for store/ modules only
 * (store/store_sql.h). */
#ifndef MAILPUBSUB_STORE_H
#define MAILPUBSUB_STORE_H

#include <stdbool.h>

struct store;

/* full_sync: fsync every commit (survives power loss) rather than only at
 * checkpoints (survives a crash of the daemon). */
int store_open(const char *path, bool full_sync, struct store **store_r,
	       const char **error_r);
void store_close(struct store **store);

/* Nested calls are flattened: only the outermost begin/commit pair acts. */
int store_begin(struct store *store);
int store_commit(struct store *store);
void store_rollback(struct store *store);

/* Small key/value table for counters and watermarks. */
int store_meta_get_i64(struct store *store, const char *key, long long *value_r);
int store_meta_set_i64(struct store *store, const char *key, long long value);

#endif
