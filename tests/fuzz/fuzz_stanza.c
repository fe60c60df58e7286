/* libFuzzer target: the XMPP request handlers (src/handlers/service.c, disco.c,
 * pubsub.c, subopts.c, request.c, ...) behind router_handle_stanza().
 *
 * The input is parsed as one stanza with libstrophe, as the component would
 * have received it; stanzas the real component does not route to the
 * service (anything but iq, message, presence) are dropped, and a missing
 * from/to is filled in as the Jabber server always does. The service runs
 * over a real store (a temp SQLite file with a few accounts, nodes,
 * subscriptions and items), owner-only authz, the real delivery queue and a
 * fake component (fake_component.c) that serializes and checks everything
 * sent instead of writing it to a socket. State is kept across runs, like
 * the daemon keeps it across requests. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <strophe.h>

#include "base/clock.h"
#include "authz/authz.h"
#include "base/config.h"
#include "publish/delivery.h"
#include "fake_component.h"
#include "store/items.h"
#include "base/log.h"
#include "store/node_tree.h"
#include "handlers/router.h"
#include "handlers/service.h"
#include "store/store.h"
#include "model/subopts.h"
#include "store/subscription.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEFAULT_FROM "alice@localhost/r"
#define DEFAULT_TO "alice@events.localhost"

static const char config_text[] =
	"[component]\n"
	"domain = events.localhost\n"
	"secret = fuzz\n"
	"[cyrus]\n"
	"hierarchy_separator = /\n"
	"[store]\n"
	"items_per_node = 5\n"
	"[pubsub]\n"
	"shared_service = shared.events.localhost\n"
	"max_subscriptions_per_jid = 50\n"
	"max_items_per_request = 20\n"
	"[accounts]\n"
	"jid_domains = localhost\n"
	"[account_map]\n"
	"boss@corp.example = alice\n"
	"[log]\n"
	"level = error\n";

static const char payload_fmt[] =
	"<mailbox-event xmlns='urn:mailpubsub:event:0' type='MessageNew' "
	"seq='%d' received='2023-11-14T22:13:20.123Z' node='%s' uid='%d'>"
	"<messages>%d</messages><unseen>1</unseen></mailbox-event>";

static char dir[4096], conf_path[4200], db_path[4200];
static xmpp_ctx_t *ctx;
static struct config *config;
static struct publish_service publish;
static struct service service = { .publish = &publish };

static void die(const char *what, const char *error)
{
	fprintf(stderr, "fuzz_stanza: %s: %s\n", what, error);
	abort();
}

static void cleanup(void)
{
	static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
	char p[4300];

	if (publish.component != NULL) {
		const struct fake_component_stats *st =
			fake_component_stats(publish.component);

		fprintf(stderr, "fuzz_stanza: %llu iq requests, %llu errors; sent %llu "
			"stanzas, %llu raw notifications, %llu bytes\n",
			publish.stats.iq_requests, publish.stats.iq_errors,
			st->stanzas, st->raw, st->bytes);
	}
	delivery_free(&publish.delivery);
	authz_free(&publish.authz);
	store_close(&publish.store);
	config_free(&config);
	fake_component_free(&publish.component);
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", db_path, suffixes[i]);
		unlink(p);
	}
	unlink(conf_path);
	rmdir(dir);
}

static void populate(struct store *store)
{
	static const struct { const char *account, *node; } nodes[] = {
		{ "alice", "INBOX" },
		{ "alice", "INBOX/Projects" },
		{ "alice", "INBOX/Projects/Alpha" },
		{ "alice", "INBOX/Projects/Alpha/Beta" },
		{ "alice", "INBOX/Lists" },
		{ "alice", "INBOX/a'b&c<d>" },
		{ "alice", "INBOX/Entw\xc3\xbcrfe" },
		{ "alice", "INBOX/x%2Fy" },
		{ "bob", "INBOX" },
		{ "bob", "INBOX/Sub" },
		{ "alice@mail.example.org", "INBOX" },
		{ "", "Shared" },
		{ "", "Shared/Team" },
	};
	static const struct {
		const char *account, *node, *jid;
		int depth;
		bool heartbeat;
	} subs[] = {
		{ "alice", "INBOX", "alice@localhost", 0, false },
		{ "alice", "INBOX/Projects", "alice@localhost/r", -1, false },
		{ "alice", "INBOX", "alice@localhost/mwi", 1, true },
		{ "bob", "INBOX", "bob@localhost", 0, false },
		{ "", "Shared", "alice@localhost", -1, false },
	};
	long long now = clock_now_us();
	char payload[1024], subid[SUBSCRIPTION_SUBID_LEN + 1];
	int seq = 1;
	bool created;

	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		if (node_tree_touch(store, nodes[i].account, nodes[i].node, NULL,
				    1795463856, now) < 0)
			die("node_tree_touch", nodes[i].node);
		/* a few items on the first nodes of each account */
		for (int k = 0; k < 3 && i % 2 == 0; k++, seq++) {
			snprintf(payload, sizeof(payload), payload_fmt, seq,
				 nodes[i].node[0] == 'I' ? "INBOX" : "Shared", seq, seq);
			if (items_put(store, nodes[i].account, nodes[i].node, seq,
				      now - 1000000LL * (10 - k), payload, 5) < 0)
				die("items_put", nodes[i].node);
		}
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		struct subopts opts;

		subopts_defaults(&opts);
		opts.depth = subs[i].depth;
		opts.heartbeat = subs[i].heartbeat;
		if (subscription_add(store, subs[i].account, subs[i].node,
				     subs[i].jid, &opts, now, subid, &created) < 0)
			die("subscription_add", subs[i].jid);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	const char *error = "?";
	char config_error[CONFIG_ERROR_MAX];
	FILE *f;

	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_ERROR);
	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, NULL);   /* no logger: quiet */
	if (ctx == NULL)
		die("xmpp_ctx_new", "failed");

	snprintf(dir, sizeof(dir), "%s/fuzz-stanza-XXXXXX",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp", dir);
	snprintf(conf_path, sizeof(conf_path), "%s/mailpubsub.conf", dir);
	snprintf(db_path, sizeof(db_path), "%s/mailpubsub.db", dir);
	atexit(cleanup);
	f = fopen(conf_path, "w");
	if (f == NULL || fputs(config_text, f) < 0 || fclose(f) != 0)
		die("write", conf_path);
	if (config_load(conf_path, &config, config_error, sizeof(config_error)) < 0)
		die("config_load", config_error);

	publish.config = config;
	publish.component = fake_component_new(ctx);
	if (store_open(db_path, false, &publish.store, &error) < 0)
		die("store_open", error);
	populate(publish.store);
	if (authz_new(config, publish.store, NULL, &publish.authz, &error) < 0)
		die("authz_new", error);
	if (delivery_new(&publish, &publish.delivery, &error) < 0)
		die("delivery_new", error);
	/* counts, discovery and publisher: NULL, as without [imap]; the
	 * request handlers must not need them */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	xmpp_stanza_t *stanza;
	const char *name;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	stanza = xmpp_stanza_new_from_string(ctx, text);
	free(text);
	if (stanza == NULL)
		return 0;
	/* what component.c routes to the service, and nothing else */
	name = xmpp_stanza_get_name(stanza);
	if (xmpp_stanza_is_tag(stanza) && name != NULL &&
	    (strcmp(name, "iq") == 0 || strcmp(name, "message") == 0 ||
	     strcmp(name, "presence") == 0)) {
		/* the server stamps both on everything it routes to us */
		if (xmpp_stanza_get_from(stanza) == NULL)
			xmpp_stanza_set_from(stanza, DEFAULT_FROM);
		if (xmpp_stanza_get_to(stanza) == NULL)
			xmpp_stanza_set_to(stanza, DEFAULT_TO);
		router_handle_stanza(&service, stanza);
		/* without IMAP every authz answer is immediate: nothing may be
		 * left waiting once the handler has returned */
		if (delivery_pending(publish.delivery) != 0)
			die("delivery", "notifications still waiting for a decision");
	}
	xmpp_stanza_release(stanza);
	return 0;
}
