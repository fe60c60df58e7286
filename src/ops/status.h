/* One look at what the daemon is doing, for `mailpubsubctl status`
 * (src/ops/control.c) and the Prometheus endpoint (src/ops/metrics.c): the
 * counters the modules keep plus what only the store knows. Taken on the
 * loop thread. */
#ifndef MAILPUBSUB_STATUS_H
#define MAILPUBSUB_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include "authz/authz.h"
#include "xmpp/component.h"
#include "imap/imap_client.h"
#include "downstream/bus_out.h"
#include "ingest/bus_in.h"

struct service;

struct status_snapshot {
	long long now_us, started_us;          /* wall clock */
	bool connected;
	struct component_stats component;
	long long journal_head;                /* last journaled sequence */
	long long published_seq;               /* the publisher's watermark */
	long long firehose_seq;                /* the firehose's */
	size_t ingest_waiting_bytes;           /* Cyrus datagrams not journaled */
	long long subscriptions;
	long long taps_active;
	bool have_imap;
	struct imap_client_stats imap;
	struct authz_stats authz;
	bool have_bus;                         /* [bus] consume */
	struct bus_in_stats bus;
	bool have_bus_out;                     /* [bus] urls and address */
	struct bus_out_status bus_out;
	long long rss_bytes;
};

/* imap may be NULL. */
void status_snapshot_take(struct service *service, struct imap_client *imap,
			  struct status_snapshot *snap);

#endif
