/* Cyrus's notify socket: a Unix datagram socket Cyrus's imapd/lmtpd send
 * one event each to (notifysocket in imapd.conf).
 *
 * Cyrus blocks in sendto() once 10 datagrams wait (net.unix.max_dgram_qlen),
 * so a dedicated thread does nothing but receive into a RAM queue; the loop
 * thread decodes, journals (one transaction per batch) and hands on. */
#ifndef MAILPUBSUB_INGEST_CYRUS_H
#define MAILPUBSUB_INGEST_CYRUS_H

#include <uv.h>

struct ingest_cyrus;
struct publish_service;

/* Called on the loop thread after a batch was journaled. */
typedef void ingest_cyrus_cb(void *context);

int ingest_cyrus_new(uv_loop_t *loop, struct publish_service *service,
		     ingest_cyrus_cb *on_journaled, void *context,
		     struct ingest_cyrus **ingest_r, const char **error_r);
/* Stops the thread, journals what was received, closes and frees. */
void ingest_cyrus_close(struct ingest_cyrus **ingest);

/* Decodes and journals one datagram (exposed for tests and fuzzing).
 * Returns 0 if journaled, -1 if rejected (logged and counted). */
int ingest_cyrus_accept(struct publish_service *service, const char *buf, size_t len,
			long long received_us);

/* Bytes received and not yet journaled (ingest NULL: 0); any thread. */
size_t ingest_cyrus_waiting(struct ingest_cyrus *ingest);

#endif
