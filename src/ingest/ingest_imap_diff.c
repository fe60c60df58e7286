#include "ingest/ingest_imap_diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest_imap_flags.h"
#include "ingest/ingest_imap_uri.h"

const char INGEST_IMAP_EVENT_READ[] = "MessageRead";
const char INGEST_IMAP_EVENT_TRASH[] = "MessageTrash";
const char INGEST_IMAP_EVENT_SET[] = "FlagsSet";
const char INGEST_IMAP_EVENT_CLEAR[] = "FlagsClear";

void ingest_imap_delta_clear(struct ingest_imap_delta *d)
{
	for (size_t i = 0; i < d->n_put; i++)
		free(d->put[i].flags);
	free(d->put);
	free(d->gone);
	memset(d, 0, sizeof(*d));
}

void ingest_imap_diff_work_clear(struct ingest_imap_diff_work *w)
{
	for (size_t i = 0; i < w->n_groups; i++) {
		free(w->groups[i].flags);
		free(w->groups[i].uids);
	}
	free(w->groups);
	free(w->new_uids);
	free(w->gone);
	memset(w, 0, sizeof(*w));
}

static bool in_ranges(const struct ingest_imap_range *r, size_t n, uint32_t uid)
{
	for (size_t i = 0; i < n; i++) {
		if (uid >= r[i].first && uid <= r[i].last)
			return true;
	}
	return false;
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

static struct ingest_imap_group *group_find(struct ingest_imap_diff_work *w,
					    const char *type, const char *flags)
{
	for (size_t i = 0; i < w->n_groups; i++) {
		struct ingest_imap_group *g = &w->groups[i];

		if (g->type == type &&
		    ((flags == NULL && g->flags == NULL) ||
		     (flags != NULL && g->flags != NULL && strcmp(flags, g->flags) == 0)))
			return g;
	}
	return NULL;
}

static int group_add(struct ingest_imap_diff_work *w, const char *type,
		     const char *flags, uint32_t uid)
{
	struct ingest_imap_group *g = group_find(w, type, flags);

	if (g == NULL) {
		if (w->n_groups == w->cap_groups) {
			size_t cap = w->cap_groups * 2 + 4;
			struct ingest_imap_group *bigger =
				realloc(w->groups, cap * sizeof(*bigger));

			if (bigger == NULL)
				return -1;
			w->groups = bigger;
			w->cap_groups = cap;
		}
		g = &w->groups[w->n_groups];
		memset(g, 0, sizeof(*g));
		g->type = type;
		if (flags != NULL && (g->flags = strdup(flags)) == NULL)
			return -1;
		w->n_groups++;
	}
	return u32_push(&g->uids, &g->n, &g->cap, uid);
}

/* Sorts a flag change of one message into the groups. */
static int flag_change(struct ingest_imap_diff_work *w, uint32_t uid, const char *old,
		       const char *now)
{
	struct ingest_imap_flag_change fc;
	int ret = -1;

	if (ingest_imap_flags_compare(old, now, &fc) < 0)
		return -1;
	if (fc.seen && group_add(w, INGEST_IMAP_EVENT_READ, NULL, uid) < 0)
		goto out;
	if (fc.deleted && group_add(w, INGEST_IMAP_EVENT_TRASH, NULL, uid) < 0)
		goto out;
	if (fc.added != NULL && group_add(w, INGEST_IMAP_EVENT_SET, fc.added, uid) < 0)
		goto out;
	if (fc.removed != NULL && group_add(w, INGEST_IMAP_EVENT_CLEAR, fc.removed, uid) < 0)
		goto out;
	ret = 0;
out:
	ingest_imap_flag_change_clear(&fc);
	return ret;
}

void ingest_imap_diff_unique(struct ingest_imap_changes *ch, struct ingest_imap_diff_work *w)
{
	struct ingest_imap_msg *fetched = ch->fetched;
	size_t j = 0;

	ingest_imap_msgs_sort(fetched, ch->n_fetched);
	for (size_t i = 0; i < ch->n_fetched; i++) {
		struct ingest_imap_msg t;

		if (j > 0 && fetched[j - 1].uid == fetched[i].uid)
			continue;
		t = fetched[j];
		fetched[j] = fetched[i];
		fetched[i] = t;
		j++;
	}
	w->n_fetched = j;
}

bool ingest_imap_diff_adds_up(const struct ingest_imap_box *box,
			      const struct ingest_imap_changes *ch,
			      const struct ingest_imap_diff_work *w)
{
	long long predicted = (long long)box->n;

	for (size_t i = 0; i < box->n; i++) {
		if (in_ranges(ch->vanished, ch->n_vanished, box->msgs[i].uid) &&
		    ingest_imap_msgs_find(ch->fetched, w->n_fetched, box->msgs[i].uid) == NULL)
			predicted--;
	}
	for (size_t i = 0; i < w->n_fetched; i++) {
		if (ingest_imap_msgs_find(box->msgs, box->n, ch->fetched[i].uid) == NULL)
			predicted++;
	}
	return predicted == (long long)ch->exists;
}

int ingest_imap_diff_changed(const struct ingest_imap_box *box,
			     const struct ingest_imap_changes *ch,
			     struct ingest_imap_diff_work *w,
			     struct ingest_imap_delta *delta)
{
	const struct ingest_imap_msg *fetched = ch->fetched;

	delta->put = calloc(w->n_fetched + 1, sizeof(*delta->put));
	if (delta->put == NULL)
		return -1;
	for (size_t i = 0; i < w->n_fetched; i++) {
		const struct ingest_imap_msg *old =
			ingest_imap_msgs_find(box->msgs, box->n, fetched[i].uid);

		if (old == NULL) {
			if (u32_push(&w->new_uids, &w->n_new, &w->cap_new, fetched[i].uid) < 0)
				return -1;
		} else if (strcmp(old->flags, fetched[i].flags) == 0) {
			continue;
		} else if (flag_change(w, fetched[i].uid, old->flags, fetched[i].flags) < 0) {
			return -1;
		}
		delta->put[delta->n_put].uid = fetched[i].uid;
		delta->put[delta->n_put].flags = strdup(fetched[i].flags);
		if (delta->put[delta->n_put++].flags == NULL)
			return -1;
	}
	return 0;
}

int ingest_imap_diff_expunged(const struct ingest_imap_box *box,
			      const struct ingest_imap_changes *ch,
			      struct ingest_imap_diff_work *w)
{
	for (size_t i = 0; i < box->n; i++) {
		uint32_t uid = box->msgs[i].uid;
		bool listed = ingest_imap_msgs_find(ch->fetched, w->n_fetched, uid) != NULL;

		if (ch->complete ? !listed
				 : (!listed && in_ranges(ch->vanished, ch->n_vanished, uid))) {
			if (u32_push(&w->gone, &w->n_gone, &w->cap_gone, uid) < 0)
				return -1;
		}
	}
	return 0;
}

int ingest_imap_diff_apply(struct ingest_imap_box *box, struct ingest_imap_changes *ch,
			   const struct ingest_imap_diff_work *w)
{
	struct ingest_imap_msg *fetched = ch->fetched;
	struct ingest_imap_msg *merged = malloc((box->n + w->n_fetched + 1) * sizeof(*merged));
	size_t i = 0, j = 0, g = 0, nm = 0, nf = w->n_fetched;

	if (merged == NULL)
		return -1;
	/* a merge of two sorted lists */
	while (i < box->n || j < nf) {
		uint32_t bu = i < box->n ? box->msgs[i].uid : UINT32_MAX;
		uint32_t fu = j < nf ? fetched[j].uid : UINT32_MAX;

		if (i < box->n && (j >= nf || bu < fu)) {
			while (g < w->n_gone && w->gone[g] < bu)
				g++;
			if (g < w->n_gone && w->gone[g] == bu)
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
	free(box->msgs);
	box->msgs = merged;
	box->n = box->cap = nm;
	if (ch->uidnext > box->uidnext)
		box->uidnext = ch->uidnext;
	if (nm > 0 && box->msgs[nm - 1].uid >= box->uidnext)
		box->uidnext = box->msgs[nm - 1].uid + 1;
	if (ch->modseq > 0)
		box->modseq = ch->modseq;
	return 0;
}

json_t *ingest_imap_event_new(const char *type, const char *uri)
{
	return json_pack("{s:s, s:s}", "event", type, "uri", uri);
}

void ingest_imap_event_add_counts(json_t *ev, const struct ingest_imap_box *box,
				  uint32_t unseen)
{
	json_object_set_new(ev, "messages", json_integer((json_int_t)box->n));
	json_object_set_new(ev, "vnd.cmu.unseenMessages", json_integer((json_int_t)unseen));
	json_object_set_new(ev, "uidnext", json_integer((json_int_t)box->uidnext));
	if (box->modseq > 0)
		json_object_set_new(ev, "modseq", json_integer((json_int_t)box->modseq));
}

/* An event on a set of UIDs (uids ascending); flags NULL: none. */
static int events_add_uids(json_t *events, const char *type, const char *uri,
			   const uint32_t *uids, size_t n, const char *flags)
{
	json_t *ev = ingest_imap_event_new(type, uri);
	char *set = ingest_imap_uidset(uids, n);

	if (ev == NULL || set == NULL) {
		json_decref(ev);
		free(set);
		return -1;
	}
	json_object_set_new(ev, "uidset", json_string(set));
	free(set);
	if (flags != NULL)
		json_object_set_new(ev, "flagNames", json_string(flags));
	return json_array_append_new(events, ev);
}

static int events_add_new(json_t *events, const char *uri, const uint32_t *uids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *u = malloc(strlen(uri) + 24);
		json_t *ev;

		if (u == NULL)
			return -1;
		sprintf(u, "%s/;UID=%u", uri, uids[i]);
		ev = ingest_imap_event_new("MessageNew", u);
		free(u);
		if (ev == NULL || json_array_append_new(events, ev) < 0)
			return -1;
	}
	return 0;
}

static int events_add_flags(json_t *events, const char *uri,
			    const struct ingest_imap_diff_work *w)
{
	static const char *const order[] = {
		INGEST_IMAP_EVENT_READ, INGEST_IMAP_EVENT_TRASH,
		INGEST_IMAP_EVENT_SET, INGEST_IMAP_EVENT_CLEAR,
	};

	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		for (size_t i = 0; i < w->n_groups; i++) {
			const struct ingest_imap_group *g = &w->groups[i];

			/* the UIDs were added in ascending order (fetched is sorted) */
			if (g->type == order[k] &&
			    events_add_uids(events, g->type, uri, g->uids, g->n, g->flags) < 0)
				return -1;
		}
	}
	return 0;
}

int ingest_imap_diff_events(const struct ingest_imap_box *box, const char *uri,
			    const struct ingest_imap_diff_work *w, json_t *events)
{
	size_t first = json_array_size(events);
	uint32_t unseen;

	if (events_add_new(events, uri, w->new_uids, w->n_new) < 0 ||
	    events_add_flags(events, uri, w) < 0 ||
	    (w->n_gone > 0 &&
	     events_add_uids(events, "MessageExpunge", uri, w->gone, w->n_gone, NULL) < 0)) {
		while (json_array_size(events) > first)
			json_array_remove(events, json_array_size(events) - 1);
		return -1;
	}
	if (json_array_size(events) == first)
		return 0;
	unseen = ingest_imap_box_unseen(box);
	for (size_t i = first; i < json_array_size(events); i++)
		ingest_imap_event_add_counts(json_array_get(events, i), box, unseen);
	return 0;
}

int ingest_imap_diff(struct ingest_imap_box *box, struct ingest_imap_changes *ch,
		     const char *uri, json_t *events, struct ingest_imap_delta *delta)
{
	struct ingest_imap_diff_work w = { 0 };
	int ret = -1;

	memset(delta, 0, sizeof(*delta));
	ingest_imap_diff_unique(ch, &w);
	if (!ch->complete && !ingest_imap_diff_adds_up(box, ch, &w)) {
		ingest_imap_diff_work_clear(&w);
		return 1;
	}
	if (ingest_imap_diff_changed(box, ch, &w, delta) < 0 ||
	    ingest_imap_diff_expunged(box, ch, &w) < 0 ||
	    ingest_imap_diff_apply(box, ch, &w) < 0) {
		ingest_imap_delta_clear(delta);
		goto out;
	}
	/* box has changed: on failure from here the caller must not trust it */
	ret = ingest_imap_diff_events(box, uri, &w, events);
	delta->gone = w.gone;
	delta->n_gone = w.n_gone;
	w.gone = NULL;
	w.n_gone = 0;
out:
	ingest_imap_diff_work_clear(&w);
	return ret;
}
