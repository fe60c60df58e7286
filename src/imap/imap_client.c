/* The IMAP client: its settings and public calls, on the pool
 * (imap_pool.h) that queues the commands (imap_command.h) on pooled
 * connections (imap_conn.h); and dedicated sessions for callers with a
 * thread of their own. */
#include "imap/imap_client.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "imap/imap_command.h"
#include "imap/imap_conn.h"
#include "imap/imap_error.h"
#include "imap/imap_pool.h"
#include "imap/imap_stream.h"
#include "base/log.h"

#define DEFAULT_TIMEOUT_MS 10000u
#define DEFAULT_MAX_SESSIONS 8u
/* LOGOUT of a dedicated session is a courtesy: never wait long */
#define LOGOUT_TIMEOUT_MS 1000u

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct imap_client {
	struct imap_peer peer;         /* every session's settings; the pool's too */
	bool list_as_owner;
	struct imap_pool *pool;
	void (*close_done)(void *);
	void *close_ctx;
};

/* A call of the public interface, as the pool runs it. */
struct op {
	struct imap_pool_op op;
	union {
		void (*myrights)(void *ctx, enum imap_result r, const char *rights);
		void (*list)(void *ctx, enum imap_result r, char **nodes, size_t n);
		void (*status)(void *ctx, enum imap_result r, const struct imap_status *st);
		void (*fetch)(void *ctx, enum imap_result r, const struct imap_message *msg);
	} cb;
	void *ctx;
};

static void op_free(struct op *op)
{
	imap_command_reset(&op->op.cmd);
	free(op->op.key);
	free(op->op.cmd.account);
	free(op->op.cmd.node);
	free(op);
}

/* Runs the caller's callback and frees the op. */
static void op_complete(struct imap_pool_op *pop)
{
	struct op *op = container_of(pop, struct op, op);
	const struct imap_command *cmd = &op->op.cmd;
	bool ok = cmd->result == IMAP_OK;

	switch (cmd->kind) {
	case IMAP_COMMAND_MYRIGHTS:
		op->cb.myrights(op->ctx, cmd->result, ok ? cmd->rights : NULL);
		break;
	case IMAP_COMMAND_LIST:
		op->cb.list(op->ctx, cmd->result, ok ? cmd->nodes : NULL, ok ? cmd->n_nodes : 0);
		break;
	case IMAP_COMMAND_STATUS:
		op->cb.status(op->ctx, cmd->result, ok ? &cmd->st : NULL);
		break;
	case IMAP_COMMAND_FETCH: {
		struct imap_message msg = {
			cmd->body, cmd->body_len, cmd->flags != NULL ? cmd->flags : "",
			cmd->internaldate,
		};

		op->cb.fetch(op->ctx, cmd->result, ok ? &msg : NULL);
		break;
	}
	}
	op_free(op);
}

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
	atomic_init(&c->peer.aborting, false);
	if (failed) {
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
	if (imap_pool_new(loop, p, s->max_sessions != 0 ? s->max_sessions :
			  DEFAULT_MAX_SESSIONS, &c->pool, error_r) < 0) {
		uv_mutex_destroy(&c->peer.fd_lock);
		goto fail;
	}
	*client_r = c;
	return 0;
fail:
	peer_clear(p);
	free(c);
	return -1;
}

/* The pool is gone: so can the peer be. */
static void on_pool_closed(void *context)
{
	struct imap_client *c = context;
	void (*done)(void *) = c->close_done;
	void *ctx = c->close_ctx;

	uv_mutex_destroy(&c->peer.fd_lock);
	peer_clear(&c->peer);
	free(c);
	if (done != NULL)
		done(ctx);
}

void imap_client_close(struct imap_client **client, void (*done)(void *),
		       void *context)
{
	struct imap_client *c = *client;

	*client = NULL;
	if (c == NULL) {
		if (done != NULL)
			done(context);
		return;
	}
	c->close_done = done;
	c->close_ctx = context;
	atomic_store(&c->peer.aborting, true);
	imap_pool_close(&c->pool, on_pool_closed, c);
}

static struct op *op_new(enum imap_command_kind kind, const char *key,
			 const char *account, const char *node, void *ctx)
{
	struct op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->op.cmd.kind = kind;
	op->op.complete = op_complete;
	op->ctx = ctx;
	op->op.key = strdup(key);
	op->op.cmd.account = strdup(account);
	op->op.cmd.node = strdup(node != NULL ? node : "");
	if (op->op.key == NULL || op->op.cmd.account == NULL || op->op.cmd.node == NULL) {
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
	struct op *op = c != NULL ? op_new(IMAP_COMMAND_MYRIGHTS, key, account, node, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL);
		return;
	}
	op->cb.myrights = cb;
	imap_pool_submit(c->pool, &op->op);
}

static void list_op(struct imap_client *c, const char *account, bool background,
		    void (*cb)(void *ctx, enum imap_result r, char **nodes, size_t n),
		    void *ctx)
{
	const char *key = c != NULL && c->list_as_owner && account[0] != '\0' &&
			  strcmp(account, c->peer.admin_user) != 0 ? account : "";
	struct op *op = c != NULL ? op_new(IMAP_COMMAND_LIST, key, account, NULL, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL, 0);
		return;
	}
	op->cb.list = cb;
	op->op.background = background;
	imap_pool_submit(c->pool, &op->op);
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
	struct op *op = c != NULL ? op_new(IMAP_COMMAND_FETCH, key, account, node, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL);
		return;
	}
	op->op.cmd.uid = uid;
	op->op.cmd.uidvalidity = uidvalidity;
	op->op.cmd.part = part;
	op->cb.fetch = cb;
	imap_pool_submit(c->pool, &op->op);
}

void imap_client_status(struct imap_client *c, const char *account,
			const char *node,
			void (*cb)(void *ctx, enum imap_result r, const struct imap_status *st),
			void *ctx)
{
	/* as the owner: see imap_client.h on Cyrus and STATUS */
	const char *key = c != NULL && strcmp(account, c->peer.admin_user) != 0 ? account : "";
	struct op *op = c != NULL ? op_new(IMAP_COMMAND_STATUS, key, account, node, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL);
		return;
	}
	op->cb.status = cb;
	imap_pool_submit(c->pool, &op->op);
}

void imap_client_stats(const struct imap_client *c, struct imap_client_stats *stats)
{
	imap_pool_stats(c->pool, stats);
}

const char *imap_client_last_error(const struct imap_client *c)
{
	return imap_pool_last_error(c->pool);
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

