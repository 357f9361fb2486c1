/* proto/spdy.c: the SPDY/3 dictionary (length, Adler-32), frame encode and
 * decode, header blocks through real zlib across several frames (the
 * shared contexts), flow-control accounting, and malformed frames refused. */
#include "../../proto/spdy.c"

#include "ok.h"

/* Parse exactly one frame of n bytes: every shorter prefix needs more. */
static int
parse_one(struct kb_spdy *s, const unsigned char *b, size_t n, struct kb_spdy_frame *f)
{
	size_t need, i;
	char err[200];

	for (i = 0; i < n && i < KB_SPDY_HDR; i++)
		if (kb_spdy_parse(s, b, i, 1u << 20, f, &need, err, sizeof(err)) != 0)
			return 0;
	if (n > KB_SPDY_HDR && kb_spdy_parse(s, b, n - 1, 1u << 20, f, &need, err,
	    sizeof(err)) != 0)
		return 0;
	return kb_spdy_parse(s, b, n, 1u << 20, f, &need, err, sizeof(err)) == 1 && need == n;
}

static void
test_dictionary(void)
{
	const unsigned char *d;
	size_t n;

	d = spdy_dict(&n);
	ok(n == 1423);
	ok(adler32(adler32(0L, Z_NULL, 0), d, (uInt)n) == 0xe3c6a7c2UL);
	ok(memcmp(d, "\0\0\0\7options\0\0\0\4head", 15) == 0);
	ok(memcmp(d + n - 5, "q=0.", 4) == 0 || memcmp(d + n - 4, "q=0.", 4) == 0);
}

/* Client A's header blocks decoded by server B, in order, three times
 * (the second and later blocks use the contexts' history). */
static void
test_headers(void)
{
	static const char *const names[] = { "streamtype", "port", "requestid" };
	const char *vals[3] = { "error", "8443", "0" };
	struct kb_spdy *a = kb_spdy_new(), *b = kb_spdy_new();
	struct kb_spdy_frame f;
	unsigned char buf[512];
	size_t n, first = 0;
	int i, good = 1;

	ok(a != NULL && b != NULL);
	for (i = 0; i < 3; i++) {
		vals[0] = i == 1 ? "data" : "error";
		n = kb_spdy_headers_frame(a, buf, sizeof(buf), KB_SPDY_SYN_STREAM,
		    (uint32_t)(1 + 2 * i), 0, names, vals, 3);
		if (i == 0)
			first = n;
		good = good && n > 18 && buf[0] == 0x80 && buf[1] == 3 && buf[3] == 1 &&
		    parse_one(b, buf, n, &f) && f.type == KB_SPDY_SYN_STREAM &&
		    f.stream == (uint32_t)(1 + 2 * i) && f.npairs == 3 &&
		    strcmp(kb_spdy_header(&f, "streamtype"), vals[0]) == 0 &&
		    strcmp(kb_spdy_header(&f, "port"), "8443") == 0 &&
		    strcmp(kb_spdy_header(&f, "requestid"), "0") == 0 &&
		    kb_spdy_header(&f, "host") == NULL;
	}
	ok(good);
	/* the dictionary and the history shorten the later blocks */
	ok(n < first);
	/* a reply with no pairs, FIN */
	n = kb_spdy_headers_frame(b, buf, sizeof(buf), KB_SPDY_SYN_REPLY, 3, KB_SPDY_FLAG_FIN,
	    NULL, NULL, 0);
	ok(n > 12 && parse_one(a, buf, n, &f) && f.type == KB_SPDY_SYN_REPLY && f.stream == 3 &&
	    f.flags == KB_SPDY_FLAG_FIN && f.npairs == 0);
	/* too small an output: refused */
	ok(kb_spdy_headers_frame(a, buf, 12, KB_SPDY_SYN_STREAM, 9, 0, names, vals, 3) == 0);
	kb_spdy_free(a);
	kb_spdy_free(b);
}

