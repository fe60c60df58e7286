/* Fan-out benchmark clients (bench/fanout.py): many libstrophe client
 * connections driven by one loop in one process, cheap enough not to be
 * the bottleneck of what they measure.
 *
 *   fanout_client recv HOST PORT PREFIX FIRST COUNT PASSWORD
 *     Logs in PREFIX<FIRST>..PREFIX<FIRST+COUNT-1>@localhost (SASL over
 *     plain TCP), sends presence, prints "READY logged_in failed"; then
 *     reads commands on stdin:
 *       SUB SERVICE NODE: each bare JID subscribes to NODE on SERVICE
 *         (XEP-0060); answers "SUBSCRIBED ok failed".
 *       GO EXPECT [DUMPFILE]: counts <message/> stanzas carrying a
 *         pubsub#event until EXPECT arrived (or 5 s after the last one),
 *         then prints one JSON line: total, CLOCK_REALTIME of GO, of the
 *         first and the last, per-second counts and the process's CPU
 *         seconds (getrusage) from GO to the last. DUMPFILE: the first
 *         event's <event/> and its item payload go to DUMPFILE.event and
 *         DUMPFILE.payload.
 *       QUIT
 *
 *   fanout_client publish HOST PORT JID PASSWORD SERVICE NODE PAYLOADFILE N
 *     Logs in, publishes one item (autocreate_on_publish makes the node),
 *     prints "READY"; on "GO" publishes N items with PAYLOADFILE's XML as
 *     payload, all pipelined, and prints JSON with the time of the first
 *     send and of the last result.
 *
 * xmpp_run_once() is select()-based: keep COUNT well below 1000 per
 * process (bench/fanout.py uses at most 500). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_common.h"
#include "xmpp/expat_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_EVENT "http://jabber.org/protocol/pubsub#event"
#define MAX_SECONDS 600
#define CONNECT_WINDOW 64

struct client;

struct app {
	xmpp_ctx_t *ctx;
	struct client *clients;
	int count, connecting, next_connect;
	int logged_in, subscribed, failed, finished;
	const char *host, *service, *node, *dump;
	unsigned short port;
	bool go, dumped, ready_printed;
	unsigned long long total, expect, per_second[MAX_SECONDS];
	/* per delivery: arrival - the payload's received stamp, ms */
	float *lat_ms;
	size_t n_lat, cap_lat;
	double t_go, t_first, t_last, cpu_go, cpu_last;
	/* publish mode */
	char *payload;
	unsigned long n_publish, results, errors;
	double t_send;
};

struct client {
	struct app *app;
	xmpp_conn_t *conn;
	bool done, up;
};

static double now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* One line from stdin if one is ready (non-blocking), else NULL. */
static const char *stdin_line(void)
{
	static char buf[256];
	static size_t len;
	struct pollfd p = { .fd = 0, .events = POLLIN };
	char *nl;

	if (poll(&p, 1, 0) > 0) {
		ssize_t r = read(0, buf + len, sizeof(buf) - 1 - len);

		if (r > 0)
			len += (size_t)r;
		else if (r == 0)
			exit(1);   /* the driver went away */
	}
	buf[len] = '\0';
	nl = strchr(buf, '\n');
	if (nl == NULL)
		return NULL;
	*nl = '\0';
	static char line[256];
	snprintf(line, sizeof(line), "%s", buf);
	len -= (size_t)(nl + 1 - buf);
	memmove(buf, nl + 1, len);
	return line;
}

