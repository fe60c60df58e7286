#ifndef MAILPUBSUB_FAKE_IMAP_H
#define MAILPUBSUB_FAKE_IMAP_H

#include <stdio.h>

#include "imap/imap_client.h"

struct fake_imap {
	enum imap_result result;
	const char *rights;
	unsigned calls;
	const struct imap_client *last_client;  /* which server was asked */
	char last_identity[64];
	char last_mailbox[128];
	void (*during_call)(void);  /* run once, before answering */
};

extern struct fake_imap fake_imap;

#endif
