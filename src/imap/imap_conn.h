/* One IMAP connection and the identity it speaks as: connect, TLS
 * (IMAPS or STARTTLS), SASL AUTHENTICATE as admin_user with an
 * authorization identity (proxy authorization: Cyrus's `proxyservers` or
 * `admins`, Dovecot's master user), capabilities and namespaces. Blocking
 * (libetpan's mailimap API): run on a worker thread, the pool's
 * (imap_pool.c) or the caller's own for a dedicated session
 * (imap_session_open, imap_client.c); every session is one of these.
 *
 * Threads: a connection belongs to the one thread running its command; the
 * only cross-thread parts are the stream's fd (under peer->fd_lock) and
 * the stop flags. */
#ifndef MAILPUBSUB_IMAP_CONN_H
#define MAILPUBSUB_IMAP_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libetpan/libetpan.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "imap/imap_name.h"
#include "imap/imap_stream.h"
#include "imap/imap_types.h"

/* What every connection of one client shares: where, who, how. Owned by the
 * client (imap_client.c), fixed from imap_client_new on. */
struct imap_peer {
	char *host, *ca_file, *admin_user, *password, *mechanism;
	unsigned short port;
	enum imap_tls tls;
	bool verify;
	bool other_inbox_named;    /* see struct imap_namespaces */
	unsigned timeout_ms;       /* per network step */
	SSL_CTX *ssl_ctx;          /* NULL for IMAP_TLS_NONE */
	uv_mutex_t fd_lock;        /* guards every stream's fd against shutdown */
	atomic_bool aborting;      /* the client is closing: fail every step */
};

struct imap_conn {
	struct imap_peer *peer;
	char *key;                 /* authorization identity, "" = admin_user itself */
	mailimap *imap;            /* NULL: not connected */
	struct imap_stream *stream;
	struct imap_namespaces ns;
	bool condstore;
	/* a dedicated session's own stop flag (imap_session_open); NULL:
	 * the peer's */
	const atomic_bool *aborting;
};

/* Why a connection could not be had, for the client's backoff. */
enum imap_fail {
	IMAP_FAIL_NONE,
	IMAP_FAIL_CONNECT,   /* could not reach the server: every new connection backs off */
	IMAP_FAIL_AUTHZ,     /* the server refused, dropped or did not answer a
	                      * connection as this identity: this identity backs off, nobody else */
};

/* Not connected; copies key. Clear with imap_conn_clear(). */
int imap_conn_init(struct imap_conn *s, struct imap_peer *peer, const char *key,
		      const atomic_bool *aborting);
/* Disconnected ones only: frees what init and connect allocated. */
void imap_conn_clear(struct imap_conn *s);

/* Connects, greets, does TLS, authenticates and learns the namespaces.
 * On failure error gets why, *fail_r which backoff it calls for, and s is
 * left disconnected. */
int imap_conn_connect(struct imap_conn *s, enum imap_fail *fail_r, char *error,
			 size_t errlen);
/* Drops the connection at once (no LOGOUT). */
void imap_conn_disconnect(struct imap_conn *s);
/* LOGOUT, bounded by timeout_ms; the connection stays to be dropped. */
void imap_conn_logout(struct imap_conn *s, unsigned timeout_ms);

/* Whom the connection acts as: key, or admin_user for "". */
const char *imap_conn_self(const struct imap_conn *s);
/* Logs a command and its answer at debug level; start_ns from uv_hrtime(). */
void imap_conn_log(const struct imap_conn *s, const char *cmd, const char *arg,
		      int r, uint64_t start_ns);

#endif
