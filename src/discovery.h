/* The mailbox tree from the store itself (IMAP LIST as the admin), so that
 * disco shows mailboxes that had no event yet and forgets those deleted
 * while we were not listening. Runs at start, every [imap] list_interval
 * seconds, and for an account nobody asked about before. Events keep the
 * tree current in between. */
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
/* [imap] list_interval changed (SIGHUP): the next LIST is one new
 * interval from now (0: no more LISTs until a restart). */
void discovery_reschedule(struct discovery *discovery);

/* LIST account now (once at a time per account). */
void discovery_account(struct discovery *discovery, const char *account);

#endif
