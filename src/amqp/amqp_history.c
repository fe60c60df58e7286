#include "amqp/amqp_history.h"

#include <stdio.h>

void amqp_history_note(struct amqp_history *h, bool up, const char *error,
		       long long now_us)
{
	if (up) {
		h->connects++;
		h->last_error[0] = '\0';
	} else {
		if (h->connected)
			h->disconnects++;
		else
			h->failures++;
		snprintf(h->last_error, sizeof(h->last_error), "%s",
			 error != NULL ? error : "disconnected");
	}
	if (h->connected != up)
		h->changed_us = now_us;
	h->connected = up;
}
