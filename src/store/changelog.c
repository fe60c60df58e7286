#include "store/changelog.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

#define HASH_LEN 32
/* a uidset wider than this is recorded as given, not expanded */
#define UIDS_MAX 10000

/* ---- IMAP ENVELOPE ------------------------------------------------------ */

static const char *sexp_skip(const char *s);

/* One IMAP s-expression (quoted string, NIL, atom, literal-free list) as
 * JSON: strings, null, arrays. Cyrus writes envelopes without literals. */
static json_t *sexp_parse(const char **p)
{
	const char *s = *p;

	while (*s == ' ')
		s++;
	if (*s == '(') {
		json_t *arr = json_array();

		s++;
		for (;;) {
			json_t *item;

			while (*s == ' ')
				s++;
			if (*s == ')') {
				s++;
				break;
			}
			if (*s == '\0') {
				json_decref(arr);
				return NULL;
			}
			*p = s;
			item = sexp_parse(p);
			if (item == NULL) {
				json_decref(arr);
				return NULL;
			}
			json_array_append_new(arr, item);
			s = *p;
		}
		*p = s;
		return arr;
	}
	if (*s == '"') {
		const char *end = sexp_skip(s);
		char *buf = end != NULL ? malloc((size_t)(end - s)) : NULL;
		size_t n = 0;
		json_t *str;

		if (buf == NULL)
			return NULL;
		for (s++; *s != '"'; s++) {
			if (*s == '\0') {
				free(buf);
				return NULL;
			}
			if (*s == '\\' && s[1] != '\0')
				s++;
			buf[n++] = *s;
		}
		buf[n] = '\0';
		*p = s + 1;
		str = json_string(buf);
		free(buf);
		return str != NULL ? str : json_null();
	}
	if (strncmp(s, "NIL", 3) == 0) {
		*p = s + 3;
		return json_null();
	}
	{
		size_t len = strcspn(s, " ()");

		if (len == 0)
			return NULL;
		*p = s + len;
		return json_stringn(s, len);
	}
}

static json_t *envelope_parse(const char *envelope)
{
	const char *p = envelope;
	json_t *env = envelope != NULL ? sexp_parse(&p) : NULL;

	if (env != NULL && (!json_is_array(env) || json_array_size(env) < 10)) {
		json_decref(env);
		env = NULL;
	}
	return env;
}

/* Past one s-expression element (as sexp_parse reads it); NULL when
 * malformed. */
static const char *sexp_skip(const char *s)
{
	while (*s == ' ')
		s++;
	if (*s == '(') {
		for (s++;;) {
			while (*s == ' ')
				s++;
			if (*s == ')')
				return s + 1;
			if (*s == '\0' || (s = sexp_skip(s)) == NULL)
				return NULL;
		}
	}
	if (*s == '"') {
		for (s++; *s != '"'; s++) {
			if (*s == '\0')
				return NULL;
			if (*s == '\\' && s[1] != '\0')
				s++;
		}
		return s + 1;
	}
	if (strncmp(s, "NIL", 3) == 0)
		return s + 3;
	return strcspn(s, " ()") > 0 ? s + strcspn(s, " ()") : NULL;
}

/* The Message-ID is the envelope's tenth field. Every MessageNew asks for
 * it while journaling, so it is read in place, not through a JSON tree. */
char *changelog_envelope_message_id(const char *envelope)
{
	const char *s = envelope;
	json_t *mid;
	char *out = NULL;

	if (s == NULL)
		return NULL;
	while (*s == ' ')
		s++;
	if (*s++ != '(')
		return NULL;
	for (int i = 0; i < 9 && s != NULL; i++)
		s = sexp_skip(s);
	if (s == NULL)
		return NULL;
	mid = sexp_parse(&s);
	if (json_is_string(mid) && *json_string_value(mid) != '\0')
		out = strdup(json_string_value(mid));
	json_decref(mid);
	return out;
}

