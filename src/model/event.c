#include "model/event.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"

/* Order follows RFC 5423 section 4 and Cyrus's imap/mboxevent.c. */
static const struct event_type_info event_types[EVENT_TYPE_COUNT] = {
	[EVENT_MESSAGE_APPEND] = { "MessageAppend", EVENT_GROUP_MESSAGE, true },
	[EVENT_MESSAGE_EXPIRE] = { "MessageExpire", EVENT_GROUP_MESSAGE, true },
	[EVENT_MESSAGE_EXPUNGE] = { "MessageExpunge", EVENT_GROUP_MESSAGE, true },
	[EVENT_MESSAGE_NEW] = { "MessageNew", EVENT_GROUP_MESSAGE, true },
	[EVENT_MESSAGE_COPY] = { "vnd.cmu.MessageCopy", EVENT_GROUP_MESSAGE, true },
	[EVENT_MESSAGE_MOVE] = { "vnd.cmu.MessageMove", EVENT_GROUP_MESSAGE, true },
	[EVENT_QUOTA_EXCEED] = { "QuotaExceed", EVENT_GROUP_QUOTA, true },
	[EVENT_QUOTA_WITHIN] = { "QuotaWithin", EVENT_GROUP_QUOTA, true },
	[EVENT_QUOTA_CHANGE] = { "QuotaChange", EVENT_GROUP_QUOTA, true },
	[EVENT_MESSAGE_READ] = { "MessageRead", EVENT_GROUP_FLAGS, true },
	[EVENT_MESSAGE_TRASH] = { "MessageTrash", EVENT_GROUP_FLAGS, true },
	[EVENT_FLAGS_SET] = { "FlagsSet", EVENT_GROUP_FLAGS, true },
	[EVENT_FLAGS_CLEAR] = { "FlagsClear", EVENT_GROUP_FLAGS, true },
	[EVENT_LOGIN] = { "Login", EVENT_GROUP_ACCESS, false },
	[EVENT_LOGOUT] = { "Logout", EVENT_GROUP_ACCESS, false },
	[EVENT_MAILBOX_CREATE] = { "MailboxCreate", EVENT_GROUP_MAILBOX, true },
	[EVENT_MAILBOX_DELETE] = { "MailboxDelete", EVENT_GROUP_MAILBOX, true },
	[EVENT_MAILBOX_RENAME] = { "MailboxRename", EVENT_GROUP_MAILBOX, true },
	[EVENT_MAILBOX_SUBSCRIBE] = { "MailboxSubscribe", EVENT_GROUP_SUBSCRIPTION, true },
	[EVENT_MAILBOX_UNSUBSCRIBE] = { "MailboxUnSubscribe", EVENT_GROUP_SUBSCRIPTION, true },
	[EVENT_ACL_CHANGE] = { "AclChange", EVENT_GROUP_ACL, true },
	[EVENT_MAILBOX_MODSEQ] = { "MailboxModseq", EVENT_GROUP_MESSAGE, true },
	[EVENT_MAILBOX_STATUS] = { "vnd.mailpubsub.MailboxStatus", EVENT_GROUP_MESSAGE, true },
};

/* RFC 5423 section 5, plus Kolab's ACL parameters. Anything else (vnd.*)
 * is kept as received and published as an <extension/>. */
/* The reason a wrong type is refused with is a constant per parameter:
 * error strings are never formatted into shared buffers. */
#define WRONG_TYPE(name) "parameter " name " has the wrong type"
#define COUNT_WRONG_TYPE(name) WRONG_TYPE(name) " (a count from 0 to 2^63-1)"
#define PARAM(name, kind) { name, kind, WRONG_TYPE(name) }
#define COUNT_PARAM(name) { name, EVENT_PARAM_NUMBER, COUNT_WRONG_TYPE(name) }

