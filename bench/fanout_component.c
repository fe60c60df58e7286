/* The raw ceiling of the fan-out benchmark (bench/fanout.py): an XEP-0114
 * component (mailpubsubd's own src/xmpp/component.c, on libuv) that sends one
 * headline <message/> per subscriber and event, with a ready-made <event/>
 * (no store, no journal, no authorization): what a component can get
 * through Prosody at all.
 *
 *   fanout_component HOST PORT DOMAIN SECRET PREFIX FIRST M N EVENTFILE [MULTICAST]
 *
 * With MULTICAST (a JID), one message per event goes to MULTICAST with an
 * XEP-0033 <addresses/> list of the M subscribers (bcc) instead: the
 * service there (bench/fanout.py's Prosody module) makes the M copies.
 *
 * Prints "READY" once connected; on "GO" on stdin sends M*N messages
 * (to PREFIX<FIRST..FIRST+M-1>@localhost, event by event), keeping at
 * most FANOUT_WINDOW (default 64; 0: no limit) queued in libstrophe, prints the
 * CLOCK_REALTIME of the first send and, once libstrophe wrote everything,
 * of the last write; stays connected until stdin closes. */
#include "xmpp/component.h"
#include "bench_common.h"
#include "xmpp/expat_stream.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fc {
	uv_loop_t *loop;
	struct component *component;
	uv_pipe_t in;
	uv_timer_t timer, refill;
	unsigned long next, total;
	size_t window;
	const char *domain, *prefix, *multicast;
	int first, m;
	unsigned long n;
	char *event;
	bool sent;
	double t_send;
};

static double now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fc_closed(void *context)
{
	struct fc *fc = context;

	uv_close((uv_handle_t *)&fc->timer, NULL);
	uv_close((uv_handle_t *)&fc->refill, NULL);
}

static void fc_stop(struct fc *fc)
{
	uv_read_stop((uv_stream_t *)&fc->in);
	uv_close((uv_handle_t *)&fc->in, NULL);
	component_close(&fc->component, fc_closed, fc);
}

static void on_timer(uv_timer_t *t)
{
	struct fc *fc = t->data;

	if (fc->component != NULL && component_queue_len(fc->component) == 0) {
		printf("{\"sent\":%lu,\"t_send\":%.6f,\"t_written\":%.6f}\n",
		       (unsigned long)fc->m * fc->n, fc->t_send, now_real());
		fflush(stdout);
		uv_timer_stop(t);
	}
}

static void send_multicast(struct fc *fc)
{
	size_t cap = strlen(fc->event) + 512 + (size_t)fc->m * 96, used;
	char *buf = malloc(cap);

	for (unsigned long e = 0; e < fc->n; e++) {
		bench_stamp_received(fc->event);
		used = (size_t)snprintf(buf, cap, "<message type='headline' from='%s' to='%s' "
					"id='e%lu'><addresses xmlns='http://jabber.org/protocol/address'>",
					fc->domain, fc->multicast, e);
		for (int i = 0; i < fc->m; i++)
			used += (size_t)snprintf(buf + used, cap - used,
						 "<address type='bcc' jid='%s%d@localhost'/>",
						 fc->prefix, fc->first + i);
		used += (size_t)snprintf(buf + used, cap - used, "</addresses>%s</message>",
					 fc->event);
		component_send_raw(fc->component, buf, used);
	}
	free(buf);
}

/* Keeps at most `window` stanzas queued in libstrophe (0: queue all at
 * once): refilled every millisecond. */
