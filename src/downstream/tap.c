#include "base/clock.h"
#include "downstream/tap.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/changelog.h"
#include "xmpp/component.h"
#include "base/config.h"
#include "downstream/content.h"
#include "imap/imap_client.h"
#include "publish/item.h"
#include "base/log.h"
#include "xmpp/pubsub_error.h"
#include "handlers/service.h"
#include "base/xml_escape.h"

#define DATA_NS "jabber:x:data"
#define DISCO_ITEMS_NS "http://jabber.org/protocol/disco#items"
/* how often windows are checked for their end */
#define EXPIRY_INTERVAL_MS 1000
#define TAPS_MAX 64

struct tap_relay {
	struct service *service;
	struct imap_client *imap;
	uv_timer_t expiry;
	unsigned pending;         /* retrievals in flight */
	bool closing;
	bool timer_open;
};

/* ---- the taps table ------------------------------------------------------ */

/* The largest second whose microseconds fit a long long. */
#define TIME_SECS_MAX (LLONG_MAX / 1000000 - 1)

long long tap_parse_time_us(const char *text)
{
	struct tm tm;
	char *end;
	long long secs, frac = 0;
	time_t t;

	if (text == NULL || *text == '\0')
		return -1;
	errno = 0;
	secs = strtoll(text, &end, 10);
	if (end != text && *end == '\0')
		return errno == 0 && secs >= 0 && secs <= TIME_SECS_MAX ? secs * 1000000 : -1;
	memset(&tm, 0, sizeof(tm));
	end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL)
		return -1;
	/* fractions to the microsecond (MAM asks with them) */
	if (*end == '.') {
		long long scale = 100000;

		for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
			frac += (*end - '0') * scale;
	}
	if (*end != '\0' && strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0)
		return -1;
	t = timegm(&tm);
	if (t < 0 || (long long)t > TIME_SECS_MAX)
		return -1;
	return (long long)t * 1000000 + frac;
}

static json_t *tap_json(const struct tap *t)
{
	return json_pack("{s:I,s:s,s:s,s:I,s:I,s:s}", "tap", (json_int_t)t->id,
			 "target", t->target, "authorities", t->authorities,
			 "not_before", (json_int_t)t->not_before_us,
			 "not_after", (json_int_t)t->not_after_us,
			 "reference", t->reference);
}

static int audit(struct store *store, const char *kind, json_t *detail,
		 const char *by, long long now_us)
{
	int rc;

	if (detail == NULL)
		return -1;
	if (by != NULL)
		json_object_set_new(detail, "by", json_string(by));
	rc = changelog_append_audit(store, kind, detail, now_us);
	json_decref(detail);
	return rc;
}

/* Authorities: bare JIDs, separated by spaces, commas or newlines; stored
 * space separated. NULL when empty or malformed. */
static char *normalize_authorities(const char *text)
{
	char *out = calloc(1, strlen(text) + 1);
	size_t n = 0;

	if (out == NULL)
		return NULL;
	for (const char *p = text; *p != '\0';) {
		size_t len;

		p += strspn(p, " \t\r\n,");
		len = strcspn(p, " \t\r\n,");
		if (len == 0)
			break;
		if (memchr(p, '/', len) != NULL || memchr(p, '\'', len) != NULL ||
		    memchr(p, '<', len) != NULL || memchr(p, '&', len) != NULL) {
			free(out);
			return NULL;
		}
		if (n > 0)
			out[n++] = ' ';
		memcpy(out + n, p, len);
		n += len;
		p += len;
	}
	if (n == 0) {
		free(out);
		return NULL;
	}
	return out;
}

