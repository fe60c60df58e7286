#include "ingest/bus_in.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"

#define DEFAULT_CREDIT 100
#define DEFAULT_MAX_BODY (1u << 20)

/* Keys the producer (downstream/bus_out) adds to the event: routing data,
 * not parameters of the event. Cyrus and the generic source send none of
 * them (RFC 5423 has no such parameter). */
static const char *const producer_keys[] = {
	"account", "node", "uidvalidity", "uid", "seq", "received", "instance",
	"source", "content", "journaled",
};

/* A delivery waiting for the batch's commit, and how to settle it then. */
struct held {
	struct amqp_delivery *delivery;
	bool appended;           /* counted as appended once committed */
	bool store_error;        /* not journaled whatever the commit does */
};

struct bus_in {
	struct sink *sink;
	struct amqp_connection *amqp;     /* owned */
	struct amqp_receiver *receiver;   /* owned by amqp */
	unsigned handles;                 /* the timer and amqp, until closed */
	uv_timer_t flush;        /* commits the open batch on the next iteration */
	struct held *held;       /* owned, held_count deliveries owned too */
	size_t held_count, held_cap;
	size_t held_bytes;
	bool batch_open;
	unsigned credit;
	size_t max_body;
	struct bus_in_stats stats;
};

/* "2026-12-07T21:20:39.123456Z" (what the firehose and bus_out write) ->
 * microseconds; 0 when it is not that. */
static long long iso_to_us(const char *s)
{
	struct tm tm = { 0 };
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	long long frac = 0, scale = 1000000;
	time_t t;

	if (p == NULL)
		return 0;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
		}
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return 0;
	t = timegm(&tm);
	if (t < 0)
		return 0;
	return (long long)t * 1000000 + frac;
}

/* A number of seconds, milliseconds or microseconds since the epoch (the
 * magnitude tells: events are after 1973) -> microseconds. */
static long long number_to_us(json_int_t n)
{
	if (n <= 0)
		return 0;
	if (n > 100000000000000LL)
		return (long long)n;
	if (n > 100000000000LL)
		return (long long)n * 1000;
	return (long long)n * 1000000;
}

static long long received_of(const json_t *value)
{
	if (json_is_integer(value))
		return number_to_us(json_integer_value(value));
	if (json_is_string(value))
		return iso_to_us(json_string_value(value));
	return 0;
}

char *bus_in_event_json(const char *body, size_t len, size_t *len_r,
			long long *received_us_r)
{
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	char *out;

	*received_us_r = 0;
	if (root == NULL)
		return NULL;
	if (!json_is_object(root) || !json_is_string(json_object_get(root, "event"))) {
		json_decref(root);
		return NULL;
	}
	*received_us_r = received_of(json_object_get(root, "received"));
	for (size_t i = 0; i < sizeof(producer_keys) / sizeof(producer_keys[0]); i++)
		json_object_del(root, producer_keys[i]);
	out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (out != NULL)
		*len_r = strlen(out);
	return out;
}

static void settle(struct amqp_delivery **delivery, enum amqp_outcome outcome)
{
	if (amqp_delivery_settle(delivery, outcome) < 0)
		log_warn("bus in: settling a delivery failed");
}

/* After the commit (ok) or its failure: every held delivery gets its
 * outcome. Accepting a duplicate only after the commit matters when its
 * first copy is in the same batch. */
static void settle_held(struct bus_in *bus, bool committed)
{
	for (size_t i = 0; i < bus->held_count; i++) {
		struct held *h = &bus->held[i];
		bool journaled = committed && !h->store_error;

		if (journaled && h->appended)
			bus->stats.appended++;
		if (!journaled)
			bus->stats.released++;
		settle(&h->delivery, journaled ? AMQP_OUTCOME_ACCEPTED :
		       AMQP_OUTCOME_MODIFIED);
	}
	bus->held_count = 0;
	bus->held_bytes = 0;
	sink_set_waiting(bus->sink, "bus", 0);
}

static void flush_batch(struct bus_in *bus)
{
	const char *error;
	bool ok;

	uv_timer_stop(&bus->flush);
	if (!bus->batch_open)
		return;
	bus->batch_open = false;
	ok = sink_commit(bus->sink, &error) == 0;
	bus->stats.batches++;
	if (!ok)
		log_error("bus in: journal commit failed (%s): %zu messages released "
			  "for redelivery", error, bus->held_count);
	settle_held(bus, ok);
}

