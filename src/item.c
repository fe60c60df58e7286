#include "item.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void item_format_time(long long us, char *buf, size_t size)
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	char base[32];

	gmtime_r(&secs, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03lldZ", base, (us / 1000) % 1000);
}

static xmpp_stanza_t *add_child(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
				const char *name)
{
	xmpp_stanza_t *child = xmpp_stanza_new(ctx);

	xmpp_stanza_set_name(child, name);
	xmpp_stanza_add_child_ex(parent, child, 0);
	return child;
}

static void add_text(xmpp_ctx_t *ctx, xmpp_stanza_t *parent, const char *text)
{
	xmpp_stanza_t *t = xmpp_stanza_new(ctx);

	xmpp_stanza_set_text(t, text);
	xmpp_stanza_add_child_ex(parent, t, 0);
}

static void add_text_child(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
			   const char *name, const char *text)
{
	xmpp_stanza_t *child = add_child(ctx, parent, name);

	if (*text != '\0')
		add_text(ctx, child, text);
}

static void add_mailbox(xmpp_ctx_t *ctx, xmpp_stanza_t *parent, const char *name,
			const struct mailbox_uri *mb)
{
	xmpp_stanza_t *el;
	char num[16];

	if (mb->node == NULL)
		return;
	el = add_child(ctx, parent, name);
	xmpp_stanza_set_attribute(el, "account", mb->account);
	xmpp_stanza_set_attribute(el, "node", mb->node);
	xmpp_stanza_set_attribute(el, "name", mb->imap_name);
	if (mb->uidvalidity != 0) {
		snprintf(num, sizeof(num), "%u", mb->uidvalidity);
		xmpp_stanza_set_attribute(el, "uidvalidity", num);
	}
	if (mb->uid != 0) {
		snprintf(num, sizeof(num), "%u", mb->uid);
		xmpp_stanza_set_attribute(el, "uid", num);
	}
}

/* flagNames and tags: one child per word, so clients need not split. */
static void add_words(xmpp_ctx_t *ctx, xmpp_stanza_t *parent, const char *name,
		      const char *words)
{
	xmpp_stanza_t *list = add_child(ctx, parent, name);
	const char *word_name = strcmp(name, "flagNames") == 0 ? "flag" : "tag";

	for (const char *p = words; *p != '\0';) {
		size_t len;
		char *w;

		p += strspn(p, " ");
		len = strcspn(p, " ");
		if (len == 0)
			break;
		w = strndup(p, len);
		add_text_child(ctx, list, word_name, w);
		free(w);
		p += len;
	}
}

static bool is_known_param(const char *name)
{
	unsigned count;
	const struct event_param_info *params = event_params(&count);

	if (strcmp(name, "event") == 0)
		return true;
	for (unsigned i = 0; i < count; i++) {
		if (strcmp(params[i].name, name) == 0)
			return true;
	}
	return false;
}

static void add_params(xmpp_ctx_t *ctx, xmpp_stanza_t *root,
		       const struct event *event)
{
	unsigned count;
	const struct event_param_info *params = event_params(&count);
	char buf[32];

	for (unsigned i = 0; i < count; i++) {
		const char *v = event_param_string(event, params[i].name, buf, sizeof(buf));

		if (v == NULL)
			continue;
		if (params[i].kind == EVENT_PARAM_WORDS)
			add_words(ctx, root, params[i].name, v);
		else
			add_text_child(ctx, root, params[i].name, v);
	}
}

/* Every other parameter (vnd.*) is kept: strings as text, anything else
 * as its compact JSON. */
static void add_extensions(xmpp_ctx_t *ctx, xmpp_stanza_t *root,
			   const struct event *event)
{
	const char *key;
	json_t *value;

	json_object_foreach(event->json, key, value) {
		xmpp_stanza_t *el;
		char *text;

		if (is_known_param(key))
			continue;
		el = add_child(ctx, root, "extension");
		xmpp_stanza_set_attribute(el, "name", key);
		if (json_is_string(value)) {
			if (*json_string_value(value) != '\0')
				add_text(ctx, el, json_string_value(value));
			continue;
		}
		text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
		if (text != NULL) {
			xmpp_stanza_set_attribute(el, "json", "true");
			add_text(ctx, el, text);
		}
		free(text);
	}
}

static void add_number(xmpp_ctx_t *ctx, xmpp_stanza_t *root, const char *name,
		       long long value)
{
	char num[32];

	snprintf(num, sizeof(num), "%lld", value);
	add_text_child(ctx, root, name, num);
}

