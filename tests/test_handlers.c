/* The request side through the router table, with the fake component
 * recording what is sent (tests/fuzz/fake_component.c) and no IMAP
 * (owner-only authz): which handler a request reaches, and the XEP-0060
 * answers to subscriber requests, good and bad. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/clock.h"
#include "handlers/router.h"
#include "fuzz/fake_component.h"
#include "service_fixture.h"
#include "store/items.h"
#include "store/node_tree.h"
#include "store/subscription.h"

#define STANZAS_NS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define PUBSUB_ERRORS_NS "http://jabber.org/protocol/pubsub#errors"

static int setup(void **state)
{
	struct service_fixture *f = service_fixture_new("", NULL);
	long long now = clock_now_us();

	assert_int_equal(node_tree_touch(f->publish.store, "alice", "INBOX", NULL, 7, now), 0);
	assert_int_equal(items_put(f->publish.store, "alice", "INBOX", 1, now,
				   "<mailbox-event xmlns='urn:mailpubsub:event:0' seq='1'/>",
				   5), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct service_fixture *f = *state;

	service_fixture_free(&f);
	return 0;
}

/* Sends text through the router; returns how many stanzas it answered with. */
static size_t route(struct service_fixture *f, const char *text)
{
	xmpp_stanza_t *iq = service_fixture_stanza(f, text);
	size_t before = fake_component_count(f->publish.component);

	router_handle_stanza(&f->service, iq);
	xmpp_stanza_release(iq);
	return fake_component_count(f->publish.component) - before;
}

/* The last reply is an error of type with the stanza condition and, when
 * given, the pubsub condition (and its feature). */
static void assert_error(struct service_fixture *f, const char *id, const char *type,
			 const char *condition, const char *pubsub_condition,
			 const char *feature)
{
	xmpp_stanza_t *reply = fake_component_last(f->publish.component);
	xmpp_stanza_t *error, *c;

	assert_non_null(reply);
	assert_string_equal(xmpp_stanza_get_name(reply), "iq");
	assert_string_equal(xmpp_stanza_get_type(reply), "error");
	assert_string_equal(xmpp_stanza_get_id(reply), id);
	error = xmpp_stanza_get_child_by_name(reply, "error");
	assert_non_null(error);
	assert_string_equal(xmpp_stanza_get_type(error), type);
	c = xmpp_stanza_get_child_by_name_and_ns(error, condition, STANZAS_NS);
	assert_non_null(c);
	if (pubsub_condition != NULL) {
		c = xmpp_stanza_get_child_by_name_and_ns(error, pubsub_condition,
							 PUBSUB_ERRORS_NS);
		assert_non_null(c);
		if (feature != NULL)
			assert_string_equal(xmpp_stanza_get_attribute(c, "feature"), feature);
	}
	xmpp_stanza_release(reply);
}

/* The last reply is a result to id; its first element (NULL: none) is
 * name in ns. Returns the reply (release it). */
static xmpp_stanza_t *assert_result(struct service_fixture *f, const char *id,
				    const char *name, const char *ns)
{
	xmpp_stanza_t *reply = fake_component_last(f->publish.component);
	xmpp_stanza_t *child;

	assert_non_null(reply);
	assert_string_equal(xmpp_stanza_get_type(reply), "result");
	assert_string_equal(xmpp_stanza_get_id(reply), id);
	child = xmpp_stanza_get_children(reply);
	while (child != NULL && !xmpp_stanza_is_tag(child))
		child = xmpp_stanza_get_next(child);
	if (name == NULL) {
		assert_null(child);
		return reply;
	}
	assert_non_null(child);
	assert_string_equal(xmpp_stanza_get_name(child), name);
	assert_string_equal(xmpp_stanza_get_ns(child), ns);
	return reply;
}

/* ---- the table ---- */

static void handler_a(struct service *s, xmpp_stanza_t *iq, xmpp_stanza_t *c)
{
	(void)s; (void)iq; (void)c;
}

static void handler_b(struct service *s, xmpp_stanza_t *iq, xmpp_stanza_t *c)
{
	(void)s; (void)iq; (void)c;
}

static void handler_c(struct service *s, xmpp_stanza_t *iq, xmpp_stanza_t *c)
{
	(void)s; (void)iq; (void)c;
}

static const struct router_route *find(struct service_fixture *f,
				       const struct router_route *routes, size_t n,
				       const char *type, const char *child_xml)
{
	xmpp_stanza_t *child = service_fixture_stanza(f, child_xml);
	const struct router_route *r = router_find(routes, n, type, child);

	xmpp_stanza_release(child);
	return r;
}

