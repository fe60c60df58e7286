#include "base/clock.h"
#include "downstream/firehose.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmpp/component.h"
#include "base/config.h"
#include "downstream/content.h"
#include "downstream/content_fetch.h"
#include "model/event.h"
#include "imap/imap_client.h"
#include "publish/item.h"
#include "base/jid.h"
#include "store/firehose_subs.h"
#include "ingest/sink.h"
#include "store/journal.h"
#include "store/journal_query.h"
#include "base/log.h"
#include "publish/publish_service.h"
#include "store/store.h"
#include "base/xml_escape.h"

/* records handed on per loop iteration: the loop stays responsive */
#define FIREHOSE_BATCH 200
/* base64 takes 4 bytes per 3 */
#define BASE64_ROOM(bytes) ((bytes) / 4 * 3)

struct firehose {
	struct publish_service *service;
	struct content_fetch *fetch;   /* content retrieval, one at a time */
	uv_idle_t idle;
	uv_timer_t retry;         /* the component's queue was full */
	long long seq;            /* last record handed to subscribers */
	long long prev;           /* last record that went out ([firehose] accounts) */
	bool closing;
	unsigned handles;         /* open uv handles */
	long long pruned_us;      /* last content prune */
};

/* ---- configuration ---------------------------------------------------- */

/* [firehose] subscribers: "jid:role jid:role ...". */
const char *firehose_role(const struct publish_service *service, const char *jid,
			  char *buf, size_t size)
{
	const char *list = service->config->firehose_subscribers;
	size_t blen = strcspn(jid, "/");

	for (const char *p = list; *p != '\0';) {
		size_t len = strcspn(p, " \t,");
		const char *colon = memchr(p, ':', len);

		if (colon != NULL && (size_t)(colon - p) == blen &&
		    strncasecmp(p, jid, blen) == 0) {
			size_t rlen = len - (size_t)(colon - p) - 1;

			snprintf(buf, size, "%.*s", (int)rlen, colon + 1);
			return buf;
		}
		p += len;
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
	}
	return NULL;
}

/* Drops the subscription of jid (bare); 0 when there was one. */
static int drop_subscription(struct store *store, const char *jid)
{
	return firehose_subs_drop(store, jid) > 0 ? 0 : -1;
}

struct gone {
	struct publish_service *service;
	char **jids;
	size_t n;
};

/* Collects subscribers no longer in [firehose] subscribers: rows are not
 * deleted under a running SELECT. */
static int collect_gone(void *context, const char *jid, const char *content)
{
	struct gone *g = context;
	char role[32], **grown;

	(void)content;
	if (jid == NULL || firehose_role(g->service, jid, role, sizeof(role)) != NULL)
		return 0;
	grown = realloc(g->jids, (g->n + 1) * sizeof(*g->jids));
	if (grown == NULL)
		return 1;
	g->jids = grown;
	if ((g->jids[g->n] = strdup(jid)) == NULL)
		return 1;
	g->n++;
	return 0;
}

unsigned firehose_prune_subscribers(struct publish_service *service)
{
	struct gone g = { service, NULL, 0 };
	unsigned dropped = 0;

	firehose_subs_each(service->store, collect_gone, &g);
	for (size_t i = 0; i < g.n; i++) {
		if (drop_subscription(service->store, g.jids[i]) == 0) {
			log_info("firehose: %s is no longer in [firehose] subscribers: "
				 "subscription removed", g.jids[i]);
			dropped++;
		}
		free(g.jids[i]);
	}
	free(g.jids);
	return dropped;
}

static bool has_subscribers(struct store *store)
{
	return firehose_subs_any(store);
}

/* The strongest content policy any subscriber has: "full", "headers" or
 * NULL (none). */
static const char *wanted_part(struct store *store)
{
	return firehose_subs_strongest(store);
}

/* Events whose URI names one message that a subscriber may want the
 * bytes of: a copy or move keeps the bytes of a message seen before. */
static bool carries_message(const struct event *ev)
{
	return (ev->type == EVENT_MESSAGE_NEW || ev->type == EVENT_MESSAGE_APPEND) &&
	       ev->mailbox.node != NULL && ev->mailbox.uid != 0;
}

/* Whether ev goes on the firehose ([firehose] accounts). */
static bool wanted_account(const struct publish_service *service, const struct event *ev)
{
	const char *list = service->config->firehose_accounts;
	const char *account = ev->mailbox.account != NULL ? ev->mailbox.account :
			      ev->acting_user != NULL ? ev->acting_user : "";

	return *list == '\0' || config_list_contains(list, account);
}

