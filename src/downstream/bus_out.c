#include "downstream/bus_out.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp/amqp.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/timefmt.h"
#include "downstream/content.h"
#include "downstream/content_fetch.h"
#include "model/event.h"
#include "publish/item.h"
#include "store/bus_mark.h"
#include "store/journal_query.h"
#include "store/journal.h"
#include "store/node_tree.h"

/* journal records sent per loop iteration: the loop stays responsive */
#define BUS_BATCH 256
/* the watermark is written at most this often (a crash resends at most
 * what was accepted since: duplicates, never a loss) */
#define MARK_SAVE_MS 200
#define REFUSAL_MIN_MS 500
#define REFUSAL_MAX_MS 30000

/* messages built ahead of the window at most */
#define BUS_PREPARE_MAX 512

/* A delivery without an outcome yet (or accepted beyond a gap). */
struct inflight {
	long long seq;
	bool accepted;
};

/* A message built ahead of the window: building it is the costly part
 * (decoding the journaled event, the content), and doing it while the
 * broker confirms the window keeps the link full the moment room opens. */
struct prepared {
	long long seq;
	char *body;
	size_t body_len;
	const char *name;          /* static (event_type_info) */
	char *account, *node, *source;
};

struct bus_out {
	uv_loop_t *loop;
	struct store *store;
	const struct config *config;
	struct amqp_connection *amqp;
	struct amqp_sender *sender;
	char *instance;
	long long mark;           /* accepted through here, contiguously */
	long long mark_saved;     /* what the store holds */
	long long next;           /* last seq handed to the sender */
	struct inflight *ring;    /* in send order; ring_cap = the window */
	size_t ring_cap, ring_head, ring_count;
	struct prepared *prep;    /* built, not sent yet: next + 1 onwards */
	size_t prep_head, prep_count;
	long long prepared;       /* last seq built */
	bool paused;              /* backing off after a refusal */
	unsigned refusals;        /* in a row, for the back-off */
	struct content_fetch *fetch;   /* content retrieval, one at a time */
	bool closing;
	unsigned handles;
	uv_idle_t idle;
	uv_timer_t retry;         /* refusal back-off */
	uv_timer_t save;
	unsigned outstanding;     /* deliveries without an outcome */
	bool backoff_over;        /* the refusal back-off has run out */
	struct bus_out_status counts;
};

/* ---- the in-flight ring ---------------------------------------------- */

static struct inflight *ring_at(struct bus_out *b, size_t i)
{
	return &b->ring[(b->ring_head + i) % b->ring_cap];
}

static void ring_clear(struct bus_out *b)
{
	b->ring_head = 0;
	b->ring_count = 0;
}

/* Marks seq accepted and moves the watermark over the accepted head. */
static void ring_accept(struct bus_out *b, long long seq)
{
	for (size_t i = 0; i < b->ring_count; i++) {
		struct inflight *f = ring_at(b, i);

		if (f->seq == seq) {
			f->accepted = true;
			break;
		}
	}
	while (b->ring_count > 0 && ring_at(b, 0)->accepted) {
		b->mark = ring_at(b, 0)->seq;
		b->ring_head = (b->ring_head + 1) % b->ring_cap;
		b->ring_count--;
	}
}

/* ---- watermark ------------------------------------------------------- */

static void save_mark(struct bus_out *b)
{
	if (b->mark == b->mark_saved)
		return;
	if (bus_mark_set(b->store, b->mark) == 0)
		b->mark_saved = b->mark;
}

static void on_save(uv_timer_t *timer)
{
	save_mark(timer->data);
}

static void schedule_save(struct bus_out *b)
{
	if (!uv_is_active((uv_handle_t *)&b->save))
		uv_timer_start(&b->save, on_save, MARK_SAVE_MS, 0);
}

static struct prepared *prep_at(struct bus_out *b, size_t i)
{
	return &b->prep[(b->prep_head + i) % BUS_PREPARE_MAX];
}

static void prep_pop(struct bus_out *b)
{
	struct prepared *p = prep_at(b, 0);

	free(p->body);
	free(p->account);
	free(p->node);
	free(p->source);
	memset(p, 0, sizeof(*p));
	b->prep_head = (b->prep_head + 1) % BUS_PREPARE_MAX;
	b->prep_count--;
}

