/* libFuzzer target: control socket requests (src/ops/control.c), the only
 * input a local peer sends `mailpubsubd`'s control socket.
 * Properties: a request is accepted only as {"command":"status"} (nothing
 * else, no other member), and every refusal says why. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_exactly_status(const uint8_t *data, size_t size)
{
	json_t *obj = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	int ok = json_is_object(obj) && json_object_size(obj) == 1 &&
		 json_is_string(json_object_get(obj, "command")) &&
		 strcmp(json_string_value(json_object_get(obj, "command")), "status") == 0;

	json_decref(obj);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum control_command command;
	const char *error = NULL;
	int rc = control_request_parse((const char *)data, size, &command, &error);

	if (rc == 0 && (command != CONTROL_STATUS || size > CONTROL_MAX_REQUEST ||
			!is_exactly_status(data, size)))
		abort();
	if (rc < 0 && (error == NULL || *error == '\0'))
		abort();
	if (rc < 0 && size <= CONTROL_MAX_REQUEST && is_exactly_status(data, size))
		abort();
	return 0;
}
