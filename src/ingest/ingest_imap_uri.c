#include "ingest/ingest_imap_uri.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 3986 unreserved characters stay; everything else is %XX. */
static void pct_append(char **p, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			*(*p)++ = (char)c;
		} else {
			*(*p)++ = '%';
			*(*p)++ = hex[c >> 4];
			*(*p)++ = hex[c & 15];
		}
	}
}

char *ingest_imap_uri(const char *host, const char *account, const char *node,
		      char sep, uint32_t uidvalidity, uint32_t uid)
{
	size_t cap = 3 * (strlen(host) + strlen(account) + strlen(node)) + 64;
	char *out = malloc(cap), *p = out, *raw = malloc(strlen(node) + 1);
	const char *level = node;

	if (out == NULL || raw == NULL) {
		free(out);
		free(raw);
		return NULL;
	}
	p += sprintf(p, "imap://");
	pct_append(&p, account, strlen(account));
	*p++ = '@';
	strcpy(p, host);
	p += strlen(p);
	*p++ = '/';
	/* node levels are UTF-8 with '/' and '%' written %2F and %25 */
	for (;;) {
		size_t len = strcspn(level, "/");
		size_t n = 0;

		for (size_t i = 0; i < len; i++) {
			if (i + 3 <= len && strncasecmp(level + i, "%2F", 3) == 0) {
				raw[n++] = '/';
				i += 2;
			} else if (i + 3 <= len && strncasecmp(level + i, "%25", 3) == 0) {
				raw[n++] = '%';
				i += 2;
			} else {
				raw[n++] = level[i];
			}
		}
		/* the decoder splits the path on sep after decoding it */
		if (memchr(raw, sep, n) != NULL) {
			free(out);
			free(raw);
			return NULL;
		}
		pct_append(&p, raw, n);
		level += len;
		if (*level == '\0')
			break;
		*p++ = sep;
		level++;
	}
	*p = '\0';
	free(raw);
	if (uidvalidity != 0)
		p += sprintf(p, ";UIDVALIDITY=%u", uidvalidity);
	if (uid != 0)
		sprintf(p, "/;UID=%u", uid);
	return out;
}

char *ingest_imap_uidset(const uint32_t *uids, size_t n)
{
	char *out = malloc(n * 22 + 1), *p = out;

	if (out == NULL)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		if (p != out)
			*p++ = ',';
		if (j > i)
			p += sprintf(p, "%u:%u", uids[i], uids[j]);
		else
			p += sprintf(p, "%u", uids[i]);
		i = j + 1;
	}
	return out;
}
