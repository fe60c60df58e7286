/* A batch: the events a watcher thread of the IMAP client source
 * synthesized and the changes of the sync state they lead to, handed to
 * the loop thread, which journals the events and writes the state in one
 * transaction (both or neither: a restart resumes from the state of the
 * last event journaled). Or, with reload, a request to put the watcher's
 * state back to the stored one.
 *
 * The queue is the hand-over: watcher threads never touch SQLite; they
 * queue a batch and wait until the loop thread has answered it. */
#ifndef MAILPUBSUB_INGEST_IMAP_BATCH_H
#define MAILPUBSUB_INGEST_IMAP_BATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "ingest/ingest_imap_box.h"
#include "ingest/ingest_imap_diff.h"
#include "store/store.h"

struct ingest_imap_watch;

enum ingest_imap_rec_kind {
	INGEST_IMAP_REC_ACCOUNT,     /* the account's baseline exists */
	INGEST_IMAP_REC_BOX,         /* a mailbox's state: header, plus delta */
	INGEST_IMAP_REC_BOX_DELETE,
	INGEST_IMAP_REC_BOX_RENAME,
};

/* A change of the sync state, written with the events it goes with. */
struct ingest_imap_rec {
	enum ingest_imap_rec_kind kind;
	char *node, *new_node;
	uint32_t uidvalidity, uidnext;
	uint64_t modseq;
	bool reset;                  /* drop every message row first */
	struct ingest_imap_delta delta;
};

struct ingest_imap_batch {
	struct ingest_imap_batch *next;
	struct ingest_imap_watch *w; /* whose */
	json_t *events;              /* array of event objects */
	bool reload;                 /* no changes: put the stored state back */
	struct ingest_imap_rec *recs;
	size_t n_recs, cap_recs;
	/* the answer, under the queue's lock */
	uv_cond_t *cond;             /* the waiting watcher's */
	bool done;
	int result;
};

struct ingest_imap_batch *ingest_imap_batch_new(struct ingest_imap_watch *w);
void ingest_imap_batch_free(struct ingest_imap_batch *b);
/* A new record of kind for node (NULL: none), zeroed otherwise; NULL when
 * out of memory. */
struct ingest_imap_rec *ingest_imap_batch_rec(struct ingest_imap_batch *b,
					      enum ingest_imap_rec_kind kind,
					      const char *node);
/* An INGEST_IMAP_REC_BOX with box's header; delta (NULL: none) is moved in
 * and cleared. */
int ingest_imap_batch_box(struct ingest_imap_batch *b, const char *node,
			  const struct ingest_imap_box *box, bool reset,
			  struct ingest_imap_delta *delta);

/* Loop thread, inside the caller's transaction: the batch's records into
 * account's sync state (store/imap_source_state.h). */
int ingest_imap_batch_store(const struct ingest_imap_batch *b, struct store *store,
			    const char *account);

/* The hand-over between the watcher threads and the loop thread. The
 * owner initialises lock and async and sets tail = &head. */
struct ingest_imap_queue {
	uv_mutex_t lock;             /* also guards the watchers' session pointers */
	uv_async_t async;            /* wakes the loop thread */
	atomic_bool stop;
	struct ingest_imap_batch *head, **tail;
};

/* Watcher thread: hands b over, waits on cond until the loop thread has
 * answered, and frees b. The answer, or -1 when the source is stopping.
 * A batch with nothing in it is not handed over (0). */
int ingest_imap_queue_commit(struct ingest_imap_queue *q, struct ingest_imap_batch *b,
			     uv_cond_t *cond);
/* Loop thread: the next batch handed over, or NULL. */
struct ingest_imap_batch *ingest_imap_queue_take(struct ingest_imap_queue *q);
/* Loop thread: b is answered (b->result set): wakes its watcher. */
void ingest_imap_queue_answer(struct ingest_imap_queue *q, struct ingest_imap_batch *b);
/* Watcher thread: sleeps up to ms on cond unless stopping. */
void ingest_imap_queue_nap(struct ingest_imap_queue *q, uv_cond_t *cond, uint64_t ms);

#endif
