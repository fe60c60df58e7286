/* The content table: the bytes of a message retrieved once per event for
 * downstream subscribers (downstream/content.c builds the <content/>
 * element from them; downstream/firehose.c and tap.c retrieve them), or
 * why they cannot be had, until [firehose] content_retention. Keyed by
 * the event's journal sequence. */
#ifndef MAILPUBSUB_STORE_CONTENT_H
#define MAILPUBSUB_STORE_CONTENT_H

#include <stddef.h>

#include "store/store.h"

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

/* Creates the table. */
int content_init(struct store *store, const char **error_r);

/* Stores the rec->size bytes of data as the content of rec->seq (part,
 * size, header_size, sha256, flags, internaldate from rec). */
int content_store_bytes(struct store *store, const struct content_record *rec,
			const void *data, long long now_us);
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

#endif
