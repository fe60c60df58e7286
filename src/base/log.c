#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

static struct {
	const char *ident;
	bool syslog;
	bool journal;      /* stderr is systemd's journal stream */
	enum log_level min;
} log_state = { "mailpubsubd", false, false, LOG_LEVEL_INFO };

static const char *const level_names[] = { "debug", "info", "warning", "error" };
static const int level_syslog[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };

/* systemd names the stream it connected stderr to in JOURNAL_STREAM
 * ("device:inode"); only then do "<N>" prefixes reach the journal as
 * priorities (sd-daemon(3)), and the journal stamps lines itself. */
static bool stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (env == NULL || sscanf(env, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(fileno(stderr), &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_open(const char *ident, bool use_syslog, enum log_level min_level)
{
	log_state.ident = ident;
	log_state.syslog = use_syslog;
	log_state.journal = !use_syslog && stderr_is_journal();
	log_state.min = min_level;
	if (use_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_close(void)
{
	if (log_state.syslog)
		closelog();
	log_state.syslog = false;
}

/* Relaxed atomics: SIGHUP sets the level on the main thread while the
 * ingest threads ask it. */
void log_set_level(enum log_level min_level)
{
	__atomic_store_n(&log_state.min, min_level, __ATOMIC_RELAXED);
}

int log_level_parse(const char *name, enum log_level *level_r)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(name, "warn") == 0) {
		*level_r = LOG_LEVEL_WARN;
		return 0;
	}
	return -1;
}

bool log_enabled(enum log_level level)
{
	return level >= __atomic_load_n(&log_state.min, __ATOMIC_RELAXED);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	if (log_state.syslog) {
		vsyslog(level_syslog[level], fmt, ap);
	} else if (log_state.journal) {
		fprintf(stderr, "<%d>", level_syslog[level]);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	} else {
		struct timespec ts;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ %s[%s]: ", stamp, ts.tv_nsec / 1000000,
			log_state.ident, level_names[level]);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}
