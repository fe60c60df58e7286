#include "handlers/firehose_request.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/xml_escape.h"
#include "downstream/content.h"
#include "downstream/firehose.h"
#include "handlers/service.h"
#include "publish/item.h"
#include "store/firehose_subs.h"
#include "store/journal.h"
#include "xmpp/stanza.h"

#define DATA_NS "jabber:x:data"
#define CONTENT_OPTION "mailpubsub#content"
#define FETCH_CHUNK_MAX (256 * 1024)
/* base64 takes 4 bytes per 3 */
#define BASE64_ROOM(bytes) ((bytes) / 4 * 3)
#define RSM_MAX 100
/* A catch-up reply stops growing before [component] max_stanza_size
 * (item_max_stanza()): the server closes a component stream that sends a
 * stanza over its limit, and RSM lets a page hold fewer items than asked
 * for. */

/* The content policy in a subscribe options form; "" when absent, NULL
 * when invalid. */
static const char *requested_policy(xmpp_stanza_t *options, char *buf, size_t size)
{
	xmpp_stanza_t *x = options != NULL ? stanza_child(options, "x", DATA_NS) : NULL;

	buf[0] = '\0';
	if (x == NULL)
		return buf;
	for (xmpp_stanza_t *f = xmpp_stanza_get_children(x); f != NULL;
	     f = xmpp_stanza_get_next(f)) {
		const char *var;
		xmpp_stanza_t *v;
		char *text;

		if (!xmpp_stanza_is_tag(f) || strcmp(xmpp_stanza_get_name(f), "field") != 0)
			continue;
		var = xmpp_stanza_get_attribute(f, "var");
		if (var == NULL || strcmp(var, CONTENT_OPTION) != 0)
			continue;
		v = stanza_child(f, "value", NULL);
		text = v != NULL ? xmpp_stanza_get_text(v) : NULL;
		if (text == NULL || (strcmp(text, "none") != 0 && strcmp(text, "headers") != 0 &&
				     strcmp(text, "full") != 0)) {
			xmpp_free(xmpp_stanza_get_context(f), text);
			return NULL;
		}
		snprintf(buf, size, "%s", text);
		xmpp_free(xmpp_stanza_get_context(f), text);
	}
	return buf;
}

static void handle_subscribe(struct service *service, xmpp_stanza_t *iq,
			     xmpp_stanza_t *pubsub, xmpp_stanza_t *op,
			     const char *bare, const char *role)
{
	const char *jid = xmpp_stanza_get_attribute(op, "jid");
	char policy_buf[16], subid[33], *body, *ejid;
	const char *policy = requested_policy(stanza_child(pubsub, "options", NULL),
					      policy_buf, sizeof(policy_buf));
	unsigned char rnd[16];

	if (jid == NULL || strncasecmp(jid, bare, strlen(bare)) != 0 ||
	    (jid[strlen(bare)] != '\0' && jid[strlen(bare)] != '/')) {
		service_reply_error(service, iq, PUBSUB_ERR_SUBSCRIBE_INVALID_JID, NULL);
		return;
	}
	if (policy == NULL) {
		service_reply_error(service, iq, PUBSUB_ERR_OPTIONS_INVALID, NULL);
		return;
	}
	if (*policy == '\0')
		policy = strcmp(role, "archive") == 0 || strcmp(role, "intercept") == 0 ?
			 "full" : "headers";
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		service_reply_error(service, iq, PUBSUB_ERR_INTERNAL, NULL);
		return;
	}
	for (int i = 0; i < 16; i++)
		snprintf(subid + 2 * i, 3, "%02x", rnd[i]);
	if (firehose_subs_put(service->publish->store, bare, policy, clock_now_us(),
			      subid, sizeof(subid)) < 0) {
		service_reply_error(service, iq, PUBSUB_ERR_INTERNAL, NULL);
		return;
	}
	log_info("firehose: %s (%s) subscribed, content %s", bare, role, policy);
	ejid = xml_escape(bare);
	if (ejid == NULL || asprintf(&body, "<pubsub xmlns='" PUBSUB_NS "'><subscription"
				     " node='" FIREHOSE_NODE "' jid='%s' subid='%s'"
				     " subscription='subscribed'/></pubsub>", ejid, subid) < 0)
		body = NULL;
	free(ejid);
	if (body != NULL)
		service_send_result_raw(service, iq, body);
	free(body);
}

