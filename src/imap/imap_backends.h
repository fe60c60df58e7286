/* [backends]: the IMAP server holding each account, for a front instance
 * serving the accounts of several mail servers (their events come over
 * the bus). One imap_client per server, with the [imap] credentials and
 * settings and the host and port the section gives; an account is served
 * by the first line whose pattern (fnmatch(3), e.g. "alice" or
 * "*@b2.example.org") matches it, else by the [imap] host.
 *
 * Why a map and not a Cyrus Murder frontend: a frontend proxies MYRIGHTS
 * too, and works as the single [imap] host without this; but Dovecot
 * backends have no Murder, and a frontend is one more hop on every
 * question. Both work: leave [backends] empty behind a frontend. */
#ifndef MAILPUBSUB_IMAP_BACKENDS_H
#define MAILPUBSUB_IMAP_BACKENDS_H

#include <fnmatch.h>
#include <stddef.h>
#include <uv.h>

#include "base/config.h"
#include "imap/imap_client.h"

struct imap_backend {
	const char *pattern;          /* borrowed from the configuration */
	struct imap_client *client;   /* owned */
};

/* Public so that imap_backends_pick is inline: its users (authz,
 * discovery, counts) link without the IMAP client, as their unit tests
 * with a stand-in for it do. */
struct imap_backends {
	struct imap_backend *list;
	unsigned count;
	unsigned closing;             /* clients not closed yet */
	void (*done)(void *);
	void *context;
};

/* One client per line of list (count may be 0: *backends_r = NULL);
 * base gives everything but host and port. 0, or -1 with *error_r. */
int imap_backends_new(uv_loop_t *loop, const struct imap_settings *base,
		      const struct config_backend *list, unsigned count,
		      struct imap_backends **backends_r, const char **error_r);
/* The client of account's server; fallback when no line matches (or
 * backends is NULL). */
static inline struct imap_client *imap_backends_pick(const struct imap_backends *backends,
						     const char *account,
						     struct imap_client *fallback)
{
	if (backends == NULL || account == NULL)
		return fallback;
	for (unsigned i = 0; i < backends->count; i++) {
		if (fnmatch(backends->list[i].pattern, account, 0) == 0)
			return backends->list[i].client;
	}
	return fallback;
}
/* Closes every client (imap_client_close), frees, then done(context) from
 * the loop; done at once when *backends is NULL. Clears *backends. */
void imap_backends_close(struct imap_backends **backends, void (*done)(void *),
			 void *context);

#endif
