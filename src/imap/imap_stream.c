#include "imap/imap_stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "imap/imap_error.h"
#include "base/log.h"

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *errno_str(int err, char *buf, size_t len)
{
	/* GNU strerror_r: thread safe, may return a static string */
	return strerror_r(err, buf, len);
}

void imap_stream_set_deadline(struct imap_stream *c, unsigned timeout_ms)
{
	c->deadline = now_ms() + timeout_ms;
	c->timed_out = false;
	c->error[0] = '\0';
}

/* Bounds the next blocking socket call by the time left until the
 * deadline: SO_RCVTIMEO/SO_SNDTIMEO make recv/send fail with EAGAIN. */
static int stream_arm(struct imap_stream *c)
{
	uint64_t now = now_ms(), left;
	struct timeval tv;
	char eb[128];

	if (c->aborting != NULL && atomic_load(c->aborting)) {
		imap_error_set(c->error, sizeof(c->error), "client is closing");
		return -1;
	}
	if (now >= c->deadline) {
		c->timed_out = true;
		imap_error_set(c->error, sizeof(c->error), "timed out");
		return -1;
	}
	left = c->deadline - now;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		imap_error_set(c->error, sizeof(c->error), "setsockopt: %s",
			 errno_str(errno, eb, sizeof(eb)));
		return -1;
	}
	return 0;
}

/* Maps a recv/send result; records why it failed. */
static ssize_t stream_io_result(struct imap_stream *c, ssize_t n, const char *what)
{
	char eb[128];

	if (n > 0)
		return n;
	c->broken = true;
	if (n == 0)
		imap_error_set(c->error, sizeof(c->error), "connection closed by the server");
	else if (errno == EAGAIN || errno == EWOULDBLOCK) {
		c->timed_out = true;
		imap_error_set(c->error, sizeof(c->error), "%s timed out", what);
	} else
		imap_error_set(c->error, sizeof(c->error), "%s: %s", what,
			 errno_str(errno, eb, sizeof(eb)));
	return n == 0 ? 0 : -1;
}

static ssize_t sock_recv(struct imap_stream *c, void *buf, size_t count)
{
	ssize_t n;

	if (stream_arm(c) < 0)
		return -1;
	/* ack at once: Cyrus writes TLS session tickets and its greeting
	 * separately and its Nagle would hold the greeting for our delayed
	 * ACK (40 ms); Linux leaves quick-ack mode by itself, so re-arm */
	setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &(int){ 1 }, sizeof(int));
	do
		n = recv(c->fd, buf, count, 0);
	while (n < 0 && errno == EINTR);
	return stream_io_result(c, n, "read");
}

