/* HTTP/1.1 to h2c per request for previews (h1h2.h). One struct h1h2 per
 * upstream connection of the preview proxy: "side" is our end of the
 * socket pair the proxy writes its requests to, "up" the connection to the
 * workload's service. A request is read whole (llhttp; head and body kept,
 * the body at most H1H2_BODY_MAX), then sent on: as the bytes that came
 * (HTTP/1.1), or as an HTTP/2 stream (nghttp2 client session on up). The
 * answer's first bytes are held until its status is known: a 502 of the
 * sidecar saying the app did not speak that protocol sends the request
 * again in the other one, on a new connection. One request is in flight at
 * a time, as the proxy sends them; the next one waits in side's input.
 * An Upgrade (WebSocket) request, or one whose body is over the bound
 * while the preview has not learnt h2c, makes the connection a plain relay
 * from then on; to a learnt h2c app such a body is streamed (sent with
 * what was kept, the rest as the stream takes it, never replayed).
 * gRPC-web text bodies are decoded from base64 as they come, the answers
 * encoded (EVP_DecodeBlock / EVP_EncodeBlock).
 *
 * Bounds: a request head as the proxy's (64 KiB, 128 fields), its body
 * kept H1H2_BODY_MAX, a streamed body's waiting bytes H1H2_HIGH_WATER
 * (side is not parsed beyond), an answer head 64 KiB; up is not read while
 * H1H2_HIGH_WATER bytes wait for the proxy. The proxy's per-connection
 * caps bound how many translators there are. */
#include "h1h2.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>

#include "htab.h"
#include "log.h"

#define HH_HEAD_MAX	(64 * 1024)
#define HH_MAX_FIELDS	128
#define HH_RESP_HEAD_MAX	(64 * 1024)
#define HH_CHECK_MAX	1024	/* of a mismatch's body, held */
#define HH_READ_MAX	(16 * 1024)

enum h1h2_state { HH_S_REQ, HH_S_SENT, HH_S_RAW, HH_S_CLOSING };

struct h1h2 {
	LIST_ENTRY(h1h2) entry;
	uint64_t key;
	const struct h1h2_ops *ops;
	struct event_base *base;
	struct bufferevent *side, *up;
	enum h1h2_state st;
	enum h1h2_proto upmode;		/* what up speaks */
	enum h1h2_proto mode;		/* of the request in flight */
	unsigned tried;			/* 1 << protocol it was sent in */

	/* The request: its bytes as they came, its body, its head. */
	llhttp_t rq;
	struct evbuffer *raw, *body;
	char *head;			/* grows to HH_HEAD_MAX */
	size_t hcap, hused, url, name[HH_MAX_FIELDS], value[HH_MAX_FIELDS], nf;
	int span;			/* open element: 0, 1 url, 2 name, 3 value */
	unsigned req_done:1, too_big:1, bad:1, is_head:1, grpcweb:1, upgrade:1,
	    expect:1, sent100:1;
	unsigned gtext:1, b64bad:1;	/* gRPC-web text; its base64 was bad */
	struct h1h2_b64 b64;
	/* sent before its body ended (learnt h2c, body over the bound): the
	 * body goes through tmp as it comes; side is not parsed while tmp is
	 * full (stalled) */
	unsigned streaming:1, stalled:1;

	/* The answer. */
	int status;
	unsigned begun:1, final:1, checking:1, chunked:1, nobody:1, has_cl:1;
	/* the answer's H1H2_PROTO_HEADER (the sidecar's mark): its value,
	 * markl bytes (0: none; sizeof(mark): too long, no value of ours);
	 * in HTTP/1.1, marking: the field being read is it, mk_n: the bytes of
	 * the field name being read that match it (more: it does not) */
	char mark[16];
	size_t markl;
	unsigned marking:1;
	unsigned char mk_n;
	struct evbuffer *hold;		/* held answer bytes (HTTP/1.1) or head (h2) */
	char check[HH_CHECK_MAX];		/* a held mismatch's body */
	size_t checklen;
	size_t counted;			/* of hh_bodies, this one's */
	struct hh_share *pvshare, *srcshare;	/* its preview's, its visitor's */
	unsigned reused:1, retried:1;	/* up served a request before; sent again once */
	llhttp_t rs;			/* HTTP/1.1 answers */
	unsigned rs_headed:1, rs_done:1;

	/* h2c */
	nghttp2_session *h2;
	int32_t sid;
	struct evbuffer *trl;		/* the answer's trailers, "name: value\r\n" */
	const char *tnames[32], *tvalues[32];
	size_t ntrl;
	char tbuf[4096];
	size_t tused;
	size_t rhbytes;
	struct evbuffer *tmp;		/* the request body as the data provider sends it */
};

static LIST_HEAD(, h1h2) hh_all = LIST_HEAD_INITIALIZER(hh_all);
/* Request bodies kept by all translators together. */
static size_t hh_bodies;
/* ... and by the translators of one preview, or of one visitor's address:
 * a share each, while a translator uses it. */
struct hh_share {
	uint8_t id[17];		/* 'p' and the preview's key, or 'a' and the address */
	size_t used;
	unsigned refs;
};
static struct kb_htab hh_shares;

static void hh_side_read(struct bufferevent *, void *);
static void hh_side_write(struct bufferevent *, void *);
static void hh_side_event(struct bufferevent *, short, void *);
static void hh_up_read(struct bufferevent *, void *);
static void hh_up_write(struct bufferevent *, void *);
static void hh_up_event(struct bufferevent *, short, void *);
static void hh_send_request(struct h1h2 *);
static void hh_request_done(struct h1h2 *);
static void hh_h2_ended(struct h1h2 *);
static void hh_h2_pump(struct h1h2 *);

/* --- pure parts --- */

int
h1h2_grpc_web(const char *ct)
{
	const char *p = "application/grpc-web";
	size_t n = strlen(p);

	if (ct == NULL || strncasecmp(ct, p, n) != 0)
		return 0;
	if (strncasecmp(ct + n, "-text", 5) == 0) {
		n += 5;
		if (ct[n] == '\0' || ct[n] == '+' || ct[n] == ';' || ct[n] == ' ')
			return 2;
		return 0;
	}
	/* +proto, +json and ;params */
	return ct[n] == '\0' || ct[n] == '+' || ct[n] == ';' || ct[n] == ' ';
}

static int
hh_b64_char(int c)
{
	return isalnum(c) || c == '+' || c == '/';
}

/* One quantum, maybe padded: its bytes, or -1. */
static long
hh_b64_quantum(const char *q, unsigned char *out)
{
	unsigned char b[3];
	int pad = (q[3] == '=') + (q[2] == '=');

	if (!hh_b64_char((unsigned char)q[0]) || !hh_b64_char((unsigned char)q[1]) ||
	    (q[2] == '=' && q[3] != '=') || (q[2] != '=' && !hh_b64_char((unsigned char)q[2])) ||
	    (q[3] != '=' && !hh_b64_char((unsigned char)q[3])))
		return -1;
	if (EVP_DecodeBlock(b, (const unsigned char *)q, 4) != 3)
		return -1;
	memcpy(out, b, (size_t)(3 - pad));
	return 3 - pad;
}

