/* The IMAP commands of the IMAP client source, on a watcher's dedicated
 * session (imap_session_open: the client's connection, TLS and SASL code,
 * authorized as the account): ENABLE QRESYNC, EXAMINE, UID FETCH of the
 * flags (CHANGEDSINCE, VANISHED), LIST, IDLE. Blocking, on the watcher's
 * thread; the results are plain data for the diff (ingest_imap_diff.h).
 * Failures are logged here (as warnings unless the source is stopping). */
#ifndef MAILPUBSUB_INGEST_IMAP_SESSION_H
#define MAILPUBSUB_INGEST_IMAP_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/imap_client.h"
#include "ingest/ingest_imap_box.h"
#include "ingest/ingest_imap_diff.h"

struct ingest_imap_session {
	struct imap_session *imap;   /* see the owner (ingest_imap_watch.h) on locking */
	const char *account;         /* the owner's, as which the session is authorized */
	unsigned step_ms;            /* bound of one network step */
	const atomic_bool *stop;     /* the source is stopping */
	bool condstore;              /* learnt by ingest_imap_session_enable */
	bool qresync;                /* ENABLE QRESYNC done on this session */
};

/* After imap_session_open: notes CONDSTORE, and enables QRESYNC where the
 * server offers it (VANISHED (EARLIER) needs it, RFC 7162 3.2.3). */
void ingest_imap_session_enable(struct ingest_imap_session *s);

/* What EXAMINE said. */
struct ingest_imap_selected {
	uint32_t uidvalidity, uidnext, exists;
	uint64_t modseq;
};

/* EXAMINE (read only: never changes \Recent or anything else).
 * 0, 1 when the server says NO (no such mailbox), -1 broken. */
int ingest_imap_session_examine(struct ingest_imap_session *s, const char *node,
				struct ingest_imap_selected *sel);
/* EXISTS of the selected mailbox now (libetpan counts the EXISTS that
 * came since EXAMINE); fallback if nothing is selected. */
uint32_t ingest_imap_session_exists(struct ingest_imap_session *s, uint32_t fallback);

/* Messages with their normalized flags, as fetched. */
struct ingest_imap_msgs {
	struct ingest_imap_msg *m;
	size_t n, cap;
};
void ingest_imap_msgs_free(struct ingest_imap_msgs *ms);

/* UID FETCH 1:* (UID FLAGS) of the selected mailbox, with
 * (CHANGEDSINCE since [VANISHED]) when since > 0. *van_r (newly allocated,
 * NULL if none) gets the VANISHED ranges. -1: the connection is unusable. */
int ingest_imap_session_fetch_flags(struct ingest_imap_session *s, uint64_t since,
				    bool vanished, struct ingest_imap_msgs *out,
				    struct ingest_imap_range **van_r, size_t *n_van_r);

/* Node names, distinct. */
struct ingest_imap_names {
	char **v;
	size_t n;
};
void ingest_imap_names_free(struct ingest_imap_names *ns);
bool ingest_imap_names_has(const struct ingest_imap_names *ns, const char *s);

/* LIST "" "*" as the owner: the account's selectable mailboxes as nodes. */
int ingest_imap_session_list(struct ingest_imap_session *s, struct ingest_imap_names *out);

/* Whether the server has IDLE. */
bool ingest_imap_session_has_idle(struct ingest_imap_session *s);
/* IDLE on the selected mailbox until the server says something or wait_ms
 * pass (or the source stops), then DONE. -1: the connection is unusable. */
int ingest_imap_session_idle(struct ingest_imap_session *s, unsigned wait_ms);

#endif