static void dump_event(struct app *app, xmpp_stanza_t *ev)
{
	char path[4096], *text;
	size_t len;
	xmpp_stanza_t *items, *item, *payload;
	FILE *f;

	app->dumped = true;
	snprintf(path, sizeof(path), "%s.event", app->dump);
	if (xmpp_stanza_to_text(ev, &text, &len) == XMPP_EOK) {
		if ((f = fopen(path, "w")) != NULL) {
			fwrite(text, 1, len, f);
			fclose(f);
		}
		xmpp_free(app->ctx, text);
	}
	items = xmpp_stanza_get_child_by_name(ev, "items");
	item = items ? xmpp_stanza_get_child_by_name(items, "item") : NULL;
	payload = item ? xmpp_stanza_get_children(item) : NULL;
	while (payload != NULL && !xmpp_stanza_is_tag(payload))
		payload = xmpp_stanza_get_next(payload);
	snprintf(path, sizeof(path), "%s.payload", app->dump);
	if (payload != NULL && xmpp_stanza_to_text(payload, &text, &len) == XMPP_EOK) {
		if ((f = fopen(path, "w")) != NULL) {
			fwrite(text, 1, len, f);
			fclose(f);
		}
		xmpp_free(app->ctx, text);
	}
}

/* The item payload's received='YYYY-MM-DDTHH:MM:SS.mmmZ' as epoch
 * seconds: when mailpubsubd accepted the event (the other senders stamp
 * it as they send); 0 if absent. */
static double received_stamp(xmpp_stanza_t *ev)
{
	xmpp_stanza_t *items = xmpp_stanza_get_child_by_name(ev, "items");
	xmpp_stanza_t *item = items ? xmpp_stanza_get_child_by_name(items, "item") : NULL;
	xmpp_stanza_t *payload = item ? xmpp_stanza_get_children(item) : NULL;
	const char *stamp;
	struct tm tm = { 0 };
	int ms = 0;

	while (payload != NULL && !xmpp_stanza_is_tag(payload))
		payload = xmpp_stanza_get_next(payload);
	stamp = payload ? xmpp_stanza_get_attribute(payload, "received") : NULL;
	if (stamp == NULL || sscanf(stamp, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
				    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec,
				    &ms) != 7)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (double)timegm(&tm) + ms / 1000.0;
}

static void record_latency(struct app *app, double arrival, double stamp)
{
	if (stamp <= 0)
		return;
	if (app->n_lat == app->cap_lat) {
		size_t cap = app->cap_lat ? 2 * app->cap_lat : 4096;
		float *more = realloc(app->lat_ms, cap * sizeof(*more));

		if (more == NULL)
			return;
		app->lat_ms = more;
		app->cap_lat = cap;
	}
	app->lat_ms[app->n_lat++] = (float)((arrival - stamp) * 1000.0);
}

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *msg, void *data)
{
	struct client *c = data;
	struct app *app = c->app;
	xmpp_stanza_t *ev = xmpp_stanza_get_child_by_name_and_ns(msg, "event", NS_EVENT);
	double t;
	long sec;

	(void)conn;
	if (ev == NULL || !app->go)
		return 1;
	if (app->dump != NULL && !app->dumped)
		dump_event(app, ev);
	t = now_real();
	record_latency(app, t, received_stamp(ev));
	if (app->total == 0)
		app->t_first = t;
	app->t_last = t;
	app->total++;
	sec = (long)(t - app->t_go);
	if (sec >= 0 && sec < MAX_SECONDS)
		app->per_second[sec]++;
	if (app->total == app->expect)
		app->cpu_last = cpu_s();
	return 1;
}

static int on_subscribed(xmpp_conn_t *conn, xmpp_stanza_t *reply, void *data)
{
	struct client *c = data;
	const char *type = xmpp_stanza_get_type(reply);

	(void)conn;
	if (type != NULL && strcmp(type, "result") == 0) {
		c->app->subscribed++;
	} else {
		char *text;
		size_t len;

		c->app->failed++;
		if (c->app->failed <= 3 && xmpp_stanza_to_text(reply, &text, &len) == XMPP_EOK) {
			fprintf(stderr, "fanout_client: subscribe failed: %s\n", text);
			xmpp_free(c->app->ctx, text);
		}
	}
	c->done = true;
	c->app->finished++;
	return 0;
}

