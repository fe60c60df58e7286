/* The datagram Cyrus's notify client (imap/notify.c) sends to notifyd:
 *   method\0 class\0 priority\0 user\0 mailbox\0 nopt\0 {option\0}*nopt
 *   message\0 [fname\0]
 * For mailbox events class is "EVENT" and message is the JSON event. */
#ifndef MAILPUBSUB_CYRUS_WIRE_H
#define MAILPUBSUB_CYRUS_WIRE_H

#include <stddef.h>

#define CYRUS_WIRE_MAX_OPTIONS 64

struct cyrus_wire {
	const char *method;      /* the event_notifier name */
	const char *class;
	const char *priority;
	const char *user;
	const char *mailbox;
	unsigned nopt;
	const char *options[CYRUS_WIRE_MAX_OPTIONS];
	const char *message;     /* NUL terminated */
	size_t message_len;
	const char *fname;       /* may be NULL */
};

/* Parses buf[0..len) in place; every field points into buf. buf must stay
 * alive and unchanged while the result is used. Returns 0, or -1 with a
 * static reason in *error_r. */
int cyrus_wire_parse(const char *buf, size_t len, struct cyrus_wire *out,
		     const char **error_r);

#endif
