/*
 * mwi: a message-waiting indicator on mailpubsub. Subscribes to a mailbox
 * node of an account's pubsub service (XEP-0060) and prints a line whenever
 * a mailbox's counts change, e.g. "alice INBOX: 3 unseen / 120".
 *
 * usage: mwi [-h HOST] [-p PORT] [--plain] JID PASSWORD SERVICE [NODE]
 * Exit status: 0 after SIGINT/SIGTERM, 1 on errors, 2 on bad usage, 3 when
 * the service ends the subscription. MWI_DEBUG=1 logs the XML.
 * cc -std=c11 -D_GNU_SOURCE mwi.c -o mwi $(pkg-config --cflags --libs libstrophe)
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strophe.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_ITEM "urn:mailpubsub:event:0"
#define SASL_FAILURE "RECV: <failure xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"><"

/* The last printed state of one mailbox. */
struct box {
	struct box *next;
	char *account, *node;
	unsigned long messages, unseen;
};

struct app {
	xmpp_ctx_t *ctx;
	xmpp_conn_t *conn;
	const char *service, *node;
	char *service_bare;
	bool debug, logged_in;
	bool stopping;          /* we asked for the disconnect */
	int status;             /* exit status */
	char login_error[64];
	struct box *boxes;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static void *check_alloc(void *p)
{
	if (p == NULL) {
		perror("mwi");
		exit(1);
	}
	return p;
}

static void quit(struct app *app, int status)
{
	app->status = status;
	app->stopping = true;
	xmpp_disconnect(app->conn);
}

/* True if node is root or below it ("INBOX/Sub" is below "INBOX"). */
static bool in_subtree(const char *node, const char *root)
{
	size_t n = strlen(root);

	return strncmp(node, root, n) == 0 && (node[n] == '\0' || node[n] == '/');
}

static void say(const char *format, ...)
{
	va_list ap;

	va_start(ap, format);
	vprintf(format, ap);
	va_end(ap);
	fflush(stdout);   /* stdout may be a pipe: an indicator must not lag */
}

static void print_box(const struct box *b)
{
	say("%s %s: %lu unseen / %lu\n", b->account, b->node, b->unseen, b->messages);
}

/* Prints new counts only if they differ from the last ones: most events
 * (flags, modseq, the same item seen twice) change nothing a user sees. */
static void set_counts(struct app *app, const char *account, const char *node,
		       unsigned long messages, unsigned long unseen)
{
	struct box *b = app->boxes;

	while (b != NULL && (strcmp(b->account, account) != 0 || strcmp(b->node, node) != 0))
		b = b->next;
	if (b == NULL) {
		b = check_alloc(calloc(1, sizeof(*b)));
		b->account = check_alloc(strdup(account));
		b->node = check_alloc(strdup(node));
		b->next = app->boxes;
		app->boxes = b;
	} else if (b->messages == messages && b->unseen == unseen) {
		return;
	}
	b->messages = messages;
	b->unseen = unseen;
	print_box(b);
}

/* Forgets root and the folders below it, as Cyrus deletes them together;
 * account NULL: everything. */
static void forget_subtree(struct app *app, const char *account, const char *root)
{
	struct box **p = &app->boxes, *b;

	while ((b = *p) != NULL) {
		if (account == NULL ||
		    (strcmp(b->account, account) == 0 && in_subtree(b->node, root))) {
			*p = b->next;
			free(b->account);
			free(b->node);
			free(b);
		} else {
			p = &b->next;
		}
	}
}

/* Cyrus reports a folder rename once, for the parent: children move too.
 * The item reaches us once per moved node; the second time nothing is left
 * under the old name, so nothing is printed twice. */
static void rename_subtree(struct app *app, const char *account, const char *from,
			   const char *to)
{
	for (struct box *b = app->boxes; b != NULL; b = b->next) {
		char *moved;

		if (strcmp(b->account, account) != 0 || !in_subtree(b->node, from))
			continue;
		if (asprintf(&moved, "%s%s", to, b->node + strlen(from)) < 0)
			check_alloc(NULL);
		free(b->node);
		b->node = moved;
		print_box(b);
	}
}

/* The number in payload's child element `name`; false if absent or bad. */
static bool number(xmpp_stanza_t *payload, const char *name, unsigned long *out)
{
	xmpp_stanza_t *el = xmpp_stanza_get_child_by_name_and_ns(payload, name, NS_ITEM);
	const char *text = el ? xmpp_stanza_get_text_ptr(xmpp_stanza_get_children(el)) : NULL;
	char *end;

	if (text == NULL)
		return false;
	*out = strtoul(text, &end, 10);
	return end != text && *end == '\0';
}

static const char *attr_of(xmpp_stanza_t *payload, const char *child, const char *name)
{
	xmpp_stanza_t *el = xmpp_stanza_get_child_by_name_and_ns(payload, child, NS_ITEM);

	return el ? xmpp_stanza_get_attribute(el, name) : NULL;
}

static void handle_item(struct app *app, xmpp_stanza_t *payload)
{
	const char *type = xmpp_stanza_get_attribute(payload, "type");
	const char *account = attr_of(payload, "mailbox", "account");
	const char *node = attr_of(payload, "mailbox", "node");
	const char *old_node = attr_of(payload, "oldMailbox", "node");
	unsigned long messages, unseen = 0;

	if (type == NULL || account == NULL || node == NULL)
		return;
	if (strcmp(type, "MailboxDelete") == 0) {
		say("%s %s: deleted\n", account, node);
		forget_subtree(app, account, node);
		return;
	}
	if (strcmp(type, "MailboxRename") == 0 && old_node != NULL &&
	    strcmp(old_node, node) != 0)
		rename_subtree(app, account, old_node, node);
	/* any item with counts is the mailbox's state, also the last item the
	 * service sends on subscribe (the one with a urn:xmpp:delay stamp) */
	if (number(payload, "messages", &messages)) {
		number(payload, "unseen", &unseen);
		set_counts(app, account, node, messages, unseen);
	}
}

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *msg, void *data)
{
	struct app *app = data;
	const char *from = xmpp_stanza_get_from(msg);
	xmpp_stanza_t *ev = xmpp_stanza_get_child_by_name_and_ns(msg, "event",
								 NS_PUBSUB "#event");
	char *account, *bare = from ? xmpp_jid_bare(app->ctx, from) : NULL;
	bool trusted = bare != NULL && strcmp(bare, app->service_bare) == 0;

	(void)conn;
	xmpp_free(app->ctx, bare);
	/* anyone may send us a pubsub-looking message: believe the service only */
	if (ev == NULL || !trusted)
		return 1;
	account = xmpp_jid_node(app->ctx, from);
	for (xmpp_stanza_t *c = xmpp_stanza_get_children(ev); c; c = xmpp_stanza_get_next(c)) {
		const char *name = xmpp_stanza_get_name(c);
		const char *node = xmpp_stanza_get_attribute(c, "node");
		const char *state = xmpp_stanza_get_attribute(c, "subscription");

		if (name == NULL || node == NULL)
			continue;
		if (strcmp(name, "items") == 0) {
			for (xmpp_stanza_t *it = xmpp_stanza_get_children(c); it;
			     it = xmpp_stanza_get_next(it)) {
				xmpp_stanza_t *p = xmpp_stanza_get_child_by_name_and_ns(
					it, "mailbox-event", NS_ITEM);
				if (p != NULL)
					handle_item(app, p);
			}
		} else if (strcmp(name, "subscription") == 0 && state != NULL &&
			   strcmp(state, "none") == 0) {   /* e.g. rights revoked */
			say("%s %s: subscription ended\n", account ? account : from, node);
			if (strcmp(node, app->node) == 0)
				quit(app, 3);
		}
	}
	xmpp_free(app->ctx, account);
	return 1;
}

