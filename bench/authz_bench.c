/* Authorization decision times against a real IMAP server: cold (MYRIGHTS
 * round trip; first on a new proxy session, then on an open one) and warm
 * (from the cache).
 *   authz_bench CONFIG ACCOUNT NODE_PREFIX NMAILBOXES IDENTITY...
 * Mailboxes NODE_PREFIX0 .. NODE_PREFIX<N-1> of ACCOUNT must exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "authz/authz.h"
#include "base/config.h"
#include "imap/imap_client.h"
#include "base/log.h"
#include "store/store.h"

struct run {
	uv_loop_t *loop;
	struct authz *authz;
	char **jids;
	int njids;
	const char *account, *prefix;
	int nmailboxes;
	int pass;            /* 0 first contact, 1 cold on open sessions, 2 warm */
	int i;
	double *samples[3];
	int nsamples[3];
	long long t0;
	unsigned granted, denied, failed;
};

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void next(struct run *r);

static void decided(void *context, enum authz_result result)
{
	struct run *r = context;

	r->samples[r->pass][r->nsamples[r->pass]++] = (double)(now_ns() - r->t0) / 1000.0;
	if (result == AUTHZ_GRANTED)
		r->granted++;
	else if (result == AUTHZ_DENIED)
		r->denied++;
	else
		r->failed++;
	r->i++;
	next(r);
}

/* pass 0: one check per identity (opens its session); pass 1: every
 * (identity, mailbox) not yet asked; pass 2: all of them again, cached. */
static void next(struct run *r)
{
	int total = r->njids * r->nmailboxes;
	int per_pass[3] = { r->njids, total - r->njids, total };
	char node[256];
	int j, m;

	while (r->pass < 3 && r->i >= per_pass[r->pass]) {
		r->pass++;
		r->i = 0;
	}
	if (r->pass == 3)
		return;
	if (r->pass == 0) {
		j = r->i;
		m = 0;
	} else if (r->pass == 1) {
		j = r->i / (r->nmailboxes - 1);
		m = 1 + r->i % (r->nmailboxes - 1);
	} else {
		j = r->i / r->nmailboxes;
		m = r->i % r->nmailboxes;
	}
	snprintf(node, sizeof(node), "%s%d", r->prefix, m);
	r->t0 = now_ns();
	authz_check(r->authz, r->jids[j], r->account, node, decided, r);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, double *s, int n)
{
	double sum = 0;

	if (n == 0)
		return;
	qsort(s, (size_t)n, sizeof(*s), cmp);
	for (int i = 0; i < n; i++)
		sum += s[i];
	printf("%-34s n=%-5d mean=%9.1f us  p50=%9.1f us  p99=%9.1f us  max=%9.1f us\n",
	       what, n, sum / n, s[n / 2], s[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1],
	       s[n - 1]);
}

static void closed(void *context)
{
	(void)context;
}

int main(int argc, char **argv)
{
	struct run r = { 0 };
	struct config *config;
	struct store *store;
	struct imap_client *imap;
	const char *err;
	char cerr[CONFIG_ERROR_MAX];
	char dbpath[] = "/tmp/authz-bench-XXXXXX";
	int total;

	if (argc < 6) {
		fprintf(stderr, "usage: authz_bench CONFIG ACCOUNT NODE_PREFIX N IDENTITY-JID...\n");
		return 2;
	}
	log_open("authz_bench", false, LOG_LEVEL_ERROR);
	if (config_load(argv[1], &config, cerr, sizeof(cerr)) < 0) {
		fprintf(stderr, "%s\n", cerr);
		return 1;
	}
	if (mkdtemp(dbpath) == NULL) {
		perror(dbpath);
		return 1;
	}
	strcat(dbpath, "/db");
	r.loop = uv_default_loop();
	r.account = argv[2];
	r.prefix = argv[3];
	r.nmailboxes = atoi(argv[4]);
	r.jids = argv + 5;
	r.njids = argc - 5;
	total = r.njids * r.nmailboxes;
	for (int p = 0; p < 3; p++)
		r.samples[p] = calloc((size_t)total, sizeof(double));
	struct imap_settings set = {
		.host = config->imap_host, .port = (unsigned short)config->imap_port,
		.tls = IMAP_TLS_NONE, .verify = false,
		.admin_user = config->imap_admin_user, .password = config->imap_password,
		.mechanism = config->imap_mechanism, .timeout_ms = config->imap_timeout_ms,
		.max_sessions = (unsigned)r.njids + 1,
	};
	if (store_open(dbpath, false, &store, &err) < 0 ||
	    imap_client_new(r.loop, &set, &imap, &err) < 0 ||
	    authz_new(config, store, imap, &r.authz, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	next(&r);
	uv_run(r.loop, UV_RUN_DEFAULT);
	report("cold, new proxy session", r.samples[0], r.nsamples[0]);
	report("cold, open session (MYRIGHTS)", r.samples[1], r.nsamples[1]);
	report("warm (cache)", r.samples[2], r.nsamples[2]);
	printf("decisions: granted=%u denied=%u failed=%u\n", r.granted, r.denied, r.failed);
	imap_client_close(&imap, closed, NULL);
	uv_run(r.loop, UV_RUN_DEFAULT);
	authz_free(&r.authz);
	store_close(&store);
	config_free(&config);
	return r.failed == 0 ? 0 : 1;
}
