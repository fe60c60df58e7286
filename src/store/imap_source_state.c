#include "store/imap_source_state.h"

#include <stddef.h>

#include <sqlite3.h>

#include "store/store_sql.h"

int imap_source_state_account_known(struct store *store, const char *account,
				    bool *known_r)
{
	static const char sql[] =
		"SELECT 1 FROM imap_source_accounts WHERE account = ?";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	*known_r = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_reset(st);
	return 0;
}

int imap_source_state_account_listed(struct store *store, const char *account,
				     long long listed_us)
{
	static const char sql[] =
		"INSERT INTO imap_source_accounts (account, listed_us) VALUES (?, ?) "
		"ON CONFLICT (account) DO UPDATE SET listed_us = excluded.listed_us";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, listed_us);
	return store_exec_stmt(store, st);
}

int imap_source_state_mailbox_put(struct store *store, const char *account,
				  const char *node, uint32_t uidvalidity,
				  uint32_t uidnext, uint64_t modseq)
{
	static const char sql[] =
		"INSERT INTO imap_source_mailboxes (account, node, uidvalidity, uidnext, "
		"highestmodseq) VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, node) DO "
		"UPDATE SET uidvalidity = excluded.uidvalidity, uidnext = excluded.uidnext, "
		"highestmodseq = excluded.highestmodseq";
	sqlite3_stmt *st = store_stmt_mailbox(store, sql, account, node);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 3, uidvalidity);
	sqlite3_bind_int64(st, 4, uidnext);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)modseq);
	return store_exec_stmt(store, st);
}

int imap_source_state_messages_forget(struct store *store, const char *account,
				      const char *node)
{
	static const char sql[] =
		"DELETE FROM imap_source_messages WHERE account = ? AND node = ?";
	sqlite3_stmt *st = store_stmt_mailbox(store, sql, account, node);

	return st != NULL ? store_exec_stmt(store, st) : -1;
}

int imap_source_state_mailbox_delete(struct store *store, const char *account,
				     const char *node)
{
	static const char sql[] =
		"DELETE FROM imap_source_mailboxes WHERE account = ? AND node = ?";
	sqlite3_stmt *st;

	if (imap_source_state_messages_forget(store, account, node) < 0 ||
	    (st = store_stmt_mailbox(store, sql, account, node)) == NULL)
		return -1;
	return store_exec_stmt(store, st);
}

/* sql: UPDATE ... SET node = ?1 WHERE account = ?2 AND node = ?3 */
static int rename_rows(struct store *store, const char *sql, const char *account,
		       const char *node, const char *new_node)
{
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, new_node, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, node, -1, SQLITE_STATIC);
	return store_exec_stmt(store, st);
}

int imap_source_state_mailbox_rename(struct store *store, const char *account,
				     const char *node, const char *new_node)
{
	static const char sql_box[] =
		"UPDATE imap_source_mailboxes SET node = ? WHERE account = ? AND node = ?";
	static const char sql_msgs[] =
		"UPDATE imap_source_messages SET node = ? WHERE account = ? AND node = ?";

	if (rename_rows(store, sql_box, account, node, new_node) < 0)
		return -1;
	return rename_rows(store, sql_msgs, account, node, new_node);
}

int imap_source_state_message_put(struct store *store, const char *account,
				  const char *node, uint32_t uid, const char *flags)
{
	static const char sql[] =
		"INSERT INTO imap_source_messages (account, node, uid, flags) "
		"VALUES (?, ?, ?, ?) ON CONFLICT (account, node, uid) DO UPDATE "
		"SET flags = excluded.flags";
	sqlite3_stmt *st = store_stmt_mailbox(store, sql, account, node);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 3, uid);
	sqlite3_bind_text(st, 4, flags, -1, SQLITE_STATIC);
	return store_exec_stmt(store, st);
}

int imap_source_state_message_forget(struct store *store, const char *account,
				     const char *node, uint32_t uid)
{
	static const char sql[] =
		"DELETE FROM imap_source_messages WHERE account = ? AND node = ? AND uid = ?";
	sqlite3_stmt *st = store_stmt_mailbox(store, sql, account, node);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 3, uid);
	return store_exec_stmt(store, st);
}

int imap_source_state_mailboxes(struct store *store, const char *account,
				imap_source_state_mailbox_cb *each, void *context)
{
	static const char sql[] =
		"SELECT node, uidvalidity, uidnext, highestmodseq "
		"FROM imap_source_mailboxes WHERE account = ? ORDER BY node";
	sqlite3_stmt *st = store_stmt(store, sql);
	int rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *node = (const char *)sqlite3_column_text(st, 0);

		if (node == NULL)
			continue;
		if (each(context, node, (uint32_t)sqlite3_column_int64(st, 1),
			 (uint32_t)sqlite3_column_int64(st, 2),
			 (uint64_t)sqlite3_column_int64(st, 3)) < 0)
			break;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int imap_source_state_messages(struct store *store, const char *account,
			       const char *node, imap_source_state_message_cb *each,
			       void *context)
{
	static const char sql[] =
		"SELECT uid, flags FROM imap_source_messages "
		"WHERE account = ? AND node = ? ORDER BY uid";
	sqlite3_stmt *st = store_stmt_mailbox(store, sql, account, node);
	int rc;

	if (st == NULL)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *flags = (const char *)sqlite3_column_text(st, 1);

		if (each(context, (uint32_t)sqlite3_column_int64(st, 0),
			 flags != NULL ? flags : "") < 0)
			break;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}
