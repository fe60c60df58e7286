/* What the daemon counts, and the Prometheus endpoint that shows it.
 *
 * Counters and histograms live in the modules that count (struct
 * service_stats, authz, component, imap_client; types in stats.h) as plain
 * integers touched by the loop thread only. The endpoint ([metrics] listen) is
 * libmicrohttpd driven from the loop too: no internal thread, its epoll fd
 * watched by a uv_poll and MHD_run() called when it is readable. MHD's
 * sockets are non-blocking, so a slow or hostile scraper never stalls the
 * loop, and the page is rendered where the counters are, without locks or
 * snapshots. */
#ifndef MAILPUBSUB_METRICS_H
#define MAILPUBSUB_METRICS_H

#include <stddef.h>
#include <uv.h>

#include "base/stats.h"

struct service;
struct imap_client;
struct metrics;

/* The exposition text (Prometheus text format 0.0.4) of service's state;
 * imap may be NULL. Newly allocated, *len_r bytes. */
char *metrics_render(struct service *service, struct imap_client *imap,
		     size_t *len_r);

/* Listens on [metrics] listen; imap (may be NULL) is borrowed and must
 * outlive the endpoint. Returns 0, or -1 with *error_r. */
int metrics_new(uv_loop_t *loop, struct service *service, struct imap_client *imap,
		struct metrics **metrics_r, const char **error_r);
/* Stops listening; memory goes once libuv closed the handles. Clears
 * *metrics. */
void metrics_close(struct metrics **metrics);

#endif
