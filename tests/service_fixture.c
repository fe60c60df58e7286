/* See service_fixture.h. */
#include "service_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "authz/authz.h"
#include "base/config.h"
#include "publish/delivery.h"
#include "fuzz/fake_component.h"
#include "store/store.h"

static const char base_config[] =
	"[component]\n"
	"domain = events.localhost\n"
	"secret = s\n"
	"[cyrus]\n"
	"hierarchy_separator = /\n"
	"[pubsub]\n"
	"shared_service = shared.events.localhost\n"
	"[accounts]\n"
	"jid_domains = localhost\n";

struct service_fixture *service_fixture_new(const char *extra_config, void *imap)
{
	struct service_fixture *f = calloc(1, sizeof(*f));
	const char *err = "?";
	FILE *c;

	assert_non_null(f);
	strcpy(f->dir, "/tmp/mps-handlers-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/db", f->dir);
	snprintf(f->conf, sizeof(f->conf), "%s/conf", f->dir);
	c = fopen(f->conf, "w");
	assert_non_null(c);
	fprintf(c, "%s%s", base_config, extra_config);
	fclose(c);
	{
		char cerr[CONFIG_ERROR_MAX];

		assert_int_equal(config_load(f->conf, &f->config, cerr, sizeof(cerr)), 0);
	}
	f->ctx = xmpp_ctx_new(NULL, NULL);
	assert_non_null(f->ctx);
	f->publish.config = f->config;
	f->publish.component = fake_component_new(f->ctx);
	fake_component_record(f->publish.component, true);
	assert_int_equal(store_open(f->db, false, &f->publish.store, &err), 0);
	assert_int_equal(authz_new(f->config, f->publish.store, imap,
				   &f->publish.authz, &err), 0);
	assert_int_equal(delivery_new(&f->publish, &f->publish.delivery, &err), 0);
	f->service.publish = &f->publish;
	return f;
}

void service_fixture_free(struct service_fixture **fp)
{
	struct service_fixture *f = *fp;
	char cmd[128];

	delivery_free(&f->publish.delivery);
	authz_free(&f->publish.authz);
	store_close(&f->publish.store);
	fake_component_free(&f->publish.component);
	xmpp_ctx_free(f->ctx);
	config_free(&f->config);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	*fp = NULL;
}

xmpp_stanza_t *service_fixture_stanza(struct service_fixture *f, const char *text)
{
	xmpp_stanza_t *s = xmpp_stanza_new_from_string(f->ctx, text);

	assert_non_null(s);
	return s;
}

const char *service_fixture_last_sent(struct service_fixture *f)
{
	size_t n = fake_component_count(f->publish.component);

	return n > 0 ? fake_component_sent(f->publish.component, n - 1) : NULL;
}
