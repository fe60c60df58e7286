/* How long the IMAP client holds back after failures.
 *
 * Two scopes: a failure to reach the server at all (connect, greeting,
 * TLS) holds back every new connection; a failure once the server is
 * answering, after we named an identity to act as (refused, dropped or
 * not answered in time), holds back that identity only. The identities
 * are remembered here rather than in their pooled sessions: a session in
 * backoff holds no connection and is the first the pool closes, and its
 * backoff must outlive it, or a refused identity is retried at once
 * whenever the pool is busy. The table is bounded; beyond it the entry
 * whose backoff ends first is forgotten.
 *
 * Pure bookkeeping on times the caller gives (monotonic ms), no I/O:
 * unit tested in tests/test_imap_client.c. */
#ifndef MAILPUBSUB_IMAP_BACKOFF_H
#define MAILPUBSUB_IMAP_BACKOFF_H

#include <stdint.h>

#define IMAP_BACKOFF_MIN_MS 100u
#define IMAP_BACKOFF_MAX_MS 30000u

/* 100 ms, 200 ms, ... 30 s for the n-th failure in a row (n >= 1) */
unsigned imap_backoff_delay(unsigned failures);

struct imap_backoff;

/* NULL when out of memory. capacity: identities remembered at most (>= 1). */
struct imap_backoff *imap_backoff_new(unsigned capacity);
void imap_backoff_free(struct imap_backoff **b);

/* Records a failure of identity at now; returns its failures in a row and
 * sets *retry_at_r to when it may try again. A failure long after the last
 * backoff ended (IMAP_BACKOFF_MAX_MS) starts counting afresh. Out of
 * memory, the identity is simply not held back. */
unsigned imap_backoff_fail(struct imap_backoff *b, const char *identity,
			   uint64_t now, uint64_t *retry_at_r);

/* When identity may try again if that is after now, else 0 (also for an
 * identity without failures); *failures_r gets its failures in a row. */
uint64_t imap_backoff_until(const struct imap_backoff *b, const char *identity,
			    uint64_t now, unsigned *failures_r);

/* identity succeeded: forget its failures. */
void imap_backoff_forget(struct imap_backoff *b, const char *identity);

#endif
