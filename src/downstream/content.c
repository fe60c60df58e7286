#include "downstream/content.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xml_escape.h"

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
	/* only read while storing: the casts drop no promise */
	struct content_record rec = {
		.seq = seq,
		.part = (char *)part,
		.size = msg->len,
		.header_size = content_header_length(msg->data, msg->len),
		.flags = (char *)msg->flags,
		.internaldate = (char *)msg->internaldate,
	};

	sha256_hex(msg->data, msg->len, rec.sha256);
	return content_store_bytes(store, &rec, msg->data, now_us);
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
