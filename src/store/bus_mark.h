/* The message bus watermark: the journal sequence up to which (and
 * including) every event is known accepted by the broker. Everything after
 * it is sent again after a restart or a reconnection. */
#ifndef MAILPUBSUB_BUS_MARK_H
#define MAILPUBSUB_BUS_MARK_H


#include "store/store.h"

/* 0 when the bus never had an event accepted (or on a read error: a
 * resend is the safe side). */
long long bus_mark_get(struct store *store);
/* Records seq; 0 or -1 (logged by the store). Call inside a transaction
 * to batch it with other writes, or alone. */
int bus_mark_set(struct store *store, long long seq);

#endif