static void on_flush(uv_timer_t *timer)
{
	flush_batch(timer->data);
}

static int hold(struct bus_in *bus, struct amqp_delivery *delivery, bool appended,
		bool store_error, size_t bytes)
{
	if (bus->held_count == bus->held_cap) {
		size_t cap = bus->held_cap ? bus->held_cap * 2 : 64;
		struct held *h = realloc(bus->held, cap * sizeof(*h));

		if (h == NULL)
			return -1;
		bus->held = h;
		bus->held_cap = cap;
	}
	bus->held[bus->held_count++] = (struct held){ delivery, appended, store_error };
	bus->held_bytes += bytes;
	sink_set_waiting(bus->sink, "bus", bus->held_bytes);
	return 0;
}

static int open_batch(struct bus_in *bus)
{
	if (bus->batch_open)
		return 0;
	if (sink_begin(bus->sink) < 0)
		return -1;
	bus->batch_open = true;
	/* 0 ms: after the I/O callbacks of this iteration, so that every
	 * message of one read shares the commit */
	uv_timer_start(&bus->flush, on_flush, 0, 0);
	return 0;
}

static void reject(struct bus_in *bus, struct amqp_delivery **delivery,
		   const struct amqp_message_in *msg, const char *why)
{
	log_warn("bus in: message '%.200s' rejected: %s", msg->message_id, why);
	bus->stats.rejected++;
	settle(delivery, AMQP_OUTCOME_REJECTED);
}

static void on_message(void *context, struct amqp_delivery *delivery,
		       const struct amqp_message_in *msg)
{
	struct bus_in *bus = context;
	struct sink_input in = { .source = "bus" };
	const char *error = NULL;
	long long seq, received_us;
	size_t len = 0;
	char *json;
	int rc;

	bus->stats.received++;
	if (msg->body_len > bus->max_body) {
		reject(bus, &delivery, msg, "body larger than [bus] consume_max_body");
		return;
	}
	json = bus_in_event_json(msg->body, msg->body_len, &len, &received_us);
	if (json == NULL) {
		reject(bus, &delivery, msg, "body is not a JSON event object");
		return;
	}
	in.json = json;
	in.json_len = len;
	in.received_us = received_us > 0 ? received_us : clock_now_us();
	/* without an id a redelivery cannot be recognised: journaled again */
	in.origin_id = *msg->message_id != '\0' ? msg->message_id : NULL;
	if (open_batch(bus) < 0) {
		free(json);
		bus->stats.released++;
		settle(&delivery, AMQP_OUTCOME_MODIFIED);
		return;
	}
	rc = sink_submit(bus->sink, &in, &seq, &error);
	free(json);
	if (rc == SINK_REFUSED) {
		reject(bus, &delivery, msg, error != NULL ? error : "refused");
		return;
	}
	if (rc == SINK_DUPLICATE) {
		bus->stats.duplicates++;
		log_debug("bus in: %s already journaled as %lld: accepted, skipped",
			  msg->message_id, seq);
	} else if (rc < 0) {
		log_error("bus in: %s not journaled: %s", msg->message_id,
			  error != NULL ? error : "store error");
	}
	if (hold(bus, delivery, rc == SINK_APPENDED, rc < 0 && rc != SINK_REFUSED,
		 msg->body_len) < 0) {
		/* no memory to remember it: let the broker keep it */
		bus->stats.released++;
		settle(&delivery, AMQP_OUTCOME_RELEASED);
		return;
	}
	if (bus->held_count >= bus->credit)
		flush_batch(bus);
}

static void on_state(void *context, bool up, const char *error)
{
	struct bus_in_stats *st = &((struct bus_in *)context)->stats;

	if (up)
		log_info("bus in: connected");
	else
		log_warn("bus in: %s", error != NULL ? error : "disconnected");
	amqp_history_note(&st->link, up, error, clock_now_us());
}

/* [bus] urls: space (or comma) separated. *copy_r owns the strings
 * *urls_r points into; free both. */
