#include "imap/imap_pool.h"

#include <stdlib.h>
#include <string.h>

#include "imap/imap_backoff.h"
#include "imap/imap_error.h"
#include "imap/imap_stream.h"
#include "base/log.h"

/* identities held back after the server refused them (imap_backoff.h):
 * a few per pooled session, and each costs a name and two counters */
#define REFUSED_MAX 256u
/* LOGOUT of a session we no longer need is a courtesy: never wait long */
#define LOGOUT_TIMEOUT_MS 1000u

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Threading: the pool, its slot list, queues and the `busy` flags belong
 * to the loop thread. While a slot is busy, its connection belongs to the
 * one worker running its op; otherwise to the loop thread. The only things
 * shared across threads are peer->aborting (atomic) and a connection's
 * fd, which imap_pool_close() shuts down under peer->fd_lock to cut
 * blocked commands short. */

struct op_queue {
	struct imap_pool_op *head, *tail;
};

/* One pooled session. */
struct imap_pool_slot {
	struct imap_pool_slot *prev, *next; /* pool, most recently used first */
	struct imap_pool *pool;
	bool busy;                     /* an op of this slot is in the threadpool */
	struct op_queue queue;
	struct imap_conn conn;         /* key: the authorization identity */
};

struct imap_pool {
	uv_loop_t *loop;
	struct imap_peer *peer;
	unsigned max_sessions;

	struct imap_pool_slot *sessions;      /* MRU first */
	struct imap_pool_slot *sessions_tail;
	unsigned n_sessions;
	struct op_queue waiting;       /* no session slot free yet */
	struct op_queue done;          /* finished without a worker */
	uv_timer_t done_timer;
	unsigned works;                /* uv_work_t in flight */

	unsigned failures;             /* consecutive failed connection attempts */
	char conn_error[320];          /* why the last one failed */
	uint64_t retry_at;             /* uv_now() before which we do not connect */
	struct imap_backoff *refused;  /* identities held back (IMAP_FAIL_AUTHZ) */

	bool closing, finishing;
	void (*close_done)(void *);
	void *close_ctx;
	char last_error[320];
	unsigned long long commands, errors, connect_failures;
};

/* ---- the worker --------------------------------------------------------- */

static void op_work(uv_work_t *work)
{
	struct imap_pool_op *op = container_of(work, struct imap_pool_op, work);
	struct imap_pool_slot *s = op->slot;

	for (int attempt = 0;; attempt++) {
		bool reused = s->conn.imap != NULL;

		if (!reused && imap_conn_connect(&s->conn, &op->fail, op->cmd.error,
						 sizeof(op->cmd.error)) < 0) {
			op->cmd.result = IMAP_TEMPFAIL;
			return;
		}
		op->cmd.result = IMAP_TEMPFAIL;
		if (imap_command_run(&s->conn, &op->cmd) == IMAP_RUN_DONE)
			return;
		imap_conn_disconnect(&s->conn);
		/* a pooled session may have died while idle (server restart,
		 * idle timeout): the commands are read-only, so try once more
		 * on a fresh connection */
		if (!reused || attempt > 0) {
			/* on a connection just made, so the server was there:
			 * as an identity, it is that identity's session that broke */
			op->fail = s->conn.key[0] != '\0' ? IMAP_FAIL_AUTHZ : IMAP_FAIL_CONNECT;
			return;
		}
		log_debug("imap: pooled session failed (%s), reconnecting", op->cmd.error);
		imap_command_reset(&op->cmd);
	}
}

/* ---- pool and queues (loop thread) -------------------------------------- */

static void queue_push(struct op_queue *q, struct imap_pool_op *op)
{
	op->next = NULL;
	if (q->tail != NULL)
		q->tail->next = op;
	else
		q->head = op;
	q->tail = op;
}

/* Background ops go last; any other op goes ahead of them, after the ops
 * of its own kind that came before it. */
static void queue_insert(struct op_queue *q, struct imap_pool_op *op)
{
	struct imap_pool_op **p = &q->head;

	if (op->background) {
		queue_push(q, op);
		return;
	}
	while (*p != NULL && !(*p)->background)
		p = &(*p)->next;
	op->next = *p;
	if (*p == NULL)
		q->tail = op;
	*p = op;
}

static struct imap_pool_op *queue_pop(struct op_queue *q)
{
	struct imap_pool_op *op = q->head;

	if (op != NULL) {
		q->head = op->next;
		if (q->head == NULL)
			q->tail = NULL;
		op->next = NULL;
	}
	return op;
}

/* Counts the answer and hands op back. */
static void op_complete(struct imap_pool_op *op)
{
	op->pool->commands++;
	if (op->cmd.result == IMAP_TEMPFAIL)
		op->pool->errors++;
	op->complete(op);
}

