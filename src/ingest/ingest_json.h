/* The generic source: newline-delimited RFC 5423 JSON events on a stream
 * socket (Unix, and TCP when [json] listen is set), for mail stores other
 * than Cyrus (Dovecot's push_notification Lua driver, scripts, other
 * servers) and for events Cyrus cannot send.
 *
 * Each input line is one event object, the same model Cyrus fills
 * (pubsub-schemas/event-input.schema.json). Each line gets exactly one
 * reply line, in order:
 *   {"ok":true,"seq":N}                          journaled durably
 *   {"ok":false,"error":"..."}                   malformed: do not resend
 *   {"ok":false,"error":"...","retry":true}      not journaled: resend
 * so a sender that resends everything not yet acknowledged loses nothing
 * (the item ids are journal sequence numbers: a resent event that was in
 * fact journaled shows up as a second item, never as a gap).
 *
 * Senders are authenticated: on the Unix socket by peer credentials
 * against [json] allowed_users; on TCP by a first line
 * {"auth":"<secret>"} answered {"ok":true}. */
#ifndef MAILPUBSUB_INGEST_JSON_H
#define MAILPUBSUB_INGEST_JSON_H

#include <stddef.h>
#include <uv.h>

#include "base/config.h"
#include "base/stats.h"
#include "ingest/sink.h"

struct ingest_json;

/* Lines go to sink (its listeners hear of them). config, sink and stats
 * are borrowed and must outlive the source. */
int ingest_json_new(uv_loop_t *loop, const struct config *config,
		    struct sink *sink, struct stats_counters *stats,
		    struct ingest_json **ingest_r, const char **error_r);
/* Closes the listeners and every connection (unacknowledged lines were not
 * journaled, so their senders resend them); memory is released once
 * libuv has closed the handles. Clears *ingest. */
void ingest_json_close(struct ingest_json **ingest);
/* Sender connections open now (ingest NULL: 0). */
unsigned ingest_json_connections(const struct ingest_json *ingest);

/* Submits one line to sink (inside the caller's batch). Returns the
 * sequence number, or -1 with *error_r and *retry_r telling whether
 * resending may succeed. Exposed for tests. */
long long ingest_json_accept(struct sink *sink, struct stats_counters *stats,
			     const char *line, size_t len, long long received_us,
			     int *retry_r, const char **error_r);

#endif
