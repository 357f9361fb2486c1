/* Frame encoding and validation: round trips, every rejection rule, partial
 * input and boundary lengths. */
#include "../../proto/frame.c"

#include <string.h>

#include "ok.h"

static uint8_t buf[KB_FRAME_HDR + KB_FRAME_MAX + 64];

/* Lay out a frame by hand so that tests can produce what the encoder never
 * would (flags, reserved bit, oversize lengths). */
static size_t
mk(uint8_t type, uint8_t flags, uint16_t len, uint32_t stream, const void *payload, size_t plen)
{
	buf[0] = type;
	buf[1] = flags;
	buf[2] = len >> 8;
	buf[3] = len & 0xff;
	buf[4] = stream >> 24;
	buf[5] = (stream >> 16) & 0xff;
	buf[6] = (stream >> 8) & 0xff;
	buf[7] = stream & 0xff;
	if (plen)
		memcpy(buf + KB_FRAME_HDR, payload, plen);
	return KB_FRAME_HDR + plen;
}

static size_t
mkf(uint8_t type, uint32_t stream, const void *payload, size_t plen)
{
	return mk(type, 0, (uint16_t)plen, stream, payload, plen);
}

/* Decode a whole frame and return the result; *errp gets the error. */
static long
dec(size_t n, struct kb_frame *f, const char **errp)
{
	*errp = NULL;
	return kb_frame_decode(buf, n, f, errp);
}

static int
rejects(size_t n, const char *want)
{
	struct kb_frame f;
	const char *err;
	long r = dec(n, &f, &err);

	if (r != -1 || err == NULL || strcmp(err, want) != 0) {
		printf("# got %ld err %s, want -1 %s\n", r, err ? err : "(null)", want);
		return 0;
	}
	return 1;
}

static int
accepts(size_t n)
{
	struct kb_frame f;
	const char *err;
	long r = dec(n, &f, &err);

	if (r != (long)n) {
		printf("# got %ld err %s, want %zu\n", r, err ? err : "(null)", n);
		return 0;
	}
	return 1;
}

static void
test_header_roundtrip(void)
{
	struct kb_frame f;
	const char *err = NULL;
	uint8_t h[KB_FRAME_HDR];
	static const uint8_t want[KB_FRAME_HDR] = { 5, 0, 0x12, 0x34, 0x7f, 0x00, 0x00, 0x03 };

	kb_frame_header_encode(h, KB_F_DATA, 0x7f000003, 0x1234);
	ok(memcmp(h, want, sizeof(h)) == 0);
	kb_frame_header_encode(h, KB_F_DATA, 0x7fffffff, KB_FRAME_MAX);
	ok(kb_frame_header_decode(h, &f, &err) == 0);
	ok(f.type == KB_F_DATA && f.flags == 0 && f.len == KB_FRAME_MAX &&
	    f.stream == 0x7fffffff && f.payload == NULL);
	kb_frame_header_encode(h, KB_F_PING, 0, 8);
	ok(kb_frame_header_decode(h, &f, &err) == 0 && f.type == KB_F_PING);
}

static void
test_header_rejects(void)
{
	uint8_t z[16] = { 0 };
	uint8_t d = 'x';

	ok(rejects(mk(0, 0, 1, 1, &d, 1), "unknown frame type"));
	ok(rejects(mk(KB_F_TYPE_MAX + 1, 0, 0, 0, NULL, 0), "unknown frame type"));
	ok(rejects(mk(255, 0, 0, 0, NULL, 0), "unknown frame type"));
	ok(rejects(mk(KB_F_DATA, 1, 1, 1, &d, 1), "frame flags set"));
	ok(rejects(mk(KB_F_DATA, 0x80, 1, 1, &d, 1), "frame flags set"));
	ok(rejects(mk(KB_F_DATA, 0, KB_FRAME_MAX + 1, 1, NULL, 0), "frame too long"));
	ok(rejects(mk(KB_F_DATA, 0, 0xffff, 1, NULL, 0), "frame too long"));
	ok(rejects(mk(KB_F_DATA, 0, 1, 0x80000001, &d, 1), "reserved stream bit set"));
	ok(rejects(mk(KB_F_PING, 0, 8, 0x80000000, z, 8), "reserved stream bit set"));

	/* Session frames on a stream. */
	ok(rejects(mkf(KB_F_HELLO, 1, "{}", 2), "session frame on a stream"));
	ok(rejects(mkf(KB_F_CONTROL, 2, "{}", 2), "session frame on a stream"));
	ok(rejects(mkf(KB_F_PING, 1, z, 8), "session frame on a stream"));
	ok(rejects(mkf(KB_F_PONG, 1, z, 8), "session frame on a stream"));
	ok(rejects(mkf(KB_F_GOAWAY, 1, z, 5), "session frame on a stream"));

	/* Stream frames on stream 0. */
	ok(rejects(mkf(KB_F_OPEN, 0, "\1\4\0\120\12\0\0\1", 8), "stream frame on stream 0"));
	ok(rejects(mkf(KB_F_ACCEPT, 0, NULL, 0), "stream frame on stream 0"));
	ok(rejects(mkf(KB_F_DATA, 0, &d, 1), "stream frame on stream 0"));
	ok(rejects(mkf(KB_F_WINDOW, 0, "\0\0\1\0", 4), "stream frame on stream 0"));
	ok(rejects(mkf(KB_F_FIN, 0, NULL, 0), "stream frame on stream 0"));
	ok(rejects(mkf(KB_F_RESET, 0, "\1", 1), "stream frame on stream 0"));
}

