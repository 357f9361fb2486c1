/* proto/util.c's parsers: kb_parse_num (every number a user types: ports,
 * durations, --owner-uid, --batch-wait-us), and the CIDR and HOST:PORT
 * parsers built on it. Strict: no signs, spaces, hex or trailing text.
 * Also the HTTP tchar, base64 (strict padding) and the token-file rule. */
#include "../../proto/util.c"

#include <limits.h>
#include <string.h>

#include "ok.h"

static int
num(const char *s, unsigned long min, unsigned long max, unsigned long want)
{
	unsigned long n = 12345;

	return kb_parse_num(s, min, max, NULL, &n) == 0 && n == want;
}

static int
bad(const char *s, unsigned long min, unsigned long max)
{
	unsigned long n = 12345;

	return kb_parse_num(s, min, max, NULL, &n) == -1 && n == 12345;
}

static int
cidr(const char *s, const char *want)
{
	struct kb_cidr c;
	char buf[32];

	if (kb_cidr_parse(s, &c) < 0)
		return want == NULL;
	return want != NULL && strcmp(kb_cidr_str(&c, buf, sizeof(buf)), want) == 0;
}

static int
hostport(const char *s, const char *host, unsigned port)
{
	char h[64] = "untouched";
	uint16_t p = 0;

	if (kb_hostport_parse(s, h, sizeof(h), &p) < 0)
		return host == NULL;
	return host != NULL && strcmp(h, host) == 0 && p == port;
}

/* What the nine-odd "{ ms / 1000, (ms % 1000) * 1000 }" gave. */
static int
ms_tv(long ms, long sec, long usec)
{
	struct timeval tv = kb_ms_tv(ms);

	return tv.tv_sec == sec && tv.tv_usec == usec;
}

static int
hex_id(size_t n)
{
	char id[66];
	size_t i;

	memset(id, 'X', sizeof(id));
	if (kb_random_hex(id, n) < 0 || strlen(id) != 2 * n)
		return 0;
	for (i = 0; i < 2 * n; i++)
		if (!strchr("0123456789abcdef", id[i]))
			return 0;
	return id[2 * n + 1] == 'X';
}

/* Decodes to want (wlen bytes), or fails when want is NULL. */
static int
b64dec(const char *in, const char *want, size_t wlen)
{
	size_t n = 12345;
	char *out = kb_b64_decode(in, &n);
	int r;

	if (want == NULL) {
		free(out);
		return out == NULL && n == 12345;
	}
	r = out != NULL && n == wlen && memcmp(out, want, wlen) == 0 && out[n] == '\0';
	free(out);
	return r;
}

static int
b64enc(const char *in, size_t len, const char *want)
{
	char *out = kb_b64_encode(in, len);
	int r = out != NULL && strcmp(out, want) == 0;

	free(out);
	return r;
}

/* kb_token_trim on a copy of the len bytes at in: want, or why. */
static int
token(const char *in, size_t len, const char *want, const char *why)
{
	char buf[64];
	const char *w = NULL;
	int rc;

	memcpy(buf, in, len);
	buf[len] = '\0';
	rc = kb_token_trim(buf, len, &w);
	if (want)
		return rc == 0 && strcmp(buf, want) == 0;
	return rc == -1 && w != NULL && strstr(w, why) != NULL;
}