int tap_add(struct store *store, const struct tap *t, const char *by,
	    long long now_us, long long *id_r, const char **error_r)
{
	struct tap copy = *t;
	char *auth, *target;
	int rc = -1;

	if (t->target == NULL || *t->target == '\0' || strpbrk(t->target, " \t\r\n") != NULL) {
		*error_r = "target must be one account or address";
		return -1;
	}
	if (t->reference == NULL || *t->reference == '\0') {
		*error_r = "a reference (warrant id) is required";
		return -1;
	}
	if (t->not_before_us < 0 || t->not_after_us <= t->not_before_us) {
		*error_r = "the validity window must end after it starts";
		return -1;
	}
	auth = t->authorities != NULL ? normalize_authorities(t->authorities) : NULL;
	if (auth == NULL) {
		*error_r = "at least one authority JID is required";
		return -1;
	}
	/* addresses match case-insensitively, as envelopes are compared */
	target = strdup(t->target);
	if (target == NULL) {
		free(auth);
		*error_r = "out of memory";
		return -1;
	}
	if (strchr(target, '@') != NULL)
		for (char *c = target; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
	copy.target = target;
	copy.authorities = auth;
	*error_r = "cannot store the tap";
	if (store_begin(store) < 0)
		goto out;
	if (taps_insert(store, &copy, by, now_us, &copy.id) < 0) {
		store_rollback(store);
		goto out;
	}
	if (audit(store, "tap-add", tap_json(&copy), by, now_us) < 0 ||
	    store_commit(store) < 0) {
		store_rollback(store);
		goto out;
	}
	*id_r = copy.id;
	log_info("tap: #%lld added by %s", copy.id, by);
	rc = 0;
out:
	free(target);
	free(auth);
	return rc;
}

static int load_row(void *context, const struct tap_row *row)
{
	*(json_t **)context = tap_json(&row->tap);
	return 1;
}

/* 1 and *json_r the tap's audit detail, 0 when there is no tap id, -1 on
 * error. */
static int tap_load(struct store *store, long long id, json_t **json_r)
{
	return taps_get(store, id, load_row, json_r);
}

int tap_remove(struct store *store, long long id, const char *by,
	       long long now_us, const char **error_r)
{
	json_t *detail = NULL;
	int found;

	if (store_begin(store) < 0) {
		*error_r = "cannot open a transaction";
		return -1;
	}
	found = tap_load(store, id, &detail);
	if (found <= 0) {
		store_rollback(store);
		*error_r = found == 0 ? "no such tap" : "cannot read the taps";
		return -1;
	}
	if (taps_delete(store, id) < 0) {
		json_decref(detail);
		store_rollback(store);
		*error_r = "cannot remove the tap";
		return -1;
	}
	if (audit(store, "tap-remove", detail, by, now_us) < 0 ||
	    store_commit(store) < 0) {
		store_rollback(store);
		*error_r = "cannot remove the tap";
		return -1;
	}
	log_info("tap: #%lld removed by %s", id, by);
	return 0;
}

struct list {
	json_t *arr;
	long long now_us;
};

static int list_row(void *context, const struct tap_row *row)
{
	struct list *l = context;
	const struct tap *t = &row->tap;

	json_array_append_new(l->arr, json_pack(
		"{s:I,s:s,s:s,s:I,s:I,s:s,s:s,s:I,s:b,s:b}",
		"id", (json_int_t)t->id, "target", t->target, "authorities", t->authorities,
		"not_before", (json_int_t)t->not_before_us,
		"not_after", (json_int_t)t->not_after_us, "reference", t->reference,
		"created_by", row->created_by, "created", (json_int_t)row->created_us,
		"expired", row->expired,
		"active", !row->expired && t->not_before_us <= l->now_us &&
			  l->now_us < t->not_after_us));
	return 0;
}

char *tap_list_json(struct store *store, long long now_us)
{
	struct list l = { json_array(), now_us };
	char *out;

	if (l.arr == NULL || taps_each(store, list_row, &l) < 0) {
		json_decref(l.arr);
		return NULL;
	}
	out = json_dumps(l.arr, JSON_COMPACT);
	json_decref(l.arr);
	return out;
}

int tap_expire(struct store *store, long long now_us)
{
	long long ids[TAPS_MAX];
	unsigned n;

	if (taps_ended(store, now_us, ids, TAPS_MAX, &n) < 0)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		json_t *detail = NULL;

		if (tap_load(store, ids[i], &detail) <= 0)
			continue;
		if (taps_mark_expired(store, ids[i]) < 0) {
			json_decref(detail);
			return -1;
		}
		if (audit(store, "tap-expire", detail, NULL, now_us) < 0)
			return -1;
		log_info("tap: #%lld expired", ids[i]);
	}
	return 0;
}

