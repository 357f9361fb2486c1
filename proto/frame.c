/* Encoding and strict decoding of wire frames (PROTOCOL.md §2): every length
 * and field is checked before use, so any byte string is safe to decode. */
#include "frame.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define KB_STREAM_RESERVED 0x80000000u

/* Frames that belong to the connection rather than to one stream. */
#define KB_F_SESSION_MASK ((1u << KB_F_HELLO) | (1u << KB_F_CONTROL) | \
    (1u << KB_F_PING) | (1u << KB_F_PONG) | (1u << KB_F_GOAWAY))

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

static int
fail(const char **err, const char *msg)
{
	if (err)
		*err = msg;
	return -1;
}

/* Text fields end at the frame boundary; a NUL would truncate them silently
 * wherever they are later used as C strings. */
static int
has_nul(const uint8_t *p, size_t len)
{
	return len > 0 && memchr(p, '\0', len) != NULL;
}

/* The JSON escape \u0000: cJSON ends the C string there and drops the rest
 * silently, so a handler would check and use another string than the peer
 * sent. In valid JSON every backslash starts an escape inside a string;
 * the character after it is skipped. */
static int
has_escaped_nul(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] != '\\')
			continue;
		if (len - i >= 6 && !memcmp(p + i + 1, "u0000", 5))
			return 1;
		i++;
	}
	return 0;
}

static int
length_ok(uint8_t type, uint16_t len)
{
	switch (type) {
	case KB_F_HELLO:
	case KB_F_CONTROL:
		return len >= 2;	/* "{}" at least */
	case KB_F_OPEN:
		return len >= 3 && len <= 2 + KB_OPEN_REF_MAX; /* 8 and 20 for DIAL */
	case KB_F_ACCEPT:
	case KB_F_FIN:
		return len == 0;
	case KB_F_DATA:
		return len >= 1;	/* an empty DATA would be a free no-op */
	case KB_F_WINDOW:
		return len == 4;
	case KB_F_RESET:
		return len >= 1;
	case KB_F_PING:
	case KB_F_PONG:
		return len == 8;
	case KB_F_GOAWAY:
		return len >= 5;
	}
	return 0;
}

int
kb_frame_header_decode(const uint8_t *buf, struct kb_frame *f, const char **err)
{
	f->type = buf[0];
	f->flags = buf[1];
	f->len = get16(buf + 2);
	f->stream = get32(buf + 4);
	f->payload = NULL;

	if (f->type < 1 || f->type > KB_F_TYPE_MAX)
		return fail(err, "unknown frame type");
	if (f->flags != 0)
		return fail(err, "frame flags set");
	if (f->len > KB_FRAME_MAX)
		return fail(err, "frame too long");
	if (f->stream & KB_STREAM_RESERVED)
		return fail(err, "reserved stream bit set");
	if (KB_F_SESSION_MASK & (1u << f->type)) {
		if (f->stream != 0)
			return fail(err, "session frame on a stream");
	} else if (f->stream == 0) {
		return fail(err, "stream frame on stream 0");
	}
	if (!length_ok(f->type, f->len))
		return fail(err, "bad frame length");
	return 0;
}

int
kb_frame_payload_check(const struct kb_frame *f, const char **err)
{
	const uint8_t *p = f->payload;
	struct kb_open o;
	const char *text;
	size_t textlen;
	uint32_t v;
	uint8_t code;

	/* Cheap, and keeps this safe for callers that built f themselves. */
	if (!length_ok(f->type, f->len))
		return fail(err, "bad frame length");
	switch (f->type) {
	case KB_F_HELLO:
	case KB_F_CONTROL:
		if (p[0] != '{')
			return fail(err, "json payload is not an object");
		if (has_nul(p, f->len))
			return fail(err, "nul byte in json payload");
		if (has_escaped_nul(p, f->len))
			return fail(err, "escaped nul in json payload");
		return 0;
	case KB_F_OPEN:
		return kb_open_decode(p, f->len, &o, err);
	case KB_F_WINDOW:
		v = get32(p);
		if (v == 0)
			return fail(err, "zero window increment");
		if (v > KB_WINDOW_MAX)
			return fail(err, "window increment too large");
		return 0;
	case KB_F_RESET:
		if (p[0] < 1 || p[0] > KB_RST_MAX)
			return fail(err, "unknown reset reason");
		if (has_nul(p + 1, f->len - 1))
			return fail(err, "nul byte in reset text");
		return 0;
	case KB_F_GOAWAY:
		if (kb_goaway_decode(p, f->len, &v, &code, &text, &textlen) == -1)
			return fail(err, "bad frame length");
		if (v & KB_STREAM_RESERVED)
			return fail(err, "reserved stream bit set");
		if (code > KB_GOAWAY_MAX)
			return fail(err, "unknown goaway code");
		if (has_nul((const uint8_t *)text, textlen))
			return fail(err, "nul byte in goaway text");
		return 0;
	default:
		/* DATA and PING/PONG are opaque; ACCEPT and FIN are empty. */
		return 0;
	}
}

