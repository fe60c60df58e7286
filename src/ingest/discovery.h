/* The mailbox tree from the store itself (IMAP LIST as the admin), so that
 * disco shows mailboxes that had no event yet and forgets those deleted
 * while we were not listening. Events keep the tree current; besides them:
 *  - a sweep LISTs every known account at start ([imap] list_at_start) and
 *    every [imap] list_interval seconds, in the background: at most
 *    [imap] list_concurrency LISTs outstanding, each queued behind every
 *    ACL question (imap_client_list_background), one summary line at info
 *    when done, one line per account at debug;
 *  - a request about an account goes ahead of the sweep (discovery_account),
 *    and a request about a mailbox the tree does not know waits for a LIST
 *    of its account (discovery_lookup).
 * Nothing depends on the sweep for correctness: it only brings the tree up
 * to date sooner after events were missed. */
#ifndef MAILPUBSUB_DISCOVERY_H
#define MAILPUBSUB_DISCOVERY_H

#include <uv.h>

#include "base/config.h"
#include "imap/imap_backends.h"
#include "imap/imap_client.h"
#include "ingest/sink.h"
#include "store/store.h"

struct discovery;

/* Deletions it finds go through sink. config, store, sink and imap are
 * borrowed and must outlive the discovery. */
int discovery_new(uv_loop_t *loop, const struct config *config,
		  struct store *store, struct sink *sink,
		  struct imap_client *imap, struct discovery **discovery_r,
		  const char **error_r);
void discovery_close(struct discovery **discovery);
/* [backends]: each account is LISTed on its own server (imap for the
 * accounts no line maps); a LIST elsewhere would find it empty and delete
 * its nodes. Borrowed. */
void discovery_set_backends(struct discovery *discovery,
			    const struct imap_backends *backends);
/* [imap] list_interval changed (SIGHUP): the next LIST is one new
 * interval from now (0: no more LISTs until a restart). */
void discovery_reschedule(struct discovery *discovery);

/* LIST account now, ahead of any sweep (once at a time per account). */
void discovery_account(struct discovery *discovery, const char *account);

enum discovery_result {
	DISCOVERY_FOUND,
	DISCOVERY_NOT_FOUND,
	DISCOVERY_TEMPFAIL,   /* the store could not be asked in time */
};

/* Called exactly once, possibly before discovery_lookup returns. */
typedef void discovery_cb(void *context, enum discovery_result result);

/* Does node of account exist (node NULL: any mailbox of account)? From the
 * node tree when it knows the node; otherwise the store is asked at once
 * (LIST of the account, shared with a LIST of it already under way) and the
 * answer is the tree after that LIST. The wait is bounded by [imap]
 * timeout_ms: past it, or when the store cannot be asked, the answer is
 * DISCOVERY_TEMPFAIL. discovery NULL (no [imap]): the tree alone. */
void discovery_lookup(struct discovery *discovery, struct store *store,
		      const char *account, const char *node,
		      discovery_cb *cb, void *context);

#endif
