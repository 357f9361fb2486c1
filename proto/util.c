/* Parsers and helpers every program uses: numbers, CIDRs, HOST:PORT, DNS
 * labels, HTTP tokens, base64, whole-file reads and atomic writes, bearer
 * token files, clocks. */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int
kb_parse_num(const char *s, unsigned long min, unsigned long max, const char **rest,
    unsigned long *out)
{
	unsigned long n;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;	/* strtoul would take a sign or spaces */
	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || n < min || n > max || (rest == NULL && *end != '\0'))
		return -1;
	if (rest != NULL)
		*rest = end;
	*out = n;
	return 0;
}

int
kb_cidr_parse(const char *s, struct kb_cidr *out)
{
	char ip[INET_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	struct in_addr a;
	unsigned long n;
	uint32_t mask;

	if (!slash || (size_t)(slash - s) >= sizeof(ip) || slash[1] == '\0')
		return -1;
	memcpy(ip, s, slash - s);
	ip[slash - s] = '\0';
	if (inet_pton(AF_INET, ip, &a) != 1)
		return -1;
	if (kb_parse_num(slash + 1, 0, 32, NULL, &n) < 0)
		return -1;
	mask = n == 0 ? 0 : 0xffffffffu << (32 - n);
	if (ntohl(a.s_addr) & ~mask)
		return -1;
	out->addr = ntohl(a.s_addr);
	out->prefix = (uint8_t)n;
	return 0;
}

const char *
kb_cidr_str(const struct kb_cidr *c, char *buf, size_t len)
{
	struct in_addr a = { htonl(c->addr) };
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	snprintf(buf, len, "%s/%u", ip, c->prefix);
	return buf;
}

int
kb_cidr_contains(const struct kb_cidr *c, uint32_t addr)
{
	uint32_t mask = c->prefix == 0 ? 0 : 0xffffffffu << (32 - c->prefix);

	return (addr & mask) == c->addr;
}

int
kb_hostport_parse(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hl;
	unsigned long p;

	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -1;
		h = s + 1;
		hl = close - h;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', colon - s))
			return -1;
		hl = colon - s;
	}
	if (hl == 0 || hl >= hostlen || colon[1] == '\0')
		return -1;
	if (kb_parse_num(colon + 1, 1, 65535, NULL, &p) < 0)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

const char *
kb_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
		snprintf(buf, len, "%s:%u", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		snprintf(buf, len, "[%s]:%u", ip, port);
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
	return buf;
}

char *
kb_read_file(const char *path, size_t max, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (!f)
		return NULL;
	for (;;) {
		size_t n;
		if (cap - len < 4096) {
			char *nb;
			cap = cap ? cap * 2 : 8192;
			if ((nb = realloc(buf, cap + 1)) == NULL)
				goto fail;
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (len > max) {
			errno = EFBIG;
			goto fail;
		}
		if (n == 0)
			break;
	}
	if (ferror(f))
		goto fail;
	fclose(f);
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

int
kb_write_file(const char *path, const void *data, size_t len, int mode)
{
	char tmp[4096];
	int fd, saved;
	ssize_t n;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* A fresh file, never one somebody placed (or linked) there. */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	if (fchmod(fd, mode) < 0)
		goto fail;
	while (len > 0) {
		n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		data = (const char *)data + n;
		len -= n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved;
	return -1;
}

uint64_t
kb_clock_ns(clockid_t id)
{
	struct timespec ts;

	if (clock_gettime(id, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
kb_now_ms(void)
{
	return kb_clock_ns(CLOCK_MONOTONIC) / 1000000;
}

int
kb_dns_label(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

int
kb_port_name(const char *s)
{
	size_t i, n = strlen(s);
	int letter = 0;

	if (n == 0 || n > KB_PORT_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] >= 'a' && s[i] <= 'z')
			letter = 1;
		else if (s[i] == '-' ? s[i + 1] == '-' : !(s[i] >= '0' && s[i] <= '9'))
			return 0;
	}
	return letter;
}

int
kb_random_hex(char *out, size_t n)
{
	unsigned char rnd[32];
	size_t k;

	if (n > sizeof(rnd) || RAND_bytes(rnd, (int)n) != 1)
		return -1;
	for (k = 0; k < n; k++)
		snprintf(out + 2 * k, 3, "%02x", rnd[k]);
	out[2 * n] = '\0';
	return 0;
}

void
kb_malloc_tune(void)
{
	/* Buffers come and go by the megabyte on the data path; giving the heap
	 * top back to the kernel after each burst costs a brk() per burst. */
	mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
}

char *
kb_b64_encode(const void *in, size_t len)
{
	char *out;

	if (len > (size_t)INT_MAX / 4 * 3 - 2 || (out = malloc((len + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

static int
b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '+' || c == '/';
}

char *
kb_b64_decode(const char *in, size_t *outlen)
{
	size_t n = strlen(in), i, j = 0, pad;
	char *clean, *out = NULL;
	int r;

	if (n > (size_t)INT_MAX || (clean = malloc(n + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (!strchr(" \t\r\n", in[i]))
			clean[j++] = in[i];
	clean[j] = '\0';
	if (j == 0 || j % 4 != 0)
		goto done;
	/* '=' only as the last one or two characters; EVP_DecodeBlock would
	 * take it elsewhere and counts it as a zero byte. */
	pad = (clean[j - 1] == '=') + (clean[j - 1] == '=' && clean[j - 2] == '=');
	for (i = 0; i < j - pad; i++)
		if (!b64_char(clean[i]))
			goto done;
	if ((out = malloc(j / 4 * 3 + 1)) == NULL)
		goto done;
	r = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)clean, (int)j);
	if (r < 0 || (size_t)r < pad) {
		free(out);
		out = NULL;
		goto done;
	}
	*outlen = (size_t)r - pad;
	out[*outlen] = '\0';
done:
	OPENSSL_cleanse(clean, n);	/* it may be a key */
	free(clean);
	return out;
}

/* Go's unicode.IsSpace over ASCII. */
static int
go_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

int
kb_token_trim(char *t, size_t len, const char **why)
{
	size_t i = 0;

	while (len > 0 && go_space(t[len - 1]))
		len--;
	t[len] = '\0';
	while (i < len && go_space(t[i]))
		i++;
	memmove(t, t + i, len - i + 1);
	len -= i;
	if (len == 0) {
		*why = "empty";
		return -1;
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e) {
			*why = "not a token (control characters or spaces)";
			return -1;
		}
	return 0;
}

int
kb_identity_name(const char *name)
{
	size_t i, n = strlen(name);

	if (n == 0 || n > KB_IDENTITY_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = name[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return 0;
	}
	return 1;
}
