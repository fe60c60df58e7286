/* The interception taps table (downstream/tap.c validates, audits and
 * relays; this is what is kept): one row per tap, removed by an admin or
 * marked expired when its window ends. */
#ifndef MAILPUBSUB_TAPS_H
#define MAILPUBSUB_TAPS_H

#include <stdbool.h>

#include "store/store.h"

struct tap {
	long long id;
	char *target;              /* account, or an address (has '@') */
	char *authorities;         /* space separated bare JIDs */
	long long not_before_us;
	long long not_after_us;
	char *reference;           /* warrant id */
};

/* A stored tap as handed to a callback: the strings live until it
 * returns. */
struct tap_row {
	struct tap tap;
	const char *created_by;
	long long created_us;
	bool expired;
};

/* Return non-zero to stop. Do not change the table from the callback. */
typedef int taps_cb(void *context, const struct tap_row *row);

/* Stores t (already validated) as created by `by`; *id_r its id. */
int taps_insert(struct store *store, const struct tap *t, const char *by,
		long long now_us, long long *id_r);
/* 1 after calling cb with tap id, 0 when there is none, -1 on error. */
int taps_get(struct store *store, long long id, taps_cb *cb, void *context);
int taps_delete(struct store *store, long long id);

/* Every tap not removed, by id. */
int taps_each(struct store *store, taps_cb *cb, void *context);
/* The taps active at now_us (not expired, in their window), by id. */
int taps_each_active(struct store *store, long long now_us, taps_cb *cb, void *context);
long long taps_count_active(struct store *store, long long now_us);

/* Up to max ids of taps whose window ended by now_us but are not marked
 * expired yet; *n_r how many. */
int taps_ended(struct store *store, long long now_us, long long *ids, unsigned max,
	       unsigned *n_r);
int taps_mark_expired(struct store *store, long long id);

#endif