static int on_subscribed(xmpp_conn_t *conn, xmpp_stanza_t *reply, void *data);

/* XEP-0060 6.3.7 "subscribe and configure": with depth=all, one subscription
 * covers every folder below NODE, also those created later. */
static const char subscribe_xml[] =
	"<iq type='set'><pubsub xmlns='" NS_PUBSUB "'><subscribe/></pubsub></iq>";
static const char subscribe_options_xml[] =
	"<iq type='set'><pubsub xmlns='" NS_PUBSUB "'><subscribe/>"
	"<options><x xmlns='jabber:x:data' type='submit'>"
	"<field var='FORM_TYPE' type='hidden'><value>" NS_PUBSUB "#subscribe_options</value></field>"
	"<field var='pubsub#subscription_depth'><value>all</value></field>"
	"</x></options></pubsub></iq>";

static void subscribe(struct app *app, bool with_options)
{
	const char *id = with_options ? "mwi-sub-options" : "mwi-sub";
	xmpp_stanza_t *iq = xmpp_stanza_new_from_string(app->ctx, with_options
							? subscribe_options_xml : subscribe_xml);
	xmpp_stanza_t *sub = xmpp_stanza_get_child_by_name(
		xmpp_stanza_get_child_by_name(iq, "pubsub"), "subscribe");
	char *me = xmpp_jid_bare(app->ctx, xmpp_conn_get_bound_jid(app->conn));

	/* set with the API, so that libstrophe escapes them */
	xmpp_stanza_set_id(iq, id);
	xmpp_stanza_set_to(iq, app->service);
	xmpp_stanza_set_attribute(sub, "node", app->node);
	xmpp_stanza_set_attribute(sub, "jid", me);
	xmpp_id_handler_add(app->conn, on_subscribed, id, app);
	xmpp_send(app->conn, iq);
	xmpp_stanza_release(iq);
	xmpp_free(app->ctx, me);
}

