#include "ingest/ingest_imap_batch.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "store/imap_source_state.h"
#include "store/node_tree.h"

void ingest_imap_batch_free(struct ingest_imap_batch *b)
{
	if (b == NULL)
		return;
	json_decref(b->events);
	for (size_t i = 0; i < b->n_recs; i++) {
		free(b->recs[i].node);
		free(b->recs[i].new_node);
		ingest_imap_delta_clear(&b->recs[i].delta);
	}
	free(b->recs);
	free(b);
}

struct ingest_imap_batch *ingest_imap_batch_new(struct ingest_imap_watch *w)
{
	struct ingest_imap_batch *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->w = w;
	b->events = json_array();
	if (b->events == NULL) {
		free(b);
		return NULL;
	}
	return b;
}

struct ingest_imap_rec *ingest_imap_batch_rec(struct ingest_imap_batch *b,
					      enum ingest_imap_rec_kind kind,
					      const char *node)
{
	struct ingest_imap_rec *r;

	if (b->n_recs == b->cap_recs) {
		size_t cap = b->cap_recs * 2 + 4;
		struct ingest_imap_rec *bigger = realloc(b->recs, cap * sizeof(*bigger));

		if (bigger == NULL)
			return NULL;
		b->recs = bigger;
		b->cap_recs = cap;
	}
	r = &b->recs[b->n_recs];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	if (node != NULL && (r->node = strdup(node)) == NULL)
		return NULL;
	b->n_recs++;
	return r;
}

int ingest_imap_batch_box(struct ingest_imap_batch *b, const char *node,
			  const struct ingest_imap_box *box, bool reset,
			  struct ingest_imap_delta *delta)
{
	struct ingest_imap_rec *r = ingest_imap_batch_rec(b, INGEST_IMAP_REC_BOX, node);

	if (r == NULL)
		return -1;
	r->uidvalidity = box->uidvalidity;
	r->uidnext = box->uidnext;
	r->modseq = box->modseq;
	r->reset = reset;
	if (delta != NULL) {
		r->delta = *delta;
		memset(delta, 0, sizeof(*delta));
	}
	return 0;
}

/* Messages first forgotten (reset), then the header, then the delta. */
static int store_box(struct store *store, const char *account,
		     const struct ingest_imap_rec *r)
{
	/* a baseline publishes nothing, but its mailboxes are nodes
	 * subscribers may ask for at once (as after discovery's LIST) */
	if (r->reset && node_tree_touch(store, account, r->node, NULL,
					r->uidvalidity, clock_now_us()) < 0)
		return -1;
	if (r->reset && imap_source_state_messages_forget(store, account, r->node) < 0)
		return -1;
	if (imap_source_state_mailbox_put(store, account, r->node, r->uidvalidity,
					  r->uidnext, r->modseq) < 0)
		return -1;
	for (size_t i = 0; i < r->delta.n_put; i++) {
		if (imap_source_state_message_put(store, account, r->node, r->delta.put[i].uid,
						  r->delta.put[i].flags) < 0)
			return -1;
	}
	for (size_t i = 0; i < r->delta.n_gone; i++) {
		if (imap_source_state_message_forget(store, account, r->node,
						     r->delta.gone[i]) < 0)
			return -1;
	}
	return 0;
}

static int store_rec(struct store *store, const char *account,
		     const struct ingest_imap_rec *r)
{
	switch (r->kind) {
	case INGEST_IMAP_REC_ACCOUNT:
		return imap_source_state_account_listed(store, account, clock_now_us());
	case INGEST_IMAP_REC_BOX:
		return store_box(store, account, r);
	case INGEST_IMAP_REC_BOX_DELETE:
		return imap_source_state_mailbox_delete(store, account, r->node);
	case INGEST_IMAP_REC_BOX_RENAME:
		return imap_source_state_mailbox_rename(store, account, r->node, r->new_node);
	}
	return -1;
}

int ingest_imap_batch_store(const struct ingest_imap_batch *b, struct store *store,
			    const char *account)
{
	for (size_t i = 0; i < b->n_recs; i++) {
		if (store_rec(store, account, &b->recs[i]) < 0)
			return -1;
	}
	return 0;
}

int ingest_imap_queue_commit(struct ingest_imap_queue *q, struct ingest_imap_batch *b,
			     uv_cond_t *cond)
{
	int result;

	if (b->n_recs == 0 && json_array_size(b->events) == 0 && !b->reload) {
		ingest_imap_batch_free(b);
		return 0;
	}
	uv_mutex_lock(&q->lock);
	if (atomic_load(&q->stop)) {
		/* close has drained the queue for the last time */
		uv_mutex_unlock(&q->lock);
		ingest_imap_batch_free(b);
		return -1;
	}
	b->cond = cond;
	*q->tail = b;
	q->tail = &b->next;
	uv_async_send(&q->async);
	while (!b->done)
		uv_cond_wait(cond, &q->lock);
	uv_mutex_unlock(&q->lock);
	result = b->result;
	ingest_imap_batch_free(b);
	return result;
}

struct ingest_imap_batch *ingest_imap_queue_take(struct ingest_imap_queue *q)
{
	struct ingest_imap_batch *b;

	uv_mutex_lock(&q->lock);
	b = q->head;
	if (b != NULL) {
		q->head = b->next;
		if (q->head == NULL)
			q->tail = &q->head;
	}
	uv_mutex_unlock(&q->lock);
	return b;
}

void ingest_imap_queue_answer(struct ingest_imap_queue *q, struct ingest_imap_batch *b)
{
	uv_mutex_lock(&q->lock);
	b->done = true;
	uv_cond_broadcast(b->cond);
	uv_mutex_unlock(&q->lock);
}

void ingest_imap_queue_nap(struct ingest_imap_queue *q, uv_cond_t *cond, uint64_t ms)
{
	uv_mutex_lock(&q->lock);
	if (!atomic_load(&q->stop))
		uv_cond_timedwait(cond, &q->lock, ms * 1000000ULL);
	uv_mutex_unlock(&q->lock);
}
