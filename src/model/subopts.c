#include "model/subopts.h"

#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "model/event.h"

#define DATA_NS "jabber:x:data"

enum field_kind { FIELD_BOOLEAN, FIELD_LIST_SINGLE, FIELD_LIST_MULTI, FIELD_HIDDEN };

static const struct field {
	const char *var;
	enum field_kind kind;
	const char *label;
} fields[] = {
	{ "FORM_TYPE", FIELD_HIDDEN, NULL },
	{ "pubsub#deliver", FIELD_BOOLEAN, "Receive notifications" },
	{ "pubsub#subscription_type", FIELD_LIST_SINGLE, "Subscription type" },
	{ "pubsub#subscription_depth", FIELD_LIST_SINGLE,
	  "Mailboxes covered: this one (0), and its children (1), and all below (all)" },
	{ "mailpubsub#events", FIELD_LIST_MULTI, "Event types to receive (RFC 5423)" },
	{ "mailpubsub#heartbeat", FIELD_BOOLEAN, "Send the current counts periodically" },
};

void subopts_defaults(struct subopts *opts)
{
	opts->deliver = true;
	opts->depth = 0;
	snprintf(opts->events, sizeof(opts->events), "%s", SUBOPTS_DEFAULT_EVENTS);
	opts->heartbeat = false;
}

bool subopts_wants(const struct subopts *opts, const char *event_type)
{
	return opts->deliver && config_list_contains(opts->events, event_type);
}

static const struct field *find_field(const char *var)
{
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (strcmp(fields[i].var, var) == 0)
			return &fields[i];
	}
	return NULL;
}

static int parse_bool(const char *v, bool *out)
{
	if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
		*out = true;
		return 0;
	}
	if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0) {
		*out = false;
		return 0;
	}
	return -1;
}

static bool known_event(const char *name)
{
	enum event_type type;

	return event_type_parse(name, &type) == 0;
}

/* Collects the field's <value/> texts; returns their number, -1 if more
 * than fit or one is not text. */
static int values_of(xmpp_stanza_t *field, char values[][64], int max)
{
	int n = 0;

	for (xmpp_stanza_t *v = xmpp_stanza_get_children(field); v != NULL;
	     v = xmpp_stanza_get_next(v)) {
		char *text;

		if (!xmpp_stanza_is_tag(v) || strcmp(xmpp_stanza_get_name(v), "value") != 0)
			continue;
		if (n == max)
			return -1;
		text = xmpp_stanza_get_text(v);
		snprintf(values[n++], 64, "%s", text != NULL ? text : "");
		if (text != NULL)
			xmpp_free(xmpp_stanza_get_context(v), text);
	}
	return n;
}

static int apply_events(char values[][64], int n, struct subopts *opts,
			const char **error_r)
{
	char list[sizeof(opts->events)] = "";

	if (n == 0) {
		*error_r = "mailpubsub#events needs at least one event type";
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (!known_event(values[i])) {
			*error_r = "mailpubsub#events names an unknown event type";
			return -1;
		}
		if (strlen(list) + strlen(values[i]) + 2 > sizeof(list)) {
			*error_r = "mailpubsub#events is too long";
			return -1;
		}
		if (i > 0)
			strcat(list, " ");
		strcat(list, values[i]);
	}
	memcpy(opts->events, list, sizeof(list));
	return 0;
}

static int apply_field(const struct field *f, char values[][64], int n,
		       struct subopts *opts, const char **error_r)
{
	if (f->kind != FIELD_LIST_MULTI && n != 1) {
		*error_r = "a single-valued option has no or several values";
		return -1;
	}
	if (strcmp(f->var, "FORM_TYPE") == 0) {
		if (strcmp(values[0], SUBOPTS_FORM_TYPE) != 0) {
			*error_r = "wrong FORM_TYPE";
			return -1;
		}
		return 0;
	}
	if (strcmp(f->var, "pubsub#deliver") == 0 || strcmp(f->var, "mailpubsub#heartbeat") == 0) {
		bool *target = f->var[0] == 'p' ? &opts->deliver : &opts->heartbeat;

		if (parse_bool(values[0], target) < 0) {
			*error_r = "a boolean option is neither true nor false";
			return -1;
		}
		return 0;
	}
	if (strcmp(f->var, "pubsub#subscription_type") == 0) {
		if (strcmp(values[0], "items") != 0) {
			*error_r = "only subscription_type items is offered";
			return -1;
		}
		return 0;
	}
	if (strcmp(f->var, "pubsub#subscription_depth") == 0) {
		if (strcmp(values[0], "0") == 0)
			opts->depth = 0;
		else if (strcmp(values[0], "1") == 0)
			opts->depth = 1;
		else if (strcmp(values[0], "all") == 0)
			opts->depth = -1;
		else {
			*error_r = "subscription_depth must be 0, 1 or all";
			return -1;
		}
		return 0;
	}
	return apply_events(values, n, opts, error_r);
}