static ssize_t sock_send(struct imap_stream *c, const void *buf, size_t count)
{
	ssize_t n;

	if (stream_arm(c) < 0)
		return -1;
	/* MSG_NOSIGNAL: a server that went away must not SIGPIPE the daemon */
	do
		n = send(c->fd, buf, count, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return stream_io_result(c, n, "write");
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
static void stream_tls_error(struct imap_stream *c, int ret, const char *what)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long ossl = ERR_get_error();
	char eb[200];

	c->broken = true;
	if (c->error[0] != '\0')
		return;
	if (e == SSL_ERROR_ZERO_RETURN) {
		imap_error_set(c->error, sizeof(c->error), "connection closed by the server");
	} else if (ossl != 0) {
		ERR_error_string_n(ossl, eb, sizeof(eb));
		imap_error_set(c->error, sizeof(c->error), "TLS %s failed: %s", what, eb);
	} else {
		imap_error_set(c->error, sizeof(c->error), "TLS %s failed (error %d)", what, e);
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
	struct imap_stream *c = low->data;
	int n;

	ERR_clear_error();
	n = SSL_read(c->ssl, buf, count > INT_MAX ? INT_MAX : (int)count);
	if (n > 0)
		return n;
	stream_tls_error(c, n, "read");
	return -1;
}

static ssize_t tls_low_write(mailstream_low *low, const void *buf, size_t count)
{
	struct imap_stream *c = low->data;
	int n;

	ERR_clear_error();
	n = SSL_write(c->ssl, buf, count > INT_MAX ? INT_MAX : (int)count);
	if (n > 0)
		return n;
	stream_tls_error(c, n, "write");
	return -1;
}

void imap_stream_close(struct imap_stream *c)
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
	imap_stream_close(low->data);
	return 0;
}

static int low_get_fd(mailstream_low *low)
{
	return ((struct imap_stream *)low->data)->fd;
}

/* The stream outlives its mailstream_low: STARTTLS swaps lows over it. */
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

int imap_stream_connect(struct imap_stream *c, const char *host, unsigned short port_no,
			char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	char port[8], eb[128];
	int r, last_err = 0;
	bool timed_out = false;

	imap_error_set(port, sizeof(port), "%u", port_no);
	/* getaddrinfo cannot be bounded; use an address or a local resolver */
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		imap_error_set(err, errlen, "cannot resolve %s: %s", host, gai_strerror(r));
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
		 * stream_arm() bounds each one */
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
		imap_error_set(err, errlen, "connecting to %s port %u timed out", host, port_no);
	else
		imap_error_set(err, errlen, "cannot connect to %s port %u: %s", host,
			 port_no, errno_str(last_err, eb, sizeof(eb)));
	return -1;
}

int imap_stream_tls(struct imap_stream *c, SSL_CTX *ctx, const char *host,
		    bool verify, bool ca_set, char *err, size_t errlen)
{
	struct in6_addr a6;
	struct in_addr a4;
	bool is_ip = inet_pton(AF_INET, host, &a4) == 1 ||
		     inet_pton(AF_INET6, host, &a6) == 1;
	BIO *bio;
	long vr;
	int r;

	c->ssl = SSL_new(ctx);
	bio = c->ssl != NULL ? BIO_new(bio_method) : NULL;
	if (bio == NULL) {
		imap_error_set(err, errlen, "out of memory for TLS");
		return -1;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, host);
	if (verify &&
	    (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host)
		   : SSL_set1_host(c->ssl, host)) != 1) {
		imap_error_set(err, errlen, "cannot set TLS peer name %s", host);
		return -1;
	}
	ERR_clear_error();
	r = SSL_connect(c->ssl);
	if (r == 1)
		return 0;
	vr = SSL_get_verify_result(c->ssl);
	if (verify && vr != X509_V_OK) {
		imap_error_set(err, errlen,
			 "TLS certificate verification failed for %s: %s%s", host,
			 X509_verify_cert_error_string(vr),
			 !ca_set ? " (no ca_file set: system trust store used)" : "");
		c->broken = true;
		ERR_clear_error();
		return -1;
	}
	stream_tls_error(c, r, "handshake");
	imap_error_set(err, errlen, "TLS handshake with %s failed: %s", host, c->error);
	return -1;
}

int imap_stream_init(const char **error_r)
{
	uv_once(&bio_once, bio_method_init);
	if (bio_method == NULL) {
		*error_r = "cannot set up the OpenSSL socket BIO";
		return -1;
	}
	return 0;
}

int imap_stream_tls_context(const char *ca_file, bool verify, SSL_CTX **ctx_r,
			    const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	*ctx_r = NULL;
	if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		SSL_CTX_free(ctx);
		*error_r = "cannot create the TLS context";
		return -1;
	}
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			char eb[200];

			ERR_error_string_n(ERR_get_error(), eb, sizeof(eb));
			log_error("imap: cannot load CA file %s: %s", ca_file, eb);
			ERR_clear_error();
			SSL_CTX_free(ctx);
			*error_r = "cannot load the IMAP CA file";
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		SSL_CTX_free(ctx);
		*error_r = "cannot load OpenSSL's default CA paths";
		return -1;
	}
	SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	*ctx_r = ctx;
	return 0;
}

struct imap_stream *imap_stream_new(uv_mutex_t *fd_lock, const atomic_bool *aborting)
{
	struct imap_stream *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->fd = -1;
	s->fd_lock = fd_lock;
	s->aborting = aborting;
	return s;
}

mailstream_low *imap_stream_low(struct imap_stream *s)
{
	return mailstream_low_new(s, s->ssl != NULL ? &tls_driver : &plain_driver);
}

int imap_stream_wait(struct imap_stream *s, unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;

	if (s->fd < 0)
		return -1;
	/* decrypted by OpenSSL already: poll() would not see it */
	if (s->ssl != NULL && SSL_pending(s->ssl) > 0)
		return 1;
	for (;;) {
		struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
		uint64_t now = now_ms();
		int r;

		if (s->aborting != NULL && atomic_load(s->aborting))
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

void imap_stream_shutdown(struct imap_stream *s)
{
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR);
}
