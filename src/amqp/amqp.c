#include "amqp/amqp.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proton/connection.h>
#include <proton/connection_driver.h>
#include <proton/condition.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/ssl.h>
#include <proton/terminus.h>
#include <proton/transport.h>

#include "base/log.h"

#define READ_CHUNK 65536
/* A connection that stayed up this long resets the back-off: a broker that
 * accepts and then closes at once must not be hammered. */
#define STABLE_MS 5000
/* how long our close waits for the broker's */
#define CLOSE_WAIT_MS 2000
#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

struct amqp_url {
	bool tls;
	char *host;
	char port[8];
	char *text;
};

struct attempt;

struct amqp_sender {
	struct amqp_connection *conn;
	struct amqp_sender *next;
	char *address;
	bool durable;
	unsigned window;
	unsigned unsettled;
	unsigned id;
	pn_link_t *link;          /* NULL while no connection */
	pn_message_t *message;    /* reused for encoding */
	pn_rwbytes_t buf;
	amqp_outcome_cb *outcome_cb;
	amqp_writable_cb *writable_cb;
	void *context;
};

struct amqp_receiver {
	struct amqp_connection *conn;
	struct amqp_receiver *next;
	char *address;
	bool durable;
	unsigned credit;
	unsigned id;
	pn_link_t *link;
	pn_message_t *message;    /* reused for decoding */
	char *buf;
	size_t buf_size;
	struct amqp_delivery *outstanding;  /* handed out, not settled yet */
	char **scratch;           /* property strings copied during a callback */
	size_t scratch_count;
	amqp_message_cb *message_cb;
	void *context;
};

struct amqp_delivery {
	struct amqp_receiver *receiver;  /* NULL once the receiver is freed */
	struct amqp_delivery *prev, *next;
	pn_delivery_t *pn;               /* NULL once its connection went */
};

struct amqp_connection {
	uv_loop_t *loop;
	struct amqp_url *urls;
	size_t url_count, url_index;
	char *user, *password, *container_id, *vhost;
	unsigned reconnect_min_ms, reconnect_max_ms, idle_timeout_ms, connect_timeout_ms;
	pn_ssl_domain_t *ssl_domain;
	amqp_state_cb *state_cb;
	void *context;
	struct amqp_sender *senders;
	struct amqp_receiver *receivers;
	unsigned next_link_id;
	unsigned failures;
	struct attempt *attempt;       /* NULL between attempts */
	uv_timer_t retry_timer;
	bool up, closing;
	unsigned busy;                 /* calls under way that reach callbacks */
	bool close_deferred;           /* amqp_connection_close from one of them */
	char error[512];
	void (*closed)(void *context);
	void *closed_context;
};

/* One connection attempt: its handles outlive it until libuv closed them. */
struct attempt {
	struct amqp_connection *conn;  /* NULL once abandoned */
	const struct amqp_url *url;
	uv_getaddrinfo_t resolve;
	struct addrinfo *addrs;        /* the host's addresses, tried in turn */
	struct addrinfo *addr_next;
	uv_connect_t connect;
	uv_shutdown_t shutdown;
	uv_tcp_t tcp;
	uv_timer_t timer;              /* connect timeout, then Proton's ticks */
	uv_timer_t flush;              /* coalesces sends into one write */
	pn_connection_driver_t driver;
	pn_session_t *session;
	bool resolving, tcp_open, driver_init, processing, ended, opened;
	bool closing;                  /* our close: the session ends first */
	uint64_t opened_ms;
	unsigned handles;              /* open libuv handles */
	char rbuf[READ_CHUNK];
};

struct write_req {
	uv_write_t req;
	struct attempt *attempt;
	char data[];
};

static void attempt_process(struct attempt *a);
static void attempt_end(struct attempt *a);
static void connection_try(struct amqp_connection *conn);
static void connection_maybe_closed(struct amqp_connection *conn);
static void connection_close_now(struct amqp_connection *conn);

/* A callback may close the connection: the close waits until the code that
 * called it is done with the connection's senders and events. */
static void busy_enter(struct amqp_connection *conn)
{
	conn->busy++;
}

static void busy_leave(struct amqp_connection *conn)
{
	if (--conn->busy > 0 || !conn->close_deferred)
		return;
	conn->close_deferred = false;
	connection_close_now(conn);
}

const char *amqp_outcome_name(enum amqp_outcome outcome)
{
	switch (outcome) {
	case AMQP_OUTCOME_ACCEPTED: return "accepted";
	case AMQP_OUTCOME_REJECTED: return "rejected";
	case AMQP_OUTCOME_RELEASED: return "released";
	case AMQP_OUTCOME_MODIFIED: return "modified";
	case AMQP_OUTCOME_LOST: return "lost";
	}
	return "?";
}

/* ---- URLs ---- */

static int url_parse(const char *text, struct amqp_url *url)
{
	const char *host, *end, *colon;
	size_t hlen;

	memset(url, 0, sizeof(*url));
	if (strncmp(text, "amqp://", 7) == 0) {
		host = text + 7;
	} else if (strncmp(text, "amqps://", 8) == 0) {
		host = text + 8;
		url->tls = true;
	} else {
		return -1;
	}
	end = host + strcspn(host, "/");
	if (*end == '/' && end[1] != '\0')
		return -1;   /* no path: the address is a setting of its own */
	if (memchr(host, '@', (size_t)(end - host)) != NULL)
		return -1;   /* credentials come from the credentials file */
	if (*host == '[') {
		const char *close = memchr(host, ']', (size_t)(end - host));

		if (close == NULL)
			return -1;
		colon = close[1] == ':' ? close + 1 : NULL;
		if (colon == NULL && close + 1 != end)
			return -1;
		url->host = strndup(host + 1, (size_t)(close - host - 1));
	} else {
		colon = memchr(host, ':', (size_t)(end - host));
		hlen = (size_t)((colon != NULL ? colon : end) - host);
		url->host = strndup(host, hlen);
	}
	if (url->host == NULL || *url->host == '\0')
		goto fail;
	if (colon != NULL) {
		size_t plen = (size_t)(end - colon - 1);
		char *stop;
		unsigned long port;

		if (plen == 0 || plen >= sizeof(url->port))
			goto fail;
		memcpy(url->port, colon + 1, plen);
		url->port[plen] = '\0';
		port = strtoul(url->port, &stop, 10);
		if (*stop != '\0' || port == 0 || port > 65535)
			goto fail;
	} else {
		strcpy(url->port, url->tls ? "5671" : "5672");
	}
	url->text = strdup(text);
	if (url->text == NULL)
		goto fail;
	return 0;
fail:
	free(url->host);
	url->host = NULL;
	return -1;
}

