/* The firehose: every journaled event of every account, in journal order,
 * on node "mailpubsub:firehose" of the component domain, for the
 * downstream subscribers named in [firehose] subscribers (archive,
 * e-discovery, interception) and nobody else. Message events carry the
 * message (or its header) retrieved over IMAP once per event, with
 * retries; a final failure is recorded in the item, never dropped.
 * Large messages are fetched by the subscriber in chunks (<fetch/>);
 * a subscriber that was away catches up with RSM on items.
 * See pubsub-schemas/content.rng and README.md "Archive and backup". */
#ifndef MAILPUBSUB_FIREHOSE_H
#define MAILPUBSUB_FIREHOSE_H

#include <stdbool.h>
#include <strophe.h>
#include <uv.h>

#include "imap/imap_backends.h"
#include "ingest/sink.h"
#include "model/event.h"
#include "store/journal.h"
#include "store/store.h"

#define FIREHOSE_NODE "mailpubsub:firehose"

struct firehose;
struct publish_service;
struct imap_client;

/* imap may be NULL (no content then: items carry content-error). */
int firehose_new(uv_loop_t *loop, struct publish_service *service,
		 struct imap_client *imap, struct firehose **firehose_r,
		 const char **error_r);
/* [backends] (a front serving several mail servers): each message is
 * retrieved from the server imap_backends_pick names for its account, imap
 * being the fallback. Borrowed; NULL: imap for all. */
void firehose_set_backends(struct firehose *firehose,
			   const struct imap_backends *backends);
/* Freed once a retrieval in flight has answered. Clears *firehose. */
void firehose_close(struct firehose **firehose);

/* New journal records, or the component connected. */
void firehose_kick(struct firehose *firehose);
/* The sink listener (context: the firehose; main registers it): live, it
 * hands on the events with their decoded form at once; behind, it reads
 * the journal from its watermark. */
void firehose_committed(void *context, const struct sink_event *events, size_t count);
/* The component disconnected: what was in flight is resent. */
void firehose_reset(struct firehose *firehose);

/* For MAM on the firehose node (src/handlers/mam.c): the item of journal record
 * rec as it was published to a subscriber with content policy ("none",
 * "headers", "full"), or NULL when the event is not on the firehose
 * ([firehose] accounts). Newly allocated. */
char *firehose_item_payload(struct publish_service *service, const struct journal_record *rec,
			    const char *policy);
/* The last journal sequence the live firehose has handed on (0 without
 * a firehose). */
long long firehose_position(const struct firehose *firehose);

/* For the firehose's request handlers (handlers/firehose_request.c):
 * does ev go on the firehose ([firehose] accounts)? */
bool firehose_wants(const struct publish_service *service, const struct event *ev);
/* The item of rec (decoded: ev, which the firehose wants) for a subscriber
 * with content policy ("none", "headers", "full"), prev being the
 * previous item on the firehose. Newly allocated, or NULL. */
char *firehose_policy_payload(struct publish_service *service,
			      const struct journal_record *rec, const struct event *ev,
			      const char *policy, long long prev);
/* The last journaled record before seq that goes on the firehose, 0 if
 * none. */
long long firehose_prev_wanted(struct publish_service *service, long long seq);
/* Ends the firehose subscription of bare JID bare; -1 when it had none. */
int firehose_unsubscribe(struct store *store, const char *bare);

/* Removes the subscriptions of JIDs [firehose] subscribers no longer
 * names (at start and on SIGHUP: taking a JID out of the list must stop
 * its copy of every message). Returns how many went. */
unsigned firehose_prune_subscribers(struct publish_service *service);

/* The role [firehose] subscribers gives the bare JID of jid, or NULL. */
const char *firehose_role(const struct publish_service *service, const char *jid,
			  char *buf, size_t size);

#endif