static void prep_clear(struct bus_out *b)
{
	while (b->prep_count > 0)
		prep_pop(b);
	b->prep_head = 0;
}

/* Everything after the watermark goes again (same message-ids), built
 * again. */
static void go_back(struct bus_out *b)
{
	if (b->next > b->mark)
		b->counts.resent += (unsigned long long)(b->next - b->mark);
	if (b->next != b->mark) {
		/* what is built follows what was sent: it goes after those */
		prep_clear(b);
		b->prepared = b->mark;
	}
	b->next = b->mark;
	ring_clear(b);
}

/* ---- the message ----------------------------------------------------- */

/* The UID of the one message ev names: the URI's, or a uidset of one UID
 * (Cyrus's copies and moves name the new message so); 0 if none. */
static uint32_t message_uid(const struct event *ev)
{
	char buf[32], *end;
	const char *set;
	unsigned long uid;

	if (ev->mailbox.uid != 0)
		return ev->mailbox.uid;
	set = event_param_string(ev, "uidset", buf, sizeof(buf));
	if (set == NULL || *set < '1' || *set > '9')
		return 0;
	uid = strtoul(set, &end, 10);
	return *end == '\0' && uid <= UINT32_MAX ? (uint32_t)uid : 0;
}

/* Events naming one message whose bytes a consumer may want: new ones,
 * and the new message of a copy or move. */
static bool carries_message(const struct event *ev)
{
	return (ev->type == EVENT_MESSAGE_NEW || ev->type == EVENT_MESSAGE_APPEND ||
		ev->type == EVENT_MESSAGE_COPY || ev->type == EVENT_MESSAGE_MOVE) &&
	       ev->mailbox.account != NULL && ev->mailbox.node != NULL &&
	       message_uid(ev) != 0;
}

static const char *content_policy(const struct bus_out *b)
{
	const char *p = b->config->bus_content;

	return strcmp(p, "full") == 0 || strcmp(p, "headers") == 0 ? p : NULL;
}

/* How a consumer gets bytes the message leaves out. */
static json_t *fetch_hint(const struct event *ev, long long seq, const char *part)
{
	char command[96];

	snprintf(command, sizeof(command), "UID FETCH %u BODY.PEEK[%s]",
		 (unsigned)message_uid(ev), strcmp(part, "full") == 0 ? "" : "HEADER");
	return json_pack("{s:s, s:s, s:s?, s:I, s:I, s:s, s:I}",
			 "protocol", "imap", "account", ev->mailbox.account,
			 "mailbox", ev->mailbox.imap_name, "uidvalidity",
			 (json_int_t)ev->mailbox.uidvalidity, "uid",
			 (json_int_t)message_uid(ev), "command", command,
			 "firehose_item", (json_int_t)seq);
}

static json_t *content_omitted(const struct event *ev, long long seq,
			       const char *part, size_t size, size_t max)
{
	char why[96];

	snprintf(why, sizeof(why), "larger than [bus] content_max (%zu bytes)", max);
	return json_pack("{s:s, s:I, s:s, s:o}", "part", part, "size", (json_int_t)size,
			 "omitted", why, "fetch", fetch_hint(ev, seq, part));
}

/* The content object of seq for part, from what the store has (cr). */
static json_t *content_json(struct bus_out *b, const struct event *ev,
			    const struct content_record *cr, const char *part)
{
	bool headers_of_full = strcmp(part, "headers") == 0 && strcmp(cr->part, "full") == 0;
	size_t size = headers_of_full ? cr->header_size : cr->size;
	size_t max = b->config->bus_content_max;
	char *data = NULL, *b64;
	size_t got = 0;
	json_t *obj;

	if (cr->error != NULL)
		return json_pack("{s:s, s:s, s:o}", "part", part, "error", cr->error,
				 "fetch", fetch_hint(ev, cr->seq, part));
	if (size > max)
		return content_omitted(ev, cr->seq, part, size, max);
	if (content_read(b->store, cr->seq, 0, size, &data, &got) < 0 || got != size) {
		free(data);
		return json_pack("{s:s, s:s}", "part", part, "error", "unavailable");
	}
	b64 = content_base64(data, got);
	free(data);
	obj = json_pack("{s:s, s:I, s:s?, s:s?, s:s?, s:s, s:s}", "part", part,
			"size", (json_int_t)got, "sha256", headers_of_full ? NULL : cr->sha256,
			"internaldate", cr->internaldate, "flags", cr->flags,
			"encoding", "base64", "data", b64 != NULL ? b64 : "");
	free(b64);
	return obj;
}

