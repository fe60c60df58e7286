/* One watcher of the IMAP client source: a thread per (account, IDLEd
 * mailbox) with a dedicated IMAP session authorized as the account. It
 * syncs its mailbox, IDLEs on it and syncs again; the account's first
 * watcher (the poller) also LISTs and polls every mailbox no other
 * watcher IDLEs on. What it learns goes to the loop thread as batches
 * (ingest_imap_batch.h); it waits for each to be committed.
 *
 * Ownership: the owner (ingest_imap.c) creates, loads, starts and frees
 * watchers on the loop thread. boxes and account_known are the thread's,
 * or the loop thread's while the thread waits for a batch (a reload, or
 * after a failed commit) and before it starts. link.imap is set and
 * cleared by the thread under queue->lock, so that close can interrupt it
 * and ingest_imap_watchers() can count it. */
#ifndef MAILPUBSUB_INGEST_IMAP_WATCH_H
#define MAILPUBSUB_INGEST_IMAP_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/config.h"
#include "imap/imap_client.h"
#include "ingest/ingest_imap_batch.h"
#include "ingest/ingest_imap_box.h"
#include "ingest/ingest_imap_session.h"
#include "store/store.h"

/* One watched mailbox. */
struct ingest_imap_wbox {
	char *node;
	struct ingest_imap_box box;
};

struct ingest_imap_watch {
	/* fixed from ingest_imap_watch_new on */
	struct ingest_imap_queue *queue;
	struct imap_client *imap;
	const struct config *config;
	char sep;                    /* the store's hierarchy separator */
	char *account;
	char *idle_node;             /* the mailbox this thread IDLEs on */
	bool poller;                 /* also LISTs and polls the rest */
	char **skip;                 /* nodes other watchers of the account own */
	size_t n_skip;
	/* see "Ownership" above */
	bool account_known;          /* a baseline exists in the store */
	struct ingest_imap_wbox *boxes;
	size_t n_boxes;
	struct ingest_imap_session link;
	uv_cond_t cond;              /* waits for batches and naps */
	uv_thread_t thread;
	bool started;
	struct ingest_imap_watch *next; /* the owner's list */
};

/* A watcher of account IDLEing on idle_node; mailboxes is [imap_source]
 * mailboxes (the poller skips those, the IDLEd ones of other watchers).
 * queue, imap and config must outlive it. */
int ingest_imap_watch_new(struct ingest_imap_queue *queue, struct imap_client *imap,
			  const struct config *config, char sep, const char *account,
			  const char *idle_node, bool poller, const char *mailboxes,
			  struct ingest_imap_watch **w_r, const char **error_r);
/* Loop thread (before the start, or while the thread waits for a batch):
 * the watcher's boxes as the store has them. */
int ingest_imap_watch_load(struct ingest_imap_watch *w, struct store *store);
int ingest_imap_watch_start(struct ingest_imap_watch *w);
/* Under queue->lock: has the watcher a session now? */
bool ingest_imap_watch_connected(const struct ingest_imap_watch *w);
/* Under queue->lock, with queue->stop set: cuts its command short and
 * wakes it from a nap. */
void ingest_imap_watch_interrupt(struct ingest_imap_watch *w);
/* Joins the thread (started ones must be stopping) and frees; clears *w. */
void ingest_imap_watch_free(struct ingest_imap_watch **w);

#endif
