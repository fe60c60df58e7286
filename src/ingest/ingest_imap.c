#include "base/clock.h"
#include "ingest/ingest_imap.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <libetpan/libetpan.h>

#include "base/config.h"
#include "model/event.h"
#include "imap/imap_client.h"
#include "imap/imap_command.h"
#include "imap/imap_name.h"
#include "store/imap_source_state.h"
#include "store/journal.h"
#include "base/log.h"
#include "store/node_tree.h"
#include "handlers/service.h"
#include "store/store.h"

#define SOURCE_NAME "imap"
#define STATUS_EVENT "vnd.mailpubsub.MailboxStatus"
/* reconnecting after a failure: 1 s, doubling up to this */
#define RETRY_MAX_MS 60000u
/* RFC 2177: re-issue IDLE at least every 29 minutes */
#define IDLE_MAX_MS (29u * 60u * 1000u)

/* ==== the pure part ==================================================== */

/* A space separated list split into words (pointers into buf). */
struct words {
	char *buf;
	char **w;
	size_t n;
};

static void words_free(struct words *ws)
{
	free(ws->buf);
	free(ws->w);
	memset(ws, 0, sizeof(*ws));
}

static int words_split(const char *s, struct words *ws)
{
	char *save = NULL;

	memset(ws, 0, sizeof(*ws));
	ws->buf = strdup(s != NULL ? s : "");
	ws->w = calloc(strlen(ws->buf != NULL ? ws->buf : "") / 2 + 1, sizeof(char *));
	if (ws->buf == NULL || ws->w == NULL) {
		words_free(ws);
		return -1;
	}
	for (char *t = strtok_r(ws->buf, " ", &save); t != NULL;
	     t = strtok_r(NULL, " ", &save))
		ws->w[ws->n++] = t;
	return 0;
}

/* IMAP flags and keywords compare case-insensitively (RFC 3501 2.3.2) */
static bool words_has(const struct words *ws, const char *word)
{
	for (size_t i = 0; i < ws->n; i++) {
		if (strcasecmp(ws->w[i], word) == 0)
			return true;
	}
	return false;
}

/* The words joined by spaces; "" for none. */
static char *words_join(char **w, size_t n)
{
	size_t len = 1;
	char *out, *p;

	for (size_t i = 0; i < n; i++)
		len += strlen(w[i]) + 1;
	out = p = malloc(len);
	if (out == NULL)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			*p++ = ' ';
		strcpy(p, w[i]);
		p += strlen(p);
	}
	return out;
}

static int cmp_word(const void *a, const void *b)
{
	int c = strcasecmp(*(char *const *)a, *(char *const *)b);

	return c != 0 ? c : strcmp(*(char *const *)a, *(char *const *)b);
}

char *ingest_imap_flags_normalize(const char *flags)
{
	struct words ws;
	size_t n = 0;
	char *out;

	if (words_split(flags, &ws) < 0)
		return NULL;
	if (ws.n > 0)
		qsort(ws.w, ws.n, sizeof(*ws.w), cmp_word);
	for (size_t i = 0; i < ws.n; i++) {
		if (strcasecmp(ws.w[i], "\\Recent") == 0 ||
		    (n > 0 && strcasecmp(ws.w[n - 1], ws.w[i]) == 0))
			continue;
		ws.w[n++] = ws.w[i];
	}
	out = words_join(ws.w, n);
	words_free(&ws);
	return out;
}

/* RFC 3986 unreserved characters stay; everything else is %XX. */
static void pct_append(char **p, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			*(*p)++ = (char)c;
		} else {
			*(*p)++ = '%';
			*(*p)++ = hex[c >> 4];
			*(*p)++ = hex[c & 15];
		}
	}
}

char *ingest_imap_uri(const char *host, const char *account, const char *node,
		      char sep, uint32_t uidvalidity, uint32_t uid)
{
	size_t cap = 3 * (strlen(host) + strlen(account) + strlen(node)) + 64;
	char *out = malloc(cap), *p = out, *raw = malloc(strlen(node) + 1);
	const char *level = node;

	if (out == NULL || raw == NULL) {
		free(out);
		free(raw);
		return NULL;
	}
	p += sprintf(p, "imap://");
	pct_append(&p, account, strlen(account));
	*p++ = '@';
	strcpy(p, host);
	p += strlen(p);
	*p++ = '/';
	/* node levels are UTF-8 with '/' and '%' written %2F and %25 */
	for (;;) {
		size_t len = strcspn(level, "/");
		size_t n = 0;

		for (size_t i = 0; i < len; i++) {
			if (i + 3 <= len && strncasecmp(level + i, "%2F", 3) == 0) {
				raw[n++] = '/';
				i += 2;
			} else if (i + 3 <= len && strncasecmp(level + i, "%25", 3) == 0) {
				raw[n++] = '%';
				i += 2;
			} else {
				raw[n++] = level[i];
			}
		}
		/* the decoder splits the path on sep after decoding it */
		if (memchr(raw, sep, n) != NULL) {
			free(out);
			free(raw);
			return NULL;
		}
		pct_append(&p, raw, n);
		level += len;
		if (*level == '\0')
			break;
		*p++ = sep;
		level++;
	}
	*p = '\0';
	free(raw);
	if (uidvalidity != 0)
		p += sprintf(p, ";UIDVALIDITY=%u", uidvalidity);
	if (uid != 0)
		sprintf(p, "/;UID=%u", uid);
	return out;
}

char *ingest_imap_uidset(const uint32_t *uids, size_t n)
{
	char *out = malloc(n * 22 + 1), *p = out;

	if (out == NULL)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		if (p != out)
			*p++ = ',';
		if (j > i)
			p += sprintf(p, "%u:%u", uids[i], uids[j]);
		else
			p += sprintf(p, "%u", uids[i]);
		i = j + 1;
	}
	return out;
}

static int cmp_msg(const void *a, const void *b)
{
	uint32_t x = ((const struct ingest_imap_msg *)a)->uid;
	uint32_t y = ((const struct ingest_imap_msg *)b)->uid;

	return x < y ? -1 : x > y;
}

static struct ingest_imap_msg *msgs_find(struct ingest_imap_msg *msgs, size_t n,
					 uint32_t uid)
{
	struct ingest_imap_msg key = { uid, NULL };

	return n == 0 ? NULL : bsearch(&key, msgs, n, sizeof(*msgs), cmp_msg);
}

void ingest_imap_box_clear(struct ingest_imap_box *box)
{
	for (size_t i = 0; i < box->n; i++)
		free(box->msgs[i].flags);
	free(box->msgs);
	memset(box, 0, sizeof(*box));
}

void ingest_imap_delta_clear(struct ingest_imap_delta *d)
{
	for (size_t i = 0; i < d->n_put; i++)
		free(d->put[i].flags);
	free(d->put);
	free(d->gone);
	memset(d, 0, sizeof(*d));
}

int ingest_imap_box_load(struct ingest_imap_box *box, uint32_t uidvalidity,
			 uint32_t uidnext, uint64_t modseq,
			 struct ingest_imap_msg *msgs, size_t n)
{
	struct ingest_imap_msg *copy = malloc((n + 1) * sizeof(*copy));

	if (copy == NULL)
		return -1;
	ingest_imap_box_clear(box);
	if (n > 0)
		memcpy(copy, msgs, n * sizeof(*copy));
	qsort(copy, n, sizeof(*copy), cmp_msg);
	box->msgs = copy;
	box->n = box->cap = n;
	box->uidvalidity = uidvalidity;
	box->uidnext = uidnext;
	box->modseq = modseq;
	if (n > 0 && box->uidnext <= copy[n - 1].uid)
		box->uidnext = copy[n - 1].uid + 1;
	return 0;
}

