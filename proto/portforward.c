/* The API server's pod port-forward over WebSocket (see portforward.h):
 * RFC 6455 client framing, the upgrade request and its answer, libcurl's
 * CONNECT_ONLY connection driven by libevent, and the relay between the
 * local socket (a bufferevent) and either the WebSocket's channel 0
 * (v4.channel.k8s.io) or a SPDY data stream tunnelled in the WebSocket
 * (SPDY/3.1+portforward.k8s.io, framing in spdy.c). */
#include "portforward.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "kubeconfig.h"
#include "log.h"
#include "spdy.h"
#include "util.h"

#define WS_PROTOCOL "v4.channel.k8s.io"
#define WS_PROTOCOL_SPDY "SPDY/3.1+portforward.k8s.io"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* A full data frame is 32 KiB with its headers: two whole TLS records
 * (16 KiB each; whole frames are sent, SENDBUF at a time), so the API
 * server reads and relays it in 3 parts (its 4 KiB header read, the rest
 * of that record, the next; a frame across 3 records costs it 4). More
 * than 32 KiB a SPDY frame costs the kubelet more (spdystream allocates
 * each frame's payload in Go, slowly above 32 KiB). */
#define WS_HDR16 8          /* a masked frame's header with a 16-bit length */
#define FRAME_FULL (32u << 10)
#define CHUNK (FRAME_FULL - WS_HDR16 - 1)                  /* local bytes per v4 frame */
#define SPDY_CHUNK (FRAME_FULL - WS_HDR16 - KB_SPDY_HDR) /* per SPDY DATA frame */
#define SPDY_RECV_WINDOW (8u << 20) /* ours, announced: WINDOW_UPDATE every 4 MiB */
#define SENDBUF (64u << 10) /* one curl_easy_send attempt: whole frames */
#define RECVBUF (64u << 10)
#define EV_READ_MAX 4096    /* libevent 2.1's bytes per socket read (EVBUFFER_MAX_READ) */
_Static_assert(FRAME_FULL - WS_HDR16 <= 0xffff && FRAME_FULL <= SENDBUF,
    "a data frame's length is 16-bit and fits one send");

enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };
enum { CH_DATA = 0, CH_ERROR = 1 };
enum pf_state { PF_CONNECTING, PF_UPGRADE, PF_OPEN, PF_CLOSING, PF_DONE };

/* ---- framing (pure, unit-tested) ---- */

struct ws_frame {
	int fin, op, masked;
	uint64_t len;              /* payload length */
	size_t hdr;                /* header bytes (with the mask key) */
	unsigned char mask[4];
	unsigned char *payload;    /* in the parsed buffer, unmasked in place */
};

/* Parse one frame from b[0..n). 1: complete (f filled, hdr + len bytes),
 * 0: more bytes needed (*need: how many in all, when known), -1: protocol
 * error (one line in err). Server frames must not be masked unless
 * allow_mask (the unit test's server side). */
static int
ws_parse(unsigned char *b, size_t n, int allow_mask, uint64_t max, struct ws_frame *f,
    size_t *need, char *err, size_t errlen)
{
	size_t h = 2, i;

	*need = 2;
	if (n < 2)
		return 0;
	memset(f, 0, sizeof(*f));
	f->fin = b[0] >> 7;
	f->op = b[0] & 0x0f;
	f->masked = b[1] >> 7;
	f->len = b[1] & 0x7f;
	if (b[0] & 0x70) {
		snprintf(err, errlen, "websocket: reserved bits set");
		return -1;
	}
	if (f->masked && !allow_mask) {
		snprintf(err, errlen, "websocket: masked frame from the server");
		return -1;
	}
	if (f->op != OP_CONT && f->op != OP_TEXT && f->op != OP_BIN && f->op != OP_CLOSE &&
	    f->op != OP_PING && f->op != OP_PONG) {
		snprintf(err, errlen, "websocket: unknown opcode %d", f->op);
		return -1;
	}
	if (f->len == 126)
		h += 2;
	else if (f->len == 127)
		h += 8;
	if (f->masked)
		h += 4;
	*need = h;
	if (n < h)
		return 0;
	if (f->len == 126) {
		f->len = (uint64_t)b[2] << 8 | b[3];
		if (f->len < 126) {
			snprintf(err, errlen, "websocket: length not minimally encoded");
			return -1;
		}
	} else if (f->len == 127) {
		for (f->len = 0, i = 0; i < 8; i++)
			f->len = f->len << 8 | b[2 + i];
		if (f->len >> 63 || f->len <= 0xffff) {
			snprintf(err, errlen, "websocket: bad 64-bit length");
			return -1;
		}
	}
	if (f->op >= OP_CLOSE && (!f->fin || f->len > 125)) {
		snprintf(err, errlen, "websocket: fragmented or long control frame");
		return -1;
	}
	if (f->len > max) {
		snprintf(err, errlen, "websocket: frame of %llu bytes (more than %llu)",
		    (unsigned long long)f->len, (unsigned long long)max);
		return -1;
	}
	if (f->masked)
		memcpy(f->mask, b + h - 4, 4);
	f->hdr = h;
	*need = h + (size_t)f->len;
	if (n < *need)
		return 0;
	f->payload = b + h;
	if (f->masked)
		for (i = 0; i < f->len; i++)
			f->payload[i] ^= f->mask[i & 3];
	return 1;
}

/* XOR with the mask key, 8 bytes at a time. */
static void
ws_mask(unsigned char *p, size_t n, const unsigned char key[4])
{
	uint64_t k8;
	size_t i = 0;
	unsigned char k[8];

	memcpy(k, key, 4);
	memcpy(k + 4, key, 4);
	memcpy(&k8, k, 8);
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		w ^= k8;
		memcpy(p + i, &w, 8);
	}
	for (; i < n; i++)
		p[i] ^= key[i & 3];
}

/* A frame header into h (at most 14 bytes); returns its length. key NULL:
 * unmasked (the test server). */
static size_t
ws_header(unsigned char *h, int fin, int op, uint64_t len, const unsigned char *key)
{
	size_t n = 2;
	int i;

	h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
	if (len < 126) {
		h[1] = (unsigned char)len;
	} else if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		n = 4;
	} else {
		h[1] = 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
		n = 10;
	}
	if (key) {
		h[1] |= 0x80;
		memcpy(h + n, key, 4);
		n += 4;
	}
	return n;
}

/* Append one masked frame: pre (prelen bytes: a channel, a SPDY frame
 * header) then data. */
static int
ws_put_pre(struct evbuffer *out, int fin, int op, const void *pre, size_t prelen,
    const void *data, size_t len)
{
	unsigned char h[14], key[4];
	struct evbuffer_iovec v;
	size_t hl, pl = len + prelen;
	unsigned char *p;

	if (RAND_bytes(key, sizeof(key)) != 1)
		return -1;
	hl = ws_header(h, fin, op, pl, key);
	if (evbuffer_reserve_space(out, hl + pl, &v, 1) < 1)
		return -1;
	p = v.iov_base;
	memcpy(p, h, hl);
	if (prelen)
		memcpy(p + hl, pre, prelen);
	if (len)
		memcpy(p + hl + prelen, data, len);
	ws_mask(p + hl, pl, key);
	v.iov_len = hl + pl;
	return evbuffer_commit_space(out, &v, 1);
}

/* Append one masked frame: prefix (a channel; -1: none) then data. */
static int
ws_put(struct evbuffer *out, int fin, int op, int prefix, const void *data, size_t len)
{
	unsigned char c = (unsigned char)prefix;

	return ws_put_pre(out, fin, op, &c, prefix >= 0, data, len);
}

/* Sec-WebSocket-Accept for a key: base64(SHA1(key GUID)). */
static void
ws_accept(const char *key, char out[29])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char buf[128];

	snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)buf, strlen(buf), md);
	EVP_EncodeBlock((unsigned char *)out, md, sizeof(md));
}

/* ---- the upgrade answer ---- */

/* The value of header name in the header block hdr (lines ending "\r\n"),
 * copied to out; 0 if absent. */
static int
http_header(const char *hdr, const char *name, char *out, size_t outlen)
{
	const char *l = strstr(hdr, "\r\n"), *e, *v;
	size_t nl = strlen(name), n;

	for (; l && l[2] != '\r' && l[2] != '\0'; l = e) {
		l += 2;
		if ((e = strstr(l, "\r\n")) == NULL)
			return 0;
		if ((size_t)(e - l) <= nl || strncasecmp(l, name, nl) != 0 || l[nl] != ':')
			continue;
		for (v = l + nl + 1; v < e && (*v == ' ' || *v == '\t'); v++)
			;
		n = (size_t)(e - v);
		while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		snprintf(out, outlen, "%.*s", (int)n, v);
		return 1;
	}
	return 0;
}

