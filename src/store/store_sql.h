/* The SQLite side of the store, for the modules of src/store/ only: the
 * rest of the daemon calls the functions those modules name for what they
 * mean, so that another back end can stand behind the same functions
 * (README "The store interface"). */
#ifndef MAILPUBSUB_STORE_SQL_H
#define MAILPUBSUB_STORE_SQL_H

#include <stddef.h>
#include <sqlite3.h>

struct store;

/* A prepared statement for sql, cached by the address of sql: pass a string
 * with static storage. Reset and unbound, ready for binding. NULL on error
 * (logged). */
sqlite3_stmt *store_stmt(struct store *store, const char *sql);
sqlite3 *store_db(struct store *store);

/* store_stmt for the tables keyed by mailbox: ?1 = account and ?2 = node
 * bound (static: they must outlive the statement's run); a NULL one is
 * left unbound, i.e. SQL NULL. */
sqlite3_stmt *store_stmt_mailbox(struct store *store, const char *sql,
				 const char *account, const char *node);

/* Runs a statement that returns no rows; returns 0 or -1 (logged). */
int store_exec_stmt(struct store *store, sqlite3_stmt *stmt);

/* Rows changed by the last statement that ran. */
int store_changes(struct store *store);

/* Runs sql (one or more statements, no parameters, no rows) outside the
 * statement cache: schema of the tables a module creates itself. 0 or -1
 * (logged as who). */
int store_exec_sql(struct store *store, const char *sql, const char *who);

/* Called for each row; return non-zero to stop. */
typedef int store_row_cb(void *context, sqlite3_stmt *row);

/* The row loop: steps stmt through its rows, calling row for each until it
 * returns non-zero, then resets stmt. 0, or -1 on a step error (logged as
 * who). *rows_r (may be NULL): rows handed to row. */
int store_each_row(struct store *store, sqlite3_stmt *stmt, const char *who,
		   store_row_cb *row, void *context, unsigned *rows_r);

/* Called for each row with its first column as text; non-zero stops. */
typedef int store_text_cb(void *context, const char *text);

/* store_each_row for a one-column query: hands column 0 to cb. */
int store_each_text(struct store *store, sqlite3_stmt *stmt, const char *who,
		    store_text_cb *cb, void *context);

/* The first column of the first row as an integer: 1 and *value_r set
 * when there is a row, 0 when none, -1 on error (logged as who). Resets
 * stmt. */
int store_first_i64(struct store *store, sqlite3_stmt *stmt, const char *who,
		    long long *value_r);

#endif
