/* The values the IMAP client's interface shares with the modules behind
 * it (imap_command, imap_session): users include imap/imap_client.h,
 * which includes this. */
#ifndef MAILPUBSUB_IMAP_TYPES_H
#define MAILPUBSUB_IMAP_TYPES_H

#include <stddef.h>
#include <stdint.h>

enum imap_tls {
	IMAP_TLS_NONE,     /* plain text (trusted networks, tests) */
	IMAP_TLS_STARTTLS, /* plain connect, STARTTLS before authenticating */
	IMAP_TLS_IMAPS,    /* TLS from the first byte (port 993) */
};

enum imap_result {
	IMAP_OK,
	IMAP_NO,       /* server said NO: e.g. no such mailbox, or no rights to see it */
	IMAP_TEMPFAIL, /* could not ask: connection, timeout, auth, TLS */
};

struct imap_status {
	uint32_t messages, unseen, uidnext, uidvalidity;
	uint64_t highestmodseq; /* 0 unless the server has CONDSTORE */
};

/* A message as UID FETCH returned it; valid during the callback only. */
struct imap_message {
	const char *data;          /* the raw bytes (RFC 5322), not terminated */
	size_t len;
	const char *flags;         /* space separated, e.g. "\\Seen $Label1" */
	const char *internaldate;  /* RFC 3501 date-time, "23-Nov-2026 10:00:00 +0000" */
};

enum imap_fetch_part {
	IMAP_FETCH_FULL,           /* BODY.PEEK[] */
	IMAP_FETCH_HEADERS,        /* BODY.PEEK[HEADER] */
};

/* The pool and what went wrong, for status and metrics. */
struct imap_client_stats {
	unsigned sessions;               /* pooled sessions */
	unsigned busy;                   /* of them running a command */
	unsigned idle;                   /* of them logged in, waiting */
	unsigned long long commands;     /* calls answered */
	unsigned long long errors;       /* answered IMAP_TEMPFAIL */
	unsigned long long connect_failures; /* logins or connections failed */
};

#endif