/* ---- the relay ------------------------------------------------------------- */

struct match {
	long long id;
	char *authorities;
	char *reference;
};

struct content_ctx {
	struct tap_relay *relay;
	long long seq;
	char *payload;            /* the event's item, content spliced in later */
	char *event;
	char *account;
	unsigned n;
	struct match taps[TAPS_MAX];
};

static void matches_clear(struct match *m, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		free(m[i].authorities);
		free(m[i].reference);
	}
}

static bool tap_matches(const char *target, const struct event *ev, const char *addresses)
{
	const char *account = ev->mailbox.account != NULL ? ev->mailbox.account : ev->acting_user;
	char word[512];

	/* the account's own mailboxes, and whatever the account does
	 * elsewhere (a shared folder, another user's mailbox) */
	if (strchr(target, '@') == NULL)
		return (account != NULL && strcmp(account, target) == 0) ||
		       (ev->acting_user != NULL && strcmp(ev->acting_user, target) == 0) ||
		       (ev->old_mailbox.account != NULL &&
			strcmp(ev->old_mailbox.account, target) == 0);
	if (addresses == NULL)
		return false;
	snprintf(word, sizeof(word), " %s ", target);
	return strstr(addresses, word) != NULL;
}

/* Sends payload as item seq on the tap's node to each of its authorities. */
static void send_to_authorities(struct service *service, const struct match *m,
				long long seq, const char *payload)
{
	char node[64];
	struct item_message msg;

	snprintf(node, sizeof(node), TAP_NODE_PREFIX "%lld", m->id);
	if (item_message_build(service->config->component_domain, node, seq, payload, 0,
			       &msg) < 0)
		return;
	for (const char *p = m->authorities; *p != '\0';) {
		size_t len = strcspn(p, " ");
		char jid[1024];
		size_t tlen;
		char *text;

		snprintf(jid, sizeof(jid), "%.*s", (int)len, p);
		text = item_message_for(&msg, jid, &tlen);
		if (text != NULL)
			component_send_raw(service->component, text, tlen);
		free(text);
		p += len;
		p += strspn(p, " ");
	}
	item_message_clear(&msg);
}

static void audit_relay(struct store *store, const struct match *m, long long seq,
			const char *event, const char *account, const char *part)
{
	json_t *detail = json_pack("{s:I,s:s,s:I,s:s,s:s,s:s}", "tap", (json_int_t)m->id,
				   "reference", m->reference, "seq", (json_int_t)seq,
				   "authorities", m->authorities, "part", part,
				   "event", event);

	if (detail == NULL)
		return;
	if (account != NULL)
		json_object_set_new(detail, "account", json_string(account));
	audit(store, "tap-relay", detail, NULL, clock_now_us());
}

static void content_ctx_free(struct content_ctx *cc)
{
	matches_clear(cc->taps, cc->n);
	free(cc->payload);
	free(cc->event);
	free(cc->account);
	free(cc);
}

static void maybe_free(struct tap_relay *r)
{
	if (r->closing && r->pending == 0 && !r->timer_open)
		free(r);
}

/* The content, or why there is none, is relayed as the same item again
 * with <content/> (or <content-error/>) spliced in. */
