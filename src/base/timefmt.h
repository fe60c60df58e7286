/* Times as the protocols write them: ISO 8601 in UTC. */
#ifndef MAILPUBSUB_TIMEFMT_H
#define MAILPUBSUB_TIMEFMT_H

#include <stddef.h>

/* "2026-11-23T10:00:00.123Z" for us microseconds since the epoch (XEP-0082,
 * e.g. for urn:xmpp:delay stamps). */
void timefmt_iso8601_ms(long long us, char *buf, size_t size);

/* "2026-11-23T10:00:00Z"; -1 (buf untouched) when us is not after the
 * epoch or is out of range. */
int timefmt_iso8601(long long us, char *buf, size_t size);

#endif
