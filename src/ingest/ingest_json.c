#include "base/clock.h"
#include "ingest/ingest_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "model/event.h"
#include "store/journal.h"
#include "base/listen.h"
#include "base/log.h"

/* A sender that does not read its acknowledgements stops being read once
 * this much waits to be written: memory stays bounded per connection. */
#define WRITE_PENDING_MAX (1024 * 1024)
/* The handshake line ({"auth":"..."}, the secret being at most a 511-byte
 * line of its file) must fit here: a stranger costs this much at most. */
#define AUTH_LINE_MAX 1024
/* How long a refused peer may stay to read its error line. */
#define LINGER_MS 2000

struct ingest_json {
	const struct config *config;
	struct sink *sink;
	struct stats_counters *stats;
	uv_pipe_t pipe;
	uv_tcp_t tcp;
	bool pipe_open, tcp_open;
	unsigned handles;            /* open handles; freed when it reaches 0 */
	bool closing;
	struct json_conn *conns;     /* newest first */
	unsigned authenticated;      /* connections counted by max_connections */
	unsigned unauthenticated;    /* TCP, before the secret: max_unauthenticated */
	uid_t *allowed;
	unsigned allowed_count;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct json_conn {
	union {
		uv_stream_t stream;
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} h;
	struct ingest_json *in;
	struct json_conn *next, **prevp;
	bool authenticated;
	bool closing;
	bool reading;
	bool refused;                /* error sent: discard input until EOF */
	uv_timer_t timer;            /* the authentication deadline, then how
	                              * long a refused peer stays */
	uv_shutdown_t shutdown;
	unsigned open;               /* our handles still open (stream, timer) */
	char *buf;                   /* received, not yet a complete line */
	size_t len, cap;
	size_t write_pending;
	char peer[64];
};

struct ack_write {
	uv_write_t req;
	struct json_conn *conn;
	size_t len;
	char data[];
};

static void handle_closed(struct ingest_json *in)
{
	if (--in->handles > 0 || !in->closing)
		return;
	free(in->allowed);
	free(in);
}

static void conn_closed(uv_handle_t *handle)
{
	struct json_conn *conn = handle->data;
	struct ingest_json *in = conn->in;

	if (--conn->open > 0)
		return;
	free(conn->buf);
	free(conn);
	handle_closed(in);
}

static void conn_close(struct json_conn *conn)
{
	if (conn->closing)
		return;
	conn->closing = true;
	*conn->prevp = conn->next;
	if (conn->next != NULL)
		conn->next->prevp = conn->prevp;
	if (conn->authenticated)
		conn->in->authenticated--;
	else
		conn->in->unauthenticated--;
	uv_close((uv_handle_t *)&conn->timer, conn_closed);
	uv_close((uv_handle_t *)&conn->h.stream, conn_closed);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	static char slab[65536];

	(void)handle;
	(void)suggested;
	/* every read is consumed (copied into conn->buf) before the next */
	*buf = uv_buf_init(slab, sizeof(slab));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void reading_set(struct json_conn *conn, bool on)
{
	if (conn->closing || conn->reading == on)
		return;
	conn->reading = on;
	if (on)
		uv_read_start(&conn->h.stream, on_alloc, on_read);
	else
		uv_read_stop(&conn->h.stream);
}

static void on_written(uv_write_t *req, int status)
{
	struct ack_write *w = (struct ack_write *)req;
	struct json_conn *conn = w->conn;

	conn->write_pending -= w->len;
	free(w);
	if (status < 0) {
		if (status != UV_ECANCELED)
			log_warn("json source: %s: write: %s", conn->peer,
				 uv_strerror(status));
		conn_close(conn);
		return;
	}
	if (conn->write_pending < WRITE_PENDING_MAX / 2 && !conn->refused)
		reading_set(conn, true);
}

/* Queues text (copied) for the sender. */
static void conn_write(struct json_conn *conn, const char *text, size_t len)
{
	struct ack_write *w;
	uv_buf_t b;

	if (conn->closing || len == 0)
		return;
	w = malloc(sizeof(*w) + len);
	if (w == NULL) {
		conn_close(conn);
		return;
	}
	w->conn = conn;
	w->len = len;
	memcpy(w->data, text, len);
	b = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, &conn->h.stream, &b, 1, on_written) < 0) {
		free(w);
		conn_close(conn);
		return;
	}
	conn->write_pending += len;
	if (conn->write_pending > WRITE_PENDING_MAX)
		reading_set(conn, false);
}

