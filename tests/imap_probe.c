/* imap_probe: a small command line client over src/imap/imap_client.h, used by
 * tests/integration/test_imap_client.py and for poking a real server.
 *
 *   imap_probe [options] HOST PORT ADMIN PASSWORD COMMAND...
 *
 * COMMAND is one or more of
 *   myrights IDENTITY ACCOUNT NODE
 *   list ACCOUNT
 *   status ACCOUNT NODE
 *   sleep MS                 (sequential mode only: lets a test restart the server)
 * run one after the other on one client (sessions are reused), or all at
 * once with --parallel. One result line per command on stdout:
 *   OK <rights> | OK<TAB>node<TAB>node... | OK messages=.. unseen=.. ...
 *   NO | TEMPFAIL <reason>
 * Exit status: 0 all OK, 1 some NO, 2 some TEMPFAIL, 64 usage.
 *
 * Options: --tls none|starttls|imaps, --ca FILE, --no-verify, --mech MECH,
 * --timeout MS, --max-sessions N, --repeat N (repeat the command list,
 * durations on stderr), --parallel, --close-after MS (close the client
 * then, whatever is still running), -v (debug log on stderr). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "imap/imap_client.h"
#include "base/log.h"

enum cmd_kind { CMD_MYRIGHTS, CMD_LIST, CMD_STATUS, CMD_SLEEP };

struct cmd {
	enum cmd_kind kind;
	const char *arg[3];
	char *line;               /* result line */
	enum imap_result result;
	uint64_t started;
};

static struct {
	uv_loop_t *loop;
	struct imap_client *client;
	struct cmd *cmds;
	size_t n_cmds, next, pending;
	unsigned repeat, round;
	bool parallel, timing;
	uv_timer_t sleep_timer, close_timer;
	uint64_t close_after;
	bool closed;
	int exit_code;
} P;

static void usage(void)
{
	fprintf(stderr,
		"usage: imap_probe [--tls none|starttls|imaps] [--ca FILE] [--no-verify]\n"
		"                  [--mech MECH] [--timeout MS] [--max-sessions N]\n"
		"                  [--repeat N] [--parallel] [--close-after MS] [-v]\n"
		"                  HOST PORT ADMIN PASSWORD COMMAND...\n"
		"COMMAND: myrights IDENTITY ACCOUNT NODE | list ACCOUNT |\n"
		"         status ACCOUNT NODE | sleep MS\n");
	exit(64);
}

static void start_next(void);

static void set_line(struct cmd *cmd, enum imap_result r, char *ok_line)
{
	free(cmd->line);
	cmd->result = r;
	if (r == IMAP_OK) {
		cmd->line = ok_line;
		return;
	}
	free(ok_line);
	if (r == IMAP_NO) {
		cmd->line = strdup("NO");
	} else {
		const char *why = P.client != NULL ? imap_client_last_error(P.client) :
				  "client closed";

		if (asprintf(&cmd->line, "TEMPFAIL %s", why) < 0)
			cmd->line = NULL;
		fprintf(stderr, "imap_probe: TEMPFAIL: %s\n", why);
	}
}

static void finished(struct cmd *cmd)
{
	if (P.timing)
		fprintf(stderr, "imap_probe: round %u %s %s: %.3f ms\n", P.round + 1,
			cmd->kind == CMD_MYRIGHTS ? "myrights" :
			cmd->kind == CMD_LIST ? "list" : "status",
			cmd->arg[0], (double)(uv_hrtime() - cmd->started) / 1e6);
	P.pending--;
	if (P.pending == 0 || !P.parallel)
		start_next();
}

static void on_myrights(void *ctx, enum imap_result r, const char *rights)
{
	struct cmd *cmd = ctx;
	char *line = NULL;

	if (r == IMAP_OK && asprintf(&line, "OK %s", rights) < 0)
		line = NULL;
	set_line(cmd, r, line);
	finished(cmd);
}

static void on_list(void *ctx, enum imap_result r, char **nodes, size_t n)
{
	struct cmd *cmd = ctx;
	size_t len = 3;
	char *line = NULL;

	if (r == IMAP_OK) {
		for (size_t i = 0; i < n; i++)
			len += strlen(nodes[i]) + 1;
		line = malloc(len);
		if (line != NULL) {
			strcpy(line, "OK");
			for (size_t i = 0; i < n; i++) {
				strcat(line, "\t");
				strcat(line, nodes[i]);
			}
		}
	}
	set_line(cmd, r, line);
	finished(cmd);
}

static void on_status(void *ctx, enum imap_result r, const struct imap_status *st)
{
	struct cmd *cmd = ctx;
	char *line = NULL;

	if (r == IMAP_OK &&
	    asprintf(&line, "OK messages=%u unseen=%u uidnext=%u uidvalidity=%u "
		     "highestmodseq=%llu", st->messages, st->unseen, st->uidnext,
		     st->uidvalidity, (unsigned long long)st->highestmodseq) < 0)
		line = NULL;
	set_line(cmd, r, line);
	finished(cmd);
}

static void on_sleep_done(uv_timer_t *t)
{
	(void)t;
	P.pending--;
	start_next();
}

static void on_closed(void *ctx)
{
	(void)ctx;
	uv_close((uv_handle_t *)&P.sleep_timer, NULL);
	uv_close((uv_handle_t *)&P.close_timer, NULL);
}

static void close_client(void)
{
	if (P.closed)
		return;
	P.closed = true;
	imap_client_close(&P.client, on_closed, NULL);
}

static void on_close_timer(uv_timer_t *t)
{
	(void)t;
	close_client();
}

