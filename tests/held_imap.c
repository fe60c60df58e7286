/* See held_imap.h. */
#include "held_imap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELD_MAX 64

struct held {
	char question[256];
	void (*cb)(void *ctx, enum imap_result r, const char *rights);
	void *ctx;
};

static struct held held[HELD_MAX];
static size_t n_held;

void imap_client_myrights(struct imap_client *c, const char *identity,
			  const char *account, const char *node,
			  void (*cb)(void *ctx, enum imap_result r, const char *rights),
			  void *ctx)
{
	(void)c;
	if (n_held == HELD_MAX)
		abort();
	snprintf(held[n_held].question, sizeof(held[n_held].question), "%s %s/%s",
		 identity, account, node);
	held[n_held].cb = cb;
	held[n_held].ctx = ctx;
	n_held++;
}

const char *imap_client_last_error(const struct imap_client *c)
{
	(void)c;
	return "held imap: failure";
}

size_t held_imap_pending(void)
{
	return n_held;
}

const char *held_imap_question(size_t i)
{
	return i < n_held ? held[i].question : NULL;
}

static void answer(size_t i, enum imap_result result, const char *rights)
{
	struct held h = held[i];

	/* out of the table first: the answer may ask again */
	memmove(&held[i], &held[i + 1], (n_held - i - 1) * sizeof(held[0]));
	n_held--;
	h.cb(h.ctx, result, result == IMAP_OK ? rights : NULL);
}

void held_imap_answer(enum imap_result result, const char *rights)
{
	if (n_held == 0)
		abort();
	answer(0, result, rights);
}

void held_imap_answer_to(const char *question, enum imap_result result,
			 const char *rights)
{
	for (size_t i = 0; i < n_held; i++) {
		if (strcmp(held[i].question, question) == 0) {
			answer(i, result, rights);
			return;
		}
	}
	fprintf(stderr, "held imap: nobody asked '%s'\n", question);
	abort();
}

void held_imap_reset(void)
{
	n_held = 0;
}
