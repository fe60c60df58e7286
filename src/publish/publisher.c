#include "base/clock.h"
#include "publish/publisher.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "publish/counts.h"
#include "publish/delegate.h"
#include "model/event.h"
#include "ingest/sink.h"
#include "publish/item.h"
#include "store/items.h"
#include "store/journal.h"
#include "base/log.h"
#include "store/node_tree.h"
#include "authz/authz.h"
#include "handlers/pubsub.h"
#include "handlers/service.h"
#include "store/subscription.h"
#include "model/subopts.h"
#include "downstream/tap.h"

/* Events per loop turn: keeps IQs and the ingest queue served during a
 * large backlog. */
#define PUBLISHER_BATCH 256
/* Stop feeding libstrophe while this much is unsent: the journal, not
 * RAM, holds the backlog when the server is slow. About a second of
 * Prosody's work: enough to keep it busy, and what is repeated after a
 * lost connection stays small. */
#define PUBLISHER_MAX_QUEUED 2000
/* Received events waiting to be journaled (sink_waiting) above which
 * publishing pauses: some thousands of events, a fraction of a second at
 * storm rates */
#define PUBLISHER_YIELD_BYTES (4u << 20)

/* Cyrus's late reports about a renamed mailbox come within milliseconds
 * of the rename; a few dozen renames cover a busy store's burst. */
#define RECENT_RENAMES 32

struct publisher {
	uv_loop_t *loop;
	struct service *service;
	uv_idle_t idle;           /* runs batches while work remains */
	uv_timer_t retry;         /* waits for the send queue to drain */
	bool closing;             /* publisher_close was called */
	bool stepping;            /* in a step: what commits meanwhile waits */
	/* handed to libstrophe, and known to have left it (the watermark in
	 * the store): what was handed on but may still sit in its queue is
	 * published again after a crash or a lost connection, with the same
	 * item ids, so subscribers can drop the repeats */
	long long dispatched_seq;
	long long published_seq;
	char sep;
	/* names the last renames took away (see about_a_gone_name) */
	struct gone_name {
		char *account, *node;
	} gone[RECENT_RENAMES];
	unsigned gone_next;
	/* [component] max_stanza_rate: a token bucket in stanzas, refilled
	 * by the clock, drawn by what the component sent */
	double tokens;
	uint64_t refilled_ns;
	unsigned long sends_seen;
	/* After the server closed the stream on something we sent, the events
	 * that were in flight go one at a time up to careful_until, each
	 * confirmed (component_confirm) before the next: an event that was
	 * alone in flight when the stream closed REFUSED_STRIKES times is
	 * one the server cannot take, and is skipped instead of being sent
	 * for ever. */
	long long careful_until;
	/* the watermark moves only on the server's word: the seq a
	 * component_confirm() is out for (0: none), and whether that is one
	 * event sent alone */
	long long confirm_seq;
	bool lone;
	uint64_t confirm_sent_ns;
	long long strike_seq;
	unsigned strikes;
};

/* Twice alone in flight when the server closed the stream: once could
 * be chance. */
#define REFUSED_STRIKES 2
/* A drop counts against the event alone in flight only this soon after
 * it was sent: a refusal closes the stream at once. */
#define REFUSED_WINDOW_NS (2 * 1000000000ull)

static void publisher_on_idle(uv_idle_t *idle);
static void advance_watermark(struct publisher *pub, bool final);

int publisher_new(uv_loop_t *loop, struct service *service,
		  struct publisher **publisher_r, const char **error_r)
{
	struct publisher *pub = calloc(1, sizeof(*pub));