/* Without allocating: counts run over every message of a mailbox. */
static bool flags_seen(const char *flags)
{
	for (const char *p = flags; *p != '\0';) {
		size_t len = strcspn(p, " ");

		if (len == 5 && strncasecmp(p, "\\Seen", 5) == 0)
			return true;
		p += len;
		p += strspn(p, " ");
	}
	return false;
}

uint32_t ingest_imap_box_unseen(const struct ingest_imap_box *box)
{
	uint32_t unseen = 0;

	for (size_t i = 0; i < box->n; i++) {
		if (!flags_seen(box->msgs[i].flags))
			unseen++;
	}
	return unseen;
}

static bool in_ranges(const struct ingest_imap_range *r, size_t n, uint32_t uid)
{
	for (size_t i = 0; i < n; i++) {
		if (uid >= r[i].first && uid <= r[i].last)
			return true;
	}
	return false;
}

/* UIDs that share an event: one event per (type, flag names). */
struct group {
	const char *type;
	char *flags;                 /* NULL: none (MessageRead, MessageTrash) */
	uint32_t *uids;
	size_t n, cap;
};

struct groups {
	struct group *g;
	size_t n, cap;
};

static void groups_free(struct groups *gs)
{
	for (size_t i = 0; i < gs->n; i++) {
		free(gs->g[i].flags);
		free(gs->g[i].uids);
	}
	free(gs->g);
	memset(gs, 0, sizeof(*gs));
}

static int groups_add(struct groups *gs, const char *type, const char *flags,
		      uint32_t uid)
{
	struct group *g = NULL;

	for (size_t i = 0; i < gs->n; i++) {
		if (gs->g[i].type == type &&
		    ((flags == NULL && gs->g[i].flags == NULL) ||
		     (flags != NULL && gs->g[i].flags != NULL &&
		      strcmp(flags, gs->g[i].flags) == 0))) {
			g = &gs->g[i];
			break;
		}
	}
	if (g == NULL) {
		if (gs->n == gs->cap) {
			size_t cap = gs->cap * 2 + 4;
			struct group *bigger = realloc(gs->g, cap * sizeof(*bigger));

			if (bigger == NULL)
				return -1;
			gs->g = bigger;
			gs->cap = cap;
		}
		g = &gs->g[gs->n];
		memset(g, 0, sizeof(*g));
		g->type = type;
		if (flags != NULL && (g->flags = strdup(flags)) == NULL)
			return -1;
		gs->n++;
	}
	if (g->n == g->cap) {
		size_t cap = g->cap * 2 + 8;
		uint32_t *bigger = realloc(g->uids, cap * sizeof(*bigger));

		if (bigger == NULL)
			return -1;
		g->uids = bigger;
		g->cap = cap;
	}
	g->uids[g->n++] = uid;
	return 0;
}

static const char TYPE_READ[] = "MessageRead";
static const char TYPE_TRASH[] = "MessageTrash";
static const char TYPE_SET[] = "FlagsSet";
static const char TYPE_CLEAR[] = "FlagsClear";

/* Sorts a flag change of one message into the groups, as Cyrus reports
 * one: \Seen set is MessageRead, \Deleted set is MessageTrash, any other
 * flag set FlagsSet, any flag cleared (\Seen too: "mark unread")
 * FlagsClear. */
static int flag_change(struct groups *gs, uint32_t uid, const char *old,
		       const char *now)
{
	struct words o, n;
	char **added = NULL, **removed = NULL;
	size_t na = 0, nr = 0;
	bool seen = false, deleted = false;
	int ret = -1;

	if (words_split(old, &o) < 0)
		return -1;
	if (words_split(now, &n) < 0) {
		words_free(&o);
		return -1;
	}
	added = calloc(n.n + 1, sizeof(*added));
	removed = calloc(o.n + 1, sizeof(*removed));
	if (added == NULL || removed == NULL)
		goto out;
	for (size_t i = 0; i < n.n; i++) {
		if (words_has(&o, n.w[i]))
			continue;
		if (strcasecmp(n.w[i], "\\Seen") == 0)
			seen = true;
		else if (strcasecmp(n.w[i], "\\Deleted") == 0)
			deleted = true;
		else
			added[na++] = n.w[i];
	}
	for (size_t i = 0; i < o.n; i++) {
		if (!words_has(&n, o.w[i]))
			removed[nr++] = o.w[i];
	}
	if (seen && groups_add(gs, TYPE_READ, NULL, uid) < 0)
		goto out;
	if (deleted && groups_add(gs, TYPE_TRASH, NULL, uid) < 0)
		goto out;
	if (na > 0) {
		char *j = words_join(added, na);

		if (j == NULL || groups_add(gs, TYPE_SET, j, uid) < 0) {
			free(j);
			goto out;
		}
		free(j);
	}
	if (nr > 0) {
		char *j = words_join(removed, nr);

		if (j == NULL || groups_add(gs, TYPE_CLEAR, j, uid) < 0) {
			free(j);
			goto out;
		}
		free(j);
	}
	ret = 0;
out:
	free(added);
	free(removed);
	words_free(&o);
	words_free(&n);
	return ret;
}

static json_t *event_new(const char *type, const char *uri)
{
	return json_pack("{s:s, s:s}", "event", type, "uri", uri);
}

static int events_add_group(json_t *events, const char *uri, const struct group *g)
{
	json_t *ev = event_new(g->type, uri);
	char *set;

	/* the UIDs were added in ascending order (fetched is sorted) */
	set = ingest_imap_uidset(g->uids, g->n);
	if (ev == NULL || set == NULL) {
		json_decref(ev);
		free(set);
		return -1;
	}
	json_object_set_new(ev, "uidset", json_string(set));
	free(set);
	if (g->flags != NULL)
		json_object_set_new(ev, "flagNames", json_string(g->flags));
	return json_array_append_new(events, ev);
}

static void add_counts(json_t *ev, const struct ingest_imap_box *box, uint32_t unseen)
{
	json_object_set_new(ev, "messages", json_integer((json_int_t)box->n));
	json_object_set_new(ev, "vnd.cmu.unseenMessages", json_integer((json_int_t)unseen));
	json_object_set_new(ev, "uidnext", json_integer((json_int_t)box->uidnext));
	if (box->modseq > 0)
		json_object_set_new(ev, "modseq", json_integer((json_int_t)box->modseq));
}

static int u32_push(uint32_t **a, size_t *n, size_t *cap, uint32_t v)
{
	if (*n == *cap) {
		size_t c = *cap * 2 + 16;
		uint32_t *bigger = realloc(*a, c * sizeof(*bigger));

		if (bigger == NULL)
			return -1;
		*a = bigger;
		*cap = c;
	}
	(*a)[(*n)++] = v;
	return 0;
}

