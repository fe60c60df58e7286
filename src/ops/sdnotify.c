#include "build-config.h"

#include "ops/sdnotify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "xmpp/component.h"
#include "store/journal.h"
#include "base/log.h"
#include "handlers/service.h"

/* Two cheap lookups (max(seq), one meta row) per tick; the text is sent
 * only when it differs from the last one. */
#define STATUS_INTERVAL_MS 2000

struct sdnotify {
	struct service *service;
	uv_timer_t timer;
	bool watchdog;            /* WATCHDOG=1 on every tick */
	bool ever_connected;
	char last[128];           /* the STATUS text systemd has */
};

void sdnotify_status_text(bool connected, bool ever_connected,
			  long long backlog, char *buf, size_t size)
{
	snprintf(buf, size, "component %s; backlog %lld event%s",
		 connected ? "connected" :
		 ever_connected ? "disconnected, reconnecting" : "connecting",
		 backlog, backlog == 1 ? "" : "s");
}

#ifdef HAVE_LIBSYSTEMD

static void send_state(const char *state)
{
	int rc = sd_notify(0, state);

	if (rc < 0)
		log_warn("sd_notify: %s", strerror(-rc));
}

static long long backlog_of(struct service *service)
{
	long long backlog = journal_last_seq(service->publish->store) -
			    journal_published_seq(service->publish->store);

	return backlog > 0 ? backlog : 0;
}

/* Sends STATUS= if it changed; watchdog adds WATCHDOG=1 to the datagram. */
static void send_status(struct sdnotify *n, bool watchdog)
{
	bool connected = component_is_connected(n->service->publish->component);
	char text[sizeof(n->last)], msg[sizeof(n->last) + 32];

	n->ever_connected |= connected;
	sdnotify_status_text(connected, n->ever_connected, backlog_of(n->service),
			     text, sizeof(text));
	if (strcmp(text, n->last) == 0) {
		if (watchdog)
			send_state("WATCHDOG=1");
		return;
	}
	snprintf(n->last, sizeof(n->last), "%s", text);
	snprintf(msg, sizeof(msg), "%sSTATUS=%s", watchdog ? "WATCHDOG=1\n" : "", text);
	send_state(msg);
}

static void on_tick(uv_timer_t *timer)
{
	struct sdnotify *n = timer->data;

	send_status(n, n->watchdog);
}

int sdnotify_new(uv_loop_t *loop, struct service *service,
		 struct sdnotify **sdnotify_r, const char **error_r)
{
	struct sdnotify *n;
	uint64_t watchdog_us = 0, interval_ms = STATUS_INTERVAL_MS;

	*sdnotify_r = NULL;
	if (getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	n->service = service;
	/* half the unit's WatchdogSec=, as sd_watchdog_enabled(3) advises */
	if (sd_watchdog_enabled(0, &watchdog_us) > 0 && watchdog_us > 0) {
		n->watchdog = true;
		if (watchdog_us / 2000 < interval_ms)
			interval_ms = watchdog_us / 2000 > 0 ? watchdog_us / 2000 : 1;
	}
	uv_timer_init(loop, &n->timer);
	n->timer.data = n;
	uv_timer_start(&n->timer, on_tick, interval_ms, interval_ms);
	/* the timer alone must not keep the loop alive at shutdown */
	uv_unref((uv_handle_t *)&n->timer);
	*sdnotify_r = n;
	return 0;
}

void sdnotify_ready(struct sdnotify *n)
{
	if (n == NULL)
		return;
	send_state("READY=1");
	n->last[0] = '\0';
	send_status(n, false);
}

void sdnotify_update(struct sdnotify *n)
{
	if (n != NULL)
		send_status(n, false);
}

void sdnotify_reloading(struct sdnotify *n)
{
	struct timespec ts;
	char msg[64];

	if (n == NULL)
		return;
	/* systemd >= 253 wants the reload's start time with it */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ULL +
		 (unsigned long long)ts.tv_nsec / 1000);
	send_state(msg);
}

static void timer_closed(uv_handle_t *handle)
{
	free(handle->data);
}

void sdnotify_close(struct sdnotify **sdnotify)
{
	struct sdnotify *n = *sdnotify;

	if (n == NULL)
		return;
	*sdnotify = NULL;
	send_state("STOPPING=1");
	uv_close((uv_handle_t *)&n->timer, timer_closed);
}

#else /* !HAVE_LIBSYSTEMD: nothing to tell */

int sdnotify_new(uv_loop_t *loop, struct service *service,
		 struct sdnotify **sdnotify_r, const char **error_r)
{
	if (getenv("NOTIFY_SOCKET") != NULL)
		log_warn("NOTIFY_SOCKET is set but mailpubsubd was built without "
			 "libsystemd (configure --with-systemd): systemd will not "
			 "hear that it is ready");
	*sdnotify_r = NULL;
	return 0;
}

void sdnotify_ready(struct sdnotify *n) { (void)n; }
void sdnotify_update(struct sdnotify *n) { (void)n; }
void sdnotify_reloading(struct sdnotify *n) { (void)n; }

void sdnotify_close(struct sdnotify **sdnotify)
{
	*sdnotify = NULL;
}

#endif
