/* See listener_component.h. Every function of src/xmpp/component.h is
 * defined here, so nothing of component.o is needed. */
#include "listener_component.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct component {
	xmpp_ctx_t *ctx;
	bool connected;
	char **sent;
	size_t nsent;
	unsigned long stanzas;
	void (*confirm_done)(void *);
	void *confirm_context;
	struct component_stats stats;
};

struct component *listener_component_new(xmpp_ctx_t *ctx)
{
	struct component *c = calloc(1, sizeof(*c));

	if (c == NULL)
		abort();
	c->ctx = ctx;
	c->connected = true;
	return c;
}

void listener_component_free(struct component **component)
{
	struct component *c = *component;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nsent; i++)
		free(c->sent[i]);
	free(c->sent);
	free(c);
	*component = NULL;
}

void listener_component_set_connected(struct component *c, bool connected)
{
	c->connected = connected;
	if (!connected)
		c->confirm_done = NULL;   /* the ping went with the stream */
}

const char *const *listener_component_sent(const struct component *c, size_t *count_r)
{
	*count_r = c->nsent;
	return (const char *const *)c->sent;
}

bool listener_component_confirm_pending(const struct component *c)
{
	return c->confirm_done != NULL;
}

void listener_component_confirm_answer(struct component *c)
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
	*error_r = "listener component: use listener_component_new()";
	return -1;
}

void component_start(struct component *component)
{
	(void)component;
}

void component_close(struct component **component, void (*done)(void *),
		     void *context)
{
	listener_component_free(component);
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
	return component->stanzas;
}

int component_send(struct component *component, xmpp_stanza_t *stanza)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (xmpp_stanza_to_text(stanza, &buf, &len) != XMPP_EOK || buf == NULL)
		abort();
	rc = component_send_raw(component, buf, len);
	xmpp_free(component->ctx, buf);
	return rc;
}

int component_send_raw(struct component *component, const char *data, size_t len)
{
	char **grown;

	if (!component->connected)
		return -1;
	if (data[len] != '\0' || strlen(data) != len) {
		fprintf(stderr, "listener component: raw data not a C string of len %zu\n", len);
		abort();
	}
	grown = realloc(component->sent, (component->nsent + 1) * sizeof(*grown));
	if (grown == NULL)
		abort();
	component->sent = grown;
	component->sent[component->nsent] = strdup(data);
	if (component->sent[component->nsent++] == NULL)
		abort();
	component->stanzas++;
	return 0;
}

int component_confirm(struct component *component, void (*done)(void *), void *context)
{
	if (!component->connected)
		return -1;
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
	return &component->stats;
}