char *changelog_envelope_addresses(const char *envelope)
{
	json_t *env = envelope_parse(envelope);
	char *out = NULL;
	size_t len = 0, i, j;
	FILE *f;

	if (env == NULL)
		return NULL;
	f = open_memstream(&out, &len);
	if (f == NULL) {
		json_decref(env);
		return NULL;
	}
	fputc(' ', f);
	for (i = 2; i <= 7; i++) {
		json_t *addrs = json_array_get(env, i), *addr;

		json_array_foreach(addrs, j, addr) {
			const char *mbox = json_string_value(json_array_get(addr, 2));
			const char *host = json_string_value(json_array_get(addr, 3));

			if (mbox == NULL || host == NULL)
				continue;   /* group syntax markers */
			for (const char *c = mbox; *c != '\0'; c++)
				fputc(tolower((unsigned char)*c), f);
			fputc('@', f);
			for (const char *c = host; *c != '\0'; c++)
				fputc(tolower((unsigned char)*c), f);
			fputc(' ', f);
		}
	}
	fclose(f);
	json_decref(env);
	return out;
}

/* ---- helpers ------------------------------------------------------------- */

/* Both run for every journaled event: no stdio formatting. */
static void hex(const unsigned char *bin, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bin[i] >> 4];
		out[2 * i + 1] = digits[bin[i] & 15];
	}
	out[2 * len] = '\0';
}

/* Exactly len bytes from 2 * len hex digits, or -1. */
static int unhex(const char *text, unsigned char *bin, size_t len)
{
	size_t got;

	if (text == NULL || OPENSSL_hexstr2buf_ex(bin, len, &got, text, '\0') != 1 ||
	    got != len)
		return -1;
	return 0;
}

static int chain_hash(const unsigned char prev[HASH_LEN], const char *record,
		      size_t len, unsigned char out[HASH_LEN])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int outlen = 0;
	int ok;

	if (md == NULL)
		return -1;
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(md, prev, HASH_LEN) == 1 &&
	     EVP_DigestUpdate(md, record, len) == 1 &&
	     EVP_DigestFinal_ex(md, out, &outlen) == 1 && outlen == HASH_LEN;
	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

/* uidset "1:3,7" as an array of numbers (as given when too wide). */
static json_t *uids_parse(const char *set)
{
	json_t *arr = json_array();
	const char *p = set;
	size_t count = 0;

	while (p != NULL && *p != '\0') {
		char *end;
		unsigned long lo = strtoul(p, &end, 10), hi = lo;

		if (end == p)
			break;
		if (*end == ':') {
			p = end + 1;
			hi = strtoul(p, &end, 10);
			if (end == p || hi < lo) {
				json_decref(arr);
				return json_string(set);
			}
		}
		if (count + (hi - lo + 1) > UIDS_MAX) {
			json_decref(arr);
			return json_string(set);
		}
		for (unsigned long u = lo; u <= hi; u++, count++)
			json_array_append_new(arr, json_integer((json_int_t)u));
		p = *end == ',' ? end + 1 : end;
		if (*end != ',' && *end != '\0')
			break;
	}
	return arr;
}

static void set_str(json_t *obj, const char *key, const char *value)
{
	if (value != NULL)
		json_object_set_new(obj, key, json_string(value));
}

static const char *param(const struct event *ev, const char *name)
{
	return json_string_value(json_object_get(ev->json, name));
}

/* The chain's head: last id and hash (zero hash, or the checkpoint's last
 * dropped hash, when the table is empty). */
static int chain_head(struct store *store, long long *id_r, unsigned char hash[HASH_LEN])
{
	static const char sql[] = "SELECT id, hash FROM changelog ORDER BY id DESC LIMIT 1";
	static const char cp_sql[] =
		"SELECT last_dropped_id, last_dropped_hash FROM changelog_checkpoints"
		" ORDER BY last_dropped_id DESC LIMIT 1";
	sqlite3_stmt *st = store_stmt(store, sql);
	int rc = -1;

	if (st == NULL)
		return -1;
	memset(hash, 0, HASH_LEN);
	*id_r = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*id_r = sqlite3_column_int64(st, 0);
		rc = unhex((const char *)sqlite3_column_text(st, 1), hash, HASH_LEN);
		sqlite3_reset(st);
		return rc;
	}
	sqlite3_reset(st);
	st = store_stmt(store, cp_sql);
	if (st == NULL)
		return -1;
	rc = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*id_r = sqlite3_column_int64(st, 0);
		rc = unhex((const char *)sqlite3_column_text(st, 1), hash, HASH_LEN);
	}
	sqlite3_reset(st);
	return rc;
}

/* Appends rec (its "id" and "time" filled here) to the chain, and indexes
 * its message_ids. */
