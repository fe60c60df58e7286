#include "base/clock.h"
#include "ingest/ingest_cyrus.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ingest/cyrus_wire.h"
#include "base/log.h"

/* events per journal transaction at most: still one fsync per hundreds
 * of events in a storm, and a bounded set of decoded events held */
#define CYRUS_TXN_MAX 512

/* Cyrus caps its datagrams at 64 KiB (notify.c) */
#define DGRAM_MAX 65536

struct dgram {
	struct dgram *next;
	long long received_us;
	size_t len;
	char data[];
};

struct ingest_cyrus {
	struct sink *sink;
	struct stats_counters *stats;
	int fd;
	int stop_fd;                 /* eventfd: wakes the thread to exit */
	pthread_t thread;
	bool thread_started;
	uv_async_t async;
	pthread_mutex_t lock;
	struct dgram *head, *tail;   /* under lock */
	unsigned queued;             /* under lock */
	/* bytes received and not yet journaled, including a batch the loop
	 * thread is working through: what the queue bounds is memory */
	atomic_size_t queued_bytes;
	unsigned long long dropped;  /* under lock */
	unsigned queue_max;
	size_t queue_max_bytes;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int bind_socket(struct ingest_cyrus *in, const struct config *config,
		       const char **error_r)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if (strlen(config->notify_socket) >= sizeof(sun.sun_path)) {
		*error_r = "[cyrus] notify_socket path too long";
		return -1;
	}
	strcpy(sun.sun_path, config->notify_socket);
	strcpy(in->path, config->notify_socket);
	in->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (in->fd < 0) {
		*error_r = "cannot create the notify socket";
		return -1;
	}
	/* a stale socket from a previous run would make bind fail */
	unlink(sun.sun_path);
	if (bind(in->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		/* the detail goes to the log: error strings are constants */
		log_error("cyrus source: cannot bind %s: %s", sun.sun_path, strerror(errno));
		*error_r = "cannot bind the [cyrus] notify_socket (see the log)";
		return -1;
	}
	if (*config->notify_socket_group != '\0') {
		struct group *gr = getgrnam(config->notify_socket_group);

		if (gr == NULL || chown(sun.sun_path, (uid_t)-1, gr->gr_gid) < 0)
			log_warn("ingest: cannot give %s to group %s", sun.sun_path,
				 config->notify_socket_group);
	}
	if (chmod(sun.sun_path, config->notify_socket_mode) < 0) {
		log_error("cyrus source: cannot chmod %s: %s", sun.sun_path, strerror(errno));
		*error_r = "cannot set the [cyrus] notify_socket's mode (see the log)";
		return -1;
	}
	return 0;
}

static void enqueue(struct ingest_cyrus *in, const char *buf, size_t len)
{
	struct dgram *d;

	pthread_mutex_lock(&in->lock);
	if (in->queued >= in->queue_max ||
	    atomic_load(&in->queued_bytes) + len > in->queue_max_bytes) {
		in->dropped++;
		pthread_mutex_unlock(&in->lock);
		return;
	}
	pthread_mutex_unlock(&in->lock);
	d = malloc(sizeof(*d) + len + 1);
	if (d == NULL)
		return;
	d->next = NULL;
	d->received_us = clock_now_us();
	d->len = len;
	memcpy(d->data, buf, len);
	d->data[len] = '\0';
	pthread_mutex_lock(&in->lock);
	if (in->tail != NULL)
		in->tail->next = d;
	else
		in->head = d;
	in->tail = d;
	in->queued++;
	atomic_fetch_add(&in->queued_bytes, len);
	pthread_mutex_unlock(&in->lock);
	uv_async_send(&in->async);
}

static void *receiver_main(void *arg)
{
	struct ingest_cyrus *in = arg;
	char *buf = malloc(DGRAM_MAX + 1);
	struct pollfd fds[2] = {
		{ .fd = in->fd, .events = POLLIN },
		{ .fd = in->stop_fd, .events = POLLIN },
	};

	if (buf == NULL)
		return NULL;
	for (;;) {
		ssize_t n;

		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			break;
		if (fds[1].revents != 0)
			break;
		/* drain everything waiting before polling again */
		while ((n = recv(in->fd, buf, DGRAM_MAX + 1, MSG_DONTWAIT | MSG_TRUNC)) >= 0) {
			if (n > DGRAM_MAX)
				n = DGRAM_MAX + 1;   /* oversized: the decoder rejects it */
			enqueue(in, buf, (size_t)n);
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			log_error("ingest: recv: %s", strerror(errno));
	}
	free(buf);
	return NULL;
}

static void reject(struct stats_counters *stats, size_t len, enum stats_reject reason,
		   const char *why)
{
	stats->malformed++;
	stats->sources[STATS_CYRUS].malformed[reason]++;
	log_warn("ingest: rejected datagram #%llu (%zu bytes): %s",
		 stats->datagrams, len, why);
}

int ingest_cyrus_accept(struct sink *sink, struct stats_counters *stats,
			const char *buf, size_t len, long long received_us)
{
	struct cyrus_wire wire;
	struct sink_input in = { .source = "cyrus", .received_us = received_us };
	const char *error;
	int rc;

	stats->datagrams++;
	stats->sources[STATS_CYRUS].received++;
	if (len > DGRAM_MAX) {
		reject(stats, len, STATS_REJECT_TOO_LARGE, "datagram larger than 64 KiB");
		return -1;
	}
	if (cyrus_wire_parse(buf, len, &wire, &error) < 0) {
		reject(stats, len, STATS_REJECT_WIRE_FORMAT, error);
		return -1;
	}
	if (strcmp(wire.class, "EVENT") != 0) {
		reject(stats, len, STATS_REJECT_NOT_EVENT, "not an EVENT notification");
		return -1;
	}
	in.json = wire.message;
	in.json_len = wire.message_len;
	rc = sink_submit(sink, &in, NULL, &error);
	/* the sink counted a refusal; the datagram number is ours to log */
	if (rc == SINK_REFUSED)
		log_warn("ingest: rejected datagram #%llu (%zu bytes): %s",
			 stats->datagrams, len, error);
	return rc < 0 ? -1 : 0;
}

static struct dgram *take_all(struct ingest_cyrus *in, unsigned long long *dropped_r)
{
	struct dgram *list;

	pthread_mutex_lock(&in->lock);
	list = in->head;
	in->head = in->tail = NULL;
	in->queued = 0;
	*dropped_r = in->dropped;
	in->dropped = 0;
	pthread_mutex_unlock(&in->lock);
	return list;
}

/* One transaction per batch: group commit keeps the fsync count low when
 * Cyrus is busy. */
static void journal_batch(struct ingest_cyrus *in)
{
	unsigned long long dropped;
	struct dgram *list = take_all(in, &dropped);
	const char *error;

	if (dropped > 0) {
		in->stats->dropped += dropped;
		in->stats->sources[STATS_CYRUS].dropped += dropped;
		log_error("ingest: queue full (%u datagrams or %zu bytes): %llu events "
			  "dropped", in->queue_max, in->queue_max_bytes, dropped);
	}
	if (list == NULL)
		return;
	/* what waits is what the publisher yields to while it journals */
	sink_set_waiting(in->sink, "cyrus", atomic_load(&in->queued_bytes));
	sink_begin(in->sink);
	for (unsigned n = 1; list != NULL; n++) {
		struct dgram *next = list->next;

		ingest_cyrus_accept(in->sink, in->stats, list->data, list->len,
				    list->received_us);
		atomic_fetch_sub(&in->queued_bytes, list->len);
		free(list);
		list = next;
		/* the sink holds each event of a transaction decoded until the
		 * commit (for its listeners): a storm's whole queue in one
		 * transaction was a 100 MiB peak */
		if (n % CYRUS_TXN_MAX == 0 && list != NULL) {
			sink_commit(in->sink, &error);
			sink_begin(in->sink);
		}
	}
	sink_set_waiting(in->sink, "cyrus", atomic_load(&in->queued_bytes));
	sink_commit(in->sink, &error);
}

static void on_async(uv_async_t *async)
{
	journal_batch(async->data);
}

int ingest_cyrus_new(uv_loop_t *loop, const struct config *config,
		     struct sink *sink, struct stats_counters *stats,
		     struct ingest_cyrus **ingest_r, const char **error_r)
{
	struct ingest_cyrus *in = calloc(1, sizeof(*in));

	if (in == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	atomic_init(&in->queued_bytes, 0);
	in->sink = sink;
	in->stats = stats;
	in->queue_max = config->ingest_queue_max;
	in->queue_max_bytes = (size_t)config->ingest_queue_max_mb << 20;
	in->fd = -1;
	in->stop_fd = eventfd(0, EFD_CLOEXEC);
	pthread_mutex_init(&in->lock, NULL);
	uv_async_init(loop, &in->async, on_async);
	in->async.data = in;
	if (in->stop_fd < 0 || bind_socket(in, config, error_r) < 0)
		goto fail;
	if (pthread_create(&in->thread, NULL, receiver_main, in) != 0) {
		*error_r = "cannot start the receiver thread";
		goto fail;
	}
	in->thread_started = true;
	log_info("ingest: listening for Cyrus events on %s", in->path);
	*ingest_r = in;
	return 0;
fail:
	ingest_cyrus_close(&in);
	return -1;
}

static void async_closed(uv_handle_t *handle)
{
	struct ingest_cyrus *in = handle->data;

	pthread_mutex_destroy(&in->lock);
	free(in);
}

void ingest_cyrus_close(struct ingest_cyrus **ingest)
{
	struct ingest_cyrus *in = *ingest;
	uint64_t one = 1;

	if (in == NULL)
		return;
	if (in->thread_started) {
		if (write(in->stop_fd, &one, sizeof(one)) < 0)
			log_error("ingest: cannot stop the receiver: %s", strerror(errno));
		pthread_join(in->thread, NULL);
	}
	/* what was received is journaled, not thrown away */
	journal_batch(in);
	if (in->fd >= 0) {
		close(in->fd);
		unlink(in->path);
	}
	if (in->stop_fd >= 0)
		close(in->stop_fd);
	uv_close((uv_handle_t *)&in->async, async_closed);
	*ingest = NULL;
}
