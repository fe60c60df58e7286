#include "ingest/ingest_imap_box.h"

#include <stdlib.h>
#include <string.h>

#include "ingest/ingest_imap_flags.h"

static int cmp_msg(const void *a, const void *b)
{
	uint32_t x = ((const struct ingest_imap_msg *)a)->uid;
	uint32_t y = ((const struct ingest_imap_msg *)b)->uid;

	return x < y ? -1 : x > y;
}

void ingest_imap_msgs_sort(struct ingest_imap_msg *msgs, size_t n)
{
	if (n > 0)   /* qsort wants a valid pointer even for no elements */
		qsort(msgs, n, sizeof(*msgs), cmp_msg);
}

struct ingest_imap_msg *ingest_imap_msgs_find(struct ingest_imap_msg *msgs, size_t n,
					      uint32_t uid)
{
	struct ingest_imap_msg key = { uid, NULL };

	return n == 0 ? NULL : bsearch(&key, msgs, n, sizeof(*msgs), cmp_msg);
}

void ingest_imap_box_clear(struct ingest_imap_box *box)
{
	for (size_t i = 0; i < box->n; i++)
		free(box->msgs[i].flags);
	free(box->msgs);
	memset(box, 0, sizeof(*box));
}

int ingest_imap_box_load(struct ingest_imap_box *box, uint32_t uidvalidity,
			 uint32_t uidnext, uint64_t modseq,
			 struct ingest_imap_msg *msgs, size_t n)
{
	struct ingest_imap_msg *copy = malloc((n + 1) * sizeof(*copy));

	if (copy == NULL)
		return -1;
	ingest_imap_box_clear(box);
	if (n > 0)
		memcpy(copy, msgs, n * sizeof(*copy));
	ingest_imap_msgs_sort(copy, n);
	box->msgs = copy;
	box->n = box->cap = n;
	box->uidvalidity = uidvalidity;
	box->uidnext = uidnext;
	box->modseq = modseq;
	if (n > 0 && box->uidnext <= copy[n - 1].uid)
		box->uidnext = copy[n - 1].uid + 1;
	return 0;
}

uint32_t ingest_imap_box_unseen(const struct ingest_imap_box *box)
{
	uint32_t unseen = 0;

	for (size_t i = 0; i < box->n; i++) {
		if (!ingest_imap_flags_seen(box->msgs[i].flags))
			unseen++;
	}
	return unseen;
}

int ingest_imap_box_append(struct ingest_imap_box *box, uint32_t uid, const char *flags)
{
	if (box->n == box->cap) {
		size_t cap = box->cap * 2 + 64;
		struct ingest_imap_msg *bigger = realloc(box->msgs, cap * sizeof(*bigger));

		if (bigger == NULL)
			return -1;
		box->msgs = bigger;
		box->cap = cap;
	}
	box->msgs[box->n].uid = uid;
	box->msgs[box->n].flags = strdup(flags);
	if (box->msgs[box->n].flags == NULL)
		return -1;
	box->n++;
	return 0;
}