int ingest_imap_diff(struct ingest_imap_box *box, struct ingest_imap_changes *ch,
		     const char *uri, json_t *events, struct ingest_imap_delta *delta)
{
	struct ingest_imap_msg *fetched = ch->fetched, *merged = NULL;
	size_t nf = ch->n_fetched, nm = 0, first_event = json_array_size(events);
	uint32_t *new_uids = NULL, *gone = NULL;
	size_t n_new = 0, cap_new = 0, n_gone = 0, cap_gone = 0;
	struct groups gs = { 0 };
	int ret = -1;

	memset(delta, 0, sizeof(*delta));
	if (nf > 0)   /* qsort wants a valid pointer even for no elements */
		qsort(fetched, nf, sizeof(*fetched), cmp_msg);
	/* a UID FETCH may repeat a message (an unsolicited FETCH): keep one.
	 * Entries are only swapped, so every flags string keeps one owner
	 * (the caller's array) until the merge below takes it. */
	{
		size_t j = 0;

		for (size_t i = 0; i < nf; i++) {
			struct ingest_imap_msg t;

			if (j > 0 && fetched[j - 1].uid == fetched[i].uid)
				continue;
			t = fetched[j];
			fetched[j] = fetched[i];
			fetched[i] = t;
			j++;
		}
		nf = j;
	}
	if (!ch->complete) {
		long long predicted = (long long)box->n;

		for (size_t i = 0; i < box->n; i++) {
			if (in_ranges(ch->vanished, ch->n_vanished, box->msgs[i].uid) &&
			    msgs_find(fetched, nf, box->msgs[i].uid) == NULL)
				predicted--;
		}
		for (size_t i = 0; i < nf; i++) {
			if (msgs_find(box->msgs, box->n, fetched[i].uid) == NULL)
				predicted++;
		}
		if (predicted != (long long)ch->exists)
			return 1;
	}
	merged = malloc((box->n + nf + 1) * sizeof(*merged));
	delta->put = calloc(nf + 1, sizeof(*delta->put));
	if (merged == NULL || delta->put == NULL)
		goto fail;

	/* new and changed messages */
	for (size_t i = 0; i < nf; i++) {
		struct ingest_imap_msg *old = msgs_find(box->msgs, box->n, fetched[i].uid);

		if (old == NULL) {
			if (u32_push(&new_uids, &n_new, &cap_new, fetched[i].uid) < 0)
				goto fail;
		} else if (strcmp(old->flags, fetched[i].flags) == 0) {
			continue;
		} else if (flag_change(&gs, fetched[i].uid, old->flags, fetched[i].flags) < 0) {
			goto fail;
		}
		delta->put[delta->n_put].uid = fetched[i].uid;
		delta->put[delta->n_put].flags = strdup(fetched[i].flags);
		if (delta->put[delta->n_put++].flags == NULL)
			goto fail;
	}
	/* expunged ones */
	for (size_t i = 0; i < box->n; i++) {
		uint32_t uid = box->msgs[i].uid;
		bool listed = msgs_find(fetched, nf, uid) != NULL;

		if (ch->complete ? !listed
				 : (!listed && in_ranges(ch->vanished, ch->n_vanished, uid))) {
			if (u32_push(&gone, &n_gone, &cap_gone, uid) < 0)
				goto fail;
		}
	}

	/* the new state: a merge of two sorted lists; only now is box changed */
	{
		size_t i = 0, j = 0, g = 0;

		while (i < box->n || j < nf) {
			uint32_t bu = i < box->n ? box->msgs[i].uid : UINT32_MAX;
			uint32_t fu = j < nf ? fetched[j].uid : UINT32_MAX;

			if (i < box->n && (j >= nf || bu < fu)) {
				while (g < n_gone && gone[g] < bu)
					g++;
				if (g < n_gone && gone[g] == bu)
					free(box->msgs[i].flags);
				else
					merged[nm++] = box->msgs[i];
				i++;
				continue;
			}
			merged[nm].uid = fu;
			merged[nm].flags = fetched[j].flags;   /* taken */
			fetched[j].flags = NULL;
			nm++;
			if (i < box->n && bu == fu)
				free(box->msgs[i++].flags);
			j++;
		}
	}
	free(box->msgs);
	box->msgs = merged;
	box->n = box->cap = nm;
	merged = NULL;
	if (ch->uidnext > box->uidnext)
		box->uidnext = ch->uidnext;
	if (nm > 0 && box->msgs[nm - 1].uid >= box->uidnext)
		box->uidnext = box->msgs[nm - 1].uid + 1;
	if (ch->modseq > 0)
		box->modseq = ch->modseq;
	delta->gone = gone;
	delta->n_gone = n_gone;
	gone = NULL;

	/* the events, in a fixed order */
	for (size_t i = 0; i < n_new; i++) {
		char *u = malloc(strlen(uri) + 24);
		json_t *ev;

		if (u == NULL)
			goto fail_events;
		sprintf(u, "%s/;UID=%u", uri, new_uids[i]);
		ev = event_new("MessageNew", u);
		free(u);
		if (ev == NULL || json_array_append_new(events, ev) < 0)
			goto fail_events;
	}
	{
		static const char *const order[] = { TYPE_READ, TYPE_TRASH, TYPE_SET, TYPE_CLEAR };

		for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
			for (size_t i = 0; i < gs.n; i++) {
				if (gs.g[i].type == order[k] &&
				    events_add_group(events, uri, &gs.g[i]) < 0)
					goto fail_events;
			}
		}
	}
	if (delta->n_gone > 0) {
		char *set = ingest_imap_uidset(delta->gone, delta->n_gone);
		json_t *ev = set != NULL ? event_new("MessageExpunge", uri) : NULL;

		if (ev == NULL) {
			free(set);
			goto fail_events;
		}
		json_object_set_new(ev, "uidset", json_string(set));
		free(set);
		if (json_array_append_new(events, ev) < 0)
			goto fail_events;
	}
	if (json_array_size(events) > first_event) {
		uint32_t unseen = ingest_imap_box_unseen(box);

		for (size_t i = first_event; i < json_array_size(events); i++)
			add_counts(json_array_get(events, i), box, unseen);
	}
	ret = 0;
	goto out;
fail_events:
	/* box is already changed: the caller must not trust it any more */
	while (json_array_size(events) > first_event)
		json_array_remove(events, json_array_size(events) - 1);
	goto out;
fail:
	ingest_imap_delta_clear(delta);
out:
	free(merged);
	free(new_uids);
	free(gone);
	groups_free(&gs);
	return ret;
}

/* ==== threads, batches and the store ==================================== */

/* One watched mailbox, owned by its watcher's thread (see batch_commit). */
struct wbox {
	char *node;
	struct ingest_imap_box box;
};

enum rec_kind {
	REC_ACCOUNT,       /* the account's baseline exists */
	REC_BOX,           /* a mailbox's state: header, plus delta */
	REC_BOX_DELETE,
	REC_BOX_RENAME,
};

/* A change of the sync state, written with the events it goes with. */
struct rec {
	enum rec_kind kind;
	char *node, *new_node;
	uint32_t uidvalidity, uidnext;
	uint64_t modseq;
	bool reset;                  /* drop every message row first */
	struct ingest_imap_delta delta;
};

struct batch {
	struct batch *next;
	struct watcher *w;
	json_t *events;              /* array of event objects */
	bool reload;                 /* no changes: put the stored state back */
	struct rec *recs;
	size_t n_recs, cap_recs;
	bool done;
	int result;
};

struct watcher {
	struct ingest_imap *in;
	char *account;
	char *idle_node;             /* the mailbox this thread IDLEs on */
	bool poller;                 /* also LISTs and polls the rest */
	char **skip;                 /* nodes other watchers of the account own */
	size_t n_skip;
	bool account_known;          /* a baseline exists in the store */
	struct wbox *boxes;
	size_t n_boxes;
	/* under in->lock: the session, so that close can interrupt it */
	struct imap_session *session;
	uv_cond_t cond;
	uv_thread_t thread;
	bool started;
	bool qresync;                /* ENABLE QRESYNC done on this session */
	bool condstore;
	struct watcher *next;
};

struct ingest_imap {
	struct service *service;
	struct imap_client *imap;
	ingest_imap_cb *on_journaled;
	void *context;
	const struct config *config;
	char sep;
	uv_async_t async;
	uv_mutex_t lock;
	struct batch *queue, **queue_tail;
	atomic_bool stop;
	struct watcher *watchers;
};

static bool stopping(const struct watcher *w)
{
	return atomic_load(&w->in->stop);
}

static void batch_free(struct batch *b)
{
	if (b == NULL)
		return;
	json_decref(b->events);
	for (size_t i = 0; i < b->n_recs; i++) {
		free(b->recs[i].node);
		free(b->recs[i].new_node);
		ingest_imap_delta_clear(&b->recs[i].delta);
	}
	free(b->recs);
	free(b);
}

static struct batch *batch_new(struct watcher *w)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->w = w;
	b->events = json_array();
	if (b->events == NULL) {
		free(b);
		return NULL;
	}
	return b;
}