static void url_clear(struct amqp_url *url)
{
	free(url->host);
	free(url->text);
}

/* ---- Connection ---- */

static char *dup_or_null(const char *s)
{
	return s != NULL && *s != '\0' ? strdup(s) : NULL;
}

static int make_ssl_domain(struct amqp_connection *conn, const char *ca_file,
			   const char **error_r)
{
	const char *ca = ca_file != NULL && *ca_file != '\0' ? ca_file : SYSTEM_CA_FILE;

	conn->ssl_domain = pn_ssl_domain(PN_SSL_MODE_CLIENT);
	if (conn->ssl_domain == NULL) {
		*error_r = "amqps: Proton has no TLS support";
		return -1;
	}
	if (pn_ssl_domain_set_trusted_ca_db(conn->ssl_domain, ca) != 0 ||
	    pn_ssl_domain_set_peer_authentication(conn->ssl_domain,
						  PN_SSL_VERIFY_PEER_NAME, NULL) != 0) {
		*error_r = "amqps: cannot load the trusted CAs (ca_file)";
		return -1;
	}
	return 0;
}

static void connection_free(struct amqp_connection *conn)
{
	for (size_t i = 0; i < conn->url_count; i++)
		url_clear(&conn->urls[i]);
	free(conn->urls);
	free(conn->user);
	free(conn->password);
	free(conn->container_id);
	free(conn->vhost);
	if (conn->ssl_domain != NULL)
		pn_ssl_domain_free(conn->ssl_domain);
	free(conn);
}

static int connection_copy_settings(struct amqp_connection *conn,
				    const struct amqp_settings *s, const char **error_r)
{
	bool tls = false;

	conn->urls = calloc(s->url_count, sizeof(*conn->urls));
	if (conn->urls == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < s->url_count; i++) {
		if (url_parse(s->urls[i], &conn->urls[i]) < 0) {
			*error_r = "broker URL must be amqp://host[:port] or amqps://host[:port]"
				   " (no path, no credentials)";
			return -1;
		}
		conn->url_count++;
		tls |= conn->urls[i].tls;
	}
	conn->user = dup_or_null(s->user);
	conn->password = dup_or_null(s->password);
	conn->container_id = dup_or_null(s->container_id);
	conn->vhost = dup_or_null(s->vhost);
	conn->reconnect_min_ms = s->reconnect_min_ms != 0 ? s->reconnect_min_ms : 200;
	conn->reconnect_max_ms = s->reconnect_max_ms != 0 ? s->reconnect_max_ms : 30000;
	conn->idle_timeout_ms = s->idle_timeout_ms != 0 ? s->idle_timeout_ms : 60000;
	conn->connect_timeout_ms = s->connect_timeout_ms != 0 ? s->connect_timeout_ms : 10000;
	if (tls && make_ssl_domain(conn, s->ca_file, error_r) < 0)
		return -1;
	return 0;
}

int amqp_connection_new(uv_loop_t *loop, const struct amqp_settings *settings,
			amqp_state_cb *state_cb, void *context,
			struct amqp_connection **conn_r, const char **error_r)
{
	struct amqp_connection *conn;

