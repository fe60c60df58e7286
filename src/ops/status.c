#include "base/clock.h"
#include "ops/status.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "downstream/firehose.h"
#include "ingest/sink.h"
#include "store/journal.h"
#include "store/subscription.h"
#include "store/taps.h"
#include "handlers/service.h"

static long long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long long size, resident = 0;

	if (f == NULL)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (long long)resident * sysconf(_SC_PAGESIZE);
}

void status_snapshot_take(struct service *service, struct imap_client *imap,
			  struct status_snapshot *snap)
{
	const struct bus_in_stats *bus;

	memset(snap, 0, sizeof(*snap));
	snap->now_us = clock_now_us();
	snap->started_us = service->publish->stats.started_us;
	snap->connected = component_is_connected(service->publish->component);
	snap->component = *component_stats(service->publish->component);
	snap->journal_head = journal_last_seq(service->publish->store);
	snap->published_seq = journal_published_seq(service->publish->store);
	snap->firehose_seq = firehose_position(service->firehose);
	snap->ingest_waiting_bytes = service->publish->sink != NULL ? sink_waiting(service->publish->sink) : 0;
	snap->subscriptions = subscription_count(service->publish->store);
	snap->taps_active = taps_count_active(service->publish->store, snap->now_us);
	snap->have_imap = imap != NULL;
	if (imap != NULL)
		imap_client_stats(imap, &snap->imap);
	snap->authz = *authz_stats(service->publish->authz);
	bus = bus_in_stats(service->bus_in);
	snap->have_bus = bus != NULL;
	if (bus != NULL)
		snap->bus = *bus;
	snap->have_bus_out = service->bus_out != NULL;
	if (service->bus_out != NULL)
		bus_out_get_status(service->bus_out, &snap->bus_out);
	snap->rss_bytes = rss_bytes();
}
