/* XEP-0060 errors, keyed by use case: the same pubsub condition maps to a
 * different stanza error depending on what was asked (section 6, 7). */
#ifndef MAILPUBSUB_PUBSUB_ERROR_H
#define MAILPUBSUB_PUBSUB_ERROR_H

#include <strophe.h>

enum pubsub_error {
	PUBSUB_ERR_NODEID_REQUIRED,           /* any use case without node */
	PUBSUB_ERR_NODE_NOT_FOUND,            /* any use case */
	PUBSUB_ERR_SUBSCRIBE_INVALID_JID,     /* 6.1.3.1 */
	PUBSUB_ERR_SUBSCRIBE_CLOSED_NODE,     /* 6.1.3.4 (whitelist) */
	PUBSUB_ERR_SUBSCRIBE_TOO_MANY,        /* 6.1.3.9 */
	PUBSUB_ERR_TEMPORARY,                 /* any use case: the store could not
	                                       * be asked (rights or existence) */
	PUBSUB_ERR_UNSUBSCRIBE_FORBIDDEN,     /* 6.2.3.3 */
	PUBSUB_ERR_UNSUBSCRIBE_NOT_SUBSCRIBED,/* 6.2.3.2 */
	PUBSUB_ERR_UNSUBSCRIBE_INVALID_SUBID, /* 6.2.3.5 */
	PUBSUB_ERR_OPTIONS_INVALID,           /* 6.3.6.x, 6.3.7 */
	PUBSUB_ERR_OPTIONS_FORBIDDEN,         /* 6.3.4.1 */
	PUBSUB_ERR_OPTIONS_NOT_SUBSCRIBED,    /* 6.3.4.2 */
	PUBSUB_ERR_ITEMS_CLOSED_NODE,         /* 6.5.9.3 (whitelist) */
	PUBSUB_ERR_ITEM_NOT_FOUND,            /* 6.5.9.11 single item */
	PUBSUB_ERR_UNSUPPORTED,               /* 7.x: feature-not-implemented + unsupported */
	PUBSUB_ERR_BAD_REQUEST,
	PUBSUB_ERR_INTERNAL,
};

/* Builds the error reply to request (from set to the request's `to`).
 * feature names the unsupported feature for PUBSUB_ERR_UNSUPPORTED. */
xmpp_stanza_t *pubsub_error_reply(xmpp_ctx_t *ctx, xmpp_stanza_t *request,
				  enum pubsub_error error, const char *feature);

/* A plain stanza error (RFC 6120) with no pubsub condition. */
xmpp_stanza_t *pubsub_error_stanza_reply(xmpp_ctx_t *ctx, xmpp_stanza_t *request,
					 const char *type, const char *condition);

/* A reply of type result (from set, no lang). */
xmpp_stanza_t *pubsub_error_result(xmpp_ctx_t *ctx, xmpp_stanza_t *request);

#endif
