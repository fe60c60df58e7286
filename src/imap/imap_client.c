/* The pool behind imap_client.h: sessions by authorization identity,
 * queues, backoff, and the libuv threadpool that runs the blocking
 * commands (imap_command.c) on the pooled connections (imap_conn.c). */
#include "imap/imap_client.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "imap/imap_backoff.h"
#include "imap/imap_command.h"
#include "imap/imap_conn.h"
#include "imap/imap_error.h"
#include "imap/imap_stream.h"
#include "base/log.h"

#define DEFAULT_TIMEOUT_MS 10000u
#define DEFAULT_MAX_SESSIONS 8u
/* identities held back after the server refused them (imap_backoff.h):
 * a few per pooled session, and each costs a name and two counters */
#define REFUSED_MAX 256u
/* LOGOUT of a session we no longer need is a courtesy: never wait long */
#define LOGOUT_TIMEOUT_MS 1000u

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- data structures ---------------------------------------------------
 *
 * Threading: struct imap_client, the slot list, queues and the `busy`
 * flags belong to the loop thread. While a slot is busy, its connection
 * belongs to the one worker running its op; otherwise to the loop thread.
 * The only things shared across threads are peer.aborting (atomic) and a
 * connection's fd, which imap_client_close() shuts down under
 * peer.fd_lock to cut blocked commands short. */

struct op;

struct op_queue {
	struct op *head, *tail;
};

/* One pooled session. */
struct slot {
	struct slot *prev, *next;      /* pool, most recently used first */
	struct imap_client *client;
	bool busy;                     /* an op of this slot is in the threadpool */
	struct op_queue queue;
	struct imap_conn conn;         /* key: the authorization identity */
};

struct op {
	struct op *next;
	/* queued behind every other op and never promoted in the pool
	 * (imap_client_list_background) */
	bool background;
	struct imap_client *client;
	struct slot *slot;
	uv_work_t work;
	char *key;
	union {
		void (*myrights)(void *ctx, enum imap_result r, const char *rights);
		void (*list)(void *ctx, enum imap_result r, char **nodes, size_t n);
		void (*status)(void *ctx, enum imap_result r, const struct imap_status *st);
		void (*fetch)(void *ctx, enum imap_result r, const struct imap_message *msg);
	} cb;
	void *ctx;
	enum imap_fail fail;           /* written by the worker */
	struct imap_command cmd;
};

struct imap_client {
	uv_loop_t *loop;
	struct imap_peer peer;
	bool list_as_owner;
	unsigned max_sessions;

