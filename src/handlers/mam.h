/* Message Archive Management (XEP-0313, urn:xmpp:mam:2) on the firehose
 * node, for subscribers with the `ediscovery` role: the journal queried by
 * time (form fields start, end) with RSM paging (max, after, before), each
 * result the item as the firehose published it to the asker (its content
 * policy), forwarded with the time it was received. */
#ifndef MAILPUBSUB_MAM_H
#define MAILPUBSUB_MAM_H

#include <strophe.h>

#define MAM_NS "urn:xmpp:mam:2"

struct service;

/* <iq type='set'><query xmlns='urn:xmpp:mam:2' node=.../></iq>. */
void mam_handle(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *query);

#endif