/* Does a comma-separated header value hold token (case-insensitive)? */
static int
has_token(const char *v, const char *token)
{
	size_t tl = strlen(token), n;

	while (*v) {
		while (*v == ' ' || *v == ',')
			v++;
		n = strcspn(v, ", ");
		if (n == tl && strncasecmp(v, token, n) == 0)
			return 1;
		v += n;
	}
	return 0;
}

/* One printable line of at most outlen-1 bytes. */
static void
one_line(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, j = 0;

	for (i = 0; i < n && s[i] && j + 1 < outlen; i++)
		out[j++] = (unsigned char)s[i] < ' ' || s[i] == 0x7f ? ' ' : s[i];
	while (j && out[j - 1] == ' ')
		j--;
	out[j] = '\0';
}

/* The error of a non-101 answer: "HTTP 403: " and the Status' message (or
 * the body's first line). body may be chunked (its first chunk is used). */
static void
http_error(int status, const char *hdr, const char *body, size_t blen, char *err, size_t errlen)
{
	char te[64] = "", line[400];
	const cJSON *m;
	cJSON *j = NULL;
	const char *p = body;
	size_t n = blen;
	unsigned long cl;
	char *end;

	if (http_header(hdr, "Transfer-Encoding", te, sizeof(te)) && has_token(te, "chunked")) {
		cl = strtoul(body, &end, 16);
		if (end != body && (p = strstr(end, "\r\n")) != NULL) {
			p += 2;
			n = cl < blen - (size_t)(p - body) ? cl : blen - (size_t)(p - body);
		} else {
			p = body;
			n = 0;
		}
	}
	if (n && (j = cJSON_ParseWithLength(p, n)) != NULL &&
	    cJSON_IsString(m = cJSON_GetObjectItemCaseSensitive(j, "message")))
		one_line(m->valuestring, strlen(m->valuestring), line, sizeof(line));
	else
		one_line(p, strcspn(p, "\r\n") < n ? strcspn(p, "\r\n") : n, line, sizeof(line));
	cJSON_Delete(j);
	if (line[0])
		snprintf(err, errlen, "HTTP %d: %s", status, line);
	else
		snprintf(err, errlen, "HTTP %d from the API server (no websocket upgrade)", status);
}

/* Check a 101 answer's headers: 0, or -1 with err. *spdy: the server
 * chose the SPDY tunnel (only when it was offered: spdy_offered). */
static int
upgrade_ok(const char *hdr, const char *key, int spdy_offered, int *spdy, char *err,
    size_t errlen)
{
	char v[256], want[29];

	if (!http_header(hdr, "Upgrade", v, sizeof(v)) || strcasecmp(v, "websocket") != 0) {
		snprintf(err, errlen, "websocket upgrade: no \"Upgrade: websocket\" in the answer");
		return -1;
	}
	if (!http_header(hdr, "Connection", v, sizeof(v)) || !has_token(v, "upgrade")) {
		snprintf(err, errlen, "websocket upgrade: no \"Connection: Upgrade\" in the answer");
		return -1;
	}
	ws_accept(key, want);
	if (!http_header(hdr, "Sec-WebSocket-Accept", v, sizeof(v)) || strcmp(v, want) != 0) {
		snprintf(err, errlen, "websocket upgrade: wrong Sec-WebSocket-Accept");
		return -1;
	}
	*spdy = 0;
	if (!http_header(hdr, "Sec-WebSocket-Protocol", v, sizeof(v)) ||
	    (strcmp(v, WS_PROTOCOL) != 0 && !(spdy_offered && strcmp(v, WS_PROTOCOL_SPDY) == 0))) {
		snprintf(err, errlen, "websocket upgrade: the server did not choose %s",
		    spdy_offered ? WS_PROTOCOL_SPDY " or " WS_PROTOCOL : WS_PROTOCOL);
		return -1;
	}
	*spdy = strcmp(v, WS_PROTOCOL_SPDY) == 0;
	return 0;
}

/* ---- the stream ---- */

struct kb_pf {
	struct event_base *base;
	struct kb_kubeconfig *kc;
	char *ns, *pod;
	int port;
	kb_pf_done_cb done;
	void *arg;
	enum pf_state st;
	int tries;        /* upgrade attempts (a 401 refreshes once) */

	struct bufferevent *local;
	int local_eof;
	int local_rdone;         /* local_frame read the EOF or an error */

	CURLM *multi;
	CURL *easy;
	struct event *mtimer;    /* curl's timer while connecting */
	struct event *msock[4];  /* curl's sockets while connecting */
	curl_socket_t msockfd[4];
	curl_socket_t sock;
	struct event *rev, *wev; /* the connection, once connected */
	int rpaused;

	char key[25];
	struct evbuffer *wq;     /* bytes to send (request, frames) */
	unsigned char wbuf[SENDBUF];
	size_t woff, wlen;       /* wbuf[woff..wlen) is being sent */
	struct evbuffer *rq;     /* bytes received, not parsed yet */

	/* the message being received */
	int in_msg, need_channel, channel;
	int prefix_left[2];      /* port bytes still to strip per channel */
	char errtext[KB_PF_ERROR_MAX];
	size_t errlen;
	int close_sent, close_rcvd;
	int in_send;             /* pf_send is running */

	struct event *timer;     /* handshake, linger, close wait */
	struct event *finish_ev;
	int upgraded;
	char *err;               /* the reason given to done */

	int flags;               /* KB_PF_V4_ONLY */
	kb_pf_open_cb opened;

	/* SPDY/3.1 tunnelled in the WebSocket (pf->spdy set): the error
	 * stream (1) and the data stream (3) of request 0 */
	struct kb_spdy *spdy;
	struct evbuffer *sq;     /* SPDY bytes received, not parsed yet */
	struct kb_spdy_flow flow; /* the data stream's windows */
	int replied[2];          /* SYN_REPLY seen: error, data */
	int fin_rcvd[2];         /* the peer's FIN (or reset) */
	int data_fin_sent;
	int err_fin_sent;
	int pod_bytes;           /* the pod sent something */
};

#define SID_ERROR 1
#define SID_DATA 3

