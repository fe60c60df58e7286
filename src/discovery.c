#include "discovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "log.h"
#include "mailbox_uri.h"
#include "node_tree.h"
#include "publisher.h"
#include "service.h"

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
	struct waiter *waiters;
	uv_timer_t *deadline;    /* while someone waits; owned, freed when closed */
};

struct discovery {
	struct service *service;
	struct imap_client *imap;
	uv_timer_t timer;
	struct listing *in_flight;
	bool closing, timer_closed;
};

static void discovery_tick(uv_timer_t *timer);

int discovery_new(uv_loop_t *loop, struct service *service,
		  struct imap_client *imap, struct discovery **discovery_r,
		  const char **error_r)
{
	struct discovery *d = calloc(1, sizeof(*d));
	unsigned interval = service->config->imap_list_interval;

	if (d == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	d->service = service;
	d->imap = imap;
	uv_timer_init(loop, &d->timer);
	d->timer.data = d;
	/* at once, then on the schedule */
	uv_timer_start(&d->timer, discovery_tick, 0, interval * 1000ULL);
	*discovery_r = d;
	return 0;
}

void discovery_reschedule(struct discovery *d)
{
	uint64_t ms = d->service->config->imap_list_interval * 1000ULL;

	if (d->closing || ms == uv_timer_get_repeat(&d->timer))
		return;
	uv_timer_stop(&d->timer);
	if (ms > 0)
		uv_timer_start(&d->timer, discovery_tick, ms, ms);
	log_info("discovery: LIST every %llu s", (unsigned long long)ms / 1000);
}

static void maybe_free(struct discovery *d)
{
	if (d->closing && d->timer_closed && d->in_flight == NULL)
		free(d);
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
	struct service *service = d->service;
	char sep = service->config->hierarchy_separator[0];
	char *uri = mailbox_uri_build("mailpubsub", account, node, sep, 0);
	struct event *ev;
	const char *error;
	char *json;
	long long seq;

	if (uri == NULL)
		return;
	if (asprintf(&json, "{\"event\":\"MailboxDelete\",\"uri\":\"%s\","
		     "\"vnd.mailpubsub.origin\":\"IMAP LIST\"}", uri) < 0) {
		free(uri);
		return;
	}
	free(uri);
	if (event_decode(json, strlen(json), sep, &ev, &error) == 0) {
		journal_append(service->store, "imap-list", ev, json, strlen(json),
			       service_now_us(), &seq);
		event_free(&ev);
	}
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
	free(l->account);
	free(l);
	maybe_free(d);
}

/* Did events about account arrive while LIST was under way? Then the
 * answer may predate them (a folder created or renamed meanwhile), and
 * nothing may be concluded from a name missing in it. */
static bool changed_since(struct store *store, const char *account, long long seq)
{
	static const char sql[] =
		"SELECT 1 FROM journal WHERE seq > ? AND account = ? LIMIT 1";
	sqlite3_stmt *stmt = store_stmt(store, sql);
	bool changed;

	if (stmt == NULL)
		return true;
	sqlite3_bind_int64(stmt, 1, seq);
	sqlite3_bind_text(stmt, 2, account, -1, SQLITE_STATIC);
	changed = sqlite3_step(stmt) == SQLITE_ROW;
	sqlite3_reset(stmt);
	return changed;
}

static void apply_listing(struct discovery *d, const struct listing *l,
			  char **nodes, size_t n)
{
	struct service *service = d->service;
	const char *account = l->account;
	struct known k = { nodes, n, d, account, 0 };
	long long now = service_now_us();

	if (store_begin(service->store) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		node_tree_touch(service->store, account, nodes[i], NULL, 0, now);
	/* an empty answer is more likely a glitch than an account without
	 * mailboxes: never empty a whole tree on it */
	if (n > 0 && !changed_since(service->store, account, l->journal_seq))
		node_tree_all(service->store, account, check_known, &k);
	if (store_commit(service->store) < 0)
		return;
	log_info("discovery: %s: %zu mailboxes listed, %u gone",
		 *account != '\0' ? account : "(shared)", n, k.gone);
	if (k.gone > 0)
		publisher_kick(service->publisher);
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
	struct store *store = l->discovery->service->store;
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
		 l->discovery->service->config->imap_timeout_ms);
	answer_waiters(l, true);
}

static void listed_cb(void *ctx, enum imap_result r, char **nodes, size_t n)
{
	struct listing *l = ctx;
	struct discovery *d = l->discovery;

	if (r == IMAP_OK && !d->closing)
		apply_listing(d, l, nodes, n);
	else if (r != IMAP_OK)
		log_info("discovery: LIST %s failed: %s", l->account,
			 r == IMAP_NO ? "NO" : imap_client_last_error(d->imap));
	answer_waiters(l, r != IMAP_OK || d->closing);
	listing_free(l);
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
static struct listing *listing_new(struct discovery *d, const char *account)
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
	l->journal_seq = journal_last_seq(d->service->store);
	l->next = d->in_flight;
	d->in_flight = l;
	return l;
}

static void listing_send(struct listing *l)
{
	imap_client_list(l->discovery->imap, l->account, listed_cb, l);
}

void discovery_account(struct discovery *d, const char *account)
{
	struct listing *l;

	if (d == NULL || d->closing || find_listing(d, account) != NULL)
		return;
	l = listing_new(d, account);
	if (l != NULL)
		listing_send(l);
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
		       d->service->config->imap_timeout_ms, 0);
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
		l = listing_new(d, account);
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

static int list_account(void *context, const char *account)
{
	discovery_account(context, account);
	return 0;
}

static void discovery_tick(uv_timer_t *timer)
{
	struct discovery *d = timer->data;
	const struct config *config = d->service->config;

	node_tree_accounts(d->service->store, list_account, d);
	for (unsigned i = 0; i < config->account_map_count; i++)
		discovery_account(d, config->account_map[i].account);
}
