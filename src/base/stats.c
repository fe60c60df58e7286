#include "base/stats.h"

#include <string.h>

static const double bounds[STATS_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

double stats_bucket_bound(unsigned i)
{
	return i < STATS_BUCKETS ? bounds[i] : 0;
}

void stats_histogram_observe(struct stats_histogram *h, double seconds)
{
	if (seconds < 0)
		seconds = 0;   /* the wall clock stepped back */
	h->count++;
	h->sum += seconds;
	for (unsigned i = 0; i < STATS_BUCKETS; i++) {
		if (seconds <= bounds[i]) {
			h->buckets[i]++;
			return;
		}
	}
}

const char *stats_source_name(enum stats_source source)
{
	static const char *const names[STATS_NSOURCES] = { "cyrus", "json", "imap" };

	return names[source];
}

const char *stats_reject_name(enum stats_reject reason)
{
	static const char *const names[STATS_NREJECTS] = {
		"too_large", "wire_format", "not_event", "invalid_json",
		"unknown_event", "bad_fields",
	};

	return names[reason];
}

enum stats_reject stats_reject_for_decode(const char *error)
{
	if (strcmp(error, "invalid JSON") == 0 ||
	    strcmp(error, "JSON event is not an object") == 0)
		return STATS_REJECT_INVALID_JSON;
	if (strcmp(error, "missing event type") == 0 ||
	    strcmp(error, "unknown event type") == 0)
		return STATS_REJECT_UNKNOWN_EVENT;
	return STATS_REJECT_BAD_FIELDS;
}