static int append(struct store *store, const char *kind, json_t *rec, long long time_us)
{
	static const char sql[] =
		"INSERT INTO changelog (id, time_us, kind, record, hash) VALUES (?, ?, ?, ?, ?)";
	static const char idx_sql[] =
		"INSERT OR IGNORE INTO changelog_msgids (message_id, id) VALUES (?, ?)";
	unsigned char prev[HASH_LEN], hash[HASH_LEN];
	char hexhash[CHANGELOG_HASH_HEX];
	long long id;
	json_t *mids, *mid;
	size_t i;
	char *text;
	sqlite3_stmt *st;
	int rc;

	if (chain_head(store, &id, prev) < 0)
		return -1;
	id++;
	json_object_set_new(rec, "id", json_integer(id));
	json_object_set_new(rec, "time", json_integer(time_us));
	json_object_set_new(rec, "kind", json_string(kind));
	text = json_dumps(rec, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII);
	if (text == NULL || chain_hash(prev, text, strlen(text), hash) < 0) {
		free(text);
		return -1;
	}
	hex(hash, HASH_LEN, hexhash);
	st = store_stmt(store, sql);
	if (st == NULL) {
		free(text);
		return -1;
	}
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, time_us);
	sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, hexhash, -1, SQLITE_STATIC);
	rc = store_exec_stmt(store, st);
	free(text);
	if (rc < 0)
		return -1;
	mids = json_object_get(rec, "message_ids");
	json_array_foreach(mids, i, mid) {
		st = store_stmt(store, idx_sql);
		if (st == NULL)
			return -1;
		sqlite3_bind_text(st, 1, json_string_value(mid), -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, id);
		if (store_exec_stmt(store, st) < 0)
			return -1;
	}
	return 0;
}

/* ---- message identity ----------------------------------------------------- */

static int map_put(struct store *store, const char *account, uint32_t uidvalidity,
		   json_int_t uid, const char *message_id)
{
	static const char sql[] =
		"INSERT INTO changelog_msgmap (account, uidvalidity, uid, message_id)"
		" VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET message_id = excluded.message_id";
	sqlite3_stmt *st = store_stmt(store, sql);

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, uidvalidity);
	sqlite3_bind_int64(st, 3, uid);
	sqlite3_bind_text(st, 4, message_id, -1, SQLITE_TRANSIENT);
	return store_exec_stmt(store, st);
}

/* Newly allocated, or NULL when unknown. */
static char *map_get(struct store *store, const char *account, uint32_t uidvalidity,
		     json_int_t uid)
{
	static const char sql[] =
		"SELECT message_id FROM changelog_msgmap"
		" WHERE account = ? AND uidvalidity = ? AND uid = ?";
	sqlite3_stmt *st = store_stmt(store, sql);
	char *out = NULL;

	if (st == NULL)
		return NULL;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, uidvalidity);
	sqlite3_bind_int64(st, 3, uid);
	if (sqlite3_step(st) == SQLITE_ROW)
		out = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	return out;
}

static void add_mid(json_t *mids, const char *mid)
{
	size_t i;
	json_t *v;

	if (mid == NULL || *mid == '\0')
		return;
	json_array_foreach(mids, i, v)
		if (strcmp(json_string_value(v), mid) == 0)
			return;
	json_array_append_new(mids, json_string(mid));
}

/* The Message-IDs an event concerns, and what the map learns from it.
 * Cyrus's vnd.cmu.midset lists them in uid order when configured; the map
 * answers when it is not (and for copies it is the only link from the old
 * uids to the new). */