static void handle_unsubscribe(struct service *service, xmpp_stanza_t *iq,
			       const char *bare)
{
	if (firehose_unsubscribe(service->publish->store, bare) < 0) {
		service_reply_error(service, iq, PUBSUB_ERR_UNSUBSCRIBE_NOT_SUBSCRIBED, NULL);
		return;
	}
	log_info("firehose: %s unsubscribed", bare);
	service_send_result_raw(service, iq, "");
}

struct items_ctx {
	struct service *service;
	const char *policy;
	char *xml;
	size_t len;
	long long first, last;
	long long upto;           /* the live pipeline's position */
	long long prev;           /* the previous item that went on the firehose */
	unsigned n;
};

static int collect_item(void *context, const struct journal_record *rec)
{
	struct items_ctx *ic = context;
	struct event *ev;
	const char *error;
	char *payload, *item, *grown;
	int n;

	/* past the live pipeline the content may still be on its way: those
	 * come live, or with the next page */
	if (rec->seq > ic->upto || ic->len >= item_max_stanza() - ITEM_WRAPPER_RESERVE)
		return 1;
	if (event_decode(rec->json, rec->json_len,
			 ic->service->publish->config->hierarchy_separator[0], &ev, &error) < 0)
		return 0;
	if (!firehose_wants(ic->service->publish, ev)) {
		event_free(&ev);
		return 0;
	}
	payload = firehose_policy_payload(ic->service->publish, rec, ev, ic->policy, ic->prev);
	ic->prev = rec->seq;
	event_free(&ev);
	if (payload == NULL)
		return 0;
	n = asprintf(&item, "<item id='%lld'>%s</item>", rec->seq, payload);
	free(payload);
	if (n < 0)
		return 1;
	/* the next page starts after the last item this one holds */
	if (ic->n > 0 && ic->len + (size_t)n > item_max_stanza() - ITEM_WRAPPER_RESERVE) {
		free(item);
		return 1;
	}
	grown = realloc(ic->xml, ic->len + (size_t)n + 1);
	if (grown == NULL) {
		free(item);
		return 1;
	}
	ic->xml = grown;
	memcpy(ic->xml + ic->len, item, (size_t)n + 1);
	ic->len += (size_t)n;
	free(item);
	if (ic->n++ == 0)
		ic->first = rec->seq;
	ic->last = rec->seq;
	return 0;
}

static long long child_number(xmpp_stanza_t *parent, const char *name, long long dflt)
{
	xmpp_stanza_t *c = stanza_child(parent, name, NULL);
	char *text = c != NULL ? xmpp_stanza_get_text(c) : NULL;
	long long v = dflt;

	if (text != NULL && *text != '\0' && strspn(text, "0123456789") == strlen(text))
		v = strtoll(text, NULL, 10);
	if (text != NULL)
		xmpp_free(xmpp_stanza_get_context(c), text);
	return v;
}

/* Items retrieval: with RSM <after/> the records after that sequence (how
 * a subscriber that was away catches up), else the last ones. */
static void handle_items(struct service *service, xmpp_stanza_t *iq,
			 xmpp_stanza_t *pubsub, xmpp_stanza_t *op, const char *bare)
{
	xmpp_stanza_t *set = stanza_child(pubsub, "set", RSM_NS);
	struct items_ctx ic = { service, "full", NULL, 0, 0, 0,
				firehose_position(service->firehose), 0, 0 };
	long long max = set != NULL ? child_number(set, "max", RSM_MAX) : 20;
	const char *mi = xmpp_stanza_get_attribute(op, "max_items");
	long long after;
	char policy[16] = "full", *body, *rsm = NULL;
	unsigned count = 0;

	firehose_subs_get(service->publish->store, bare, NULL, 0, policy, sizeof(policy));
	ic.policy = policy;
	if (mi != NULL && set == NULL)
		max = atoll(mi);
	if (max <= 0 || max > RSM_MAX)
		max = RSM_MAX;
	after = set != NULL ? child_number(set, "after", -1) : -1;
	if (after < 0)
		after = ic.upto - max;
	if (after < 0)
		after = 0;
	ic.prev = firehose_prev_wanted(service->publish, after + 1);
	journal_read_after(service->publish->store, after, (unsigned)max, collect_item, &ic, &count);
	if (set != NULL && ic.n > 0 &&
	    asprintf(&rsm, "<set xmlns='" RSM_NS "'><first>%lld</first><last>%lld</last>"
		     "</set>", ic.first, ic.last) < 0)
		rsm = NULL;
	else if (set != NULL && ic.n == 0 && asprintf(&rsm, "<set xmlns='" RSM_NS "'/>") < 0)
		rsm = NULL;
	if (asprintf(&body, "<pubsub xmlns='" PUBSUB_NS "'><items node='" FIREHOSE_NODE
		     "'>%s</items>%s</pubsub>", ic.xml != NULL ? ic.xml : "",
		     rsm != NULL ? rsm : "") >= 0) {
		service_send_result_raw(service, iq, body);
		free(body);
	}
	free(rsm);
	free(ic.xml);
}