static void on_done_timer(uv_timer_t *t);

/* Completes op with IMAP_TEMPFAIL from the loop, never from inside the
 * call that queued it. */
static void op_fail_later(struct imap_pool *p, struct imap_pool_op *op, const char *why)
{
	op->cmd.result = IMAP_TEMPFAIL;
	imap_error_set(op->cmd.error, sizeof(op->cmd.error), "%s", why);
	queue_push(&p->done, op);
	if (!uv_is_active((uv_handle_t *)&p->done_timer))
		uv_timer_start(&p->done_timer, on_done_timer, 0, 0);
}

static struct imap_pool_slot *slot_find(struct imap_pool *p, const char *key)
{
	for (struct imap_pool_slot *s = p->sessions; s != NULL; s = s->next) {
		if (strcmp(s->conn.key, key) == 0)
			return s;
	}
	return NULL;
}

static void pool_unlink(struct imap_pool *p, struct imap_pool_slot *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		p->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	else
		p->sessions_tail = s->prev;
	s->prev = s->next = NULL;
}

static void pool_push_front(struct imap_pool *p, struct imap_pool_slot *s)
{
	s->prev = NULL;
	s->next = p->sessions;
	if (p->sessions != NULL)
		p->sessions->prev = s;
	else
		p->sessions_tail = s;
	p->sessions = s;
}

static void pool_push_back(struct imap_pool *p, struct imap_pool_slot *s)
{
	s->next = NULL;
	s->prev = p->sessions_tail;
	if (p->sessions_tail != NULL)
		p->sessions_tail->next = s;
	else
		p->sessions = s;
	p->sessions_tail = s;
}

/* A session made for background work goes to the least recently used end:
 * the first one closed when the pool is full, so a sweep of many accounts
 * does not push out the sessions ACL questions keep using. */
static struct imap_pool_slot *slot_new(struct imap_pool *p, const char *key,
				   bool background)
{
	struct imap_pool_slot *s = calloc(1, sizeof(*s));

	if (s == NULL || imap_conn_init(&s->conn, p->peer, key, NULL) < 0) {
		free(s);
		return NULL;
	}
	s->pool = p;
	if (background)
		pool_push_back(p, s);
	else
		pool_push_front(p, s);
	p->n_sessions++;
	return s;
}

struct retire {
	uv_work_t work;
	struct imap_pool *pool;
	struct imap_pool_slot *slot;  /* detached from the pool */
};

static void retire_work(uv_work_t *work)
{
	struct retire *r = container_of(work, struct retire, work);
	struct imap_pool_slot *s = r->slot;
	unsigned timeout_ms = s->pool->peer->timeout_ms;

	imap_conn_logout(&s->conn, timeout_ms < LOGOUT_TIMEOUT_MS ? timeout_ms
			 : LOGOUT_TIMEOUT_MS);
	imap_conn_disconnect(&s->conn);
}

static void slot_free(struct imap_pool_slot *s)
{
	imap_conn_clear(&s->conn);
	free(s);
}

static void close_maybe_finish(struct imap_pool *p);

static void retire_after_work(uv_work_t *work, int status)
{
	struct retire *r = container_of(work, struct retire, work);
	struct imap_pool *p = r->pool;

	(void)status;
	slot_free(r->slot);
	free(r);
	p->works--;
	close_maybe_finish(p);
}

/* Takes an idle session out of the pool; LOGOUT happens in the threadpool. */
static void slot_retire(struct imap_pool_slot *s)
{
	struct imap_pool *p = s->pool;
	struct retire *r;

	pool_unlink(p, s);
	p->n_sessions--;
	if (s->conn.stream != NULL)
		s->conn.stream->aborting = NULL; /* LOGOUT even while closing */
	if (s->conn.imap != NULL && (r = calloc(1, sizeof(*r))) != NULL) {
		r->pool = p;
		r->slot = s;
		p->works++;
		if (uv_queue_work(p->loop, &r->work, retire_work, retire_after_work) == 0)
			return;
		p->works--;
		free(r);
	}
	if (s->conn.imap != NULL) {
		/* no thread for a polite LOGOUT: just drop the connection */
		s->conn.stream->deadline = 0;
		imap_conn_disconnect(&s->conn);
	}
	slot_free(s);
}

static struct imap_pool_slot *pool_lru_idle(struct imap_pool *p)
{
	for (struct imap_pool_slot *s = p->sessions_tail; s != NULL; s = s->prev) {
		if (!s->busy && s->queue.head == NULL)
			return s;
	}
	return NULL;
}

/* Frees a pool slot if the pool is full, closing the least recently used
 * idle session; false if every session is busy. */