	struct slot *sessions;         /* MRU first */
	struct slot *sessions_tail;
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
	struct op *op = container_of(work, struct op, work);
	struct slot *s = op->slot;

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

static void queue_push(struct op_queue *q, struct op *op)
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
static void queue_insert(struct op_queue *q, struct op *op)
{
	struct op **p = &q->head;

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

static struct op *queue_pop(struct op_queue *q)
{
	struct op *op = q->head;

	if (op != NULL) {
		q->head = op->next;
		if (q->head == NULL)
			q->tail = NULL;
		op->next = NULL;
	}
	return op;
}

static void op_free(struct op *op)
{
	imap_command_reset(&op->cmd);
	free(op->key);
	free(op->cmd.account);
	free(op->cmd.node);
	free(op);
}

/* Runs the caller's callback and frees the op. */
static void op_complete(struct op *op)
{
	op->client->commands++;
	if (op->cmd.result == IMAP_TEMPFAIL)
		op->client->errors++;
	switch (op->cmd.kind) {
	case IMAP_COMMAND_MYRIGHTS:
		op->cb.myrights(op->ctx, op->cmd.result,
				op->cmd.result == IMAP_OK ? op->cmd.rights : NULL);
		break;
	case IMAP_COMMAND_LIST:
		if (op->cmd.result == IMAP_OK)
			op->cb.list(op->ctx, op->cmd.result, op->cmd.nodes, op->cmd.n_nodes);
		else
			op->cb.list(op->ctx, op->cmd.result, NULL, 0);
		break;
	case IMAP_COMMAND_STATUS:
		op->cb.status(op->ctx, op->cmd.result, op->cmd.result == IMAP_OK ? &op->cmd.st : NULL);
		break;
	case IMAP_COMMAND_FETCH: {
		struct imap_message msg = {
			op->cmd.body, op->cmd.body_len, op->cmd.flags != NULL ? op->cmd.flags : "",
			op->cmd.internaldate,
		};

		op->cb.fetch(op->ctx, op->cmd.result, op->cmd.result == IMAP_OK ? &msg : NULL);
		break;
	}
	}
	op_free(op);
}

static void on_done_timer(uv_timer_t *t);

/* Completes op with IMAP_TEMPFAIL from the loop, never from inside the
 * call that queued it. */
static void op_fail_later(struct imap_client *c, struct op *op, const char *why)
{
	op->cmd.result = IMAP_TEMPFAIL;
	imap_error_set(op->cmd.error, sizeof(op->cmd.error), "%s", why);
	queue_push(&c->done, op);
	if (!uv_is_active((uv_handle_t *)&c->done_timer))
		uv_timer_start(&c->done_timer, on_done_timer, 0, 0);
}

static struct slot *slot_find(struct imap_client *c, const char *key)
{
	for (struct slot *s = c->sessions; s != NULL; s = s->next) {
		if (strcmp(s->conn.key, key) == 0)
			return s;
	}
	return NULL;
}

static void pool_unlink(struct imap_client *c, struct slot *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	else
		c->sessions_tail = s->prev;
	s->prev = s->next = NULL;
}

static void pool_push_front(struct imap_client *c, struct slot *s)
{
	s->prev = NULL;
	s->next = c->sessions;
	if (c->sessions != NULL)
		c->sessions->prev = s;
	else
		c->sessions_tail = s;
	c->sessions = s;
}

static void pool_push_back(struct imap_client *c, struct slot *s)
{
	s->next = NULL;
	s->prev = c->sessions_tail;
	if (c->sessions_tail != NULL)
		c->sessions_tail->next = s;
	else
		c->sessions = s;
	c->sessions_tail = s;
}

/* A session made for background work goes to the least recently used end:
 * the first one closed when the pool is full, so a sweep of many accounts
 * does not push out the sessions ACL questions keep using. */
static struct slot *slot_new(struct imap_client *c, const char *key,
				   bool background)
{
	struct slot *s = calloc(1, sizeof(*s));

	if (s == NULL || imap_conn_init(&s->conn, &c->peer, key, NULL) < 0) {
		free(s);
		return NULL;
	}
	s->client = c;
	if (background)
		pool_push_back(c, s);
	else
		pool_push_front(c, s);
	c->n_sessions++;
	return s;
}

struct retire {
	uv_work_t work;
	struct imap_client *client;
	struct slot *slot;  /* detached from the pool */
};

static void retire_work(uv_work_t *work)
{
	struct retire *r = container_of(work, struct retire, work);
	struct slot *s = r->slot;
	unsigned timeout_ms = s->client->peer.timeout_ms;

	imap_conn_logout(&s->conn, timeout_ms < LOGOUT_TIMEOUT_MS ? timeout_ms
			 : LOGOUT_TIMEOUT_MS);
	imap_conn_disconnect(&s->conn);
}

static void slot_free(struct slot *s)
{
	imap_conn_clear(&s->conn);
	free(s);
}

static void close_maybe_finish(struct imap_client *c);

static void retire_after_work(uv_work_t *work, int status)
{
	struct retire *r = container_of(work, struct retire, work);
	struct imap_client *c = r->client;

	(void)status;
	slot_free(r->slot);
	free(r);
	c->works--;
	close_maybe_finish(c);
}

/* Takes an idle session out of the pool; LOGOUT happens in the threadpool. */
static void slot_retire(struct slot *s)
{
	struct imap_client *c = s->client;
	struct retire *r;

	pool_unlink(c, s);
	c->n_sessions--;
	if (s->conn.stream != NULL)
		s->conn.stream->aborting = NULL; /* LOGOUT even while closing */
	if (s->conn.imap != NULL && (r = calloc(1, sizeof(*r))) != NULL) {
		r->client = c;
		r->slot = s;
		c->works++;
		if (uv_queue_work(c->loop, &r->work, retire_work, retire_after_work) == 0)
			return;
		c->works--;
		free(r);
	}
	if (s->conn.imap != NULL) {
		/* no thread for a polite LOGOUT: just drop the connection */
		s->conn.stream->deadline = 0;
		imap_conn_disconnect(&s->conn);
	}
	slot_free(s);
}

static struct slot *pool_lru_idle(struct imap_client *c)
{
	for (struct slot *s = c->sessions_tail; s != NULL; s = s->prev) {
		if (!s->busy && s->queue.head == NULL)
			return s;
	}
	return NULL;
}

/* Frees a pool slot if the pool is full, closing the least recently used
 * idle session; false if every session is busy. */
static bool pool_make_room(struct imap_client *c)
{
	struct slot *victim;

	if (c->n_sessions < c->max_sessions)
		return true;
	victim = pool_lru_idle(c);
	if (victim == NULL)
		return false;
	log_debug("imap: pool full (%u sessions), closing the one %s%s", c->n_sessions,
		  victim->conn.key[0] != '\0' ? "as " : "of the admin", victim->conn.key);
	slot_retire(victim);
	return true;
}

static void op_after_work(uv_work_t *work, int status);

/* Starts the session's next op, or fails it fast during backoff. */
static void slot_kick(struct slot *s)
{
	struct imap_client *c = s->client;
	struct op *op;
	uint64_t until;
	unsigned refusals;

	while (!s->busy && (op = queue_pop(&s->queue)) != NULL) {
		if (s->conn.imap == NULL && uv_now(c->loop) < c->retry_at) {
			char why[sizeof(op->cmd.error)];

			imap_error_set(why, sizeof(why), "backing off for %llu ms after %u failures: %s",
			       (unsigned long long)(c->retry_at - uv_now(c->loop)),
			       c->failures, c->conn_error);
			op_fail_later(c, op, why);
			continue;
		}
		if (s->conn.imap == NULL && (until = imap_backoff_until(c->refused, s->conn.key,
				uv_now(c->loop), &refusals)) != 0) {
			char why[sizeof(op->cmd.error)];

			imap_error_set(why, sizeof(why), "backing off for %llu ms: sessions as %s "
			       "failed %u times in a row", (unsigned long long)
			       (until - uv_now(c->loop)), s->conn.key, refusals);
			op_fail_later(c, op, why);
			continue;
		}
		op->slot = s;
		s->busy = true;
		c->works++;
		if (uv_queue_work(c->loop, &op->work, op_work, op_after_work) != 0) {
			s->busy = false;
			c->works--;
			op_fail_later(c, op, "cannot queue IMAP work");
		}
	}
}

/* Hands ops that found the pool full to sessions that became free. */
static void serve_waiting(struct imap_client *c)
{
	while (c->waiting.head != NULL && !c->closing) {
		struct op *op = c->waiting.head;
		struct slot *s = slot_find(c, op->key);

		if (s == NULL) {
			if (!pool_make_room(c))
				return;
			s = slot_new(c, op->key, op->background);
		}
		queue_pop(&c->waiting);
		if (s == NULL) {
			op_fail_later(c, op, "out of memory");
			continue;
		}
		queue_insert(&s->queue, op);
		slot_kick(s);
	}
}

static void dispatch(struct imap_client *c, struct op *op)
{
	struct slot *s;

	if (c->closing) {
		op_fail_later(c, op, "IMAP client is closing");
		return;
	}
	s = slot_find(c, op->key);
	if (s == NULL) {
		if (!pool_make_room(c)) {
			/* every session is busy: wait for one */
			queue_insert(&c->waiting, op);
			return;
		}
		s = slot_new(c, op->key, op->background);
		if (s == NULL) {
			op_fail_later(c, op, "out of memory");
			return;
		}
	} else if (!op->background) {
		pool_unlink(c, s);
		pool_push_front(c, s);
	}
	queue_insert(&s->queue, op);
	slot_kick(s);
}

static void backoff_failed(struct imap_client *c, struct slot *s,
			   const struct op *op)
{
	unsigned delay, n;
	uint64_t retry_at;

	uv_update_time(c->loop);
	if (op->fail == IMAP_FAIL_AUTHZ) {
		n = imap_backoff_fail(c->refused, s->conn.key, uv_now(c->loop), &retry_at);
		log_warn("imap: %s (failure %u in a row as %s, next try as %s in %llu ms)",
			 op->cmd.error, n, s->conn.key, s->conn.key,
			 (unsigned long long)(retry_at - uv_now(c->loop)));
		c->connect_failures++;
		return;
	}
	c->failures++;
	c->connect_failures++;
	memcpy(c->conn_error, op->cmd.error, sizeof(c->conn_error));
	delay = imap_backoff_delay(c->failures);
	c->retry_at = uv_now(c->loop) + delay;
	log_warn("imap: %s (failure %u in a row, next connection in %u ms)", op->cmd.error,
		 c->failures, delay);
}

static void op_after_work(uv_work_t *work, int status)
{
	struct op *op = container_of(work, struct op, work);
	struct imap_client *c = op->client;
	struct slot *s = op->slot;
	bool was_closing = c->closing;

	(void)status;
	c->works--;
	s->busy = false;
	op->slot = NULL;
	if (op->fail != IMAP_FAIL_NONE && !c->closing) {
		backoff_failed(c, s, op);
	} else if (s->conn.imap != NULL) {
		c->failures = 0;
		c->retry_at = 0;
		imap_backoff_forget(c->refused, s->conn.key);
	}
	if (op->cmd.result == IMAP_TEMPFAIL && op->cmd.error[0] != '\0') {
		memcpy(c->last_error, op->cmd.error, sizeof(c->last_error));
		if (op->fail == IMAP_FAIL_NONE)
			log_warn("imap: %s", op->cmd.error);
	} else if (op->cmd.result == IMAP_NO) {
		log_debug("imap: %s", op->cmd.error);
	}
	if (c->closing) {
		slot_retire(s);
	} else {
		slot_kick(s);
		serve_waiting(c);
	}
	/* last: the callback may call back into this module, even close it */
	op_complete(op);
	if (was_closing)
		close_maybe_finish(c);
}

static void on_done_timer(uv_timer_t *t)
{
	struct imap_client *c = t->data;
	struct op *op;

	while ((op = queue_pop(&c->done)) != NULL) {
		memcpy(c->last_error, op->cmd.error, sizeof(c->last_error));
		op_complete(op);
	}
	if (c->closing)
		close_maybe_finish(c);
	else
		serve_waiting(c);
}

/* ---- public API -------------------------------------------------------- */

static void peer_clear(struct imap_peer *p)
{
	SSL_CTX_free(p->ssl_ctx);
	free(p->host);
	free(p->ca_file);
	free(p->admin_user);
	if (p->password != NULL)
		OPENSSL_cleanse(p->password, strlen(p->password));
	free(p->password);
	free(p->mechanism);
}

static void on_client_closed(uv_handle_t *h)
{
	struct imap_client *c = h->data;
	void (*done)(void *) = c->close_done;
	void *ctx = c->close_ctx;

	while (c->sessions != NULL) {
		struct slot *s = c->sessions;

		pool_unlink(c, s);
		imap_conn_disconnect(&s->conn);
		slot_free(s);
	}
	imap_backoff_free(&c->refused);
	uv_mutex_destroy(&c->peer.fd_lock);
	peer_clear(&c->peer);
	free(c);
	if (done != NULL)
		done(ctx);
}

static void close_maybe_finish(struct imap_client *c)
{
	if (!c->closing || c->finishing || c->works > 0 || c->done.head != NULL)
		return;
	c->finishing = true;
	uv_close((uv_handle_t *)&c->done_timer, on_client_closed);
}

static char *dup_or_null(const char *s, bool *failed)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*failed = true;
	return d;
}

int imap_client_new(uv_loop_t *loop, const struct imap_settings *s,
		    struct imap_client **client_r, const char **error_r)
{
	struct imap_client *c;
	struct imap_peer *p;
	bool failed = false;

