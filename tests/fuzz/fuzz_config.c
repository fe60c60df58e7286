/* libFuzzer target: mailpubsub.conf (src/base/config.c over libinih). The input
 * is written to one temp file per process and loaded; a loaded config is
 * also dumped (to /dev/null) so every option's formatting runs. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[4096];
static FILE *devnull;

static void cleanup(void)
{
	if (path[0] != '\0')
		unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	int fd;

	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_ERROR);
	snprintf(path, sizeof(path), "%s/fuzz-config-XXXXXX.conf",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	fd = mkstemps(path, 5);
	if (fd < 0) {
		perror("fuzz_config: mkstemps");
		abort();
	}
	close(fd);
	atexit(cleanup);
	/* secret_file = /dev/stdin must not block the fuzzer */
	if (freopen("/dev/null", "r", stdin) == NULL)
		abort();
	devnull = fopen("/dev/null", "w");
	if (devnull == NULL)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "w");
	struct config *config = NULL;
	char error[CONFIG_ERROR_MAX] = "";

	if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size)) {
		perror("fuzz_config: write");
		abort();
	}
	fclose(f);
	if (config_load(path, &config, error, sizeof(error)) < 0) {
		if (error[0] == '\0' || config != NULL)
			abort();
		return 0;
	}
	if (config->component_domain == NULL || *config->component_domain == '\0' ||
	    config->shared_service == NULL || *config->shared_service == '\0' ||
	    config->items_per_node == 0)
		abort();   /* validate() promises these */
	config_dump(config, devnull);
	(void)config_list_contains(config->suppress_events, "MailboxModseq");
	(void)config_list_contains(config->jid_domains, "example.org");
	config_free(&config);
	return 0;
}