static void
test_frames(void)
{
	struct kb_spdy *s = kb_spdy_new();
	struct kb_spdy_frame f;
	unsigned char buf[128];
	static const uint32_t ids[] = { 4, KB_SPDY_SETTINGS_INITIAL_WINDOW };
	static const uint32_t vals[] = { 100, 1u << 20 };
	uint32_t id, v;
	size_t n;
	int fl;

	n = kb_spdy_data_header(buf, 3, KB_SPDY_FLAG_FIN, 5);
	memcpy(buf + n, "hello", 5);
	ok(parse_one(s, buf, n + 5, &f) && f.type == KB_SPDY_DATA && f.stream == 3 &&
	    f.flags == KB_SPDY_FLAG_FIN && f.len == 5 && memcmp(f.data, "hello", 5) == 0);
	n = kb_spdy_rst_stream(buf, 3, KB_SPDY_CANCEL);
	ok(parse_one(s, buf, n, &f) && f.type == KB_SPDY_RST_STREAM && f.stream == 3 &&
	    f.value == KB_SPDY_CANCEL);
	n = kb_spdy_ping(buf, 2);
	ok(n == 12 && parse_one(s, buf, n, &f) && f.type == KB_SPDY_PING && f.value == 2);
	n = kb_spdy_goaway(buf, 5, 0);
	ok(parse_one(s, buf, n, &f) && f.type == KB_SPDY_GOAWAY && f.stream == 5 && f.value == 0);
	n = kb_spdy_window_update(buf, 3, 40000);
	ok(parse_one(s, buf, n, &f) && f.type == KB_SPDY_WINDOW_UPDATE && f.stream == 3 &&
	    f.value == 40000);
	n = kb_spdy_settings(buf, sizeof(buf), ids, vals, 2);
	ok(n == 28 && parse_one(s, buf, n, &f) && f.type == KB_SPDY_SETTINGS && f.nsettings == 2);
	kb_spdy_setting(&f, 1, &id, &fl, &v);
	ok(id == KB_SPDY_SETTINGS_INITIAL_WINDOW && v == 1u << 20 && fl == 0);
	/* an unknown control type: parsed, to be ignored */
	memcpy(buf, "\x80\x03\x00\x0f\x00\x00\x00\x02xy", 10);
	ok(parse_one(s, buf, 10, &f) && f.type == 15 && f.len == 2);
	kb_spdy_free(s);
}

/* One malformed frame: -1 and a line naming it. */
static int
refused(const void *b, size_t n, const char *what)
{
	struct kb_spdy *s = kb_spdy_new();
	struct kb_spdy_frame f;
	size_t need;
	char err[200] = "";
	int r;

	r = kb_spdy_parse(s, b, n, 1024, &f, &need, err, sizeof(err));
	kb_spdy_free(s);
	if (r != -1 || strstr(err, what) == NULL || strchr(err, '\n') != NULL) {
		fprintf(stderr, "# got %d '%s', wanted '%s'\n", r, err, what);
		return 0;
	}
	return 1;
}

