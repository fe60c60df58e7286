#include "base/clock.h"
#include "ops/status.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "downstream/firehose.h"
#include "ingest/sink.h"
#include "store/journal.h"
#include "handlers/service.h"

static long long count_rows(struct store *store, const char *sql, long long now_us)
{
	sqlite3_stmt *stmt = store_stmt(store, sql);
	long long n = 0;

	if (stmt == NULL)
		return 0;
	if (sqlite3_bind_parameter_count(stmt) > 0)
		sqlite3_bind_int64(stmt, 1, now_us);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		n = sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	return n;
}

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
	static const char subs_sql[] = "SELECT count(*) FROM subscriptions";
	static const char taps_sql[] =
		"SELECT count(*) FROM taps WHERE expired = 0"
		" AND not_before_us <= ?1 AND not_after_us > ?1";

	memset(snap, 0, sizeof(*snap));
	snap->now_us = clock_now_us();
	snap->started_us = service->stats.started_us;
	snap->connected = component_is_connected(service->component);
	snap->component = *component_stats(service->component);
	snap->journal_head = journal_last_seq(service->store);
	snap->published_seq = journal_published_seq(service->store);
	snap->firehose_seq = firehose_position(service);
	snap->ingest_waiting_bytes = service->sink != NULL ? sink_waiting(service->sink) : 0;
	snap->subscriptions = count_rows(service->store, subs_sql, 0);
	snap->taps_active = count_rows(service->store, taps_sql, snap->now_us);
	snap->have_imap = imap != NULL;
	if (imap != NULL)
		imap_client_stats(imap, &snap->imap);
	snap->authz = *authz_stats(service->authz);
	snap->rss_bytes = rss_bytes();
}
