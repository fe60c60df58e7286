#include "ops/reload.h"

#include <string.h>

#include "authz/authz.h"
#include "publish/counts.h"
#include "ingest/discovery.h"
#include "downstream/firehose.h"
#include "base/log.h"
#include "handlers/service.h"

struct reload_tally {
	unsigned applied, restart;
};

static void log_change(void *context, const char *section, const char *name,
		       const char *was, const char *now, bool applied)
{
	struct reload_tally *t = context;

	if (strcmp(section, "account_map") == 0) {
		log_warn("reload: [account_map] changed: needs a restart");
		t->restart++;
	} else if (applied) {
		log_info("reload: [%s] %s = %s (was %s)", section, name, now, was);
		t->applied++;
	} else {
		log_warn("reload: [%s] %s changed (to %s): needs a restart; "
			 "still %s", section, name, now, was);
		t->restart++;
	}
}

/* What the modules hold beyond the configuration itself. */
static void apply_effects(struct service *service, const struct config *c,
			  unsigned old_acl_ttl)
{
	enum log_level level;

	if (log_level_parse(c->log_level, &level) == 0)
		log_set_level(level);
	if (c->acl_cache_ttl != old_acl_ttl && service->publish->authz != NULL)
		authz_forget_all(service->publish->authz);
	if (service->publish->counts != NULL)
		counts_reschedule(service->publish->counts);
	if (service->discovery != NULL)
		discovery_reschedule(service->discovery);
	if (service->publish->store != NULL)
		firehose_prune_subscribers(service->publish);
}

int reload_config(struct service *service, struct config *live, const char *path)
{
	struct reload_tally tally = { 0, 0 };
	unsigned old_acl_ttl = live->acl_cache_ttl;
	struct config *fresh;
	char error[CONFIG_ERROR_MAX];

	if (config_load(path, &fresh, error, sizeof(error)) < 0) {
		log_error("reload: %s; the running configuration is kept", error);
		return -1;
	}
	config_apply_reload(live, fresh, log_change, &tally);
	config_free(&fresh);
	apply_effects(service, live, old_acl_ttl);
	log_info("reload: %s read: %u change%s applied, %u waiting for a restart",
		 path, tally.applied, tally.applied == 1 ? "" : "s", tally.restart);
	return 0;
}