	if (pub == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	pub->loop = loop;
	pub->service = service;
	pub->sep = service->config->hierarchy_separator[0];
	pub->published_seq = journal_published_seq(service->store);
	pub->dispatched_seq = pub->published_seq;
	pub->refilled_ns = uv_hrtime();
	pub->sends_seen = component_sent_count(service->component);
	uv_idle_init(loop, &pub->idle);
	pub->idle.data = pub;
	uv_timer_init(loop, &pub->retry);
	pub->retry.data = pub;
	*publisher_r = pub;
	return 0;
}

void publisher_kick(struct publisher *pub)
{
	/* libuv would start a closing handle and run it after the free */
	if (pub->closing)
		return;
	if (!uv_is_active((uv_handle_t *)&pub->idle))
		uv_idle_start(&pub->idle, publisher_on_idle);
}

static void gone_name_clear(struct gone_name *g)
{
	free(g->account);
	free(g->node);
	memset(g, 0, sizeof(*g));
}

static void retry_closed(uv_handle_t *handle)
{
	struct publisher *pub = handle->data;

	for (unsigned i = 0; i < RECENT_RENAMES; i++)
		gone_name_clear(&pub->gone[i]);
	free(pub);
}

static void idle_closed(uv_handle_t *handle)
{
	struct publisher *pub = handle->data;

	uv_close((uv_handle_t *)&pub->retry, retry_closed);
}

static void publisher_on_retry(uv_timer_t *timer)
{
	struct publisher *pub = timer->data;

	if (component_is_connected(pub->service->component))
		advance_watermark(pub, false);
	publisher_kick(pub);
}

void publisher_close(struct publisher **publisher)
{
	struct publisher *pub = *publisher;

	if (pub == NULL)
		return;
	uv_idle_stop(&pub->idle);
	uv_timer_stop(&pub->retry);
	if (component_is_connected(pub->service->component))
		advance_watermark(pub, true);
	/* the component outlives us: a ping reply arriving after this must
	 * not call back into freed memory (its events are published again
	 * after the restart, as any unconfirmed ones are) */
	component_confirm_cancel(pub->service->component, pub);
	pub->closing = true;
	uv_close((uv_handle_t *)&pub->idle, idle_closed);
	*publisher = NULL;
}

struct fanout {
	struct service *service;
	struct item_message msg;
	const char *account;
	const char *node;          /* where the event happened */
	const char *type;          /* its RFC 5423 name; NULL: unfiltered */
	bool gone;                 /* the mailbox was deleted */
	bool stale;                /* a subscriber's rights are due a re-check */
	bool delegating;           /* plain subscribers go through [delegate] */
};

static int notify_one(void *context, const struct subscription *sub)
{
	struct fanout *f = context;
	enum delivery_check mode;
	size_t len;
	char *text;

	/* type NULL: the node's deletion, which every subscriber must learn */
	if (f->type != NULL && !subopts_wants(&sub->opts, f->type))
		return 0;
	if (f->delegating &&
	    delegate_eligible(f->service->delegate, sub, f->account, f->node)) {
		delegate_add(f->service->delegate, sub->jid);
		return 0;
	}
	text = item_message_for(&f->msg, sub->jid, &len);
	if (text == NULL)
		return 0;
	/* a subscription on an ancestor was never checked against this node;
	 * a deleted mailbox can only be judged by what was known of it */
	mode = strcmp(sub->node, f->node) == 0 ? DELIVERY_NOW :
	       f->gone ? DELIVERY_CACHED : DELIVERY_CHECK;
	/* A subscription was authorized when made, and AclChange events
	 * re-check it; a store that sends none (Dovecot) would otherwise keep
	 * it for ever. So once the cached answer has expired ([imap]
	 * acl_cache_ttl) the store is asked again before this delivery, and
	 * the subscriptions on the node are re-checked after it. Not for a
	 * deletion: every subscriber must learn of it, and the store can no
	 * longer answer for the mailbox. */
	if (mode == DELIVERY_NOW && !f->gone && f->type != NULL &&
	    authz_cached(f->service->authz, sub->jid, f->account, f->node) != AUTHZ_GRANTED) {
		mode = DELIVERY_VERIFY;
		f->stale = true;
	}
	delivery_send(f->service->delivery, sub->jid, text, len, mode,
		      f->account, f->node);
	free(text);
	return 0;
}

/* covering: also to subscribers of ancestors (depth 1 / all); else to
 * the node's own subscribers only. */
static void fan_out(struct service *service, const char *account,
		    const char *node, const char *type, struct item_message *msg,
		    bool covering, long long seq, const char *payload)
{
	struct fanout f = { service, *msg, account, node, type,
			    type != NULL && strcmp(type, "MailboxDelete") == 0, false, false };
	struct subopts plain;

	/* only for events plain subscriptions want; a deletion goes directly
	 * (the service's node goes with the mailbox) */
	subopts_defaults(&plain);
	f.delegating = service->delegate != NULL && payload != NULL && !f.gone &&
		       subopts_wants(&plain, type);
	if (f.delegating)
		delegate_begin(service->delegate, account, node);
	if (covering)
		subscription_each_covering(service->store, account, node, notify_one, &f);
	else
		subscription_each_on_node(service->store, account, node, notify_one, &f);
	if (f.delegating)
		delegate_publish(service->delegate, seq, payload);
	if (f.stale && !f.gone)
		pubsub_recheck(service, account, node, false);
}

static void publish_item(struct service *service, const char *account,
			 const char *node, const char *type, long long seq,
			 const char *payload, bool covering)
{
	char *from = service_jid_for_account(service, account);
	struct item_message msg;

	if (from == NULL)
		return;
	if (item_message_build(from, node, seq, payload, 0, &msg) == 0) {
		fan_out(service, account, node, type, &msg, covering, seq, payload);
		item_message_clear(&msg);
	}
	free(from);
}

struct subtree_ctx {
	struct service *service;
	const char *account;
	const char *root;
	const char *type;
	long long seq;
	const char *payload;
};

/* Descendants of a renamed folder moved too; their subscribers learn of it
 * from the same item, published on their (new) node. */
static int publish_to_descendant(void *context, const char *node)
{
	struct subtree_ctx *sc = context;

	if (strcmp(node, sc->root) != 0)
		publish_item(sc->service, sc->account, node, sc->type, sc->seq,
			     sc->payload, false);
	return 0;
}

static void notify_deleted(struct service *service, const char *account,
			   const char *node)
{
	char *from = service_jid_for_account(service, account);
	struct item_message msg;

	if (from == NULL)
		return;
	if (item_message_build_delete(from, node, &msg) == 0) {
		fan_out(service, account, node, NULL, &msg, false, 0, NULL);
		item_message_clear(&msg);
	}
	free(from);
}

static void apply_tree(struct service *service, const struct event *ev,
		       long long now_us)
{
	const struct mailbox_uri *mb = &ev->mailbox;
	const char *mailbox_id = json_string_value(json_object_get(ev->json, "mailboxID"));

	if (ev->type == EVENT_MAILBOX_RENAME) {
		delegate_drop(service->delegate, ev->old_mailbox.account,
			      ev->old_mailbox.node);
		node_tree_rename(service->store, ev->old_mailbox.account,
				 ev->old_mailbox.node, mb->account, mb->node);
	}
	if (ev->type != EVENT_MAILBOX_DELETE)
		node_tree_touch(service->store, mb->account, mb->node, mailbox_id,
				mb->uidvalidity, now_us);
}

/* Rights may have changed: cached answers go, subscriptions are checked
 * again. Cyrus sends the whole new ACL (vnd.cmu.mailboxACL) with AclChange
 * but evaluating it ourselves would miss groups and the server's own rules,
 * so the store is asked. A rename keeps the ACL in Cyrus, but the names
 * rights were cached under are gone. */
static void recheck_rights(struct service *service, const struct event *ev)
{
	const struct mailbox_uri *mb = &ev->mailbox;

	switch (ev->type) {
	case EVENT_ACL_CHANGE:
		authz_invalidate(service->authz, mb->account, mb->node, false);
		pubsub_recheck(service, mb->account, mb->node, false);
		break;
	case EVENT_MAILBOX_RENAME:
		authz_invalidate(service->authz, ev->old_mailbox.account,
				 ev->old_mailbox.node, true);
		authz_invalidate(service->authz, mb->account, mb->node, true);
		pubsub_recheck(service, mb->account, mb->node, true);
		break;
	default:
		break;
	}
}

/* The item: stored as the node's last, sent to every subscriber covering
 * the node (and, for a rename, to those of the moved descendants). */
static void publish_event(struct service *service, const struct journal_record *rec,
			  const struct event *ev, const struct node_counts *known)
{
	const struct mailbox_uri *mb = &ev->mailbox;
	const char *type = event_type_info(ev->type)->name;
	char *payload = item_payload_build(component_xmpp_ctx(service->component), ev,
					   rec->seq, rec->received_us, known);

	if (payload == NULL) {
		log_error("publisher: cannot build item %lld", rec->seq);
		return;
	}
	if (ev->type != EVENT_MAILBOX_DELETE)
		items_put(service->store, mb->account, mb->node, rec->seq,
			  clock_now_us(), payload, service->config->items_per_node);
	publish_item(service, mb->account, mb->node, type, rec->seq, payload, true);
	if (ev->type == EVENT_MAILBOX_RENAME) {
		struct subtree_ctx sc = { service, mb->account, mb->node, type,
					  rec->seq, payload };

		node_tree_subtree(service->store, mb->account, mb->node,
				  publish_to_descendant, &sc);
	}
	if (ev->type == EVENT_MAILBOX_DELETE)
		notify_deleted(service, mb->account, mb->node);
	service->stats.published++;
	stats_histogram_observe(&service->stats.publish_latency,
				  (double)(clock_now_us() - rec->received_us) / 1e6);
	free(payload);
}

static void remember_rename(struct publisher *pub, const struct event *ev)
{
	struct gone_name *g = &pub->gone[pub->gone_next++ % RECENT_RENAMES];

	gone_name_clear(g);
	if (ev->old_mailbox.node == NULL)
		return;
	g->account = strdup(ev->old_mailbox.account);
	g->node = strdup(ev->old_mailbox.node);
	if (g->account == NULL || g->node == NULL)
		gone_name_clear(g);
}

static bool at_or_below(const char *node, const char *top)
{
	size_t n = strlen(top);

	return strncmp(node, top, n) == 0 && (node[n] == '\0' || node[n] == '/');
}

/* Cyrus reports some changes of a renamed folder after the MailboxRename,
 * under the old name: the MailboxModseqs of the children it moved along
 * silently. Recording or publishing them would bring back nodes that no
 * longer exist. The mailbox id tells them apart from events about a new
 * mailbox of that name (which would exist: MailboxCreate comes first) or
 * about a mailbox whose rename we never heard of (sent while we were
 * down: it is not among the recent renames). */
static bool about_a_gone_name(struct publisher *pub, const struct event *ev)
{
	const struct mailbox_uri *mb = &ev->mailbox;
	const char *mailbox_id;
	char *now;
	unsigned i;

	if (ev->type == EVENT_MAILBOX_CREATE || ev->type == EVENT_MAILBOX_RENAME)
		return false;
	for (i = 0; i < RECENT_RENAMES; i++) {
		const struct gone_name *g = &pub->gone[i];

		if (g->node != NULL && strcmp(g->account, mb->account) == 0 &&
		    at_or_below(mb->node, g->node))
			break;
	}
	mailbox_id = json_string_value(json_object_get(ev->json, "mailboxID"));
	if (i == RECENT_RENAMES || mailbox_id == NULL ||
	    node_tree_exists(pub->service->store, mb->account, mb->node))
		return false;
	now = node_tree_find_moved(pub->service->store, mb->account, mb->node,
				   mailbox_id, 0);
	if (now == NULL)
		return false;
	log_info("publisher: %s about %s/%s came after its rename to %s/%s: not "
		 "published under the old name", event_type_info(ev->type)->name,
		 mb->account, mb->node, mb->account, now);
	free(now);
	return true;
}

static void dispatch(struct publisher *pub, const struct journal_record *rec,
		     const struct event *ev)
{
	struct service *service = pub->service;
	const struct mailbox_uri *mb = &ev->mailbox;
	const char *type = event_type_info(ev->type)->name;
	struct node_counts known;

	if (mb->node == NULL)
		return;   /* Login/Logout: no mailbox node to publish on */
	if (about_a_gone_name(pub, ev))
		return;
	if (ev->type == EVENT_MAILBOX_RENAME)
		remember_rename(pub, ev);
	apply_tree(service, ev, clock_now_us());
	recheck_rights(service, ev);
	counts_for_event(service->counts, ev, &known);
	/* suppressed events change the tree and rights all the same */
	if (!config_list_contains(service->config->suppress_events, type))
		publish_event(service, rec, ev, &known);
	if (ev->type == EVENT_MAILBOX_DELETE) {
		node_tree_delete(service->store, mb->account, mb->node);
		delegate_drop(service->delegate, mb->account, mb->node);
		/* only now: the notices above were judged by these answers */
		authz_invalidate(service->authz, mb->account, mb->node,
				 strcmp(mb->node, "INBOX") == 0);
	}
}

void publisher_reset(struct publisher *pub)
{
	struct component *component = pub->service->component;
	const char *cond = component_last_stream_error(component);
	/* A refused stanza closes the stream at once, with a stream error;
	 * but when the close meets us still writing, the socket fails
	 * before the error is read: a loss without one counts too, soon
	 * after sending. A server that went away says so (system-shutdown,
	 * ...) and counts for nothing. */
	bool suspect = component_refused(component) || cond == NULL;

	if (pub->confirm_seq != 0 && pub->lone && suspect &&
	    uv_hrtime() - pub->confirm_sent_ns < REFUSED_WINDOW_NS) {
		if (pub->strike_seq == pub->confirm_seq) {
			pub->strikes++;
		} else {
			pub->strike_seq = pub->confirm_seq;
			pub->strikes = 1;
		}
	}
	if (suspect && pub->dispatched_seq > pub->published_seq) {
		log_warn("publisher: the stream ended (%s) with events %lld-%lld not "
			 "confirmed: sending them one at a time",
			 cond != NULL ? cond : "connection lost", pub->published_seq + 1,
			 pub->dispatched_seq);
		if (pub->careful_until < pub->dispatched_seq)
			pub->careful_until = pub->dispatched_seq;
	}
	pub->confirm_seq = 0;
	pub->lone = false;
	/* the connection is gone with whatever libstrophe still held */
	pub->dispatched_seq = pub->published_seq;
}

static bool careful(const struct publisher *pub)
{
	return pub->dispatched_seq < pub->careful_until;
}

static void mark_published(struct publisher *pub, long long seq)
{
	if (journal_set_published_seq(pub->service->store, seq) == 0)
		pub->published_seq = seq;
}

/* The server answered the ping sent after confirm_seq: it took all
 * before. */
static void confirmed(void *context)
{
	struct publisher *pub = context;

	mark_published(pub, pub->confirm_seq);
	if (pub->lone && pub->strike_seq == pub->confirm_seq)
		pub->strikes = 0;
	pub->confirm_seq = 0;
	pub->lone = false;
	publisher_kick(pub);
}

static void confirm(struct publisher *pub, bool lone)
{
	pub->confirm_seq = pub->dispatched_seq;
	pub->lone = lone;
	pub->confirm_sent_ns = uv_hrtime();
	if (component_confirm(pub->service->component, confirmed, pub) < 0) {
		/* not connected: publisher_reset rewinds */
		pub->confirm_seq = 0;
		pub->lone = false;
	}
}

/* The event the server refused REFUSED_STRIKES times: recorded as
 * published without being sent (nor stored as an item, nor relayed). */
static bool skip_refused(struct publisher *pub, const struct journal_record *rec)
{
	if (!careful(pub) || rec->seq != pub->strike_seq || pub->strikes < REFUSED_STRIKES)
		return false;
	log_error("publisher: event %lld skipped: the server closed the stream "
		  "each time it was sent alone (%u times, last: %s)", rec->seq,
		  pub->strikes, component_last_stream_error(pub->service->component) != NULL ?
		  component_last_stream_error(pub->service->component) : "connection lost");
	pub->service->stats.refused++;
	pub->strikes = 0;
	return true;
}

static int publish_record(void *context, const struct journal_record *rec)
{
	struct publisher *pub = context;
	struct event *decoded = NULL;
	const struct event *ev = rec->event;
	const char *error;

	if (skip_refused(pub, rec)) {
		pub->dispatched_seq = rec->seq;
		return 0;
	}
	/* live, the sink handed the event decoded; behind, the journal has
	 * only the text */
	if (ev == NULL && event_decode(rec->json, rec->json_len, pub->sep, &decoded,
				       &error) < 0) {
		/* it was valid when journaled: the configuration changed */
		log_error("publisher: journaled event %lld no longer decodes: %s",
			  rec->seq, error);
	} else {
		if (ev == NULL)
			ev = decoded;
		if (ev->repaired > 0) {
			log_warn("publisher: event %lld: %u characters XML cannot carry "
				 "replaced by U+FFFD", rec->seq, ev->repaired);
			pub->service->stats.repaired++;
		}
		dispatch(pub, rec, ev);
		/* after the event's own publication: taps change nothing the
		 * target's subscribers get, nor when they get it */
		tap_relay_event(pub->service->taps, rec, ev);
		event_free(&decoded);
	}
	pub->dispatched_seq = rec->seq;
	return 0;
}

/* Records as published what the server took: once libstrophe has
 * written everything out, a ping goes after it and its reply moves the
 * watermark (a stanza the server refuses closes the stream before that
 * reply, and is sent again on the next connection). final: shutting
 * down, written out is as far as we can know. */
static void advance_watermark(struct publisher *pub, bool final)
{
	struct service *service = pub->service;

	if (pub->published_seq == pub->dispatched_seq || pub->confirm_seq != 0)
		return;
	if (component_queue_len(service->component) > 0) {
		if (!final)
			uv_timer_start(&pub->retry, publisher_on_retry, 20, 0);
		return;
	}
	if (final)
		mark_published(pub, pub->dispatched_seq);
	else
		confirm(pub, false);
}

/* How many events may go now under [component] max_stanza_rate (each is
 * at least one stanza; what it really cost is drawn from the bucket on
 * the next turn), or 0 with *wait_ms_r set. Without a cap: a batch. At
 * most a tenth of a second's worth is saved up, so the server sees the
 * rate, not bursts of it. */
static unsigned allowance(struct publisher *pub, uint64_t *wait_ms_r)
{
	unsigned rate = pub->service->config->max_stanza_rate;
	unsigned long sent = component_sent_count(pub->service->component);
	uint64_t now = uv_hrtime();
	double burst = rate / 10.0 > 1 ? rate / 10.0 : 1;

	if (rate == 0)
		return PUBLISHER_BATCH;
	pub->tokens += (double)(now - pub->refilled_ns) * rate / 1e9;
	if (pub->tokens > burst)
		pub->tokens = burst;
	pub->tokens -= (double)(sent - pub->sends_seen);
	pub->refilled_ns = now;
	pub->sends_seen = sent;
	if (pub->tokens < 1) {
		*wait_ms_r = (uint64_t)((1 - pub->tokens) * 1000 / rate) + 1;
		return 0;
	}
	return pub->tokens < PUBLISHER_BATCH ? (unsigned)pub->tokens : PUBLISHER_BATCH;
}

/* How many events may go now, or 0: then the idle is stopped and what
 * wakes the publisher again is arranged. */
static unsigned may_publish(struct publisher *pub)
{
	struct service *service = pub->service;
	uint64_t wait_ms = 0;
	unsigned batch;

	if (!component_is_connected(service->component)) {
		uv_idle_stop(&pub->idle);   /* kicked again on connect */
		return 0;
	}
	/* Under a storm the loop thread is what journals: accepting events
	 * durably (and so draining Cyrus's socket) comes first, publishing
	 * catches up from the journal afterwards */
	if (component_queue_len(service->component) > PUBLISHER_MAX_QUEUED ||
	    sink_waiting(service->sink) > PUBLISHER_YIELD_BYTES) {
		uv_idle_stop(&pub->idle);
		uv_timer_start(&pub->retry, publisher_on_retry, 20, 0);
		return 0;
	}
	if (careful(pub) && pub->confirm_seq != 0) {
		uv_idle_stop(&pub->idle);   /* kicked when the confirmation comes */
		return 0;
	}
	batch = allowance(pub, &wait_ms);
	if (batch > 0 && careful(pub))
		batch = 1;
	if (batch == 0) {
		uv_idle_stop(&pub->idle);
		uv_timer_start(&pub->retry, publisher_on_retry, wait_ms, 0);
	}
	return batch;
}

/* One batch: of events (live: the sink's, decoded) or, events NULL, of
 * the journal after dispatched_seq (behind). The watermark and its
 * confirmations work the same for both. */
static void publisher_step(struct publisher *pub, const struct sink_event *events,
			   size_t n)
{
	struct service *service = pub->service;
	unsigned count = 0, batch = may_publish(pub);
	unsigned long sent_before;

	if (batch == 0)
		return;
	sent_before = component_sent_count(service->component);
	if (store_begin(service->store) < 0) {
		publisher_kick(pub);
		return;
	}
	pub->stepping = true;
	if (events != NULL)
		sink_events_read(events, n, batch, publish_record, pub, &count);
	else
		journal_read_after(service->store, pub->dispatched_seq, batch,
				   publish_record, pub, &count);
	pub->stepping = false;
	if (store_commit(service->store) < 0) {
		log_error("publisher: commit failed; will retry");
		pub->dispatched_seq = pub->published_seq;
		publisher_kick(pub);
		return;
	}
	/* the rest of what the sink handed on: from the journal */
	if (events != NULL && count < n)
		publisher_kick(pub);
	if ((careful(pub) || pub->dispatched_seq == pub->careful_until) &&
	    pub->dispatched_seq != pub->published_seq) {
		/* nothing sent (no subscriber, skipped) needs no confirmation */
		if (component_sent_count(service->component) == sent_before) {
			mark_published(pub, pub->dispatched_seq);
			return;
		}
		uv_idle_stop(&pub->idle);
		confirm(pub, true);
		return;
	}
	advance_watermark(pub, false);
	if (events == NULL && count < batch)
		uv_idle_stop(&pub->idle);
}

static void publisher_on_idle(uv_idle_t *idle)
{
	publisher_step(idle->data, NULL, 0);
}

void publisher_committed(void *context, const struct sink_event *events, size_t count)
{
	struct publisher *pub = context;

	if (pub->closing || count == 0)
		return;
	/* live only when everything before them went, and nothing waits in
	 * the journal: else the journal, in order, from dispatched_seq */
	if (pub->stepping || uv_is_active((uv_handle_t *)&pub->idle) ||
	    events[0].seq != pub->dispatched_seq + 1) {
		publisher_kick(pub);
		return;
	}
	publisher_step(pub, events, count);
}
