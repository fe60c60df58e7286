#include "handlers/mam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmpp/component.h"
#include "base/config.h"
#include "downstream/firehose.h"
#include "publish/item.h"
#include "store/firehose_subs.h"
#include "store/journal.h"
#include "store/journal_query.h"
#include "base/log.h"
#include "xmpp/pubsub_error.h"
#include "handlers/service.h"
#include "store/store.h"
#include "xmpp/stanza.h"
#include "downstream/tap.h"
#include "base/timefmt.h"
#include "base/xml_escape.h"

#define DATA_NS "jabber:x:data"
#define FORWARD_NS "urn:xmpp:forward:0"
#define MAM_MAX 100
#define MAM_DEFAULT 50
#define MAM_ROLE "ediscovery"

struct mam_query {
	long long start_us, end_us;
	long long after, before;   /* -1: not given; before 0: the last page */
	long long max;
	char *queryid;             /* escaped, may be "" */
};

/* Text of element name under parent; "" when empty, NULL when absent. */
static char *child_text(xmpp_stanza_t *parent, const char *name)
{
	xmpp_stanza_t *c = parent != NULL ? xmpp_stanza_get_child_by_name(parent, name) : NULL;
	char *text, *out;

	if (c == NULL)
		return NULL;
	text = xmpp_stanza_get_text(c);
	out = strdup(text != NULL ? text : "");
	if (text != NULL)
		xmpp_free(xmpp_stanza_get_context(c), text);
	return out;
}

static bool number(const char *text, long long *value_r)
{
	if (text == NULL || *text == '\0' || strspn(text, "0123456789") != strlen(text) ||
	    strlen(text) > 18)
		return false;
	*value_r = atoll(text);
	return true;
}

/* The filter form: start and end only. */
static int parse_form(xmpp_stanza_t *x, struct mam_query *q)
{
	for (xmpp_stanza_t *f = x != NULL ? xmpp_stanza_get_children(x) : NULL; f != NULL;
	     f = xmpp_stanza_get_next(f)) {
		const char *var;
		char *value;
		long long t;

		if (!xmpp_stanza_is_tag(f) || strcmp(xmpp_stanza_get_name(f), "field") != 0)
			continue;
		var = xmpp_stanza_get_attribute(f, "var");
		if (var == NULL || strcmp(var, "FORM_TYPE") == 0)
			continue;
		if (strcmp(var, "start") != 0 && strcmp(var, "end") != 0)
			return -1;      /* with, ids, fulltext: not here */
		value = child_text(f, "value");
		t = value != NULL ? tap_parse_time_us(value) : -1;
		free(value);
		if (t < 0)
			return -1;
		if (strcmp(var, "start") == 0)
			q->start_us = t;
		else
			q->end_us = t;
	}
	return 0;
}

static int parse_rsm(xmpp_stanza_t *set, struct mam_query *q)
{
	char *max = child_text(set, "max"), *after = child_text(set, "after");
	char *before = child_text(set, "before");
	int rc = 0;

	if (max != NULL && !number(max, &q->max))
		rc = -1;
	if (after != NULL && !number(after, &q->after))
		rc = -1;
	if (before != NULL && *before == '\0')
		q->before = 0;
	else if (before != NULL && !number(before, &q->before))
		rc = -1;
	free(max);
	free(after);
	free(before);
	return rc;
}

/* Sends one <result/> message: the item as published, forwarded. */
static int send_result(struct service *service, const struct mam_query *q,
		       const char *to, const char *bare, const struct journal_record *rec,
		       const char *payload)
{
	struct item_message msg;
	char stamp[40], *inner, *out = NULL;
	size_t len;
	int n;

	if (item_message_build(service->publish->config->component_domain, FIREHOSE_NODE, rec->seq,
			       payload, 0, &msg) < 0)
		return -1;
	inner = item_message_for(&msg, bare, &len);
	item_message_clear(&msg);
	if (inner == NULL || strncmp(inner, "<message ", 9) != 0) {
		free(inner);
		return -1;
	}
	timefmt_iso8601_ms(rec->received_us, stamp, sizeof(stamp));
	n = asprintf(&out, "<message to='%s' from='%s' id='mam-%lld'><result xmlns='" MAM_NS
		     "' queryid='%s' id='%lld'><forwarded xmlns='" FORWARD_NS "'>"
		     "<delay xmlns='urn:xmpp:delay' stamp='%s'/><message xmlns='jabber:client' %s"
		     "</forwarded></result></message>", to, service->publish->config->component_domain,
		     rec->seq, q->queryid, rec->seq, stamp, inner + 9);
	free(inner);
	if (n < 0)
		return -1;
	component_send_raw(service->publish->component, out, (size_t)n);
	free(out);
	return 0;
}

static const char *policy_of(struct service *service, const char *bare, char *buf, size_t size)
{
	snprintf(buf, size, "headers");   /* the ediscovery default */
	firehose_subs_get(service->publish->store, bare, NULL, 0, buf, size);
	return buf;
}

