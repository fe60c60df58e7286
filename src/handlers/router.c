#include "handlers/router.h"

#include <string.h>

#include "base/log.h"
#include "downstream/content.h"
#include "handlers/disco.h"
#include "handlers/firehose_request.h"
#include "handlers/mam.h"
#include "handlers/pubsub.h"
#include "handlers/service.h"
#include "handlers/tap_request.h"
#include "publish/delegate.h"
#include "xmpp/stanza.h"

/* Order matters where rows overlap: the tap commands' disco#items node
 * before disco as a whole. */
static const struct router_route table[] = {
	{ MAM_NS, false, "query", NULL, NULL, mam_handle },
	/* the tap commands exist for [taps] admins only */
	{ COMMANDS_NS, false, "command", NULL, NULL, tap_request_command },
	{ DISCO_ITEMS_NS, false, NULL, "get", COMMANDS_NS, tap_request_disco_items },
	{ DISCO_NS_PREFIX, true, NULL, NULL, NULL, disco_handle },
	{ PUBSUB_NS, true, NULL, NULL, NULL, pubsub_handle },
	{ CONTENT_NS, false, "fetch", "get", NULL, firehose_request_fetch },
};

static bool route_matches(const struct router_route *r, const char *type,
			  const char *ns, xmpp_stanza_t *child)
{
	const char *node;

	if (r->ns_prefix ? strncmp(ns, r->ns, strlen(r->ns)) != 0 : strcmp(ns, r->ns) != 0)
		return false;
	if (r->element != NULL && strcmp(xmpp_stanza_get_name(child), r->element) != 0)
		return false;
	if (r->type != NULL && strcmp(type, r->type) != 0)
		return false;
	if (r->node == NULL)
		return true;
	node = xmpp_stanza_get_attribute(child, "node");
	return node != NULL && strcmp(node, r->node) == 0;
}

const struct router_route *router_find(const struct router_route *routes,
				       size_t n, const char *type, xmpp_stanza_t *child)
{
	const char *ns = xmpp_stanza_get_ns(child);

	if (ns == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (route_matches(&routes[i], type, ns, child))
			return &routes[i];
	}
	return NULL;
}

static void handle_iq(struct service *service, xmpp_stanza_t *iq)
{
	const char *type = xmpp_stanza_get_type(iq);
	xmpp_stanza_t *child;
	const struct router_route *route;

	if (type == NULL)
		return;
	if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
		delegate_handle_reply(service->publish->delegate, iq);
		return;
	}
	service->publish->stats.iq_requests++;
	child = stanza_first_element(iq);
	if (child == NULL || xmpp_stanza_get_ns(child) == NULL ||
	    (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)) {
		service_reply_stanza_error(service, iq, "modify", "bad-request");
		return;
	}
	route = router_find(table, sizeof(table) / sizeof(table[0]), type, child);
	if (route == NULL) {
		service_reply_stanza_error(service, iq, "cancel", "service-unavailable");
		return;
	}
	route->handle(service, iq, child);
}

void router_handle_stanza(void *context, xmpp_stanza_t *stanza)
{
	struct service *service = context;
	const char *name = xmpp_stanza_get_name(stanza);

	if (strcmp(name, "iq") == 0)
		handle_iq(service, stanza);
	/* messages and presence to the service carry nothing we act on; an
	 * error <message/> bouncing back from a gone subscriber is logged */
	else if (strcmp(name, "message") == 0 &&
		 xmpp_stanza_get_type(stanza) != NULL &&
		 strcmp(xmpp_stanza_get_type(stanza), "error") == 0)
		log_debug("service: notification bounced from %s",
			  xmpp_stanza_get_from(stanza));
}
