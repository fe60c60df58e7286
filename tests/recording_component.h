/* A component (src/xmpp/component.h) for unit tests that connects nothing
 * and keeps, serialized, every stanza the code under test sends, so that
 * a test can read its replies. Every function of component.h is defined
 * here: a test lists this file in its SOURCES, and a missing one would
 * pull the real component.o in and fail the link on the duplicates. */
#ifndef MAILPUBSUB_RECORDING_COMPONENT_H
#define MAILPUBSUB_RECORDING_COMPONENT_H

#include <stddef.h>
#include <strophe.h>

#include "xmpp/component.h"

/* ctx is borrowed. */
struct component *recording_component_new(xmpp_ctx_t *ctx);
void recording_component_free(struct component **component);

/* How many stanzas were sent since the last clear. */
size_t recording_component_count(const struct component *c);
/* The i-th of them (0: the oldest), serialized; owned by the component. */
const char *recording_component_sent(const struct component *c, size_t i);
/* The most recent one, parsed (release it), or NULL when none. */
xmpp_stanza_t *recording_component_last(struct component *c);
void recording_component_clear(struct component *c);

#endif