static void subscribe(struct client *c)
{
	struct app *app = c->app;
	char *me = xmpp_jid_bare(app->ctx, xmpp_conn_get_bound_jid(c->conn));
	char id[64];
	xmpp_stanza_t *iq = xmpp_iq_new(app->ctx, "set", NULL);
	xmpp_stanza_t *ps = xmpp_stanza_new(app->ctx);
	xmpp_stanza_t *sub = xmpp_stanza_new(app->ctx);

	snprintf(id, sizeof(id), "sub-%p", (void *)c);
	xmpp_stanza_set_id(iq, id);
	xmpp_stanza_set_to(iq, app->service);
	xmpp_stanza_set_name(ps, "pubsub");
	xmpp_stanza_set_ns(ps, NS_PUBSUB);
	xmpp_stanza_set_name(sub, "subscribe");
	xmpp_stanza_set_attribute(sub, "node", app->node);
	xmpp_stanza_set_attribute(sub, "jid", me);
	xmpp_stanza_add_child_ex(ps, sub, 0);
	xmpp_stanza_add_child_ex(iq, ps, 0);
	xmpp_id_handler_add(c->conn, on_subscribed, id, c);
	xmpp_send(c->conn, iq);
	xmpp_stanza_release(iq);
	xmpp_free(app->ctx, me);
}

static void on_connection(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
			  xmpp_stream_error_t *stream_error, void *data)
{
	struct client *c = data;
	struct app *app = c->app;

	(void)error;
	(void)stream_error;
	if (event == XMPP_CONN_CONNECT) {
		xmpp_stanza_t *presence = xmpp_presence_new(app->ctx);

		app->connecting--;
		c->up = true;
		app->logged_in++;
		xmpp_handler_add(conn, on_message, NULL, "message", NULL, c);
		xmpp_send(conn, presence);
		xmpp_stanza_release(presence);
		c->done = true;
		app->finished++;
		return;
	}
	fprintf(stderr, "fanout_client: %s: connection failed or lost\n",
		xmpp_conn_get_jid(conn));
	if (!c->up)
		app->connecting--;
	if (!c->done) {
		app->failed++;
		c->done = true;
		app->finished++;
	}
}

static void start_connects(struct app *app)
{
	while (app->next_connect < app->count && app->connecting < CONNECT_WINDOW) {
		struct client *c = &app->clients[app->next_connect++];

		app->connecting++;
		if (xmpp_connect_client(c->conn, app->host, app->port, on_connection, c) !=
		    XMPP_EOK) {
			app->connecting--;
			app->failed++;
			c->done = true;
			app->finished++;
		}
	}
}

static void print_result(struct app *app)
{
	long last_sec = app->total ? (long)(app->t_last - app->t_go) : -1;

	if (app->total != app->expect)
		app->cpu_last = cpu_s();
	printf("{\"conns\":%d,\"logged_in\":%d,\"subscribed\":%d,\"total\":%llu,"
	       "\"expect\":%llu,\"t_go\":%.6f,\"first\":%.6f,\"last\":%.6f,"
	       "\"cpu_s\":%.4f,\"per_second\":[", app->count, app->logged_in,
	       app->subscribed, app->total, app->expect, app->t_go, app->t_first,
	       app->t_last, app->cpu_last - app->cpu_go);
	for (long s = 0; s <= last_sec && s < MAX_SECONDS; s++)
		printf("%s%llu", s ? "," : "", app->per_second[s]);
	printf("],\"lat_ms\":[");
	for (size_t i = 0; i < app->n_lat; i++)
		printf("%s%.1f", i ? "," : "", (double)app->lat_ms[i]);
	printf("]}\n");
	fflush(stdout);
}

static void connected_wait(struct app *app)
{
	double deadline = now_real() + 300;

	while (app->finished < app->count && now_real() < deadline) {
		start_connects(app);
		xmpp_run_once(app->ctx, 10);
	}
}

/* Commands on stdin, answers on stdout:
 *   SUB SERVICE NODE  -> "SUBSCRIBED ok failed" once every conn has its answer
 *   GO EXPECT [DUMP]  -> counts until EXPECT events, then a JSON line
 *   QUIT (or EOF)     -> exit */
