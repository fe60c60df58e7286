/*
 * mwi: a message-waiting indicator on top of mailpubsub.
 *
 * Logs in to an XMPP server, subscribes to a mailbox node of an account's
 * pubsub service (XEP-0060) and prints one line per change of a mailbox's
 * counts:
 *
 *     alice INBOX: 3 unseen / 120
 *
 * usage: mwi [-h HOST] [-p PORT] [--plain] JID PASSWORD SERVICE [NODE]
 *
 * Build: gcc -std=c11 -D_GNU_SOURCE -o mwi mwi.c $(pkg-config --cflags --libs libstrophe)
 * Set MWI_DEBUG=1 to see libstrophe's protocol log on stderr.
 */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strophe.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_EVENT NS_PUBSUB "#event"
#define NS_PUBSUB_ERRORS NS_PUBSUB "#errors"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_DATA "jabber:x:data"
#define NS_ITEM "urn:mailpubsub:event:0"

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
	bool logged_in;
	bool stopping;       /* we asked for the disconnect: no error */
	int status;          /* exit status */
	struct box *boxes;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

/* ---- state ---------------------------------------------------------- */

static struct box **find_box(struct app *app, const char *account, const char *node)
{
	struct box **b;

	for (b = &app->boxes; *b != NULL; b = &(*b)->next)
		if (strcmp((*b)->account, account) == 0 && strcmp((*b)->node, node) == 0)
			break;
	return b;
}

static void free_box(struct box **b)
{
	struct box *gone = *b;

	*b = gone->next;
	free(gone->account);
	free(gone->node);
	free(gone);
}

static void print_box(const struct box *b)
{
	printf("%s %s: %lu unseen / %lu\n", b->account, b->node, b->unseen, b->messages);
	fflush(stdout);   /* a pipe is block-buffered; indicators must not lag */
}

/* Records new counts; prints them only if they differ from the last ones,
 * since most events (flags, modseq) do not change what an indicator shows. */
static void set_counts(struct app *app, const char *account, const char *node,
		       unsigned long messages, unsigned long unseen)
{
	struct box **slot = find_box(app, account, node), *b = *slot;

	if (b == NULL) {
		b = calloc(1, sizeof(*b));
		if (b == NULL || (b->account = strdup(account)) == NULL ||
		    (b->node = strdup(node)) == NULL) {
			perror("mwi");
			exit(1);
		}
		*slot = b;
	} else if (b->messages == messages && b->unseen == unseen) {
		return;
	}
	b->messages = messages;
	b->unseen = unseen;
	print_box(b);
}

/* True if node is root or below it ("INBOX/Sub" is below "INBOX"). */
static bool in_subtree(const char *node, const char *root)
{
	size_t n = strlen(root);

	return strncmp(node, root, n) == 0 && (node[n] == '\0' || node[n] == '/');
}

/* Cyrus reports a folder rename once, for the parent: children move too. */
static void rename_boxes(struct app *app, const char *account, const char *from,
			 const char *to)
{
	for (struct box *b = app->boxes; b != NULL; b = b->next) {
		char *moved;

		if (strcmp(b->account, account) != 0 || !in_subtree(b->node, from))
			continue;
		if (asprintf(&moved, "%s%s", to, b->node + strlen(from)) < 0) {
			perror("mwi");
			exit(1);
		}
		free(b->node);
		b->node = moved;
		print_box(b);
	}
}

/* ---- notifications ---------------------------------------------------- */

/* The unsigned number in payload's child `name`; false if absent or bad. */
static bool child_number(xmpp_stanza_t *payload, const char *name, unsigned long *out)
{
	xmpp_stanza_t *el = xmpp_stanza_get_child_by_name_and_ns(payload, name, NS_ITEM);
	char *text, *end;
	bool ok;

	if (el == NULL || (text = xmpp_stanza_get_text(el)) == NULL)
		return false;
	*out = strtoul(text, &end, 10);
	ok = end != text && *end == '\0';
	xmpp_free(xmpp_stanza_get_context(el), text);
	return ok;
}

