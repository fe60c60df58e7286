/* Revocation: a subscription was authorized when it was made; when the
 * ACL of its node may have changed (an ACL event, a rename, an
 * administrator's command), it is asked again and ended if the rights are
 * gone. Below the handlers, so that the publisher (ACL events) and the
 * request handlers both call down to it. */
#ifndef MAILPUBSUB_REVOCATION_H
#define MAILPUBSUB_REVOCATION_H

#include <stdbool.h>

#include "publish/publish_service.h"

/* The ACL of node (with subtree: of node and its descendants) may have
 * changed: re-check every subscription there and end those the store no
 * longer allows, telling the subscriber (XEP-0060 subscription state
 * `none`). A temporary failure keeps the subscription. The decisions
 * come later (authz answers asynchronously) or at once (cached). */
void revocation_recheck(struct publish_service *service, const char *account,
			const char *node, bool subtree);

#endif
