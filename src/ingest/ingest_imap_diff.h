/* The IMAP client source's diff: what the server says now against what
 * was known of a mailbox (ingest_imap_box.h), into RFC 5423 events (JSON
 * objects in the generic source's format) and the rows the store must
 * change. Pure: no I/O, any thread (the watcher's).
 *
 * ingest_imap_diff() runs the phases below in order; each is exposed for
 * its tests. The box changes only in the apply phase, after everything
 * that can fail for lack of memory has been worked out. */
#ifndef MAILPUBSUB_INGEST_IMAP_DIFF_H
#define MAILPUBSUB_INGEST_IMAP_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ingest/ingest_imap_box.h"

struct ingest_imap_range {
	uint32_t first, last;
};

/* What the server said since. */
struct ingest_imap_changes {
	struct ingest_imap_msg *fetched; /* UID + FLAGS of changed messages,
					  * any order (sorted in place) */
	size_t n_fetched;
	bool complete;               /* fetched lists every message: the
				      * absent ones were expunged */
	const struct ingest_imap_range *vanished; /* QRESYNC VANISHED (EARLIER) */
	size_t n_vanished;
	uint32_t exists;             /* the mailbox's EXISTS */
	uint32_t uidnext;
	uint64_t modseq;             /* HIGHESTMODSEQ now; 0: unchanged */
};

/* What changed, for the store: messages to write, UIDs to drop. */
struct ingest_imap_delta {
	struct ingest_imap_msg *put;
	size_t n_put;
	uint32_t *gone;
	size_t n_gone;
};

/* Applies changes to box and appends to events (a JSON array) the RFC 5423
 * events that tell them, every one with the mailbox's counts afterwards
 * (messages, vnd.cmu.unseenMessages, uidnext, modseq); uri is the
 * mailbox's (with UIDVALIDITY). Order: MessageNew by UID, MessageRead,
 * MessageTrash, FlagsSet, FlagsClear, MessageExpunge. Messages that were
 * new get MessageNew only. delta (cleared first) receives what the store
 * must record. Returns 0, or 1 without changing anything when an
 * incomplete answer does not add up to exists (expunges QRESYNC did not
 * report, or no QRESYNC): then fetch everything and call again with
 * complete set. -1 when out of memory (box may have changed: reload it). */
int ingest_imap_diff(struct ingest_imap_box *box, struct ingest_imap_changes *ch,
		     const char *uri, json_t *events, struct ingest_imap_delta *delta);
void ingest_imap_delta_clear(struct ingest_imap_delta *delta);

/* ---- the phases ------------------------------------------------------- */

/* UIDs that share an event: one event per (type, flag names). */
struct ingest_imap_group {
	const char *type;            /* one of the INGEST_IMAP_EVENT_* below */
	char *flags;                 /* NULL: none (MessageRead, MessageTrash) */
	uint32_t *uids;              /* ascending */
	size_t n, cap;
};

extern const char INGEST_IMAP_EVENT_READ[];   /* "MessageRead" */
extern const char INGEST_IMAP_EVENT_TRASH[];  /* "MessageTrash" */
extern const char INGEST_IMAP_EVENT_SET[];    /* "FlagsSet" */
extern const char INGEST_IMAP_EVENT_CLEAR[];  /* "FlagsClear" */

/* What the phases found, handed from one to the next. */
struct ingest_imap_diff_work {
	size_t n_fetched;            /* distinct entries at the start of fetched */
	uint32_t *new_uids;          /* messages not known before, ascending */
	size_t n_new, cap_new;
	struct ingest_imap_group *groups; /* flag changes of known messages */
	size_t n_groups, cap_groups;
	uint32_t *gone;              /* expunged, ascending */
	size_t n_gone, cap_gone;
};
void ingest_imap_diff_work_clear(struct ingest_imap_diff_work *w);

/* 1. Sorts ch->fetched by UID and keeps one entry per UID at its start
 * (a UID FETCH may repeat a message: an unsolicited FETCH); sets
 * w->n_fetched. Entries are only swapped, so every flags string keeps one
 * owner, the caller's array. */
void ingest_imap_diff_unique(struct ingest_imap_changes *ch, struct ingest_imap_diff_work *w);

/* 2. For an incomplete answer (CHANGEDSINCE): whether the known messages,
 * less the vanished ones, plus the new ones make exists. If not, some
 * expunges were not reported and everything must be fetched. */
bool ingest_imap_diff_adds_up(const struct ingest_imap_box *box,
			      const struct ingest_imap_changes *ch,
			      const struct ingest_imap_diff_work *w);

/* 3. New messages into w->new_uids, flag changes of known ones into
 * w->groups; both into delta->put (allocated here, flags copied). */
int ingest_imap_diff_changed(const struct ingest_imap_box *box,
			     const struct ingest_imap_changes *ch,
			     struct ingest_imap_diff_work *w,
			     struct ingest_imap_delta *delta);

/* 4. Known messages that are gone into w->gone: those not listed by a
 * complete answer, those VANISHED and not listed again otherwise. */
int ingest_imap_diff_expunged(const struct ingest_imap_box *box,
			      const struct ingest_imap_changes *ch,
			      struct ingest_imap_diff_work *w);

/* 5. The new state: box gets the fetched messages (their flags strings
 * are taken: the entries of ch->fetched are left NULL) less w->gone, and
 * UIDNEXT and HIGHESTMODSEQ move on. On -1 (out of memory) box is as it
 * was. */
int ingest_imap_diff_apply(struct ingest_imap_box *box, struct ingest_imap_changes *ch,
			   const struct ingest_imap_diff_work *w);

/* 6. The events of w, in the order ingest_imap_diff() gives, each with
 * box's counts, appended to events; on -1 none is. */
int ingest_imap_diff_events(const struct ingest_imap_box *box, const char *uri,
			    const struct ingest_imap_diff_work *w, json_t *events);

/* ---- events ------------------------------------------------------------ */

/* {"event": type, "uri": uri}; NULL when out of memory. */
json_t *ingest_imap_event_new(const char *type, const char *uri);
/* Adds box's counts after the change to ev (unseen: box's \Seen-less
 * messages, counted once by the caller). */
void ingest_imap_event_add_counts(json_t *ev, const struct ingest_imap_box *box,
				  uint32_t unseen);

#endif
