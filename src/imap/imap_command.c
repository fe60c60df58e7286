#include "imap/imap_command.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libetpan/libetpan.h>

#include "imap/imap_error.h"
#include "imap/imap_name.h"
#include "base/log.h"

/* Classifies a failed command: NO (the command's own error code) is an
 * answer, BAD is our problem but the session is fine, anything else means
 * the connection is gone. */
static enum imap_run run_failed(struct imap_conn *s, struct imap_command *cmd, int r,
				  int no_code, const char *what, const char *arg)
{
	const char *text = s->imap->imap_response != NULL ? s->imap->imap_response : "";

	if (r == no_code) {
		cmd->result = IMAP_NO;
		imap_error_set(cmd->error, sizeof(cmd->error), "%s %s: NO %s", what, arg, text);
		return IMAP_RUN_DONE;
	}
	if (r == MAILIMAP_ERROR_PROTOCOL) {
		cmd->result = IMAP_TEMPFAIL;
		imap_error_set(cmd->error, sizeof(cmd->error), "%s %s: server said BAD %s", what, arg, text);
		return IMAP_RUN_DONE;
	}
	cmd->result = IMAP_TEMPFAIL;
	imap_error_set(cmd->error, sizeof(cmd->error), "%s %s: %s", what, arg,
		 s->stream->error[0] ? s->stream->error :
		 r == MAILIMAP_ERROR_FATAL ? "server said BYE" : "protocol error");
	return IMAP_RUN_BROKEN;
}

/* A node that cannot name a mailbox: no such mailbox. */
static bool cmd_mailbox_name(struct imap_conn *s, struct imap_command *cmd, const char *self,
		    const char *node, char **name_r)
{
	const char *err;

	if (imap_name_from_node(&s->ns, self, cmd->account, node, name_r, &err) == 0)
		return true;
	cmd->result = IMAP_NO;
	imap_error_set(cmd->error, sizeof(cmd->error), "%s/%s: %s", cmd->account, node, err);
	log_debug("imap: %s", cmd->error);
	return false;
}

static enum imap_run run_myrights(struct imap_conn *s, struct imap_command *cmd)
{
	struct mailimap_acl_myrights_data *data = NULL;
	uint64_t t0;
	char *name;
	int r;

	if (!cmd_mailbox_name(s, cmd, imap_conn_self(s), cmd->node, &name))
		return IMAP_RUN_DONE;
	t0 = uv_hrtime();
	imap_stream_set_deadline(s->stream, s->peer->timeout_ms);
	r = mailimap_acl_myrights(s->imap, name, &data);
	imap_conn_log(s, "MYRIGHTS", name, r, t0);
	if (r == MAILIMAP_NO_ERROR) {
		cmd->rights = strdup(data->rights != NULL ? data->rights : "");
		cmd->result = cmd->rights != NULL ? IMAP_OK : IMAP_TEMPFAIL;
	}
	if (data != NULL)
		mailimap_acl_myrights_data_free(data);
	if (r != MAILIMAP_NO_ERROR) {
		enum imap_run rr = run_failed(s, cmd, r, MAILIMAP_ERROR_EXTENSION,
						"MYRIGHTS", name);
		free(name);
		return rr;
	}
	free(name);
	return IMAP_RUN_DONE;
}

static enum imap_run run_status(struct imap_conn *s, struct imap_command *cmd)
{
	struct mailimap_status_att_list *atts;
	struct mailimap_mailbox_data_status *data = NULL;
	static const int wanted[] = {
		MAILIMAP_STATUS_ATT_MESSAGES, MAILIMAP_STATUS_ATT_UNSEEN,
		MAILIMAP_STATUS_ATT_UIDNEXT, MAILIMAP_STATUS_ATT_UIDVALIDITY,
	};
	enum imap_run rr = IMAP_RUN_DONE;
	uint64_t t0;
	char *name;
	int r;

