/* What the request handlers share (the router table that picks one is
 * handlers/router.c), and the replies they all send. Everything below
 * the handlers (publishing, delivery, the firehose's journal step) has
 * its own narrower context, struct publish_service, which this one
 * points to. */
#ifndef MAILPUBSUB_SERVICE_H
#define MAILPUBSUB_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include <strophe.h>

#include "publish/publish_service.h"
#include "xmpp/pubsub_error.h"

struct bus_in;
struct bus_out;
struct discovery;
struct firehose;
struct ingest_imap;
struct ingest_json;

struct service {
	struct publish_service *publish; /* main's; outlives the service */
	struct discovery *discovery;   /* NULL without [imap]: asked about
					* mailboxes the node tree does not know */
	struct firehose *firehose;     /* NULL until started */
	/* not the handlers': ops/ (status, metrics, control) reports them */
	struct ingest_json *ingest_json;   /* NULL without [json] socket or listen */
	struct ingest_imap *ingest_imap;   /* NULL without [imap_source] accounts */
	struct bus_in *bus_in;             /* NULL without [bus] consume */
	struct bus_out *bus_out;           /* NULL without [bus] urls and address */
};

/* Sends "<iq type='result'>" + body (serialized XML, may be "") in reply
 * to iq: for replies built as text, such as items with stored payloads. */
void service_send_result_raw(struct service *service, xmpp_stanza_t *iq,
			     const char *body);

/* Sends and releases reply (an error reply is counted). */
void service_send_release(struct service *service, xmpp_stanza_t *reply);

/* The XEP-0060 error reply for error (feature: for PUBSUB_ERR_UNSUPPORTED,
 * else NULL), sent. */
void service_reply_error(struct service *service, xmpp_stanza_t *iq,
			 enum pubsub_error error, const char *feature);
/* A plain RFC 6120 stanza error (type, condition), sent. */
void service_reply_stanza_error(struct service *service, xmpp_stanza_t *iq,
				const char *type, const char *condition);

/* The handlers' shorthand for the libstrophe context of the component. */
xmpp_ctx_t *service_xmpp_ctx(const struct service *service);

#endif