static const struct event_param_info event_param_table[] = {
	PARAM("timestamp", EVENT_PARAM_STRING),
	PARAM("service", EVENT_PARAM_STRING),
	PARAM("serverFQDN", EVENT_PARAM_STRING),
	PARAM("serverDomain", EVENT_PARAM_STRING),
	COUNT_PARAM("serverPort"),
	PARAM("clientIP", EVENT_PARAM_STRING),
	COUNT_PARAM("clientPort"),
	PARAM("user", EVENT_PARAM_STRING),
	PARAM("admin", EVENT_PARAM_STRING),
	COUNT_PARAM("pid"),
	PARAM("process", EVENT_PARAM_STRING),
	PARAM("uri", EVENT_PARAM_STRING),
	PARAM("mailboxID", EVENT_PARAM_STRING),
	PARAM("oldMailboxID", EVENT_PARAM_STRING),
	PARAM("uidset", EVENT_PARAM_STRING),
	COUNT_PARAM("uidnext"),
	COUNT_PARAM("modseq"),
	COUNT_PARAM("messages"),
	PARAM("flagNames", EVENT_PARAM_WORDS),
	PARAM("tags", EVENT_PARAM_WORDS),
	COUNT_PARAM("messageSize"),
	PARAM("envelope", EVENT_PARAM_STRING),
	PARAM("bodyStructure", EVENT_PARAM_STRING),
	PARAM("messageContent", EVENT_PARAM_STRING),
	COUNT_PARAM("diskQuota"),
	COUNT_PARAM("diskUsed"),
	COUNT_PARAM("maxMessages"),
	PARAM("aclSubject", EVENT_PARAM_STRING),
	PARAM("aclRights", EVENT_PARAM_STRING),
};

const struct event_type_info *event_type_info(enum event_type type)
{
	return &event_types[type];
}

int event_type_parse(const char *name, enum event_type *type_r)
{
	for (unsigned i = 0; i < EVENT_TYPE_COUNT; i++) {
		if (strcmp(event_types[i].name, name) == 0) {
			*type_r = (enum event_type)i;
			return 0;
		}
	}
	/* Cyrus also spells it "MailboxUnsubscribe" in some versions */
	if (strcmp(name, "MailboxUnsubscribe") == 0) {
		*type_r = EVENT_MAILBOX_UNSUBSCRIBE;
		return 0;
	}
	return -1;
}

const struct event_param_info *event_params(unsigned *count_r)
{
	*count_r = sizeof(event_param_table) / sizeof(event_param_table[0]);
	return event_param_table;
}

/* Counts the stores send that RFC 5423 does not name but we read as
 * numbers (the unseen count published as <unseen/>). */
static const struct event_param_info vendor_counts[] = {
	COUNT_PARAM("vnd.cmu.unseenMessages"),
};

/* A count: decimal digits only, 0 to 2^63-1, so that every consumer may
 * hold it in a signed 64-bit integer (a wider one once became -1). */
static int string_count(const char *s, uint64_t *value_r)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (INT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*value_r = v;
	return 0;
}

/* A JSON integer (jansson refuses one beyond json_int_t) or a string of
 * digits, in 0..2^63-1; anything else (negative, fractional) is not. */
static int json_count(const json_t *v, uint64_t *value_r)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*value_r = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v))
		return string_count(json_string_value(v), value_r);
	return -1;
}

static int check_count(json_t *obj, const struct event_param_info *param,
		       const char **error_r)
{
	json_t *v = json_object_get(obj, param->name);
	uint64_t ignored;

	if (v == NULL || json_is_null(v) || json_count(v, &ignored) == 0)
		return 0;
	*error_r = param->wrong_type;
	return -1;
}

/* Known parameters must have the type RFC 5423 gives them; a wrong type
 * is a malformed event, not something to guess about. */
static int check_params(json_t *obj, const char **error_r)
{
	unsigned count;
	const struct event_param_info *params = event_params(&count);

	for (unsigned i = 0; i < count; i++) {
		json_t *v = json_object_get(obj, params[i].name);
		bool ok;

		if (params[i].kind == EVENT_PARAM_NUMBER) {
			if (check_count(obj, &params[i], error_r) < 0)
				return -1;
			continue;
		}
		if (v == NULL || json_is_null(v))
			continue;
		ok = json_is_string(v);
		if (!ok) {
			*error_r = params[i].wrong_type;
			return -1;
		}
	}
	for (size_t i = 0; i < sizeof(vendor_counts) / sizeof(vendor_counts[0]); i++)
		if (check_count(obj, &vendor_counts[i], error_r) < 0)
			return -1;
	return 0;
}

static int decode_mailboxes(struct event *ev, char sep, const char **error_r)
{
	const char *uri = json_string_value(json_object_get(ev->json, "uri"));
	const char *old = json_string_value(json_object_get(ev->json, "oldMailboxID"));
	const char *err;

	if (uri == NULL) {
		*error_r = "missing uri";
		return -1;
	}
	if (mailbox_uri_parse(uri, sep, &ev->mailbox, error_r) < 0)
		return -1;
	if (event_types[ev->type].mailbox && ev->mailbox.node == NULL) {
		*error_r = "uri names no mailbox";
		return -1;
	}
	/* RFC 5423 lets oldMailboxID be any URI; Cyrus sends an IMAP URL */
	if (old != NULL && mailbox_uri_parse(old, sep, &ev->old_mailbox, &err) < 0)
		memset(&ev->old_mailbox, 0, sizeof(ev->old_mailbox));
	if (ev->type == EVENT_MAILBOX_RENAME && ev->old_mailbox.node == NULL) {
		*error_r = "MailboxRename without a usable oldMailboxID";
		return -1;
	}
	return 0;
}

