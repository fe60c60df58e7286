/* See fake_component.h. Every function of src/xmpp/component.h is defined here,
 * so nothing of component.o is needed. */
#include "fake_component.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct component {
	xmpp_ctx_t *ctx;
	struct fake_component_stats stats;
	bool record;
	char **sent;
	size_t n;
	struct component_stats connection;
	bool connected;
	bool hold_confirms;
	void (*confirm_done)(void *);   /* the held confirmation, or NULL */
	void *confirm_context;
};

struct component *fake_component_new(xmpp_ctx_t *ctx)
{
	struct component *c = calloc(1, sizeof(*c));

	if (c == NULL)
		abort();
	c->ctx = ctx;
	c->connected = true;
	return c;
}

void fake_component_clear(struct component *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->sent[i]);
	free(c->sent);
	c->sent = NULL;
	c->n = 0;
}

void fake_component_free(struct component **component)
{
	if (*component == NULL)
		return;
	fake_component_clear(*component);
	free(*component);
	*component = NULL;
}

void fake_component_record(struct component *c, bool on)
{
	c->record = on;
}

size_t fake_component_count(const struct component *c)
{
	return c->n;
}

const char *fake_component_sent(const struct component *c, size_t i)
{
	return i < c->n ? c->sent[i] : NULL;
}

xmpp_stanza_t *fake_component_last(struct component *c)
{
	return c->n > 0 ? xmpp_stanza_new_from_string(c->ctx, c->sent[c->n - 1]) : NULL;
}

static void keep(struct component *c, const char *text, size_t len)
{
	char **grown;

	if (!c->record)
		return;
	grown = realloc(c->sent, (c->n + 1) * sizeof(*grown));
	if (grown == NULL || (grown[c->n] = strndup(text, len)) == NULL)
		abort();
	c->sent = grown;
	c->n++;
}

const struct fake_component_stats *fake_component_stats(const struct component *c)
{
	return &c->stats;
}

void fake_component_set_connected(struct component *c, bool connected)
{
	c->connected = connected;
	if (!connected)
		c->confirm_done = NULL;   /* the ping went with the stream */
}

void fake_component_hold_confirms(struct component *c, bool on)
{
	c->hold_confirms = on;
}

bool fake_component_confirm_pending(const struct component *c)
{
	return c->confirm_done != NULL;
}

void fake_component_confirm_answer(struct component *c)
{
	void (*done)(void *) = c->confirm_done;

	c->confirm_done = NULL;
	if (done != NULL)
		done(c->confirm_context);
}

int component_new(uv_loop_t *loop, const struct component_settings *settings,
		  component_stanza_cb *on_stanza, component_state_cb *on_state,
		  void *context, struct component **component_r,
		  const char **error_r)
{
	(void)loop;
	(void)settings;
	(void)on_stanza;
	(void)on_state;
	(void)context;
	(void)component_r;
	*error_r = "fake component: use fake_component_new()";
	return -1;
}

void component_start(struct component *component)
{
	(void)component;
}

void component_close(struct component **component, void (*done)(void *),
		     void *context)
{
	fake_component_free(component);
	if (done != NULL)
		done(context);
}

bool component_is_connected(const struct component *component)
{
	return component != NULL && component->connected;
}

xmpp_ctx_t *component_xmpp_ctx(struct component *component)
{
	return component->ctx;
}

size_t component_queue_len(const struct component *component)
{
	(void)component;
	return 0;
}

unsigned long component_sent_count(const struct component *component)
{
	/* as the real one: every stanza queued, raw or not */
	return (unsigned long)(component->stats.stanzas + component->stats.raw);
}

/* Serialized as the real module does before writing it out. */
int component_send(struct component *component, xmpp_stanza_t *stanza)
{
	char *buf = NULL;
	size_t len = 0;

	if (!component->connected)
		return -1;
	if (xmpp_stanza_to_text(stanza, &buf, &len) != XMPP_EOK || buf == NULL) {
		fprintf(stderr, "fake component: a stanza that does not serialize\n");
		abort();
	}
	component->stats.stanzas++;
	component->stats.bytes += len;
	keep(component, buf, len);
	xmpp_free(component->ctx, buf);
	return 0;
}

/* The contract: data[len] is '\0', and it is well-formed XML (it goes to
 * the server as is: anything else would end our stream). */
int component_send_raw(struct component *component, const char *data,
		       size_t len)
{
	xmpp_stanza_t *parsed;

	if (!component->connected)
		return -1;
	if (data[len] != '\0' || strlen(data) != len) {
		fprintf(stderr, "fake component: raw data not a C string of len %zu\n",
			len);
		abort();
	}
	parsed = xmpp_stanza_new_from_string(component->ctx, data);
	if (parsed == NULL) {
		fprintf(stderr, "fake component: raw data is not well-formed XML: %s\n",
			data);
		abort();
	}
	xmpp_stanza_release(parsed);
	keep(component, data, len);
	component->stats.raw++;
	component->stats.bytes += len;
	return 0;
}

/* Unless held, a confirmation comes at once; nothing was ever refused. */
int component_confirm(struct component *component, void (*done)(void *),
		      void *context)
{
	if (!component->connected)
		return -1;
	if (!component->hold_confirms) {
		done(context);
		return 0;
	}
	component->confirm_done = done;
	component->confirm_context = context;
	return 0;
}

void component_confirm_cancel(struct component *component, void *context)
{
	if (component->confirm_context == context)
		component->confirm_done = NULL;
}

bool component_refused(const struct component *component)
{
	(void)component;
	return false;
}

const char *component_last_stream_error(const struct component *component)
{
	(void)component;
	return NULL;
}

const struct component_stats *component_stats(const struct component *component)
{
	return &component->connection;
}
