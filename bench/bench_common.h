/* Shared by the fan-out benchmark's senders (bench/fanout_client.c in
 * publish mode, bench/fanout_component.c). */
#ifndef MAILPUBSUB_BENCH_COMMON_H
#define MAILPUBSUB_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Overwrites the payload's received='...' value (24 characters,
 * YYYY-MM-DDTHH:MM:SS.mmmZ) in text with now: the latency the clients
 * measure then starts where this sender hands the event on, as
 * mailpubsubd's starts where it accepts it. */
static inline void bench_stamp_received(char *text)
{
	char *at = text ? strstr(text, "received=") : NULL;
	struct timespec ts;
	struct tm tm;
	char now[64];

	if (at == NULL || strlen(at) < 10 + 24)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(now + 19, sizeof(now) - 19, ".%03ldZ", ts.tv_nsec / 1000000);
	memcpy(at + 10, now, 24);
}

/* The file's contents, trailing newlines and blanks cut; exits on error.
 * Owned by the caller. */
static inline char *bench_slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) < 0) {
		perror(path);
		exit(1);
	}
	buf = calloc(1, (size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(1);
	}
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return buf;
}

#endif