static void start_cmd(struct cmd *cmd)
{
	P.pending++;
	cmd->started = uv_hrtime();
	switch (cmd->kind) {
	case CMD_MYRIGHTS:
		imap_client_myrights(P.client, cmd->arg[0], cmd->arg[1], cmd->arg[2],
				     on_myrights, cmd);
		break;
	case CMD_LIST:
		imap_client_list(P.client, cmd->arg[0], on_list, cmd);
		break;
	case CMD_STATUS:
		imap_client_status(P.client, cmd->arg[0], cmd->arg[1], on_status, cmd);
		break;
	case CMD_SLEEP:
		uv_timer_start(&P.sleep_timer, on_sleep_done,
			       strtoull(cmd->arg[0], NULL, 10), 0);
		break;
	}
}

static void start_next(void)
{
	if (P.closed)
		return;
	if (P.next == P.n_cmds) {
		if (P.pending > 0)
			return;
		if (++P.round < P.repeat) {
			P.next = 0;
		} else {
			close_client();
			return;
		}
	}
	if (P.parallel) {
		while (P.next < P.n_cmds)
			start_cmd(&P.cmds[P.next++]);
	} else {
		start_cmd(&P.cmds[P.next++]);
	}
}

int main(int argc, char **argv)
{
	struct imap_settings set = { .tls = IMAP_TLS_NONE, .verify = true,
				     .timeout_ms = 5000 };
	enum log_level level = LOG_LEVEL_WARN;
	const char *error;
	int i = 1;

	P.repeat = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *opt = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(opt, "-v") == 0) {
			level = LOG_LEVEL_DEBUG;
			continue;
		}
		if (strcmp(opt, "--no-verify") == 0) {
			set.verify = false;
			continue;
		}
		if (strcmp(opt, "--parallel") == 0) {
			P.parallel = true;
			continue;
		}
		if (val == NULL)
			usage();
		i++;
		if (strcmp(opt, "--tls") == 0) {
			if (strcmp(val, "none") == 0)
				set.tls = IMAP_TLS_NONE;
			else if (strcmp(val, "starttls") == 0)
				set.tls = IMAP_TLS_STARTTLS;
			else if (strcmp(val, "imaps") == 0)
				set.tls = IMAP_TLS_IMAPS;
			else
				usage();
		} else if (strcmp(opt, "--ca") == 0) {
			set.ca_file = val;
		} else if (strcmp(opt, "--mech") == 0) {
			set.mechanism = val;
		} else if (strcmp(opt, "--timeout") == 0) {
			set.timeout_ms = (unsigned)strtoul(val, NULL, 10);
		} else if (strcmp(opt, "--close-after") == 0) {
			P.close_after = strtoull(val, NULL, 10);
		} else if (strcmp(opt, "--max-sessions") == 0) {
			set.max_sessions = (unsigned)strtoul(val, NULL, 10);
		} else if (strcmp(opt, "--repeat") == 0) {
			P.repeat = (unsigned)strtoul(val, NULL, 10);
			P.timing = true;
			if (P.repeat == 0)
				usage();
		} else {
			usage();
		}
	}
	if (argc - i < 5)
		usage();
	set.host = argv[i++];
	set.port = (unsigned short)strtoul(argv[i++], NULL, 10);
	set.admin_user = argv[i++];
	set.password = argv[i++];

	P.cmds = calloc((size_t)(argc - i), sizeof(*P.cmds));
	if (P.cmds == NULL)
		return 2;
	while (i < argc) {
		struct cmd *cmd = &P.cmds[P.n_cmds++];
		const char *name = argv[i++];
		int nargs;

		if (strcmp(name, "myrights") == 0) {
			cmd->kind = CMD_MYRIGHTS;
			nargs = 3;
		} else if (strcmp(name, "list") == 0) {
			cmd->kind = CMD_LIST;
			nargs = 1;
		} else if (strcmp(name, "status") == 0) {
			cmd->kind = CMD_STATUS;
			nargs = 2;
		} else if (strcmp(name, "sleep") == 0) {
			cmd->kind = CMD_SLEEP;
			nargs = 1;
		} else {
			usage();
		}
		if (argc - i < nargs)
			usage();
		for (int k = 0; k < nargs; k++)
			cmd->arg[k] = argv[i++];
	}
	if (P.parallel) {
		for (size_t k = 0; k < P.n_cmds; k++) {
			if (P.cmds[k].kind == CMD_SLEEP)
				usage();
		}
	}

	log_open("imap_probe", false, level);
	P.loop = uv_default_loop();
	uv_timer_init(P.loop, &P.sleep_timer);
	uv_timer_init(P.loop, &P.close_timer);
	if (imap_client_new(P.loop, &set, &P.client, &error) < 0) {
		fprintf(stderr, "imap_probe: %s\n", error);
		return 2;
	}
	if (P.close_after > 0)
		uv_timer_start(&P.close_timer, on_close_timer, P.close_after, 0);
	start_next();
	uv_run(P.loop, UV_RUN_DEFAULT);
	uv_loop_close(P.loop);

	for (size_t k = 0; k < P.n_cmds; k++) {
		struct cmd *cmd = &P.cmds[k];

		if (cmd->kind == CMD_SLEEP)
			continue;
		printf("%s\n", cmd->line != NULL ? cmd->line : "TEMPFAIL not run");
		if (cmd->result == IMAP_TEMPFAIL)
			P.exit_code = 2;
		else if (cmd->result == IMAP_NO && P.exit_code == 0)
			P.exit_code = 1;
		free(cmd->line);
	}
	free(P.cmds);
	log_close();
	return P.exit_code;
}
