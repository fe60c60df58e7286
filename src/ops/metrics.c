#include "ops/metrics.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authz/authz.h"
#include "build-config.h"
#include "xmpp/component.h"
#include "ingest/ingest_imap.h"
#include "ingest/ingest_json.h"
#include "base/listen.h"
#include "base/log.h"
#include "handlers/service.h"
#include "ops/status.h"

/* ---- the exposition text ------------------------------------------- */

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(FILE *f, const char *name, const char *type, const char *help,
		   double value)
{
	family(f, name, type, help);
	fprintf(f, "%s %.17g\n", name, value);
}

static void histogram(FILE *f, const char *name, const char *help,
		      const struct stats_histogram *h)
{
	unsigned long long cumulative = 0;

	family(f, name, "histogram", help);
	for (unsigned i = 0; i < STATS_BUCKETS; i++) {
		cumulative += h->buckets[i];
		fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, stats_bucket_bound(i), cumulative);
	}
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, h->count);
	fprintf(f, "%s_sum %.17g\n%s_count %llu\n", name, h->sum, name, h->count);
}

/* the bus source has no such counter: it never drops (see bus_in.h) */
#define NO_BUS ((size_t)-1)

static void render_sources(FILE *f, const struct stats_counters *s,
			   const struct status_snapshot *snap)
{
	static const struct {
		const char *name, *help;
		size_t offset;
		size_t bus_offset;   /* the bus source's counters are its own */
	} per_source[] = {
		{ "mailpubsub_events_received_total", "Events received from the mail store.",
		  offsetof(struct stats_source_stats, received),
		  offsetof(struct bus_in_stats, received) },
		{ "mailpubsub_events_journaled_total", "Events written to the journal.",
		  offsetof(struct stats_source_stats, journaled),
		  offsetof(struct bus_in_stats, appended) },
		{ "mailpubsub_events_dropped_total",
		  "Events dropped because the ingest queue was full.",
		  offsetof(struct stats_source_stats, dropped), NO_BUS },
	};

	for (size_t i = 0; i < sizeof(per_source) / sizeof(per_source[0]); i++) {
		family(f, per_source[i].name, "counter", per_source[i].help);
		for (unsigned src = 0; src < STATS_NSOURCES; src++)
			fprintf(f, "%s{source=\"%s\"} %llu\n", per_source[i].name,
				stats_source_name(src),
				*(const unsigned long long *)((const char *)&s->sources[src] +
							      per_source[i].offset));
		if (snap->have_bus && per_source[i].bus_offset != NO_BUS)
			fprintf(f, "%s{source=\"bus\"} %llu\n", per_source[i].name,
				*(const unsigned long long *)((const char *)&snap->bus +
							      per_source[i].bus_offset));
	}
	family(f, "mailpubsub_events_malformed_total", "counter",
	       "Events refused as malformed, by reason.");
	for (unsigned src = 0; src < STATS_NSOURCES; src++)
		for (unsigned r = 0; r < STATS_NREJECTS; r++)
			fprintf(f, "mailpubsub_events_malformed_total{source=\"%s\",reason=\"%s\"} %llu\n",
				stats_source_name(src), stats_reject_name(r),
				s->sources[src].malformed[r]);
}

static void render_consumers(FILE *f, const struct status_snapshot *snap)
{
	static const char *const names[] = { "publisher", "firehose" };
	const long long marks[] = { snap->published_seq, snap->firehose_seq };

	sample(f, "mailpubsub_journal_head_sequence", "gauge",
	       "Sequence number of the last journaled event.", (double)snap->journal_head);
	family(f, "mailpubsub_consumer_sequence", "gauge",
	       "Last journal sequence number each consumer has handed on.");
	for (unsigned i = 0; i < 2; i++)
		fprintf(f, "mailpubsub_consumer_sequence{consumer=\"%s\"} %lld\n", names[i], marks[i]);
	family(f, "mailpubsub_backlog_events", "gauge",
	       "Journaled events a consumer has still to hand on.");
	for (unsigned i = 0; i < 2; i++)
		fprintf(f, "mailpubsub_backlog_events{consumer=\"%s\"} %lld\n", names[i],
			snap->journal_head - marks[i]);
	sample(f, "mailpubsub_ingest_queue_bytes", "gauge",
	       "Cyrus datagrams received and not yet journaled, in bytes.",
	       (double)snap->ingest_waiting_bytes);
}

