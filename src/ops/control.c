#include "base/clock.h"
#include "ops/control.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "build-config.h"
#include "ingest/bus_in.h"
#include "ingest/ingest_imap.h"
#include "ingest/ingest_json.h"
#include "base/listen.h"
#include "base/log.h"
#include "base/stats.h"
#include "handlers/service.h"
#include "ops/status.h"
#include "downstream/tap.h"
#include "base/timefmt.h"

#define CONTROL_MAX_CONNECTIONS 16
/* journaled counts every RATE_STEP_MS, RATE_SAMPLES of them: a rate over
 * the last minute */
#define RATE_STEP_MS 5000
#define RATE_SAMPLES 13

/* the bus source's counters are its own, not in stats: the last slot */
#define RATE_BUS STATS_NSOURCES

struct rate_sample {
	long long at_us;
	unsigned long long journaled[STATS_NSOURCES + 1];
};

struct control_conn {
	struct control *control;
	struct control_conn *next, **prevp;
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_write_t write;
	uv_shutdown_t shutdown;
	unsigned open;             /* handles not yet closed */
	bool closing;
	bool draining;             /* refused: unread input is discarded until
				    * the peer closes, or the kernel would
				    * reset the connection over our reply */
	bool privileged;           /* root or our own user */
	size_t len;
	char buf[CONTROL_MAX_REQUEST + 1];
	char *reply;               /* owned; freed with the connection */
};

struct control {
	struct service *service;
	struct imap_client *imap;
	uv_pipe_t pipe;
	uv_timer_t sampler;
	unsigned open;             /* the listener, the sampler, connections */
	bool closing;
	gid_t gid;                 /* [control] group; (gid_t)-1: none */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct control_conn *conns;
	unsigned nconns;
	struct rate_sample samples[RATE_SAMPLES];
	unsigned nsamples, next_sample;
};

/* ---- the request ---------------------------------------------------- */

int control_request_parse(const char *line, size_t len,
			  enum control_command *command_r, const char **error_r)
{
	json_t *req, *value;
	const char *key, *command;
	int rc = -1;

	if (len > CONTROL_MAX_REQUEST) {
		*error_r = "request too long";
		return -1;
	}
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(req)) {
		*error_r = "request is not a JSON object";
		json_decref(req);
		return -1;
	}
	*error_r = "unknown command";
	json_object_foreach(req, key, value) {
		if (strcmp(key, "command") != 0) {
			*error_r = "unknown request member";
			json_decref(req);
			return -1;
		}
	}
	command = json_string_value(json_object_get(req, "command"));
	if (command != NULL && strcmp(command, "status") == 0) {
		*command_r = CONTROL_STATUS;
		rc = 0;
	}
	json_decref(req);
	return rc;
}

/* ---- the status ------------------------------------------------------ */

static json_t *iso_time(long long us)
{
	char text[32];

	if (timefmt_iso8601(us, text, sizeof(text)) < 0)
		return json_null();
	return json_string(text);
}

/* journaled: the count of slot src now */
static double source_rate(const struct control *c, unsigned src,
			  unsigned long long journaled)
{
	const struct rate_sample *oldest;
	long long now = clock_now_us();
	double seconds;

	if (c->nsamples == 0)
		return 0;
	oldest = &c->samples[c->nsamples < RATE_SAMPLES ? 0 : c->next_sample];
	seconds = (double)(now - oldest->at_us) / 1e6;
	if (seconds < 1)
		return 0;
	return (double)(journaled - oldest->journaled[src]) / seconds;
}

static const char *source_address(const struct config *cf, enum stats_source src)
{
	switch (src) {
	case STATS_CYRUS:
		return cf->notify_socket;
	case STATS_JSON:
		return *cf->json_socket != '\0' ? cf->json_socket : cf->json_listen;
	default:
		return cf->imap_source_accounts;
	}
}

/* What a source is doing: off, listening, or for the IMAP source whether
 * every watcher has its session. */
static json_t *source_state(const struct service *service, enum stats_source src,
			    const char *address)
{
	unsigned watchers, connected;

	if (*address == '\0')
		return json_pack("{s:s}", "state", "off");
	if (src == STATS_JSON)
		return json_pack("{s:s,s:s,s:I}", "state", "listening", "address", address,
				 "connections",
				 (json_int_t)ingest_json_connections(service->ingest_json));
	if (src != STATS_IMAP)
		return json_pack("{s:s,s:s}", "state", "listening", "address", address);
	ingest_imap_watchers(service->ingest_imap, &watchers, &connected);
	return json_pack("{s:s,s:s,s:I,s:I}",
			 "state", watchers > 0 && connected == watchers ? "watching" : "connecting",
			 "accounts", address, "watchers", (json_int_t)watchers,
			 "connected", (json_int_t)connected);
}

