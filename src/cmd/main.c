/* mailpubsubd: RFC 5423 mail store events as XEP-0060 notifications. */
#include "base/clock.h"
#include "build-config.h"

#include "base/config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "authz/authz.h"
#include "store/changelog.h"
#include "xmpp/component.h"
#include "ops/control.h"
#include "publish/counts.h"
#include "publish/delegate.h"
#include "publish/delivery.h"
#include "ingest/discovery.h"
#include "xmpp/expat_stream.h"
#include "downstream/bus_out.h"
#include "ingest/bus_in.h"
#include "downstream/firehose.h"
#include "imap/imap_client.h"
#include "ingest/ingest_cyrus.h"
#include "ingest/ingest_imap.h"
#include "ingest/ingest_json.h"
#include "ingest/sink.h"
#include "publish/item.h"
#include "base/log.h"
#include "ops/metrics.h"
#include "publish/publisher.h"
#include "ops/reload.h"
#include "ops/sdnotify.h"
#include "handlers/router.h"
#include "handlers/service.h"
#include "store/store.h"
#include "downstream/tap.h"

struct daemon_state {
	uv_loop_t *loop;
	struct config *config;
	struct publish_service publish;   /* what publish/ and downstream/ share */
	struct service service;           /* the request handlers' */
	struct tap_relay *taps;
	struct publisher *publisher;
	struct ingest_cyrus *ingest;
	struct ingest_json *ingest_json;
	struct ingest_imap *ingest_imap;
	struct imap_client *imap;
	struct imap_backends *backends;   /* [backends]; NULL without */
	struct changelog_retention *retention;
	struct control *control;
	struct metrics *metrics;
	struct bus_out *bus;
	struct bus_in *bus_in;             /* [bus] consume; NULL without */
	uv_signal_t sigterm, sigint, sigusr1, sighup;
	const char *pidfile;
	char *config_path;        /* absolute: SIGHUP reads it again after daemon() */
	struct sdnotify *sdnotify; /* NULL outside systemd */
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: mailpubsubd [-f] [-c FILE] [-p PIDFILE]\n"
		"       mailpubsubd --dump-config [-c FILE]\n"
		"  -c, --config FILE    configuration (default " SYSCONFDIR "/mailpubsub.conf)\n"
		"  -f, --foreground     stay in the foreground, log to stderr\n"
		"  -p, --pidfile FILE   write our PID there\n"
		"      --dump-config    print every option with its value and exit: the\n"
		"                       defaults, or with -c the file's effective values\n"
		"  -V, --version        print the version and exit\n");
}

static void on_stanza(void *context, xmpp_stanza_t *stanza)
{
	struct daemon_state *st = context;

	router_handle_stanza(&st->service, stanza);
}

static void on_component_state(void *context, bool connected)
{
	struct daemon_state *st = context;

	log_info("xmpp: component %s", connected ? "connected" : "disconnected");
	sdnotify_update(st->sdnotify);
	/* first: the publisher kicked below may delegate at once */
	delegate_connected(st->publish.delegate, connected);
	if (connected) {
		publisher_kick(st->publisher);
		firehose_kick(st->service.firehose);
	} else if (st->publisher != NULL) {
		publisher_reset(st->publisher);
		firehose_reset(st->service.firehose);
	}
}

static void log_stats(const struct stats_counters *s)
{
	log_info("stats: datagrams=%llu json_lines=%llu malformed=%llu dropped=%llu "
		 "journaled=%llu published=%llu notifications=%llu iq=%llu iq_errors=%llu "
		 "json_auth_failures=%llu json_auth_timeouts=%llu json_auth_evicted=%llu "
		 "repaired=%llu refused=%llu notices=%llu",
		 s->datagrams, s->json_lines, s->malformed, s->dropped, s->journaled, s->published,
		 s->notifications, s->iq_requests, s->iq_errors, s->json_auth_failures,
		 s->json_auth_timeouts, s->json_auth_evicted, s->repaired, s->refused,
		 s->notices);
}

