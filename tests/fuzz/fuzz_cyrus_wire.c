/* libFuzzer target: the Cyrus notify datagram parser (src/ingest/cyrus_wire.c).
 * Besides memory errors it checks the parser's contract: every field it
 * returns points into the buffer and is NUL-terminated there. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/cyrus_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *buf, size_t len, const char *field)
{
	if (field == NULL)
		return;
	if (field < buf || field >= buf + len ||
	    memchr(field, '\0', len - (size_t)(field - buf)) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct cyrus_wire w;
	const char *error = NULL;

	if (cyrus_wire_parse(buf, size, &w, &error) < 0) {
		if (error == NULL)
			abort();
		return 0;
	}
	if (w.method == NULL || w.class == NULL || w.priority == NULL ||
	    w.user == NULL || w.mailbox == NULL || w.message == NULL ||
	    w.nopt > CYRUS_WIRE_MAX_OPTIONS)
		abort();
	check_field(buf, size, w.method);
	check_field(buf, size, w.class);
	check_field(buf, size, w.priority);
	check_field(buf, size, w.user);
	check_field(buf, size, w.mailbox);
	for (unsigned i = 0; i < w.nopt; i++) {
		if (w.options[i] == NULL)
			abort();
		check_field(buf, size, w.options[i]);
	}
	check_field(buf, size, w.message);
	if (strlen(w.message) != w.message_len)
		abort();
	check_field(buf, size, w.fname);
	return 0;
}
