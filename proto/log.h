/* Logging: one line per event on stderr, levels as in relayd. */
#ifndef KB_LOG_H
#define KB_LOG_H

#include <stdarg.h>

enum kb_log_level { KB_LOG_ERROR, KB_LOG_WARN, KB_LOG_INFO, KB_LOG_DEBUG };

/* Set the program name used as prefix and the most verbose level printed. */
void log_init(const char *prog, int level);
/* log_warn appends strerror(errno); log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
