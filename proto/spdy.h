/* SPDY/3.1 client framing, as Kubernetes' port-forward speaks it between
 * kubectl and the kubelet (moby/spdystream): the frame header, the control
 * frames a client sends or answers (SYN_STREAM, SYN_REPLY, RST_STREAM,
 * SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) and DATA.
 *
 * Header blocks (name/value pairs, names lowercase) are compressed with
 * zlib using the SPDY/3 dictionary; one deflate and one inflate context per
 * connection (struct kb_spdy), each block ending with a sync flush, so the
 * blocks of a connection must be encoded and decoded in order, each once.
 *
 * Flow control (struct kb_spdy_flow): SPDY/3 gives each stream a send
 * window (64 KiB, or SETTINGS_INITIAL_WINDOW_SIZE) that the peer opens with
 * WINDOW_UPDATE. spdystream, the kubelet's side, implements none of it: it
 * never sends WINDOW_UPDATE and ignores ours; its back pressure is TCP's (a
 * stream's reader blocks the connection's frame loop). So the window is
 * kept but only enforced once the peer shows it does flow control (a
 * SETTINGS_INITIAL_WINDOW_SIZE or a WINDOW_UPDATE); what we consume is
 * acknowledged with WINDOW_UPDATE in steps of half our window (which a
 * client may announce larger than 64 KiB with SETTINGS).
 *
 * Pure: no I/O. Parsing refuses malformed frames with one line. */
#ifndef KB_SPDY_H
#define KB_SPDY_H

#include <stddef.h>
#include <stdint.h>

#define KB_SPDY_VERSION 3
#define KB_SPDY_HDR 8                 /* every frame's header */
#define KB_SPDY_WINDOW (64u << 10)    /* the initial stream window */
#define KB_SPDY_WINDOW_MAX 0x7fffffffu
#define KB_SPDY_CONTROL_MAX (16u << 10) /* a control frame's payload from the peer */
#define KB_SPDY_BLOCK_MAX (16u << 10)   /* a header block, decompressed */
#define KB_SPDY_PAIRS_MAX 64            /* name/value pairs in a block */

enum kb_spdy_type {
	KB_SPDY_DATA = 0, /* not a control type: a data frame */
	KB_SPDY_SYN_STREAM = 1,
	KB_SPDY_SYN_REPLY = 2,
	KB_SPDY_RST_STREAM = 3,
	KB_SPDY_SETTINGS = 4,
	KB_SPDY_PING = 6,
	KB_SPDY_GOAWAY = 7,
	KB_SPDY_HEADERS = 8,
	KB_SPDY_WINDOW_UPDATE = 9
};

#define KB_SPDY_FLAG_FIN 0x01
#define KB_SPDY_SETTINGS_INITIAL_WINDOW 7
#define KB_SPDY_REFUSED_STREAM 3        /* RST_STREAM status codes */
#define KB_SPDY_CANCEL 5
#define KB_SPDY_FLOW_CONTROL_ERROR 7

struct kb_spdy;

/* A parsed frame. Pointers are into the parsed buffer, or (the decoded
 * header block) into the kb_spdy until its next parse. */
struct kb_spdy_frame {
	int type;               /* KB_SPDY_DATA or a control type (others: ignore) */
	int flags;
	size_t len;             /* the payload's length */
	uint32_t stream;        /* DATA, SYN_*, RST, HEADERS, WINDOW_UPDATE; GOAWAY: last good */
	uint32_t value;         /* RST/GOAWAY status, PING id, WINDOW_UPDATE delta */
	const unsigned char *data; /* DATA: payload; SETTINGS: the entries */
	uint32_t nsettings;
	size_t npairs;          /* SYN_STREAM, SYN_REPLY, HEADERS: the pairs */
	const char *name[KB_SPDY_PAIRS_MAX];
	const char *val[KB_SPDY_PAIRS_MAX]; /* values joined by NUL stay one string up to the first */
};

struct kb_spdy *kb_spdy_new(void);
void kb_spdy_free(struct kb_spdy *s);

/* Parse one frame from b[0..n). 1: complete (f filled, KB_SPDY_HDR +
 * f->len bytes), 0: more bytes needed (*need: how many in all), -1: a
 * protocol error (one line in err; the connection cannot go on). DATA
 * payloads over data_max are refused. A header block is decompressed here
 * (s's inflate context), so parse each frame once, in order. */
int kb_spdy_parse(struct kb_spdy *s, const unsigned char *b, size_t n, size_t data_max,
    struct kb_spdy_frame *f, size_t *need, char *err, size_t errlen);
/* Entry i of a parsed SETTINGS frame. */
void kb_spdy_setting(const struct kb_spdy_frame *f, uint32_t i, uint32_t *id, int *flags,
    uint32_t *value);
/* The value of header name (lowercase) in a parsed frame, or NULL. */
const char *kb_spdy_header(const struct kb_spdy_frame *f, const char *name);

/* Encoders: into out (cap bytes), the frame's length returned, 0 if it does
 * not fit (or, for header blocks, deflate failed). */
size_t kb_spdy_data_header(unsigned char out[KB_SPDY_HDR], uint32_t stream, int flags,
    size_t len);
/* SYN_STREAM (type KB_SPDY_SYN_STREAM), SYN_REPLY or HEADERS with pairs
 * (names[i], values[i]), i < n; names must be lowercase. */
size_t kb_spdy_headers_frame(struct kb_spdy *s, unsigned char *out, size_t cap, int type,
    uint32_t stream, int flags, const char *const *names, const char *const *values,
    size_t n);
size_t kb_spdy_rst_stream(unsigned char out[16], uint32_t stream, uint32_t status);
size_t kb_spdy_ping(unsigned char out[12], uint32_t id);
size_t kb_spdy_goaway(unsigned char out[16], uint32_t last_good, uint32_t status);
size_t kb_spdy_window_update(unsigned char out[16], uint32_t stream, uint32_t delta);
/* SETTINGS with n (id, value) entries. */
size_t kb_spdy_settings(unsigned char *out, size_t cap, const uint32_t *ids,
    const uint32_t *values, size_t n);

/* One stream's flow control, both ways. */
struct kb_spdy_flow {
	int64_t send;           /* bytes we may still send */
	int enforced;           /* the peer does flow control */
	uint32_t initial;       /* the peer's initial window */
	uint32_t consumed;      /* received and consumed, not yet acknowledged */
	uint32_t recv_window;   /* ours (KB_SPDY_WINDOW unless we announced another) */
};

void kb_spdy_flow_init(struct kb_spdy_flow *w);
/* How much of want may be sent now. */
size_t kb_spdy_flow_allowed(const struct kb_spdy_flow *w, size_t want);
void kb_spdy_flow_sent(struct kb_spdy_flow *w, size_t n);
/* A WINDOW_UPDATE: 0, or -1 (a zero delta, or the window over 2^31-1). */
int kb_spdy_flow_update(struct kb_spdy_flow *w, uint32_t delta);
/* SETTINGS_INITIAL_WINDOW_SIZE: the window moves by the difference; 0 or -1. */
int kb_spdy_flow_initial(struct kb_spdy_flow *w, uint32_t initial);
/* n bytes received were consumed: the delta to acknowledge now (0: not
 * yet, below half of recv_window). */
uint32_t kb_spdy_flow_consumed(struct kb_spdy_flow *w, size_t n);

#endif
