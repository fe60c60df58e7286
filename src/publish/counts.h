/* Every item about a mailbox carries its current message and unseen
 * counts (Dusseault 3.6: a client that missed events still shows the
 * right state).
 *
 * Cyrus puts them in message and flag events; we keep the last ones per
 * node and fill them into events that lack them (folder and ACL events).
 * Where nothing is known yet, the store is asked (IMAP STATUS) and the
 * answer published as a vnd.mailpubsub.MailboxStatus event through the
 * journal like any other. Subscribers that asked for a heartbeat get the
 * current counts every [pubsub] heartbeat_interval seconds.
 *
 * Gaps: Cyrus drops the events it sends while nobody listens. A new
 * message whose UID is above the UIDNEXT we knew means messages arrived
 * unseen: the node is resynchronised from STATUS, with a resync marker, in
 * the spirit of interimap's QRESYNC catch-up. */
#ifndef MAILPUBSUB_COUNTS_H
#define MAILPUBSUB_COUNTS_H

#include <uv.h>

#include "model/event.h"
#include "imap/imap_backends.h"
#include "imap/imap_client.h"
#include "store/node_tree.h"

struct publish_service;
struct counts;

/* imap may be NULL: then unknown counts stay unknown. */
int counts_new(uv_loop_t *loop, struct publish_service *service,
	       struct imap_client *imap, struct counts **counts_r,
	       const char **error_r);
void counts_close(struct counts **counts);
/* [backends]: STATUS of an account's mailbox on its own server. Borrowed. */
void counts_set_backends(struct counts *counts, const struct imap_backends *backends);
/* [pubsub] heartbeat_interval changed (SIGHUP): the next heartbeat is one
 * new interval from now. */
void counts_reschedule(struct counts *counts);

/* Called for each event after the node tree was updated: records what the
 * event carries and sets *known_r to the node's counts (fields -1 when
 * unknown). */
void counts_for_event(struct counts *counts, const struct event *event,
		      struct node_counts *known_r);

/* Ask the store for node's counts and publish them; reason (may be NULL)
 * goes into the item as vnd.mailpubsub.resync: a subscriber that sees it
 * knows events were lost and this is the state to go on from. */
void counts_refresh(struct counts *counts, const char *account, const char *node,
		    const char *reason);

#endif
