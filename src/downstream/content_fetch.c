#include "downstream/content_fetch.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "downstream/content.h"
#include "store/journal_query.h"
#include "store/node_tree.h"

/* renames followed for one message at most */
#define FETCH_HOPS_MAX 8
/* the second look at a message the server says is not there */
#define FETCH_NO_RETRY_MS 300

struct content_fetch {
	struct store *store;
	const struct config *config;
	struct imap_client *imap;
	const struct imap_backends *backends;
	const char *who;
	void (*ready)(void *context);
	void *context;
	uv_timer_t timer;         /* back-off, or the second look */
	bool fetching;            /* a retrieval is in flight */
	bool waiting;             /* the timer runs */
	bool no_looked_again;     /* the current message's NO was looked at twice */
	unsigned attempts;        /* failed retrievals of the current message */
	long long attempts_seq;   /* the message they count for */
	bool closing, timer_open;
	void (*closed)(void *context);
	void *closed_context;
};

/* One retrieval: where the message is looked for (moves with renames). */
struct fetch_ctx {
	struct content_fetch *fetch;
	long long seq;
	char part[8];
	char *account, *node, *mailbox_id;
	uint32_t uidvalidity, uid;
	unsigned hops;
};

static void fetch_ctx_free(struct fetch_ctx *fc)
{
	free(fc->account);
	free(fc->node);
	free(fc->mailbox_id);
	free(fc);
}

static void maybe_free(struct content_fetch *f)
{
	if (!f->closing || f->fetching || f->timer_open)
		return;
	if (f->closed != NULL)
		f->closed(f->closed_context);
	free(f);
}

static struct imap_client *client_for(const struct content_fetch *f, const char *account)
{
	return imap_backends_pick(f->backends, account, f->imap);
}

static void on_timer(uv_timer_t *timer)
{
	struct content_fetch *f = timer->data;

	f->waiting = false;
	f->ready(f->context);
}

static void wait_then_ready(struct content_fetch *f, unsigned ms)
{
	f->waiting = true;
	uv_timer_start(&f->timer, on_timer, ms, 0);
}

static void issue(struct fetch_ctx *fc);

/* A NO may mean the mailbox was renamed after the event: look where the
 * tree says it went. True when a new retrieval was issued; else *r may
 * become a temporary failure (a rename the tree does not show yet). */
static bool follow_rename(struct fetch_ctx *fc, enum imap_result *r)
{
	struct content_fetch *f = fc->fetch;
	char *moved;

	if (fc->hops >= FETCH_HOPS_MAX)
		return false;
	moved = node_tree_find_moved(f->store, fc->account, fc->node, fc->mailbox_id,
				     fc->uidvalidity);
	if (moved != NULL) {
		log_info("%s: #%lld: %s/%s is now %s/%s", f->who, fc->seq, fc->account,
			 fc->node, fc->account, moved);
		free(fc->node);
		fc->node = moved;
		fc->hops++;
		issue(fc);
		return true;
	}
	if (journal_query_changed_after(f->store, fc->account, fc->seq, true))
		*r = IMAP_TEMPFAIL;
	return false;
}

/* Records the outcome in the content table, or arranges another try. */
static void settle(struct content_fetch *f, const struct fetch_ctx *fc, enum imap_result r,
		   const struct imap_message *msg)
{
	long long now = clock_now_us();
	unsigned shift;

	if (r == IMAP_OK) {
		content_put(f->store, fc->seq, fc->part, msg, now);
		log_debug("%s: #%lld: %zu bytes retrieved", f->who, fc->seq, msg->len);
		f->attempts = 0;
		f->ready(f->context);
		return;
	}
	if (r == IMAP_NO) {
		content_put_error(f->store, fc->seq, "expunged", f->attempts + 1, now);
		log_info("%s: #%lld: message gone before its retrieval: %s", f->who, fc->seq,
			 imap_client_last_error(client_for(f, fc->account)));
		f->attempts = 0;
		f->ready(f->context);
		return;
	}
	if (++f->attempts >= f->config->firehose_fetch_attempts) {
		content_put_error(f->store, fc->seq, "unavailable", f->attempts, now);
		log_warn("%s: #%lld: content unavailable after %u attempts", f->who, fc->seq,
			 f->attempts);
		f->attempts = 0;
		f->ready(f->context);
		return;
	}
	shift = f->attempts - 1 < 5 ? f->attempts - 1 : 5;
	log_info("%s: #%lld: retrieval failed (attempt %u), retrying in %u ms", f->who,
		 fc->seq, f->attempts, 1000u << shift);
	wait_then_ready(f, 1000u << shift);
}

