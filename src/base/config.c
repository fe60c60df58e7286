#include "base/config.h"

#include <errno.h>
#include <stdint.h>
#include <ini.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/jid.h"
#include "base/log.h"

/* [bus] address of an instance that only produces and names none */
#define BUS_ADDRESS_DEFAULT "/queue/mailpubsub"

enum config_type { CONFIG_STRING, CONFIG_UINT, CONFIG_OCTAL, CONFIG_BOOL };

struct config_option {
	const char *section;
	const char *name;
	enum config_type type;
	size_t offset;
	const char *def;
	const char *help;
	bool live;          /* SIGHUP applies it (config_apply_reload) */
};

/* OPT: read at start, a change needs a restart. LIVE: read where it is
 * used (or re-applied by src/ops/reload.c), so SIGHUP changes it. */
#define OPT(sec, name, type, field, def, help) \
	{ sec, name, type, offsetof(struct config, field), def, help, false }
#define LIVE(sec, name, type, field, def, help) \
	{ sec, name, type, offsetof(struct config, field), def, help, true }

static const struct config_option options[] = {
	OPT("component", "host", CONFIG_STRING, component_host, "127.0.0.1",
	    "Address of the Jabber server's component port."),
	OPT("component", "port", CONFIG_UINT, component_port, "5347",
	    "The component port (XEP-0114)."),
	OPT("component", "domain", CONFIG_STRING, component_domain, "",
	    "Our component JID, as configured in the Jabber server; account services are <account>@<domain>."),
	OPT("component", "secret", CONFIG_STRING, component_secret, "",
	    "Shared component secret. Prefer secret_file."),
	OPT("component", "secret_file", CONFIG_STRING, component_secret_file, "",
	    "File holding the component secret (first line); keep it mode 0600."),
	OPT("component", "ping_interval", CONFIG_UINT, ping_interval, "60",
	    "Seconds between XEP-0199 pings to the server; 0 disables."),
	OPT("component", "ping_timeout", CONFIG_UINT, ping_timeout, "20",
	    "Seconds to wait for a pong before reconnecting."),
	OPT("component", "max_stanza_size", CONFIG_UINT, max_stanza_size, "245760",
	    "Bytes: the bound on every stanza sent to the server (at least 32768); keep it below the server's limits (Prosody: 256 KiB c2s, 512 KiB components). Items replies are paged under it, longer values are left out of items, and a notification that would pass it goes out without its payload."),
	LIVE("component", "max_stanza_rate", CONFIG_UINT, max_stanza_rate, "0",
	    "Stanzas per second the component may send the server (0: no cap); notifications wait in the journal beyond it."),
	OPT("cyrus", "notify_socket", CONFIG_STRING, notify_socket, "",
	    "Path of the Unix datagram socket to bind; set Cyrus's notifysocket to it. Empty: no Cyrus source."),
	OPT("cyrus", "socket_mode", CONFIG_OCTAL, notify_socket_mode, "0660",
	    "Permissions of the notify socket."),
	OPT("cyrus", "socket_group", CONFIG_STRING, notify_socket_group, "mail",
	    "Group owning the notify socket (Cyrus runs as cyrus:mail on Debian); empty keeps ours."),
	OPT("cyrus", "hierarchy_separator", CONFIG_STRING, hierarchy_separator, "/",
	    "Cyrus's separator: '/' with unixhierarchysep: yes, else '.'. Must match Cyrus: mailbox names are split on it."),
	OPT("cyrus", "queue_max", CONFIG_UINT, ingest_queue_max, "1000000",
	    "Datagrams held in memory between the socket and the journal; beyond it events are dropped and counted rather than stalling Cyrus."),
	OPT("cyrus", "queue_max_mb", CONFIG_UINT, ingest_queue_max_mb, "256",
	    "The same bound in MiB of datagrams: the most memory a storm can take while the journal catches up."),
	OPT("json", "socket", CONFIG_STRING, json_socket, "",
	    "Path of the Unix stream socket of the generic source (newline-delimited RFC 5423 JSON, one acknowledgement per line). Empty: none."),
	OPT("json", "socket_mode", CONFIG_OCTAL, json_socket_mode, "0660",
	    "Permissions of that socket."),
	OPT("json", "socket_group", CONFIG_STRING, json_socket_group, "mail",
	    "Group owning that socket; empty keeps ours."),
	OPT("json", "allowed_users", CONFIG_STRING, json_allowed_users, "",
	    "Users (names or uids, space separated) whose processes may send events on the Unix socket, checked by peer credentials; our own user always may."),
	OPT("json", "listen", CONFIG_STRING, json_listen, "",
	    "host:port for TCP senders, which must first authenticate with the secret. Empty: no TCP."),
	OPT("json", "secret", CONFIG_STRING, json_secret, "",
	    "Shared secret TCP senders present. Prefer secret_file."),
	OPT("json", "secret_file", CONFIG_STRING, json_secret_file, "",
	    "File holding that secret (first line); keep it mode 0600."),
	LIVE("json", "max_line", CONFIG_UINT, json_max_line, "4194304",
	    "Longest event line in bytes; a longer one is refused and the connection closed."),
	LIVE("json", "max_connections", CONFIG_UINT, json_max_connections, "256",
	    "Concurrent authenticated senders (Unix ones, and TCP ones once past the secret); more are refused."),
	LIVE("json", "max_unauthenticated", CONFIG_UINT, json_max_unauthenticated, "32",
	    "TCP connections that have not sent the secret yet, counted apart from max_connections; beyond it the oldest is closed, so strangers cannot keep the sender out. Their handshake line may be 1024 bytes at most."),
	LIVE("json", "auth_timeout", CONFIG_UINT, json_auth_timeout, "5",
	    "Seconds a TCP connection has to send the secret before it is closed."),
	OPT("delegate", "service", CONFIG_STRING, delegate_service, "",
	    "The Jabber server's own pubsub service (e.g. pubsub.example.org in Prosody, with our component domain among its admins). Plain subscriptions to a mailbox (its own node, default options) are then mirrored onto its node <account>/<mailbox> and each event is published there once, for the server to fan out: much cheaper than one stanza per subscriber through Prosody. Only JIDs whose rights are cached as granted are put on that whitelist node, and it is rebuilt before the next publish whenever one leaves. Empty: every notification goes directly."),
	LIVE("firehose", "subscribers", CONFIG_STRING, firehose_subscribers, "",
	    "Who may subscribe to the firehose (node mailpubsub:firehose on the component domain: every event of every account, with message content): bare-jid:role pairs, space separated; roles archive, ediscovery, intercept. Empty: nobody."),
	LIVE("firehose", "inline_max", CONFIG_UINT, firehose_inline_max, "131072",
	    "Largest message (bytes) sent inline in an item, base64 encoded; larger ones are fetched by the subscriber in chunks. Keep 4/3 of it well below the Jabber server's stanza limit."),
	LIVE("firehose", "fetch_attempts", CONFIG_UINT, firehose_fetch_attempts, "5",
	    "IMAP retrievals of a message's content before the item records it as unavailable (backing off 1, 2, 4... s)."),
	OPT("firehose", "accounts", CONFIG_STRING, firehose_accounts, "",
	    "Accounts whose events go on the firehose (space separated); empty: all. Item ids then skip other accounts' events: each item's prev attribute names the previous one."),
	LIVE("firehose", "content_retention", CONFIG_UINT, firehose_content_retention, "86400",
	    "Seconds retrieved content stays in the store for chunked fetches and catch-up."),
	OPT("changelog", "retention", CONFIG_UINT, changelog_retention, "0",
	    "Seconds e-Discovery changelog records are kept; older ones are dropped (hourly) behind a checkpoint signed with key_file, so the chain still verifies. 0: kept for ever."),
	OPT("changelog", "key_file", CONFIG_STRING, changelog_key_file, "",
	    "File whose bytes (at least 16; keep it mode 0600) are the HMAC-SHA256 key signing retention checkpoints; `mailpubsubctl changelog verify` needs it once records were dropped."),
	LIVE("taps", "admins", CONFIG_STRING, tap_admins, "",
	    "Bare JIDs (space separated) that may add, list and remove interception taps with XEP-0050 ad-hoc commands on the component domain. Nobody else sees the commands."),
	OPT("store", "path", CONFIG_STRING, store_path, "/var/lib/mailpubsub/mailpubsub.db",
	    "SQLite database (WAL mode): journal, nodes, subscriptions, items."),
	OPT("store", "full_sync", CONFIG_BOOL, store_full_sync, "yes",
	    "fsync every commit (survives power loss); 'no' survives daemon crashes only."),
	LIVE("store", "items_per_node", CONFIG_UINT, items_per_node, "20",
	    "Items kept per node for retrieval and last-item delivery."),
	OPT("pubsub", "shared_service", CONFIG_STRING, shared_service, "",
	    "JID of the service for shared folders; empty: the component domain itself."),
	LIVE("pubsub", "suppress_events", CONFIG_STRING, suppress_events, "MailboxModseq",
	    "Event types journaled but not published (space separated)."),
	LIVE("pubsub", "max_subscriptions_per_jid", CONFIG_UINT, max_subscriptions_per_jid, "1000",
	    "Subscriptions one bare JID may hold, its full JIDs included."),
	LIVE("pubsub", "max_items_per_request", CONFIG_UINT, max_items_per_request, "100",
	    "Most items returned by one items request."),
	OPT("imap", "host", CONFIG_STRING, imap_host, "",
	    "IMAP server asked for ACL rights (RFC 4314 MYRIGHTS); empty: a JID may use its own account's nodes only."),
	OPT("imap", "port", CONFIG_UINT, imap_port, "0",
	    "IMAP port; 0: 143, or 993 with tls = imaps."),
	OPT("imap", "tls", CONFIG_STRING, imap_tls, "starttls",
	    "none, starttls or imaps."),
	OPT("imap", "ca_file", CONFIG_STRING, imap_ca_file, "",
	    "PEM file of trusted CAs; empty: the system's."),
	OPT("imap", "verify", CONFIG_BOOL, imap_verify, "yes",
	    "Verify the server certificate and host name."),
	OPT("imap", "admin_user", CONFIG_STRING, imap_admin_user, "",
	    "SASL identity allowed to authorize as other users (Cyrus: in admins or proxyservers)."),
	OPT("imap", "password", CONFIG_STRING, imap_password, "",
	    "Its password. Prefer password_file."),
	OPT("imap", "password_file", CONFIG_STRING, imap_password_file, "",
	    "File holding the password (first line); keep it mode 0600."),
	OPT("imap", "mechanism", CONFIG_STRING, imap_mechanism, "PLAIN",
	    "SASL mechanism (libsasl2), e.g. PLAIN or SCRAM-SHA-256."),
	OPT("imap", "timeout_ms", CONFIG_UINT, imap_timeout_ms, "5000",
	    "Bound on every IMAP network step."),
	OPT("imap", "max_sessions", CONFIG_UINT, imap_max_sessions, "16",
	    "Authenticated IMAP sessions kept open (one per identity asked about)."),
	LIVE("imap", "acl_cache_ttl", CONFIG_UINT, acl_cache_ttl, "300",
	    "Seconds a rights answer is reused; ACL changes Cyrus reports invalidate it at once."),
	LIVE("pubsub", "heartbeat_interval", CONFIG_UINT, heartbeat_interval, "300",
	    "Seconds between current-count items to subscribers that asked for a heartbeat; 0: none."),
	LIVE("imap", "list_interval", CONFIG_UINT, imap_list_interval, "3600",
	    "Seconds between sweeps (IMAP LIST of every known account, in the background); 0: none after the one at start."),
	OPT("imap", "list_at_start", CONFIG_BOOL, imap_list_at_start, "yes",
	    "Sweep the known accounts at start too, in the background: mailboxes created or deleted while mailpubsubd was down show at once rather than at the first list_interval. Not needed for correctness (requests about unknown mailboxes, events and the periodic sweep cover it); 'no' spares a large store the load of a sweep at every restart."),
	OPT("imap", "list_concurrency", CONFIG_UINT, imap_list_concurrency, "2",
	    "Sweep LISTs under way at a time (at least 1, below max_sessions). ACL questions and LISTs a request waits for always go first."),
	OPT("imap", "other_inbox_named", CONFIG_BOOL, imap_other_inbox_named, "no",
	    "How the server names another user's INBOX: no: the owner's level in the other-users namespace (Cyrus: user/alice); yes: INBOX below it (Dovecot: shared/alice/INBOX)."),
	OPT("imap", "list_as_owner", CONFIG_BOOL, imap_list_as_owner, "yes",
	    "LIST an account's mailboxes logged in as the account (proxy authorization) rather than as admin_user. Yes works with every documented set-up: a Cyrus proxyservers member sees no other user's mailboxes, a Dovecot master user cannot log in as itself. No: one admin_user session LISTs every account (admin_user must be in Cyrus's admins)."),
	OPT("imap_source", "accounts", CONFIG_STRING, imap_source_accounts, "",
	    "The IMAP client source, for stores that push no events: accounts (space separated) watched over IMAP with the [imap] connection settings, logged in as each account by proxy authorization; their changes become RFC 5423 events. Empty: the source is off."),
	OPT("imap_source", "mailboxes", CONFIG_STRING, imap_source_mailboxes, "INBOX",
	    "Mailboxes (node names, space separated, e.g. INBOX INBOX/Lists) each watched with IDLE on a connection of its own per account: changes there are seen as soon as the server reports them. Every other mailbox the account LISTs is polled."),
	OPT("imap_source", "poll_interval", CONFIG_UINT, imap_source_poll_interval, "30",
	    "Seconds between polls of the other mailboxes and LISTs of the account (MailboxCreate/Delete/Rename are found then)."),
	OPT("bus", "consume", CONFIG_STRING, bus_consume, "",
	    "The bus source: an AMQP 1.0 address to take events from (RabbitMQ: /queue/NAME), put there by the [bus] producers of other instances; through the [bus] broker connection. Empty: none."),
	OPT("bus", "consume_durable", CONFIG_BOOL, bus_consume_durable, "yes",
	    "The consumer's source terminus is durable (RabbitMQ declares /queue/NAME durable then, and refuses a link whose durability differs from the queue's)."),
	OPT("bus", "consume_credit", CONFIG_UINT, bus_consume_credit, "100",
	    "Messages taken before any is settled; one journal commit covers what arrived together."),
	OPT("bus", "consume_max_body", CONFIG_UINT, bus_consume_max_body, "1048576",
	    "Bytes: a message body larger than this is rejected (the broker dead-letters or drops it)."),
	OPT("accounts", "jid_domains", CONFIG_STRING, jid_domains, "",
	    "JID domains whose users map to the IMAP account of the same localpart (space separated): as written, 1-64 of a-z 0-9 . _ - and not admin_user; others only through [account_map]."),
	OPT("accounts", "identity_domain", CONFIG_STRING, identity_domain, "",
	    "Rewrite for jid_domains: a JID's localpart becomes localpart@identity_domain (Cyrus with virtdomains); empty: the bare localpart."),
	OPT("accounts", "reserved_identities", CONFIG_STRING, reserved_identities,
	    "admin cyrus root postmaster mailpubsub",
	    "IMAP identities (space separated) a jid_domains localpart never becomes, compared in any case, with and without identity_domain: the IMAP server's admins (Cyrus's admins, whose MYRIGHTS on any mailbox include l). admin_user always is. Only [account_map] reaches them."),
	LIVE("log", "level", CONFIG_STRING, log_level, "info",
	    "debug, info, warning or error."),
	OPT("control", "socket", CONFIG_STRING, control_socket, "",
	    "Unix socket `mailpubsubctl status` asks (e.g. /run/mailpubsub/control.sock); root, our own user and members of group may. Empty: none."),
	OPT("control", "group", CONFIG_STRING, control_group, "",
	    "Group whose members may ask too (the socket is then mode 0660, else 0600)."),
	OPT("metrics", "listen", CONFIG_STRING, metrics_listen, "",
	    "host:port (e.g. 127.0.0.1:9498) serving Prometheus metrics on /metrics, unauthenticated: keep it on loopback or a trusted network. Empty: none."),
	OPT("bus", "urls", CONFIG_STRING, bus_urls, "",
	    "AMQP 1.0 brokers every journaled event is sent to (the message bus, README \"Message bus\"): amqp://host[:port] or amqps://host[:port] (certificate and host name verified), space separated, tried in turn when one fails. Empty: no bus."),
	OPT("bus", "credentials_file", CONFIG_STRING, bus_credentials_file, "",
	    "File holding the broker user name (first line) and password (second line) for SASL PLAIN; keep it mode 0600. Empty: SASL ANONYMOUS."),
	OPT("bus", "address", CONFIG_STRING, bus_address, "",
	    "AMQP target address of the messages (RabbitMQ: /queue/NAME declares the queue, /exchange/NAME/KEY routes through an existing exchange; ActiveMQ: queue://NAME or topic://NAME). Empty: with consume set none (the instance only consumes, no producer runs), else " BUS_ADDRESS_DEFAULT "."),
	OPT("bus", "durable", CONFIG_BOOL, bus_durable, "yes",
	    "Ask for a durable target (RabbitMQ then declares a durable queue; it refuses a link whose durability differs from an existing queue's). Messages are always sent durable."),
	OPT("bus", "instance", CONFIG_STRING, bus_instance, "",
	    "This mailpubsubd's name on the bus: message-ids are <instance>:<seq> and the instance property says it. Keep it unique and stable among the instances on one broker. Empty: [component] domain."),
	LIVE("bus", "content", CONFIG_STRING, bus_content, "none",
	    "Message content in the messages of MessageNew, MessageAppend and of copies and moves naming one message: none, headers or full, retrieved over IMAP once (shared with the firehose) with [firehose] fetch_attempts retries."),
	LIVE("bus", "content_max", CONFIG_UINT, bus_content_max, "1048576",
	    "Bytes of content a message carries at most; a larger message's content is left out and the message says its size and how to fetch it over IMAP."),
	OPT("bus", "window", CONFIG_UINT, bus_window, "1000",
	    "Messages sent and not yet accepted by the broker at most (at least 1)."),
	OPT("bus", "ca_file", CONFIG_STRING, bus_ca_file, "",
	    "PEM file of the CAs trusted for amqps:// brokers; empty: the system's."),
	OPT("bus", "reconnect_max", CONFIG_UINT, bus_reconnect_max, "30",
	    "Seconds between reconnection attempts at most (they start at 0.2 s and double, each broker URL in turn)."),
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

/* What config_check() insists on, as --dump-config marks it. */
static const struct {
	const char *section, *name, *when;
} required[] = {
	{ "component", "domain", "" },
	{ "component", "secret", " unless secret_file is set" },
	{ "json", "secret", " with listen, unless secret_file is set" },
	{ "imap", "admin_user", " with host" },
	{ "changelog", "key_file", " with retention" },
};

struct load_state {
	struct config *config;
	char error[256];
};

static bool list_contains(const char *list, const char *word, bool fold)
{
	size_t wlen = strlen(word);

	for (const char *p = list; p != NULL && *p != '\0';) {
		size_t len;

		p += strspn(p, " \t,");
		len = strcspn(p, " \t,");
		if (len == wlen &&
		    (fold ? strncasecmp(p, word, len) : strncmp(p, word, len)) == 0)
			return true;
		p += len;
	}
	return false;
}

bool config_list_contains(const char *list, const char *word)
{
	return list_contains(list, word, false);
}

bool config_list_contains_folded(const char *list, const char *word)
{
	return list_contains(list, word, true);
}

static int set_value(struct config *config, const struct config_option *opt,
		     const char *value)
{
	void *field = (char *)config + opt->offset;
	char *end;
	unsigned long v;

	switch (opt->type) {
	case CONFIG_STRING: {
		char *copy = strdup(value);

		if (copy == NULL)
			return -1;
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	case CONFIG_BOOL:
		if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 ||
		    strcmp(value, "1") == 0)
			*(bool *)field = true;
		else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 ||
			 strcmp(value, "0") == 0)
			*(bool *)field = false;
		else
			return -1;
		return 0;
	case CONFIG_UINT:
	case CONFIG_OCTAL:
		errno = 0;
		v = strtoul(value, &end, opt->type == CONFIG_OCTAL ? 8 : 10);
		if (errno != 0 || end == value || *end != '\0' || v > 0xffffffffUL ||
		    value[0] == '-')
			return -1;
		*(unsigned *)field = (unsigned)v;
		return 0;
	}
	return -1;
}

