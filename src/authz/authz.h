/* Who may read what: the single entry point every pubsub access goes
 * through (subscribe, items, last item, disco, re-checks).
 *
 * A JID maps to an IMAP identity ([accounts] jid_domains by localpart,
 * [account_map] per JID; unmapped JIDs are refused). With [imap] host set,
 * the identity may read a mailbox iff the store says it holds both `l` and
 * `r` there (RFC 4314): MYRIGHTS in a session proxy-authorized as the
 * identity, so negative rights, groups, `anyone` and `authenticated` come
 * out exactly as the server evaluates them. Answers are cached for
 * acl_cache_ttl; ACL changes, renames and deletes the store reports drop
 * them at once. When the store cannot be asked the answer is
 * AUTHZ_TEMPFAIL: never a grant.
 *
 * With [backends], the rights on an account's mailboxes are asked of the
 * server that holds the account (a front instance fed by the bus).
 *
 * Without [imap] host, the identity may read its own account only. */
#ifndef MAILPUBSUB_AUTHZ_H
#define MAILPUBSUB_AUTHZ_H

#include <stdbool.h>

#include "base/config.h"
#include "imap/imap_backends.h"
#include "imap/imap_client.h"
#include "base/stats.h"
#include "store/store.h"

enum authz_result {
	AUTHZ_GRANTED,
	AUTHZ_DENIED,
	AUTHZ_TEMPFAIL,   /* the store could not be asked: fail closed, retry */
};

struct authz;

/* What authz_check and its kin answered, for status and metrics. */
struct authz_stats {
	unsigned long long decisions[3];  /* by enum authz_result */
	unsigned long long cache_hits;    /* answered from the ACL cache */
	unsigned long long cache_misses;  /* the store was asked */
	struct stats_histogram latency; /* question to answer, seconds */
};

/* Called exactly once, possibly before authz_check returns. */
typedef void authz_cb(void *context, enum authz_result result);

/* imap may be NULL (owner-only policy); it is borrowed, as is store. */
int authz_new(const struct config *config, struct store *store,
	      struct imap_client *imap, struct authz **authz_r,
	      const char **error_r);
void authz_free(struct authz **authz);
const struct authz_stats *authz_stats(const struct authz *authz);
/* [backends] (several mail servers behind one service): rights on an
 * account's mailboxes are asked of the server imap_backends_pick names
 * for it, the imap client given to authz_new for accounts it does not
 * map. Borrowed; NULL: that client for every account. */
void authz_set_backends(struct authz *authz, const struct imap_backends *backends);

/* The IMAP identity a JID maps to (newly allocated), or NULL if unmapped. */
char *authz_identity(const struct authz *authz, const char *jid);

/* May jid read mailbox node of account (rights l and r)? node NULL asks
 * about the account service itself: its owner only. */
void authz_check(struct authz *authz, const char *jid, const char *account,
		 const char *node, authz_cb *cb, void *context);
/* authz_check for a client's request on one node (subscribe, items): a
 * cached refusal is asked of the store again. The grant that makes it wrong may have been made a moment
 * ago, its AclChange event still queued behind a backlog in the journal;
 * a user just given access must not be refused by our stale answer.
 * Cached grants stand: AclChange re-checks every subscription anyway. */
void authz_check_request(struct authz *authz, const char *jid,
			 const char *account, const char *node,
			 authz_cb *cb, void *context);
/* Does jid hold every right in `required` (RFC 4314 letters, e.g. "l" to
 * see that the mailbox exists) on node of account? */
void authz_check_rights(struct authz *authz, const char *jid,
			const char *account, const char *node,
			const char *required, authz_cb *cb, void *context);

/* The answer from the cache alone, without asking the store: for a
 * mailbox that is gone (a MailboxDelete), whose rights can no longer be
 * asked. AUTHZ_TEMPFAIL when nothing is cached. */
enum authz_result authz_cached(struct authz *authz, const char *jid,
			       const char *account, const char *node);
/* authz_cached for the rights in `required`: after a refusal, whether the
 * asker may at least see the mailbox (`l`), without a second decision. */
enum authz_result authz_cached_rights(struct authz *authz, const char *jid,
				      const char *account, const char *node,
				      const char *required);

/* Forget cached answers about node of account (and, with subtree, about
 * its descendants): its ACL changed, it moved or it is gone. */
void authz_invalidate(struct authz *authz, const char *account,
		      const char *node, bool subtree);
/* Drops every cached answer ([imap] acl_cache_ttl changed on SIGHUP: no
 * answer outlives the new bound). */
void authz_forget_all(struct authz *authz);

#endif