/* ---- text XML 1.0 can carry ----
 * Every string of an event may reach a stanza: Cyrus copies header bytes
 * into vnd.cmu.envelope, senders put what they like into vendor
 * parameters, and a single control character in a stanza makes the server
 * close the component's stream. This is the one place all of it passes
 * (every source decodes here, and the publisher decodes the journal
 * again): each character XML 1.0 forbids becomes U+FFFD and the event is
 * kept. */

static bool is_hex4(const char *p, size_t left)
{
	if (left < 4)
		return false;
	for (int k = 0; k < 4; k++) {
		if (!((p[k] >= '0' && p[k] <= '9') || ((p[k] | 0x20) >= 'a' &&
							  (p[k] | 0x20) <= 'f')))
			return false;
	}
	return true;
}

static unsigned hex4(const char *p)
{
	char buf[5] = { p[0], p[1], p[2], p[3], '\0' };

	return (unsigned)strtoul(buf, NULL, 16);
}

/* jansson refuses invalid UTF-8 and lone surrogate escapes (\ud800) as
 * invalid JSON, which would lose the whole event: both become U+FFFD
 * first. Backslashes occur only inside strings, so no string tracking is
 * needed; \\ is skipped as a pair. Returns a malloc()ed copy, or NULL
 * when nothing needed repair (or out of memory: *oom_r). */
static char *repair_text(const char *text, size_t len, size_t *len_r,
			 unsigned *repaired, bool *oom_r)
{
	size_t replaced = 0, n = len, o = 0;
	char *utf8 = NULL, *out;
	const char *src = text;
	bool surrogate = false;

	*oom_r = false;
	if (!utf8_xml_valid(text, len)) {
		utf8 = utf8_xml_clean(text, len, &replaced, &n);
		if (utf8 == NULL) {
			*oom_r = true;
			return NULL;
		}
		src = utf8;
	}
	for (size_t i = 0; i + 1 < n && !surrogate; i++) {
		if (src[i] == '\\' && src[i + 1] == 'u' && is_hex4(src + i + 2, n - i - 2)) {
			unsigned v = hex4(src + i + 2);

			surrogate = v >= 0xd800 && v <= 0xdfff;
		}
		if (src[i] == '\\')
			i++;
	}
	if (!surrogate) {
		*repaired += (unsigned)replaced;
		*len_r = n;
		return utf8;
	}
	out = malloc(n + 1);
	if (out == NULL) {
		free(utf8);
		*oom_r = true;
		return NULL;
	}
	for (size_t i = 0; i < n;) {
		unsigned v = 0, w = 0;
		bool esc = src[i] == '\\' && i + 1 < n && src[i + 1] == 'u' &&
			   is_hex4(src + i + 2, n - i - 2);

		if (!esc) {
			size_t k = src[i] == '\\' && i + 1 < n ? 2 : 1;

			memcpy(out + o, src + i, k);
			o += k;
			i += k;
			continue;
		}
		v = hex4(src + i + 2);
		if (v >= 0xd800 && v <= 0xdbff && n - i >= 12 && src[i + 6] == '\\' &&
		    src[i + 7] == 'u' && is_hex4(src + i + 8, n - i - 8))
			w = hex4(src + i + 8);
		if (v >= 0xd800 && v <= 0xdbff && w >= 0xdc00 && w <= 0xdfff) {
			memcpy(out + o, src + i, 12);   /* a proper pair */
			o += 12;
			i += 12;
		} else if (v >= 0xd800 && v <= 0xdfff) {
			memcpy(out + o, "\\ufffd", 6);
			o += 6;
			i += 6;
			replaced++;
		} else {
			memcpy(out + o, src + i, 6);
			o += 6;
			i += 6;
		}
	}
	out[o] = '\0';
	free(utf8);
	*repaired += (unsigned)replaced;
	*len_r = o;
	return out;
}

/* A string value in place; 0, or -1 out of memory. */
static int clean_string(json_t *v, unsigned *repaired)
{
	size_t replaced, n;
	char *clean;
	int rc;

	if (utf8_xml_valid(json_string_value(v), json_string_length(v)))
		return 0;
	clean = utf8_xml_clean(json_string_value(v), json_string_length(v),
			       &replaced, &n);
	if (clean == NULL)
		return -1;
	rc = json_string_setn(v, clean, n);
	free(clean);
	*repaired += (unsigned)replaced;
	return rc;
}