/* "user@domain" or "domain", no resource, no space: what jid_bare gives
 * back unchanged. Compared with JIDs as servers send them: lower case. */
static bool account_map_key_valid(const char *jid)
{
	char *bare = jid_bare(jid);
	bool valid = bare != NULL && strcmp(bare, jid) == 0 &&
		     strpbrk(jid, " \t") == NULL;

	for (const char *p = jid; valid && *p != '\0'; p++)
		valid = !(*p >= 'A' && *p <= 'Z');
	free(bare);
	return valid;
}

static int add_account_map(struct config *config, const char *jid,
			   const char *account)
{
	struct config_account_map *map =
		realloc(config->account_map,
			(config->account_map_count + 1) * sizeof(*map));

	if (map == NULL)
		return -1;
	config->account_map = map;
	map[config->account_map_count].jid = strdup(jid);
	map[config->account_map_count].account = strdup(account);
	config->account_map_count++;
	return 0;
}

/* "host", "host:port" or "[v6]:port" -> host and port (0: none given). */
static int parse_host_port(const char *value, char **host_r, unsigned *port_r)
{
	const char *colon = strrchr(value, ':');
	const char *host = value, *end = value + strlen(value);
	char *stop;
	unsigned long port = 0;

	if (*value == '[') {
		const char *close = strchr(value, ']');

		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return -1;
		colon = close[1] == ':' ? close + 1 : NULL;
		host = value + 1;
		end = close;
	} else if (colon != NULL && strchr(value, ':') != colon) {
		colon = NULL;       /* a bare IPv6 address */
	} else if (colon != NULL) {
		end = colon;
	}
	if (colon != NULL) {
		errno = 0;
		port = strtoul(colon + 1, &stop, 10);
		if (errno != 0 || stop == colon + 1 || *stop != '\0' || port == 0 ||
		    port > 65535)
			return -1;
	}
	if (end == host || strpbrk(value, " \t") != NULL)
		return -1;
	*host_r = strndup(host, (size_t)(end - host));
	*port_r = (unsigned)port;
	return *host_r == NULL ? -1 : 0;
}

