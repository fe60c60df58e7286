/* Cyrus's notify socket: a Unix datagram socket Cyrus's imapd/lmtpd send
 * one event each to (notifysocket in imapd.conf).
 *
 * Cyrus blocks in sendto() once 10 datagrams wait (net.unix.max_dgram_qlen),
 * so a dedicated thread does nothing but receive into a RAM queue; the loop
 * thread decodes, journals (one transaction per batch) and hands on. */
#ifndef MAILPUBSUB_INGEST_CYRUS_H
#define MAILPUBSUB_INGEST_CYRUS_H

#include <uv.h>

#include "base/config.h"
#include "base/stats.h"
#include "ingest/sink.h"

struct ingest_cyrus;

/* Batches go to sink (its listeners hear of them); the bytes received
 * and not yet journaled are reported to it as back-pressure. config,
 * sink and stats are borrowed and must outlive the source. */
int ingest_cyrus_new(uv_loop_t *loop, const struct config *config,
		     struct sink *sink, struct stats_counters *stats,
		     struct ingest_cyrus **ingest_r, const char **error_r);
/* Stops the thread, journals what was received, closes and frees. */
void ingest_cyrus_close(struct ingest_cyrus **ingest);

/* Unwraps one datagram and submits it to sink (exposed for tests and
 * fuzzing). Returns 0 if journaled, -1 if rejected (logged and counted). */
int ingest_cyrus_accept(struct sink *sink, struct stats_counters *stats,
			const char *buf, size_t len, long long received_us);

#endif
