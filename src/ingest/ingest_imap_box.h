/* What the IMAP client source knows of one mailbox: UIDVALIDITY, UIDNEXT,
 * HIGHESTMODSEQ and every UID with its flags. Pure data, owned by the one
 * watcher thread that syncs the mailbox (or the loop thread while that
 * thread waits for it, ingest_imap_batch.h). */
#ifndef MAILPUBSUB_INGEST_IMAP_BOX_H
#define MAILPUBSUB_INGEST_IMAP_BOX_H

#include <stddef.h>
#include <stdint.h>

struct ingest_imap_msg {
	uint32_t uid;
	char *flags;                 /* normalized: see ingest_imap_flags_normalize */
};

/* What is known of one mailbox. */
struct ingest_imap_box {
	uint32_t uidvalidity;        /* 0: nothing known yet */
	uint32_t uidnext;
	uint64_t modseq;             /* HIGHESTMODSEQ; 0 without CONDSTORE */
	struct ingest_imap_msg *msgs; /* sorted by uid */
	size_t n, cap;
};

/* Replaces what box knows with msgs (a baseline: no events). Takes the
 * flags strings of msgs. */
int ingest_imap_box_load(struct ingest_imap_box *box, uint32_t uidvalidity,
			 uint32_t uidnext, uint64_t modseq,
			 struct ingest_imap_msg *msgs, size_t n);
/* Messages without \Seen. */
uint32_t ingest_imap_box_unseen(const struct ingest_imap_box *box);
void ingest_imap_box_clear(struct ingest_imap_box *box);
/* Adds a message above every known UID (as the store lists them, by UID);
 * copies flags. */
int ingest_imap_box_append(struct ingest_imap_box *box, uint32_t uid, const char *flags);

/* msgs sorted by UID, in place. */
void ingest_imap_msgs_sort(struct ingest_imap_msg *msgs, size_t n);
/* The message uid of msgs (sorted by UID), or NULL. */
struct ingest_imap_msg *ingest_imap_msgs_find(struct ingest_imap_msg *msgs, size_t n,
					      uint32_t uid);

#endif
