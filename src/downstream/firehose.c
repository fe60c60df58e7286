#include "base/clock.h"
#include "downstream/firehose.h"

#include <ctype.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmpp/component.h"
#include "base/config.h"
#include "downstream/content.h"
#include "model/event.h"
#include "imap/imap_client.h"
#include "publish/item.h"
#include "base/jid.h"
#include "ingest/sink.h"
#include "store/journal.h"
#include "base/log.h"
#include "store/node_tree.h"
#include "xmpp/pubsub_error.h"
#include "handlers/service.h"
#include "store/store.h"

#define PUBSUB_NS "http://jabber.org/protocol/pubsub"
#define RSM_NS "http://jabber.org/protocol/rsm"
#define DATA_NS "jabber:x:data"
#define CONTENT_OPTION "mailpubsub#content"
/* records handed on per loop iteration: the loop stays responsive */
#define FIREHOSE_BATCH 200
#define FETCH_CHUNK_MAX (256 * 1024)
/* base64 takes 4 bytes per 3 */
#define BASE64_ROOM(bytes) ((bytes) / 4 * 3)
#define RSM_MAX 100
/* A catch-up reply stops growing before [component] max_stanza_size
 * (item_max_stanza()): the server closes a component stream that sends a
 * stanza over its limit, and RSM lets a page hold fewer items than asked
 * for. */

struct firehose {
	struct service *service;
	struct imap_client *imap;
	uv_idle_t idle;
	uv_timer_t retry;
	long long seq;            /* last record handed to subscribers */
	long long prev;           /* last record that went out ([firehose] accounts) */
	bool fetching;            /* a retrieval is in flight */
	bool backing_off;         /* the retry timer runs */
	unsigned attempts;        /* failed retrievals for seq + 1 */
	bool closing;
	unsigned handles;         /* open uv handles */
	long long pruned_us;      /* last content prune */
};

/* ---- configuration ---------------------------------------------------- */

/* [firehose] subscribers: "jid:role jid:role ...". */
const char *firehose_role(const struct service *service, const char *jid,
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
	static const char sql[] = "DELETE FROM firehose_subs WHERE jid = ?";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, jid, -1, SQLITE_TRANSIENT);
	if (store_exec_stmt(store, st) < 0 || sqlite3_changes(store_db(store)) == 0)
		return -1;
	return 0;
}

unsigned firehose_prune_subscribers(struct service *service)
{
	static const char sql[] = "SELECT jid FROM firehose_subs";
	sqlite3_stmt *st = store_stmt(service->store, sql);
	char **gone = NULL, role[32];
	size_t n = 0;
	unsigned dropped = 0;

	if (st == NULL)
		return 0;
	/* collected first: rows are not deleted under a running SELECT */
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *jid = (const char *)sqlite3_column_text(st, 0);
		char **grown;

		if (jid == NULL || firehose_role(service, jid, role, sizeof(role)) != NULL)
			continue;
		grown = realloc(gone, (n + 1) * sizeof(*gone));
		if (grown == NULL || (grown[n] = strdup(jid)) == NULL) {
			gone = grown != NULL ? grown : gone;
			break;
		}
		gone = grown;
		n++;
	}
	sqlite3_reset(st);
	for (size_t i = 0; i < n; i++) {
		if (drop_subscription(service->store, gone[i]) == 0) {
			log_info("firehose: %s is no longer in [firehose] subscribers: "
				 "subscription removed", gone[i]);
			dropped++;
		}
		free(gone[i]);
	}
	free(gone);
	return dropped;
}

static bool has_subscribers(struct store *store)
{
	static const char sql[] = "SELECT 1 FROM firehose_subs LIMIT 1";
	sqlite3_stmt *st = store_stmt(store, sql);
	bool any;

	if (st == NULL)
		return false;
	any = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_reset(st);
	return any;
}

/* The strongest content policy any subscriber has: "full", "headers" or
 * NULL (none). */
static const char *wanted_part(struct store *store)
{
	static const char sql[] =
		"SELECT max(CASE content WHEN 'full' THEN 2 WHEN 'headers' THEN 1"
		" ELSE 0 END) FROM firehose_subs";
	sqlite3_stmt *st = store_stmt(store, sql);
	int level = 0;

	if (st == NULL)
		return NULL;
	if (sqlite3_step(st) == SQLITE_ROW)
		level = sqlite3_column_int(st, 0);
	sqlite3_reset(st);
	return level == 2 ? "full" : level == 1 ? "headers" : NULL;
}

/* Events whose URI names one message that a subscriber may want the
 * bytes of: a copy or move keeps the bytes of a message seen before. */
