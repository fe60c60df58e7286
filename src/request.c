#include "request.h"

#include <stdlib.h>
#include <string.h>

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