static void test_table_first_match(void **state)
{
	struct service_fixture *f = *state;
	static const struct router_route routes[] = {
		{ "urn:x:a", false, "query", "get", "special", handler_a },
		{ "urn:x:", true, NULL, NULL, NULL, handler_b },
		{ "urn:y", false, "fetch", "set", NULL, handler_c },
	};
	const size_t n = sizeof(routes) / sizeof(routes[0]);

	/* the narrower row first, when all its fields match */
	assert_ptr_equal(find(f, routes, n, "get", "<query xmlns='urn:x:a' node='special'/>"),
			 &routes[0]);
	/* one field off: the prefix row behind it takes it */
	assert_ptr_equal(find(f, routes, n, "set", "<query xmlns='urn:x:a' node='special'/>"),
			 &routes[1]);
	assert_ptr_equal(find(f, routes, n, "get", "<query xmlns='urn:x:a' node='other'/>"),
			 &routes[1]);
	assert_ptr_equal(find(f, routes, n, "get", "<query xmlns='urn:x:a'/>"), &routes[1]);
	assert_ptr_equal(find(f, routes, n, "get", "<other xmlns='urn:x:b'/>"), &routes[1]);
	/* exact namespaces are exact; element and type must match */
	assert_ptr_equal(find(f, routes, n, "set", "<fetch xmlns='urn:y'/>"), &routes[2]);
	assert_null(find(f, routes, n, "get", "<fetch xmlns='urn:y'/>"));
	assert_null(find(f, routes, n, "set", "<other xmlns='urn:y'/>"));
	assert_null(find(f, routes, n, "set", "<fetch xmlns='urn:yy'/>"));
	assert_null(find(f, routes, n, "get", "<query/>"));
}

/* ---- dispatch through the real table ---- */

static void test_no_child_is_bad_request(void **state)
{
	struct service_fixture *f = *state;

	assert_int_equal(route(f, "<iq type='get' id='r1' from='alice@localhost/r'"
			      " to='alice@events.localhost'/>"), 1);
	assert_error(f, "r1", "modify", "bad-request", NULL, NULL);
	assert_int_equal(route(f, "<iq type='other' id='r2' from='alice@localhost/r'"
			      " to='alice@events.localhost'><query xmlns='"
			      "http://jabber.org/protocol/disco#info'/></iq>"), 1);
	assert_error(f, "r2", "modify", "bad-request", NULL, NULL);
	assert_int_equal(f->publish.stats.iq_requests, 2);
	assert_int_equal(f->publish.stats.iq_errors, 2);
}

static void test_unknown_namespace_unavailable(void **state)
{
	struct service_fixture *f = *state;

	assert_int_equal(route(f, "<iq type='get' id='u1' from='alice@localhost/r'"
			      " to='alice@events.localhost'><q xmlns='urn:example:nothing'/></iq>"),
			 1);
	assert_error(f, "u1", "cancel", "service-unavailable", NULL, NULL);
	/* fetch is routed for get only */
	assert_int_equal(route(f, "<iq type='set' id='u2' from='alice@localhost/r'"
			      " to='events.localhost'><fetch xmlns='urn:mailpubsub:content:0'"
			      " item='1'/></iq>"), 1);
	assert_error(f, "u2", "cancel", "service-unavailable", NULL, NULL);
}

static void test_replies_are_not_requests(void **state)
{
	struct service_fixture *f = *state;

	assert_int_equal(route(f, "<iq type='result' id='x1' from='pubsub.localhost'"
			      " to='events.localhost'/>"), 0);
	assert_int_equal(route(f, "<iq type='error' id='x2' from='pubsub.localhost'"
			      " to='events.localhost'/>"), 0);
	assert_int_equal(route(f, "<message from='bob@localhost' to='events.localhost'"
			      " type='error'/>"), 0);
	assert_int_equal(f->publish.stats.iq_requests, 0);
}

