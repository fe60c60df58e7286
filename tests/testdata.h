/* Captured Cyrus datagrams under tests/data/cyrus (see its README). */
#ifndef MAILPUBSUB_TESTDATA_H
#define MAILPUBSUB_TESTDATA_H

#include <stddef.h>

struct testdata_file {
	char *name;
	char *data;
	size_t len;
};

/* Loads every file in dir ending in suffix, sorted by name. */
size_t testdata_load(const char *dir, const char *suffix,
		     struct testdata_file **files_r);
void testdata_free(struct testdata_file *files, size_t n);

#endif
