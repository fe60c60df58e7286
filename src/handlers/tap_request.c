#include "handlers/tap_request.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/xml_escape.h"
#include "downstream/tap.h"
#include "handlers/disco.h"
#include "handlers/service.h"
#include "publish/item.h"

#define DATA_NS "jabber:x:data"

static const struct {
	const char *node;
	const char *name;
} commands[] = {
	{ "tap-add", "Add an interception tap" },
	{ "tap-list", "List interception taps" },
	{ "tap-remove", "Remove an interception tap" },
};

static bool is_admin(const struct service *service, const char *from, char *bare, size_t size)
{
	bare[0] = '\0';
	if (from == NULL)
		return false;
	snprintf(bare, size, "%.*s", (int)strcspn(from, "/"), from);
	return config_list_contains(service->publish->config->tap_admins, bare);
}

void tap_request_disco_items(struct service *service, xmpp_stanza_t *iq,
			     xmpp_stanza_t *query)
{
	char bare[1024], *body = NULL, *items = strdup(""), *grown;
	const char *domain = service->publish->config->component_domain;

	(void)query;   /* the route matched its node */
	if (items == NULL)
		return;
	if (is_admin(service, xmpp_stanza_get_from(iq), bare, sizeof(bare))) {
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
			if (asprintf(&grown, "%s<item jid='%s' node='%s' name='%s'/>", items,
				     domain, commands[i].node, commands[i].name) < 0)
				break;
			free(items);
			items = grown;
		}
	}
	if (asprintf(&body, "<query xmlns='" DISCO_ITEMS_NS "' node='" COMMANDS_NS "'>%s</query>",
		     items) >= 0) {
		service_send_result_raw(service, iq, body);
		free(body);
	}
	free(items);
}

/* The values of field var in form x, joined by spaces; newly allocated
 * ("" when absent). */
static char *field_value(xmpp_stanza_t *x, const char *var)
{
	char *out = strdup(""), *grown;

	for (xmpp_stanza_t *f = x != NULL ? xmpp_stanza_get_children(x) : NULL; f != NULL && out != NULL;
	     f = xmpp_stanza_get_next(f)) {
		const char *v = xmpp_stanza_is_tag(f) ? xmpp_stanza_get_attribute(f, "var") : NULL;

		if (v == NULL || strcmp(xmpp_stanza_get_name(f), "field") != 0 ||
		    strcmp(v, var) != 0)
			continue;
		for (xmpp_stanza_t *val = xmpp_stanza_get_children(f); val != NULL;
		     val = xmpp_stanza_get_next(val)) {
			char *text;

			if (!xmpp_stanza_is_tag(val) || strcmp(xmpp_stanza_get_name(val), "value") != 0)
				continue;
			text = xmpp_stanza_get_text(val);
			if (text == NULL)
				continue;
			if (asprintf(&grown, "%s%s%s", out, *out != '\0' ? " " : "", text) < 0)
				grown = NULL;
			xmpp_free(xmpp_stanza_get_context(val), text);
			free(out);
			out = grown;
			if (out == NULL)
				break;
		}
	}
	return out;
}

static void session_id(char out[33])
{
	unsigned char rnd[16];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", rnd[i]);
}

static void command_reply(struct service *service, xmpp_stanza_t *iq, const char *node,
			  const char *sid, const char *status, const char *inner)
{
	char *body;

	if (asprintf(&body, "<command xmlns='" COMMANDS_NS "' node='%s' sessionid='%s'"
		     " status='%s'>%s</command>", node, sid, status, inner) < 0)
		return;
	service_send_result_raw(service, iq, body);
	free(body);
}

static void cmd_add(struct service *service, xmpp_stanza_t *iq, const char *sid,
		    xmpp_stanza_t *x, const char *by)
{
	char *target, *auth, *nb, *na, *ref, *inner;
	struct tap t = { 0 };
	const char *error;
	long long id, now = clock_now_us();

	if (x == NULL) {
		command_reply(service, iq, "tap-add", sid, "executing",
			"<actions execute='complete'><complete/></actions>"
			"<x xmlns='" DATA_NS "' type='form'><title>Add an interception tap</title>"
			"<field var='target' type='text-single' label='Account, or address"
			" (sender or recipient)'><required/></field>"
			"<field var='authorities' type='jid-multi' label='Authority JIDs'>"
			"<required/></field>"
			"<field var='not_before' type='text-single' label='Valid from (ISO 8601"
			" UTC; empty: now)'/>"
			"<field var='not_after' type='text-single' label='Valid until (ISO 8601"
			" UTC)'><required/></field>"
			"<field var='reference' type='text-single' label='Reference (warrant"
			" id)'><required/></field></x>");
		return;
	}
	target = field_value(x, "target");
	auth = field_value(x, "authorities");
	nb = field_value(x, "not_before");
	na = field_value(x, "not_after");
	ref = field_value(x, "reference");
	if (target == NULL || auth == NULL || nb == NULL || na == NULL || ref == NULL) {
		service_reply_stanza_error(service, iq, "wait", "internal-server-error");
		goto out;
	}
	t.target = target;
	t.authorities = auth;
	t.reference = ref;
	t.not_before_us = *nb != '\0' ? tap_parse_time_us(nb) : now;
	t.not_after_us = tap_parse_time_us(na);
	if (tap_add(service->publish->store, &t, by, now, &id, &error) < 0) {
		log_info("tap: add by %s refused: %s", by, error);
		service_reply_stanza_error(service, iq, "modify", "bad-request");
		goto out;
	}
	if (asprintf(&inner, "<note type='info'>tap %lld added</note>"
		     "<x xmlns='" DATA_NS "' type='result'><field var='id'><value>%lld</value>"
		     "</field></x>", id, id) >= 0) {
		command_reply(service, iq, "tap-add", sid, "completed", inner);
		free(inner);
	}
out:
	free(target);
	free(auth);
	free(nb);
	free(na);
	free(ref);
}