static void test_rows_reach_their_handlers(void **state)
{
	struct service_fixture *f = *state;
	xmpp_stanza_t *reply, *query;

	/* disco#info: the disco handler */
	assert_int_equal(route(f, "<iq type='get' id='d1' from='alice@localhost/r'"
			      " to='events.localhost'><query xmlns='"
			      "http://jabber.org/protocol/disco#info'/></iq>"), 1);
	reply = assert_result(f, "d1", "query", "http://jabber.org/protocol/disco#info");
	assert_non_null(xmpp_stanza_get_child_by_name(xmpp_stanza_get_children(reply) != NULL ?
		xmpp_stanza_get_child_by_name(reply, "query") : reply, "identity"));
	xmpp_stanza_release(reply);
	/* disco#items on the commands node: the tap commands' handler, which
	 * lists nothing for a non-admin */
	assert_int_equal(route(f, "<iq type='get' id='d2' from='alice@localhost/r'"
			      " to='events.localhost'><query xmlns='"
			      "http://jabber.org/protocol/disco#items' node='"
			      "http://jabber.org/protocol/commands'/></iq>"), 1);
	reply = assert_result(f, "d2", "query", "http://jabber.org/protocol/disco#items");
	query = xmpp_stanza_get_child_by_name(reply, "query");
	assert_string_equal(xmpp_stanza_get_attribute(query, "node"),
			    "http://jabber.org/protocol/commands");
	assert_null(xmpp_stanza_get_child_by_name(query, "item"));
	xmpp_stanza_release(reply);
	/* a command from a non-admin: the tap handler refuses it */
	assert_int_equal(route(f, "<iq type='set' id='c1' from='alice@localhost/r'"
			      " to='events.localhost'><command xmlns='"
			      "http://jabber.org/protocol/commands' node='tap-list'"
			      " action='execute'/></iq>"), 1);
	assert_error(f, "c1", "auth", "forbidden", NULL, NULL);
	/* the content fetch: the firehose's handler, which knows no such
	 * subscriber */
	assert_int_equal(route(f, "<iq type='get' id='c2' from='alice@localhost/r'"
			      " to='events.localhost'><fetch xmlns='urn:mailpubsub:content:0'"
			      " item='1'/></iq>"), 1);
	assert_error(f, "c2", "cancel", "item-not-found", NULL, NULL);
}

/* ---- pubsub requests (XEP-0060 section 6 and 7) ---- */

#define PS_GET(id, body) "<iq type='get' id='" id "' from='alice@localhost/r'" \
	" to='alice@events.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'>" \
	body "</pubsub></iq>"
#define PS_SET(id, body) "<iq type='set' id='" id "' from='alice@localhost/r'" \
	" to='alice@events.localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'>" \
	body "</pubsub></iq>"

static void test_pubsub_bad_requests(void **state)
{
	struct service_fixture *f = *state;

	/* 6.1.3.3 subscribe without a node */
	assert_int_equal(route(f, PS_SET("p1", "<subscribe jid='alice@localhost/r'/>")), 1);
	assert_error(f, "p1", "modify", "bad-request", "nodeid-required", NULL);
	/* 6.1.3.1 a JID other than the sender's */
	assert_int_equal(route(f, PS_SET("p2", "<subscribe node='INBOX'"
					 " jid='mallory@localhost'/>")), 1);
	assert_error(f, "p2", "modify", "bad-request", "invalid-jid", NULL);
	/* 6.5.9.x items without a node */
	assert_int_equal(route(f, PS_GET("p3", "<items/>")), 1);
	assert_error(f, "p3", "modify", "bad-request", "nodeid-required", NULL);
	/* items of a node that does not exist */
	assert_int_equal(route(f, PS_GET("p4", "<items node='INBOX/Nowhere'/>")), 1);
	assert_error(f, "p4", "cancel", "item-not-found", NULL, NULL);
	/* 7.1.3.x: items come from the mail store, never from a publish */
	assert_int_equal(route(f, PS_SET("p5", "<publish node='INBOX'/>")), 1);
	assert_error(f, "p5", "cancel", "feature-not-implemented", "unsupported", "publish");
	/* no operation at all */
	assert_int_equal(route(f, PS_SET("p6", "")), 1);
	assert_error(f, "p6", "modify", "bad-request", NULL, NULL);
	/* unsubscribe from what one is not subscribed to */
	assert_int_equal(route(f, PS_SET("p7", "<unsubscribe node='INBOX'"
					 " jid='alice@localhost/r'/>")), 1);
	assert_error(f, "p7", "cancel", "unexpected-request", "not-subscribed", NULL);
	/* a service JID that names no account */
	assert_int_equal(route(f, "<iq type='get' id='p8' from='alice@localhost/r'"
			      " to='%25@events.localhost'><pubsub xmlns='"
			      "http://jabber.org/protocol/pubsub'><items node='INBOX'/>"
			      "</pubsub></iq>"), 1);
	assert_error(f, "p8", "cancel", "item-not-found", NULL, NULL);
}

