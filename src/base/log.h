/* Logging: stderr in the foreground (with syslog priorities as "<N>"
 * prefixes when that is the systemd journal), syslog when daemonized. */
#ifndef MAILPUBSUB_LOG_H
#define MAILPUBSUB_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* ident is kept by pointer (syslog keeps it too): pass a static string. */
void log_open(const char *ident, bool use_syslog, enum log_level min_level);
void log_close(void);
void log_set_level(enum log_level min_level);
/* Returns -1 for an unknown name. */
int log_level_parse(const char *name, enum log_level *level_r);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