static void fetched(void *context, enum imap_result res, const struct imap_message *msg)
{
	struct content_ctx *cc = context;
	struct tap_relay *r = cc->relay;
	struct service *service = r->service;
	long long now = clock_now_us();
	struct content_record cr;
	char *element, *end, *payload = NULL;

	r->pending--;
	if (r->closing) {
		content_ctx_free(cc);
		maybe_free(r);
		return;
	}
	if (store_begin(service->store) < 0) {
		content_ctx_free(cc);
		return;
	}
	if (res == IMAP_OK)
		content_put(service->store, cc->seq, "full", msg, now);
	else
		content_put_error(service->store, cc->seq,
				  res == IMAP_NO ? "expunged" : "unavailable", 1, now);
	if (content_get(service->store, cc->seq, &cr) > 0) {
		element = content_element(service->store, &cr, "full",
					  service->config->firehose_inline_max);
		end = strstr(cc->payload, "</mailbox-event>");
		if (element != NULL && end != NULL &&
		    asprintf(&payload, "%.*s%s%s", (int)(end - cc->payload), cc->payload,
			     element, end) < 0)
			payload = NULL;
		free(element);
	}
	content_record_clear(&cr);
	for (unsigned i = 0; payload != NULL && i < cc->n; i++) {
		send_to_authorities(service, &cc->taps[i], cc->seq, payload);
		audit_relay(service->store, &cc->taps[i], cc->seq, cc->event, cc->account,
			    "content");
	}
	store_commit(service->store);
	free(payload);
	content_ctx_free(cc);
}

/* The active taps that ev matches, up to TAPS_MAX. */
struct matching {
	const struct event *ev;
	const char *addresses;
	struct match *m;
	unsigned n;
};

static int match_row(void *context, const struct tap_row *row)
{
	struct matching *mt = context;
	struct match *m = &mt->m[mt->n];

	if (!tap_matches(row->tap.target, mt->ev, mt->addresses))
		return 0;
	m->id = row->tap.id;
	m->authorities = strdup(row->tap.authorities);
	m->reference = strdup(row->tap.reference);
	if (m->authorities == NULL || m->reference == NULL) {
		free(m->authorities);
		free(m->reference);
		return 0;
	}
	return ++mt->n == TAPS_MAX;
}

void tap_relay_event(struct tap_relay *r, const struct journal_record *rec,
		     const struct event *ev)
{
	struct service *service;
	struct match m[TAPS_MAX];
	unsigned n = 0;
	char *addresses = NULL, *payload;
	const char *type, *envelope;
	struct matching mt = { ev, NULL, m, 0 };
	bool message;

	if (r == NULL || r->closing)
		return;
	service = r->service;
	message = (ev->type == EVENT_MESSAGE_NEW || ev->type == EVENT_MESSAGE_APPEND) &&
		  ev->mailbox.node != NULL && ev->mailbox.uid != 0;
	envelope = json_string_value(json_object_get(ev->json, "vnd.cmu.envelope"));
	if (message && envelope != NULL)
		addresses = changelog_envelope_addresses(envelope);
	mt.addresses = addresses;
	taps_each_active(service->store, clock_now_us(), match_row, &mt);
	n = mt.n;
	free(addresses);
	if (n == 0)
		return;
	type = event_type_info(ev->type)->name;
	payload = item_payload_build(component_xmpp_ctx(service->component), ev, rec->seq,
				     rec->received_us, NULL);
	if (payload == NULL) {
		matches_clear(m, n);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		send_to_authorities(service, &m[i], rec->seq, payload);
		audit_relay(service->store, &m[i], rec->seq, type, ev->mailbox.account, "event");
	}
	if (message && r->imap != NULL) {
		struct content_ctx *cc = calloc(1, sizeof(*cc));

		if (cc != NULL) {
			cc->relay = r;
			cc->seq = rec->seq;
			cc->payload = payload;
			cc->event = strdup(type);
			cc->account = strdup(ev->mailbox.account);
			cc->n = n;
			memcpy(cc->taps, m, n * sizeof(m[0]));
			r->pending++;
			imap_client_fetch(r->imap, ev->mailbox.account, ev->mailbox.node,
					  ev->mailbox.uidvalidity, ev->mailbox.uid,
					  IMAP_FETCH_FULL, fetched, cc);
			return;
		}
	}
	free(payload);
	matches_clear(m, n);
}

