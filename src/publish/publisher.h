/* From the journal to subscribers: takes journaled events in sequence
 * order, updates the node tree, stores the item and sends one
 * notification per subscriber. Runs only while the component is connected,
 * so the journal is the queue across restarts and server outages. */
#ifndef MAILPUBSUB_PUBLISHER_H
#define MAILPUBSUB_PUBLISHER_H

#include <stddef.h>
#include <uv.h>

#include "ingest/sink.h"

struct service;
struct publisher;

int publisher_new(uv_loop_t *loop, struct service *service,
		  struct publisher **publisher_r, const char **error_r);
/* There may be new journal records, or the component came up. */
void publisher_kick(struct publisher *publisher);
/* The sink listener (context: the publisher; main registers it): a
 * publisher that is live publishes the events with their decoded form at
 * once, one that is behind reads the journal from its watermark. */
void publisher_committed(void *context, const struct sink_event *events, size_t count);
/* The component lost its connection: what was not yet written out is
 * published again once it is back. */
void publisher_reset(struct publisher *publisher);
void publisher_close(struct publisher **publisher);

#endif