static int add_backend(struct config *config, const char *pattern, const char *value)
{
	struct config_backend *list =
		realloc(config->backends, (config->backend_count + 1) * sizeof(*list));
	struct config_backend *b;

	if (list == NULL)
		return -1;
	config->backends = list;
	b = &list[config->backend_count];
	if (parse_host_port(value, &b->host, &b->port) < 0)
		return -1;
	b->pattern = strdup(pattern);
	if (b->pattern == NULL) {
		free(b->host);
		return -1;
	}
	config->backend_count++;
	return 0;
}

static int config_ini_line(void *user, const char *section, const char *name,
		       const char *value)
{
	struct load_state *st = user;

	/* [backends] holds one "account-pattern = host[:port]" per line */
	if (strcmp(section, "backends") == 0) {
		if (*name == '\0' || add_backend(st->config, name, value) < 0) {
			snprintf(st->error, sizeof(st->error),
				 "[backends] %s: expected account-pattern = host[:port],"
				 " got '%s'", name, value);
			return 0;
		}
		return 1;
	}

	/* [account_map] holds one "bare-jid = imap-account" per line; a bare
	 * domain is a component's JID */
	if (strcmp(section, "account_map") == 0) {
		if (!account_map_key_valid(name) || *value == '\0') {
			snprintf(st->error, sizeof(st->error),
				 "[account_map] %s: expected bare-jid = account"
				 " (user@domain or a component's domain, lower case)", name);
			return 0;
		}
		return add_account_map(st->config, name, value) == 0;
	}
	for (size_t i = 0; i < NOPTIONS; i++) {
		if (strcmp(options[i].section, section) != 0 ||
		    strcmp(options[i].name, name) != 0)
			continue;
		if (set_value(st->config, &options[i], value) < 0) {
			snprintf(st->error, sizeof(st->error),
				 "[%s] %s: invalid value '%s'", section, name, value);
			return 0;
		}
		return 1;
	}
	snprintf(st->error, sizeof(st->error), "unknown option [%s] %s", section, name);
	return 0;
}