	if (settings->url_count == 0) {
		*error_r = "no broker URL";
		return -1;
	}
	conn = calloc(1, sizeof(*conn));
	if (conn == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	conn->loop = loop;
	conn->state_cb = state_cb;
	conn->context = context;
	if (connection_copy_settings(conn, settings, error_r) < 0) {
		connection_free(conn);
		return -1;
	}
	uv_timer_init(loop, &conn->retry_timer);
	conn->retry_timer.data = conn;
	*conn_r = conn;
	return 0;
}

bool amqp_connection_is_up(const struct amqp_connection *conn)
{
	return conn->up;
}

const char *amqp_connection_url(const struct amqp_connection *conn)
{
	return conn->urls[conn->url_index].text;
}

static void set_error(struct amqp_connection *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_error(struct amqp_connection *conn, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* the first cause wins: a close that follows an error says less */
	if (conn->error[0] != '\0')
		return;
	n = snprintf(conn->error, sizeof(conn->error), "%s: ",
		     conn->urls[conn->url_index].text);
	if (n < 0 || (size_t)n >= sizeof(conn->error))
		return;
	va_start(ap, fmt);
	vsnprintf(conn->error + n, sizeof(conn->error) - (size_t)n, fmt, ap);
	va_end(ap);
}

static void set_condition_error(struct amqp_connection *conn, const char *what,
				pn_condition_t *cond)
{
	if (cond == NULL || !pn_condition_is_set(cond))
		return;
	set_error(conn, "%s%s%s: %s", what != NULL ? what : "", what != NULL ? ": " : "",
		  pn_condition_get_name(cond),
		  pn_condition_get_description(cond) != NULL ?
		  pn_condition_get_description(cond) : "");
}

static unsigned retry_delay(struct amqp_connection *conn)
{
	/* each URL once at the shortest delay, then doubling per round */
	unsigned rounds = conn->failures / (unsigned)conn->url_count;
	uint64_t delay = conn->reconnect_min_ms;

	while (rounds-- > 0 && delay < conn->reconnect_max_ms)
		delay *= 2;
	return delay < conn->reconnect_max_ms ? (unsigned)delay : conn->reconnect_max_ms;
}

static void on_retry(uv_timer_t *timer)
{
	connection_try(timer->data);
}

void amqp_connection_start(struct amqp_connection *conn)
{
	if (conn->attempt == NULL && !conn->closing)
		connection_try(conn);
}

/* ---- Links on a connection ---- */

static void sender_attach(struct amqp_sender *s, struct attempt *a)
{
	char name[64];

	snprintf(name, sizeof(name), "mailpubsub-sender-%u", s->id);
	s->link = pn_sender(a->session, name);
	pn_terminus_set_address(pn_link_target(s->link), s->address);
	if (s->durable)
		pn_terminus_set_durability(pn_link_target(s->link), PN_CONFIGURATION);
	pn_link_set_snd_settle_mode(s->link, PN_SND_UNSETTLED);
	pn_link_set_context(s->link, s);
	pn_link_open(s->link);
}

static void receiver_attach(struct amqp_receiver *r, struct attempt *a)
{
	char name[64];

	snprintf(name, sizeof(name), "mailpubsub-receiver-%u", r->id);
	r->link = pn_receiver(a->session, name);
	pn_terminus_set_address(pn_link_source(r->link), r->address);
	if (r->durable)
		pn_terminus_set_durability(pn_link_source(r->link), PN_CONFIGURATION);
	pn_link_set_rcv_settle_mode(r->link, PN_RCV_FIRST);
	pn_link_set_context(r->link, r);
	pn_link_open(r->link);
	pn_link_flow(r->link, (int)r->credit);
}

static uint64_t tag_of(pn_delivery_t *d)
{
	pn_delivery_tag_t tag = pn_delivery_tag(d);
	uint64_t v = 0;

	if (tag.size == sizeof(v))
		memcpy(&v, tag.start, sizeof(v));
	return v;
}

/* Every delivery without an outcome is reported lost, in send order. */
static void sender_detach_lost(struct amqp_sender *s)
{
	pn_link_t *link = s->link;
	uint64_t *tags = NULL;
	size_t count = 0, cap = 0;

	if (link == NULL)
		return;
	s->link = NULL;
	for (pn_delivery_t *d = pn_unsettled_head(link); d != NULL; d = pn_unsettled_next(d)) {
		if (count == cap) {
			uint64_t *grown = realloc(tags, (cap = cap ? cap * 2 : 64) * sizeof(*tags));

			if (grown == NULL)
				break;
			tags = grown;
		}
		tags[count++] = tag_of(d);
	}
	s->unsettled = 0;
	for (size_t i = 0; i < count; i++)
		s->outcome_cb(s->context, tags[i], AMQP_OUTCOME_LOST, NULL);
	free(tags);
}

static void receiver_detach(struct amqp_receiver *r)
{
	r->link = NULL;
	for (struct amqp_delivery *d = r->outstanding; d != NULL; d = d->next)
		d->pn = NULL;
}

/* ---- One attempt ---- */

/* The attempt's memory goes with its last handle or request. */
static void attempt_release(struct attempt *a)
{
	if (--a->handles > 0)
		return;
	if (a->driver_init)
		pn_connection_driver_destroy(&a->driver);
	uv_freeaddrinfo(a->addrs);
	free(a);
}

static void attempt_handle_closed(uv_handle_t *handle)
{
	attempt_release(handle->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct attempt *a = req->data;

	(void)status;
	uv_close((uv_handle_t *)&a->tcp, attempt_handle_closed);
}

/* graceful: our own close lets the last writes (dispositions of settled
 * deliveries, the close frame) reach the broker before the socket goes;
 * else the broker would hand those deliveries out again */
static void attempt_close_handles(struct attempt *a, bool graceful)
{
	uv_close((uv_handle_t *)&a->timer, attempt_handle_closed);
	uv_close((uv_handle_t *)&a->flush, attempt_handle_closed);
	if (!a->tcp_open)
		return;
	a->shutdown.data = a;
	if (graceful && uv_is_writable((uv_stream_t *)&a->tcp) &&
	    uv_shutdown(&a->shutdown, (uv_stream_t *)&a->tcp, on_shutdown) == 0)
		return;
	uv_close((uv_handle_t *)&a->tcp, attempt_handle_closed);
}

static void on_flush(uv_timer_t *timer)
{
	attempt_process(timer->data);
}

static void attempt_schedule_flush(struct attempt *a)
{
	if (!a->ended && !uv_is_active((uv_handle_t *)&a->flush))
		uv_timer_start(&a->flush, on_flush, 0, 0);
}

static void on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct attempt *a = w->attempt;

	free(w);
	if (status < 0 && !a->ended && a->conn != NULL) {
		set_error(a->conn, "write: %s", uv_strerror(status));
		pn_connection_driver_close(&a->driver);
		attempt_process(a);
	}
}

static void attempt_write(struct attempt *a)
{
	for (;;) {
		pn_bytes_t out = pn_connection_driver_write_buffer(&a->driver);
		struct write_req *w;
		uv_buf_t buf;

		if (out.size == 0)
			return;
		w = malloc(sizeof(*w) + out.size);
		if (w == NULL) {
			pn_connection_driver_errorf(&a->driver, "amqp:internal-error",
						    "out of memory");
			pn_connection_driver_close(&a->driver);
			return;
		}
		w->attempt = a;
		memcpy(w->data, out.start, out.size);
		buf = uv_buf_init(w->data, (unsigned)out.size);
		if (uv_write(&w->req, (uv_stream_t *)&a->tcp, &buf, 1, on_written) < 0) {
			free(w);
			pn_connection_driver_write_close(&a->driver);
			return;
		}
		pn_connection_driver_write_done(&a->driver, out.size);
	}
}

static void on_tick(uv_timer_t *timer)
{
	attempt_process(timer->data);
}

static void attempt_arm_tick(struct attempt *a)
{
	uint64_t now = uv_now(a->conn->loop);
	int64_t next = pn_transport_tick(a->driver.transport, (int64_t)now);

	if (!a->opened || a->conn->closing)
		return;   /* the connect timeout, or the close wait, has the timer */
	if (next > 0 && (uint64_t)next > now)
		uv_timer_start(&a->timer, on_tick, (uint64_t)next - now, 0);
}

static void handle_sender_delivery(struct amqp_sender *s, pn_delivery_t *d)
{
	uint64_t state = pn_delivery_remote_state(d);
	enum amqp_outcome outcome;
	char detail[300];
	const char *detail_p = NULL;

	if (!pn_delivery_updated(d) || state == 0)
		return;
	switch (state) {
	case PN_ACCEPTED: outcome = AMQP_OUTCOME_ACCEPTED; break;
	case PN_REJECTED: outcome = AMQP_OUTCOME_REJECTED; break;
	case PN_RELEASED: outcome = AMQP_OUTCOME_RELEASED; break;
	case PN_MODIFIED: outcome = AMQP_OUTCOME_MODIFIED; break;
	default: return;   /* received (partial): wait for the outcome */
	}
	if (outcome == AMQP_OUTCOME_REJECTED) {
		pn_condition_t *c = pn_disposition_condition(pn_delivery_remote(d));

		if (c != NULL && pn_condition_is_set(c)) {
			snprintf(detail, sizeof(detail), "%s: %s", pn_condition_get_name(c),
				 pn_condition_get_description(c) != NULL ?
				 pn_condition_get_description(c) : "");
			detail_p = detail;
		}
	}
	uint64_t tag = tag_of(d);

	pn_delivery_settle(d);
	if (s->unsettled > 0)
		s->unsettled--;
	s->outcome_cb(s->context, tag, outcome, detail_p);
	if (s->writable_cb != NULL && s->link != NULL && !s->conn->close_deferred)
		s->writable_cb(s->context);
}

static void message_text(pn_data_t *data, char *buf, size_t size,
			 const char **text_r, size_t *len_r)
{
	pn_bytes_t b;

	*text_r = "";
	*len_r = 0;
	pn_data_rewind(data);
	if (!pn_data_next(data))
		return;
	switch (pn_data_type(data)) {
	case PN_STRING: b = pn_data_get_string(data); break;
	case PN_BINARY: b = pn_data_get_binary(data); break;
	case PN_SYMBOL: b = pn_data_get_symbol(data); break;
	case PN_ULONG:
		snprintf(buf, size, "%" PRIu64, pn_data_get_ulong(data));
		*text_r = buf;
		*len_r = strlen(buf);
		return;
	default: return;
	}
	*text_r = b.start != NULL ? b.start : "";
	*len_r = b.size;
}

static void receiver_deliver(struct amqp_receiver *r, pn_delivery_t *d)
{
	size_t pending = pn_delivery_pending(d);
	struct amqp_message_in in = { 0 };
	struct amqp_delivery *handle;
	char idbuf[64], *id;
	const char *text;
	size_t len;
	ssize_t n;
	pn_atom_t mid;

	if (pending + 1 > r->buf_size) {
		char *grown = realloc(r->buf, pending + 1);

		if (grown == NULL)
			return;
		r->buf = grown;
		r->buf_size = pending + 1;
	}
	n = pn_link_recv(r->link, r->buf, pending);
	pn_link_advance(r->link);
	handle = calloc(1, sizeof(*handle));
	if (n < 0 || handle == NULL ||
	    pn_message_decode(r->message, r->buf, (size_t)n) != 0) {
		/* undecodable: the broker would only hand it back; it is poison */
		log_warn("amqp: %s: undecodable message rejected", r->address);
		free(handle);
		pn_delivery_update(d, PN_REJECTED);
		pn_delivery_settle(d);
		pn_link_flow(r->link, 1);
		return;
	}
	handle->receiver = r;
	handle->pn = d;
	handle->next = r->outstanding;
	if (r->outstanding != NULL)
		r->outstanding->prev = handle;
	r->outstanding = handle;
	mid = pn_message_get_id(r->message);
	if (mid.type == PN_STRING || mid.type == PN_BINARY || mid.type == PN_SYMBOL) {
		size_t idlen = mid.u.as_bytes.size;

		id = strndup(mid.u.as_bytes.start != NULL ? mid.u.as_bytes.start : "", idlen);
	} else if (mid.type == PN_ULONG) {
		snprintf(idbuf, sizeof(idbuf), "%" PRIu64, mid.u.as_ulong);
		id = strdup(idbuf);
	} else {
		id = strdup("");
	}
	in.message_id = id != NULL ? id : "";
	in.content_type = pn_message_get_content_type(r->message) != NULL ?
			  pn_message_get_content_type(r->message) : "";
	message_text(pn_message_body(r->message), idbuf, sizeof(idbuf), &text, &len);
	in.body = text;
	in.body_len = len;
	in.redelivered = pn_message_get_delivery_count(r->message) > 0 ||
			 !pn_message_is_first_acquirer(r->message);
	in.native = r;
	r->message_cb(r->context, handle, &in);
	free(id);
	for (size_t i = 0; i < r->scratch_count; i++)
		free(r->scratch[i]);
	free(r->scratch);
	r->scratch = NULL;
	r->scratch_count = 0;
}

static void handle_delivery(pn_delivery_t *d)
{
	pn_link_t *link = pn_delivery_link(d);
	void *owner = pn_link_get_context(link);

	if (owner == NULL) {
		if (pn_link_is_sender(link))
			pn_delivery_settle(d);
		return;
	}
	if (pn_link_is_sender(link)) {
		handle_sender_delivery(owner, d);
		return;
	}
	if (pn_delivery_readable(d) && !pn_delivery_partial(d))
		receiver_deliver(owner, d);
}

static void handle_flow(pn_link_t *link)
{
	struct amqp_sender *s = pn_link_get_context(link);

	if (s != NULL && pn_link_is_sender(link) && s->writable_cb != NULL)
		s->writable_cb(s->context);
}

static void handle_remote_open(struct attempt *a)
{
	struct amqp_connection *conn = a->conn;

	a->opened = true;
	a->opened_ms = uv_now(conn->loop);
	uv_timer_stop(&a->timer);
	conn->up = true;
	conn->error[0] = '\0';
	log_info("amqp: connected to %s", conn->urls[conn->url_index].text);
	if (conn->state_cb != NULL)
		conn->state_cb(conn->context, true, NULL);
}


static void handle_event(struct attempt *a, pn_event_t *e)
{
	struct amqp_connection *conn = a->conn;

	switch (pn_event_type(e)) {
	case PN_CONNECTION_REMOTE_OPEN:
		handle_remote_open(a);
		break;
	case PN_CONNECTION_REMOTE_CLOSE:
		set_condition_error(conn, "connection closed by broker",
				    pn_connection_remote_condition(pn_event_connection(e)));
		pn_connection_close(pn_event_connection(e));
		break;
	case PN_SESSION_REMOTE_CLOSE:
		if (a->closing) {
			/* the broker ended our session: what we sent before
			 * the end is processed; now the connection */
			pn_connection_close(a->driver.connection);
			break;
		}
		/* RabbitMQ closes the session for a missing exchange */
		set_condition_error(conn, "session closed by broker",
				    pn_session_remote_condition(pn_event_session(e)));
		pn_connection_close(a->driver.connection);
		break;
	case PN_LINK_REMOTE_CLOSE:
	case PN_LINK_REMOTE_DETACH:
		if (a->closing)
			break;   /* the session's end follows */
		set_condition_error(conn, "link closed by broker",
				    pn_link_remote_condition(pn_event_link(e)));
		set_error(conn, "link closed by broker");
		pn_connection_close(a->driver.connection);
		break;
	case PN_LINK_FLOW:
		handle_flow(pn_event_link(e));
		break;
	case PN_DELIVERY:
		handle_delivery(pn_event_delivery(e));
		break;
	case PN_TRANSPORT_ERROR:
		set_condition_error(conn, NULL,
				    pn_transport_condition(pn_event_transport(e)));
		break;
	default:
		break;
	}
}

static void attempt_process(struct attempt *a)
{
	struct amqp_connection *conn = a->conn;
	pn_event_t *e;

	if (a->processing || a->ended || conn == NULL)
		return;
	busy_enter(conn);
	a->processing = true;
	while ((e = pn_connection_driver_next_event(&a->driver)) != NULL) {
		handle_event(a, e);
		if (a->conn == NULL || conn->close_deferred)
			break;
	}
	if (a->conn != NULL && a->tcp_open)
		attempt_write(a);
	a->processing = false;
	if (a->conn != NULL && pn_connection_driver_write_closed(&a->driver) &&
	    !pn_connection_driver_read_closed(&a->driver) &&
	    pn_condition_is_set(pn_transport_condition(a->driver.transport))) {
		/* Proton gave up (a SASL failure, a framing error) and sent its
		 * end of stream: brokers may wait seconds before closing, and
		 * nothing they say now changes the verdict */
		set_condition_error(a->conn, NULL, pn_transport_condition(a->driver.transport));
		pn_connection_driver_read_close(&a->driver);
	}
	if (a->conn != NULL && !conn->close_deferred) {
		if (pn_connection_driver_finished(&a->driver))
			attempt_end(a);
		else
			attempt_arm_tick(a);
	}
	busy_leave(conn);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct attempt *a = handle->data;

	(void)suggested;
	*buf = uv_buf_init(a->rbuf, sizeof(a->rbuf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct attempt *a = stream->data;
	size_t done = 0;

	if (a->ended || a->conn == NULL)
		return;
	if (nread < 0) {
		/* what Proton knows (a SASL outcome) says more than the socket */
		set_condition_error(a->conn, NULL, pn_transport_condition(a->driver.transport));
		set_error(a->conn, "%s", nread == UV_EOF ? "connection closed by peer" :
			  uv_strerror((int)nread));
		pn_connection_driver_read_close(&a->driver);
		pn_connection_driver_write_close(&a->driver);
		attempt_process(a);
		return;
	}
	while (done < (size_t)nread && !a->ended) {
		pn_rwbytes_t in = pn_connection_driver_read_buffer(&a->driver);
		size_t n = (size_t)nread - done;

		if (in.size == 0) {
			if (pn_connection_driver_read_closed(&a->driver))
				break;
			attempt_process(a);
			in = pn_connection_driver_read_buffer(&a->driver);
			if (in.size == 0)
				break;
		}
		if (n > in.size)
			n = in.size;
		memcpy(in.start, buf->base + done, n);
		pn_connection_driver_read_done(&a->driver, n);
		done += n;
	}
	attempt_process(a);
}

static void on_connect_timeout(uv_timer_t *timer)
{
	struct attempt *a = timer->data;

	if (a->conn == NULL || a->ended)
		return;
	set_error(a->conn, "no AMQP open within %u ms", a->conn->connect_timeout_ms);
	if (!a->driver_init) {
		attempt_end(a);
		return;
	}
	pn_connection_driver_read_close(&a->driver);
	pn_connection_driver_write_close(&a->driver);
	attempt_process(a);
}

static void attempt_setup_driver(struct attempt *a)
{
	struct amqp_connection *conn = a->conn;
	pn_connection_t *c = pn_connection();
	pn_transport_t *t = pn_transport();
	pn_sasl_t *sasl = pn_sasl(t);

	pn_sasl_set_allow_insecure_mechs(sasl, true);
	pn_sasl_allowed_mechs(sasl, conn->user != NULL ? "PLAIN" : "ANONYMOUS");
	if (conn->user != NULL) {
		pn_connection_set_user(c, conn->user);
		pn_connection_set_password(c, conn->password != NULL ? conn->password : "");
	}
	if (a->url->tls) {
		pn_ssl_t *ssl = pn_ssl(t);

		pn_ssl_init(ssl, conn->ssl_domain, NULL);
		pn_ssl_set_peer_hostname(ssl, a->url->host);
	}
	pn_transport_set_idle_timeout(t, conn->idle_timeout_ms);
	pn_connection_set_hostname(c, conn->vhost != NULL ? conn->vhost : a->url->host);
	if (conn->container_id != NULL)
		pn_connection_set_container(c, conn->container_id);
	pn_connection_driver_init(&a->driver, c, t);
	a->driver_init = true;
	pn_connection_open(c);
	a->session = pn_session(c);
	pn_session_open(a->session);
	for (struct amqp_sender *s = conn->senders; s != NULL; s = s->next)
		sender_attach(s, a);
	for (struct amqp_receiver *r = conn->receivers; r != NULL; r = r->next)
		receiver_attach(r, a);
}

static void attempt_connect(struct attempt *a);

static void tcp_closed_try_next(uv_handle_t *handle)
{
	struct attempt *a = handle->data;

	if (a->conn == NULL || a->ended) {
		attempt_release(a);
		return;
	}
	a->handles--;
	attempt_connect(a);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct attempt *a = req->data;

	if (a->conn == NULL || a->ended)
		return;
	if (status < 0 && a->addr_next != NULL) {
		/* "localhost" is ::1 first where /etc/hosts names both (Debian's
		 * container images): a broker on 127.0.0.1 is the next address */
		log_debug("amqp: %s: %s; trying its next address", a->url->text,
			  uv_strerror(status));
		a->tcp_open = false;
		uv_close((uv_handle_t *)&a->tcp, tcp_closed_try_next);
		return;
	}
	if (status < 0) {
		set_error(a->conn, "%s", uv_strerror(status));
		attempt_end(a);
		return;
	}
	uv_tcp_nodelay(&a->tcp, 1);
	attempt_setup_driver(a);
	uv_read_start((uv_stream_t *)&a->tcp, on_alloc, on_read);
	attempt_process(a);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct attempt *a = req->data;

	a->resolving = false;
	if (a->conn == NULL || a->ended) {    /* abandoned while resolving */
		uv_freeaddrinfo(res);
		attempt_release(a);
		return;
	}
	a->handles--;   /* the request is done; the attempt is alive */
	if (status < 0) {
		set_error(a->conn, "cannot resolve %s: %s", a->url->host, uv_strerror(status));
		attempt_end(a);
		return;
	}
	a->addrs = a->addr_next = res;
	attempt_connect(a);
}

/* Connects to the next of the host's addresses; the last one's failure
 * ends the attempt. */
static void attempt_connect(struct attempt *a)
{
	struct addrinfo *ai = a->addr_next;
	int rc;

	a->addr_next = ai->ai_next;
	uv_tcp_init(a->conn->loop, &a->tcp);
	a->tcp.data = a;
	a->tcp_open = true;
	a->handles++;
	a->connect.data = a;
	rc = uv_tcp_connect(&a->connect, &a->tcp, ai->ai_addr, on_connected);
	if (rc < 0) {
		set_error(a->conn, "%s", uv_strerror(rc));
		attempt_end(a);
	}
}

static void connection_try(struct amqp_connection *conn)
{
	struct attempt *a = calloc(1, sizeof(*a));
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	int rc;

	if (a == NULL) {
		uv_timer_start(&conn->retry_timer, on_retry, retry_delay(conn), 0);
		return;
	}
	a->conn = conn;
	a->url = &conn->urls[conn->url_index];
	conn->attempt = a;
	conn->error[0] = '\0';
	uv_timer_init(conn->loop, &a->timer);
	uv_timer_init(conn->loop, &a->flush);
	a->timer.data = a->flush.data = a;
	a->handles = 2;
	uv_timer_start(&a->timer, on_connect_timeout, conn->connect_timeout_ms, 0);
	a->resolve.data = a;
	a->resolving = true;
	a->handles++;
	log_debug("amqp: connecting to %s", a->url->text);
	rc = uv_getaddrinfo(conn->loop, &a->resolve, on_resolved, a->url->host,
			    a->url->port, &hints);
	if (rc < 0) {
		a->resolving = false;
		a->handles--;
		set_error(conn, "cannot resolve %s: %s", a->url->host, uv_strerror(rc));
		attempt_end(a);
	}
}

/* The attempt is over (failed, or the connection ended): links detach,
 * unsettled deliveries are reported lost, and the next URL is tried after
 * the back-off. */
static void attempt_end(struct attempt *a)
{
	struct amqp_connection *conn = a->conn;
	bool was_up = conn->up;

	if (a->ended)
		return;
	busy_enter(conn);
	a->ended = true;
	conn->attempt = NULL;
	conn->up = false;
	if (a->opened && uv_now(conn->loop) - a->opened_ms >= STABLE_MS)
		conn->failures = 0;
	for (struct amqp_receiver *r = conn->receivers; r != NULL; r = r->next)
		receiver_detach(r);
	for (struct amqp_sender *s = conn->senders; s != NULL; s = s->next)
		sender_detach_lost(s);
	if (conn->error[0] == '\0')
		set_error(conn, "connection ended");
	if (!conn->closing) {
		unsigned delay = retry_delay(conn);

		conn->failures++;
		log_warn("amqp: %s%s; retrying in %u ms", conn->error,
			 was_up ? " (was connected)" : "", delay);
		conn->url_index = (conn->url_index + 1) % conn->url_count;
		uv_timer_start(&conn->retry_timer, on_retry, delay, 0);
		if (conn->state_cb != NULL)
			conn->state_cb(conn->context, false, conn->error);
	}
	a->conn = NULL;
	if (a->resolving) {
		/* on_resolved frees it; the timers close now */
		uv_cancel((uv_req_t *)&a->resolve);
	}
	attempt_close_handles(a, conn->closing);
	if (conn->closing && !conn->close_deferred)
		connection_maybe_closed(conn);
	busy_leave(conn);
}

/* ---- Closing ---- */

static void retry_timer_closed(uv_handle_t *handle)
{
	struct amqp_connection *conn = handle->data;
	void (*closed)(void *) = conn->closed;
	void *context = conn->closed_context;

	connection_free(conn);
	if (closed != NULL)
		closed(context);
}

static void connection_maybe_closed(struct amqp_connection *conn)
{
	if (conn->attempt != NULL)
		return;
	while (conn->senders != NULL) {
		struct amqp_sender *s = conn->senders;

		amqp_sender_free(&s);
	}
	while (conn->receivers != NULL) {
		struct amqp_receiver *r = conn->receivers;

		amqp_receiver_free(&r);
	}
	uv_close((uv_handle_t *)&conn->retry_timer, retry_timer_closed);
}

void amqp_connection_close(struct amqp_connection **connp,
			   void (*closed)(void *context), void *context)
{
	struct amqp_connection *conn = *connp;

	if (conn == NULL)
		return;
	*connp = NULL;
	conn->closing = true;
	conn->closed = closed;
	conn->closed_context = context;
	uv_timer_stop(&conn->retry_timer);
	if (conn->busy > 0) {
		conn->close_deferred = true;
		return;
	}
	connection_close_now(conn);
}

static void on_close_wait(uv_timer_t *timer)
{
	struct attempt *a = timer->data;

	if (a->conn == NULL || a->ended)
		return;
	pn_connection_driver_read_close(&a->driver);
	pn_connection_driver_write_close(&a->driver);
	attempt_process(a);
	if (a->conn != NULL && !a->ended)
		attempt_end(a);
}

static void connection_close_now(struct amqp_connection *conn)
{
	struct attempt *a = conn->attempt;

	if (a == NULL) {
		connection_maybe_closed(conn);
		return;
	}
	if (!a->driver_init) {
		attempt_end(a);
		return;
	}
	/* The session ends first, its last dispositions before the end frame,
	 * and the connection closes once the broker has ended it too; the
	 * broker's close (or CLOSE_WAIT_MS) ends the attempt. A broker may drop
	 * dispositions that came with a close it did not answer, and closing
	 * the connection with the session still open lost them under load:
	 * RabbitMQ 3.10's reader failed asking the ending session process
	 * (enotconn) and handed accepted deliveries out again. */
	a->closing = true;
	if (a->session != NULL && (pn_session_state(a->session) & PN_LOCAL_ACTIVE) &&
	    (pn_session_state(a->session) & PN_REMOTE_ACTIVE))
		pn_session_close(a->session);
	else
		pn_connection_close(a->driver.connection);
	attempt_process(a);
	if (conn->attempt == a && !a->ended)
		uv_timer_start(&a->timer, on_close_wait, CLOSE_WAIT_MS, 0);
}

/* ---- Senders ---- */

int amqp_sender_new(struct amqp_connection *conn,
		    const struct amqp_sender_settings *settings,
		    amqp_outcome_cb *outcome_cb, amqp_writable_cb *writable_cb,
		    void *context, struct amqp_sender **sender_r,
		    const char **error_r)
{
	struct amqp_sender *s;

	if (settings->address == NULL || outcome_cb == NULL) {
		*error_r = "a sender needs an address and an outcome callback";
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->address = strdup(settings->address)) == NULL ||
	    (s->message = pn_message()) == NULL) {
		if (s != NULL)
			free(s->address);
		free(s);
		*error_r = "out of memory";
		return -1;
	}
	s->conn = conn;
	s->durable = settings->durable_terminus;
	s->window = settings->window != 0 ? settings->window : 1000;
	s->id = conn->next_link_id++;
	s->outcome_cb = outcome_cb;
	s->writable_cb = writable_cb;
	s->context = context;
	s->next = conn->senders;
	conn->senders = s;
	if (conn->attempt != NULL && conn->attempt->driver_init && !conn->attempt->ended) {
		sender_attach(s, conn->attempt);
		attempt_schedule_flush(conn->attempt);
	}
	*sender_r = s;
	return 0;
}

void amqp_sender_free(struct amqp_sender **sp)
{
	struct amqp_sender *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	for (struct amqp_sender **p = &s->conn->senders; *p != NULL; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			break;
		}
	}
	if (s->link != NULL) {
		pn_link_set_context(s->link, NULL);
		pn_link_close(s->link);
		if (s->conn->attempt != NULL)
			attempt_schedule_flush(s->conn->attempt);
	}
	pn_message_free(s->message);
	free(s->buf.start);
	free(s->address);
	free(s);
}

size_t amqp_sender_room(const struct amqp_sender *s)
{
	int credit;
	size_t room;

	if (s->link == NULL || s->conn->attempt == NULL || !s->conn->up)
		return 0;
	credit = pn_link_credit(s->link);
	if (credit <= 0 || s->unsettled >= s->window)
		return 0;
	room = s->window - s->unsettled;
	return (size_t)credit < room ? (size_t)credit : room;
}

static int message_build(pn_message_t *m, const struct amqp_message_out *msg)
{
	pn_data_t *props, *body;
	pn_atom_t id = { .type = PN_STRING };

	pn_message_clear(m);
	id.u.as_bytes = pn_bytes(strlen(msg->message_id), msg->message_id);
	if (pn_message_set_id(m, id) != 0)
		return -1;
	pn_message_set_durable(m, msg->durable);
	pn_message_set_inferred(m, true);
	if (msg->content_type != NULL)
		pn_message_set_content_type(m, msg->content_type);
	if (msg->subject != NULL)
		pn_message_set_subject(m, msg->subject);
	props = pn_message_properties(m);
	pn_data_put_map(props);
	pn_data_enter(props);
	for (size_t i = 0; i < msg->property_count; i++) {
		const struct amqp_property *p = &msg->properties[i];

		if (p->type == AMQP_PROPERTY_STRING && p->string == NULL)
			continue;
		pn_data_put_string(props, pn_bytes(strlen(p->name), p->name));
		if (p->type == AMQP_PROPERTY_STRING)
			pn_data_put_string(props, pn_bytes(strlen(p->string), p->string));
		else
			pn_data_put_long(props, p->number);
	}
	pn_data_exit(props);
	body = pn_message_body(m);
	return pn_data_put_binary(body, pn_bytes(msg->body_len, msg->body));
}

int amqp_sender_send(struct amqp_sender *s, const struct amqp_message_out *msg,
		     uint64_t tag, const char **error_r)
{
	pn_delivery_t *d;

	if (amqp_sender_room(s) == 0) {
		*error_r = "no room to send (link down, no credit or window full)";
		return -1;
	}
	if (message_build(s->message, msg) != 0) {
		*error_r = "cannot build the AMQP message";
		return -1;
	}
	d = pn_delivery(s->link, pn_dtag((const char *)&tag, sizeof(tag)));
	if (pn_message_send(s->message, s->link, &s->buf) < 0) {
		/* the delivery is out half-made: abort it rather than leave it */
		pn_delivery_abort(d);
		*error_r = "cannot encode the AMQP message";
		return -1;
	}
	s->unsettled++;
	attempt_schedule_flush(s->conn->attempt);
	return 0;
}

/* ---- Receivers ---- */

int amqp_receiver_new(struct amqp_connection *conn,
		      const struct amqp_receiver_settings *settings,
		      amqp_message_cb *message_cb, void *context,
		      struct amqp_receiver **receiver_r, const char **error_r)
{
	struct amqp_receiver *r;

	if (settings->source == NULL || message_cb == NULL) {
		*error_r = "a receiver needs a source and a message callback";
		return -1;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL || (r->address = strdup(settings->source)) == NULL ||
	    (r->message = pn_message()) == NULL) {
		if (r != NULL)
			free(r->address);
		free(r);
		*error_r = "out of memory";
		return -1;
	}
	r->conn = conn;
	r->durable = settings->durable_terminus;
	r->credit = settings->credit != 0 ? settings->credit : 100;
	r->id = conn->next_link_id++;
	r->message_cb = message_cb;
	r->context = context;
	r->next = conn->receivers;
	conn->receivers = r;
	if (conn->attempt != NULL && conn->attempt->driver_init && !conn->attempt->ended) {
		receiver_attach(r, conn->attempt);
		attempt_schedule_flush(conn->attempt);
	}
	*receiver_r = r;
	return 0;
}

void amqp_receiver_free(struct amqp_receiver **rp)
{
	struct amqp_receiver *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	for (struct amqp_receiver **p = &r->conn->receivers; *p != NULL; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	/* handles still out stay the caller's; they only free themselves now */
	for (struct amqp_delivery *d = r->outstanding, *next; d != NULL; d = next) {
		next = d->next;
		d->receiver = NULL;
		d->pn = NULL;
		d->prev = d->next = NULL;
	}
	if (r->link != NULL) {
		pn_link_set_context(r->link, NULL);
		pn_link_close(r->link);
		if (r->conn->attempt != NULL)
			attempt_schedule_flush(r->conn->attempt);
	}
	pn_message_free(r->message);
	free(r->scratch);
	free(r->buf);
	free(r->address);
	free(r);
}

/* Leaves props at the value of the application property name: true when
 * found. */
static bool property_find(pn_data_t *props, const char *name)
{
	size_t nlen = strlen(name);

	pn_data_rewind(props);
	if (!pn_data_next(props) || pn_data_type(props) != PN_MAP)
		return false;
	pn_data_enter(props);
	while (pn_data_next(props)) {
		pn_bytes_t key = pn_data_type(props) == PN_STRING ?
				 pn_data_get_string(props) : pn_bytes(0, NULL);

		if (!pn_data_next(props))
			return false;
		if (key.size == nlen && memcmp(key.start, name, nlen) == 0)
			return true;
	}
	return false;
}

int amqp_message_property_string(const struct amqp_message_in *msg,
				 const char *name, const char **value_r)
{
	struct amqp_receiver *r = (struct amqp_receiver *)msg->native;
	pn_data_t *props = pn_message_properties(r->message);
	pn_bytes_t v;
	char **grown, *copy;

	if (!property_find(props, name) || pn_data_type(props) != PN_STRING)
		return 0;
	v = pn_data_get_string(props);
	/* Proton's strings are not terminated, and one with a NUL inside
	 * would read as another value */
	if (v.size > 0 && memchr(v.start, '\0', v.size) != NULL)
		return 0;
	grown = realloc(r->scratch, (r->scratch_count + 1) * sizeof(*grown));
	if (grown == NULL)
		return 0;
	r->scratch = grown;
	copy = strndup(v.size > 0 ? v.start : "", v.size);
	if (copy == NULL)
		return 0;
	r->scratch[r->scratch_count++] = copy;
	*value_r = copy;
	return 1;
}

int amqp_message_property_long(const struct amqp_message_in *msg,
			       const char *name, long long *value_r)
{
	struct amqp_receiver *r = (struct amqp_receiver *)msg->native;
	pn_data_t *props = pn_message_properties(r->message);

	if (!property_find(props, name))
		return 0;
	switch (pn_data_type(props)) {
	case PN_LONG: *value_r = pn_data_get_long(props); return 1;
	case PN_INT: *value_r = pn_data_get_int(props); return 1;
	case PN_UINT: *value_r = pn_data_get_uint(props); return 1;
	case PN_ULONG:
		if (pn_data_get_ulong(props) > (uint64_t)INT64_MAX)
			return 0;
		*value_r = (long long)pn_data_get_ulong(props);
		return 1;
	default: return 0;
	}
}

int amqp_delivery_settle(struct amqp_delivery **dp, enum amqp_outcome outcome)
{
	struct amqp_delivery *d = *dp;
	struct amqp_receiver *r;
	uint64_t state;
	int ret = 1;

	if (d == NULL || outcome == AMQP_OUTCOME_LOST)
		return -1;
	*dp = NULL;
	r = d->receiver;
	if (r != NULL) {
		if (d->prev != NULL)
			d->prev->next = d->next;
		else
			r->outstanding = d->next;
		if (d->next != NULL)
			d->next->prev = d->prev;
	}
	if (r != NULL && d->pn != NULL && r->link != NULL) {
		state = outcome == AMQP_OUTCOME_ACCEPTED ? PN_ACCEPTED :
			outcome == AMQP_OUTCOME_REJECTED ? PN_REJECTED :
			outcome == AMQP_OUTCOME_RELEASED ? PN_RELEASED : PN_MODIFIED;
		if (state == PN_MODIFIED)
			pn_disposition_set_failed(pn_delivery_local(d->pn), true);
		pn_delivery_update(d->pn, state);
		pn_delivery_settle(d->pn);
		pn_link_flow(r->link, 1);
		if (r->conn->attempt != NULL)
			attempt_schedule_flush(r->conn->attempt);
		ret = 0;
	}
	free(d);
	return ret;
}