long
kb_frame_decode(const uint8_t *buf, size_t n, struct kb_frame *f, const char **err)
{
	if (n < KB_FRAME_HDR)
		return 0;
	if (kb_frame_header_decode(buf, f, err) == -1)
		return -1;
	if (n - KB_FRAME_HDR < f->len)
		return 0;
	f->payload = buf + KB_FRAME_HDR;
	if (kb_frame_payload_check(f, err) == -1)
		return -1;
	return KB_FRAME_HDR + (long)f->len;
}

void
kb_frame_header_encode(uint8_t out[KB_FRAME_HDR], uint8_t type, uint32_t stream, uint16_t len)
{
	out[0] = type;
	out[1] = 0;
	put16(out + 2, len);
	put32(out + 4, stream);
}

size_t
kb_open_encode(const struct kb_open *o, uint8_t *out)
{
	size_t alen;

	if (o->kind == KB_OPEN_INTERCEPT || o->kind == KB_OPEN_DELIVER) {
		alen = strnlen(o->ref, sizeof(o->ref));
		if (alen == 0 || alen > KB_OPEN_REF_MAX)
			return 0;
		out[0] = o->kind;
		out[1] = (uint8_t)alen;
		memcpy(out + 2, o->ref, alen);
		return 2 + alen;
	}
	if (o->family == 4)
		alen = 4;
	else if (o->family == 6)
		alen = 16;
	else
		return 0;
	out[0] = o->kind;
	out[1] = o->family;
	put16(out + 2, o->port);
	memcpy(out + 4, o->addr, alen);
	return 4 + alen;
}

static int
ref_char(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
}

int
kb_open_decode(const uint8_t *p, size_t len, struct kb_open *o, const char **err)
{
	size_t i;

	if (len < 3)
		return fail(err, "open too short");
	memset(o, 0, sizeof(*o));
	o->kind = p[0];
	if (o->kind < 1 || o->kind > KB_OPEN_KIND_MAX)
		return fail(err, "unknown open kind");
	if (o->kind == KB_OPEN_INTERCEPT || o->kind == KB_OPEN_DELIVER) {
		if (p[1] == 0 || p[1] > KB_OPEN_REF_MAX || len != 2 + (size_t)p[1])
			return fail(err, "open reference length");
		for (i = 0; i < p[1]; i++)
			if (!ref_char(p[2 + i]))
				return fail(err, "bad character in open reference");
		memcpy(o->ref, p + 2, p[1]);
		return 0;
	}
	if (len < 4)
		return fail(err, "open too short");
	o->family = p[1];
	o->port = get16(p + 2);
	if (o->family == 4) {
		if (len != 8)
			return fail(err, "open length does not match family");
	} else if (o->family == 6) {
		if (len != 20)
			return fail(err, "open length does not match family");
	} else {
		return fail(err, "unknown address family");
	}
	if (o->port == 0)
		return fail(err, "open port zero");
	memcpy(o->addr, p + 4, len - 4);
	return 0;
}

const char *
kb_open_str(const struct kb_open *o, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (o->kind == KB_OPEN_INTERCEPT || o->kind == KB_OPEN_DELIVER) {
		snprintf(buf, len, "intercept %s", o->ref);
	} else if (o->family == 4) {
		inet_ntop(AF_INET, o->addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, o->port);
	} else if (o->family == 6) {
		inet_ntop(AF_INET6, o->addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, o->port);
	} else {
		snprintf(buf, len, "(family %u)", o->family);
	}
	return buf;
}

/* Only splits the fields; kb_frame_payload_check() judges their values. */
int
kb_goaway_decode(const uint8_t *p, size_t len, uint32_t *last, uint8_t *code,
    const char **text, size_t *textlen)
{
	if (len < 5)
		return -1;
	*last = get32(p);
	*code = p[4];
	*text = (const char *)p + 5;
	*textlen = len - 5;
	return 0;
}

const char *
kb_frame_type_name(uint8_t type)
{
	static const char *const names[] = {
		[KB_F_HELLO] = "HELLO",
		[KB_F_CONTROL] = "CONTROL",
		[KB_F_OPEN] = "OPEN",
		[KB_F_ACCEPT] = "ACCEPT",
		[KB_F_DATA] = "DATA",
		[KB_F_WINDOW] = "WINDOW",
		[KB_F_FIN] = "FIN",
		[KB_F_RESET] = "RESET",
		[KB_F_PING] = "PING",
		[KB_F_PONG] = "PONG",
		[KB_F_GOAWAY] = "GOAWAY",
	};

	if (type < 1 || type > KB_F_TYPE_MAX)
		return "UNKNOWN";
	return names[type];
}

const char *
kb_reset_reason_name(uint8_t reason)
{
	static const char *const names[] = {
		[KB_RST_CANCEL] = "cancel",
		[KB_RST_REFUSED] = "refused",
		[KB_RST_UNREACHABLE] = "unreachable",
		[KB_RST_TIMEOUT] = "timeout",
		[KB_RST_DENIED] = "denied",
		[KB_RST_PROTOCOL] = "protocol",
		[KB_RST_SESSION] = "session",
		[KB_RST_INTERNAL] = "internal",
	};

	if (reason < 1 || reason > KB_RST_MAX)
		return "unknown";
	return names[reason];
}
