/* The IMAP client source: for mail stores that push nothing, mailpubsubd
 * watches the configured accounts over IMAP and synthesizes the RFC 5423
 * events itself, in the spirit of interimap: it remembers, per mailbox,
 * UIDVALIDITY, HIGHESTMODSEQ, UIDNEXT and every UID with its flags, and on
 * each change asks the server only for what changed since
 * (UID FETCH ... (CHANGEDSINCE m VANISHED) with QRESYNC, CHANGEDSINCE with
 * CONDSTORE, everything otherwise). The differences become MessageNew,
 * MessageExpunge, MessageRead, MessageTrash, FlagsSet and FlagsClear with
 * the mailbox's counts; differences between LISTs become MailboxCreate,
 * MailboxDelete and MailboxRename (a new name with a vanished name's
 * UIDVALIDITY is a rename). A changed UIDVALIDITY is published as a
 * vnd.mailpubsub.MailboxStatus with a vnd.mailpubsub.resync reason, never
 * as a replay of the whole mailbox.
 *
 * The events are JSON objects in the generic source's format
 * (pubsub-schemas/event-input.schema.json), journaled with source "imap"
 * in the same transaction as the sync state they lead to (tables
 * imap_source_*), so a restart neither replays nor misses anything: it
 * resumes from the state of the last event journaled.
 *
 * Threads: one per (account, IDLEd mailbox), each with a dedicated IMAP
 * session (imap_session_open: the client's connection, TLS and SASL code;
 * authorized as the account). IDLE blocks a connection for minutes, which
 * neither libuv's threadpool nor imap_client's pool is made for. The first
 * thread of an account also LISTs and polls every mailbox not IDLEd on.
 * Threads never touch SQLite: they hand events and state changes to the
 * loop thread and wait for the commit.
 *
 * The modules behind it (ingest_imap_*.h) are described in ingest_imap.c;
 * the diff's pure part, for tests, in ingest_imap_diff.h. */
#ifndef MAILPUBSUB_INGEST_IMAP_H
#define MAILPUBSUB_INGEST_IMAP_H

#include <uv.h>

struct ingest_imap;
struct imap_client;
struct config;
struct sink;
struct stats_counters;
struct store;

/* Starts a watcher per account and IDLEd mailbox of [imap_source]. Each
 * batch of changes goes to sink with the watchers' state, in one
 * transaction (the sink's listeners hear of it after the commit).
 * config, store, sink, stats and imap are borrowed and must outlive the
 * source (close the source first). */
int ingest_imap_new(uv_loop_t *loop, const struct config *config, struct store *store,
		    struct sink *sink, struct stats_counters *stats,
		    struct imap_client *imap, struct ingest_imap **ingest_r,
		    const char **error_r);
/* Stops the watchers (commands in progress are cut short), journals what
 * they had handed over, joins them. Blocks for at most about [imap]
 * timeout_ms. Clears *ingest. */
void ingest_imap_close(struct ingest_imap **ingest);
/* Watchers (one per account and IDLEd mailbox), and how many of them have
 * a session to the server now (ingest NULL: none). */
void ingest_imap_watchers(struct ingest_imap *ingest, unsigned *watchers_r,
			  unsigned *connected_r);

#endif