/* Replaces *value with the first line of path. */
static int read_secret_file(const char *path, char **value, char *error,
			    size_t error_size)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(error, error_size, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	free(*value);
	*value = strdup(line);
	return 0;
}

/* [bus] credentials_file: the user on its first line, the password on its
 * second. */
static int read_credentials_file(struct config *config, char *error, size_t error_size)
{
	char user[512], password[512];
	FILE *f = fopen(config->bus_credentials_file, "r");

	if (f == NULL) {
		snprintf(error, error_size, "cannot read %s: %s",
			 config->bus_credentials_file, strerror(errno));
		return -1;
	}
	if (fgets(user, sizeof(user), f) == NULL)
		user[0] = '\0';
	if (fgets(password, sizeof(password), f) == NULL)
		password[0] = '\0';
	fclose(f);
	user[strcspn(user, "\r\n")] = '\0';
	password[strcspn(password, "\r\n")] = '\0';
	if (user[0] == '\0') {
		snprintf(error, error_size, "%s: the first line must be the broker user name",
			 config->bus_credentials_file);
		return -1;
	}
	free(config->bus_user);
	free(config->bus_password);
	config->bus_user = strdup(user);
	config->bus_password = strdup(password);
	return 0;
}

/* An instance produces, consumes, or both: consume alone leaves address
 * empty (no producer); neither with urls set is the producer it always
 * was, to the default address. *reason_r a constant. */
