#include "base/clock.h"
#include "publish/counts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "publish/item.h"
#include "ingest/sink.h"
#include "base/log.h"
#include "model/mailbox_uri.h"
#include "ingest/sink.h"
#include "publish/publish_service.h"
#include "publish/delivery.h"
#include "xmpp/address.h"
#include "store/subscription.h"

#define STATUS_EVENT "vnd.mailpubsub.MailboxStatus"

struct refresh {
	struct refresh *next;
	struct counts *counts;
	char *account, *node;
	const char *reason;   /* static */
};

struct counts {
	struct publish_service *service;
	struct imap_client *imap;
	const struct imap_backends *backends;   /* [backends]; NULL: imap for all */
	uv_timer_t heartbeat;
	struct refresh *in_flight;   /* one STATUS per node at a time */
	bool closing;
	bool timer_closed;           /* whoever finishes last frees */
};

static void heartbeat_tick(uv_timer_t *timer);

int counts_new(uv_loop_t *loop, struct publish_service *service,
	       struct imap_client *imap, struct counts **counts_r,
	       const char **error_r)
{
	struct counts *c = calloc(1, sizeof(*c));
	unsigned interval = service->config->heartbeat_interval;

	if (c == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	c->service = service;
	c->imap = imap;
	uv_timer_init(loop, &c->heartbeat);
	c->heartbeat.data = c;
	if (interval > 0)
		uv_timer_start(&c->heartbeat, heartbeat_tick, interval * 1000ULL,
			       interval * 1000ULL);
	*counts_r = c;
	return 0;
}

void counts_set_backends(struct counts *c, const struct imap_backends *backends)
{
	c->backends = backends;
}

void counts_reschedule(struct counts *c)
{
	uint64_t ms = c->service->config->heartbeat_interval * 1000ULL;

	if (c->closing || ms == uv_timer_get_repeat(&c->heartbeat))
		return;
	uv_timer_stop(&c->heartbeat);
	if (ms > 0)
		uv_timer_start(&c->heartbeat, heartbeat_tick, ms, ms);
	log_info("counts: heartbeat every %llu s", (unsigned long long)ms / 1000);
}

static void timer_closed(uv_handle_t *handle)
{
	struct counts *c = handle->data;

	c->timer_closed = true;
	if (c->in_flight == NULL)
		free(c);
	/* else the last STATUS answer frees it */
}

void counts_close(struct counts **counts)
{
	struct counts *c = *counts;

	if (c == NULL)
		return;
	*counts = NULL;
	c->closing = true;
	uv_close((uv_handle_t *)&c->heartbeat, timer_closed);
}

static struct node_counts counts_of_event(const struct event *ev)
{
	struct node_counts n = { -1, -1, -1, -1 };
	uint64_t v;

	if (event_param_u64(ev, "messages", &v) == 0)
		n.messages = (long long)v;
	if (event_param_u64(ev, "vnd.cmu.unseenMessages", &v) == 0)
		n.unseen = (long long)v;
	if (event_param_u64(ev, "uidnext", &v) == 0)
		n.uidnext = (long long)v;
	if (event_param_u64(ev, "modseq", &v) == 0)
		n.modseq = (long long)v;
	return n;
}

/* A new message above the UIDNEXT we knew: others came in unseen. */
static bool gap_before(struct counts *c, const struct event *ev)
{
	struct node_counts was;

	if (ev->type != EVENT_MESSAGE_NEW && ev->type != EVENT_MESSAGE_APPEND)
		return false;
	if (ev->mailbox.uid == 0 ||
	    !node_tree_get_counts(c->service->store, ev->mailbox.account,
				  ev->mailbox.node, &was) || was.uidnext <= 0)
		return false;
	if ((long long)ev->mailbox.uid <= was.uidnext)
		return false;
	log_warn("counts: %s/%s: UID %u after UIDNEXT %lld: events were lost",
		 ev->mailbox.account, ev->mailbox.node, ev->mailbox.uid, was.uidnext);
	return true;
}

void counts_for_event(struct counts *c, const struct event *ev,
		      struct node_counts *known_r)
{
	struct store *store = c->service->store;
	const struct mailbox_uri *mb = &ev->mailbox;
	struct node_counts carried = counts_of_event(ev);

	known_r->messages = known_r->unseen = known_r->uidnext = known_r->modseq = -1;
	if (mb->node == NULL || ev->type == EVENT_MAILBOX_DELETE)
		return;
	/* a mailbox just created is empty: no need to ask */
	if (carried.messages < 0 && ev->type == EVENT_MAILBOX_CREATE &&
	    !node_tree_get_counts(store, mb->account, mb->node, known_r)) {
		carried.messages = 0;
		carried.unseen = 0;
	}
	if (gap_before(c, ev))
		counts_refresh(c, mb->account, mb->node, "events lost before this one");
	if (carried.messages >= 0 || carried.unseen >= 0 || carried.uidnext >= 0)
		node_tree_set_counts(store, mb->account, mb->node, &carried);
	if (!node_tree_get_counts(store, mb->account, mb->node, known_r))
		counts_refresh(c, mb->account, mb->node, NULL);
}

static void refresh_free(struct refresh *r)
{
	struct counts *c = r->counts;

	for (struct refresh **p = &c->in_flight; *p != NULL; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	free(r->account);
	free(r->node);
	free(r);
	if (c->timer_closed && c->in_flight == NULL)
		free(c);
}

/* Journals the answer as an event, so it is ordered, stored as the node's
 * last item and delivered like everything else. */
static void journal_status(struct counts *c, const char *account,
			   const char *node, const struct imap_status *st,
			   const char *reason)
{
	struct publish_service *service = c->service;
	char *uri = mailbox_uri_build("mailpubsub", account, node,
				      service->config->hierarchy_separator[0],
				      st->uidvalidity);
	struct sink_input in = { .source = "mailpubsub", .received_us = clock_now_us() };
	json_t *obj;
	char *text;
	const char *error;

	if (uri == NULL)
		return;
	obj = json_pack("{s:s, s:s, s:I, s:I, s:I}", "event", STATUS_EVENT,
			"uri", uri, "messages", (json_int_t)st->messages,
			"vnd.cmu.unseenMessages", (json_int_t)st->unseen,
			"uidnext", (json_int_t)st->uidnext);
	if (st->highestmodseq > 0)
		json_object_set_new(obj, "modseq", json_integer((json_int_t)st->highestmodseq));
	if (reason != NULL)
		json_object_set_new(obj, "vnd.mailpubsub.resync", json_string(reason));
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	free(uri);
	if (text == NULL)
		return;
	in.json = text;
	in.json_len = strlen(text);
	if (sink_submit(service->sink, &in, NULL, &error) == SINK_REFUSED)
		log_error("counts: cannot build a status event for %s/%s: %s",
			  account, node, error);
	free(text);
}

static void status_answered(void *ctx, enum imap_result r, const struct imap_status *st)
{
	struct refresh *rf = ctx;
	struct counts *c = rf->counts;

	if (r == IMAP_OK && !c->closing) {
		struct node_counts n = { st->messages, st->unseen, st->uidnext,
					 (long long)st->highestmodseq };

		if (node_tree_exists(c->service->store, rf->account, rf->node)) {
			node_tree_set_counts(c->service->store, rf->account, rf->node, &n);
			journal_status(c, rf->account, rf->node, st, rf->reason);
		}
	} else if (r != IMAP_OK) {
		log_info("counts: STATUS %s/%s failed: %s", rf->account, rf->node,
			 r == IMAP_NO ? "NO" : imap_client_last_error(
				 imap_backends_pick(c->backends, rf->account, c->imap)));
	}
	refresh_free(rf);
}

void counts_refresh(struct counts *c, const char *account, const char *node,
		    const char *reason)
{
	struct refresh *r;

	if (c->imap == NULL || c->closing)
		return;
	for (r = c->in_flight; r != NULL; r = r->next) {
		if (strcmp(r->account, account) == 0 && strcmp(r->node, node) == 0)
			return;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return;
	r->counts = c;
	r->account = strdup(account);
	r->node = strdup(node);
	r->reason = reason;
	r->next = c->in_flight;
	c->in_flight = r;
	/* [backends]: the account's own server has its counters */
	imap_client_status(imap_backends_pick(c->backends, account, c->imap), account, node,
			   status_answered, r);
}

/* ---- heartbeat ---- */

struct beat {
	struct counts *counts;
	long long now_us;
};

static char *status_payload(struct publish_service *service, const char *account,
			    const char *node, const struct node_counts *n,
			    long long now_us)
{
	char *uri = mailbox_uri_build("mailpubsub", account, node,
				      service->config->hierarchy_separator[0], 0);
	struct event *ev;
	const char *error;
	char *json, *payload = NULL;

	if (uri == NULL)
		return NULL;
	if (asprintf(&json, "{\"event\":\"" STATUS_EVENT "\",\"uri\":\"%s\"}", uri) < 0) {
		free(uri);
		return NULL;
	}
	free(uri);
	if (event_decode(json, strlen(json), service->config->hierarchy_separator[0],
			 &ev, &error) == 0) {
		payload = item_payload_build(component_xmpp_ctx(service->component), ev,
					     0, now_us, n);
		event_free(&ev);
	}
	free(json);
	return payload;
}

static int beat_one(void *context, const struct subscription *sub)
{
	struct beat *b = context;
	struct publish_service *service = b->counts->service;
	struct node_counts n;
	struct item_message msg;
	char *payload, *from, *text;
	size_t len;

	if (!node_tree_get_counts(service->store, sub->account, sub->node, &n))
		return 0;
	payload = status_payload(service, sub->account, sub->node, &n, b->now_us);
	from = address_jid_for_account(service->config, sub->account);
	if (payload != NULL && from != NULL &&
	    item_message_build(from, sub->node, 0, payload, 0, &msg) == 0) {
		text = item_message_for(&msg, sub->jid, &len);
		if (text != NULL)
			delivery_send(service->delivery, sub->jid, text, len,
				      DELIVERY_NOW, sub->account, sub->node);
		free(text);
		item_message_clear(&msg);
	}
	free(payload);
	free(from);
	return 0;
}

static void heartbeat_tick(uv_timer_t *timer)
{
	struct counts *c = timer->data;
	struct beat b = { c, clock_now_us() };

	if (!component_is_connected(c->service->component))
		return;
	subscription_each_heartbeat(c->service->store, beat_one, &b);
}
