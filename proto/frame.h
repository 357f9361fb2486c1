/* Wire frames: encoding and strict validation (see PROTOCOL.md). Pure code,
 * no I/O, so the fuzzer can drive it directly. */
#ifndef KB_FRAME_H
#define KB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define KB_PROTO_VERSION 1
#define KB_FRAME_HDR 8
#define KB_FRAME_MAX 16384          /* largest payload of any frame */
#define KB_WINDOW_INIT (512 * 1024) /* per-stream receive window at open */
#define KB_WINDOW_MAX 0x7fffffffu

enum kb_frame_type {
	KB_F_HELLO = 1,   /* stream 0, JSON object; first frame of each side */
	KB_F_CONTROL = 2, /* stream 0, JSON object with a "type" string */
	KB_F_OPEN = 3,    /* stream != 0, open request (struct kb_open) */
	KB_F_ACCEPT = 4,  /* stream != 0, empty: the open succeeded */
	KB_F_DATA = 5,    /* stream != 0, bytes, 1..KB_FRAME_MAX */
	KB_F_WINDOW = 6,  /* stream != 0, u32 credit increment > 0 */
	KB_F_FIN = 7,     /* stream != 0, empty: sender will send no more data */
	KB_F_RESET = 8,   /* stream != 0, u8 reason + optional UTF-8 text */
	KB_F_PING = 9,    /* stream 0, 8 opaque bytes */
	KB_F_PONG = 10,   /* stream 0, the 8 bytes of the ping */
	KB_F_GOAWAY = 11, /* stream 0, u32 last peer stream + u8 reason + text */
	KB_F_TYPE_MAX = 11
};

enum kb_reset_reason {
	KB_RST_CANCEL = 1,      /* the endpoint closed or aborted the stream */
	KB_RST_REFUSED = 2,     /* destination refused the connection */
	KB_RST_UNREACHABLE = 3, /* no route / host unreachable */
	KB_RST_TIMEOUT = 4,     /* connect or idle timeout */
	KB_RST_DENIED = 5,      /* not allowed (outside the cluster subnets) */
	KB_RST_PROTOCOL = 6,    /* peer violated the protocol on this stream */
	KB_RST_SESSION = 7,     /* the session went away */
	KB_RST_INTERNAL = 8,    /* resource exhaustion or internal error */
	KB_RST_MAX = 8
};

enum kb_goaway_code {
	KB_GOAWAY_NORMAL = 0,   /* shutting down or done */
	KB_GOAWAY_PROTOCOL = 1, /* the peer violated the protocol */
	KB_GOAWAY_REFUSED = 2,  /* hello refused (version, role, identity) */
	KB_GOAWAY_TIMEOUT = 3,  /* heartbeat timeout */
	KB_GOAWAY_MAX = 3
};

enum kb_open_kind {
	KB_OPEN_DIAL = 1,      /* connect to addr:port inside the cluster */
	KB_OPEN_INTERCEPT = 2, /* sidecar -> manager: carry this to intercept ref */
	KB_OPEN_DELIVER = 3,   /* manager -> daemon: deliver to intercept ref's port */
	KB_OPEN_KIND_MAX = 3
};

#define KB_OPEN_REF_MAX 32

/* OPEN payload. DIAL: u8 kind, u8 family (4|6), u16 port, 4 or 16 address
 * bytes. INTERCEPT, DELIVER: u8 kind, u8 length, 1..32 bytes of intercept
 * id ([0-9a-z]). */
struct kb_open {
	uint8_t kind;
	uint8_t family;
	uint16_t port;
	uint8_t addr[16];
	char ref[KB_OPEN_REF_MAX + 1]; /* NUL-terminated */
};

struct kb_frame {
	uint8_t type;
	uint8_t flags;
	uint16_t len;
	uint32_t stream;
	const uint8_t *payload; /* points into the decoded buffer */
};

/* Decode a frame header from buf (at least KB_FRAME_HDR bytes) and check
 * everything that the header alone determines. 0 or -1 with *err set. */
int kb_frame_header_decode(const uint8_t *buf, struct kb_frame *f, const char **err);
/* Validate the payload of a frame whose header passed (payload set, len bytes). */
int kb_frame_payload_check(const struct kb_frame *f, const char **err);
/* Decode one whole frame from buf: >0 bytes consumed, 0 need more, -1 malformed. */
long kb_frame_decode(const uint8_t *buf, size_t n, struct kb_frame *f, const char **err);

/* Write a frame header into out. */
void kb_frame_header_encode(uint8_t out[KB_FRAME_HDR], uint8_t type, uint32_t stream, uint16_t len);

/* OPEN payload encode/decode; encode returns the length written (<= 34, 0 if invalid). */
size_t kb_open_encode(const struct kb_open *o, uint8_t *out);
int kb_open_decode(const uint8_t *p, size_t len, struct kb_open *o, const char **err);
const char *kb_open_str(const struct kb_open *o, char *buf, size_t len);

/* GOAWAY payload: u32 last stream id, u8 code, optional text (not NUL-terminated). */
int kb_goaway_decode(const uint8_t *p, size_t len, uint32_t *last, uint8_t *code,
    const char **text, size_t *textlen);

const char *kb_frame_type_name(uint8_t type);
const char *kb_reset_reason_name(uint8_t reason);

#endif
