/* JID helpers: splitting, bare JIDs and XEP-0106 escaping of localparts
 * (an IMAP account may contain '@', ' ' or '/', a JID localpart may not). */
#ifndef MAILPUBSUB_JID_H
#define MAILPUBSUB_JID_H

#include <stddef.h>

/* All return newly allocated strings (free()), or NULL on malformed input. */
char *jid_bare(const char *jid);
char *jid_domain(const char *jid);
/* The localpart as written (escaped form), or "" if there is none. */
char *jid_local(const char *jid);
char *jid_escape_local(const char *account);
char *jid_unescape_local(const char *local);

#endif
