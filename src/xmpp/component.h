/* XEP-0114 component connection: libstrophe driven from the libuv loop.
 *
 * One connection to the Jabber server, kept up for the life of the daemon:
 * reconnects with exponential backoff when the server goes away, answers
 * XEP-0199 pings addressed to the component and pings the server itself so a
 * dead TCP connection is noticed. Everything runs on the loop's thread.
 */
#ifndef MAILPUBSUB_COMPONENT_H
#define MAILPUBSUB_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>
#include <strophe.h>
#include <uv.h>

struct component;

struct component_settings {
	const char *host;          /* Jabber server address, e.g. "127.0.0.1" */
	unsigned short port;       /* component port, e.g. 5347 */
	const char *domain;        /* component JID, e.g. "events.example.org" */
	const char *secret;        /* shared secret; never logged */
	unsigned ping_interval_ms; /* 0 disables our pings to the server */
	unsigned ping_timeout_ms;  /* no pong in time: drop and reconnect */
	unsigned reconnect_min_ms; /* first backoff step */
	unsigned reconnect_max_ms; /* backoff ceiling */
	size_t max_stanza_bytes;   /* larger stanzas are not sent (logged);
				    * 0: no bound */
};

/* Called for every <iq/>, <message/> and <presence/> the server routes to us,
 * except pings the module answers itself. The stanza is borrowed: copy what
 * you keep. Replies may be sent from inside the callback. */
typedef void component_stanza_cb(void *context, xmpp_stanza_t *stanza);
/* Called on every transition: true once the handshake succeeded, false when
 * the stream is gone (a reconnect is then already scheduled). */
typedef void component_state_cb(void *context, bool connected);

/* Strings in settings are copied. Returns 0, or -1 with *error_r set. */
int component_new(uv_loop_t *loop, const struct component_settings *settings,
		  component_stanza_cb *on_stanza, component_state_cb *on_state,
		  void *context, struct component **component_r,
		  const char **error_r);

/* Begins connecting; keeps reconnecting until component_close(). */
void component_start(struct component *component);

bool component_is_connected(const struct component *component);

/* The libstrophe context, for building stanzas. */
xmpp_ctx_t *component_xmpp_ctx(struct component *component);

/* Queue a stanza (the caller keeps its reference). The module makes sure it
 * is flushed, also when called outside a libstrophe handler.
 * Returns 0, or -1 when not connected or over max_stanza_bytes (nothing
 * queued). */
int component_send(struct component *component, xmpp_stanza_t *stanza);
/* Same for already serialized XML (one or more complete stanzas). data[len]
 * must be '\0': libstrophe reads it as a string when logging. */
int component_send_raw(struct component *component, const char *data,
		       size_t len);

/* Pings the server; done(context) runs once its reply is in, which proves
 * the server took everything sent before (it reads the stream in order
 * and closes it at the first stanza it cannot take). One at a time; a
 * lost connection cancels it (done never runs). 0, or -1 when not
 * connected. */
int component_confirm(struct component *c, void (*done)(void *), void *context);
/* Forgets the confirmation asked for with context, if one is out: done
 * will not run (its owner is going away). */
void component_confirm_cancel(struct component *c, void *context);
/* Did the server end the last connection with a stream error about what
 * we sent (not-well-formed, policy-violation: a stanza too big, ...),
 * rather than going away (system-shutdown, conflict, a lost socket)? */
bool component_refused(const struct component *c);
/* That stream error's condition, or NULL. */
const char *component_last_stream_error(const struct component *c);

/* Bytes/stanzas accepted by libstrophe but not yet written to the socket. */
size_t component_queue_len(const struct component *component);
/* Stanzas handed to libstrophe since the component was made, over every
 * connection: what a rate cap counts. */
unsigned long component_sent_count(const struct component *component);

/* The connection's history, for status and metrics. */
struct component_stats {
	unsigned long long connects;     /* handshakes that succeeded */
	unsigned long long disconnects;  /* streams lost after one */
	unsigned long long failures;     /* attempts that never got there */
	long long changed_us;            /* wall clock of the last change (or
					  * of component_start) */
};
const struct component_stats *component_stats(const struct component *component);

/* Disconnects, closes the libuv handles and frees everything once they are
 * closed; then calls done(context) if given. Clears *component. */
void component_close(struct component **component, void (*done)(void *),
		     void *context);

#endif
