/* The sessions of one IMAP client and the commands queued for them.
 * Sessions are pooled by SASL authorization identity (key "" for the admin
 * itself), at most max_sessions, least recently used idle ones logged out
 * beyond that. One command per session at a time (imap_command.h, run on
 * the session's imap_conn in libuv's threadpool); further ones queue,
 * background ones behind all others. A broken session is dropped and the
 * next command reconnects; connection failures back off every new
 * connection (imap_backoff_delay), a session refused, dropped or not
 * answered as an identity backs off that identity only.
 *
 * Loop thread only (the worker is internal). The submitter owns its ops
 * and gets each back exactly once through its complete callback. */
#ifndef MAILPUBSUB_IMAP_POOL_H
#define MAILPUBSUB_IMAP_POOL_H

#include <stdbool.h>

#include <uv.h>

#include "imap/imap_command.h"
#include "imap/imap_conn.h"
#include "imap/imap_types.h"

struct imap_pool;
struct imap_pool_slot;

/* One command submitted to the pool, usually inside a struct of the
 * submitter's own. */
struct imap_pool_op {
	/* the submitter's */
	char *key;                   /* authorization identity, "" = admin_user */
	bool background;             /* queued behind every other op and never
	                              * promoted in the pool (discovery sweeps) */
	struct imap_command cmd;     /* the question; the answer once complete */
	/* On the loop, never from inside imap_pool_submit(): the answer is in
	 * cmd (IMAP_TEMPFAIL with cmd.error if it could not be asked), and the
	 * pool is done with op. May call back into the pool, even close it. */
	void (*complete)(struct imap_pool_op *op);
	/* the pool's */
	struct imap_pool_op *next;
	struct imap_pool *pool;
	struct imap_pool_slot *slot;
	uv_work_t work;
	enum imap_fail fail;         /* written by the worker */
};

/* peer must outlive the pool (until imap_pool_close's done). */
int imap_pool_new(uv_loop_t *loop, struct imap_peer *peer, unsigned max_sessions,
		  struct imap_pool **pool_r, const char **error_r);

/* Queues op on its identity's session (made when needed). */
void imap_pool_submit(struct imap_pool *pool, struct imap_pool_op *op);

/* Clears *pool at once. The caller has set peer->aborting. Queued ops
 * complete with IMAP_TEMPFAIL, running ones are cut short (their sockets
 * shut down), idle sessions log out; once no work is left everything is
 * freed and done(context) is called from the loop. Every op completes
 * before done. */
void imap_pool_close(struct imap_pool **pool, void (*done)(void *), void *context);

void imap_pool_stats(const struct imap_pool *pool, struct imap_client_stats *stats);
/* Why the most recent IMAP_TEMPFAIL happened ("" if none yet), valid
 * until the next call into the pool. */
const char *imap_pool_last_error(const struct imap_pool *pool);

#endif
