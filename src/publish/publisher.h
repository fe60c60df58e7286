/* From the journal to subscribers: takes journaled events in sequence
 * order, updates the node tree, stores the item and sends one
 * notification per subscriber. Runs only while the component is connected,
 * so the journal is the queue across restarts and server outages. */
#ifndef MAILPUBSUB_PUBLISHER_H
#define MAILPUBSUB_PUBLISHER_H

#include <stddef.h>
#include <uv.h>

#include "ingest/sink.h"
#include "model/event.h"
#include "store/journal.h"

struct publish_service;
struct publisher;

int publisher_new(uv_loop_t *loop, struct publish_service *service,
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

/* "Event published": whoever acts on each event after the subscribers
 * were served (the interception taps; later, others) registers one of
 * these instead of being called by name. */
struct publisher_listener {
	/* Called once per journaled event the publisher dispatched, in
	 * journal order, on the loop thread, right after the event's own
	 * notifications were queued, inside the publisher's store
	 * transaction (what the callee writes commits with the batch).
	 * rec and ev are valid only during the call. An event sent again
	 * after a lost connection is told again (same rec->seq): a callee
	 * that must act once keys on the seq. Must not call into the
	 * publisher (kick, register, unregister, close). */
	void (*published)(void *context, const struct journal_record *rec,
			  const struct event *ev);
	void *context;
};

/* listener (not copied: it must stay valid until unregistered) is told
 * of every event published from now on, after those registered before
 * it. 0, or -1 when out of memory. */
int publisher_listener_register(struct publisher *publisher,
				const struct publisher_listener *listener);
/* listener is told nothing more. Unknown listener: nothing happens. Call
 * before publisher_close, which ends the registrations. */
void publisher_listener_unregister(struct publisher *publisher,
				   const struct publisher_listener *listener);

#endif