char *item_payload_build(xmpp_ctx_t *ctx, const struct event *event,
			 long long seq, long long received_us,
			 const struct node_counts *counts)
{
	xmpp_stanza_t *root = xmpp_stanza_new(ctx);
	uint64_t unseen;
	char num[32], stamp[40];
	char *text = NULL, *copy = NULL;
	size_t len;

	xmpp_stanza_set_name(root, "mailbox-event");
	xmpp_stanza_set_ns(root, ITEM_NS);
	xmpp_stanza_set_attribute(root, "type", event_type_info(event->type)->name);
	if (seq > 0) {
		snprintf(num, sizeof(num), "%lld", seq);
		xmpp_stanza_set_attribute(root, "seq", num);
	}
	item_format_time(received_us, stamp, sizeof(stamp));
	xmpp_stanza_set_attribute(root, "received", stamp);
	add_mailbox(ctx, root, "mailbox", &event->mailbox);
	add_mailbox(ctx, root, "oldMailbox", &event->old_mailbox);
	/* the unseen count under a neutral name: MWI clients need not know
	 * which store sent it */
	if (event_param_u64(event, "vnd.cmu.unseenMessages", &unseen) == 0)
		add_number(ctx, root, "unseen", (long long)unseen);
	else if (counts != NULL && counts->unseen >= 0)
		add_number(ctx, root, "unseen", counts->unseen);
	if (json_object_get(event->json, "messages") == NULL && counts != NULL &&
	    counts->messages >= 0)
		add_number(ctx, root, "messages", counts->messages);
	add_params(ctx, root, event);
	add_extensions(ctx, root, event);
	if (xmpp_stanza_to_text(root, &text, &len) == XMPP_EOK)
		copy = strndup(text, len);
	if (text != NULL)
		xmpp_free(ctx, text);
	xmpp_stanza_release(root);
	return copy;
}

char *item_xml_escape(const char *text)
{
	size_t n = 0;
	char *out, *o;

	for (const char *p = text; *p != '\0'; p++)
		n += (*p == '&') ? 5 : (*p == '<' || *p == '>') ? 4 :
		     (*p == '\'' || *p == '"') ? 6 : 1;
	out = malloc(n + 1);
	if (out == NULL)
		return NULL;
	o = out;
	for (const char *p = text; *p != '\0'; p++) {
		const char *rep = NULL;

		switch (*p) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '\'': rep = "&apos;"; break;
		case '"': rep = "&quot;"; break;
		default: *o++ = *p; continue;
		}
		o = stpcpy(o, rep);
	}
	*o = '\0';
	return out;
}

static int split_message(const char *from, const char *body,
			 struct item_message *out)
{
	char *efrom = item_xml_escape(from);
	int n;

	out->head = NULL;
	out->tail = NULL;
	if (efrom == NULL)
		return -1;
	n = asprintf(&out->head, "<message from='%s' type='headline' to='", efrom);
	free(efrom);
	if (n < 0) {
		out->head = NULL;
		return -1;
	}
	out->tail = strdup(body);
	if (out->tail == NULL) {
		item_message_clear(out);
		return -1;
	}
	return 0;
}

int item_message_build(const char *from, const char *node, long long seq,
		       const char *payload, long long delay_us,
		       struct item_message *out)
{
	char *enode = item_xml_escape(node);
	char delay[160] = "";
	char *body;
	int n, ret;

	if (enode == NULL)
		return -1;
	if (delay_us > 0) {
		char stamp[40];

		item_format_time(delay_us, stamp, sizeof(stamp));
		snprintf(delay, sizeof(delay),
			 "<delay xmlns='urn:xmpp:delay' stamp='%s'/>", stamp);
	}
	char id[40];

	/* seq 0: a heartbeat, never journaled: a time-based id of its own */
	if (seq > 0) {
		snprintf(id, sizeof(id), "%lld", seq);
	} else {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(id, sizeof(id), "hb-%lld%03ld", (long long)ts.tv_sec,
			 ts.tv_nsec / 1000000);
	}
	n = asprintf(&body, "' id='mps-%s%s'><event xmlns='" PUBSUB_EVENT_NS
		     "'><items node='%s'><item id='%s'>%s</item></items></event>%s</message>",
		     id, delay_us > 0 ? "-last" : "", enode, id, payload, delay);
	free(enode);
	if (n < 0)
		return -1;
	ret = split_message(from, body, out);
	free(body);
	return ret;
}

int item_message_build_delete(const char *from, const char *node,
			      struct item_message *out)
{
	char *enode = item_xml_escape(node);
	char *body;
	int n, ret;

	if (enode == NULL)
		return -1;
	n = asprintf(&body, "'><event xmlns='" PUBSUB_EVENT_NS
		     "'><delete node='%s'/></event></message>", enode);
	free(enode);
	if (n < 0)
		return -1;
	ret = split_message(from, body, out);
	free(body);
	return ret;
}

void item_message_clear(struct item_message *msg)
{
	free(msg->head);
	free(msg->tail);
	msg->head = NULL;
	msg->tail = NULL;
}

char *item_message_for(const struct item_message *msg, const char *to,
		       size_t *len_r)
{
	char *eto = item_xml_escape(to);
	char *out;
	int n;

	if (eto == NULL)
		return NULL;
	n = asprintf(&out, "%s%s%s", msg->head, eto, msg->tail);
	free(eto);
	if (n < 0)
		return NULL;
	*len_r = (size_t)n;
	return out;
}
