/* The message bus, out: every journaled event, in journal order, as one
 * AMQP 1.0 message to [bus] address on the brokers of [bus] urls, for
 * archive, e-discovery and interception systems (README "Message bus").
 *
 * At least once: the bus watermark (store/bus_mark) advances only over
 * events the broker accepted, contiguously; after a restart, a lost
 * connection or a refusal (rejected, released, modified) everything after
 * it is sent again, with the same message-id "<instance>:<seq>". The bus
 * reads the journal on its own and never holds ingestion or XMPP up: a
 * broker that is down or slow only lets the backlog grow in the journal. */
#ifndef MAILPUBSUB_BUS_OUT_H
#define MAILPUBSUB_BUS_OUT_H

#include <stdbool.h>
#include <uv.h>

#include "amqp/amqp_history.h"
#include "base/config.h"
#include "imap/imap_backends.h"
#include "imap/imap_client.h"
#include "ingest/sink.h"
#include "store/store.h"

struct bus_out;

/* Status, for logs, `mailpubsubctl status` and /metrics (ops/). */
struct bus_out_status {
	bool backing_off;              /* after a refusal: sending again soon */
	long long mark;                /* accepted through here */
	long long sent_seq;            /* last seq handed to the broker */
	unsigned long long sent, accepted, refused, resent;
	struct amqp_history link;      /* the connection: up, since when, errors */
	char url[160];                 /* the broker in use, or the next tried */
};

/* Starts the bus when config->bus_urls and bus_address are set (else
 * *bus_r = NULL, 0: a front that only consumes has no address).
 * config, store and imap (may be NULL: content is then unavailable) must
 * outlive the bus; [bus] content and content_max are read at each use
 * (SIGHUP). 0, or -1 with *error_r in static storage. */
int bus_out_new(uv_loop_t *loop, struct store *store, const struct config *config,
		struct imap_client *imap, struct bus_out **bus_r, const char **error_r);
/* [backends] (a front serving several mail servers): content is retrieved
 * from the server imap_backends_pick names for the event's account, imap
 * being the fallback. Borrowed; NULL: imap for all. bus NULL is fine. */
void bus_out_set_backends(struct bus_out *bus, const struct imap_backends *backends);
/* New journal records may be there: sends what the window allows. NULL is
 * fine. */
void bus_out_kick(struct bus_out *bus);
/* The bus as a listener of ingest/sink (context: struct bus_out): a
 * commit tells it there is more. It reads the journal after its own
 * watermark rather than taking the sink's events, because what it sends
 * is the journaled text and a broker outage must not hold the sink. */
void bus_out_committed(void *context, const struct sink_event *events, size_t count);
/* A copy of the status, with the broker URL in use (or tried next) now. */
void bus_out_get_status(const struct bus_out *bus, struct bus_out_status *status);
/* Saves the watermark, closes the AMQP connection and frees the bus once
 * a retrieval in flight has answered. Clears *bus. */
void bus_out_close(struct bus_out **bus);

#endif
