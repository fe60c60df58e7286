/* The last items of each node (XEP-0060 persistent items), kept so that a
 * subscriber gets the last one on subscribe and can retrieve recent ones. */
#ifndef MAILPUBSUB_ITEMS_H
#define MAILPUBSUB_ITEMS_H

#include <stdbool.h>

#include "store/store.h"

/* Stores the item and keeps only the newest max_items of the node. The
 * payload is serialized XML; item id = the journal seq. */
int items_put(struct store *store, const char *account, const char *node,
	      long long seq, long long published_us, const char *payload,
	      unsigned max_items);

/* Return non-zero to stop. */
typedef int items_cb(void *context, long long seq, long long published_us,
		     const char *payload);
/* Newest first, at most limit (0: all kept). */
int items_each_newest(struct store *store, const char *account, const char *node,
		      unsigned limit, items_cb *cb, void *context);
/* One item by id; returns 1 found, 0 not, -1 error. */
int items_get(struct store *store, const char *account, const char *node,
	      long long seq, items_cb *cb, void *context);

/* Items with after < seq < before (0: no bound on that side), newest or
 * oldest first, at most limit (0: all): the pages of an RSM request. */
int items_each_between(struct store *store, const char *account, const char *node,
		       long long after, long long before, bool newest_first,
		       unsigned limit, items_cb *cb, void *context);
/* How many items the node keeps; -1 on error. */
long long items_count(struct store *store, const char *account, const char *node);

#endif
