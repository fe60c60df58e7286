#include "publish/revocation.h"

#include <stdlib.h>
#include <string.h>

#include "authz/authz.h"
#include "base/log.h"
#include "publish/item.h"
#include "store/node_tree.h"
#include "store/subscription.h"
#include "xmpp/address.h"
#include "xmpp/component.h"
#include "xmpp/stanza.h"

struct recheck {
	struct publish_service *service;
	char *account, *node, *jid, *subid;
};

static void recheck_free(struct recheck *rc)
{
	free(rc->account);
	free(rc->node);
	free(rc->jid);
	free(rc->subid);
	free(rc);
}

static void send_subscription_none(struct publish_service *service, const char *account,
				   const char *node, const char *jid)
{
	xmpp_ctx_t *ctx = component_xmpp_ctx(service->component);
	char *from = address_jid_for_account(service->config, account);
	xmpp_stanza_t *msg, *ev, *sub;

	if (from == NULL)
		return;
	msg = xmpp_message_new(ctx, NULL, jid, NULL);
	xmpp_stanza_set_from(msg, from);
	ev = stanza_add_child(ctx, msg, "event", PUBSUB_EVENT_NS);
	sub = stanza_add_child(ctx, ev, "subscription", NULL);
	xmpp_stanza_set_attribute(sub, "node", node);
	xmpp_stanza_set_attribute(sub, "jid", jid);
	xmpp_stanza_set_attribute(sub, "subscription", "none");
	component_send(service->component, msg);
	xmpp_stanza_release(msg);
	free(from);
}

static void recheck_decided(void *context, enum authz_result result)
{
	struct recheck *rc = context;
	struct publish_service *service = rc->service;

	if (result == AUTHZ_DENIED &&
	    subscription_remove(service->store, rc->account, rc->node, rc->jid,
				rc->subid) == 1) {
		log_info("pubsub: rights gone: ended subscription of %s to %s/%s",
			 rc->jid, rc->account, rc->node);
		send_subscription_none(service, rc->account, rc->node, rc->jid);
	} else if (result == AUTHZ_TEMPFAIL) {
		log_warn("pubsub: cannot re-check %s on %s/%s now; subscription kept",
			 rc->jid, rc->account, rc->node);
	}
	recheck_free(rc);
}

struct recheck_list {
	struct recheck **items;
	size_t n, cap;
	struct publish_service *service;
};

static int collect_recheck(void *context, const struct subscription *sub)
{
	struct recheck_list *l = context;
	struct recheck *rc;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct recheck **items = realloc(l->items, cap * sizeof(*items));

		if (items == NULL)
			return 1;
		l->items = items;
		l->cap = cap;
	}
	rc = calloc(1, sizeof(*rc));
	if (rc == NULL)
		return 1;
	rc->service = l->service;
	rc->account = strdup(sub->account);
	rc->node = strdup(sub->node);
	rc->jid = strdup(sub->jid);
	rc->subid = strdup(sub->subid);
	l->items[l->n++] = rc;
	return 0;
}

struct subtree_walk {
	struct publish_service *service;
	const char *account;
	struct recheck_list *list;
};

static int collect_node(void *context, const char *node)
{
	struct subtree_walk *w = context;

	subscription_each_on_node(w->service->store, w->account, node,
				  collect_recheck, w->list);
	return 0;
}

void revocation_recheck(struct publish_service *service, const char *account,
		    const char *node, bool subtree)
{
	struct recheck_list list = { .service = service };
	struct subtree_walk walk = { service, account, &list };

	/* collected first: a decision may come back at once and change the
	 * table we would still be iterating */
	if (subtree)
		node_tree_subtree(service->store, account, node, collect_node, &walk);
	else
		collect_node(&walk, node);
	for (size_t i = 0; i < list.n; i++)
		authz_check(service->authz, list.items[i]->jid, list.items[i]->account,
			    list.items[i]->node, recheck_decided, list.items[i]);
	free(list.items);
}