static bool carries_message(const struct event *ev)
{
	return (ev->type == EVENT_MESSAGE_NEW || ev->type == EVENT_MESSAGE_APPEND) &&
	       ev->mailbox.node != NULL && ev->mailbox.uid != 0;
}

/* Whether ev goes on the firehose ([firehose] accounts). */
static bool wanted_account(const struct service *service, const struct event *ev)
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
	static const char sql[] =
		"SELECT max(seq) FROM journal WHERE seq < ?1 AND instr(' ' || ?2 || ' ',"
		" ' ' || coalesce(nullif(account, ''), json_extract(json, '$.user'), '')"
		" || ' ') > 0";
	sqlite3_stmt *st;
	long long prev = 0;

	if (*accounts == '\0')
		return seq - 1;
	st = store_stmt(store, sql);
	if (st == NULL)
		return 0;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, accounts, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		prev = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return prev;
}

/* ---- payloads ------------------------------------------------------------ */

/* The item payload for rec as a subscriber with policy part (NULL: none)
 * gets it: the mailbox-event with <content/> spliced in. */
static char *payload_for(struct service *service, const struct journal_record *rec,
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
	struct service *service;
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
static void send_record(struct firehose *fh, const struct journal_record *rec,
			const struct event *ev)
{
	static const char sql[] = "SELECT jid, content FROM firehose_subs ORDER BY jid";
	struct service *service = fh->service;
	struct send_ctx sc = { service, rec, ev, { NULL, NULL, NULL },
			       (char *)service->config->component_domain, fh->prev };
	sqlite3_stmt *st = store_stmt(service->store, sql);

	if (st == NULL)
		return;
	while (sqlite3_step(st) == SQLITE_ROW)
		send_to(&sc, (const char *)sqlite3_column_text(st, 0),
			(const char *)sqlite3_column_text(st, 1));
	sqlite3_reset(st);
	for (int i = 0; i < 3; i++)
		free(sc.payload[i]);
}

/* ---- the pipeline --------------------------------------------------------- */

static void start_idle(struct firehose *fh);

static void on_retry(uv_timer_t *timer)
{
	struct firehose *fh = timer->data;

	fh->backing_off = false;
	start_idle(fh);
}

struct fetch_ctx {
	struct firehose *fh;
	long long seq;
	char part[8];
	char *account, *node;     /* where the message is looked for */
	char *mailbox_id;         /* the store's unique id (Cyrus), or NULL */
	uint32_t uidvalidity, uid;
	unsigned hops;            /* renames followed */
};

static void fetch_ctx_free(struct fetch_ctx *fc)
{
	free(fc->account);
	free(fc->node);
	free(fc->mailbox_id);
	free(fc);
}

static void fetch_issue(struct fetch_ctx *fc);

/* Whether the journal has a rename of one of account's mailboxes after
 * seq that the tree may not show yet. */
static bool renamed_later(struct store *store, const char *account, long long seq)
{
	static const char sql[] =
		"SELECT 1 FROM journal WHERE seq > ? AND account = ?"
		" AND type = 'MailboxRename' LIMIT 1";
	sqlite3_stmt *st = store_stmt(store, sql);
	bool found;

	if (st == NULL)
		return false;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_reset(st);
	return found;
}

static void maybe_free(struct firehose *fh);

static void fetched(void *context, enum imap_result r, const struct imap_message *msg)
{
	struct fetch_ctx *fc = context;
	struct firehose *fh = fc->fh;
	struct service *service = fh->service;
	long long now = clock_now_us();

	fh->fetching = false;
	if (fh->closing) {
		fetch_ctx_free(fc);
		maybe_free(fh);
		return;
	}
	if (r == IMAP_NO && fc->hops < 8) {
		/* the mailbox was renamed after the event: look there */
		char *moved = node_tree_find_moved(service->store, fc->account,
						   fc->node, fc->mailbox_id,
						   fc->uidvalidity);

		if (moved != NULL) {
			log_info("firehose: #%lld: %s/%s is now %s/%s", fc->seq, fc->account,
				 fc->node, fc->account, moved);
			free(fc->node);
			fc->node = moved;
			fc->hops++;
			fetch_issue(fc);
			return;
		}
		free(moved);
		/* a rename the tree does not show yet: worth another attempt */
		if (renamed_later(service->store, fc->account, fc->seq))
			r = IMAP_TEMPFAIL;
	}
	if (r == IMAP_OK) {
		content_put(service->store, fc->seq, fc->part, msg, now);
		fh->attempts = 0;
		log_debug("firehose: #%lld: %zu bytes retrieved", fc->seq, msg->len);
	} else if (r == IMAP_NO) {
		/* gone before we came: that is final */
		content_put_error(service->store, fc->seq, "expunged", fh->attempts + 1, now);
		log_info("firehose: #%lld: message gone: %s", fc->seq,
			 imap_client_last_error(fh->imap));
		fh->attempts = 0;
	} else if (++fh->attempts >= service->config->firehose_fetch_attempts) {
		content_put_error(service->store, fc->seq, "unavailable", fh->attempts, now);
		log_warn("firehose: #%lld: content unavailable after %u attempts",
			 fc->seq, fh->attempts);
		fh->attempts = 0;
	} else {
		unsigned delay = 1000u << (fh->attempts - 1 < 5 ? fh->attempts - 1 : 5);

		log_info("firehose: #%lld: retrieval failed (attempt %u), retrying in %u ms",
			 fc->seq, fh->attempts, delay);
		fh->backing_off = true;
		uv_timer_start(&fh->retry, on_retry, delay, 0);
		fetch_ctx_free(fc);
		return;
	}
	fetch_ctx_free(fc);
	start_idle(fh);
}

static void fetch_issue(struct fetch_ctx *fc)
{
	fc->fh->fetching = true;
	imap_client_fetch(fc->fh->imap, fc->account, fc->node, fc->uidvalidity, fc->uid,
			  strcmp(fc->part, "full") == 0 ? IMAP_FETCH_FULL : IMAP_FETCH_HEADERS,
			  fetched, fc);
}

static void start_fetch(struct firehose *fh, const struct event *ev, long long seq,
			const char *part)
{
	struct fetch_ctx *fc = calloc(1, sizeof(*fc));
	const char *mailbox_id;

	if (fc == NULL)
		return;
	fc->fh = fh;
	fc->seq = seq;
	snprintf(fc->part, sizeof(fc->part), "%s", part);
	fc->account = strdup(ev->mailbox.account);
	fc->node = strdup(ev->mailbox.node);
	fc->uidvalidity = ev->mailbox.uidvalidity;
	fc->uid = ev->mailbox.uid;
	mailbox_id = json_string_value(json_object_get(ev->json, "mailboxID"));
	if (mailbox_id != NULL)
		fc->mailbox_id = strdup(mailbox_id);
	if (fc->account == NULL || fc->node == NULL) {
		fetch_ctx_free(fc);
		return;
	}
	fetch_issue(fc);
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
	struct service *service = fh->service;
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
		if (known == 0 && fh->imap != NULL) {
			start_fetch(fh, ev, rec->seq, sc->part);
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
	struct service *service = fh->service;

	if (fh->fetching || fh->backing_off || !component_is_connected(service->component) ||
	    component_queue_len(service->component) > 1000) {
		uv_idle_stop(&fh->idle);
		if (component_is_connected(service->component) && !fh->fetching &&
		    !fh->backing_off)
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
	struct service *service = fh->service;
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

int firehose_new(uv_loop_t *loop, struct service *service,
		 struct imap_client *imap, struct firehose **firehose_r,
		 const char **error_r)
{
	static const char *const schema =
		"CREATE TABLE IF NOT EXISTS firehose_subs ("
		" jid TEXT PRIMARY KEY, subid TEXT NOT NULL,"
		" content TEXT NOT NULL, created_us INTEGER NOT NULL)";
	struct firehose *fh;

	if (sqlite3_exec(store_db(service->store), schema, NULL, NULL, NULL) != SQLITE_OK) {
		*error_r = "cannot create the firehose table";
		return -1;
	}
	if (content_init(service->store, error_r) < 0)
		return -1;
	firehose_prune_subscribers(service);
	fh = calloc(1, sizeof(*fh));
	if (fh == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	fh->service = service;
	fh->imap = imap;
	if (store_meta_get_i64(service->store, "firehose_seq", &fh->seq) < 0)
		fh->seq = journal_last_seq(service->store);
	if (store_meta_get_i64(service->store, "firehose_prev", &fh->prev) < 0)
		fh->prev = prev_wanted(service->store, service->config->firehose_accounts,
				       fh->seq + 1);
	uv_idle_init(loop, &fh->idle);
	uv_timer_init(loop, &fh->retry);
	fh->idle.data = fh->retry.data = fh;
	fh->handles = 2;
	*firehose_r = fh;
	log_info("firehose: node %s on %s from #%lld", FIREHOSE_NODE,
		 service->config->component_domain, fh->seq);
	return 0;
}

static void maybe_free(struct firehose *fh)
{
	if (fh->handles == 0 && !fh->fetching)
		free(fh);
}

static void handle_closed(uv_handle_t *handle)
{
	struct firehose *fh = handle->data;

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
}

/* ---- requests ------------------------------------------------------------- */

static void reply_err(struct service *service, xmpp_stanza_t *iq, enum pubsub_error e)
{
	service_send_release(service, pubsub_error_reply(
		component_xmpp_ctx(service->component), iq, e, NULL));
}

static xmpp_stanza_t *child_ns(xmpp_stanza_t *parent, const char *name, const char *ns)
{
	for (xmpp_stanza_t *c = xmpp_stanza_get_children(parent); c != NULL;
	     c = xmpp_stanza_get_next(c)) {
		if (!xmpp_stanza_is_tag(c) || strcmp(xmpp_stanza_get_name(c), name) != 0)
			continue;
		if (ns == NULL || (xmpp_stanza_get_ns(c) != NULL &&
				   strcmp(xmpp_stanza_get_ns(c), ns) == 0))
			return c;
	}
	return NULL;
}

/* The content policy in a subscribe options form; "" when absent, NULL
 * when invalid. */
static const char *requested_policy(xmpp_stanza_t *options, char *buf, size_t size)
{
	xmpp_stanza_t *x = options != NULL ? child_ns(options, "x", DATA_NS) : NULL;

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
		v = child_ns(f, "value", NULL);
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
	static const char sql[] =
		"INSERT INTO firehose_subs (jid, subid, content, created_us) VALUES (?, ?, ?, ?)"
		" ON CONFLICT (jid) DO UPDATE SET content = excluded.content";
	static const char get_sql[] = "SELECT subid FROM firehose_subs WHERE jid = ?";
	const char *jid = xmpp_stanza_get_attribute(op, "jid");
	char policy_buf[16], subid[33], *body, *ejid;
	const char *policy = requested_policy(child_ns(pubsub, "options", NULL),
					      policy_buf, sizeof(policy_buf));
	unsigned char rnd[16];
	sqlite3_stmt *st;

	if (jid == NULL || strncasecmp(jid, bare, strlen(bare)) != 0 ||
	    (jid[strlen(bare)] != '\0' && jid[strlen(bare)] != '/')) {
		reply_err(service, iq, PUBSUB_ERR_SUBSCRIBE_INVALID_JID);
		return;
	}
	if (policy == NULL) {
		reply_err(service, iq, PUBSUB_ERR_OPTIONS_INVALID);
		return;
	}
	if (*policy == '\0')
		policy = strcmp(role, "archive") == 0 || strcmp(role, "intercept") == 0 ?
			 "full" : "headers";
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		reply_err(service, iq, PUBSUB_ERR_INTERNAL);
		return;
	}
	for (int i = 0; i < 16; i++)
		snprintf(subid + 2 * i, 3, "%02x", rnd[i]);
	st = store_stmt(service->store, sql);
	if (st == NULL) {
		reply_err(service, iq, PUBSUB_ERR_INTERNAL);
		return;
	}
	sqlite3_bind_text(st, 1, bare, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, subid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, policy, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, clock_now_us());
	if (store_exec_stmt(service->store, st) < 0) {
		reply_err(service, iq, PUBSUB_ERR_INTERNAL);
		return;
	}
	st = store_stmt(service->store, get_sql);
	if (st != NULL) {
		sqlite3_bind_text(st, 1, bare, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			snprintf(subid, sizeof(subid), "%s", sqlite3_column_text(st, 0));
		sqlite3_reset(st);
	}
	log_info("firehose: %s (%s) subscribed, content %s", bare, role, policy);
	ejid = item_xml_escape(bare);
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
	if (drop_subscription(service->store, bare) < 0) {
		reply_err(service, iq, PUBSUB_ERR_UNSUBSCRIBE_NOT_SUBSCRIBED);
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
	static const char *const parts[] = { NULL, "headers", "full" };
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
			 ic->service->config->hierarchy_separator[0], &ev, &error) < 0)
		return 0;
	if (!wanted_account(ic->service, ev)) {
		event_free(&ev);
		return 0;
	}
	payload = payload_for(ic->service, rec, ev, parts[part_index(ic->policy)], ic->prev);
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
	xmpp_stanza_t *c = child_ns(parent, name, NULL);
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
	static const char sql[] = "SELECT content FROM firehose_subs WHERE jid = ?";
	xmpp_stanza_t *set = child_ns(pubsub, "set", RSM_NS);
	struct items_ctx ic = { service, "full", NULL, 0, 0, 0,
				service->firehose != NULL ? service->firehose->seq : 0, 0, 0 };
	long long max = set != NULL ? child_number(set, "max", RSM_MAX) : 20;
	const char *mi = xmpp_stanza_get_attribute(op, "max_items");
	long long after;
	char policy[16] = "full", *body, *rsm = NULL;
	sqlite3_stmt *st = store_stmt(service->store, sql);
	unsigned count = 0;

	if (st != NULL) {
		sqlite3_bind_text(st, 1, bare, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			snprintf(policy, sizeof(policy), "%s", sqlite3_column_text(st, 0));
		sqlite3_reset(st);
	}
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
	ic.prev = prev_wanted(service->store, service->config->firehose_accounts, after + 1);
	journal_read_after(service->store, after, (unsigned)max, collect_item, &ic, &count);
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
	static const char sql[] = "SELECT subid, content FROM firehose_subs WHERE jid = ?";
	sqlite3_stmt *st = store_stmt(service->store, sql);
	char *ejid = item_xml_escape(bare), *body = NULL;
	int n = -1;

	if (st == NULL || ejid == NULL) {
		free(ejid);
		reply_err(service, iq, PUBSUB_ERR_INTERNAL);
		return;
	}
	sqlite3_bind_text(st, 1, bare, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *subid = (const char *)sqlite3_column_text(st, 0);
		const char *content = (const char *)sqlite3_column_text(st, 1);

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
	sqlite3_reset(st);
	free(ejid);
	if (n < 0) {
		reply_err(service, iq, PUBSUB_ERR_OPTIONS_NOT_SUBSCRIBED);
		return;
	}
	service_send_result_raw(service, iq, body);
	free(body);
}

void firehose_handle_pubsub(struct service *service, xmpp_stanza_t *iq,
			    xmpp_stanza_t *pubsub, xmpp_stanza_t *op)
{
	const char *from = xmpp_stanza_get_from(iq);
	const char *name = xmpp_stanza_get_name(op);
	bool set = strcmp(xmpp_stanza_get_type(iq), "set") == 0;
	char role_buf[32], bare[1024];
	const char *role = from != NULL ?
		firehose_role(service, from, role_buf, sizeof(role_buf)) : NULL;

	if (role == NULL) {
		/* invisible to everybody else */
		reply_err(service, iq, PUBSUB_ERR_NODE_NOT_FOUND);
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
		reply_err(service, iq, PUBSUB_ERR_BAD_REQUEST);
	firehose_kick(service->firehose);
}

char *firehose_item_payload(struct service *service, const struct journal_record *rec,
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

long long firehose_position(const struct service *service)
{
	return service->firehose != NULL ? service->firehose->seq : 0;
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
			 c->service->config->hierarchy_separator[0], &ev, &error) == 0) {
		c->wanted = wanted_account(c->service, ev);
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

	if (*service->config->firehose_accounts == '\0')
		return true;
	if (journal_read_after(service->store, seq - 1, 1, check_record, &c, &visited) < 0)
		return false;
	return c.wanted;
}

void firehose_handle_fetch(struct service *service, xmpp_stanza_t *iq,
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

	if (from == NULL || firehose_role(service, from, role_buf, sizeof(role_buf)) == NULL) {
		reply_err(service, iq, PUBSUB_ERR_NODE_NOT_FOUND);
		return;
	}
	if (seq <= 0 || offset < 0 || length <= 0) {
		reply_err(service, iq, PUBSUB_ERR_BAD_REQUEST);
		return;
	}
	if (length > FETCH_CHUNK_MAX)
		length = FETCH_CHUNK_MAX;
	if (!seq_on_firehose(service, seq)) {
		log_info("firehose: %s fetched item %lld, not on the firehose "
			 "([firehose] accounts): refused", from, seq);
		reply_err(service, iq, PUBSUB_ERR_ITEM_NOT_FOUND);
		return;
	}
	if ((size_t)length > BASE64_ROOM(item_max_stanza() - ITEM_WRAPPER_RESERVE))
		length = (long long)BASE64_ROOM(item_max_stanza() - ITEM_WRAPPER_RESERVE);
	if (content_get(service->store, seq, &cr) <= 0 || cr.error != NULL ||
	    (size_t)offset > cr.size ||
	    (offset < (long long)cr.size &&
	     content_read(service->store, seq, (size_t)offset, (size_t)length, &data, &got) < 0)) {
		content_record_clear(&cr);
		reply_err(service, iq, PUBSUB_ERR_ITEM_NOT_FOUND);
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