long
h1h2_b64_decode(struct h1h2_b64 *st, const char *in, size_t n, unsigned char *out)
{
	size_t i = 0, run;
	long len = 0, r;
	int c;

	while (i < n) {
		if (st->n == 0) {
			/* whole unpadded quanta at once */
			for (run = 0; i + run < n && hh_b64_char((unsigned char)in[i + run]); run++)
				;
			run -= run % 4;
			if (run > 0) {
				if (EVP_DecodeBlock(out + len, (const unsigned char *)in + i, (int)run) !=
				    (int)(run / 4 * 3))
					return -1;
				len += (long)(run / 4 * 3);
				i += run;
				continue;
			}
		}
		c = (unsigned char)in[i++];
		if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
			continue;
		if (!hh_b64_char(c) && c != '=')
			return -1;
		st->q[st->n++] = (char)c;
		if (st->n < 4)
			continue;
		st->n = 0;
		if ((r = hh_b64_quantum(st->q, out + len)) < 0)
			return -1;
		len += r;
	}
	return len;
}

int
h1h2_hop(const char *n)
{
	static const char *const hop[] = { "connection", "keep-alive", "proxy-connection",
	    "transfer-encoding", "upgrade", "te", "host", "http2-settings", "expect",
	    "content-length", NULL };
	size_t i;

	for (i = 0; hop[i]; i++)
		if (strcasecmp(n, hop[i]) == 0)
			return 1;
	return 0;
}

int
h1h2_mismatch(enum h1h2_proto proto, int status, const char *v, size_t vl)
{
	const char *want = proto == H1H2_H2C ? H1H2_NOT_H2C : H1H2_NOT_HTTP1;

	/* to gRPC, h2route says it as UNAVAILABLE, trailers only: 200 */
	if (v == NULL || !(status == 502 || (proto == H1H2_H2C && status == 200)))
		return 0;
	return vl == strlen(want) && memcmp(v, want, vl) == 0;
}

/* The answer's mark says the app did not speak the protocol the request
 * went in. */
static int
hh_marked(const struct h1h2 *t)
{
	return h1h2_mismatch(t->mode, t->status, t->markl ? t->mark : NULL, t->markl);
}

static void
hh_mark_add(struct h1h2 *t, const char *v, size_t vl)
{
	if (t->markl + vl >= sizeof(t->mark)) {
		t->markl = sizeof(t->mark);
		return;
	}
	memcpy(t->mark + t->markl, v, vl);
	t->markl += vl;
}

size_t
h1h2_grpc_trailer(const char *const *names, const char *const *values, size_t n,
    unsigned char *out, size_t outlen)
{
	size_t i, j, len = 5, nl, vl;

	for (i = 0; i < n; i++) {
		nl = strlen(names[i]);
		vl = strlen(values[i]);
		if (len + nl + vl + 4 > outlen)
			return 0;
		for (j = 0; j < nl; j++)
			out[len++] = (unsigned char)tolower((unsigned char)names[i][j]);
		out[len++] = ':';
		out[len++] = ' ';
		memcpy(out + len, values[i], vl);
		len += vl;
		out[len++] = '\r';
		out[len++] = '\n';
	}
	if (outlen < 5)
		return 0;
	out[0] = 0x80;
	out[1] = (unsigned char)((len - 5) >> 24);
	out[2] = (unsigned char)((len - 5) >> 16);
	out[3] = (unsigned char)((len - 5) >> 8);
	out[4] = (unsigned char)(len - 5);
	return len;
}

static const char *
hh_reason(int s)
{
	switch (s) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 413: return "Content Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return s < 300 ? "OK" : s < 400 ? "Redirect" : s < 500 ? "Client Error" :
	    "Server Error";
	}
}

/* --- life --- */

static void
hh_up_close(struct h1h2 *t)
{
	if (t->h2) {
		nghttp2_session_del(t->h2);
		t->h2 = NULL;
	}
	if (t->up) {
		bufferevent_free(t->up);
		t->up = NULL;
	}
	t->upmode = H1H2_UNKNOWN;
}

/* The share called id (17 bytes), one more user: NULL when out of memory. */
static struct hh_share *
hh_share_get(const uint8_t *id)
{
	struct hh_share *sh;

	if ((sh = kb_htab_get(&hh_shares, id, sizeof(sh->id))) == NULL) {
		if ((sh = calloc(1, sizeof(*sh))) == NULL)
			return NULL;
		memcpy(sh->id, id, sizeof(sh->id));
		if (kb_htab_put(&hh_shares, sh->id, sizeof(sh->id), sh) < 0) {
			free(sh);
			return NULL;
		}
	}
	sh->refs++;
	return sh;
}

/* One user less (it counts nothing any more). */
static void
hh_share_put(struct hh_share *sh)
{
	if (sh == NULL || --sh->refs > 0)
		return;
	kb_htab_del(&hh_shares, sh->id, sizeof(sh->id));
	free(sh);
}

/* This translator's part of the bodies kept becomes n bytes: 0, or -1
 * with *why (the cap) when its preview's, its visitor's or all together
 * would be over their cap (h1h2.h). */
static int
hh_body_budget(struct h1h2 *t, size_t n, const char **why)
{
	size_t more = n > t->counted ? n - t->counted : 0;

	if (more > 0) {
		*why = hh_bodies + more > H1H2_BODIES_MAX ?
		    "all previews keep " H1H2_BODIES_TEXT " of request bodies already" :
		    t->pvshare->used + more > H1H2_PREVIEW_BODIES_MAX ?
		    "this preview keeps " H1H2_PREVIEW_BODIES_TEXT " of request bodies already" :
		    t->srcshare->used + more > H1H2_SRC_BODIES_MAX ?
		    "this visitor's address keeps " H1H2_SRC_BODIES_TEXT " of request bodies "
		    "already" : NULL;
		if (*why != NULL)
			return -1;
	}
	hh_bodies = hh_bodies - t->counted + n;
	t->pvshare->used = t->pvshare->used - t->counted + n;
	t->srcshare->used = t->srcshare->used - t->counted + n;
	t->counted = n;
	return 0;
}

static void
hh_body_release(struct h1h2 *t)
{
	const char *why;

	evbuffer_drain(t->body, evbuffer_get_length(t->body));
	hh_body_budget(t, 0, &why);
}

static void
hh_buf_free(struct evbuffer *b)
{
	if (b)
		evbuffer_free(b);
}