int subopts_apply_form(xmpp_stanza_t *x, struct subopts *opts,
		       const char **error_r)
{
	struct subopts next = *opts;
	const char *type = xmpp_stanza_get_type(x);
	const char *ns = xmpp_stanza_get_ns(x);

	if (ns == NULL || strcmp(ns, DATA_NS) != 0 || type == NULL ||
	    strcmp(type, "submit") != 0) {
		*error_r = "options must be a submitted jabber:x:data form";
		return -1;
	}
	for (xmpp_stanza_t *el = xmpp_stanza_get_children(x); el != NULL;
	     el = xmpp_stanza_get_next(el)) {
		char values[32][64];
		const struct field *f;
		const char *var;
		int n;

		if (!xmpp_stanza_is_tag(el) || strcmp(xmpp_stanza_get_name(el), "field") != 0)
			continue;
		var = xmpp_stanza_get_attribute(el, "var");
		f = var != NULL ? find_field(var) : NULL;
		if (f == NULL) {
			*error_r = "unknown subscription option";
			return -1;
		}
		n = values_of(el, values, 32);
		if (n < 0) {
			*error_r = "too many values";
			return -1;
		}
		if (apply_field(f, values, n, &next, error_r) < 0)
			return -1;
	}
	*opts = next;
	return 0;
}

static xmpp_stanza_t *add_el(xmpp_ctx_t *ctx, xmpp_stanza_t *parent, const char *name)
{
	xmpp_stanza_t *el = xmpp_stanza_new(ctx);

	xmpp_stanza_set_name(el, name);
	xmpp_stanza_add_child_ex(parent, el, 0);
	return el;
}

static void add_value(xmpp_ctx_t *ctx, xmpp_stanza_t *field, const char *name,
		      const char *text)
{
	xmpp_stanza_t *v = add_el(ctx, field, name);
	xmpp_stanza_t *t = xmpp_stanza_new(ctx);

	xmpp_stanza_set_text(t, text);
	xmpp_stanza_add_child_ex(v, t, 0);
}

static void add_option(xmpp_ctx_t *ctx, xmpp_stanza_t *field, const char *value)
{
	xmpp_stanza_t *opt = add_el(ctx, field, "option");

	add_value(ctx, opt, "value", value);
}

static void add_event_options(xmpp_ctx_t *ctx, xmpp_stanza_t *field)
{
	for (unsigned t = 0; t < EVENT_TYPE_COUNT; t++)
		add_option(ctx, field, event_type_info((enum event_type)t)->name);
}

static void add_event_values(xmpp_ctx_t *ctx, xmpp_stanza_t *field,
			     const char *events)
{
	for (const char *p = events; *p != '\0';) {
		size_t len = strcspn(p, " ");
		char word[64];

		snprintf(word, sizeof(word), "%.*s", (int)len, p);
		if (len > 0)
			add_value(ctx, field, "value", word);
		p += len;
		p += strspn(p, " ");
	}
}

static const char *current_value(const struct field *f, const struct subopts *opts)
{
	if (strcmp(f->var, "FORM_TYPE") == 0)
		return SUBOPTS_FORM_TYPE;
	if (strcmp(f->var, "pubsub#deliver") == 0)
		return opts->deliver ? "true" : "false";
	if (strcmp(f->var, "mailpubsub#heartbeat") == 0)
		return opts->heartbeat ? "true" : "false";
	if (strcmp(f->var, "pubsub#subscription_type") == 0)
		return "items";
	return opts->depth == 0 ? "0" : opts->depth == 1 ? "1" : "all";
}

xmpp_stanza_t *subopts_form(xmpp_ctx_t *ctx, const struct subopts *opts)
{
	static const char *const kinds[] = { "boolean", "list-single", "list-multi", "hidden" };
	xmpp_stanza_t *x = xmpp_stanza_new(ctx);

	xmpp_stanza_set_name(x, "x");
	xmpp_stanza_set_ns(x, DATA_NS);
	xmpp_stanza_set_type(x, "form");
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const struct field *f = &fields[i];
		xmpp_stanza_t *field = add_el(ctx, x, "field");

		xmpp_stanza_set_attribute(field, "var", f->var);
		xmpp_stanza_set_attribute(field, "type", kinds[f->kind]);
		if (f->label != NULL)
			xmpp_stanza_set_attribute(field, "label", f->label);
		if (f->kind == FIELD_LIST_MULTI) {
			add_event_options(ctx, field);
			add_event_values(ctx, field, opts->events);
			continue;
		}
		if (strcmp(f->var, "pubsub#subscription_depth") == 0) {
			add_option(ctx, field, "0");
			add_option(ctx, field, "1");
			add_option(ctx, field, "all");
		} else if (strcmp(f->var, "pubsub#subscription_type") == 0) {
			add_option(ctx, field, "items");
		}
		add_value(ctx, field, "value", current_value(f, opts));
	}
	return x;
}
