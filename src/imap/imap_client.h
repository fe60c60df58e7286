/* Asynchronous IMAP client for the libuv loop: asks the mail server what
 * it alone can answer (ACL rights, mailbox lists, counters).
 *
 * The protocol is libetpan's blocking mailimap API run in libuv's
 * threadpool (uv_queue_work); every callback runs on the loop thread.
 * Sessions are pooled by SASL authorization identity: the admin itself
 * (key "") and one per user we ask rights for (proxy authorization, Cyrus's
 * `proxyservers`/`admins`), at most max_sessions, least recently used ones
 * logged out beyond that. One command per session at a time; further calls
 * queue, background ones (imap_client_list_background) behind all others.
 * A broken session is dropped and the next call reconnects; after
 * consecutive failures to reach the server new connections back off
 * exponentially (100 ms up to 30 s) and calls needing one fail fast with
 * IMAP_TEMPFAIL meanwhile. A session refused, dropped or not answered as an
 * identity once the server greeted us backs off that identity only
 * (imap_backoff.h).
 * Every network step is bounded by timeout_ms.
 *
 * TLS is OpenSSL on our own libetpan stream driver (libetpan's GnuTLS code
 * does not verify certificates); verification is on unless verify is false.
 * Passwords are never logged; each command is logged at debug level with
 * its duration.
 *
 * Behind it, top down: the pool (imap_pool.h), the commands
 * (imap_command.h, also the libetpan helpers the IMAP client source
 * shares), one connection's login and state (imap_conn.h), its bytes
 * (imap_stream.h); and the names (imap_name.h) and per-identity backoff
 * (imap_backoff.h) they use. */
#ifndef MAILPUBSUB_IMAP_CLIENT_H
#define MAILPUBSUB_IMAP_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "imap/imap_types.h"

struct imap_settings {
	const char *host;          /* name or address; also checked against the certificate */
	unsigned short port;       /* 0: 143, or 993 for IMAP_TLS_IMAPS */
	enum imap_tls tls;
	const char *ca_file;       /* PEM trust anchors; NULL: OpenSSL's default paths */
	bool verify;               /* verify the server certificate and host name */
	const char *admin_user;    /* SASL authentication identity */
	const char *password;
	const char *mechanism;     /* SASL mechanism; NULL: "PLAIN". Any libsasl2 client
	                            * mechanism the server offers, e.g. "SCRAM-SHA-256" */
	unsigned timeout_ms;       /* per network step; 0: 10000 */
	unsigned max_sessions;     /* pooled sessions; 0: 8 */
	bool other_inbox_named;    /* see struct imap_namespaces */
	bool list_as_owner;        /* LIST an account as itself (Dovecot's master
	                            * user cannot log in as itself) */
};

struct imap_client;

/* Copies the settings (strings included). Fails for bad settings or an
 * unreadable ca_file; connects lazily on the first call. */
int imap_client_new(uv_loop_t *loop, const struct imap_settings *s,
		    struct imap_client **client_r, const char **error_r);

/* Clears *client at once. Calls still queued get IMAP_TEMPFAIL, commands
 * in progress are cut short (their sockets shut down), open sessions log
 * out; once no threadpool work is left everything is freed and done(context)
 * is called from the loop (done may be NULL). Every callback of an earlier
 * call runs before done. */
void imap_client_close(struct imap_client **client, void (*done)(void *),
		       void *context);

/* The rights (RFC 4314 letters, e.g. "lrswipkxtecdan") that identity holds
 * on mailbox (account, node), as the server evaluates them: MYRIGHTS in a
 * session authenticated as admin_user with authorization identity
 * `identity`, on the name under which identity sees the mailbox. rights is
 * valid during the callback only, NULL unless IMAP_OK. IMAP_NO also for a
 * node that cannot name a mailbox. */
void imap_client_myrights(struct imap_client *c, const char *identity,
			  const char *account, const char *node,
			  void (*cb)(void *ctx, enum imap_result r, const char *rights),
			  void *ctx);