static void
hh_bufs_free(struct h1h2 *t)
{
	hh_buf_free(t->raw);
	hh_buf_free(t->body);
	hh_buf_free(t->hold);
	hh_buf_free(t->trl);
	hh_buf_free(t->tmp);
}

static void
h1h2_free(struct h1h2 *t)
{
	LIST_REMOVE(t, entry);
	hh_up_close(t);
	if (t->side)
		bufferevent_free(t->side);
	hh_body_release(t);
	hh_share_put(t->pvshare);
	hh_share_put(t->srcshare);
	hh_bufs_free(t);
	free(t->head);
	free(t);
}

void
h1h2_free_all(void)
{
	while (!LIST_EMPTY(&hh_all))
		h1h2_free(LIST_FIRST(&hh_all));
	kb_htab_clear(&hh_shares);
}

/* Nothing more is read; side goes once the proxy has what waits for it. */
static void
hh_closing(struct h1h2 *t)
{
	t->st = HH_S_CLOSING;
	hh_up_close(t);
	bufferevent_disable(t->side, EV_READ);
	bufferevent_setwatermark(t->side, EV_WRITE, 0, 0);
	if (evbuffer_get_length(bufferevent_get_output(t->side)) == 0)
		h1h2_free(t);
}

/* Answer the request in flight here (nothing of an answer went out yet),
 * then close. */
static void
hh_fail(struct h1h2 *t, int status, const char *why)
{
	struct evbuffer *o = bufferevent_get_output(t->side);

	if (!t->begun) {
		evbuffer_add_printf(o, "HTTP/1.1 %d %s\r\n", status, hh_reason(status));
		if (t->grpcweb)	/* what a gRPC-web client reads first */
			evbuffer_add_printf(o, "grpc-status: %d\r\ngrpc-message: %s\r\n",
			    status == 400 ? 3 : status == 413 ? 8 : status == 500 ? 13 : 14, why);
		evbuffer_add_printf(o, "Content-Type: text/plain\r\n"
		    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
		    strlen(why) + 1, why);
		log_info("preview request: %d: %s", status, why);
	}
	hh_closing(t);
}

/* Bytes of the answer for the proxy; up is not read while too many wait. */
static void
hh_to_side(struct h1h2 *t, const void *p, size_t n)
{
	t->begun = 1;
	bufferevent_write(t->side, p, n);
}

static void
hh_up_throttle(struct h1h2 *t)
{
	if (t->up && evbuffer_get_length(bufferevent_get_output(t->side)) > H1H2_HIGH_WATER)
		bufferevent_disable(t->up, EV_READ);
}

static int
hh_up_open(struct h1h2 *t, enum h1h2_proto mode)
{
	char why[300];
	int fd;

	if (t->up && t->upmode == mode) {
		t->reused = 1;
		return 0;
	}
	hh_up_close(t);
	t->reused = 0;
	if ((fd = t->ops->open(t->ops->arg, t->key, why, sizeof(why))) < 0) {
		hh_fail(t, 502, why);
		return -1;
	}
	if ((t->up = bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		hh_fail(t, 500, "kbridge: out of memory");
		return -1;
	}
	bufferevent_setcb(t->up, hh_up_read, hh_up_write, hh_up_event, t);
	bufferevent_setwatermark(t->up, EV_WRITE, H1H2_HIGH_WATER / 4, 0);
	bufferevent_enable(t->up, EV_READ | EV_WRITE);
	t->upmode = mode;
	return 0;
}

/* --- the requests --- */

/* Room for n more bytes of the head: 0, or -1 (over HH_HEAD_MAX, no memory). */
static int
hh_room(struct h1h2 *t, size_t n)
{
	size_t cap = t->hcap ? t->hcap : 4096;
	char *p;

	if (t->hused + n + 1 >= HH_HEAD_MAX)
		return -1;
	if (t->hused + n + 1 <= t->hcap)
		return 0;
	while (cap < t->hused + n + 1)
		cap *= 2;
	if ((p = realloc(t->head, cap)) == NULL)
		return -1;
	t->head = p;
	t->hcap = cap;
	return 0;
}

static int
hh_span(struct h1h2 *t, int kind, const char *at, size_t n)
{
	if (t->span != kind) {
		if (kind == 2 && t->nf == HH_MAX_FIELDS) {
			t->bad = 1;
			return -1;
		}
		if (kind == 1)
			t->url = t->hused;
		else if (kind == 2)
			t->name[t->nf] = t->hused;
		else
			t->value[t->nf] = t->hused;
		t->span = kind;
	}
	if (hh_room(t, n) < 0) {
		t->bad = 1;
		return -1;
	}
	memcpy(t->head + t->hused, at, n);
	t->hused += n;
	return 0;
}

static int
hh_span_end(struct h1h2 *t)
{
	if (t->span == 0)
		return 0;
	if (hh_room(t, 0) < 0) {
		t->bad = 1;
		return -1;
	}
	t->head[t->hused++] = '\0';
	if (t->span == 3)
		t->nf++;
	t->span = 0;
	return 0;
}

#define HH_T(p) ((struct h1h2 *)(p)->data)

static int hh_on_url(llhttp_t *p, const char *at, size_t n) { return hh_span(HH_T(p), 1, at, n); }
static int hh_on_field(llhttp_t *p, const char *at, size_t n) { return hh_span(HH_T(p), 2, at, n); }
static int hh_on_value(llhttp_t *p, const char *at, size_t n) { return hh_span(HH_T(p), 3, at, n); }
static int hh_on_done(llhttp_t *p) { return hh_span_end(HH_T(p)); }

static int
hh_on_value_done(llhttp_t *p)
{
	struct h1h2 *t = HH_T(p);

	if (t->span != 3)	/* an empty value */
		hh_span(t, 3, "", 0);
	return hh_span_end(t);
}

static const char *
hh_field(const struct h1h2 *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->nf; i++)
		if (strcasecmp(t->head + t->name[i], name) == 0)
			return t->head + t->value[i];
	return NULL;
}