/* The last journaled record before seq that goes on the firehose, 0 if
 * none: the prev of an item served in a catch-up page. */
static long long prev_wanted(struct store *store, const char *accounts, long long seq)
{
	if (*accounts == '\0')
		return seq - 1;
	return journal_query_prev_of_accounts(store, accounts, seq);
}

/* ---- payloads ------------------------------------------------------------ */

/* The item payload for rec as a subscriber with policy part (NULL: none)
 * gets it: the mailbox-event with <content/> spliced in. */
static char *payload_for(struct publish_service *service, const struct journal_record *rec,
			 const struct event *ev, const char *part, long long prev)
{
	char *built = item_payload_build(component_xmpp_ctx(service->component),
					 ev, rec->seq, rec->received_us, NULL);
	char *payload = NULL;
	struct content_record cr;
	char *element, *end, *out;
	size_t room;
	int found;

	/* prev: the id of the previous firehose item, so that a subscriber
	 * tells a gap from events [firehose] accounts left out */
	if (built != NULL && strncmp(built, "<mailbox-event", 14) == 0 &&
	    asprintf(&payload, "<mailbox-event prev='%lld'%s", prev, built + 14) < 0)
		payload = NULL;
	free(built);
	if (payload == NULL || part == NULL || !carries_message(ev))
		return payload;
	found = content_get(service->store, rec->seq, &cr);
	if (found <= 0) {
		/* never retrieved (nobody wanted content then), or dropped
		 * after content_retention: final either way */
		memset(&cr, 0, sizeof(cr));
		cr.seq = rec->seq;
		cr.error = strdup("not-kept");
	}
	/* inline only what leaves the item within the bound; the rest is
	 * fetched in chunks (fetch='true') */
	room = item_max_payload() > strlen(payload) + 1024 ?
	       BASE64_ROOM(item_max_payload() - strlen(payload) - 1024) : 0;
	element = content_element(service->store, &cr, part,
				  room < service->config->firehose_inline_max ?
				  room : service->config->firehose_inline_max);
	content_record_clear(&cr);
	end = strstr(payload, "</mailbox-event>");
	if (element == NULL || end == NULL) {
		free(element);
		return payload;
	}
	if (asprintf(&out, "%.*s%s%s", (int)(end - payload), payload, element, end) < 0)
		out = NULL;
	free(element);
	if (out == NULL)
		return payload;
	free(payload);
	return out;
}

struct send_ctx {
	struct publish_service *service;
	const struct journal_record *rec;
	const struct event *ev;
	char *payload[3];         /* none, headers, full */
	char *from;
	long long prev;
};

static int part_index(const char *policy)
{
	return strcmp(policy, "full") == 0 ? 2 : strcmp(policy, "headers") == 0 ? 1 : 0;
}

static void send_to(struct send_ctx *sc, const char *jid, const char *policy)
{
	static const char *const parts[] = { NULL, "headers", "full" };
	int i = part_index(policy);
	struct item_message msg;
	size_t len;
	char *text;

	if (sc->payload[i] == NULL)
		sc->payload[i] = payload_for(sc->service, sc->rec, sc->ev, parts[i], sc->prev);
	if (sc->payload[i] == NULL ||
	    item_message_build(sc->from, FIREHOSE_NODE, sc->rec->seq, sc->payload[i],
			       0, &msg) < 0)
		return;
	text = item_message_for(&msg, jid, &len);
	if (text != NULL && component_send_raw(sc->service->component, text, len) == 0)
		sc->service->stats.notifications++;
	free(text);
	item_message_clear(&msg);
}

/* Hands rec to every firehose subscriber. */
static int send_row(void *context, const char *jid, const char *content)
{
	send_to(context, jid, content);
	return 0;
}

static void send_record(struct firehose *fh, const struct journal_record *rec,
			const struct event *ev)
{
	struct publish_service *service = fh->service;
	struct send_ctx sc = { service, rec, ev, { NULL, NULL, NULL },
			       (char *)service->config->component_domain, fh->prev };

	firehose_subs_each(service->store, send_row, &sc);
	for (int i = 0; i < 3; i++)
		free(sc.payload[i]);
}

/* ---- the pipeline --------------------------------------------------------- */

static void start_idle(struct firehose *fh);

static void on_retry(uv_timer_t *timer)
{
	start_idle(timer->data);
}

static void maybe_free(struct firehose *fh);

/* The content table has news, or a back-off is over: step again. */
static void fetch_ready(void *context)
{
	start_idle(context);
}

struct step_ctx {
	struct firehose *fh;
	const char *part;         /* what the subscribers want */
	bool blocked;             /* waiting for content */
};