	if (!cmd_mailbox_name(s, cmd, imap_conn_self(s), cmd->node, &name))
		return IMAP_RUN_DONE;
	atts = mailimap_status_att_list_new_empty();
	for (size_t i = 0; atts != NULL && i < sizeof(wanted) / sizeof(wanted[0]); i++)
		mailimap_status_att_list_add(atts, wanted[i]);
	if (atts != NULL && s->condstore)
		mailimap_status_att_list_add(atts, MAILIMAP_STATUS_ATT_HIGHESTMODSEQ);
	if (atts == NULL) {
		free(name);
		cmd->result = IMAP_TEMPFAIL;
		imap_error_set(cmd->error, sizeof(cmd->error), "out of memory");
		return IMAP_RUN_DONE;
	}
	t0 = uv_hrtime();
	imap_stream_set_deadline(s->stream, s->peer->timeout_ms);
	r = mailimap_status(s->imap, name, atts, &data);
	imap_conn_log(s, "STATUS", name, r, t0);
	mailimap_status_att_list_free(atts);
	if (r == MAILIMAP_NO_ERROR && data != NULL) {
		for (clistiter *it = clist_begin(data->st_info_list); it != NULL;
		     it = clist_next(it)) {
			struct mailimap_status_info *info = clist_content(it);
			struct mailimap_extension_data *ext = info->st_ext_data;

			switch (info->st_att) {
			case MAILIMAP_STATUS_ATT_MESSAGES:
				cmd->st.messages = info->st_value;
				break;
			case MAILIMAP_STATUS_ATT_UNSEEN:
				cmd->st.unseen = info->st_value;
				break;
			case MAILIMAP_STATUS_ATT_UIDNEXT:
				cmd->st.uidnext = info->st_value;
				break;
			case MAILIMAP_STATUS_ATT_UIDVALIDITY:
				cmd->st.uidvalidity = info->st_value;
				break;
			default:
				/* HIGHESTMODSEQ is 64 bit: it comes as
				 * CONDSTORE extension data */
				if (ext != NULL &&
				    ext->ext_extension->ext_id == MAILIMAP_EXTENSION_CONDSTORE &&
				    ext->ext_type == MAILIMAP_CONDSTORE_TYPE_STATUS_INFO)
					cmd->st.highestmodseq = ((struct mailimap_condstore_status_info *)
								ext->ext_data)->cs_highestmodseq_value;
				break;
			}
		}
		cmd->result = IMAP_OK;
	} else if (r == MAILIMAP_NO_ERROR) {
		cmd->result = IMAP_TEMPFAIL;
		imap_error_set(cmd->error, sizeof(cmd->error), "STATUS %s: no STATUS data", name);
	} else {
		rr = run_failed(s, cmd, r, MAILIMAP_ERROR_STATUS, "STATUS", name);
	}
	if (data != NULL)
		mailimap_mailbox_data_status_free(data);
	free(name);
	return rr;
}

static const char *const month_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static void format_internaldate(const struct mailimap_date_time *d, char *buf,
				size_t size)
{
	int zone = d->dt_zone;

	snprintf(buf, size, "%02d-%s-%04d %02d:%02d:%02d %c%04d", d->dt_day,
		 d->dt_month >= 1 && d->dt_month <= 12 ? month_names[d->dt_month - 1] : "Jan",
		 d->dt_year, d->dt_hour, d->dt_min, d->dt_sec, zone < 0 ? '-' : '+',
		 zone < 0 ? -zone : zone);
}

void imap_flag_append(char **flags, const struct mailimap_flag *f)
{
	const char *name = NULL;
	const char *cur = *flags != NULL ? *flags : "";
	char *joined;

	switch (f->fl_type) {
	case MAILIMAP_FLAG_ANSWERED: name = "\\Answered"; break;
	case MAILIMAP_FLAG_FLAGGED: name = "\\Flagged"; break;
	case MAILIMAP_FLAG_DELETED: name = "\\Deleted"; break;
	case MAILIMAP_FLAG_SEEN: name = "\\Seen"; break;
	case MAILIMAP_FLAG_DRAFT: name = "\\Draft"; break;
	case MAILIMAP_FLAG_KEYWORD: name = f->fl_data.fl_keyword; break;
	case MAILIMAP_FLAG_EXTENSION: name = f->fl_data.fl_extension; break;
	default: break;
	}
	if (name == NULL)
		return;
	if (asprintf(&joined, "%s%s%s", cur, *cur != '\0' ? " " : "", name) < 0)
		return;
	free(*flags);
	*flags = joined;
}

