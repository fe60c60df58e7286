#include "xmpp/pubsub_error.h"

#include <stddef.h>

#define STANZAS_NS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define PUBSUB_ERRORS_NS "http://jabber.org/protocol/pubsub#errors"

static const struct {
	const char *type;
	const char *condition;        /* RFC 6120 stanza error */
	const char *pubsub_condition; /* pubsub#errors, or NULL */
} errors[] = {
	[PUBSUB_ERR_NODEID_REQUIRED] = { "modify", "bad-request", "nodeid-required" },
	[PUBSUB_ERR_NODE_NOT_FOUND] = { "cancel", "item-not-found", NULL },
	[PUBSUB_ERR_SUBSCRIBE_INVALID_JID] = { "modify", "bad-request", "invalid-jid" },
	[PUBSUB_ERR_SUBSCRIBE_CLOSED_NODE] = { "cancel", "not-allowed", "closed-node" },
	[PUBSUB_ERR_SUBSCRIBE_TOO_MANY] = { "wait", "policy-violation", "too-many-subscriptions" },
	[PUBSUB_ERR_TEMPORARY] = { "wait", "remote-server-timeout", NULL },
	[PUBSUB_ERR_UNSUBSCRIBE_FORBIDDEN] = { "auth", "forbidden", NULL },
	[PUBSUB_ERR_UNSUBSCRIBE_NOT_SUBSCRIBED] = { "cancel", "unexpected-request", "not-subscribed" },
	[PUBSUB_ERR_UNSUBSCRIBE_INVALID_SUBID] = { "modify", "not-acceptable", "invalid-subid" },
	[PUBSUB_ERR_OPTIONS_INVALID] = { "modify", "bad-request", "invalid-options" },
	[PUBSUB_ERR_OPTIONS_FORBIDDEN] = { "auth", "forbidden", NULL },
	[PUBSUB_ERR_OPTIONS_NOT_SUBSCRIBED] = { "cancel", "unexpected-request", "not-subscribed" },
	[PUBSUB_ERR_ITEMS_CLOSED_NODE] = { "cancel", "not-allowed", "closed-node" },
	[PUBSUB_ERR_ITEM_NOT_FOUND] = { "cancel", "item-not-found", NULL },
	[PUBSUB_ERR_UNSUPPORTED] = { "cancel", "feature-not-implemented", "unsupported" },
	[PUBSUB_ERR_BAD_REQUEST] = { "modify", "bad-request", NULL },
	[PUBSUB_ERR_INTERNAL] = { "wait", "internal-server-error", NULL },
};

static xmpp_stanza_t *new_reply(xmpp_ctx_t *ctx, xmpp_stanza_t *request,
				const char *type)
{
	xmpp_stanza_t *reply = xmpp_stanza_new(ctx);
	const char *from = xmpp_stanza_get_from(request);
	const char *to = xmpp_stanza_get_to(request);
	const char *id = xmpp_stanza_get_id(request);

	/* built by hand rather than xmpp_stanza_reply(): that copies xml:lang
	 * and leaves `from` unset, which ejabberd rejects from a component */
	xmpp_stanza_set_name(reply, xmpp_stanza_get_name(request));
	xmpp_stanza_set_type(reply, type);
	if (id != NULL)
		xmpp_stanza_set_id(reply, id);
	if (from != NULL)
		xmpp_stanza_set_to(reply, from);
	if (to != NULL)
		xmpp_stanza_set_from(reply, to);
	return reply;
}

xmpp_stanza_t *pubsub_error_result(xmpp_ctx_t *ctx, xmpp_stanza_t *request)
{
	return new_reply(ctx, request, "result");
}

static xmpp_stanza_t *error_reply(xmpp_ctx_t *ctx, xmpp_stanza_t *request,
				  const char *type, const char *condition,
				  const char *pubsub_condition, const char *feature)
{
	xmpp_stanza_t *reply = new_reply(ctx, request, "error");
	xmpp_stanza_t *error = xmpp_stanza_new(ctx);
	xmpp_stanza_t *cond = xmpp_stanza_new(ctx);

	xmpp_stanza_set_name(error, "error");
	xmpp_stanza_set_type(error, type);
	xmpp_stanza_set_name(cond, condition);
	xmpp_stanza_set_ns(cond, STANZAS_NS);
	xmpp_stanza_add_child_ex(error, cond, 0);
	if (pubsub_condition != NULL) {
		xmpp_stanza_t *pc = xmpp_stanza_new(ctx);

		xmpp_stanza_set_name(pc, pubsub_condition);
		xmpp_stanza_set_ns(pc, PUBSUB_ERRORS_NS);
		if (feature != NULL)
			xmpp_stanza_set_attribute(pc, "feature", feature);
		xmpp_stanza_add_child_ex(error, pc, 0);
	}
	xmpp_stanza_add_child_ex(reply, error, 0);
	return reply;
}

xmpp_stanza_t *pubsub_error_reply(xmpp_ctx_t *ctx, xmpp_stanza_t *request,
				  enum pubsub_error error, const char *feature)
{
	return error_reply(ctx, request, errors[error].type, errors[error].condition,
			   errors[error].pubsub_condition, feature);
}

xmpp_stanza_t *pubsub_error_stanza_reply(xmpp_ctx_t *ctx, xmpp_stanza_t *request,
					 const char *type, const char *condition)
{
	return error_reply(ctx, request, type, condition, NULL, NULL);
}