static void pf_fail(struct kb_pf *pf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pf_send(struct kb_pf *pf);
static void pf_read(struct kb_pf *pf);
static void spdy_local_eof(struct kb_pf *pf);
static void spdy_pump(struct kb_pf *pf);
static void spdy_finish(struct kb_pf *pf);
static int pf_connect(struct kb_pf *pf, char *err, size_t errlen);

static void
msock_clear(struct kb_pf *pf)
{
	int i;

	for (i = 0; i < 4; i++)
		if (pf->msock[i]) {
			event_free(pf->msock[i]);
			pf->msock[i] = NULL;
		}
}

static void
pf_free(struct kb_pf *pf)
{
	/* libcurl first: its socket and timer callbacks may run while it
	 * lets go, and must find their events (PF_DONE: none are made) */
	pf->st = PF_DONE;
	if (pf->multi && pf->easy)
		curl_multi_remove_handle(pf->multi, pf->easy);
	if (pf->easy)
		curl_easy_cleanup(pf->easy);
	if (pf->multi)
		curl_multi_cleanup(pf->multi);
	msock_clear(pf);
	if (pf->mtimer)
		event_free(pf->mtimer);
	if (pf->local)
		bufferevent_free(pf->local);
	if (pf->rev)
		event_free(pf->rev);
	if (pf->wev)
		event_free(pf->wev);
	if (pf->wq)
		evbuffer_free(pf->wq);
	if (pf->rq)
		evbuffer_free(pf->rq);
	if (pf->sq)
		evbuffer_free(pf->sq);
	kb_spdy_free(pf->spdy);
	if (pf->timer)
		event_free(pf->timer);
	if (pf->finish_ev)
		event_free(pf->finish_ev);
	free(pf->err);
	free(pf->ns);
	free(pf->pod);
	free(pf);
}

void
kb_pf_close(struct kb_pf *pf)
{
	if (pf)
		pf_free(pf);
}

void
kb_pf_options(struct kb_pf *pf, int flags, kb_pf_open_cb opened)
{
	pf->flags = flags;
	pf->opened = opened;
}

static void
on_finish(evutil_socket_t fd, short what, void *arg)
{
	struct kb_pf *pf = arg;

	(void)fd;
	(void)what;
	log_debug("portforward: %s/%s:%d: done%s%s", pf->ns, pf->pod, pf->port,
	    pf->err ? ": " : "", pf->err ? pf->err : "");
	pf->done(pf->arg, pf->upgraded, pf->err);
	pf_free(pf);
}

/* End the stream: done runs from the loop next. err NULL: clean. */
static void
pf_end(struct kb_pf *pf, const char *err)
{
	if (pf->st == PF_DONE)
		return;
	pf->st = PF_DONE;
	if (err && pf->err == NULL)
		pf->err = strdup(err);
	if (pf->rev)
		event_del(pf->rev);
	if (pf->wev)
		event_del(pf->wev);
	if (pf->timer)
		event_del(pf->timer);
	if (pf->local)
		bufferevent_disable(pf->local, EV_READ | EV_WRITE);
	event_active(pf->finish_ev, EV_TIMEOUT, 0);
}

static void
pf_fail(struct kb_pf *pf, const char *fmt, ...)
{
	char buf[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pf_end(pf, buf);
}

static void
pf_timer(struct kb_pf *pf, int ms)
{
	struct timeval tv = kb_ms_tv(ms);

	evtimer_add(pf->timer, &tv);
}

/* The error to end with: the error channel's or stream's text. Over SPDY
 * not once the local side ended after the pod answered: then it is how the
 * pod's connection was torn down (a reset after our FIN), which v4 never
 * showed (it closes the WebSocket at the local EOF). */
static const char *
pf_errtext(struct kb_pf *pf)
{
	if (pf->errlen == 0)
		return NULL;
	if (pf->spdy && pf->data_fin_sent && pf->pod_bytes) {
		log_debug("portforward: %s/%s:%d: after the local EOF: %s", pf->ns, pf->pod,
		    pf->port, pf->errtext);
		return NULL;
	}
	return pf->errtext;
}

/* The local side's output is written: the pod's side closed, end. */
static void
pf_end_when_flushed(struct kb_pf *pf)
{
	if (evbuffer_get_length(bufferevent_get_output(pf->local)) == 0) {
		shutdown(bufferevent_getfd(pf->local), SHUT_WR);
		pf_end(pf, pf_errtext(pf));
	}
}

/* We close the WebSocket (local side gone): a close frame, then wait
 * CLOSE_WAIT_MS for the server's. */
static void
pf_close_ws(struct kb_pf *pf)
{
	static const unsigned char normal[2] = { 0x03, 0xe8 }; /* 1000 */

	if (pf->close_sent || pf->st != PF_OPEN)
		return;
	pf->close_sent = 1;
	pf->st = PF_CLOSING;
	if (ws_put(pf->wq, 1, OP_CLOSE, -1, normal, sizeof(normal)) < 0) {
		pf_end(pf, NULL);
		return;
	}
	pf_timer(pf, KB_PF_CLOSE_WAIT_MS);
	pf_send(pf);
}

/* ---- local side ---- */

/* One masked binary frame of at most cap bytes from the local side (after
 * the channel byte or the SPDY DATA header): what the bufferevent read,
 * then, while *more, one read of the socket straight into the frame.
 * libevent 2.1 reads a socket 4 KiB at a time and calls back after each
 * read; a frame for every 4 KiB cost the API server and the kubelet a TLS
 * record and a write of theirs each (about twice kubectl's per GB). *more
 * ends when a read comes short (the socket is drained; its EOF is left to
 * the bufferevent, which reads it again; an error is reported as the
 * bufferevent would). The payload bytes framed (0: none), or -1. */
static ssize_t
local_frame(struct kb_pf *pf, size_t cap, int *more)
{
	struct evbuffer *in = bufferevent_get_input(pf->local);
	struct evbuffer_iovec v;
	unsigned char h[14], key[4], *p;
	size_t pre = pf->spdy ? KB_SPDY_HDR : 1, have = evbuffer_get_length(in), n, pl, hl;
	ssize_t r = 0;

	if (have > cap)
		have = cap;
	if (RAND_bytes(key, sizeof(key)) != 1 ||
	    evbuffer_reserve_space(pf->wq, (ev_ssize_t)(WS_HDR16 + pre + cap), &v, 1) < 1)
		return -1;
	p = v.iov_base;
	if (have && evbuffer_remove(in, p + WS_HDR16 + pre, have) != (int)have)
		return -1;
	/* less than a whole read of libevent's: it found the socket drained */
	if (*more && have < cap && (have == 0 || have >= EV_READ_MAX) && !pf->local_rdone) {
		do
			r = read(bufferevent_getfd(pf->local), p + WS_HDR16 + pre + have, cap - have);
		while (r < 0 && errno == EINTR);
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			pf->local_rdone = 1;
			bufferevent_trigger_event(pf->local, BEV_EVENT_READING | BEV_EVENT_ERROR,
			    BEV_TRIG_DEFER_CALLBACKS);
		} else if (r == 0)
			pf->local_rdone = 1;
		if (r < 0)
			r = 0;
	}
	*more = *more && r > 0 && (size_t)r == cap - have;
	if ((n = have + (size_t)r) == 0)
		return evbuffer_commit_space(pf->wq, &v, 0) < 0 ? -1 : 0;
	if (pf->spdy) {
		kb_spdy_data_header(p + WS_HDR16, SID_DATA, 0, n);
		kb_spdy_flow_sent(&pf->flow, n);
	} else
		p[WS_HDR16] = CH_DATA;
	pl = pre + n;
	hl = ws_header(h, 1, OP_BIN, pl, key); /* WS_HDR16, or less below 126 */
	if (hl < WS_HDR16)
		memmove(p + hl, p + WS_HDR16, pl);
	memcpy(p, h, hl);
	ws_mask(p + hl, pl, key);
	v.iov_len = hl + pl;
	return evbuffer_commit_space(pf->wq, &v, 1) < 0 ? -1 : (ssize_t)n;
}

/* Frame what the local side sent, while the send queue has room. */
static void
local_pump(struct kb_pf *pf)
{
	size_t cap;
	ssize_t n;
	int blocked = 0, more = !pf->local_eof;

	if (pf->st != PF_OPEN)
		return;
	while (evbuffer_get_length(pf->wq) < KB_PF_BUF_MAX) {
		cap = pf->spdy ? SPDY_CHUNK : CHUNK;
		/* SPDY: after the data stream's reply, within its window */
		if (pf->spdy && (!pf->replied[1] || pf->data_fin_sent ||
		    (cap = kb_spdy_flow_allowed(&pf->flow, cap)) == 0)) {
			blocked = evbuffer_get_length(bufferevent_get_input(pf->local)) > 0;
			break;
		}
		if ((n = local_frame(pf, cap, &more)) < 0) {
			pf_fail(pf, "out of memory");
			return;
		}
		if (n == 0)
			break;
	}
	if (blocked || evbuffer_get_length(pf->wq) >= KB_PF_BUF_MAX)
		bufferevent_disable(pf->local, EV_READ);
	pf_send(pf);
}

/* After the local EOF, once all it sent is queued: the close frame (after
 * the data, see portforward.h). */
static void
local_eof_close(struct kb_pf *pf)
{
	if (pf->local_eof && pf->st == PF_OPEN &&
	    evbuffer_get_length(bufferevent_get_input(pf->local)) == 0) {
		if (pf->spdy)
			spdy_local_eof(pf); /* a half-close: the pod's side goes on */
		else
			pf_close_ws(pf);
	}
}

static void
on_local_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	local_pump(arg);
}

/* The local output drained below the mark: read the pod's side again. */
static void
on_local_write(struct bufferevent *bev, void *arg)
{
	struct kb_pf *pf = arg;

	(void)bev;
	if (pf->close_rcvd) {
		pf_end_when_flushed(pf);
		return;
	}
	if (pf->rpaused && pf->st >= PF_OPEN) {
		pf->rpaused = 0;
		event_add(pf->rev, NULL);
		event_active(pf->rev, EV_READ, 0); /* TLS may hold bytes already */
	}
}

static void
on_local_event(struct bufferevent *bev, short what, void *arg)
{
	struct kb_pf *pf = arg;

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		/* v4.channel.k8s.io: no half-close, wait for the pod; SPDY:
		 * a FIN on the data stream */
		pf->local_eof = 1;
		bufferevent_disable(pf->local, EV_READ);
		local_pump(pf);
		local_eof_close(pf);
		return;
	}
	/* a write failed, the local side is gone */
	if (pf->st == PF_OPEN)
		pf_close_ws(pf);
	else
		pf_end(pf, NULL);
}

/* ---- the WebSocket, received ---- */