static int on_subscribed(xmpp_conn_t *conn, xmpp_stanza_t *reply, void *data)
{
	struct app *app = data;
	const char *type = xmpp_stanza_get_type(reply);
	bool with_options = strcmp(xmpp_stanza_get_id(reply), "mwi-sub-options") == 0;
	xmpp_stanza_t *err = xmpp_stanza_get_child_by_name(reply, "error");
	const char *cond = "undefined-condition", *pcond = NULL;

	(void)conn;
	if (type != NULL && strcmp(type, "result") == 0) {
		fprintf(stderr, "mwi: subscribed to %s on %s%s\n", app->node, app->service,
			with_options ? " and the folders below it" : "");
		return 0;
	}
	/* an error pairs a stanza condition with a pubsub#errors one */
	for (xmpp_stanza_t *c = err ? xmpp_stanza_get_children(err) : NULL; c;
	     c = xmpp_stanza_get_next(c)) {
		const char *ns = xmpp_stanza_get_ns(c), *name = xmpp_stanza_get_name(c);

		if (ns != NULL && strcmp(ns, NS_STANZAS) == 0 && strcmp(name, "text") != 0)
			cond = name;
		else if (ns != NULL && strcmp(ns, NS_PUBSUB "#errors") == 0)
			pcond = name;
	}
	/* a service without (these) subscription options still serves NODE
	 * itself: an indicator for one folder beats none */
	if (with_options && pcond != NULL &&
	    (strcmp(pcond, "invalid-options") == 0 || strcmp(pcond, "unsupported") == 0)) {
		fprintf(stderr, "mwi: service refused subscription options (%s / %s); "
			"subscribing to %s only\n", cond, pcond, app->node);
		subscribe(app, false);
		return 0;
	}
	fprintf(stderr, "mwi: subscribe to %s on %s refused: %s%s%s\n", app->node,
		app->service, cond, pcond ? " / " : "", pcond ? pcond : "");
	quit(app, 1);
	return 0;
}

/* libstrophe 0.12 keeps the SASL <failure/> condition and connect()'s errno
 * to itself: its debug log is the only place they show. */
static void on_log(void *data, xmpp_log_level_t level, const char *area, const char *msg)
{
	struct app *app = data;
	const char *failure = strstr(msg, SASL_FAILURE);
	int error;

	if (failure != NULL)
		sscanf(failure + strlen(SASL_FAILURE), "%63[a-z-]", app->login_error);
	else if (sscanf(msg, "connection failed, error %d", &error) == 1)
		snprintf(app->login_error, sizeof(app->login_error), "%s", strerror(error));
	if (app->debug || level >= XMPP_LEVEL_ERROR)
		fprintf(stderr, "%s: %s\n", area, msg);
}

