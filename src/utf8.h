/* Strict UTF-8 decoding, shared by the URI mapper and the IMAP name codec. */
#ifndef MAILPUBSUB_UTF8_H
#define MAILPUBSUB_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The code point at s[*i] (no overlongs, no surrogates, at most U+10FFFF),
 * advancing *i past it; -1 for invalid input (*i unchanged). */
int32_t utf8_next(const unsigned char *s, size_t len, size_t *i);

#endif