static void handle_item(struct app *app, xmpp_stanza_t *payload)
{
	xmpp_stanza_t *box = xmpp_stanza_get_child_by_name_and_ns(payload, "mailbox", NS_ITEM);
	xmpp_stanza_t *old = xmpp_stanza_get_child_by_name_and_ns(payload, "oldMailbox", NS_ITEM);
	const char *type = xmpp_stanza_get_attribute(payload, "type");
	const char *account, *node;
	unsigned long messages, unseen = 0;

	if (box == NULL || type == NULL)
		return;
	account = xmpp_stanza_get_attribute(box, "account");
	node = xmpp_stanza_get_attribute(box, "node");
	if (account == NULL || node == NULL)
		return;

	if (strcmp(type, "MailboxDelete") == 0) {
		struct box **b = &app->boxes;

		printf("%s %s: deleted\n", account, node);
		fflush(stdout);
		while (*b != NULL)   /* its children went with it */
			if (strcmp((*b)->account, account) == 0 && in_subtree((*b)->node, node))
				free_box(b);
			else
				b = &(*b)->next;
		return;
	}
	if (strcmp(type, "MailboxRename") == 0 && old != NULL) {
		const char *from = xmpp_stanza_get_attribute(old, "node");

		/* the same item reaches us once per moved node: the 2nd time
		 * nothing is left under the old name */
		if (from != NULL && strcmp(from, node) != 0)
			rename_boxes(app, account, from, node);
	}
	/* any event that carries the counts is the mailbox's state, including
	 * the last item sent on subscribe (with a delay stamp) */
	if (child_number(payload, "messages", &messages)) {
		child_number(payload, "unseen", &unseen);
		set_counts(app, account, node, messages, unseen);
	}
}

static void subscription_ended(struct app *app, const char *from, const char *node,
			       const char *why)
{
	char *account = xmpp_jid_node(app->ctx, from);

	printf("%s %s: subscription ended\n", account ? account : from, node);
	fflush(stdout);
	xmpp_free(app->ctx, account);
	if (strcmp(node, app->node) == 0) {
		fprintf(stderr, "mwi: %s: %s\n", node, why);
		app->status = 3;
		app->stopping = true;
		xmpp_disconnect(app->conn);
	}
}

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *msg, void *data)
{
	struct app *app = data;
	const char *from = xmpp_stanza_get_from(msg);
	xmpp_stanza_t *ev = xmpp_stanza_get_child_by_name_and_ns(msg, "event", NS_PUBSUB_EVENT);
	char *bare;
	bool ours;

	(void)conn;
	if (ev == NULL || from == NULL)
		return 1;
	/* anyone can send us a pubsub-looking message: trust only the service */
	bare = xmpp_jid_bare(app->ctx, from);
	ours = bare != NULL && strcmp(bare, app->service_bare) == 0;
	xmpp_free(app->ctx, bare);
	if (!ours)
		return 1;

	for (xmpp_stanza_t *c = xmpp_stanza_get_children(ev); c; c = xmpp_stanza_get_next(c)) {
		const char *name = xmpp_stanza_get_name(c);
		const char *node = xmpp_stanza_get_attribute(c, "node");
		const char *sub = xmpp_stanza_get_attribute(c, "subscription");

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
		} else if (strcmp(name, "subscription") == 0 && sub != NULL &&
			   strcmp(sub, "none") == 0) {
			subscription_ended(app, from, node, "the service ended the subscription");
		} else if (strcmp(name, "delete") == 0 && strcmp(node, app->node) == 0) {
			/* a deleted node takes its subscriptions with it (8.4) */
			subscription_ended(app, from, node, "node deleted");
		}
	}
	return 1;
}

/* ---- subscribing ------------------------------------------------------ */

static xmpp_stanza_t *add_child(xmpp_stanza_t *parent, const char *name, const char *ns)
{
	xmpp_stanza_t *el = xmpp_stanza_new(xmpp_stanza_get_context(parent));

	xmpp_stanza_set_name(el, name);
	if (ns != NULL)
		xmpp_stanza_set_ns(el, ns);
	xmpp_stanza_add_child_ex(parent, el, 0);   /* parent owns it */
	return el;
}

