#include "imap/imap_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libetpan/libetpan.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "imap/imap_backoff.h"
#include "imap/imap_name.h"
#include "base/log.h"

#define DEFAULT_TIMEOUT_MS 10000u
#define DEFAULT_MAX_SESSIONS 8u
/* identities held back after the server refused them (imap_backoff.h):
 * a few per pooled session, and each costs a name and two counters */
#define REFUSED_MAX 256u
/* LOGOUT of a session we no longer need is a courtesy: never wait long */
#define LOGOUT_TIMEOUT_MS 1000u
#define STREAM_BUFFER 8192

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- data structures ---------------------------------------------------
 *
 * Threading: struct imap_client, the session list, queues and the `busy`
 * flags belong to the loop thread. While a session is busy, its imap, conn
 * and namespace fields belong to the one worker running its op; otherwise to
 * the loop thread. The only things shared across threads are `aborting`
 * (atomic) and a connection's fd, which imap_client_close() shuts down
 * under fd_lock to cut blocked commands short. */

/* Our mailstream_low data: a blocking socket, optionally with TLS. */
struct conn {
	int fd;
	SSL *ssl;
	uint64_t deadline;       /* monotonic ms; I/O after it fails */
	bool timed_out;
	bool broken;             /* no TLS close_notify on a failed connection */
	char error[200];         /* last I/O failure */
	uv_mutex_t *fd_lock;
	const atomic_bool *aborting; /* client's; NULL for a retired session */
};

struct op;

struct op_queue {
	struct op *head, *tail;
};

struct session {
	struct session *prev, *next;   /* pool, most recently used first */
	struct imap_client *client;
	char *key;                     /* authorization identity, "" = admin */
	bool busy;                     /* an op of this session is in the threadpool */
	struct op_queue queue;
	/* see "Threading" above */
	mailimap *imap;
	struct conn *conn;
	struct imap_namespaces ns;
	bool condstore;
	/* a dedicated session's own stop flag (imap_session_open); NULL:
	 * the client's */
	const atomic_bool *aborting;
};

enum op_kind { OP_MYRIGHTS, OP_LIST, OP_STATUS, OP_FETCH };

enum op_fail {
	FAIL_NONE,
	FAIL_CONNECT,   /* could not reach the server: every new connection backs off */
	FAIL_AUTHZ,     /* the server refused, dropped or did not answer a session
	                 * as this identity: this identity backs off, nobody else */
};

struct op {
	struct op *next;
	enum op_kind kind;
	/* queued behind every other op and never promoted in the pool
	 * (imap_client_list_background) */
	bool background;
	struct imap_client *client;
	struct session *session;
	uv_work_t work;
	char *key, *account, *node;
	union {
		void (*myrights)(void *ctx, enum imap_result r, const char *rights);
		void (*list)(void *ctx, enum imap_result r, char **nodes, size_t n);
		void (*status)(void *ctx, enum imap_result r, const struct imap_status *st);
		void (*fetch)(void *ctx, enum imap_result r, const struct imap_message *msg);
	} cb;
	void *ctx;
	/* results, written by the worker */
	enum imap_result result;
	enum op_fail fail;
	char *rights;
	char **nodes;
	size_t n_nodes;
	struct imap_status st;
	/* OP_FETCH: what to fetch, and what came */
	uint32_t uid, uidvalidity;
	enum imap_fetch_part part;
	char *body;
	size_t body_len;
	char *flags;
	char internaldate[40];
	char error[320];
};

struct imap_client {
	uv_loop_t *loop;
	char *host, *ca_file, *admin_user, *password, *mechanism;
	unsigned short port;
	enum imap_tls tls;
	bool verify;
	bool other_inbox_named;
	bool list_as_owner;
	unsigned timeout_ms, max_sessions;
	SSL_CTX *ssl_ctx;

	struct session *sessions;      /* MRU first */
	struct session *sessions_tail;
	unsigned n_sessions;
	struct op_queue waiting;       /* no session slot free yet */
	struct op_queue done;          /* finished without a worker */
	uv_timer_t done_timer;
	unsigned works;                /* uv_work_t in flight */

	unsigned failures;             /* consecutive failed connection attempts */
	char conn_error[320];          /* why the last one failed */
	uint64_t retry_at;             /* uv_now() before which we do not connect */
	struct imap_backoff *refused;  /* identities held back (FAIL_AUTHZ) */

	uv_mutex_t fd_lock;
	atomic_bool aborting;
	bool closing, finishing;
	void (*close_done)(void *);
	void *close_ctx;
	char last_error[320];
	unsigned long long commands, errors, connect_failures;
};

/* snprintf for messages: truncating a long one is fine (and through
 * vsnprintf GCC does not warn about it). */
static void fmt_to(char *dst, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fmt_to(char *dst, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, len, fmt, ap);
	va_end(ap);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static double ms_since(uint64_t start_ns)
{
	return (double)(uv_hrtime() - start_ns) / 1e6;
}

static const char *errno_str(int err, char *buf, size_t len)
{
	/* GNU strerror_r: thread safe, may return a static string */
	return strerror_r(err, buf, len);
}

/* ---- blocking socket + OpenSSL as a libetpan stream --------------------- */

static void conn_set_deadline(struct conn *c, unsigned timeout_ms)
{
	c->deadline = now_ms() + timeout_ms;
	c->timed_out = false;
	c->error[0] = '\0';
}

/* Bounds the next blocking socket call by the time left until the
 * deadline: SO_RCVTIMEO/SO_SNDTIMEO make recv/send fail with EAGAIN. */
static int conn_arm(struct conn *c)
{
	uint64_t now = now_ms(), left;
	struct timeval tv;
	char eb[128];

	if (c->aborting != NULL && atomic_load(c->aborting)) {
		fmt_to(c->error, sizeof(c->error), "client is closing");
		return -1;
	}
	if (now >= c->deadline) {
		c->timed_out = true;
		fmt_to(c->error, sizeof(c->error), "timed out");
		return -1;
	}
	left = c->deadline - now;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		fmt_to(c->error, sizeof(c->error), "setsockopt: %s",
			 errno_str(errno, eb, sizeof(eb)));
		return -1;
	}
	return 0;
}

/* Maps a recv/send result; records why it failed. */
static ssize_t conn_io_result(struct conn *c, ssize_t n, const char *what)
{
	char eb[128];

	if (n > 0)
		return n;
	c->broken = true;
	if (n == 0)
		fmt_to(c->error, sizeof(c->error), "connection closed by the server");
	else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		c->timed_out = true;
		fmt_to(c->error, sizeof(c->error), "%s timed out", what);
	} else
		fmt_to(c->error, sizeof(c->error), "%s: %s", what,
			 errno_str(errno, eb, sizeof(eb)));
	return n == 0 ? 0 : -1;
}

static ssize_t sock_recv(struct conn *c, void *buf, size_t count)
{
	ssize_t n;

	if (conn_arm(c) < 0)
		return -1;
	/* ack at once: Cyrus writes TLS session tickets and its greeting
	 * separately and its Nagle would hold the greeting for our delayed
	 * ACK (40 ms); Linux leaves quick-ack mode by itself, so re-arm */
	setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &(int){ 1 }, sizeof(int));
	do
		n = recv(c->fd, buf, count, 0);
	while (n < 0 && errno == EINTR);
	return conn_io_result(c, n, "read");
}

static ssize_t sock_send(struct conn *c, const void *buf, size_t count)
{
	ssize_t n;

	if (conn_arm(c) < 0)
		return -1;
	/* MSG_NOSIGNAL: a server that went away must not SIGPIPE the daemon */
	do
		n = send(c->fd, buf, count, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return conn_io_result(c, n, "write");
}

/* OpenSSL's own socket BIO writes without MSG_NOSIGNAL and knows nothing of
 * our deadline: give it ours. */
static BIO_METHOD *bio_method;
static uv_once_t bio_once = UV_ONCE_INIT;

static int bio_sock_write(BIO *b, const char *buf, int len)
{
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = sock_send(BIO_get_data(b), buf, (size_t)len);
	return n > 0 ? (int)n : -1;
}

static int bio_sock_read(BIO *b, char *buf, int len)
{
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = sock_recv(BIO_get_data(b), buf, (size_t)len);
	return n >= 0 ? (int)n : -1;
}

static long bio_sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_sock_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void bio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "mailpubsub imap socket");

	if (m == NULL)
		return;
	if (BIO_meth_set_write(m, bio_sock_write) != 1 ||
	    BIO_meth_set_read(m, bio_sock_read) != 1 ||
	    BIO_meth_set_ctrl(m, bio_sock_ctrl) != 1 ||
	    BIO_meth_set_create(m, bio_sock_create) != 1) {
		BIO_meth_free(m);
		return;
	}
	bio_method = m;
}

