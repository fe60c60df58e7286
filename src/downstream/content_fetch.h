/* Retrieval of message bytes for the journal's downstream consumers (the
 * firehose, the bus producer): one message at a time per consumer, from
 * the account's own server ([backends]), following renames the node tree
 * knows, with one retry policy for both. A message gone is final (after a
 * second look a moment later: a rename may still be on its way to the
 * journal); other failures are retried [firehose] fetch_attempts times, 1,
 * 2, 4... s apart (32 s at most), then recorded as unavailable. Every
 * outcome lands in the content table the consumers share (store/content.h),
 * so each message is retrieved once, and the consumer is told to look
 * again. */
#ifndef MAILPUBSUB_CONTENT_FETCH_H
#define MAILPUBSUB_CONTENT_FETCH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "imap/imap_backends.h"
#include "imap/imap_client.h"
#include "model/event.h"
#include "base/config.h"
#include "store/store.h"

struct content_fetch;

/* ready(context): the content table may now hold what the consumer waits
 * for, or a back-off is over and it should ask again. Called from the loop;
 * it may come from inside content_fetch_start when the server fails at
 * once. who names the consumer in logs. store, config and imap (may be
 * NULL: only [backends] servers then) must outlive the fetcher. 0, or -1
 * with *error_r in static storage. */
int content_fetch_new(uv_loop_t *loop, struct store *store, const struct config *config,
		      struct imap_client *imap, const char *who,
		      void (*ready)(void *context), void *context,
		      struct content_fetch **fetch_r, const char **error_r);

/* [backends]: the account's own server is asked (imap for the others).
 * Borrowed; NULL: imap for all. */
void content_fetch_set_backends(struct content_fetch *fetch,
				const struct imap_backends *backends);

/* A retrieval or a back-off is under way: the consumer waits for ready. */
bool content_fetch_busy(const struct content_fetch *fetch);

/* Starts retrieving part ("full" or "headers") of message uid of ev's
 * mailbox (journal record seq); only when not busy. What it needs of ev is
 * copied. 0, or -1 when there is no server to ask or no memory (the
 * consumer goes on without the bytes). */
int content_fetch_start(struct content_fetch *fetch, const struct event *ev,
			long long seq, const char *part, uint32_t uid);

/* Ends it and sets *fetch to NULL: ready is not called again, and
 * closed(context) is once nothing of it is outstanding (the retrieval in
 * flight has answered, its timer is closed). NULL is fine (closed is then
 * not called). */
void content_fetch_close(struct content_fetch **fetch, void (*closed)(void *context),
			 void *context);

#endif