static struct rec *batch_rec(struct batch *b, enum rec_kind kind, const char *node)
{
	struct rec *r;

	if (b->n_recs == b->cap_recs) {
		size_t cap = b->cap_recs * 2 + 4;
		struct rec *bigger = realloc(b->recs, cap * sizeof(*bigger));

		if (bigger == NULL)
			return NULL;
		b->recs = bigger;
		b->cap_recs = cap;
	}
	r = &b->recs[b->n_recs];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	if (node != NULL && (r->node = strdup(node)) == NULL)
		return NULL;
	b->n_recs++;
	return r;
}

/* A REC_BOX with box's header; the delta is moved in (cleared). */
static int batch_box(struct batch *b, const char *node, const struct ingest_imap_box *box,
		     bool reset, struct ingest_imap_delta *delta)
{
	struct rec *r = batch_rec(b, REC_BOX, node);

	if (r == NULL)
		return -1;
	r->uidvalidity = box->uidvalidity;
	r->uidnext = box->uidnext;
	r->modseq = box->modseq;
	r->reset = reset;
	if (delta != NULL) {
		r->delta = *delta;
		memset(delta, 0, sizeof(*delta));
	}
	return 0;
}

/* ---- loop thread: the store -------------------------------------------- */

/* Messages first forgotten (reset), then the header, then the delta. */
static int apply_box(struct store *store, const char *account, const struct rec *r)
{
	/* a baseline publishes nothing, but its mailboxes are nodes
	 * subscribers may ask for at once (as after discovery's LIST) */
	if (r->reset && node_tree_touch(store, account, r->node, NULL,
					r->uidvalidity, clock_now_us()) < 0)
		return -1;
	if (r->reset && imap_source_state_messages_forget(store, account, r->node) < 0)
		return -1;
	if (imap_source_state_mailbox_put(store, account, r->node, r->uidvalidity,
					  r->uidnext, r->modseq) < 0)
		return -1;
	for (size_t i = 0; i < r->delta.n_put; i++) {
		if (imap_source_state_message_put(store, account, r->node, r->delta.put[i].uid,
						  r->delta.put[i].flags) < 0)
			return -1;
	}
	for (size_t i = 0; i < r->delta.n_gone; i++) {
		if (imap_source_state_message_forget(store, account, r->node,
						     r->delta.gone[i]) < 0)
			return -1;
	}
	return 0;
}

static int apply_rec(struct store *store, const char *account, const struct rec *r)
{
	switch (r->kind) {
	case REC_ACCOUNT:
		return imap_source_state_account_listed(store, account, clock_now_us());
	case REC_BOX:
		return apply_box(store, account, r);
	case REC_BOX_DELETE:
		return imap_source_state_mailbox_delete(store, account, r->node);
	case REC_BOX_RENAME:
		return imap_source_state_mailbox_rename(store, account, r->node, r->new_node);
	}
	return -1;
}

static void iso_now(char *buf, size_t size)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);

	snprintf(buf + n, size - n, ".%03u+00:00", (unsigned)(tv.tv_usec / 1000) % 1000u);
}

/* Journals one synthesized event exactly as the generic source would. */
static int journal_event(struct ingest_imap *in, json_t *obj, long long now)
{
	struct service *service = in->service;
	char *text = json_dumps(obj, JSON_COMPACT);
	struct event *ev;
	const char *error;
	long long seq;
	int ret = -1;

	if (text == NULL)
		return -1;
	service->stats.sources[STATS_IMAP].received++;
	if (event_decode(text, strlen(text), in->sep, &ev, &error) < 0) {
		/* ours: a bug, not bad input; skip it rather than wedge the source */
		service->stats.sources[STATS_IMAP].malformed[stats_reject_for_decode(error)]++;
		log_error("imap source: cannot decode our own event (%s): %s", error, text);
		free(text);
		return 0;
	}
	if (journal_append(service->store, SOURCE_NAME, ev, text, strlen(text), now,
			   &seq) == 0) {
		log_debug("imap source: #%lld %s %s/%s", seq,
			  event_type_info(ev->type)->name, ev->mailbox.account,
			  ev->mailbox.node != NULL ? ev->mailbox.node : "");
		service->stats.journaled++;
		service->stats.sources[STATS_IMAP].journaled++;
		ret = 0;
	}
	event_free(&ev);
	free(text);
	return ret;
}

static int load_state(struct ingest_imap *in, struct watcher *w);

/* Events and state in one transaction: both or neither. */
static int batch_apply(struct ingest_imap *in, struct batch *b)
{
	struct store *store = in->service->store;
	long long now = clock_now_us();
	char stamp[40];
	size_t i;

	iso_now(stamp, sizeof(stamp));
	if (store_begin(store) < 0)
		return -1;
	for (i = 0; i < b->n_recs; i++) {
		if (apply_rec(store, b->w->account, &b->recs[i]) < 0)
			goto fail;
	}
	for (i = 0; i < json_array_size(b->events); i++) {
		json_t *ev = json_array_get(b->events, i);

		json_object_set_new(ev, "timestamp", json_string(stamp));
		json_object_set_new(ev, "vnd.mailpubsub.origin", json_string("IMAP"));
		if (journal_event(in, ev, now) < 0)
			goto fail;
	}
	if (store_commit(store) < 0)
		return -1;
	return 0;
fail:
	store_rollback(store);
	return -1;
}

/* Loop thread: commits what the watchers handed over and wakes them. */
static void process_queue(struct ingest_imap *in)
{
	bool journaled = false;

	for (;;) {
		struct batch *b;

		uv_mutex_lock(&in->lock);
		b = in->queue;
		if (b != NULL) {
			in->queue = b->next;
			if (in->queue == NULL)
				in->queue_tail = &in->queue;
		}
		uv_mutex_unlock(&in->lock);
		if (b == NULL)
			break;
		if (b->reload) {
			b->result = load_state(in, b->w);
		} else if ((b->result = batch_apply(in, b)) == 0) {
			journaled = journaled || json_array_size(b->events) > 0;
		} else {
			/* the thread changed its state ahead of the store: it
			 * is blocked until we answer, so put the stored one
			 * back (it then reconnects and goes on from there) */
			log_error("imap source: %s: journal write failed; resynchronising "
				  "from the stored state", b->w->account);
			load_state(in, b->w);
		}
		uv_mutex_lock(&in->lock);
		b->done = true;
		uv_cond_broadcast(&b->w->cond);
		uv_mutex_unlock(&in->lock);
	}
	if (journaled)
		in->on_journaled(in->context);
}

static void on_async(uv_async_t *async)
{
	process_queue(async->data);
}

/* Watcher thread: hands b over and waits for the commit. Frees b. */
static int batch_commit(struct watcher *w, struct batch *b)
{
	struct ingest_imap *in = w->in;
	int result;

	if (b->n_recs == 0 && json_array_size(b->events) == 0 && !b->reload) {
		batch_free(b);
		return 0;
	}
	uv_mutex_lock(&in->lock);
	if (atomic_load(&in->stop)) {
		/* close has drained the queue for the last time */
		uv_mutex_unlock(&in->lock);
		batch_free(b);
		return -1;
	}
	*in->queue_tail = b;
	in->queue_tail = &b->next;
	uv_async_send(&in->async);
	while (!b->done)
		uv_cond_wait(&w->cond, &in->lock);
	uv_mutex_unlock(&in->lock);
	result = b->result;
	batch_free(b);
	return result;
}

static void wboxes_free(struct watcher *w)
{
	for (size_t i = 0; i < w->n_boxes; i++) {
		free(w->boxes[i].node);
		ingest_imap_box_clear(&w->boxes[i].box);
	}
	free(w->boxes);
	w->boxes = NULL;
	w->n_boxes = 0;
}

