#include "base/clock.h"
#include "ingest/discovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/sink.h"
#include "store/journal.h"
#include "store/journal_query.h"
#include "base/log.h"
#include "model/mailbox_uri.h"
#include "store/node_tree.h"

/* LISTs in a row that could not be asked (server down, backing off):
 * then the rest of the sweep would only fail fast too; the next one
 * tries again. */
#define SWEEP_GIVE_UP 10

/* A request waiting for an account's LIST (discovery_lookup). */
struct waiter {
	struct waiter *next;
	char *node;              /* NULL: any mailbox of the account */
	discovery_cb *cb;
	void *context;
};

struct listing {
	struct listing *next;
	struct discovery *discovery;
	char *account;
	long long journal_seq;   /* the journal's end when LIST was sent */
	bool sweep;              /* part of the sweep, else asked for */
	struct waiter *waiters;
	uv_timer_t *deadline;    /* while someone waits; owned, freed when closed */
};

/* What a sweep found, for its one summary line. */
struct sweep_totals {
	unsigned accounts, failed, gone;
	size_t mailboxes, added;
	unsigned tempfail_in_row;
	bool abandoned;
};

struct discovery {
	const struct config *config;
	struct store *store;
	struct sink *sink;
	struct imap_client *imap;
	const struct imap_backends *backends;   /* [backends]; NULL: imap for all */
	uv_timer_t timer;
	struct listing *in_flight;
	/* The sweep under way: the [account_map] accounts first, then the
	 * store's accounts in byte order after `cursor`, at most
	 * `concurrency` LISTs outstanding, in the background. */
	bool sweeping, filling;
	unsigned next_mapped;
	char *cursor;
	bool store_done;
	unsigned outstanding, concurrency;
	long long sweep_started_us;
	struct sweep_totals totals;
	bool closing, timer_closed;
};

static void discovery_tick(uv_timer_t *timer);

void discovery_set_backends(struct discovery *d, const struct imap_backends *backends)
{
	d->backends = backends;
}