static void
test_lengths(void)
{
	static const uint8_t z[64];
	static const struct {
		uint8_t type;
		uint32_t stream;
		uint16_t good_lo, good_hi;	/* inclusive range that passes */
	} t[] = {
		{ KB_F_HELLO, 0, 2, KB_FRAME_MAX },
		{ KB_F_CONTROL, 0, 2, KB_FRAME_MAX },
		{ KB_F_ACCEPT, 1, 0, 0 },
		{ KB_F_DATA, 1, 1, KB_FRAME_MAX },
		{ KB_F_WINDOW, 1, 4, 4 },
		{ KB_F_FIN, 1, 0, 0 },
		{ KB_F_RESET, 1, 1, KB_FRAME_MAX },
		{ KB_F_PING, 0, 8, 8 },
		{ KB_F_PONG, 0, 8, 8 },
		{ KB_F_GOAWAY, 0, 5, KB_FRAME_MAX },
	};
	struct kb_frame f;
	const char *err;
	size_t i;
	unsigned len;
	int bad;

	/* The header alone decides these lengths; sweep them all. */
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		bad = 0;
		for (len = 0; len <= KB_FRAME_MAX; len++) {
			int want = len >= t[i].good_lo && len <= t[i].good_hi;
			int got;

			mk(t[i].type, 0, (uint16_t)len, t[i].stream, NULL, 0);
			err = NULL;
			got = kb_frame_header_decode(buf, &f, &err) == 0;
			if (got != want || (!got && strcmp(err, "bad frame length") != 0)) {
				printf("# %s len %u: got %d\n", kb_frame_type_name(t[i].type), len, got);
				bad++;
			}
		}
		ok(bad == 0);
	}

	/* OPEN: 3..34 (DIAL needs 8 or 20, checked with the payload). */
	bad = 0;
	for (len = 0; len <= KB_FRAME_MAX; len++) {
		int want = len >= 3 && len <= 2 + KB_OPEN_REF_MAX;

		mk(KB_F_OPEN, 0, (uint16_t)len, 1, NULL, 0);
		if ((kb_frame_header_decode(buf, &f, &err) == 0) != want)
			bad++;
	}
	ok(bad == 0);

	/* Boundary frames through the whole decoder. */
	memset(buf + KB_FRAME_HDR, 'a', KB_FRAME_MAX);
	ok(accepts(mk(KB_F_DATA, 0, KB_FRAME_MAX, 3, NULL, 0) + KB_FRAME_MAX));
	ok(accepts(mkf(KB_F_DATA, 3, "a", 1)));
	ok(rejects(mkf(KB_F_DATA, 3, NULL, 0), "bad frame length"));
	ok(rejects(mkf(KB_F_ACCEPT, 3, "x", 1), "bad frame length"));
	ok(rejects(mkf(KB_F_FIN, 3, "x", 1), "bad frame length"));
	ok(rejects(mkf(KB_F_WINDOW, 3, z, 3), "bad frame length"));
	ok(rejects(mkf(KB_F_WINDOW, 3, z, 5), "bad frame length"));
	ok(rejects(mkf(KB_F_PING, 0, z, 7), "bad frame length"));
	ok(rejects(mkf(KB_F_PONG, 0, z, 9), "bad frame length"));
	ok(rejects(mkf(KB_F_GOAWAY, 0, z, 4), "bad frame length"));
	ok(rejects(mkf(KB_F_RESET, 3, NULL, 0), "bad frame length"));
	ok(rejects(mkf(KB_F_HELLO, 0, "{", 1), "bad frame length"));
	ok(rejects(mkf(KB_F_CONTROL, 0, NULL, 0), "bad frame length"));
	ok(rejects(mkf(KB_F_OPEN, 3, z, 35), "bad frame length"));
	ok(rejects(mkf(KB_F_OPEN, 3, z, 2), "bad frame length"));
	ok(accepts(mkf(KB_F_ACCEPT, 3, NULL, 0)));
	ok(accepts(mkf(KB_F_FIN, 3, NULL, 0)));
	ok(accepts(mkf(KB_F_PING, 0, "12345678", 8)));
	ok(accepts(mkf(KB_F_PONG, 0, "\0\0\0\0\0\0\0\0", 8)));
}

