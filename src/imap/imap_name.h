/* IMAP mailbox names <-> our node names.
 *
 * Our nodes (see mailbox_uri.h) name a mailbox independently of who looks
 * at it: account "alice", node "INBOX/A/B"; shared mailboxes are account ""
 * with nodes like "Shared/X". An IMAP session sees the same mailbox under a
 * name that depends on the session's user and the server's namespaces
 * (RFC 2342): for alice herself it is "INBOX/A/B" (Cyrus; "A/B" with
 * altnamespace), for bob or an admin "user/alice/A/B", for a shared one
 * "Shared/X" or "Shared Folders/Shared/X". On the wire every name is in
 * IMAP modified UTF-7 (RFC 3501 5.1.3); node levels are UTF-8 with '%' and
 * '/' written as "%25" and "%2F".
 *
 * Pure functions, no I/O: unit tested in tests/test_imap_client.c. */
#ifndef MAILPUBSUB_IMAP_NAME_H
#define MAILPUBSUB_IMAP_NAME_H

#include <stdbool.h>

/* One namespace as the server announced it. prefix is in modified UTF-7
 * as sent ("INBOX/", "user/", ""); NULL when the server announced none
 * (Cyrus gives admins no personal namespace). sep is its hierarchy
 * delimiter, '\0' for a flat namespace. */
struct imap_ns {
	char *prefix;
	char sep;
};

struct imap_namespaces {
	struct imap_ns personal, other, shared;
	/* How another user's INBOX is named: false, the owner level itself
	 * ("user/alice", Cyrus); true, a level below it ("shared/alice/INBOX",
	 * Dovecot, where "shared/alice" is \Noselect). Not from NAMESPACE:
	 * RFC 2342 leaves it to the server, so it is configured. */
	bool other_inbox_named;
};

/* Frees the prefixes and clears *ns. */
void imap_namespaces_clear(struct imap_namespaces *ns);

/* UTF-8 -> modified UTF-7. Rejects invalid UTF-8 and NUL-free input only
 * (the string is NUL terminated). *out_r is malloc()ed. */
int imap_mutf7_encode(const char *utf8, char **out_r, const char **error_r);

/* Modified UTF-7 -> UTF-8. Rejects malformed shifts, bad base64, lone
 * surrogates, U+0000 and raw 8-bit bytes. *out_r is malloc()ed. */
int imap_mutf7_decode(const char *mutf7, char **out_r, const char **error_r);

/* The IMAP name (modified UTF-7) under which user `self` sees node of
 * account. self == account selects the personal namespace (unless the
 * server gave self none), another account the other-users namespace,
 * account "" the shared one. Fails for an invalid node, a level containing
 * the hierarchy separator and a namespace the server did not announce. */
int imap_name_from_node(const struct imap_namespaces *ns, const char *self,
			const char *account, const char *node, char **name_r,
			const char **error_r);

/* The reverse for a name from a LIST reply seen by self, with the
 * delimiter sep that LIST gave for it. Returns 0 and a node, 1 when the name
 * is not a mailbox of account (skip it), -1 for a name we cannot represent
 * (bad modified UTF-7, empty level). */
int imap_name_to_node(const struct imap_namespaces *ns, const char *self,
		      const char *account, const char *name, char sep,
		      char **node_r, const char **error_r);

#endif