static void on_refill(uv_timer_t *t)
{
	struct fc *fc = t->data;
	char buf[65536];

	while (fc->next < fc->total &&
	       (fc->window == 0 || component_queue_len(fc->component) < fc->window)) {
		unsigned long e = fc->next / (unsigned long)fc->m;
		int i = (int)(fc->next % (unsigned long)fc->m);
		int len;

		if (i == 0)
			bench_stamp_received(fc->event);   /* once per event */
		len = snprintf(buf, sizeof(buf), "<message type='headline' from='%s' "
				   "to='%s%d@localhost' id='e%lu-%d'>%s</message>",
				   fc->domain, fc->prefix, fc->first + i, e, i, fc->event);

		component_send_raw(fc->component, buf, (size_t)len);
		fc->next++;
	}
	if (fc->next == fc->total) {
		uv_timer_stop(t);
		uv_timer_start(&fc->timer, on_timer, 1, 1);
	}
}

static void send_all(struct fc *fc)
{
	fc->t_send = now_real();
	fc->sent = true;
	if (fc->multicast != NULL) {
		static char pad[65537];

		send_multicast(fc);
		/* whitespace: Prosody's expat parses the last (big) stanza at
		 * once instead of deferring it (/work/shared/NOTES.md) */
		memset(pad, ' ', sizeof(pad) - 1);
		component_send_raw(fc->component, pad, sizeof(pad) - 1);
		uv_timer_start(&fc->timer, on_timer, 1, 1);
		return;
	}
	fc->total = (unsigned long)fc->m * fc->n;
	uv_timer_start(&fc->refill, on_refill, 0, 1);
}

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	static char mem[256];

	(void)h;
	(void)size;
	*buf = uv_buf_init(mem, sizeof(mem));
}

static void on_stdin(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct fc *fc = s->data;

	if (n < 0) {
		fc_stop(fc);
		return;
	}
	if (n > 0 && !fc->sent && memmem(buf->base, (size_t)n, "GO", 2) != NULL)
		send_all(fc);
}

static void on_stanza(void *context, xmpp_stanza_t *stanza)
{
	(void)context;
	(void)stanza;   /* errors bounce here; the clients' counts tell */
}

static void on_state(void *context, bool connected)
{
	struct fc *fc = context;

	if (connected && !fc->sent) {
		printf("READY\n");
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	static struct fc fc;
	struct component_settings settings;
	const char *error;

	if (argc != 10 && argc != 11) {
		fprintf(stderr, "usage: fanout_component HOST PORT DOMAIN SECRET PREFIX"
			" FIRST M N EVENTFILE [MULTICAST]\n");
		return 2;
	}
	log_open("fanout_component", false, LOG_LEVEL_WARN);
	expat_stream_deferral_off();
	fc.loop = uv_default_loop();
	fc.domain = argv[3];
	fc.prefix = argv[5];
	fc.first = atoi(argv[6]);
	fc.m = atoi(argv[7]);
	fc.n = strtoul(argv[8], NULL, 10);
	fc.event = bench_slurp(argv[9]);
	fc.multicast = argc == 11 ? argv[10] : NULL;
	settings = (struct component_settings){
		.host = argv[1],
		.port = (unsigned short)atoi(argv[2]),
		.domain = argv[3],
		.secret = argv[4],
		.ping_interval_ms = 0,
		.ping_timeout_ms = 60000,
		.reconnect_min_ms = 100,
		.reconnect_max_ms = 1000,
	};
	if (component_new(fc.loop, &settings, on_stanza, on_state, &fc, &fc.component,
			  &error) < 0) {
		fprintf(stderr, "fanout_component: %s\n", error);
		return 1;
	}
	uv_timer_init(fc.loop, &fc.timer);
	fc.timer.data = &fc;
	uv_timer_init(fc.loop, &fc.refill);
	fc.refill.data = &fc;
	fc.window = getenv("FANOUT_WINDOW") ? strtoul(getenv("FANOUT_WINDOW"), NULL, 10) : 64;
	uv_pipe_init(fc.loop, &fc.in, 0);
	uv_pipe_open(&fc.in, 0);
	fc.in.data = &fc;
	uv_read_start((uv_stream_t *)&fc.in, alloc_cb, on_stdin);
	component_start(fc.component);
	uv_run(fc.loop, UV_RUN_DEFAULT);
	free(fc.event);
	return 0;
}