static void
test_need_more(void)
{
	struct kb_frame f;
	const char *err;
	size_t n, i;
	int bad = 0;

	n = mkf(KB_F_DATA, 5, "hello", 5);
	for (i = 0; i < n; i++)
		if (dec(i, &f, &err) != 0)
			bad++;
	ok(bad == 0);
	ok(dec(n, &f, &err) == (long)n);
	ok(f.type == KB_F_DATA && f.stream == 5 && f.len == 5 &&
	    f.payload == buf + KB_FRAME_HDR && memcmp(f.payload, "hello", 5) == 0);
	/* Trailing bytes belong to the next frame. */
	ok(dec(n + 3, &f, &err) == (long)n);

	/* A bad header is reported as soon as the header is complete, without
	 * waiting for a payload that may never come. */
	mk(KB_F_DATA, 0, KB_FRAME_MAX + 1, 5, NULL, 0);
	ok(dec(KB_FRAME_HDR - 1, &f, &err) == 0);
	ok(dec(KB_FRAME_HDR, &f, &err) == -1 && strcmp(err, "frame too long") == 0);
	mk(KB_F_DATA, 0, 100, 0, NULL, 0);
	ok(dec(KB_FRAME_HDR, &f, &err) == -1);

	/* A bad payload is only judged once it is all there. */
	mkf(KB_F_WINDOW, 1, "\0\0\0\0", 4);
	ok(dec(KB_FRAME_HDR + 3, &f, &err) == 0);
	ok(dec(KB_FRAME_HDR + 4, &f, &err) == -1 && strcmp(err, "zero window increment") == 0);

	/* Frames back to back. */
	{
		uint8_t seq[64];
		size_t off = 0, a, b;
		long r;

		a = mkf(KB_F_FIN, 7, NULL, 0);
		memcpy(seq, buf, a);
		b = mkf(KB_F_PING, 0, "ABCDEFGH", 8);
		memcpy(seq + a, buf, b);
		r = kb_frame_decode(seq, a + b, &f, &err);
		ok(r == (long)a && f.type == KB_F_FIN && f.stream == 7);
		off = (size_t)r;
		r = kb_frame_decode(seq + off, a + b - off, &f, &err);
		ok(r == (long)b && f.type == KB_F_PING && memcmp(f.payload, "ABCDEFGH", 8) == 0);
	}
}

static void
test_window(void)
{
	struct kb_frame f;
	const char *err;

	ok(accepts(mkf(KB_F_WINDOW, 1, "\0\0\0\1", 4)));
	ok(accepts(mkf(KB_F_WINDOW, 1, "\0\10\0\0", 4)));
	ok(accepts(mkf(KB_F_WINDOW, 1, "\x7f\xff\xff\xff", 4)));
	ok(dec(KB_FRAME_HDR + 4, &f, &err) == KB_FRAME_HDR + 4);
	ok(rejects(mkf(KB_F_WINDOW, 1, "\0\0\0\0", 4), "zero window increment"));
	ok(rejects(mkf(KB_F_WINDOW, 1, "\x80\0\0\0", 4), "window increment too large"));
	ok(rejects(mkf(KB_F_WINDOW, 1, "\xff\xff\xff\xff", 4), "window increment too large"));
}

