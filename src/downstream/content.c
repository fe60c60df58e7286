#include "downstream/content.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xml_escape.h"
#include "base/log.h"

static const char *const schema =
	"CREATE TABLE IF NOT EXISTS content ("
	" seq INTEGER PRIMARY KEY,"
	" part TEXT NOT NULL DEFAULT 'full',"
	" size INTEGER NOT NULL DEFAULT 0,"
	" header_size INTEGER NOT NULL DEFAULT 0,"
	" sha256 TEXT NOT NULL DEFAULT '',"
	" flags TEXT, internaldate TEXT, data BLOB,"
	" error TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
	" stored_us INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS content_stored ON content (stored_us);";

int content_init(struct store *store, const char **error_r)
{
	if (sqlite3_exec(store_db(store), schema, NULL, NULL, NULL) != SQLITE_OK) {
		*error_r = "cannot create the content table";
		return -1;
	}
	return 0;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	out[0] = '\0';
	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		return;
	for (unsigned i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

size_t content_header_length(const char *data, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (data[i] != '\n')
			continue;
		if (data[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && data[i + 1] == '\r' && data[i + 2] == '\n')
			return i + 3;
	}
	return len;   /* no body: all of it is header */
}

int content_put(struct store *store, long long seq, const char *part,
		const struct imap_message *msg, long long now_us)
{
	static const char sql[] =
		"INSERT OR REPLACE INTO content (seq, part, size, header_size, sha256,"
		" flags, internaldate, data, error, attempts, stored_us)"
		" VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?)";
	sqlite3_stmt *st = store_stmt(store, sql);
	char hex[65];

	if (st == NULL)
		return -1;
	sha256_hex(msg->data, msg->len, hex);
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, part, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)msg->len);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)content_header_length(msg->data, msg->len));
	sqlite3_bind_text(st, 5, hex, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 6, msg->flags, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, msg->internaldate, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 8, msg->data, msg->len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, now_us);
	return store_exec_stmt(store, st);
}

int content_put_error(struct store *store, long long seq, const char *reason,
		      unsigned attempts, long long now_us)
{
	static const char sql[] =
		"INSERT OR REPLACE INTO content (seq, error, attempts, stored_us)"
		" VALUES (?, ?, ?, ?)";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, (int)attempts);
	sqlite3_bind_int64(st, 4, now_us);
	return store_exec_stmt(store, st);
}

static char *column_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t != NULL ? strdup((const char *)t) : NULL;
}

int content_get(struct store *store, long long seq, struct content_record *rec)
{
	static const char sql[] =
		"SELECT part, size, header_size, sha256, flags, internaldate, error,"
		" attempts FROM content WHERE seq = ?";
	sqlite3_stmt *st = store_stmt(store, sql);
	int r;

	memset(rec, 0, sizeof(*rec));
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		const unsigned char *hex = sqlite3_column_text(st, 3);

		rec->seq = seq;
		rec->part = column_dup(st, 0);
		rec->size = (size_t)sqlite3_column_int64(st, 1);
		rec->header_size = (size_t)sqlite3_column_int64(st, 2);
		snprintf(rec->sha256, sizeof(rec->sha256), "%s", hex != NULL ? (const char *)hex : "");
		rec->flags = column_dup(st, 4);
		rec->internaldate = column_dup(st, 5);
		rec->error = column_dup(st, 6);
		rec->attempts = (unsigned)sqlite3_column_int(st, 7);
	}
	sqlite3_reset(st);
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		log_error("content: lookup of %lld: %s", seq, sqlite3_errmsg(store_db(store)));
		return -1;
	}
	return r == SQLITE_ROW ? 1 : 0;
}

void content_record_clear(struct content_record *rec)
{
	free(rec->part);
	free(rec->flags);
	free(rec->internaldate);
	free(rec->error);
	memset(rec, 0, sizeof(*rec));
}

int content_read(struct store *store, long long seq, size_t offset,
		 size_t length, char **data_r, size_t *len_r)
{
	static const char sql[] =
		"SELECT substr(data, ?, ?) FROM content WHERE seq = ? AND data IS NOT NULL";
	sqlite3_stmt *st = store_stmt(store, sql);
	int r;

	*data_r = NULL;
	*len_r = 0;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)offset + 1);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)length);
	sqlite3_bind_int64(st, 3, seq);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		int n = sqlite3_column_bytes(st, 0);
		const void *p = sqlite3_column_blob(st, 0);

		*data_r = malloc((size_t)n + 1);
		if (*data_r != NULL) {
			if (n > 0)
				memcpy(*data_r, p, (size_t)n);
			*len_r = (size_t)n;
		}
	}
	sqlite3_reset(st);
	if (r != SQLITE_ROW)
		return -1;
	return *data_r != NULL ? 0 : -1;
}

int content_prune(struct store *store, long long before_us)
{
	static const char sql[] = "DELETE FROM content WHERE stored_us < ?";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, before_us);
	return store_exec_stmt(store, st);
}

char *content_base64(const void *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out == NULL)
		return NULL;
	/* EVP_EncodeBlock takes an int length; messages are far below 2 GiB */
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

static char *attr(const char *text)
{
	return xml_escape(text != NULL ? text : "");
}

char *content_element(struct store *store, const struct content_record *rec,
		      const char *part, size_t inline_max)
{
	bool headers = strcmp(part, "headers") == 0;
	size_t size;
	char hex[65], *data = NULL, *b64 = NULL, *flags, *date, *out = NULL;
	size_t got = 0;

	if (rec->error != NULL) {
		if (asprintf(&out, "<content-error xmlns='" CONTENT_NS "' reason='%s'"
			     " attempts='%u'/>", rec->error, rec->attempts) < 0)
			return NULL;
		return out;
	}
	/* headers from a full part: its header section */
	size = headers && strcmp(rec->part, "full") == 0 ? rec->header_size : rec->size;
	snprintf(hex, sizeof(hex), "%s", rec->sha256);
	if (size <= inline_max || (headers && strcmp(rec->part, "full") == 0)) {
		if (content_read(store, rec->seq, 0, size, &data, &got) < 0)
			return NULL;
		if (size != rec->size)
			sha256_hex(data, got, hex);
	}
	flags = attr(rec->flags);
	date = attr(rec->internaldate);
	if (data != NULL && got <= inline_max) {
		b64 = content_base64(data, got);
		if (b64 != NULL &&
		    asprintf(&out, "<content xmlns='" CONTENT_NS "' part='%s' size='%zu'"
			     " sha256='%s' internaldate='%s' flags='%s'>%s</content>",
			     headers ? "headers" : "full", got, hex, date, flags, b64) < 0)
			out = NULL;
	} else if (asprintf(&out, "<content xmlns='" CONTENT_NS "' part='%s' size='%zu'"
			    " sha256='%s' internaldate='%s' flags='%s' fetch='true'/>",
			    headers ? "headers" : "full", size, hex, date, flags) < 0) {
		out = NULL;
	}
	free(b64);
	free(data);
	free(flags);
	free(date);
	return out;
}
