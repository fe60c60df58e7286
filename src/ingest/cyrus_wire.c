#include "ingest/cyrus_wire.h"

#include <string.h>

/* Returns the NUL-terminated field at *pos and advances past it, or NULL
 * when the buffer ends before the terminator. */
static const char *next_field(const char *buf, size_t len, size_t *pos)
{
	const char *start = buf + *pos;
	const char *nul;

	if (*pos >= len)
		return NULL;
	nul = memchr(start, '\0', len - *pos);
	if (nul == NULL)
		return NULL;
	*pos = (size_t)(nul - buf) + 1;
	return start;
}

static int parse_count(const char *s, unsigned *n_r)
{
	unsigned n = 0;

	if (*s == '\0' || strlen(s) > 4)
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		n = n * 10 + (unsigned)(*s - '0');
	}
	*n_r = n;
	return 0;
}

int cyrus_wire_parse(const char *buf, size_t len, struct cyrus_wire *out,
		     const char **error_r)
{
	const char **head[] = { &out->method, &out->class, &out->priority,
				&out->user, &out->mailbox };
	const char *nopt;
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++) {
		*head[i] = next_field(buf, len, &pos);
		if (*head[i] == NULL) {
			*error_r = "datagram truncated in header";
			return -1;
		}
	}
	nopt = next_field(buf, len, &pos);
	if (nopt == NULL || parse_count(nopt, &out->nopt) < 0) {
		*error_r = "datagram has a bad option count";
		return -1;
	}
	if (out->nopt > CYRUS_WIRE_MAX_OPTIONS) {
		*error_r = "datagram has too many options";
		return -1;
	}
	for (unsigned i = 0; i < out->nopt; i++) {
		out->options[i] = next_field(buf, len, &pos);
		if (out->options[i] == NULL) {
			*error_r = "datagram truncated in options";
			return -1;
		}
	}
	out->message = next_field(buf, len, &pos);
	if (out->message == NULL) {
		*error_r = "datagram truncated in message";
		return -1;
	}
	out->message_len = strlen(out->message);
	if (pos < len) {
		out->fname = next_field(buf, len, &pos);
		if (out->fname == NULL) {
			*error_r = "datagram has trailing garbage";
			return -1;
		}
	}
	if (pos != len) {
		*error_r = "datagram has trailing garbage";
		return -1;
	}
	return 0;
}