	if (s->host == NULL || s->host[0] == '\0') {
		*error_r = "IMAP host not set";
		return -1;
	}
	if (s->admin_user == NULL || s->admin_user[0] == '\0' || s->password == NULL) {
		*error_r = "IMAP admin user or password not set";
		return -1;
	}
	if (s->tls != IMAP_TLS_NONE && s->tls != IMAP_TLS_STARTTLS && s->tls != IMAP_TLS_IMAPS) {
		*error_r = "bad IMAP TLS mode";
		return -1;
	}
	if (imap_stream_init(error_r) < 0)
		return -1;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	c->loop = loop;
	p = &c->peer;
	p->host = dup_or_null(s->host, &failed);
	p->ca_file = dup_or_null(s->ca_file, &failed);
	p->admin_user = dup_or_null(s->admin_user, &failed);
	p->password = dup_or_null(s->password, &failed);
	p->mechanism = dup_or_null(s->mechanism != NULL && s->mechanism[0] != '\0' ?
				   s->mechanism : "PLAIN", &failed);
	p->tls = s->tls;
	p->port = s->port != 0 ? s->port : s->tls == IMAP_TLS_IMAPS ? 993 : 143;
	p->verify = s->verify;
	p->other_inbox_named = s->other_inbox_named;
	c->list_as_owner = s->list_as_owner;
	c->peer.timeout_ms = s->timeout_ms != 0 ? s->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->max_sessions = s->max_sessions != 0 ? s->max_sessions : DEFAULT_MAX_SESSIONS;
	atomic_init(&c->peer.aborting, false);
	c->refused = imap_backoff_new(REFUSED_MAX);
	if (failed || c->refused == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	if (p->tls != IMAP_TLS_NONE) {
		if (imap_stream_tls_context(p->ca_file, p->verify, &p->ssl_ctx, error_r) < 0)
			goto fail;
		if (!p->verify)
			log_warn("imap: TLS certificate verification is disabled for %s",
				 p->host);
	}
	if (uv_mutex_init(&c->peer.fd_lock) != 0) {
		*error_r = "cannot create a mutex";
		goto fail;
	}
	uv_timer_init(loop, &c->done_timer);
	c->done_timer.data = c;
	*client_r = c;
	return 0;
fail:
	imap_backoff_free(&c->refused);
	peer_clear(p);
	free(c);
	return -1;
}

void imap_client_close(struct imap_client **client, void (*done)(void *),
		       void *context)
{
	struct imap_client *c = *client;
	struct slot *s, *next;
	struct op *op;

	*client = NULL;
	if (c == NULL) {
		if (done != NULL)
			done(context);
		return;
	}
	c->closing = true;
	c->close_done = done;
	c->close_ctx = context;
	atomic_store(&c->peer.aborting, true);
	while ((op = queue_pop(&c->waiting)) != NULL)
		op_fail_later(c, op, "IMAP client is closing");
	for (s = c->sessions; s != NULL; s = s->next) {
		while ((op = queue_pop(&s->queue)) != NULL)
			op_fail_later(c, op, "IMAP client is closing");
	}
	/* cut commands blocked in recv()/send() short */
	uv_mutex_lock(&c->peer.fd_lock);
	for (s = c->sessions; s != NULL; s = s->next) {
		if (s->busy && s->conn.stream != NULL)
			imap_stream_shutdown(s->conn.stream);
	}
	uv_mutex_unlock(&c->peer.fd_lock);
	/* idle sessions log out (bounded by LOGOUT_TIMEOUT_MS) */
	for (s = c->sessions; s != NULL; s = next) {
		next = s->next;
		if (!s->busy)
			slot_retire(s);
	}
	if (!uv_is_active((uv_handle_t *)&c->done_timer))
		uv_timer_start(&c->done_timer, on_done_timer, 0, 0);
}

static struct op *op_new(struct imap_client *c, enum imap_command_kind kind,
			 const char *key, const char *account, const char *node,
			 void *ctx)
{
	struct op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->cmd.kind = kind;
	op->client = c;
	op->ctx = ctx;
	op->key = strdup(key);
	op->cmd.account = strdup(account);
	op->cmd.node = strdup(node != NULL ? node : "");
	if (op->key == NULL || op->cmd.account == NULL || op->cmd.node == NULL) {
		op_free(op);
		return NULL;
	}
	return op;
}

void imap_client_myrights(struct imap_client *c, const char *identity,
			  const char *account, const char *node,
			  void (*cb)(void *ctx, enum imap_result r, const char *rights),
			  void *ctx)
{
	/* the admin asking for itself needs no proxy session */
	const char *key = c != NULL && strcmp(identity, c->peer.admin_user) == 0 ? "" : identity;
	struct op *op = c != NULL ? op_new(c, IMAP_COMMAND_MYRIGHTS, key, account, node, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL);
		return;
	}
	op->cb.myrights = cb;
	dispatch(c, op);
}

static void list_op(struct imap_client *c, const char *account, bool background,
		    void (*cb)(void *ctx, enum imap_result r, char **nodes, size_t n),
		    void *ctx)
{
	const char *key = c != NULL && c->list_as_owner && account[0] != '\0' &&
			  strcmp(account, c->peer.admin_user) != 0 ? account : "";
	struct op *op = c != NULL ? op_new(c, IMAP_COMMAND_LIST, key, account, NULL, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL, 0);
		return;
	}
	op->cb.list = cb;
	op->background = background;
	dispatch(c, op);
}

