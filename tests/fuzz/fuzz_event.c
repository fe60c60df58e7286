/* libFuzzer target: a JSON event (src/model/event.c) decoded with both hierarchy
 * separators, and the item payload (src/publish/item.c) built from what decodes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <strophe.h>

#include "model/event.h"
#include "publish/item.h"
#include "base/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static xmpp_ctx_t *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_ERROR);
	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, NULL);   /* no logger: quiet */
	if (ctx == NULL)
		abort();
	return 0;
}

static void one(const char *json, size_t size, char sep)
{
	static const struct node_counts counts = { 12, 3, 40, 77 };
	struct event *ev = NULL;
	const char *error = NULL;
	char *xml;

	if (event_decode(json, size, sep, &ev, &error) < 0) {
		if (error == NULL || ev != NULL)
			abort();
		return;
	}
	xml = item_payload_build(ctx, ev, 42, 1700000000123456LL, NULL);
	free(xml);
	/* heartbeat form (seq 0) with known counts filling in */
	xml = item_payload_build(ctx, ev, 0, 1700000000123456LL, &counts);
	free(xml);
	event_free(&ev);
	if (ev != NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one((const char *)data, size, '/');
	one((const char *)data, size, '.');
	return 0;
}
