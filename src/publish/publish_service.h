/* What the publishing side shares (publish/ and downstream/): the narrow
 * context below the request handlers, created and owned by main, which
 * fills it as the modules start. Nothing here may point up the data path:
 * the handlers' own context (handlers/service.h) points to this one. */
#ifndef MAILPUBSUB_PUBLISH_SERVICE_H
#define MAILPUBSUB_PUBLISH_SERVICE_H

#include "authz/authz.h"
#include "base/config.h"
#include "base/stats.h"
#include "store/store.h"
#include "xmpp/component.h"

struct counts;
struct delegate;
struct delivery;
struct ingest_cyrus;
struct publisher;

struct publish_service {
	const struct config *config;
	struct store *store;
	struct component *component;
	struct authz *authz;
	struct delivery *delivery;
	struct delegate *delegate;     /* NULL without [delegate] service */
	struct counts *counts;
	struct publisher *publisher;
	/* the publisher yields to Cyrus's datagrams while they wait (NULL
	 * without [cyrus] notify_socket) */
	struct ingest_cyrus *ingest_cyrus;
	/* the daemon's counters: every layer counts, ops/ reports them */
	struct stats_counters stats;
};

#endif