void imap_client_list(struct imap_client *c, const char *account,
		      void (*cb)(void *ctx, enum imap_result r, char **nodes, size_t n),
		      void *ctx)
{
	list_op(c, account, false, cb, ctx);
}

void imap_client_list_background(struct imap_client *c, const char *account,
				 void (*cb)(void *ctx, enum imap_result r,
					    char **nodes, size_t n),
				 void *ctx)
{
	list_op(c, account, true, cb, ctx);
}

void imap_client_fetch(struct imap_client *c, const char *account,
		       const char *node, uint32_t uidvalidity, uint32_t uid,
		       enum imap_fetch_part part,
		       void (*cb)(void *ctx, enum imap_result r,
				  const struct imap_message *msg),
		       void *ctx)
{
	/* as the owner: Cyrus gives admins only "la" on users' mailboxes */
	const char *key = c != NULL && strcmp(account, c->peer.admin_user) != 0 ? account : "";
	struct op *op = c != NULL ? op_new(c, IMAP_COMMAND_FETCH, key, account, node, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL);
		return;
	}
	op->cmd.uid = uid;
	op->cmd.uidvalidity = uidvalidity;
	op->cmd.part = part;
	op->cb.fetch = cb;
	dispatch(c, op);
}

void imap_client_status(struct imap_client *c, const char *account,
			const char *node,
			void (*cb)(void *ctx, enum imap_result r, const struct imap_status *st),
			void *ctx)
{
	/* as the owner: see imap_client.h on Cyrus and STATUS */
	const char *key = c != NULL && strcmp(account, c->peer.admin_user) != 0 ? account : "";
	struct op *op = c != NULL ? op_new(c, IMAP_COMMAND_STATUS, key, account, node, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL);
		return;
	}
	op->cb.status = cb;
	dispatch(c, op);
}