static void linger_done(uv_timer_t *timer)
{
	conn_close(timer->data);
}

static void buf_drop(struct json_conn *conn)
{
	free(conn->buf);
	conn->buf = NULL;
	conn->len = conn->cap = 0;
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status;
}

/* One error line, then end of our side. Closing at once would make the
 * kernel reset the connection over the sender's unread input and lose the
 * error line, so input is discarded until the sender closes (or 2 s). */
static void conn_refuse(struct json_conn *conn, const char *why)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "{\"ok\":false,\"error\":\"%s\"}\n", why);

	log_warn("json source: %s: %s", conn->peer, why);
	if (conn->refused || conn->closing)
		return;
	conn_write(conn, line, (size_t)n);
	if (conn->closing)
		return;
	conn->refused = true;
	uv_timer_start(&conn->timer, linger_done, LINGER_MS, 0);
	if (uv_shutdown(&conn->shutdown, &conn->h.stream, shutdown_done) < 0) {
		conn_close(conn);
		return;
	}
	buf_drop(conn);
	reading_set(conn, true);
}

long long ingest_json_accept(struct sink *sink, struct stats_counters *stats,
			     const char *line, size_t len, long long received_us,
			     int *retry_r, const char **error_r)
{
	struct sink_input in = { .source = "json", .json = line, .json_len = len,
				 .received_us = received_us };
	long long seq;
	int rc;

	stats->json_lines++;
	stats->sources[STATS_JSON].received++;
	rc = sink_submit(sink, &in, &seq, error_r);
	*retry_r = rc == SINK_STORE_ERROR;
	return rc < 0 ? -1 : seq;
}

/* The TCP handshake line: {"auth":"<secret>"}. */
static bool auth_ok(const struct ingest_json *in, const char *line, size_t len)
{
	const char *secret = in->config->json_secret;
	json_t *obj = json_loadb(line, len, 0, NULL);
	const char *given = json_string_value(json_object_get(obj, "auth"));
	bool ok = given != NULL && strlen(given) == strlen(secret) &&
		  CRYPTO_memcmp(given, secret, strlen(secret)) == 0;

	json_decref(obj);
	return ok;
}

/* The outcome of one line of a read, acknowledged after the commit. */
struct line_result {
	long long seq;               /* > 0: journaled in this transaction */
	const char *error;           /* static */
	bool retry;
};

static void result_format(const struct line_result *r, bool committed,
			  char *buf, size_t size)
{
	if (r->seq > 0 && committed) {
		snprintf(buf, size, "{\"ok\":true,\"seq\":%lld}\n", r->seq);
		return;
	}
	if (r->seq > 0) {
		snprintf(buf, size, "{\"ok\":false,\"error\":\"journal commit failed\","
			 "\"retry\":true}\n");
		return;
	}
	/* error strings are ours (static, no quotes or backslashes) */
	snprintf(buf, size, "{\"ok\":false,\"error\":\"%s\"%s}\n", r->error,
		 r->retry ? ",\"retry\":true" : "");
}

/* Acknowledges results in one write. */
static void send_results(struct json_conn *conn, const struct line_result *res,
			 size_t n, bool committed)
{
	char *text = malloc(n * 256 + 1);
	size_t len = 0;

	if (text == NULL) {
		conn_close(conn);   /* the sender resends what was not acknowledged */
		return;
	}
	for (size_t i = 0; i < n; i++) {
		result_format(&res[i], committed, text + len, 256);
		len += strlen(text + len);
	}
	conn_write(conn, text, len);
	free(text);
}

/* Journals the complete lines in conn->buf (an authenticated sender's) in
 * one transaction (group commit) and acknowledges them only after the
 * commit. */
