/* IMAP message flags as the IMAP client source keeps and compares them:
 * space separated, as FETCH FLAGS gives them, compared case-insensitively
 * (RFC 3501 2.3.2). Pure functions, any thread. */
#ifndef MAILPUBSUB_INGEST_IMAP_FLAGS_H
#define MAILPUBSUB_INGEST_IMAP_FLAGS_H

#include <stdbool.h>

/* flags sorted case-insensitively, duplicates and \Recent (per session,
 * not a state of the message) dropped. Newly allocated; NULL when out of
 * memory. */
char *ingest_imap_flags_normalize(const char *flags);

/* Whether flags hold \Seen; allocates nothing (counts run over every
 * message of a mailbox). */
bool ingest_imap_flags_seen(const char *flags);

/* How one message's flags changed, sorted as Cyrus reports it: \Seen set
 * is MessageRead, \Deleted set MessageTrash, any other flag set
 * FlagsSet, any flag cleared (\Seen too: "mark unread") FlagsClear. */
struct ingest_imap_flag_change {
	bool seen;                 /* \Seen was set */
	bool deleted;              /* \Deleted was set */
	char *added;               /* the other flags set, in now's order; NULL: none */
	char *removed;             /* every flag cleared, in old's order; NULL: none */
};

/* Compares old and now (each as given); ch is owned by the caller
 * (ingest_imap_flag_change_clear). -1 when out of memory. */
int ingest_imap_flags_compare(const char *old, const char *now,
			      struct ingest_imap_flag_change *ch);
void ingest_imap_flag_change_clear(struct ingest_imap_flag_change *ch);

#endif
