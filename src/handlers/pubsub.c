#include "base/clock.h"
#include "handlers/pubsub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "downstream/firehose.h"
#include "handlers/firehose_request.h"
#include "publish/delivery.h"
#include "publish/item.h"
#include "store/items.h"
#include "base/jid.h"
#include "base/log.h"
#include "store/node_tree.h"
#include "xmpp/pubsub_error.h"
#include "handlers/request.h"
#include "handlers/service.h"
#include "model/subopts.h"
#include "store/subscription.h"
#include "base/utf8.h"
#include "base/xml_escape.h"
#include "xmpp/address.h"
#include "xmpp/stanza.h"

#define PUBSUB_OWNER_NS PUBSUB_NS "#owner"

/* What a request for each unsupported operation lacks, by element name
 * (XEP-0060 section 10 feature names). */
static const struct {
	const char *element;
	const char *feature;
} unsupported_ops[] = {
	{ "publish", "publish" },
	{ "create", "create-nodes" },
	{ "configure", "config-node" },
	{ "delete", "delete-nodes" },
	{ "retract", "retract-items" },
	{ "purge", "purge-nodes" },
	{ "affiliations", "retrieve-affiliations" },
};

static bool same_bare(const char *a, const char *b)
{
	char *ba = jid_bare(a), *bb = jid_bare(b);
	bool same = ba != NULL && bb != NULL && strcmp(ba, bb) == 0;

	free(ba);
	free(bb);
	return same;
}

/* ---- last item ---- */

struct last_item {
	struct service *service;
	const char *account, *from, *node, *to;
	bool check;
};

static int send_item(void *context, long long seq, long long published_us,
		     const char *payload)
{
	struct last_item *li = context;
	struct item_message msg;
	char *text;
	size_t len;

	if (item_message_build(li->from, li->node, seq, payload, published_us, &msg) < 0)
		return 1;
	text = item_message_for(&msg, li->to, &len);
	if (text != NULL)
		delivery_send(li->service->publish->delivery, li->to, text, len,
			      li->check ? DELIVERY_CHECK : DELIVERY_NOW, li->account,
			      li->node);
	free(text);
	item_message_clear(&msg);
	return 1;
}

static void send_last_of(struct service *service, const char *account,
			 const char *from, const char *node, const char *jid,
			 bool check)
{
	struct last_item li = { service, account, from, node, jid, check };

	items_each_newest(service->publish->store, account, node, 1, send_item, &li);
}

struct covered {
	struct service *service;
	const char *account, *from, *root, *jid;
	int depth;
};

static int send_last_covered(void *context, const char *node)
{
	struct covered *c = context;
	size_t rlen = strlen(c->root);

	if (strcmp(node, c->root) == 0)
		return 0;
	/* depth 1: direct children only */
	if (c->depth == 1 && strchr(node + rlen + 1, '/') != NULL)
		return 0;
	send_last_of(c->service, c->account, c->from, node, c->jid, true);
	return 0;
}

/* The state of every mailbox a subscription covers: a subtree subscriber
 * (a message-waiting indicator for the whole account) learns all counts at
 * once. Descendants are checked against the subscriber's rights. */
static void send_last_items(struct service *service, const char *account,
			    const char *node, const char *jid, int depth)
{
	char *from = address_jid_for_account(service->publish->config, account);
	struct covered c = { service, account, from, node, jid, depth };

	if (from == NULL)
		return;
	send_last_of(service, account, from, node, jid, false);
	if (depth != 0)
		node_tree_subtree(service->publish->store, account, node, send_last_covered, &c);
	free(from);
}

/* ---- subscribe (6.1) ---- */