void imap_client_stats(const struct imap_client *c, struct imap_client_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	stats->commands = c->commands;
	stats->errors = c->errors;
	stats->connect_failures = c->connect_failures;
	for (const struct slot *s = c->sessions; s != NULL; s = s->next) {
		stats->sessions++;
		/* a busy session's imap is its worker's to read */
		if (s->busy)
			stats->busy++;
		else if (s->conn.imap != NULL)
			stats->idle++;
	}
}

const char *imap_client_last_error(const struct imap_client *c)
{
	return c->last_error;
}

/* ---- dedicated sessions (imap_session_*) --------------------------------
 *
 * The pool above runs one short command at a time in libuv's threadpool.
 * IDLE holds a connection for minutes, which would pin a threadpool thread
 * and a pool slot: callers that need that (the IMAP client source) run
 * their own thread and get a session of their own here, with the same
 * connection, TLS and SASL code (imap_conn). */

struct imap_session {
	struct imap_conn conn;
};

int imap_session_open(struct imap_client *c, const char *identity,
		      const atomic_bool *abort, struct imap_session **session_r,
		      char *error, size_t errlen)
{
	/* the admin acting as itself needs no authorization identity */
	const char *key = strcmp(identity, c->peer.admin_user) == 0 ? "" : identity;
	struct imap_session *is = calloc(1, sizeof(*is));
	enum imap_fail fail;

	if (is == NULL || imap_conn_init(&is->conn, &c->peer, key, abort) < 0) {
		imap_error_set(error, errlen, "out of memory");
		free(is);
		return -1;
	}
	if (imap_conn_connect(&is->conn, &fail, error, errlen) < 0) {
		imap_conn_clear(&is->conn);
		free(is);
		return -1;
	}
	*session_r = is;
	return 0;
}

