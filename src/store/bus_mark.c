#include "store/bus_mark.h"

#include <stddef.h>

#define BUS_MARK_KEY "bus_seq"

long long bus_mark_get(struct store *store)
{
	long long seq = 0;

	if (store_meta_get_i64(store, BUS_MARK_KEY, &seq) < 0)
		return 0;
	return seq;
}

int bus_mark_set(struct store *store, long long seq)
{
	return store_meta_set_i64(store, BUS_MARK_KEY, seq);
}
