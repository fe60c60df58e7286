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
 * loop thread and wait for the commit. */
#ifndef MAILPUBSUB_INGEST_IMAP_H
#define MAILPUBSUB_INGEST_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

struct ingest_imap;
struct imap_client;
struct publish_service;

/* Called on the loop thread after events were journaled. */
typedef void ingest_imap_cb(void *context);

/* Starts a watcher per account and IDLEd mailbox of [imap_source]; imap
 * must outlive the source (close the source first). */
int ingest_imap_new(uv_loop_t *loop, struct publish_service *service,
		    struct imap_client *imap, ingest_imap_cb *on_journaled,
		    void *context, struct ingest_imap **ingest_r,
		    const char **error_r);
/* Stops the watchers (commands in progress are cut short), journals what
 * they had handed over, joins them. Blocks for at most about [imap]
 * timeout_ms. Clears *ingest. */
void ingest_imap_close(struct ingest_imap **ingest);
/* Watchers (one per account and IDLEd mailbox), and how many of them have
 * a session to the server now (ingest NULL: none). */
void ingest_imap_watchers(struct ingest_imap *ingest, unsigned *watchers_r,
			  unsigned *connected_r);

/* ---- the pure part, exposed for tests ------------------------------- */

struct ingest_imap_msg {
	uint32_t uid;
	char *flags;                 /* normalized: see ingest_imap_flags_normalize */
};

/* What is known of one mailbox. */
struct ingest_imap_box {
	uint32_t uidvalidity;        /* 0: nothing known yet */
	uint32_t uidnext;
	uint64_t modseq;             /* HIGHESTMODSEQ; 0 without CONDSTORE */
	struct ingest_imap_msg *msgs; /* sorted by uid */
	size_t n, cap;
};

struct ingest_imap_range {
	uint32_t first, last;
};

/* What the server said since. */
struct ingest_imap_changes {
	struct ingest_imap_msg *fetched; /* UID + FLAGS of changed messages,
					  * any order (sorted in place) */
	size_t n_fetched;
	bool complete;               /* fetched lists every message: the
				      * absent ones were expunged */
	const struct ingest_imap_range *vanished; /* QRESYNC VANISHED (EARLIER) */
	size_t n_vanished;
	uint32_t exists;             /* the mailbox's EXISTS */
	uint32_t uidnext;
	uint64_t modseq;             /* HIGHESTMODSEQ now; 0: unchanged */
};

/* What changed, for the store: messages to write, UIDs to drop. */
struct ingest_imap_delta {
	struct ingest_imap_msg *put;
	size_t n_put;
	uint32_t *gone;
	size_t n_gone;
};

/* flags (space separated, as FETCH FLAGS gives them) sorted
 * case-insensitively, duplicates and \Recent (per session, not a state of
 * the message) dropped. Newly allocated; NULL when out of memory. */
char *ingest_imap_flags_normalize(const char *flags);

/* An RFC 5092 URL with the owner in the authority, for the generic
 * source's decoder: imap://alice@host/INBOX/Sub;UIDVALIDITY=5/;UID=7 (levels
 * joined by sep, the store's hierarchy separator, each percent-encoded;
 * uidvalidity and uid left out when 0). NULL for a node that cannot be
 * written so (a level containing sep). */
char *ingest_imap_uri(const char *host, const char *account, const char *node,
		      char sep, uint32_t uidvalidity, uint32_t uid);

/* "1:3,7" for sorted, distinct uids. Newly allocated. */
char *ingest_imap_uidset(const uint32_t *uids, size_t n);

/* Applies changes to box and appends to events (a JSON array) the RFC 5423
 * events that tell them, every one with the mailbox's counts afterwards
 * (messages, vnd.cmu.unseenMessages, uidnext, modseq); uri is the
 * mailbox's (with UIDVALIDITY). Order: MessageNew by UID, MessageRead,
 * MessageTrash, FlagsSet, FlagsClear, MessageExpunge. Messages that were
 * new get MessageNew only. delta (cleared first) receives what the store
 * must record. Returns 0, or 1 without changing anything when an
 * incomplete answer does not add up to exists (expunges QRESYNC did not
 * report, or no QRESYNC): then fetch everything and call again with
 * complete set. -1 when out of memory. */
int ingest_imap_diff(struct ingest_imap_box *box, struct ingest_imap_changes *ch,
		     const char *uri, json_t *events, struct ingest_imap_delta *delta);

/* Replaces what box knows with msgs (a baseline: no events). Takes the
 * flags strings of msgs. */
int ingest_imap_box_load(struct ingest_imap_box *box, uint32_t uidvalidity,
			 uint32_t uidnext, uint64_t modseq,
			 struct ingest_imap_msg *msgs, size_t n);
/* Messages without \Seen. */
uint32_t ingest_imap_box_unseen(const struct ingest_imap_box *box);
void ingest_imap_box_clear(struct ingest_imap_box *box);
void ingest_imap_delta_clear(struct ingest_imap_delta *delta);

#endif