static void
test_malformed(void)
{
	struct kb_spdy *a = kb_spdy_new(), *b = kb_spdy_new();
	static const char *const upper[] = { "Port" };
	static const char *const v[] = { "1" };
	unsigned char buf[256], raw[64];
	uLongf zl;
	size_t n;

	ok(refused("\x80\x02\x00\x01\x00\x00\x00\x00", 8, "version 2"));
	ok(refused("\x00\x00\x00\x00\x00\x00\x00\x01x", 9, "stream 0"));
	ok(refused("\x00\x00\x00\x03\x00\x00\x08\x00", 8, "2048 bytes"));     /* over data_max */
	ok(refused("\x80\x03\x00\x01\x00\x01\x00\x00", 8, "65536 bytes"));    /* control over 16 KiB */
	ok(refused("\x80\x03\x00\x06\x00\x00\x00\x03" "abc", 11, "of 3 bytes")); /* short ping */
	ok(refused("\x80\x03\x00\x03\x00\x00\x00\x09" "123456789", 17, "of 9 bytes"));
	ok(refused("\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x02" "12345678", 20, "2 entries"));
	ok(refused("\x80\x03\x00\x02\x00\x00\x00\x04\x00\x00\x00\x00", 12, "stream 0"));
	/* a header block that is not zlib data */
	ok(refused("\x80\x03\x00\x02\x00\x00\x00\x08\x00\x00\x00\x01" "junk", 16, "header block"));
	/* zlib data without the SPDY dictionary: its own, no dictionary id */
	memcpy(raw, "\0\0\0\1\0\0\0\4port\0\0\0\0011", 17);
	zl = sizeof(buf) - 12;
	ok(compress(buf + 12, &zl, raw, 17) == Z_OK);
	memcpy(buf, "\x80\x03\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01", 12);
	buf[7] = (unsigned char)(4 + zl);
	ok(refused(buf, 12 + zl, "")); /* the stream ended (Z_STREAM_END): refused */
	/* an uppercase name, encoded by our own deflate */
	n = kb_spdy_headers_frame(a, buf, sizeof(buf), KB_SPDY_SYN_REPLY, 1, 0, upper, v, 1);
	{
		struct kb_spdy_frame f;
		size_t need;
		char err[200] = "";

		ok(n > 0 && kb_spdy_parse(b, buf, n, 1024, &f, &need, err, sizeof(err)) == -1 &&
		    strstr(err, "lowercase") != NULL);
	}
	/* a pair count beyond the block */
	memcpy(raw, "\0\0\0\5\0\0\0\4port\0\0\0\0011", 17);
	{
		struct kb_spdy *c = kb_spdy_new(), *d = kb_spdy_new();
		struct kb_spdy_frame f;
		size_t need;
		char err[200] = "";

		c->def.next_in = raw;
		c->def.avail_in = 17;
		c->def.next_out = buf + 12;
		c->def.avail_out = sizeof(buf) - 12;
		ok(deflate(&c->def, Z_SYNC_FLUSH) == Z_OK);
		n = sizeof(buf) - 12 - c->def.avail_out;
		memcpy(buf, "\x80\x03\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01", 12);
		buf[7] = (unsigned char)(4 + n);
		ok(kb_spdy_parse(d, buf, 12 + n, 1024, &f, &need, err, sizeof(err)) == -1 &&
		    strstr(err, "malformed") != NULL);
		kb_spdy_free(c);
		kb_spdy_free(d);
	}
	kb_spdy_free(a);
	kb_spdy_free(b);
}

static void
test_flow(void)
{
	struct kb_spdy_flow w;
	uint32_t d, sum = 0;
	int i;

	kb_spdy_flow_init(&w);
	/* spdystream never updates: no limit until the peer shows flow control */
	ok(kb_spdy_flow_allowed(&w, 1u << 20) == 1u << 20);
	kb_spdy_flow_sent(&w, 60000);
	ok(kb_spdy_flow_update(&w, 1000) == 0 && w.enforced);
	ok(kb_spdy_flow_allowed(&w, 32768) == 65536 - 60000 + 1000);
	kb_spdy_flow_sent(&w, 6536);
	ok(kb_spdy_flow_allowed(&w, 1) == 0);
	ok(kb_spdy_flow_update(&w, 0) == -1);
	ok(kb_spdy_flow_update(&w, 100) == 0 && kb_spdy_flow_allowed(&w, 1000) == 100);
	ok(kb_spdy_flow_update(&w, 0x7fffffff) == -1); /* over 2^31-1 */
	ok(kb_spdy_flow_allowed(&w, 1000) == 100);
	/* SETTINGS: the window moves by the difference, may go negative */
	ok(kb_spdy_flow_initial(&w, 1000) == 0 && w.send < 0 && kb_spdy_flow_allowed(&w, 9) == 0);
	ok(kb_spdy_flow_initial(&w, 0x80000000u) == -1);
	kb_spdy_flow_init(&w);
	ok(kb_spdy_flow_initial(&w, 1u << 20) == 0 && kb_spdy_flow_allowed(&w, 2u << 20) == 1u << 20);
	/* consumed: acknowledged in steps of at least half the window */
	kb_spdy_flow_init(&w);
	for (i = 0; i < 100; i++) {
		d = kb_spdy_flow_consumed(&w, 1000);
		if (d != 0 && d < KB_SPDY_WINDOW / 2)
			break;
		sum += d;
	}
	ok(i == 100 && sum + w.consumed == 100000 && w.consumed < KB_SPDY_WINDOW / 2);
}

int
main(void)
{
	test_dictionary();
	test_headers();
	test_frames();
	test_malformed();
	test_flow();
	return ok_done();
}
