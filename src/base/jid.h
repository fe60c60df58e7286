/* JID helpers: splitting, bare JIDs and XEP-0106 escaping of localparts
 * (an IMAP account may contain '@', ' ' or '/', a JID localpart may not). */
#ifndef MAILPUBSUB_JID_H
#define MAILPUBSUB_JID_H

#include <stdbool.h>
#include <stddef.h>

/* All return newly allocated strings (free()), or NULL on malformed input. */
char *jid_bare(const char *jid);
char *jid_domain(const char *jid);
/* The localpart as written (escaped form), or "" if there is none. */
char *jid_local(const char *jid);
char *jid_escape_local(const char *account);
char *jid_unescape_local(const char *local);

/* May a JID name this IMAP account? Only names no IMAP server rewrites
 * into another: "local" or "local@domain", local 1-64 characters of
 * a-z 0-9 . _ - starting with a letter or digit and without the
 * hierarchy separator sep, domain lower-case LDH labels. Everything else
 * (upper case, spaces, controls, '%' '*' '+' '/' '\', 8-bit) would be
 * trimmed, case-folded, split or taken as a LIST pattern somewhere. */
bool jid_account_valid(const char *account, char sep);

#endif
