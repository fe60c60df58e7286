/* Unit tests for the IMAP client source's sync state in the store
 * (src/store/imap_source_state.c): what a restart reads back is what the
 * batches wrote, renames and deletes carry the messages along, and
 * accounts and mailboxes stay apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "store/imap_source_state.h"
#include "temp_store.h"

/* What a walk saw, as text: "node uidvalidity uidnext modseq;..." or
 * "uid flags;...". */
struct seen {
	char text[512];
	int stop_after;              /* > 0: the callback fails at that call */
	int calls;
};

static void seen_add(struct seen *s, const char *item)
{
	strncat(s->text, item, sizeof(s->text) - strlen(s->text) - 1);
}

static int on_mailbox(void *context, const char *node, uint32_t uidvalidity,
		      uint32_t uidnext, uint64_t modseq)
{
	struct seen *s = context;
	char item[128];

	if (++s->calls == s->stop_after)
		return -1;
	snprintf(item, sizeof(item), "%s %u %u %llu;", node, uidvalidity, uidnext,
		 (unsigned long long)modseq);
	seen_add(s, item);
	return 0;
}

static int on_message(void *context, uint32_t uid, const char *flags)
{
	struct seen *s = context;
	char item[128];

	snprintf(item, sizeof(item), "%u %s;", uid, flags);
	seen_add(s, item);
	return 0;
}

static const char *mailboxes(struct store *store, const char *account)
{
	static struct seen s;

	memset(&s, 0, sizeof(s));
	assert_int_equal(imap_source_state_mailboxes(store, account, on_mailbox, &s), 0);
	return s.text;
}

static const char *messages(struct store *store, const char *account, const char *node)
{
	static struct seen s;

	memset(&s, 0, sizeof(s));
	assert_int_equal(imap_source_state_messages(store, account, node, on_message, &s), 0);
	return s.text;
}

static void test_account_known(void **state)
{
	struct store *store = ((struct temp_store *)*state)->store;
	bool known = true;

	assert_int_equal(imap_source_state_account_known(store, "alice", &known), 0);
	assert_false(known);
	assert_int_equal(imap_source_state_account_listed(store, "alice", 1000), 0);
	assert_int_equal(imap_source_state_account_listed(store, "alice", 2000), 0);
	assert_int_equal(imap_source_state_account_known(store, "alice", &known), 0);
	assert_true(known);
	assert_int_equal(imap_source_state_account_known(store, "bob", &known), 0);
	assert_false(known);
}

static void test_mailboxes_and_messages(void **state)
{
	struct store *store = ((struct temp_store *)*state)->store;

	assert_int_equal(imap_source_state_mailbox_put(store, "alice", "INBOX/b", 7, 3, 0), 0);
	assert_int_equal(imap_source_state_mailbox_put(store, "alice", "INBOX", 5, 2, 9), 0);
	assert_int_equal(imap_source_state_mailbox_put(store, "bob", "INBOX", 6, 1, 0), 0);
	/* an update keeps one row; 64-bit modseq survives */
	assert_int_equal(imap_source_state_mailbox_put(store, "alice", "INBOX", 5, 4,
						       5000000000ULL), 0);
	assert_string_equal(mailboxes(store, "alice"),
			    "INBOX 5 4 5000000000;INBOX/b 7 3 0;");
	assert_string_equal(mailboxes(store, "bob"), "INBOX 6 1 0;");

	assert_int_equal(imap_source_state_message_put(store, "alice", "INBOX", 3, "\\Seen"), 0);
	assert_int_equal(imap_source_state_message_put(store, "alice", "INBOX", 1, ""), 0);
	assert_int_equal(imap_source_state_message_put(store, "alice", "INBOX", 3, "$A \\Seen"), 0);
	assert_int_equal(imap_source_state_message_put(store, "bob", "INBOX", 1, "$B"), 0);
	assert_string_equal(messages(store, "alice", "INBOX"), "1 ;3 $A \\Seen;");
	assert_int_equal(imap_source_state_message_forget(store, "alice", "INBOX", 1), 0);
	assert_string_equal(messages(store, "alice", "INBOX"), "3 $A \\Seen;");
	assert_int_equal(imap_source_state_messages_forget(store, "alice", "INBOX"), 0);
	assert_string_equal(messages(store, "alice", "INBOX"), "");
	/* the mailbox itself stays, and bob's messages */
	assert_string_equal(mailboxes(store, "alice"),
			    "INBOX 5 4 5000000000;INBOX/b 7 3 0;");
	assert_string_equal(messages(store, "bob", "INBOX"), "1 $B;");
}

static void test_rename_and_delete(void **state)
{
	struct store *store = ((struct temp_store *)*state)->store;

	assert_int_equal(imap_source_state_mailbox_put(store, "alice", "INBOX/a", 7, 3, 0), 0);
	assert_int_equal(imap_source_state_message_put(store, "alice", "INBOX/a", 2, "$A"), 0);
	assert_int_equal(imap_source_state_mailbox_put(store, "bob", "INBOX/a", 8, 1, 0), 0);
	assert_int_equal(imap_source_state_message_put(store, "bob", "INBOX/a", 2, "$B"), 0);
	assert_int_equal(imap_source_state_mailbox_rename(store, "alice", "INBOX/a",
							  "INBOX/z"), 0);
	assert_string_equal(mailboxes(store, "alice"), "INBOX/z 7 3 0;");
	assert_string_equal(messages(store, "alice", "INBOX/z"), "2 $A;");
	assert_string_equal(messages(store, "alice", "INBOX/a"), "");
	assert_string_equal(messages(store, "bob", "INBOX/a"), "2 $B;");
	assert_int_equal(imap_source_state_mailbox_delete(store, "alice", "INBOX/z"), 0);
	assert_string_equal(mailboxes(store, "alice"), "");
	assert_string_equal(messages(store, "alice", "INBOX/z"), "");
	assert_string_equal(mailboxes(store, "bob"), "INBOX/a 8 1 0;");
}

static void test_walk_stops(void **state)
{
	struct store *store = ((struct temp_store *)*state)->store;
	struct seen s = { .stop_after = 2 };

	assert_int_equal(imap_source_state_mailbox_put(store, "alice", "A", 1, 1, 0), 0);
	assert_int_equal(imap_source_state_mailbox_put(store, "alice", "B", 2, 1, 0), 0);
	assert_int_equal(imap_source_state_mailbox_put(store, "alice", "C", 3, 1, 0), 0);
	assert_int_equal(imap_source_state_mailboxes(store, "alice", on_mailbox, &s), -1);
	assert_string_equal(s.text, "A 1 1 0;");
	/* the statement was reset: the next walk sees everything */
	assert_string_equal(mailboxes(store, "alice"), "A 1 1 0;B 2 1 0;C 3 1 0;");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_account_known, temp_store_setup,
						temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_mailboxes_and_messages, temp_store_setup,
						temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_rename_and_delete, temp_store_setup,
						temp_store_teardown),
		cmocka_unit_test_setup_teardown(test_walk_stops, temp_store_setup,
						temp_store_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