/* Describes a failed SSL_* call, preferring what the socket layer saw. */
static void conn_tls_error(struct conn *c, int ret, const char *what)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long ossl = ERR_get_error();
	char eb[200];

	c->broken = true;
	if (c->error[0] != '\0')
		return;
	if (e == SSL_ERROR_ZERO_RETURN) {
		fmt_to(c->error, sizeof(c->error), "connection closed by the server");
	} else if (ossl != 0) {
		ERR_error_string_n(ossl, eb, sizeof(eb));
		fmt_to(c->error, sizeof(c->error), "TLS %s failed: %s", what, eb);
	} else {
		fmt_to(c->error, sizeof(c->error), "TLS %s failed (error %d)", what, e);
	}
	ERR_clear_error();
}

static ssize_t plain_low_read(mailstream_low *low, void *buf, size_t count)
{
	ssize_t n = sock_recv(low->data, buf, count);

	/* libetpan reads 0 as "no data yet"; a closed connection is an error */
	return n > 0 ? n : -1;
}

static ssize_t plain_low_write(mailstream_low *low, const void *buf, size_t count)
{
	return sock_send(low->data, buf, count);
}

static ssize_t tls_low_read(mailstream_low *low, void *buf, size_t count)
{
	struct conn *c = low->data;
	int n;

	ERR_clear_error();
	n = SSL_read(c->ssl, buf, count > INT_MAX ? INT_MAX : (int)count);
	if (n > 0)
		return n;
	conn_tls_error(c, n, "read");
	return -1;
}

static ssize_t tls_low_write(mailstream_low *low, const void *buf, size_t count)
{
	struct conn *c = low->data;
	int n;

	ERR_clear_error();
	n = SSL_write(c->ssl, buf, count > INT_MAX ? INT_MAX : (int)count);
	if (n > 0)
		return n;
	conn_tls_error(c, n, "write");
	return -1;
}

/* Frees the TLS state and closes the socket; the struct stays (owned by
 * the session). Idempotent. */
static void conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		if (!c->broken && c->deadline > now_ms())
			SSL_shutdown(c->ssl); /* one close_notify, no waiting */
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	uv_mutex_lock(c->fd_lock);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	uv_mutex_unlock(c->fd_lock);
}

static int low_close(mailstream_low *low)
{
	conn_close(low->data);
	return 0;
}

static int low_get_fd(mailstream_low *low)
{
	return ((struct conn *)low->data)->fd;
}

/* The conn outlives its mailstream_low: STARTTLS swaps lows over it. */
static void low_free(mailstream_low *low)
{
	free(low);
}

static mailstream_low_driver plain_driver = {
	.mailstream_read = plain_low_read,
	.mailstream_write = plain_low_write,
	.mailstream_close = low_close,
	.mailstream_get_fd = low_get_fd,
	.mailstream_free = low_free,
};

static mailstream_low_driver tls_driver = {
	.mailstream_read = tls_low_read,
	.mailstream_write = tls_low_write,
	.mailstream_close = low_close,
	.mailstream_get_fd = low_get_fd,
	.mailstream_free = low_free,
};

static int tcp_connect(struct imap_client *cl, struct conn *c, char *err,
		       size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	char port[8], eb[128];
	int r, last_err = 0;
	bool timed_out = false;

	fmt_to(port, sizeof(port), "%u", cl->port);
	/* getaddrinfo cannot be bounded; use an address or a local resolver */
	r = getaddrinfo(cl->host, port, &hints, &res);
	if (r != 0) {
		fmt_to(err, errlen, "cannot resolve %s: %s", cl->host, gai_strerror(r));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				ai->ai_protocol);
		int one = 1, soerr = 0;
		socklen_t len = sizeof(soerr);

		if (fd < 0) {
			last_err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			if (errno != EINPROGRESS) {
				last_err = errno;
				close(fd);
				continue;
			}
			for (;;) {
				uint64_t now = now_ms();
				int pr;

				if (now >= c->deadline ||
				    (c->aborting != NULL && atomic_load(c->aborting))) {
					pr = 0;
				} else {
					/* slices: imap_client_close() cannot shut
					 * down a socket that is still connecting */
					uint64_t left = c->deadline - now;

					pr = poll(&pfd, 1, left < 100 ? (int)left : 100);
					if (pr == 0 || (pr < 0 && errno == EINTR))
						continue;
				}
				if (pr <= 0) {
					last_err = pr < 0 ? errno : ETIMEDOUT;
					timed_out = pr == 0;
					break;
				}
				if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
					soerr = errno;
				last_err = soerr;
				break;
			}
			if (last_err != 0) {
				close(fd);
				if (timed_out)
					break;
				continue;
			}
		}
		/* blocking from here on: libetpan's calls are blocking, and
		 * conn_arm() bounds each one */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		/* IMAP is small request / response exchanges: no Nagle delay */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		uv_mutex_lock(c->fd_lock);
		c->fd = fd;
		uv_mutex_unlock(c->fd_lock);
		freeaddrinfo(res);
		return 0;
	}
	freeaddrinfo(res);
	if (timed_out)
		fmt_to(err, errlen, "connecting to %s port %u timed out", cl->host, cl->port);
	else
		fmt_to(err, errlen, "cannot connect to %s port %u: %s", cl->host,
			 cl->port, errno_str(last_err, eb, sizeof(eb)));
	return -1;
}

static int tls_handshake(struct imap_client *cl, struct conn *c, char *err,
			 size_t errlen)
{
	struct in6_addr a6;
	struct in_addr a4;
	bool is_ip = inet_pton(AF_INET, cl->host, &a4) == 1 ||
		     inet_pton(AF_INET6, cl->host, &a6) == 1;
	BIO *bio;
	long vr;
	int r;

	c->ssl = SSL_new(cl->ssl_ctx);
	bio = c->ssl != NULL ? BIO_new(bio_method) : NULL;
	if (bio == NULL) {
		fmt_to(err, errlen, "out of memory for TLS");
		return -1;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, cl->host);
	if (cl->verify &&
	    (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), cl->host)
		   : SSL_set1_host(c->ssl, cl->host)) != 1) {
		fmt_to(err, errlen, "cannot set TLS peer name %s", cl->host);
		return -1;
	}
	ERR_clear_error();
	r = SSL_connect(c->ssl);
	if (r == 1)
		return 0;
	vr = SSL_get_verify_result(c->ssl);
	if (cl->verify && vr != X509_V_OK) {
		fmt_to(err, errlen,
			 "TLS certificate verification failed for %s: %s%s", cl->host,
			 X509_verify_cert_error_string(vr),
			 cl->ca_file == NULL ? " (no ca_file set: system trust store used)" : "");
		c->broken = true;
		ERR_clear_error();
		return -1;
	}
	conn_tls_error(c, r, "handshake");
	fmt_to(err, errlen, "TLS handshake with %s failed: %s", cl->host, c->error);
	return -1;
}

/* ---- one session's protocol steps (worker thread) --------------------- */

static const char *session_self(const struct session *s)
{
	return s->key[0] != '\0' ? s->key : s->client->admin_user;
}

static void log_cmd(const struct session *s, const char *cmd, const char *arg,
		    int r, uint64_t start)
{
	if (!log_enabled(LOG_LEVEL_DEBUG))
		return;
	log_debug("imap[%s%s%s]: %s%s%s: %s%s%s (%.2f ms)", s->client->admin_user,
		  s->key[0] != '\0' ? " as " : "", s->key, cmd,
		  arg != NULL ? " " : "", arg != NULL ? arg : "",
		  r == MAILIMAP_NO_ERROR || r == MAILIMAP_NO_ERROR_NON_AUTHENTICATED ||
		  r == MAILIMAP_NO_ERROR_AUTHENTICATED ? "OK" : "failed",
		  s->imap != NULL && s->imap->imap_response != NULL ? " " : "",
		  s->imap != NULL && s->imap->imap_response != NULL ? s->imap->imap_response : "",
		  ms_since(start));
}

