/* Telling systemd how we are (sd_notify(3), for Type=notify units):
 * READY=1 once the store is open and the sockets are bound, STATUS= with
 * the component's state and the publisher's backlog whenever that text
 * changes (looked at every STATUS_INTERVAL_MS, and at once on a component
 * state change), RELOADING=1 around SIGHUP, STOPPING=1, and WATCHDOG=1
 * when the unit sets WatchdogSec=. Outside systemd (no NOTIFY_SOCKET), or
 * built without libsystemd, every call does nothing. */
#ifndef MAILPUBSUB_SDNOTIFY_H
#define MAILPUBSUB_SDNOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct service;
struct sdnotify;

/* service is borrowed and must outlive the handle. */
int sdnotify_new(uv_loop_t *loop, struct service *service,
		 struct sdnotify **sdnotify_r, const char **error_r);
/* Everything is bound: READY=1 and the first STATUS. */
void sdnotify_ready(struct sdnotify *sdnotify);
/* The component connected or dropped: STATUS now. */
void sdnotify_update(struct sdnotify *sdnotify);
/* A SIGHUP reload begins; sdnotify_ready() ends it. */
void sdnotify_reloading(struct sdnotify *sdnotify);
/* STOPPING=1; the handle is freed once its timer has closed. Clears
 * *sdnotify. */
void sdnotify_close(struct sdnotify **sdnotify);

/* The STATUS text for a component state and backlog (for tests). */
void sdnotify_status_text(bool connected, bool ever_connected,
			  long long backlog, char *buf, size_t size);

#endif
