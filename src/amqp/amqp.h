/* An AMQP 1.0 client connection (Qpid Proton C's pn_connection_driver)
 * driven from the libuv loop: one TCP (or TLS) connection to one of
 * several brokers, SASL PLAIN or ANONYMOUS, reconnecting with back-off and
 * failing over between the broker URLs. Senders and receivers are
 * registered once and reattached on every connection; everything runs on
 * the loop thread, callbacks included.
 *
 * Ownership: the connection owns its senders and receivers; they are freed
 * with it or by their own _free. Strings passed in are copied. */
#ifndef MAILPUBSUB_AMQP_H
#define MAILPUBSUB_AMQP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct amqp_connection;
struct amqp_sender;
struct amqp_receiver;
struct amqp_delivery;

struct amqp_settings {
	/* amqp://host[:port] (5672) or amqps://host[:port] (5671), tried in
	 * turn: the next after every failed or lost connection. At least 1. */
	const char *const *urls;
	size_t url_count;
	/* SASL PLAIN with user and password (allowed over plain TCP too: the
	 * brokers on loopback need it); NULL or "": ANONYMOUS. */
	const char *user;
	const char *password;
	/* amqps:// certificates are always verified, host name included,
	 * against ca_file (PEM) or, when NULL/"", the system's CAs. */
	const char *ca_file;
	const char *container_id;      /* our AMQP container id; NULL: random */
	/* AMQP virtual host (the open frame's hostname); NULL: the URL's host */
	const char *vhost;
	unsigned reconnect_min_ms;     /* first delay after a failure (0: 200) */
	unsigned reconnect_max_ms;     /* the delay doubles up to this (0: 30000) */
	unsigned idle_timeout_ms;      /* AMQP idle timeout we ask (0: 60000) */
	unsigned connect_timeout_ms;   /* TCP+TLS+SASL+open (0: 10000) */
};

/* The connection came up (error NULL: every link attached or attaching)
 * or went down (error: why, e.g. "amqp://h:5672: connection refused" or
 * "amqp:unauthorized-access: ..."; a retry is already scheduled). */
typedef void amqp_state_cb(void *context, bool up, const char *error);

/* Checks the settings (URL syntax) and allocates; nothing connects before
 * amqp_connection_start. state_cb may be NULL. 0, or -1 with *error_r in
 * static storage. */
int amqp_connection_new(uv_loop_t *loop, const struct amqp_settings *settings,
			amqp_state_cb *state_cb, void *context,
			struct amqp_connection **conn_r, const char **error_r);
/* Connects to the first URL; failures retry for ever, with back-off. */
void amqp_connection_start(struct amqp_connection *conn);
/* True while an AMQP connection is open (remote open seen). */
bool amqp_connection_is_up(const struct amqp_connection *conn);
/* The URL of the broker in use or last tried; valid until the next call
 * into the connection. */
const char *amqp_connection_url(const struct amqp_connection *conn);
/* Closes the AMQP connection politely (unsettled deliveries are reported
 * as AMQP_OUTCOME_LOST), frees senders and receivers, and calls closed
 * (may be NULL) once every libuv handle is closed; the connection is freed
 * then. Clears *conn. May be called from any of the connection's
 * callbacks: it then takes effect when the callback has returned (no
 * callback of this connection but the LOST outcomes comes after it). */
void amqp_connection_close(struct amqp_connection **conn,
			   void (*closed)(void *context), void *context);

/* ---- Sending ---- */

enum amqp_outcome {
	AMQP_OUTCOME_ACCEPTED,   /* the broker has the message (durable: on disk) */
	AMQP_OUTCOME_REJECTED,   /* refused: detail says why; send again later */
	AMQP_OUTCOME_RELEASED,   /* not taken, never delivered: send again */
	AMQP_OUTCOME_MODIFIED,   /* not taken, maybe delivered: send again */
	AMQP_OUTCOME_LOST,       /* the connection went before an outcome */
};

/* The outcome of the delivery sent with tag; detail is the broker's error
 * condition ("amqp:...: description") for REJECTED, else NULL; valid
 * during the call. Called exactly once per successful amqp_sender_send,
 * in the order the broker settles (for LOST: in send order). */
typedef void amqp_outcome_cb(void *context, uint64_t tag,
			     enum amqp_outcome outcome, const char *detail);
/* amqp_sender_room() may have grown (credit came, or a delivery settled,
 * or the link attached). */
typedef void amqp_writable_cb(void *context);

struct amqp_sender_settings {
	const char *address;     /* target, e.g. "/queue/mailpubsub" (RabbitMQ) */
	/* The target terminus is durable (RabbitMQ declares a durable queue
	 * for /queue/X only then, and refuses a mismatch with an existing one). */
	bool durable_terminus;
	unsigned window;         /* most unsettled deliveries at once (0: 1000) */
};