/* [bus] consume, in the shape of the other sources (malformed: bodies
 * that are no event, rejected; the bus drops nothing: what is not
 * journaled goes back to the broker, released) plus what only it has. */
static json_t *bus_source_json(const struct control *c, const struct status_snapshot *snap)
{
	const struct config *cf = c->service->publish->config;
	const struct bus_in_stats *b = &snap->bus;
	const struct amqp_history *h = &b->link;

	if (!snap->have_bus)
		return json_pack("{s:s,s:s}", "name", "bus", "state", "off");
	return json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:I,"
			 "s:o,s:I,s:I,s:I,s:s?}",
			 "name", "bus",
			 "state", h->connected ? "connected" : "connecting",
			 "address", cf->bus_consume,
			 "received", (json_int_t)b->received,
			 "journaled", (json_int_t)b->appended,
			 "malformed", (json_int_t)b->rejected,
			 "dropped", (json_int_t)0,
			 "rate_per_second", source_rate(c, RATE_BUS, b->appended),
			 "duplicates", (json_int_t)b->duplicates,
			 "rejected", (json_int_t)b->rejected,
			 "released", (json_int_t)b->released,
			 "commits", (json_int_t)b->batches,
			 "since", iso_time(h->changed_us),
			 "connections", (json_int_t)h->connects,
			 "disconnects", (json_int_t)h->disconnects,
			 "failures", (json_int_t)h->failures,
			 "last_error", *h->last_error != '\0' ? h->last_error : NULL);
}

static json_t *sources_json(const struct control *c, const struct status_snapshot *snap)
{
	const struct config *cf = c->service->publish->config;
	json_t *arr = json_array();

	for (unsigned src = 0; src < STATS_NSOURCES; src++) {
		const struct stats_source_stats *s = &c->service->publish->stats.sources[src];
		json_t *obj = source_state(c->service, src, source_address(cf, src));
		unsigned long long malformed = 0;

		for (unsigned r = 0; r < STATS_NREJECTS; r++)
			malformed += s->malformed[r];
		json_object_update_new(obj, json_pack(
			"{s:s,s:I,s:I,s:I,s:I,s:f}",
			"name", stats_source_name(src),
			"received", (json_int_t)s->received,
			"journaled", (json_int_t)s->journaled,
			"malformed", (json_int_t)malformed,
			"dropped", (json_int_t)s->dropped,
			"rate_per_second", source_rate(c, src, s->journaled)));
		json_array_append_new(arr, obj);
	}
	json_array_append_new(arr, bus_source_json(c, snap));
	return arr;
}

static json_t *consumer_json(const char *name, long long seq, long long head)
{
	return json_pack("{s:s,s:I,s:I}", "name", name, "sequence", (json_int_t)seq,
			 "backlog", (json_int_t)(head - seq));
}

static json_t *journal_json(const struct status_snapshot *snap)
{
	return json_pack("{s:I,s:[o,o],s:I}",
			 "head", (json_int_t)snap->journal_head,
			 "consumers",
			 consumer_json("publisher", snap->published_seq, snap->journal_head),
			 consumer_json("firehose", snap->firehose_seq, snap->journal_head),
			 "ingest_queue_bytes", (json_int_t)snap->ingest_waiting_bytes);
}

/* The bus producer ([bus] urls and address): where it stands in the
 * journal and on the broker, enough to tell it is behind or down. */
static json_t *bus_out_json(const struct service *service,
			    const struct status_snapshot *snap)
{
	const struct config *cf = service->publish->config;
	const struct bus_out_status *b = &snap->bus_out;
	const struct amqp_history *h = &b->link;

	if (!snap->have_bus_out)
		return json_pack("{s:s}", "state", "off");
	return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,"
			 "s:o,s:I,s:I,s:I,s:I,s:s?}",
			 "state", h->connected ? "connected" : "connecting",
			 "address", cf->bus_address,
			 "urls", cf->bus_urls,
			 "broker", b->url,
			 "watermark", (json_int_t)b->mark,
			 "sent_seq", (json_int_t)b->sent_seq,
			 "journal_head", (json_int_t)snap->journal_head,
			 "backlog", (json_int_t)(snap->journal_head - b->mark),
			 "sent", (json_int_t)b->sent,
			 "accepted", (json_int_t)b->accepted,
			 "refused", (json_int_t)b->refused,
			 "resent", (json_int_t)b->resent,
			 "backing_off", b->backing_off,
			 "since", iso_time(h->changed_us),
			 "for_seconds", (json_int_t)((snap->now_us - h->changed_us) / 1000000),
			 "connections", (json_int_t)h->connects,
			 "disconnects", (json_int_t)h->disconnects,
			 "failures", (json_int_t)h->failures,
			 "last_error", *h->last_error != '\0' ? h->last_error : NULL);
}