static int split_urls(const char *list, const char ***urls_r, size_t *count_r,
		      char **copy_r)
{
	char *copy = strdup(list), *save = NULL;
	size_t n = 0, cap = 1;
	const char **urls;

	for (const char *p = list; *p != '\0'; p++)
		cap += *p == ' ' || *p == ',' || *p == '\t';
	urls = calloc(cap, sizeof(*urls));
	if (copy == NULL || urls == NULL) {
		free(copy);
		free(urls);
		return -1;
	}
	for (char *t = strtok_r(copy, " \t,", &save); t != NULL && n < cap;
	     t = strtok_r(NULL, " \t,", &save))
		urls[n++] = t;
	*urls_r = urls;
	*count_r = n;
	*copy_r = copy;
	return 0;
}

static int connect_broker(struct bus_in *bus, uv_loop_t *loop, const struct config *c,
			  const char **error_r)
{
	struct amqp_settings set = {
		.user = c->bus_user, .password = c->bus_password,
		.ca_file = c->bus_ca_file, .reconnect_min_ms = 200,
		.reconnect_max_ms = c->bus_reconnect_max * 1000,
	};
	struct amqp_receiver_settings rs = {
		.source = c->bus_consume, .durable_terminus = c->bus_consume_durable,
		.credit = bus->credit,
	};
	const char **urls;
	char *copy;
	int rc;

	if (split_urls(c->bus_urls, &urls, &set.url_count, &copy) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	set.urls = urls;
	rc = amqp_connection_new(loop, &set, on_state, bus, &bus->amqp, error_r);
	free(urls);
	free(copy);
	if (rc < 0)
		return -1;
	return amqp_receiver_new(bus->amqp, &rs, on_message, bus, &bus->receiver, error_r);
}

static void bus_free(struct bus_in *bus)
{
	free(bus->held);
	free(bus);
}

static void handle_closed(struct bus_in *bus)
{
	if (--bus->handles == 0)
		bus_free(bus);
}

static void flush_closed(uv_handle_t *handle)
{
	handle_closed(handle->data);
}

static void amqp_closed(void *context)
{
	handle_closed(context);
}

int bus_in_new(uv_loop_t *loop, const struct config *config, struct sink *sink,
	       struct bus_in **bus_r, const char **error_r)
{
	struct bus_in *bus = calloc(1, sizeof(*bus));

	if (bus == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	bus->sink = sink;
	bus->stats.link.changed_us = clock_now_us();
	bus->credit = config->bus_consume_credit != 0 ? config->bus_consume_credit :
		      DEFAULT_CREDIT;
	bus->max_body = config->bus_consume_max_body != 0 ?
			config->bus_consume_max_body : DEFAULT_MAX_BODY;
	uv_timer_init(loop, &bus->flush);
	bus->flush.data = bus;
	bus->handles = 1;
	if (connect_broker(bus, loop, config, error_r) < 0) {
		if (bus->amqp != NULL) {
			bus->handles++;
			amqp_connection_close(&bus->amqp, amqp_closed, bus);
		}
		uv_close((uv_handle_t *)&bus->flush, flush_closed);
		return -1;
	}
	bus->handles++;
	amqp_connection_start(bus->amqp);
	log_info("bus in: consuming %s on %s (credit %u)", config->bus_consume,
		 config->bus_urls, bus->credit);
	*bus_r = bus;
	return 0;
}

void bus_in_close(struct bus_in **busp)
{
	struct bus_in *bus = *busp;

	if (bus == NULL)
		return;
	*busp = NULL;
	flush_batch(bus);
	log_info("bus in: received=%llu appended=%llu duplicates=%llu rejected=%llu "
		 "released=%llu batches=%llu", bus->stats.received, bus->stats.appended,
		 bus->stats.duplicates, bus->stats.rejected, bus->stats.released,
		 bus->stats.batches);
	amqp_receiver_free(&bus->receiver);
	amqp_connection_close(&bus->amqp, amqp_closed, bus);
	uv_close((uv_handle_t *)&bus->flush, flush_closed);
}

const struct bus_in_stats *bus_in_stats(const struct bus_in *bus)
{
	return bus != NULL ? &bus->stats : NULL;
}