static void reply_subscription(struct request *req, const char *jid, const char *subid,
			       const char *state)
{
	xmpp_ctx_t *ctx = service_xmpp_ctx(req->service);
	xmpp_stanza_t *reply = pubsub_error_result(ctx, req->iq);
	xmpp_stanza_t *ps = stanza_add_child(ctx, reply, "pubsub", PUBSUB_NS);
	xmpp_stanza_t *sub = stanza_add_child(ctx, ps, "subscription", NULL);

	xmpp_stanza_set_attribute(sub, "node", req->node);
	xmpp_stanza_set_attribute(sub, "jid", jid);
	if (subid != NULL)
		xmpp_stanza_set_attribute(sub, "subid", subid);
	xmpp_stanza_set_attribute(sub, "subscription", state);
	service_send_release(req->service, reply);
}

/* The options submitted with a subscribe or options request, over the
 * defaults. Returns -1 (reason in *error_r) for an invalid form. */
static int requested_options(xmpp_stanza_t *options, struct subopts *opts,
			     const char **error_r)
{
	xmpp_stanza_t *x;

	subopts_defaults(opts);
	if (options == NULL)
		return 0;
	x = xmpp_stanza_get_child_by_name_and_ns(options, "x", "jabber:x:data");
	if (x == NULL)
		return 0;
	return subopts_apply_form(x, opts, error_r);
}

/* The answer to a request the gate did not let through, by use case. */
static bool refused(struct request *req, enum request_access access,
		    enum pubsub_error closed)
{
	static const enum pubsub_error by_access[] = {
		[REQUEST_NOT_FOUND] = PUBSUB_ERR_NODE_NOT_FOUND,
		[REQUEST_TEMPFAIL] = PUBSUB_ERR_TEMPORARY,
	};

	if (access == REQUEST_OPEN)
		return false;
	service_reply_error(req->service, req->iq, access == REQUEST_CLOSED ? closed :
		    by_access[access], NULL);
	return true;
}

static void subscribe_accessed(struct request *req, enum request_access access)
{
	struct service *service = req->service;
	xmpp_stanza_t *op = xmpp_stanza_get_child_by_name(req->op, "subscribe");
	const char *jid = xmpp_stanza_get_attribute(op, "jid");
	char subid[SUBSCRIPTION_SUBID_LEN + 1];
	struct subopts opts;
	const char *error;
	bool created;

	/* validated before asking; cannot fail now */
	if (requested_options(xmpp_stanza_get_child_by_name(req->op, "options"),
			      &opts, &error) < 0)
		subopts_defaults(&opts);

	if (refused(req, access, PUBSUB_ERR_SUBSCRIBE_CLOSED_NODE)) {
		/* answered */
	} else if (subscription_count_for_jid(service->publish->store, jid) >=
		   service->publish->config->max_subscriptions_per_jid &&
		   subscription_find(service->publish->store, req->account, req->node, jid, NULL) != 1) {
		service_reply_error(service, req->iq, PUBSUB_ERR_SUBSCRIBE_TOO_MANY, NULL);
	} else if (subscription_add(service->publish->store, req->account, req->node, jid,
				    &opts, clock_now_us(), subid, &created) < 0) {
		service_reply_error(service, req->iq, PUBSUB_ERR_INTERNAL, NULL);
	} else {
		log_info("pubsub: %s subscribed to %s/%s%s", jid,
			 req->account, req->node, created ? "" : " (again)");
		reply_subscription(req, jid, subid, "subscribed");
		/* 6.1.7: the last published item follows the result */
		if (opts.deliver)
			send_last_items(service, req->account, req->node, jid, opts.depth);
	}
	request_free(&req);
}

/* A request kept for the gate (request_access); NULL after answering
 * the error itself. */
static struct request *keep_request(struct service *service, xmpp_stanza_t *iq,
				    xmpp_stanza_t *ps, const char *account,
				    const char *node)
{
	struct request *req = request_new(service, iq, ps, account, node);

	if (req == NULL || req->op == NULL) {
		request_free(&req);
		service_reply_error(service, iq, PUBSUB_ERR_INTERNAL, NULL);
	}
	return req;
}

