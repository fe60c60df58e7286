/* A request kept across an asynchronous authorization decision. */
#ifndef MAILPUBSUB_REQUEST_H
#define MAILPUBSUB_REQUEST_H

#include <strophe.h>

struct service;

struct request {
	struct service *service;
	xmpp_stanza_t *iq;      /* own reference (a copy) */
	xmpp_stanza_t *op;      /* child of iq: the operation element */
	char *account;          /* the service addressed; NULL: none */
	char *node;             /* may be NULL */
	char *from;             /* requester, full JID */
};

/* Copies what it needs; op must be a descendant of iq. */
struct request *request_new(struct service *service, xmpp_stanza_t *iq,
			    xmpp_stanza_t *op, const char *account,
			    const char *node);
void request_free(struct request **request);

#endif