static void
test_reset(void)
{
	uint8_t p[8];
	int r;

	for (r = 1; r <= KB_RST_MAX; r++) {
		p[0] = (uint8_t)r;
		if (!accepts(mkf(KB_F_RESET, 9, p, 1)))
			break;
	}
	ok(r == KB_RST_MAX + 1);
	ok(accepts(mkf(KB_F_RESET, 9, "\2connection refused", 19)));
	ok(rejects(mkf(KB_F_RESET, 9, "\0", 1), "unknown reset reason"));
	p[0] = KB_RST_MAX + 1;
	ok(rejects(mkf(KB_F_RESET, 9, p, 1), "unknown reset reason"));
	ok(rejects(mkf(KB_F_RESET, 9, "\xff", 1), "unknown reset reason"));
	ok(rejects(mkf(KB_F_RESET, 9, "\2ab\0c", 5), "nul byte in reset text"));
	ok(rejects(mkf(KB_F_RESET, 9, "\2\0", 2), "nul byte in reset text"));

	ok(strcmp(kb_reset_reason_name(KB_RST_CANCEL), "cancel") == 0);
	ok(strcmp(kb_reset_reason_name(KB_RST_REFUSED), "refused") == 0);
	ok(strcmp(kb_reset_reason_name(KB_RST_SESSION), "session") == 0);
	ok(strcmp(kb_reset_reason_name(KB_RST_INTERNAL), "internal") == 0);
	ok(strcmp(kb_reset_reason_name(0), "unknown") == 0);
	ok(strcmp(kb_reset_reason_name(KB_RST_MAX + 1), "unknown") == 0);
}

static void
test_goaway(void)
{
	struct kb_frame f;
	const char *err, *text;
	size_t textlen;
	uint32_t last;
	uint8_t code;

	ok(accepts(mkf(KB_F_GOAWAY, 0, "\0\0\0\0\0", 5)));
	ok(accepts(mkf(KB_F_GOAWAY, 0, "\0\0\1\3\2unsupported protocol version 2", 35)));
	ok(dec(KB_FRAME_HDR + 35, &f, &err) > 0);
	ok(kb_goaway_decode(f.payload, f.len, &last, &code, &text, &textlen) == 0);
	ok(last == 259 && code == KB_GOAWAY_REFUSED && textlen == 30 &&
	    memcmp(text, "unsupported protocol version 2", 30) == 0);
	ok(accepts(mkf(KB_F_GOAWAY, 0, "\x7f\xff\xff\xff\3", 5)));
	ok(rejects(mkf(KB_F_GOAWAY, 0, "\0\0\0\0\4", 5), "unknown goaway code"));
	ok(rejects(mkf(KB_F_GOAWAY, 0, "\0\0\0\0\xff", 5), "unknown goaway code"));
	ok(rejects(mkf(KB_F_GOAWAY, 0, "\x80\0\0\1\0", 5), "reserved stream bit set"));
	ok(rejects(mkf(KB_F_GOAWAY, 0, "\0\0\0\0\1bad\0", 9), "nul byte in goaway text"));
	ok(kb_goaway_decode((const uint8_t *)"\0\0\0\0", 4, &last, &code, &text, &textlen) == -1);
}

