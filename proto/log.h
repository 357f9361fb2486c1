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
/* Copy the newest whole lines of the ring that fit len bytes into buf;
 * the number of bytes (0 without a ring). */
size_t log_ring_copy(char *buf, size_t len);
/* The same, of only the lines tagged with user (log_*_for): in the ring
 * the tag is kept apart from the text, which never decides whose a line
 * is. Untagged lines are never copied here. */
size_t log_ring_copy_for(const char *user, char *buf, size_t len);
/* Log text for a JSON answer: control characters but newline and tab
 * become '?' (they would grow six-fold as \u escapes). */
void log_text_clean(char *buf, size_t len);
/* log_warn appends strerror(errno); log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A line about one user (the manager's lines about a developer's session,
 * intercept, preview, certificate): tagged with user in the ring (NULL:
 * no tag). log_debug_for prints at level debug, or when asked is set
 * (that user asked for their debug lines: kbridge loglevel debug). */
void log_warnx_for(const char *user, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_info_for(const char *user, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_debug_for(const char *user, int asked, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