static int check_bus_roles(struct config *config, const char **reason_r)
{
	bool consume = *config->bus_consume != '\0', address = *config->bus_address != '\0';

	if (*config->bus_urls == '\0') {
		if (consume)
			*reason_r = "[bus] consume needs [bus] urls";
		else if (address)
			*reason_r = "[bus] address needs [bus] urls";
		return consume || address ? -1 : 0;
	}
	if (consume && address && strcmp(config->bus_consume, config->bus_address) == 0) {
		/* every event consumed would be published there again */
		*reason_r = "[bus] consume must differ from [bus] address";
		return -1;
	}
	if (!consume && !address) {
		char *copy = strdup(BUS_ADDRESS_DEFAULT);

		if (copy == NULL) {
			*reason_r = "out of memory";
			return -1;
		}
		free(config->bus_address);
		config->bus_address = copy;
	}
	return 0;
}

static int check_bus(struct config *config, char *error, size_t error_size)
{
	const char *reason = NULL;

	if (check_bus_roles(config, &reason) < 0) {
		snprintf(error, error_size, "%s", reason);
		return -1;
	}
	if (*config->bus_urls == '\0')
		return 0;
	if (*config->bus_credentials_file != '\0' &&
	    read_credentials_file(config, error, error_size) < 0)
		return -1;
	if (strcmp(config->bus_content, "none") != 0 &&
	    strcmp(config->bus_content, "headers") != 0 &&
	    strcmp(config->bus_content, "full") != 0)
		reason = "[bus] content must be none, headers or full";
	else if (config->bus_window == 0)
		reason = "[bus] window must be at least 1";
	else if (config->bus_reconnect_max == 0)
		reason = "[bus] reconnect_max must be at least 1";
	if (reason == NULL)
		return 0;
	snprintf(error, error_size, "%s", reason);
	return -1;
}

