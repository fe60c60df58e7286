#include "ingest/ingest_imap_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest/ingest_imap_diff.h"
#include "ingest/ingest_imap_uri.h"
#include "base/log.h"
#include "store/imap_source_state.h"

#define STATUS_EVENT "vnd.mailpubsub.MailboxStatus"
/* reconnecting after a failure: 1 s, doubling up to this */
#define RETRY_MAX_MS 60000u
/* RFC 2177: re-issue IDLE at least every 29 minutes */
#define IDLE_MAX_MS (29u * 60u * 1000u)

static bool stopping(const struct ingest_imap_watch *w)
{
	return atomic_load(&w->queue->stop);
}

static void wboxes_free(struct ingest_imap_watch *w)
{
	for (size_t i = 0; i < w->n_boxes; i++) {
		free(w->boxes[i].node);
		ingest_imap_box_clear(&w->boxes[i].box);
	}
	free(w->boxes);
	w->boxes = NULL;
	w->n_boxes = 0;
}

static struct ingest_imap_wbox *wbox_find(struct ingest_imap_watch *w, const char *node)
{
	for (size_t i = 0; i < w->n_boxes; i++) {
		if (strcmp(w->boxes[i].node, node) == 0)
			return &w->boxes[i];
	}
	return NULL;
}

static struct ingest_imap_wbox *wbox_add(struct ingest_imap_watch *w, const char *node)
{
	struct ingest_imap_wbox *bigger = realloc(w->boxes, (w->n_boxes + 1) * sizeof(*bigger));

	if (bigger == NULL)
		return NULL;
	w->boxes = bigger;
	memset(&w->boxes[w->n_boxes], 0, sizeof(*w->boxes));
	if ((w->boxes[w->n_boxes].node = strdup(node)) == NULL)
		return NULL;
	return &w->boxes[w->n_boxes++];
}

static void wbox_remove(struct ingest_imap_watch *w, struct ingest_imap_wbox *b)
{
	size_t i = (size_t)(b - w->boxes);

	free(b->node);
	ingest_imap_box_clear(&b->box);
	memmove(&w->boxes[i], &w->boxes[i + 1], (w->n_boxes - i - 1) * sizeof(*b));
	w->n_boxes--;
}

static bool skipped(const struct ingest_imap_watch *w, const char *node)
{
	for (size_t i = 0; i < w->n_skip; i++) {
		if (strcmp(w->skip[i], node) == 0)
			return true;
	}
	return false;
}

/* Whose is node: the watcher IDLEing on it, else the account's poller. */
static bool owns(const struct ingest_imap_watch *w, const char *node)
{
	if (strcmp(w->idle_node, node) == 0)
		return true;
	return w->poller && !skipped(w, node);
}

/* A stored mailbox: the watcher's if it owns it. */
static int load_box(void *context, const char *node, uint32_t uidvalidity,
		    uint32_t uidnext, uint64_t modseq)
{
	struct ingest_imap_watch *w = context;
	struct ingest_imap_wbox *b;

	if (!owns(w, node))
		return 0;
	if ((b = wbox_add(w, node)) == NULL)
		return -1;
	b->box.uidvalidity = uidvalidity;
	b->box.uidnext = uidnext;
	b->box.modseq = modseq;
	return 0;
}

static int load_msg(void *context, uint32_t uid, const char *flags)
{
	return ingest_imap_box_append(context, uid, flags);
}

int ingest_imap_watch_load(struct ingest_imap_watch *w, struct store *store)
{
	wboxes_free(w);
	if (imap_source_state_account_known(store, w->account, &w->account_known) < 0 ||
	    imap_source_state_mailboxes(store, w->account, load_box, w) < 0)
		return -1;
	for (size_t i = 0; i < w->n_boxes; i++) {
		if (imap_source_state_messages(store, w->account, w->boxes[i].node, load_msg,
					       &w->boxes[i].box) < 0)
			return -1;
	}
	return 0;
}

static void session_drop(struct ingest_imap_watch *w)
{
	struct imap_session *s;

	uv_mutex_lock(&w->queue->lock);
	s = w->link.imap;
	w->link.imap = NULL;
	uv_mutex_unlock(&w->queue->lock);
	imap_session_close(&s);
}