/* Every mailbox of account (account "" lists the shared ones) as node
 * names ("INBOX", "INBOX/A", ...), sorted, as the admin sees them (Cyrus
 * shows admins every mailbox whatever its ACL). nodes is valid during the
 * callback only. */
void imap_client_list(struct imap_client *c, const char *account,
		      void (*cb)(void *ctx, enum imap_result r, char **nodes, size_t n),
		      void *ctx);
/* imap_client_list for work nobody waits on (the discovery sweep): it
 * queues behind every other call, on its session and for a pool slot, and
 * the session it opens is the first closed when the pool is full. Callers
 * bound how many they have outstanding, so that ACL questions always find
 * a free session and thread. */
void imap_client_list_background(struct imap_client *c, const char *account,
				 void (*cb)(void *ctx, enum imap_result r,
					    char **nodes, size_t n),
				 void *ctx);

/* UID FETCH uid (FLAGS INTERNALDATE and the part, with BODY.PEEK so \Seen
 * never changes) of (account, node), as the owner, after EXAMINE (read
 * only). IMAP_NO when the message is gone (expunged) or the mailbox's
 * UIDVALIDITY is not uidvalidity (0: not checked). */
void imap_client_fetch(struct imap_client *c, const char *account,
		       const char *node, uint32_t uidvalidity, uint32_t uid,
		       enum imap_fetch_part part,
		       void (*cb)(void *ctx, enum imap_result r,
				  const struct imap_message *msg),
		       void *ctx);

/* STATUS (MESSAGES UNSEEN UIDNEXT UIDVALIDITY, plus HIGHESTMODSEQ when the
 * server has CONDSTORE) of (account, node). Cyrus requires the "r" right for
 * STATUS and admins only have "la" on users' mailboxes, so this runs in a
 * session authorized as the owner (the admin's for shared mailboxes).
 * st is valid during the callback only, NULL unless IMAP_OK. */
void imap_client_status(struct imap_client *c, const char *account,
			const char *node,
			void (*cb)(void *ctx, enum imap_result r, const struct imap_status *st),
			void *ctx);

/* The pool and what went wrong, for status and metrics. */
void imap_client_stats(const struct imap_client *c, struct imap_client_stats *stats);

/* Why the most recent IMAP_TEMPFAIL happened ("" if none yet): for logs
 * and diagnostics, valid until the next call into this module. */
const char *imap_client_last_error(const struct imap_client *c);


/* ---- dedicated sessions ----
 * For callers that hold a connection for long (IDLE) on a thread of their
 * own: the blocking libetpan session itself, connected, TLS'd and
 * authenticated like the pooled ones (SASL authorization identity
 * `identity`, the admin's own session for admin_user). Call everything but
 * imap_session_interrupt() from that one thread; close every session
 * before imap_client_close(). */
struct imap_session;
struct mailimap;
struct imap_namespaces;

/* Blocking. abort (may be NULL) is polled while connecting and before
 * every network step: setting it makes the session fail fast. */
int imap_session_open(struct imap_client *c, const char *identity,
		      const atomic_bool *abort, struct imap_session **session_r,
		      char *error, size_t errlen);
struct mailimap *imap_session_mailimap(struct imap_session *s);
const struct imap_namespaces *imap_session_namespaces(const struct imap_session *s);
/* Bounds the next network steps to timeout_ms from now (0: the client's
 * timeout_ms); call before each command. */
void imap_session_deadline(struct imap_session *s, unsigned timeout_ms);
/* Why the last command failed, for logs. */
const char *imap_session_error(const struct imap_session *s);
/* Waits up to timeout_ms for the server to send something (during IDLE):
 * 1 readable, 0 timed out, -1 broken or aborted. */
int imap_session_wait(struct imap_session *s, unsigned timeout_ms);
/* From any thread, with the session kept alive by the caller: cuts a
 * blocked command short (shuts the socket down). */
void imap_session_interrupt(struct imap_session *s);
/* LOGOUT (unless aborted; bounded to 1 s), disconnect, free. Clears *s. */
void imap_session_close(struct imap_session **s);

#endif
