/* A component (src/xmpp/component.h) that connects nothing: what the service
 * sends is serialized, checked and counted, and, for unit tests that read
 * their replies, kept. By default it is always up and every confirmation
 * (component_confirm) comes at once; a unit test that drives the stream
 * (tests/test_listeners.c) takes it up and down and answers the
 * confirmations itself, as the server's ping reply would be. Every
 * function of component.h is defined here, so a program listing this
 * file never needs the real component.o (one missing would fail the link
 * on the duplicates). */
#ifndef MAILPUBSUB_FUZZ_FAKE_COMPONENT_H
#define MAILPUBSUB_FUZZ_FAKE_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>
#include <strophe.h>

#include "xmpp/component.h"

struct fake_component_stats {
	unsigned long long stanzas;   /* component_send */
	unsigned long long raw;       /* component_send_raw */
	unsigned long long bytes;
};

/* ctx is borrowed. Starts connected. */
struct component *fake_component_new(xmpp_ctx_t *ctx);
void fake_component_free(struct component **component);
const struct fake_component_stats *fake_component_stats(const struct component *c);

/* From now on, keeps every stanza sent, serialized (off by default: the
 * fuzz targets only count). */
void fake_component_record(struct component *c, bool on);
/* How many were kept since the last clear. */
size_t fake_component_count(const struct component *c);
/* The i-th kept (0: the oldest), serialized; owned by the component. */
const char *fake_component_sent(const struct component *c, size_t i);
/* The most recent one kept, parsed (release it), or NULL when none. */
xmpp_stanza_t *fake_component_last(struct component *c);
void fake_component_clear(struct component *c);

/* Down, it refuses to send or confirm, and a confirmation out is lost
 * with the stream. */
void fake_component_set_connected(struct component *c, bool connected);
/* From now on, a confirmation waits until fake_component_confirm_answer()
 * (off by default: it comes at once). */
void fake_component_hold_confirms(struct component *c, bool on);
/* Is a held confirmation out? Then answer it (the server's ping reply). */
bool fake_component_confirm_pending(const struct component *c);
void fake_component_confirm_answer(struct component *c);

#endif
