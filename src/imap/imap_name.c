#include "imap/imap_name.h"
#include "base/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* A growing NUL-terminated string; on allocation failure `failed` sticks
 * and the caller reports "out of memory" once at the end. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void sb_grow(struct sbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->failed || b->len + more + 1 <= b->cap)
		return;
	cap = b->cap != 0 ? b->cap : 64;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->failed = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	sb_grow(b, n);
	if (b->failed)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_chr(struct sbuf *b, char c)
{
	sb_add(b, &c, 1);
}

/* Hands the string over, or fails for an earlier allocation failure. */
static int sb_finish(struct sbuf *b, char **out_r, const char **error_r)
{
	if (!b->failed && b->p == NULL)
		sb_add(b, "", 0);
	if (b->failed) {
		free(b->p);
		*error_r = "out of memory";
		return -1;
	}
	*out_r = b->p;
	return 0;
}

/* ---- modified UTF-7 ---------------------------------------------------- */

static void utf8_put(struct sbuf *b, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	sb_add(b, u, n);
}

/* Writes "&<modified base64 of UTF-16BE>-" for a run of shifted chars. */
static void mutf7_flush(struct sbuf *b, const unsigned char *u16, size_t n)
{
	unsigned char *b64;
	int len;

	if (n == 0)
		return;
	b64 = malloc(4 * ((n + 2) / 3) + 1);
	if (b64 == NULL) {
		b->failed = true;
		return;
	}
	len = EVP_EncodeBlock(b64, u16, (int)n);
	/* modified base64: no padding, ',' instead of '/' */
	while (len > 0 && b64[len - 1] == '=')
		len--;
	for (int k = 0; k < len; k++) {
		if (b64[k] == '/')
			b64[k] = ',';
	}
	sb_chr(b, '&');
	sb_add(b, (const char *)b64, (size_t)len);
	sb_chr(b, '-');
	free(b64);
}

int imap_mutf7_encode(const char *utf8, char **out_r, const char **error_r)
{
	const unsigned char *s = (const unsigned char *)utf8;
	size_t len = strlen(utf8), i = 0, n16 = 0;
	/* UTF-16 never needs more bytes than UTF-8 plus one unit per char */
	unsigned char *u16 = malloc(2 * len + 2);
	struct sbuf b = { 0 };

	if (u16 == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	while (i < len) {
		int32_t cp = utf8_next(s, len, &i);

		if (cp < 0) {
			free(u16);
			free(b.p);
			*error_r = "mailbox name is not valid UTF-8";
			return -1;
		}
		if (cp >= 0x20 && cp <= 0x7e) {
			mutf7_flush(&b, u16, n16);
			n16 = 0;
			if (cp == '&')
				sb_str(&b, "&-");
			else
				sb_chr(&b, (char)cp);
			continue;
		}
		if (cp >= 0x10000) {
			uint32_t v = (uint32_t)cp - 0x10000;
			uint32_t hi = 0xd800 | (v >> 10), lo = 0xdc00 | (v & 0x3ff);

			u16[n16++] = (unsigned char)(hi >> 8);
			u16[n16++] = (unsigned char)(hi & 0xff);
			u16[n16++] = (unsigned char)(lo >> 8);
			u16[n16++] = (unsigned char)(lo & 0xff);
		} else {
			u16[n16++] = (unsigned char)(cp >> 8);
			u16[n16++] = (unsigned char)(cp & 0xff);
		}
	}
	mutf7_flush(&b, u16, n16);
	free(u16);
	return sb_finish(&b, out_r, error_r);
}

static bool mb64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == ',';
}