static void add_received(json_t *body, long long received_us)
{
	char when[64];

	timefmt_iso8601_ms(received_us, when, sizeof(when));
	json_object_set_new(body, "received", json_string(when));
}

/* The keys of the body that are ours, whatever the event says: a sender's
 * "seq" or "content" must not pass for the journal's or for retrieved
 * bytes, and a key must not appear twice. */
static const char *const body_keys[] = {
	"account", "node", "uidvalidity", "journaled", "seq", "received", "source",
	"instance", "content",
};

/* What the body adds to the event: where it belongs and where it sits in
 * the journal. */
static json_t *body_extras(struct bus_out *b, const struct journal_record *rec,
			   const struct event *ev, json_t *content)
{
	json_t *x = json_object();

	if (x == NULL) {
		json_decref(content);
		return NULL;
	}
	if (ev != NULL && ev->mailbox.account != NULL)
		json_object_set_new(x, "account", json_string(ev->mailbox.account));
	else if (ev != NULL && ev->acting_user != NULL)
		json_object_set_new(x, "account", json_string(ev->acting_user));
	if (ev != NULL && ev->mailbox.node != NULL)
		json_object_set_new(x, "node", json_string(ev->mailbox.node));
	if (ev != NULL && ev->mailbox.uidvalidity != 0)
		json_object_set_new(x, "uidvalidity", json_integer(ev->mailbox.uidvalidity));
	if (ev == NULL)
		json_object_set_new(x, "journaled", json_stringn(rec->json, rec->json_len));
	json_object_set_new(x, "seq", json_integer(rec->seq));
	add_received(x, rec->received_us);
	json_object_set_new(x, "source", json_string(rec->source));
	json_object_set_new(x, "instance", json_string(b->instance));
	if (content != NULL)
		json_object_set_new(x, "content", content);
	return x;
}

/* The journaled text can be reused as it is when the decoded event is that
 * text unchanged (nothing repaired) and has none of body_keys: the
 * body is then the text with our keys spliced in before its closing brace,
 * sparing a parse tree copy and a re-encoding of what may be a large
 * event (RFC 5423 messageContent). */
static bool splice_fits(const struct journal_record *rec, const struct event *ev,
			size_t *end_r)
{
	size_t end = rec->json_len;

	if (ev == NULL || ev->repaired != 0 || !json_is_object(ev->json))
		return false;
	for (size_t i = 0; i < sizeof(body_keys) / sizeof(body_keys[0]); i++) {
		if (json_object_get(ev->json, body_keys[i]) != NULL)
			return false;
	}
	while (end > 0 && (rec->json[end - 1] == ' ' || rec->json[end - 1] == '\t' ||
			   rec->json[end - 1] == '\r' || rec->json[end - 1] == '\n'))
		end--;
	if (end == 0 || rec->json[end - 1] != '}')
		return false;
	*end_r = end - 1;
	return true;
}

static char *body_splice(const struct journal_record *rec, const struct event *ev,
			 size_t brace, const char *extras, size_t *len_r)
{
	size_t xlen = strlen(extras);
	bool comma = json_object_size(ev->json) > 0;
	char *text;

	/* extras is "{...}": its members go where the event's brace was */
	text = malloc(brace + comma + xlen);
	if (text == NULL)
		return NULL;
	memcpy(text, rec->json, brace);
	if (comma)
		text[brace] = ',';
	memcpy(text + brace + comma, extras + 1, xlen);   /* with its NUL */
	*len_r = brace + comma + xlen - 1;
	return text;
}

/* The body: the event's RFC 5423 parameters as received, plus
 * body_extras'. */