static int
hh_on_req_headers(llhttp_t *p)
{
	struct h1h2 *t = HH_T(p);
	const char *e;
	int gw;

	t->is_head = llhttp_get_method(p) == HTTP_HEAD;
	t->upgrade = llhttp_get_upgrade(p) || llhttp_get_method(p) == HTTP_CONNECT;
	gw = h1h2_grpc_web(hh_field(t, "content-type"));
	t->grpcweb = gw != 0;
	t->gtext = gw == 2;
	t->expect = (e = hh_field(t, "expect")) != NULL && strcasecmp(e, "100-continue") == 0;
	if (t->upgrade)
		return HPE_PAUSED;
	if (t->expect && !t->sent100) {
		/* the body is read here before anything goes on; the
		 * upstream's own 100 is dropped */
		bufferevent_write(t->side, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		t->sent100 = 1;
	}
	return 0;
}

/* Request body bytes into to, decoded from base64 in gRPC-web text (the
 * bytes as they came stay in raw for an HTTP/1.1 app). */
static void
hh_body_add(struct h1h2 *t, struct evbuffer *to, const char *at, size_t n)
{
	unsigned char out[HH_READ_MAX / 4 * 3 + 3];
	size_t k;
	long r;

	if (!t->gtext) {
		evbuffer_add(to, at, n);
		return;
	}
	for (; n > 0 && !t->b64bad; at += k, n -= k) {
		k = n > HH_READ_MAX ? HH_READ_MAX : n;
		if ((r = h1h2_b64_decode(&t->b64, at, k, out)) < 0)
			t->b64bad = 1;
		else
			evbuffer_add(to, out, (size_t)r);
	}
}

static int
hh_on_req_body(llhttp_t *p, const char *at, size_t n)
{
	struct h1h2 *t = HH_T(p);
	static time_t said;
	const char *why = NULL;
	time_t now;

	if (t->streaming) {
		hh_body_add(t, t->tmp, at, n);
		return 0;
	}
	if (evbuffer_get_length(t->body) + n > H1H2_BODY_MAX ||
	    hh_body_budget(t, evbuffer_get_length(t->body) + n, &why) < 0) {
		/* as a body over the bound: not kept for a replay */
		if (why != NULL && (now = time(NULL)) != said) {
			said = now;	/* once a second at most */
			log_info("preview request: its body goes on without a replay: %s", why);
		}
		t->too_big = 1;
		/* to a learnt h2c app it is streamed: this piece goes too */
		if (t->ops->proto(t->ops->arg, t->key) == H1H2_H2C)
			hh_body_add(t, t->body, at, n);
		return HPE_PAUSED;
	}
	hh_body_add(t, t->body, at, n);
	return 0;
}

static int
hh_on_req_complete(llhttp_t *p)
{
	HH_T(p)->req_done = 1;
	return HPE_PAUSED;
}

static const llhttp_settings_t hh_req_settings = {
	.on_url = hh_on_url,
	.on_header_field = hh_on_field,
	.on_header_value = hh_on_value,
	.on_url_complete = hh_on_done,
	.on_header_field_complete = hh_on_done,
	.on_header_value_complete = hh_on_value_done,
	.on_headers_complete = hh_on_req_headers,
	.on_body = hh_on_req_body,
	.on_message_complete = hh_on_req_complete,
};

static void
hh_request_reset(struct h1h2 *t)
{
	evbuffer_drain(t->raw, evbuffer_get_length(t->raw));
	hh_body_release(t);
	evbuffer_drain(t->hold, evbuffer_get_length(t->hold));
	evbuffer_drain(t->trl, evbuffer_get_length(t->trl));
	evbuffer_drain(t->tmp, evbuffer_get_length(t->tmp));
	t->hused = t->nf = t->url = 0;
	t->span = 0;
	t->req_done = t->too_big = t->bad = t->is_head = t->grpcweb = t->upgrade = 0;
	t->expect = t->sent100 = 0;
	t->gtext = t->b64bad = t->streaming = t->stalled = 0;
	t->b64.n = 0;
	t->reused = t->retried = t->rs_headed = t->rs_done = 0;
	t->status = 0;
	t->begun = t->final = t->checking = t->chunked = t->nobody = t->has_cl = 0;
	t->markl = t->mk_n = t->marking = 0;
	t->checklen = t->rhbytes = t->ntrl = t->tused = 0;
	t->tried = 0;
	t->sid = 0;
}

/* The connection becomes a relay both ways (Upgrade, or a body over the
 * bound on the HTTP/1.1 path): what was read of the request goes first. */
static void
hh_go_raw(struct h1h2 *t)
{
	if (hh_up_open(t, H1H2_H1) < 0)
		return;
	t->st = HH_S_RAW;
	hh_body_release(t);	/* never replayed now: raw has its bytes */
	bufferevent_write_buffer(t->up, t->raw);
	bufferevent_write_buffer(t->up, bufferevent_get_input(t->side));
}

/* A body over the bound to a learnt h2c app: sent now, the rest as it
 * comes. */
static int hh_send_h2(struct h1h2 *);

/* 0, or -1 when answered (t may be gone). */
static int
hh_stream_start(struct h1h2 *t)
{
	evbuffer_drain(t->raw, evbuffer_get_length(t->raw));	/* never replayed */
	t->streaming = 1;
	t->st = HH_S_SENT;
	t->mode = H1H2_H2C;
	t->tried |= 1u << H1H2_H2C;
	return hh_send_h2(t);
}

/* More of a streamed body may go: what the stream's window and up take. */
static void
hh_stream_kick(struct h1h2 *t)
{
	if (t->h2 == NULL || t->sid <= 0)
		return;
	nghttp2_session_resume_data(t->h2, t->sid);
	hh_h2_pump(t);
}

static int
hh_reading(const struct h1h2 *t)
{
	return t->st == HH_S_REQ || (t->st == HH_S_SENT && t->streaming && !t->req_done);
}

/* 0, or -1 when the gRPC-web text body was bad (answered: t may be gone). */
static int
hh_b64_check(struct h1h2 *t)
{
	if (!t->gtext || (!t->b64bad && (!t->req_done || t->b64.n == 0)))
		return 0;
	hh_fail(t, 400, "kbridge: the gRPC-web text request body is not base64");
	return -1;
}

static void
hh_side_read(struct bufferevent *bev, void *arg)
{
	struct h1h2 *t = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	enum llhttp_errno e;
	const char *p;
	size_t len, n;

	(void)bev;
	if (t->st == HH_S_RAW) {
		if (t->up) {
			bufferevent_write_buffer(t->up, in);
			if (evbuffer_get_length(bufferevent_get_output(t->up)) > H1H2_HIGH_WATER)
				bufferevent_disable(t->side, EV_READ);
		}
		return;
	}
	if (!hh_reading(t))
		return;
	while (hh_reading(t) && (len = evbuffer_get_length(in)) > 0) {
		if (t->streaming && evbuffer_get_length(t->tmp) >= H1H2_HIGH_WATER) {
			t->stalled = 1;	/* until the stream takes it */
			break;
		}
		if (len > HH_READ_MAX)
			len = HH_READ_MAX;
		p = (const char *)evbuffer_pullup(in, (ssize_t)len);
		if (llhttp_get_errno(&t->rq) == HPE_PAUSED)
			llhttp_resume(&t->rq);
		e = llhttp_execute(&t->rq, p, len);
		n = e == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&t->rq) - p);
		if (e != HPE_OK && e != HPE_PAUSED) {
			hh_fail(t, t->bad ? 431 : 400, t->bad ? "kbridge: request head too large" :
			    "kbridge: bad request");
			return;
		}
		if (t->streaming)
			evbuffer_drain(in, n);
		else
			evbuffer_remove_buffer(in, t->raw, n);
		if (t->upgrade) {
			hh_go_raw(t);
			return;
		}
		if (t->streaming) {
			if (hh_b64_check(t) < 0)
				return;
			if (t->req_done)
				break;
			continue;
		}
		if (t->too_big) {
			if (t->ops->proto(t->ops->arg, t->key) != H1H2_H2C) {
				hh_go_raw(t);
				return;
			}
			if (hh_stream_start(t) < 0)
				return;
			continue;
		}
		if (t->req_done) {
			t->st = HH_S_SENT;
			hh_send_request(t);
			return;
		}
	}
	if (t->streaming && t->st == HH_S_SENT) {
		hh_stream_kick(t);
		if (t->sid == -1)
			hh_h2_ended(t);
	}
}

