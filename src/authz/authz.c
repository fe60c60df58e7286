#include "authz/authz.h"

#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/jid.h"
#include "base/log.h"
#include "store/acl_cache.h"

struct authz {
	const struct config *config;
	struct store *store;
	struct imap_client *imap;
	/* [backends]: the IMAP server of each account; NULL: imap for all */
	const struct imap_backends *backends;
	/* bumped by every invalidation: an answer that was asked for before
	 * may describe the old ACL and is asked again instead of cached */
	unsigned long long generation;
	/* questions on their way to the store: the same question asked
	 * again meanwhile waits for the same answer (when a cached answer
	 * expires under a stream of events, each event would ask otherwise) */
	struct pending *inflight;
	struct authz_stats stats;
};

/* Someone waiting for a pending answer. */
struct waiter {
	struct waiter *next;
	struct waiter *next_logged;   /* see logged_before */
	char *jid;
	char required[16];
	authz_cb *cb;
	void *context;
	long long asked_us;            /* monotonic */
};

struct pending {
	struct pending *next;          /* in authz->inflight */
	struct authz *authz;
	char *identity, *account, *node;
	struct waiter *waiters, **last_waiter;
	unsigned long long generation;
	long long started_us;
	bool retried;
};

static long long mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int authz_new(const struct config *config, struct store *store,
	      struct imap_client *imap, struct authz **authz_r,
	      const char **error_r)
{
	struct authz *authz = calloc(1, sizeof(*authz));

	if (authz == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (acl_cache_init(store, error_r) < 0) {
		free(authz);
		return -1;
	}
	authz->config = config;
	authz->store = store;
	authz->imap = imap;
	*authz_r = authz;
	return 0;
}

void authz_free(struct authz **authz)
{
	free(*authz);
	*authz = NULL;
}

void authz_set_backends(struct authz *authz, const struct imap_backends *backends)
{
	authz->backends = backends;
}

const struct authz_stats *authz_stats(const struct authz *authz)
{
	return &authz->stats;
}

/* Every answer goes out through here, counted. */
static void decide(struct authz *authz, long long asked_us, authz_cb *cb,
		   void *context, enum authz_result result)
{
	authz->stats.decisions[result]++;
	stats_histogram_observe(&authz->stats.latency,
				  (double)(mono_us() - asked_us) / 1e6);
	cb(context, result);
}

/* Why a mapped identity (localpart, or localpart@identity_domain) may
 * not be derived from a JID, or NULL: mailpubsubd's own login and the
 * server's other admins, whose MYRIGHTS on any mailbox include l, are
 * reached through [account_map] or not at all. Servers compare login
 * names in any case. */
static const char *reserved_why(const struct config *config,
				const char *local, const char *identity)
{
	const char *admin = config->imap_admin_user;

	if (*admin != '\0' && (strcasecmp(local, admin) == 0 ||
				strcasecmp(identity, admin) == 0))
		return "names the IMAP admin_user";
	if (config_list_contains_folded(config->reserved_identities, local) ||
	    config_list_contains_folded(config->reserved_identities, identity))
		return "names a reserved IMAP identity";
	return NULL;
}

/* The localpart is the account as written: never XEP-0106 unescaped,
 * because "alice\\20" would become "alice ", which Cyrus trims to alice.
 * It must be an account name no server rewrites (jid_account_valid), and
 * not a reserved identity (reserved_why). */
static char *map_identity(const struct config *config, const char *bare,
			  const char **why_r)
{
	char *domain = jid_domain(bare), *local = jid_local(bare);
	char *identity = NULL;

	*why_r = NULL;
	if (domain == NULL || local == NULL || *local == '\0' ||
	    !config_list_contains(config->jid_domains, domain))
		*why_r = "JID not mapped to an IMAP identity";
	else if (!jid_account_valid(local, config->hierarchy_separator[0]))
		*why_r = "localpart is not an account name";
	else if (*config->identity_domain == '\0')
		identity = strdup(local);
	else if (asprintf(&identity, "%s@%s", local, config->identity_domain) < 0)
		identity = NULL;
	if (identity != NULL)
		*why_r = reserved_why(config, local, identity);
	if (*why_r != NULL) {
		free(identity);
		identity = NULL;
	}
	free(domain);
	free(local);
	return identity;
}

/* authz_identity, with why a JID is refused in *why_r. */
static char *identity_of(const struct authz *authz, const char *jid,
			 const char **why_r)
{
	const struct config *config = authz->config;
	char *bare = jid_bare(jid), *identity;

	*why_r = "malformed JID";
	if (bare == NULL)
		return NULL;
	/* an explicit mapping wins over the domain rule */
	for (unsigned i = 0; i < config->account_map_count; i++) {
		if (strcmp(config->account_map[i].jid, bare) == 0) {
			free(bare);
			return strdup(config->account_map[i].account);
		}
	}
	identity = map_identity(config, bare, why_r);
	free(bare);
	return identity;
}

char *authz_identity(const struct authz *authz, const char *jid)
{
	const char *why;

	return identity_of(authz, jid, &why);
}

static bool rights_allow(const char *rights, const char *required)
{
	for (const char *r = required; *r != '\0'; r++) {
		if (strchr(rights, *r) == NULL)
			return false;
	}
	return true;
}

static void log_decision(const char *jid, const char *identity,
			 const char *account, const char *node,
			 const char *rights, enum authz_result result,
			 const char *how)
{
	static const char *const names[] = { "granted", "denied", "temporary failure" };

	log_info("authz: jid=%s identity=%s mailbox=%s%s%s rights=%s -> %s (%s)",
		 jid, identity != NULL ? identity : "(unmapped)",
		 *account != '\0' ? account : "(shared)", node != NULL ? "/" : "",
		 node != NULL ? node : "", rights != NULL ? rights : "-",
		 names[result], how);
}

static int cache_get(struct authz *authz, const char *identity,
		     const char *account, const char *node, char *rights,
		     size_t size)
{
	return acl_cache_get(authz->store, identity, account, node, mono_us(), rights, size);
}

static void cache_put(struct authz *authz, const char *identity,
		      const char *account, const char *node, const char *rights)
{
	acl_cache_put(authz->store, identity, account, node, rights,
		      mono_us() + (long long)authz->config->acl_cache_ttl * 1000000);
}

void authz_invalidate(struct authz *authz, const char *account,
		      const char *node, bool subtree)
{
	authz->generation++;
	acl_cache_drop_mailbox(authz->store, account, node, subtree);
}

void authz_forget_all(struct authz *authz)
{
	authz->generation++;
	if (acl_cache_clear(authz->store) < 0)
		log_warn("authz: cannot empty the ACL cache");
}

static void pending_free(struct pending *p)
{
	while (p->waiters != NULL) {
		struct waiter *w = p->waiters;

		p->waiters = w->next;
		free(w->jid);
		free(w);
	}
	free(p->identity);
	free(p->account);
	free(p->node);
	free(p);
}

static void ask_store(struct pending *p);

/* Was the same (jid, rights) decision logged already for this answer?
 * After a restart several events and re-checks of one JID wait on one
 * question: one decision, one line. Only the distinct ones are compared
 * (`logged`, linked by next_logged), not every waiter: a storm may queue
 * thousands behind one question. */
static bool logged_before(const struct waiter *logged, const struct waiter *w)
{
	for (const struct waiter *e = logged; e != NULL; e = e->next_logged) {
		if (strcmp(e->jid, w->jid) == 0 && strcmp(e->required, w->required) == 0)
			return true;
	}
	return false;
}

/* The server holding account's mailboxes: only it knows their ACLs. */
static struct imap_client *client_for(const struct authz *authz, const char *account)
{
	return imap_backends_pick(authz->backends, account, authz->imap);
}

static void rights_answered(void *ctx, enum imap_result r, const char *rights)
{
	struct pending *p = ctx;
	struct authz *authz = p->authz;
	struct waiter *logged = NULL;
	char how[64];

	if (r == IMAP_OK && p->generation != authz->generation && !p->retried) {
		/* the ACL changed while we asked: the answer may be the old one */
		p->retried = true;
		ask_store(p);
		return;
	}
	snprintf(how, sizeof(how), "imap %.1f ms",
		 (double)(mono_us() - p->started_us) / 1000.0);
	if (r == IMAP_OK) {
		cache_put(authz, p->identity, p->account, p->node, rights);
	} else if (r == IMAP_NO) {
		/* no such mailbox, or not even `l`: both mean no */
		cache_put(authz, p->identity, p->account, p->node, "");
		rights = "";
	} else {
		acl_cache_drop(authz->store, p->identity, p->account, p->node);
		rights = NULL;
		snprintf(how, sizeof(how), "imap: %s",
			 imap_client_last_error(client_for(authz, p->account)));
	}
	/* off the in-flight list first: a callback may ask again */
	for (struct pending **q = &authz->inflight; *q != NULL; q = &(*q)->next) {
		if (*q == p) {
			*q = p->next;
			break;
		}
	}
	for (struct waiter *w = p->waiters; w != NULL; w = w->next) {
		enum authz_result result = rights == NULL ? AUTHZ_TEMPFAIL :
					   rights_allow(rights, w->required) ?
					   AUTHZ_GRANTED : AUTHZ_DENIED;

		if (!logged_before(logged, w)) {
			log_decision(w->jid, p->identity, p->account, p->node, rights,
				     result, how);
			w->next_logged = logged;
			logged = w;
		}
		decide(authz, w->asked_us, w->cb, w->context, result);
	}
	pending_free(p);
}

static void ask_store(struct pending *p)
{
	p->generation = p->authz->generation;
	p->started_us = mono_us();
	imap_client_myrights(client_for(p->authz, p->account), p->identity, p->account,
			     p->node, rights_answered, p);
}

/* The same question, asked since the ACL last changed, still unanswered. */
static struct pending *find_inflight(struct authz *authz, const char *identity,
				     const char *account, const char *node)
{
	for (struct pending *p = authz->inflight; p != NULL; p = p->next) {
		if (p->generation == authz->generation &&
		    strcmp(p->identity, identity) == 0 &&
		    strcmp(p->account, account) == 0 && strcmp(p->node, node) == 0)
			return p;
	}
	return NULL;
}

static void check_with_store(struct authz *authz, const char *jid,
			     char *identity, const char *account,
			     const char *node, const char *required,
			     bool ask_again_if_denied, authz_cb *cb,
			     void *context, long long asked_us)
{
	struct pending *p;
	struct waiter *w;
	char rights[64];

	if (cache_get(authz, identity, account, node, rights, sizeof(rights))) {
		enum authz_result result = rights_allow(rights, required) ?
					   AUTHZ_GRANTED : AUTHZ_DENIED;

		if (result == AUTHZ_GRANTED || !ask_again_if_denied) {
			authz->stats.cache_hits++;
			log_decision(jid, identity, account, node, rights, result,
				     "cached");
			free(identity);
			decide(authz, asked_us, cb, context, result);
			return;
		}
	}
	authz->stats.cache_misses++;
	w = calloc(1, sizeof(*w));
	if (w == NULL || (w->jid = strdup(jid)) == NULL) {
		free(w);
		free(identity);
		decide(authz, asked_us, cb, context, AUTHZ_TEMPFAIL);
		return;
	}
	snprintf(w->required, sizeof(w->required), "%s", required);
	w->cb = cb;
	w->context = context;
	w->asked_us = asked_us;
	p = find_inflight(authz, identity, account, node);
	if (p != NULL) {
		free(identity);
		*p->last_waiter = w;
		p->last_waiter = &w->next;
		return;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		free(identity);
		free(w->jid);
		free(w);
		decide(authz, asked_us, cb, context, AUTHZ_TEMPFAIL);
		return;
	}
	p->authz = authz;
	p->identity = identity;
	p->account = strdup(account);
	p->node = strdup(node);
	p->waiters = w;
	p->last_waiter = &w->next;
	p->next = authz->inflight;
	authz->inflight = p;
	ask_store(p);
}

static void check(struct authz *authz, const char *jid, const char *account,
		  const char *node, const char *required,
		  bool ask_again_if_denied, authz_cb *cb, void *context)
{
	const char *how;
	char *identity = identity_of(authz, jid, &how);
	long long asked_us = mono_us();
	enum authz_result result;

	if (identity == NULL) {
		result = AUTHZ_DENIED;
	} else if (node == NULL) {
		/* the account service's own listing: its owner's */
		result = *account != '\0' && strcmp(identity, account) == 0 ?
			 AUTHZ_GRANTED : AUTHZ_DENIED;
		how = "account listing";
	} else if (authz->imap != NULL) {
		check_with_store(authz, jid, identity, account, node, required,
				 ask_again_if_denied, cb, context, asked_us);
		return;
	} else {
		result = *account != '\0' && strcmp(identity, account) == 0 ?
			 AUTHZ_GRANTED : AUTHZ_DENIED;
		how = "owner-only policy";
	}
	log_decision(jid, identity, account, node, NULL, result, how);
	free(identity);
	decide(authz, asked_us, cb, context, result);
}

void authz_check(struct authz *authz, const char *jid, const char *account,
		 const char *node, authz_cb *cb, void *context)
{
	check(authz, jid, account, node, "lr", false, cb, context);
}

void authz_check_request(struct authz *authz, const char *jid,
			 const char *account, const char *node,
			 authz_cb *cb, void *context)
{
	check(authz, jid, account, node, "lr", true, cb, context);
}

void authz_check_rights(struct authz *authz, const char *jid,
			const char *account, const char *node,
			const char *required, authz_cb *cb, void *context)
{
	check(authz, jid, account, node, required, false, cb, context);
}

enum authz_result authz_cached_rights(struct authz *authz, const char *jid,
				      const char *account, const char *node,
				      const char *required)
{
	char *identity = authz_identity(authz, jid);
	enum authz_result result = AUTHZ_TEMPFAIL;
	char rights[64];

	if (identity == NULL)
		return AUTHZ_DENIED;
	if (authz->imap == NULL)
		result = *account != '\0' && strcmp(identity, account) == 0 ?
			 AUTHZ_GRANTED : AUTHZ_DENIED;
	else if (cache_get(authz, identity, account, node, rights, sizeof(rights)))
		result = rights_allow(rights, required) ? AUTHZ_GRANTED : AUTHZ_DENIED;
	free(identity);
	return result;
}

enum authz_result authz_cached(struct authz *authz, const char *jid,
			       const char *account, const char *node)
{
	return authz_cached_rights(authz, jid, account, node, "lr");
}