static void render_component(FILE *f, const struct status_snapshot *snap)
{
	sample(f, "mailpubsub_component_connected", "gauge",
	       "1 while the XEP-0114 component stream is up.", snap->connected);
	sample(f, "mailpubsub_component_last_change_timestamp_seconds", "gauge",
	       "When the component last connected or disconnected (or started trying).",
	       (double)snap->component.changed_us / 1e6);
	sample(f, "mailpubsub_component_connections_total", "counter",
	       "Component handshakes that succeeded.", (double)snap->component.connects);
	sample(f, "mailpubsub_component_disconnects_total", "counter",
	       "Component streams lost after a handshake (reconnects follow).",
	       (double)snap->component.disconnects);
	sample(f, "mailpubsub_component_connect_failures_total", "counter",
	       "Component connection attempts that failed before the handshake.",
	       (double)snap->component.failures);
}

static void render_authz(FILE *f, const struct status_snapshot *snap)
{
	static const char *const outcomes[] = { "granted", "denied", "error" };
	const struct authz_stats *a = &snap->authz;

	family(f, "mailpubsub_authz_decisions_total", "counter",
	       "Authorization decisions, by outcome (error: the store could not be asked).");
	for (unsigned i = 0; i < 3; i++)
		fprintf(f, "mailpubsub_authz_decisions_total{outcome=\"%s\"} %llu\n",
			outcomes[i], a->decisions[i]);
	histogram(f, "mailpubsub_authz_decision_duration_seconds",
		  "Time from an authorization question to its answer.", &a->latency);
	family(f, "mailpubsub_acl_cache_lookups_total", "counter",
	       "ACL cache lookups for decisions, by result.");
	fprintf(f, "mailpubsub_acl_cache_lookups_total{result=\"hit\"} %llu\n", a->cache_hits);
	fprintf(f, "mailpubsub_acl_cache_lookups_total{result=\"miss\"} %llu\n", a->cache_misses);
}

static void render_imap(FILE *f, const struct status_snapshot *snap)
{
	const struct imap_client_stats *im = &snap->imap;

	sample(f, "mailpubsub_imap_sessions", "gauge",
	       "Pooled IMAP sessions (ACL lookups, lists, content).", im->sessions);
	sample(f, "mailpubsub_imap_commands_total", "counter",
	       "IMAP client calls answered.", (double)im->commands);
	sample(f, "mailpubsub_imap_errors_total", "counter",
	       "IMAP client calls that failed (connection, timeout, login, TLS).",
	       (double)im->errors);
	sample(f, "mailpubsub_imap_connect_failures_total", "counter",
	       "IMAP connections or logins that failed.", (double)im->connect_failures);
}

static void render_source_state(FILE *f, struct service *service)
{
	unsigned watchers, connected;

	ingest_imap_watchers(service->ingest_imap, &watchers, &connected);
	sample(f, "mailpubsub_json_source_connections", "gauge",
	       "Senders connected to the generic JSON source.",
	       ingest_json_connections(service->ingest_json));
	sample(f, "mailpubsub_imap_source_watchers", "gauge",
	       "IMAP client source watchers (one per account and IDLEd mailbox).", watchers);
	sample(f, "mailpubsub_imap_source_watchers_connected", "gauge",
	       "IMAP client source watchers with a session to the server now.", connected);
}

/* A bus connection's life: prefix_connected, _last_change_timestamp_seconds,
 * _connections_total, _disconnects_total, _connect_failures_total; who
 * heads the help texts. */
static void render_link(FILE *f, const char *prefix, const char *who,
			const struct amqp_history *h)
{
	const struct { const char *suffix, *type, *help; double value; } one[] = {
		{ "connected", "gauge", "1 while its connection to the broker is up.",
		  h->connected },
		{ "last_change_timestamp_seconds", "gauge",
		  "When it last connected or disconnected (or started).",
		  (double)h->changed_us / 1e6 },
		{ "connections_total", "counter", "Connections to the broker that came up.",
		  (double)h->connects },
		{ "disconnects_total", "counter",
		  "Connections lost after coming up (reconnects follow).",
		  (double)h->disconnects },
		{ "connect_failures_total", "counter",
		  "Connection attempts that failed before coming up.", (double)h->failures },
	};
	char name[96], help[160];

	for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
		snprintf(name, sizeof(name), "%s_%s", prefix, one[i].suffix);
		snprintf(help, sizeof(help), "%s: %s", who, one[i].help);
		sample(f, name, one[i].type, help, one[i].value);
	}
}

