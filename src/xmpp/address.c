#include "xmpp/address.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jid.h"

char *address_account_for_jid(const struct config *config, const char *jid)
{
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

bool address_is_domain(const struct config *config, const char *jid)
{
	char *local = jid_local(jid), *domain = jid_domain(jid);
	bool is = local != NULL && *local == '\0' && domain != NULL &&
		  strcmp(domain, config->component_domain) == 0;

	free(local);
	free(domain);
	return is;
}

char *address_jid_for_account(const struct config *config, const char *account)
{
	char *local, *out;

	if (*account == '\0')
		return strdup(config->shared_service);
	local = jid_escape_local(account);
	if (local == NULL)
		return NULL;
	if (asprintf(&out, "%s@%s", local, config->component_domain) < 0)
		out = NULL;
	free(local);
	return out;
}
