/* Small helpers shared by all programs: addresses, CIDRs, files. */
#ifndef KB_UTIL_H
#define KB_UTIL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

/* An IPv4 subnet; addr is in host byte order and has no host bits set. */
struct kb_cidr {
	uint32_t addr;
	uint8_t prefix;
};

/* Parse a decimal number strictly: one or more digits (no sign, space or
 * "0x"), from min to max. With rest NULL nothing may follow the digits;
 * else *rest points to what follows (a unit, say). 0 or -1. */
int kb_parse_num(const char *s, unsigned long min, unsigned long max, const char **rest,
    unsigned long *out);

/* Parse "A.B.C.D/N" strictly (host bits must be zero). 0 or -1. */
int kb_cidr_parse(const char *s, struct kb_cidr *out);
/* Format as "A.B.C.D/N" into buf (at least 19 bytes). */
const char *kb_cidr_str(const struct kb_cidr *c, char *buf, size_t len);
/* Does the IPv4 address (host order) lie in the subnet? */
int kb_cidr_contains(const struct kb_cidr *c, uint32_t addr);

/* Parse "HOST:PORT" or "[V6]:PORT"; host is copied (NUL-terminated). 0 or -1. */
int kb_hostport_parse(const char *s, char *host, size_t hostlen, uint16_t *port);
/* Format a socket address as "ip:port". */
const char *kb_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len);

/* Read a whole file (at most max bytes) into a NUL-terminated malloc'd buffer. */
char *kb_read_file(const char *path, size_t max, size_t *lenp);
/* Write a file atomically (temp + rename) with the given mode. 0 or -1 (errno). */
int kb_write_file(const char *path, const void *data, size_t len, int mode);

/* An RFC 1123 label as Kubernetes names are: [a-z0-9-], 1-63, no '-' at
 * either end. */
int kb_dns_label(const char *s);
/* A port name as the API allows it (IANA_SVC_NAME): 1 to KB_PORT_NAME_MAX
 * of [a-z0-9-] with a letter among them, no '-' at either end or twice in a
 * row. */
#define KB_PORT_NAME_MAX 15
int kb_port_name(const char *s);
/* A kbridge identity (user or sidecar) name, a certificate's CN: 1 to
 * KB_IDENTITY_NAME_MAX characters of a-z 0-9 . _ - starting with a letter
 * or digit. */
#define KB_IDENTITY_NAME_MAX 63
int kb_identity_name(const char *name);

/* An RFC 9110 tchar: a character of a header name or method (inline: the
 * proxy asks it of every byte of a request's method). */
static inline int
kb_http_tchar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Standard base64 (RFC 4648), padded; a malloc'd string, NULL if out of
 * memory. */
char *kb_b64_encode(const void *in, size_t len);
/* Decode standard base64 as Go decodes []byte in JSON: line breaks (and
 * spaces, tabs) are skipped; the rest must be a multiple of four, padded,
 * '=' only at the end. A malloc'd buffer with a NUL after its *outlen
 * bytes, or NULL (invalid, empty or out of memory). */
char *kb_b64_decode(const char *in, size_t *outlen);

/* A bearer token read from a file (len bytes at t, a NUL after them),
 * in place, by client-go's rule: white space trimmed at both ends
 * (strings.TrimSpace); what remains must be visible ASCII, at least one
 * character. 0, or -1 and *why ("empty", or "not a token ..."). */
int kb_token_trim(char *t, size_t len, const char **why);

/* Fill out with 2 * n random lowercase hex digits and a NUL (n at most
 * 32). 0, or -1 if there is no randomness. */
int kb_random_hex(char *out, size_t n);

/* Tune malloc for the data path; call once at startup. */
void kb_malloc_tune(void);

/* Monotonic time in milliseconds. */
uint64_t kb_now_ms(void);
/* The clock id's time in nanoseconds (CLOCK_MONOTONIC,
 * CLOCK_THREAD_CPUTIME_ID, ...); 0 if it cannot be read. */
uint64_t kb_clock_ns(clockid_t id);

/* A duration in milliseconds as a timeval, for evtimer_add(). */
static inline struct timeval
kb_ms_tv(long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	return tv;
}

#endif