/* One counter family by outcome. */
struct outcome {
	const char *outcome;
	unsigned long long n;
};

static void render_outcomes(FILE *f, const char *name, const char *help,
			    const struct outcome *outcomes, size_t count)
{
	family(f, name, "counter", help);
	for (size_t i = 0; i < count; i++)
		fprintf(f, "%s{outcome=\"%s\"} %llu\n", name, outcomes[i].outcome,
			outcomes[i].n);
}

/* [bus] consume: what became of the messages taken from the broker, and
 * the connection (absent without [bus] consume). */
static void render_bus_in(FILE *f, const struct status_snapshot *snap)
{
	const struct bus_in_stats *b = &snap->bus;
	const struct outcome outcomes[] = {
		{ "journaled", b->appended }, { "duplicate", b->duplicates },
		{ "rejected", b->rejected }, { "released", b->released },
	};

	if (!snap->have_bus)
		return;
	render_outcomes(f, "mailpubsub_bus_in_messages_total",
			"Bus messages consumed, by outcome (duplicate: message-id already "
			"journaled, accepted and skipped; rejected: no event; released: not "
			"journaled, back to the broker).",
			outcomes, sizeof(outcomes) / sizeof(outcomes[0]));
	sample(f, "mailpubsub_bus_in_commits_total", "counter",
	       "Journal commits of consumed bus messages (one per batch).",
	       (double)b->batches);
	render_link(f, "mailpubsub_bus_in", "Bus consumer (the receiving link)", &b->link);
}

/* The bus producer ([bus] urls and address; absent without): what the
 * broker did with the messages, how far behind the journal it is, and the
 * connection. */
static void render_bus_out(FILE *f, const struct status_snapshot *snap)
{
	const struct bus_out_status *b = &snap->bus_out;
	const struct outcome outcomes[] = {
		{ "sent", b->sent }, { "accepted", b->accepted },
		{ "refused", b->refused }, { "resent", b->resent },
	};

	if (!snap->have_bus_out)
		return;
	render_outcomes(f, "mailpubsub_bus_out_messages_total",
			"Bus messages produced, by outcome (sent: handed to the broker, "
			"resends included; accepted, refused: the broker's outcomes; resent: "
			"sent again after a lost connection or a refusal).",
			outcomes, sizeof(outcomes) / sizeof(outcomes[0]));
	sample(f, "mailpubsub_bus_out_watermark_sequence", "gauge",
	       "Journal sequence the broker has accepted everything through.",
	       (double)b->mark);
	sample(f, "mailpubsub_bus_out_backlog_events", "gauge",
	       "Journaled events the broker has not accepted yet.",
	       (double)(snap->journal_head - b->mark));
	render_link(f, "mailpubsub_bus_out", "Bus producer", &b->link);
}