/* Drops the connection (worker, or loop thread when not busy). */
static void session_disconnect(struct session *s)
{
	struct conn *c = s->conn;

	if (s->imap != NULL) {
		/* mailimap_free() sends LOGOUT: on a connection we give up on,
		 * let it fail at once */
		if (c != NULL)
			c->deadline = 0;
		mailimap_free(s->imap);
		s->imap = NULL;
	}
	if (c != NULL) {
		c->broken = true;
		conn_close(c);
		uv_mutex_lock(c->fd_lock);
		s->conn = NULL;
		uv_mutex_unlock(c->fd_lock);
		free(c);
	}
	imap_namespaces_clear(&s->ns);
	s->condstore = false;
}

static void ns_take(struct imap_ns *dst, struct mailimap_namespace_item *item)
{
	struct mailimap_namespace_info *info;

	if (item == NULL || clist_begin(item->ns_data_list) == NULL)
		return;
	info = clist_content(clist_begin(item->ns_data_list));
	dst->prefix = strdup(info->ns_prefix);
	dst->sep = info->ns_delimiter;
}

/* NAMESPACE, or the delimiter from LIST "" "" on servers without it. */
static int session_namespaces(struct session *s, char *err, size_t errlen)
{
	struct imap_client *cl = s->client;
	uint64_t t0 = uv_hrtime();
	int r;

	conn_set_deadline(s->conn, cl->timeout_ms);
	if (mailimap_has_namespace(s->imap)) {
		struct mailimap_namespace_data *nsd = NULL;

		r = mailimap_namespace(s->imap, &nsd);
		log_cmd(s, "NAMESPACE", NULL, r, t0);
		if (r == MAILIMAP_NO_ERROR) {
			ns_take(&s->ns.personal, nsd->ns_personal);
			ns_take(&s->ns.other, nsd->ns_other);
			ns_take(&s->ns.shared, nsd->ns_shared);
			s->ns.other_inbox_named = cl->other_inbox_named;
			mailimap_namespace_data_free(nsd);
			return 0;
		}
		if (nsd != NULL)
			mailimap_namespace_data_free(nsd);
		if (r != MAILIMAP_ERROR_EXTENSION)
			goto broken;
	} else {
		clist *list = NULL;

		r = mailimap_list(s->imap, "", "", &list);
		log_cmd(s, "LIST", "\"\" \"\"", r, t0);
		if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_LIST)
			goto broken;
		s->ns.personal.prefix = strdup("");
		if (list != NULL && clist_begin(list) != NULL)
			s->ns.personal.sep = ((struct mailimap_mailbox_list *)
					      clist_content(clist_begin(list)))->mb_delimiter;
		if (list != NULL)
			mailimap_list_result_free(list);
		/* other users' and shared namespaces stay unknown: calls
		 * needing them answer NO */
		return 0;
	}
	s->ns.personal.prefix = strdup("");
	return 0;
broken:
	fmt_to(err, errlen, "NAMESPACE failed: %s", s->conn->error[0] ? s->conn->error : "protocol error");
	return -1;
}

/* Connects, greets, does TLS, authenticates and learns the namespaces.
 * On failure sets op->error and op->fail and leaves s disconnected. */
static int session_connect(struct session *s, struct op *op)
{
	struct imap_client *cl = s->client;
	struct conn *c = calloc(1, sizeof(*c));
	mailstream_low *low;
	mailstream *stream;
	uint64_t t0;
	int r;

	op->fail = FAIL_CONNECT;
	if (c == NULL) {
		fmt_to(op->error, sizeof(op->error), "out of memory");
		return -1;
	}
	c->fd = -1;
	c->fd_lock = &cl->fd_lock;
	c->aborting = s->aborting != NULL ? s->aborting : &cl->aborting;
	uv_mutex_lock(&cl->fd_lock);
	s->conn = c;
	uv_mutex_unlock(&cl->fd_lock);

	t0 = uv_hrtime();
	conn_set_deadline(c, cl->timeout_ms);
	if (tcp_connect(cl, c, op->error, sizeof(op->error)) < 0)
		goto fail;
	log_debug("imap: connected to %s port %u (%.2f ms)", cl->host, cl->port, ms_since(t0));
	if (cl->tls == IMAP_TLS_IMAPS) {
		t0 = uv_hrtime();
		if (tls_handshake(cl, c, op->error, sizeof(op->error)) < 0)
			goto fail;
		log_debug("imap: TLS %s with %s (%.2f ms)", SSL_get_version(c->ssl),
			  cl->host, ms_since(t0));
	}
	low = mailstream_low_new(c, cl->tls == IMAP_TLS_IMAPS ? &tls_driver : &plain_driver);
	stream = low != NULL ? mailstream_new(low, STREAM_BUFFER) : NULL;
	if (stream == NULL) {
		free(low);
		fmt_to(op->error, sizeof(op->error), "out of memory");
		goto fail;
	}
	s->imap = mailimap_new(0, NULL);
	if (s->imap == NULL) {
		mailstream_close(stream);
		fmt_to(op->error, sizeof(op->error), "out of memory");
		goto fail;
	}
	/* our driver enforces the deadline; this keeps libetpan consistent */
	mailimap_set_timeout(s->imap, (cl->timeout_ms + 999) / 1000);

	t0 = uv_hrtime();
	r = mailimap_connect(s->imap, stream);
	log_cmd(s, "greeting", NULL, r, t0);
	if (r == MAILIMAP_NO_ERROR_AUTHENTICATED) {
		fmt_to(op->error, sizeof(op->error),
			 "%s pre-authenticated the connection: cannot choose an identity", cl->host);
		goto fail;
	}
	if (r != MAILIMAP_NO_ERROR_NON_AUTHENTICATED) {
		fmt_to(op->error, sizeof(op->error), "no IMAP greeting from %s: %s",
			 cl->host, c->error[0] ? c->error :
			 r == MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION ? "server said BYE" :
			 "protocol error");
		goto fail;
	}

	if (cl->tls == IMAP_TLS_STARTTLS) {
		mailstream_low *plain = mailstream_get_low(stream), *tls;

		t0 = uv_hrtime();
		conn_set_deadline(c, cl->timeout_ms);
		r = mailimap_starttls(s->imap);
		log_cmd(s, "STARTTLS", NULL, r, t0);
		if (r != MAILIMAP_NO_ERROR) {
			fmt_to(op->error, sizeof(op->error), "STARTTLS with %s failed: %s",
				 cl->host, c->error[0] ? c->error : s->imap->imap_response ?
				 s->imap->imap_response : "refused");
			goto fail;
		}
		/* anything already buffered was sent before TLS and could be
		 * injected by a man in the middle (CVE-2020-15953) */
		if (stream->read_buffer_len != 0) {
			fmt_to(op->error, sizeof(op->error),
				 "%s sent unencrypted data after STARTTLS", cl->host);
			goto fail;
		}
		t0 = uv_hrtime();
		if (tls_handshake(cl, c, op->error, sizeof(op->error)) < 0)
			goto fail;
		tls = mailstream_low_new(c, &tls_driver);
		if (tls == NULL) {
			fmt_to(op->error, sizeof(op->error), "out of memory");
			goto fail;
		}
		/* as mailimap_socket_starttls() does for libetpan's own TLS */
		mailstream_low_free(plain);
		mailstream_set_low(stream, tls);
		log_debug("imap: TLS %s with %s after STARTTLS (%.2f ms)",
			  SSL_get_version(c->ssl), cl->host, ms_since(t0));
	}

	/* forget the greeting's capabilities: they change with TLS and
	 * authentication; the AUTHENTICATE reply usually brings new ones */
	if (s->imap->imap_connection_info != NULL &&
	    s->imap->imap_connection_info->imap_capability != NULL) {
		mailimap_capability_data_free(s->imap->imap_connection_info->imap_capability);
		s->imap->imap_connection_info->imap_capability = NULL;
	}
	t0 = uv_hrtime();
	conn_set_deadline(c, cl->timeout_ms);
	/* The server is up and talking. From here on a failure is about the
	 * identity we name: Cyrus answers a name it cannot take only after
	 * failedloginpause (3 s) and drops a cyr_deny'd identity with BYE on
	 * its first command. None of it may hold back the other identities. */
	if (s->key[0] != '\0')
		op->fail = FAIL_AUTHZ;
	/* login = SASL authorization id ("" = none), auth_name = who we are */
	r = mailimap_authenticate(s->imap, cl->mechanism, cl->host, NULL, NULL,
				  s->key, cl->admin_user, cl->password, NULL);
	log_cmd(s, "AUTHENTICATE", cl->mechanism, r, t0);
	if (r != MAILIMAP_NO_ERROR) {
		fmt_to(op->error, sizeof(op->error),
			 "AUTHENTICATE %s as %s%s%s at %s failed: %s", cl->mechanism,
			 cl->admin_user, s->key[0] != '\0' ? " for " : "", s->key, cl->host,
			 c->error[0] ? c->error : s->imap->imap_response != NULL &&
			 s->imap->imap_response[0] != '\0' ? s->imap->imap_response :
			 "rejected (or mechanism not available)");
		goto fail;
	}
	if (s->imap->imap_connection_info == NULL ||
	    s->imap->imap_connection_info->imap_capability == NULL) {
		struct mailimap_capability_data *caps = NULL;

		t0 = uv_hrtime();
		conn_set_deadline(c, cl->timeout_ms);
		r = mailimap_capability(s->imap, &caps);
		log_cmd(s, "CAPABILITY", NULL, r, t0);
		if (caps != NULL)
			mailimap_capability_data_free(caps);
		if (r != MAILIMAP_NO_ERROR) {
			fmt_to(op->error, sizeof(op->error), "CAPABILITY failed: %s",
				 c->error[0] ? c->error : "protocol error");
			goto fail;
		}
	}
	s->condstore = mailimap_has_condstore(s->imap) != 0;
	if (session_namespaces(s, op->error, sizeof(op->error)) < 0)
		goto fail;
	op->fail = FAIL_NONE;
	return 0;
fail:
	session_disconnect(s);
	return -1;
}

