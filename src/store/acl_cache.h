/* The ACL cache (authz/authz.c): what MYRIGHTS answered for an identity
 * on a mailbox, kept until an expiry on the monotonic clock. A TEMP table:
 * a cache is never worth keeping across restarts. Keys are (account, node,
 * identity); account "" is the shared folders. */
#ifndef MAILPUBSUB_ACL_CACHE_H
#define MAILPUBSUB_ACL_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

/* Creates the table (once per connection). */
int acl_cache_init(struct store *store, const char **error_r);

/* 1 and rights (NUL-terminated, truncated to size) when an answer that
 * expires after now_us is cached, 0 otherwise (errors are logged and
 * count as a miss). */
int acl_cache_get(struct store *store, const char *identity, const char *account,
		  const char *node, long long now_us, char *rights, size_t size);
/* Caches rights until expires_us (replacing what was there). */
int acl_cache_put(struct store *store, const char *identity, const char *account,
		  const char *node, const char *rights, long long expires_us);
/* Forgets the answer for one identity on one mailbox. */
int acl_cache_drop(struct store *store, const char *identity, const char *account,
		   const char *node);
/* Forgets every identity's answer on node, with subtree on its
 * descendants too. */
int acl_cache_drop_mailbox(struct store *store, const char *account, const char *node,
			   bool subtree);
/* Forgets everything. */
int acl_cache_clear(struct store *store);

#endif
