#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static struct {
	const char *ident;
	bool syslog;
	enum log_level min;
} log_state = { "mailpubsubd", false, LOG_LEVEL_INFO };

static const char *const level_names[] = { "debug", "info", "warning", "error" };
static const int level_syslog[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };

void log_open(const char *ident, bool use_syslog, enum log_level min_level)
{
	log_state.ident = ident;
	log_state.syslog = use_syslog;
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

void log_set_level(enum log_level min_level)
{
	log_state.min = min_level;
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
	return level >= log_state.min;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	if (log_state.syslog) {
		vsyslog(level_syslog[level], fmt, ap);
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