/* Decodes the base64 between '&' and '-' (n > 0 chars) as UTF-16BE. */
static int mutf7_shift_decode(struct sbuf *b, const char *src, size_t n,
			      const char **error_r)
{
	size_t padded = (n + 3) / 4 * 4, bytes = n * 6 / 8;
	unsigned char *in, *raw;
	int r;

	if (n % 4 == 1) {
		*error_r = "truncated base64 in modified UTF-7 name";
		return -1;
	}
	if (bytes % 2 != 0) {
		*error_r = "odd UTF-16 length in modified UTF-7 name";
		return -1;
	}
	in = malloc(padded + 1);
	raw = malloc(padded / 4 * 3 + 1);
	if (in == NULL || raw == NULL) {
		free(in);
		free(raw);
		*error_r = "out of memory";
		return -1;
	}
	for (size_t k = 0; k < padded; k++)
		in[k] = k < n ? (src[k] == ',' ? '/' : (unsigned char)src[k]) : '=';
	/* EVP_DecodeBlock counts the padding as data: `bytes` is the real size */
	r = EVP_DecodeBlock(raw, in, (int)padded);
	free(in);
	if (r < 0) {
		free(raw);
		*error_r = "bad base64 in modified UTF-7 name";
		return -1;
	}
	for (size_t k = 0; k < bytes; k += 2) {
		uint32_t u = (uint32_t)raw[k] << 8 | raw[k + 1];

		if (u >= 0xd800 && u <= 0xdbff) {
			uint32_t lo;

			if (k + 3 >= bytes) {
				free(raw);
				*error_r = "lone surrogate in modified UTF-7 name";
				return -1;
			}
			lo = (uint32_t)raw[k + 2] << 8 | raw[k + 3];
			if (lo < 0xdc00 || lo > 0xdfff) {
				free(raw);
				*error_r = "lone surrogate in modified UTF-7 name";
				return -1;
			}
			u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
			k += 2;
		} else if (u >= 0xdc00 && u <= 0xdfff) {
			free(raw);
			*error_r = "lone surrogate in modified UTF-7 name";
			return -1;
		} else if (u == 0) {
			free(raw);
			*error_r = "NUL in modified UTF-7 name";
			return -1;
		}
		utf8_put(b, u);
	}
	free(raw);
	return 0;
}

int imap_mutf7_decode(const char *mutf7, char **out_r, const char **error_r)
{
	const char *p = mutf7;
	struct sbuf b = { 0 };

	while (*p != '\0') {
		const char *end;

		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
			free(b.p);
			*error_r = "8-bit or control character in modified UTF-7 name";
			return -1;
		}
		if (*p != '&') {
			sb_chr(&b, *p++);
			continue;
		}
		end = p + 1;
		while (mb64_char((unsigned char)*end))
			end++;
		if (*end != '-') {
			free(b.p);
			*error_r = "unterminated base64 in modified UTF-7 name";
			return -1;
		}
		if (end == p + 1) {
			sb_chr(&b, '&');
		} else if (mutf7_shift_decode(&b, p + 1, (size_t)(end - p - 1),
					      error_r) < 0) {
			free(b.p);
			return -1;
		}
		p = end + 1;
	}
	return sb_finish(&b, out_r, error_r);
}

/* ---- node <-> IMAP name ------------------------------------------------ */

void imap_namespaces_clear(struct imap_namespaces *ns)
{
	free(ns->personal.prefix);
	free(ns->other.prefix);
	free(ns->shared.prefix);
	memset(ns, 0, sizeof(*ns));
}

static void free_levels(char **levels, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(levels[i]);
	free(levels);
}

/* Splits a node at '/' and undoes the %25 / %2F escaping of each level
 * (mailbox_uri.c escapes exactly those two). */
