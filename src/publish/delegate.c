#include "publish/delegate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "authz/authz.h"
#include "xmpp/component.h"
#include "base/config.h"
#include "publish/delivery.h"
#include "base/xml_escape.h"
#include "base/jid.h"
#include "base/log.h"
#include "xmpp/stanza.h"
#include "publish/publish_service.h"
#include "model/subopts.h"
#include "store/subscription.h"

#define DELEGATE_OWNER_NS PUBSUB_NS "#owner"
#define DELEGATE_ID_PREFIX "mpsd-dg-"
/* JIDs per affiliations/subscriptions request: ~100 KB, well below the
 * server's stanza limit for components (512 KiB in Prosody) */
#define DELEGATE_CHUNK 1000
#define DELEGATE_PROBE_NODE "mailpubsub-probe"

/* Whitelist: only members (whom we add) may subscribe or read; nothing
 * kept (items are ours to serve); deleting it tells nobody, because we
 * rebuild nodes under subscribers' feet. */
#define DELEGATE_NODE_CONFIG \
	"<configure><x xmlns='jabber:x:data' type='submit'>" \
	"<field var='FORM_TYPE' type='hidden'><value>" PUBSUB_NS "#node_config</value></field>" \
	"<field var='pubsub#access_model'><value>whitelist</value></field>" \
	"<field var='pubsub#persist_items'><value>0</value></field>" \
	"<field var='pubsub#notify_delete'><value>0</value></field>" \
	"<field var='pubsub#notify_retract'><value>0</value></field>" \
	"<field var='pubsub#send_last_published_item'><value>never</value></field>" \
	"<field var='pubsub#notification_type'><value>headline</value></field>" \
	"</x></configure>"

struct delegate {
	struct publish_service *service;
	char *to;            /* the server's pubsub service, XML-escaped */
	char *from;          /* our component domain, XML-escaped */
	bool ready;          /* the service let us create a node, this connection */
	unsigned long long next_id;
	unsigned long long probe_id;
	/* what the server holds, as far as this connection knows: escaped
	 * node name -> { subscriber JID: true } */
	json_t *nodes;
	/* the event being collected */
	char *cur_node;      /* NULL: nothing to publish */
	json_t *cur;
	struct subopts plain;
};

int delegate_new(struct publish_service *service, struct delegate **delegate_r,
		 const char **error_r)
{
	const struct config *config = service->config;
	struct delegate *d;

	*delegate_r = NULL;
	if (config->delegate_service[0] == '\0')
		return 0;
	d = calloc(1, sizeof(*d));
	if (d == NULL || (d->to = xml_escape(config->delegate_service)) == NULL ||
	    (d->from = xml_escape(config->component_domain)) == NULL ||
	    (d->nodes = json_object()) == NULL || (d->cur = json_object()) == NULL) {
		if (d != NULL) {
			free(d->to);
			free(d->from);
			json_decref(d->nodes);
			free(d);
		}
		*error_r = "out of memory";
		return -1;
	}
	d->service = service;
	subopts_defaults(&d->plain);
	*delegate_r = d;
	return 0;
}

void delegate_free(struct delegate **delegate)
{
	struct delegate *d = *delegate;

	if (d == NULL)
		return;
	free(d->to);
	free(d->from);
	free(d->cur_node);
	json_decref(d->nodes);
	json_decref(d->cur);
	free(d);
	*delegate = NULL;
}

/* Sends <iq type='set'> with body in namespace ns. */
static void send_iq(struct delegate *d, const char *kind, const char *ns,
		    const char *body)
{
	char *out = NULL;
	int len = asprintf(&out, "<iq type='set' id='" DELEGATE_ID_PREFIX "%s-%llu' "
			   "to='%s' from='%s'><pubsub xmlns='%s'>%s</pubsub></iq>",
			   kind, ++d->next_id, d->to, d->from, ns, body);

	if (len < 0)
		return;
	component_send_raw(d->service->component, out, (size_t)len);
	free(out);
}

static void send_delete(struct delegate *d, const char *node)
{
	char *body = NULL;

	if (asprintf(&body, "<delete node='%s'/>", node) < 0)
		return;
	send_iq(d, "del", DELEGATE_OWNER_NS, body);
	free(body);
}

static void send_create(struct delegate *d, const char *node)
{
	char *body = NULL;

	if (asprintf(&body, "<create node='%s'/>" DELEGATE_NODE_CONFIG, node) < 0)
		return;
	send_iq(d, "cre", PUBSUB_NS, body);
	free(body);
}

/* Appends one <tag jid='..' attr/> per JID (bare for affiliations, which
 * Prosody keys by bare JID). */
