#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "temp_store.h"

int temp_store_setup(void **state)
{
	struct temp_store *f = calloc(1, sizeof(*f));
	const char *err;

	assert_non_null(f);
	strcpy(f->dir, "/tmp/mps-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/db", f->dir);
	assert_int_equal(store_open(f->path, false, &f->store, &err), 0);
	*state = f;
	return 0;
}

int temp_store_teardown(void **state)
{
	struct temp_store *f = *state;
	char cmd[128];

	store_close(&f->store);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}
