#include "authz.h"

#include <stdlib.h>
#include <string.h>

#include "jid.h"
#include "log.h"

struct authz {
	const struct config *config;
};

int authz_new(const struct config *config, struct authz **authz_r,
	      const char **error_r)
{
	struct authz *authz = calloc(1, sizeof(*authz));

	if (authz == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	authz->config = config;
	*authz_r = authz;
	return 0;
}

void authz_free(struct authz **authz)
{
	free(*authz);
	*authz = NULL;
}

char *authz_identity(const struct authz *authz, const char *jid)
{
	const struct config *config = authz->config;
	char *bare = jid_bare(jid);
	char *domain, *local, *identity = NULL;

	if (bare == NULL)
		return NULL;
	/* an explicit mapping wins over the domain rule */
	for (unsigned i = 0; i < config->account_map_count; i++) {
		if (strcmp(config->account_map[i].jid, bare) == 0) {
			free(bare);
			return strdup(config->account_map[i].account);
		}
	}
	domain = jid_domain(bare);
	local = jid_local(bare);
	if (domain != NULL && local != NULL && *local != '\0' &&
	    config_list_contains(config->jid_domains, domain))
		identity = jid_unescape_local(local);
	free(domain);
	free(local);
	free(bare);
	return identity;
}

void authz_check(struct authz *authz, const char *jid, const char *account,
		 const char *node, authz_cb *cb, void *context)
{
	char *identity = authz_identity(authz, jid);
	enum authz_result result;

	if (identity == NULL)
		result = AUTHZ_DENIED;
	else if (*account != '\0' && strcmp(identity, account) == 0)
		result = AUTHZ_GRANTED;
	else
		result = AUTHZ_DENIED;
	log_info("authz: jid=%s identity=%s account=%s mailbox=%s rights=%s -> %s",
		 jid, identity != NULL ? identity : "(unmapped)",
		 *account != '\0' ? account : "(shared)", node != NULL ? node : "",
		 result == AUTHZ_GRANTED ? "owner" : "none",
		 result == AUTHZ_GRANTED ? "granted" : "denied");
	free(identity);
	cb(context, result);
}