static json_t *component_json(const struct service *service,
			      const struct status_snapshot *snap)
{
	return json_pack("{s:s,s:b,s:o,s:I,s:I,s:I,s:I}",
			 "domain", service->publish->config->component_domain,
			 "connected", snap->connected,
			 "since", iso_time(snap->component.changed_us),
			 "for_seconds", (json_int_t)((snap->now_us - snap->component.changed_us) / 1000000),
			 "connections", (json_int_t)snap->component.connects,
			 "disconnects", (json_int_t)snap->component.disconnects,
			 "failures", (json_int_t)snap->component.failures);
}

static json_t *imap_json(const struct service *service, const struct status_snapshot *snap)
{
	const struct authz_stats *a = &snap->authz;
	unsigned long long lookups = a->cache_hits + a->cache_misses;

	return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:o},s:{s:I,s:I,s:I}}",
			 "host", service->publish->config->imap_host,
			 "sessions", (json_int_t)snap->imap.sessions,
			 "busy", (json_int_t)snap->imap.busy,
			 "idle", (json_int_t)snap->imap.idle,
			 "commands", (json_int_t)snap->imap.commands,
			 "errors", (json_int_t)snap->imap.errors,
			 "acl_cache",
			 "hits", (json_int_t)a->cache_hits,
			 "misses", (json_int_t)a->cache_misses,
			 "hit_rate", lookups > 0 ? json_real((double)a->cache_hits / (double)lookups)
						 : json_null(),
			 "authz",
			 "granted", (json_int_t)a->decisions[AUTHZ_GRANTED],
			 "denied", (json_int_t)a->decisions[AUTHZ_DENIED],
			 "errors", (json_int_t)a->decisions[AUTHZ_TEMPFAIL]);
}

/* The active taps with their details. */
static json_t *taps_list(struct service *service, long long now_us)
{
	char *text = tap_list_json(service->publish->store, now_us);
	json_t *all = text != NULL ? json_loads(text, 0, NULL) : NULL;
	json_t *active = json_array(), *tap;
	size_t i;

	free(text);
	json_array_foreach(all, i, tap) {
		if (json_is_true(json_object_get(tap, "active")))
			json_array_append(active, tap);
	}
	json_decref(all);
	return active;
}

json_t *control_status(struct control *c, bool privileged)
{
	struct service *service = c->service;
	const struct stats_counters *s = &service->publish->stats;
	struct status_snapshot snap;
	json_t *status, *taps;

	status_snapshot_take(service, c->imap, &snap);
	taps = json_pack("{s:I}", "active", (json_int_t)snap.taps_active);
	if (privileged)
		json_object_set_new(taps, "list", taps_list(service, snap.now_us));
	status = json_pack("{s:s,s:I,s:o,s:I,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:o,s:I}",
			   "version", PACKAGE_VERSION,
			   "pid", (json_int_t)getpid(),
			   "started", iso_time(snap.started_us),
			   "uptime_seconds", (json_int_t)((snap.now_us - snap.started_us) / 1000000),
			   "component", component_json(service, &snap),
			   "sources", sources_json(c, &snap),
			   "journal", journal_json(&snap),
			   "events_published", (json_int_t)s->published,
			   "notifications_sent", (json_int_t)s->notifications,
			   "delegated_publishes", (json_int_t)s->delegated,
			   "subscriptions", (json_int_t)snap.subscriptions,
			   "taps", taps,
			   "rss_bytes", (json_int_t)snap.rss_bytes);
	if (status != NULL)
		json_object_set_new(status, "bus", bus_out_json(service, &snap));
	if (status != NULL && snap.have_imap)
		json_object_set_new(status, "imap", imap_json(service, &snap));
	return status;
}

static void on_sample(uv_timer_t *timer)
{
	struct control *c = timer->data;
	struct rate_sample *r = &c->samples[c->next_sample];

	r->at_us = clock_now_us();
	for (unsigned src = 0; src < STATS_NSOURCES; src++)
		r->journaled[src] = c->service->publish->stats.sources[src].journaled;
	r->journaled[RATE_BUS] = c->service->bus_in != NULL ?
				 bus_in_stats(c->service->bus_in)->appended : 0;
	c->next_sample = (c->next_sample + 1) % RATE_SAMPLES;
	if (c->nsamples < RATE_SAMPLES)
		c->nsamples++;
}

