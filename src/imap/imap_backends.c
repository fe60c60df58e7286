#include "imap/imap_backends.h"

#include <stdlib.h>

int imap_backends_new(uv_loop_t *loop, const struct imap_settings *base,
		      const struct config_backend *list, unsigned count,
		      struct imap_backends **backends_r, const char **error_r)
{
	struct imap_backends *b;

	*backends_r = NULL;
	if (count == 0)
		return 0;
	b = calloc(1, sizeof(*b));
	if (b == NULL || (b->list = calloc(count, sizeof(*b->list))) == NULL) {
		free(b);
		*error_r = "out of memory";
		return -1;
	}
	for (unsigned i = 0; i < count; i++) {
		struct imap_settings s = *base;

		s.host = list[i].host;
		if (list[i].port != 0)
			s.port = (unsigned short)list[i].port;
		b->list[i].pattern = list[i].pattern;
		if (imap_client_new(loop, &s, &b->list[i].client, error_r) < 0) {
			b->count = i;
			imap_backends_close(&b, NULL, NULL);
			return -1;
		}
	}
	b->count = count;
	*backends_r = b;
	return 0;
}

static void client_closed(void *context)
{
	struct imap_backends *b = context;

	if (--b->closing > 0)
		return;
	if (b->done != NULL)
		b->done(b->context);
	free(b->list);
	free(b);
}

void imap_backends_close(struct imap_backends **backends, void (*done)(void *),
			 void *context)
{
	struct imap_backends *b = *backends;

	*backends = NULL;
	if (b == NULL) {
		if (done != NULL)
			done(context);
		return;
	}
	b->done = done;
	b->context = context;
	/* one more than the clients: none may finish the whole before all
	 * were asked to close */
	b->closing = b->count + 1;
	for (unsigned i = 0; i < b->count; i++)
		imap_client_close(&b->list[i].client, client_closed, b);
	client_closed(b);
}