/* Bytes of channel ch (the port prefix stripped). */
static int
on_channel(struct kb_pf *pf, int ch, const unsigned char *p, size_t n)
{
	size_t k;

	while (n && pf->prefix_left[ch]) {
		/* the port, little endian: byte 0 low, byte 1 high */
		int shift = pf->prefix_left[ch] == 2 ? 0 : 8;

		if (((pf->port >> shift) & 0xff) != *p) {
			pf_fail(pf, "port-forward: the server named another port");
			return -1;
		}
		pf->prefix_left[ch]--;
		p++;
		n--;
	}
	if (n == 0)
		return 0;
	if (ch == CH_DATA) {
		if (bufferevent_write(pf->local, p, n) < 0) {
			pf_fail(pf, "out of memory");
			return -1;
		}
		return 0;
	}
	k = sizeof(pf->errtext) - 1 - pf->errlen;
	if (n > k)
		n = k;
	one_line((const char *)p, n, pf->errtext + pf->errlen, n + 1);
	pf->errlen = strlen(pf->errtext);
	return 0;
}

/* The SPDY tunnel: binary messages (fragments fine), a byte stream of
 * SPDY frames. 0, or -1 (failed). */
static int
tunnel_msg(struct kb_pf *pf, const struct ws_frame *f)
{
	if (f->op == OP_CONT && !pf->in_msg) {
		pf_fail(pf, "websocket: continuation without a message");
		return -1;
	}
	if (f->op == OP_TEXT || (f->op == OP_BIN && pf->in_msg)) {
		pf_fail(pf, "websocket: %s in the SPDY tunnel",
		    f->op == OP_TEXT ? "a text message" : "a new message inside a fragmented one");
		return -1;
	}
	pf->in_msg = !f->fin;
	return 0;
}

static int
on_data_frame(struct kb_pf *pf, const struct ws_frame *f)
{
	const unsigned char *p = f->payload;
	size_t n = (size_t)f->len;

	if (f->op == OP_CONT && !pf->in_msg) {
		pf_fail(pf, "websocket: continuation without a message");
		return -1;
	}
	if (pf->spdy) {
		if (tunnel_msg(pf, f) < 0)
			return -1;
		if (n && evbuffer_add(pf->sq, p, n) < 0) {
			pf_fail(pf, "out of memory");
			return -1;
		}
		spdy_pump(pf);
		return pf->st == PF_DONE ? -1 : 0;
	}
	if (f->op != OP_CONT) {
		if (pf->in_msg) {
			pf_fail(pf, "websocket: new message inside a fragmented one");
			return -1;
		}
		pf->in_msg = 1;
		pf->need_channel = 1;
	}
	if (n && pf->need_channel) {
		pf->channel = *p++;
		n--;
		pf->need_channel = 0;
		if (pf->channel != CH_DATA && pf->channel != CH_ERROR) {
			pf_fail(pf, "port-forward: unknown channel %d", pf->channel);
			return -1;
		}
	}
	if (f->fin)
		pf->in_msg = 0;
	if (n && pf->need_channel == 0)
		return on_channel(pf, pf->channel, p, n);
	return 0;
}

static int
on_control(struct kb_pf *pf, const struct ws_frame *f)
{
	if (f->op == OP_PING) {
		if (!pf->close_sent && ws_put(pf->wq, 1, OP_PONG, -1, f->payload,
		    (size_t)f->len) < 0) {
			pf_fail(pf, "out of memory");
			return -1;
		}
		pf_send(pf);
		return 0;
	}
	if (f->op == OP_PONG)
		return 0;
	/* close: answer it (echo the code), then end once the local side
	 * has what came before it */
	pf->close_rcvd = 1;
	bufferevent_disable(pf->local, EV_READ);
	if (!pf->close_sent) {
		pf->close_sent = 1;
		ws_put(pf->wq, 1, OP_CLOSE, -1, f->payload, f->len >= 2 ? 2 : 0);
		pf_send(pf);
	}
	event_del(pf->rev);
	bufferevent_setwatermark(pf->local, EV_WRITE, 0, 0);
	pf_end_when_flushed(pf);
	return 1;
}

/* Parse the frames received; stop reading while the local output is full. */
static void
pf_parse(struct kb_pf *pf)
{
	struct ws_frame f;
	unsigned char *b;
	size_t need, have;
	char err[200];
	int r;

	while (pf->st == PF_OPEN || pf->st == PF_CLOSING) {
		have = evbuffer_get_length(pf->rq);
		if (have == 0)
			return;
		need = have < 14 ? have : 14;
		b = evbuffer_pullup(pf->rq, (ssize_t)need);
		r = ws_parse(b, need, 0, KB_PF_FRAME_MAX, &f, &need, err, sizeof(err));
		if (r == 0 && need <= have && pf->spdy && f.op < OP_CLOSE) {
			/* the tunnel's bytes move to the SPDY queue, uncopied */
			if (tunnel_msg(pf, &f) < 0)
				return;
			evbuffer_drain(pf->rq, f.hdr);
			if (evbuffer_remove_buffer(pf->rq, pf->sq, (size_t)f.len) != (int)f.len) {
				pf_fail(pf, "out of memory");
				return;
			}
			spdy_pump(pf);
			continue;
		}
		if (r == 0 && need <= have) {
			b = evbuffer_pullup(pf->rq, (ssize_t)need);
			r = ws_parse(b, need, 0, KB_PF_FRAME_MAX, &f, &need, err, sizeof(err));
		}
		if (r < 0) {
			pf_fail(pf, "%s", err);
			return;
		}
		if (r == 0)
			return;
		r = f.op >= OP_CLOSE ? on_control(pf, &f) : on_data_frame(pf, &f);
		evbuffer_drain(pf->rq, f.hdr + (size_t)f.len);
		if (r != 0)
			return;
	}
}

/* ---- SPDY/3.1 in the WebSocket (the API server's tunnel) ---- */

/* Queue one SPDY frame (hdr, then data) as one binary message; nothing
 * once our close frame went. */
static int
spdy_put(struct kb_pf *pf, const unsigned char *hdr, size_t hl, const void *data, size_t len)
{
	if (pf->close_sent)
		return 0;
	if (ws_put_pre(pf->wq, 1, OP_BIN, hdr, hl, data, len) < 0) {
		pf_fail(pf, "out of memory");
		return -1;
	}
	return 0;
}

/* Open request 0's streams as client-go does: error, then data, the same
 * headers but streamtype. Local bytes wait for the data stream's reply
 * (spdystream drops data on a stream it has not answered yet). */
static int
spdy_start(struct kb_pf *pf)
{
	static const char *const names[] = { "streamtype", "port", "requestid" };
	const char *vals[3];
	unsigned char buf[512];
	uint32_t id, win;
	char port[8];
	size_t n;
	int i;

	if ((pf->spdy = kb_spdy_new()) == NULL) {
		pf_fail(pf, "out of memory (zlib)");
		return -1;
	}
	kb_spdy_flow_init(&pf->flow);
	/* our window: large (spdystream ignores it; we stop reading instead) */
	id = KB_SPDY_SETTINGS_INITIAL_WINDOW;
	win = SPDY_RECV_WINDOW;
	pf->flow.recv_window = SPDY_RECV_WINDOW;
	if (spdy_put(pf, buf, kb_spdy_settings(buf, sizeof(buf), &id, &win, 1), NULL, 0) < 0)
		return -1;
	snprintf(port, sizeof(port), "%d", pf->port);
	vals[1] = port;
	vals[2] = "0";
	for (i = 0; i < 2; i++) {
		vals[0] = i == 0 ? "error" : "data";
		if ((n = kb_spdy_headers_frame(pf->spdy, buf, sizeof(buf), KB_SPDY_SYN_STREAM,
		    i == 0 ? SID_ERROR : SID_DATA, 0, names, vals, 3)) == 0) {
			pf_fail(pf, "spdy: cannot compress a header block");
			return -1;
		}
		if (spdy_put(pf, buf, n, NULL, 0) < 0)
			return -1;
	}
	pf_send(pf);
	return 0;
}

/* An empty DATA frame with FIN: we send nothing more on stream sid. */
static void
spdy_send_fin(struct kb_pf *pf, uint32_t sid)
{
	unsigned char h[KB_SPDY_HDR];

	kb_spdy_data_header(h, sid, KB_SPDY_FLAG_FIN, 0);
	if (spdy_put(pf, h, sizeof(h), NULL, 0) == 0)
		pf_send(pf);
}

/* The local side's EOF, all it sent framed: a FIN on the data stream.
 * The pod's answer still comes, until it ends or is idle for
 * KB_PF_CLOSE_WAIT_MS (kwok's kubelet, for one, never ends a stream the
 * client half-closed: without this a closed connection would linger). */