enum run_result { RUN_DONE, RUN_BROKEN };

/* Classifies a failed command: NO (the command's own error code) is an
 * answer, BAD is our problem but the session is fine, anything else means
 * the connection is gone. */
static enum run_result run_failed(struct session *s, struct op *op, int r,
				  int no_code, const char *what, const char *arg)
{
	const char *text = s->imap->imap_response != NULL ? s->imap->imap_response : "";

	if (r == no_code) {
		op->result = IMAP_NO;
		fmt_to(op->error, sizeof(op->error), "%s %s: NO %s", what, arg, text);
		return RUN_DONE;
	}
	if (r == MAILIMAP_ERROR_PROTOCOL) {
		op->result = IMAP_TEMPFAIL;
		fmt_to(op->error, sizeof(op->error), "%s %s: server said BAD %s", what, arg, text);
		return RUN_DONE;
	}
	op->result = IMAP_TEMPFAIL;
	fmt_to(op->error, sizeof(op->error), "%s %s: %s", what, arg,
		 s->conn->error[0] ? s->conn->error :
		 r == MAILIMAP_ERROR_FATAL ? "server said BYE" : "protocol error");
	return RUN_BROKEN;
}

/* A node that cannot name a mailbox: no such mailbox. */
static bool op_name(struct session *s, struct op *op, const char *self,
		    const char *node, char **name_r)
{
	const char *err;

	if (imap_name_from_node(&s->ns, self, op->account, node, name_r, &err) == 0)
		return true;
	op->result = IMAP_NO;
	fmt_to(op->error, sizeof(op->error), "%s/%s: %s", op->account, node, err);
	log_debug("imap: %s", op->error);
	return false;
}

static enum run_result run_myrights(struct session *s, struct op *op)
{
	struct mailimap_acl_myrights_data *data = NULL;
	uint64_t t0;
	char *name;
	int r;

	if (!op_name(s, op, session_self(s), op->node, &name))
		return RUN_DONE;
	t0 = uv_hrtime();
	conn_set_deadline(s->conn, s->client->timeout_ms);
	r = mailimap_acl_myrights(s->imap, name, &data);
	log_cmd(s, "MYRIGHTS", name, r, t0);
	if (r == MAILIMAP_NO_ERROR) {
		op->rights = strdup(data->rights != NULL ? data->rights : "");
		op->result = op->rights != NULL ? IMAP_OK : IMAP_TEMPFAIL;
	}
	if (data != NULL)
		mailimap_acl_myrights_data_free(data);
	if (r != MAILIMAP_NO_ERROR) {
		enum run_result rr = run_failed(s, op, r, MAILIMAP_ERROR_EXTENSION,
						"MYRIGHTS", name);
		free(name);
		return rr;
	}
	free(name);
	return RUN_DONE;
}

static enum run_result run_status(struct session *s, struct op *op)
{
	struct mailimap_status_att_list *atts;
	struct mailimap_mailbox_data_status *data = NULL;
	static const int wanted[] = {
		MAILIMAP_STATUS_ATT_MESSAGES, MAILIMAP_STATUS_ATT_UNSEEN,
		MAILIMAP_STATUS_ATT_UIDNEXT, MAILIMAP_STATUS_ATT_UIDVALIDITY,
	};
	enum run_result rr = RUN_DONE;
	uint64_t t0;
	char *name;
	int r;

	if (!op_name(s, op, session_self(s), op->node, &name))
		return RUN_DONE;
	atts = mailimap_status_att_list_new_empty();
	for (size_t i = 0; atts != NULL && i < sizeof(wanted) / sizeof(wanted[0]); i++)
		mailimap_status_att_list_add(atts, wanted[i]);
	if (atts != NULL && s->condstore)
		mailimap_status_att_list_add(atts, MAILIMAP_STATUS_ATT_HIGHESTMODSEQ);
	if (atts == NULL) {
		free(name);
		op->result = IMAP_TEMPFAIL;
		fmt_to(op->error, sizeof(op->error), "out of memory");
		return RUN_DONE;
	}
	t0 = uv_hrtime();
	conn_set_deadline(s->conn, s->client->timeout_ms);
	r = mailimap_status(s->imap, name, atts, &data);
	log_cmd(s, "STATUS", name, r, t0);
	mailimap_status_att_list_free(atts);
	if (r == MAILIMAP_NO_ERROR && data != NULL) {
		for (clistiter *it = clist_begin(data->st_info_list); it != NULL;
		     it = clist_next(it)) {
			struct mailimap_status_info *info = clist_content(it);
			struct mailimap_extension_data *ext = info->st_ext_data;

			switch (info->st_att) {
			case MAILIMAP_STATUS_ATT_MESSAGES:
				op->st.messages = info->st_value;
				break;
			case MAILIMAP_STATUS_ATT_UNSEEN:
				op->st.unseen = info->st_value;
				break;
			case MAILIMAP_STATUS_ATT_UIDNEXT:
				op->st.uidnext = info->st_value;
				break;
			case MAILIMAP_STATUS_ATT_UIDVALIDITY:
				op->st.uidvalidity = info->st_value;
				break;
			default:
				/* HIGHESTMODSEQ is 64 bit: it comes as
				 * CONDSTORE extension data */
				if (ext != NULL &&
				    ext->ext_extension->ext_id == MAILIMAP_EXTENSION_CONDSTORE &&
				    ext->ext_type == MAILIMAP_CONDSTORE_TYPE_STATUS_INFO)
					op->st.highestmodseq = ((struct mailimap_condstore_status_info *)
								ext->ext_data)->cs_highestmodseq_value;
				break;
			}
		}
		op->result = IMAP_OK;
	} else if (r == MAILIMAP_NO_ERROR) {
		op->result = IMAP_TEMPFAIL;
		fmt_to(op->error, sizeof(op->error), "STATUS %s: no STATUS data", name);
	} else {
		rr = run_failed(s, op, r, MAILIMAP_ERROR_STATUS, "STATUS", name);
	}
	if (data != NULL)
		mailimap_mailbox_data_status_free(data);
	free(name);
	return rr;
}

static const char *const month_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static void format_internaldate(const struct mailimap_date_time *d, char *buf,
				size_t size)
{
	int zone = d->dt_zone;

	snprintf(buf, size, "%02d-%s-%04d %02d:%02d:%02d %c%04d", d->dt_day,
		 d->dt_month >= 1 && d->dt_month <= 12 ? month_names[d->dt_month - 1] : "Jan",
		 d->dt_year, d->dt_hour, d->dt_min, d->dt_sec, zone < 0 ? '-' : '+',
		 zone < 0 ? -zone : zone);
}