static int run_recv(struct app *app, char **argv, int argc)
{
	const char *prefix = argv[4], *password = argv[7];
	int first = atoi(argv[5]);

	(void)argc;
	app->count = atoi(argv[6]);
	app->clients = calloc((size_t)app->count, sizeof(*app->clients));
	for (int i = 0; i < app->count; i++) {
		char jid[256];
		struct client *c = &app->clients[i];

		c->app = app;
		c->conn = xmpp_conn_new(app->ctx);
		snprintf(jid, sizeof(jid), "%s%d@localhost/b", prefix, first + i);
		xmpp_conn_set_flags(c->conn, XMPP_CONN_FLAG_DISABLE_TLS);
		xmpp_conn_set_jid(c->conn, jid);
		xmpp_conn_set_pass(c->conn, password);
	}
	connected_wait(app);
	printf("READY %d %d\n", app->logged_in, app->failed);
	fflush(stdout);
	for (;;) {
		const char *line = NULL;
		static char service[512], node[512], dump[4096];
		unsigned long long expect;

		while ((line = stdin_line()) == NULL)
			xmpp_run_once(app->ctx, 10);
		if (sscanf(line, "SUB %511s %511s", service, node) == 2) {
			app->service = service;
			app->node = node;
			app->subscribed = app->failed = 0;
			app->finished = 0;
			for (int i = 0; i < app->count; i++) {
				app->clients[i].done = false;
				if (xmpp_conn_is_connected(app->clients[i].conn))
					subscribe(&app->clients[i]);
				else
					app->finished++;
			}
			double deadline = now_real() + 120;

			while (app->finished < app->count && now_real() < deadline)
				xmpp_run_once(app->ctx, 10);
			printf("SUBSCRIBED %d %d\n", app->subscribed, app->failed);
			fflush(stdout);
			continue;
		}
		if (strncmp(line, "GO ", 3) == 0) {
			dump[0] = '\0';
			if (sscanf(line, "GO %llu %4095s", &expect, dump) < 1)
				continue;
			app->expect = expect;
			app->dump = dump[0] ? dump : NULL;
			app->dumped = false;
			app->total = 0;
			app->n_lat = 0;
			app->t_first = app->t_last = 0;
			memset(app->per_second, 0, sizeof(app->per_second));
			app->go = true;
			app->t_go = now_real();
			app->cpu_go = cpu_s();
			for (;;) {
				double t;

				xmpp_run_once(app->ctx, 10);
				t = now_real();
				if (app->total >= app->expect ||
				    (app->total > 0 && t - app->t_last > 5) ||
				    (app->total == 0 && t - app->t_go > 30))
					break;
			}
			app->go = false;
			print_result(app);
			continue;
		}
		if (strcmp(line, "QUIT") == 0)
			break;
	}
	return 0;
}

/* ---- publish mode ---- */

static int on_published(xmpp_conn_t *conn, xmpp_stanza_t *iq, void *data)
{
	struct app *app = data;
	const char *type = xmpp_stanza_get_type(iq);
	const char *id = xmpp_stanza_get_id(iq);

	(void)conn;
	if (id == NULL || strncmp(id, "pub-", 4) != 0)
		return 1;
	if (type != NULL && strcmp(type, "result") == 0) {
		app->results++;
	} else {
		char *text;
		size_t len;

		app->errors++;
		if (app->errors <= 3 && xmpp_stanza_to_text(iq, &text, &len) == XMPP_EOK) {
			fprintf(stderr, "fanout_client: publish failed: %s\n", text);
			xmpp_free(app->ctx, text);
		}
	}
	if (app->results + app->errors == app->n_publish + 1)
		app->t_last = now_real();
	return 1;
}

static void on_pub_connection(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
			      xmpp_stream_error_t *stream_error, void *data)
{
	struct app *app = data;

	(void)error;
	(void)stream_error;
	if (event == XMPP_CONN_CONNECT) {
		app->logged_in = 1;
		xmpp_handler_add(conn, on_published, NULL, "iq", NULL, app);
		return;
	}
	fprintf(stderr, "fanout_client: publisher connection failed or lost\n");
	exit(1);
}