static int session_up(struct ingest_imap_watch *w)
{
	struct imap_session *s = NULL;
	char err[320];

	if (imap_session_open(w->imap, w->account, &w->queue->stop, &s, err,
			      sizeof(err)) < 0) {
		if (!stopping(w))
			log_warn("imap source: %s: %s", w->account, err);
		return -1;
	}
	uv_mutex_lock(&w->queue->lock);
	w->link.imap = s;
	uv_mutex_unlock(&w->queue->lock);
	ingest_imap_session_enable(&w->link);
	log_info("imap source: %s: watching %s%s (%s)", w->account, w->idle_node,
		 w->poller ? " and polling the other mailboxes" : "",
		 w->link.qresync ? "QRESYNC" : w->link.condstore ? "CONDSTORE" : "full FETCH");
	return 0;
}

static char *node_uri(struct ingest_imap_watch *w, const char *node, uint32_t uidvalidity)
{
	return ingest_imap_uri(w->config->imap_host, w->account, node, w->sep,
			       uidvalidity, 0);
}

/* Takes the fetched messages as the baseline of b (no events). */
static int baseline(struct ingest_imap_watch *w, struct ingest_imap_wbox *b,
		    const struct ingest_imap_selected *sel,
		    struct ingest_imap_batch *batch, bool resync_event)
{
	struct ingest_imap_msgs ms = { 0 };
	struct ingest_imap_range *van = NULL;
	size_t n_van = 0;
	uint32_t old = b->box.uidvalidity;

	if (sel->exists > 0 &&
	    ingest_imap_session_fetch_flags(&w->link, 0, false, &ms, &van, &n_van) < 0) {
		ingest_imap_msgs_free(&ms);
		return -1;
	}
	if (ingest_imap_box_load(&b->box, sel->uidvalidity, sel->uidnext, sel->modseq,
				 ms.m, ms.n) < 0) {
		ingest_imap_msgs_free(&ms);
		return -1;
	}
	free(ms.m);   /* the flags strings now belong to the box */
	free(van);
	{
		struct ingest_imap_delta d = { 0 };

		d.put = calloc(b->box.n + 1, sizeof(*d.put));
		if (d.put == NULL)
			return -1;
		for (size_t i = 0; i < b->box.n; i++) {
			d.put[i].uid = b->box.msgs[i].uid;
			if ((d.put[i].flags = strdup(b->box.msgs[i].flags)) == NULL) {
				ingest_imap_delta_clear(&d);
				return -1;
			}
			d.n_put++;
		}
		if (ingest_imap_batch_box(batch, b->node, &b->box, true, &d) < 0) {
			ingest_imap_delta_clear(&d);
			return -1;
		}
	}
	if (resync_event) {
		/* not a replay of the mailbox: its state, and why */
		char *uri = node_uri(w, b->node, b->box.uidvalidity), reason[96];
		json_t *ev = uri != NULL ? ingest_imap_event_new(STATUS_EVENT, uri) : NULL;

		free(uri);
		if (ev == NULL)
			return -1;
		snprintf(reason, sizeof(reason), "UIDVALIDITY changed from %u to %u", old,
			 b->box.uidvalidity);
		json_object_set_new(ev, "vnd.mailpubsub.resync", json_string(reason));
		ingest_imap_event_add_counts(ev, &b->box, ingest_imap_box_unseen(&b->box));
		json_array_append_new(batch->events, ev);
		log_warn("imap source: %s/%s: %s: published as a resync", w->account,
			 b->node, reason);
	}
	return 0;
}

/* Brings b up to date, adding events and state to batch. 0, 1 when the
 * mailbox is not there (NO), -1 broken. */
static int sync_box(struct ingest_imap_watch *w, struct ingest_imap_wbox *b,
		    struct ingest_imap_batch *batch)
{
	struct ingest_imap_selected sel;
	struct ingest_imap_msgs ms = { 0 };
	struct ingest_imap_range *van = NULL;
	size_t n_van = 0;
	struct ingest_imap_changes ch;
	struct ingest_imap_delta delta = { 0 };
	char *uri;
	int r;

