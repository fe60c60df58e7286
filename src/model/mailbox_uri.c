#include "model/mailbox_uri.h"
#include "base/utf8.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <strings.h>

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* UTF-8 without control characters and with nothing XML 1.0 forbids
 * (U+FFFE, U+FFFF): mailbox names end up in XML attributes and log lines.
 * A name is an identifier, so it is refused rather than repaired: two
 * names must not become one node. */
static bool utf8_valid_name(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		int32_t cp = utf8_next(s, len, &i);

		if (cp < 0x20 || cp == 0x7f || !utf8_xml_char(cp))
			return false;
	}
	return true;
}

int mailbox_uri_decode(const char *src, size_t len, char **out_r,
		       const char **error_r)
{
	char *out = malloc(len + 1);
	size_t o = 0;

	if (out == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (src[i] != '%') {
			out[o++] = src[i];
			continue;
		}
		if (len - i < 3) {
			free(out);
			*error_r = "truncated %-escape in uri";
			return -1;
		}
		hi = hexval((unsigned char)src[i + 1]);
		lo = hexval((unsigned char)src[i + 2]);
		if (hi < 0 || lo < 0) {
			free(out);
			*error_r = "bad %-escape in uri";
			return -1;
		}
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	if (!utf8_valid_name((const unsigned char *)out, o)) {
		free(out);
		*error_r = "mailbox name is not valid UTF-8 text";
		return -1;
	}
	*out_r = out;
	return 0;
}

/* Appends one mailbox level to a node name, escaping what would make the
 * '/' structure ambiguous. dst has room for 3 * strlen(level) + 2. */
static char *append_level(char *dst, const char *level, size_t len, bool first)
{
	if (!first)
		*dst++ = '/';
	for (size_t i = 0; i < len; i++) {
		if (level[i] == '/' || level[i] == '%') {
			*dst++ = '%';
			*dst++ = '2';
			*dst++ = level[i] == '/' ? 'F' : '5';
		} else {
			*dst++ = level[i];
		}
	}
	*dst = '\0';
	return dst;
}

/* Appends the sep-separated levels of p to the node at dst; first: no '/'
 * before the first one. NULL (with *error_r) for an empty level. */
static char *append_levels(char *dst, const char *p, char sep, bool first,
			   const char **error_r)
{
	while (*p != '\0') {
		const char *end = strchr(p, sep);
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

		if (len == 0 || (end != NULL && end[1] == '\0')) {
			*error_r = "empty mailbox level";
			return NULL;
		}
		dst = append_level(dst, p, len, first);
		first = false;
		p += len + (end != NULL ? 1 : 0);
	}
	return dst;
}

/* Splits an admin-namespace name into account and node. */
static int name_to_node(struct mailbox_uri *out, char sep, const char **error_r)
{
	const char *name = out->imap_name;
	const char *p = name;
	size_t cap = 3 * strlen(name) + 8;
	char *node, *dst;
	bool first = true;

	if (*name == '\0') {
		*error_r = "empty mailbox name in uri";
		return -1;
	}
	node = malloc(cap);
	if (node == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	dst = node;
	if (strncmp(name, "user", 4) == 0 && name[4] == sep) {
		const char *acct = name + 5;
		const char *end = strchr(acct, sep);
		size_t alen = end != NULL ? (size_t)(end - acct) : strlen(acct);

		if (alen == 0) {
			free(node);
			*error_r = "empty account in mailbox name";
			return -1;
		}
		out->account = strndup(acct, alen);
		dst = append_level(dst, "INBOX", 5, true);
		first = false;
		p = end != NULL ? end + 1 : acct + alen;
		if (end != NULL && *p == '\0') {
			free(node);
			*error_r = "empty mailbox level";
			return -1;
		}
	} else {
		out->account = strdup("");
	}
	if (append_levels(dst, p, sep, first, error_r) == NULL) {
		free(node);
		return -1;
	}
	out->node = node;
	return 0;
}

/* A name in the personal namespace of out->account, as RFC 5092 writes it
 * with the owner in the authority ("imap://alice@host/INBOX/Sub", or
 * "imap://alice@host/Sub" where the personal namespace has no INBOX prefix,
 * like Dovecot's default and Cyrus's altnamespace): the same node as Cyrus's
 * admin-namespace "user/alice/Sub". */
static int personal_to_node(struct mailbox_uri *out, char sep,
			    const char **error_r)
{
	const char *p = out->imap_name;
	char *node, *dst;

	if (*out->account == '\0' || *p == '\0') {
		*error_r = *p == '\0' ? "empty mailbox name in uri"
				      : "empty account in uri";
		return -1;
	}
	/* the admin namespace (mailbox_uri_build, Cyrus) could not name it */
	if (strchr(out->account, sep) != NULL) {
		*error_r = "account name contains the hierarchy separator";
		return -1;
	}
	node = malloc(3 * strlen(p) + 8);
	if (node == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	dst = append_level(node, "INBOX", 5, true);
	if (strncasecmp(p, "INBOX", 5) == 0 && p[5] == '\0') {
		p += 5;
	} else if (strncasecmp(p, "INBOX", 5) == 0 && p[5] == sep) {
		p += 6;
		if (*p == '\0') {
			free(node);
			*error_r = "empty mailbox level";
			return -1;
		}
	}
	if (append_levels(dst, p, sep, false, error_r) == NULL) {
		free(node);
		return -1;
	}
	out->node = node;
	return 0;
}

static int parse_u32(const char *s, size_t len, uint32_t *v_r)
{
	uint64_t v = 0;

	if (len == 0 || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*v_r = (uint32_t)v;
	return 0;
}

/* The part after the mailbox: ";UIDVALIDITY=n" then optionally "/;UID=n"
 * and further RFC 5092 parts we do not need (";SECTION=", ";PARTIAL="). */
static int parse_params(struct mailbox_uri *out, const char *p,
			const char **error_r)
{
	while (*p != '\0') {
		const char *end;
		size_t len;

		if (*p == '/') {
			p++;
			continue;
		}
		if (*p != ';') {
			*error_r = "unexpected text after mailbox in uri";
			return -1;
		}
		p++;
		end = p + strcspn(p, ";/");
		len = (size_t)(end - p);
		if (len > 12 && strncasecmp(p, "UIDVALIDITY=", 12) == 0) {
			if (parse_u32(p + 12, len - 12, &out->uidvalidity) < 0) {
				*error_r = "bad UIDVALIDITY in uri";
				return -1;
			}
		} else if (len > 4 && strncasecmp(p, "UID=", 4) == 0) {
			if (parse_u32(p + 4, len - 4, &out->uid) < 0) {
				*error_r = "bad UID in uri";
				return -1;
			}
		}
		p = end;
	}
	return 0;
}

/* Login/Logout carry a server URL, "imap://user@host/": the account is the
 * userinfo, there is no mailbox. */
static int parse_authority(struct mailbox_uri *out, const char *auth,
			   size_t len, const char **error_r)
{
	const char *at = memchr(auth, '@', len);
	const char *host = auth;

	if (at != NULL) {
		char *user;

		if (mailbox_uri_decode(auth, (size_t)(at - auth), &user, error_r) < 0)
			return -1;
		/* RFC 5092 iuserinfo may carry ";AUTH=": not part of the name */
		user[strcspn(user, ";")] = '\0';
		out->account = user;
		host = at + 1;
	}
	out->server = strndup(host, len - (size_t)(host - auth));
	return 0;
}

int mailbox_uri_parse(const char *uri, char sep, struct mailbox_uri *out,
		      const char **error_r)
{
	const char *auth, *path, *pend;

	memset(out, 0, sizeof(*out));
	if (uri == NULL || strncasecmp(uri, "imap://", 7) != 0) {
		*error_r = "uri is not an imap:// URL";
		return -1;
	}
	auth = uri + 7;
	path = strchr(auth, '/');
	if (path == NULL)
		path = auth + strlen(auth);
	if (parse_authority(out, auth, (size_t)(path - auth), error_r) < 0)
		goto fail;
	if (*path == '\0' || path[1] == '\0')
		return 0;
	path++;
	pend = path + strcspn(path, ";");
	if (mailbox_uri_decode(path, (size_t)(pend - path), &out->imap_name,
			       error_r) < 0)
		goto fail;
	/* "imap://host/user/alice/;UID=1" style: drop the trailing slash */
	if (pend > path && pend[-1] == '/' && out->imap_name[0] != '\0')
		out->imap_name[strlen(out->imap_name) - 1] = '\0';
	if ((out->account != NULL ? personal_to_node(out, sep, error_r)
				  : name_to_node(out, sep, error_r)) < 0)
		goto fail;
	if (parse_params(out, pend, error_r) < 0)
		goto fail;
	return 0;
fail:
	mailbox_uri_clear(out);
	return -1;
}

void mailbox_uri_clear(struct mailbox_uri *uri)
{
	free(uri->server);
	free(uri->account);
	free(uri->node);
	free(uri->imap_name);
	memset(uri, 0, sizeof(*uri));
}

bool mailbox_uri_node_valid(const char *node)
{
	size_t len = strlen(node);

	if (len == 0 || node[0] == '/' || node[len - 1] == '/' ||
	    strstr(node, "//") != NULL)
		return false;
	return utf8_valid_name((const unsigned char *)node, len);
}

/* Appends src[0..len) percent-encoded for an IMAP URL path segment; with
 * level, our %2F / %25 escapes of a node level are undone first (account
 * names carry none). */
static char *append_encoded(char *dst, const char *src, size_t len, bool level)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (level && c == '%' && len - i >= 3 && src[i + 1] == '2' &&
		    (src[i + 2] == 'F' || src[i + 2] == '5')) {
			c = src[i + 2] == 'F' ? '/' : '%';
			i += 2;
		}
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~!$'()*+,=:@", c) != NULL) {
			*dst++ = (char)c;
		} else {
			*dst++ = '%';
			*dst++ = hex[c >> 4];
			*dst++ = hex[c & 15];
		}
	}
	return dst;
}

char *mailbox_uri_build(const char *server, const char *account,
			const char *node, char sep, uint32_t uidvalidity)
{
	size_t cap = strlen(server) + 3 * (strlen(account) + strlen(node)) + 64;
	char *out = malloc(cap);
	char *dst = out;
	const char *p = node;

	if (out == NULL || !mailbox_uri_node_valid(node))
		goto fail;
	dst += sprintf(dst, "imap://%s/", server);
	if (*account != '\0') {
		if (strncmp(node, "INBOX", 5) != 0 || (node[5] != '\0' && node[5] != '/'))
			goto fail;   /* personal nodes all live under INBOX */
		dst += sprintf(dst, "user%c", sep);
		dst = append_encoded(dst, account, strlen(account), false);
		p = node + 5;
	}
	while (*p != '\0') {
		size_t len;

		if (*p == '/') {
			*dst++ = sep;
			p++;
			continue;
		}
		len = strcspn(p, "/");
		dst = append_encoded(dst, p, len, true);
		p += len;
	}
	if (uidvalidity > 0)
		dst += sprintf(dst, ";UIDVALIDITY=%u", uidvalidity);
	*dst = '\0';
	return out;
fail:
	free(out);
	return NULL;
}