static void
hh_side_write(struct bufferevent *bev, void *arg)
{
	struct h1h2 *t = arg;

	(void)bev;
	if (t->st == HH_S_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(t->side)) == 0)
			h1h2_free(t);
		return;
	}
	if (t->up && evbuffer_get_length(bufferevent_get_output(t->side)) <= H1H2_HIGH_WATER)
		bufferevent_enable(t->up, EV_READ);
}

static void
hh_side_event(struct bufferevent *bev, short what, void *arg)
{
	struct h1h2 *t = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		h1h2_free(t);	/* the proxy closed: nothing more is asked */
}

/* --- HTTP/1.1 upstream --- */

static int
hh_on_rs_headers(llhttp_t *p)
{
	struct h1h2 *t = HH_T(p);

	t->status = llhttp_get_status_code(p);
	if (t->status >= 100 && t->status < 200) {
		t->markl = 0;
		return 0;
	}
	t->rs_headed = 1;
	/* the sidecar's mark: the app does not speak HTTP/1.1; held whole */
	t->checking = hh_marked(t) && !(t->tried & (1u << H1H2_H2C));
	return t->is_head ? 1 : 0;
}

static int
hh_on_rs_field(llhttp_t *p, const char *at, size_t n)
{
	static const char mark[] = H1H2_PROTO_HEADER;
	struct h1h2 *t = HH_T(p);
	size_t k = t->mk_n, ml = sizeof(mark) - 1;

	if (k > ml)
		return 0;
	if (n > ml - k || strncasecmp(at, mark + k, n) != 0)
		t->mk_n = (unsigned char)(ml + 1);
	else
		t->mk_n = (unsigned char)(k + n);
	return 0;
}

static int
hh_on_rs_field_done(llhttp_t *p)
{
	struct h1h2 *t = HH_T(p);

	t->marking = t->mk_n == sizeof(H1H2_PROTO_HEADER) - 1;
	if (t->marking)
		t->markl = 0;	/* the last one counts */
	t->mk_n = 0;
	return 0;
}

static int
hh_on_rs_value(llhttp_t *p, const char *at, size_t n)
{
	struct h1h2 *t = HH_T(p);

	if (t->marking)
		hh_mark_add(t, at, n);
	return 0;
}

static int
hh_on_rs_value_done(llhttp_t *p)
{
	HH_T(p)->marking = 0;
	return 0;
}

static int
hh_on_rs_body(llhttp_t *p, const char *at, size_t n)
{
	struct h1h2 *t = HH_T(p);

	if (t->checking) {
		if (t->checklen + n > sizeof(t->check))
			t->checking = 0;
		else {
			memcpy(t->check + t->checklen, at, n);
			t->checklen += n;
		}
	}
	return 0;
}

static int
hh_on_rs_complete(llhttp_t *p)
{
	struct h1h2 *t = HH_T(p);

	if (t->status >= 100 && t->status < 200) {
		if (t->sent100)	/* we said 100 already */
			evbuffer_drain(t->hold, evbuffer_get_length(t->hold));
		return 0;
	}
	t->rs_done = 1;
	return HPE_PAUSED;
}

static const llhttp_settings_t hh_rs_settings = {
	.on_header_field = hh_on_rs_field,
	.on_header_field_complete = hh_on_rs_field_done,
	.on_header_value = hh_on_rs_value,
	.on_header_value_complete = hh_on_rs_value_done,
	.on_headers_complete = hh_on_rs_headers,
	.on_body = hh_on_rs_body,
	.on_message_complete = hh_on_rs_complete,
};

static void
hh_replay(struct h1h2 *t, enum h1h2_proto to)
{
	log_info("preview: the owner's app does not speak %s: the request goes again in %s",
	    t->mode == H1H2_H1 ? "HTTP/1.1" : "h2c", to == H1H2_H1 ? "HTTP/1.1" : "h2c");
	hh_up_close(t);
	evbuffer_drain(t->hold, evbuffer_get_length(t->hold));
	evbuffer_drain(t->trl, evbuffer_get_length(t->trl));
	t->status = 0;
	t->begun = t->final = t->checking = t->chunked = t->nobody = t->has_cl = 0;
	t->markl = t->mk_n = t->marking = 0;
	t->checklen = t->rhbytes = t->ntrl = t->tused = 0;
	t->mode = to;
	hh_send_request(t);
}

/* A kept-alive upstream connection closed before any answer came: it
 * went idle away as the request was sent, which no app has seen. Sent again
 * on a new connection, once. 1 if so. */
static int
hh_retry(struct h1h2 *t)
{
	if (!t->reused || t->retried || t->too_big || t->begun)
		return 0;
	t->retried = 1;
	hh_up_close(t);
	evbuffer_drain(t->hold, evbuffer_get_length(t->hold));
	t->status = 0;
	t->final = t->checking = 0;
	t->markl = t->mk_n = t->marking = 0;
	t->checklen = t->rhbytes = t->ntrl = t->tused = 0;
	hh_send_request(t);
	return 1;
}

static void
hh_h1_input(struct h1h2 *t, struct evbuffer *in)
{
	enum llhttp_errno e;
	const char *p;
	size_t len, n;

	while ((len = evbuffer_get_length(in)) > 0 && !t->rs_done) {
		if (len > HH_READ_MAX)
			len = HH_READ_MAX;
		p = (const char *)evbuffer_pullup(in, (ssize_t)len);
		e = llhttp_execute(&t->rs, p, len);
		n = e == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&t->rs) - p);
		if (e != HPE_OK && e != HPE_PAUSED) {
			if (!t->begun && evbuffer_get_length(t->hold) == 0) {
				hh_fail(t, 502, "kbridge: the upstream sent an invalid HTTP response");
				return;
			}
			/* the proxy sees the same bytes and judges them */
			evbuffer_remove_buffer(in, t->hold, n);
			hh_to_side(t, NULL, 0);
			bufferevent_write_buffer(t->side, t->hold);
			hh_closing(t);
			return;
		}
		evbuffer_remove_buffer(in, t->hold, n);
		if (t->rs_headed && !t->checking && evbuffer_get_length(t->hold)) {
			t->begun = 1;
			bufferevent_write_buffer(t->side, t->hold);
		}
	}
	if (!t->rs_done) {
		hh_up_throttle(t);
		return;
	}
	if (t->checking && !t->too_big) {
		t->tried |= 1u << H1H2_H1;
		hh_replay(t, H1H2_H2C);
		return;
	}
	if (evbuffer_get_length(t->hold)) {
		t->begun = 1;
		bufferevent_write_buffer(t->side, t->hold);
	}
	hh_request_done(t);
}

