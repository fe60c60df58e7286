#include "handlers/request.h"

#include <stdlib.h>
#include <string.h>

#include "ingest/discovery.h"
#include "handlers/service.h"

/* Finds in copy the element at the same position op has in orig. */
static xmpp_stanza_t *find_same(xmpp_stanza_t *orig, xmpp_stanza_t *copy,
				xmpp_stanza_t *op)
{
	xmpp_stanza_t *a = xmpp_stanza_get_children(orig);
	xmpp_stanza_t *b = xmpp_stanza_get_children(copy);

	for (; a != NULL && b != NULL; a = xmpp_stanza_get_next(a),
	     b = xmpp_stanza_get_next(b)) {
		if (a == op)
			return b;
	}
	return NULL;
}

struct request *request_new(struct service *service, xmpp_stanza_t *iq,
			    xmpp_stanza_t *op, const char *account,
			    const char *node)
{
	struct request *req = calloc(1, sizeof(*req));
	const char *from = xmpp_stanza_get_from(iq);

	if (req == NULL)
		return NULL;
	req->service = service;
	req->iq = xmpp_stanza_copy(iq);
	req->op = req->iq != NULL ? find_same(iq, req->iq, op) : NULL;
	req->account = account != NULL ? strdup(account) : NULL;
	req->node = node != NULL ? strdup(node) : NULL;
	req->from = strdup(from != NULL ? from : "");
	if (req->iq == NULL || (account != NULL && req->account == NULL) ||
	    req->from == NULL ||
	    (node != NULL && req->node == NULL)) {
		request_free(&req);
		return NULL;
	}
	return req;
}

void request_free(struct request **request)
{
	struct request *req = *request;

	if (req == NULL)
		return;
	if (req->iq != NULL)
		xmpp_stanza_release(req->iq);
	free(req->account);
	free(req->node);
	free(req->from);
	free(req);
	*request = NULL;
}

static void access_known(void *context, enum discovery_result result)
{
	struct request *req = context;

	req->access_cb(req, result == DISCOVERY_TEMPFAIL ? REQUEST_TEMPFAIL :
		       result == DISCOVERY_NOT_FOUND ? REQUEST_NOT_FOUND :
		       req->granted ? REQUEST_OPEN : REQUEST_CLOSED);
}

/* Existence only once the store has said the asker may see the node: the
 * tree, or a LIST of the account when the tree does not know it yet. */
static void look_up(struct request *req)
{
	struct service *service = req->service;

	discovery_lookup(service->discovery, service->publish->store, req->account,
			 req->node, access_known, req);
}

static void access_decided(void *context, enum authz_result result)
{
	struct request *req = context;
	struct service *service = req->service;

	if (result == AUTHZ_TEMPFAIL) {
		req->access_cb(req, REQUEST_TEMPFAIL);
		return;
	}
	req->granted = result == AUTHZ_GRANTED;
	/* refused: the answer just cached tells whether it was for want of
	 * `l`; without it (or without a cached answer) the node stays hidden */
	if (!req->granted &&
	    authz_cached_rights(service->publish->authz, req->from, req->account,
				req->node, "l") != AUTHZ_GRANTED) {
		req->access_cb(req, REQUEST_NOT_FOUND);
		return;
	}
	look_up(req);
}

void request_access(struct request *req, bool read, request_access_cb *cb)
{
	struct service *service = req->service;

	req->access_cb = cb;
	if (read)
		authz_check_request(service->publish->authz, req->from, req->account,
				    req->node, access_decided, req);
	else
		authz_check_rights(service->publish->authz, req->from, req->account,
				   req->node, "l", access_decided, req);
}
