/* A store in a fresh temp directory for a cmocka test: the setup and
 * teardown functions take a struct temp_store as the test state. */
#ifndef MAILPUBSUB_TEMP_STORE_H
#define MAILPUBSUB_TEMP_STORE_H

#include "store/store.h"

struct temp_store {
	char dir[64];
	char path[96];
	struct store *store;
};

int temp_store_setup(void **state);
int temp_store_teardown(void **state);

#endif