static void handle_subscribe(struct service *service, xmpp_stanza_t *iq,
			     xmpp_stanza_t *ps, xmpp_stanza_t *op,
			     const char *account)
{
	const char *node = xmpp_stanza_get_attribute(op, "node");
	const char *jid = xmpp_stanza_get_attribute(op, "jid");
	struct request *req;
	struct subopts opts;
	const char *error;

	if (node == NULL) {
		service_reply_error(service, iq, PUBSUB_ERR_NODEID_REQUIRED, NULL);
		return;
	}
	if (jid == NULL || !same_bare(jid, xmpp_stanza_get_from(iq))) {
		service_reply_error(service, iq, PUBSUB_ERR_SUBSCRIBE_INVALID_JID, NULL);
		return;
	}
	if (requested_options(xmpp_stanza_get_child_by_name(ps, "options"), &opts,
			      &error) < 0) {
		log_info("pubsub: %s: invalid subscription options: %s",
			 xmpp_stanza_get_from(iq), error);
		service_reply_error(service, iq, PUBSUB_ERR_OPTIONS_INVALID, NULL);
		return;
	}
	req = keep_request(service, iq, ps, account, node);
	if (req != NULL)
		request_access(req, true, subscribe_accessed);
}

/* ---- unsubscribe (6.2) ---- */

/* Unsubscribe and options need a subscription; without one, the answer
 * must not tell a node the asker may not see from none at all. */
static void unsubscribed_accessed(struct request *req, enum request_access access)
{
	bool options = xmpp_stanza_get_child_by_name(req->op, "options") != NULL;

	if (!refused(req, access, PUBSUB_ERR_NODE_NOT_FOUND))
		service_reply_error(req->service, req->iq, options ?
			    PUBSUB_ERR_OPTIONS_NOT_SUBSCRIBED :
			    PUBSUB_ERR_UNSUBSCRIBE_NOT_SUBSCRIBED, NULL);
	request_free(&req);
}

/* Returns 1 when jid has a subscription to node, 0 after answering. */
static int subscribed_or_answer(struct service *service, xmpp_stanza_t *iq,
				xmpp_stanza_t *ps, const char *account,
				const char *node, const char *jid, char *subid)
{
	int found = subscription_find(service->publish->store, account, node, jid, subid);
	struct request *req;

	if (found < 0) {
		service_reply_error(service, iq, PUBSUB_ERR_INTERNAL, NULL);
		return 0;
	}
	if (found == 1)
		return 1;
	req = keep_request(service, iq, ps, account, node);
	if (req != NULL)
		request_access(req, false, unsubscribed_accessed);
	return 0;
}

static void handle_unsubscribe(struct service *service, xmpp_stanza_t *iq,
			       xmpp_stanza_t *ps, xmpp_stanza_t *op,
			       const char *account)
{
	const char *node = xmpp_stanza_get_attribute(op, "node");
	const char *jid = xmpp_stanza_get_attribute(op, "jid");
	const char *subid = xmpp_stanza_get_attribute(op, "subid");
	char have[SUBSCRIPTION_SUBID_LEN + 1];

	if (node == NULL) {
		service_reply_error(service, iq, PUBSUB_ERR_NODEID_REQUIRED, NULL);
		return;
	}
	if (jid == NULL || !same_bare(jid, xmpp_stanza_get_from(iq))) {
		service_reply_error(service, iq, PUBSUB_ERR_UNSUBSCRIBE_FORBIDDEN, NULL);
		return;
	}
	if (!subscribed_or_answer(service, iq, ps, account, node, jid, have))
		return;
	if (subid != NULL && strcmp(subid, have) != 0) {
		service_reply_error(service, iq, PUBSUB_ERR_UNSUBSCRIBE_INVALID_SUBID, NULL);
		return;
	}
	if (subscription_remove(service->publish->store, account, node, jid, NULL) < 0) {
		service_reply_error(service, iq, PUBSUB_ERR_INTERNAL, NULL);
		return;
	}
	log_info("pubsub: %s unsubscribed from %s/%s", jid, account, node);
	service_send_release(service, pubsub_error_result(service_xmpp_ctx(service), iq));
}

