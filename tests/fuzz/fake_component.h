/* A component (src/xmpp/component.h) that connects nothing: what the service
 * sends is serialized, checked and counted. Linked before libmailpubsub.a
 * so that the real component.o is never pulled in. */
#ifndef MAILPUBSUB_FUZZ_FAKE_COMPONENT_H
#define MAILPUBSUB_FUZZ_FAKE_COMPONENT_H

#include <stddef.h>
#include <strophe.h>

#include "xmpp/component.h"

struct fake_component_stats {
	unsigned long long stanzas;   /* component_send */
	unsigned long long raw;       /* component_send_raw */
	unsigned long long bytes;
};

/* ctx is borrowed. */
struct component *fake_component_new(xmpp_ctx_t *ctx);
void fake_component_free(struct component **component);
const struct fake_component_stats *fake_component_stats(const struct component *c);

#endif