static json_t *message_ids(struct store *store, const struct event *ev,
			   json_t *uids, json_t *old_uids)
{
	const struct mailbox_uri *mb = &ev->mailbox;
	json_t *midset = json_object_get(ev->json, "vnd.cmu.midset");
	json_t *mids = json_array();
	size_t i;
	json_t *u;

	if (mb->account == NULL)
		return mids;
	if ((ev->type == EVENT_MESSAGE_NEW || ev->type == EVENT_MESSAGE_APPEND) && mb->uid != 0) {
		char *mid = changelog_envelope_message_id(param(ev, "vnd.cmu.envelope"));

		if (mid == NULL && json_is_array(midset))
			mid = json_string_value(json_array_get(midset, 0)) != NULL ?
			      strdup(json_string_value(json_array_get(midset, 0))) : NULL;
		if (mid != NULL) {
			map_put(store, mb->account, mb->uidvalidity, mb->uid, mid);
			add_mid(mids, mid);
		}
		free(mid);
		return mids;
	}
	if (!json_is_array(uids))
		return mids;
	json_array_foreach(uids, i, u) {
		char *mid = NULL;

		if (json_is_array(old_uids) && ev->old_mailbox.account != NULL)
			mid = map_get(store, ev->old_mailbox.account,
				      ev->old_mailbox.uidvalidity,
				      json_integer_value(json_array_get(old_uids, i)));
		if (mid == NULL)
			mid = map_get(store, mb->account, mb->uidvalidity, json_integer_value(u));
		if (mid == NULL && json_is_array(midset) &&
		    json_array_size(midset) == json_array_size(uids) &&
		    json_string_value(json_array_get(midset, i)) != NULL)
			mid = strdup(json_string_value(json_array_get(midset, i)));
		if (mid == NULL)
			continue;
		if (ev->type == EVENT_MESSAGE_COPY || ev->type == EVENT_MESSAGE_MOVE)
			map_put(store, mb->account, mb->uidvalidity, json_integer_value(u), mid);
		add_mid(mids, mid);
		free(mid);
	}
	/* a midset Cyrus sent that the uids did not account for */
	json_array_foreach(midset, i, u)
		if (json_array_size(mids) == 0)
			add_mid(mids, json_string_value(u));
	return mids;
}

/* ---- who ------------------------------------------------------------------- */

/* Login starts a session (client address from it); later events of the
 * same vnd.cmu.sessionId get it from here; Logout ends it. */
static void session_fill(struct store *store, const struct event *ev, json_t *rec)
{
	static const char put_sql[] =
		"INSERT INTO changelog_sessions (session, user, client_ip, client_port,"
		" service, login_us) VALUES (?, ?, ?, ?, ?, ?)"
		" ON CONFLICT DO UPDATE SET user = excluded.user, client_ip = excluded.client_ip,"
		" client_port = excluded.client_port, service = excluded.service,"
		" login_us = excluded.login_us";
	static const char get_sql[] =
		"SELECT user, client_ip, client_port, login_us FROM changelog_sessions"
		" WHERE session = ?";
	static const char del_sql[] = "DELETE FROM changelog_sessions WHERE session = ?";
	const char *session = param(ev, "vnd.cmu.sessionId");
	json_t *ip = json_object_get(ev->json, "clientIP");
	json_t *port = json_object_get(ev->json, "clientPort");
	sqlite3_stmt *st;

	if (json_is_string(ip))
		json_object_set(rec, "client_ip", ip);
	if (json_is_integer(port) || json_is_string(port))
		json_object_set(rec, "client_port", port);
	if (session == NULL)
		return;
	json_object_set_new(rec, "session", json_string(session));
	if (ev->type == EVENT_LOGIN) {
		st = store_stmt(store, put_sql);
		if (st == NULL)
			return;
		sqlite3_bind_text(st, 1, session, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ev->acting_user, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, json_string_value(ip), -1, SQLITE_STATIC);
		if (json_is_integer(port))
			sqlite3_bind_int64(st, 4, json_integer_value(port));
		sqlite3_bind_text(st, 5, param(ev, "service"), -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, (long long)json_integer_value(json_object_get(rec, "time")));
		store_exec_stmt(store, st);
		return;
	}
	st = store_stmt(store, get_sql);
	if (st == NULL)
		return;
	sqlite3_bind_text(st, 1, session, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		if (sqlite3_column_type(st, 0) == SQLITE_TEXT)
			set_str(rec, "login_user", (const char *)sqlite3_column_text(st, 0));
		if (!json_is_string(ip) && sqlite3_column_type(st, 1) == SQLITE_TEXT)
			set_str(rec, "client_ip", (const char *)sqlite3_column_text(st, 1));
		if (!json_is_integer(port) && sqlite3_column_type(st, 2) == SQLITE_INTEGER)
			json_object_set_new(rec, "client_port",
					    json_integer(sqlite3_column_int64(st, 2)));
	}
	sqlite3_reset(st);
	if (ev->type == EVENT_LOGOUT) {
		st = store_stmt(store, del_sql);
		if (st == NULL)
			return;
		sqlite3_bind_text(st, 1, session, -1, SQLITE_STATIC);
		store_exec_stmt(store, st);
	}
}