static void add_field(xmpp_stanza_t *form, const char *var, const char *type,
		      const char *value)
{
	xmpp_stanza_t *field = add_child(form, "field", NULL);
	xmpp_stanza_t *text = xmpp_stanza_new(xmpp_stanza_get_context(form));

	xmpp_stanza_set_attribute(field, "var", var);
	if (type != NULL)
		xmpp_stanza_set_attribute(field, "type", type);
	xmpp_stanza_set_text(text, value);
	xmpp_stanza_add_child_ex(add_child(field, "value", NULL), text, 0);
}

static int on_subscribed(xmpp_conn_t *conn, xmpp_stanza_t *reply, void *data);

/* XEP-0060 6.3.7 "subscribe and configure": with depth=all one subscription
 * on NODE covers every folder below it, including ones created later. */
static void send_subscribe(struct app *app, bool with_options)
{
	const char *id = with_options ? "mwi-sub-options" : "mwi-sub";
	xmpp_stanza_t *iq = xmpp_iq_new(app->ctx, "set", id);
	xmpp_stanza_t *ps = add_child(iq, "pubsub", NS_PUBSUB);
	xmpp_stanza_t *sub = add_child(ps, "subscribe", NULL);
	char *me = xmpp_jid_bare(app->ctx, xmpp_conn_get_bound_jid(app->conn));

	xmpp_stanza_set_to(iq, app->service);
	xmpp_stanza_set_attribute(sub, "node", app->node);
	xmpp_stanza_set_attribute(sub, "jid", me);
	if (with_options) {
		xmpp_stanza_t *x = add_child(add_child(ps, "options", NULL), "x", NS_DATA);

		xmpp_stanza_set_type(x, "submit");
		add_field(x, "FORM_TYPE", "hidden", NS_PUBSUB "#subscribe_options");
		add_field(x, "pubsub#subscription_depth", NULL, "all");
	}
	xmpp_id_handler_add(app->conn, on_subscribed, id, app);
	xmpp_send(app->conn, iq);
	xmpp_stanza_release(iq);
	xmpp_free(app->ctx, me);
}

/* The stanza and pubsub#errors conditions of an error reply. */
static void error_conditions(xmpp_stanza_t *reply, const char **cond, const char **pcond)
{
	xmpp_stanza_t *err = xmpp_stanza_get_child_by_name(reply, "error");

	*cond = "undefined-condition";
	*pcond = NULL;
	for (xmpp_stanza_t *c = err ? xmpp_stanza_get_children(err) : NULL; c;
	     c = xmpp_stanza_get_next(c)) {
		const char *ns = xmpp_stanza_get_ns(c), *name = xmpp_stanza_get_name(c);

		if (ns != NULL && strcmp(ns, NS_STANZAS) == 0 && strcmp(name, "text") != 0)
			*cond = name;
		else if (ns != NULL && strcmp(ns, NS_PUBSUB_ERRORS) == 0)
			*pcond = name;
	}
}

static int on_subscribed(xmpp_conn_t *conn, xmpp_stanza_t *reply, void *data)
{
	struct app *app = data;
	bool with_options = strcmp(xmpp_stanza_get_id(reply), "mwi-sub-options") == 0;
	const char *cond, *pcond;

	if (strcmp(xmpp_stanza_get_type(reply), "error") != 0) {
		fprintf(stderr, "mwi: subscribed to %s on %s%s\n", app->node, app->service,
			with_options ? " and the folders below it" : "");
		return 0;
	}
	error_conditions(reply, &cond, &pcond);
	/* a service without subscription options (or without these) still
	 * serves the node itself: better that than nothing */
	if (with_options && pcond != NULL &&
	    (strcmp(pcond, "invalid-options") == 0 || strcmp(pcond, "unsupported") == 0)) {
		fprintf(stderr, "mwi: service refused subscription options (%s, %s); "
			"subscribing to %s only\n", cond, pcond, app->node);
		send_subscribe(app, false);
		return 0;
	}
	fprintf(stderr, "mwi: subscribe to %s on %s refused: %s%s%s\n", app->node,
		app->service, cond, pcond ? " / " : "", pcond ? pcond : "");
	app->status = 1;
	app->stopping = true;
	xmpp_disconnect(conn);
	return 0;
}