static void
spdy_local_eof(struct kb_pf *pf)
{
	if (pf->data_fin_sent || !pf->replied[1] || pf->st != PF_OPEN)
		return;
	pf->data_fin_sent = 1;
	pf_timer(pf, KB_PF_CLOSE_WAIT_MS);
	spdy_send_fin(pf, SID_DATA);
}

/* The pod's side is over: what came goes to the local side, then our close
 * frame (the API server ends the kubelet's SPDY connection). */
static void
spdy_finish(struct kb_pf *pf)
{
	if (pf->st != PF_OPEN)
		return;
	bufferevent_disable(pf->local, EV_READ);
	bufferevent_setwatermark(pf->local, EV_WRITE, 0, 0);
	pf_close_ws(pf);
}

/* Stream i (0: error, 1: data) ended from the peer's side. Done when the
 * data stream ended and the error stream did or said something; else
 * wait KB_PF_CLOSE_WAIT_MS for the other. */
static void
spdy_fin(struct kb_pf *pf, int i)
{
	pf->fin_rcvd[i] = 1;
	if (pf->fin_rcvd[1] && (pf->fin_rcvd[0] || pf->errlen))
		spdy_finish(pf);
	else if (pf->fin_rcvd[1] || pf->errlen)
		pf_timer(pf, KB_PF_CLOSE_WAIT_MS);
}

static int
spdy_control(struct kb_pf *pf, const struct kb_spdy_frame *f)
{
	unsigned char out[16];
	uint32_t i, id, v;
	int fl;

	switch (f->type) {
	case KB_SPDY_SYN_REPLY:
		if (f->stream == SID_ERROR && !pf->replied[0]) {
			pf->replied[0] = 1;
			pf->err_fin_sent = 1; /* we never write on it */
			spdy_send_fin(pf, SID_ERROR);
		} else if (f->stream == SID_DATA && !pf->replied[1]) {
			pf->replied[1] = 1;
			bufferevent_enable(pf->local, EV_READ | EV_WRITE);
			local_pump(pf);
			local_eof_close(pf);
		}
		if ((f->flags & KB_SPDY_FLAG_FIN) && (f->stream == SID_ERROR || f->stream == SID_DATA))
			spdy_fin(pf, f->stream == SID_DATA);
		return 0;
	case KB_SPDY_HEADERS:
		if ((f->flags & KB_SPDY_FLAG_FIN) && (f->stream == SID_ERROR || f->stream == SID_DATA))
			spdy_fin(pf, f->stream == SID_DATA);
		return 0;
	case KB_SPDY_RST_STREAM:
		if (f->stream != SID_ERROR && f->stream != SID_DATA)
			return 0;
		if (!pf->fin_rcvd[f->stream == SID_DATA] && pf->errlen == 0)
			pf->errlen = (size_t)snprintf(pf->errtext, sizeof(pf->errtext),
			    "spdy: the server reset the %s stream (status %u)",
			    f->stream == SID_DATA ? "data" : "error", f->value);
		spdy_fin(pf, f->stream == SID_DATA);
		return 0;
	case KB_SPDY_SETTINGS:
		for (i = 0; i < f->nsettings; i++) {
			kb_spdy_setting(f, i, &id, &fl, &v);
			if (id == KB_SPDY_SETTINGS_INITIAL_WINDOW &&
			    kb_spdy_flow_initial(&pf->flow, v) < 0) {
				pf_fail(pf, "spdy: initial window of %u bytes", v);
				return -1;
			}
		}
		pf_send(pf); /* the window may have opened */
		return 0;
	case KB_SPDY_WINDOW_UPDATE:
		if (f->stream != SID_DATA)
			return 0; /* the session's (3.1) or another stream's: not kept */
		if (kb_spdy_flow_update(&pf->flow, f->value) < 0) {
			pf_fail(pf, "spdy: bad window update (%u)", f->value);
			return -1;
		}
		pf_send(pf);
		return 0;
	case KB_SPDY_PING:
		/* the server's pings have even ids; ours (none) odd */
		if ((f->value & 1) == 0 && spdy_put(pf, out, kb_spdy_ping(out, f->value), NULL,
		    0) == 0)
			pf_send(pf);
		return 0;
	case KB_SPDY_GOAWAY:
		if (f->stream < SID_DATA && !pf->fin_rcvd[1]) {
			pf_fail(pf, "spdy: the server went away (GOAWAY, status %u)", f->value);
			return -1;
		}
		return 0;
	case KB_SPDY_SYN_STREAM:
		/* no pushed streams in port-forward */
		if (spdy_put(pf, out, kb_spdy_rst_stream(out, f->stream, KB_SPDY_REFUSED_STREAM),
		    NULL, 0) == 0)
			pf_send(pf);
		return 0;
	default:
		return 0; /* unknown control frames are ignored */
	}
}

/* A DATA frame whose header (KB_SPDY_HDR bytes) and payload are at the
 * front of sq: the payload moves to the local output uncopied (the data
 * stream), to the error text, or away. */
static int
spdy_data(struct kb_pf *pf, const struct kb_spdy_frame *f)
{
	unsigned char out[16];
	char text[KB_PF_ERROR_MAX];
	uint32_t d;
	size_t k, n;

	evbuffer_drain(pf->sq, KB_SPDY_HDR);
	if (f->stream == SID_DATA) {
		if (!pf->replied[1] || pf->fin_rcvd[1]) {
			pf_fail(pf, "spdy: data outside the data stream's life");
			return -1;
		}
		if (f->len && evbuffer_remove_buffer(pf->sq, bufferevent_get_output(pf->local),
		    f->len) != (int)f->len) {
			pf_fail(pf, "out of memory");
			return -1;
		}
		if (f->len && pf->data_fin_sent && !pf->errlen)
			pf_timer(pf, KB_PF_CLOSE_WAIT_MS); /* not idle */
		pf->pod_bytes |= f->len > 0;
		/* consumed (the local output is bounded): acknowledge */
		if ((d = kb_spdy_flow_consumed(&pf->flow, f->len)) != 0 &&
		    spdy_put(pf, out, kb_spdy_window_update(out, SID_DATA, d), NULL, 0) < 0)
			return -1;
	} else {
		if (f->stream == SID_ERROR && f->len) {
			k = sizeof(pf->errtext) - 1 - pf->errlen;
			n = f->len < k ? f->len : k;
			evbuffer_copyout(pf->sq, text, n);
			one_line(text, n, pf->errtext + pf->errlen, n + 1);
			pf->errlen = strlen(pf->errtext);
		}
		evbuffer_drain(pf->sq, f->len);
	}
	if ((f->flags & KB_SPDY_FLAG_FIN) && (f->stream == SID_ERROR || f->stream == SID_DATA))
		spdy_fin(pf, f->stream == SID_DATA);
	return 0;
}

/* Parse the SPDY frames received while the local output has room (the
 * rest waits: pf_read comes back here first). */
static void
spdy_pump(struct kb_pf *pf)
{
	struct kb_spdy_frame f;
	unsigned char *b;
	size_t have, need, n;
	char err[200];
	int r;

	while ((pf->st == PF_OPEN || pf->st == PF_CLOSING) &&
	    (have = evbuffer_get_length(pf->sq)) > 0) {
		if (evbuffer_get_length(bufferevent_get_output(pf->local)) >= KB_PF_BUF_MAX)
			return;
		n = have < KB_SPDY_HDR ? have : KB_SPDY_HDR;
		b = evbuffer_pullup(pf->sq, (ssize_t)n);
		r = kb_spdy_parse(pf->spdy, b, n, KB_PF_FRAME_MAX, &f, &need, err, sizeof(err));
		if (r >= 0 && f.type == KB_SPDY_DATA && n == KB_SPDY_HDR && need <= have) {
			if (spdy_data(pf, &f) != 0)
				return;
			continue;
		}
		if (r == 0 && need <= have && need > n) {
			b = evbuffer_pullup(pf->sq, (ssize_t)need);
			r = kb_spdy_parse(pf->spdy, b, need, KB_PF_FRAME_MAX, &f, &need, err,
			    sizeof(err));
		}
		if (r < 0) {
			pf_fail(pf, "%s", err);
			return;
		}
		if (r == 0)
			return;
		r = spdy_control(pf, &f);
		evbuffer_drain(pf->sq, need);
		if (r != 0)
			return;
	}
	pf_send(pf);
}

/* ---- the connection: send and receive through libcurl ---- */

/* The length of the frame at the front of wq (whole: frames are queued
 * whole), or 0 when it holds no frame header yet. */