void imap_flag_append(char **flags, const struct mailimap_flag *f)
{
	const char *name = NULL;
	const char *cur = *flags != NULL ? *flags : "";
	char *joined;

	switch (f->fl_type) {
	case MAILIMAP_FLAG_ANSWERED: name = "\\Answered"; break;
	case MAILIMAP_FLAG_FLAGGED: name = "\\Flagged"; break;
	case MAILIMAP_FLAG_DELETED: name = "\\Deleted"; break;
	case MAILIMAP_FLAG_SEEN: name = "\\Seen"; break;
	case MAILIMAP_FLAG_DRAFT: name = "\\Draft"; break;
	case MAILIMAP_FLAG_KEYWORD: name = f->fl_data.fl_keyword; break;
	case MAILIMAP_FLAG_EXTENSION: name = f->fl_data.fl_extension; break;
	default: break;
	}
	if (name == NULL)
		return;
	if (asprintf(&joined, "%s%s%s", cur, *cur != '\0' ? " " : "", name) < 0)
		return;
	free(*flags);
	*flags = joined;
}

static void take_fetch_item(struct op *op, const struct mailimap_msg_att_item *item)
{
	if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC) {
		/* libetpan gives FLAGS () as a NULL list */
		clist *flags = item->att_data.att_dyn != NULL ?
			       item->att_data.att_dyn->att_list : NULL;

		for (clistiter *it = flags != NULL ? clist_begin(flags) : NULL; it != NULL;
		     it = clist_next(it)) {
			const struct mailimap_flag_fetch *ff = clist_content(it);

			if (ff->fl_type == MAILIMAP_FLAG_FETCH_OTHER && ff->fl_flag != NULL)
				imap_flag_append(&op->flags, ff->fl_flag);
		}
		return;
	}
	if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC)
		return;
	if (item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_INTERNALDATE) {
		format_internaldate(item->att_data.att_static->att_data.att_internal_date,
				    op->internaldate, sizeof(op->internaldate));
	} else if (item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_BODY_SECTION &&
		   op->body == NULL) {
		const struct mailimap_msg_att_body_section *sec =
			item->att_data.att_static->att_data.att_body_section;

		op->body = malloc(sec->sec_length + 1);
		if (op->body != NULL) {
			memcpy(op->body, sec->sec_body_part, sec->sec_length);
			op->body_len = sec->sec_length;
		}
	}
}

static struct mailimap_fetch_type *fetch_type(enum imap_fetch_part part)
{
	struct mailimap_fetch_type *ft = mailimap_fetch_type_new_fetch_att_list_empty();
	struct mailimap_section *sec = part == IMAP_FETCH_HEADERS ?
		mailimap_section_new_header() : mailimap_section_new(NULL);

	if (ft == NULL || sec == NULL ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid()) != 0 ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_flags()) != 0 ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_internaldate()) != 0 ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft,
			mailimap_fetch_att_new_body_peek_section(sec)) != 0) {
		if (ft != NULL)
			mailimap_fetch_type_free(ft);
		return NULL;
	}
	return ft;
}

static enum run_result run_fetch(struct session *s, struct op *op)
{
	struct mailimap_fetch_type *ft;
	struct mailimap_set *set;
	clist *result = NULL;
	enum run_result rr = RUN_DONE;
	uint64_t t0;
	char *name, what[32];
	int r;

	if (!op_name(s, op, session_self(s), op->node, &name))
		return RUN_DONE;
	t0 = uv_hrtime();
	conn_set_deadline(s->conn, s->client->timeout_ms);
	r = mailimap_examine(s->imap, name);
	log_cmd(s, "EXAMINE", name, r, t0);
	if (r != MAILIMAP_NO_ERROR) {
		rr = run_failed(s, op, r, MAILIMAP_ERROR_EXAMINE, "EXAMINE", name);
		free(name);
		return rr;
	}
	if (op->uidvalidity != 0 && s->imap->imap_selection_info != NULL &&
	    s->imap->imap_selection_info->sel_uidvalidity != op->uidvalidity) {
		op->result = IMAP_NO;
		fmt_to(op->error, sizeof(op->error), "%s: UIDVALIDITY is %u, not %u", name,
		       s->imap->imap_selection_info->sel_uidvalidity, op->uidvalidity);
		free(name);
		return RUN_DONE;
	}
	ft = fetch_type(op->part);
	set = mailimap_set_new_single(op->uid);
	if (ft == NULL || set == NULL) {
		if (ft != NULL)
			mailimap_fetch_type_free(ft);
		if (set != NULL)
			mailimap_set_free(set);
		free(name);
		op->result = IMAP_TEMPFAIL;
		fmt_to(op->error, sizeof(op->error), "out of memory");
		return RUN_DONE;
	}
	snprintf(what, sizeof(what), "%u", op->uid);
	t0 = uv_hrtime();
	/* a big message takes longer than one network step should */
	conn_set_deadline(s->conn, s->client->timeout_ms * 10);
	r = mailimap_uid_fetch(s->imap, set, ft, &result);
	log_cmd(s, "UID FETCH", what, r, t0);
	/* on a NO libetpan has freed the list already, but leaves the
	 * pointer: freeing it again crashed (ASan) */
	if (r != MAILIMAP_NO_ERROR)
		result = NULL;
	mailimap_fetch_type_free(ft);
	mailimap_set_free(set);
	if (r != MAILIMAP_NO_ERROR) {
		rr = run_failed(s, op, r, MAILIMAP_ERROR_UID_FETCH, "UID FETCH", what);
	} else {
		for (clistiter *it = clist_begin(result); it != NULL; it = clist_next(it)) {
			const struct mailimap_msg_att *att = clist_content(it);

			for (clistiter *jt = clist_begin(att->att_list); jt != NULL;
			     jt = clist_next(jt))
				take_fetch_item(op, clist_content(jt));
		}
		if (op->body != NULL) {
			op->result = IMAP_OK;
		} else {
			op->result = IMAP_NO;
			fmt_to(op->error, sizeof(op->error), "%s UID %u: no such message "
			       "(expunged)", name, op->uid);
		}
	}
	if (result != NULL)
		mailimap_fetch_list_free(result);
	free(name);
	return rr;
}

bool imap_mailbox_selectable(const struct mailimap_mailbox_list *mb)
{
	const struct mailimap_mbx_list_flags *f = mb->mb_flag;

	if (f == NULL)
		return true;
	if (f->mbf_type == MAILIMAP_MBX_LIST_FLAGS_SFLAG &&
	    f->mbf_sflag == MAILIMAP_MBX_LIST_SFLAG_NOSELECT)
		return false;
	for (clistiter *it = clist_begin(f->mbf_oflags); it != NULL; it = clist_next(it)) {
		const struct mailimap_mbx_list_oflag *of = clist_content(it);

		if (of->of_type == MAILIMAP_MBX_LIST_OFLAG_FLAG_EXT && of->of_flag_ext != NULL &&
		    (strcasecmp(of->of_flag_ext, "NonExistent") == 0 ||
		     strcasecmp(of->of_flag_ext, "Noselect") == 0))
			return false;
	}
	return true;
}

static int nodes_add(struct op *op, char *node)
{
	char **grown = realloc(op->nodes, (op->n_nodes + 1) * sizeof(*grown));

	if (grown == NULL) {
		free(node);
		return -1;
	}
	op->nodes = grown;
	op->nodes[op->n_nodes++] = node;
	return 0;
}

/* LIST "" pattern; the selectable mailboxes of op->account become nodes.
 * With tops != NULL the raw names are collected instead (shared roots). */
