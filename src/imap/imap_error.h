/* Error text into a caller-owned buffer, for the IMAP modules (every one
 * reports why a step failed into an error[] of its own, and the text ends
 * up in logs and imap_client_last_error()). */
#ifndef MAILPUBSUB_IMAP_ERROR_H
#define MAILPUBSUB_IMAP_ERROR_H

#include <stddef.h>

/* snprintf into dst: truncating a long message is fine (and through
 * vsnprintf GCC does not warn about it). */
void imap_error_set(char *dst, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
