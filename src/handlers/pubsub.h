/* XEP-0060 subscriber use cases (section 6): subscribe, unsubscribe,
 * retrieve subscriptions, retrieve items; everything a publisher or owner
 * would do is refused with the error section 7/8 names, because items come
 * from the mail store only. */
#ifndef MAILPUBSUB_PUBSUB_H
#define MAILPUBSUB_PUBSUB_H

#include <stdbool.h>
#include <strophe.h>

struct service;

#define PUBSUB_NS "http://jabber.org/protocol/pubsub"
/* XEP-0059 result set management: items replies are paged with it */
#define RSM_NS "http://jabber.org/protocol/rsm"

/* iq is a get/set whose child <pubsub/> (either namespace) is `pubsub`. */
void pubsub_handle(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *pubsub);

/* The ACL of node (with subtree: of node and its descendants) may have
 * changed: re-check every subscription there and end those the store no
 * longer allows, telling the subscriber (XEP-0060 subscription state
 * `none`). A temporary failure keeps the subscription. */
void pubsub_recheck(struct service *service, const char *account,
		    const char *node, bool subtree);

#endif