/* <subscriptions node=firehose/> and <options node=firehose jid=/>: what
 * the asker has (re-subscribing with other options changes them). */
static void handle_subscription_query(struct service *service, xmpp_stanza_t *iq,
				      const char *name, const char *bare)
{
	char *ejid = xml_escape(bare), *body = NULL;
	char subid[33], content[16];
	int n = -1, found;

	found = ejid != NULL ? firehose_subs_get(service->publish->store, bare, subid,
						 sizeof(subid), content, sizeof(content)) : -1;
	if (found < 0) {
		free(ejid);
		service_reply_error(service, iq, PUBSUB_ERR_INTERNAL, NULL);
		return;
	}
	if (found > 0) {
		if (strcmp(name, "subscriptions") == 0)
			n = asprintf(&body, "<pubsub xmlns='" PUBSUB_NS "'><subscriptions"
				     " node='" FIREHOSE_NODE "'><subscription node='"
				     FIREHOSE_NODE "' jid='%s' subid='%s' subscription="
				     "'subscribed'/></subscriptions></pubsub>", ejid, subid);
		else
			n = asprintf(&body, "<pubsub xmlns='" PUBSUB_NS "'><options node='"
				     FIREHOSE_NODE "' jid='%s'><x xmlns='" DATA_NS "' type='form'>"
				     "<field var='FORM_TYPE' type='hidden'><value>"
				     PUBSUB_NS "#subscribe_options</value></field>"
				     "<field var='" CONTENT_OPTION "' type='list-single'"
				     " label='Message content'><value>%s</value>"
				     "<option><value>none</value></option>"
				     "<option><value>headers</value></option>"
				     "<option><value>full</value></option></field>"
				     "</x></options></pubsub>", ejid, content);
	} else if (strcmp(name, "subscriptions") == 0) {
		n = asprintf(&body, "<pubsub xmlns='" PUBSUB_NS "'><subscriptions node='"
			     FIREHOSE_NODE "'/></pubsub>");
	}
	free(ejid);
	if (n < 0) {
		service_reply_error(service, iq, PUBSUB_ERR_OPTIONS_NOT_SUBSCRIBED, NULL);
		return;
	}
	service_send_result_raw(service, iq, body);
	free(body);
}

void firehose_request_pubsub(struct service *service, xmpp_stanza_t *iq,
			    xmpp_stanza_t *pubsub, xmpp_stanza_t *op)
{
	const char *from = xmpp_stanza_get_from(iq);
	const char *name = xmpp_stanza_get_name(op);
	bool set = strcmp(xmpp_stanza_get_type(iq), "set") == 0;
	char role_buf[32], bare[1024];
	const char *role = from != NULL ?
		firehose_role(service->publish, from, role_buf, sizeof(role_buf)) : NULL;

	if (role == NULL) {
		/* invisible to everybody else */
		service_reply_error(service, iq, PUBSUB_ERR_NODE_NOT_FOUND, NULL);
		return;
	}
	snprintf(bare, sizeof(bare), "%.*s", (int)strcspn(from, "/"), from);
	if (set && strcmp(name, "subscribe") == 0)
		handle_subscribe(service, iq, pubsub, op, bare, role);
	else if (set && strcmp(name, "unsubscribe") == 0)
		handle_unsubscribe(service, iq, bare);
	else if (!set && strcmp(name, "items") == 0)
		handle_items(service, iq, pubsub, op, bare);
	else if (!set && (strcmp(name, "subscriptions") == 0 || strcmp(name, "options") == 0))
		handle_subscription_query(service, iq, name, bare);
	else
		service_reply_error(service, iq, PUBSUB_ERR_BAD_REQUEST, NULL);
	firehose_kick(service->firehose);
}

