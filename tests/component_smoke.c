/* Manual/integration smoke test for src/xmpp/component.c: connects as an
 * XEP-0114 component and echoes every <message/> with a <body/> back to its
 * sender (from = the original to). Exits 0 after SIGTERM/SIGINT once the
 * component is fully closed, so it can run under valgrind.
 *
 * Build (not part of the build system):
 *   gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o /tmp/component_smoke \
 *       tests/component_smoke.c src/xmpp/component.c src/base/log.c \
 *       $(pkg-config --cflags --libs libstrophe libuv)
 *
 * Usage: component_smoke [-v] HOST PORT DOMAIN SECRET
 *   env SMOKE_PING_INTERVAL_MS (default 1000), SMOKE_PING_TIMEOUT_MS (2000),
 *       SMOKE_RECONNECT_MIN_MS (100), SMOKE_RECONNECT_MAX_MS (2000)
 */
#include "../src/xmpp/component.h"
#include "../src/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct smoke {
	uv_loop_t *loop;
	struct component *component;
	uv_signal_t sigterm;
	uv_signal_t sigint;
	unsigned long echoed;
};

static unsigned env_ms(const char *name, unsigned fallback)
{
	const char *value = getenv(name);

	return value != NULL && *value != '\0' ? (unsigned)strtoul(value, NULL, 10)
					       : fallback;
}

static void smoke_echo(struct smoke *s, xmpp_stanza_t *msg)
{
	xmpp_ctx_t *ctx = component_xmpp_ctx(s->component);
	const char *from = xmpp_stanza_get_from(msg);
	const char *to = xmpp_stanza_get_to(msg);
	const char *type = xmpp_stanza_get_type(msg);
	char *body = xmpp_message_get_body(msg);
	xmpp_stanza_t *reply;

	if (body == NULL || from == NULL || to == NULL) {
		xmpp_free(ctx, body);
		return;
	}
	reply = xmpp_message_new(ctx, type != NULL ? type : "chat", from,
				 xmpp_stanza_get_id(msg));
	xmpp_stanza_set_from(reply, to);
	xmpp_message_set_body(reply, body);
	if (component_send(s->component, reply) == 0)
		s->echoed++;
	else
		log_warn("smoke: echo dropped, not connected");
	xmpp_stanza_release(reply);
	xmpp_free(ctx, body);
}

static void smoke_stop(struct smoke *s);

static bool smoke_is_quit(xmpp_stanza_t *msg)
{
	xmpp_stanza_t *body = xmpp_stanza_get_child_by_name(msg, "body");
	char *text = body != NULL ? xmpp_stanza_get_text(body) : NULL;
	bool quit = text != NULL && strcmp(text, "quit") == 0;

	if (text != NULL)
		xmpp_free(xmpp_stanza_get_context(msg), text);
	return quit;
}

/* "flood N SIZE" answers with N messages of SIZE bytes: exercises partial
 * writes and the writable-interest logic. */
static bool smoke_flood(struct smoke *s, xmpp_stanza_t *msg)
{
	xmpp_ctx_t *ctx = component_xmpp_ctx(s->component);
	char *body = xmpp_message_get_body(msg);
	unsigned n, size;
	char *payload;

	if (body == NULL || sscanf(body, "flood %u %u", &n, &size) != 2) {
		xmpp_free(ctx, body);
		return false;
	}
	xmpp_free(ctx, body);
	payload = malloc(size + 1);
	if (payload == NULL)
		return true;
	memset(payload, 'f', size);
	payload[size] = '\0';
	for (unsigned i = 0; i < n; i++) {
		xmpp_stanza_t *m = xmpp_message_new(ctx, "chat",
						    xmpp_stanza_get_from(msg), NULL);

		xmpp_stanza_set_from(m, xmpp_stanza_get_to(msg));
		xmpp_message_set_body(m, payload);
		component_send(s->component, m);
		xmpp_stanza_release(m);
	}
	free(payload);
	log_info("smoke: flooded %u x %u bytes, queue %zu", n, size,
		 component_queue_len(s->component));
	return true;
}

static void smoke_on_stanza(void *context, xmpp_stanza_t *stanza)
{
	struct smoke *s = context;
	const char *name = xmpp_stanza_get_name(stanza);

	if (strcmp(name, "message") != 0) {
		log_debug("smoke: ignoring <%s/>", name);
		return;
	}
	if (smoke_is_quit(stanza)) {
		/* Closing from inside a stanza callback must be safe. */
		log_info("smoke: quit requested");
		smoke_stop(s);
		return;
	}
	if (!smoke_flood(s, stanza))
		smoke_echo(s, stanza);
}

static void smoke_on_state(void *context, bool connected)
{
	struct smoke *s = context;

	log_info("smoke: state %s (echoed %lu so far)",
		 connected ? "connected" : "disconnected", s->echoed);
}

static void smoke_closed(void *context)
{
	struct smoke *s = context;

	log_info("smoke: component closed, echoed %lu", s->echoed);
	uv_close((uv_handle_t *)&s->sigterm, NULL);
	uv_close((uv_handle_t *)&s->sigint, NULL);
}

static void smoke_stop(struct smoke *s)
{
	uv_signal_stop(&s->sigterm);
	uv_signal_stop(&s->sigint);
	component_close(&s->component, smoke_closed, s);
}

static void smoke_on_signal(uv_signal_t *handle, int signum)
{
	log_info("smoke: signal %d, closing", signum);
	smoke_stop(handle->data);
}

int main(int argc, char **argv)
{
	struct smoke s = { .loop = uv_default_loop() };
	struct component_settings settings;
	const char *error;
	bool verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
	int rc;

	if (verbose) {
		argv++;
		argc--;
	}
	if (argc != 5) {
		fprintf(stderr, "usage: component_smoke [-v] HOST PORT DOMAIN SECRET\n");
		return 2;
	}
	setvbuf(stderr, NULL, _IOLBF, 0);
	log_open("component_smoke", false,
		 verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	settings = (struct component_settings){
		.host = argv[1],
		.port = (unsigned short)atoi(argv[2]),
		.domain = argv[3],
		.secret = argv[4],
		.ping_interval_ms = env_ms("SMOKE_PING_INTERVAL_MS", 1000),
		.ping_timeout_ms = env_ms("SMOKE_PING_TIMEOUT_MS", 2000),
		.reconnect_min_ms = env_ms("SMOKE_RECONNECT_MIN_MS", 100),
		.reconnect_max_ms = env_ms("SMOKE_RECONNECT_MAX_MS", 2000),
	};
	if (component_new(s.loop, &settings, smoke_on_stanza, smoke_on_state,
			  &s, &s.component, &error) < 0) {
		log_error("%s", error);
		return 1;
	}
	uv_signal_init(s.loop, &s.sigterm);
	uv_signal_init(s.loop, &s.sigint);
	s.sigterm.data = &s;
	s.sigint.data = &s;
	uv_signal_start(&s.sigterm, smoke_on_signal, SIGTERM);
	uv_signal_start(&s.sigint, smoke_on_signal, SIGINT);
	component_start(s.component);

	rc = uv_run(s.loop, UV_RUN_DEFAULT);
	log_info("smoke: loop ended (%d)", rc);
	rc = uv_loop_close(s.loop);
	if (rc != 0)
		log_error("smoke: uv_loop_close: %s", uv_strerror(rc));
	log_close();
	return rc == 0 ? 0 : 1;
}
