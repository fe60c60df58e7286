/* XEP-0114 component connection: libstrophe driven from the libuv loop.
 *
 * libstrophe 0.12 has no fd-level API: xmpp_run_once() does a select() over
 * its sockets, writes what was queued *before* the call, reads at most 4 KiB
 * and fires handlers and timed handlers. We run it with a zero timeout
 * whenever the socket (watched by a uv_poll) becomes ready, plus a short
 * backstop timer for its timed handlers and for progress we cannot see.
 *
 * Rules that keep this correct:
 * - xmpp_run_once() is never entered from inside itself (handlers only bump
 *   c->sends or set flags; the pump loop acts on them after it returns);
 * - the conn is released only outside xmpp_run_once() (it walks the ctx's
 *   connection list after the handlers ran);
 * - libstrophe closes the socket before telling us, so the uv_poll is
 *   stopped right in the callback that reports it, before anyone can reuse
 *   the fd number, and a poll handle never outlives its socket generation.
 */
#include "xmpp/component.h"

#include "base/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Backstop period for libstrophe's timed handlers (handshake and disconnect
 * timeouts) and for writes the poll logic might miss. */
#ifndef COMPONENT_BACKSTOP_MS
#define COMPONENT_BACKSTOP_MS 50
#endif
/* xmpp_run_once() reads 4 KiB per call: bound one pump so a flood cannot
 * starve the rest of the loop; the remainder goes on in the next iteration. */
#define COMPONENT_PUMP_MAX_ROUNDS 64
/* How long component_close() waits for the server to close the stream;
 * libstrophe itself gives up after 2 s. */
#define COMPONENT_CLOSE_GRACE_MS 2500

#define COMPONENT_NS_PING "urn:xmpp:ping"
#define COMPONENT_PING_ID_PREFIX "mps-ping-"
#define COMPONENT_CONFIRM_ID_PREFIX "mps-confirm-"

/* A uv_poll_t lives on the heap, one per socket: closing is asynchronous and
 * a reconnect may need a new one before the old close callback ran. */
struct component_watch {
	uv_poll_t handle;
	struct component *owner;
};

struct component {
	struct component *next_registered;
	uv_loop_t *loop;

	char *host;
	char *domain;
	char *secret;
	char *server_domain; /* where our keepalive pings go */
	unsigned short port;
	unsigned ping_interval_ms;
	unsigned ping_timeout_ms;
	unsigned reconnect_min_ms;
	unsigned reconnect_max_ms;
	size_t max_stanza_bytes;
	unsigned long oversized;  /* stanzas not sent for their size */

	component_stanza_cb *on_stanza;
	component_state_cb *on_state;
	void *context;

	xmpp_log_t strophe_log; /* must outlive ctx */
	xmpp_ctx_t *ctx;
	xmpp_conn_t *conn;

	bool started;
	bool connected;        /* handshake done, stream up */
	bool dropped;          /* libstrophe reported the end of conn */
	bool closing;          /* component_close() was called */
	bool finalize_pending; /* close must finish once out of xmpp_run_once */
	bool finishing;        /* handles are being closed */
	int pump_depth;
	unsigned long sends; /* bumped on every queued stanza */
	unsigned long received; /* stanzas from the server */
	/* where the stream stood when the outstanding ping went out */
	unsigned long ping_written, ping_received;

	int fd; /* last socket libstrophe created, -1 if none */
	unsigned fd_gen;
	struct component_watch *watch;
	unsigned watch_gen;
	unsigned watch_failed_gen; /* do not retry (and log) every pump */
	int watch_events;
	bool write_tail;

	uv_timer_t backstop;
	uv_timer_t reconnect; /* also the close deadline */
	uv_timer_t ping;
	uv_timer_t pong;
	uv_idle_t flush;
	unsigned handles_open;

	unsigned backoff_ms;
	int connect_errno; /* 0.12.2 passes 0 to the handler: see the logger */
	uint32_t rng;
	unsigned long ping_seq;
	char ping_id[40];
	bool ping_outstanding;
	/* component_confirm(): one outstanding at a time */
	char confirm_id[40];
	unsigned long confirm_seq;
	void (*confirm_done)(void *);
	void *confirm_context;
	/* how the last connection ended: a stream error's condition, NULL
	 * when it was lost without one */
	const char *last_stream_error;

	void (*done)(void *);
	void *done_context;
	struct component_stats stats;
};

/* libstrophe's sockopt callback gets no userdata: find the owner by conn. */
static struct component *component_registry;
static unsigned component_library_refs;

static void component_pump(struct component *c);
static void component_schedule_reconnect(struct component *c);