static void take_fetch_item(struct imap_command *cmd, const struct mailimap_msg_att_item *item)
{
	if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC) {
		/* libetpan gives FLAGS () as a NULL list */
		clist *flags = item->att_data.att_dyn != NULL ?
			       item->att_data.att_dyn->att_list : NULL;

		for (clistiter *it = flags != NULL ? clist_begin(flags) : NULL; it != NULL;
		     it = clist_next(it)) {
			const struct mailimap_flag_fetch *ff = clist_content(it);

			if (ff->fl_type == MAILIMAP_FLAG_FETCH_OTHER && ff->fl_flag != NULL)
				imap_flag_append(&cmd->flags, ff->fl_flag);
		}
		return;
	}
	if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC)
		return;
	if (item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_INTERNALDATE) {
		format_internaldate(item->att_data.att_static->att_data.att_internal_date,
				    cmd->internaldate, sizeof(cmd->internaldate));
	} else if (item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_BODY_SECTION &&
		   cmd->body == NULL) {
		const struct mailimap_msg_att_body_section *sec =
			item->att_data.att_static->att_data.att_body_section;

		cmd->body = malloc(sec->sec_length + 1);
		if (cmd->body != NULL) {
			memcpy(cmd->body, sec->sec_body_part, sec->sec_length);
			cmd->body_len = sec->sec_length;
		}
	}
}

static struct mailimap_fetch_type *fetch_type(enum imap_fetch_part part)
{
	struct mailimap_fetch_type *ft = mailimap_fetch_type_new_fetch_att_list_empty();
	struct mailimap_section *sec = part == IMAP_FETCH_HEADERS ?
		mailimap_section_new_header() : mailimap_section_new(NULL);

	if (ft == NULL || sec == NULL ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid()) != 0 ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_flags()) != 0 ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_internaldate()) != 0 ||
	    mailimap_fetch_type_new_fetch_att_list_add(ft,
			mailimap_fetch_att_new_body_peek_section(sec)) != 0) {
		if (ft != NULL)
			mailimap_fetch_type_free(ft);
		return NULL;
	}
	return ft;
}

static enum imap_run run_fetch(struct imap_conn *s, struct imap_command *cmd)
{
	struct mailimap_fetch_type *ft;
	struct mailimap_set *set;
	clist *result = NULL;
	enum imap_run rr = IMAP_RUN_DONE;
	uint64_t t0;
	char *name, what[32];
	int r;

	if (!cmd_mailbox_name(s, cmd, imap_conn_self(s), cmd->node, &name))
		return IMAP_RUN_DONE;
	t0 = uv_hrtime();
	imap_stream_set_deadline(s->stream, s->peer->timeout_ms);
	r = mailimap_examine(s->imap, name);
	imap_conn_log(s, "EXAMINE", name, r, t0);
	if (r != MAILIMAP_NO_ERROR) {
		rr = run_failed(s, cmd, r, MAILIMAP_ERROR_EXAMINE, "EXAMINE", name);
		free(name);
		return rr;
	}
	if (cmd->uidvalidity != 0 && s->imap->imap_selection_info != NULL &&
	    s->imap->imap_selection_info->sel_uidvalidity != cmd->uidvalidity) {
		cmd->result = IMAP_NO;
		imap_error_set(cmd->error, sizeof(cmd->error), "%s: UIDVALIDITY is %u, not %u", name,
		       s->imap->imap_selection_info->sel_uidvalidity, cmd->uidvalidity);
		free(name);
		return IMAP_RUN_DONE;
	}
	ft = fetch_type(cmd->part);
	set = mailimap_set_new_single(cmd->uid);
	if (ft == NULL || set == NULL) {
		if (ft != NULL)
			mailimap_fetch_type_free(ft);
		if (set != NULL)
			mailimap_set_free(set);
		free(name);
		cmd->result = IMAP_TEMPFAIL;
		imap_error_set(cmd->error, sizeof(cmd->error), "out of memory");
		return IMAP_RUN_DONE;
	}
	snprintf(what, sizeof(what), "%u", cmd->uid);
	t0 = uv_hrtime();
	/* a big message takes longer than one network step should */
	imap_stream_set_deadline(s->stream, s->peer->timeout_ms * 10);
	r = mailimap_uid_fetch(s->imap, set, ft, &result);
	imap_conn_log(s, "UID FETCH", what, r, t0);
	/* on a NO libetpan has freed the list already, but leaves the
	 * pointer: freeing it again crashed (ASan) */
	if (r != MAILIMAP_NO_ERROR)
		result = NULL;
	mailimap_fetch_type_free(ft);
	mailimap_set_free(set);
	if (r != MAILIMAP_NO_ERROR) {
		rr = run_failed(s, cmd, r, MAILIMAP_ERROR_UID_FETCH, "UID FETCH", what);
	} else {
		for (clistiter *it = clist_begin(result); it != NULL; it = clist_next(it)) {
			const struct mailimap_msg_att *att = clist_content(it);

			for (clistiter *jt = clist_begin(att->att_list); jt != NULL;
			     jt = clist_next(jt))
				take_fetch_item(cmd, clist_content(jt));
		}
		if (cmd->body != NULL) {
			cmd->result = IMAP_OK;
		} else {
			cmd->result = IMAP_NO;
			imap_error_set(cmd->error, sizeof(cmd->error), "%s UID %u: no such message "
			       "(expunged)", name, cmd->uid);
		}
	}
	if (result != NULL)
		mailimap_fetch_list_free(result);
	free(name);
	return rr;
}

