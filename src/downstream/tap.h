/* Live interception taps: while a tap is active (its validity window),
 * every event of its target (an account, or an address seen as sender or
 * recipient in a new message's envelope) is relayed at once to the tap's
 * authority JIDs on node "mailpubsub:tap:<id>", and a new message's full
 * content follows as soon as it is retrieved over IMAP. The relay runs
 * after the event's ordinary publication and touches nothing the target
 * can see (subscriptions, items, disco). Taps are managed by [taps] admins
 * with XEP-0050 ad-hoc commands on the component domain
 * (handlers/tap_request.c), and by mailpubsubctl; every change, expiry
 * and relayed event is recorded in the
 * changelog. Persisted in the store's taps table. */
#ifndef MAILPUBSUB_TAP_H
#define MAILPUBSUB_TAP_H

#include <strophe.h>
#include <uv.h>

#include "imap/imap_backends.h"
#include "model/event.h"
#include "store/journal.h"
#include "store/store.h"
#include "store/taps.h"

#define TAP_NODE_PREFIX "mailpubsub:tap:"

struct publish_service;
struct imap_client;
struct tap_relay;
struct publisher_listener;

/* Validates and stores t; audited as tap-add by `by`. */
int tap_add(struct store *store, const struct tap *t, const char *by,
	    long long now_us, long long *id_r, const char **error_r);
/* Removes tap id; audited as tap-remove. */
int tap_remove(struct store *store, long long id, const char *by,
	       long long now_us, const char **error_r);
/* Every tap not yet removed, as a JSON array (with "active"); newly
 * allocated. */
char *tap_list_json(struct store *store, long long now_us);
/* Marks the taps whose window ended as expired (audited as tap-expire). */
int tap_expire(struct store *store, long long now_us);

/* ISO 8601 UTC ("2026-11-23T10:00:00Z") or seconds since the epoch, in
 * microseconds; -1 when text is neither, is before 1970, or is so late
 * that its microseconds would not fit a long long. */
long long tap_parse_time_us(const char *text);

/* The relay; imap may be NULL (then no content is relayed). */
int tap_relay_new(uv_loop_t *loop, struct publish_service *service,
		  struct imap_client *imap, struct tap_relay **relay_r,
		  const char **error_r);
/* [backends] (a front serving several mail servers): a tapped message is
 * retrieved from the account's own server (imap_backends_pick), imap
 * being the fallback. Borrowed; NULL: imap for all. */
void tap_relay_set_backends(struct tap_relay *relay,
			    const struct imap_backends *backends);
/* Freed once retrievals in flight have answered (unregister its listener
 * first). Clears *relay. */
void tap_relay_close(struct tap_relay **relay);
/* The relay's "event published" listener, for publisher_listener_register
 * (it calls tap_relay_event); valid until tap_relay_close. */
const struct publisher_listener *tap_relay_listener(struct tap_relay *relay);
/* A journaled event was dispatched: relays it to every tap that matches.
 * Call inside the publisher's transaction. */
void tap_relay_event(struct tap_relay *relay, const struct journal_record *rec,
		     const struct event *ev);

#endif