/* --- h2c upstream --- */

static void
hh_h2_pump(struct h1h2 *t)
{
	const uint8_t *d;
	ssize_t n;

	while (t->h2 && t->up && (n = nghttp2_session_mem_send(t->h2, &d)) > 0)
		bufferevent_write(t->up, d, (size_t)n);
}

static ssize_t
hh_body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
    nghttp2_data_source *src, void *arg)
{
	struct h1h2 *t = arg;
	int n;

	(void)s;
	(void)sid;
	(void)src;
	/* a streamed body waits while up has enough to send (hh_up_write) */
	if (t->streaming && t->up &&
	    evbuffer_get_length(bufferevent_get_output(t->up)) > H1H2_HIGH_WATER)
		return NGHTTP2_ERR_DEFERRED;
	n = evbuffer_remove(t->tmp, buf, len);
	if (n < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (evbuffer_get_length(t->tmp) == 0) {
		if (!t->streaming || t->req_done)
			*flags |= NGHTTP2_DATA_FLAG_EOF;
		else if (n == 0)
			return NGHTTP2_ERR_DEFERRED;	/* hh_stream_kick */
	}
	return n;
}

static void
hh_head_out(struct h1h2 *t)
{
	struct evbuffer *o = bufferevent_get_output(t->side);

	t->nobody = t->is_head || t->status == 204 || t->status == 304;
	t->chunked = !t->nobody && (t->grpcweb || !t->has_cl);
	evbuffer_add_printf(o, "HTTP/1.1 %d %s\r\n", t->status, hh_reason(t->status));
	evbuffer_add_buffer(o, t->hold);
	if (t->chunked)
		evbuffer_add_printf(o, "Transfer-Encoding: chunked\r\n");
	evbuffer_add(o, "\r\n", 2);
	t->begun = 1;
}

/* gRPC-web text: the n bytes in base64, padded (a chunk of its own). */
static void
hh_b64_out(struct h1h2 *t, const uint8_t *d, size_t n)
{
	struct evbuffer *o = bufferevent_get_output(t->side);
	unsigned char e[4096 + 1];
	size_t i, k;

	if (t->chunked)
		evbuffer_add_printf(o, "%zx\r\n", (n + 2) / 3 * 4);
	for (i = 0; i < n; i += k) {
		k = n - i > 3072 ? 3072 : n - i;	/* padded at the end only */
		EVP_EncodeBlock(e, d + i, (int)k);
		evbuffer_add(o, e, (k + 2) / 3 * 4);
	}
	if (t->chunked)
		evbuffer_add(o, "\r\n", 2);
}

static void
hh_data_out(struct h1h2 *t, const uint8_t *d, size_t n)
{
	struct evbuffer *o = bufferevent_get_output(t->side);

	if (n == 0 || t->nobody)
		return;
	if (t->gtext) {
		hh_b64_out(t, d, n);
		return;
	}
	if (t->chunked)
		evbuffer_add_printf(o, "%zx\r\n", n);
	evbuffer_add(o, d, n);
	if (t->chunked)
		evbuffer_add(o, "\r\n", 2);
}

/* The answer ended well: its last chunk, with the trailers. */
static void
hh_end_out(struct h1h2 *t)
{
	struct evbuffer *o = bufferevent_get_output(t->side);
	unsigned char fr[sizeof(t->tbuf) + 5 + 32 * 4];
	size_t n;

	if (!t->chunked)
		return;
	if (t->grpcweb && t->ntrl > 0) {
		n = h1h2_grpc_trailer(t->tnames, t->tvalues, t->ntrl, fr, sizeof(fr));
		hh_data_out(t, fr, n);
		evbuffer_add(o, "0\r\n\r\n", 5);
		return;
	}
	evbuffer_add(o, "0\r\n", 3);
	evbuffer_add_buffer(o, t->trl);
	evbuffer_add(o, "\r\n", 2);
}

static int
hh_h2_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
    const uint8_t *value, size_t vl, uint8_t flags, void *arg)
{
	struct h1h2 *t = arg;
	static const char gp[] = "application/grpc";

	(void)s;
	(void)flags;
	if (f->hd.stream_id != t->sid)
		return 0;
	t->rhbytes += nl + vl + 32;
	if (t->rhbytes > HH_RESP_HEAD_MAX)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (t->final) {	/* trailers */
		evbuffer_add_printf(t->trl, "%.*s: %.*s\r\n", (int)nl, name, (int)vl, value);
		if (t->ntrl < 32 && t->tused + nl + vl + 2 <= sizeof(t->tbuf)) {
			t->tnames[t->ntrl] = t->tbuf + t->tused;
			memcpy(t->tbuf + t->tused, name, nl);
			t->tbuf[t->tused + nl] = '\0';
			t->tused += nl + 1;
			t->tvalues[t->ntrl] = t->tbuf + t->tused;
			memcpy(t->tbuf + t->tused, value, vl);
			t->tbuf[t->tused + vl] = '\0';
			t->tused += vl + 1;
			t->ntrl++;
		}
		return 0;
	}
	if (nl == 7 && memcmp(name, ":status", 7) == 0) {
		t->status = (vl == 3 && isdigit(value[0]) && isdigit(value[1]) && isdigit(value[2])) ?
		    (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0') : 502;
		return 0;
	}
	if (nl > 0 && name[0] == ':')
		return 0;
	/* the sidecar's mark (for a gRPC call in a trailers-only answer),
	 * for us alone */
	if (nl == sizeof(H1H2_PROTO_HEADER) - 1 && memcmp(name, H1H2_PROTO_HEADER, nl) == 0) {
		t->markl = 0;
		hh_mark_add(t, (const char *)value, vl);
		return 0;
	}
	if (nl == 14 && memcmp(name, "content-length", 14) == 0) {
		if (t->grpcweb)
			return 0;
		t->has_cl = 1;
	}
	if (t->grpcweb && nl == 12 && memcmp(name, "content-type", 12) == 0 &&
	    vl >= sizeof(gp) - 1 && strncasecmp((const char *)value, gp, sizeof(gp) - 1) == 0) {
		/* gRPC-web in the request's own form (+proto or not), as asked */
		evbuffer_add_printf(t->hold, "content-type: %s\r\n", hh_field(t, "content-type"));
		return 0;
	}
	evbuffer_add_printf(t->hold, "%.*s: %.*s\r\n", (int)nl, name, (int)vl, value);
	return 0;
}

static int
hh_h2_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
	struct h1h2 *t = arg;

	(void)s;
	if (f->hd.stream_id != t->sid || t->sid == 0)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && !t->final) {
		if (t->status >= 100 && t->status < 200) {
			evbuffer_drain(t->hold, evbuffer_get_length(t->hold));
			t->rhbytes = t->markl = 0;
			return 0;
		}
		t->final = 1;
		t->checking = hh_marked(t) && !(t->tried & (1u << H1H2_H1)) && !t->too_big;
		if (!t->checking)
			hh_head_out(t);
	}
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && t->final && !t->checking)
		hh_end_out(t);
	return 0;
}