static void component_closed(void *context)
{
	struct daemon_state *st = context;

	uv_close((uv_handle_t *)&st->sigterm, NULL);
	uv_close((uv_handle_t *)&st->sigint, NULL);
	uv_close((uv_handle_t *)&st->sigusr1, NULL);
	uv_close((uv_handle_t *)&st->sighup, NULL);
}

/* Last: pending IMAP answers may still send replies through it. */
static void imap_closed(void *context)
{
	struct daemon_state *st = context;

	component_close(&st->publish.component, component_closed, st);
}

static void backends_closed(void *context)
{
	struct daemon_state *st = context;

	if (st->imap != NULL)
		imap_client_close(&st->imap, imap_closed, st);
	else
		imap_closed(st);
}

/* `mailpubsubctl status` and the Prometheus endpoint, when configured. */
static int start_observers(struct daemon_state *st, const char **error_r)
{
	const struct config *c = st->config;

	if (*c->control_socket != '\0' &&
	    control_new(st->loop, &st->service, st->imap, &st->control, error_r) < 0)
		return -1;
	if (*c->metrics_listen != '\0' &&
	    metrics_new(st->loop, &st->service, st->imap, &st->metrics, error_r) < 0)
		return -1;
	return 0;
}

static void stop_observers(struct daemon_state *st)
{
	control_close(&st->control);
	metrics_close(&st->metrics);
}

/* Every producer reaches every listener the same way: through the sink,
 * after each commit. */
static int register_listeners(struct daemon_state *st)
{
	const struct sink_listener publisher = { publisher_committed, st->publisher };
	const struct sink_listener firehose = { firehose_committed, st->service.firehose };
	const struct sink_listener bus = { bus_out_committed, st->bus };

	if (sink_listener_register(st->publish.sink, &publisher) < 0 ||
	    sink_listener_register(st->publish.sink, &firehose) < 0 ||
	    (st->bus != NULL && sink_listener_register(st->publish.sink, &bus) < 0))
		return -1;
	return 0;
}

static void unregister_listeners(struct daemon_state *st)
{
	const struct sink_listener publisher = { publisher_committed, st->publisher };
	const struct sink_listener firehose = { firehose_committed, st->service.firehose };
	const struct sink_listener bus = { bus_out_committed, st->bus };

	sink_listener_unregister(st->publish.sink, &publisher);
	sink_listener_unregister(st->publish.sink, &firehose);
	sink_listener_unregister(st->publish.sink, &bus);
}

static void shutdown_daemon(struct daemon_state *st)
{
	log_info("shutting down");
	sdnotify_close(&st->sdnotify);
	stop_observers(st);
	/* what the sources journal while closing is published after the
	 * restart, from the journal, as it always was */
	unregister_listeners(st);
	/* ingest first: what was received gets journaled before we stop */
	st->service.ingest_json = NULL;
	st->service.bus_in = NULL;
	st->service.ingest_imap = NULL;
	ingest_cyrus_close(&st->ingest);
	ingest_json_close(&st->ingest_json);
	bus_in_close(&st->bus_in);
	/* before the IMAP client: its sessions come from it */
	ingest_imap_close(&st->ingest_imap);
	if (st->taps != NULL)
		publisher_listener_unregister(st->publisher, tap_relay_listener(st->taps));
	tap_relay_close(&st->taps);
	publisher_close(&st->publisher);
	firehose_close(&st->service.firehose);
	st->service.bus_out = NULL;
	bus_out_close(&st->bus);
	changelog_retention_close(&st->retention);
	st->publish.publisher = NULL;
	counts_close(&st->publish.counts);
	discovery_close(&st->service.discovery);
	log_stats(&st->publish.stats);
	imap_backends_close(&st->backends, backends_closed, st);
}

static void reload(struct daemon_state *st)
{
	log_info("SIGHUP: reading %s again", st->config_path);
	sdnotify_reloading(st->sdnotify);
	reload_config(&st->service, st->config, st->config_path);
	sdnotify_ready(st->sdnotify);
}

