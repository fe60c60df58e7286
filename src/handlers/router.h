/* The IQ router: a table of {namespace, element, type, node} rows, each
 * naming the request handler that answers it (like libstrophe's handler
 * list). A request no row takes gets service-unavailable; replies to our
 * own requests go to the delegate. */
#ifndef MAILPUBSUB_ROUTER_H
#define MAILPUBSUB_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include <strophe.h>

struct service;

/* A request handler: iq is a get or set addressed to us, child its first
 * element (the one the route matched). Answers iq exactly once, now or
 * later (it copies what it keeps: iq is released after the call). */
typedef void router_handler(struct service *service, xmpp_stanza_t *iq,
			    xmpp_stanza_t *child);

/* One row of the router table: a request goes to the first row whose
 * every non-NULL field matches. */
struct router_route {
	const char *ns;         /* the child's namespace */
	bool ns_prefix;         /* ns is a prefix (disco#info and #items,
				 * pubsub and pubsub#owner) */
	const char *element;    /* the child's name; NULL: any */
	const char *type;       /* "get" or "set"; NULL: either */
	const char *node;       /* the child's node attribute; NULL: any */
	router_handler *handle;
};

/* The first row of routes (n rows) for a request of type whose first
 * element is child, or NULL. */
const struct router_route *router_find(const struct router_route *routes,
				       size_t n, const char *type, xmpp_stanza_t *child);

/* The component's on_stanza callback (context: struct service). */
void router_handle_stanza(void *context, xmpp_stanza_t *stanza);

#endif