int discovery_new(uv_loop_t *loop, const struct config *config,
		  struct store *store, struct sink *sink,
		  struct imap_client *imap, struct discovery **discovery_r,
		  const char **error_r)
{
	struct discovery *d = calloc(1, sizeof(*d));
	unsigned long long interval_ms = config->imap_list_interval * 1000ULL;

	if (d == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	d->config = config;
	d->store = store;
	d->sink = sink;
	d->imap = imap;
	d->concurrency = config->imap_list_concurrency > 0 ? config->imap_list_concurrency : 1;
	uv_timer_init(loop, &d->timer);
	d->timer.data = d;
	if (config->imap_list_at_start)
		uv_timer_start(&d->timer, discovery_tick, 0, interval_ms);
	else if (interval_ms > 0)
		uv_timer_start(&d->timer, discovery_tick, interval_ms, interval_ms);
	*discovery_r = d;
	return 0;
}

void discovery_reschedule(struct discovery *d)
{
	uint64_t ms = d->config->imap_list_interval * 1000ULL;

	if (d->closing || ms == uv_timer_get_repeat(&d->timer))
		return;
	uv_timer_stop(&d->timer);
	if (ms > 0)
		uv_timer_start(&d->timer, discovery_tick, ms, ms);
	log_info("discovery: LIST every %llu s", (unsigned long long)ms / 1000);
}

static void maybe_free(struct discovery *d)
{
	if (d->closing && d->timer_closed && d->in_flight == NULL) {
		free(d->cursor);
		free(d);
	}
}

static void timer_closed(uv_handle_t *handle)
{
	struct discovery *d = handle->data;

	d->timer_closed = true;
	maybe_free(d);
}

static void answer_waiters(struct listing *l, bool tempfail);

void discovery_close(struct discovery **discovery)
{
	struct discovery *d = *discovery;

	if (d == NULL)
		return;
	*discovery = NULL;
	d->closing = true;
	/* nobody waits for answers that would come after shutdown began */
	for (struct listing *l = d->in_flight; l != NULL; l = l->next)
		answer_waiters(l, true);
	uv_close((uv_handle_t *)&d->timer, timer_closed);
}

struct known {
	char **nodes;
	size_t n;
	struct discovery *d;
	const char *account;
	unsigned gone;
};

static bool listed(char **nodes, size_t n, const char *node)
{
	size_t lo = 0, hi = n;

	/* imap_client_list returns the nodes sorted */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = strcmp(nodes[mid], node);

		if (cmp == 0)
			return true;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* A node the store no longer has goes the way a deleted mailbox goes: a
 * MailboxDelete through the journal, so its subscribers are told. */
static void journal_gone(struct discovery *d, const char *account, const char *node)
{
	char sep = d->config->hierarchy_separator[0];
	char *uri = mailbox_uri_build("mailpubsub", account, node, sep, 0);
	struct sink_input in = { .source = "imap-list", .received_us = clock_now_us() };
	const char *error;
	char *json;

	if (uri == NULL)
		return;
	if (asprintf(&json, "{\"event\":\"MailboxDelete\",\"uri\":\"%s\","
		     "\"vnd.mailpubsub.origin\":\"IMAP LIST\"}", uri) < 0) {
		free(uri);
		return;
	}
	free(uri);
	in.json = json;
	in.json_len = strlen(json);
	if (sink_submit(d->sink, &in, NULL, &error) < 0)
		log_error("discovery: cannot journal the deletion of %s/%s: %s",
			  account, node, error);
	free(json);
}

/* True if a listed mailbox lies below node: then node is an ancestor we
 * keep for the tree's sake even if the store has no mailbox by that name. */
static bool has_listed_descendant(char **nodes, size_t n, const char *node)
{
	size_t len = strlen(node);

	for (size_t i = 0; i < n; i++) {
		if (strncmp(nodes[i], node, len) == 0 && nodes[i][len] == '/')
			return true;
	}
	return false;
}

static int check_known(void *context, const char *node)
{
	struct known *k = context;

	if (!listed(k->nodes, k->n, node) &&
	    !has_listed_descendant(k->nodes, k->n, node)) {
		journal_gone(k->d, k->account, node);
		k->gone++;
	}
	return 0;
}

static void listing_free(struct listing *l)
{
	struct discovery *d = l->discovery;

	for (struct listing **p = &d->in_flight; *p != NULL; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			break;
		}
	}
	if (l->sweep)
		d->outstanding--;
	free(l->account);
	free(l);
	maybe_free(d);
}

/* Did events about account arrive while LIST was under way? Then the
 * answer may predate them (a folder created or renamed meanwhile), and
 * nothing may be concluded from a name missing in it. */
static bool changed_since(struct store *store, const char *account, long long seq)
{
	return journal_query_changed_after(store, account, seq, false);
}

static void apply_listing(struct discovery *d, const struct listing *l,
			  char **nodes, size_t n)
{
	struct store *store = d->store;
	const char *account = l->account;
	struct known k = { nodes, n, d, account, 0 };
	long long now = clock_now_us();
	long long before;
	const char *error;
	size_t added;

	/* the deletions go to the sink's listeners only once committed */
	if (sink_begin(d->sink) < 0)
		return;
	before = node_tree_count(store, account);
	for (size_t i = 0; i < n; i++)
		node_tree_touch(store, account, nodes[i], NULL, 0, now);
	added = before >= 0 ? (size_t)(node_tree_count(store, account) - before) : 0;
	/* an empty answer is more likely a glitch than an account without
	 * mailboxes: never empty a whole tree on it */
	if (n > 0 && !changed_since(store, account, l->journal_seq))
		node_tree_all(store, account, check_known, &k);
	if (sink_commit(d->sink, &error) < 0)
		return;
	/* the administrator's view of one account: [log] level = debug */
	log_debug("discovery: %s: %zu mailboxes listed, %u gone, %zu new (%s)",
		  *account != '\0' ? account : "(shared)", n, k.gone, added,
		  l->sweep ? "sweep" : "asked");
	if (l->sweep) {
		d->totals.mailboxes += n;
		d->totals.added += added;
		d->totals.gone += k.gone;
	}
}

static int stop_at_first(void *context, const char *node)
{
	(void)node;
	*(bool *)context = true;
	return 1;
}

static bool known(struct store *store, const char *account, const char *node)
{
	bool any = false;

	if (node != NULL)
		return node_tree_exists(store, account, node);
	node_tree_children(store, account, NULL, stop_at_first, &any);
	return any;
}

static void free_handle(uv_handle_t *handle)
{
	free(handle);
}

/* Answers everyone waiting for l: from the tree as the LIST left it, or
 * (tempfail) that the store could not tell. */
static void answer_waiters(struct listing *l, bool tempfail)
{
	struct store *store = l->discovery->store;
	struct waiter *w = l->waiters;

	l->waiters = NULL;
	if (l->deadline != NULL) {
		uv_close((uv_handle_t *)l->deadline, free_handle);
		l->deadline = NULL;
	}
	while (w != NULL) {
		struct waiter *next = w->next;

		w->cb(w->context, tempfail ? DISCOVERY_TEMPFAIL :
		      known(store, l->account, w->node) ? DISCOVERY_FOUND :
		      DISCOVERY_NOT_FOUND);
		free(w->node);
		free(w);
		w = next;
	}
}

static void deadline_passed(uv_timer_t *timer)
{
	struct listing *l = timer->data;

	log_warn("discovery: %s: no LIST answer within %u ms; waiting requests get a temporary error",
		 *l->account != '\0' ? l->account : "(shared)",
		 l->discovery->config->imap_timeout_ms);
	answer_waiters(l, true);
}

static void sweep_fill(struct discovery *d);

static void listed_cb(void *ctx, enum imap_result r, char **nodes, size_t n)
{
	struct listing *l = ctx;
	struct discovery *d = l->discovery;
	bool closing = d->closing, sweep = l->sweep;

	if (r == IMAP_OK && !closing) {
		apply_listing(d, l, nodes, n);
	} else if (r != IMAP_OK) {
		log_debug("discovery: LIST %s failed: %s", l->account,
			  r == IMAP_NO ? "NO" : imap_client_last_error(
				  imap_backends_pick(d->backends, l->account, d->imap)));
		if (sweep)
			d->totals.failed++;
	}
	if (sweep)
		d->totals.tempfail_in_row = r == IMAP_TEMPFAIL ?
					    d->totals.tempfail_in_row + 1 : 0;
	answer_waiters(l, r != IMAP_OK || closing);
	/* may free d when closing */
	listing_free(l);
	if (!closing && sweep && !d->filling)
		sweep_fill(d);
}

static struct listing *find_listing(struct discovery *d, const char *account)
{
	for (struct listing *l = d->in_flight; l != NULL; l = l->next) {
		if (strcmp(l->account, account) == 0)
			return l;
	}
	return NULL;
}

/* LIST wildcards would turn an account into a pattern over others. */
static bool listable(const char *account)
{
	return strpbrk(account, "*%") == NULL;
}

/* A listing of account, not sent yet: listing_send does that, after the
 * caller has put its waiter on it (the answer may come at once). */
static struct listing *listing_new(struct discovery *d, const char *account,
				   bool sweep)
{
	struct listing *l;

	if (!listable(account))
		return NULL;
	l = calloc(1, sizeof(*l));
	if (l == NULL || (l->account = strdup(account)) == NULL) {
		free(l);
		return NULL;
	}
	l->discovery = d;
	l->sweep = sweep;
	l->journal_seq = journal_last_seq(d->store);
	l->next = d->in_flight;
	d->in_flight = l;
	if (sweep)
		d->outstanding++;
	return l;
}

/* A sweep's LIST waits behind every other IMAP question; one asked for by
 * a request does not. */
static void listing_send(struct listing *l)
{
	struct discovery *d = l->discovery;

	/* [backends]: only the account's own server lists its mailboxes */
	struct imap_client *imap = imap_backends_pick(d->backends, l->account, d->imap);

	if (l->sweep)
		imap_client_list_background(imap, l->account, listed_cb, l);
	else
		imap_client_list(imap, l->account, listed_cb, l);
}

/* Starts a LIST of account unless one is under way; false if not started. */
static bool start_listing(struct discovery *d, const char *account, bool sweep)
{
	struct listing *l;

	if (find_listing(d, account) != NULL)
		return false;
	l = listing_new(d, account, sweep);
	if (l == NULL)
		return false;
	listing_send(l);
	return true;
}

void discovery_account(struct discovery *d, const char *account)
{
	if (d == NULL || d->closing)
		return;
	/* asked for by a request: not behind the sweep */
	start_listing(d, account, false);
}

/* Bounds the wait of l's waiters to the IMAP timeout. */
static int start_deadline(struct listing *l)
{
	struct discovery *d = l->discovery;

	if (l->deadline != NULL)
		return 0;
	l->deadline = malloc(sizeof(*l->deadline));
	if (l->deadline == NULL)
		return -1;
	uv_timer_init(d->timer.loop, l->deadline);
	l->deadline->data = l;
	uv_timer_start(l->deadline, deadline_passed,
		       d->config->imap_timeout_ms, 0);
	return 0;
}

void discovery_lookup(struct discovery *d, struct store *store,
		      const char *account, const char *node,
		      discovery_cb *cb, void *context)
{
	struct listing *l;
	struct waiter *w;
	bool fresh = false;

	if (known(store, account, node)) {
		cb(context, DISCOVERY_FOUND);
		return;
	}
	if (d == NULL || !listable(account)) {
		cb(context, DISCOVERY_NOT_FOUND);
		return;
	}
	if (d->closing) {
		cb(context, DISCOVERY_TEMPFAIL);
		return;
	}
	l = find_listing(d, account);
	if (l == NULL) {
		l = listing_new(d, account, false);
		fresh = true;
	}
	w = l != NULL ? calloc(1, sizeof(*w)) : NULL;
	if (w == NULL || (node != NULL && (w->node = strdup(node)) == NULL) ||
	    start_deadline(l) < 0) {
		if (w != NULL)
			free(w->node);
		free(w);
		if (fresh && l != NULL)
			listing_free(l);
		cb(context, DISCOVERY_TEMPFAIL);
		return;
	}
	w->cb = cb;
	w->context = context;
	w->next = l->waiters;
	l->waiters = w;
	log_debug("discovery: %s: %s asked for; %s", *account != '\0' ? account : "(shared)",
		  node != NULL ? node : "the account",
		  fresh ? "LIST on demand" : "waiting for the LIST under way");
	if (fresh)
		listing_send(l);
}

static bool mapped(const struct config *config, const char *account)
{
	for (unsigned i = 0; i < config->account_map_count; i++) {
		if (strcmp(config->account_map[i].account, account) == 0)
			return true;
	}
	return false;
}

/* The sweep's next account (newly allocated), NULL at its end. The store
 * is walked by a cursor, so accounts learned during the sweep are in it
 * and no list of 100k accounts is held in memory. */
static char *sweep_next_account(struct discovery *d)
{
	const struct config *config = d->config;

	if (d->next_mapped < config->account_map_count)
		return strdup(config->account_map[d->next_mapped++].account);
	while (!d->store_done) {
		char *account = node_tree_next_account(d->store, d->cursor);

		free(d->cursor);
		d->cursor = account;
		if (account == NULL)
			d->store_done = true;
		else if (!mapped(config, account))
			return strdup(account);
	}
	return NULL;
}

static void sweep_done(struct discovery *d)
{
	const struct sweep_totals *t = &d->totals;
	double seconds = (double)(clock_now_us() - d->sweep_started_us) / 1e6;

	d->sweeping = false;
	free(d->cursor);
	d->cursor = NULL;
	if (t->abandoned)
		log_warn("discovery: sweep given up after %u accounts, %zu mailboxes "
			 "(%zu new), %u gone in %.1f s: %u LISTs in a row could not be "
			 "asked (%s)", t->accounts, t->mailboxes, t->added, t->gone,
			 seconds, t->tempfail_in_row, imap_client_last_error(d->imap));
	else if (t->failed > 0)
		log_warn("discovery: swept %u accounts, %zu mailboxes (%zu new), %u gone "
			 "in %.1f s; LIST failed for %u (debug lines name them)",
			 t->accounts, t->mailboxes, t->added, t->gone, seconds, t->failed);
	else
		log_info("discovery: swept %u accounts, %zu mailboxes (%zu new), %u gone "
			 "in %.1f s", t->accounts, t->mailboxes, t->added, t->gone, seconds);
}

/* Keeps `concurrency` sweep LISTs outstanding until none is left. */
static void sweep_fill(struct discovery *d)
{
	/* a LIST that fails at once calls back into here: loop, not recurse */
	d->filling = true;
	while (d->sweeping && d->outstanding < d->concurrency) {
		char *account;

		if (d->totals.tempfail_in_row >= SWEEP_GIVE_UP) {
			d->totals.abandoned = true;
			break;
		}
		account = sweep_next_account(d);
		if (account == NULL)
			break;
		if (start_listing(d, account, true))
			d->totals.accounts++;
		free(account);
	}
	d->filling = false;
	if (d->sweeping && d->outstanding == 0)
		sweep_done(d);
}

static void discovery_tick(uv_timer_t *timer)
{
	struct discovery *d = timer->data;

	if (d->sweeping) {
		log_info("discovery: the sweep started %.0f s ago is still under way; "
			 "not starting another", (double)(clock_now_us() -
							 d->sweep_started_us) / 1e6);
		return;
	}
	memset(&d->totals, 0, sizeof(d->totals));
	d->sweeping = true;
	d->next_mapped = 0;
	d->store_done = false;
	d->sweep_started_us = clock_now_us();
	sweep_fill(d);
}