/* ---- subscription options (6.3, 6.4) ---- */

static void reply_form(struct service *service, xmpp_stanza_t *iq,
		       const char *element, const char *node, const char *jid,
		       const struct subopts *opts)
{
	xmpp_ctx_t *ctx = service_xmpp_ctx(service);
	xmpp_stanza_t *reply = pubsub_error_result(ctx, iq);
	xmpp_stanza_t *ps = stanza_add_child(ctx, reply, "pubsub", PUBSUB_NS);
	xmpp_stanza_t *el = stanza_add_child(ctx, ps, element, NULL);

	if (node != NULL)
		xmpp_stanza_set_attribute(el, "node", node);
	if (jid != NULL)
		xmpp_stanza_set_attribute(el, "jid", jid);
	xmpp_stanza_add_child_ex(el, subopts_form(ctx, opts), 0);
	service_send_release(service, reply);
}

static void handle_options(struct service *service, xmpp_stanza_t *iq,
			   xmpp_stanza_t *ps, xmpp_stanza_t *op,
			   const char *account, bool set)
{
	const char *node = xmpp_stanza_get_attribute(op, "node");
	const char *jid = xmpp_stanza_get_attribute(op, "jid");
	char have[SUBSCRIPTION_SUBID_LEN + 1];
	struct subopts opts;
	const char *error;
	xmpp_stanza_t *x;

	if (node == NULL) {
		service_reply_error(service, iq, PUBSUB_ERR_NODEID_REQUIRED, NULL);
		return;
	}
	if (jid == NULL || !same_bare(jid, xmpp_stanza_get_from(iq))) {
		service_reply_error(service, iq, PUBSUB_ERR_OPTIONS_FORBIDDEN, NULL);
		return;
	}
	if (!subscribed_or_answer(service, iq, ps, account, node, jid, have))
		return;
	if (subscription_get_options(service->publish->store, account, node, jid, &opts) <= 0) {
		service_reply_error(service, iq, PUBSUB_ERR_INTERNAL, NULL);
		return;
	}
	if (!set) {
		reply_form(service, iq, "options", node, jid, &opts);
		return;
	}
	x = xmpp_stanza_get_child_by_name_and_ns(op, "x", "jabber:x:data");
	if (x == NULL || subopts_apply_form(x, &opts, &error) < 0) {
		log_info("pubsub: %s: invalid subscription options: %s",
			 xmpp_stanza_get_from(iq), x == NULL ? "no form" : error);
		service_reply_error(service, iq, PUBSUB_ERR_OPTIONS_INVALID, NULL);
		return;
	}
	if (subscription_set_options(service->publish->store, account, node, jid, &opts) < 0) {
		service_reply_error(service, iq, PUBSUB_ERR_INTERNAL, NULL);
		return;
	}
	log_info("pubsub: %s changed its options on %s/%s", jid, account, node);
	service_send_release(service, pubsub_error_result(service_xmpp_ctx(service), iq));
}

static void handle_default(struct service *service, xmpp_stanza_t *iq,
			   xmpp_stanza_t *op)
{
	struct subopts opts;

	subopts_defaults(&opts);
	reply_form(service, iq, "default", xmpp_stanza_get_attribute(op, "node"),
		   NULL, &opts);
}

/* ---- retrieve subscriptions (5.6) ---- */

struct list_ctx {
	xmpp_ctx_t *ctx;
	xmpp_stanza_t *parent;
};

