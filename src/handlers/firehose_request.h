/* The firehose's request handlers (its journal step is
 * downstream/firehose.c): subscribe, unsubscribe, items with RSM
 * catch-up, subscriptions and options on node "mailpubsub:firehose" for
 * the JIDs [firehose] subscribers names (node-not-found for anybody
 * else), and <fetch/> of a large message's content in chunks. */
#ifndef MAILPUBSUB_FIREHOSE_REQUEST_H
#define MAILPUBSUB_FIREHOSE_REQUEST_H

#include <strophe.h>

struct service;

/* A pubsub request naming the firehose node (op: the operation element
 * in pubsub). */
void firehose_request_pubsub(struct service *service, xmpp_stanza_t *iq,
			     xmpp_stanza_t *pubsub, xmpp_stanza_t *op);
/* <fetch xmlns='urn:mailpubsub:content:0' item= offset= length=/>. */
void firehose_request_fetch(struct service *service, xmpp_stanza_t *iq,
			    xmpp_stanza_t *fetch);

#endif
