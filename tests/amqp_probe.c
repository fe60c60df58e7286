/* Drives src/amqp/ against a real broker for tests/integration/test_amqp.py:
 *
 *   amqp_probe send ADDRESS COUNT URL...     sends COUNT messages (message-id
 *       probe:<i>, body "<i>", property n = i), window 100; prints one line
 *       per outcome ("accepted 17") and "done" when every one has one
 *   amqp_probe receive ADDRESS COUNT URL...  takes COUNT messages; the first
 *       RELEASE (env AMQP_PROBE_RELEASE, default 0) are released, the rest
 *       accepted a loop turn later (settled after the callback, as the bus
 *       source does after its journal commit); prints "message <id> <n>
 *       <body> <redelivered>" per message, then "done"
 *
 * Credentials from AMQP_PROBE_USER / AMQP_PROBE_PASSWORD (none: ANONYMOUS),
 * the CAs for amqps:// from AMQP_PROBE_CA (none: the system's).
 * Connection changes are printed ("up", "down <why>"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "amqp/amqp.h"
#include "base/log.h"

struct probe {
	uv_loop_t *loop;
	struct amqp_connection *conn;
	struct amqp_sender *sender;
	struct amqp_receiver *receiver;
	unsigned count, next, settled, received, release;
	struct amqp_delivery **held;   /* settled on the next loop turn */
	unsigned held_count;
	uv_idle_t idle;
	bool done;
};

static void finish(struct probe *p)
{
	if (p->done)
		return;
	p->done = true;
	printf("done\n");
	fflush(stdout);
	uv_close((uv_handle_t *)&p->idle, NULL);
	amqp_connection_close(&p->conn, NULL, NULL);
}

static void on_state(void *context, bool up, const char *error)
{
	(void)context;
	printf(up ? "up\n" : "down %s\n", error);
	fflush(stdout);
}

static void send_some(struct probe *p)
{
	while (p->next < p->count && amqp_sender_room(p->sender) > 0) {
		char id[32], body[32];
		struct amqp_property prop = { "n", AMQP_PROPERTY_LONG, NULL, p->next };
		struct amqp_message_out msg = {
			.message_id = id, .content_type = "text/plain", .body = body,
			.durable = true, .properties = &prop, .property_count = 1,
		};
		const char *error;

		snprintf(id, sizeof(id), "probe:%u", p->next);
		snprintf(body, sizeof(body), "%u", p->next);
		msg.body_len = strlen(body);
		if (amqp_sender_send(p->sender, &msg, p->next, &error) < 0) {
			printf("send-error %s\n", error);
			return;
		}
		p->next++;
	}
}

static void on_outcome(void *context, uint64_t tag, enum amqp_outcome outcome,
		       const char *detail)
{
	struct probe *p = context;

	printf("%s %llu%s%s\n", amqp_outcome_name(outcome), (unsigned long long)tag,
	       detail != NULL ? " " : "", detail != NULL ? detail : "");
	if (outcome == AMQP_OUTCOME_ACCEPTED)
		p->settled++;
	else if (p->next > tag)
		p->next = (unsigned)tag;   /* sent again, from there on */
	if (p->settled >= p->count)
		finish(p);
}

static void on_writable(void *context)
{
	send_some(context);
}

static void on_idle(uv_idle_t *idle)
{
	struct probe *p = idle->data;

	for (unsigned i = 0; i < p->held_count; i++) {
		int rc = amqp_delivery_settle(&p->held[i], AMQP_OUTCOME_ACCEPTED);

		if (rc < 0)
			printf("settle-error\n");
	}
	p->held_count = 0;
	uv_idle_stop(idle);
	if (p->received >= p->count)
		finish(p);
}

static void on_message(void *context, struct amqp_delivery *d,
		       const struct amqp_message_in *msg)
{
	struct probe *p = context;
	long long n = -1;

	amqp_message_property_long(msg, "n", &n);
	if (p->release > 0) {
		p->release--;
		printf("released %s\n", msg->message_id);
		amqp_delivery_settle(&d, AMQP_OUTCOME_RELEASED);
		return;
	}
	printf("message %s %lld %.*s %d\n", msg->message_id, n, (int)msg->body_len,
	       msg->body, msg->redelivered);
	p->received++;
	p->held[p->held_count++] = d;
	uv_idle_start(&p->idle, on_idle);
}

int main(int argc, char **argv)
{
	struct probe p = { 0 };
	struct amqp_settings set = { 0 };
	const char *error, *release = getenv("AMQP_PROBE_RELEASE");
	bool sending;
	int rc;

	if (argc < 5 || (strcmp(argv[1], "send") != 0 && strcmp(argv[1], "receive") != 0)) {
		fprintf(stderr, "usage: amqp_probe send|receive ADDRESS COUNT URL...\n");
		return 2;
	}
	log_open("amqp_probe", false, LOG_LEVEL_INFO);
	sending = strcmp(argv[1], "send") == 0;
	p.count = (unsigned)strtoul(argv[3], NULL, 10);
	p.release = release != NULL ? (unsigned)strtoul(release, NULL, 10) : 0;
	p.held = calloc(p.count + 1, sizeof(*p.held));
	p.loop = uv_default_loop();
	set.urls = (const char *const *)argv + 4;
	set.url_count = (size_t)(argc - 4);
	set.user = getenv("AMQP_PROBE_USER");
	set.password = getenv("AMQP_PROBE_PASSWORD");
	set.ca_file = getenv("AMQP_PROBE_CA");
	set.reconnect_max_ms = 1000;
	uv_idle_init(p.loop, &p.idle);
	p.idle.data = &p;
	if (amqp_connection_new(p.loop, &set, on_state, &p, &p.conn, &error) < 0) {
		fprintf(stderr, "amqp_probe: %s\n", error);
		return 1;
	}
	if (sending) {
		struct amqp_sender_settings s = { .address = argv[2], .durable_terminus = true,
						  .window = 100 };

		rc = amqp_sender_new(p.conn, &s, on_outcome, on_writable, &p, &p.sender, &error);
	} else {
		struct amqp_receiver_settings r = { .source = argv[2], .durable_terminus = true,
						    .credit = 50 };

		rc = amqp_receiver_new(p.conn, &r, on_message, &p, &p.receiver, &error);
	}
	if (rc < 0) {
		fprintf(stderr, "amqp_probe: %s\n", error);
		return 1;
	}
	amqp_connection_start(p.conn);
	uv_run(p.loop, UV_RUN_DEFAULT);
	uv_loop_close(p.loop);
	free(p.held);
	log_close();
	return p.done ? 0 : 1;
}
