#include "handlers/disco.h"

#include <stdlib.h>
#include <string.h>

#include "ingest/discovery.h"
#include "publish/item.h"
#include "base/log.h"
#include "store/node_tree.h"
#include "handlers/pubsub.h"
#include "xmpp/pubsub_error.h"
#include "handlers/request.h"
#include "handlers/service.h"
#include "xmpp/address.h"
#include "xmpp/stanza.h"

/* Only what is implemented: a client must be able to trust this list. */
static const char *const service_features[] = {
	DISCO_INFO_NS,
	DISCO_ITEMS_NS,
	PUBSUB_NS,
	PUBSUB_NS "#subscribe",
	PUBSUB_NS "#retrieve-subscriptions",
	PUBSUB_NS "#retrieve-items",
	PUBSUB_NS "#last-published",
	PUBSUB_NS "#persistent-items",
	PUBSUB_NS "#meta-data",
	PUBSUB_NS "#subscription-options",
	PUBSUB_NS "#retrieve-default",
	"urn:xmpp:ping",
};

static void add_identity(xmpp_ctx_t *ctx, xmpp_stanza_t *q, const char *type,
			 const char *name)
{
	xmpp_stanza_t *id = stanza_add_child(ctx, q, "identity", NULL);

	xmpp_stanza_set_attribute(id, "category", "pubsub");
	xmpp_stanza_set_attribute(id, "type", type);
	if (name != NULL)
		xmpp_stanza_set_attribute(id, "name", name);
}

static void add_features(xmpp_ctx_t *ctx, xmpp_stanza_t *q)
{
	for (size_t i = 0; i < sizeof(service_features) / sizeof(service_features[0]); i++)
		xmpp_stanza_set_attribute(stanza_add_child(ctx, q, "feature", NULL), "var",
					  service_features[i]);
}

static void add_field(xmpp_ctx_t *ctx, xmpp_stanza_t *form, const char *var,
		      const char *type, const char *value)
{
	xmpp_stanza_t *field = stanza_add_child(ctx, form, "field", NULL);

	xmpp_stanza_set_attribute(field, "var", var);
	if (type != NULL)
		xmpp_stanza_set_attribute(field, "type", type);
	stanza_add_text(ctx, stanza_add_child(ctx, field, "value", NULL), value);
}

/* XEP-0060 5.4: node meta-data as an XEP-0128 extended info form. */
static void add_meta_data(xmpp_ctx_t *ctx, xmpp_stanza_t *q, const char *node)
{
	xmpp_stanza_t *form = stanza_add_child(ctx, q, "x", "jabber:x:data");

	xmpp_stanza_set_type(form, "result");
	add_field(ctx, form, "FORM_TYPE", "hidden", PUBSUB_NS "#meta-data");
	add_field(ctx, form, "pubsub#type", NULL, ITEM_NS);
	add_field(ctx, form, "pubsub#title", NULL, node);
	add_field(ctx, form, "pubsub#description", NULL, "IMAP mailbox events (RFC 5423)");
}

static void reply_info(struct request *req)
{
	struct service *service = req->service;
	xmpp_ctx_t *ctx = component_xmpp_ctx(service->publish->component);
	xmpp_stanza_t *reply, *q;

	reply = pubsub_error_result(ctx, req->iq);
	q = stanza_add_query(ctx, reply, DISCO_INFO_NS, req->node);
	if (req->node == NULL) {
		add_identity(ctx, q, "service", "Mailbox events");
	} else {
		add_identity(ctx, q, "leaf", req->node);
		add_meta_data(ctx, q, req->node);
	}
	add_features(ctx, q);
	service_send_release(service, reply);
}

/* ---- items: children the asker may see (right l on each) ---- */

struct listing;

struct listed {
	struct listing *listing;
	char *node;
	bool visible;
};

struct listing {
	struct request *req;
	struct listed *nodes;
	size_t n, cap, pending;
};

static int collect_child(void *context, const char *node)
{
	struct listing *l = context;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct listed *nodes = realloc(l->nodes, cap * sizeof(*nodes));

		if (nodes == NULL)
			return 1;
		l->nodes = nodes;
		l->cap = cap;
	}
	l->nodes[l->n].listing = l;
	l->nodes[l->n].node = strdup(node);
	l->nodes[l->n].visible = false;
	l->n++;
	return 0;
}

static void add_node_item(xmpp_ctx_t *ctx, xmpp_stanza_t *query, const char *jid,
			  const char *node)
{
	xmpp_stanza_t *it = stanza_add_child(ctx, query, "item", NULL);
	const char *slash = strrchr(node, '/');

	xmpp_stanza_set_attribute(it, "jid", jid);
	xmpp_stanza_set_attribute(it, "node", node);
	xmpp_stanza_set_attribute(it, "name", slash != NULL ? slash + 1 : node);
}

/* The component domain lists the asker's own account service, so a client
 * can find its mailboxes from the domain alone. */
static void add_own_service(struct service *service, xmpp_ctx_t *ctx,
			    xmpp_stanza_t *query, const char *from)
{
	char *identity = authz_identity(service->publish->authz, from);
	char *jid;

	if (identity == NULL)
		return;
	jid = address_jid_for_account(service->publish->config, identity);
	if (jid != NULL) {
		xmpp_stanza_t *it = stanza_add_child(ctx, query, "item", NULL);

		xmpp_stanza_set_attribute(it, "jid", jid);
		xmpp_stanza_set_attribute(it, "name", identity);
	}
	free(jid);
	free(identity);
}