/* Registers a sender link, attached on every connection. outcome_cb is
 * required, writable_cb may be NULL. */
int amqp_sender_new(struct amqp_connection *conn,
		    const struct amqp_sender_settings *settings,
		    amqp_outcome_cb *outcome_cb, amqp_writable_cb *writable_cb,
		    void *context, struct amqp_sender **sender_r,
		    const char **error_r);
/* Detaches and frees; unsettled deliveries get no callback. Not from the
 * sender's own callbacks. Clears *sender. */
void amqp_sender_free(struct amqp_sender **sender);

/* How many messages amqp_sender_send takes now: the window's room, bounded
 * by the broker's link credit; 0 while the link is not attached. */
size_t amqp_sender_room(const struct amqp_sender *sender);

enum amqp_property_type { AMQP_PROPERTY_STRING, AMQP_PROPERTY_LONG };

/* One application property (name -> string or signed 64-bit value). */
struct amqp_property {
	const char *name;
	enum amqp_property_type type;
	const char *string;      /* AMQP_PROPERTY_STRING; NULL: not sent */
	long long number;        /* AMQP_PROPERTY_LONG */
};

struct amqp_message_out {
	const char *message_id;  /* string message-id (consumers dedupe on it) */
	const char *content_type;   /* e.g. "application/json"; NULL: none */
	const char *subject;        /* NULL: none */
	const void *body;        /* one data section of body_len bytes */
	size_t body_len;
	bool durable;            /* header durable: the broker keeps it on disk */
	const struct amqp_property *properties;
	size_t property_count;
};

/* Sends msg (encoded at once: msg need not outlive the call) as a delivery
 * tagged tag (the caller's, e.g. a journal seq; handed back to
 * outcome_cb). Needs amqp_sender_room() > 0. 0, or -1 with *error_r in
 * static storage (no room, link not attached, encoding failed): then no
 * outcome will come. */
int amqp_sender_send(struct amqp_sender *sender, const struct amqp_message_out *msg,
		     uint64_t tag, const char **error_r);

/* ---- Receiving (used by the bus source, ingest/bus_in) ---- */

/* A received message; pointers valid during the message callback only. */
struct amqp_message_in {
	const char *message_id;  /* formatted as text whatever its AMQP type; "" if none */
	const char *content_type;   /* "" if none */
	const char *body;        /* a data section, or an amqp-value string/binary */
	size_t body_len;
	bool redelivered;        /* delivery-count > 0 or first-acquirer false */
	const void *native;      /* for amqp_message_property_*; opaque */
};

/* A property of a received message: 1 and *value_r (a terminated copy,
 * valid during the callback) when it is a string without NUL, 0 when
 * absent or anything else. Call only during the message callback. */
int amqp_message_property_string(const struct amqp_message_in *msg,
				 const char *name, const char **value_r);
/* 1 and *value_r when it is an integer type, 0 otherwise. */
int amqp_message_property_long(const struct amqp_message_in *msg,
			       const char *name, long long *value_r);

/* One message arrived. delivery is the caller's from now on: settle it
 * exactly once with amqp_delivery_settle, at once or later (after a
 * journal commit). Credit is given back as deliveries are settled, so at
 * most `credit` are outstanding. */
typedef void amqp_message_cb(void *context, struct amqp_delivery *delivery,
			     const struct amqp_message_in *msg);

struct amqp_receiver_settings {
	const char *source;      /* e.g. "/queue/mailpubsub" */
	bool durable_terminus;   /* must match the queue's durability (RabbitMQ) */
	unsigned credit;         /* unsettled deliveries at most (0: 100) */
};

/* Registers a receiver link, attached on every connection. */
int amqp_receiver_new(struct amqp_connection *conn,
		      const struct amqp_receiver_settings *settings,
		      amqp_message_cb *message_cb, void *context,
		      struct amqp_receiver **receiver_r, const char **error_r);
/* Detaches and frees. Deliveries not settled yet stay valid and must
 * still be settled (which then only frees them). Not from the receiver's
 * own callback. Clears *receiver. */
void amqp_receiver_free(struct amqp_receiver **receiver);

/* Settles delivery with outcome: ACCEPTED (done), REJECTED (poison: the
 * broker dead-letters or drops it), RELEASED (give it to another consumer
 * or again later), MODIFIED (released, counted as a failed attempt). LOST
 * is not an outcome to give. If the connection it came on has gone, the
 * broker will redeliver it and this only frees the handle. Returns 0 when
 * the outcome went to the broker, 1 when the connection had gone, -1 on
 * misuse. Clears *delivery (it is freed). */
int amqp_delivery_settle(struct amqp_delivery **delivery, enum amqp_outcome outcome);

/* The outcome's name ("accepted", "rejected", ...), for logs. */
const char *amqp_outcome_name(enum amqp_outcome outcome);

#endif