static struct wbox *wbox_find(struct watcher *w, const char *node)
{
	for (size_t i = 0; i < w->n_boxes; i++) {
		if (strcmp(w->boxes[i].node, node) == 0)
			return &w->boxes[i];
	}
	return NULL;
}

static struct wbox *wbox_add(struct watcher *w, const char *node)
{
	struct wbox *bigger = realloc(w->boxes, (w->n_boxes + 1) * sizeof(*bigger));

	if (bigger == NULL)
		return NULL;
	w->boxes = bigger;
	memset(&w->boxes[w->n_boxes], 0, sizeof(*w->boxes));
	if ((w->boxes[w->n_boxes].node = strdup(node)) == NULL)
		return NULL;
	return &w->boxes[w->n_boxes++];
}

static void wbox_remove(struct watcher *w, struct wbox *b)
{
	size_t i = (size_t)(b - w->boxes);

	free(b->node);
	ingest_imap_box_clear(&b->box);
	memmove(&w->boxes[i], &w->boxes[i + 1], (w->n_boxes - i - 1) * sizeof(*b));
	w->n_boxes--;
}

static bool skipped(const struct watcher *w, const char *node)
{
	for (size_t i = 0; i < w->n_skip; i++) {
		if (strcmp(w->skip[i], node) == 0)
			return true;
	}
	return false;
}

/* Whose is node: the watcher IDLEing on it, else the account's poller. */
static bool owns(const struct watcher *w, const char *node)
{
	if (strcmp(w->idle_node, node) == 0)
		return true;
	return w->poller && !skipped(w, node);
}

/* A stored mailbox: the watcher's if it owns it. */
static int load_box(void *context, const char *node, uint32_t uidvalidity,
		    uint32_t uidnext, uint64_t modseq)
{
	struct watcher *w = context;
	struct wbox *b;

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
	struct ingest_imap_box *box = context;

	if (box->n == box->cap) {
		size_t cap = box->cap * 2 + 64;
		struct ingest_imap_msg *bigger = realloc(box->msgs, cap * sizeof(*bigger));

		if (bigger == NULL)
			return -1;
		box->msgs = bigger;
		box->cap = cap;
	}
	box->msgs[box->n].uid = uid;
	box->msgs[box->n].flags = strdup(flags);
	if (box->msgs[box->n].flags == NULL)
		return -1;
	box->n++;
	return 0;
}

/* Loop thread (at start, or while the thread waits for a batch): the
 * watcher's boxes as the store has them. */
static int load_state(struct ingest_imap *in, struct watcher *w)
{
	struct store *store = in->service->store;

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

/* ---- watcher thread: IMAP ----------------------------------------------- */

static unsigned step_ms(const struct watcher *w)
{
	return w->in->config->imap_timeout_ms != 0 ? w->in->config->imap_timeout_ms : 10000;
}

static mailimap *wimap(struct watcher *w)
{
	return imap_session_mailimap(w->session);
}

static void session_drop(struct watcher *w)
{
	struct imap_session *s;

	uv_mutex_lock(&w->in->lock);
	s = w->session;
	w->session = NULL;
	uv_mutex_unlock(&w->in->lock);
	imap_session_close(&s);
}

static int session_up(struct watcher *w)
{
	struct imap_session *s = NULL;
	char err[320];

	if (imap_session_open(w->in->imap, w->account, &w->in->stop, &s, err,
			      sizeof(err)) < 0) {
		if (!stopping(w))
			log_warn("imap source: %s: %s", w->account, err);
		return -1;
	}
	uv_mutex_lock(&w->in->lock);
	w->session = s;
	uv_mutex_unlock(&w->in->lock);
	w->condstore = mailimap_has_condstore(wimap(w)) != 0;
	w->qresync = false;
	if (mailimap_has_qresync(wimap(w)) && mailimap_has_enable(wimap(w))) {
		/* VANISHED (EARLIER) needs it (RFC 7162 3.2.3) */
		clist *caps = clist_new();
		struct mailimap_capability *cap =
			mailimap_capability_new(MAILIMAP_CAPABILITY_NAME, NULL, strdup("QRESYNC"));
		struct mailimap_capability_data *data = NULL, *result = NULL;

		if (caps != NULL && cap != NULL && clist_append(caps, cap) == 0) {
			cap = NULL;
			data = mailimap_capability_data_new(caps);
			if (data != NULL)
				caps = NULL;
		}
		if (data != NULL) {
			imap_session_deadline(w->session, step_ms(w));
			if (mailimap_enable(wimap(w), data, &result) == MAILIMAP_NO_ERROR)
				w->qresync = true;
			if (result != NULL)
				mailimap_capability_data_free(result);
			mailimap_capability_data_free(data);
		}
		if (cap != NULL)
			mailimap_capability_free(cap);
		if (caps != NULL)
			clist_free(caps);
	}
	log_info("imap source: %s: watching %s%s (%s)", w->account, w->idle_node,
		 w->poller ? " and polling the other mailboxes" : "",
		 w->qresync ? "QRESYNC" : w->condstore ? "CONDSTORE" : "full FETCH");
	return 0;
}

struct msgs {
	struct ingest_imap_msg *m;
	size_t n, cap;
};

static void msgs_free(struct msgs *ms)
{
	for (size_t i = 0; i < ms->n; i++)
		free(ms->m[i].flags);
	free(ms->m);
	memset(ms, 0, sizeof(*ms));
}

/* UID and FLAGS of each FETCH response; responses without both (an
 * unsolicited FETCH without UID) are skipped. */
static int msgs_take(struct msgs *ms, clist *result)
{
	for (clistiter *it = clist_begin(result); it != NULL; it = clist_next(it)) {
		struct mailimap_msg_att *att = clist_content(it);
		uint32_t uid = 0;
		bool has_flags = false;
		char *flags = strdup(""), *norm;

		if (flags == NULL)
			return -1;
		for (clistiter *jt = clist_begin(att->att_list); jt != NULL; jt = clist_next(jt)) {
			struct mailimap_msg_att_item *item = clist_content(jt);

			if (item->att_type == MAILIMAP_MSG_ATT_ITEM_STATIC &&
			    item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_UID) {
				uid = item->att_data.att_static->att_data.att_uid;
			} else if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC &&
				   item->att_data.att_dyn != NULL) {
				/* "FLAGS ()" has no list at all */
				clist *fl = item->att_data.att_dyn->att_list;

				has_flags = true;
				for (clistiter *kt = fl != NULL ? clist_begin(fl) : NULL;
				     kt != NULL; kt = clist_next(kt)) {
					struct mailimap_flag_fetch *ff = clist_content(kt);

					if (ff->fl_type == MAILIMAP_FLAG_FETCH_OTHER && ff->fl_flag != NULL)
						imap_flag_append(&flags, ff->fl_flag);
				}
			}
		}
		norm = uid != 0 && has_flags ? ingest_imap_flags_normalize(flags) : NULL;
		free(flags);
		if (norm == NULL) {
			if (uid != 0 && has_flags)
				return -1;
			continue;
		}
		if (ms->n == ms->cap) {
			size_t cap = ms->cap * 2 + 64;
			struct ingest_imap_msg *bigger = realloc(ms->m, cap * sizeof(*bigger));

			if (bigger == NULL) {
				free(norm);
				return -1;
			}
			ms->m = bigger;
			ms->cap = cap;
		}
		ms->m[ms->n].uid = uid;
		ms->m[ms->n++].flags = norm;
	}
	return 0;
}

/* UID FETCH 1:* (UID FLAGS), with (CHANGEDSINCE since [VANISHED]) when
 * since > 0. -1: the connection is unusable. */