static char *body_build(struct bus_out *b, const struct journal_record *rec,
			const struct event *ev, json_t *content, size_t *len_r)
{
	json_t *extras = body_extras(b, rec, ev, content);
	json_t *body;
	char *text, *spliced;
	size_t brace;

	if (extras == NULL)
		return NULL;
	if (splice_fits(rec, ev, &brace)) {
		text = json_dumps(extras, JSON_COMPACT);
		json_decref(extras);
		if (text == NULL)
			return NULL;
		spliced = body_splice(rec, ev, brace, text, len_r);
		free(text);
		return spliced;
	}
	body = ev != NULL ? json_copy(ev->json) : json_object();
	for (size_t i = 0; body != NULL && i < sizeof(body_keys) / sizeof(body_keys[0]); i++)
		json_object_del(body, body_keys[i]);
	if (body == NULL || json_object_update(body, extras) < 0) {
		json_decref(body);
		json_decref(extras);
		return NULL;
	}
	json_decref(extras);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	*len_r = text != NULL ? strlen(text) : 0;
	return text;
}

static char *strdup_or_null(const char *s, bool *failed)
{
	char *copy = s != NULL ? strdup(s) : NULL;

	if (s != NULL && copy == NULL)
		*failed = true;
	return copy;
}

/* Builds rec's message into the next free slot of the prepared ring. */
static int prepare_record(struct bus_out *b, const struct journal_record *rec,
			  const struct event *ev, json_t *content)
{
	struct prepared *p = prep_at(b, b->prep_count);
	bool failed = false;

	p->seq = rec->seq;
	p->name = ev != NULL ? event_type_info(ev->type)->name : "";
	p->account = strdup_or_null(ev == NULL ? NULL : ev->mailbox.account != NULL ?
				    ev->mailbox.account : ev->acting_user, &failed);
	p->node = strdup_or_null(ev != NULL ? ev->mailbox.node : NULL, &failed);
	p->source = strdup_or_null(rec->source, &failed);
	p->body = body_build(b, rec, ev, content, &p->body_len);
	b->prep_count++;
	if (failed || p->body == NULL) {
		/* the slot is the ring's last: drop it again */
		b->prep_count--;
		free(p->body);
		free(p->account);
		free(p->node);
		free(p->source);
		memset(p, 0, sizeof(*p));
		return -1;
	}
	b->prepared = rec->seq;
	return 0;
}

/* Hands the oldest prepared message to the sender. */
static int send_prepared(struct bus_out *b)
{
	const struct prepared *p = prep_at(b, 0);
	char id[320];
	struct amqp_property props[] = {
		{ "event", AMQP_PROPERTY_STRING, p->name, 0 },
		{ "account", AMQP_PROPERTY_STRING, p->account, 0 },
		{ "node", AMQP_PROPERTY_STRING, p->node, 0 },
		{ "source", AMQP_PROPERTY_STRING, p->source, 0 },
		{ "instance", AMQP_PROPERTY_STRING, b->instance, 0 },
		{ "seq", AMQP_PROPERTY_LONG, NULL, p->seq },
	};
	struct amqp_message_out msg = {
		.message_id = id, .content_type = "application/json", .subject = p->name,
		.durable = true, .properties = props,
		.property_count = sizeof(props) / sizeof(props[0]),
		.body = p->body, .body_len = p->body_len,
	};
	const char *error;

	snprintf(id, sizeof(id), "%s:%lld", b->instance, p->seq);
	if (amqp_sender_send(b->sender, &msg, (uint64_t)p->seq, &error) < 0) {
		log_warn("bus: #%lld: %s", p->seq, error);
		return -1;
	}
	b->ring[(b->ring_head + b->ring_count) % b->ring_cap] =
		(struct inflight){ p->seq, false };
	b->ring_count++;
	b->next = p->seq;
	b->outstanding++;
	b->counts.sent++;
	b->counts.sent_seq = p->seq;
	prep_pop(b);
	return 0;
}

/* ---- the pump ----------------------------------------------------------- */

struct step_ctx {
	struct bus_out *bus;
	bool blocked;
};

static void start_idle(struct bus_out *b);
static void maybe_free(struct bus_out *b);

/* The content table has news, or a back-off is over: the pump asks again. */
static void fetch_ready(void *context)
{
	start_idle(context);
}

/* The content object for ev, or NULL with *blocked_r when it must be
 * retrieved first. Without a content policy or a message: NULL. */