bool imap_mailbox_selectable(const struct mailimap_mailbox_list *mb)
{
	const struct mailimap_mbx_list_flags *f = mb->mb_flag;

	if (f == NULL)
		return true;
	if (f->mbf_type == MAILIMAP_MBX_LIST_FLAGS_SFLAG &&
	    f->mbf_sflag == MAILIMAP_MBX_LIST_SFLAG_NOSELECT)
		return false;
	for (clistiter *it = clist_begin(f->mbf_oflags); it != NULL; it = clist_next(it)) {
		const struct mailimap_mbx_list_oflag *of = clist_content(it);

		if (of->of_type == MAILIMAP_MBX_LIST_OFLAG_FLAG_EXT && of->of_flag_ext != NULL &&
		    (strcasecmp(of->of_flag_ext, "NonExistent") == 0 ||
		     strcasecmp(of->of_flag_ext, "Noselect") == 0))
			return false;
	}
	return true;
}

static int nodes_add(struct imap_command *cmd, char *node)
{
	char **grown = realloc(cmd->nodes, (cmd->n_nodes + 1) * sizeof(*grown));

	if (grown == NULL) {
		free(node);
		return -1;
	}
	cmd->nodes = grown;
	cmd->nodes[cmd->n_nodes++] = node;
	return 0;
}

int imap_list_each_node(clist *list, const struct imap_namespaces *ns,
			const char *self, const char *account,
			imap_list_node_cb *cb, void *context)
{
	for (clistiter *it = clist_begin(list); it != NULL; it = clist_next(it)) {
		struct mailimap_mailbox_list *mb = clist_content(it);
		const char *err;
		char *node;
		int r;

		if (!imap_mailbox_selectable(mb))
			continue;
		r = imap_name_to_node(ns, self, account, mb->mb_name, mb->mb_delimiter,
				      &node, &err);
		if (r < 0)
			log_warn("imap: %s: skipping mailbox %s: %s", account, mb->mb_name, err);
		if (r == 0 && (r = cb(context, node)) != 0)
			return r;
	}
	return 0;
}

static int node_listed(void *context, char *node)
{
	struct imap_command *cmd = context;

	if (nodes_add(cmd, node) == 0)
		return 0;
	cmd->result = IMAP_TEMPFAIL;
	imap_error_set(cmd->error, sizeof(cmd->error), "out of memory");
	return 1;
}

/* LIST "" pattern; the selectable mailboxes of cmd->account become nodes.
 * With tops != NULL the raw names are collected instead (shared roots). */