static void on_signal(uv_signal_t *handle, int signum)
{
	struct daemon_state *st = handle->data;

	if (signum == SIGUSR1) {
		log_stats(&st->publish.stats);
		return;
	}
	if (signum == SIGHUP) {
		reload(st);
		return;
	}
	if (st->publish.component != NULL)
		shutdown_daemon(st);
}

static void watch_signal(struct daemon_state *st, uv_signal_t *h, int signum)
{
	uv_signal_init(st->loop, h);
	h->data = st;
	uv_signal_start(h, on_signal, signum);
}

static int start_component(struct daemon_state *st, const char **error_r)
{
	const struct config *c = st->config;
	struct component_settings set = {
		.host = c->component_host,
		.port = (unsigned short)c->component_port,
		.domain = c->component_domain,
		.secret = c->component_secret,
		.ping_interval_ms = c->ping_interval * 1000,
		.ping_timeout_ms = c->ping_timeout * 1000,
		.reconnect_min_ms = 200,
		.reconnect_max_ms = 30000,
		.max_stanza_bytes = c->max_stanza_size,
	};

	item_set_max_stanza(c->max_stanza_size);
	if (component_new(st->loop, &set, on_stanza, on_component_state,
			  st, &st->publish.component, error_r) < 0)
		return -1;
	return 0;
}

/* libuv's threadpool (4 threads unless UV_THREADPOOL_SIZE says otherwise,
 * read at its first use) runs every IMAP command: the sweep's LISTs get
 * threads on top of those, so an ACL question never waits for a thread
 * behind them. An administrator's own setting wins. */
static void size_threadpool(const struct config *c)
{
	char n[16];

	snprintf(n, sizeof(n), "%u", c->imap_list_concurrency + 4);
	setenv("UV_THREADPOOL_SIZE", n, 0);
}

static int start_imap(struct daemon_state *st, const char **error_r)
{
	const struct config *c = st->config;
	struct imap_settings set = {
		.host = c->imap_host,
		.port = (unsigned short)c->imap_port,
		.tls = strcmp(c->imap_tls, "none") == 0 ? IMAP_TLS_NONE :
		       strcmp(c->imap_tls, "imaps") == 0 ? IMAP_TLS_IMAPS :
		       IMAP_TLS_STARTTLS,
		.ca_file = *c->imap_ca_file != '\0' ? c->imap_ca_file : NULL,
		.verify = c->imap_verify,
		.admin_user = c->imap_admin_user,
		.password = c->imap_password,
		.mechanism = c->imap_mechanism,
		.timeout_ms = c->imap_timeout_ms,
		.max_sessions = c->imap_max_sessions,
		.other_inbox_named = c->imap_other_inbox_named,
		.list_as_owner = c->imap_list_as_owner,
	};

	size_threadpool(c);
	if (imap_client_new(st->loop, &set, &st->imap, error_r) < 0)
		return -1;
	return imap_backends_new(st->loop, &set, c->backends, c->backend_count,
				 &st->backends, error_r);
}