int changelog_append_event(struct store *store, long long seq,
			   const struct event *ev, long long time_us)
{
	const struct mailbox_uri *mb = &ev->mailbox;
	json_t *rec = json_object();
	json_t *uids = NULL, *old_uids = NULL;
	const char *uidset = param(ev, "uidset");
	const char *old_uidset = param(ev, "vnd.cmu.oldUidset");
	int rc;

	if (rec == NULL)
		return -1;
	json_object_set_new(rec, "time", json_integer(time_us));
	json_object_set_new(rec, "seq", json_integer(seq));
	set_str(rec, "event", event_type_info(ev->type)->name);
	set_str(rec, "account", mb->account != NULL ? mb->account : ev->acting_user);
	set_str(rec, "mailbox", mb->node);
	set_str(rec, "mailbox_id", param(ev, "mailboxID"));
	if (mb->uidvalidity != 0)
		json_object_set_new(rec, "uidvalidity", json_integer(mb->uidvalidity));
	if (mb->uid != 0)
		uids = json_pack("[I]", (json_int_t)mb->uid);
	else if (uidset != NULL)
		uids = uids_parse(uidset);
	if (old_uidset != NULL)
		old_uids = uids_parse(old_uidset);
	if (ev->old_mailbox.node != NULL) {
		set_str(rec, "old_account", ev->old_mailbox.account);
		set_str(rec, "old_mailbox", ev->old_mailbox.node);
		json_object_set_new(rec, "old_uidvalidity",
				    json_integer(ev->old_mailbox.uidvalidity));
	}
	if (uids != NULL)
		json_object_set(rec, "uids", uids);
	if (old_uids != NULL)
		json_object_set(rec, "old_uids", old_uids);
	json_object_set_new(rec, "message_ids", message_ids(store, ev, uids, old_uids));
	json_decref(uids);
	json_decref(old_uids);
	set_str(rec, "user", ev->acting_user != NULL && *ev->acting_user != '\0' ?
		ev->acting_user : NULL);
	set_str(rec, "service", param(ev, "service"));
	set_str(rec, "flags", param(ev, "flagNames"));
	set_str(rec, "timestamp", param(ev, "timestamp"));
	session_fill(store, ev, rec);
	rc = append(store, "event", rec, time_us);
	json_decref(rec);
	if (rc < 0)
		log_error("changelog: cannot record event %lld", seq);
	return rc;
}

static int journal_appended(void *context, struct store *store, long long seq,
			    const struct event *event, long long received_us)
{
	(void)context;
	return changelog_append_event(store, seq, event, received_us);
}

int changelog_attach(struct journal *journal)
{
	const struct journal_hook hook = { journal_appended, NULL };

	return journal_hook_register(journal, &hook);
}

int changelog_append_audit(struct store *store, const char *kind,
			   json_t *detail, long long time_us)
{
	json_t *rec = json_deep_copy(detail);
	int rc;

	if (rec == NULL)
		return -1;
	rc = append(store, kind, rec, time_us);
	json_decref(rec);
	if (rc < 0)
		log_error("changelog: cannot record %s", kind);
	return rc;
}

/* ---- checkpoints ------------------------------------------------------------ */

static int checkpoint_sign(const unsigned char *key, size_t key_len, long long last_id,
			   const char *last_hash, long long time_us, char out[CHANGELOG_HASH_HEX])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	char *msg;
	int n = asprintf(&msg, "mailpubsub-changelog-checkpoint\n%lld\n%s\n%lld",
			 last_id, last_hash, time_us);

	if (n < 0)
		return -1;
	if (HMAC(EVP_sha256(), key, (int)key_len, (unsigned char *)msg, (size_t)n,
		 mac, &mac_len) == NULL || mac_len != HASH_LEN) {
		free(msg);
		return -1;
	}
	free(msg);
	hex(mac, HASH_LEN, out);
	return 0;
}

