#include "handlers/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xml_escape.h"
#include "publish/item.h"

xmpp_ctx_t *service_xmpp_ctx(const struct service *service)
{
	return component_xmpp_ctx(service->publish->component);
}

void service_send_release(struct service *service, xmpp_stanza_t *reply)
{
	const char *type = xmpp_stanza_get_type(reply);

	if (type != NULL && strcmp(type, "error") == 0)
		service->publish->stats.iq_errors++;
	component_send(service->publish->component, reply);
	xmpp_stanza_release(reply);
}

void service_reply_error(struct service *service, xmpp_stanza_t *iq,
			 enum pubsub_error error, const char *feature)
{
	service_send_release(service, pubsub_error_reply(service_xmpp_ctx(service), iq,
							 error, feature));
}

void service_reply_stanza_error(struct service *service, xmpp_stanza_t *iq,
				const char *type, const char *condition)
{
	service_send_release(service, pubsub_error_stanza_reply(service_xmpp_ctx(service),
								iq, type, condition));
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
		component_send_raw(service->publish->component, out, strlen(out));
		free(out);
	}
	free(id);
	free(to);
	free(from);
}