static bool pool_make_room(struct imap_pool *p)
{
	struct imap_pool_slot *victim;

	if (p->n_sessions < p->max_sessions)
		return true;
	victim = pool_lru_idle(p);
	if (victim == NULL)
		return false;
	log_debug("imap: pool full (%u sessions), closing the one %s%s", p->n_sessions,
		  victim->conn.key[0] != '\0' ? "as " : "of the admin", victim->conn.key);
	slot_retire(victim);
	return true;
}

static void op_after_work(uv_work_t *work, int status);

/* Starts the session's next op, or fails it fast during backoff. */
static void slot_kick(struct imap_pool_slot *s)
{
	struct imap_pool *p = s->pool;
	struct imap_pool_op *op;
	uint64_t until;
	unsigned refusals;

	while (!s->busy && (op = queue_pop(&s->queue)) != NULL) {
		if (s->conn.imap == NULL && uv_now(p->loop) < p->retry_at) {
			char why[sizeof(op->cmd.error)];

			imap_error_set(why, sizeof(why), "backing off for %llu ms after %u failures: %s",
			       (unsigned long long)(p->retry_at - uv_now(p->loop)),
			       p->failures, p->conn_error);
			op_fail_later(p, op, why);
			continue;
		}
		if (s->conn.imap == NULL && (until = imap_backoff_until(p->refused, s->conn.key,
				uv_now(p->loop), &refusals)) != 0) {
			char why[sizeof(op->cmd.error)];

			imap_error_set(why, sizeof(why), "backing off for %llu ms: sessions as %s "
			       "failed %u times in a row", (unsigned long long)
			       (until - uv_now(p->loop)), s->conn.key, refusals);
			op_fail_later(p, op, why);
			continue;
		}
		op->slot = s;
		s->busy = true;
		p->works++;
		if (uv_queue_work(p->loop, &op->work, op_work, op_after_work) != 0) {
			s->busy = false;
			p->works--;
			op_fail_later(p, op, "cannot queue IMAP work");
		}
	}
}

/* Hands ops that found the pool full to sessions that became free. */
static void serve_waiting(struct imap_pool *p)
{
	while (p->waiting.head != NULL && !p->closing) {
		struct imap_pool_op *op = p->waiting.head;
		struct imap_pool_slot *s = slot_find(p, op->key);

		if (s == NULL) {
			if (!pool_make_room(p))
				return;
			s = slot_new(p, op->key, op->background);
		}
		queue_pop(&p->waiting);
		if (s == NULL) {
			op_fail_later(p, op, "out of memory");
			continue;
		}
		queue_insert(&s->queue, op);
		slot_kick(s);
	}
}

void imap_pool_submit(struct imap_pool *p, struct imap_pool_op *op)
{
	struct imap_pool_slot *s;

	op->pool = p;
	if (p->closing) {
		op_fail_later(p, op, "IMAP client is closing");
		return;
	}
	s = slot_find(p, op->key);
	if (s == NULL) {
		if (!pool_make_room(p)) {
			/* every session is busy: wait for one */
			queue_insert(&p->waiting, op);
			return;
		}
		s = slot_new(p, op->key, op->background);
		if (s == NULL) {
			op_fail_later(p, op, "out of memory");
			return;
		}
	} else if (!op->background) {
		pool_unlink(p, s);
		pool_push_front(p, s);
	}
	queue_insert(&s->queue, op);
	slot_kick(s);
}

static void backoff_failed(struct imap_pool *p, struct imap_pool_slot *s,
			   const struct imap_pool_op *op)
{
	unsigned delay, n;
	uint64_t retry_at;

	uv_update_time(p->loop);
	if (op->fail == IMAP_FAIL_AUTHZ) {
		n = imap_backoff_fail(p->refused, s->conn.key, uv_now(p->loop), &retry_at);
		log_warn("imap: %s (failure %u in a row as %s, next try as %s in %llu ms)",
			 op->cmd.error, n, s->conn.key, s->conn.key,
			 (unsigned long long)(retry_at - uv_now(p->loop)));
		p->connect_failures++;
		return;
	}
	p->failures++;
	p->connect_failures++;
	memcpy(p->conn_error, op->cmd.error, sizeof(p->conn_error));
	delay = imap_backoff_delay(p->failures);
	p->retry_at = uv_now(p->loop) + delay;
	log_warn("imap: %s (failure %u in a row, next connection in %u ms)", op->cmd.error,
		 p->failures, delay);
}

