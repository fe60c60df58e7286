/* Sends events the way Cyrus's notify client does (imap/notify.c): a fresh
 * Unix datagram socket per event and a blocking sendto(), so that a reader
 * that falls behind shows up as sendto stalls. Used by the storm test and
 * the ingest benchmark; a Python sender cannot outrun the daemon on two
 * cores.
 *
 *   cyrus_sender SOCKET RATE SECONDS FILE...
 *
 * RATE is events per second (0: as fast as it goes), paced in 1 ms slices;
 * the FILEs (captured datagrams) are sent in turn. Prints one JSON object:
 * {"sent":N,"seconds":S,"p50_ms":..,"p99_ms":..,"p999_ms":..,"max_ms":..} */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct payload {
	char *data;
	size_t len;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_file(const char *path, struct payload *p)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) < 0) {
		if (f != NULL)
			fclose(f);
		return -1;
	}
	p->data = malloc((size_t)n + 1);
	p->len = (size_t)n;
	if (p->data == NULL || fread(p->data, 1, p->len, f) != p->len) {
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One event: what Cyrus does per notification. Returns the time sendto
 * took in ms, or -1. */
static double send_one(const struct sockaddr_un *sun, const struct payload *p)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	double t0, t1;
	ssize_t r;

	if (fd < 0)
		return -1;
	t0 = now_s();
	r = sendto(fd, p->data, p->len, 0, (const struct sockaddr *)sun, sizeof(*sun));
	t1 = now_s();
	close(fd);
	return r < 0 ? -1 : (t1 - t0) * 1000.0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct payload *payloads;
	double rate, seconds, start, end, *stalls;
	size_t cap = 1 << 20, sent = 0, failed = 0;
	int n;

	if (argc < 5) {
		fprintf(stderr, "usage: %s SOCKET RATE SECONDS FILE...\n", argv[0]);
		return 2;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", argv[1]);
	rate = atof(argv[2]);
	seconds = atof(argv[3]);
	n = argc - 4;
	payloads = calloc((size_t)n, sizeof(*payloads));
	stalls = malloc(cap * sizeof(*stalls));
	if (payloads == NULL || stalls == NULL)
		return 1;
	for (int i = 0; i < n; i++) {
		if (read_file(argv[4 + i], &payloads[i]) < 0) {
			fprintf(stderr, "%s: %s\n", argv[4 + i], strerror(errno));
			return 1;
		}
	}
	start = now_s();
	end = start + seconds;
	for (double t = start; t < end; t = now_s()) {
		size_t due = rate > 0 ? (size_t)((t - start) * rate) : sent + 1;

		while (sent < due) {
			double ms = send_one(&sun, &payloads[sent % (size_t)n]);

			if (ms < 0) {
				failed++;
				if (failed > 1000)
					break;
				continue;
			}
			if (sent == cap) {
				double *more = realloc(stalls, 2 * cap * sizeof(*stalls));

				if (more == NULL)
					return 1;
				stalls = more;
				cap *= 2;
			}
			stalls[sent++] = ms;
		}
		if (rate > 0) {
			struct timespec ts = { 0, 1000000 };

			nanosleep(&ts, NULL);
		}
	}
	end = now_s();
	if (sent == 0) {
		fprintf(stderr, "nothing sent (%zu failures)\n", failed);
		return 1;
	}
	qsort(stalls, sent, sizeof(*stalls), cmp_double);
	printf("{\"sent\":%zu,\"failed\":%zu,\"seconds\":%.3f,\"p50_ms\":%.4f,"
	       "\"p99_ms\":%.4f,\"p999_ms\":%.4f,\"max_ms\":%.4f}\n", sent, failed,
	       end - start, stalls[sent / 2], stalls[(size_t)((double)sent * 0.99)],
	       stalls[(size_t)((double)sent * 0.999)], stalls[sent - 1]);
	return 0;
}