mailimap *imap_session_mailimap(struct imap_session *is)
{
	return is->conn.imap;
}

const struct imap_namespaces *imap_session_namespaces(const struct imap_session *is)
{
	return &is->conn.ns;
}

void imap_session_deadline(struct imap_session *is, unsigned timeout_ms)
{
	if (is->conn.stream != NULL)
		imap_stream_set_deadline(is->conn.stream, timeout_ms != 0 ? timeout_ms
					 : is->conn.peer->timeout_ms);
}

const char *imap_session_error(const struct imap_session *is)
{
	if (is->conn.stream != NULL && is->conn.stream->error[0] != '\0')
		return is->conn.stream->error;
	if (is->conn.imap != NULL && is->conn.imap->imap_response != NULL &&
	    is->conn.imap->imap_response[0] != '\0')
		return is->conn.imap->imap_response;
	return "protocol error";
}

int imap_session_wait(struct imap_session *is, unsigned timeout_ms)
{
	if (is->conn.stream == NULL || is->conn.imap == NULL)
		return -1;
	/* already read by libetpan: poll() would not see it */
	if (is->conn.stream->fd >= 0 && is->conn.imap->imap_stream != NULL &&
	    is->conn.imap->imap_stream->read_buffer_len > 0)
		return 1;
	return imap_stream_wait(is->conn.stream, timeout_ms);
}

void imap_session_interrupt(struct imap_session *is)
{
	uv_mutex_lock(&is->conn.peer->fd_lock);
	if (is->conn.stream != NULL)
		imap_stream_shutdown(is->conn.stream);
	uv_mutex_unlock(&is->conn.peer->fd_lock);
}

void imap_session_close(struct imap_session **session)
{
	struct imap_session *is = *session;
	struct imap_conn *s;

	if (is == NULL)
		return;
	*session = NULL;
	s = &is->conn;
	if (s->imap != NULL && s->stream != NULL && !s->stream->broken &&
	    (s->aborting == NULL || !atomic_load(s->aborting)))
		imap_conn_logout(s, LOGOUT_TIMEOUT_MS);
	imap_conn_disconnect(s);
	imap_conn_clear(s);
	free(is);
}