static int add_subscription(void *context, const struct subscription *sub)
{
	struct list_ctx *lc = context;
	xmpp_stanza_t *el = stanza_add_child(lc->ctx, lc->parent, "subscription", NULL);

	xmpp_stanza_set_attribute(el, "node", sub->node);
	xmpp_stanza_set_attribute(el, "jid", sub->jid);
	xmpp_stanza_set_attribute(el, "subid", sub->subid);
	xmpp_stanza_set_attribute(el, "subscription", "subscribed");
	return 0;
}

static void handle_subscriptions(struct service *service, xmpp_stanza_t *iq,
				 xmpp_stanza_t *op, const char *account)
{
	xmpp_ctx_t *ctx = service_xmpp_ctx(service);
	const char *node = xmpp_stanza_get_attribute(op, "node");
	char *bare = jid_bare(xmpp_stanza_get_from(iq));
	xmpp_stanza_t *reply, *ps;
	struct list_ctx lc = { .ctx = ctx };

	if (bare == NULL) {
		service_reply_error(service, iq, PUBSUB_ERR_BAD_REQUEST, NULL);
		return;
	}
	reply = pubsub_error_result(ctx, iq);
	ps = stanza_add_child(ctx, reply, "pubsub", PUBSUB_NS);
	lc.parent = stanza_add_child(ctx, ps, "subscriptions", NULL);
	if (node != NULL)
		xmpp_stanza_set_attribute(lc.parent, "node", node);
	subscription_each_of_jid(service->publish->store, account, node, bare,
				 add_subscription, &lc);
	free(bare);
	service_send_release(service, reply);
}

/* ---- retrieve items (6.5) ---- */

/* The reply is written as text around the stored payloads, so that its
 * size is known: it holds as many items as fit under [component]
 * max_stanza_size, and says with an RSM <set/> (XEP-0059) where it
 * stopped, so the rest can be asked for page by page. */
struct items_reply {
	char **items;          /* <item/> elements, in the order read */
	size_t n, cap;
	size_t len;            /* their bytes */
	size_t budget;
	bool cut;              /* stopped by the bound, not by the count */
};

static int collect_item(void *context, long long seq, long long published_us,
			const char *payload)
{
	struct items_reply *ir = context;
	char *text, *clean = NULL;
	int n;

	(void)published_us;
	/* items stored by an older version may hold what XML forbids */
	if (!utf8_xml_valid(payload, strlen(payload))) {
		clean = utf8_xml_clean(payload, strlen(payload), NULL, NULL);
		if (clean == NULL)
			return 1;
		payload = clean;
	}
	n = asprintf(&text, "<item id='%lld'>%s</item>", seq, payload);
	free(clean);
	if (n < 0)
		return 1;
	/* only an item stored before items were bounded can be too big
	 * alone: its id tells the client it exists */
	if ((size_t)n > ir->budget && ir->n == 0) {
		free(text);
		n = asprintf(&text, "<item id='%lld'/>", seq);
		if (n < 0)
			return 1;
	}
	if (ir->len + (size_t)n > ir->budget || ir->n == ir->cap) {
		ir->cut = true;
		free(text);
		return 1;
	}
	ir->items[ir->n++] = text;
	ir->len += (size_t)n;
	return 0;
}

/* A number in an RSM element, or dflt. */
static long long rsm_number(xmpp_stanza_t *set, const char *name, long long dflt)
{
	xmpp_stanza_t *c = set != NULL ? xmpp_stanza_get_child_by_name(set, name) : NULL;
	char *text = c != NULL ? xmpp_stanza_get_text(c) : NULL;
	long long v = dflt;

	if (text != NULL && *text != '\0' && strlen(text) < 19 &&
	    strspn(text, "0123456789") == strlen(text))
		v = atoll(text);
	if (text != NULL)
		xmpp_free(xmpp_stanza_get_context(c), text);
	return v;
}

/* 6.5.8: specific items by id, in the order asked; unknown ids are
 * simply absent */
