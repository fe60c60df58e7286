/* Delivery ordering and revocation below the handlers, with the fake
 * component recording what is sent (tests/fuzz/fake_component.c) and an
 * IMAP stand-in that holds every rights question until the test answers
 * it (tests/held_imap.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/clock.h"
#include "held_imap.h"
#include "model/subopts.h"
#include "publish/delivery.h"
#include "publish/revocation.h"
#include "fuzz/fake_component.h"
#include "service_fixture.h"
#include "store/node_tree.h"
#include "store/subscription.h"

static int setup(void **state)
{
	/* any non-NULL pointer: authz asks held_imap */
	struct service_fixture *f = service_fixture_new("", state);
	long long now = clock_now_us();

	held_imap_reset();
	assert_int_equal(node_tree_touch(f->publish.store, "alice", "INBOX", NULL, 7, now), 0);
	assert_int_equal(node_tree_touch(f->publish.store, "alice", "INBOX/A", NULL, 7, now), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct service_fixture *f = *state;

	/* a question left pending would answer into freed memory */
	assert_int_equal(held_imap_pending(), 0);
	service_fixture_free(&f);
	return 0;
}

static size_t sent(struct service_fixture *f)
{
	return fake_component_count(f->publish.component);
}

static const char *sent_text(struct service_fixture *f, size_t i)
{
	return fake_component_sent(f->publish.component, i);
}

static void send_text(struct service_fixture *f, const char *jid, const char *text,
		      enum delivery_check check, const char *node)
{
	delivery_send(f->publish.delivery, jid, text, strlen(text), check, "alice", node);
}

/* ---- delivery ---- */

/* A notification waiting for bob's rights holds bob's later ones, even
 * those that need no check; nobody else waits for bob. */
static void test_waiting_holds_later_ones(void **state)
{
	struct service_fixture *f = *state;

	send_text(f, "bob@localhost", "<message id='n1'/>", DELIVERY_CHECK, "INBOX/A");
	assert_int_equal(held_imap_pending(), 1);
	assert_string_equal(held_imap_question(0), "bob alice/INBOX/A");
	send_text(f, "bob@localhost", "<message id='n2'/>", DELIVERY_NOW, "INBOX");
	send_text(f, "carol@localhost", "<message id='n3'/>", DELIVERY_NOW, "INBOX");
	assert_int_equal(sent(f), 1);
	assert_string_equal(sent_text(f, 0), "<message id='n3'/>");
	assert_true(delivery_waiting(f->publish.delivery, "bob@localhost"));
	assert_false(delivery_waiting(f->publish.delivery, "carol@localhost"));
	assert_int_equal(delivery_pending(f->publish.delivery), 1);

	held_imap_answer(IMAP_OK, "lr");
	assert_int_equal(sent(f), 3);
	assert_string_equal(sent_text(f, 1), "<message id='n1'/>");
	assert_string_equal(sent_text(f, 2), "<message id='n2'/>");
	assert_false(delivery_waiting(f->publish.delivery, "bob@localhost"));
	assert_int_equal(delivery_pending(f->publish.delivery), 0);
	assert_int_equal(f->publish.stats.notifications, 3);
}

/* A denial drops the notification it was about and releases the rest, in
 * order, including a second check answered first. */
static void test_denial_drops_only_its_own(void **state)
{
	struct service_fixture *f = *state;

	send_text(f, "bob@localhost", "<message id='d1'/>", DELIVERY_CHECK, "INBOX/A");
	send_text(f, "bob@localhost", "<message id='d2'/>", DELIVERY_NOW, "INBOX");
	send_text(f, "bob@localhost", "<message id='d3'/>", DELIVERY_CHECK, "INBOX");
	assert_int_equal(held_imap_pending(), 2);
	assert_int_equal(sent(f), 0);
	/* the first question: no rights on INBOX/A */
	held_imap_answer(IMAP_OK, "");
	assert_int_equal(sent(f), 1);
	assert_string_equal(sent_text(f, 0), "<message id='d2'/>");
	/* d3 still waits for its own answer */
	assert_true(delivery_waiting(f->publish.delivery, "bob@localhost"));
	held_imap_answer(IMAP_OK, "lr");
	assert_int_equal(sent(f), 2);
	assert_string_equal(sent_text(f, 1), "<message id='d3'/>");
}

/* The store away: a check fails closed, a re-verification of a
 * subscription authorized before does not lose the event. */