static void cmd_list(struct service *service, xmpp_stanza_t *iq, const char *sid)
{
	static const char *const fields[] = { "id", "target", "authorities", "not_before",
					      "not_after", "reference", "active" };
	char *text = tap_list_json(service->publish->store, clock_now_us());
	json_t *arr = text != NULL ? json_loads(text, 0, NULL) : NULL;
	char *xml = NULL;
	size_t len = 0, i;
	json_t *tap;
	FILE *f = open_memstream(&xml, &len);

	free(text);
	if (arr == NULL || f == NULL) {
		if (f != NULL)
			fclose(f);
		free(xml);
		json_decref(arr);
		service_reply_stanza_error(service, iq, "wait", "internal-server-error");
		return;
	}
	fputs("<x xmlns='" DATA_NS "' type='result'><title>Interception taps</title><reported>", f);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		fprintf(f, "<field var='%s'/>", fields[i]);
	fputs("</reported>", f);
	json_array_foreach(arr, i, tap) {
		fputs("<item>", f);
		for (size_t j = 0; j < sizeof(fields) / sizeof(fields[0]); j++) {
			json_t *v = json_object_get(tap, fields[j]);
			char *s = json_is_string(v) ? xml_escape(json_string_value(v)) :
				  json_dumps(v, JSON_ENCODE_ANY);

			fprintf(f, "<field var='%s'><value>%s</value></field>", fields[j],
				s != NULL ? s : "");
			free(s);
		}
		fputs("</item>", f);
	}
	fputs("</x>", f);
	fclose(f);
	json_decref(arr);
	command_reply(service, iq, "tap-list", sid, "completed", xml);
	free(xml);
}

static void cmd_remove(struct service *service, xmpp_stanza_t *iq, const char *sid,
		       xmpp_stanza_t *x, const char *by)
{
	const char *error;
	char *id, note[64];

	if (x == NULL) {
		command_reply(service, iq, "tap-remove", sid, "executing",
			"<actions execute='complete'><complete/></actions>"
			"<x xmlns='" DATA_NS "' type='form'><title>Remove an interception tap</title>"
			"<field var='id' type='text-single' label='Tap id'><required/></field></x>");
		return;
	}
	id = field_value(x, "id");
	if (id == NULL || *id == '\0' || strspn(id, "0123456789") != strlen(id)) {
		free(id);
		service_reply_stanza_error(service, iq, "modify", "bad-request");
		return;
	}
	if (tap_remove(service->publish->store, atoll(id), by, clock_now_us(), &error) < 0) {
		free(id);
		service_reply_stanza_error(service, iq, "cancel", "item-not-found");
		return;
	}
	snprintf(note, sizeof(note), "<note type='info'>tap %lld removed</note>", atoll(id));
	free(id);
	command_reply(service, iq, "tap-remove", sid, "completed", note);
}

void tap_request_command(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *command)
{
	const char *node = xmpp_stanza_get_attribute(command, "node");
	const char *action = xmpp_stanza_get_attribute(command, "action");
	const char *given_sid = xmpp_stanza_get_attribute(command, "sessionid");
	xmpp_stanza_t *x = xmpp_stanza_get_child_by_name_and_ns(command, "x", DATA_NS);
	char bare[1024], sid[33];

	if (!is_admin(service, xmpp_stanza_get_from(iq), bare, sizeof(bare))) {
		log_info("tap: command %s from %s refused: not a [taps] admin",
			 node != NULL ? node : "-", bare);
		service_reply_stanza_error(service, iq, "auth", "forbidden");
		return;
	}
	if (node == NULL || strcmp(xmpp_stanza_get_type(iq), "set") != 0) {
		service_reply_stanza_error(service, iq, "modify", "bad-request");
		return;
	}
	if (strcmp(node, "tap-add") != 0 && strcmp(node, "tap-list") != 0 &&
	    strcmp(node, "tap-remove") != 0) {
		service_reply_stanza_error(service, iq, "cancel", "item-not-found");
		return;
	}
	if (given_sid != NULL && strlen(given_sid) == 32 &&
	    strspn(given_sid, "0123456789abcdef") == 32)
		snprintf(sid, sizeof(sid), "%s", given_sid);
	else
		session_id(sid);
	if (x != NULL) {
		const char *type = xmpp_stanza_get_type(x);

		if (type == NULL || strcmp(type, "submit") != 0)
			x = NULL;
	}
	if (action != NULL && strcmp(action, "cancel") == 0) {
		command_reply(service, iq, node, sid, "canceled", "");
		return;
	}
	if (strcmp(node, "tap-add") == 0)
		cmd_add(service, iq, sid, x, bare);
	else if (strcmp(node, "tap-list") == 0)
		cmd_list(service, iq, sid);
	else if (strcmp(node, "tap-remove") == 0)
		cmd_remove(service, iq, sid, x, bare);
}