/* ---- connections ----------------------------------------------------- */

static void control_handle_closed(struct control *c)
{
	if (--c->open == 0)
		free(c);
}

static void conn_closed(uv_handle_t *handle)
{
	struct control_conn *conn = handle->data;
	struct control *c = conn->control;

	if (--conn->open > 0)
		return;
	free(conn->reply);
	free(conn);
	control_handle_closed(c);
}

static void conn_close(struct control_conn *conn)
{
	if (conn->closing)
		return;
	conn->closing = true;
	*conn->prevp = conn->next;
	if (conn->next != NULL)
		conn->next->prevp = conn->prevp;
	conn->control->nconns--;
	uv_close((uv_handle_t *)&conn->timer, conn_closed);
	uv_close((uv_handle_t *)&conn->pipe, conn_closed);
}

static void on_drained(uv_timer_t *timer)
{
	conn_close(timer->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status;
}

static void on_written(uv_write_t *req, int status)
{
	struct control_conn *conn = req->data;

	if (status == 0 && conn->draining && !conn->closing &&
	    uv_shutdown(&conn->shutdown, (uv_stream_t *)&conn->pipe, on_shutdown) == 0)
		return;
	conn_close(conn);
}

/* Sends reply (a JSON object, consumed) and closes after it. */
static void conn_reply(struct control_conn *conn, json_t *reply)
{
	uv_buf_t b;

	if (conn->draining)
		uv_timer_start(&conn->timer, on_drained, 2000, 0);
	else {
		uv_read_stop((uv_stream_t *)&conn->pipe);
		uv_timer_stop(&conn->timer);
	}
	conn->reply = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	if (conn->reply == NULL) {
		conn_close(conn);
		return;
	}
	/* the terminating NUL becomes the newline */
	b = uv_buf_init(conn->reply, (unsigned)strlen(conn->reply) + 1);
	conn->reply[b.len - 1] = '\n';
	conn->write.data = conn;
	if (uv_write(&conn->write, (uv_stream_t *)&conn->pipe, &b, 1, on_written) < 0)
		conn_close(conn);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void conn_refuse(struct control_conn *conn, const char *why)
{
	conn->draining = true;
	conn->len = 0;
	/* reading (to discard) also when refused before the first read */
	uv_read_stop((uv_stream_t *)&conn->pipe);
	uv_read_start((uv_stream_t *)&conn->pipe, on_alloc, on_read);
	conn_reply(conn, json_pack("{s:b,s:s}", "ok", 0, "error", why));
}

static void conn_request(struct control_conn *conn, size_t len)
{
	enum control_command command;
	const char *error;
	json_t *status;

	if (control_request_parse(conn->buf, len, &command, &error) < 0) {
		log_info("control: refused a request: %s", error);
		conn_refuse(conn, error);
		return;
	}
	status = control_status(conn->control, conn->privileged);
	if (status == NULL) {
		conn_refuse(conn, "out of memory");
		return;
	}
	conn_reply(conn, json_pack("{s:b,s:o}", "ok", 1, "status", status));
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct control_conn *conn = handle->data;

	(void)suggested;
	/* reads land straight in the request buffer: one byte more than a
	 * request may have, so an overlong one is seen */
	*buf = uv_buf_init(conn->buf + conn->len,
			   (unsigned)(sizeof(conn->buf) - conn->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct control_conn *conn = stream->data;
	char *nl;

	(void)buf;
	if (nread < 0) {
		conn_close(conn);
		return;
	}
	if (conn->draining) {
		conn->len = 0;
		return;
	}
	conn->len += (size_t)nread;
	nl = memchr(conn->buf, '\n', conn->len);
	if (nl != NULL) {
		conn_request(conn, (size_t)(nl - conn->buf));
		return;
	}
	if (conn->len >= sizeof(conn->buf))
		conn_refuse(conn, "request too long");
}

static void on_timeout(uv_timer_t *timer)
{
	conn_refuse(timer->data, "no request in time");
}

/* Root, our own user, or [control] group among the peer's groups. */
static bool peer_allowed(struct control *c, struct control_conn *conn, uid_t uid,
			 gid_t gid)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);
	uv_os_fd_t fd;

	conn->privileged = uid == 0 || uid == geteuid();
	if (conn->privileged)
		return true;
	if (c->gid == (gid_t)-1)
		return false;
	if (gid == c->gid)
		return true;
	if (uv_fileno((uv_handle_t *)&conn->pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false;
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == c->gid)
			return true;
	return false;
}

static void conn_start(struct control_conn *conn)
{
	struct control *c = conn->control;
	uid_t uid;
	gid_t gid;
	pid_t pid;

	if (listen_peer((uv_stream_t *)&conn->pipe, &uid, &gid, &pid) < 0) {
		conn_refuse(conn, "cannot read peer credentials");
		return;
	}
	if (!peer_allowed(c, conn, uid, gid)) {
		log_warn("control: refused uid %u pid %d: not root, our user or in [control] group",
			 (unsigned)uid, (int)pid);
		conn_refuse(conn, "permission denied");
		return;
	}
	if (c->nconns > CONTROL_MAX_CONNECTIONS) {
		conn_refuse(conn, "too many connections");
		return;
	}
	uv_timer_start(&conn->timer, on_timeout, CONTROL_TIMEOUT_MS, 0);
	uv_read_start((uv_stream_t *)&conn->pipe, on_alloc, on_read);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct control *c = server->data;
	struct control_conn *conn;

	if (status < 0 || c->closing || (conn = calloc(1, sizeof(*conn))) == NULL)
		return;
	conn->control = c;
	uv_pipe_init(server->loop, &conn->pipe, 0);
	uv_timer_init(server->loop, &conn->timer);
	conn->pipe.data = conn->timer.data = conn;
	conn->open = 2;
	c->open++;
	c->nconns++;
	conn->next = c->conns;
	if (c->conns != NULL)
		c->conns->prevp = &conn->next;
	conn->prevp = &c->conns;
	c->conns = conn;
	if (uv_accept(server, (uv_stream_t *)&conn->pipe) < 0) {
		conn_close(conn);
		return;
	}
	conn_start(conn);
}

/* ---- the listener ---------------------------------------------------- */

static int control_listen(struct control *c, uv_loop_t *loop, const char **error_r)
{
	const struct config *cf = c->service->publish->config;
	char why[200];
	int r;

	if (strlen(cf->control_socket) >= sizeof(c->path)) {
		*error_r = "[control] socket path too long";
		return -1;
	}
	strcpy(c->path, cf->control_socket);
	listen_remove_stale(c->path);
	uv_pipe_init(loop, &c->pipe, 0);
	c->pipe.data = c;
	c->open++;
	if ((r = uv_pipe_bind(&c->pipe, c->path)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&c->pipe, 16, on_connection)) < 0) {
		log_error("control: %s: %s", c->path, uv_strerror(r));
		*error_r = "[control] socket: cannot listen (see the log)";
		return -1;
	}
	/* the kernel checks the mode on connect; the credentials check after
	 * it holds even if someone loosens the mode */
	if (listen_permit(c->path, cf->control_group, *cf->control_group != '\0' ? 0660 : 0600,
			  why, sizeof(why)) < 0) {
		log_error("control: %s", why);
		*error_r = "[control] socket: cannot set its mode (see the log)";
		return -1;
	}
	log_info("control: listening on %s", c->path);
	return 0;
}

static int resolve_group(struct control *c, const char **error_r)
{
	const char *name = c->service->publish->config->control_group;
	struct group *gr;

	c->gid = (gid_t)-1;
	if (*name == '\0')
		return 0;
	gr = getgrnam(name);
	if (gr == NULL) {
		*error_r = "[control] group: no such group";
		return -1;
	}
	c->gid = gr->gr_gid;
	return 0;
}

int control_new(uv_loop_t *loop, struct service *service, struct imap_client *imap,
		struct control **control_r, const char **error_r)
{
	struct control *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	c->service = service;
	c->imap = imap;
	if (resolve_group(c, error_r) < 0) {
		free(c);
		return -1;
	}
	uv_timer_init(loop, &c->sampler);
	c->sampler.data = c;
	c->open = 1;
	on_sample(&c->sampler);
	uv_timer_start(&c->sampler, on_sample, RATE_STEP_MS, RATE_STEP_MS);
	*control_r = c;
	if (control_listen(c, loop, error_r) < 0) {
		control_close(control_r);
		return -1;
	}
	return 0;
}

static void listener_closed(uv_handle_t *handle)
{
	control_handle_closed(handle->data);
}

void control_close(struct control **control)
{
	struct control *c = *control;

	if (c == NULL)
		return;
	*control = NULL;
	c->closing = true;
	while (c->conns != NULL)
		conn_close(c->conns);
	if (*c->path != '\0') {
		uv_close((uv_handle_t *)&c->pipe, listener_closed);
		unlink(c->path);
	}
	uv_close((uv_handle_t *)&c->sampler, listener_closed);
}