static enum run_result list_pattern(struct session *s, struct op *op,
				    const char *pattern, clist **raw_r)
{
	clist *list = NULL;
	uint64_t t0 = uv_hrtime();
	int r;

	conn_set_deadline(s->conn, s->client->timeout_ms);
	r = mailimap_list(s->imap, "", pattern, &list);
	log_cmd(s, "LIST", pattern, r, t0);
	if (r != MAILIMAP_NO_ERROR) {
		if (list != NULL)
			mailimap_list_result_free(list);
		return run_failed(s, op, r, MAILIMAP_ERROR_LIST, "LIST", pattern);
	}
	op->result = IMAP_OK;
	if (raw_r != NULL) {
		*raw_r = list;
		return RUN_DONE;
	}
	for (clistiter *it = clist_begin(list); it != NULL; it = clist_next(it)) {
		struct mailimap_mailbox_list *mb = clist_content(it);
		const char *err;
		char *node;

		if (!imap_mailbox_selectable(mb))
			continue;
		r = imap_name_to_node(&s->ns, session_self(s), op->account, mb->mb_name,
				      mb->mb_delimiter, &node, &err);
		if (r < 0)
			log_warn("imap: skipping mailbox %s: %s", mb->mb_name, err);
		if (r == 0 && nodes_add(op, node) < 0) {
			op->result = IMAP_TEMPFAIL;
			fmt_to(op->error, sizeof(op->error), "out of memory");
			break;
		}
	}
	mailimap_list_result_free(list);
	return RUN_DONE;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum run_result run_list(struct session *s, struct op *op)
{
	const struct imap_ns *shared = &s->ns.shared;
	enum run_result rr;
	char *base, *pattern;
	size_t n = 0;

	if (op->account[0] != '\0' && strcmp(session_self(s), op->account) == 0) {
		/* as the owner: everything it sees; imap_name_to_node keeps
		 * its personal mailboxes */
		rr = list_pattern(s, op, "*", NULL);
	} else if (op->account[0] != '\0') {
		/* the account's INBOX and everything below it: two patterns,
		 * as "user/alice*" would also match user/alicia */
		if (!op_name(s, op, session_self(s), "INBOX", &base))
			return RUN_DONE;
		rr = list_pattern(s, op, base, NULL);
		if (rr == RUN_DONE && op->result == IMAP_OK && s->ns.other.sep != '\0' &&
		    asprintf(&pattern, "%s%c*", base, s->ns.other.sep) >= 0) {
			rr = list_pattern(s, op, pattern, NULL);
			free(pattern);
		}
		free(base);
	} else if (shared->prefix == NULL) {
		op->result = IMAP_OK;
		rr = RUN_DONE;
	} else if (shared->prefix[0] != '\0') {
		if (asprintf(&pattern, "%s*", shared->prefix) < 0)
			pattern = NULL;
		rr = pattern != NULL ? list_pattern(s, op, pattern, NULL) : RUN_DONE;
		free(pattern);
	} else {
		/* Cyrus's default: shared mailboxes are top-level names beside
		 * "user" and INBOX. "*" would list every mailbox on the server:
		 * list the roots, then below each shared one. */
		clist *tops = NULL;

		rr = list_pattern(s, op, "%", &tops);
		for (clistiter *it = tops != NULL ? clist_begin(tops) : NULL;
		     rr == RUN_DONE && op->result == IMAP_OK && it != NULL;
		     it = clist_next(it)) {
			struct mailimap_mailbox_list *mb = clist_content(it);
			const char *err;
			char *node;

			if (imap_name_to_node(&s->ns, session_self(s), "", mb->mb_name,
					      mb->mb_delimiter, &node, &err) != 0)
				continue;
			if (imap_mailbox_selectable(mb))
				nodes_add(op, node);
			else
				free(node);
			if (mb->mb_delimiter != '\0' &&
			    asprintf(&pattern, "%s%c*", mb->mb_name, mb->mb_delimiter) >= 0) {
				rr = list_pattern(s, op, pattern, NULL);
				free(pattern);
			}
		}
		if (tops != NULL)
			mailimap_list_result_free(tops);
	}
	if (op->result != IMAP_OK)
		return rr;
	/* sorted, without the duplicates overlapping patterns may bring */
	if (op->n_nodes > 1)
		qsort(op->nodes, op->n_nodes, sizeof(*op->nodes), cmp_str);
	for (size_t i = 0; i < op->n_nodes; i++) {
		if (n > 0 && strcmp(op->nodes[n - 1], op->nodes[i]) == 0)
			free(op->nodes[i]);
		else
			op->nodes[n++] = op->nodes[i];
	}
	op->n_nodes = n;
	return rr;
}

static enum run_result op_run(struct session *s, struct op *op)
{
	switch (op->kind) {
	case OP_MYRIGHTS:
		return run_myrights(s, op);
	case OP_STATUS:
		return run_status(s, op);
	case OP_LIST:
		return run_list(s, op);
	case OP_FETCH:
		return run_fetch(s, op);
	}
	return RUN_DONE;
}

static void op_reset_results(struct op *op)
{
	free(op->rights);
	op->rights = NULL;
	for (size_t i = 0; i < op->n_nodes; i++)
		free(op->nodes[i]);
	free(op->nodes);
	op->nodes = NULL;
	op->n_nodes = 0;
	memset(&op->st, 0, sizeof(op->st));
	free(op->body);
	op->body = NULL;
	op->body_len = 0;
	free(op->flags);
	op->flags = NULL;
	op->internaldate[0] = '\0';
	op->error[0] = '\0';
}

static void op_work(uv_work_t *work)
{
	struct op *op = container_of(work, struct op, work);
	struct session *s = op->session;

	for (int attempt = 0;; attempt++) {
		bool reused = s->imap != NULL;

		if (!reused && session_connect(s, op) < 0) {
			op->result = IMAP_TEMPFAIL;
			return;
		}
		op->result = IMAP_TEMPFAIL;
		if (op_run(s, op) == RUN_DONE)
			return;
		session_disconnect(s);
		/* a pooled session may have died while idle (server restart,
		 * idle timeout): the commands are read-only, so try once more
		 * on a fresh connection */
		if (!reused || attempt > 0) {
			/* on a connection just made, so the server was there:
			 * as an identity, it is that identity's session that broke */
			op->fail = s->key[0] != '\0' ? FAIL_AUTHZ : FAIL_CONNECT;
			return;
		}
		log_debug("imap: pooled session failed (%s), reconnecting", op->error);
		op_reset_results(op);
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
	op_reset_results(op);
	free(op->key);
	free(op->account);
	free(op->node);
	free(op);
}

/* Runs the caller's callback and frees the op. */
static void op_complete(struct op *op)
{
	op->client->commands++;
	if (op->result == IMAP_TEMPFAIL)
		op->client->errors++;
	switch (op->kind) {
	case OP_MYRIGHTS:
		op->cb.myrights(op->ctx, op->result,
				op->result == IMAP_OK ? op->rights : NULL);
		break;
	case OP_LIST:
		if (op->result == IMAP_OK)
			op->cb.list(op->ctx, op->result, op->nodes, op->n_nodes);
		else
			op->cb.list(op->ctx, op->result, NULL, 0);
		break;
	case OP_STATUS:
		op->cb.status(op->ctx, op->result, op->result == IMAP_OK ? &op->st : NULL);
		break;
	case OP_FETCH: {
		struct imap_message msg = {
			op->body, op->body_len, op->flags != NULL ? op->flags : "",
			op->internaldate,
		};

		op->cb.fetch(op->ctx, op->result, op->result == IMAP_OK ? &msg : NULL);
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
	op->result = IMAP_TEMPFAIL;
	fmt_to(op->error, sizeof(op->error), "%s", why);
	queue_push(&c->done, op);
	if (!uv_is_active((uv_handle_t *)&c->done_timer))
		uv_timer_start(&c->done_timer, on_done_timer, 0, 0);
}

static struct session *session_find(struct imap_client *c, const char *key)
{
	for (struct session *s = c->sessions; s != NULL; s = s->next) {
		if (strcmp(s->key, key) == 0)
			return s;
	}
	return NULL;
}

static void pool_unlink(struct imap_client *c, struct session *s)
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

static void pool_push_front(struct imap_client *c, struct session *s)
{
	s->prev = NULL;
	s->next = c->sessions;
	if (c->sessions != NULL)
		c->sessions->prev = s;
	else
		c->sessions_tail = s;
	c->sessions = s;
}

static void pool_push_back(struct imap_client *c, struct session *s)
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
static struct session *session_new(struct imap_client *c, const char *key,
				   bool background)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->key = strdup(key)) == NULL) {
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
	struct session *session;  /* detached from the pool */
};

static void retire_work(uv_work_t *work)
{
	struct retire *r = container_of(work, struct retire, work);
	struct session *s = r->session;
	uint64_t t0 = uv_hrtime();
	int rc;

	conn_set_deadline(s->conn, s->client->timeout_ms < LOGOUT_TIMEOUT_MS ?
			  s->client->timeout_ms : LOGOUT_TIMEOUT_MS);
	rc = mailimap_logout(s->imap);
	log_cmd(s, "LOGOUT", NULL, rc, t0);
	session_disconnect(s);
}

static void session_free(struct session *s)
{
	imap_namespaces_clear(&s->ns);
	free(s->key);
	free(s);
}

static void close_maybe_finish(struct imap_client *c);

static void retire_after_work(uv_work_t *work, int status)
{
	struct retire *r = container_of(work, struct retire, work);
	struct imap_client *c = r->client;

	(void)status;
	session_free(r->session);
	free(r);
	c->works--;
	close_maybe_finish(c);
}

/* Takes an idle session out of the pool; LOGOUT happens in the threadpool. */
static void session_retire(struct session *s)
{
	struct imap_client *c = s->client;
	struct retire *r;

	pool_unlink(c, s);
	c->n_sessions--;
	if (s->conn != NULL)
		s->conn->aborting = NULL; /* LOGOUT even while closing */
	if (s->imap != NULL && (r = calloc(1, sizeof(*r))) != NULL) {
		r->client = c;
		r->session = s;
		c->works++;
		if (uv_queue_work(c->loop, &r->work, retire_work, retire_after_work) == 0)
			return;
		c->works--;
		free(r);
	}
	if (s->imap != NULL) {
		/* no thread for a polite LOGOUT: just drop the connection */
		s->conn->deadline = 0;
		session_disconnect(s);
	}
	session_free(s);
}

static struct session *pool_lru_idle(struct imap_client *c)
{
	for (struct session *s = c->sessions_tail; s != NULL; s = s->prev) {
		if (!s->busy && s->queue.head == NULL)
			return s;
	}
	return NULL;
}

/* Frees a pool slot if the pool is full, closing the least recently used
 * idle session; false if every session is busy. */
static bool pool_make_room(struct imap_client *c)
{
	struct session *victim;

	if (c->n_sessions < c->max_sessions)
		return true;
	victim = pool_lru_idle(c);
	if (victim == NULL)
		return false;
	log_debug("imap: pool full (%u sessions), closing the one %s%s", c->n_sessions,
		  victim->key[0] != '\0' ? "as " : "of the admin", victim->key);
	session_retire(victim);
	return true;
}

static void op_after_work(uv_work_t *work, int status);

/* Starts the session's next op, or fails it fast during backoff. */
static void session_kick(struct session *s)
{
	struct imap_client *c = s->client;
	struct op *op;
	uint64_t until;
	unsigned refusals;

	while (!s->busy && (op = queue_pop(&s->queue)) != NULL) {
		if (s->imap == NULL && uv_now(c->loop) < c->retry_at) {
			char why[sizeof(op->error)];

			fmt_to(why, sizeof(why), "backing off for %llu ms after %u failures: %s",
			       (unsigned long long)(c->retry_at - uv_now(c->loop)),
			       c->failures, c->conn_error);
			op_fail_later(c, op, why);
			continue;
		}
		if (s->imap == NULL && (until = imap_backoff_until(c->refused, s->key,
				uv_now(c->loop), &refusals)) != 0) {
			char why[sizeof(op->error)];

			fmt_to(why, sizeof(why), "backing off for %llu ms: sessions as %s "
			       "failed %u times in a row", (unsigned long long)
			       (until - uv_now(c->loop)), s->key, refusals);
			op_fail_later(c, op, why);
			continue;
		}
		op->session = s;
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
		struct session *s = session_find(c, op->key);

		if (s == NULL) {
			if (!pool_make_room(c))
				return;
			s = session_new(c, op->key, op->background);
		}
		queue_pop(&c->waiting);
		if (s == NULL) {
			op_fail_later(c, op, "out of memory");
			continue;
		}
		queue_insert(&s->queue, op);
		session_kick(s);
	}
}

static void dispatch(struct imap_client *c, struct op *op)
{
	struct session *s;

	if (c->closing) {
		op_fail_later(c, op, "IMAP client is closing");
		return;
	}
	s = session_find(c, op->key);
	if (s == NULL) {
		if (!pool_make_room(c)) {
			/* every session is busy: wait for one */
			queue_insert(&c->waiting, op);
			return;
		}
		s = session_new(c, op->key, op->background);
		if (s == NULL) {
			op_fail_later(c, op, "out of memory");
			return;
		}
	} else if (!op->background) {
		pool_unlink(c, s);
		pool_push_front(c, s);
	}
	queue_insert(&s->queue, op);
	session_kick(s);
}

static void backoff_failed(struct imap_client *c, struct session *s,
			   const struct op *op)
{
	unsigned delay, n;
	uint64_t retry_at;

	uv_update_time(c->loop);
	if (op->fail == FAIL_AUTHZ) {
		n = imap_backoff_fail(c->refused, s->key, uv_now(c->loop), &retry_at);
		log_warn("imap: %s (failure %u in a row as %s, next try as %s in %llu ms)",
			 op->error, n, s->key, s->key,
			 (unsigned long long)(retry_at - uv_now(c->loop)));
		c->connect_failures++;
		return;
	}
	c->failures++;
	c->connect_failures++;
	memcpy(c->conn_error, op->error, sizeof(c->conn_error));
	delay = imap_backoff_delay(c->failures);
	c->retry_at = uv_now(c->loop) + delay;
	log_warn("imap: %s (failure %u in a row, next connection in %u ms)", op->error,
		 c->failures, delay);
}

static void op_after_work(uv_work_t *work, int status)
{
	struct op *op = container_of(work, struct op, work);
	struct imap_client *c = op->client;
	struct session *s = op->session;
	bool was_closing = c->closing;

	(void)status;
	c->works--;
	s->busy = false;
	op->session = NULL;
	if (op->fail != FAIL_NONE && !c->closing) {
		backoff_failed(c, s, op);
	} else if (s->imap != NULL) {
		c->failures = 0;
		c->retry_at = 0;
		imap_backoff_forget(c->refused, s->key);
	}
	if (op->result == IMAP_TEMPFAIL && op->error[0] != '\0') {
		memcpy(c->last_error, op->error, sizeof(c->last_error));
		if (op->fail == FAIL_NONE)
			log_warn("imap: %s", op->error);
	} else if (op->result == IMAP_NO) {
		log_debug("imap: %s", op->error);
	}
	if (c->closing) {
		session_retire(s);
	} else {
		session_kick(s);
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
		memcpy(c->last_error, op->error, sizeof(c->last_error));
		op_complete(op);
	}
	if (c->closing)
		close_maybe_finish(c);
	else
		serve_waiting(c);
}

/* ---- public API -------------------------------------------------------- */

static void on_client_closed(uv_handle_t *h)
{
	struct imap_client *c = h->data;
	void (*done)(void *) = c->close_done;
	void *ctx = c->close_ctx;

	while (c->sessions != NULL) {
		struct session *s = c->sessions;

		pool_unlink(c, s);
		session_disconnect(s);
		session_free(s);
	}
	imap_backoff_free(&c->refused);
	SSL_CTX_free(c->ssl_ctx);
	uv_mutex_destroy(&c->fd_lock);
	free(c->host);
	free(c->ca_file);
	free(c->admin_user);
	if (c->password != NULL)
		OPENSSL_cleanse(c->password, strlen(c->password));
	free(c->password);
	free(c->mechanism);
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
	uv_once(&bio_once, bio_method_init);
	if (bio_method == NULL) {
		*error_r = "cannot set up the OpenSSL socket BIO";
		return -1;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	c->loop = loop;
	c->host = dup_or_null(s->host, &failed);
	c->ca_file = dup_or_null(s->ca_file, &failed);
	c->admin_user = dup_or_null(s->admin_user, &failed);
	c->password = dup_or_null(s->password, &failed);
	c->mechanism = dup_or_null(s->mechanism != NULL && s->mechanism[0] != '\0' ?
				   s->mechanism : "PLAIN", &failed);
	c->tls = s->tls;
	c->port = s->port != 0 ? s->port : s->tls == IMAP_TLS_IMAPS ? 993 : 143;
	c->verify = s->verify;
	c->other_inbox_named = s->other_inbox_named;
	c->list_as_owner = s->list_as_owner;
	c->timeout_ms = s->timeout_ms != 0 ? s->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->max_sessions = s->max_sessions != 0 ? s->max_sessions : DEFAULT_MAX_SESSIONS;
	atomic_init(&c->aborting, false);
	c->refused = imap_backoff_new(REFUSED_MAX);
	if (failed || c->refused == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	if (c->tls != IMAP_TLS_NONE) {
		c->ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (c->ssl_ctx == NULL ||
		    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION) != 1) {
			*error_r = "cannot create the TLS context";
			goto fail;
		}
		if (c->ca_file != NULL) {
			if (SSL_CTX_load_verify_locations(c->ssl_ctx, c->ca_file, NULL) != 1) {
				char eb[200];

				ERR_error_string_n(ERR_get_error(), eb, sizeof(eb));
				log_error("imap: cannot load CA file %s: %s", c->ca_file, eb);
				ERR_clear_error();
				*error_r = "cannot load the IMAP CA file";
				goto fail;
			}
		} else if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
			*error_r = "cannot load OpenSSL's default CA paths";
			goto fail;
		}
		SSL_CTX_set_verify(c->ssl_ctx, c->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
				   NULL);
		if (!c->verify)
			log_warn("imap: TLS certificate verification is disabled for %s",
				 c->host);
	}
	if (uv_mutex_init(&c->fd_lock) != 0) {
		*error_r = "cannot create a mutex";
		goto fail;
	}
	uv_timer_init(loop, &c->done_timer);
	c->done_timer.data = c;
	*client_r = c;
	return 0;
fail:
	imap_backoff_free(&c->refused);
	SSL_CTX_free(c->ssl_ctx);
	free(c->host);
	free(c->ca_file);
	free(c->admin_user);
	free(c->password);
	free(c->mechanism);
	free(c);
	return -1;
}

void imap_client_close(struct imap_client **client, void (*done)(void *),
		       void *context)
{
	struct imap_client *c = *client;
	struct session *s, *next;
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
	atomic_store(&c->aborting, true);
	while ((op = queue_pop(&c->waiting)) != NULL)
		op_fail_later(c, op, "IMAP client is closing");
	for (s = c->sessions; s != NULL; s = s->next) {
		while ((op = queue_pop(&s->queue)) != NULL)
			op_fail_later(c, op, "IMAP client is closing");
	}
	/* cut commands blocked in recv()/send() short */
	uv_mutex_lock(&c->fd_lock);
	for (s = c->sessions; s != NULL; s = s->next) {
		if (s->busy && s->conn != NULL && s->conn->fd >= 0)
			shutdown(s->conn->fd, SHUT_RDWR);
	}
	uv_mutex_unlock(&c->fd_lock);
	/* idle sessions log out (bounded by LOGOUT_TIMEOUT_MS) */
	for (s = c->sessions; s != NULL; s = next) {
		next = s->next;
		if (!s->busy)
			session_retire(s);
	}
	if (!uv_is_active((uv_handle_t *)&c->done_timer))
		uv_timer_start(&c->done_timer, on_done_timer, 0, 0);
}

static struct op *op_new(struct imap_client *c, enum op_kind kind, const char *key,
			 const char *account, const char *node, void *ctx)
{
	struct op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->kind = kind;
	op->client = c;
	op->ctx = ctx;
	op->key = strdup(key);
	op->account = strdup(account);
	op->node = strdup(node != NULL ? node : "");
	if (op->key == NULL || op->account == NULL || op->node == NULL) {
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
	const char *key = c != NULL && strcmp(identity, c->admin_user) == 0 ? "" : identity;
	struct op *op = c != NULL ? op_new(c, OP_MYRIGHTS, key, account, node, ctx) : NULL;

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
			  strcmp(account, c->admin_user) != 0 ? account : "";
	struct op *op = c != NULL ? op_new(c, OP_LIST, key, account, NULL, ctx) : NULL;

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
	const char *key = c != NULL && strcmp(account, c->admin_user) != 0 ? account : "";
	struct op *op = c != NULL ? op_new(c, OP_FETCH, key, account, node, ctx) : NULL;

	if (op == NULL) {
		cb(ctx, IMAP_TEMPFAIL, NULL);
		return;
	}
	op->uid = uid;
	op->uidvalidity = uidvalidity;
	op->part = part;
	op->cb.fetch = cb;
	dispatch(c, op);
}

void imap_client_status(struct imap_client *c, const char *account,
			const char *node,
			void (*cb)(void *ctx, enum imap_result r, const struct imap_status *st),
			void *ctx)
{
	/* as the owner: see imap_client.h on Cyrus and STATUS */
	const char *key = c != NULL && strcmp(account, c->admin_user) != 0 ? account : "";
	struct op *op = c != NULL ? op_new(c, OP_STATUS, key, account, node, ctx) : NULL;

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
	for (const struct session *s = c->sessions; s != NULL; s = s->next) {
		stats->sessions++;
		/* a busy session's imap is its worker's to read */
		if (s->busy)
			stats->busy++;
		else if (s->imap != NULL)
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
 * connection, TLS and SASL code. */

struct imap_session {
	struct session s;
};

int imap_session_open(struct imap_client *c, const char *identity,
		      const atomic_bool *abort, struct imap_session **session_r,
		      char *error, size_t errlen)
{
	/* the admin acting as itself needs no authorization identity */
	const char *key = strcmp(identity, c->admin_user) == 0 ? "" : identity;
	struct imap_session *is = calloc(1, sizeof(*is));
	struct op *op = calloc(1, sizeof(*op));
	int ret = -1;

	if (is == NULL || op == NULL || (is->s.key = strdup(key)) == NULL) {
		fmt_to(error, errlen, "out of memory");
		goto out;
	}
	is->s.client = c;
	is->s.aborting = abort;
	op->client = c;
	op->session = &is->s;
	if (session_connect(&is->s, op) < 0) {
		fmt_to(error, errlen, "%s", op->error);
		goto out;
	}
	*session_r = is;
	is = NULL;
	ret = 0;
out:
	if (is != NULL) {
		free(is->s.key);
		free(is);
	}
	free(op);
	return ret;
}

mailimap *imap_session_mailimap(struct imap_session *is)
{
	return is->s.imap;
}

const struct imap_namespaces *imap_session_namespaces(const struct imap_session *is)
{
	return &is->s.ns;
}

void imap_session_deadline(struct imap_session *is, unsigned timeout_ms)
{
	if (is->s.conn != NULL)
		conn_set_deadline(is->s.conn, timeout_ms != 0 ? timeout_ms
				  : is->s.client->timeout_ms);
}

const char *imap_session_error(const struct imap_session *is)
{
	if (is->s.conn != NULL && is->s.conn->error[0] != '\0')
		return is->s.conn->error;
	if (is->s.imap != NULL && is->s.imap->imap_response != NULL &&
	    is->s.imap->imap_response[0] != '\0')
		return is->s.imap->imap_response;
	return "protocol error";
}

int imap_session_wait(struct imap_session *is, unsigned timeout_ms)
{
	struct conn *c = is->s.conn;
	uint64_t deadline = now_ms() + timeout_ms;

	if (c == NULL || c->fd < 0 || is->s.imap == NULL)
		return -1;
	/* already read by libetpan, or decrypted by OpenSSL: poll() would not
	 * see it */
	if (is->s.imap->imap_stream != NULL &&
	    is->s.imap->imap_stream->read_buffer_len > 0)
		return 1;
	if (c->ssl != NULL && SSL_pending(c->ssl) > 0)
		return 1;
	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		uint64_t now = now_ms();
		int r;

		if (c->aborting != NULL && atomic_load(c->aborting))
			return -1;
		if (now >= deadline)
			return 0;
		/* slices, so that the stop flag is seen soon */
		r = poll(&pfd, 1, deadline - now < 200 ? (int)(deadline - now) : 200);
		if (r < 0 && errno != EINTR)
			return -1;
		if (r > 0)
			return (pfd.revents & (POLLERR | POLLNVAL)) != 0 ? -1 : 1;
	}
}

void imap_session_interrupt(struct imap_session *is)
{
	struct imap_client *c = is->s.client;

	uv_mutex_lock(&c->fd_lock);
	if (is->s.conn != NULL && is->s.conn->fd >= 0)
		shutdown(is->s.conn->fd, SHUT_RDWR);
	uv_mutex_unlock(&c->fd_lock);
}

void imap_session_close(struct imap_session **session)
{
	struct imap_session *is = *session;

	if (is == NULL)
		return;
	*session = NULL;
	if (is->s.imap != NULL && is->s.conn != NULL && !is->s.conn->broken &&
	    (is->s.aborting == NULL || !atomic_load(is->s.aborting))) {
		uint64_t t0 = uv_hrtime();
		int rc;

		conn_set_deadline(is->s.conn, LOGOUT_TIMEOUT_MS);
		rc = mailimap_logout(is->s.imap);
		log_cmd(&is->s, "LOGOUT", NULL, rc, t0);
	}
	session_disconnect(&is->s);
	session_free(&is->s);
}