static void
test_json(void)
{
	static const char hello[] = "{\"proto\":1,\"role\":\"daemon\"}";

	ok(accepts(mkf(KB_F_HELLO, 0, hello, sizeof(hello) - 1)));
	ok(accepts(mkf(KB_F_HELLO, 0, "{}", 2)));
	ok(accepts(mkf(KB_F_CONTROL, 0, "{\"type\":\"resolve\"}", 18)));
	/* Not parsed here: only the cheap structural checks. */
	ok(accepts(mkf(KB_F_CONTROL, 0, "{x", 2)));
	ok(rejects(mkf(KB_F_HELLO, 0, "[]", 2), "json payload is not an object"));
	ok(rejects(mkf(KB_F_HELLO, 0, " {}", 3), "json payload is not an object"));
	ok(rejects(mkf(KB_F_CONTROL, 0, "\0{}", 3), "json payload is not an object"));
	ok(rejects(mkf(KB_F_CONTROL, 0, "{}\0", 3), "nul byte in json payload"));
	ok(rejects(mkf(KB_F_HELLO, 0, "{\"a\":\"\0\"}", 9), "nul byte in json payload"));
	/* The escape too: cJSON would end the string there, so "web\u0000x"
	 * would reach a handler as "web". An escaped backslash before u0000
	 * is text, and fine; so are other \u escapes. */
	{
		static const char esc[] = "{\"workload\":\"web\\u0000x\"}";
		static const char esc2[] = "{\"a\":\"\\u0000\"}";
		static const char bs[] = "{\"a\":\"\\\\u0000\",\"b\":\"\\u00e9\\\"\"}";
		static const char end[] = "{\"a\":\"\\u000\"}";

		ok(rejects(mkf(KB_F_CONTROL, 0, esc, sizeof(esc) - 1), "escaped nul in json payload"));
		ok(rejects(mkf(KB_F_HELLO, 0, esc2, sizeof(esc2) - 1), "escaped nul in json payload"));
		ok(accepts(mkf(KB_F_CONTROL, 0, bs, sizeof(bs) - 1)));
		ok(accepts(mkf(KB_F_CONTROL, 0, end, sizeof(end) - 1)));
	}
}

