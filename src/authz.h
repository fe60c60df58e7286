/* Who may subscribe to what: the single entry point every pubsub access
 * goes through (subscribe, items, last item, disco listings).
 *
 * Today's policy: a JID maps to an IMAP identity ([accounts] jid_domains,
 * [account_map]); it may read the mailboxes of that account only. The IMAP
 * ACL lookup (RFC 4314, MYRIGHTS as the identity) replaces the decision
 * behind the same asynchronous interface. */
#ifndef MAILPUBSUB_AUTHZ_H
#define MAILPUBSUB_AUTHZ_H

#include "config.h"

enum authz_result {
	AUTHZ_GRANTED,
	AUTHZ_DENIED,
	AUTHZ_TEMPFAIL,   /* the store could not be asked: fail closed, retry */
};

struct authz;

/* Called exactly once, possibly before authz_check returns. */
typedef void authz_cb(void *context, enum authz_result result);

int authz_new(const struct config *config, struct authz **authz_r,
	      const char **error_r);
void authz_free(struct authz **authz);

/* The IMAP identity a JID maps to (newly allocated), or NULL if unmapped. */
char *authz_identity(const struct authz *authz, const char *jid);

/* May jid read mailbox node of account? */
void authz_check(struct authz *authz, const char *jid, const char *account,
		 const char *node, authz_cb *cb, void *context);

#endif
