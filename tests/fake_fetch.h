/* A stand-in for the whole of imap_client.h that test_listeners links
 * (fetch for the firehose and the taps, STATUS for counts, MYRIGHTS for
 * authz), so that the real imap_client.o is never pulled in: a fetch is
 * recorded with the client it was asked of and answered when the test
 * says. */
#ifndef MAILPUBSUB_FAKE_FETCH_H
#define MAILPUBSUB_FAKE_FETCH_H

#include <stddef.h>

#include "imap/imap_client.h"

#define FAKE_FETCH_MAX 8

struct fake_fetch_call {
	const struct imap_client *client;   /* which server was asked */
	char account[32];
	void (*cb)(void *ctx, enum imap_result r, const struct imap_message *msg);
	void *ctx;
	int answered;
};

struct fake_fetch {
	struct fake_fetch_call calls[FAKE_FETCH_MAX];
	size_t count;
};

extern struct fake_fetch fake_fetch;

/* Answers every fetch not answered yet with IMAP_OK and a small message,
 * also those the callbacks ask meanwhile. */
void fake_fetch_answer_all(void);

#endif