static long long wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *const component_stream_conditions[] = {
	"bad-format", "bad-namespace-prefix", "conflict", "connection-timeout",
	"host-gone", "host-unknown", "improper-addressing",
	"internal-server-error", "invalid-from", "invalid-id",
	"invalid-namespace", "invalid-xml", "not-authorized",
	"policy-violation", "remote-connection-failed", "resource-constraint",
	"restricted-xml", "see-other-host", "system-shutdown",
	"undefined-condition", "unsupported-encoding",
	"unsupported-stanza-type", "unsupported-version",
	"xml-not-well-formed",
};

static const char *component_stream_condition(xmpp_error_type_t type)
{
	size_t n = sizeof(component_stream_conditions) /
		   sizeof(component_stream_conditions[0]);

	if ((size_t)type >= n)
		return "unknown-condition";
	return component_stream_conditions[type];
}

/* ------------------------------------------------------------------ */
/* library and registry */

static void component_library_ref(void)
{
	if (component_library_refs++ == 0)
		xmpp_initialize();
}

static void component_library_unref(void)
{
	if (--component_library_refs == 0)
		xmpp_shutdown();
}

static void component_register(struct component *c)
{
	c->next_registered = component_registry;
	component_registry = c;
}

static void component_unregister(struct component *c)
{
	struct component **p;

	for (p = &component_registry; *p != NULL; p = &(*p)->next_registered) {
		if (*p == c) {
			*p = c->next_registered;
			return;
		}
	}
}

static struct component *component_find(const xmpp_conn_t *conn)
{
	struct component *c;

