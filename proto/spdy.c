/* SPDY/3.1 client framing (see spdy.h): frames in and out, header blocks
 * through zlib with the SPDY/3 dictionary, one stream's flow control. */
#include "spdy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

struct kb_spdy {
	z_stream def, inf;
	int def_ok, inf_ok;
	unsigned char blk[KB_SPDY_BLOCK_MAX];                 /* a decompressed block */
	char strs[KB_SPDY_BLOCK_MAX + 2 * KB_SPDY_PAIRS_MAX]; /* its strings, NUL-ended */
};

/* ---- the SPDY/3 header dictionary (draft 3, section 2.6.10.1) ----
 * 65 words, each after its length (32 bits, big endian), then the text
 * below as it is: 1423 bytes, zlib's Adler-32 0xe3c6a7c2. */
static const char *const dict_words[] = {
	"options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
	"accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
	"cache-control", "connection", "content-base", "content-encoding", "content-language",
	"content-length", "content-location", "content-md5", "content-range", "content-type",
	"date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
	"if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
	"max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range",
	"referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
	"user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status",
	"200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
};
static const char dict_tail[] =
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
    "charset=iso-8859-1,utf-,*,enq=0.";
#define DICT_LEN 1423

static unsigned char dict[DICT_LEN];
static size_t dict_len;

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The dictionary, built once (idempotent: the same bytes every time). */
static const unsigned char *
spdy_dict(size_t *len)
{
	size_t i, n = 0, w;

	if (dict_len == 0) {
		for (i = 0; i < sizeof(dict_words) / sizeof(dict_words[0]); i++) {
			w = strlen(dict_words[i]);
			put32(dict + n, (uint32_t)w);
			memcpy(dict + n + 4, dict_words[i], w);
			n += 4 + w;
		}
		memcpy(dict + n, dict_tail, sizeof(dict_tail) - 1);
		dict_len = n + sizeof(dict_tail) - 1;
	}
	*len = dict_len;
	return dict;
}

struct kb_spdy *
kb_spdy_new(void)
{
	struct kb_spdy *s;
	const unsigned char *d;
	size_t dl;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	d = spdy_dict(&dl);
	if (dl != DICT_LEN || deflateInit(&s->def, Z_DEFAULT_COMPRESSION) != Z_OK) {
		free(s);
		return NULL;
	}
	s->def_ok = 1;
	if (deflateSetDictionary(&s->def, d, (uInt)dl) != Z_OK ||
	    inflateInit(&s->inf) != Z_OK) {
		kb_spdy_free(s);
		return NULL;
	}
	s->inf_ok = 1;
	return s;
}

void
kb_spdy_free(struct kb_spdy *s)
{
	if (s == NULL)
		return;
	if (s->def_ok)
		deflateEnd(&s->def);
	if (s->inf_ok)
		inflateEnd(&s->inf);
	free(s);
}

/* ---- parsing ---- */