static enum imap_run list_pattern(struct imap_conn *s, struct imap_command *cmd,
				    const char *pattern, clist **raw_r)
{
	clist *list = NULL;
	uint64_t t0 = uv_hrtime();
	int r;

	imap_stream_set_deadline(s->stream, s->peer->timeout_ms);
	r = mailimap_list(s->imap, "", pattern, &list);
	imap_conn_log(s, "LIST", pattern, r, t0);
	if (r != MAILIMAP_NO_ERROR) {
		if (list != NULL)
			mailimap_list_result_free(list);
		return run_failed(s, cmd, r, MAILIMAP_ERROR_LIST, "LIST", pattern);
	}
	cmd->result = IMAP_OK;
	if (raw_r != NULL) {
		*raw_r = list;
		return IMAP_RUN_DONE;
	}
	imap_list_each_node(list, &s->ns, imap_conn_self(s), cmd->account, node_listed, cmd);
	mailimap_list_result_free(list);
	return IMAP_RUN_DONE;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum imap_run run_list(struct imap_conn *s, struct imap_command *cmd)
{
	const struct imap_ns *shared = &s->ns.shared;
	enum imap_run rr;
	char *base, *pattern;
	size_t n = 0;

	if (cmd->account[0] != '\0' && strcmp(imap_conn_self(s), cmd->account) == 0) {
		/* as the owner: everything it sees; imap_name_to_node keeps
		 * its personal mailboxes */
		rr = list_pattern(s, cmd, "*", NULL);
	} else if (cmd->account[0] != '\0') {
		/* the account's INBOX and everything below it: two patterns,
		 * as "user/alice*" would also match user/alicia */
		if (!cmd_mailbox_name(s, cmd, imap_conn_self(s), "INBOX", &base))
			return IMAP_RUN_DONE;
		rr = list_pattern(s, cmd, base, NULL);
		if (rr == IMAP_RUN_DONE && cmd->result == IMAP_OK && s->ns.other.sep != '\0' &&
		    asprintf(&pattern, "%s%c*", base, s->ns.other.sep) >= 0) {
			rr = list_pattern(s, cmd, pattern, NULL);
			free(pattern);
		}
		free(base);
	} else if (shared->prefix == NULL) {
		cmd->result = IMAP_OK;
		rr = IMAP_RUN_DONE;
	} else if (shared->prefix[0] != '\0') {
		if (asprintf(&pattern, "%s*", shared->prefix) < 0)
			pattern = NULL;
		rr = pattern != NULL ? list_pattern(s, cmd, pattern, NULL) : IMAP_RUN_DONE;
		free(pattern);
	} else {
		/* Cyrus's default: shared mailboxes are top-level names beside
		 * "user" and INBOX. "*" would list every mailbox on the server:
		 * list the roots, then below each shared one. */
		clist *tops = NULL;

		rr = list_pattern(s, cmd, "%", &tops);
		for (clistiter *it = tops != NULL ? clist_begin(tops) : NULL;
		     rr == IMAP_RUN_DONE && cmd->result == IMAP_OK && it != NULL;
		     it = clist_next(it)) {
			struct mailimap_mailbox_list *mb = clist_content(it);
			const char *err;
			char *node;

			if (imap_name_to_node(&s->ns, imap_conn_self(s), "", mb->mb_name,
					      mb->mb_delimiter, &node, &err) != 0)
				continue;
			if (imap_mailbox_selectable(mb))
				nodes_add(cmd, node);
			else
				free(node);
			if (mb->mb_delimiter != '\0' &&
			    asprintf(&pattern, "%s%c*", mb->mb_name, mb->mb_delimiter) >= 0) {
				rr = list_pattern(s, cmd, pattern, NULL);
				free(pattern);
			}
		}
		if (tops != NULL)
			mailimap_list_result_free(tops);
	}
	if (cmd->result != IMAP_OK)
		return rr;
	/* sorted, without the duplicates overlapping patterns may bring */
	if (cmd->n_nodes > 1)
		qsort(cmd->nodes, cmd->n_nodes, sizeof(*cmd->nodes), cmp_str);
	for (size_t i = 0; i < cmd->n_nodes; i++) {
		if (n > 0 && strcmp(cmd->nodes[n - 1], cmd->nodes[i]) == 0)
			free(cmd->nodes[i]);
		else
			cmd->nodes[n++] = cmd->nodes[i];
	}
	cmd->n_nodes = n;
	return rr;
}

enum imap_run imap_command_run(struct imap_conn *s, struct imap_command *cmd)
{
	switch (cmd->kind) {
	case IMAP_COMMAND_MYRIGHTS:
		return run_myrights(s, cmd);
	case IMAP_COMMAND_STATUS:
		return run_status(s, cmd);
	case IMAP_COMMAND_LIST:
		return run_list(s, cmd);
	case IMAP_COMMAND_FETCH:
		return run_fetch(s, cmd);
	}
	return IMAP_RUN_DONE;
}

void imap_command_reset(struct imap_command *cmd)
{
	free(cmd->rights);
	cmd->rights = NULL;
	for (size_t i = 0; i < cmd->n_nodes; i++)
		free(cmd->nodes[i]);
	free(cmd->nodes);
	cmd->nodes = NULL;
	cmd->n_nodes = 0;
	memset(&cmd->st, 0, sizeof(cmd->st));
	free(cmd->body);
	cmd->body = NULL;
	cmd->body_len = 0;
	free(cmd->flags);
	cmd->flags = NULL;
	cmd->internaldate[0] = '\0';
	cmd->error[0] = '\0';
}