static void process_lines(struct json_conn *conn)
{
	struct ingest_json *in = conn->in;
	long long now = clock_now_us();
	struct line_result *res = NULL;
	size_t n = 0, cap = 0, start = 0;
	bool in_txn = false, committed = true;
	const char *error;
	char *nl;

	while (!conn->refused &&
	       (nl = memchr(conn->buf + start, '\n', conn->len - start)) != NULL) {
		const char *line = conn->buf + start;
		size_t len = (size_t)(nl - line);
		size_t consumed = len + 1;
		struct line_result *r;
		int retry;

		start += consumed;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len == 0)
			continue;
		if (n == cap) {
			struct line_result *bigger = realloc(res, (cap = cap * 2 + 16) * sizeof(*res));

			if (bigger == NULL) {
				start -= consumed;   /* keep it for the next read */
				break;
			}
			res = bigger;
		}
		r = &res[n++];
		memset(r, 0, sizeof(*r));
		if (!in_txn) {
			sink_begin(in->sink);
			in_txn = true;
		}
		r->seq = ingest_json_accept(in->sink, in->stats, line, len, now, &retry,
					    &r->error);
		if (r->seq < 0) {
			log_warn("json source: %s: rejected line (%zu bytes): %s",
				 conn->peer, len, r->error);
			r->seq = 0;
			r->retry = retry != 0;
		}
	}
	if (in_txn && sink_commit(in->sink, &error) < 0) {
		log_error("json source: journal commit failed; senders must resend");
		committed = false;
	}
	if (!conn->closing && !conn->refused) {
		memmove(conn->buf, conn->buf + start, conn->len - start);
		conn->len -= start;
		if (conn->len == 0 && conn->cap > 1024 * 1024)
			/* after a huge line: do not keep its buffer per idle sender */
			buf_drop(conn);
		if (n > 0)
			send_results(conn, res, n, committed);
	}
	free(res);
}

static int buf_append(struct json_conn *conn, const char *data, size_t n)
{
	if (conn->len + n > conn->cap) {
		/* before the secret, no more than the handshake line may need */
		size_t cap = conn->cap != 0 ? conn->cap :
			     conn->authenticated ? 65536 : AUTH_LINE_MAX;
		char *b;

		while (cap < conn->len + n)
			cap *= 2;
		b = realloc(conn->buf, cap);
		if (b == NULL) {
			conn_refuse(conn, "out of memory");
			return -1;
		}
		conn->buf = b;
		conn->cap = cap;
	}
	memcpy(conn->buf + conn->len, data, n);
	conn->len += n;
	return 0;
}

/* The handshake line in conn->buf (newline included) is complete. */
static void auth_line(struct json_conn *conn)
{
	struct ingest_json *in = conn->in;
	size_t len = conn->len - 1;
	static const char ok[] = "{\"ok\":true}\n";

	if (len > 0 && conn->buf[len - 1] == '\r')
		len--;
	if (len == 0) {
		conn->len = 0;
		return;
	}
	if (!auth_ok(in, conn->buf, len)) {
		in->stats->json_auth_failures++;
		conn_refuse(conn, "authentication failed");
		return;
	}
	buf_drop(conn);
	uv_timer_stop(&conn->timer);
	conn->authenticated = true;
	in->unauthenticated--;
	in->authenticated++;
	if (in->authenticated > in->config->json_max_connections) {
		conn_refuse(conn, "too many connections ([json] max_connections)");
		return;
	}
	log_debug("json source: %s authenticated", conn->peer);
	conn_write(conn, ok, sizeof(ok) - 1);
}

/* Feeds a TCP sender's first bytes to the handshake, a line of at most
 * AUTH_LINE_MAX bytes; returns how many it took (what follows a good
 * handshake in the same read is event lines). */
static size_t auth_feed(struct json_conn *conn, const char *data, size_t n)
{
	size_t used = 0;

	while (used < n && !conn->authenticated && !conn->refused && !conn->closing) {
		const char *nl = memchr(data + used, '\n', n - used);
		size_t take = nl != NULL ? (size_t)(nl - (data + used)) + 1 : n - used;

		if (conn->len + take > AUTH_LINE_MAX) {
			conn->in->stats->json_auth_failures++;
			conn_refuse(conn, "authentication line longer than 1024 bytes");
			return n;
		}
		if (buf_append(conn, data + used, take) < 0)
			return n;
		used += take;
		if (nl != NULL)
			auth_line(conn);
	}
	return used;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct json_conn *conn = stream->data;
	size_t max = conn->in->config->json_max_line + 2;
	const char *data = buf->base;
	size_t n = nread > 0 ? (size_t)nread : 0;

	if (nread < 0) {
		if (nread != UV_EOF && !conn->refused)
			log_warn("json source: %s: %s", conn->peer, uv_strerror((int)nread));
		conn_close(conn);
		return;
	}
	if (conn->refused)
		return;
	if (!conn->authenticated) {
		size_t used = auth_feed(conn, data, n);

		if (!conn->authenticated || conn->refused || conn->closing)
			return;
		data += used;
		n -= used;
	}
	if (n == 0 || buf_append(conn, data, n) < 0)
		return;
	process_lines(conn);
	if (!conn->closing && conn->len > max)
		conn_refuse(conn, "line longer than [json] max_line");
}