struct record_check {
	struct service *service;
	long long seq;
	bool wanted;
};

static int check_record(void *context, const struct journal_record *rec)
{
	struct record_check *c = context;
	struct event *ev;
	const char *error;

	if (rec->seq == c->seq &&
	    event_decode(rec->json, rec->json_len,
			 c->service->publish->config->hierarchy_separator[0], &ev, &error) == 0) {
		c->wanted = firehose_wants(c->service->publish, ev);
		event_free(&ev);
	}
	return 1;
}

/* Whether event seq goes on the firehose: the content of an event that
 * [firehose] accounts leaves out (retrieved for a tap, or before the list
 * changed) is not the firehose's to give. */
static bool seq_on_firehose(struct service *service, long long seq)
{
	struct record_check c = { service, seq, false };
	unsigned visited;

	if (*service->publish->config->firehose_accounts == '\0')
		return true;
	if (journal_read_after(service->publish->store, seq - 1, 1, check_record, &c, &visited) < 0)
		return false;
	return c.wanted;
}

void firehose_request_fetch(struct service *service, xmpp_stanza_t *iq,
			   xmpp_stanza_t *fetch)
{
	const char *from = xmpp_stanza_get_from(iq);
	const char *item = xmpp_stanza_get_attribute(fetch, "item");
	const char *off = xmpp_stanza_get_attribute(fetch, "offset");
	const char *lenattr = xmpp_stanza_get_attribute(fetch, "length");
	long long seq = item != NULL ? atoll(item) : 0;
	long long offset = off != NULL ? atoll(off) : 0;
	long long length = lenattr != NULL ? atoll(lenattr) : 65536;
	struct content_record cr;
	char role_buf[32], *data = NULL, *b64, *body;
	size_t got = 0;

	if (from == NULL || firehose_role(service->publish, from, role_buf, sizeof(role_buf)) == NULL) {
		service_reply_error(service, iq, PUBSUB_ERR_NODE_NOT_FOUND, NULL);
		return;
	}
	if (seq <= 0 || offset < 0 || length <= 0) {
		service_reply_error(service, iq, PUBSUB_ERR_BAD_REQUEST, NULL);
		return;
	}
	if (length > FETCH_CHUNK_MAX)
		length = FETCH_CHUNK_MAX;
	if (!seq_on_firehose(service, seq)) {
		log_info("firehose: %s fetched item %lld, not on the firehose "
			 "([firehose] accounts): refused", from, seq);
		service_reply_error(service, iq, PUBSUB_ERR_ITEM_NOT_FOUND, NULL);
		return;
	}
	if ((size_t)length > BASE64_ROOM(item_max_stanza() - ITEM_WRAPPER_RESERVE))
		length = (long long)BASE64_ROOM(item_max_stanza() - ITEM_WRAPPER_RESERVE);
	if (content_get(service->publish->store, seq, &cr) <= 0 || cr.error != NULL ||
	    (size_t)offset > cr.size ||
	    (offset < (long long)cr.size &&
	     content_read(service->publish->store, seq, (size_t)offset, (size_t)length, &data, &got) < 0)) {
		content_record_clear(&cr);
		service_reply_error(service, iq, PUBSUB_ERR_ITEM_NOT_FOUND, NULL);
		return;
	}
	b64 = content_base64(data != NULL ? data : "", got);
	if (b64 != NULL &&
	    asprintf(&body, "<chunk xmlns='" CONTENT_NS "' item='%lld' offset='%lld'"
		     " size='%zu'>%s</chunk>", seq, offset, cr.size, b64) >= 0) {
		service_send_result_raw(service, iq, body);
		free(body);
	}
	free(b64);
	free(data);
	content_record_clear(&cr);
}