static int append_entries(char **buf, size_t *len, const char **jids, size_t n,
			  bool bare, const char *tag, const char *attr)
{
	for (size_t i = 0; i < n; i++) {
		char *j = bare ? jid_bare(jids[i]) : strdup(jids[i]);
		char *esc = j != NULL ? xml_escape(j) : NULL;
		char *grown;
		int add;

		free(j);
		if (esc == NULL)
			continue;
		add = snprintf(NULL, 0, "<%s jid='%s' %s/>", tag, esc, attr);
		grown = realloc(*buf, *len + (size_t)add + 1);
		if (grown == NULL) {
			free(esc);
			return -1;
		}
		*buf = grown;
		snprintf(*buf + *len, (size_t)add + 1, "<%s jid='%s' %s/>", tag, esc, attr);
		*len += (size_t)add;
		free(esc);
	}
	return 0;
}

static void send_list(struct delegate *d, const char *kind, const char *node,
		      const char *container, const char **jids, size_t n,
		      bool bare, const char *tag, const char *attr)
{
	char *body = NULL;
	size_t len;
	int head = asprintf(&body, "<%s node='%s'>", container, node);

	if (head < 0)
		return;
	len = (size_t)head;
	if (append_entries(&body, &len, jids, n, bare, tag, attr) == 0) {
		char *full = NULL;

		if (asprintf(&full, "%s</%s>", body, container) >= 0)
			send_iq(d, kind, DELEGATE_OWNER_NS, full);
		free(full);
	}
	free(body);
}

/* Members first: a whitelist node takes subscriptions for members only. */
static void send_add(struct delegate *d, const char *node, const char **jids,
		     size_t n)
{
	for (size_t i = 0; i < n; i += DELEGATE_CHUNK) {
		size_t k = n - i < DELEGATE_CHUNK ? n - i : DELEGATE_CHUNK;

		send_list(d, "aff", node, "affiliations", jids + i, k, true,
			  "affiliation", "affiliation='member'");
		send_list(d, "sub", node, "subscriptions", jids + i, k, false,
			  "subscription", "subscription='subscribed'");
	}
}

void delegate_connected(struct delegate *d, bool connected)
{
	if (d == NULL)
		return;
	/* a restarted server may have kept nodes (persistent storage) or lost
	 * them (memory): each is rebuilt on its next event */
	json_object_clear(d->nodes);
	d->ready = false;
	if (!connected)
		return;
	send_create(d, DELEGATE_PROBE_NODE);
	d->probe_id = d->next_id;
	send_delete(d, DELEGATE_PROBE_NODE);
}

bool delegate_eligible(struct delegate *d, const struct subscription *sub,
		       const char *account, const char *node)
{
	struct publish_service *service;

	if (d == NULL || !d->ready || strcmp(sub->node, node) != 0)
		return false;
	if (sub->opts.deliver != d->plain.deliver || sub->opts.heartbeat ||
	    sub->opts.depth != 0 || strcmp(sub->opts.events, d->plain.events) != 0)
		return false;
	service = d->service;
	/* something of its own still waiting for a decision: what follows
	 * must queue behind it, not overtake it through the server */
	if (delivery_waiting(service->delivery, sub->jid))
		return false;
	return authz_cached(service->authz, sub->jid, account, node) == AUTHZ_GRANTED;
}

/* The server's node name: the account's JID localpart (escaped: an
 * account may contain '/'), '/', the mailbox path. XML-escaped. */
static char *server_node(const char *account, const char *node)
{
	char *local = jid_escape_local(account);
	char *name = NULL, *esc;

	if (local == NULL || asprintf(&name, "%s/%s", local, node) < 0) {
		free(local);
		return NULL;
	}
	free(local);
	esc = xml_escape(name);
	free(name);
	return esc;
}

void delegate_begin(struct delegate *d, const char *account, const char *node)
{
	if (d == NULL)
		return;
	free(d->cur_node);
	json_object_clear(d->cur);
	d->cur_node = d->ready ? server_node(account, node) : NULL;
}

void delegate_add(struct delegate *d, const char *jid)
{
	if (d != NULL && d->cur_node != NULL)
		json_object_set_new(d->cur, jid, json_true());
}

/* Does every subscriber the server holds belong to the current set? */
static bool held_within_current(struct delegate *d, json_t *held)
{
	const char *jid;
	json_t *v;

	json_object_foreach(held, jid, v) {
		if (json_object_get(d->cur, jid) == NULL)
			return false;
	}
	return true;
}

/* JIDs of the current set the server does not hold (held NULL: all). */
static const char **missing(struct delegate *d, json_t *held, size_t *n_r)
{
	const char **jids = calloc(json_object_size(d->cur) + 1, sizeof(*jids));
	const char *jid;
	json_t *v;
	size_t n = 0;

	if (jids == NULL)
		return NULL;
	json_object_foreach(d->cur, jid, v) {
		if (held == NULL || json_object_get(held, jid) == NULL)
			jids[n++] = jid;
	}
	*n_r = n;
	return jids;
}

