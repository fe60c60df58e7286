#include "ingest/ingest_imap_session.h"

#include <stdlib.h>
#include <string.h>

#include <libetpan/libetpan.h>

#include "imap/imap_command.h"
#include "imap/imap_name.h"
#include "ingest/ingest_imap_flags.h"
#include "base/log.h"

static mailimap *wimap(struct ingest_imap_session *s)
{
	return imap_session_mailimap(s->imap);
}

void ingest_imap_session_enable(struct ingest_imap_session *s)
{
	s->condstore = mailimap_has_condstore(wimap(s)) != 0;
	s->qresync = false;
	if (mailimap_has_qresync(wimap(s)) && mailimap_has_enable(wimap(s))) {
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
			imap_session_deadline(s->imap, s->step_ms);
			if (mailimap_enable(wimap(s), data, &result) == MAILIMAP_NO_ERROR)
				s->qresync = true;
			if (result != NULL)
				mailimap_capability_data_free(result);
			mailimap_capability_data_free(data);
		}
		if (cap != NULL)
			mailimap_capability_free(cap);
		if (caps != NULL)
			clist_free(caps);
	}
}

void ingest_imap_msgs_free(struct ingest_imap_msgs *ms)
{
	for (size_t i = 0; i < ms->n; i++)
		free(ms->m[i].flags);
	free(ms->m);
	memset(ms, 0, sizeof(*ms));
}

/* UID and FLAGS of each FETCH response; responses without both (an
 * unsolicited FETCH without UID) are skipped. */
static int msgs_take(struct ingest_imap_msgs *ms, clist *result)
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
int ingest_imap_session_fetch_flags(struct ingest_imap_session *s, uint64_t since,
				    bool vanished, struct ingest_imap_msgs *out,
				    struct ingest_imap_range **van_r, size_t *n_van_r)
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
	imap_session_deadline(s->imap, s->step_ms * 10);
	if (since > 0 && vanished)
		r = mailimap_uid_fetch_qresync(wimap(s), set, ft, since, &result, &van);
	else if (since > 0)
		r = mailimap_uid_fetch_changedsince(wimap(s), set, ft, since, &result);
	else
		r = mailimap_uid_fetch(wimap(s), set, ft, &result);
	if (r != MAILIMAP_NO_ERROR) {
		/* libetpan frees the list itself on a NO but leaves the
		 * pointer (see imap_command.c run_fetch) */
		result = NULL;
		van = NULL;
		if (!atomic_load(s->stop))
			log_warn("imap source: %s: UID FETCH failed: %s", s->account,
				 imap_session_error(s->imap));
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

/* EXAMINE (read only: never changes \Recent or anything else).
 * 0, 1 when the server says NO (no such mailbox), -1 broken. */
int ingest_imap_session_examine(struct ingest_imap_session *s, const char *node,
				struct ingest_imap_selected *sel)
{
	const struct mailimap_selection_info *si;
	const char *err;
	char *name;
	int r;

	memset(sel, 0, sizeof(*sel));
	if (imap_name_from_node(imap_session_namespaces(s->imap), s->account,
				s->account, node, &name, &err) < 0) {
		log_warn("imap source: %s/%s: %s", s->account, node, err);
		return 1;
	}
	imap_session_deadline(s->imap, s->step_ms);
	if (s->condstore)
		r = mailimap_examine_condstore(wimap(s), name, &sel->modseq);
	else
		r = mailimap_examine(wimap(s), name);
	if (r != MAILIMAP_NO_ERROR) {
		bool no = r == MAILIMAP_ERROR_EXAMINE || r == MAILIMAP_ERROR_EXTENSION;

		log_info("imap source: %s: EXAMINE %s failed: %s", s->account, name,
			 imap_session_error(s->imap));
		free(name);
		return no ? 1 : -1;
	}
	free(name);
	si = wimap(s)->imap_selection_info;
	if (si == NULL)
		return -1;
	sel->uidvalidity = si->sel_uidvalidity;
	sel->uidnext = si->sel_uidnext;
	sel->exists = si->sel_exists;
	return 0;
}

void ingest_imap_names_free(struct ingest_imap_names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	memset(ns, 0, sizeof(*ns));
}

bool ingest_imap_names_has(const struct ingest_imap_names *ns, const char *s)
{
	for (size_t i = 0; i < ns->n; i++) {
		if (strcmp(ns->v[i], s) == 0)
			return true;
	}
	return false;
}

static int name_listed(void *context, char *node)
{
	struct ingest_imap_names *out = context;

	/* out->v has room for every entry of the LIST */
	if (ingest_imap_names_has(out, node))
		free(node);
	else
		out->v[out->n++] = node;
	return 0;
}

/* LIST "" "*" as the owner: the account's selectable mailboxes as nodes. */
int ingest_imap_session_list(struct ingest_imap_session *s, struct ingest_imap_names *out)
{
	clist *list = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	imap_session_deadline(s->imap, s->step_ms);
	r = mailimap_list(wimap(s), "", "*", &list);
	if (r != MAILIMAP_NO_ERROR) {
		if (!atomic_load(s->stop))
			log_warn("imap source: %s: LIST failed: %s", s->account,
				 imap_session_error(s->imap));
		if (list != NULL)
			mailimap_list_result_free(list);
		return -1;
	}
	out->v = calloc((size_t)clist_count(list) + 1, sizeof(char *));
	if (out->v == NULL) {
		mailimap_list_result_free(list);
		return -1;
	}
	imap_list_each_node(list, imap_session_namespaces(s->imap), s->account, s->account,
			    name_listed, out);
	mailimap_list_result_free(list);
	return 0;
}

uint32_t ingest_imap_session_exists(struct ingest_imap_session *s, uint32_t fallback)
{
	return wimap(s)->imap_selection_info != NULL ?
	       wimap(s)->imap_selection_info->sel_exists : fallback;
}

bool ingest_imap_session_has_idle(struct ingest_imap_session *s)
{
	return mailimap_has_idle(wimap(s));
}

int ingest_imap_session_idle(struct ingest_imap_session *s, unsigned wait_ms)
{
	imap_session_deadline(s->imap, s->step_ms);
	if (mailimap_idle(wimap(s)) != MAILIMAP_NO_ERROR) {
		if (!atomic_load(s->stop))
			log_warn("imap source: %s: IDLE failed: %s", s->account,
				 imap_session_error(s->imap));
		return -1;
	}
	if (imap_session_wait(s->imap, wait_ms) < 0)
		return -1;
	imap_session_deadline(s->imap, s->step_ms);
	if (mailimap_idle_done(wimap(s)) != MAILIMAP_NO_ERROR) {
		if (!atomic_load(s->stop))
			log_warn("imap source: %s: IDLE DONE failed: %s", s->account,
				 imap_session_error(s->imap));
		return -1;
	}
	return 0;
}
