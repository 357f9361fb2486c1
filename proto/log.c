/* One line per event on stderr: the UTC date and time to the millisecond
 * (ISO 8601), program, level, the message, and errno's text for the *_err
 * variants. A program may also keep its latest lines in memory (a ring) to
 * hand them out on request, as the manager does for 'kbridge gather-logs'. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_MAX_LEN	2048

static const char *log_prog = "kbridge";
static int log_max = KB_LOG_INFO;

/* The ring: the last ring_cap bytes of log text, oldest first from
 * ring_head once it has wrapped. Guarded by stderr's lock. */
static char *ring;
static size_t ring_cap, ring_len, ring_head;

void
log_init(const char *prog, int level)
{
	log_prog = prog;
	log_max = level;
}

void
log_set_level(int level)
{
	log_max = level;
}

int
log_level(void)
{
	return log_max;
}

const char *
log_level_name(int level)
{
	switch (level) {
	case KB_LOG_ERROR:
		return "error";
	case KB_LOG_WARN:
		return "warn";
	case KB_LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

int
log_ring_init(size_t cap)
{
	if ((ring = malloc(cap)) == NULL)
		return -1;
	ring_cap = cap;
	return 0;
}

static void
ring_add(const char *s, size_t n)
{
	size_t tail, k;

	if (ring == NULL)
		return;
	if (n > ring_cap) {
		s += n - ring_cap;
		n = ring_cap;
	}
	while (n > 0) {
		tail = (ring_head + ring_len) % ring_cap;
		k = ring_cap - tail < n ? ring_cap - tail : n;
		memcpy(ring + tail, s, k);
		s += k;
		n -= k;
		if (ring_len + k > ring_cap) {
			ring_head = (ring_head + ring_len + k - ring_cap) % ring_cap;
			ring_len = ring_cap;
		} else
			ring_len += k;
	}
}

size_t
log_ring_copy(char *buf, size_t len)
{
	size_t n, skip, i;

	if (ring == NULL || len == 0)
		return 0;
	flockfile(stderr);
	n = ring_len < len ? ring_len : len;
	skip = ring_len - n;
	for (i = 0; i < n; i++)
		buf[i] = ring[(ring_head + skip + i) % ring_cap];
	funlockfile(stderr);
	/* Start at a whole line if the copy may begin mid-line. */
	if (skip > 0 || ring_len == ring_cap) {
		char *nl = memchr(buf, '\n', n);

		if (nl != NULL) {
			i = (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, n - i);
			n -= i;
		}
	}
	return n;
}

static void
vlog(int level, const char *tag, const char *fmt, va_list ap, const char *err)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32], line[LINE_MAX_LEN];
	int n, m;

	if (level > log_max)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ldZ %s[%s] ", stamp, ts.tv_nsec / 1000000,
	    log_prog, tag);
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(line) && (m = vsnprintf(line + n, sizeof(line) - n, fmt, ap)) > 0)
		n += m;
	if ((size_t)n < sizeof(line) && err && (m = snprintf(line + n, sizeof(line) - n,
	    ": %s", err)) > 0)
		n += m;
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;	/* cut short, the newline kept */
	line[n++] = '\n';
	flockfile(stderr);
	fwrite(line, 1, (size_t)n, stderr);
	ring_add(line, (size_t)n);
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

void
log_text_clean(char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (((unsigned char)buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\t') ||
		    buf[i] == 0x7f)
			buf[i] = '?';
}