	if ((r = ingest_imap_session_examine(&w->link, b->node, &sel)) != 0)
		return r;
	log_debug("imap source: %s/%s: UIDVALIDITY %u UIDNEXT %u EXISTS %u "
		  "HIGHESTMODSEQ %llu; known %u %u %zu %llu", w->account, b->node,
		  sel.uidvalidity, sel.uidnext, sel.exists, (unsigned long long)sel.modseq,
		  b->box.uidvalidity, b->box.uidnext, b->box.n,
		  (unsigned long long)b->box.modseq);
	if (b->box.uidvalidity == 0)
		return baseline(w, b, &sel, batch, false);
	if (b->box.uidvalidity != sel.uidvalidity)
		return baseline(w, b, &sel, batch, true);
	/* HIGHESTMODSEQ moves with every change (RFC 7162): nothing to ask */
	if (w->link.condstore && sel.modseq != 0 && sel.modseq == b->box.modseq &&
	    sel.uidnext == b->box.uidnext && sel.exists == b->box.n)
		return 0;
	if (!w->link.condstore && sel.exists == 0 && b->box.n == 0 &&
	    sel.uidnext == b->box.uidnext)
		return 0;
	uri = node_uri(w, b->node, b->box.uidvalidity);
	if (uri == NULL) {
		log_warn("imap source: %s/%s: cannot be written as an IMAP URL; not watched",
			 w->account, b->node);
		return 1;
	}
	memset(&ch, 0, sizeof(ch));
	for (int attempt = 0; attempt < 2; attempt++) {
		bool changedsince = attempt == 0 && w->link.condstore && b->box.modseq > 0 &&
				    sel.modseq > 0;

		if (sel.exists > 0 &&
		    ingest_imap_session_fetch_flags(&w->link, changedsince ? b->box.modseq : 0,
				changedsince && w->link.qresync, &ms, &van, &n_van) < 0) {
			r = -1;
			break;
		}
		ch.fetched = ms.m;
		ch.n_fetched = ms.n;
		ch.complete = !changedsince || sel.exists == 0;
		ch.vanished = van;
		ch.n_vanished = n_van;
		/* libetpan counts the EXISTS that came meanwhile */
		ch.exists = ingest_imap_session_exists(&w->link, sel.exists);
		ch.uidnext = sel.uidnext;
		ch.modseq = sel.modseq;
		r = ingest_imap_diff(&b->box, &ch, uri, batch->events, &delta);
		ingest_imap_msgs_free(&ms);
		free(van);
		van = NULL;
		if (r != 1)
			break;
		log_debug("imap source: %s/%s: changes do not add up to %u messages: "
			  "fetching all", w->account, b->node, ch.exists);
	}
	free(uri);
	if (r < 0) {
		ingest_imap_delta_clear(&delta);
		return -1;
	}
	if (ingest_imap_batch_box(batch, b->node, &b->box, false, &delta) < 0) {
		ingest_imap_delta_clear(&delta);
		return -1;
	}
	return 0;
}

static size_t depth(const char *node)
{
	size_t d = 0;

	for (; *node != '\0'; node++)
		d += *node == '/';
	return d;
}

/* Did old -> new follow from the rename of an ancestor also in the pairs?
 * Then the node tree moves it with that ancestor (Cyrus too reports the
 * parent only). */
static bool implied_rename(char **olds, char **news, size_t n, size_t k)
{
	for (size_t i = 0; i < n; i++) {
		size_t lo = strlen(olds[i]), ln = strlen(news[i]);

		if (i == k)
			continue;
		if (strncmp(olds[k], olds[i], lo) == 0 && olds[k][lo] == '/' &&
		    strncmp(news[k], news[i], ln) == 0 && news[k][ln] == '/' &&
		    strcmp(olds[k] + lo, news[k] + ln) == 0)
			return true;
	}
	return false;
}

/* Renames a LIST diff found: the watched box olds[k] is now news[k]
 * (owned here until the box takes it), in LIST order. */
struct renames {
	char **olds, **news;
	size_t n;
};

/* The box that vanished from listed with this UIDVALIDITY, not paired yet:
 * the one a new name is a rename of. NULL: none. */
static struct ingest_imap_wbox *rename_source(struct ingest_imap_watch *w,
					      const struct ingest_imap_names *listed,
					      const struct renames *rn, uint32_t uidvalidity)
{
	for (size_t j = 0; j < w->n_boxes; j++) {
		bool paired = false;

		for (size_t k = 0; k < rn->n; k++)
			paired = paired || rn->olds[k] == w->boxes[j].node;
		if (w->boxes[j].box.uidvalidity == uidvalidity && !paired &&
		    !ingest_imap_names_has(listed, w->boxes[j].node) &&
		    strcmp(w->boxes[j].node, w->idle_node) != 0)
			return &w->boxes[j];
	}
	return NULL;
}

/* First start: what is there is the baseline, not news; poll_all takes it
 * silently, then records the account as known. */
