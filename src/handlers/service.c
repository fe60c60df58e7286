#include "handlers/service.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "downstream/content.h"
#include "publish/delegate.h"
#include "handlers/disco.h"
#include "downstream/firehose.h"
#include "base/xml_escape.h"
#include "base/jid.h"
#include "base/log.h"
#include "handlers/mam.h"
#include "handlers/pubsub.h"
#include "xmpp/pubsub_error.h"
#include "downstream/tap.h"

char *service_account_for_jid(const struct service *service, const char *jid)
{
	const struct config *config = service->config;
	char *bare = jid_bare(jid);
	char *domain, *local, *account = NULL;

	if (bare == NULL)
		return NULL;
	if (strcmp(bare, config->shared_service) == 0) {
		free(bare);
		return strdup("");
	}
	domain = jid_domain(bare);
	local = jid_local(bare);
	if (domain != NULL && local != NULL && *local != '\0' &&
	    strcmp(domain, config->component_domain) == 0)
		account = jid_unescape_local(local);
	/* "%@events..." must not become a LIST pattern, nor "alice\\20" an
	 * account the server trims to alice: such a service does not exist */
	if (account != NULL &&
	    !jid_account_valid(account, config->hierarchy_separator[0])) {
		free(account);
		account = NULL;
	}
	free(domain);
	free(local);
	free(bare);
	return account;
}

bool service_is_domain(const struct service *service, const char *jid)
{
	char *local = jid_local(jid), *domain = jid_domain(jid);
	bool is = local != NULL && *local == '\0' && domain != NULL &&
		  strcmp(domain, service->config->component_domain) == 0;

	free(local);
	free(domain);
	return is;
}

char *service_jid_for_account(const struct service *service, const char *account)
{
	char *local, *out;

	if (*account == '\0')
		return strdup(service->config->shared_service);
	local = jid_escape_local(account);
	if (local == NULL)
		return NULL;
	if (asprintf(&out, "%s@%s", local, service->config->component_domain) < 0)
		out = NULL;
	free(local);
	return out;
}

void service_send_release(struct service *service, xmpp_stanza_t *reply)
{
	const char *type = xmpp_stanza_get_type(reply);

	if (type != NULL && strcmp(type, "error") == 0)
		service->stats.iq_errors++;
	component_send(service->component, reply);
	xmpp_stanza_release(reply);
}

void service_send_result_raw(struct service *service, xmpp_stanza_t *iq,
			     const char *body)
{
	char *id = xml_escape(xmpp_stanza_get_id(iq) != NULL ? xmpp_stanza_get_id(iq) : "");
	char *to = xml_escape(xmpp_stanza_get_from(iq) != NULL ? xmpp_stanza_get_from(iq) : "");
	char *from = xml_escape(xmpp_stanza_get_to(iq) != NULL ? xmpp_stanza_get_to(iq) : "");
	char *out = NULL;

	if (id != NULL && to != NULL && from != NULL &&
	    asprintf(&out, "<iq type='result' id='%s' to='%s' from='%s'>%s</iq>",
		     id, to, from, body) >= 0) {
		component_send_raw(service->component, out, strlen(out));
		free(out);
	}
	free(id);
	free(to);
	free(from);
}

static void handle_iq(struct service *service, xmpp_stanza_t *iq)
{
	xmpp_ctx_t *ctx = component_xmpp_ctx(service->component);
	const char *type = xmpp_stanza_get_type(iq);
	xmpp_stanza_t *child = xmpp_stanza_get_children(iq);
	const char *ns;

	if (type == NULL)
		return;
	if (strcmp(type, "result") == 0 || strcmp(type, "error") == 0) {
		delegate_handle_reply(service->delegate, iq);
		return;
	}
	service->stats.iq_requests++;
	while (child != NULL && !xmpp_stanza_is_tag(child))
		child = xmpp_stanza_get_next(child);
	ns = child != NULL ? xmpp_stanza_get_ns(child) : NULL;
	if (ns == NULL ||
	    (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)) {
		service_send_release(service, pubsub_error_stanza_reply(ctx, iq,
				"modify", "bad-request"));
		return;
	}
	if (strcmp(ns, MAM_NS) == 0 && strcmp(xmpp_stanza_get_name(child), "query") == 0) {
		mam_handle(service, iq, child);
		return;
	}
	/* the tap commands exist for [taps] admins only (src/downstream/tap.c) */
	if (strcmp(ns, COMMANDS_NS) == 0 && strcmp(xmpp_stanza_get_name(child), "command") == 0) {
		tap_handle_command(service, iq, child);
		return;
	}
	if (strcmp(ns, DISCO_NS_PREFIX "items") == 0 && strcmp(type, "get") == 0 &&
	    xmpp_stanza_get_attribute(child, "node") != NULL &&
	    strcmp(xmpp_stanza_get_attribute(child, "node"), COMMANDS_NS) == 0) {
		tap_handle_disco_items(service, iq);
		return;
	}
	if (strncmp(ns, DISCO_NS_PREFIX, strlen(DISCO_NS_PREFIX)) == 0) {
		disco_handle(service, iq, child);
		return;
	}
	if (strncmp(ns, PUBSUB_NS, strlen(PUBSUB_NS)) == 0) {
		pubsub_handle(service, iq, child);
		return;
	}
	if (strcmp(ns, CONTENT_NS) == 0 && strcmp(xmpp_stanza_get_name(child), "fetch") == 0 &&
	    strcmp(type, "get") == 0) {
		firehose_handle_fetch(service, iq, child);
		return;
	}
	service_send_release(service, pubsub_error_stanza_reply(ctx, iq,
			"cancel", "service-unavailable"));
}

void service_handle_stanza(void *context, xmpp_stanza_t *stanza)
{
	struct service *service = context;
	const char *name = xmpp_stanza_get_name(stanza);

	if (strcmp(name, "iq") == 0)
		handle_iq(service, stanza);
	/* messages and presence to the service carry nothing we act on; an
	 * error <message/> bouncing back from a gone subscriber is logged */
	else if (strcmp(name, "message") == 0 &&
		 xmpp_stanza_get_type(stanza) != NULL &&
		 strcmp(xmpp_stanza_get_type(stanza), "error") == 0)
		log_debug("service: notification bounced from %s",
			  xmpp_stanza_get_from(stanza));
}
