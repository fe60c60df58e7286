/* The firehose's subscribers (downstream/firehose.c; MAM reads them too):
 * one row per bare JID with its subid and content policy ("none",
 * "headers" or "full"). Who may subscribe is configuration
 * ([firehose] subscribers), not kept here. */
#ifndef MAILPUBSUB_FIREHOSE_SUBS_H
#define MAILPUBSUB_FIREHOSE_SUBS_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

/* Creates the table. */
int firehose_subs_init(struct store *store, const char **error_r);

/* Subscribes jid with content policy content, or changes the policy of its
 * subscription. subid: in, the subid for a new subscription; out, the
 * subscription's (an existing one keeps its own). */
int firehose_subs_put(struct store *store, const char *jid, const char *content,
		      long long now_us, char *subid, size_t subid_size);

/* 1 when jid is subscribed (subid and content, either may be NULL, filled
 * and truncated to their sizes), 0 when not, -1 on error. */
int firehose_subs_get(struct store *store, const char *jid, char *subid,
		      size_t subid_size, char *content, size_t content_size);

/* 1 when jid's subscription was removed, 0 when there was none, -1 on
 * error. */
int firehose_subs_drop(struct store *store, const char *jid);

/* Calls cb for each subscriber in JID order until it returns non-zero.
 * Do not change the table from cb. */
typedef int firehose_subs_cb(void *context, const char *jid, const char *content);
int firehose_subs_each(struct store *store, firehose_subs_cb *cb, void *context);

bool firehose_subs_any(struct store *store);

/* The strongest policy any subscriber has: "full", "headers", or NULL when
 * nobody wants content. */
const char *firehose_subs_strongest(struct store *store);

#endif
