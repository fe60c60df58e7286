/* One IMAP connection's bytes: a blocking TCP socket, optionally with
 * OpenSSL on top, as a libetpan stream driver (mailstream_low). libetpan's
 * own GnuTLS code does not verify certificates, and its socket code knows
 * no deadlines; this one bounds every socket call by the stream's
 * deadline, never raises SIGPIPE, and records why I/O failed.
 *
 * Threads: a stream belongs to the thread running its session's command.
 * Others touch only fd, under *fd_lock (imap_stream_shutdown, to cut a
 * blocked command short), and read *aborting. */
#ifndef MAILPUBSUB_IMAP_STREAM_H
#define MAILPUBSUB_IMAP_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libetpan/libetpan.h>
#include <openssl/ssl.h>
#include <uv.h>

struct imap_stream {
	int fd;
	SSL *ssl;
	uint64_t deadline;       /* monotonic ms; I/O after it fails */
	bool timed_out;
	bool broken;             /* no TLS close_notify on a failed connection */
	char error[200];         /* last I/O failure, "" if none */
	uv_mutex_t *fd_lock;     /* the client's: guards fd against shutdown */
	/* a set flag fails every further step at once; NULL: never (a
	 * retired session's polite LOGOUT) */
	const atomic_bool *aborting;
};

/* Once per process (any thread): OpenSSL's socket BIO replaced by ours. */
int imap_stream_init(const char **error_r);

/* The TLS client context the client's streams share: TLS 1.2 at least,
 * trust anchors from ca_file (NULL: OpenSSL's default paths), peer
 * verification unless !verify. */
int imap_stream_tls_context(const char *ca_file, bool verify, SSL_CTX **ctx_r,
			    const char **error_r);

/* Not connected yet (fd -1); free with free() after imap_stream_close(). */
struct imap_stream *imap_stream_new(uv_mutex_t *fd_lock, const atomic_bool *aborting);

/* Bounds the next socket calls to timeout_ms from now and forgets the last
 * error. */
void imap_stream_set_deadline(struct imap_stream *s, unsigned timeout_ms);

/* TCP connection to host:port within the deadline (getaddrinfo itself
 * cannot be bounded). error gets why not. */
int imap_stream_connect(struct imap_stream *s, const char *host, unsigned short port,
			char *error, size_t errlen);

/* TLS handshake over the connected socket, checking host (a name or an
 * address) against the certificate when verify; ca_set only words the
 * error. */
int imap_stream_tls(struct imap_stream *s, SSL_CTX *ctx, const char *host,
		    bool verify, bool ca_set, char *error, size_t errlen);

/* A libetpan low driver over s: TLS once imap_stream_tls() succeeded,
 * plain before. The stream outlives its lows (STARTTLS swaps them). NULL
 * when out of memory. */
mailstream_low *imap_stream_low(struct imap_stream *s);

/* Waits up to timeout_ms for something to read: 1 readable (OpenSSL's
 * buffer counts), 0 timed out, -1 broken or aborting. */
int imap_stream_wait(struct imap_stream *s, unsigned timeout_ms);

/* Caller holds *fd_lock: makes a blocked recv()/send() fail now. */
void imap_stream_shutdown(struct imap_stream *s);

/* Frees the TLS state (one close_notify unless broken or late) and closes
 * the socket; the struct stays. Idempotent. */
void imap_stream_close(struct imap_stream *s);

#endif