static int read_secret_files(struct config *config, char *error, size_t error_size)
{
	if (check_bus(config, error, error_size) < 0)
		return -1;
	if (*config->component_secret_file != '\0' &&
	    read_secret_file(config->component_secret_file,
			     &config->component_secret, error, error_size) < 0)
		return -1;
	if (*config->imap_password_file != '\0' &&
	    read_secret_file(config->imap_password_file,
			     &config->imap_password, error, error_size) < 0)
		return -1;
	if (*config->json_secret_file != '\0' &&
	    read_secret_file(config->json_secret_file,
			     &config->json_secret, error, error_size) < 0)
		return -1;
	return 0;
}

/* The values and how they combine; *error_r a constant. */
static int check_values(struct config *config, const char **error_r)
{
	if (*config->json_listen != '\0' && *config->json_secret == '\0') {
		*error_r = "[json] listen needs secret or secret_file";
		return -1;
	}
	if (config->json_max_unauthenticated == 0 || config->json_auth_timeout == 0) {
		*error_r = "[json] max_unauthenticated and auth_timeout must be at least 1";
		return -1;
	}
	if (strcmp(config->imap_tls, "none") != 0 &&
	    strcmp(config->imap_tls, "starttls") != 0 &&
	    strcmp(config->imap_tls, "imaps") != 0) {
		*error_r = "[imap] tls must be none, starttls or imaps";
		return -1;
	}
	if (*config->imap_host != '\0' && *config->imap_admin_user == '\0') {
		*error_r = "[imap] admin_user is required with host";
		return -1;
	}
	if (*config->imap_source_accounts != '\0' && *config->imap_host == '\0') {
		*error_r = "[imap_source] accounts needs [imap] host";
		return -1;
	}
	if (config->backend_count > 0 && *config->imap_host == '\0') {
		/* its credentials, and the server of accounts no line maps */
		*error_r = "[backends] needs [imap] host";
		return -1;
	}
	if (config->imap_source_poll_interval == 0) {
		*error_r = "[imap_source] poll_interval must be at least 1";
		return -1;
	}
	/* a sweep must leave sessions for ACL questions */
	if (config->imap_list_concurrency == 0 ||
	    (config->imap_max_sessions != 0 &&
	     config->imap_list_concurrency >= config->imap_max_sessions)) {
		*error_r = "[imap] list_concurrency must be at least 1 and below max_sessions";
		return -1;
	}
	if (config->changelog_retention > 0 && *config->changelog_key_file == '\0') {
		*error_r = "[changelog] retention needs key_file (records are dropped only behind a signed checkpoint)";
		return -1;
	}
	if (*config->component_domain == '\0') {
		*error_r = "[component] domain is required";
		return -1;
	}
	if (*config->component_secret == '\0') {
		*error_r = "[component] secret or secret_file is required";
		return -1;
	}
	if (strcmp(config->hierarchy_separator, "/") != 0 &&
	    strcmp(config->hierarchy_separator, ".") != 0) {
		*error_r = "[cyrus] hierarchy_separator must be / or .";
		return -1;
	}
	if (config->component_port == 0 || config->component_port > 65535) {
		*error_r = "[component] port out of range";
		return -1;
	}
	if (log_level_parse(config->log_level, &(enum log_level){ 0 }) < 0) {
		*error_r = "[log] level must be debug, info, warning or error";
		return -1;
	}
	if (config->items_per_node == 0)
		config->items_per_node = 1;
	if (config->max_stanza_size < 32768) {
		*error_r = "[component] max_stanza_size must be at least 32768";
		return -1;
	}
	if (*config->shared_service == '\0') {
		free(config->shared_service);
		config->shared_service = strdup(config->component_domain);
	}
	return 0;
}