int changelog_prune(struct store *store, long long before_us,
		    const unsigned char *key, size_t key_len, long long now_us,
		    long long *dropped_r, const char **error_r)
{
	static const char last_sql[] =
		"SELECT id, hash FROM changelog WHERE time_us < ? ORDER BY id DESC LIMIT 1";
	static const char count_sql[] = "SELECT count(*) FROM changelog WHERE id <= ?";
	static const char cp_sql[] =
		"INSERT INTO changelog_checkpoints (time_us, last_dropped_id, last_dropped_hash,"
		" signature) VALUES (?, ?, ?, ?)";
	static const char del_sql[] = "DELETE FROM changelog WHERE id <= ?";
	static const char del_idx_sql[] = "DELETE FROM changelog_msgids WHERE id <= ?";
	char last_hash[CHANGELOG_HASH_HEX], sig[CHANGELOG_HASH_HEX];
	long long last_id = 0;
	sqlite3_stmt *st;
	json_t *detail;

	*dropped_r = 0;
	if (key == NULL || key_len == 0) {
		*error_r = "no signing key: records are never dropped unsigned";
		return -1;
	}
	if (store_begin(store) < 0) {
		*error_r = "cannot begin a transaction";
		return -1;
	}
	st = store_stmt(store, last_sql);
	if (st == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, before_us);
	if (sqlite3_step(st) == SQLITE_ROW) {
		last_id = sqlite3_column_int64(st, 0);
		snprintf(last_hash, sizeof(last_hash), "%s", sqlite3_column_text(st, 1));
	}
	sqlite3_reset(st);
	if (last_id == 0) {
		store_commit(store);
		return 0;
	}
	st = store_stmt(store, count_sql);
	if (st == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, last_id);
	if (sqlite3_step(st) == SQLITE_ROW)
		*dropped_r = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (checkpoint_sign(key, key_len, last_id, last_hash, now_us, sig) < 0)
		goto fail;
	st = store_stmt(store, cp_sql);
	if (st == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, now_us);
	sqlite3_bind_int64(st, 2, last_id);
	sqlite3_bind_text(st, 3, last_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, sig, -1, SQLITE_STATIC);
	if (store_exec_stmt(store, st) < 0)
		goto fail;
	/* the checkpoint goes into the chain too, before the drop: the
	 * last record (the head) is never dropped, so the chain keeps going */
	detail = json_pack("{s:I,s:s,s:s,s:I}", "last_dropped_id", (json_int_t)last_id,
			   "last_dropped_hash", last_hash, "signature", sig,
			   "before", (json_int_t)before_us);
	if (detail == NULL || changelog_append_audit(store, "checkpoint", detail, now_us) < 0) {
		json_decref(detail);
		goto fail;
	}
	json_decref(detail);
	st = store_stmt(store, del_sql);
	if (st == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, last_id);
	if (store_exec_stmt(store, st) < 0)
		goto fail;
	st = store_stmt(store, del_idx_sql);
	if (st == NULL)
		goto fail;
	sqlite3_bind_int64(st, 1, last_id);
	if (store_exec_stmt(store, st) < 0 || store_commit(store) < 0) {
		*error_r = "cannot drop the records";
		store_rollback(store);
		return -1;
	}
	log_info("changelog: dropped %lld records through #%lld behind a signed checkpoint",
		 *dropped_r, last_id);
	return 0;
fail:
	store_rollback(store);
	*error_r = "cannot write the checkpoint";
	return -1;
}

int changelog_key_load(const char *path, unsigned char **key_r, size_t *len_r,
		       const char **error_r)
{
	unsigned char *buf = malloc(4096);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (buf == NULL || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		*error_r = "cannot open the changelog key file";
		return -1;
	}
	n = read(fd, buf, 4096);
	close(fd);
	if (n < 16) {
		free(buf);
		*error_r = "the changelog key file must hold at least 16 bytes";
		return -1;
	}
	*key_r = buf;
	*len_r = (size_t)n;
	return 0;
}

/* ---- verification ------------------------------------------------------------ */

int changelog_verify(sqlite3 *db, const unsigned char *key, size_t key_len,
		     struct changelog_verify_result *r, const char **error_r)
{
	sqlite3_stmt *st;
	unsigned char prev[HASH_LEN], hash[HASH_LEN], stored[HASH_LEN];
	long long expect = 1;
	int rc;

