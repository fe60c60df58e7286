/* The e-Discovery changelog: an append-only, tamper-evident record of every
 * journaled event and of every audit action (tap changes, relayed events,
 * retention checkpoints). Each record is canonical JSON (sorted keys,
 * compact) whose SHA-256 chains it to the previous one:
 *   hash(n) = SHA-256(hash(n-1) || record(n)),  hash(0) = 32 zero bytes,
 * so altering, removing or reordering any record breaks every hash from it
 * on. Message events carry the Message-IDs involved, resolved through a
 * (account, uidvalidity, uid) -> Message-ID map fed by MessageNew/Append and
 * copies/moves, and the who of the event (user, service, client address)
 * completed from the Login of the same Cyrus session.
 * Records past retention are dropped only behind a checkpoint signed with
 * HMAC-SHA256, which carries the last dropped hash so the rest still
 * verifies. Tables: store.c (schema version 3). */
#ifndef MAILPUBSUB_CHANGELOG_H
#define MAILPUBSUB_CHANGELOG_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>
#include <uv.h>

#include "model/event.h"
#include "store/journal.h"
#include "store/store.h"

#define CHANGELOG_HASH_HEX 65

/* Records journal event seq; run by journal_append inside its
 * transaction (the hook changelog_attach registers), so the record is
 * committed with the event or not at all. */
int changelog_append_event(struct store *store, long long seq,
			   const struct event *ev, long long time_us);
/* Registers the changelog as an append hook of journal: every event any
 * source journals gets its record. */
int changelog_attach(struct journal *journal);

/* An audit record of kind ("tap-add", "tap-remove", "tap-expire",
 * "tap-relay", "checkpoint") with the fields of detail (borrowed). */
int changelog_append_audit(struct store *store, const char *kind,
			   json_t *detail, long long time_us);

struct changelog_verify_result {
	long long records;     /* records checked */
	long long first_id;    /* first record of the chain (after a checkpoint) */
	long long bad_id;      /* first record that fails; 0 when all verify */
	const char *reason;    /* why it fails (static) */
};

/* Checks the chain (and the checkpoint's signature when records were
 * dropped; key may be NULL when none was). Returns 0 when the whole chain
 * verifies, 1 when it does not (result says where), -1 on error. */
int changelog_verify(sqlite3 *db, const unsigned char *key, size_t key_len,
		     struct changelog_verify_result *result, const char **error_r);

/* Drops the records older than before_us behind a checkpoint signed with
 * key; *dropped_r is how many went. Inside a transaction of its own. */
int changelog_prune(struct store *store, long long before_us,
		    const unsigned char *key, size_t key_len, long long now_us,
		    long long *dropped_r, const char **error_r);

/* [changelog] retention in the daemon: every min(retention / 4, 1 h)
 * the records past retention are dropped behind a signed checkpoint.
 * *retention_r stays NULL when retention is 0 (kept for ever). */
struct changelog_retention;
int changelog_retention_new(uv_loop_t *loop, struct store *store,
			    unsigned retention_s, const char *key_file,
			    struct changelog_retention **retention_r,
			    const char **error_r);
/* Clears *retention. */
void changelog_retention_close(struct changelog_retention **retention);

/* Reads the signing key (the file's bytes, at least 16). */
int changelog_key_load(const char *path, unsigned char **key_r, size_t *len_r,
		       const char **error_r);

/* The Message-ID in an IMAP ENVELOPE (vnd.cmu.envelope), newly allocated,
 * or NULL. */
char *changelog_envelope_message_id(const char *envelope);
/* Every address (from, sender, reply-to, to, cc, bcc) of an IMAP ENVELOPE,
 * lower case, as " a@b c@d " (each with a space either side, for whole-
 * word matching); newly allocated, NULL when there is no envelope. */
char *changelog_envelope_addresses(const char *envelope);

#endif