static void test_tempfail_check_and_verify(void **state)
{
	struct service_fixture *f = *state;

	send_text(f, "bob@localhost", "<message id='t1'/>", DELIVERY_CHECK, "INBOX/A");
	send_text(f, "carol@localhost", "<message id='t2'/>", DELIVERY_VERIFY, "INBOX/A");
	assert_int_equal(held_imap_pending(), 2);
	held_imap_answer(IMAP_TEMPFAIL, NULL);
	held_imap_answer(IMAP_TEMPFAIL, NULL);
	assert_int_equal(sent(f), 1);
	assert_string_equal(sent_text(f, 0), "<message id='t2'/>");
}

/* ---- revocation ---- */

static void subscribe(struct service_fixture *f, const char *node, const char *jid)
{
	char subid[SUBSCRIPTION_SUBID_LEN + 1];
	struct subopts opts;
	bool created;

	subopts_defaults(&opts);
	assert_int_equal(subscription_add(f->publish.store, "alice", node, jid, &opts,
					  clock_now_us(), subid, &created), 0);
}

static bool subscribed(struct service_fixture *f, const char *node, const char *jid)
{
	char subid[SUBSCRIPTION_SUBID_LEN + 1];

	return subscription_find(f->publish.store, "alice", node, jid, subid) == 1;
}

/* Rights gone: the subscription ends and the subscriber is told
 * (XEP-0060 8.8.4 subscription state none); rights kept: nothing
 * happens. Only the node's own subscribers are asked. */
static void test_recheck_ends_what_rights_no_longer_allow(void **state)
{
	struct service_fixture *f = *state;
	xmpp_stanza_t *msg, *sub;

	subscribe(f, "INBOX", "alice@localhost");
	subscribe(f, "INBOX", "bob@localhost");
	subscribe(f, "INBOX/A", "carol@localhost");
	revocation_recheck(&f->publish, "alice", "INBOX", false);
	/* carol is on another node */
	assert_int_equal(held_imap_pending(), 2);
	held_imap_answer_to("alice alice/INBOX", IMAP_OK, "lrswipkxtea");
	assert_int_equal(sent(f), 0);
	held_imap_answer_to("bob alice/INBOX", IMAP_OK, "l");
	assert_false(subscribed(f, "INBOX", "bob@localhost"));
	assert_true(subscribed(f, "INBOX", "alice@localhost"));
	assert_true(subscribed(f, "INBOX/A", "carol@localhost"));
	assert_int_equal(sent(f), 1);
	msg = fake_component_last(f->publish.component);
	assert_string_equal(xmpp_stanza_get_name(msg), "message");
	assert_string_equal(xmpp_stanza_get_to(msg), "bob@localhost");
	assert_string_equal(xmpp_stanza_get_from(msg), "alice@events.localhost");
	sub = xmpp_stanza_get_child_by_name(
		xmpp_stanza_get_child_by_name_and_ns(msg, "event",
			"http://jabber.org/protocol/pubsub#event"), "subscription");
	assert_non_null(sub);
	assert_string_equal(xmpp_stanza_get_attribute(sub, "node"), "INBOX");
	assert_string_equal(xmpp_stanza_get_attribute(sub, "subscription"), "none");
	xmpp_stanza_release(msg);
}

/* With subtree, the descendants too; a temporary failure keeps the
 * subscription, and granted rights keep theirs silently. */
static void test_recheck_subtree_keeps_on_tempfail(void **state)
{
	struct service_fixture *f = *state;

	subscribe(f, "INBOX", "bob@localhost");
	subscribe(f, "INBOX/A", "carol@localhost");
	revocation_recheck(&f->publish, "alice", "INBOX", true);
	assert_int_equal(held_imap_pending(), 2);
	held_imap_answer_to("bob alice/INBOX", IMAP_OK, "lr");
	held_imap_answer_to("carol alice/INBOX/A", IMAP_TEMPFAIL, NULL);
	assert_true(subscribed(f, "INBOX", "bob@localhost"));
	assert_true(subscribed(f, "INBOX/A", "carol@localhost"));
	assert_int_equal(sent(f), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_waiting_holds_later_ones, setup, teardown),
		cmocka_unit_test_setup_teardown(test_denial_drops_only_its_own, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tempfail_check_and_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recheck_ends_what_rights_no_longer_allow,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_recheck_subtree_keeps_on_tempfail, setup,
						teardown),
	};

	xmpp_initialize();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
