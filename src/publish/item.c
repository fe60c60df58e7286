#include "publish/item.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/timefmt.h"
#include "base/utf8.h"
#include "base/xml_escape.h"
#include "xmpp/stanza.h"

/* Set once from [component] max_stanza_size at start; every builder of
 * items and notifications needs it, and they are called from modules that
 * have no configuration at hand. */
static size_t item_max_stanza_bytes = ITEM_DEFAULT_MAX_STANZA;

void item_set_max_stanza(size_t bytes)
{
	item_max_stanza_bytes = bytes;
}

size_t item_max_stanza(void)
{
	return item_max_stanza_bytes;
}

size_t item_max_payload(void)
{
	return item_max_stanza_bytes > 2 * ITEM_WRAPPER_RESERVE ?
	       item_max_stanza_bytes - ITEM_WRAPPER_RESERVE : item_max_stanza_bytes / 2;
}

/* How a payload is built: the first time everything; when it comes out
 * bigger than item_max_payload(), again with long values left out. */
struct build {
	xmpp_ctx_t *ctx;
	size_t omit_over;        /* 0: keep every value whole */
	bool omit_extensions;    /* last resort: vendor parameters all go */
	size_t omitted;          /* bytes left out */
};

static void add_mailbox(xmpp_ctx_t *ctx, xmpp_stanza_t *parent, const char *name,
			const struct mailbox_uri *mb)
{
	xmpp_stanza_t *el;
	char num[16];

	if (mb->node == NULL)
		return;
	el = stanza_add_child(ctx, parent, name, NULL);
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
	xmpp_stanza_t *list = stanza_add_child(ctx, parent, name, NULL);
	const char *word_name = strcmp(name, "flagNames") == 0 ? "flag" : "tag";

	for (const char *p = words; *p != '\0';) {
		size_t len;
		char *w;

		p += strspn(p, " ");
		len = strcspn(p, " ");
		if (len == 0)
			break;
		w = strndup(p, len);
		stanza_add_text_child(ctx, list, word_name, w);
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

/* A value too long for a bounded item: <omitted name= size=/> says what
 * is missing (the journal and the firehose keep the event whole). */
static bool omit_value(struct build *b, xmpp_stanza_t *root, const char *name,
		       size_t size)
{
	xmpp_stanza_t *el;
	char num[24];

	if ((b->omit_over == 0 || size <= b->omit_over) &&
	    !(b->omit_extensions && !is_known_param(name)))
		return false;
	el = stanza_add_child(b->ctx, root, "omitted", NULL);
	xmpp_stanza_set_attribute(el, "name", name);
	snprintf(num, sizeof(num), "%zu", size);
	xmpp_stanza_set_attribute(el, "size", num);
	b->omitted += size;
	return true;
}

static void add_params(struct build *b, xmpp_stanza_t *root,
		       const struct event *event)
{
	unsigned count;
	const struct event_param_info *params = event_params(&count);
	char buf[32];

	for (unsigned i = 0; i < count; i++) {
		const char *v = event_param_string(event, params[i].name, buf, sizeof(buf));

		if (v == NULL || omit_value(b, root, params[i].name, strlen(v)))
			continue;
		if (params[i].kind == EVENT_PARAM_WORDS)
			add_words(b->ctx, root, params[i].name, v);
		else
			stanza_add_text_child(b->ctx, root, params[i].name, v);
	}
}

/* Every other parameter (vnd.*) is kept: strings as text, anything else
 * as its compact JSON. */
static void add_extensions(struct build *b, xmpp_stanza_t *root,
			   const struct event *event)
{
	const char *key;
	json_t *value;

	json_object_foreach(event->json, key, value) {
		xmpp_stanza_t *el;
		char *text = NULL;
		const char *v;

		if (is_known_param(key))
			continue;
		if (json_is_string(value)) {
			v = json_string_value(value);
		} else {
			text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
			v = text;
		}
		if (v == NULL || omit_value(b, root, key, strlen(v))) {
			free(text);
			continue;
		}
		el = stanza_add_child(b->ctx, root, "extension", NULL);
		xmpp_stanza_set_attribute(el, "name", key);
		if (text != NULL)
			xmpp_stanza_set_attribute(el, "json", "true");
		if (*v != '\0')
			stanza_add_text(b->ctx, el, v);
		free(text);
	}
}

static void add_number(xmpp_ctx_t *ctx, xmpp_stanza_t *root, const char *name,
		       long long value)
{
	char num[32];

	snprintf(num, sizeof(num), "%lld", value);
	stanza_add_text_child(ctx, root, name, num);
}

static char *payload_serialize(struct build *b, const struct event *event,
			       long long seq, long long received_us,
			       const struct node_counts *counts, size_t *len_r)
{
	xmpp_ctx_t *ctx = b->ctx;
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
	timefmt_iso8601_ms(received_us, stamp, sizeof(stamp));
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
	add_params(b, root, event);
	add_extensions(b, root, event);
	if (xmpp_stanza_to_text(root, &text, &len) == XMPP_EOK)
		copy = strndup(text, len);
	if (text != NULL)
		xmpp_free(ctx, text);
	xmpp_stanza_release(root);
	*len_r = copy != NULL ? len : 0;
	return copy;
}

char *item_payload_build(xmpp_ctx_t *ctx, const struct event *event,
			 long long seq, long long received_us,
			 const struct node_counts *counts)
{
	/* each pass leaves out more: long values, then shorter ones, then
	 * every vendor parameter; the mailbox, counts and the RFC 5423
	 * numbers always stay */
	static const struct { size_t omit_over; bool omit_extensions; } passes[] = {
		{ 0, false }, { 4096, false }, { 256, false }, { 64, true },
	};
	char *payload = NULL;
	size_t len = 0;

	for (size_t i = 0; i < sizeof(passes) / sizeof(passes[0]); i++) {
		struct build b = { ctx, passes[i].omit_over, passes[i].omit_extensions, 0 };

		free(payload);
		payload = payload_serialize(&b, event, seq, received_us, counts, &len);
		if (payload == NULL || len <= item_max_payload())
			break;
	}
	/* decoding made every string XML text (event_decode); this only
	 * guards the bytes libstrophe wrote */
	if (payload != NULL && !utf8_xml_valid(payload, len)) {
		char *clean = utf8_xml_clean(payload, len, NULL, NULL);

		free(payload);
		payload = clean;
	}
	return payload;
}

static int split_message(const char *from, const char *body,
			 struct item_message *out)
{
	char *efrom = xml_escape(from);
	int n;

	out->head = NULL;
	out->tail = NULL;
	out->notice_tail = NULL;
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

/* The notification without its payload (XEP-0060 7.1.2.2: an <item/> with
 * only an id tells the subscriber to retrieve it), and why. */
static int build_notice(const char *id, const char *enode, const char *payload,
			const char *delay, bool last, struct item_message *out)
{
	int n = asprintf(&out->notice_tail, "' id='mps-%s%s'><event xmlns='" PUBSUB_EVENT_NS
			 "'><items node='%s'><item id='%s'/></items></event>"
			 "<payload-omitted xmlns='" ITEM_NS "' size='%zu' max='%zu'/>%s</message>",
			 id, last ? "-last" : "", enode, id, strlen(payload),
			 item_max_stanza(), delay);

	if (n < 0) {
		out->notice_tail = NULL;
		return -1;
	}
	return 0;
}

int item_message_build(const char *from, const char *node, long long seq,
		       const char *payload, long long delay_us,
		       struct item_message *out)
{
	char *enode = xml_escape(node);
	char *clean = NULL;
	char delay[160] = "";
	char *body;
	int n, ret;

	if (enode == NULL)
		return -1;
	/* items stored by an older version may still hold what XML forbids */
	if (!utf8_xml_valid(payload, strlen(payload))) {
		clean = utf8_xml_clean(payload, strlen(payload), NULL, NULL);
		if (clean == NULL) {
			free(enode);
			return -1;
		}
		payload = clean;
	}
	if (delay_us > 0) {
		char stamp[40];

		timefmt_iso8601_ms(delay_us, stamp, sizeof(stamp));
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
	if (n < 0) {
		free(enode);
		free(clean);
		return -1;
	}
	ret = split_message(from, body, out);
	free(body);
	if (ret == 0 && build_notice(id, enode, payload, delay, delay_us > 0, out) < 0) {
		item_message_clear(out);
		ret = -1;
	}
	free(enode);
	free(clean);
	return ret;
}

int item_message_build_delete(const char *from, const char *node,
			      struct item_message *out)
{
	char *enode = xml_escape(node);
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
	free(msg->notice_tail);
	msg->head = NULL;
	msg->tail = NULL;
	msg->notice_tail = NULL;
}

char *item_message_for(const struct item_message *msg, const char *to,
		       size_t *len_r)
{
	char *eto = xml_escape(to);
	const char *tail = msg->tail;
	size_t fixed;
	char *out;
	int n;

	if (eto == NULL)
		return NULL;
	fixed = strlen(msg->head) + strlen(eto);
	/* a stanza over the bound would make the server close our stream */
	if (fixed + strlen(tail) > item_max_stanza())
		tail = msg->notice_tail;
	if (tail == NULL || fixed + strlen(tail) > item_max_stanza()) {
		free(eto);
		return NULL;
	}
	n = asprintf(&out, "%s%s%s", msg->head, eto, tail);
	free(eto);
	if (n < 0)
		return NULL;
	*len_r = (size_t)n;
	return out;
}

bool item_message_is_notice(const char *text, size_t len)
{
	/* the notice ends the message, before at most a delay stamp: only
	 * the tail is looked at, whatever the notification's size */
	const char *tail = len > 512 ? text + len - 512 : text;

	return strstr(tail, "<payload-omitted xmlns='" ITEM_NS "'") != NULL;
}
