#include "disco.h"

#include <stdlib.h>
#include <string.h>

#include "item.h"
#include "log.h"
#include "node_tree.h"
#include "pubsub.h"
#include "pubsub_error.h"
#include "request.h"
#include "service.h"

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

static xmpp_stanza_t *add_el(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
			     const char *name)
{
	xmpp_stanza_t *el = xmpp_stanza_new(ctx);

	xmpp_stanza_set_name(el, name);
	xmpp_stanza_add_child_ex(parent, el, 0);
	return el;
}

static xmpp_stanza_t *new_query(xmpp_ctx_t *ctx, xmpp_stanza_t *reply,
				const char *ns, const char *node)
{
	xmpp_stanza_t *q = add_el(ctx, reply, "query");

	xmpp_stanza_set_ns(q, ns);
	if (node != NULL)
		xmpp_stanza_set_attribute(q, "node", node);
	return q;
}

static void add_identity(xmpp_ctx_t *ctx, xmpp_stanza_t *q, const char *type,
			 const char *name)
{
	xmpp_stanza_t *id = add_el(ctx, q, "identity");

	xmpp_stanza_set_attribute(id, "category", "pubsub");
	xmpp_stanza_set_attribute(id, "type", type);
	if (name != NULL)
		xmpp_stanza_set_attribute(id, "name", name);
}

static void add_features(xmpp_ctx_t *ctx, xmpp_stanza_t *q)
{
	for (size_t i = 0; i < sizeof(service_features) / sizeof(service_features[0]); i++)
		xmpp_stanza_set_attribute(add_el(ctx, q, "feature"), "var",
					  service_features[i]);
}

static void add_field(xmpp_ctx_t *ctx, xmpp_stanza_t *form, const char *var,
		      const char *type, const char *value)
{
	xmpp_stanza_t *field = add_el(ctx, form, "field");
	xmpp_stanza_t *v = add_el(ctx, field, "value");
	xmpp_stanza_t *text = xmpp_stanza_new(ctx);

	xmpp_stanza_set_attribute(field, "var", var);
	if (type != NULL)
		xmpp_stanza_set_attribute(field, "type", type);
	xmpp_stanza_set_text(text, value);
	xmpp_stanza_add_child_ex(v, text, 0);
}

/* XEP-0060 5.4: node meta-data as an XEP-0128 extended info form. */
static void add_meta_data(xmpp_ctx_t *ctx, xmpp_stanza_t *q, const char *node)
{
	xmpp_stanza_t *form = add_el(ctx, q, "x");

	xmpp_stanza_set_ns(form, "jabber:x:data");
	xmpp_stanza_set_type(form, "result");
	add_field(ctx, form, "FORM_TYPE", "hidden", PUBSUB_NS "#meta-data");
	add_field(ctx, form, "pubsub#type", NULL, ITEM_NS);
	add_field(ctx, form, "pubsub#title", NULL, node);
	add_field(ctx, form, "pubsub#description", NULL, "IMAP mailbox events (RFC 5423)");
}

static void reply_info(struct request *req, bool node_visible)
{
	struct service *service = req->service;
	xmpp_ctx_t *ctx = component_xmpp_ctx(service->component);
	xmpp_stanza_t *reply, *q;

	if (req->node != NULL && !node_visible) {
		service_send_release(service, pubsub_error_reply(ctx, req->iq,
				PUBSUB_ERR_NODE_NOT_FOUND, NULL));
		return;
	}
	reply = pubsub_error_result(ctx, req->iq);
	q = new_query(ctx, reply, DISCO_INFO_NS, req->node);
	if (req->node == NULL) {
		add_identity(ctx, q, "service", "Mailbox events");
	} else {
		add_identity(ctx, q, "leaf", req->node);
		add_meta_data(ctx, q, req->node);
	}
	add_features(ctx, q);
	service_send_release(service, reply);
}

struct items_ctx {
	xmpp_ctx_t *ctx;
	xmpp_stanza_t *query;
	const char *jid;
};

static int add_node_item(void *context, const char *node)
{
	struct items_ctx *ic = context;
	xmpp_stanza_t *it = add_el(ic->ctx, ic->query, "item");
	const char *slash = strrchr(node, '/');

	xmpp_stanza_set_attribute(it, "jid", ic->jid);
	xmpp_stanza_set_attribute(it, "node", node);
	xmpp_stanza_set_attribute(it, "name", slash != NULL ? slash + 1 : node);
	return 0;
}

/* The component domain lists the asker's own account service, so a client
 * can find its mailboxes from the domain alone. */
static void add_own_service(struct service *service, struct items_ctx *ic,
			    const char *from)
{
	char *identity = authz_identity(service->authz, from);
	char *jid;

	if (identity == NULL)
		return;
	jid = service_jid_for_account(service, identity);
	if (jid != NULL) {
		xmpp_stanza_t *it = add_el(ic->ctx, ic->query, "item");

		xmpp_stanza_set_attribute(it, "jid", jid);
		xmpp_stanza_set_attribute(it, "name", identity);
	}
	free(jid);
	free(identity);
}

static void reply_items(struct request *req, bool visible)
{
	struct service *service = req->service;
	xmpp_ctx_t *ctx = component_xmpp_ctx(service->component);
	const char *to = xmpp_stanza_get_to(req->iq);
	xmpp_stanza_t *reply;
	struct items_ctx ic = { .ctx = ctx, .jid = to };

	if (req->node != NULL && !visible) {
		service_send_release(service, pubsub_error_reply(ctx, req->iq,
				PUBSUB_ERR_NODE_NOT_FOUND, NULL));
		return;
	}
	reply = pubsub_error_result(ctx, req->iq);
	ic.query = new_query(ctx, reply, DISCO_ITEMS_NS, req->node);
	if (req->node == NULL && strcmp(to, service->config->component_domain) == 0)
		add_own_service(service, &ic, req->from);
	if (visible && req->account != NULL)
		node_tree_children(service->store, req->account, req->node,
				   add_node_item, &ic);
	service_send_release(service, reply);
}

static void authorized(void *context, enum authz_result result)
{
	struct request *req = context;
	const char *ns = xmpp_stanza_get_ns(req->op);
	bool visible = result == AUTHZ_GRANTED &&
		       (req->node == NULL ||
			node_tree_exists(req->service->store, req->account, req->node));

	if (strcmp(ns, DISCO_INFO_NS) == 0)
		reply_info(req, visible);
	else
		reply_items(req, visible);
	request_free(&req);
}

void disco_handle(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *query)
{
	xmpp_ctx_t *ctx = component_xmpp_ctx(service->component);
	const char *ns = xmpp_stanza_get_ns(query);
	const char *node = xmpp_stanza_get_attribute(query, "node");
	char *account = service_account_for_jid(service, xmpp_stanza_get_to(iq));
	struct request *req;

	if (strcmp(xmpp_stanza_get_type(iq), "get") != 0 ||
	    (strcmp(ns, DISCO_INFO_NS) != 0 && strcmp(ns, DISCO_ITEMS_NS) != 0)) {
		service_send_release(service, pubsub_error_stanza_reply(ctx, iq,
				"cancel", "service-unavailable"));
		free(account);
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
	if (req->account == NULL) {
		/* the component domain when it is not the shared service: it
		 * holds no nodes, so there is nothing to decide */
		authorized(req, node == NULL ? AUTHZ_GRANTED : AUTHZ_DENIED);
		return;
	}
	authz_check(service->authz, req->from, req->account, node, authorized, req);
}