/* Inflate a header block (in, n) and split it into f's pairs: 0 or -1. */
static int
block_decode(struct kb_spdy *s, const unsigned char *in, size_t n, struct kb_spdy_frame *f,
    char *err, size_t errlen)
{
	const unsigned char *d;
	size_t dl, have, off = 4, so = 0, i, j, nl, vl;
	uint32_t count;
	int r;

	s->inf.next_in = (unsigned char *)(uintptr_t)in;
	s->inf.avail_in = (uInt)n;
	s->inf.next_out = s->blk;
	s->inf.avail_out = sizeof(s->blk);
	for (;;) {
		r = inflate(&s->inf, Z_SYNC_FLUSH);
		if (r == Z_NEED_DICT) {
			d = spdy_dict(&dl);
			if (inflateSetDictionary(&s->inf, d, (uInt)dl) != Z_OK) {
				snprintf(err, errlen, "spdy: header block with another dictionary");
				return -1;
			}
			continue;
		}
		if (r == Z_OK && s->inf.avail_in && s->inf.avail_out)
			continue;
		break;
	}
	if ((r != Z_OK && r != Z_BUF_ERROR) || s->inf.avail_in) {
		snprintf(err, errlen, "spdy: header block: %s",
		    s->inf.avail_out == 0 ? "over 16 KiB decompressed" :
		    s->inf.msg ? s->inf.msg : "bad compressed data");
		return -1;
	}
	have = sizeof(s->blk) - s->inf.avail_out;
	if (have < 4 || (count = get32(s->blk)) > KB_SPDY_PAIRS_MAX) {
		snprintf(err, errlen, "spdy: header block too short or over %d pairs",
		    KB_SPDY_PAIRS_MAX);
		return -1;
	}
	for (i = 0; i < count; i++) {
		if (have - off < 4 || (nl = get32(s->blk + off)) == 0 || nl > have - off - 4 ||
		    have - off - 4 - nl < 4 || (vl = get32(s->blk + off + 4 + nl)) >
		    have - off - 8 - nl) {
			snprintf(err, errlen, "spdy: malformed header block");
			return -1;
		}
		for (j = 0; j < nl; j++) {
			unsigned char c = s->blk[off + 4 + j];

			if (c <= ' ' || c >= 0x7f || (c >= 'A' && c <= 'Z')) {
				snprintf(err, errlen, "spdy: bad header name (not lowercase text)");
				return -1;
			}
		}
		f->name[i] = s->strs + so;
		memcpy(s->strs + so, s->blk + off + 4, nl);
		so += nl;
		s->strs[so++] = '\0';
		f->val[i] = s->strs + so;
		memcpy(s->strs + so, s->blk + off + 8 + nl, vl);
		so += vl;
		s->strs[so++] = '\0';
		off += 8 + nl + vl;
	}
	if (off != have) {
		snprintf(err, errlen, "spdy: bytes after the header block's pairs");
		return -1;
	}
	f->npairs = count;
	return 0;
}

/* A control frame's payload p (f->len bytes): fields by type. */
static int
control_parse(struct kb_spdy *s, const unsigned char *p, struct kb_spdy_frame *f, char *err,
    size_t errlen)
{
	static const size_t minlen[] = { 0, 10, 4, 8, 4, 0, 4, 8, 4, 8 };
	size_t fixed;

	if (f->type > KB_SPDY_WINDOW_UPDATE || f->type == 5)
		return 0; /* unknown (or NOOP, gone in 3): ignored */
	fixed = minlen[f->type];
	if (f->len < fixed || ((f->type == KB_SPDY_RST_STREAM || f->type == KB_SPDY_PING ||
	    f->type == KB_SPDY_GOAWAY || f->type == KB_SPDY_WINDOW_UPDATE) && f->len != fixed)) {
		snprintf(err, errlen, "spdy: control frame %d of %zu bytes", f->type, f->len);
		return -1;
	}
	switch (f->type) {
	case KB_SPDY_SETTINGS:
		f->nsettings = get32(p);
		if ((size_t)f->nsettings > (f->len - 4) / 8 || 4 + 8 * (size_t)f->nsettings != f->len) {
			snprintf(err, errlen, "spdy: SETTINGS of %zu bytes with %u entries", f->len,
			    f->nsettings);
			return -1;
		}
		f->data = p + 4;
		return 0;
	case KB_SPDY_PING:
		f->value = get32(p);
		return 0;
	default:
		break;
	}
	f->stream = get32(p) & 0x7fffffff;
	if (f->type == KB_SPDY_GOAWAY) {
		f->value = get32(p + 4);
		return 0;
	}
	if (f->stream == 0 && f->type != KB_SPDY_WINDOW_UPDATE) {
		snprintf(err, errlen, "spdy: control frame %d for stream 0", f->type);
		return -1;
	}
	if (f->type == KB_SPDY_RST_STREAM || f->type == KB_SPDY_WINDOW_UPDATE) {
		f->value = get32(p + 4);
		if (f->type == KB_SPDY_WINDOW_UPDATE)
			f->value &= 0x7fffffff;
		return 0;
	}
	return block_decode(s, p + fixed, f->len - fixed, f, err, errlen);
}

int
kb_spdy_parse(struct kb_spdy *s, const unsigned char *b, size_t n, size_t data_max,
    struct kb_spdy_frame *f, size_t *need, char *err, size_t errlen)
{
	int version;

