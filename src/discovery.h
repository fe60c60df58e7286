/* The mailbox tree from the store itself (IMAP LIST as the admin), so that
 * disco shows mailboxes that had no event yet and forgets those deleted
 * while we were not listening. Events keep the tree current; besides them:
 *  - a sweep LISTs every known account at start ([imap] list_at_start) and
 *    every [imap] list_interval seconds, in the background: at most
 *    [imap] list_concurrency LISTs outstanding, each queued behind every
 *    ACL question (imap_client_list_background), one summary line at info
 *    when done, one line per account at debug;
 *  - a request about an account goes ahead of the sweep (discovery_account).
 * Nothing depends on the sweep for correctness: it only brings the tree up
 * to date sooner after events were missed. */
#ifndef MAILPUBSUB_DISCOVERY_H
#define MAILPUBSUB_DISCOVERY_H

#include <uv.h>

#include "imap_client.h"

struct service;
struct discovery;

int discovery_new(uv_loop_t *loop, struct service *service,
		  struct imap_client *imap, struct discovery **discovery_r,
		  const char **error_r);
void discovery_close(struct discovery **discovery);

/* LIST account now, ahead of any sweep (once at a time per account). */
void discovery_account(struct discovery *discovery, const char *account);

#endif
