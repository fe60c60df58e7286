/* A component (src/xmpp/component.h) for the journal listeners' unit tests
 * (tests/test_listeners.c): no connection, but one the test drives: it is
 * up or down when the test says, what is sent is kept for the test to
 * read, and a confirmation (component_confirm) is answered only when the
 * test answers it, as the server's ping reply would be. Linked before
 * libmailpubsub.a so that the real component.o is never pulled in.
 * (tests/fuzz/fake_component.* confirms at once and keeps nothing.) */
#ifndef MAILPUBSUB_TESTS_LISTENER_COMPONENT_H
#define MAILPUBSUB_TESTS_LISTENER_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>
#include <strophe.h>

#include "xmpp/component.h"

/* ctx is borrowed. Starts connected. */
struct component *listener_component_new(xmpp_ctx_t *ctx);
void listener_component_free(struct component **component);

void listener_component_set_connected(struct component *c, bool connected);
/* What component_send_raw took, oldest first (valid until the next send
 * or free); *count_r of them. */
const char *const *listener_component_sent(const struct component *c, size_t *count_r);
/* Is a confirmation out? Then answer it (the server's ping reply). */
bool listener_component_confirm_pending(const struct component *c);
void listener_component_confirm_answer(struct component *c);

#endif
