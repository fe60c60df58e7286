/* A request kept across an asynchronous authorization decision, and the
 * gate every request about one node passes: authorization first, then
 * existence (asking the store about a mailbox the tree does not know yet),
 * so that the answer about a mailbox the asker may not see is the same
 * whether it exists or not. */
#ifndef MAILPUBSUB_REQUEST_H
#define MAILPUBSUB_REQUEST_H

#include <stdbool.h>
#include <strophe.h>

struct service;
struct request;

enum request_access {
	REQUEST_OPEN,       /* the rights asked for are held; the node exists */
	REQUEST_CLOSED,     /* the asker sees the node (l) but lacks the rest */
	REQUEST_NOT_FOUND,  /* no such node, or the asker may not see it:
	                     * one answer, so existence never leaks */
	REQUEST_TEMPFAIL,   /* the store could not be asked in time */
};

/* Called exactly once, possibly before request_access returns; the
 * callee owns req again. */
typedef void request_access_cb(struct request *req, enum request_access access);

struct request {
	struct service *service;
	xmpp_stanza_t *iq;      /* own reference (a copy) */
	xmpp_stanza_t *op;      /* child of iq: the operation element */
	char *account;          /* the service addressed; NULL: none */
	char *node;             /* may be NULL */
	char *from;             /* requester, full JID */
	/* request_access's state while it runs */
	request_access_cb *access_cb;
	bool granted;
};

/* Copies what it needs; op must be a descendant of iq. */
struct request *request_new(struct service *service, xmpp_stanza_t *iq,
			    xmpp_stanza_t *op, const char *account,
			    const char *node);
void request_free(struct request **request);

/* May req->from see req->node of req->account (RFC 4314 right l), and with
 * read also read it (l and r, a cached refusal asked of the store again as
 * authz_check_request does), and does the node exist? Takes req until cb. */
void request_access(struct request *req, bool read, request_access_cb *cb);

#endif