static int start(struct daemon_state *st, const char **error_r)
{
	const struct config *c = st->config;

	st->publish.config = c;
	st->service.publish = &st->publish;
	st->publish.stats.started_us = clock_now_us();
	if (expat_stream_deferral_off())
		log_debug("xmpp: expat reparse deferral switched off for the stream");
	if (store_open(c->store_path, c->store_full_sync, &st->publish.store, error_r) < 0)
		return -1;
	if (sink_new(st->publish.store, &st->publish.stats, &st->publish.sink, error_r) < 0)
		return -1;
	sink_set_hierarchy_separator(st->publish.sink, c->hierarchy_separator[0]);
	/* e-Discovery: a record of every event, in the append's transaction */
	if (changelog_attach(sink_journal(st->publish.sink)) < 0) {
		*error_r = "cannot attach the changelog to the journal";
		return -1;
	}
	if (*c->imap_host != '\0' && start_imap(st, error_r) < 0)
		return -1;
	if (authz_new(c, st->publish.store, st->imap, &st->publish.authz, error_r) < 0)
		return -1;
	authz_set_backends(st->publish.authz, st->backends);
	if (delivery_new(&st->publish, &st->publish.delivery, error_r) < 0 ||
	    delegate_new(&st->publish, &st->publish.delegate, error_r) < 0)
		return -1;
	if (start_component(st, error_r) < 0)
		return -1;
	if (publisher_new(st->loop, &st->publish, &st->publisher, error_r) < 0)
		return -1;
	st->publish.publisher = st->publisher;
	if (firehose_new(st->loop, &st->publish, st->imap, &st->service.firehose,
			 error_r) < 0)
		return -1;
	firehose_set_backends(st->service.firehose, st->backends);
	if (bus_out_new(st->loop, st->publish.store, c, st->imap, &st->bus, error_r) < 0)
		return -1;
	bus_out_set_backends(st->bus, st->backends);
	st->service.bus_out = st->bus;
	if (tap_relay_new(st->loop, &st->publish, st->imap, &st->taps, error_r) < 0)
		return -1;
	tap_relay_set_backends(st->taps, st->backends);
	if (publisher_listener_register(st->publisher, tap_relay_listener(st->taps)) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	if (changelog_retention_new(st->loop, st->publish.store, c->changelog_retention,
				    c->changelog_key_file, &st->retention, error_r) < 0)
		return -1;
	if (register_listeners(st) < 0) {
		*error_r = "cannot register the journal listeners";
		return -1;
	}
	if (counts_new(st->loop, &st->publish, st->imap, &st->publish.counts, error_r) < 0)
		return -1;
	counts_set_backends(st->publish.counts, st->backends);
	if (st->imap != NULL &&
	    discovery_new(st->loop, c, st->publish.store, st->publish.sink, st->imap,
			  &st->service.discovery, error_r) < 0)
		return -1;
	if (st->service.discovery != NULL)
		discovery_set_backends(st->service.discovery, st->backends);
	if (*c->notify_socket != '\0' &&
	    ingest_cyrus_new(st->loop, c, st->publish.sink, &st->publish.stats,
			     &st->ingest, error_r) < 0)
		return -1;
	if ((*c->json_socket != '\0' || *c->json_listen != '\0') &&
	    ingest_json_new(st->loop, c, st->publish.sink, &st->publish.stats,
			    &st->ingest_json, error_r) < 0)
		return -1;
	st->service.ingest_json = st->ingest_json;
	if (*c->bus_consume != '\0' &&
	    bus_in_new(st->loop, c, st->publish.sink, &st->bus_in, error_r) < 0)
		return -1;
	st->service.bus_in = st->bus_in;
	if (st->bus_in != NULL && st->bus == NULL)
		log_info("bus: consuming only (no [bus] address): no producer, nothing of this journal goes onto the bus");
	/* the sink tells the listeners: no callback of its own */
	if (*c->imap_source_accounts != '\0' &&
	    ingest_imap_new(st->loop, c, st->publish.store, st->publish.sink,
			    &st->publish.stats, st->imap, &st->ingest_imap, error_r) < 0)
		return -1;
	st->service.ingest_imap = st->ingest_imap;
	if (start_observers(st, error_r) < 0)
		return -1;
	watch_signal(st, &st->sigterm, SIGTERM);
	watch_signal(st, &st->sigint, SIGINT);
	watch_signal(st, &st->sigusr1, SIGUSR1);
	watch_signal(st, &st->sighup, SIGHUP);
	if (sdnotify_new(st->loop, &st->service, &st->sdnotify, error_r) < 0)
		return -1;
	component_start(st->publish.component);
	return 0;
}

/* Secrets readable by others are a configuration mistake worth a warning
 * (not a refusal: a group-readable file may be deliberate). */
static void warn_if_readable(const char *what, const char *path)
{
	struct stat st;

	if (*path == '\0' || stat(path, &st) < 0)
		return;
	if ((st.st_mode & 077) != 0)
		log_warn("%s %s is readable by group or others (mode %04o); make it 0600",
			 what, path, (unsigned)(st.st_mode & 07777));
}

static int write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fprintf(f, "%ld\n", (long)getpid());
	return fclose(f);
}