static void on_expiry(uv_timer_t *timer)
{
	struct tap_relay *r = timer->data;
	struct store *store = r->service->store;

	if (store_begin(store) < 0)
		return;
	if (tap_expire(store, clock_now_us()) < 0) {
		store_rollback(store);
		return;
	}
	store_commit(store);
}

int tap_relay_new(uv_loop_t *loop, struct service *service,
		  struct imap_client *imap, struct tap_relay **relay_r,
		  const char **error_r)
{
	struct tap_relay *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (content_init(service->store, error_r) < 0) {
		free(r);
		return -1;
	}
	r->service = service;
	r->imap = imap;
	uv_timer_init(loop, &r->expiry);
	r->expiry.data = r;
	r->timer_open = true;
	uv_timer_start(&r->expiry, on_expiry, 0, EXPIRY_INTERVAL_MS);
	*relay_r = r;
	return 0;
}

static void timer_closed(uv_handle_t *handle)
{
	struct tap_relay *r = handle->data;

	r->timer_open = false;
	maybe_free(r);
}

void tap_relay_close(struct tap_relay **relay)
{
	struct tap_relay *r = *relay;

	if (r == NULL)
		return;
	*relay = NULL;
	r->closing = true;
	uv_timer_stop(&r->expiry);
	uv_close((uv_handle_t *)&r->expiry, timer_closed);
}

/* ---- ad-hoc commands (XEP-0050) ------------------------------------------------ */

static const struct {
	const char *node;
	const char *name;
} commands[] = {
	{ "tap-add", "Add an interception tap" },
	{ "tap-list", "List interception taps" },
	{ "tap-remove", "Remove an interception tap" },
};

static bool is_admin(const struct service *service, const char *from, char *bare, size_t size)
{
	bare[0] = '\0';
	if (from == NULL)
		return false;
	snprintf(bare, size, "%.*s", (int)strcspn(from, "/"), from);
	return config_list_contains(service->config->tap_admins, bare);
}

static void reply_error(struct service *service, xmpp_stanza_t *iq, const char *type,
			const char *condition)
{
	service_send_release(service, pubsub_error_stanza_reply(
		component_xmpp_ctx(service->component), iq, type, condition));
}

void tap_handle_disco_items(struct service *service, xmpp_stanza_t *iq)
{
	char bare[1024], *body = NULL, *items = strdup(""), *grown;
	const char *domain = service->config->component_domain;

	if (items == NULL)
		return;
	if (is_admin(service, xmpp_stanza_get_from(iq), bare, sizeof(bare))) {
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
			if (asprintf(&grown, "%s<item jid='%s' node='%s' name='%s'/>", items,
				     domain, commands[i].node, commands[i].name) < 0)
				break;
			free(items);
			items = grown;
		}
	}
	if (asprintf(&body, "<query xmlns='" DISCO_ITEMS_NS "' node='" COMMANDS_NS "'>%s</query>",
		     items) >= 0) {
		service_send_result_raw(service, iq, body);
		free(body);
	}
	free(items);
}

/* The values of field var in form x, joined by spaces; newly allocated
 * ("" when absent). */
static char *field_value(xmpp_stanza_t *x, const char *var)
{
	char *out = strdup(""), *grown;

	for (xmpp_stanza_t *f = x != NULL ? xmpp_stanza_get_children(x) : NULL; f != NULL && out != NULL;
	     f = xmpp_stanza_get_next(f)) {
		const char *v = xmpp_stanza_is_tag(f) ? xmpp_stanza_get_attribute(f, "var") : NULL;

		if (v == NULL || strcmp(xmpp_stanza_get_name(f), "field") != 0 ||
		    strcmp(v, var) != 0)
			continue;
		for (xmpp_stanza_t *val = xmpp_stanza_get_children(f); val != NULL;
		     val = xmpp_stanza_get_next(val)) {
			char *text;

			if (!xmpp_stanza_is_tag(val) || strcmp(xmpp_stanza_get_name(val), "value") != 0)
				continue;
			text = xmpp_stanza_get_text(val);
			if (text == NULL)
				continue;
			if (asprintf(&grown, "%s%s%s", out, *out != '\0' ? " " : "", text) < 0)
				grown = NULL;
			xmpp_free(xmpp_stanza_get_context(val), text);
			free(out);
			out = grown;
			if (out == NULL)
				break;
		}
	}
	return out;
}

