#include "testdata.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct testdata_file *)a)->name,
		      ((const struct testdata_file *)b)->name);
}

static char *slurp(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf != NULL) {
		buf[n] = '\0';
		*len_r = (size_t)n;
	}
	return buf;
}

size_t testdata_load(const char *dir, const char *suffix,
		     struct testdata_file **files_r)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct testdata_file *files = NULL;
	size_t n = 0, slen = strlen(suffix);

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t nlen = strlen(de->d_name);
		char path[4096];
		size_t len;
		char *data;

		if (nlen <= slen || strcmp(de->d_name + nlen - slen, suffix) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		data = slurp(path, &len);
		if (data == NULL)
			continue;
		files = realloc(files, (n + 1) * sizeof(*files));
		files[n].name = strdup(de->d_name);
		files[n].data = data;
		files[n].len = len;
		n++;
	}
	closedir(d);
	qsort(files, n, sizeof(*files), by_name);
	*files_r = files;
	return n;
}

void testdata_free(struct testdata_file *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(files[i].name);
		free(files[i].data);
	}
	free(files);
}