int config_check(struct config *config, char *error, size_t error_size)
{
	const char *reason;

	if (read_secret_files(config, error, error_size) < 0)
		return -1;
	if (check_values(config, &reason) < 0) {
		snprintf(error, error_size, "%s", reason);
		return -1;
	}
	return 0;
}

int config_parse(const char *path, struct config **config_r, char *error,
		 size_t error_size)
{
	struct load_state st = { .config = calloc(1, sizeof(struct config)) };
	int rc;

	if (st.config == NULL) {
		snprintf(error, error_size, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < NOPTIONS; i++)
		set_value(st.config, &options[i], options[i].def);
	rc = path != NULL ? ini_parse(path, config_ini_line, &st) : 0;
	if (rc != 0) {
		if (rc < 0)
			snprintf(error, error_size, "cannot open %s: %s", path, strerror(errno));
		else
			snprintf(error, error_size, "%s:%d: %s", path, rc,
				 st.error[0] != '\0' ? st.error : "syntax error");
		config_free(&st.config);
		return -1;
	}
	*config_r = st.config;
	return 0;
}

int config_load(const char *path, struct config **config_r, char *error,
		size_t error_size)
{
	if (config_parse(path, config_r, error, error_size) < 0)
		return -1;
	if (config_check(*config_r, error, error_size) < 0) {
		config_free(config_r);
		return -1;
	}
	return 0;
}

void config_free(struct config **configp)
{
	struct config *config = *configp;

	if (config == NULL)
		return;
	for (size_t i = 0; i < NOPTIONS; i++) {
		if (options[i].type == CONFIG_STRING)
			free(*(char **)((char *)config + options[i].offset));
	}
	for (unsigned i = 0; i < config->account_map_count; i++) {
		free(config->account_map[i].jid);
		free(config->account_map[i].account);
	}
	free(config->account_map);
	for (unsigned i = 0; i < config->backend_count; i++) {
		free(config->backends[i].pattern);
		free(config->backends[i].host);
	}
	free(config->backends);
	free(config->bus_user);
	free(config->bus_password);
	free(config);
	*configp = NULL;
}

/* Secrets are never printed, neither by --dump-config nor in reload logs. */
static bool is_secret(const struct config_option *opt)
{
	return opt->offset == offsetof(struct config, component_secret) ||
	       opt->offset == offsetof(struct config, imap_password) ||
	       opt->offset == offsetof(struct config, json_secret);
}

/* The value of opt in config as the file would spell it: a string option's
 * own text (not copied), else buf. */
static const char *format_value(const struct config *config,
				const struct config_option *opt, char *buf, size_t size)
{
	const void *field = (const char *)config + opt->offset;

	if (opt->type == CONFIG_STRING && is_secret(opt))
		return **(char *const *)field != '\0' ? "(set, not shown)" : "";
	if (opt->type == CONFIG_STRING)
		return *(char *const *)field;
	if (opt->type == CONFIG_BOOL)
		snprintf(buf, size, "%s", *(const bool *)field ? "yes" : "no");
	else if (opt->type == CONFIG_OCTAL)
		snprintf(buf, size, "%04o", *(const unsigned *)field);
	else
		snprintf(buf, size, "%u", *(const unsigned *)field);
	return buf;
}

static bool same_value(const struct config *a, const struct config *b,
		       const struct config_option *opt)
{
	const void *fa = (const char *)a + opt->offset;
	const void *fb = (const char *)b + opt->offset;

	switch (opt->type) {
	case CONFIG_STRING:
		return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
	case CONFIG_BOOL:
		return *(const bool *)fa == *(const bool *)fb;
	case CONFIG_UINT:
	case CONFIG_OCTAL:
		return *(const unsigned *)fa == *(const unsigned *)fb;
	}
	return true;
}

static bool same_account_map(const struct config *a, const struct config *b)
{
	if (a->account_map_count != b->account_map_count)
		return false;
	for (unsigned i = 0; i < a->account_map_count; i++) {
		if (strcmp(a->account_map[i].jid, b->account_map[i].jid) != 0 ||
		    strcmp(a->account_map[i].account, b->account_map[i].account) != 0)
			return false;
	}
	return true;
}

static bool same_backends(const struct config *a, const struct config *b)
{
	if (a->backend_count != b->backend_count)
		return false;
	for (unsigned i = 0; i < a->backend_count; i++) {
		if (strcmp(a->backends[i].pattern, b->backends[i].pattern) != 0 ||
		    strcmp(a->backends[i].host, b->backends[i].host) != 0 ||
		    a->backends[i].port != b->backends[i].port)
			return false;
	}
	return true;
}

/* Swaps opt's field between the two configurations: strings change owner
 * without a copy, so the old value is freed with fresh. */
static void swap_value(struct config *a, struct config *b,
		       const struct config_option *opt)
{
	char *fa = (char *)a + opt->offset, *fb = (char *)b + opt->offset;
	size_t size = opt->type == CONFIG_STRING ? sizeof(char *) :
		      opt->type == CONFIG_BOOL ? sizeof(bool) : sizeof(unsigned);
	unsigned char tmp[sizeof(char *) > sizeof(unsigned) ? sizeof(char *) : sizeof(unsigned)];

	memcpy(tmp, fa, size);
	memcpy(fa, fb, size);
	memcpy(fb, tmp, size);
}

unsigned config_apply_reload(struct config *live, struct config *fresh,
			     config_change_cb *cb, void *context)
{
	char was_buf[16], now_buf[16];
	unsigned applied = 0;

	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct config_option *opt = &options[i];

		if (same_value(live, fresh, opt))
			continue;
		if (cb != NULL)
			cb(context, opt->section, opt->name,
			   format_value(live, opt, was_buf, sizeof(was_buf)),
			   format_value(fresh, opt, now_buf, sizeof(now_buf)), opt->live);
		if (opt->live) {
			swap_value(live, fresh, opt);
			applied++;
		}
	}
	if (!same_account_map(live, fresh) && cb != NULL)
		cb(context, "account_map", "*", "", "", false);
	if (!same_backends(live, fresh) && cb != NULL)
		cb(context, "backends", "*", "", "", false);
	return applied;
}