static int node_levels(const char *node, char ***levels_r, size_t *n_r,
		       const char **error_r)
{
	size_t n = 1, k = 0;
	char **levels;
	const char *p = node;

	for (const char *q = node; *q != '\0'; q++)
		n += *q == '/';
	levels = calloc(n, sizeof(*levels));
	if (levels == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (;;) {
		size_t len = strcspn(p, "/");
		char *lv = malloc(len + 1), *o = lv;

		if (lv == NULL) {
			free_levels(levels, k);
			*error_r = "out of memory";
			return -1;
		}
		levels[k++] = lv;
		if (len == 0) {
			free_levels(levels, k);
			*error_r = "empty level in node name";
			return -1;
		}
		for (size_t i = 0; i < len; i++) {
			int hi, lo, v;

			if (p[i] != '%') {
				*o++ = p[i];
				continue;
			}
			hi = i + 2 < len ? OPENSSL_hexchar2int((unsigned char)p[i + 1]) : -1;
			lo = i + 2 < len ? OPENSSL_hexchar2int((unsigned char)p[i + 2]) : -1;
			v = hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
			if (v != '%' && v != '/') {
				free_levels(levels, k);
				*error_r = "bad %-escape in node name";
				return -1;
			}
			*o++ = (char)v;
			i += 2;
		}
		*o = '\0';
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	*levels_r = levels;
	*n_r = k;
	return 0;
}

/* Appends levels joined by sep, each checked and encoded. */
static int add_levels(struct sbuf *b, char **levels, size_t n, char sep,
		      bool lead_sep, const char **error_r)
{
	if (n > 0 && sep == '\0' && (n > 1 || lead_sep)) {
		*error_r = "the server's namespace is flat";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char *enc;

		if (sep != '\0' && strchr(levels[i], sep) != NULL) {
			*error_r = "a mailbox level contains the hierarchy separator";
			return -1;
		}
		if (imap_mutf7_encode(levels[i], &enc, error_r) < 0)
			return -1;
		if (i > 0 || lead_sep)
			sb_chr(b, sep);
		sb_str(b, enc);
		free(enc);
	}
	return 0;
}

int imap_name_from_node(const struct imap_namespaces *ns, const char *self,
			const char *account, const char *node, char **name_r,
			const char **error_r)
{
	struct sbuf b = { 0 };
	char **levels;
	size_t n;
	int r;

	if (node_levels(node, &levels, &n, error_r) < 0)
		return -1;
	if (account[0] == '\0') {
		if (ns->shared.prefix == NULL) {
			*error_r = "the server has no shared namespace";
			r = -1;
		} else {
			sb_str(&b, ns->shared.prefix);
			r = add_levels(&b, levels, n, ns->shared.sep, false, error_r);
		}
	} else if (strcmp(levels[0], "INBOX") != 0) {
		*error_r = "a personal node must start with INBOX";
		r = -1;
	} else if (strcmp(self, account) == 0 && ns->personal.prefix != NULL) {
		if (n == 1) {
			sb_str(&b, "INBOX");
			r = 0;
		} else {
			sb_str(&b, ns->personal.prefix);
			r = add_levels(&b, levels + 1, n - 1, ns->personal.sep,
				       false, error_r);
		}
	} else if (ns->other.prefix == NULL) {
		*error_r = "the server has no other-users namespace";
		r = -1;
	} else {
		char *owner[1] = { strdup(account) };

		sb_str(&b, ns->other.prefix);
		r = owner[0] == NULL ? (*error_r = "out of memory", -1) :
			add_levels(&b, owner, 1, ns->other.sep, false, error_r);
		free(owner[0]);
		if (r == 0 && n == 1 && ns->other_inbox_named) {
			char *inbox[1] = { "INBOX" };

			r = add_levels(&b, inbox, 1, ns->other.sep, true, error_r);
		} else if (r == 0) {
			r = add_levels(&b, levels + 1, n - 1, ns->other.sep, true,
				       error_r);
		}
	}
	free_levels(levels, n);
	if (r < 0) {
		free(b.p);
		return -1;
	}
	return sb_finish(&b, name_r, error_r);
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* True if name lies in namespace ns (a non-empty prefix), including the
 * namespace root itself ("user" for prefix "user/"). */
static bool in_namespace(const struct imap_ns *ns, const char *name)
{
	size_t plen;

	if (ns->prefix == NULL || ns->prefix[0] == '\0')
		return false;
	if (has_prefix(name, ns->prefix))
		return true;
	plen = strlen(ns->prefix);
	return ns->sep != '\0' && ns->prefix[plen - 1] == ns->sep &&
	       strlen(name) == plen - 1 && strncmp(name, ns->prefix, plen - 1) == 0;
}

static bool is_inbox(const char *name, char sep)
{
	return strncasecmp(name, "INBOX", 5) == 0 &&
	       (name[5] == '\0' || (sep != '\0' && name[5] == sep));
}

/* Appends "/"-joined node levels for rest, split at sep, each decoded and
 * escaped like mailbox_uri.c does. */
static int add_node_levels(struct sbuf *b, const char *rest, char sep,
			   bool lead_slash, const char **error_r)
{
	const char *p = rest;

	for (bool first = true;; first = false) {
		size_t len = sep != '\0' ? strcspn(p, (char[]){ sep, '\0' }) : strlen(p);
		char *raw, *dec;

		if (len == 0) {
			*error_r = "empty level in mailbox name";
			return -1;
		}
		raw = strndup(p, len);
		if (raw == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		if (imap_mutf7_decode(raw, &dec, error_r) < 0) {
			free(raw);
			return -1;
		}
		free(raw);
		if (!first || lead_slash)
			sb_chr(b, '/');
		for (const char *q = dec; *q != '\0'; q++) {
			if (*q == '%')
				sb_str(b, "%25");
			else if (*q == '/')
				sb_str(b, "%2F");
			else
				sb_chr(b, *q);
		}
		free(dec);
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
}

int imap_name_to_node(const struct imap_namespaces *ns, const char *self,
		      const char *account, const char *name, char sep,
		      char **node_r, const char **error_r)
{
	struct sbuf b = { 0 };
	const char *rest;

	if (account[0] == '\0') {
		const char *prefix = ns->shared.prefix;

		if (prefix == NULL || !has_prefix(name, prefix))
			return 1;
		/* an empty shared prefix covers everything not claimed by
		 * the personal and other-users namespaces */
		if (prefix[0] == '\0' &&
		    (is_inbox(name, sep) || in_namespace(&ns->other, name) ||
		     in_namespace(&ns->personal, name)))
			return 1;
		rest = name + strlen(prefix);
		if (*rest == '\0')
			return 1;
		if (add_node_levels(&b, rest, sep, false, error_r) < 0) {
			free(b.p);
			return -1;
		}
		return sb_finish(&b, node_r, error_r);
	}
	if (strcmp(self, account) == 0 && ns->personal.prefix != NULL) {
		if (is_inbox(name, '\0')) {
			sb_str(&b, "INBOX");
			return sb_finish(&b, node_r, error_r);
		}
		if (in_namespace(&ns->other, name) || in_namespace(&ns->shared, name) ||
		    !has_prefix(name, ns->personal.prefix))
			return 1;
		rest = name + strlen(ns->personal.prefix);
	} else {
		char *acct;
		size_t alen, plen;

		if (ns->other.prefix == NULL)
			return 1;
		if (imap_mutf7_encode(account, &acct, error_r) < 0)
			return -1;
		plen = strlen(ns->other.prefix);
		alen = strlen(acct);
		if (!has_prefix(name, ns->other.prefix) ||
		    strncmp(name + plen, acct, alen) != 0 ||
		    (name[plen + alen] != '\0' &&
		     (sep == '\0' || name[plen + alen] != sep))) {
			free(acct);
			return 1;
		}
		free(acct);
		rest = name + plen + alen;
		if (*rest == '\0') {
			if (ns->other_inbox_named)
				return 1;   /* the \Noselect owner level */
			sb_str(&b, "INBOX");
			return sb_finish(&b, node_r, error_r);
		}
		rest++;
		if (ns->other_inbox_named && is_inbox(rest, '\0')) {
			sb_str(&b, "INBOX");
			return sb_finish(&b, node_r, error_r);
		}
	}
	if (*rest == '\0')
		return 1;
	sb_str(&b, "INBOX");
	if (add_node_levels(&b, rest, sep, true, error_r) < 0) {
		free(b.p);
		return -1;
	}
	return sb_finish(&b, node_r, error_r);
}