static size_t
wq_frame_len(struct kb_pf *pf)
{
	unsigned char h[14];
	size_t hl = 2, n;
	uint64_t len;
	int i;

	if ((n = evbuffer_copyout(pf->wq, h, sizeof(h))) < 2)
		return 0;
	len = h[1] & 0x7f;
	if (len == 126)
		hl += 2;
	else if (len == 127)
		hl += 8;
	if (h[1] & 0x80)
		hl += 4;
	if (n < hl)
		return 0;
	if (len == 126)
		len = (uint64_t)h[2] << 8 | h[3];
	else if (len == 127)
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | h[2 + i];
	return hl + (size_t)len;
}

/* Fill wbuf from wq: once open whole frames while they fit (each send
 * then starts a TLS record at a frame), before that (the upgrade request)
 * what fits. The bytes taken. */
static size_t
wq_take(struct kb_pf *pf)
{
	size_t n = 0, fl;
	int got;

	if (pf->st < PF_OPEN) {
		got = evbuffer_remove(pf->wq, pf->wbuf, sizeof(pf->wbuf));
		return got > 0 ? (size_t)got : 0;
	}
	while ((fl = wq_frame_len(pf)) != 0 && n + fl <= sizeof(pf->wbuf)) {
		if (evbuffer_remove(pf->wq, pf->wbuf + n, fl) != (int)fl)
			break;
		n += fl;
	}
	if (n == 0 && evbuffer_get_length(pf->wq)) {
		/* a frame over SENDBUF (none of ours): in pieces */
		got = evbuffer_remove(pf->wq, pf->wbuf, sizeof(pf->wbuf));
		n = got > 0 ? (size_t)got : 0;
	}
	return n;
}

/* Send what is queued until the socket is full: 0, or -1 when it is
 * (EV_WRITE armed) or the stream ended. */
static int
pf_send_queued(struct kb_pf *pf)
{
	size_t n;
	CURLcode cc;

	while (pf->st != PF_DONE && pf->st != PF_CONNECTING) {
		if (pf->woff == pf->wlen && (pf->woff = 0, pf->wlen = wq_take(pf)) == 0)
			return 0;
		/* after CURLE_AGAIN the same bytes are offered again (TLS) */
		cc = curl_easy_send(pf->easy, pf->wbuf + pf->woff, pf->wlen - pf->woff, &n);
		if (cc == CURLE_AGAIN) {
			event_add(pf->wev, NULL);
			return -1;
		}
		if (cc != CURLE_OK) {
			/* the pod's side may have ended first: its close frame is
			 * then waiting to be read, and the stream ends cleanly */
			if (pf->rev && pf->sock != -1)
				pf_read(pf);
			if (pf->st != PF_DONE && !pf->close_rcvd)
				pf_fail(pf, "sending to the API server: %s", curl_easy_strerror(cc));
			return -1;
		}
		pf->woff += n;
	}
	return -1;
}

/* The send queue has room: more from the local side (what was read before
 * its EOF, then the close frame). */
static void
pf_refill(struct kb_pf *pf)
{
	if (pf->st != PF_OPEN || pf->local == NULL || pf->close_rcvd ||
	    evbuffer_get_length(pf->wq) >= KB_PF_BUF_MAX / 2 ||
	    (pf->spdy && (!pf->replied[1] || pf->data_fin_sent)))
		return;
	if (pf->local_eof) {
		if (evbuffer_get_length(bufferevent_get_input(pf->local)))
			local_pump(pf);
		else
			local_eof_close(pf);
	} else if (!(bufferevent_get_enabled(pf->local) & EV_READ)) {
		bufferevent_enable(pf->local, EV_READ);
		local_pump(pf);
	}
}

/* Send, refill, send again, without recursion: calls from inside (the
 * local side's pump, a close frame) only queue. */
static void
pf_send(struct kb_pf *pf)
{
	size_t before;
	int r;

	if (pf->in_send)
		return;
	pf->in_send = 1;
	for (;;) {
		r = pf_send_queued(pf);
		if (pf->st == PF_DONE)
			break;
		before = evbuffer_get_length(pf->wq);
		pf_refill(pf);
		/* the socket is full (EV_WRITE is armed), or nothing came */
		if (r < 0 || evbuffer_get_length(pf->wq) == before)
			break;
	}
	pf->in_send = 0;
}

static void
on_writable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pf_send(arg);
}

/* The answer to the upgrade: 1 done (101, or the stream ended), 0 more
 * bytes needed, -1 a 401 to retry with refreshed credentials. */
static int
pf_answer(struct kb_pf *pf)
{
	size_t have = evbuffer_get_length(pf->rq), hl, blen;
	struct evbuffer_ptr e;
	char *hdr, *body, cl[32], err[600];
	int status = 0, spdy;
	long clen = -1;

	e = evbuffer_search(pf->rq, "\r\n\r\n", 4, NULL);
	if (e.pos < 0) {
		if (have > KB_PF_HEADER_MAX)
			pf_fail(pf, "websocket upgrade: answer header over %u bytes",
			    KB_PF_HEADER_MAX);
		return have > KB_PF_HEADER_MAX;
	}
	hl = (size_t)e.pos + 4;
	blen = have - hl;
	if ((hdr = malloc(hl + 1)) == NULL) {
		pf_fail(pf, "out of memory");
		return 1;
	}
	evbuffer_copyout(pf->rq, hdr, hl);
	hdr[hl - 2] = '\0'; /* the lines, each ending "\r\n" */
	if (sscanf(hdr, "HTTP/1.%*[01] %3d", &status) != 1) {
		free(hdr);
		pf_fail(pf, "websocket upgrade: not an HTTP answer");
		return 1;
	}
	if (status == 101) {
		if (upgrade_ok(hdr, pf->key, !(pf->flags & KB_PF_V4_ONLY), &spdy, err,
		    sizeof(err)) < 0) {
			free(hdr);
			pf_fail(pf, "%s", err);
			return 1;
		}
		free(hdr);
		evbuffer_drain(pf->rq, hl);
		pf->st = PF_OPEN;
		pf->upgraded = 1;
		evtimer_del(pf->timer);
		log_debug("portforward: %s/%s:%d: open (%s)", pf->ns, pf->pod, pf->port,
		    spdy ? KB_PF_SPDY : KB_PF_V4);
		if (pf->opened)
			pf->opened(pf->arg, spdy ? KB_PF_SPDY : KB_PF_V4);
		if (spdy) {
			/* the local side is read once the data stream is answered */
			if (spdy_start(pf) < 0)
				return 1;
			bufferevent_enable(pf->local, EV_WRITE);
		} else {
			bufferevent_enable(pf->local, EV_READ | EV_WRITE);
			local_pump(pf);
		}
		pf_parse(pf);
		return 1;
	}
	/* an error answer: wait for its body (Content-Length, or the end) */
	if (http_header(hdr, "Content-Length", cl, sizeof(cl)))
		clen = strtol(cl, NULL, 10);
	if ((clen < 0 || (size_t)clen > blen) && blen < KB_PF_BODY_MAX && pf->sock != -1) {
		free(hdr);
		return 0;
	}
	if (status == 401 && pf->tries < 2) {
		/* credentials expired: refresh (exec plugin, token file), retry */
		free(hdr);
		kb_kubeconfig_refresh(pf->kc);
		return -1;
	}
	if (blen > KB_PF_BODY_MAX)
		blen = KB_PF_BODY_MAX;
	if ((body = malloc(blen + 1)) == NULL) {
		free(hdr);
		pf_fail(pf, "out of memory");
		return 1;
	}
	evbuffer_drain(pf->rq, hl);
	evbuffer_copyout(pf->rq, body, blen);
	body[blen] = '\0';
	http_error(status, hdr, body, blen, err, sizeof(err));
	free(body);
	free(hdr);
	pf_fail(pf, "%s", err);
	return 1;
}

static void pf_retry(struct kb_pf *pf);