	*need = KB_SPDY_HDR;
	if (n < KB_SPDY_HDR)
		return 0;
	memset(f, 0, sizeof(*f));
	f->flags = b[4];
	f->len = (size_t)b[5] << 16 | (size_t)b[6] << 8 | b[7];
	if (b[0] & 0x80) {
		version = (b[0] & 0x7f) << 8 | b[1];
		f->type = b[2] << 8 | b[3];
		if (version != KB_SPDY_VERSION) {
			snprintf(err, errlen, "spdy: version %d frame", version);
			return -1;
		}
		if (f->type == KB_SPDY_DATA || f->len > KB_SPDY_CONTROL_MAX) {
			snprintf(err, errlen, "spdy: control frame %d of %zu bytes", f->type,
			    f->len);
			return -1;
		}
	} else {
		f->type = KB_SPDY_DATA;
		f->stream = get32(b);
		if (f->stream == 0 || f->len > data_max) {
			snprintf(err, errlen, "spdy: data frame of %zu bytes for stream %u",
			    f->len, f->stream);
			return -1;
		}
	}
	*need = KB_SPDY_HDR + f->len;
	if (n < *need)
		return 0;
	if (f->type == KB_SPDY_DATA) {
		f->data = b + KB_SPDY_HDR;
		return 1;
	}
	return control_parse(s, b + KB_SPDY_HDR, f, err, errlen) < 0 ? -1 : 1;
}

void
kb_spdy_setting(const struct kb_spdy_frame *f, uint32_t i, uint32_t *id, int *flags,
    uint32_t *value)
{
	const unsigned char *p = f->data + 8 * (size_t)i;

	*flags = p[0];
	*id = get32(p) & 0xffffff;
	*value = get32(p + 4);
}

const char *
kb_spdy_header(const struct kb_spdy_frame *f, const char *name)
{
	size_t i;

	for (i = 0; i < f->npairs; i++)
		if (strcmp(f->name[i], name) == 0)
			return f->val[i];
	return NULL;
}

/* ---- encoding ---- */

static void
control_header(unsigned char *out, int type, int flags, size_t len)
{
	out[0] = 0x80;
	out[1] = KB_SPDY_VERSION;
	out[2] = (unsigned char)(type >> 8);
	out[3] = (unsigned char)type;
	out[4] = (unsigned char)flags;
	out[5] = (unsigned char)(len >> 16);
	out[6] = (unsigned char)(len >> 8);
	out[7] = (unsigned char)len;
}

size_t
kb_spdy_data_header(unsigned char out[KB_SPDY_HDR], uint32_t stream, int flags, size_t len)
{
	put32(out, stream & 0x7fffffff);
	out[4] = (unsigned char)flags;
	out[5] = (unsigned char)(len >> 16);
	out[6] = (unsigned char)(len >> 8);
	out[7] = (unsigned char)len;
	return KB_SPDY_HDR;
}

size_t
kb_spdy_headers_frame(struct kb_spdy *s, unsigned char *out, size_t cap, int type,
    uint32_t stream, int flags, const char *const *names, const char *const *values,
    size_t n)
{
	unsigned char raw[2048];
	size_t fixed = type == KB_SPDY_SYN_STREAM ? 10 : 4, rl = 4, i, nl, vl, len;

	if ((type != KB_SPDY_SYN_STREAM && type != KB_SPDY_SYN_REPLY &&
	    type != KB_SPDY_HEADERS) || cap < KB_SPDY_HDR + fixed)
		return 0;
	put32(raw, (uint32_t)n);
	for (i = 0; i < n; i++) {
		nl = strlen(names[i]);
		vl = strlen(values[i]);
		if (rl + 8 + nl + vl > sizeof(raw))
			return 0;
		put32(raw + rl, (uint32_t)nl);
		memcpy(raw + rl + 4, names[i], nl);
		put32(raw + rl + 4 + nl, (uint32_t)vl);
		memcpy(raw + rl + 8 + nl, values[i], vl);
		rl += 8 + nl + vl;
	}
	put32(out + KB_SPDY_HDR, stream & 0x7fffffff);
	if (type == KB_SPDY_SYN_STREAM) {
		put32(out + KB_SPDY_HDR + 4, 0); /* associated-to */
		out[KB_SPDY_HDR + 8] = 0;        /* priority 0 (highest), unused */
		out[KB_SPDY_HDR + 9] = 0;        /* slot */
	}
	s->def.next_in = raw;
	s->def.avail_in = (uInt)rl;
	s->def.next_out = out + KB_SPDY_HDR + fixed;
	s->def.avail_out = (uInt)(cap - KB_SPDY_HDR - fixed);
	if (deflate(&s->def, Z_SYNC_FLUSH) != Z_OK || s->def.avail_in || s->def.avail_out == 0)
		return 0; /* output full: the context is out of step, give up the connection */
	len = cap - KB_SPDY_HDR - s->def.avail_out;
	control_header(out, type, flags, len);
	return KB_SPDY_HDR + len;
}