static void listing_reply(struct listing *l)
{
	struct request *req = l->req;
	struct service *service = req->service;
	xmpp_ctx_t *ctx = component_xmpp_ctx(service->publish->component);
	const char *to = xmpp_stanza_get_to(req->iq);
	xmpp_stanza_t *reply = pubsub_error_result(ctx, req->iq);
	xmpp_stanza_t *query = stanza_add_query(ctx, reply, DISCO_ITEMS_NS, req->node);

	if (req->node == NULL && strcmp(to, service->publish->config->component_domain) == 0)
		add_own_service(service, ctx, query, req->from);
	for (size_t i = 0; i < l->n; i++) {
		if (l->nodes[i].visible)
			add_node_item(ctx, query, to, l->nodes[i].node);
		free(l->nodes[i].node);
	}
	service_send_release(service, reply);
	free(l->nodes);
	request_free(&l->req);
	free(l);
}

static void child_decided(void *context, enum authz_result result)
{
	struct listed *item = context;
	struct listing *l = item->listing;

	item->visible = result == AUTHZ_GRANTED;
	if (--l->pending == 0)
		listing_reply(l);
}

static void reply_error(struct request *req, enum pubsub_error error)
{
	service_reply_error(req->service, req->iq, error, NULL);
	request_free(&req);
}

/* Takes l. */
static void list_children(struct listing *l)
{
	struct request *req = l->req;
	struct service *service = req->service;

	if (req->account != NULL)
		node_tree_children(service->publish->store, req->account, req->node,
				   collect_child, l);
	/* one extra count so that answers given at once cannot finish early */
	l->pending = l->n + 1;
	for (size_t i = 0; i < l->n; i++)
		authz_check_rights(service->publish->authz, req->from, req->account,
				   l->nodes[i].node, "l", child_decided, &l->nodes[i]);
	if (--l->pending == 0)
		listing_reply(l);
}

/* An account service's top level, once the tree knows the account. */
static void account_known(void *context, enum discovery_result result)
{
	struct listing *l = context;

	if (result == DISCOVERY_TEMPFAIL) {
		reply_error(l->req, PUBSUB_ERR_TEMPORARY);
		free(l);
		return;
	}
	list_children(l);
}

static void reply_items(struct request *req)
{
	struct service *service = req->service;
	struct listing *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		request_free(&req);
		return;
	}
	l->req = req;
	/* an account not seen yet is asked of the store before the answer;
	 * the children stay filtered by `l`, so what the asker may not see
	 * says nothing either way */
	if (req->account != NULL && req->node == NULL) {
		discovery_lookup(service->discovery, service->publish->store, req->account,
				 NULL, account_known, l);
		return;
	}
	list_children(l);
}

/* Takes req. */
static void answer(struct request *req)
{
	if (strcmp(xmpp_stanza_get_ns(req->op), DISCO_INFO_NS) == 0) {
		reply_info(req);
		request_free(&req);
		return;
	}
	reply_items(req);
}

/* disco on a node needs right l on it: without, it does not exist. */
static void node_accessed(struct request *req, enum request_access access)
{
	if (access == REQUEST_TEMPFAIL) {
		reply_error(req, PUBSUB_ERR_TEMPORARY);
		return;
	}
	if (access != REQUEST_OPEN) {
		reply_error(req, PUBSUB_ERR_NODE_NOT_FOUND);
		return;
	}
	answer(req);
}

void disco_handle(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *query)
{
	xmpp_ctx_t *ctx = component_xmpp_ctx(service->publish->component);
	const char *ns = xmpp_stanza_get_ns(query);
	const char *node = xmpp_stanza_get_attribute(query, "node");
	char *account = address_account_for_jid(service->publish->config, xmpp_stanza_get_to(iq));
	struct request *req;

	if (strcmp(xmpp_stanza_get_type(iq), "get") != 0 ||
	    (strcmp(ns, DISCO_INFO_NS) != 0 && strcmp(ns, DISCO_ITEMS_NS) != 0)) {
		service_send_release(service, pubsub_error_stanza_reply(ctx, iq,
				"cancel", "service-unavailable"));
		free(account);
		return;
	}
	if (account == NULL && !address_is_domain(service->publish->config, xmpp_stanza_get_to(iq))) {
		/* a service localpart that is no account name: nothing there */
		service_send_release(service, pubsub_error_reply(ctx, iq,
				PUBSUB_ERR_NODE_NOT_FOUND, NULL));
		return;
	}
	req = request_new(service, iq, query, account, node);
	free(account);
	if (req == NULL || req->op == NULL) {
		request_free(&req);
		service_send_release(service, pubsub_error_reply(ctx, iq,
				PUBSUB_ERR_INTERNAL, NULL));
		return;
	}
	if (node != NULL && req->account != NULL) {
		request_access(req, false, node_accessed);
		return;
	}
	if (node != NULL) {
		/* the component domain, when not the shared service, has no nodes */
		reply_error(req, PUBSUB_ERR_NODE_NOT_FOUND);
		return;
	}
	answer(req);
}
