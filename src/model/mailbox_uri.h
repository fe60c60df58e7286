/* RFC 5423 `uri` parameter (an IMAP URL, RFC 5092) to our node addressing.
 *
 * Cyrus names mailboxes in its admin namespace: `user/alice/Sub` (or
 * `user.alice.Sub` without unixhierarchysep), shared ones without the `user`
 * prefix. We map
 *   user<sep>alice                -> account "alice", node "INBOX"
 *   user<sep>alice<sep>A<sep>B    -> account "alice", node "INBOX/A/B"
 *   Shared<sep>X                  -> account "" (the shared service), node "Shared/X"
 * The node separator is always '/'. A level that itself contains '/' (only
 * possible with the '.' separator) or '%' is percent-encoded there
 * ("%2F", "%25") so that node names stay unambiguous. */
#ifndef MAILPUBSUB_MAILBOX_URI_H
#define MAILPUBSUB_MAILBOX_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mailbox_uri {
	char *server;        /* host part, may be NULL */
	char *account;       /* owner; "" for shared mailboxes; NULL if none */
	char *node;          /* node name; NULL when the URI names no mailbox */
	char *imap_name;     /* decoded admin-namespace name (UTF-8) */
	uint32_t uidvalidity; /* 0 when absent */
	uint32_t uid;        /* 0 when absent */
};

/* Parses uri with sep, the store's hierarchy separator ('/' or '.'). It is
 * configured, never guessed: with '/' a shared folder may well be named
 * "user.archive", and with '.' a user "john/doe".
 * On success fills *out (free with mailbox_uri_clear); on failure leaves
 * *out cleared and sets *error_r to a static string. */
int mailbox_uri_parse(const char *uri, char sep, struct mailbox_uri *out,
		      const char **error_r);
void mailbox_uri_clear(struct mailbox_uri *uri);

/* Percent-decodes src (RFC 3986) into a new NUL-terminated string;
 * rejects bad escapes, embedded NUL and invalid UTF-8. */
int mailbox_uri_decode(const char *src, size_t len, char **out_r,
		       const char **error_r);

/* The IMAP URL of node of account (the inverse of mailbox_uri_parse), with
 * the store's separator sep, ";UIDVALIDITY=" when uidvalidity > 0. Newly
 * allocated; NULL for a node that names no mailbox. */
char *mailbox_uri_build(const char *server, const char *account,
			const char *node, char sep, uint32_t uidvalidity);

/* True if node is a valid node name: non-empty UTF-8 levels joined by '/'. */
bool mailbox_uri_node_valid(const char *node);

#endif