static void fetched(void *context, enum imap_result r, const struct imap_message *msg)
{
	struct fetch_ctx *fc = context;
	struct content_fetch *f = fc->fetch;

	f->fetching = false;
	if (f->closing) {
		fetch_ctx_free(fc);
		maybe_free(f);
		return;
	}
	if (r == IMAP_NO && follow_rename(fc, &r))
		return;
	if (r == IMAP_NO && !f->no_looked_again) {
		/* the mailbox may be renamed under us with the event on its way
		 * to the journal: one more look, soon, before calling it gone */
		f->no_looked_again = true;
		fetch_ctx_free(fc);
		wait_then_ready(f, FETCH_NO_RETRY_MS);
		return;
	}
	f->no_looked_again = false;
	settle(f, fc, r, msg);
	fetch_ctx_free(fc);
}

static void issue(struct fetch_ctx *fc)
{
	struct content_fetch *f = fc->fetch;

	f->fetching = true;
	imap_client_fetch(client_for(f, fc->account), fc->account, fc->node,
			  fc->uidvalidity, fc->uid,
			  strcmp(fc->part, "full") == 0 ? IMAP_FETCH_FULL : IMAP_FETCH_HEADERS,
			  fetched, fc);
}

int content_fetch_start(struct content_fetch *f, const struct event *ev, long long seq,
			const char *part, uint32_t uid)
{
	const char *mailbox_id = json_string_value(json_object_get(ev->json, "mailboxID"));
	struct fetch_ctx *fc;

	if (f->closing || content_fetch_busy(f) || ev->mailbox.account == NULL ||
	    ev->mailbox.node == NULL || client_for(f, ev->mailbox.account) == NULL)
		return -1;
	fc = calloc(1, sizeof(*fc));
	if (fc == NULL)
		return -1;
	fc->fetch = f;
	fc->seq = seq;
	snprintf(fc->part, sizeof(fc->part), "%s", part);
	fc->account = strdup(ev->mailbox.account);
	fc->node = strdup(ev->mailbox.node);
	fc->mailbox_id = mailbox_id != NULL ? strdup(mailbox_id) : NULL;
	fc->uidvalidity = ev->mailbox.uidvalidity;
	fc->uid = uid;
	if (fc->account == NULL || fc->node == NULL ||
	    (mailbox_id != NULL && fc->mailbox_id == NULL)) {
		fetch_ctx_free(fc);
		return -1;
	}
	if (seq != f->attempts_seq) {
		/* the counts belong to one message */
		f->attempts = 0;
		f->no_looked_again = false;
		f->attempts_seq = seq;
	}
	issue(fc);
	return 0;
}

bool content_fetch_busy(const struct content_fetch *f)
{
	return f->fetching || f->waiting;
}

void content_fetch_set_backends(struct content_fetch *f,
				const struct imap_backends *backends)
{
	f->backends = backends;
}

int content_fetch_new(uv_loop_t *loop, struct store *store, const struct config *config,
		      struct imap_client *imap, const char *who,
		      void (*ready)(void *context), void *context,
		      struct content_fetch **fetch_r, const char **error_r)
{
	struct content_fetch *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	f->store = store;
	f->config = config;
	f->imap = imap;
	f->who = who;
	f->ready = ready;
	f->context = context;
	uv_timer_init(loop, &f->timer);
	f->timer.data = f;
	f->timer_open = true;
	*fetch_r = f;
	return 0;
}

static void timer_closed(uv_handle_t *handle)
{
	struct content_fetch *f = handle->data;

	f->timer_open = false;
	maybe_free(f);
}

void content_fetch_close(struct content_fetch **fp, void (*closed)(void *context),
			 void *context)
{
	struct content_fetch *f = *fp;

	if (f == NULL)
		return;
	*fp = NULL;
	f->closing = true;
	f->closed = closed;
	f->closed_context = context;
	uv_close((uv_handle_t *)&f->timer, timer_closed);
}