static void collect_by_id(struct service *service, struct request *req,
			  xmpp_stanza_t *op, struct items_reply *ir)
{
	for (xmpp_stanza_t *want = xmpp_stanza_get_child_by_name(op, "item");
	     want != NULL && !ir->cut; want = xmpp_stanza_get_next(want)) {
		const char *id = xmpp_stanza_is_tag(want) ? xmpp_stanza_get_id(want) : NULL;

		if (id != NULL && atoll(id) > 0)
			items_get(service->publish->store, req->account, req->node, atoll(id),
				  collect_item, ir);
	}
}

/* The first and last ids of the page in publication order, and how many
 * the node keeps. */
static char *rsm_set(struct service *service, struct request *req,
		     const struct items_reply *ir, bool newest_first)
{
	const char *oldest = ir->n > 0 ? ir->items[newest_first ? ir->n - 1 : 0] : NULL;
	const char *newest = ir->n > 0 ? ir->items[newest_first ? 0 : ir->n - 1] : NULL;
	long long count = items_count(service->publish->store, req->account, req->node);
	char *out;
	int n;

	if (oldest == NULL)
		n = asprintf(&out, "<set xmlns='" RSM_NS "'><count>%lld</count></set>",
			     count > 0 ? count : 0);
	else
		n = asprintf(&out, "<set xmlns='" RSM_NS "'><first>%lld</first>"
			     "<last>%lld</last><count>%lld</count></set>",
			     atoll(oldest + strlen("<item id='")),
			     atoll(newest + strlen("<item id='")), count > 0 ? count : 0);
	return n < 0 ? NULL : out;
}

static void send_items(struct service *service, struct request *req,
		       struct items_reply *ir, bool newest_first, bool want_set)
{
	char *enode = xml_escape(req->node);
	char *set = want_set || ir->cut ? rsm_set(service, req, ir, newest_first) : NULL;
	size_t total = ir->len + 256 + (set != NULL ? strlen(set) : 0) +
		       (enode != NULL ? strlen(enode) : 0);
	char *body = malloc(total), *o = body;

	if (enode == NULL || body == NULL) {
		service_reply_error(service, req->iq, PUBSUB_ERR_INTERNAL, NULL);
	} else {
		o += sprintf(o, "<pubsub xmlns='" PUBSUB_NS "'><items node='%s'>", enode);
		/* clients expect publication order */
		for (size_t i = 0; i < ir->n; i++) {
			const char *item = ir->items[newest_first ? ir->n - 1 - i : i];

			o = stpcpy(o, item);
		}
		o = stpcpy(o, "</items>");
		if (set != NULL)
			o = stpcpy(o, set);
		stpcpy(o, "</pubsub>");
		service_send_result_raw(service, req->iq, body);
	}
	free(body);
	free(set);
	free(enode);
}

static void items_accessed(struct request *req, enum request_access access)
{
	struct service *service = req->service;
	xmpp_stanza_t *op = xmpp_stanza_get_child_by_name(req->op, "items");
	xmpp_stanza_t *set = xmpp_stanza_get_child_by_name_and_ns(req->op, "set", RSM_NS);
	const char *max = xmpp_stanza_get_attribute(op, "max_items");
	unsigned limit = service->publish->config->max_items_per_request;
	long long rsm_max = rsm_number(set, "max", 0);
	long long after = rsm_number(set, "after", 0);
	long long before = rsm_number(set, "before", 0);
	struct items_reply ir = { 0 };
	bool newest_first = after <= 0;

	if (refused(req, access, PUBSUB_ERR_ITEMS_CLOSED_NODE)) {
		request_free(&req);
		return;
	}
	if (max != NULL && atoi(max) > 0 && (unsigned)atoi(max) < limit)
		limit = (unsigned)atoi(max);
	if (rsm_max > 0 && (unsigned long long)rsm_max < limit)
		limit = (unsigned)rsm_max;
	ir.cap = limit > 0 ? limit : 1;
	ir.budget = item_max_stanza() - ITEM_WRAPPER_RESERVE;
	ir.items = calloc(ir.cap, sizeof(*ir.items));
	if (ir.items == NULL) {
		service_reply_error(service, req->iq, PUBSUB_ERR_INTERNAL, NULL);
		request_free(&req);
		return;
	}
	if (xmpp_stanza_get_child_by_name(op, "item") != NULL) {
		newest_first = false;
		collect_by_id(service, req, op, &ir);
	} else {
		items_each_between(service->publish->store, req->account, req->node, after,
				   before, newest_first, limit, collect_item, &ir);
	}
	send_items(service, req, &ir, newest_first, set != NULL);
	for (size_t i = 0; i < ir.n; i++)
		free(ir.items[i]);
	free(ir.items);
	request_free(&req);
}