/* ---- connection --------------------------------------------------------- */

static void on_connection(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
			  xmpp_stream_error_t *stream_error, void *data)
{
	struct app *app = data;

	if (event == XMPP_CONN_CONNECT) {
		xmpp_stanza_t *presence = xmpp_presence_new(app->ctx);

		app->logged_in = true;
		xmpp_handler_add(conn, on_message, NULL, "message", NULL, app);
		/* headline notifications go to available resources only */
		xmpp_send(conn, presence);
		xmpp_stanza_release(presence);
		send_subscribe(app, true);
		return;
	}
	if (event != XMPP_CONN_DISCONNECT && event != XMPP_CONN_FAIL)
		return;
	if (!app->stopping) {
		/* libstrophe 0.12 does not pass SASL <failure/> conditions on */
		if (stream_error != NULL)
			fprintf(stderr, "mwi: stream error %d%s%s\n", (int)stream_error->type,
				stream_error->text ? ": " : "",
				stream_error->text ? stream_error->text : "");
		else if (error != 0)
			fprintf(stderr, "mwi: connection failed: %s\n", strerror(error));
		fprintf(stderr, "mwi: %s\n", app->logged_in ? "connection lost"
			: "login failed (not-authorized or connection refused)");
		app->status = 1;
	}
	xmpp_stop(app->ctx);
}

/* Signals only set a flag; the disconnect happens here, in the loop. The
 * subscription is persistent and stays: the next run receives the last
 * state again on subscribe. */
static int check_signal(xmpp_ctx_t *ctx, void *data)
{
	struct app *app = data;

	(void)ctx;
	if (got_signal && !app->stopping) {
		app->stopping = true;
		xmpp_disconnect(app->conn);
	}
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
		{ "plain", no_argument, NULL, 'P' }, { NULL, 0, NULL, 0 } };
	struct app app = { .node = "INBOX" };
	const char *host = NULL;
	unsigned short port = 0;
	long flags = 0;
	struct sigaction sa = { .sa_handler = on_signal };
	int opt;

	while ((opt = getopt_long(argc, argv, "h:p:", longopts, NULL)) != -1) {
		char *end;
		long n;

		switch (opt) {
		case 'h': host = optarg; break;
		case 'p':
			n = strtol(optarg, &end, 10);
			if (*end != '\0' || n <= 0 || n > 65535)
				usage();
			port = (unsigned short)n;
			break;
		case 'P': flags |= XMPP_CONN_FLAG_DISABLE_TLS; break;
		default: usage();
		}
	}
	if (argc - optind < 3 || argc - optind > 4)
		usage();
	app.service = argv[optind + 2];
	if (argc - optind == 4)
		app.node = argv[optind + 3];

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	xmpp_initialize();
	app.ctx = xmpp_ctx_new(NULL, getenv("MWI_DEBUG")
			       ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL);
	app.conn = xmpp_conn_new(app.ctx);
	app.service_bare = xmpp_jid_bare(app.ctx, app.service);
	xmpp_conn_set_flags(app.conn, flags);
	xmpp_conn_set_jid(app.conn, argv[optind]);
	xmpp_conn_set_pass(app.conn, argv[optind + 1]);
	xmpp_global_timed_handler_add(app.ctx, check_signal, 100, &app);
	if (xmpp_connect_client(app.conn, host, port, on_connection, &app) != XMPP_EOK) {
		fprintf(stderr, "mwi: cannot connect to %s\n", host ? host : argv[optind]);
		app.status = 1;
	} else {
		xmpp_run(app.ctx);
	}

	while (app.boxes != NULL)
		free_box(&app.boxes);
	xmpp_free(app.ctx, app.service_bare);
	xmpp_conn_release(app.conn);
	xmpp_ctx_free(app.ctx);
	xmpp_shutdown();
	return app.status;
}