static int clean_tree(json_t *v, unsigned *repaired);

/* Keys become XML attribute values (<extension name=...>): renamed, the
 * value kept. A repaired key may meet an existing one: the later wins. */
static int clean_keys(json_t *obj, unsigned *repaired)
{
	const char *key;
	json_t *value;
	void *tmp;

	json_object_foreach_safe(obj, tmp, key, value) {
		size_t replaced;
		char *clean;

		if (utf8_xml_valid(key, strlen(key)))
			continue;
		clean = utf8_xml_clean(key, strlen(key), &replaced, NULL);
		if (clean == NULL)
			return -1;
		json_incref(value);
		json_object_del(obj, key);
		if (json_object_set_new(obj, clean, value) < 0) {
			free(clean);
			return -1;
		}
		free(clean);
		*repaired += (unsigned)replaced;
	}
	return 0;
}

static int clean_tree(json_t *v, unsigned *repaired)
{
	const char *key;
	json_t *child;
	size_t i;

	if (json_is_string(v))
		return clean_string(v, repaired);
	if (json_is_array(v)) {
		json_array_foreach(v, i, child) {
			if (clean_tree(child, repaired) < 0)
				return -1;
		}
		return 0;
	}
	if (!json_is_object(v))
		return 0;
	if (clean_keys(v, repaired) < 0)
		return -1;
	json_object_foreach(v, key, child) {
		if (clean_tree(child, repaired) < 0)
			return -1;
	}
	return 0;
}

/* A mailbox is named, not described: a name with such characters is
 * refused (two names must not become one node) rather than repaired. */
static bool names_clean(json_t *obj)
{
	static const char *const names[] = { "uri", "oldMailboxID" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		json_t *v = json_object_get(obj, names[i]);

		if (json_is_string(v) &&
		    !utf8_xml_valid(json_string_value(v), json_string_length(v)))
			return false;
	}
	return true;
}

int event_decode(const char *json_text, size_t len, char hier_sep,
		 struct event **event_r, const char **error_r)
{
	struct event *ev;
	json_error_t jerr;
	const char *name;
	const char *user;
	char *repaired_text;
	bool oom;

	ev = calloc(1, sizeof(*ev));
	if (ev == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	repaired_text = repair_text(json_text, len, &len, &ev->repaired, &oom);
	if (oom) {
		*error_r = "out of memory";
		goto fail;
	}
	/* NUL (\u0000) is allowed so that it can be replaced like any other
	 * control character instead of losing the event */
	ev->json = json_loadb(repaired_text != NULL ? repaired_text : json_text, len,
			      JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	free(repaired_text);
	if (ev->json == NULL) {
		*error_r = "invalid JSON";
		goto fail;
	}
	if (!json_is_object(ev->json)) {
		*error_r = "JSON event is not an object";
		goto fail;
	}
	if (!names_clean(ev->json)) {
		*error_r = "mailbox URI has characters XML cannot carry";
		goto fail;
	}
	if (clean_tree(ev->json, &ev->repaired) < 0) {
		*error_r = "out of memory";
		goto fail;
	}
	name = json_string_value(json_object_get(ev->json, "event"));
	if (name == NULL) {
		*error_r = "missing event type";
		goto fail;
	}
	if (event_type_parse(name, &ev->type) < 0) {
		*error_r = "unknown event type";
		goto fail;
	}
	if (check_params(ev->json, error_r) < 0)
		goto fail;
	if (decode_mailboxes(ev, hier_sep, error_r) < 0)
		goto fail;
	user = json_string_value(json_object_get(ev->json, "user"));
	if (user != NULL && *user != '\0')
		ev->acting_user = strdup(user);
	*event_r = ev;
	return 0;
fail:
	event_free(&ev);
	return -1;
}

void event_free(struct event **event)
{
	struct event *ev = *event;

	if (ev == NULL)
		return;
	json_decref(ev->json);
	mailbox_uri_clear(&ev->mailbox);
	mailbox_uri_clear(&ev->old_mailbox);
	free(ev->acting_user);
	free(ev);
	*event = NULL;
}

const char *event_param_string(const struct event *event, const char *name,
			       char *buf, size_t bufsize)
{
	json_t *v = json_object_get(event->json, name);

	if (v == NULL)
		return NULL;
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, bufsize, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	if (json_is_true(v) || json_is_false(v))
		return json_is_true(v) ? "true" : "false";
	return NULL;
}

int event_param_u64(const struct event *event, const char *name,
		    uint64_t *value_r)
{
	return json_count(json_object_get(event->json, name), value_r);
}