static void
pf_read(struct kb_pf *pf)
{
	struct evbuffer_iovec v;
	size_t n;
	CURLcode cc;
	int eof = 0, r;

	if (pf->spdy)
		spdy_pump(pf); /* what waited for the local output to drain */
	while (pf->st == PF_UPGRADE || pf->st == PF_OPEN || pf->st == PF_CLOSING) {
		if (pf->st != PF_UPGRADE && (evbuffer_get_length(pf->rq) >= KB_PF_FRAME_MAX + 14 ||
		    evbuffer_get_length(pf->sq) >= KB_PF_FRAME_MAX + KB_SPDY_HDR ||
		    evbuffer_get_length(bufferevent_get_output(pf->local)) >= KB_PF_BUF_MAX)) {
			pf->rpaused = 1;
			event_del(pf->rev);
			break;
		}
		if (evbuffer_reserve_space(pf->rq, RECVBUF, &v, 1) < 1) {
			pf_fail(pf, "out of memory");
			return;
		}
		cc = curl_easy_recv(pf->easy, v.iov_base, v.iov_len, &n);
		if (cc == CURLE_AGAIN)
			break;
		if (cc != CURLE_OK) {
			pf_fail(pf, "receiving from the API server: %s", curl_easy_strerror(cc));
			return;
		}
		v.iov_len = n;
		evbuffer_commit_space(pf->rq, &v, 1);
		if (n == 0) {
			eof = 1;
			break;
		}
		if (pf->st == PF_UPGRADE) {
			if ((r = pf_answer(pf)) < 0) {
				pf_retry(pf);
				return;
			}
		} else {
			pf_parse(pf);
		}
	}
	if (!eof || pf->st == PF_DONE)
		return;
	pf->sock = -1;
	event_del(pf->rev);
	if (pf->st == PF_UPGRADE) {
		if ((r = pf_answer(pf)) < 0)
			pf_retry(pf);
		else if (r == 0 || pf->st != PF_DONE)
			pf_fail(pf, "the API server closed the connection during the upgrade");
		return;
	}
	pf_parse(pf);
	if (pf->st == PF_DONE)
		return;
	if (pf->close_sent && !pf->close_rcvd) {
		pf_end(pf, NULL); /* we closed: the local side is gone */
		return;
	}
	/* no close frame: the pod's side ended all the same */
	pf->close_rcvd = 1;
	bufferevent_setwatermark(pf->local, EV_WRITE, 0, 0);
	pf_end_when_flushed(pf);
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pf_read(arg);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct kb_pf *pf = arg;

	(void)fd;
	(void)what;
	if (pf->st < PF_OPEN)
		pf_fail(pf, "port-forward to %s/%s:%d: no answer from the API server in %d s",
		    pf->ns, pf->pod, pf->port, KB_PF_HANDSHAKE_MS / 1000);
	else if (pf->spdy && pf->st == PF_OPEN)
		spdy_finish(pf);   /* one SPDY stream ended, the other did not follow */
	else
		pf_end(pf, pf_errtext(pf)); /* no answer to our close */
}

/* ---- connecting: libcurl's multi interface, CONNECT_ONLY ---- */

/* Connected (TLS done): write the upgrade request. */
static void
pf_connected(struct kb_pf *pf)
{
	const char *tok;
	char *host = NULL, *port = NULL, *path = NULL;
	CURLU *u;
	curl_socket_t sock = CURL_SOCKET_BAD;
	int r = -1;

	if (curl_easy_getinfo(pf->easy, CURLINFO_ACTIVESOCKET, &sock) != CURLE_OK ||
	    sock == CURL_SOCKET_BAD) {
		pf_fail(pf, "connecting to %s: no socket", kb_kubeconfig_server(pf->kc));
		return;
	}
	pf->sock = sock;
	if ((u = curl_url()) != NULL &&
	    curl_url_set(u, CURLUPART_URL, kb_kubeconfig_server(pf->kc), 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_PORT, &port, 0);
		tok = kb_kubeconfig_token(pf->kc);
		if (tok && strpbrk(tok, "\r\n"))
			tok = NULL; /* never a header of ours */
		r = evbuffer_add_printf(pf->wq,
		    "GET %s/api/v1/namespaces/%s/pods/%s/portforward?ports=%d HTTP/1.1\r\n"
		    "Host: %s%s%s\r\n"
		    "User-Agent: kbridge\r\n"
		    "Upgrade: websocket\r\n"
		    "Connection: Upgrade\r\n"
		    "Sec-WebSocket-Key: %s\r\n"
		    "Sec-WebSocket-Version: 13\r\n"
		    "Sec-WebSocket-Protocol: %s\r\n"
		    "%s%s%s"
		    "\r\n",
		    strcmp(path, "/") == 0 ? "" : path, pf->ns, pf->pod, pf->port, host,
		    port ? ":" : "", port ? port : "", pf->key,
		    (pf->flags & KB_PF_V4_ONLY) ? WS_PROTOCOL : WS_PROTOCOL_SPDY ", " WS_PROTOCOL,
		    tok ? "Authorization: Bearer " : "", tok ? tok : "", tok ? "\r\n" : "");
	}
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	if (r < 0) {
		pf_fail(pf, "out of memory");
		return;
	}
	pf->st = PF_UPGRADE;
	if ((pf->rev = event_new(pf->base, pf->sock, EV_READ | EV_PERSIST, on_readable, pf)) ==
	    NULL || (pf->wev = event_new(pf->base, pf->sock, EV_WRITE, on_writable, pf)) == NULL) {
		pf_fail(pf, "out of memory");
		return;
	}
	event_add(pf->rev, NULL);
	pf_send(pf);
	pf_read(pf);
}

static void
multi_done(struct kb_pf *pf)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(pf->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE || pf->st != PF_CONNECTING)
			continue;
		msock_clear(pf);
		evtimer_del(pf->mtimer);
		if (m->data.result != CURLE_OK) {
			pf_fail(pf, "%s: %s", kb_kubeconfig_server(pf->kc),
			    curl_easy_strerror(m->data.result));
			return;
		}
		pf_connected(pf);
		return;
	}
}

static void
on_msock(evutil_socket_t fd, short what, void *arg)
{
	struct kb_pf *pf = arg;
	int running;

	curl_multi_socket_action(pf->multi, fd,
	    ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0),
	    &running);
	multi_done(pf);
}

static void
on_mtimer(evutil_socket_t fd, short what, void *arg)
{
	struct kb_pf *pf = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(pf->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	multi_done(pf);
}

static int
msock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct kb_pf *pf = userp;
	short fl = EV_PERSIST;
	int i, slot = -1;

	(void)easy;
	(void)socketp;
	for (i = 0; i < 4; i++) {
		if (pf->msock[i] && pf->msockfd[i] == s) {
			event_free(pf->msock[i]);
			pf->msock[i] = NULL;
		}
		if (pf->msock[i] == NULL && slot < 0)
			slot = i;
	}
	if (what == CURL_POLL_REMOVE || pf->st != PF_CONNECTING)
		return 0;
	if (slot < 0)
		return -1;
	if (what & CURL_POLL_IN)
		fl |= EV_READ;
	if (what & CURL_POLL_OUT)
		fl |= EV_WRITE;
	if ((pf->msock[slot] = event_new(pf->base, s, fl, on_msock, pf)) == NULL)
		return -1;
	pf->msockfd[slot] = s;
	return event_add(pf->msock[slot], NULL);
}

static int
mtimer_cb(CURLM *multi, long ms, void *userp)
{
	struct kb_pf *pf = userp;
	struct timeval tv;

	(void)multi;
	if (pf->mtimer == NULL)
		return 0;
	if (ms < 0 || pf->st != PF_CONNECTING) {
		evtimer_del(pf->mtimer);
		return 0;
	}
	tv = kb_ms_tv(ms);
	return evtimer_add(pf->mtimer, &tv);
}

/* The connection's TLS context (libcurl's OpenSSL): read ahead, a
 * RECVBUF a read. The API server sends most WebSocket frames as three
 * records (the header, the payload, an empty final frame): without it
 * every record took two reads, its header's 5 bytes and then the rest. */
static CURLcode
ssl_ctx_cb(CURL *easy, void *ctx, void *arg)
{
	(void)easy;
	(void)arg;
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, RECVBUF);
	return CURLE_OK;
}

