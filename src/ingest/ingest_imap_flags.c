#include "ingest/ingest_imap_flags.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A space separated list split into words (pointers into buf). */
struct words {
	char *buf;
	char **w;
	size_t n;
};

static void words_free(struct words *ws)
{
	free(ws->buf);
	free(ws->w);
	memset(ws, 0, sizeof(*ws));
}

static int words_split(const char *s, struct words *ws)
{
	char *save = NULL;

	memset(ws, 0, sizeof(*ws));
	ws->buf = strdup(s != NULL ? s : "");
	ws->w = calloc(strlen(ws->buf != NULL ? ws->buf : "") / 2 + 1, sizeof(char *));
	if (ws->buf == NULL || ws->w == NULL) {
		words_free(ws);
		return -1;
	}
	for (char *t = strtok_r(ws->buf, " ", &save); t != NULL;
	     t = strtok_r(NULL, " ", &save))
		ws->w[ws->n++] = t;
	return 0;
}

/* IMAP flags and keywords compare case-insensitively (RFC 3501 2.3.2) */
static bool words_has(const struct words *ws, const char *word)
{
	for (size_t i = 0; i < ws->n; i++) {
		if (strcasecmp(ws->w[i], word) == 0)
			return true;
	}
	return false;
}

/* The words joined by spaces; "" for none. */
static char *words_join(char **w, size_t n)
{
	size_t len = 1;
	char *out, *p;

	for (size_t i = 0; i < n; i++)
		len += strlen(w[i]) + 1;
	out = p = malloc(len);
	if (out == NULL)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			*p++ = ' ';
		strcpy(p, w[i]);
		p += strlen(p);
	}
	return out;
}

static int cmp_word(const void *a, const void *b)
{
	int c = strcasecmp(*(char *const *)a, *(char *const *)b);

	return c != 0 ? c : strcmp(*(char *const *)a, *(char *const *)b);
}

char *ingest_imap_flags_normalize(const char *flags)
{
	struct words ws;
	size_t n = 0;
	char *out;

	if (words_split(flags, &ws) < 0)
		return NULL;
	if (ws.n > 0)
		qsort(ws.w, ws.n, sizeof(*ws.w), cmp_word);
	for (size_t i = 0; i < ws.n; i++) {
		if (strcasecmp(ws.w[i], "\\Recent") == 0 ||
		    (n > 0 && strcasecmp(ws.w[n - 1], ws.w[i]) == 0))
			continue;
		ws.w[n++] = ws.w[i];
	}
	out = words_join(ws.w, n);
	words_free(&ws);
	return out;
}

bool ingest_imap_flags_seen(const char *flags)
{
	for (const char *p = flags; *p != '\0';) {
		size_t len = strcspn(p, " ");

		if (len == 5 && strncasecmp(p, "\\Seen", 5) == 0)
			return true;
		p += len;
		p += strspn(p, " ");
	}
	return false;
}

void ingest_imap_flag_change_clear(struct ingest_imap_flag_change *ch)
{
	free(ch->added);
	free(ch->removed);
	memset(ch, 0, sizeof(*ch));
}

int ingest_imap_flags_compare(const char *old, const char *now,
			      struct ingest_imap_flag_change *ch)
{
	struct words o, n;
	char **added = NULL, **removed = NULL;
	size_t na = 0, nr = 0;
	int ret = -1;

	memset(ch, 0, sizeof(*ch));
	if (words_split(old, &o) < 0)
		return -1;
	if (words_split(now, &n) < 0) {
		words_free(&o);
		return -1;
	}
	added = calloc(n.n + 1, sizeof(*added));
	removed = calloc(o.n + 1, sizeof(*removed));
	if (added == NULL || removed == NULL)
		goto out;
	for (size_t i = 0; i < n.n; i++) {
		if (words_has(&o, n.w[i]))
			continue;
		if (strcasecmp(n.w[i], "\\Seen") == 0)
			ch->seen = true;
		else if (strcasecmp(n.w[i], "\\Deleted") == 0)
			ch->deleted = true;
		else
			added[na++] = n.w[i];
	}
	for (size_t i = 0; i < o.n; i++) {
		if (!words_has(&n, o.w[i]))
			removed[nr++] = o.w[i];
	}
	if ((na > 0 && (ch->added = words_join(added, na)) == NULL) ||
	    (nr > 0 && (ch->removed = words_join(removed, nr)) == NULL)) {
		ingest_imap_flag_change_clear(ch);
		goto out;
	}
	ret = 0;
out:
	free(added);
	free(removed);
	words_free(&o);
	words_free(&n);
	return ret;
}
