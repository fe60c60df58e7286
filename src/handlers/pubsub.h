/* XEP-0060 subscriber use cases (section 6): subscribe, unsubscribe,
 * retrieve subscriptions, retrieve items; everything a publisher or owner
 * would do is refused with the error section 7/8 names, because items come
 * from the mail store only. */
#ifndef MAILPUBSUB_PUBSUB_H
#define MAILPUBSUB_PUBSUB_H

#include <stdbool.h>
#include <strophe.h>

#include "xmpp/stanza.h"  /* PUBSUB_NS, RSM_NS */

struct service;

/* iq is a get/set whose child <pubsub/> (either namespace) is `pubsub`. */
void pubsub_handle(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *pubsub);

#endif