	memset(r, 0, sizeof(*r));
	memset(prev, 0, sizeof(prev));
	if (sqlite3_prepare_v2(db, "SELECT time_us, last_dropped_id, last_dropped_hash, signature"
			       " FROM changelog_checkpoints ORDER BY last_dropped_id DESC LIMIT 1",
			       -1, &st, NULL) != SQLITE_OK) {
		*error_r = sqlite3_errmsg(db);
		return -1;
	}
	if (sqlite3_step(st) == SQLITE_ROW) {
		char sig[CHANGELOG_HASH_HEX];
		const char *last_hash = (const char *)sqlite3_column_text(st, 2);
		const char *stored_sig = (const char *)sqlite3_column_text(st, 3);
		long long last_id = sqlite3_column_int64(st, 1);

		if (key == NULL || checkpoint_sign(key, key_len, last_id, last_hash,
						   sqlite3_column_int64(st, 0), sig) < 0 ||
		    stored_sig == NULL ||
		    CRYPTO_memcmp(sig, stored_sig, CHANGELOG_HASH_HEX - 1) != 0 ||
		    unhex(last_hash, prev, HASH_LEN) < 0) {
			sqlite3_finalize(st);
			r->bad_id = last_id + 1;
			r->reason = key == NULL ? "records were dropped: a key is needed to verify the checkpoint"
				  : "the checkpoint's signature does not verify";
			return 1;
		}
		expect = last_id + 1;
	}
	sqlite3_finalize(st);
	r->first_id = expect;
	if (sqlite3_prepare_v2(db, "SELECT id, time_us, kind, record, hash FROM changelog ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK) {
		*error_r = sqlite3_errmsg(db);
		return -1;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		long long id = sqlite3_column_int64(st, 0);
		const char *record = (const char *)sqlite3_column_text(st, 3);
		int len = sqlite3_column_bytes(st, 3);
		json_t *parsed;
		json_error_t jerr;

		r->records++;
		if (id != expect) {
			r->bad_id = id;
			r->reason = id > expect ? "records are missing before this one"
				    : "records are out of order";
			break;
		}
		if (record == NULL ||
		    chain_hash(prev, record, (size_t)len, hash) < 0 ||
		    unhex((const char *)sqlite3_column_text(st, 4), stored, HASH_LEN) < 0 ||
		    CRYPTO_memcmp(hash, stored, HASH_LEN) != 0) {
			r->bad_id = id;
			r->reason = "the record does not match its hash (altered, or its predecessor was)";
			break;
		}
		/* the indexed columns must say what the hashed record says */
		parsed = json_loadb(record, (size_t)len, 0, &jerr);
		if (parsed == NULL ||
		    json_integer_value(json_object_get(parsed, "id")) != id ||
		    json_integer_value(json_object_get(parsed, "time")) != sqlite3_column_int64(st, 1) ||
		    json_string_value(json_object_get(parsed, "kind")) == NULL ||
		    sqlite3_column_text(st, 2) == NULL ||
		    strcmp(json_string_value(json_object_get(parsed, "kind")),
			   (const char *)sqlite3_column_text(st, 2)) != 0) {
			json_decref(parsed);
			r->bad_id = id;
			r->reason = "the record's columns differ from its hashed content";
			break;
		}
		json_decref(parsed);
		memcpy(prev, hash, HASH_LEN);
		expect++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		*error_r = sqlite3_errmsg(db);
		return -1;
	}
	return r->bad_id != 0 ? 1 : 0;
}

/* ---- retention in the daemon ------------------------------------------------ */

struct changelog_retention {
	uv_timer_t timer;
	struct store *store;
	long long retention_us;
	unsigned char *key;
	size_t key_len;
};

static void on_retention(uv_timer_t *timer)
{
	struct changelog_retention *r = timer->data;
	struct timespec ts;
	long long now, dropped;
	const char *error;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	if (changelog_prune(r->store, now - r->retention_us, r->key, r->key_len, now,
			    &dropped, &error) < 0)
		log_error("changelog: retention: %s", error);
}

int changelog_retention_new(uv_loop_t *loop, struct store *store,
			    unsigned retention_s, const char *key_file,
			    struct changelog_retention **retention_r,
			    const char **error_r)
{
	struct changelog_retention *r;
	unsigned interval_s = retention_s / 4;

	*retention_r = NULL;
	if (retention_s == 0)
		return 0;
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (changelog_key_load(key_file, &r->key, &r->key_len, error_r) < 0) {
		free(r);
		return -1;
	}
	r->store = store;
	r->retention_us = (long long)retention_s * 1000000;
	if (interval_s == 0)
		interval_s = 1;
	if (interval_s > 3600)
		interval_s = 3600;
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	uv_timer_start(&r->timer, on_retention, 1000, (uint64_t)interval_s * 1000);
	*retention_r = r;
	return 0;
}

static void retention_closed(uv_handle_t *handle)
{
	struct changelog_retention *r = handle->data;

	OPENSSL_cleanse(r->key, r->key_len);
	free(r->key);
	free(r);
}

void changelog_retention_close(struct changelog_retention **retention)
{
	struct changelog_retention *r = *retention;

	if (r == NULL)
		return;
	*retention = NULL;
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, retention_closed);
}