static void op_after_work(uv_work_t *work, int status)
{
	struct imap_pool_op *op = container_of(work, struct imap_pool_op, work);
	struct imap_pool *p = op->pool;
	struct imap_pool_slot *s = op->slot;
	bool was_closing = p->closing;

	(void)status;
	p->works--;
	s->busy = false;
	op->slot = NULL;
	if (op->fail != IMAP_FAIL_NONE && !p->closing) {
		backoff_failed(p, s, op);
	} else if (s->conn.imap != NULL) {
		p->failures = 0;
		p->retry_at = 0;
		imap_backoff_forget(p->refused, s->conn.key);
	}
	if (op->cmd.result == IMAP_TEMPFAIL && op->cmd.error[0] != '\0') {
		memcpy(p->last_error, op->cmd.error, sizeof(p->last_error));
		if (op->fail == IMAP_FAIL_NONE)
			log_warn("imap: %s", op->cmd.error);
	} else if (op->cmd.result == IMAP_NO) {
		log_debug("imap: %s", op->cmd.error);
	}
	if (p->closing) {
		slot_retire(s);
	} else {
		slot_kick(s);
		serve_waiting(p);
	}
	/* last: the callback may call back into this module, even close it */
	op_complete(op);
	if (was_closing)
		close_maybe_finish(p);
}

static void on_done_timer(uv_timer_t *t)
{
	struct imap_pool *p = t->data;
	struct imap_pool_op *op;

	while ((op = queue_pop(&p->done)) != NULL) {
		memcpy(p->last_error, op->cmd.error, sizeof(p->last_error));
		op_complete(op);
	}
	if (p->closing)
		close_maybe_finish(p);
	else
		serve_waiting(p);
}

static void on_pool_closed(uv_handle_t *h)
{
	struct imap_pool *p = h->data;
	void (*done)(void *) = p->close_done;
	void *ctx = p->close_ctx;

	while (p->sessions != NULL) {
		struct imap_pool_slot *s = p->sessions;

		pool_unlink(p, s);
		imap_conn_disconnect(&s->conn);
		slot_free(s);
	}
	imap_backoff_free(&p->refused);
	free(p);
	if (done != NULL)
		done(ctx);
}

static void close_maybe_finish(struct imap_pool *p)
{
	if (!p->closing || p->finishing || p->works > 0 || p->done.head != NULL)
		return;
	p->finishing = true;
	uv_close((uv_handle_t *)&p->done_timer, on_pool_closed);
}

void imap_pool_close(struct imap_pool **pool, void (*done)(void *), void *context)
{
	struct imap_pool *p = *pool;
	struct imap_pool_slot *s, *next;
	struct imap_pool_op *op;

	*pool = NULL;
	if (p == NULL) {
		if (done != NULL)
			done(context);
		return;
	}
	p->closing = true;
	p->close_done = done;
	p->close_ctx = context;
	while ((op = queue_pop(&p->waiting)) != NULL)
		op_fail_later(p, op, "IMAP client is closing");
	for (s = p->sessions; s != NULL; s = s->next) {
		while ((op = queue_pop(&s->queue)) != NULL)
			op_fail_later(p, op, "IMAP client is closing");
	}
	/* cut commands blocked in recv()/send() short */
	uv_mutex_lock(&p->peer->fd_lock);
	for (s = p->sessions; s != NULL; s = s->next) {
		if (s->busy && s->conn.stream != NULL)
			imap_stream_shutdown(s->conn.stream);
	}
	uv_mutex_unlock(&p->peer->fd_lock);
	/* idle sessions log out (bounded by LOGOUT_TIMEOUT_MS) */
	for (s = p->sessions; s != NULL; s = next) {
		next = s->next;
		if (!s->busy)
			slot_retire(s);
	}
	if (!uv_is_active((uv_handle_t *)&p->done_timer))
		uv_timer_start(&p->done_timer, on_done_timer, 0, 0);
}

void imap_pool_stats(const struct imap_pool *p, struct imap_client_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	stats->commands = p->commands;
	stats->errors = p->errors;
	stats->connect_failures = p->connect_failures;
	for (const struct imap_pool_slot *s = p->sessions; s != NULL; s = s->next) {
		stats->sessions++;
		/* a busy session's imap is its worker's to read */
		if (s->busy)
			stats->busy++;
		else if (s->conn.imap != NULL)
			stats->idle++;
	}
}

const char *imap_pool_last_error(const struct imap_pool *p)
{
	return p->last_error;
}

int imap_pool_new(uv_loop_t *loop, struct imap_peer *peer, unsigned max_sessions,
		  struct imap_pool **pool_r, const char **error_r)
{
	struct imap_pool *p = calloc(1, sizeof(*p));

	if (p == NULL || (p->refused = imap_backoff_new(REFUSED_MAX)) == NULL) {
		free(p);
		*error_r = "out of memory";
		return -1;
	}
	p->loop = loop;
	p->peer = peer;
	p->max_sessions = max_sessions;
	uv_timer_init(loop, &p->done_timer);
	p->done_timer.data = p;
	*pool_r = p;
	return 0;
}
