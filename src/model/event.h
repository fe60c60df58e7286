/* The event model: every RFC 5423 event type and parameter, Kolab's
 * AclChange and Cyrus's vendor events, decoded from the JSON form that Cyrus
 * (and the generic source) send. Tables drive both decoding and the XML
 * item payload, so adding a parameter is one line. */
#ifndef MAILPUBSUB_EVENT_H
#define MAILPUBSUB_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/mailbox_uri.h"

enum event_type {
	EVENT_MESSAGE_APPEND,
	EVENT_MESSAGE_EXPIRE,
	EVENT_MESSAGE_EXPUNGE,
	EVENT_MESSAGE_NEW,
	EVENT_MESSAGE_COPY,      /* vnd.cmu.MessageCopy */
	EVENT_MESSAGE_MOVE,      /* vnd.cmu.MessageMove */
	EVENT_QUOTA_EXCEED,
	EVENT_QUOTA_WITHIN,
	EVENT_QUOTA_CHANGE,
	EVENT_MESSAGE_READ,
	EVENT_MESSAGE_TRASH,
	EVENT_FLAGS_SET,
	EVENT_FLAGS_CLEAR,
	EVENT_LOGIN,
	EVENT_LOGOUT,
	EVENT_MAILBOX_CREATE,
	EVENT_MAILBOX_DELETE,
	EVENT_MAILBOX_RENAME,
	EVENT_MAILBOX_SUBSCRIBE,
	EVENT_MAILBOX_UNSUBSCRIBE,
	EVENT_ACL_CHANGE,        /* Kolab */
	EVENT_MAILBOX_MODSEQ,    /* Cyrus: a modseq bump with nothing else */
	EVENT_MAILBOX_STATUS,    /* ours: a mailbox's current counts (resync,
				  * heartbeat), vnd.mailpubsub.MailboxStatus */
	EVENT_TYPE_COUNT
};

enum event_group {
	EVENT_GROUP_MESSAGE,
	EVENT_GROUP_QUOTA,
	EVENT_GROUP_FLAGS,
	EVENT_GROUP_ACCESS,
	EVENT_GROUP_MAILBOX,
	EVENT_GROUP_SUBSCRIPTION,
	EVENT_GROUP_ACL,
};

enum event_param_kind {
	EVENT_PARAM_STRING,
	EVENT_PARAM_NUMBER,   /* unsigned decimal; JSON number or string */
	EVENT_PARAM_WORDS,    /* space separated list (flagNames, tags) */
};

struct event_type_info {
	const char *name;        /* as on the wire */
	enum event_group group;
	bool mailbox;            /* uri names a mailbox (else: the server) */
};

struct event_param_info {
	const char *name;        /* as on the wire, and the XML element name */
	enum event_param_kind kind;
	const char *wrong_type;  /* the reason an event with the wrong type is refused */
};

struct event {
	enum event_type type;
	json_t *json;                /* owned: every parameter as received */
	struct mailbox_uri mailbox;  /* from uri; empty for Login/Logout */
	struct mailbox_uri old_mailbox; /* from oldMailboxID, when present */
	char *acting_user;           /* `user`, may be NULL */
	unsigned repaired;           /* characters XML 1.0 cannot carry (and
				      * invalid UTF-8 bytes) replaced by
				      * U+FFFD while decoding */
};

const struct event_type_info *event_type_info(enum event_type type);
/* Returns -1 for an unknown name. */
int event_type_parse(const char *name, enum event_type *type_r);

/* The known parameters, in payload order; count in *count_r. */
const struct event_param_info *event_params(unsigned *count_r);

/* Decodes one JSON event. Every string in it (keys too) comes out as XML
 * 1.0 character data: invalid UTF-8, lone surrogate escapes and forbidden
 * characters are replaced by U+FFFD (counted in repaired); a mailbox URI
 * with such characters is refused. hier_sep is the mailbox separator to assume where
 * the URI does not tell (see mailbox_uri_parse). On error *error_r is a
 * static reason string. */
int event_decode(const char *json_text, size_t len, char hier_sep,
		 struct event **event_r, const char **error_r);
void event_free(struct event **event);

/* A parameter as a string (numbers formatted), or NULL when absent. The
 * result points into the event or into buf. */
const char *event_param_string(const struct event *event, const char *name,
			       char *buf, size_t bufsize);
/* A count parameter, 0 to 2^63-1 (it fits a long long); -1 when absent or
 * not such a count (event_decode refuses an event with one of those). */
int event_param_u64(const struct event *event, const char *name,
		    uint64_t *value_r);

#endif