/* Brings the server node in line with the current set: only additions
 * are done in place; anyone leaving means delete and rebuild, which also
 * removes subscriptions members made there themselves. */
static int sync_node(struct delegate *d)
{
	json_t *held = json_object_get(d->nodes, d->cur_node);
	const char **jids;
	size_t n = 0;

	if (held == NULL && json_object_size(d->cur) == 0)
		return -1;   /* nobody to publish to, nothing held */
	/* on the first event since connecting, whatever the server kept
	 * from before goes too */
	if (held == NULL || !held_within_current(d, held)) {
		send_delete(d, d->cur_node);
		json_object_del(d->nodes, d->cur_node);
		held = NULL;
		if (json_object_size(d->cur) == 0)
			return -1;
		send_create(d, d->cur_node);
	}
	jids = missing(d, held, &n);
	if (jids == NULL)
		return -1;
	if (n > 0)
		send_add(d, d->cur_node, jids, n);
	free(jids);
	/* the set now held: a copy, as d->cur is refilled per event */
	if (held == NULL || n > 0)
		json_object_set_new(d->nodes, d->cur_node, json_deep_copy(d->cur));
	return 0;
}

void delegate_publish(struct delegate *d, long long seq, const char *payload)
{
	char *body = NULL;

	if (d == NULL || d->cur_node == NULL)
		return;
	if (sync_node(d) < 0)
		return;
	if (asprintf(&body, "<publish node='%s'><item id='%lld'>%s</item></publish>",
		     d->cur_node, seq, payload) < 0)
		return;
	send_iq(d, "pub", PUBSUB_NS, body);
	d->service->stats.delegated++;
	free(body);
}

void delegate_drop(struct delegate *d, const char *account, const char *node)
{
	char *name;
	size_t len;
	const char *key;
	json_t *v;
	void *tmp;

	if (d == NULL || !d->ready || (name = server_node(account, node)) == NULL)
		return;
	len = strlen(name);
	/* descendants moved or went with it */
	json_object_foreach_safe(d->nodes, tmp, key, v) {
		if (strncmp(key, name, len) == 0 && (key[len] == '\0' || key[len] == '/')) {
			send_delete(d, key);
			json_object_del(d->nodes, key);
		}
	}
	free(name);
}

static const char *error_condition(xmpp_stanza_t *iq)
{
	xmpp_stanza_t *error = xmpp_stanza_get_child_by_name(iq, "error");

	for (xmpp_stanza_t *c = error != NULL ? xmpp_stanza_get_children(error) : NULL;
	     c != NULL; c = xmpp_stanza_get_next(c)) {
		if (xmpp_stanza_is_tag(c))
			return xmpp_stanza_get_name(c);
	}
	return "unknown";
}

bool delegate_handle_reply(struct delegate *d, xmpp_stanza_t *iq)
{
	const char *id = xmpp_stanza_get_id(iq);
	const char *type = xmpp_stanza_get_type(iq);
	const char *from = xmpp_stanza_get_from(iq);
	const char *kind;
	bool error;

	if (d == NULL || id == NULL || type == NULL ||
	    strncmp(id, DELEGATE_ID_PREFIX, strlen(DELEGATE_ID_PREFIX)) != 0)
		return false;
	/* Only the service answers what we asked it: anyone else's "result"
	 * to the probe would switch delegation on for a service that refuses
	 * us (and every notification would be lost), an "error" would make
	 * every node be rebuilt. */
	if (from == NULL || strcasecmp(from, d->service->config->delegate_service) != 0) {
		log_warn("delegate: ignored a reply to %s from %s, not from %s", id,
			 from != NULL ? from : "(nobody)",
			 d->service->config->delegate_service);
		return true;
	}
	kind = id + strlen(DELEGATE_ID_PREFIX);
	error = strcmp(type, "error") == 0;
	if (strncmp(kind, "cre-", 4) == 0 && strtoull(kind + 4, NULL, 10) == d->probe_id) {
		/* the probe: delegation starts once the service lets us create */
		if (!error || strcmp(error_condition(iq), "conflict") == 0) {
			d->ready = true;
			log_info("delegate: plain subscriptions are published through %s",
				 d->service->config->delegate_service);
		} else {
			log_error("delegate: %s refused to create a node (%s): is %s "
				  "among its admins? Notifications go directly",
				  d->service->config->delegate_service,
				  error_condition(iq), d->service->config->component_domain);
		}
		return true;
	}
	/* deleting what is not there is how every rebuild starts */
	if (!error || strncmp(kind, "del-", 4) == 0)
		return true;
	/* someone else changed the service's nodes: rebuild each on its next
	 * event (the events in flight may not have reached everyone) */
	log_error("delegate: %s answered %s with %s; its nodes are rebuilt",
		  d->service->config->delegate_service, id, error_condition(iq));
	json_object_clear(d->nodes);
	return true;
}