static json_t *content_for(struct bus_out *b, const struct journal_record *rec,
			   const struct event *ev, bool *blocked_r)
{
	const char *part = content_policy(b);
	struct content_record cr;
	uint64_t size = 0;
	json_t *obj;
	int known;

	*blocked_r = false;
	if (part == NULL || !carries_message(ev))
		return NULL;
	/* the event tells the size: no retrieval for bytes that stay out */
	if (strcmp(part, "full") == 0 && event_param_u64(ev, "messageSize", &size) == 0 &&
	    size > b->config->bus_content_max)
		return content_omitted(ev, rec->seq, part, (size_t)size,
				       b->config->bus_content_max);
	known = content_get(b->store, rec->seq, &cr);
	if (known > 0 && cr.error == NULL && strcmp(part, "full") == 0 &&
	    strcmp(cr.part, "full") != 0)
		known = 0;   /* the firehose kept headers: the bus wants more */
	if (known <= 0) {
		content_record_clear(&cr);
		if (content_fetch_start(b->fetch, ev, rec->seq, part, message_uid(ev)) == 0) {
			*blocked_r = true;
			return NULL;
		}
		return json_pack("{s:s, s:s}", "part", part, "error", "unavailable");
	}
	obj = content_json(b, ev, &cr, part);
	content_record_clear(&cr);
	return obj;
}

static int step_record(void *context, const struct journal_record *rec)
{
	struct step_ctx *sc = context;
	struct bus_out *b = sc->bus;
	struct event *ev = NULL;
	json_t *content = NULL;
	const char *error;

	if (event_decode(rec->json, rec->json_len, b->config->hierarchy_separator[0],
			 &ev, &error) < 0) {
		/* still sent: every journaled event reaches the bus */
		log_error("bus: journaled event %lld no longer decodes: %s", rec->seq, error);
		ev = NULL;
	} else {
		content = content_for(b, rec, ev, &sc->blocked);
		if (sc->blocked) {
			event_free(&ev);
			return 1;
		}
	}
	if (prepare_record(b, rec, ev, content) < 0) {
		event_free(&ev);
		sc->blocked = true;
		return 1;
	}
	event_free(&ev);
	return 0;
}

static bool can_send(const struct bus_out *b)
{
	return !b->closing && !b->paused && b->ring_count < b->ring_cap;
}

static size_t room_now(const struct bus_out *b)
{
	size_t room = can_send(b) ? amqp_sender_room(b->sender) : 0;

	return room < b->ring_cap - b->ring_count ? room : b->ring_cap - b->ring_count;
}

static void send_what_fits(struct bus_out *b)
{
	while (b->prep_count > 0 && room_now(b) > 0) {
		if (send_prepared(b) < 0)
			return;
	}
}

/* Builds one batch ahead; true when there may be more to build now. While
 * paused after a refusal nothing is built: the resume goes back anyway. */
static bool prepare_more(struct bus_out *b)
{
	struct step_ctx sc = { b, false };
	size_t free_slots = BUS_PREPARE_MAX - b->prep_count;
	unsigned limit, count = 0;

	if (b->closing || b->paused || content_fetch_busy(b->fetch) || free_slots == 0)
		return false;
	limit = free_slots < BUS_BATCH ? (unsigned)free_slots : BUS_BATCH;
	return journal_read_after(b->store, b->prepared, limit, step_record, &sc,
				  &count) == 0 && !sc.blocked && count == limit;
}

/* Sends what the window allows and builds what comes next; false when
 * there is nothing more to do until the next kick (journal read, content
 * awaited, or built ahead and no room). */
static bool pump(struct bus_out *b)
{
	bool more;

	send_what_fits(b);
	more = prepare_more(b);
	send_what_fits(b);
	return more;
}

static void on_idle(uv_idle_t *idle)
{
	if (!pump(idle->data))
		uv_idle_stop(idle);
}

static void start_idle(struct bus_out *b)
{
	if (!b->closing && !uv_is_active((uv_handle_t *)&b->idle))
		uv_idle_start(&b->idle, on_idle);
}

void bus_out_kick(struct bus_out *b)
{
	if (b != NULL)
		start_idle(b);
}

void bus_out_set_backends(struct bus_out *b, const struct imap_backends *backends)
{
	if (b != NULL)
		content_fetch_set_backends(b->fetch, backends);
}

void bus_out_committed(void *context, const struct sink_event *events, size_t count)
{
	(void)events;
	(void)count;
	bus_out_kick(context);
}