static int
hh_h2_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t n, void *arg)
{
	struct h1h2 *t = arg;

	(void)s;
	(void)flags;
	if (sid != t->sid)
		return 0;
	if (t->checking) {
		if (t->checklen + n <= sizeof(t->check)) {
			memcpy(t->check + t->checklen, d, n);
			t->checklen += n;
		} else {
			/* not the sidecar's page: out with it */
			t->checking = 0;
			hh_head_out(t);
			hh_data_out(t, (const uint8_t *)t->check, t->checklen);
			hh_data_out(t, d, n);
		}
		return 0;
	}
	hh_data_out(t, d, n);
	return 0;
}

static int
hh_h2_close(nghttp2_session *s, int32_t sid, uint32_t err, void *arg)
{
	struct h1h2 *t = arg;

	(void)s;
	if (sid != t->sid)
		return 0;
	t->sid = -1;	/* closed: hh_request_done() runs after the input is taken */
	if (err != 0 || !t->final) {
		t->status = -1;
		return 0;
	}
	return 0;
}

static int
hh_h2_session(struct h1h2 *t)
{
	nghttp2_session_callbacks *cb;
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1 },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HH_RESP_HEAD_MAX },
	};
	int r;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return -1;
	nghttp2_session_callbacks_set_on_header_callback(cb, hh_h2_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, hh_h2_frame);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, hh_h2_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, hh_h2_close);
	r = nghttp2_session_client_new(&t->h2, cb, t);
	nghttp2_session_callbacks_del(cb);
	if (r != 0)
		return -1;
	if (nghttp2_submit_settings(t->h2, NGHTTP2_FLAG_NONE, set, 3) != 0)
		return -1;
	return 0;
}

static int
hh_nv_add(nghttp2_nv *nv, size_t *n, const char *name, const char *value)
{
	nv[*n].name = (uint8_t *)(uintptr_t)name;
	nv[*n].namelen = strlen(name);
	nv[*n].value = (uint8_t *)(uintptr_t)value;
	nv[*n].valuelen = strlen(value);
	nv[*n].flags = NGHTTP2_NV_FLAG_NONE;
	(*n)++;
	return 0;
}