static bool uid_allowed(const struct ingest_json *in, uid_t uid)
{
	if (uid == geteuid())
		return true;
	for (unsigned i = 0; i < in->allowed_count; i++)
		if (in->allowed[i] == uid)
			return true;
	return false;
}

/* Peer credentials of a Unix connection; NULL reason when allowed. */
static const char *check_peer(struct json_conn *conn)
{
	uid_t uid;
	gid_t gid;
	pid_t pid;

	if (listen_peer(&conn->h.stream, &uid, &gid, &pid) < 0)
		return "cannot read peer credentials";
	snprintf(conn->peer, sizeof(conn->peer), "uid %u pid %d",
		 (unsigned)uid, (int)pid);
	return uid_allowed(conn->in, uid) ? NULL
		: "sender's user is not in [json] allowed_users";
}

static void tcp_peer_name(struct json_conn *conn)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char host[48] = "?";
	int port = 0;

	if (uv_tcp_getpeername(&conn->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		} else {
			uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		}
	}
	snprintf(conn->peer, sizeof(conn->peer), "%s port %d", host, port);
}

static void auth_expired(uv_timer_t *timer)
{
	struct json_conn *conn = timer->data;

	conn->in->stats->json_auth_timeouts++;
	conn_refuse(conn, "no authentication within [json] auth_timeout");
}

/* Strangers may fill the unauthenticated places but never hold them: the
 * oldest gives way to a new connection, so the real sender, which sends
 * its secret at once, always gets in. */
static void evict_oldest_unauthenticated(struct ingest_json *in)
{
	struct json_conn *oldest = NULL;

	for (struct json_conn *c = in->conns; c != NULL; c = c->next)
		if (!c->authenticated)
			oldest = c;
	if (oldest == NULL)
		return;
	in->stats->json_auth_evicted++;
	log_warn("json source: %s: closed unauthenticated, to make room "
		 "([json] max_unauthenticated = %u)", oldest->peer,
		 in->config->json_max_unauthenticated);
	conn_close(oldest);
}

static void conn_link(struct ingest_json *in, struct json_conn *conn)
{
	conn->next = in->conns;
	if (in->conns != NULL)
		in->conns->prevp = &conn->next;
	conn->prevp = &in->conns;
	in->conns = conn;
}

static void on_connection(uv_stream_t *server, int status)
{
	struct ingest_json *in = server->data;
	const struct config *c = in->config;
	bool is_pipe = server == (uv_stream_t *)&in->pipe;
	struct json_conn *conn;
	const char *why = NULL;

	if (status < 0 || in->closing)
		return;
	conn = calloc(1, sizeof(*conn));
	if (conn == NULL)
		return;
	conn->in = in;
	if (is_pipe)
		uv_pipe_init(server->loop, &conn->h.pipe, 0);
	else
		uv_tcp_init(server->loop, &conn->h.tcp);
	uv_timer_init(server->loop, &conn->timer);
	conn->h.stream.data = conn;
	conn->timer.data = conn;
	conn->open = 2;
	in->handles++;
	/* a Unix peer is known by its credentials, checked below */
	conn->authenticated = is_pipe;
	if (is_pipe)
		in->authenticated++;
	else
		in->unauthenticated++;
	conn_link(in, conn);
	if (uv_accept(server, &conn->h.stream) < 0) {
		conn_close(conn);
		return;
	}
	if (is_pipe) {
		why = check_peer(conn);
		if (why == NULL && in->authenticated > c->json_max_connections)
			why = "too many connections ([json] max_connections)";
	} else {
		tcp_peer_name(conn);
		uv_tcp_nodelay(&conn->h.tcp, 1);
		if (in->unauthenticated > c->json_max_unauthenticated)
			evict_oldest_unauthenticated(in);
		uv_timer_start(&conn->timer, auth_expired,
			       (uint64_t)c->json_auth_timeout * 1000, 0);
	}
	if (why != NULL) {
		conn_refuse(conn, why);
		return;
	}
	log_debug("json source: %s connected", conn->peer);
	reading_set(conn, true);
}