static void
test_open(void)
{
	struct kb_open o, o2;
	struct kb_frame f;
	const char *err;
	uint8_t p[32];
	char s[64];
	size_t n;

	memset(&o, 0, sizeof(o));
	o.kind = KB_OPEN_DIAL;
	o.family = 4;
	o.port = 8080;
	memcpy(o.addr, "\x0a\x60\x01\x02", 4);
	n = kb_open_encode(&o, p);
	ok(n == 8 && memcmp(p, "\1\4\x1f\x90\x0a\x60\x01\x02", 8) == 0);
	ok(kb_open_decode(p, n, &o2, &err) == 0 && memcmp(&o, &o2, sizeof(o)) == 0);
	ok(strcmp(kb_open_str(&o2, s, sizeof(s)), "10.96.1.2:8080") == 0);
	ok(accepts(mkf(KB_F_OPEN, 1, p, n)));

	memset(&o, 0, sizeof(o));
	o.kind = KB_OPEN_DIAL;
	o.family = 6;
	o.port = 443;
	memcpy(o.addr, "\xfd\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
	n = kb_open_encode(&o, p);
	ok(n == 20 && p[0] == 1 && p[1] == 6 && p[2] == 1 && p[3] == 0xbb);
	ok(kb_open_decode(p, n, &o2, &err) == 0 && memcmp(&o, &o2, sizeof(o)) == 0);
	ok(strcmp(kb_open_str(&o2, s, sizeof(s)), "[fd00::1]:443") == 0);
	ok(accepts(mkf(KB_F_OPEN, 2, p, n)));
	ok(dec(KB_FRAME_HDR + n, &f, &err) == (long)(KB_FRAME_HDR + n) && f.stream == 2);

	o.family = 5;
	ok(kb_open_encode(&o, p) == 0);
	ok(strcmp(kb_open_str(&o, s, sizeof(s)), "(family 5)") == 0);
	/* A short buffer truncates instead of overflowing. */
	o.family = 4;
	ok(strcmp(kb_open_str(&o, s, 4), "253") == 0);

	ok(rejects(mkf(KB_F_OPEN, 1, "\0\4\0\120\12\0\0\1", 8), "unknown open kind"));
	ok(rejects(mkf(KB_F_OPEN, 1, "\4\4\0\120\12\0\0\1", 8), "unknown open kind"));
	/* INTERCEPT and DELIVER carry an intercept id. */
	ok(accepts(mkf(KB_F_OPEN, 1, "\2\3ab9", 5)));
	ok(accepts(mkf(KB_F_OPEN, 2, "\3\1z", 3)));
	ok(rejects(mkf(KB_F_OPEN, 1, "\2\4ab9", 5), "open reference length"));
	ok(rejects(mkf(KB_F_OPEN, 1, "\2\0xx", 4), "open reference length"));
	ok(rejects(mkf(KB_F_OPEN, 1, "\2\3aB9", 5), "bad character in open reference"));
	{
		struct kb_open w = { .kind = KB_OPEN_DELIVER }, r;
		uint8_t b[64];
		size_t wn;
		const char *e;

		snprintf(w.ref, sizeof(w.ref), "0123456789abcdef");
		wn = kb_open_encode(&w, b);
		ok(wn == 18 && kb_open_decode(b, wn, &r, &e) == 0 && r.kind == KB_OPEN_DELIVER &&
		    strcmp(r.ref, w.ref) == 0);
		ok(strcmp(kb_open_str(&r, (char *)b, sizeof(b)), "intercept 0123456789abcdef") == 0);
		w.ref[0] = '\0';
		ok(kb_open_encode(&w, b) == 0);
	}
	ok(rejects(mkf(KB_F_OPEN, 1, "\1\5\0\120\12\0\0\1", 8), "unknown address family"));
	ok(rejects(mkf(KB_F_OPEN, 1, "\1\0\0\120\12\0\0\1", 8), "unknown address family"));
	ok(rejects(mkf(KB_F_OPEN, 1, "\1\6\0\120\12\0\0\1", 8), "open length does not match family"));
	memset(p, 0, sizeof(p));
	p[0] = 1;
	p[1] = 4;
	p[3] = 80;
	ok(rejects(mkf(KB_F_OPEN, 1, p, 20), "open length does not match family"));
	ok(rejects(mkf(KB_F_OPEN, 1, "\1\4\0\0\12\0\0\1", 8), "open port zero"));
	ok(kb_open_decode(p, 3, &o2, &err) == -1 && strcmp(err, "open too short") == 0);
	ok(kb_open_decode(p, 0, &o2, &err) == -1);
	/* The decoder also stands alone, for any length the header let through. */
	ok(kb_open_decode(p, 9, &o2, &err) == -1);
}

static void
test_names(void)
{
	ok(strcmp(kb_frame_type_name(KB_F_HELLO), "HELLO") == 0);
	ok(strcmp(kb_frame_type_name(KB_F_DATA), "DATA") == 0);
	ok(strcmp(kb_frame_type_name(KB_F_GOAWAY), "GOAWAY") == 0);
	ok(strcmp(kb_frame_type_name(0), "UNKNOWN") == 0);
	ok(strcmp(kb_frame_type_name(KB_F_TYPE_MAX + 1), "UNKNOWN") == 0);
	ok(strcmp(kb_frame_type_name(255), "UNKNOWN") == 0);
}

/* kb_frame_payload_check() also stands alone on a frame the caller built. */
static void
test_payload_check_alone(void)
{
	struct kb_frame f = { KB_F_RESET, 0, 0, 1, (const uint8_t *)"" };
	const char *err = NULL;

	ok(kb_frame_payload_check(&f, &err) == -1 && strcmp(err, "bad frame length") == 0);
	f.type = 0;
	f.len = 1;
	ok(kb_frame_payload_check(&f, &err) == -1);
	f.type = KB_F_WINDOW;
	f.len = 4;
	f.payload = (const uint8_t *)"\0\0\0\1";
	ok(kb_frame_payload_check(&f, &err) == 0);
	f.type = KB_F_DATA;
	ok(kb_frame_payload_check(&f, NULL) == 0);
	f.type = KB_F_FIN;
	ok(kb_frame_payload_check(&f, NULL) == -1);
}

/* No input of any shape may crash the decoder or make it read past n. */
static void
test_garbage(void)
{
	struct kb_frame f;
	const char *err;
	uint32_t x = 0x12345678;
	int i, bad = 0;
	size_t n;
	long r;

	for (i = 0; i < 200000; i++) {
		size_t j;

		n = x % 64;
		for (j = 0; j < n; j++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			buf[j] = (uint8_t)x;
		}
		/* Bias towards plausible headers so payload checks run too. */
		if (n >= KB_FRAME_HDR && (x & 1)) {
			buf[0] = 1 + (x >> 8) % KB_F_TYPE_MAX;
			buf[1] = 0;
			buf[2] = 0;
			buf[3] = (uint8_t)(n - KB_FRAME_HDR);
			buf[4] &= 0x7f;
		}
		err = NULL;
		r = kb_frame_decode(buf, n, &f, &err);
		if (r < -1 || r > (long)n || (r == -1 && err == NULL))
			bad++;
	}
	ok(bad == 0);
}

int
main(void)
{
	test_header_roundtrip();
	test_header_rejects();
	test_lengths();
	test_need_more();
	test_window();
	test_reset();
	test_goaway();
	test_json();
	test_open();
	test_names();
	test_payload_check_alone();
	test_garbage();
	return ok_done();
}