static void session_id(char out[33])
{
	unsigned char rnd[16];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", rnd[i]);
}

static void command_reply(struct service *service, xmpp_stanza_t *iq, const char *node,
			  const char *sid, const char *status, const char *inner)
{
	char *body;

	if (asprintf(&body, "<command xmlns='" COMMANDS_NS "' node='%s' sessionid='%s'"
		     " status='%s'>%s</command>", node, sid, status, inner) < 0)
		return;
	service_send_result_raw(service, iq, body);
	free(body);
}

static void cmd_add(struct service *service, xmpp_stanza_t *iq, const char *sid,
		    xmpp_stanza_t *x, const char *by)
{
	char *target, *auth, *nb, *na, *ref, *inner;
	struct tap t = { 0 };
	const char *error;
	long long id, now = clock_now_us();

	if (x == NULL) {
		command_reply(service, iq, "tap-add", sid, "executing",
			"<actions execute='complete'><complete/></actions>"
			"<x xmlns='" DATA_NS "' type='form'><title>Add an interception tap</title>"
			"<field var='target' type='text-single' label='Account, or address"
			" (sender or recipient)'><required/></field>"
			"<field var='authorities' type='jid-multi' label='Authority JIDs'>"
			"<required/></field>"
			"<field var='not_before' type='text-single' label='Valid from (ISO 8601"
			" UTC; empty: now)'/>"
			"<field var='not_after' type='text-single' label='Valid until (ISO 8601"
			" UTC)'><required/></field>"
			"<field var='reference' type='text-single' label='Reference (warrant"
			" id)'><required/></field></x>");
		return;
	}
	target = field_value(x, "target");
	auth = field_value(x, "authorities");
	nb = field_value(x, "not_before");
	na = field_value(x, "not_after");
	ref = field_value(x, "reference");
	if (target == NULL || auth == NULL || nb == NULL || na == NULL || ref == NULL) {
		reply_error(service, iq, "wait", "internal-server-error");
		goto out;
	}
	t.target = target;
	t.authorities = auth;
	t.reference = ref;
	t.not_before_us = *nb != '\0' ? tap_parse_time_us(nb) : now;
	t.not_after_us = tap_parse_time_us(na);
	if (tap_add(service->store, &t, by, now, &id, &error) < 0) {
		log_info("tap: add by %s refused: %s", by, error);
		reply_error(service, iq, "modify", "bad-request");
		goto out;
	}
	if (asprintf(&inner, "<note type='info'>tap %lld added</note>"
		     "<x xmlns='" DATA_NS "' type='result'><field var='id'><value>%lld</value>"
		     "</field></x>", id, id) >= 0) {
		command_reply(service, iq, "tap-add", sid, "completed", inner);
		free(inner);
	}
out:
	free(target);
	free(auth);
	free(nb);
	free(na);
	free(ref);
}