/* The page being collected: up to max results that go on the firehose. */
struct page {
	struct service *service;
	const char *policy;
	long long max;
	struct journal_record *recs;
	char **payloads;
	unsigned n;
	bool complete;
};

static int collect(void *context, const struct journal_record *rec)
{
	struct page *p = context;
	char *payload = firehose_item_payload(p->service->publish, rec, p->policy);

	if (payload == NULL)
		return 0;     /* not on the firehose */
	if (p->n == (unsigned)p->max) {
		free(payload);
		p->complete = false;
		return 1;
	}
	p->recs[p->n] = *rec;
	p->recs[p->n].source = NULL;
	p->recs[p->n].json = NULL;
	p->payloads[p->n++] = payload;
	return 0;
}

/* Runs the query: results in journal order, then the <fin/>. */
static void run(struct service *service, xmpp_stanza_t *iq, struct mam_query *q,
		const char *bare)
{
	const char *to = xmpp_stanza_get_from(iq);
	bool backward = q->before >= 0;
	long long upto = firehose_position(service->firehose), first = 0, last = 0;
	char policy[16], *eto, *body = NULL, *set = NULL;
	struct page p = { service, policy, q->max, NULL, NULL, 0, true };
	unsigned n;
	bool complete;

	p.recs = calloc((size_t)q->max, sizeof(*p.recs));
	p.payloads = calloc((size_t)q->max, sizeof(*p.payloads));
	eto = xml_escape(to);
	if (p.recs == NULL || p.payloads == NULL || eto == NULL) {
		free(p.recs);
		free(p.payloads);
		free(eto);
		service_reply_stanza_error(service, iq, "wait", "internal-server-error");
		return;
	}
	policy_of(service, bare, policy, sizeof(policy));
	journal_query_window(service->publish->store,
			     backward ? (q->before > 0 ? q->before : upto + 1) :
					(q->after > 0 ? q->after : 0),
			     backward, upto, q->start_us, q->end_us, collect, &p);
	n = p.n;
	complete = p.complete;
	for (unsigned i = 0; i < n; i++) {
		/* backward pages come newest first: sent oldest first */
		unsigned k = backward ? n - 1 - i : i;

		send_result(service, q, eto, bare, &p.recs[k], p.payloads[k]);
		if (i == 0)
			first = p.recs[k].seq;
		last = p.recs[k].seq;
		free(p.payloads[k]);
	}
	if (n > 0 && asprintf(&set, "<set xmlns='" RSM_NS "'><first>%lld</first><last>%lld"
			      "</last></set>", first, last) < 0)
		set = NULL;
	if (asprintf(&body, "<fin xmlns='" MAM_NS "'%s%s%s complete='%s'>%s</fin>",
		     *q->queryid != '\0' ? " queryid='" : "", q->queryid,
		     *q->queryid != '\0' ? "'" : "", complete ? "true" : "false",
		     set != NULL ? set : "<set xmlns='" RSM_NS "'/>") >= 0) {
		service_send_result_raw(service, iq, body);
		free(body);
	}
	log_info("mam: %s: %u results (%s)", bare, n, complete ? "complete" : "more");
	free(set);
	free(p.recs);
	free(p.payloads);
	free(eto);
}

void mam_handle(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *query)
{
	const char *from = xmpp_stanza_get_from(iq);
	const char *node = xmpp_stanza_get_attribute(query, "node");
	const char *qid = xmpp_stanza_get_attribute(query, "queryid");
	xmpp_stanza_t *set = stanza_child(query, "set", RSM_NS);
	struct mam_query q = { 0, (long long)9e18, -1, -1, MAM_DEFAULT, NULL };
	char role_buf[32], bare[1024];
	const char *role = from != NULL ?
		firehose_role(service->publish, from, role_buf, sizeof(role_buf)) : NULL;

	/* the firehose (and its archive) exists for its subscribers only */
	if (role == NULL || node == NULL || strcmp(node, FIREHOSE_NODE) != 0) {
		service_reply_stanza_error(service, iq, "cancel", "item-not-found");
		return;
	}
	if (strcmp(role, MAM_ROLE) != 0) {
		service_reply_stanza_error(service, iq, "auth", "forbidden");
		return;
	}
	if (strcmp(xmpp_stanza_get_type(iq), "set") != 0 ||
	    parse_form(stanza_child(query, "x", DATA_NS), &q) < 0 ||
	    (set != NULL && parse_rsm(set, &q) < 0)) {
		service_reply_stanza_error(service, iq, "modify", "bad-request");
		return;
	}
	/* RSM max 0 asks for a count only: a page of one serves as well */
	if (q.max <= 0)
		q.max = 1;
	if (q.max > MAM_MAX)
		q.max = MAM_MAX;
	q.queryid = xml_escape(qid != NULL ? qid : "");
	if (q.queryid == NULL) {
		service_reply_stanza_error(service, iq, "wait", "internal-server-error");
		return;
	}
	snprintf(bare, sizeof(bare), "%.*s", (int)strcspn(from, "/"), from);
	run(service, iq, &q, bare);
	free(q.queryid);
}