static int fetch_flags(struct watcher *w, uint64_t since, bool vanished,
		       struct msgs *out, struct ingest_imap_range **van_r,
		       size_t *n_van_r)
{
	struct mailimap_set *set = mailimap_set_new_interval(1, 0);   /* 1:* */
	struct mailimap_fetch_type *ft = mailimap_fetch_type_new_fetch_att_list_empty();
	struct mailimap_qresync_vanished *van = NULL;
	clist *result = NULL;
	int r, ret = -1;

	*van_r = NULL;
	*n_van_r = 0;
	if (set == NULL || ft == NULL ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid()) != 0 ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_flags()) != 0)
		goto out;
	/* a big mailbox's answer takes longer than one network step */
	imap_session_deadline(w->session, step_ms(w) * 10);
	if (since > 0 && vanished)
		r = mailimap_uid_fetch_qresync(wimap(w), set, ft, since, &result, &van);
	else if (since > 0)
		r = mailimap_uid_fetch_changedsince(wimap(w), set, ft, since, &result);
	else
		r = mailimap_uid_fetch(wimap(w), set, ft, &result);
	if (r != MAILIMAP_NO_ERROR) {
		/* libetpan frees the list itself on a NO but leaves the
		 * pointer (see imap_client.c run_fetch) */
		result = NULL;
		van = NULL;
		if (!stopping(w))
			log_warn("imap source: %s: UID FETCH failed: %s", w->account,
				 imap_session_error(w->session));
		goto out;
	}
	if (msgs_take(out, result) < 0)
		goto out;
	if (van != NULL && van->qr_known_uids != NULL) {
		clist *l = van->qr_known_uids->set_list;
		size_t n = 0;

		*van_r = calloc((size_t)clist_count(l) + 1, sizeof(**van_r));
		if (*van_r == NULL)
			goto out;
		for (clistiter *it = clist_begin(l); it != NULL; it = clist_next(it)) {
			struct mailimap_set_item *si = clist_content(it);
			uint32_t a = si->set_first, b = si->set_last;

			/* 0 is "*": the highest UID, at most UINT32_MAX */
			(*van_r)[n].first = a == 0 ? UINT32_MAX : a;
			(*van_r)[n].last = b == 0 ? UINT32_MAX : b;
			if ((*van_r)[n].first > (*van_r)[n].last) {
				uint32_t t = (*van_r)[n].first;

				(*van_r)[n].first = (*van_r)[n].last;
				(*van_r)[n].last = t;
			}
			n++;
		}
		*n_van_r = n;
	}
	ret = 0;
out:
	if (result != NULL)
		mailimap_fetch_list_free(result);
	if (van != NULL)
		mailimap_qresync_vanished_free(van);
	if (ft != NULL)
		mailimap_fetch_type_free(ft);
	if (set != NULL)
		mailimap_set_free(set);
	return ret;
}

static char *node_uri(struct watcher *w, const char *node, uint32_t uidvalidity)
{
	return ingest_imap_uri(w->in->config->imap_host, w->account, node, w->in->sep,
			       uidvalidity, 0);
}

struct selected {
	uint32_t uidvalidity, uidnext, exists;
	uint64_t modseq;
};

/* EXAMINE (read only: never changes \Recent or anything else).
 * 0, 1 when the server says NO (no such mailbox), -1 broken. */
static int examine(struct watcher *w, const char *node, struct selected *sel)
{
	const struct mailimap_selection_info *si;
	const char *err;
	char *name;
	int r;

	memset(sel, 0, sizeof(*sel));
	if (imap_name_from_node(imap_session_namespaces(w->session), w->account,
				w->account, node, &name, &err) < 0) {
		log_warn("imap source: %s/%s: %s", w->account, node, err);
		return 1;
	}
	imap_session_deadline(w->session, step_ms(w));
	if (w->condstore)
		r = mailimap_examine_condstore(wimap(w), name, &sel->modseq);
	else
		r = mailimap_examine(wimap(w), name);
	if (r != MAILIMAP_NO_ERROR) {
		bool no = r == MAILIMAP_ERROR_EXAMINE || r == MAILIMAP_ERROR_EXTENSION;

		log_info("imap source: %s: EXAMINE %s failed: %s", w->account, name,
			 imap_session_error(w->session));
		free(name);
		return no ? 1 : -1;
	}
	free(name);
	si = wimap(w)->imap_selection_info;
	if (si == NULL)
		return -1;
	sel->uidvalidity = si->sel_uidvalidity;
	sel->uidnext = si->sel_uidnext;
	sel->exists = si->sel_exists;
	return 0;
}

/* Takes the fetched messages as the baseline of b (no events). */
static int baseline(struct watcher *w, struct wbox *b, const struct selected *sel,
		    struct batch *batch, bool resync_event)
{
	struct msgs ms = { 0 };
	struct ingest_imap_range *van = NULL;
	size_t n_van = 0;
	uint32_t old = b->box.uidvalidity;

	if (sel->exists > 0 && fetch_flags(w, 0, false, &ms, &van, &n_van) < 0) {
		msgs_free(&ms);
		return -1;
	}
	if (ingest_imap_box_load(&b->box, sel->uidvalidity, sel->uidnext, sel->modseq,
				 ms.m, ms.n) < 0) {
		msgs_free(&ms);
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
		if (batch_box(batch, b->node, &b->box, true, &d) < 0) {
			ingest_imap_delta_clear(&d);
			return -1;
		}
	}
	if (resync_event) {
		/* not a replay of the mailbox: its state, and why */
		char *uri = node_uri(w, b->node, b->box.uidvalidity), reason[96];
		json_t *ev = uri != NULL ? event_new(STATUS_EVENT, uri) : NULL;

		free(uri);
		if (ev == NULL)
			return -1;
		snprintf(reason, sizeof(reason), "UIDVALIDITY changed from %u to %u", old,
			 b->box.uidvalidity);
		json_object_set_new(ev, "vnd.mailpubsub.resync", json_string(reason));
		add_counts(ev, &b->box, ingest_imap_box_unseen(&b->box));
		json_array_append_new(batch->events, ev);
		log_warn("imap source: %s/%s: %s: published as a resync", w->account,
			 b->node, reason);
	}
	return 0;
}

/* Brings b up to date, adding events and state to batch. 0, 1 when the
 * mailbox is not there (NO), -1 broken. */
static int sync_box(struct watcher *w, struct wbox *b, struct batch *batch)
{
	struct selected sel;
	struct msgs ms = { 0 };
	struct ingest_imap_range *van = NULL;
	size_t n_van = 0;
	struct ingest_imap_changes ch;
	struct ingest_imap_delta delta = { 0 };
	char *uri;
	int r;

	if ((r = examine(w, b->node, &sel)) != 0)
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
	if (w->condstore && sel.modseq != 0 && sel.modseq == b->box.modseq &&
	    sel.uidnext == b->box.uidnext && sel.exists == b->box.n)
		return 0;
	if (!w->condstore && sel.exists == 0 && b->box.n == 0 &&
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
		bool changedsince = attempt == 0 && w->condstore && b->box.modseq > 0 &&
				    sel.modseq > 0;

		if (sel.exists > 0 &&
		    fetch_flags(w, changedsince ? b->box.modseq : 0,
				changedsince && w->qresync, &ms, &van, &n_van) < 0) {
			r = -1;
			break;
		}
		ch.fetched = ms.m;
		ch.n_fetched = ms.n;
		ch.complete = !changedsince || sel.exists == 0;
		ch.vanished = van;
		ch.n_vanished = n_van;
		/* libetpan counts the EXISTS that came meanwhile */
		ch.exists = wimap(w)->imap_selection_info != NULL ?
			    wimap(w)->imap_selection_info->sel_exists : sel.exists;
		ch.uidnext = sel.uidnext;
		ch.modseq = sel.modseq;
		r = ingest_imap_diff(&b->box, &ch, uri, batch->events, &delta);
		msgs_free(&ms);
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
	if (batch_box(batch, b->node, &b->box, false, &delta) < 0) {
		ingest_imap_delta_clear(&delta);
		return -1;
	}
	return 0;
}

struct names {
	char **v;
	size_t n;
};

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	memset(ns, 0, sizeof(*ns));
}

