/* The peer of bench/bus.py: a plain Qpid Proton C sender (its own proactor,
 * nothing of mailpubsubd) sending COUNT durable messages shaped like the
 * bus's (JSON body from BODIES, one per line, cycled; message-id
 * plain:<i>; the same six application properties) with WINDOW unsettled
 * at most, and printing {"sent":..,"accepted":..,"seconds":..} once every
 * one is accepted.
 *
 *   proton_send HOST:PORT ADDRESS USER PASSWORD BODIES COUNT WINDOW */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <proton/connection.h>
#include <proton/condition.h>
#include <proton/delivery.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/proactor.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <proton/transport.h>

struct state {
	pn_proactor_t *proactor;
	pn_message_t *msg;
	pn_rwbytes_t buf;
	char **bodies;
	size_t nbodies;
	uint64_t count, sent, accepted, window;
	struct timespec start;
	int failed;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_prop(pn_data_t *p, const char *k, const char *v)
{
	pn_data_put_string(p, pn_bytes(strlen(k), k));
	pn_data_put_string(p, pn_bytes(strlen(v), v));
}

static void send_one(struct state *st, pn_link_t *link)
{
	const char *body = st->bodies[st->sent % st->nbodies];
	char id[32];
	pn_atom_t mid = { .type = PN_STRING };
	pn_data_t *p;

	snprintf(id, sizeof(id), "plain:%" PRIu64, st->sent + 1);
	pn_message_clear(st->msg);
	mid.u.as_bytes = pn_bytes(strlen(id), id);
	pn_message_set_id(st->msg, mid);
	pn_message_set_durable(st->msg, true);
	pn_message_set_inferred(st->msg, true);
	pn_message_set_content_type(st->msg, "application/json");
	pn_message_set_subject(st->msg, "MessageNew");
	p = pn_message_properties(st->msg);
	pn_data_put_map(p);
	pn_data_enter(p);
	put_prop(p, "event", "MessageNew");
	put_prop(p, "account", "alice");
	put_prop(p, "node", "INBOX");
	put_prop(p, "source", "json");
	put_prop(p, "instance", "plain");
	pn_data_put_string(p, pn_bytes(3, "seq"));
	pn_data_put_long(p, (int64_t)st->sent + 1);
	pn_data_exit(p);
	pn_data_put_binary(pn_message_body(st->msg), pn_bytes(strlen(body), body));
	pn_delivery(link, pn_dtag((const char *)&st->sent, sizeof(st->sent)));
	pn_message_send(st->msg, link, &st->buf);
	st->sent++;
}

static void fill(struct state *st, pn_link_t *link)
{
	while (st->sent < st->count && pn_link_credit(link) > 0 &&
	       st->sent - st->accepted < st->window)
		send_one(st, link);
}

static int handle(struct state *st, pn_event_t *e)
{
	switch (pn_event_type(e)) {
	case PN_LINK_FLOW:
		fill(st, pn_event_link(e));
		break;
	case PN_DELIVERY: {
		pn_delivery_t *d = pn_event_delivery(e);

		if (pn_delivery_remote_state(d) == PN_ACCEPTED)
			st->accepted++;
		else if (pn_delivery_remote_state(d) != 0)
			st->failed++;
		pn_delivery_settle(d);
		if (st->accepted >= st->count) {
			pn_connection_close(pn_event_connection(e));
			break;
		}
		fill(st, pn_delivery_link(d));
		break;
	}
	case PN_TRANSPORT_CLOSED:
		if (pn_condition_is_set(pn_transport_condition(pn_event_transport(e))))
			fprintf(stderr, "proton_send: %s: %s\n",
				pn_condition_get_name(pn_transport_condition(pn_event_transport(e))),
				pn_condition_get_description(pn_transport_condition(pn_event_transport(e))));
		break;
	case PN_PROACTOR_INACTIVE:
		return 1;
	default:
		break;
	}
	return 0;
}

static size_t read_bodies(const char *path, char ***bodies_r)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;
	char **bodies = NULL;

	if (f == NULL)
		return 0;
	while ((len = getline(&line, &cap, f)) > 0) {
		line[strcspn(line, "\n")] = '\0';
		bodies = realloc(bodies, (n + 1) * sizeof(*bodies));
		bodies[n++] = strdup(line);
	}
	free(line);
	fclose(f);
	*bodies_r = bodies;
	return n;
}

int main(int argc, char **argv)
{
	struct state st = { 0 };
	pn_connection_t *c;
	pn_transport_t *t;
	pn_session_t *s;
	pn_link_t *l;
	double t0;
	int done = 0;

	if (argc != 8) {
		fprintf(stderr, "usage: proton_send HOST:PORT ADDRESS USER PASSWORD BODIES COUNT WINDOW\n");
		return 2;
	}
	st.nbodies = read_bodies(argv[5], &st.bodies);
	st.count = strtoull(argv[6], NULL, 10);
	st.window = strtoull(argv[7], NULL, 10);
	if (st.nbodies == 0) {
		fprintf(stderr, "proton_send: no bodies in %s\n", argv[5]);
		return 1;
	}
	st.msg = pn_message();
	st.proactor = pn_proactor();
	c = pn_connection();
	t = pn_transport();
	pn_sasl_set_allow_insecure_mechs(pn_sasl(t), true);
	pn_sasl_allowed_mechs(pn_sasl(t), "PLAIN");
	pn_connection_set_user(c, argv[3]);
	pn_connection_set_password(c, argv[4]);
	pn_connection_open(c);
	s = pn_session(c);
	pn_session_open(s);
	l = pn_sender(s, "plain");
	pn_terminus_set_address(pn_link_target(l), argv[2]);
	pn_terminus_set_durability(pn_link_target(l), PN_CONFIGURATION);
	pn_link_open(l);
	t0 = now_s();
	pn_proactor_connect2(st.proactor, c, t, argv[1]);
	while (!done) {
		pn_event_batch_t *b = pn_proactor_wait(st.proactor);
		pn_event_t *e;

		while ((e = pn_event_batch_next(b)) != NULL)
			done |= handle(&st, e);
		pn_proactor_done(st.proactor, b);
	}
	printf("{\"sent\": %" PRIu64 ", \"accepted\": %" PRIu64 ", \"refused\": %d,"
	       " \"seconds\": %.3f}\n", st.sent, st.accepted, st.failed, now_s() - t0);
	pn_proactor_free(st.proactor);
	pn_message_free(st.msg);
	return st.accepted == st.count ? 0 : 1;
}