static void publish(struct app *app, xmpp_conn_t *conn, unsigned long i)
{
	char *s;
	int n;

	bench_stamp_received(app->payload);
	n = asprintf(&s, "<iq type='set' id='pub-%lu' to='%s'><pubsub xmlns='" NS_PUBSUB
			 "'><publish node='%s'><item id='i%lu'>%s</item></publish></pubsub></iq>",
			 i, app->service, app->node, i, app->payload);

	if (n > 0) {
		xmpp_send_raw(conn, s, (size_t)n);
		free(s);
	}
}

static int run_publish(struct app *app, char **argv)
{
	xmpp_conn_t *conn = xmpp_conn_new(app->ctx);
	char pad[8193];
	double deadline;

	app->service = argv[6];
	app->node = argv[7];
	app->payload = bench_slurp(argv[8]);
	app->n_publish = strtoul(argv[9], NULL, 10);
	memset(pad, ' ', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	xmpp_conn_set_flags(conn, XMPP_CONN_FLAG_DISABLE_TLS);
	xmpp_conn_set_jid(conn, argv[4]);
	xmpp_conn_set_pass(conn, argv[5]);
	if (xmpp_connect_client(conn, app->host, app->port, on_pub_connection, app) != XMPP_EOK)
		return 1;
	deadline = now_real() + 30;
	while (!app->logged_in && now_real() < deadline)
		xmpp_run_once(app->ctx, 10);
	if (!app->logged_in)
		return 1;
	publish(app, conn, 0);   /* creates the node */
	while (app->results + app->errors < 1 && now_real() < deadline)
		xmpp_run_once(app->ctx, 10);
	if (app->results != 1)
		return 1;
	printf("READY\n");
	fflush(stdout);
	for (;;) {
		const char *line;

		xmpp_run_once(app->ctx, 10);
		if ((line = stdin_line()) != NULL && strcmp(line, "GO") == 0)
			break;
	}
	app->t_send = now_real();
	for (unsigned long i = 1; i <= app->n_publish; i++)
		publish(app, conn, i);
	/* whitespace between stanzas: makes Prosody's expat parse the last
	 * publish at once instead of deferring it (/work/shared/NOTES.md) */
	xmpp_send_raw(conn, pad, sizeof(pad) - 1);
	deadline = now_real() + 120;
	while (app->results + app->errors < app->n_publish + 1 && now_real() < deadline)
		xmpp_run_once(app->ctx, 10);
	printf("{\"published\":%lu,\"errors\":%lu,\"t_send\":%.6f,\"t_results\":%.6f}\n",
	       app->results - 1, app->errors, app->t_send, app->t_last);
	fflush(stdout);
	/* stay connected until the driver is done */
	for (;;) {
		const char *line;

		xmpp_run_once(app->ctx, 50);
		if ((line = stdin_line()) != NULL && strcmp(line, "QUIT") == 0)
			break;
	}
	xmpp_disconnect(conn);
	return app->errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct app app;
	int rc;

	if (argc == 8 && strcmp(argv[1], "recv") == 0) {
		;
	} else if (argc == 10 && strcmp(argv[1], "publish") == 0) {
		;
	} else {
		fprintf(stderr, "usage: fanout_client recv HOST PORT PREFIX FIRST COUNT PASSWORD\n"
			"       fanout_client publish HOST PORT JID PASSWORD SERVICE NODE"
			" PAYLOADFILE N\n");
		return 2;
	}
	expat_stream_deferral_off();   /* 2 KB stanzas must not wait for more bytes */
	xmpp_initialize();
	app.ctx = xmpp_ctx_new(NULL, NULL);
	app.host = argv[2];
	app.port = (unsigned short)atoi(argv[3]);
	rc = argv[1][0] == 'r' ? run_recv(&app, argv, argc) : run_publish(&app, argv);
	fflush(stdout);
	_exit(rc);   /* hundreds of connections: the kernel closes them faster */
}