static int
hh_send_h2(struct h1h2 *t)
{
	nghttp2_nv nv[HH_MAX_FIELDS + 8];
	nghttp2_data_provider dp = { .read_callback = hh_body_read };
	char ct[300];
	const char *host = hh_field(t, "host"), *te = hh_field(t, "te"), *v;
	size_t i, n = 0;
	char *c;

	if (t->head[t->url] != '/') {
		hh_fail(t, 400, "kbridge: a preview forwards origin-form request targets only");
		return -1;
	}
	if (hh_b64_check(t) < 0)
		return -1;
	if (t->h2 && (!nghttp2_session_want_read(t->h2) ||
	    !nghttp2_session_check_request_allowed(t->h2)))
		hh_up_close(t);	/* it said GOAWAY: a new connection */
	if (hh_up_open(t, H1H2_H2C) < 0)
		return -1;
	if (t->h2 == NULL && hh_h2_session(t) < 0) {
		hh_fail(t, 500, "kbridge: out of memory");
		return -1;
	}
	hh_nv_add(nv, &n, ":method", llhttp_method_name(llhttp_get_method(&t->rq)));
	hh_nv_add(nv, &n, ":scheme", "http");
	hh_nv_add(nv, &n, ":authority", host ? host : "localhost");
	hh_nv_add(nv, &n, ":path", t->head + t->url);
	if (t->grpcweb || (te && strcasestr(te, "trailers")))
		hh_nv_add(nv, &n, "te", "trailers");
	for (i = 0; i < t->nf; i++) {
		for (c = t->head + t->name[i]; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		if (h1h2_hop(t->head + t->name[i]))
			continue;
		v = t->head + t->value[i];
		if (t->grpcweb && strcmp(t->head + t->name[i], "content-type") == 0) {
			/* application/grpc-web[-text][+fmt] -> application/grpc[+fmt] */
			snprintf(ct, sizeof(ct), "application/grpc%s",
			    v + strlen("application/grpc-web") + (t->gtext ? 5 : 0));
			v = ct;
		}
		hh_nv_add(nv, &n, t->head + t->name[i], v);
	}
	evbuffer_drain(t->tmp, evbuffer_get_length(t->tmp));
	if (t->streaming) {	/* never replayed: the body kept so far goes */
		evbuffer_add_buffer(t->tmp, t->body);
		hh_body_release(t);
	} else
		evbuffer_add(t->tmp, evbuffer_pullup(t->body, -1), evbuffer_get_length(t->body));
	t->sid = nghttp2_submit_request(t->h2, NULL, nv, n,
	    evbuffer_get_length(t->tmp) || t->streaming ? &dp : NULL, t);
	if (t->sid < 0) {
		hh_fail(t, 502, "kbridge: cannot send the request over HTTP/2");
		return -1;
	}
	hh_h2_pump(t);
	return 0;
}

/* A streamed body: more of it to the stream, and side read again once
 * the stream took what waited. */
static void
hh_stream_more(struct h1h2 *t)
{
	if (!t->streaming || t->st != HH_S_SENT)
		return;
	/* (once the body is whole, what waits still goes as up drains) */
	if (!t->req_done && t->stalled && evbuffer_get_length(t->tmp) < H1H2_HIGH_WATER / 2) {
		t->stalled = 0;
		hh_side_read(t->side, t);	/* kicks the stream */
		return;
	}
	hh_stream_kick(t);
	if (t->sid == -1)
		hh_h2_ended(t);
}

static void
hh_h2_input(struct h1h2 *t, struct evbuffer *in)
{
	unsigned char *p;
	ssize_t r;
	size_t len;

	while (t->h2 && (len = evbuffer_get_length(in)) > 0) {
		if (len > HH_READ_MAX)
			len = HH_READ_MAX;
		p = evbuffer_pullup(in, (ssize_t)len);
		r = nghttp2_session_mem_recv(t->h2, p, len);
		if (r < 0) {
			evbuffer_drain(in, evbuffer_get_length(in));
			if (t->st == HH_S_SENT)
				t->sid = -1, t->status = -1;
			else
				hh_up_close(t);
			break;
		}
		evbuffer_drain(in, (size_t)r);
		if (t->sid == -1)
			break;
	}
	hh_h2_pump(t);
	if (t->st != HH_S_SENT || t->sid != -1) {
		hh_up_throttle(t);
		hh_stream_more(t);	/* a WINDOW_UPDATE, say */
		return;
	}
	hh_h2_ended(t);
}

/* The stream of the request in flight closed. */
static void
hh_h2_ended(struct h1h2 *t)
{
	if (t->status < 0) {
		if (!t->final && hh_retry(t))
			return;
		if (t->begun) {
			hh_closing(t);
			return;
		}
		hh_fail(t, 502, "kbridge: the owner's HTTP/2 app reset the request or closed "
		    "the connection");
		return;
	}
	if (t->checking) {
		if (hh_marked(t)) {
			t->tried |= 1u << H1H2_H2C;
			hh_replay(t, H1H2_H1);
			return;
		}
		t->checking = 0;
		hh_head_out(t);
		hh_data_out(t, (const uint8_t *)t->check, t->checklen);
		hh_end_out(t);
	}
	hh_request_done(t);
}

/* --- both --- */

static void
hh_send_request(struct h1h2 *t)
{
	if (t->mode == H1H2_UNKNOWN)
		t->mode = t->ops->proto(t->ops->arg, t->key) == H1H2_H2C ? H1H2_H2C : H1H2_H1;
	t->tried |= 1u << t->mode;
	if (t->mode == H1H2_H2C) {
		hh_send_h2(t);
		return;
	}
	if (hh_up_open(t, H1H2_H1) < 0)
		return;
	llhttp_init(&t->rs, HTTP_RESPONSE, &hh_rs_settings);
	t->rs.data = t;
	t->rs_headed = t->rs_done = 0;
	/* the bytes as they came, kept for a replay */
	bufferevent_write(t->up, evbuffer_pullup(t->raw, -1), evbuffer_get_length(t->raw));
}

static void
hh_request_done(struct h1h2 *t)
{
	if (t->status >= 200 && t->status != 502)
		t->ops->learnt(t->ops->arg, t->key, t->mode);
	if (!t->req_done) {	/* answered before its body ended: the rest is not a request */
		hh_closing(t);
		return;
	}
	hh_request_reset(t);
	t->mode = H1H2_UNKNOWN;
	t->st = HH_S_REQ;
	bufferevent_enable(t->side, EV_READ);
	if (t->up)
		bufferevent_enable(t->up, EV_READ);
	hh_side_read(t->side, t);
}

static void
hh_up_read(struct bufferevent *bev, void *arg)
{
	struct h1h2 *t = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (t->st == HH_S_RAW) {
		bufferevent_write_buffer(t->side, in);
		hh_up_throttle(t);
		return;
	}
	if (t->upmode == H1H2_H2C) {
		hh_h2_input(t, in);
		return;
	}
	if (t->st != HH_S_SENT) {	/* an answer to nothing */
		hh_up_close(t);
		return;
	}
	hh_h1_input(t, in);
}

static void
hh_up_write(struct bufferevent *bev, void *arg)
{
	struct h1h2 *t = arg;

	(void)bev;
	if (t->st == HH_S_RAW)
		bufferevent_enable(t->side, EV_READ);
	else if (t->upmode == H1H2_H2C)
		hh_stream_more(t);
}

static void
hh_up_event(struct bufferevent *bev, short what, void *arg)
{
	struct h1h2 *t = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (t->upmode == H1H2_H2C)
			hh_h2_pump(t);
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (t->st == HH_S_RAW) {
		hh_closing(t);
		return;
	}
	if (t->st != HH_S_SENT) {
		hh_up_close(t);
		return;
	}
	if (!t->final && !t->rs_headed && evbuffer_get_length(t->hold) == 0 && hh_retry(t))
		return;
	if (t->upmode == H1H2_H2C) {
		if (t->begun)
			hh_closing(t);
		else
			hh_fail(t, 502, "kbridge: the workload's service closed the HTTP/2 "
			    "connection without an answer");
		return;
	}
	if (t->upmode == H1H2_H1 && (what & BEV_EVENT_EOF) && t->rs_headed &&
	    llhttp_finish(&t->rs) == HPE_OK && t->rs_done) {
		/* an answer that ends with the connection */
		if (evbuffer_get_length(t->hold))
			hh_to_side(t, NULL, 0), bufferevent_write_buffer(t->side, t->hold);
		hh_closing(t);
		return;
	}
	if (t->begun || (t->rs_headed && !t->checking)) {
		if (evbuffer_get_length(t->hold))
			bufferevent_write_buffer(t->side, t->hold);
		hh_closing(t);
		return;
	}
	if (t->checking && evbuffer_get_length(t->hold)) {
		bufferevent_write_buffer(t->side, t->hold);
		t->begun = 1;
		hh_closing(t);
		return;
	}
	hh_fail(t, 502, (what & BEV_EVENT_ERROR) ? "kbridge: cannot reach the workload's service" :
	    "kbridge: the workload's service closed the connection without an answer");
}

int
h1h2_new(struct event_base *base, int fd, uint64_t key, const uint8_t src[16],
    const struct h1h2_ops *ops)
{
	uint8_t id[17];
	struct h1h2 *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return -1;
	id[0] = 'p';
	memcpy(id + 1, &key, sizeof(key));
	memset(id + 1 + sizeof(key), 0, sizeof(id) - 1 - sizeof(key));
	t->pvshare = hh_share_get(id);
	id[0] = 'a';
	memcpy(id + 1, src, 16);
	t->srcshare = hh_share_get(id);
	t->raw = evbuffer_new();
	t->body = evbuffer_new();
	t->hold = evbuffer_new();
	t->trl = evbuffer_new();
	t->tmp = evbuffer_new();
	if (!t->pvshare || !t->srcshare || !t->raw || !t->body || !t->hold || !t->trl ||
	    !t->tmp ||
	    (t->side = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		hh_share_put(t->pvshare);
		hh_share_put(t->srcshare);
		hh_bufs_free(t);
		free(t);
		return -1;
	}
	t->base = base;
	t->key = key;
	t->ops = ops;
	llhttp_init(&t->rq, HTTP_REQUEST, &hh_req_settings);
	t->rq.data = t;
	bufferevent_setcb(t->side, hh_side_read, hh_side_write, hh_side_event, t);
	bufferevent_setwatermark(t->side, EV_WRITE, H1H2_HIGH_WATER / 2, 0);
	/* what the proxy sends while a request is in flight waits, bounded */
	bufferevent_setwatermark(t->side, EV_READ, 0, H1H2_HIGH_WATER);
	bufferevent_enable(t->side, EV_READ | EV_WRITE);
	LIST_INSERT_HEAD(&hh_all, t, entry);
	return 0;
}
