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
#include "store/store.h"

#define CONTENT_NS "urn:mailpubsub:content:0"

/* What is known about the content of event seq. */
struct content_record {
	long long seq;
	char *part;           /* "full" or "headers" */
	size_t size;          /* bytes of the part */
	size_t header_size;   /* bytes of the header section (full parts) */
	char sha256[65];      /* hex, of the part's bytes */
	char *flags;
	char *internaldate;
	char *error;          /* final failure ("expunged", "unavailable"); NULL */
	unsigned attempts;
};

int content_init(struct store *store, const char **error_r);

/* Stores msg (part "full" or "headers") for seq. */
int content_put(struct store *store, long long seq, const char *part,
		const struct imap_message *msg, long long now_us);
/* Records that the content of seq cannot be had. */
int content_put_error(struct store *store, long long seq, const char *reason,
		      unsigned attempts, long long now_us);

/* 1 and *rec filled when known, 0 when not, -1 on error. */
int content_get(struct store *store, long long seq, struct content_record *rec);
void content_record_clear(struct content_record *rec);

/* Bytes [offset, offset + length) of the stored part; *len_r may be less
 * at the end. Newly allocated. */
int content_read(struct store *store, long long seq, size_t offset,
		 size_t length, char **data_r, size_t *len_r);

/* Drops content stored before before_us. */
int content_prune(struct store *store, long long before_us);

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
