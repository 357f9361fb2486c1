/* One line per event on stderr: UTC time to the millisecond, program,
 * level, the message, and errno's text for the *_err variants. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *log_prog = "kbridge";
static int log_max = KB_LOG_INFO;

void
log_init(const char *prog, int level)
{
	log_prog = prog;
	log_max = level;
}


static void
vlog(int level, const char *tag, const char *fmt, va_list ap, const char *err)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	if (level > log_max)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	flockfile(stderr);
	fprintf(stderr, "%s.%03ld %s[%s] ", stamp, ts.tv_nsec / 1000000, log_prog, tag);
	vfprintf(stderr, fmt, ap);
	if (err)
		fprintf(stderr, ": %s", err);
	fputc('\n', stderr);
	funlockfile(stderr);
}

#define LOGFN(name, level, tag, witherr)                                      \
	void name(const char *fmt, ...)                                       \
	{                                                                     \
		int saved = errno;                                            \
		va_list ap;                                                   \
		va_start(ap, fmt);                                            \
		vlog(level, tag, fmt, ap, witherr ? strerror(saved) : NULL);  \
		va_end(ap);                                                   \
		errno = saved;                                                \
	}

LOGFN(log_warn, KB_LOG_WARN, "warn", 1)
LOGFN(log_warnx, KB_LOG_WARN, "warn", 0)
LOGFN(log_info, KB_LOG_INFO, "info", 0)
LOGFN(log_debug, KB_LOG_DEBUG, "debug", 0)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(KB_LOG_ERROR, "fatal", fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(KB_LOG_ERROR, "fatal", fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