static void cmd_list(struct service *service, xmpp_stanza_t *iq, const char *sid)
{
	static const char *const fields[] = { "id", "target", "authorities", "not_before",
					      "not_after", "reference", "active" };
	char *text = tap_list_json(service->store, clock_now_us());
	json_t *arr = text != NULL ? json_loads(text, 0, NULL) : NULL;
	char *xml = NULL;
	size_t len = 0, i;
	json_t *tap;
	FILE *f = open_memstream(&xml, &len);

	free(text);
	if (arr == NULL || f == NULL) {
		if (f != NULL)
			fclose(f);
		free(xml);
		json_decref(arr);
		reply_error(service, iq, "wait", "internal-server-error");
		return;
	}
	fputs("<x xmlns='" DATA_NS "' type='result'><title>Interception taps</title><reported>", f);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		fprintf(f, "<field var='%s'/>", fields[i]);
	fputs("</reported>", f);
	json_array_foreach(arr, i, tap) {
		fputs("<item>", f);
		for (size_t j = 0; j < sizeof(fields) / sizeof(fields[0]); j++) {
			json_t *v = json_object_get(tap, fields[j]);
			char *s = json_is_string(v) ? xml_escape(json_string_value(v)) :
				  json_dumps(v, JSON_ENCODE_ANY);

			fprintf(f, "<field var='%s'><value>%s</value></field>", fields[j],
				s != NULL ? s : "");
			free(s);
		}
		fputs("</item>", f);
	}
	fputs("</x>", f);
	fclose(f);
	json_decref(arr);
	command_reply(service, iq, "tap-list", sid, "completed", xml);
	free(xml);
}

static void cmd_remove(struct service *service, xmpp_stanza_t *iq, const char *sid,
		       xmpp_stanza_t *x, const char *by)
{
	const char *error;
	char *id, note[64];

	if (x == NULL) {
		command_reply(service, iq, "tap-remove", sid, "executing",
			"<actions execute='complete'><complete/></actions>"
			"<x xmlns='" DATA_NS "' type='form'><title>Remove an interception tap</title>"
			"<field var='id' type='text-single' label='Tap id'><required/></field></x>");
		return;
	}
	id = field_value(x, "id");
	if (id == NULL || *id == '\0' || strspn(id, "0123456789") != strlen(id)) {
		free(id);
		reply_error(service, iq, "modify", "bad-request");
		return;
	}
	if (tap_remove(service->store, atoll(id), by, clock_now_us(), &error) < 0) {
		free(id);
		reply_error(service, iq, "cancel", "item-not-found");
		return;
	}
	snprintf(note, sizeof(note), "<note type='info'>tap %lld removed</note>", atoll(id));
	free(id);
	command_reply(service, iq, "tap-remove", sid, "completed", note);
}

void tap_handle_command(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *command)
{
	const char *node = xmpp_stanza_get_attribute(command, "node");
	const char *action = xmpp_stanza_get_attribute(command, "action");
	const char *given_sid = xmpp_stanza_get_attribute(command, "sessionid");
	xmpp_stanza_t *x = xmpp_stanza_get_child_by_name_and_ns(command, "x", DATA_NS);
	char bare[1024], sid[33];

	if (!is_admin(service, xmpp_stanza_get_from(iq), bare, sizeof(bare))) {
		log_info("tap: command %s from %s refused: not a [taps] admin",
			 node != NULL ? node : "-", bare);
		reply_error(service, iq, "auth", "forbidden");
		return;
	}
	if (node == NULL || strcmp(xmpp_stanza_get_type(iq), "set") != 0) {
		reply_error(service, iq, "modify", "bad-request");
		return;
	}
	if (strcmp(node, "tap-add") != 0 && strcmp(node, "tap-list") != 0 &&
	    strcmp(node, "tap-remove") != 0) {
		reply_error(service, iq, "cancel", "item-not-found");
		return;
	}
	if (given_sid != NULL && strlen(given_sid) == 32 &&
	    strspn(given_sid, "0123456789abcdef") == 32)
		snprintf(sid, sizeof(sid), "%s", given_sid);
	else
		session_id(sid);
	if (x != NULL) {
		const char *type = xmpp_stanza_get_type(x);

		if (type == NULL || strcmp(type, "submit") != 0)
			x = NULL;
	}
	if (action != NULL && strcmp(action, "cancel") == 0) {
		command_reply(service, iq, node, sid, "canceled", "");
		return;
	}
	if (strcmp(node, "tap-add") == 0)
		cmd_add(service, iq, sid, x, bare);
	else if (strcmp(node, "tap-list") == 0)
		cmd_list(service, iq, sid);
	else if (strcmp(node, "tap-remove") == 0)
		cmd_remove(service, iq, sid, x, bare);
}
