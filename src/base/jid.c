#include "base/jid.h"

#include <stdlib.h>
#include <string.h>

static const char escapable[] = " \"&'/:<>@\\";

/* Splits jid into [local@]domain[/resource] bounds; -1 if malformed. */
static int split(const char *jid, size_t *local_len, const char **domain,
		 size_t *domain_len)
{
	size_t bare_len = strcspn(jid, "/");
	const char *at = memchr(jid, '@', bare_len);

	*local_len = at != NULL ? (size_t)(at - jid) : 0;
	*domain = at != NULL ? at + 1 : jid;
	*domain_len = bare_len - (size_t)(*domain - jid);
	if (*domain_len == 0 || (at != NULL && *local_len == 0))
		return -1;
	if (memchr(*domain, '@', *domain_len) != NULL)
		return -1;
	if (jid[bare_len] == '/' && jid[bare_len + 1] == '\0')
		return -1;
	return 0;
}

char *jid_bare(const char *jid)
{
	size_t llen, dlen;
	const char *domain;

	if (jid == NULL || split(jid, &llen, &domain, &dlen) < 0)
		return NULL;
	return strndup(jid, (size_t)(domain - jid) + dlen);
}

char *jid_domain(const char *jid)
{
	size_t llen, dlen;
	const char *domain;

	if (jid == NULL || split(jid, &llen, &domain, &dlen) < 0)
		return NULL;
	return strndup(domain, dlen);
}

char *jid_local(const char *jid)
{
	size_t llen, dlen;
	const char *domain;

	if (jid == NULL || split(jid, &llen, &domain, &dlen) < 0)
		return NULL;
	return strndup(jid, llen);
}

char *jid_escape_local(const char *account)
{
	char *out = malloc(3 * strlen(account) + 1);
	char *o = out;
	static const char hex[] = "0123456789abcdef";

	if (out == NULL)
		return NULL;
	for (const char *p = account; *p != '\0'; p++) {
		if (strchr(escapable, *p) != NULL) {
			*o++ = '\\';
			*o++ = hex[(unsigned char)*p >> 4];
			*o++ = hex[(unsigned char)*p & 15];
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

char *jid_unescape_local(const char *local)
{
	char *out = malloc(strlen(local) + 1);
	char *o = out;

	if (out == NULL)
		return NULL;
	for (const char *p = local; *p != '\0'; p++) {
		int hi, lo;

		/* XEP-0106: only the ten escape sequences are decoded */
		if (*p == '\\' && (hi = unhex(p[1])) >= 0 && (lo = unhex(p[2])) >= 0 &&
		    strchr(escapable, hi << 4 | lo) != NULL && (hi << 4 | lo) != 0) {
			*o++ = (char)(hi << 4 | lo);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static bool local_valid(const char *p, size_t len, char sep)
{
	if (len == 0 || len > 64 || !((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (c == sep || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
				  c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool domain_valid(const char *p)
{
	size_t label = 0, len = strlen(p);

	if (len == 0 || len > 253)
		return false;
	for (; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

bool jid_account_valid(const char *account, char sep)
{
	const char *at = strchr(account, '@');

	if (at == NULL)
		return local_valid(account, strlen(account), sep);
	return local_valid(account, (size_t)(at - account), sep) && domain_valid(at + 1);
}
