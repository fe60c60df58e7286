/* The counting types the modules share: latency histograms and what each
 * event source received, journaled and refused (why, in a small fixed
 * set). Plain integers, touched by the loop thread only; src/ops/status.c and
 * src/ops/metrics.c read them. */
#ifndef MAILPUBSUB_STATS_H
#define MAILPUBSUB_STATS_H

/* Latency buckets, seconds: 0.5 ms to 10 s. */
#define STATS_BUCKETS 14

struct stats_histogram {
	unsigned long long buckets[STATS_BUCKETS]; /* not cumulative */
	unsigned long long count;
	double sum;
};

/* Upper bound of bucket i, seconds. */
double stats_bucket_bound(unsigned i);
void stats_histogram_observe(struct stats_histogram *h, double seconds);

/* Where an event came from (the journal's source column). */
enum stats_source { STATS_CYRUS, STATS_JSON, STATS_IMAP, STATS_NSOURCES };

/* Why an event was refused: a small fixed set, so labels stay bounded. */
enum stats_reject {
	STATS_REJECT_TOO_LARGE,
	STATS_REJECT_WIRE_FORMAT,    /* Cyrus's datagram framing */
	STATS_REJECT_NOT_EVENT,      /* a Cyrus notification of another class */
	STATS_REJECT_INVALID_JSON,
	STATS_REJECT_UNKNOWN_EVENT,  /* no or an unknown event type */
	STATS_REJECT_BAD_FIELDS,     /* uri, mailbox, parameters */
	STATS_NREJECTS,
};

struct stats_source_stats {
	unsigned long long received;
	unsigned long long journaled;
	unsigned long long dropped;    /* queue full */
	unsigned long long malformed[STATS_NREJECTS];
};

const char *stats_source_name(enum stats_source source);
const char *stats_reject_name(enum stats_reject reason);
/* The reason for an event_decode() error message. */
enum stats_reject stats_reject_for_decode(const char *error);

/* The daemon's counters: one instance, owned by main, touched by the loop
 * thread only. */
struct stats_counters {
	unsigned long long datagrams;
	unsigned long long json_lines;  /* lines from the generic source */
	unsigned long long json_auth_failures; /* wrong secret or handshake too long */
	unsigned long long json_auth_timeouts; /* no secret within auth_timeout */
	unsigned long long json_auth_evicted;  /* closed for max_unauthenticated */
	unsigned long long malformed;
	unsigned long long dropped;     /* ingest queue full */
	unsigned long long journaled;
	unsigned long long published;
	unsigned long long notifications;
	unsigned long long iq_requests;
	unsigned long long iq_errors;
	unsigned long long repaired;    /* events with characters XML 1.0
					 * forbids, replaced by U+FFFD */
	unsigned long long refused;     /* events skipped: the server closed
					 * the stream on them (publisher.c) */
	unsigned long long notices;     /* notifications sent without their
					 * payload (over max_stanza_size) */
	unsigned long long delegated;   /* items handed to [delegate] service */
	struct stats_source_stats sources[STATS_NSOURCES];
	/* from an event's receipt to its notifications handed to the
	 * component (seconds) */
	struct stats_histogram publish_latency;
	long long started_us;           /* wall clock */
};

#endif
