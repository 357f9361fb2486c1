/* Logging: one line per event on stderr, levels as in relayd, each line
 * "2026-12-03T18:10:14.123Z PROG[LEVEL] MESSAGE" (UTC, ISO 8601). */
#ifndef KB_LOG_H
#define KB_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum kb_log_level { KB_LOG_ERROR, KB_LOG_WARN, KB_LOG_INFO, KB_LOG_DEBUG };

/* Set the program name used as prefix and the most verbose level printed. */
void log_init(const char *prog, int level);
/* Change the most verbose level printed (kbridge loglevel), and read it. */
void log_set_level(int level);
int log_level(void);
/* "error", "warn", "info" or "debug". */
const char *log_level_name(int level);
/* Keep the last cap bytes of log lines in memory too: 0, or -1. */
int log_ring_init(size_t cap);
/* Copy the newest lines of the ring (at most len bytes, from a line's
 * start) into buf; the number of bytes (0 without a ring). */
size_t log_ring_copy(char *buf, size_t len);
/* Log text for a JSON answer: control characters but newline and tab
 * become '?' (they would grow six-fold as \u escapes). */
void log_text_clean(char *buf, size_t len);
/* log_warn appends strerror(errno); log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