static int list_baseline(struct ingest_imap_watch *w, const struct ingest_imap_names *listed)
{
	for (size_t i = 0; i < listed->n; i++) {
		if (owns(w, listed->v[i]) && wbox_find(w, listed->v[i]) == NULL &&
		    wbox_add(w, listed->v[i]) == NULL)
			return -1;
	}
	return 0;
}

/* New names: a rename (into rn) if one has a vanished mailbox's
 * UIDVALIDITY, else a MailboxCreate and a new, empty box. */
static int list_added(struct ingest_imap_watch *w, const struct ingest_imap_names *listed,
		      struct ingest_imap_batch *batch, struct renames *rn)
{
	for (size_t i = 0; i < listed->n; i++) {
		const char *node = listed->v[i];
		struct ingest_imap_selected sel;
		struct ingest_imap_wbox *b;
		char *uri;
		int r;

		if (!owns(w, node) || wbox_find(w, node) != NULL)
			continue;
		if ((r = ingest_imap_session_examine(&w->link, node, &sel)) < 0)
			return -1;
		if (r > 0)
			continue;   /* gone again already */
		b = rename_source(w, listed, rn, sel.uidvalidity);
		if (b != NULL) {
			struct ingest_imap_rec *rec =
				ingest_imap_batch_rec(batch, INGEST_IMAP_REC_BOX_RENAME, b->node);

			if (rec == NULL || (rec->new_node = strdup(node)) == NULL)
				return -1;
			rn->olds[rn->n] = b->node;
			rn->news[rn->n] = strdup(node);
			if (rn->news[rn->n] == NULL)
				return -1;
			rn->n++;
			continue;
		}
		uri = node_uri(w, node, sel.uidvalidity);
		if (uri == NULL)
			continue;
		if ((b = wbox_add(w, node)) == NULL) {
			free(uri);
			return -1;
		}
		/* known and empty: the sync that follows reports its content
		 * as new messages */
		b->box.uidvalidity = sel.uidvalidity;
		if (ingest_imap_batch_box(batch, node, &b->box, true, NULL) < 0) {
			free(uri);
			return -1;
		}
		json_array_append_new(batch->events, ingest_imap_event_new("MailboxCreate", uri));
		free(uri);
	}
	return 0;
}

/* The renames' events, parents first (the pairs are in LIST order); then
 * the boxes take their new names. */
static void list_renamed(struct ingest_imap_watch *w, struct ingest_imap_batch *batch,
			 struct renames *rn)
{
	for (size_t k = 0; k < rn->n; k++) {
		struct ingest_imap_wbox *b = wbox_find(w, rn->olds[k]);
		char *uri, *old_uri;

		if (b == NULL)
			continue;
		uri = node_uri(w, rn->news[k], b->box.uidvalidity);
		old_uri = node_uri(w, rn->olds[k], b->box.uidvalidity);
		if (uri != NULL && old_uri != NULL &&
		    !implied_rename(rn->olds, rn->news, rn->n, k)) {
			json_t *ev = ingest_imap_event_new("MailboxRename", uri);

			json_object_set_new(ev, "oldMailboxID", json_string(old_uri));
			json_array_append_new(batch->events, ev);
		}
		free(uri);
		free(old_uri);
	}
	for (size_t k = 0; k < rn->n; k++) {
		struct ingest_imap_wbox *b = wbox_find(w, rn->olds[k]);

		if (b != NULL) {
			free(b->node);
			b->node = rn->news[k];   /* taken */
			rn->news[k] = NULL;
		}
		rn->olds[k] = NULL;
	}
}

/* Vanished names: deleted, children first. */
static int list_deleted(struct ingest_imap_watch *w, const struct ingest_imap_names *listed,
			struct ingest_imap_batch *batch)
{
	for (;;) {
		struct ingest_imap_wbox *victim = NULL;
		char *uri;

		for (size_t j = 0; j < w->n_boxes; j++) {
			struct ingest_imap_wbox *b = &w->boxes[j];

			if (ingest_imap_names_has(listed, b->node) ||
			    strcmp(b->node, w->idle_node) == 0)
				continue;
			if (victim == NULL || depth(b->node) > depth(victim->node))
				victim = b;
		}
		if (victim == NULL)
			return 0;
		uri = node_uri(w, victim->node, victim->box.uidvalidity);
		if (uri != NULL)
			json_array_append_new(batch->events,
					      ingest_imap_event_new("MailboxDelete", uri));
		free(uri);
		if (ingest_imap_batch_rec(batch, INGEST_IMAP_REC_BOX_DELETE, victim->node) == NULL)
			return -1;
		wbox_remove(w, victim);
	}
}

