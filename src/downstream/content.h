/* Message content for downstream subscribers (archive, e-discovery): the
 * bytes retrieved over IMAP once per event, kept in the store for
 * [firehose] content_retention so that subscribers can fetch large ones in
 * chunks and catch up after being offline, and the <content/> element
 * (namespace urn:mailpubsub:content:0, pubsub-schemas/content.rng) that
 * carries them in an item. */
#ifndef MAILPUBSUB_CONTENT_H
#define MAILPUBSUB_CONTENT_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/imap_client.h"
#include "store/content.h"
#include "store/store.h"

#define CONTENT_NS "urn:mailpubsub:content:0"

/* Stores msg (part "full" or "headers") for seq, with its digest and
 * header length. */
int content_put(struct store *store, long long seq, const char *part,
		const struct imap_message *msg, long long now_us);

/* The element for a subscriber that wants part ("full" or "headers"):
 * <content-error/> after a final failure; <content/> with the base64 bytes
 * when they fit inline_max, else empty with fetch='true' (fetched with
 * <fetch/>). Newly allocated XML, or NULL. */
char *content_element(struct store *store, const struct content_record *rec,
		      const char *part, size_t inline_max);

/* Base64 (no line breaks) of len bytes; newly allocated. */
char *content_base64(const void *data, size_t len);

/* Length of the header section (through the empty line) of a message. */
size_t content_header_length(const char *data, size_t len);

#endif
