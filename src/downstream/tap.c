#include "base/clock.h"
#include "downstream/tap.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
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
#include "base/xml_escape.h"
#include "publish/publish_service.h"
#include "publish/publisher.h"

/* how often windows are checked for their end */
#define EXPIRY_INTERVAL_MS 1000
#define TAPS_MAX 64

struct tap_relay {
	struct publish_service *service;
	struct imap_client *imap;
	const struct imap_backends *backends;   /* [backends]; NULL: imap for all */
	struct publisher_listener listener; /* main registers it */
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
static void send_to_authorities(struct publish_service *service, const struct match *m,
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
	struct publish_service *service = r->service;
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
	struct publish_service *service;
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
			imap_client_fetch(imap_backends_pick(r->backends, ev->mailbox.account,
							     r->imap),
					  ev->mailbox.account, ev->mailbox.node,
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

static void on_published(void *context, const struct journal_record *rec,
			 const struct event *ev)
{
	tap_relay_event(context, rec, ev);
}

int tap_relay_new(uv_loop_t *loop, struct publish_service *service,
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
	r->listener.published = on_published;
	r->listener.context = r;
	uv_timer_init(loop, &r->expiry);
	r->expiry.data = r;
	r->timer_open = true;
	uv_timer_start(&r->expiry, on_expiry, 0, EXPIRY_INTERVAL_MS);
	*relay_r = r;
	return 0;
}

void tap_relay_set_backends(struct tap_relay *r, const struct imap_backends *backends)
{
	r->backends = backends;
}

const struct publisher_listener *tap_relay_listener(struct tap_relay *r)
{
	return &r->listener;
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