int
main(void)
{
	const char *rest = NULL;
	unsigned long n = 0;

	/* numbers */
	ok(num("0", 0, 10, 0));
	ok(num("10", 0, 10, 10));
	ok(num("007", 0, 10, 7));
	ok(num("65535", 1, 65535, 65535));
	ok(num("4294967294", 0, 4294967294UL, 4294967294UL));
	ok(bad("65536", 1, 65535));
	ok(bad("0", 1, 65535));
	ok(bad("", 0, 10));
	ok(bad("-1", 0, ULONG_MAX));	/* strtoul would wrap it to ULONG_MAX */
	ok(bad("+5", 0, 10));
	ok(bad(" 5", 0, 10));
	ok(bad("5 ", 0, 10));
	ok(bad("0x10", 0, 100));
	ok(bad("1e3", 0, 10000));
	ok(bad("99999999999999999999999", 0, ULONG_MAX));	/* ERANGE */
	/* a unit after the digits, for whoever asks for the rest */
	ok(kb_parse_num("90m", 1, 100, &rest, &n) == 0 && n == 90 && strcmp(rest, "m") == 0);
	ok(kb_parse_num("90", 1, 100, &rest, &n) == 0 && n == 90 && *rest == '\0');
	ok(kb_parse_num("m", 1, 100, &rest, &n) == -1);
	ok(kb_parse_num("200s", 1, 100, &rest, &n) == -1);

	/* CIDRs */
	ok(cidr("10.96.0.0/12", "10.96.0.0/12"));
	ok(cidr("0.0.0.0/0", "0.0.0.0/0"));
	ok(cidr("10.0.0.1/32", "10.0.0.1/32"));
	ok(cidr("10.0.0.1/24", NULL));	/* host bits */
	ok(cidr("10.0.0.0/33", NULL));
	ok(cidr("10.0.0.0/-1", NULL));
	ok(cidr("10.0.0.0/+8", NULL));
	ok(cidr("10.0.0.0/8x", NULL));
	ok(cidr("10.0.0.0/", NULL));
	ok(cidr("10.0.0.0", NULL));
	ok(cidr("10.0.0/8", NULL));

	/* HOST:PORT */
	ok(hostport("127.0.0.1:8080", "127.0.0.1", 8080));
	ok(hostport("web.default:80", "web.default", 80));
	ok(hostport("[::1]:443", "::1", 443));
	ok(hostport("h:65535", "h", 65535));
	ok(hostport("h:0", NULL, 0));
	ok(hostport("h:65536", NULL, 0));
	ok(hostport("h:-80", NULL, 0));
	ok(hostport("h:+80", NULL, 0));
	ok(hostport("h:80x", NULL, 0));
	ok(hostport("h:", NULL, 0));
	ok(hostport(":80", NULL, 0));
	ok(hostport("::1:80", NULL, 0));	/* a bare IPv6 address needs brackets */

	/* milliseconds as a timeval */
	ok(ms_tv(0, 0, 0));
	ok(ms_tv(999, 0, 999000));
	ok(ms_tv(1000, 1, 0));
	ok(ms_tv(10250, 10, 250000));
	ok(ms_tv(4294967295L, 4294967, 295000));	/* UINT_MAX, from unsigned callers */

	/* random hex ids: 24 digits (intercepts), 32 (instances) */
	ok(hex_id(12));
	ok(hex_id(16));
	ok(hex_id(32));
	{
		char a[33], b[33];

		ok(kb_random_hex(a, 16) == 0 && kb_random_hex(b, 16) == 0 && strcmp(a, b) != 0);
		ok(kb_random_hex(a, 33) == -1);	/* more than the helper's buffer */
	}

	/* RFC 9110 tchar */
	ok(kb_http_tchar('a') && kb_http_tchar('Z') && kb_http_tchar('0') && kb_http_tchar('~'));
	ok(kb_http_tchar('!') && kb_http_tchar('\'') && kb_http_tchar('|'));
	ok(!kb_http_tchar('\0') && !kb_http_tchar(' ') && !kb_http_tchar(':') &&
	    !kb_http_tchar('"') && !kb_http_tchar('(') && !kb_http_tchar('\x7f'));
	ok(!kb_http_tchar((char)0xe9) && !kb_http_tchar(0xe9));

	/* base64: RFC 4648 vectors, binary, strict padding */
	ok(b64enc("", 0, ""));
	ok(b64enc("f", 1, "Zg=="));
	ok(b64enc("fo", 2, "Zm8="));
	ok(b64enc("foobar", 6, "Zm9vYmFy"));
	ok(b64enc("\0\xff", 2, "AP8="));
	ok(b64dec("Zg==", "f", 1));
	ok(b64dec("Zm8=", "fo", 2));
	ok(b64dec("Zm9vYmFy", "foobar", 6));
	ok(b64dec("AP8=", "\0\xff", 2));
	ok(b64dec("Zm9v\r\nYmFy\n", "foobar", 6));	/* line breaks, as Go allows */
	ok(b64dec("", NULL, 0));
	ok(b64dec("Zg", NULL, 0));		/* unpadded */
	ok(b64dec("Zg=", NULL, 0));
	ok(b64dec("Z===", NULL, 0));		/* three '=' */
	ok(b64dec("Zg==Zm8=", NULL, 0));	/* '=' inside */
	ok(b64dec("Z=g=", NULL, 0));
	ok(b64dec("Zm9v%mFy", NULL, 0));	/* not the alphabet */
	ok(b64dec("Zm9v-mFy", NULL, 0));	/* base64url is not base64 */

	/* token files: trimmed at both ends like strings.TrimSpace */
	ok(token("abc\n", 4, "abc", NULL));
	ok(token("  abc \r\n\t\v\f", 11, "abc", NULL));
	ok(token("a.b-c_d~e+f/g=", 14, "a.b-c_d~e+f/g=", NULL));
	ok(token("\n", 1, NULL, "empty"));
	ok(token("", 0, NULL, "empty"));
	ok(token("ab cd", 5, NULL, "not a token"));
	ok(token("ab\0cd\n", 6, NULL, "not a token"));	/* a NUL in the file */
	ok(token("ab\x01", 3, NULL, "not a token"));
	ok(token("\xc3\xa9t\xc3\xa9", 5, NULL, "not a token"));
	return ok_done();
}
