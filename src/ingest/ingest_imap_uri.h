/* How the IMAP client source names what it reports: RFC 5092 URLs for the
 * generic source's decoder, and UID sets. Pure functions, any thread. */
#ifndef MAILPUBSUB_INGEST_IMAP_URI_H
#define MAILPUBSUB_INGEST_IMAP_URI_H

#include <stddef.h>
#include <stdint.h>

/* An RFC 5092 URL with the owner in the authority, for the generic
 * source's decoder: imap://alice@host/INBOX/Sub;UIDVALIDITY=5/;UID=7 (levels
 * joined by sep, the store's hierarchy separator, each percent-encoded;
 * uidvalidity and uid left out when 0). NULL for a node that cannot be
 * written so (a level containing sep), or out of memory. */
char *ingest_imap_uri(const char *host, const char *account, const char *node,
		      char sep, uint32_t uidvalidity, uint32_t uid);

/* "1:3,7" for sorted, distinct uids. Newly allocated. */
char *ingest_imap_uidset(const uint32_t *uids, size_t n);

#endif