static void handle_items(struct service *service, xmpp_stanza_t *iq,
			 xmpp_stanza_t *ps, xmpp_stanza_t *op, const char *account)
{
	const char *node = xmpp_stanza_get_attribute(op, "node");
	struct request *req;

	if (node == NULL) {
		service_reply_error(service, iq, PUBSUB_ERR_NODEID_REQUIRED, NULL);
		return;
	}
	req = keep_request(service, iq, ps, account, node);
	if (req != NULL)
		request_access(req, true, items_accessed);
}

/* ---- dispatch ---- */

static const char *unsupported_feature(const char *name, bool owner)
{
	if (owner && strcmp(name, "subscriptions") == 0)
		return "manage-subscriptions";
	if (owner && strcmp(name, "affiliations") == 0)
		return "modify-affiliations";
	for (size_t i = 0; i < sizeof(unsupported_ops) / sizeof(unsupported_ops[0]); i++) {
		if (strcmp(unsupported_ops[i].element, name) == 0)
			return unsupported_ops[i].feature;
	}
	return NULL;
}

void pubsub_handle(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *ps)
{
	const char *type = xmpp_stanza_get_type(iq);
	bool owner = strcmp(xmpp_stanza_get_ns(ps), PUBSUB_OWNER_NS) == 0;
	xmpp_stanza_t *op = stanza_first_element(ps);
	const char *name = op != NULL ? xmpp_stanza_get_name(op) : "";
	bool set = strcmp(type, "set") == 0;
	const char *op_node = op != NULL ? xmpp_stanza_get_attribute(op, "node") : NULL;
	const char *to = xmpp_stanza_get_to(iq);
	char *account;
	const char *feature;

	if (!owner && op_node != NULL && strcmp(op_node, FIREHOSE_NODE) == 0 &&
	    to != NULL && strcasecmp(to, service->publish->config->component_domain) == 0) {
		firehose_request_pubsub(service, iq, ps, op);
		return;
	}
	account = address_account_for_jid(service->publish->config, to);
	if (account == NULL) {
		/* the bare component domain when it is not the shared service */
		service_reply_stanza_error(service, iq, "cancel", "item-not-found");
		return;
	}
	if (!owner && set && strcmp(name, "subscribe") == 0)
		handle_subscribe(service, iq, ps, op, account);
	else if (!owner && set && strcmp(name, "unsubscribe") == 0)
		handle_unsubscribe(service, iq, ps, op, account);
	else if (!owner && !set && strcmp(name, "subscriptions") == 0)
		handle_subscriptions(service, iq, op, account);
	else if (!owner && !set && strcmp(name, "items") == 0)
		handle_items(service, iq, ps, op, account);
	else if (!owner && strcmp(name, "options") == 0)
		handle_options(service, iq, ps, op, account, set);
	else if (!owner && !set && strcmp(name, "default") == 0)
		handle_default(service, iq, op);
	else if ((feature = unsupported_feature(name, owner)) != NULL)
		service_reply_error(service, iq, PUBSUB_ERR_UNSUPPORTED, feature);
	else
		service_reply_error(service, iq, PUBSUB_ERR_BAD_REQUEST, NULL);
	free(account);
}