/* ---- AMQP callbacks ------------------------------------------------------ */

/* After a refusal the broker may hold any of what we sent after the
 * watermark, or not: once the back-off is over and every delivery still
 * out has its outcome, all of it goes again, in order. */
static void maybe_resume(struct bus_out *b)
{
	if (!b->paused || !b->backoff_over || b->outstanding > 0)
		return;
	b->paused = false;
	go_back(b);
	start_idle(b);
}

static void on_refusal_over(uv_timer_t *timer)
{
	struct bus_out *b = timer->data;

	b->backoff_over = true;
	maybe_resume(b);
}

static void refused(struct bus_out *b, long long seq, enum amqp_outcome outcome,
		    const char *detail)
{
	unsigned delay = REFUSAL_MIN_MS;

	b->counts.refused++;
	log_warn("bus: #%lld %s by the broker%s%s", seq, amqp_outcome_name(outcome),
		 detail != NULL ? ": " : "", detail != NULL ? detail : "");
	if (b->paused)
		return;
	for (unsigned i = 0; i < b->refusals && delay < REFUSAL_MAX_MS; i++)
		delay *= 2;
	if (delay > REFUSAL_MAX_MS)
		delay = REFUSAL_MAX_MS;
	b->refusals++;
	log_warn("bus: sending again from #%lld in %u ms", b->mark + 1, delay);
	b->paused = true;
	b->backoff_over = false;
	uv_timer_start(&b->retry, on_refusal_over, delay, 0);
}

static void on_outcome(void *context, uint64_t tag, enum amqp_outcome outcome,
		       const char *detail)
{
	struct bus_out *b = context;
	long long seq = (long long)tag;

	if (b->outstanding > 0)
		b->outstanding--;
	if (outcome == AMQP_OUTCOME_ACCEPTED) {
		b->counts.accepted++;
		b->refusals = 0;
		ring_accept(b, seq);
		schedule_save(b);
	} else if (outcome != AMQP_OUTCOME_LOST) {
		refused(b, seq, outcome, detail);
	}
	maybe_resume(b);
}

static void on_writable(void *context)
{
	struct bus_out *b = context;

	/* what is built goes now, in the same write as the dispositions'
	 * turn; building more is the idle's */
	send_what_fits(b);
	start_idle(b);
}

static void on_state(void *context, bool up, const char *error)
{
	struct bus_out *b = context;

	amqp_history_note(&b->counts.link, up, error, clock_now_us());
	/* outcomes of what was out came (as lost) before this */
	b->outstanding = 0;
	if (!up) {
		log_debug("bus: broker connection down: %s", error);
		go_back(b);
		save_mark(b);
		maybe_resume(b);
		return;
	}
	go_back(b);
	start_idle(b);
}

/* ---- life ----------------------------------------------------------------- */

static int bus_urls(const char *list, const char ***urls_r, size_t *count_r,
		    char **copy_r)
{
	char *copy = strdup(list), *save = NULL;
	const char **urls = NULL;
	size_t n = 0;

	if (copy == NULL)
		return -1;
	for (char *t = strtok_r(copy, " \t,", &save); t != NULL;
	     t = strtok_r(NULL, " \t,", &save)) {
		const char **grown = realloc(urls, (n + 1) * sizeof(*urls));

		if (grown == NULL) {
			free(urls);
			free(copy);
			return -1;
		}
		urls = grown;
		urls[n++] = t;
	}
	*urls_r = urls;
	*count_r = n;
	*copy_r = copy;
	return 0;
}