static size_t
two_words(unsigned char out[16], int type, uint32_t a, uint32_t b)
{
	control_header(out, type, 0, 8);
	put32(out + 8, a);
	put32(out + 12, b);
	return 16;
}

size_t
kb_spdy_rst_stream(unsigned char out[16], uint32_t stream, uint32_t status)
{
	return two_words(out, KB_SPDY_RST_STREAM, stream & 0x7fffffff, status);
}

size_t
kb_spdy_goaway(unsigned char out[16], uint32_t last_good, uint32_t status)
{
	return two_words(out, KB_SPDY_GOAWAY, last_good & 0x7fffffff, status);
}

size_t
kb_spdy_window_update(unsigned char out[16], uint32_t stream, uint32_t delta)
{
	return two_words(out, KB_SPDY_WINDOW_UPDATE, stream & 0x7fffffff, delta & 0x7fffffff);
}

size_t
kb_spdy_ping(unsigned char out[12], uint32_t id)
{
	control_header(out, KB_SPDY_PING, 0, 4);
	put32(out + 8, id);
	return 12;
}

size_t
kb_spdy_settings(unsigned char *out, size_t cap, const uint32_t *ids, const uint32_t *values,
    size_t n)
{
	size_t i, len = 4 + 8 * n;

	if (cap < KB_SPDY_HDR + len)
		return 0;
	control_header(out, KB_SPDY_SETTINGS, 0, len);
	put32(out + 8, (uint32_t)n);
	for (i = 0; i < n; i++) {
		put32(out + 12 + 8 * i, ids[i] & 0xffffff);
		put32(out + 16 + 8 * i, values[i]);
	}
	return KB_SPDY_HDR + len;
}

/* ---- flow control ---- */

void
kb_spdy_flow_init(struct kb_spdy_flow *w)
{
	memset(w, 0, sizeof(*w));
	w->send = KB_SPDY_WINDOW;
	w->initial = KB_SPDY_WINDOW;
	w->recv_window = KB_SPDY_WINDOW;
}

size_t
kb_spdy_flow_allowed(const struct kb_spdy_flow *w, size_t want)
{
	if (!w->enforced)
		return want;
	if (w->send <= 0)
		return 0;
	return (uint64_t)w->send < want ? (size_t)w->send : want;
}

void
kb_spdy_flow_sent(struct kb_spdy_flow *w, size_t n)
{
	w->send -= (int64_t)n;
}

int
kb_spdy_flow_update(struct kb_spdy_flow *w, uint32_t delta)
{
	if (delta == 0 || delta > KB_SPDY_WINDOW_MAX ||
	    w->send + (int64_t)delta > (int64_t)KB_SPDY_WINDOW_MAX)
		return -1;
	w->send += delta;
	w->enforced = 1;
	return 0;
}

int
kb_spdy_flow_initial(struct kb_spdy_flow *w, uint32_t initial)
{
	int64_t next;

	if (initial > KB_SPDY_WINDOW_MAX)
		return -1;
	next = w->send + (int64_t)initial - (int64_t)w->initial;
	if (next > (int64_t)KB_SPDY_WINDOW_MAX)
		return -1;
	w->send = next; /* may go negative: wait for updates */
	w->initial = initial;
	w->enforced = 1;
	return 0;
}

uint32_t
kb_spdy_flow_consumed(struct kb_spdy_flow *w, size_t n)
{
	uint32_t d;

	w->consumed += (uint32_t)n;
	if (w->consumed < w->recv_window / 2)
		return 0;
	d = w->consumed;
	w->consumed = 0;
	return d;
}