/* --dump-config: the defaults without a file (to write one from), the
 * effective values with one, printed even when the daemon could not start
 * with them (exit status 1 then, and why on stderr). */
static int dump_config(const char *path)
{
	struct config *config;
	char error[CONFIG_ERROR_MAX];
	int ret = 0;

	if (config_parse(path, &config, error, sizeof(error)) < 0) {
		fprintf(stderr, "mailpubsubd: %s\n", error);
		return 1;
	}
	if (path != NULL && config_check(config, error, sizeof(error)) < 0) {
		fprintf(stderr, "mailpubsubd: %s: %s\n", path, error);
		ret = 1;
	}
	config_dump(config, stdout);
	config_free(&config);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "dump-config", no_argument, NULL, 'D' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon_state st = { 0 };
	const char *config_path = SYSCONFDIR "/mailpubsub.conf";
	const char *error;
	char config_error[CONFIG_ERROR_MAX];
	bool foreground = false, dump = false, config_given = false;
	enum log_level level;
	int opt, ret;

	while ((opt = getopt_long(argc, argv, "c:fp:Vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; config_given = true; break;
		case 'f': foreground = true; break;
		case 'p': st.pidfile = optarg; break;
		case 'D': dump = true; break;
		case 'V': printf("mailpubsubd %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (dump)
		return dump_config(config_given ? config_path : NULL);
	if (config_load(config_path, &st.config, config_error, sizeof(config_error)) < 0) {
		fprintf(stderr, "mailpubsubd: %s\n", config_error);
		return 1;
	}
	if (log_level_parse(st.config->log_level, &level) < 0) {
		fprintf(stderr, "mailpubsubd: [log] level: unknown level '%s'\n",
			st.config->log_level);
		return 1;
	}
	st.config_path = realpath(config_path, NULL);
	if (st.config_path == NULL)
		st.config_path = strdup(config_path);
	if (!foreground && daemon(0, 0) < 0) {
		fprintf(stderr, "mailpubsubd: cannot daemonize: %s\n", strerror(errno));
		return 1;
	}
	log_open("mailpubsubd", !foreground, level);
	signal(SIGPIPE, SIG_IGN);
	warn_if_readable("[component] secret_file", st.config->component_secret_file);
	warn_if_readable("[imap] password_file", st.config->imap_password_file);
	warn_if_readable("[json] secret_file", st.config->json_secret_file);
	warn_if_readable("[bus] credentials_file", st.config->bus_credentials_file);
	if (*st.config->component_secret_file == '\0')
		log_info("the component secret is in the configuration file: prefer secret_file");
	if (st.pidfile != NULL && write_pidfile(st.pidfile) < 0)
		log_warn("cannot write pidfile %s: %s", st.pidfile, strerror(errno));
	st.loop = uv_default_loop();
	if (start(&st, &error) < 0) {
		log_error("cannot start: %s", error);
		return 1;
	}
	log_info("mailpubsubd %s started: component %s", PACKAGE_VERSION,
		 st.config->component_domain);
	/* the store is open and every socket bound: senders may send */
	sdnotify_ready(st.sdnotify);
	ret = uv_run(st.loop, UV_RUN_DEFAULT);
	delivery_free(&st.publish.delivery);
	delegate_free(&st.publish.delegate);
	authz_free(&st.publish.authz);
	sink_free(&st.publish.sink);
	store_close(&st.publish.store);
	uv_loop_close(st.loop);
	if (st.pidfile != NULL)
		unlink(st.pidfile);
	config_free(&st.config);
	free(st.config_path);
	log_close();
	return ret == 0 ? 0 : 1;
}