static void render(FILE *f, struct service *service, const struct status_snapshot *snap)
{
	const struct stats_counters *s = &service->publish->stats;

	family(f, "mailpubsub_build_info", "gauge", "The running version.");
	fprintf(f, "mailpubsub_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	render_sources(f, s, snap);
	render_source_state(f, service);
	render_bus_in(f, snap);
	render_bus_out(f, snap);
	sample(f, "mailpubsub_events_published_total", "counter",
	       "Journaled events published as items.", (double)s->published);
	sample(f, "mailpubsub_notifications_sent_total", "counter",
	       "Notification stanzas sent to subscribers (deliveries).",
	       (double)s->notifications);
	sample(f, "mailpubsub_delegated_publishes_total", "counter",
	       "Items published once on the server's own pubsub service for it to fan out ([delegate]).",
	       (double)s->delegated);
	sample(f, "mailpubsub_iq_requests_total", "counter",
	       "IQ requests received.", (double)s->iq_requests);
	sample(f, "mailpubsub_iq_errors_total", "counter",
	       "IQ error replies sent.", (double)s->iq_errors);
	histogram(f, "mailpubsub_event_to_stanza_seconds",
		  "From an event's receipt to its notifications handed to the component.",
		  &s->publish_latency);
	render_consumers(f, snap);
	render_component(f, snap);
	render_authz(f, snap);
	render_imap(f, snap);
	sample(f, "mailpubsub_subscriptions", "gauge",
	       "Subscriptions in the store.", (double)snap->subscriptions);
	sample(f, "mailpubsub_taps_active", "gauge",
	       "Interception taps in their validity window.", (double)snap->taps_active);
	sample(f, "process_resident_memory_bytes", "gauge",
	       "Resident memory size in bytes.", (double)snap->rss_bytes);
	sample(f, "process_start_time_seconds", "gauge",
	       "Start time of the process since the epoch in seconds.",
	       (double)(snap->started_us / 1000000));
}

char *metrics_render(struct service *service, struct imap_client *imap, size_t *len_r)
{
	struct status_snapshot snap;
	char *text = NULL;
	FILE *f;

	status_snapshot_take(service, imap, &snap);
	f = open_memstream(&text, len_r);
	if (f == NULL)
		return NULL;
	render(f, service, &snap);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* ---- the endpoint --------------------------------------------------- */

struct metrics {
	struct service *service;
	struct imap_client *imap;
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;      /* MHD's own timeouts */
	unsigned handles;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     const char *type, char *body, size_t len)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result r;

	if (resp == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct metrics *m = cls;
	size_t len;
	char *text;

	(void)version;
	(void)upload_data;
	(void)con_cls;
	if (*upload_data_size != 0)
		return MHD_NO;   /* no request bodies here */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
			     strdup("GET only\n"), strlen("GET only\n"));
	if (strcmp(url, "/metrics") != 0)
		return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain",
			     strdup("see /metrics\n"), strlen("see /metrics\n"));
	text = metrics_render(m->service, m->imap, &len);
	if (text == NULL)
		return MHD_NO;
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static void run_mhd(struct metrics *m)
{
	if (MHD_run(m->mhd) == MHD_NO)
		log_warn("metrics: MHD_run failed");
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
	(void)status;
	(void)events;
	run_mhd(poll->data);
}

static void on_timer(uv_timer_t *timer)
{
	run_mhd(timer->data);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[256];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_warn("metrics: %s", line);
}

static int start_mhd(struct metrics *m, const char *spec, const char **error_r)
{
	struct sockaddr_storage ss;
	char why[200];
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	if (listen_parse_hostport(spec, &ss, why, sizeof(why)) < 0) {
		log_error("metrics: [metrics] listen: %s", why);
		*error_r = "[metrics] listen: not a numeric host:port (see the log)";
		return -1;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* scrapers are few: a handful of connections, short timeouts, and
	 * MHD's default bounds on request headers */
	m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				  MHD_OPTION_END);
	if (m->mhd == NULL) {
		log_error("metrics: cannot listen on %s (in use?)", spec);
		*error_r = "[metrics] listen: cannot listen (see the log)";
		return -1;
	}
	return 0;
}

int metrics_new(uv_loop_t *loop, struct service *service, struct imap_client *imap,
		struct metrics **metrics_r, const char **error_r)
{
	struct metrics *m = calloc(1, sizeof(*m));
	const union MHD_DaemonInfo *info;

	if (m == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	m->service = service;
	m->imap = imap;
	if (start_mhd(m, service->publish->config->metrics_listen, error_r) < 0) {
		free(m);
		return -1;
	}
	info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL || uv_poll_init(loop, &m->poll, info->epoll_fd) < 0) {
		MHD_stop_daemon(m->mhd);
		free(m);
		*error_r = "[metrics]: cannot watch libmicrohttpd's epoll fd";
		return -1;
	}
	m->poll.data = m;
	uv_poll_start(&m->poll, UV_READABLE, on_poll);
	uv_timer_init(loop, &m->timer);
	m->timer.data = m;
	uv_timer_start(&m->timer, on_timer, 1000, 1000);
	m->handles = 2;
	log_info("metrics: serving /metrics on %s", service->publish->config->metrics_listen);
	*metrics_r = m;
	return 0;
}

static void handle_closed(uv_handle_t *handle)
{
	struct metrics *m = handle->data;

	if (--m->handles == 0)
		free(m);
}

void metrics_close(struct metrics **metrics)
{
	struct metrics *m = *metrics;

	if (m == NULL)
		return;
	*metrics = NULL;
	uv_close((uv_handle_t *)&m->poll, handle_closed);
	uv_close((uv_handle_t *)&m->timer, handle_closed);
	/* the epoll fd goes with the daemon: after libuv let go of it */
	MHD_stop_daemon(m->mhd);
	m->mhd = NULL;
}
