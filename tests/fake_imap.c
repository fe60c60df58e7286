/* A stand-in for imap_client's MYRIGHTS, linked into test_authz in place
 * of the real module: answers synchronously from a table the test fills. */
#include "fake_imap.h"

#include <string.h>

struct fake_imap fake_imap;

void imap_client_myrights(struct imap_client *c, const char *identity,
			  const char *account, const char *node,
			  void (*cb)(void *ctx, enum imap_result r, const char *rights),
			  void *ctx)
{
	fake_imap.last_client = c;
	fake_imap.calls++;
	snprintf(fake_imap.last_identity, sizeof(fake_imap.last_identity), "%s", identity);
	snprintf(fake_imap.last_mailbox, sizeof(fake_imap.last_mailbox), "%s/%s",
		 account, node);
	if (fake_imap.during_call != NULL) {
		void (*hook)(void) = fake_imap.during_call;

		fake_imap.during_call = NULL;
		hook();
	}
	cb(ctx, fake_imap.result, fake_imap.result == IMAP_OK ? fake_imap.rights : NULL);
}

const char *imap_client_last_error(const struct imap_client *c)
{
	(void)c;
	return "fake failure";
}
