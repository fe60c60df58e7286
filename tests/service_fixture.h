/* The request handlers' world for a cmocka test: a configuration, a store
 * in a fresh temp directory, authz, delivery, the fake component
 * recording what is sent (tests/fuzz/fake_component.c) and the two
 * contexts (publish_service, service) wired as main wires them. Nothing else runs: no publisher, no
 * firehose, no IMAP unless the test passes a stand-in. */
#ifndef MAILPUBSUB_SERVICE_FIXTURE_H
#define MAILPUBSUB_SERVICE_FIXTURE_H

#include <strophe.h>

#include "handlers/service.h"

struct service_fixture {
	char dir[64];
	char conf[96];
	char db[96];
	struct config *config;
	xmpp_ctx_t *ctx;
	struct publish_service publish;
	struct service service;
};

/* extra_config: more configuration lines (may be ""); imap: NULL for the
 * owner-only policy, or any non-NULL pointer when a stand-in for
 * imap_client_myrights is linked. Fails the test on error. */
struct service_fixture *service_fixture_new(const char *extra_config, void *imap);
void service_fixture_free(struct service_fixture **f);

/* Parses text as a stanza (release it). */
xmpp_stanza_t *service_fixture_stanza(struct service_fixture *f, const char *text);
/* The most recent stanza sent, serialized; NULL when none. */
const char *service_fixture_last_sent(struct service_fixture *f);

#endif
