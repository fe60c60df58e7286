/* mailpubsub.conf: an INI file read with libinih. One table describes
 * every option (section, name, type, default, help); it drives the parser,
 * the defaults and `mailpubsubd --dump-config`, which mailpubsub.conf(5)
 * follows. */
#ifndef MAILPUBSUB_CONFIG_H
#define MAILPUBSUB_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

struct config_account_map {
	char *jid;       /* bare JID */
	char *account;   /* IMAP identity */
};

/* [backends]: one "account-pattern = host[:port]" per line, in order. */
struct config_backend {
	char *pattern;   /* fnmatch(3) pattern on the account name */
	char *host;
	unsigned port;   /* 0: [imap] port */
};

struct config {
	/* [component] */
	char *component_host;
	unsigned component_port;
	char *component_domain;
	char *component_secret;
	char *component_secret_file;
	unsigned ping_interval;     /* seconds */
	unsigned ping_timeout;      /* seconds */
	unsigned max_stanza_rate;   /* per second; 0: no cap */
	unsigned max_stanza_size;   /* bytes; item_set_max_stanza() */
	/* [cyrus] */
	char *notify_socket;
	unsigned notify_socket_mode;
	char *notify_socket_group;
	char *hierarchy_separator;
	unsigned ingest_queue_max;  /* datagrams held in RAM before journaling */
	unsigned ingest_queue_max_mb; /* and their bytes, MiB */
	/* [json] */
	char *json_socket;          /* Unix stream socket; empty: none */
	unsigned json_socket_mode;
	char *json_socket_group;
	char *json_allowed_users;   /* space separated user names or uids */
	char *json_listen;          /* host:port for TCP; empty: none */
	char *json_secret;
	char *json_secret_file;
	unsigned json_max_line;     /* bytes */
	unsigned json_max_connections;     /* authenticated senders */
	unsigned json_max_unauthenticated; /* TCP connections before the secret */
	unsigned json_auth_timeout;        /* seconds to send the secret */
	/* [firehose] */
	char *delegate_service;     /* the server's pubsub JID; empty: off */

	char *firehose_subscribers; /* "jid:role ..." */
	unsigned firehose_inline_max;
	unsigned firehose_fetch_attempts;
	unsigned firehose_content_retention; /* seconds */
	char *firehose_accounts;    /* space separated; empty: all */
	/* [changelog] */
	unsigned changelog_retention; /* seconds; 0: kept for ever */
	char *changelog_key_file;   /* HMAC key signing retention checkpoints */
	/* [taps] */
	char *tap_admins;           /* bare JIDs that manage taps (ad-hoc commands) */
	/* [store] */
	char *store_path;
	bool store_full_sync;
	unsigned items_per_node;
	/* [pubsub] */
	char *shared_service;       /* JID of the shared-folder service */
	char *suppress_events;      /* space separated event names */
	unsigned max_subscriptions_per_jid;
	unsigned max_items_per_request;
	unsigned heartbeat_interval;  /* seconds; 0: none */
	/* [imap] */
	char *imap_host;            /* empty: no IMAP, owner-only authorization */
	unsigned imap_port;
	char *imap_tls;             /* none, starttls, imaps */
	char *imap_ca_file;
	bool imap_verify;
	char *imap_admin_user;
	char *imap_password;
	char *imap_password_file;
	char *imap_mechanism;
	unsigned imap_timeout_ms;
	unsigned imap_max_sessions;
	unsigned acl_cache_ttl;     /* seconds */
	unsigned imap_list_interval; /* seconds */
	bool imap_list_at_start;     /* sweep the known accounts at start too */
	unsigned imap_list_concurrency; /* sweep LISTs outstanding at a time */
	bool imap_other_inbox_named;
	bool imap_list_as_owner;
	/* [imap_source] */
	char *imap_source_accounts;  /* space separated; empty: source off */
	char *imap_source_mailboxes; /* IDLEd on, space separated node names */
	unsigned imap_source_poll_interval; /* seconds */
	/* [bus], the consuming side (ingest/bus_in) */
	char *bus_consume;          /* AMQP address; empty: no bus source */
	bool bus_consume_durable;
	unsigned bus_consume_credit;
	unsigned bus_consume_max_body; /* bytes */
	/* [accounts] */
	char *jid_domains;          /* space separated: JIDs here map by localpart */
	char *identity_domain;      /* appended to mapped localparts: user@domain */
	char *reserved_identities;  /* space separated: never a mapped localpart */
	struct config_account_map *account_map;
	unsigned account_map_count;
	/* [backends] */
	struct config_backend *backends;
	unsigned backend_count;
	/* [log] */
	char *log_level;
	/* [control] */
	char *control_socket;       /* Unix stream socket; empty: none */
	char *control_group;        /* may ask too (mode 0660); empty: 0600 */
	/* [metrics] */
	char *metrics_listen;       /* host:port of the Prometheus endpoint */
	/* [bus] */
	char *bus_urls;             /* space separated amqp(s):// URLs; empty: off */
	char *bus_credentials_file; /* user and password lines; empty: ANONYMOUS */
	char *bus_user;             /* from credentials_file; NULL without */
	char *bus_password;
	char *bus_address;          /* AMQP target address; empty: no producer */
	bool bus_durable;           /* durable target terminus */
	char *bus_instance;         /* message-id prefix; empty: component domain */
	char *bus_content;          /* none, headers, full */
	unsigned bus_content_max;   /* bytes of content in a message */
	unsigned bus_window;        /* unsettled deliveries */
	char *bus_ca_file;
	unsigned bus_reconnect_max; /* seconds */
};

/* Room for any error message of the functions below. */
#define CONFIG_ERROR_MAX 512

/* Loads path over the defaults and checks the result (config_check). On
 * error the reason is written to error (caller-owned, error_size bytes,
 * CONFIG_ERROR_MAX is enough). */
int config_load(const char *path, struct config **config_r, char *error,
		size_t error_size);
/* The defaults, and path's values over them when path is not NULL; not
 * checked: what --dump-config shows before a configuration is complete. */
int config_parse(const char *path, struct config **config_r, char *error,
		 size_t error_size);
/* Whether the daemon can run with config; reads the secret files and
 * fills in derived values (shared_service). */
int config_check(struct config *config, char *error, size_t error_size);
void config_free(struct config **config);
/* Writes every option with its current value and help text, one block
 * per section, required options marked. */
void config_dump(const struct config *config, FILE *out);
/* One option that differs between the running configuration and a
 * reloaded file: was and now as the file spells them (secrets masked),
 * valid during the call; applied: SIGHUP changed it, else it waits for a
 * restart. [account_map] and [backends] differences come as name "*". */
typedef void config_change_cb(void *context, const char *section, const char *name,
			      const char *was, const char *now, bool applied);
/* Moves the options SIGHUP may change from fresh into live where they
 * differ, and reports every difference to cb (may be NULL). Pointers into
 * live's strings of applied options become invalid: fresh now owns the
 * old values (free it after). Returns how many were applied. */
unsigned config_apply_reload(struct config *live, struct config *fresh,
			     config_change_cb *cb, void *context);
/* True if the space separated list contains word. */
bool config_list_contains(const char *list, const char *word);
/* The same, in any case (ASCII): for names a server compares so. */
bool config_list_contains_folded(const char *list, const char *word);

#endif
