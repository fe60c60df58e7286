/* Strict UTF-8 decoding, shared by the URI mapper and the IMAP name codec,
 * and the one filter that keeps text XML 1.0 can carry. */
#ifndef MAILPUBSUB_UTF8_H
#define MAILPUBSUB_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What replaces every byte of invalid UTF-8 and every character XML 1.0
 * forbids: U+FFFD REPLACEMENT CHARACTER. */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

/* The code point at s[*i] (no overlongs, no surrogates, at most U+10FFFF),
 * advancing *i past it; -1 for invalid input (*i unchanged). */
int32_t utf8_next(const unsigned char *s, size_t len, size_t *i);

/* XML 1.0's Char production: tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD,
 * U+10000-U+10FFFF. */
bool utf8_xml_char(int32_t cp);

/* Is s[0..len) valid UTF-8 made of XML characters only? */
bool utf8_xml_valid(const char *s, size_t len);

/* A copy of s[0..len) with each invalid byte and each character XML 1.0
 * forbids (C0 controls but tab/LF/CR, U+FFFE, U+FFFF, NUL) replaced by
 * U+FFFD; *replaced_r (may be NULL) counts the replacements, *len_r (may
 * be NULL) the result's length. malloc()ed and NUL-terminated; NULL when
 * out of memory. */
char *utf8_xml_clean(const char *s, size_t len, size_t *replaced_r,
		     size_t *len_r);

#endif