static int step_record(void *context, const struct journal_record *rec)
{
	struct step_ctx *sc = context;
	struct firehose *fh = sc->fh;
	struct publish_service *service = fh->service;
	struct content_record cr;
	struct event *decoded = NULL;
	const struct event *ev = rec->event;
	const char *error;

	/* live, the sink handed the event decoded; behind, the journal has
	 * only the text */
	if (ev == NULL) {
		if (event_decode(rec->json, rec->json_len,
				 service->config->hierarchy_separator[0], &decoded,
				 &error) < 0) {
			log_error("firehose: journaled event %lld no longer decodes: %s",
				  rec->seq, error);
			fh->seq = rec->seq;
			return 0;
		}
		ev = decoded;
	}
	if (!wanted_account(service, ev)) {
		event_free(&decoded);
		fh->seq = rec->seq;
		return 0;
	}
	if (sc->part != NULL && carries_message(ev)) {
		int known = content_get(service->store, rec->seq, &cr);

		content_record_clear(&cr);
		if (known == 0 && content_fetch_start(fh->fetch, ev, rec->seq, sc->part,
						    ev->mailbox.uid) == 0) {
			sc->blocked = true;
			event_free(&decoded);
			return 1;
		}
		if (known == 0)
			content_put_error(service->store, rec->seq, "unavailable", 0,
					  clock_now_us());
	}
	send_record(fh, rec, ev);
	event_free(&decoded);
	fh->seq = rec->seq;
	fh->prev = rec->seq;
	return 0;
}

static void prune(struct firehose *fh)
{
	long long now = clock_now_us();
	long long keep = (long long)fh->service->config->firehose_content_retention * 1000000;

	if (now - fh->pruned_us < 60 * 1000000LL)
		return;
	fh->pruned_us = now;
	content_prune(fh->service->store, now - keep);
}

/* Whether a step may run now; if not, the idle is stopped and what wakes
 * the firehose again is arranged. */
static bool may_step(struct firehose *fh)
{
	struct publish_service *service = fh->service;

	if (content_fetch_busy(fh->fetch) || !component_is_connected(service->component) ||
	    component_queue_len(service->component) > 1000) {
		uv_idle_stop(&fh->idle);
		if (component_is_connected(service->component) &&
		    !content_fetch_busy(fh->fetch))
			uv_timer_start(&fh->retry, on_retry, 20, 0);
		return false;
	}
	return true;
}

/* One batch: of events (live: the sink's, decoded) or, events NULL, of
 * the journal after fh->seq (behind). Returns how many records it took
 * (-1: the store is busy, try again) and whether it waits for content. */
static int firehose_step(struct firehose *fh, const struct sink_event *events,
			 size_t n, bool *blocked_r)
{
	struct publish_service *service = fh->service;
	struct step_ctx sc = { fh, NULL, false };
	long long before = fh->seq;
	unsigned count = 0;

	*blocked_r = false;
	if (store_begin(service->store) < 0)
		return -1;
	if (!has_subscribers(service->store)) {
		/* nobody to hand anything to: the firehose starts from now */
		fh->seq = journal_last_seq(service->store);
		fh->prev = prev_wanted(service->store, service->config->firehose_accounts,
				       fh->seq + 1);
		count = (unsigned)n;
	} else {
		sc.part = wanted_part(service->store);
		if (events != NULL)
			sink_events_read(events, n, FIREHOSE_BATCH, step_record, &sc, &count);
		else
			journal_read_after(service->store, fh->seq, FIREHOSE_BATCH,
					   step_record, &sc, &count);
	}
	if (fh->seq != before) {
		store_meta_set_i64(service->store, "firehose_seq", fh->seq);
		store_meta_set_i64(service->store, "firehose_prev", fh->prev);
	}
	prune(fh);
	store_commit(service->store);
	*blocked_r = sc.blocked;
	return (int)count;
}

static void on_idle(uv_idle_t *idle)
{
	struct firehose *fh = idle->data;
	bool blocked;
	int count;

	if (!may_step(fh))
		return;
	count = firehose_step(fh, NULL, 0, &blocked);
	if (count >= 0 && (blocked || count < FIREHOSE_BATCH))
		uv_idle_stop(idle);
}

void firehose_committed(void *context, const struct sink_event *events, size_t count)
{
	struct firehose *fh = context;
	bool blocked;

	if (fh->closing || count == 0)
		return;
	/* live only right after what went last, with nothing waiting in the
	 * journal; else the journal, in order, from fh->seq */
	if (uv_is_active((uv_handle_t *)&fh->idle) || events[0].seq != fh->seq + 1) {
		start_idle(fh);
		return;
	}
	if (!may_step(fh))
		return;
	/* the rest from the journal (a retrieval restarts the idle itself) */
	if (firehose_step(fh, events, count, &blocked) < 0 ||
	    (!blocked && fh->seq < events[count - 1].seq))
		start_idle(fh);
}