/* Somebody else's mailbox, without IMAP (owner-only): one answer whether
 * it exists or not, so existence never leaks. */
static void test_pubsub_others_mailbox_not_found(void **state)
{
	struct service_fixture *f = *state;

	assert_int_equal(route(f, "<iq type='set' id='o1' from='bob@localhost/r'"
			      " to='alice@events.localhost'><pubsub xmlns='"
			      "http://jabber.org/protocol/pubsub'><subscribe node='INBOX'"
			      " jid='bob@localhost/r'/></pubsub></iq>"), 1);
	assert_error(f, "o1", "cancel", "item-not-found", NULL, NULL);
	assert_int_equal(route(f, "<iq type='set' id='o2' from='bob@localhost/r'"
			      " to='alice@events.localhost'><pubsub xmlns='"
			      "http://jabber.org/protocol/pubsub'><subscribe node='INBOX/Nowhere'"
			      " jid='bob@localhost/r'/></pubsub></iq>"), 1);
	assert_error(f, "o2", "cancel", "item-not-found", NULL, NULL);
	assert_int_equal(subscription_find(f->publish.store, "alice", "INBOX",
					   "bob@localhost/r", (char[SUBSCRIPTION_SUBID_LEN + 1]){ 0 }),
			 0);
}

static void test_pubsub_subscribe_and_items(void **state)
{
	struct service_fixture *f = *state;
	char subid[SUBSCRIPTION_SUBID_LEN + 1];
	xmpp_stanza_t *reply, *el;

	assert_true(route(f, PS_SET("s1", "<subscribe node='INBOX'"
				    " jid='alice@localhost/r'/>")) >= 1);
	/* the reply first; the last item may follow it */
	reply = xmpp_stanza_new_from_string(f->ctx,
		fake_component_sent(f->publish.component, 0));
	assert_string_equal(xmpp_stanza_get_type(reply), "result");
	assert_string_equal(xmpp_stanza_get_id(reply), "s1");
	el = xmpp_stanza_get_child_by_name(xmpp_stanza_get_child_by_name(reply, "pubsub"),
					   "subscription");
	assert_non_null(el);
	assert_string_equal(xmpp_stanza_get_attribute(el, "subscription"), "subscribed");
	assert_string_equal(xmpp_stanza_get_attribute(el, "node"), "INBOX");
	xmpp_stanza_release(reply);
	assert_int_equal(subscription_find(f->publish.store, "alice", "INBOX",
					   "alice@localhost/r", subid), 1);

	assert_int_equal(route(f, PS_GET("s2", "<items node='INBOX'/>")), 1);
	reply = assert_result(f, "s2", "pubsub", "http://jabber.org/protocol/pubsub");
	el = xmpp_stanza_get_child_by_name(xmpp_stanza_get_child_by_name(reply, "pubsub"),
					   "items");
	assert_non_null(el);
	el = xmpp_stanza_get_child_by_name(el, "item");
	assert_non_null(el);
	assert_string_equal(xmpp_stanza_get_id(el), "1");
	xmpp_stanza_release(reply);

	assert_int_equal(route(f, PS_SET("s3", "<unsubscribe node='INBOX'"
					 " jid='alice@localhost/r'/>")), 1);
	reply = assert_result(f, "s3", NULL, NULL);
	xmpp_stanza_release(reply);
	assert_int_equal(subscription_find(f->publish.store, "alice", "INBOX",
					   "alice@localhost/r", subid), 0);
}

/* The firehose node exists for [firehose] subscribers only. */
static void test_pubsub_firehose_invisible(void **state)
{
	struct service_fixture *f = *state;

	assert_int_equal(route(f, "<iq type='set' id='f1' from='alice@localhost/r'"
			      " to='events.localhost'><pubsub xmlns='"
			      "http://jabber.org/protocol/pubsub'><subscribe node='"
			      "mailpubsub:firehose' jid='alice@localhost/r'/></pubsub></iq>"), 1);
	assert_error(f, "f1", "cancel", "item-not-found", NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_table_first_match, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_child_is_bad_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_namespace_unavailable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replies_are_not_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rows_reach_their_handlers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pubsub_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pubsub_others_mailbox_not_found, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pubsub_subscribe_and_items, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pubsub_firehose_invisible, setup, teardown),
	};

	xmpp_initialize();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
