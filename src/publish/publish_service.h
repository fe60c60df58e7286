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
struct sink;
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
	/* every producer of events submits here (counts' STATUS items); the
	 * publisher yields to the sources while their bytes wait in it */
	struct sink *sink;
	/* the daemon's counters: every layer counts, ops/ reports them */
	struct stats_counters stats;
};

#endif
