#include "base/utf8.h"

#include <stdlib.h>
#include <string.h>

int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
	unsigned char c = s[*i];
	size_t n;
	uint32_t cp;

	if (c < 0x80) {
		(*i)++;
		return c;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		cp = c & 0x07;
	} else {
		return -1;
	}
	if (len - *i <= n)
		return -1;
	for (size_t k = 1; k <= n; k++) {
		if ((s[*i + k] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (s[*i + k] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += n + 1;
	return (int32_t)cp;
}

bool utf8_xml_char(int32_t cp)
{
	if (cp < 0x20)
		return cp == 0x9 || cp == 0xa || cp == 0xd;
	return cp <= 0xd7ff || (cp >= 0xe000 && cp <= 0xfffd) ||
	       (cp >= 0x10000 && cp <= 0x10ffff);
}

bool utf8_xml_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		/* the common case, plain ASCII text, without a call */
		if (u[i] >= 0x20 && u[i] < 0x80) {
			i++;
			continue;
		}
		if (!utf8_xml_char(utf8_next(u, len, &i)))
			return false;
	}
	return true;
}

char *utf8_xml_clean(const char *s, size_t len, size_t *replaced_r,
		     size_t *len_r)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0, replaced = 0;
	/* each input byte becomes at most the 3 bytes of U+FFFD */
	char *out = len < SIZE_MAX / 3 ? malloc(len * 3 + 1) : NULL;

	if (out == NULL)
		return NULL;
	while (i < len) {
		size_t start = i;
		int32_t cp = utf8_next(u, len, &i);

		if (cp < 0)
			i++;   /* one U+FFFD per invalid byte */
		if (utf8_xml_char(cp)) {
			memcpy(out + o, s + start, i - start);
			o += i - start;
			continue;
		}
		memcpy(out + o, UTF8_REPLACEMENT, 3);
		o += 3;
		replaced++;
	}
	out[o] = '\0';
	if (replaced_r != NULL)
		*replaced_r = replaced;
	if (len_r != NULL)
		*len_r = o;
	return out;
}