static int
pf_connect(struct kb_pf *pf, char *err, size_t errlen)
{
	unsigned char raw[16];
	char *url;
	CURLMcode mc;

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		snprintf(err, errlen, "no random bytes");
		return -1;
	}
	EVP_EncodeBlock((unsigned char *)pf->key, raw, sizeof(raw));
	if ((pf->easy = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return -1;
	}
	if (kb_kubeconfig_curl(pf->kc, pf->easy, err, errlen) < 0)
		return -1;
	if ((url = kb_kubeconfig_url(pf->kc, "/")) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	curl_easy_setopt(pf->easy, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(pf->easy, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(pf->easy, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
	curl_easy_setopt(pf->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(pf->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)KB_PF_HANDSHAKE_MS);
	/* HTTP/1.1: an upgrade needs it (no ALPN h2) */
	curl_easy_setopt(pf->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	pf->st = PF_CONNECTING; /* before: adding sets curl's timer */
	pf->tries++;
	if ((mc = curl_multi_add_handle(pf->multi, pf->easy)) != CURLM_OK) {
		snprintf(err, errlen, "libcurl: %s", curl_multi_strerror(mc));
		return -1;
	}
	return 0;
}

/* A 401: a new connection with refreshed credentials. */
static void
pf_retry(struct kb_pf *pf)
{
	char err[512];

	log_debug("portforward: 401, credentials refreshed, once more");
	event_free(pf->rev);
	event_free(pf->wev);
	pf->rev = pf->wev = NULL;
	curl_multi_remove_handle(pf->multi, pf->easy);
	curl_easy_cleanup(pf->easy);
	pf->easy = NULL;
	pf->sock = -1;
	evbuffer_drain(pf->wq, evbuffer_get_length(pf->wq));
	evbuffer_drain(pf->rq, evbuffer_get_length(pf->rq));
	pf->woff = pf->wlen = 0;
	if (pf_connect(pf, err, sizeof(err)) < 0)
		pf_fail(pf, "%s", err);
}

/* Names in the path: a DNS subdomain (pods) or label (namespaces). */
static int
name_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
		    s[i] == '-' || s[i] == '.'))
			return 0;
	return 1;
}

struct kb_pf *
kb_pf_open(struct event_base *base, struct kb_kubeconfig *kc, const char *ns, const char *pod,
    int port, int fd, kb_pf_done_cb done, void *arg, char *err, size_t errlen)
{
	struct kb_pf *pf;

	if (!kb_dns_label(ns) || !name_ok(pod) || port < 1 || port > 65535 || done == NULL) {
		snprintf(err, errlen, "port-forward: bad pod %.64s/%.64s or port %d", ns, pod, port);
		close(fd);
		return NULL;
	}
	if ((pf = calloc(1, sizeof(*pf))) == NULL) {
		snprintf(err, errlen, "out of memory");
		close(fd);
		return NULL;
	}
	pf->base = base;
	pf->kc = kc;
	pf->port = port;
	pf->done = done;
	pf->arg = arg;
	pf->sock = -1;
	pf->prefix_left[CH_DATA] = pf->prefix_left[CH_ERROR] = 2;
	evutil_make_socket_nonblocking(fd);
	if ((pf->local = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		goto oom;
	}
	if ((pf->ns = strdup(ns)) == NULL || (pf->pod = strdup(pod)) == NULL ||
	    (pf->wq = evbuffer_new()) == NULL || (pf->rq = evbuffer_new()) == NULL ||
	    (pf->sq = evbuffer_new()) == NULL ||
	    (pf->multi = curl_multi_init()) == NULL ||
	    (pf->mtimer = evtimer_new(base, on_mtimer, pf)) == NULL ||
	    (pf->timer = evtimer_new(base, on_timer, pf)) == NULL ||
	    (pf->finish_ev = event_new(base, -1, 0, on_finish, pf)) == NULL)
		goto oom;
	bufferevent_setcb(pf->local, on_local_read, on_local_write, on_local_event, pf);
	bufferevent_setwatermark(pf->local, EV_WRITE, KB_PF_BUF_MAX / 2, 0);
	/* the pod's bytes to the local side RECVBUF a write (libevent: 16 KiB) */
	bufferevent_set_max_single_write(pf->local, RECVBUF);
	/* reading starts once the WebSocket is open; EOF seen before then */
	bufferevent_disable(pf->local, EV_READ | EV_WRITE);
	curl_multi_setopt(pf->multi, CURLMOPT_SOCKETFUNCTION, msock_cb);
	curl_multi_setopt(pf->multi, CURLMOPT_SOCKETDATA, pf);
	curl_multi_setopt(pf->multi, CURLMOPT_TIMERFUNCTION, mtimer_cb);
	curl_multi_setopt(pf->multi, CURLMOPT_TIMERDATA, pf);
	if (pf_connect(pf, err, errlen) < 0) {
		pf_free(pf);
		return NULL;
	}
	pf_timer(pf, KB_PF_HANDSHAKE_MS);
	return pf;
oom:
	snprintf(err, errlen, "out of memory");
	pf_free(pf);
	return NULL;
}

/* ---- the pod behind a Service (blocking) ---- */

#define LOOKUP_TIMEOUT_MS 20000
#define LOOKUP_MAX (8u << 20)

/* GET path: the JSON object answered with 200, or NULL with err (the
 * Status' message for an HTTP error). A 401 refreshes once. */
static cJSON *
get_json(struct kb_kubeconfig *kc, const char *path, char *err, size_t errlen)
{
	struct kb_kube_request r = { .method = "GET", .path = path, .user_agent = "kbridge",
	    .timeout_ms = LOOKUP_TIMEOUT_MS, .max_body = LOOKUP_MAX };
	cJSON *j = NULL;
	CURL *c;
	long status = 0;
	char *body = NULL;
	size_t n;

	if ((c = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return NULL;
	}
	if (kb_kubeconfig_request(kc, c, &r, &status, &body, &n, err, errlen) == -1)
		goto out;
	if (status != 200) {
		http_error((int)status, "HTTP/1.1\r\n", body ? body : "", n, err, errlen);
		goto out;
	}
	if ((j = cJSON_ParseWithLength(body ? body : "", n)) == NULL || !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		j = NULL;
		snprintf(err, errlen, "GET %s: not a JSON object", path);
	}
out:
	curl_easy_cleanup(c);
	free(body);
	return j;
}

static const char *
jstr(const cJSON *o, const char *path1, const char *path2)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, path1);

	if (path2)
		v = cJSON_GetObjectItemCaseSensitive(v, path2);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A pod's Ready time if it is Running, Ready and not being deleted, else
 * NULL. */
static const char *
pod_ready_since(const cJSON *pod)
{
	const cJSON *c, *conds;
	const char *t;

	if (jstr(pod, "metadata", "deletionTimestamp") ||
	    (t = jstr(pod, "status", "phase")) == NULL || strcmp(t, "Running") != 0)
		return NULL;
	conds = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(pod, "status"), "conditions");
	cJSON_ArrayForEach(c, conds) {
		if ((t = jstr(c, "type", NULL)) && strcmp(t, "Ready") == 0 &&
		    (t = jstr(c, "status", NULL)) && strcmp(t, "True") == 0)
			return (t = jstr(c, "lastTransitionTime", NULL)) ? t : "";
	}
	return NULL;
}

/* "k=v,k2=v2" from a Service's selector, URL-escaped; NULL if it has none. */
static char *
selector_query(const cJSON *sel)
{
	const cJSON *kv;
	char *s = NULL, *e, *q;
	size_t n = 0;

	cJSON_ArrayForEach(kv, sel) {
		if (!cJSON_IsString(kv) || kv->string == NULL)
			continue;
		if ((q = realloc(s, n + strlen(kv->string) + strlen(kv->valuestring) + 3)) == NULL) {
			free(s);
			return NULL;
		}
		s = q;
		n += (size_t)sprintf(s + n, "%s%s=%s", n ? "," : "", kv->string, kv->valuestring);
	}
	if (s == NULL)
		return NULL;
	e = curl_easy_escape(NULL, s, 0);
	free(s);
	if (e == NULL)
		return NULL;
	s = strdup(e);
	curl_free(e);
	return s;
}

int
kb_pf_service_pod(struct kb_kubeconfig *kc, const char *ns, const char *service, char *pod,
    size_t podlen, char *err, size_t errlen)
{
	char path[512], *q = NULL, *p2 = NULL;
	const char *best = NULL, *best_t = NULL, *t, *name;
	cJSON *svc = NULL, *pods = NULL;
	const cJSON *it;
	int rc = -1;

	if (!kb_dns_label(ns) || !kb_dns_label(service)) {
		snprintf(err, errlen, "bad namespace or service name");
		return -1;
	}
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", ns, service);
	if ((svc = get_json(kc, path, err, errlen)) == NULL)
		goto out;
	if ((q = selector_query(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(svc, "spec"), "selector"))) == NULL) {
		snprintf(err, errlen, "service %s/%s has no selector", ns, service);
		goto out;
	}
	if (asprintf(&p2, "/api/v1/namespaces/%s/pods?labelSelector=%s", ns, q) < 0) {
		p2 = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((pods = get_json(kc, p2, err, errlen)) == NULL)
		goto out;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pods, "items")) {
		if ((t = pod_ready_since(it)) == NULL || (name = jstr(it, "metadata", "name")) == NULL)
			continue;
		if (best == NULL || strcmp(t, best_t) > 0) {
			best = name;
			best_t = t;
		}
	}
	if (best == NULL) {
		snprintf(err, errlen, "service %s/%s has no ready pod", ns, service);
		goto out;
	}
	if (strlen(best) >= podlen) {
		snprintf(err, errlen, "pod name too long");
		goto out;
	}
	snprintf(pod, podlen, "%s", best);
	rc = 0;
out:
	cJSON_Delete(svc);
	cJSON_Delete(pods);
	free(q);
	free(p2);
	return rc;
}
