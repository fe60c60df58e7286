/* See fake_fetch.h. */
#include "fake_fetch.h"

#include <stdio.h>

struct fake_fetch fake_fetch;

void imap_client_fetch(struct imap_client *c, const char *account, const char *node,
		       uint32_t uidvalidity, uint32_t uid, enum imap_fetch_part part,
		       void (*cb)(void *ctx, enum imap_result r,
				  const struct imap_message *msg),
		       void *ctx)
{
	struct fake_fetch_call *call;

	(void)node;
	(void)uidvalidity;
	(void)uid;
	(void)part;
	if (fake_fetch.count == FAKE_FETCH_MAX) {
		cb(ctx, IMAP_TEMPFAIL, NULL);
		return;
	}
	call = &fake_fetch.calls[fake_fetch.count++];
	call->client = c;
	snprintf(call->account, sizeof(call->account), "%s", account);
	call->cb = cb;
	call->ctx = ctx;
	call->answered = 0;
}

void fake_fetch_answer_all(void)
{
	static const char data[] = "Subject: x\r\n\r\nbody\r\n";
	const struct imap_message msg = { data, sizeof(data) - 1, "\\Seen",
					  "23-Nov-2026 10:00:00 +0000" };

	for (size_t i = 0; i < fake_fetch.count; i++) {
		struct fake_fetch_call *call = &fake_fetch.calls[i];

		if (call->answered)
			continue;
		call->answered = 1;
		call->cb(call->ctx, IMAP_OK, &msg);
	}
}

void imap_client_status(struct imap_client *c, const char *account, const char *node,
			void (*cb)(void *ctx, enum imap_result r, const struct imap_status *st),
			void *ctx)
{
	(void)c;
	(void)account;
	(void)node;
	cb(ctx, IMAP_TEMPFAIL, NULL);
}

void imap_client_myrights(struct imap_client *c, const char *identity,
			  const char *account, const char *node,
			  void (*cb)(void *ctx, enum imap_result r, const char *rights),
			  void *ctx)
{
	(void)c;
	(void)identity;
	(void)account;
	(void)node;
	cb(ctx, IMAP_TEMPFAIL, NULL);
}

const char *imap_client_last_error(const struct imap_client *c)
{
	(void)c;
	return "fake failure";
}
