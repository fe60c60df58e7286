#include "base/xml_escape.h"

#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"

char *xml_escape(const char *text)
{
	size_t n = 0;
	char *out, *o, *clean = NULL;

	/* names, JIDs and ids written into raw XML: whatever their source,
	 * nothing XML 1.0 forbids gets through */
	if (!utf8_xml_valid(text, strlen(text))) {
		clean = utf8_xml_clean(text, strlen(text), NULL, NULL);
		if (clean == NULL)
			return NULL;
		text = clean;
	}
	for (const char *p = text; *p != '\0'; p++)
		n += (*p == '&') ? 5 : (*p == '<' || *p == '>') ? 4 :
		     (*p == '\'' || *p == '"') ? 6 : 1;
	out = malloc(n + 1);
	if (out == NULL) {
		free(clean);
		return NULL;
	}
	o = out;
	for (const char *p = text; *p != '\0'; p++) {
		const char *rep = NULL;

		switch (*p) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '\'': rep = "&apos;"; break;
		case '"': rep = "&quot;"; break;
		default: *o++ = *p; continue;
		}
		o = stpcpy(o, rep);
	}
	*o = '\0';
	free(clean);
	return out;
}
