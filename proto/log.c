/* One line per event on stderr: the UTC date and time to the millisecond
 * (ISO 8601), program, level, the message, and errno's text for the *_err
 * variants. A program may also keep its latest lines in memory (a ring) to
 * hand them out on request, as the manager does for 'kbridge gather-logs':
 * a line about one user carries that user as a tag beside its text, and
 * the manager hands each user the lines tagged with their name only. */
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_MAX_LEN	2048

static const char *log_prog = "kbridge";
static int log_max = KB_LOG_INFO;

/* The ring: whole lines as records, oldest first from ring_head, each a
 * header (the text's length, 2 bytes, and its tag's, 1), the tag (the user
 * the line is about; none: length 0) and the text. A new record makes room
 * by dropping the oldest ones. Guarded by stderr's lock. */
#define REC_HDR		3
#define TAG_MAX		255
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

/* Copy n bytes to or from the ring at offset off (from ring_head). */
static void
ring_put(size_t off, const void *src, size_t n)
{
	size_t at = (ring_head + off) % ring_cap, k;

	k = ring_cap - at < n ? ring_cap - at : n;
	memcpy(ring + at, src, k);
	memcpy(ring, (const char *)src + k, n - k);
}

static void
ring_get(size_t off, void *dst, size_t n)
{
	size_t at = (ring_head + off) % ring_cap, k;

	k = ring_cap - at < n ? ring_cap - at : n;
	memcpy(dst, ring + at, k);
	memcpy((char *)dst + k, ring, n - k);
}

/* The record at off: its tag's and its text's length. */
static void
rec_at(size_t off, size_t *tlen, size_t *ulen)
{
	unsigned char h[REC_HDR];

	ring_get(off, h, REC_HDR);
	*tlen = (size_t)h[0] << 8 | h[1];
	*ulen = h[2];
}

/* A line and its tag (ulen 0: none). One that cannot fit the ring at
 * all is not kept. */
static void
ring_add(const char *user, size_t ulen, const char *s, size_t n)
{
	unsigned char h[REC_HDR];
	size_t need = REC_HDR + ulen + n, tlen, olen;

	if (ring == NULL || need > ring_cap || n > UINT16_MAX || ulen > TAG_MAX)
		return;
	while (ring_cap - ring_len < need) {
		rec_at(0, &tlen, &olen);
		ring_head = (ring_head + REC_HDR + olen + tlen) % ring_cap;
		ring_len -= REC_HDR + olen + tlen;
	}
	h[0] = (unsigned char)(n >> 8);
	h[1] = (unsigned char)n;
	h[2] = (unsigned char)ulen;
	ring_put(ring_len, h, REC_HDR);
	if (ulen > 0)
		ring_put(ring_len + REC_HDR, user, ulen);
	ring_put(ring_len + REC_HDR + ulen, s, n);
	ring_len += need;
}

/* Is the record at off (tag ulen bytes) one for user (NULL: any)? */
static int
rec_for(size_t off, size_t ulen, const char *user)
{
	char tag[TAG_MAX];

	if (user == NULL)
		return 1;
	if (ulen == 0 || ulen != strlen(user))
		return 0;
	ring_get(off + REC_HDR, tag, ulen);
	return memcmp(tag, user, ulen) == 0;
}

/* The newest whole lines for user (NULL: all) that fit len bytes. */
static size_t
ring_copy(const char *user, char *buf, size_t len)
{
	size_t off, tlen, ulen, total = 0, n = 0;

	if (ring == NULL || len == 0)
		return 0;
	flockfile(stderr);
	for (off = 0; off < ring_len; off += REC_HDR + ulen + tlen) {
		rec_at(off, &tlen, &ulen);
		if (rec_for(off, ulen, user))
			total += tlen;
	}
	for (off = 0; off < ring_len; off += REC_HDR + ulen + tlen) {
		rec_at(off, &tlen, &ulen);
		if (!rec_for(off, ulen, user))
			continue;
		if (total > len) {
			total -= tlen;	/* older than what fits */
			continue;
		}
		ring_get(off + REC_HDR + ulen, buf + n, tlen);
		n += tlen;
	}
	funlockfile(stderr);
	return n;
}

size_t
log_ring_copy(char *buf, size_t len)
{
	return ring_copy(NULL, buf, len);
}

size_t
log_ring_copy_for(const char *user, char *buf, size_t len)
{
	if (user == NULL || *user == '\0')
		return 0;
	return ring_copy(user, buf, len);
}

/* A line about user (NULL: no one) at level, printed if the level is on
 * or if asked (user's session asked for its debug lines). */
static void
vlog(int level, const char *tag, const char *user, int asked, const char *fmt, va_list ap,
    const char *err)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32], line[LINE_MAX_LEN];
	int n, m;

	if (level > log_max && !asked)
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
	ring_add(user, user ? strnlen(user, TAG_MAX + 1) : 0, line, (size_t)n);
	funlockfile(stderr);
}

#define LOGFN(name, level, tag, witherr)                                      \
	void name(const char *fmt, ...)                                       \
	{                                                                     \
		int saved = errno;                                            \
		va_list ap;                                                   \
		va_start(ap, fmt);                                            \
		vlog(level, tag, NULL, 0, fmt, ap, witherr ? strerror(saved) : NULL); \
		va_end(ap);                                                   \
		errno = saved;                                                \
	}

LOGFN(log_warn, KB_LOG_WARN, "warn", 1)
LOGFN(log_warnx, KB_LOG_WARN, "warn", 0)
LOGFN(log_info, KB_LOG_INFO, "info", 0)
LOGFN(log_debug, KB_LOG_DEBUG, "debug", 0)

#define LOGFN_FOR(name, level, tag)                                           \
	void name(const char *user, const char *fmt, ...)                     \
	{                                                                     \
		int saved = errno;                                            \
		va_list ap;                                                   \
		va_start(ap, fmt);                                            \
		vlog(level, tag, user, 0, fmt, ap, NULL);                     \
		va_end(ap);                                                   \
		errno = saved;                                                \
	}

LOGFN_FOR(log_warnx_for, KB_LOG_WARN, "warn")
LOGFN_FOR(log_info_for, KB_LOG_INFO, "info")

void
log_debug_for(const char *user, int asked, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(KB_LOG_DEBUG, "debug", user, asked, fmt, ap, NULL);
	va_end(ap);
	errno = saved;
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(KB_LOG_ERROR, "fatal", NULL, 0, fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(KB_LOG_ERROR, "fatal", NULL, 0, fmt, ap, NULL);
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