/* The poller's LIST: differences to what it knew become mailbox events. */
static int list_diff(struct ingest_imap_watch *w)
{
	struct ingest_imap_names listed;
	struct ingest_imap_batch *batch;
	struct renames rn = { 0 };
	int ret = -1;

	if (ingest_imap_session_list(&w->link, &listed) < 0)
		return -1;
	if (listed.n == 0) {
		/* a glitch rather than an account without mailboxes: never
		 * delete everything on it */
		ingest_imap_names_free(&listed);
		return 0;
	}
	if ((batch = ingest_imap_batch_new(w)) == NULL) {
		ingest_imap_names_free(&listed);
		return -1;
	}
	if (!w->account_known) {
		ret = list_baseline(w, &listed);
		goto out;
	}
	rn.olds = calloc(w->n_boxes + 1, sizeof(*rn.olds));
	rn.news = calloc(w->n_boxes + 1, sizeof(*rn.news));
	if (rn.olds == NULL || rn.news == NULL)
		goto out;
	if (list_added(w, &listed, batch, &rn) < 0)
		goto out;
	list_renamed(w, batch, &rn);
	if (list_deleted(w, &listed, batch) < 0)
		goto out;
	ret = ingest_imap_queue_commit(w->queue, batch, &w->cond);
	batch = NULL;
out:
	if (batch != NULL)
		ingest_imap_batch_free(batch);
	for (size_t k = 0; k < rn.n; k++)
		free(rn.news[k]);
	free(rn.olds);
	free(rn.news);
	ingest_imap_names_free(&listed);
	return ret;
}

/* Syncs one box in a batch of its own. */
static int sync_commit(struct ingest_imap_watch *w, struct ingest_imap_wbox *b)
{
	struct ingest_imap_batch *batch = ingest_imap_batch_new(w);
	int r;

	if (batch == NULL)
		return -1;
	r = sync_box(w, b, batch);
	if (r < 0) {
		ingest_imap_batch_free(batch);
		return -1;
	}
	return ingest_imap_queue_commit(w->queue, batch, &w->cond) < 0 ? -1 : r;
}

/* The poller's round: LIST, then every mailbox but the IDLEd one (synced
 * right after); on the first start all of them, silently, and only then is
 * the account recorded as known: mailboxes found later are news. */
