#include "imap/imap_backoff.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct held {
	char *identity;            /* NULL: a free slot */
	unsigned failures;
	uint64_t retry_at;
};

struct imap_backoff {
	unsigned capacity;
	struct held *held;
};

unsigned imap_backoff_delay(unsigned failures)
{
	unsigned delay = IMAP_BACKOFF_MIN_MS;

	for (unsigned i = 1; i < failures && delay < IMAP_BACKOFF_MAX_MS; i++)
		delay *= 2;
	return delay < IMAP_BACKOFF_MAX_MS ? delay : IMAP_BACKOFF_MAX_MS;
}

struct imap_backoff *imap_backoff_new(unsigned capacity)
{
	struct imap_backoff *b = calloc(1, sizeof(*b));

	if (b == NULL || capacity == 0)
		goto fail;
	b->held = calloc(capacity, sizeof(*b->held));
	if (b->held == NULL)
		goto fail;
	b->capacity = capacity;
	return b;
fail:
	free(b);
	return NULL;
}

void imap_backoff_free(struct imap_backoff **b)
{
	if (*b == NULL)
		return;
	for (unsigned i = 0; i < (*b)->capacity; i++)
		free((*b)->held[i].identity);
	free((*b)->held);
	free(*b);
	*b = NULL;
}

static struct held *held_find(const struct imap_backoff *b, const char *identity)
{
	for (unsigned i = 0; i < b->capacity; i++) {
		if (b->held[i].identity != NULL &&
		    strcmp(b->held[i].identity, identity) == 0)
			return &b->held[i];
	}
	return NULL;
}

/* A free slot, else the one whose backoff ends first: of all the
 * identities held back it is the one that will soon try again anyway. */
static struct held *held_slot(struct imap_backoff *b)
{
	struct held *best = &b->held[0];

	for (unsigned i = 0; i < b->capacity; i++) {
		if (b->held[i].identity == NULL)
			return &b->held[i];
		if (b->held[i].retry_at < best->retry_at)
			best = &b->held[i];
	}
	free(best->identity);
	best->identity = NULL;
	return best;
}

unsigned imap_backoff_fail(struct imap_backoff *b, const char *identity,
			   uint64_t now, uint64_t *retry_at_r)
{
	struct held *h = held_find(b, identity);

	if (h == NULL) {
		h = held_slot(b);
		h->identity = strdup(identity);
		if (h->identity == NULL) {
			*retry_at_r = now;
			return 1;
		}
		h->failures = 0;
	} else if (now >= h->retry_at + IMAP_BACKOFF_MAX_MS) {
		h->failures = 0;
	}
	if (h->failures < UINT_MAX)
		h->failures++;
	h->retry_at = now + imap_backoff_delay(h->failures);
	*retry_at_r = h->retry_at;
	return h->failures;
}

uint64_t imap_backoff_until(const struct imap_backoff *b, const char *identity,
			    uint64_t now, unsigned *failures_r)
{
	const struct held *h = held_find(b, identity);

	*failures_r = h != NULL ? h->failures : 0;
	return h != NULL && now < h->retry_at ? h->retry_at : 0;
}

void imap_backoff_forget(struct imap_backoff *b, const char *identity)
{
	struct held *h = held_find(b, identity);

	if (h != NULL) {
		free(h->identity);
		h->identity = NULL;
		h->failures = 0;
		h->retry_at = 0;
	}
}