static void on_connection(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
			  xmpp_stream_error_t *stream_error, void *data)
{
	struct app *app = data;

	(void)error;
	if (event == XMPP_CONN_CONNECT) {
		xmpp_stanza_t *presence = xmpp_presence_new(app->ctx);

		app->logged_in = true;
		xmpp_handler_add(conn, on_message, NULL, "message", NULL, app);
		/* notifications are headlines: sent to available resources only */
		xmpp_send(conn, presence);
		xmpp_stanza_release(presence);
		subscribe(app, true);
		return;
	}
	if (!app->stopping) {
		if (stream_error != NULL && stream_error->text != NULL)
			fprintf(stderr, "mwi: stream error: %s\n", stream_error->text);
		if (app->logged_in)
			fprintf(stderr, "mwi: connection lost\n");
		else
			fprintf(stderr, "mwi: login as %s failed: %s\n", xmpp_conn_get_jid(conn),
				app->login_error[0] ? app->login_error : "undefined-condition");
		app->status = 1;
	}
	xmpp_stop(app->ctx);
}

/* Signals only set a flag; the disconnect happens here, in the loop. The
 * subscription stays (it is persistent): the next run gets the last state
 * again on subscribe. A global handler runs also before login. */
static int check_signal(xmpp_ctx_t *ctx, void *data)
{
	struct app *app = data;

	(void)ctx;
	if (got_signal && !app->stopping)
		quit(app, 0);
	return 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: mwi [-h HOST] [-p PORT] [--plain] JID PASSWORD SERVICE [NODE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "plain", no_argument, NULL, 'P' }, { NULL, 0, NULL, 0 }
	};
	struct app app = { .node = "INBOX", .debug = getenv("MWI_DEBUG") != NULL };
	xmpp_log_t log = { on_log, &app };
	struct sigaction sa = { .sa_handler = on_signal };
	const char *host = NULL;
	long port = 0, flags = 0;
	char *end;
	int opt;

	while ((opt = getopt_long(argc, argv, "h:p:", longopts, NULL)) != -1) {
		if (opt == 'h')
			host = optarg;
		else if (opt == 'p' && (port = strtol(optarg, &end, 10)) > 0 &&
			 port <= 65535 && *end == '\0')
			continue;   /* a valid port */
		else if (opt == 'P')
			flags |= XMPP_CONN_FLAG_DISABLE_TLS;   /* test servers only */
		else
			usage();
	}
	if (argc - optind < 3 || argc - optind > 4)
		usage();
	app.service = argv[optind + 2];
	if (argc - optind == 4)
		app.node = argv[optind + 3];
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);   /* a dead server is an error, not a kill */

	xmpp_initialize();
	app.ctx = xmpp_ctx_new(NULL, &log);
	app.conn = xmpp_conn_new(app.ctx);
	app.service_bare = xmpp_jid_bare(app.ctx, app.service);
	xmpp_conn_set_flags(app.conn, flags);
	xmpp_conn_set_jid(app.conn, argv[optind]);
	xmpp_conn_set_pass(app.conn, argv[optind + 1]);
	xmpp_global_timed_handler_add(app.ctx, check_signal, 100, &app);
	if (xmpp_connect_client(app.conn, host, (unsigned short)port, on_connection,
				&app) == XMPP_EOK) {
		xmpp_run(app.ctx);
	} else {
		fprintf(stderr, "mwi: cannot connect to %s\n", host ? host : argv[optind]);
		app.status = 1;
	}

	forget_subtree(&app, NULL, NULL);
	xmpp_global_timed_handler_delete(app.ctx, check_signal);   /* ctx_free leaks it */
	xmpp_free(app.ctx, app.service_bare);
	xmpp_conn_release(app.conn);
	xmpp_ctx_free(app.ctx);
	xmpp_shutdown();
	return app.status;
}