static int poll_all(struct ingest_imap_watch *w)
{
	struct ingest_imap_batch *batch;

	if (list_diff(w) < 0)
		return -1;
	for (size_t i = 0; i < w->n_boxes && !stopping(w); i++) {
		if (w->account_known && strcmp(w->boxes[i].node, w->idle_node) == 0)
			continue;
		if (sync_commit(w, &w->boxes[i]) < 0)
			return -1;
	}
	/* nothing listed (an account not created yet, a glitch) is no
	 * baseline: mailboxes that appear later would be taken as news */
	if (w->account_known || stopping(w))
		return 0;
	{
		size_t known = 0;

		for (size_t i = 0; i < w->n_boxes; i++)
			known += w->boxes[i].box.uidvalidity != 0;
		if (known == 0)
			return 0;
	}
	if ((batch = ingest_imap_batch_new(w)) == NULL ||
	    ingest_imap_batch_rec(batch, INGEST_IMAP_REC_ACCOUNT, NULL) == NULL) {
		ingest_imap_batch_free(batch);
		return -1;
	}
	if (ingest_imap_queue_commit(w->queue, batch, &w->cond) < 0)
		return -1;
	w->account_known = true;
	log_info("imap source: %s: %zu mailboxes taken as they are", w->account,
		 w->n_boxes);
	return 0;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sleeps up to ms unless stopping. */
static void nap(struct ingest_imap_watch *w, uint64_t ms)
{
	ingest_imap_queue_nap(w->queue, &w->cond, ms);
}

/* One connection's life: sync, IDLE, sync... until something breaks. */
static int watch(struct ingest_imap_watch *w)
{
	uint64_t interval = (uint64_t)w->config->imap_source_poll_interval * 1000;
	uint64_t next_poll = 0;
	struct ingest_imap_wbox *idle;

	while (!stopping(w)) {
		uint64_t now = mono_ms(), wait;
		int r;

		if (w->poller && now >= next_poll) {
			if (poll_all(w) < 0)
				return -1;
			next_poll = mono_ms() + interval;
		} else if (!w->poller && now >= next_poll) {
			next_poll = now + interval;
		}
		idle = wbox_find(w, w->idle_node);
		if (idle == NULL && (idle = wbox_add(w, w->idle_node)) == NULL)
			return -1;
		r = sync_commit(w, idle);
		if (r < 0)
			return -1;
		now = mono_ms();
		wait = next_poll > now ? next_poll - now : 0;
		if (r > 0 || !ingest_imap_session_has_idle(&w->link)) {
			/* no such mailbox, or no IDLE: poll it */
			nap(w, wait);
			continue;
		}
		if (wait > IDLE_MAX_MS)
			wait = IDLE_MAX_MS;
		if (ingest_imap_session_idle(&w->link, (unsigned)wait) < 0)
			return -1;
	}
	return 0;
}

/* After a failure part way: what the thread holds may be ahead of the
 * store (a LIST diff or sync not committed); go on from the store's. */
static void request_reload(struct ingest_imap_watch *w)
{
	struct ingest_imap_batch *b = ingest_imap_batch_new(w);

	if (b == NULL)
		return;
	b->reload = true;
	ingest_imap_queue_commit(w->queue, b, &w->cond);
}

static void watcher_main(void *arg)
{
	struct ingest_imap_watch *w = arg;
	uint64_t retry = 1000;

	while (!stopping(w)) {
		if (session_up(w) == 0) {
			uint64_t t0 = mono_ms();

			if (watch(w) < 0 && !stopping(w))
				request_reload(w);
			session_drop(w);
			/* a session that worked a while starts over quickly */
			if (mono_ms() - t0 > 10000)
				retry = 1000;
		}
		if (stopping(w))
			break;
		log_info("imap source: %s: reconnecting in %llu ms", w->account,
			 (unsigned long long)retry);
		nap(w, retry);
		retry = retry * 2 < RETRY_MAX_MS ? retry * 2 : RETRY_MAX_MS;
	}
	session_drop(w);
}

int ingest_imap_watch_new(struct ingest_imap_queue *queue, struct imap_client *imap,
			  const struct config *config, char sep, const char *account,
			  const char *idle_node, bool poller, const char *mailboxes,
			  struct ingest_imap_watch **w_r, const char **error_r)
{
	struct ingest_imap_watch *w = calloc(1, sizeof(*w));
	char *copy, *save = NULL;

	if (w == NULL || uv_cond_init(&w->cond) != 0) {
		free(w);
		*error_r = "out of memory";
		return -1;
	}
	w->queue = queue;
	w->imap = imap;
	w->config = config;
	w->sep = sep;
	w->poller = poller;
	w->account = strdup(account);
	w->idle_node = strdup(idle_node);
	w->link.account = w->account;
	w->link.step_ms = config->imap_timeout_ms != 0 ? config->imap_timeout_ms : 10000;
	w->link.stop = &queue->stop;
	copy = strdup(mailboxes);
	w->skip = calloc(strlen(mailboxes) + 1, sizeof(char *));
	if (w->account == NULL || w->idle_node == NULL || copy == NULL || w->skip == NULL) {
		free(copy);
		ingest_imap_watch_free(&w);
		*error_r = "out of memory";
		return -1;
	}
	for (char *t = strtok_r(copy, " \t,", &save); t != NULL;
	     t = strtok_r(NULL, " \t,", &save)) {
		if (strcmp(t, idle_node) != 0 && (w->skip[w->n_skip] = strdup(t)) != NULL)
			w->n_skip++;
	}
	free(copy);
	*w_r = w;
	return 0;
}

int ingest_imap_watch_start(struct ingest_imap_watch *w)
{
	if (uv_thread_create(&w->thread, watcher_main, w) != 0)
		return -1;
	w->started = true;
	return 0;
}

bool ingest_imap_watch_connected(const struct ingest_imap_watch *w)
{
	return w->link.imap != NULL;
}

void ingest_imap_watch_interrupt(struct ingest_imap_watch *w)
{
	if (w->link.imap != NULL)
		imap_session_interrupt(w->link.imap);
	uv_cond_broadcast(&w->cond);
}

void ingest_imap_watch_free(struct ingest_imap_watch **watcher)
{
	struct ingest_imap_watch *w = *watcher;

	if (w == NULL)
		return;
	*watcher = NULL;
	if (w->started)
		uv_thread_join(&w->thread);
	wboxes_free(w);
	for (size_t i = 0; i < w->n_skip; i++)
		free(w->skip[i]);
	free(w->skip);
	free(w->account);
	free(w->idle_node);
	uv_cond_destroy(&w->cond);
	free(w);
}
