/* What administrators see of an AMQP connection's life (mailpubsubctl
 * status, /metrics): kept by its user (the bus producer, the bus source)
 * from the connection's state callback (amqp_state_cb). */
#ifndef MAILPUBSUB_AMQP_HISTORY_H
#define MAILPUBSUB_AMQP_HISTORY_H

#include <stdbool.h>

struct amqp_history {
	bool connected;
	unsigned long long connects;     /* times it came up */
	unsigned long long disconnects;  /* times it went down (retries follow) */
	unsigned long long failures;     /* attempts that failed before it was up */
	long long changed_us;            /* last change of connected, or the start */
	char last_error[160];            /* why it last went down or failed, or "" */
};

/* A state change (up, or down with why; NULL: "disconnected") at now_us:
 * a loss after up is a disconnect, a down while not up a failed attempt;
 * the last error stays until the connection is up again. */
void amqp_history_note(struct amqp_history *history, bool up, const char *error,
		       long long now_us);

#endif