static int start_amqp(struct bus_out *b, const char **error_r)
{
	const struct config *c = b->config;
	const char **urls = NULL;
	char *copy = NULL;
	size_t count = 0;
	struct amqp_settings set = {
		.user = c->bus_user, .password = c->bus_password,
		.ca_file = c->bus_ca_file, .container_id = b->instance,
		.reconnect_min_ms = 200, .reconnect_max_ms = c->bus_reconnect_max * 1000,
	};
	struct amqp_sender_settings snd = {
		.address = c->bus_address, .durable_terminus = c->bus_durable,
		.window = (unsigned)b->ring_cap,
	};
	int rc;

	if (bus_urls(c->bus_urls, &urls, &count, &copy) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	set.urls = urls;
	set.url_count = count;
	rc = amqp_connection_new(b->loop, &set, on_state, b, &b->amqp, error_r);
	free(urls);
	free(copy);
	if (rc < 0)
		return -1;
	if (amqp_sender_new(b->amqp, &snd, on_outcome, on_writable, b, &b->sender,
			    error_r) < 0)
		return -1;
	amqp_connection_start(b->amqp);
	return 0;
}

static void handle_closed(uv_handle_t *handle)
{
	struct bus_out *b = handle->data;

	b->handles--;
	maybe_free(b);
}

static void bus_free(struct bus_out *b)
{
	if (b->prep != NULL)
		prep_clear(b);
	free(b->prep);
	free(b->ring);
	free(b->instance);
	free(b);
}

static void maybe_free(struct bus_out *b)
{
	if (b->closing && b->handles == 0)
		bus_free(b);
}

/* the amqp connection or the content fetcher has ended */
static void child_closed(void *context)
{
	struct bus_out *b = context;

	b->handles--;
	maybe_free(b);
}

int bus_out_new(uv_loop_t *loop, struct store *store, const struct config *config,
		struct imap_client *imap, struct bus_out **bus_r, const char **error_r)
{
	struct bus_out *b;

	*bus_r = NULL;
	if (*config->bus_urls == '\0' || *config->bus_address == '\0')
		return 0;
	if (content_init(store, error_r) < 0)
		return -1;
	b = calloc(1, sizeof(*b));
	if (b == NULL || (b->instance = strdup(*config->bus_instance != '\0' ?
					       config->bus_instance :
					       config->component_domain)) == NULL) {
		free(b);
		*error_r = "out of memory";
		return -1;
	}
	b->loop = loop;
	b->store = store;
	b->config = config;
	b->ring_cap = config->bus_window != 0 ? config->bus_window : 1000;
	b->ring = calloc(b->ring_cap, sizeof(*b->ring));
	b->prep = calloc(BUS_PREPARE_MAX, sizeof(*b->prep));
	b->mark = b->mark_saved = b->next = b->prepared = bus_mark_get(store);
	b->counts.mark = b->mark;
	b->counts.link.changed_us = clock_now_us();
	if (b->ring == NULL || b->prep == NULL) {
		bus_free(b);
		*error_r = "out of memory";
		return -1;
	}
	uv_idle_init(loop, &b->idle);
	uv_timer_init(loop, &b->retry);
	uv_timer_init(loop, &b->save);
	b->idle.data = b->retry.data = b->save.data = b;
	b->handles = 3;
	if (content_fetch_new(loop, store, config, imap, "bus", fetch_ready, b, &b->fetch,
			      error_r) == 0)
		b->handles++;
	if (b->fetch == NULL || start_amqp(b, error_r) < 0) {
		bus_out_close(&b);
		return -1;
	}
	log_info("bus: sending to %s on %s from journal #%lld (instance %s)",
		 config->bus_address, config->bus_urls, b->mark + 1, b->instance);
	*bus_r = b;
	return 0;
}

void bus_out_get_status(const struct bus_out *b, struct bus_out_status *status)
{
	*status = b->counts;
	status->mark = b->mark;
	status->backing_off = b->paused;
	snprintf(status->url, sizeof(status->url), "%s",
		 b->amqp != NULL ? amqp_connection_url(b->amqp) : "");
}

void bus_out_close(struct bus_out **bp)
{
	struct bus_out *b = *bp;

	if (b == NULL)
		return;
	*bp = NULL;
	b->closing = true;
	log_info("bus: stopping at #%lld (accepted %llu, sent %llu, refused %llu)",
		 b->mark, b->counts.accepted, b->counts.sent, b->counts.refused);
	uv_close((uv_handle_t *)&b->idle, handle_closed);
	uv_close((uv_handle_t *)&b->retry, handle_closed);
	uv_close((uv_handle_t *)&b->save, handle_closed);
	content_fetch_close(&b->fetch, child_closed, b);
	save_mark(b);
	if (b->amqp != NULL) {
		/* outcomes still coming are lost; the watermark says what goes again */
		b->handles++;
		b->sender = NULL;
		amqp_connection_close(&b->amqp, child_closed, b);
	}
}