static const char *required_when(const struct config_option *opt)
{
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (strcmp(required[i].section, opt->section) == 0 &&
		    strcmp(required[i].name, opt->name) == 0)
			return required[i].when;
	return NULL;
}

/* The help as comment lines of at most 78 columns: libinih reads lines of
 * 200 bytes, and a dump is meant to become a configuration file. */
static void dump_comment(const char *text, FILE *out)
{
	while (*text != '\0') {
		size_t len = strlen(text);

		if (len > 76) {
			len = 76;
			while (len > 0 && text[len] != ' ')
				len--;
			if (len == 0)
				len = strcspn(text, " ");
		}
		fprintf(out, "# %.*s\n", (int)len, text);
		text += len;
		text += strspn(text, " ");
	}
}

static void dump_option(const struct config *config,
			const struct config_option *opt, FILE *out)
{
	const char *when = required_when(opt);
	char value[16];

	dump_comment(opt->help, out);
	fprintf(out, "# %s\n",
		opt->live ? "SIGHUP applies a change." : "A change needs a restart.");
	if (when != NULL)
		fprintf(out, "# Required%s.\n", when);
	fprintf(out, "%s = %s\n", opt->name,
		format_value(config, opt, value, sizeof(value)));
}

/* Whether options[i] is the first of its section in the table. */
static bool section_first(size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(options[j].section, options[i].section) == 0)
			return false;
	return true;
}

void config_dump(const struct config *config, FILE *out)
{
	/* each section once, in the order the table first names it, though
	 * the table lists some options away from their section */
	for (size_t i = 0; i < NOPTIONS; i++) {
		if (!section_first(i))
			continue;
		fprintf(out, "%s[%s]\n", i > 0 ? "\n" : "", options[i].section);
		for (size_t j = i; j < NOPTIONS; j++)
			if (strcmp(options[j].section, options[i].section) == 0)
				dump_option(config, &options[j], out);
	}
	fprintf(out, "\n[backends]\n# account-pattern = host[:port], one per line: the IMAP\n"
		"# server holding the accounts (first match; others: [imap] host).\n"
		"# A change needs a restart.\n");
	for (unsigned i = 0; i < config->backend_count; i++) {
		const struct config_backend *b = &config->backends[i];
		bool v6 = strchr(b->host, ':') != NULL;

		if (b->port != 0)
			fprintf(out, "%s = %s%s%s:%u\n", b->pattern, v6 ? "[" : "", b->host,
				v6 ? "]" : "", b->port);
		else
			fprintf(out, "%s = %s\n", b->pattern, b->host);
	}
	fprintf(out, "\n[account_map]\n# bare-jid = imap-account, one per line\n"
		"# A change needs a restart.\n");
	for (unsigned i = 0; i < config->account_map_count; i++)
		fprintf(out, "%s = %s\n", config->account_map[i].jid,
			config->account_map[i].account);
}
