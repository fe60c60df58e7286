/* Expat's reparse deferral, switched off for the XMPP stream.
 *
 * Expat 2.6 (and Debian 12's 2.5.0 since the CVE-2023-52425 fix was
 * backported) defers re-parsing a token that arrives in pieces until the
 * buffer has grown by a good part. That suits files; in a stream nothing
 * may follow a stanza, so a stanza of more than a few KiB sits unparsed
 * until the next bytes arrive: an 8 KiB request waited for the next ping.
 * libstrophe 0.12 creates and resets its parser itself and does not switch
 * the deferral off, so this module interposes the two expat functions it
 * uses (XML_ParserCreate_MM, XML_ParserReset) and does it there. */
#ifndef MAILPUBSUB_EXPAT_STREAM_H
#define MAILPUBSUB_EXPAT_STREAM_H

#include <stdbool.h>

/* True when this expat has the deferral and we can switch it off; false
 * when it has none (nothing to do). Calling it also keeps the interposers
 * linked in from the static library. */
bool expat_stream_deferral_off(void);

#endif