static void start_idle(struct firehose *fh)
{
	if (!fh->closing && !uv_is_active((uv_handle_t *)&fh->idle))
		uv_idle_start(&fh->idle, on_idle);
}

void firehose_kick(struct firehose *fh)
{
	if (fh != NULL)
		start_idle(fh);
}

void firehose_reset(struct firehose *fh)
{
	long long seq;

	/* what libstrophe still held is gone with the connection: send again
	 * from the last watermark the store has (repeats carry the same ids) */
	if (fh != NULL && store_meta_get_i64(fh->service->store, "firehose_seq", &seq) == 0)
		fh->seq = seq;
}

int firehose_new(uv_loop_t *loop, struct publish_service *service,
		 struct imap_client *imap, struct firehose **firehose_r,
		 const char **error_r)
{
	struct firehose *fh;

	if (firehose_subs_init(service->store, error_r) < 0)
		return -1;
	if (content_init(service->store, error_r) < 0)
		return -1;
	firehose_prune_subscribers(service);
	fh = calloc(1, sizeof(*fh));
	if (fh == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	fh->service = service;
	if (content_fetch_new(loop, service->store, service->config, imap, "firehose",
			      fetch_ready, fh, &fh->fetch, error_r) < 0) {
		free(fh);
		return -1;
	}
	if (store_meta_get_i64(service->store, "firehose_seq", &fh->seq) < 0)
		fh->seq = journal_last_seq(service->store);
	if (store_meta_get_i64(service->store, "firehose_prev", &fh->prev) < 0)
		fh->prev = prev_wanted(service->store, service->config->firehose_accounts,
				       fh->seq + 1);
	uv_idle_init(loop, &fh->idle);
	uv_timer_init(loop, &fh->retry);
	fh->idle.data = fh->retry.data = fh;
	fh->handles = 3;          /* with the fetcher */
	*firehose_r = fh;
	log_info("firehose: node %s on %s from #%lld", FIREHOSE_NODE,
		 service->config->component_domain, fh->seq);
	return 0;
}

void firehose_set_backends(struct firehose *fh, const struct imap_backends *backends)
{
	content_fetch_set_backends(fh->fetch, backends);
}

static void maybe_free(struct firehose *fh)
{
	if (fh->handles == 0)
		free(fh);
}

static void handle_closed(uv_handle_t *handle)
{
	struct firehose *fh = handle->data;

	fh->handles--;
	maybe_free(fh);
}

static void fetch_closed(void *context)
{
	struct firehose *fh = context;

	fh->handles--;
	maybe_free(fh);
}

void firehose_close(struct firehose **firehose)
{
	struct firehose *fh = *firehose;

	if (fh == NULL)
		return;
	*firehose = NULL;
	fh->closing = true;
	uv_close((uv_handle_t *)&fh->idle, handle_closed);
	uv_close((uv_handle_t *)&fh->retry, handle_closed);
	content_fetch_close(&fh->fetch, fetch_closed, fh);
}

char *firehose_item_payload(struct publish_service *service, const struct journal_record *rec,
			    const char *policy)
{
	static const char *const parts[] = { NULL, "headers", "full" };
	struct event *ev;
	const char *error;
	char *payload = NULL;

	if (event_decode(rec->json, rec->json_len, service->config->hierarchy_separator[0],
			 &ev, &error) < 0)
		return NULL;
	if (wanted_account(service, ev))
		payload = payload_for(service, rec, ev, parts[part_index(policy)],
				      prev_wanted(service->store,
						  service->config->firehose_accounts, rec->seq));
	event_free(&ev);
	return payload;
}

long long firehose_position(const struct firehose *fh)
{
	return fh != NULL ? fh->seq : 0;
}

bool firehose_wants(const struct publish_service *service, const struct event *ev)
{
	return wanted_account(service, ev);
}

char *firehose_policy_payload(struct publish_service *service,
			      const struct journal_record *rec, const struct event *ev,
			      const char *policy, long long prev)
{
	static const char *const parts[] = { NULL, "headers", "full" };

	return payload_for(service, rec, ev, parts[part_index(policy)], prev);
}

long long firehose_prev_wanted(struct publish_service *service, long long seq)
{
	return prev_wanted(service->store, service->config->firehose_accounts, seq);
}

int firehose_unsubscribe(struct store *store, const char *bare)
{
	return drop_subscription(store, bare);
}
