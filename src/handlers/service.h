/* The pubsub service as a whole: addressing (which account a JID names),
 * the stanza router, and what the handlers share. */
#ifndef MAILPUBSUB_SERVICE_H
#define MAILPUBSUB_SERVICE_H

#include <stdbool.h>

#include <strophe.h>

#include "authz/authz.h"
#include "xmpp/component.h"
#include "base/config.h"
#include "publish/delivery.h"
#include "base/stats.h"
#include "store/store.h"

struct counts;
struct delegate;
struct ingest_cyrus;
struct ingest_imap;
struct ingest_json;
struct discovery;
struct publisher;
struct sink;

struct service {
	const struct config *config;
	struct store *store;
	struct sink *sink;             /* every producer of events submits here */
	struct component *component;
	struct authz *authz;
	struct delivery *delivery;
	struct delegate *delegate;     /* NULL without [delegate] service */
	struct counts *counts;
	struct discovery *discovery;   /* NULL without [imap] */
	struct publisher *publisher;
	struct ingest_cyrus *ingest_cyrus; /* NULL without [cyrus] notify_socket */
	struct ingest_json *ingest_json;   /* NULL without [json] socket or listen */
	struct ingest_imap *ingest_imap;   /* NULL without [imap_source] accounts */
	struct firehose *firehose;
	struct tap_relay *taps;        /* interception (src/downstream/tap.c) */
	struct stats_counters stats;
};

/* The account a service JID names: "" for the shared service, NULL when the
 * JID is not one of ours or its localpart, unescaped, is not an account
 * name (jid_account_valid). Newly allocated. */
char *service_account_for_jid(const struct service *service, const char *jid);
/* Is jid the component domain itself (with or without a resource)? */
bool service_is_domain(const struct service *service, const char *jid);
/* The service JID of an account. Newly allocated. */
char *service_jid_for_account(const struct service *service, const char *account);

/* The component's on_stanza callback (context: struct service). */
void service_handle_stanza(void *context, xmpp_stanza_t *stanza);

/* Sends "<iq type='result'>" + body (serialized XML, may be "") in reply
 * to iq: for replies built as text, such as items with stored payloads. */
void service_send_result_raw(struct service *service, xmpp_stanza_t *iq,
			     const char *body);

/* Sends and releases reply. */
void service_send_release(struct service *service, xmpp_stanza_t *reply);


#endif