static bool names_has(const struct names *ns, const char *s)
{
	for (size_t i = 0; i < ns->n; i++) {
		if (strcmp(ns->v[i], s) == 0)
			return true;
	}
	return false;
}

/* LIST "" "*" as the owner: the account's selectable mailboxes as nodes. */
static int list_nodes(struct watcher *w, struct names *out)
{
	clist *list = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	imap_session_deadline(w->session, step_ms(w));
	r = mailimap_list(wimap(w), "", "*", &list);
	if (r != MAILIMAP_NO_ERROR) {
		if (!stopping(w))
			log_warn("imap source: %s: LIST failed: %s", w->account,
				 imap_session_error(w->session));
		if (list != NULL)
			mailimap_list_result_free(list);
		return -1;
	}
	out->v = calloc((size_t)clist_count(list) + 1, sizeof(char *));
	if (out->v == NULL) {
		mailimap_list_result_free(list);
		return -1;
	}
	for (clistiter *it = clist_begin(list); it != NULL; it = clist_next(it)) {
		struct mailimap_mailbox_list *mb = clist_content(it);
		const char *err;
		char *node;

		if (!imap_mailbox_selectable(mb))
			continue;
		r = imap_name_to_node(imap_session_namespaces(w->session), w->account,
				      w->account, mb->mb_name, mb->mb_delimiter, &node, &err);
		if (r < 0)
			log_warn("imap source: %s: skipping mailbox %s: %s", w->account,
				 mb->mb_name, err);
		if (r == 0 && !names_has(out, node))
			out->v[out->n++] = node;
		else if (r == 0)
			free(node);
	}
	mailimap_list_result_free(list);
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

/* The poller's LIST: differences to what it knew become mailbox events. */
static int list_diff(struct watcher *w)
{
	struct names listed;
	struct batch *batch;
	char **olds = NULL, **news = NULL;
	size_t n_pairs = 0;
	int ret = -1;

	if (list_nodes(w, &listed) < 0)
		return -1;
	if (listed.n == 0) {
		/* a glitch rather than an account without mailboxes: never
		 * delete everything on it */
		names_free(&listed);
		return 0;
	}
	if ((batch = batch_new(w)) == NULL) {
		names_free(&listed);
		return -1;
	}
	if (!w->account_known) {
		/* first start: what is there is the baseline, not news; poll_all
		 * takes it silently, then records the account as known */
		for (size_t i = 0; i < listed.n; i++) {
			if (owns(w, listed.v[i]) && wbox_find(w, listed.v[i]) == NULL &&
			    wbox_add(w, listed.v[i]) == NULL)
				goto out;
		}
		ret = 0;
		goto out;
	}
	olds = calloc(w->n_boxes + 1, sizeof(*olds));
	news = calloc(w->n_boxes + 1, sizeof(*news));
	if (olds == NULL || news == NULL)
		goto out;
	/* new names: a rename if one has a vanished mailbox's UIDVALIDITY */
	for (size_t i = 0; i < listed.n; i++) {
		const char *node = listed.v[i];
		struct selected sel;
		struct wbox *b = NULL;
		char *uri;
		int r;

		if (!owns(w, node) || wbox_find(w, node) != NULL)
			continue;
		if ((r = examine(w, node, &sel)) < 0)
			goto out;
		if (r > 0)
			continue;   /* gone again already */
		for (size_t j = 0; j < w->n_boxes; j++) {
			bool paired = false;

			for (size_t k = 0; k < n_pairs; k++)
				paired = paired || olds[k] == w->boxes[j].node;
			if (w->boxes[j].box.uidvalidity == sel.uidvalidity && !paired &&
			    !names_has(&listed, w->boxes[j].node) &&
			    strcmp(w->boxes[j].node, w->idle_node) != 0) {
				b = &w->boxes[j];
				break;
			}
		}
		if (b != NULL) {
			struct rec *rec = batch_rec(batch, REC_BOX_RENAME, b->node);

			if (rec == NULL || (rec->new_node = strdup(node)) == NULL)
				goto out;
			olds[n_pairs] = b->node;
			news[n_pairs] = strdup(node);
			if (news[n_pairs] == NULL)
				goto out;
			n_pairs++;
			continue;
		}
		uri = node_uri(w, node, sel.uidvalidity);
		if (uri == NULL)
			continue;
		if ((b = wbox_add(w, node)) == NULL) {
			free(uri);
			goto out;
		}
		/* known and empty: the sync that follows reports its content
		 * as new messages */
		b->box.uidvalidity = sel.uidvalidity;
		if (batch_box(batch, node, &b->box, true, NULL) < 0) {
			free(uri);
			goto out;
		}
		json_array_append_new(batch->events, event_new("MailboxCreate", uri));
		free(uri);
	}
	/* renames, parents first (the pairs are in LIST order) */
	for (size_t k = 0; k < n_pairs; k++) {
		struct wbox *b = wbox_find(w, olds[k]);
		char *uri, *old_uri;

		if (b == NULL)
			continue;
		uri = node_uri(w, news[k], b->box.uidvalidity);
		old_uri = node_uri(w, olds[k], b->box.uidvalidity);
		if (uri != NULL && old_uri != NULL && !implied_rename(olds, news, n_pairs, k)) {
			json_t *ev = event_new("MailboxRename", uri);

			json_object_set_new(ev, "oldMailboxID", json_string(old_uri));
			json_array_append_new(batch->events, ev);
		}
		free(uri);
		free(old_uri);
	}
	for (size_t k = 0; k < n_pairs; k++) {
		struct wbox *b = wbox_find(w, olds[k]);

		if (b != NULL) {
			free(b->node);
			b->node = news[k];   /* taken */
			news[k] = NULL;
		}
		olds[k] = NULL;
	}
	/* vanished names: deleted, children first */
	for (;;) {
		struct wbox *victim = NULL;

		for (size_t j = 0; j < w->n_boxes; j++) {
			struct wbox *b = &w->boxes[j];

			if (names_has(&listed, b->node) || strcmp(b->node, w->idle_node) == 0)
				continue;
			if (victim == NULL || depth(b->node) > depth(victim->node))
				victim = b;
		}
		if (victim == NULL)
			break;
		{
			char *uri = node_uri(w, victim->node, victim->box.uidvalidity);

			if (uri != NULL)
				json_array_append_new(batch->events, event_new("MailboxDelete", uri));
			free(uri);
			if (batch_rec(batch, REC_BOX_DELETE, victim->node) == NULL)
				goto out;
			wbox_remove(w, victim);
		}
	}
	ret = batch_commit(w, batch);
	batch = NULL;
out:
	if (batch != NULL)
		batch_free(batch);
	for (size_t k = 0; k < n_pairs; k++)
		free(news[k]);
	free(olds);
	free(news);
	names_free(&listed);
	return ret;
}

/* Syncs one box in a batch of its own. */
static int sync_commit(struct watcher *w, struct wbox *b)
{
	struct batch *batch = batch_new(w);
	int r;

	if (batch == NULL)
		return -1;
	r = sync_box(w, b, batch);
	if (r < 0) {
		batch_free(batch);
		return -1;
	}
	return batch_commit(w, batch) < 0 ? -1 : r;
}

/* The poller's round: LIST, then every mailbox but the IDLEd one (synced
 * right after); on the first start all of them, silently, and only then is
 * the account recorded as known: mailboxes found later are news. */
static int poll_all(struct watcher *w)
{
	struct batch *batch;

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
	if ((batch = batch_new(w)) == NULL || batch_rec(batch, REC_ACCOUNT, NULL) == NULL) {
		batch_free(batch);
		return -1;
	}
	if (batch_commit(w, batch) < 0)
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
static void nap(struct watcher *w, uint64_t ms)
{
	uv_mutex_lock(&w->in->lock);
	if (!atomic_load(&w->in->stop))
		uv_cond_timedwait(&w->cond, &w->in->lock, ms * 1000000ULL);
	uv_mutex_unlock(&w->in->lock);
}

/* One connection's life: sync, IDLE, sync... until something breaks. */
static int watch(struct watcher *w)
{
	uint64_t interval = (uint64_t)w->in->config->imap_source_poll_interval * 1000;
	uint64_t next_poll = 0;
	struct wbox *idle;

	while (!stopping(w)) {
		uint64_t now = mono_ms(), wait;
		int r, wr;

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
		if (r > 0 || !mailimap_has_idle(wimap(w))) {
			/* no such mailbox, or no IDLE: poll it */
			nap(w, wait);
			continue;
		}
		if (wait > IDLE_MAX_MS)
			wait = IDLE_MAX_MS;
		imap_session_deadline(w->session, step_ms(w));
		if (mailimap_idle(wimap(w)) != MAILIMAP_NO_ERROR) {
			if (!stopping(w))
				log_warn("imap source: %s: IDLE failed: %s", w->account,
					 imap_session_error(w->session));
			return -1;
		}
		wr = imap_session_wait(w->session, (unsigned)wait);
		if (wr < 0)
			return -1;
		imap_session_deadline(w->session, step_ms(w));
		if (mailimap_idle_done(wimap(w)) != MAILIMAP_NO_ERROR) {
			if (!stopping(w))
				log_warn("imap source: %s: IDLE DONE failed: %s", w->account,
					 imap_session_error(w->session));
			return -1;
		}
	}
	return 0;
}

/* After a failure part way: what the thread holds may be ahead of the
 * store (a LIST diff or sync not committed); go on from the store's. */
static void request_reload(struct watcher *w)
{
	struct batch *b = batch_new(w);

	if (b == NULL)
		return;
	b->reload = true;
	batch_commit(w, b);
}

static void watcher_main(void *arg)
{
	struct watcher *w = arg;
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

/* ---- public ------------------------------------------------------------- */

static void watcher_free(struct watcher *w)
{
	wboxes_free(w);
	for (size_t i = 0; i < w->n_skip; i++)
		free(w->skip[i]);
	free(w->skip);
	free(w->account);
	free(w->idle_node);
	uv_cond_destroy(&w->cond);
	free(w);
}

static void async_closed(uv_handle_t *handle)
{
	struct ingest_imap *in = handle->data;

	uv_mutex_destroy(&in->lock);
	free(in);
}

void ingest_imap_watchers(struct ingest_imap *in, unsigned *watchers_r,
			  unsigned *connected_r)
{
	*watchers_r = *connected_r = 0;
	if (in == NULL)
		return;
	uv_mutex_lock(&in->lock);
	for (const struct watcher *w = in->watchers; w != NULL; w = w->next) {
		++*watchers_r;
		if (w->session != NULL)
			++*connected_r;
	}
	uv_mutex_unlock(&in->lock);
}

void ingest_imap_close(struct ingest_imap **ingest)
{
	struct ingest_imap *in = *ingest;

	if (in == NULL)
		return;
	*ingest = NULL;
	uv_mutex_lock(&in->lock);
	atomic_store(&in->stop, true);
	for (struct watcher *w = in->watchers; w != NULL; w = w->next) {
		if (w->session != NULL)
			imap_session_interrupt(w->session);
		uv_cond_broadcast(&w->cond);
	}
	uv_mutex_unlock(&in->lock);
	/* what was handed over is journaled; the threads see stop then */
	process_queue(in);
	while (in->watchers != NULL) {
		struct watcher *w = in->watchers;

		in->watchers = w->next;
		if (w->started)
			uv_thread_join(&w->thread);
		watcher_free(w);
	}
	uv_close((uv_handle_t *)&in->async, async_closed);
}

static int add_watcher(struct ingest_imap *in, const char *account,
		       const char *idle_node, bool poller, const char *mailboxes,
		       const char **error_r)
{
	struct watcher *w = calloc(1, sizeof(*w)), **tail;
	char *copy, *save = NULL;

	if (w == NULL || uv_cond_init(&w->cond) != 0) {
		free(w);
		*error_r = "out of memory";
		return -1;
	}
	w->in = in;
	w->poller = poller;
	w->account = strdup(account);
	w->idle_node = strdup(idle_node);
	copy = strdup(mailboxes);
	w->skip = calloc(strlen(mailboxes) + 1, sizeof(char *));
	for (tail = &in->watchers; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = w;
	if (w->account == NULL || w->idle_node == NULL || copy == NULL || w->skip == NULL) {
		free(copy);
		*error_r = "out of memory";
		return -1;
	}
	for (char *t = strtok_r(copy, " \t,", &save); t != NULL;
	     t = strtok_r(NULL, " \t,", &save)) {
		if (strcmp(t, idle_node) != 0 && (w->skip[w->n_skip] = strdup(t)) != NULL)
			w->n_skip++;
	}
	free(copy);
	if (load_state(in, w) < 0) {
		*error_r = "cannot read the IMAP source's state from the store";
		return -1;
	}
	return 0;
}

int ingest_imap_new(uv_loop_t *loop, struct service *service,
		    struct imap_client *imap, ingest_imap_cb *on_journaled,
		    void *context, struct ingest_imap **ingest_r,
		    const char **error_r)
{
	const struct config *c = service->config;
	struct ingest_imap *in;
	char *accounts, *save = NULL;
	const char *mailboxes = *c->imap_source_mailboxes != '\0' ?
				c->imap_source_mailboxes : "INBOX";

	if (imap == NULL) {
		*error_r = "[imap_source] needs [imap] host";
		return -1;
	}
	in = calloc(1, sizeof(*in));
	if (in == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	in->service = service;
	in->imap = imap;
	in->on_journaled = on_journaled;
	in->context = context;
	in->config = c;
	in->sep = c->hierarchy_separator[0];
	in->queue_tail = &in->queue;
	atomic_init(&in->stop, false);
	if (uv_mutex_init(&in->lock) != 0) {
		free(in);
		*error_r = "cannot create a mutex";
		return -1;
	}
	uv_async_init(loop, &in->async, on_async);
	in->async.data = in;
	*ingest_r = in;

	accounts = strdup(c->imap_source_accounts);
	if (accounts == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	for (char *a = strtok_r(accounts, " \t,", &save); a != NULL;
	     a = strtok_r(NULL, " \t,", &save)) {
		char *boxes = strdup(mailboxes), *bsave = NULL;
		bool first = true;

		if (boxes == NULL) {
			*error_r = "out of memory";
			free(accounts);
			goto fail;
		}
		for (char *m = strtok_r(boxes, " \t,", &bsave); m != NULL;
		     m = strtok_r(NULL, " \t,", &bsave)) {
			if (!mailbox_uri_node_valid(m)) {
				static char msg[200];

				snprintf(msg, sizeof(msg), "[imap_source] mailboxes: '%s' is "
					 "not a node name (INBOX, INBOX/Sub...)", m);
				*error_r = msg;
				free(boxes);
				free(accounts);
				goto fail;
			}
			if (add_watcher(in, a, m, first, mailboxes, error_r) < 0) {
				free(boxes);
				free(accounts);
				goto fail;
			}
			first = false;
		}
		free(boxes);
	}
	free(accounts);
	for (struct watcher *w = in->watchers; w != NULL; w = w->next) {
		if (uv_thread_create(&w->thread, watcher_main, w) != 0) {
			*error_r = "cannot start an IMAP source thread";
			goto fail;
		}
		w->started = true;
	}
	return 0;
fail:
	ingest_imap_close(ingest_r);
	return -1;
}