	for (c = component_registry; c != NULL; c = c->next_registered) {
		if (c->conn == conn)
			return c;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* libstrophe logging */

/* libstrophe 0.12.2 reports a failed TCP connect to the conn handler with
 * error 0 and names the errno only in this debug line. */
static void component_note_connect_error(struct component *c, const char *msg)
{
	int err;

	if (sscanf(msg, "connection failed, error %d", &err) == 1)
		c->connect_errno = err;
}

static void component_strophe_log(void *userdata, xmpp_log_level_t level,
				  const char *area, const char *msg)
{
	struct component *c = userdata;

	switch (level) {
	case XMPP_LEVEL_DEBUG:
		component_note_connect_error(c, msg);
		/* The handshake digest is no secret, but it is derived from
		 * one: keep it out of the logs. */
		if (strstr(msg, "</handshake>") != NULL ||
		    strncmp(msg, "Digest:", 7) == 0)
			msg = "[component handshake digest redacted]";
		log_debug("strophe %s: %s", area, msg);
		break;
	case XMPP_LEVEL_INFO:
		log_debug("strophe %s: %s", area, msg);
		break;
	case XMPP_LEVEL_WARN:
		log_warn("strophe %s: %s", area, msg);
		break;
	case XMPP_LEVEL_ERROR:
	default:
		log_error("strophe %s: %s", area, msg);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* handle bookkeeping */

static void component_free_settings(struct component *c)
{
	if (c->secret != NULL)
		explicit_bzero(c->secret, strlen(c->secret));
	free(c->host);
	free(c->domain);
	free(c->secret);
	free(c->server_domain);
}

static void component_free(struct component *c)
{
	void (*done)(void *) = c->done;
	void *done_context = c->done_context;

	component_unregister(c);
	component_free_settings(c);
	free(c);
	component_library_unref();
	if (done != NULL)
		done(done_context);
}

static void component_handle_closed(struct component *c)
{
	if (--c->handles_open == 0 && c->finishing)
		component_free(c);
}

static void component_embedded_close_cb(uv_handle_t *handle)
{
	component_handle_closed(handle->data);
}

static void component_watch_close_cb(uv_handle_t *handle)
{
	struct component_watch *w = handle->data;
	struct component *c = w->owner;

	free(w);
	component_handle_closed(c);
}

/* Safe after libstrophe closed the fd: libuv's EPOLL_CTL_DEL then fails
 * quietly. Must happen before a new socket can take the same number. */
static void component_watch_release(struct component *c)
{
	if (c->watch == NULL)
		return;
	uv_close((uv_handle_t *)&c->watch->handle, component_watch_close_cb);
	c->watch = NULL;
	c->watch_events = 0;
}

static bool component_fd_ready(int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events, .revents = 0 };

	if (fd < 0)
		return false;
	return poll(&pfd, 1, 0) > 0 && (pfd.revents & events) != 0;
}

static void component_poll_cb(uv_poll_t *handle, int status, int events)
{
	struct component_watch *w = handle->data;
	struct component *c = w->owner;

	(void)events;
	if (w != c->watch)
		return;
	if (status < 0)
		log_debug("component: poll error: %s", uv_strerror(status));
	component_pump(c);
}

static int component_watch_create(struct component *c)
{
	struct component_watch *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL) {
		log_error("component: out of memory for the socket watcher");
		return -1;
	}
	rc = uv_poll_init(c->loop, &w->handle, c->fd);
	if (rc < 0) {
		log_error("component: cannot watch socket %d: %s", c->fd,
			  uv_strerror(rc));
		free(w);
		c->watch_failed_gen = c->fd_gen;
		return -1;
	}
	w->owner = c;
	w->handle.data = w;
	c->handles_open++;
	c->watch = w;
	c->watch_gen = c->fd_gen;
	c->watch_events = 0;
	return 0;
}

/* Writable interest: while libstrophe holds queued stanzas, once more after
 * the count reaches 0 (a partly written last stanza is not counted), and
 * whenever the socket is not writable right now (connect in progress, or
 * the kernel buffer filled up by the last write). */
static int component_wanted_events(struct component *c)
{
	int queued = xmpp_conn_send_queue_len(c->conn);
	int events = UV_READABLE;

	if (queued > 0 || c->write_tail || !component_fd_ready(c->fd, POLLOUT))
		events |= UV_WRITABLE;
	c->write_tail = queued > 0;
	return events;
}

static void component_watch_update(struct component *c)
{
	int events;

	if (c->conn == NULL || c->fd < 0) {
		component_watch_release(c);
		return;
	}
	if (c->watch != NULL && c->watch_gen != c->fd_gen)
		component_watch_release(c);
	if (c->watch == NULL && (c->watch_failed_gen == c->fd_gen ||
				 component_watch_create(c) < 0))
		return; /* the backstop timer keeps things going */
	events = component_wanted_events(c);
	if (events == c->watch_events)
		return;
	if (uv_poll_start(&c->watch->handle, events, component_poll_cb) == 0)
		c->watch_events = events;
}

/* ------------------------------------------------------------------ */
/* sockets */

/* Part of the NOTES.md workaround: makes xmpp_connect_client() fail before
 * any I/O, after it allocated the stream-management state that component
 * mode dereferences on the first stanza. */
static int component_sockopt_refuse(xmpp_conn_t *conn, void *sock)
{
	(void)conn;
	(void)sock;
	return -1;
}

static int component_sockopt_cb(xmpp_conn_t *conn, void *sock)
{
	struct component *c = component_find(conn);
	int fd = *(int *)sock;
	int one = 1;

	if (c == NULL)
		return -1;
	/* Every new socket replaces the previous one, which is closed. */
	component_watch_release(c);
	c->fd = -1;
	c->fd_gen++;
	if (fd >= FD_SETSIZE) {
		log_error("component: socket fd %d >= FD_SETSIZE (%d): "
			  "libstrophe's select() cannot use it; too many open "
			  "files in this process", fd, FD_SETSIZE);
		return -1;
	}
	if (fd == 0) {
		/* xmpp_run_once() skips select() when the highest fd is 0. */
		log_error("component: socket got fd 0 (stdin closed?); "
			  "libstrophe cannot poll it");
		return -1;
	}
	/* libstrophe writes one send() per stanza: without this, pipelined
	 * stanzas wait for the server's delayed ACK (~40 ms each). */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_warn("component: TCP_NODELAY: %s", strerror(errno));
	if (xmpp_sockopt_cb_keepalive(conn, sock) < 0)
		log_warn("component: TCP keepalive: %s", strerror(errno));
	c->fd = fd;
	return 0;
}

/* ------------------------------------------------------------------ */
/* sending */

static void component_flush_cb(uv_idle_t *handle)
{
	struct component *c = handle->data;

	uv_idle_stop(handle);
	component_pump(c);
}

static void component_mark_sent(struct component *c)
{
	c->sends++;
	/* Inside the pump the changed counter buys another round instead. */
	if (c->pump_depth == 0 && !c->finishing)
		uv_idle_start(&c->flush, component_flush_cb);
}

/* The server routes by from; ejabberd even closes the stream without it. */
static void component_ensure_from(struct component *c, xmpp_stanza_t *stanza)
{
	if (xmpp_stanza_get_from(stanza) == NULL)
		xmpp_stanza_set_from(stanza, c->domain);
}

/* ------------------------------------------------------------------ */
/* keepalive */

static void component_ping_stop(struct component *c)
{
	uv_timer_stop(&c->ping);
	uv_timer_stop(&c->pong);
	c->ping_outstanding = false;
}

static void component_pong_timeout_cb(uv_timer_t *timer);

/* Stanzas libstrophe has written out (to the kernel) so far. */
static unsigned long component_written(struct component *c)
{
	int queued = c->conn != NULL ? xmpp_conn_send_queue_len(c->conn) : 0;

	return c->sends - (unsigned long)(queued > 0 ? queued : 0);
}

/* An XEP-0199 ping to the server with id: its reply proves the stream
 * and everything sent before it. */
static int component_send_ping_id(struct component *c, const char *id)
{
	xmpp_stanza_t *iq, *ping;

	iq = xmpp_iq_new(c->ctx, "get", id);
	ping = xmpp_stanza_new(c->ctx);
	if (iq == NULL || ping == NULL) {
		if (iq != NULL)
			xmpp_stanza_release(iq);
		if (ping != NULL)
			xmpp_stanza_release(ping);
		return -1;
	}
	xmpp_stanza_set_from(iq, c->domain);
	xmpp_stanza_set_to(iq, c->server_domain);
	xmpp_stanza_set_name(ping, "ping");
	xmpp_stanza_set_ns(ping, COMPONENT_NS_PING);
	xmpp_stanza_add_child(iq, ping);
	xmpp_stanza_release(ping);
	xmpp_send(c->conn, iq);
	xmpp_stanza_release(iq);
	component_mark_sent(c);
	return 0;
}

static int component_send_ping(struct component *c)
{
	c->ping_seq++;
	snprintf(c->ping_id, sizeof(c->ping_id), "%s%lu",
		 COMPONENT_PING_ID_PREFIX, c->ping_seq);
	return component_send_ping_id(c, c->ping_id);
}

static void component_ping_cb(uv_timer_t *timer)
{
	struct component *c = timer->data;

	/* One ping at a time: the pong timer is already running. */
	if (!c->connected || c->ping_outstanding)
		return;
	if (component_send_ping(c) < 0) {
		log_warn("component: cannot build keepalive ping");
		return;
	}
	c->ping_outstanding = true;
	c->ping_written = component_written(c);
	c->ping_received = c->received;
	uv_timer_start(&c->pong, component_pong_timeout_cb, c->ping_timeout_ms,
		       0);
}

static void component_ping_start(struct component *c)
{
	c->ping_outstanding = false;
	if (c->ping_interval_ms == 0)
		return;
	uv_timer_start(&c->ping, component_ping_cb, c->ping_interval_ms,
		       c->ping_interval_ms);
}

/* Any reply, even an error, proves the stream and the server are alive. */
static bool component_is_pong(struct component *c, xmpp_stanza_t *stanza)
{
	const char *type = xmpp_stanza_get_type(stanza);
	const char *id = xmpp_stanza_get_id(stanza);

	if (type == NULL || id == NULL)
		return false;
	if (strcmp(type, "result") != 0 && strcmp(type, "error") != 0)
		return false;
	if (strncmp(id, COMPONENT_PING_ID_PREFIX,
		    strlen(COMPONENT_PING_ID_PREFIX)) != 0)
		return false;
	if (c->ping_outstanding && strcmp(id, c->ping_id) == 0) {
		c->ping_outstanding = false;
		uv_timer_stop(&c->pong);
	}
	return true;
}

/* The reply to a component_confirm() ping: the server has taken what
 * came before it. */
static bool component_is_confirm(struct component *c, xmpp_stanza_t *stanza)
{
	const char *type = xmpp_stanza_get_type(stanza);
	const char *id = xmpp_stanza_get_id(stanza);
	void (*done)(void *) = c->confirm_done;

	if (type == NULL || id == NULL ||
	    (strcmp(type, "result") != 0 && strcmp(type, "error") != 0) ||
	    strncmp(id, COMPONENT_CONFIRM_ID_PREFIX,
		    strlen(COMPONENT_CONFIRM_ID_PREFIX)) != 0)
		return false;
	if (done != NULL && strcmp(id, c->confirm_id) == 0) {
		c->confirm_done = NULL;
		done(c->confirm_context);
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* incoming stanzas */

/* Compares the domain part of jid (node@domain/resource) with domain. */
static bool component_jid_in_domain(const char *jid, const char *domain)
{
	const char *end = strchr(jid, '/');
	const char *at;
	size_t len;

	if (end == NULL)
		end = jid + strlen(jid);
	at = memchr(jid, '@', (size_t)(end - jid));
	if (at != NULL)
		jid = at + 1;
	len = (size_t)(end - jid);
	return len == strlen(domain) && strncasecmp(jid, domain, len) == 0;
}

static bool component_is_ping_to_us(struct component *c,
				    xmpp_stanza_t *stanza)
{
	const char *type = xmpp_stanza_get_type(stanza);
	const char *to = xmpp_stanza_get_to(stanza);

	if (type == NULL || strcmp(type, "get") != 0)
		return false;
	if (to == NULL || !component_jid_in_domain(to, c->domain))
		return false;
	return xmpp_stanza_get_child_by_name_and_ns(stanza, "ping",
						    COMPONENT_NS_PING) != NULL;
}

/* xmpp_stanza_reply() keeps the request's attributes (type, xml:lang) and
 * sets no from: fix all three. */
static void component_answer_ping(struct component *c, xmpp_stanza_t *stanza)
{
	xmpp_stanza_t *reply = xmpp_stanza_reply(stanza);

	if (reply == NULL)
		return;
	xmpp_stanza_set_type(reply, "result");
	xmpp_stanza_set_from(reply, xmpp_stanza_get_to(stanza));
	xmpp_stanza_del_attribute(reply, "xml:lang");
	xmpp_send(c->conn, reply);
	xmpp_stanza_release(reply);
	component_mark_sent(c);
}

static bool component_is_routed_stanza(const char *name)
{
	return strcmp(name, "iq") == 0 || strcmp(name, "message") == 0 ||
	       strcmp(name, "presence") == 0;
}

static int component_stanza_handler(xmpp_conn_t *conn, xmpp_stanza_t *stanza,
				    void *userdata)
{
	struct component *c = userdata;
	const char *name = xmpp_stanza_get_name(stanza);

	if (conn != c->conn || c->closing || !c->connected)
		return 1;
	c->received++;
	if (name == NULL || !component_is_routed_stanza(name))
		return 1;
	if (strcmp(name, "iq") == 0) {
		if (component_is_pong(c, stanza) || component_is_confirm(c, stanza))
			return 1;
		if (component_is_ping_to_us(c, stanza)) {
			component_answer_ping(c, stanza);
			return 1;
		}
	}
	if (c->on_stanza != NULL)
		c->on_stanza(c->context, stanza);
	return 1;
}

/* ------------------------------------------------------------------ */
/* connection state */

static void component_log_drop(struct component *c, int error,
			       const xmpp_stream_error_t *se)
{
	const char *cond = se != NULL ? component_stream_condition(se->type)
				      : NULL;
	const char *text = se != NULL && se->text != NULL ? se->text : "";

	if (!c->connected && se != NULL && se->type == XMPP_SE_NOT_AUTHORIZED) {
		log_error("component %s: handshake rejected by %s:%u: "
			  "not-authorized (wrong component secret?)%s%s",
			  c->domain, c->host, c->port, *text ? ": " : "", text);
	} else if (!c->connected && se != NULL) {
		log_error("component %s: handshake with %s:%u failed: "
			  "stream error %s%s%s", c->domain, c->host, c->port,
			  cond, *text ? ": " : "", text);
	} else if (!c->connected) {
		if (error == 0)
			error = c->connect_errno;
		log_warn("component %s: cannot connect to %s:%u: %s",
			 c->domain, c->host, c->port,
			 error != 0 ? strerror(error)
				    : "stream closed before the handshake");
	} else if (se != NULL) {
		log_warn("component %s: stream to %s:%u closed by server: "
			 "%s%s%s", c->domain, c->host, c->port, cond,
			 *text ? ": " : "", text);
	} else {
		log_warn("component %s: connection to %s:%u lost%s%s",
			 c->domain, c->host, c->port, error != 0 ? ": " : "",
			 error != 0 ? strerror(error) : "");
	}
}

static void component_on_connect(struct component *c)
{
	log_info("component %s: connected to %s:%u", c->domain, c->host,
		 c->port);
	c->connected = true;
	c->stats.connects++;
	c->stats.changed_us = wall_us();
	c->last_stream_error = NULL;
	c->backoff_ms = c->reconnect_min_ms;
	xmpp_handler_add(c->conn, component_stanza_handler, NULL, NULL, NULL,
			 c);
	component_ping_start(c);
	if (c->on_state != NULL)
		c->on_state(c->context, true);
}

static void component_conn_handler(xmpp_conn_t *conn, xmpp_conn_event_t event,
				   int error, xmpp_stream_error_t *stream_error,
				   void *userdata)
{
	struct component *c = userdata;

	if (conn != c->conn || c->finishing)
		return;
	switch (event) {
	case XMPP_CONN_CONNECT:
		if (c->closing)
			xmpp_disconnect(conn);
		else
			component_on_connect(c);
		break;
	case XMPP_CONN_DISCONNECT:
	case XMPP_CONN_FAIL:
		if (!c->closing)
			component_log_drop(c, error, stream_error);
		if (c->connected)
			c->last_stream_error = stream_error != NULL ?
				component_stream_condition(stream_error->type) : NULL;
		/* The fd is closed already: stop watching before it is
		 * reused. The conn itself is released after xmpp_run_once(). */
		component_watch_release(c);
		c->fd = -1;
		c->dropped = true;
		break;
	case XMPP_CONN_RAW_CONNECT:
	default:
		break;
	}
}

static void component_conn_release(struct component *c)
{
	xmpp_conn_t *conn = c->conn;

	component_watch_release(c);
	c->fd = -1;
	if (conn == NULL)
		return;
	/* A still open conn reports DISCONNECT from inside the release:
	 * c->conn no longer matches, so the handler ignores it. */
	c->conn = NULL;
	xmpp_conn_release(conn);
}

static void component_finalize(struct component *c)
{
	if (c->finishing)
		return;
	c->finishing = true;
	c->finalize_pending = false;
	c->connected = false;
	component_conn_release(c);
	xmpp_ctx_free(c->ctx);
	c->ctx = NULL;
	uv_close((uv_handle_t *)&c->backstop, component_embedded_close_cb);
	uv_close((uv_handle_t *)&c->reconnect, component_embedded_close_cb);
	uv_close((uv_handle_t *)&c->ping, component_embedded_close_cb);
	uv_close((uv_handle_t *)&c->pong, component_embedded_close_cb);
	uv_close((uv_handle_t *)&c->flush, component_embedded_close_cb);
}

/* The stream is gone (or we gave up on it): clean up, then reconnect. */
static void component_lost(struct component *c)
{
	bool was_connected = c->connected;

	if (was_connected) {
		c->stats.disconnects++;
		c->stats.changed_us = wall_us();
	} else {
		c->stats.failures++;
	}
	c->connected = false;
	c->dropped = false;
	c->confirm_done = NULL;   /* never answered on this stream */
	component_ping_stop(c);
	uv_timer_stop(&c->backstop);
	uv_idle_stop(&c->flush);
	component_conn_release(c);
	if (c->closing) {
		component_finalize(c);
		return;
	}
	component_schedule_reconnect(c);
	if (was_connected && c->on_state != NULL)
		c->on_state(c->context, false);
}

static void component_pong_timeout_cb(uv_timer_t *timer)
{
	struct component *c = timer->data;

	unsigned long written;

	if (!c->connected || !c->ping_outstanding)
		return;
	/* Under a backlog the ping waits behind thousands of notifications
	 * the server has still to read: a stream that keeps taking our
	 * stanzas (the kernel only takes more once the server reads) or
	 * bringing us some is alive, however late the pong. */
	written = component_written(c);
	if (written != c->ping_written || c->received != c->ping_received) {
		log_debug("component %s: keepalive: no pong yet, but the stream "
			  "moves (%lu stanzas out, %lu in); waiting", c->domain,
			  written - c->ping_written, c->received - c->ping_received);
		c->ping_written = written;
		c->ping_received = c->received;
		uv_timer_start(&c->pong, component_pong_timeout_cb,
			       c->ping_timeout_ms, 0);
		return;
	}
	log_warn("component %s: no reply to keepalive ping within %u ms and "
		 "nothing moved on the stream; reconnecting", c->domain,
		 c->ping_timeout_ms);
	component_lost(c);
}

/* ------------------------------------------------------------------ */
/* the pump */

/* Acts on what handlers flagged. Returns true when pumping must stop. */
static bool component_after_run(struct component *c)
{
	if (c->finalize_pending) {
		component_finalize(c);
		return true;
	}
	if (c->dropped) {
		component_lost(c);
		return true;
	}
	return c->conn == NULL;
}

static void component_pump(struct component *c)
{
	unsigned rounds = 0;
	bool again;

	if (c->pump_depth > 0 || c->ctx == NULL || c->finishing)
		return;
	do {
		bool readable = component_fd_ready(c->fd, POLLIN);
		unsigned long sends = c->sends;

		c->pump_depth++;
		xmpp_run_once(c->ctx, 0);
		c->pump_depth--;
		if (component_after_run(c))
			return;
		rounds++;
		/* What a round queued is written by the next one; a second
		 * round also flushes what libstrophe queued for itself (stream
		 * header, handshake), which the queue length does not show. */
		again = rounds < 2 || readable || sends != c->sends;
	} while (again && rounds < COMPONENT_PUMP_MAX_ROUNDS);
	if (again)
		uv_idle_start(&c->flush, component_flush_cb);
	component_watch_update(c);
}

static void component_backstop_cb(uv_timer_t *timer)
{
	component_pump(timer->data);
}

/* ------------------------------------------------------------------ */
/* connecting */

static unsigned component_jitter(struct component *c, unsigned base)
{
	/* Up to +25% so a farm of daemons does not reconnect in lockstep. */
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 17;
	c->rng ^= c->rng << 5;
	return base + c->rng % (base / 4 + 1);
}

static void component_connect(struct component *c);

static void component_reconnect_cb(uv_timer_t *timer)
{
	struct component *c = timer->data;

	if (c->closing) {
		/* The close deadline: the server did not close the stream. */
		component_finalize(c);
		return;
	}
	component_connect(c);
}

static void component_schedule_reconnect(struct component *c)
{
	unsigned delay = component_jitter(c, c->backoff_ms);

	if (delay > c->reconnect_max_ms)
		delay = c->reconnect_max_ms;
	if (c->backoff_ms <= c->reconnect_max_ms / 2)
		c->backoff_ms *= 2;
	else
		c->backoff_ms = c->reconnect_max_ms;
	log_info("component %s: reconnecting in %u ms", c->domain, delay);
	uv_timer_start(&c->reconnect, component_reconnect_cb, delay, 0);
}

/* See NOTES.md: component mode crashes on a NULL sm_state; a client connect
 * that fails before any I/O allocates it. */
static void component_prime_sm_state(xmpp_conn_t *conn)
{
	xmpp_conn_set_sockopt_callback(conn, component_sockopt_refuse);
	(void)xmpp_connect_client(conn, "127.0.0.1", 1, NULL, NULL);
	xmpp_conn_set_sockopt_callback(conn, component_sockopt_cb);
}

static int component_conn_new(struct component *c)
{
	c->conn = xmpp_conn_new(c->ctx);
	if (c->conn == NULL)
		return -1;
	xmpp_conn_set_jid(c->conn, c->domain);
	xmpp_conn_set_pass(c->conn, c->secret);
	component_prime_sm_state(c->conn);
	return 0;
}

static void component_connect(struct component *c)
{
	int rc;

	if (component_conn_new(c) < 0) {
		log_error("component %s: cannot create connection object",
			  c->domain);
		component_schedule_reconnect(c);
		return;
	}
	log_debug("component %s: connecting to %s:%u", c->domain, c->host,
		  c->port);
	c->connect_errno = 0;
	/* Name resolution of host happens here, synchronously. */
	rc = xmpp_connect_component(c->conn, c->host, c->port,
				    component_conn_handler, c);
	if (rc != XMPP_EOK) {
		log_warn("component %s: cannot connect to %s:%u (libstrophe "
			 "error %d)", c->domain, c->host, c->port, rc);
		component_conn_release(c);
		component_schedule_reconnect(c);
		return;
	}
	uv_timer_start(&c->backstop, component_backstop_cb,
		       COMPONENT_BACKSTOP_MS, COMPONENT_BACKSTOP_MS);
	/* A loopback connect may be complete already: the socket is then
	 * writable, so the watcher would not ask, but libstrophe only notices
	 * (and sends the stream header) inside xmpp_run_once(). */
	uv_idle_start(&c->flush, component_flush_cb);
	component_watch_update(c);
}

/* ------------------------------------------------------------------ */
/* public API */

static int component_check_settings(const struct component_settings *s,
				    const char **error_r)
{
	if (s->host == NULL || *s->host == '\0') {
		*error_r = "component: no server host";
		return -1;
	}
	if (s->domain == NULL || *s->domain == '\0') {
		*error_r = "component: no component domain";
		return -1;
	}
	if (s->secret == NULL || *s->secret == '\0') {
		*error_r = "component: no component secret";
		return -1;
	}
	if (s->port == 0) {
		*error_r = "component: no server port";
		return -1;
	}
	if (s->reconnect_min_ms == 0 ||
	    s->reconnect_max_ms < s->reconnect_min_ms) {
		*error_r = "component: need 0 < reconnect_min_ms <= "
			   "reconnect_max_ms";
		return -1;
	}
	if (s->ping_interval_ms != 0 && s->ping_timeout_ms == 0) {
		*error_r = "component: ping_timeout_ms must be > 0";
		return -1;
	}
	return 0;
}

/* Prosody answers pings to its own host: events.example.org belongs to
 * example.org. A domain without a dot pings itself through the server,
 * which still proves the route. */
static const char *component_server_domain(const char *domain)
{
	const char *dot = strchr(domain, '.');

	return dot != NULL && dot[1] != '\0' ? dot + 1 : domain;
}

static int component_copy_settings(struct component *c,
				   const struct component_settings *s)
{
	c->host = strdup(s->host);
	c->domain = strdup(s->domain);
	c->secret = strdup(s->secret);
	c->server_domain = strdup(component_server_domain(s->domain));
	if (c->host == NULL || c->domain == NULL || c->secret == NULL ||
	    c->server_domain == NULL)
		return -1;
	c->port = s->port;
	c->ping_interval_ms = s->ping_interval_ms;
	c->ping_timeout_ms = s->ping_timeout_ms;
	c->reconnect_min_ms = s->reconnect_min_ms;
	c->reconnect_max_ms = s->reconnect_max_ms;
	c->max_stanza_bytes = s->max_stanza_bytes;
	return 0;
}

static void component_discard(struct component *c)
{
	if (c->ctx != NULL)
		xmpp_ctx_free(c->ctx);
	component_free_settings(c);
	free(c);
	component_library_unref();
}

static void component_init_handles(struct component *c)
{
	/* These cannot fail on Unix; each counts until its close callback. */
	uv_timer_init(c->loop, &c->backstop);
	uv_timer_init(c->loop, &c->reconnect);
	uv_timer_init(c->loop, &c->ping);
	uv_timer_init(c->loop, &c->pong);
	uv_idle_init(c->loop, &c->flush);
	c->backstop.data = c;
	c->reconnect.data = c;
	c->ping.data = c;
	c->pong.data = c;
	c->flush.data = c;
	c->handles_open = 5;
}

int component_new(uv_loop_t *loop, const struct component_settings *settings,
		  component_stanza_cb *on_stanza, component_state_cb *on_state,
		  void *context, struct component **component_r,
		  const char **error_r)
{
	struct component *c;

	if (component_check_settings(settings, error_r) < 0)
		return -1;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*error_r = "component: out of memory";
		return -1;
	}
	component_library_ref();
	c->strophe_log.handler = component_strophe_log;
	c->strophe_log.userdata = c;
	c->ctx = xmpp_ctx_new(NULL, &c->strophe_log);
	if (component_copy_settings(c, settings) < 0 || c->ctx == NULL) {
		component_discard(c);
		*error_r = "component: out of memory";
		return -1;
	}
	c->loop = loop;
	c->on_stanza = on_stanza;
	c->on_state = on_state;
	c->context = context;
	c->fd = -1;
	c->backoff_ms = c->reconnect_min_ms;
	c->rng = (uint32_t)uv_hrtime() ^ ((uint32_t)getpid() << 16) ^ 1u;
	component_init_handles(c);
	component_register(c);
	*component_r = c;
	return 0;
}

void component_start(struct component *c)
{
	if (c->started || c->closing)
		return;
	c->started = true;
	c->stats.changed_us = wall_us();
	component_connect(c);
}

bool component_is_connected(const struct component *c)
{
	return c->connected && !c->closing;
}

xmpp_ctx_t *component_xmpp_ctx(struct component *c)
{
	return c->ctx;
}

int component_send(struct component *c, xmpp_stanza_t *stanza)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (!component_is_connected(c))
		return -1;
	component_ensure_from(c, stanza);
	/* serialized here (as xmpp_send would) so that its size is known */
	if (xmpp_stanza_to_text(stanza, &buf, &len) != XMPP_EOK)
		return -1;
	rc = component_send_raw(c, buf, len);
	xmpp_free(c->ctx, buf);
	return rc;
}

int component_send_raw(struct component *c, const char *data, size_t len)
{
	if (!component_is_connected(c))
		return -1;
	/* the last guard: the server would close the stream on it (e.g. a
	 * reply echoing a request's huge id) */
	if (c->max_stanza_bytes > 0 && len > c->max_stanza_bytes) {
		c->oversized++;
		log_error("component %s: a stanza of %zu bytes not sent: over "
			  "max_stanza_size %zu (%lu so far): %.80s", c->domain, len,
			  c->max_stanza_bytes, c->oversized, data);
		return -1;
	}
	xmpp_send_raw(c->conn, data, len);
	component_mark_sent(c);
	return 0;
}

int component_confirm(struct component *c, void (*done)(void *), void *context)
{
	if (!component_is_connected(c))
		return -1;
	c->confirm_seq++;
	snprintf(c->confirm_id, sizeof(c->confirm_id), "%s%lu",
		 COMPONENT_CONFIRM_ID_PREFIX, c->confirm_seq);
	if (component_send_ping_id(c, c->confirm_id) < 0)
		return -1;
	c->confirm_done = done;
	c->confirm_context = context;
	return 0;
}

void component_confirm_cancel(struct component *c, void *context)
{
	if (c != NULL && c->confirm_done != NULL && c->confirm_context == context) {
		c->confirm_done = NULL;
		c->confirm_context = NULL;
	}
}

bool component_refused(const struct component *c)
{
	/* conditions that say nothing about what we sent */
	static const char *const benign[] = {
		"conflict", "connection-timeout", "host-gone", "host-unknown",
		"not-authorized", "remote-connection-failed", "reset",
		"see-other-host", "system-shutdown",
	};

	if (c->last_stream_error == NULL)
		return false;
	for (size_t i = 0; i < sizeof(benign) / sizeof(benign[0]); i++) {
		if (strcmp(c->last_stream_error, benign[i]) == 0)
			return false;
	}
	return true;
}

const char *component_last_stream_error(const struct component *c)
{
	return c->last_stream_error;
}

size_t component_queue_len(const struct component *c)
{
	int len;

	if (c->conn == NULL)
		return 0;
	len = xmpp_conn_send_queue_len(c->conn);
	return len > 0 ? (size_t)len : 0;
}

unsigned long component_sent_count(const struct component *c)
{
	return c->sends;
}

const struct component_stats *component_stats(const struct component *c)
{
	return &c->stats;
}

/* No callbacks run after this, except done. */
void component_close(struct component **component, void (*done)(void *),
		     void *context)
{
	struct component *c = *component;

	if (c == NULL)
		return;
	*component = NULL;
	if (c->closing)
		return;
	c->closing = true;
	c->done = done;
	c->done_context = context;
	uv_timer_stop(&c->reconnect);
	component_ping_stop(c);
	if (c->connected && c->conn != NULL) {
		/* Let the server see </stream:stream> and close its side. */
		c->connected = false;
		xmpp_disconnect(c->conn);
		component_mark_sent(c);
		uv_timer_start(&c->reconnect, component_reconnect_cb,
			       COMPONENT_CLOSE_GRACE_MS, 0);
		return;
	}
	if (c->pump_depth > 0)
		c->finalize_pending = true;
	else
		component_finalize(c);
}
