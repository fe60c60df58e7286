/* The bus source ([bus] consume): events other mailpubsubd instances put
 * on an AMQP 1.0 queue (one per journaled event, message-id
 * "<instance>:<seq>", see downstream/bus_out) enter this instance's
 * journal through the sink, so one front instance serves XMPP for the
 * accounts of several mail backends.
 *
 * Exactly-once into the journal: messages received in one loop iteration
 * are submitted in one sink batch with origin_id = the message-id, and
 * settled ACCEPTED only after the commit that holds them returned; a
 * message-id already journaled (the broker redelivers what we held when
 * we were killed between commit and settle, or the producer resent after
 * its own crash) is accepted and not appended again. A batch whose commit
 * failed is released (MODIFIED): the broker delivers it again. A body
 * that is no event is rejected (the broker dead-letters or drops it) and
 * counted.
 *
 * The body is the producer's JSON: the RFC 5423 event with the keys the
 * producer added (account, node, uidvalidity, seq, received, instance,
 * source, content ...). What is journaled here is the event without those
 * keys, so the items a front instance publishes are the items the backend
 * would have published; the original reception time is kept. */
#ifndef MAILPUBSUB_BUS_IN_H
#define MAILPUBSUB_BUS_IN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "amqp/amqp.h"
#include "amqp/amqp_history.h"
#include "base/config.h"
#include "ingest/sink.h"

struct bus_in;

/* Counters and connection state for status and metrics (ops/). */
struct bus_in_stats {
	unsigned long long received;
	unsigned long long appended;
	unsigned long long duplicates;   /* message-id already journaled */
	unsigned long long rejected;     /* not an event: settled REJECTED */
	unsigned long long released;     /* not journaled (store error): MODIFIED */
	unsigned long long batches;      /* sink commits */
	struct amqp_history link;        /* connected: the receiving link is attached */
};

/* Starts consuming [bus] consume on the brokers of [bus] urls, with the
 * [bus] credentials, on a connection of its own (the producer's window of
 * unsettled messages never waits behind ours). config and sink are
 * borrowed and must outlive the bus_in. 0, or -1 with *error_r in static
 * storage. */
int bus_in_new(uv_loop_t *loop, const struct config *config, struct sink *sink,
	       struct bus_in **bus_r, const char **error_r);
/* Commits and settles what is held, closes the connection, frees once its
 * handles are closed. Clears *bus. */
void bus_in_close(struct bus_in **bus);
/* Valid until bus_in_close; bus may be NULL (no [bus] consume): NULL. */
const struct bus_in_stats *bus_in_stats(const struct bus_in *bus);

/* The event of a bus message body: a newly allocated JSON text (*len_r
 * bytes) without the producer's keys, and the original reception time
 * (microseconds; 0 when the body has none). NULL when the body is not a
 * JSON object with an "event" string. Exposed for the unit tests. */
char *bus_in_event_json(const char *body, size_t len, size_t *len_r,
			long long *received_us_r);

#endif