static int parse_allowed(struct ingest_json *in, const char *list,
			 const char **error_r)
{
	static char msg[200];
	char *copy = strdup(list), *save = NULL;
	unsigned n = 0;

	in->allowed = calloc(strlen(list) / 2 + 1, sizeof(uid_t));
	if (copy == NULL || in->allowed == NULL) {
		free(copy);
		*error_r = "out of memory";
		return -1;
	}
	for (char *w = strtok_r(copy, " \t,", &save); w != NULL;
	     w = strtok_r(NULL, " \t,", &save)) {
		char *end;
		unsigned long uid = strtoul(w, &end, 10);
		struct passwd *pw;

		if (*end == '\0') {
			in->allowed[n++] = (uid_t)uid;
			continue;
		}
		pw = getpwnam(w);
		if (pw == NULL) {
			snprintf(msg, sizeof(msg), "[json] allowed_users: no user '%s'", w);
			free(copy);
			*error_r = msg;
			return -1;
		}
		in->allowed[n++] = pw->pw_uid;
	}
	in->allowed_count = n;
	free(copy);
	return 0;
}

static int listen_pipe(struct ingest_json *in, uv_loop_t *loop,
		       const struct config *c, const char **error_r)
{
	static char msg[300];
	char why[200];
	int r;

	if (strlen(c->json_socket) >= sizeof(in->path)) {
		*error_r = "[json] socket path too long";
		return -1;
	}
	strcpy(in->path, c->json_socket);
	listen_remove_stale(in->path);
	uv_pipe_init(loop, &in->pipe, 0);
	in->pipe.data = in;
	in->pipe_open = true;
	in->handles++;
	if ((r = uv_pipe_bind(&in->pipe, in->path)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&in->pipe, 128, on_connection)) < 0) {
		snprintf(msg, sizeof(msg), "[json] socket %s: %s", in->path, uv_strerror(r));
		*error_r = msg;
		return -1;
	}
	if (listen_permit(in->path, c->json_socket_group, c->json_socket_mode,
			  why, sizeof(why)) < 0) {
		snprintf(msg, sizeof(msg), "[json] socket %s", why);
		*error_r = msg;
		return -1;
	}
	log_info("json source: listening on %s", in->path);
	return 0;
}

static int listen_tcp(struct ingest_json *in, uv_loop_t *loop,
		      const char *spec, const char **error_r)
{
	static char msg[300];
	struct sockaddr_storage ss;
	char why[200];
	int r;

	if (listen_parse_hostport(spec, &ss, why, sizeof(why)) < 0) {
		snprintf(msg, sizeof(msg), "[json] listen: %s", why);
		*error_r = msg;
		return -1;
	}
	uv_tcp_init(loop, &in->tcp);
	in->tcp.data = in;
	in->tcp_open = true;
	in->handles++;
	if ((r = uv_tcp_bind(&in->tcp, (struct sockaddr *)&ss, 0)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&in->tcp, 128, on_connection)) < 0) {
		snprintf(msg, sizeof(msg), "[json] listen %s: %s", spec, uv_strerror(r));
		*error_r = msg;
		return -1;
	}
	log_info("json source: listening on %s (secret required)", spec);
	return 0;
}

int ingest_json_new(uv_loop_t *loop, const struct config *config,
		    struct sink *sink, struct stats_counters *stats,
		    struct ingest_json **ingest_r, const char **error_r)
{
	const struct config *c = config;
	struct ingest_json *in = calloc(1, sizeof(*in));

	if (in == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	in->config = config;
	in->sink = sink;
	in->stats = stats;
	*ingest_r = in;
	if (parse_allowed(in, c->json_allowed_users, error_r) < 0 ||
	    (*c->json_socket != '\0' && listen_pipe(in, loop, c, error_r) < 0) ||
	    (*c->json_listen != '\0' && listen_tcp(in, loop, c->json_listen, error_r) < 0)) {
		ingest_json_close(ingest_r);
		return -1;
	}
	return 0;
}

unsigned ingest_json_connections(const struct ingest_json *in)
{
	return in != NULL ? in->authenticated + in->unauthenticated : 0;
}

static void server_closed(uv_handle_t *handle)
{
	handle_closed(handle->data);
}

void ingest_json_close(struct ingest_json **ingest)
{
	struct ingest_json *in = *ingest;

	if (in == NULL)
		return;
	*ingest = NULL;
	in->closing = true;
	while (in->conns != NULL)
		conn_close(in->conns);
	if (in->pipe_open) {
		uv_close((uv_handle_t *)&in->pipe, server_closed);
		unlink(in->path);
	}
	if (in->tcp_open)
		uv_close((uv_handle_t *)&in->tcp, server_closed);
	if (in->handles == 0) {
		free(in->allowed);
		free(in);
	}
}
