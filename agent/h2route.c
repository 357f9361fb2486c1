/* HTTP/2 prior knowledge in the sidecar, routed per stream (h2route.h).
 * An HTTP/1.1 Upgrade: h2c comes in by h2r_upgrade(): it answers 101 and
 * opens stream 1 with the request (nghttp2_session_upgrade2); a body of
 * that request arrives as HTTP/1 bytes before the client's preface and goes
 * to stream 1 as it comes (cl_raw()), held at one window like DATA.
 *
 * One struct h2r_conn per client connection: an nghttp2 server session
 * toward the client, and a list of upstreams (struct h2r_up), each an
 * nghttp2 client session over one socket from the proxy's open() (key 0:
 * the app) or one session stream from up.streams->open() (an intercept:
 * to its owner's workstation, whose refusal reason goes into the 502 page
 * or grpc-message). The upstreams belong to this client connection alone:
 * one client cannot take or see the streams of another. A client stream
 * (struct h2r_stream) is routed when its request head is whole, then
 * relayed to one upstream stream. nghttp2 parses and frames everything;
 * nothing here reads a frame by hand.
 *
 * An intercept's local app may speak HTTP/1 only: a new stream upstream
 * holds its streams (head and body, at most one window each, as always)
 * until the first bytes of its answer to our preface: SETTINGS, and they
 * go; anything else, and each goes as one HTTP/1.1 request on a session
 * stream of its own (struct h2r_h1), as do the intercept's later streams
 * (up.h1 keeps it in the sidecar).
 *
 * Flow control: the sessions run without automatic WINDOW_UPDATEs; bytes
 * received on one side wait in the stream's buffer and are acknowledged
 * (nghttp2_session_consume) only when the other side's data provider took
 * them. A stream thus holds at most one window each way (H2R_WINDOW), a
 * connection at most H2R_CONN_WINDOW per session; a socket or session
 * stream whose peer does not read stops its session from producing at
 * H2R_HIGH_WATER, and is not read meanwhile (what a session stream brought
 * stays in it and holds its sender back by the stream's credit).
 *
 * Everything runs from the socket and session stream events: they feed
 * and pump the sessions, then h2r_settle() sends, fails dead upstreams,
 * frees what is finished, sets the idle timer (no stream: h2r_idle_ms,
 * then GOAWAY) and re-arms. Nothing is freed from inside an nghttp2
 * callback except a stream that both sessions have closed. */
#include "h2route.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include <nghttp2/nghttp2.h>

#include <llhttp.h>

#include "h1h2.h"
#include "log.h"
#include "session.h"
#include "util.h"

#define H2R_READ_SIZE	(32 * 1024)
#define H2R_CONNECT_MS	10000
#define H2R_MAX_LIVE	(2 * H2R_MAX_STREAMS)	/* streams incl. those closing upstream */
#define H2R_MAX_PASSES	16	/* sending rounds per event (h2r_settle()) */
#define H2R_IDLE_MS	(60 * 1000)	/* no stream: as the HTTP/1 proxy's kept-alive idle */
#define H2R_LINGER_MS	(10 * 1000)	/* GOAWAY sent after idling, not taken by the client */
#define H2R_SETTINGS_B64 1024	/* longest HTTP2-Settings taken (170 settings) */

/* Fields, so that tests can shorten them. */
static int h2r_idle_ms = H2R_IDLE_MS;
static int h2r_linger_ms = H2R_LINGER_MS;

/* A header block being received: NUL-terminated copies, name then value,
 * in one growing buffer (one allocation per block, not per field). */
struct h2r_hdrs {
	nghttp2_nv *nv;
	size_t n, cap, bytes;
	uint8_t *buf;
	size_t used, size;
};

/* Bytes for a socket: one flat buffer, kept between writes (frames are
 * small and many: no allocation per frame or per write). */
struct h2r_buf {
	uint8_t *p;
	size_t off, len, cap;
};

#define H2R_BUF_KEEP	(4 * 1024)	/* larger buffers are freed once empty */

/* One socket, or session stream (an intercept's: up.streams), with its
 * session. */
struct h2r_io {
	int fd;
	struct kb_stream *st;		/* instead of fd */
	const struct hp_stream_ops *ops;	/* st's */
	struct evbuffer *sout;		/* st's bytes it did not take yet */
	nghttp2_session *sess;
	struct event *rev, *wev;
	struct h2r_buf out;
	unsigned rarmed:1, warmed:1, connecting:1, eof:1, err:1;
	unsigned hold:1;	/* not read for now (h2r_settle()) */
	unsigned wrote:1;	/* the peer took bytes since the idle timer was set */
};

struct h2r_conn;

struct h2r_up {
	struct h2r_conn *c;
	LIST_ENTRY(h2r_up) entry;
	uint64_t key;
	struct h2r_io io;
	struct event *timer;	/* connect timeout */
	size_t nstreams;
	unsigned goaway:1;	/* takes no new streams */
	unsigned heard:1;	/* its first bytes were looked at (up_http1()) */
	unsigned not_h2:1;	/* it did not answer the preface in HTTP/2 (why says so) */
	size_t nheld;		/* streams held until its SETTINGS came (up_recv_st()) */
	char why[200];		/* set: failed */
};

struct h2r_h1;

struct h2r_stream {
	struct h2r_conn *c;
	TAILQ_ENTRY(h2r_stream) entry;
	int32_t sid, usid;
	uint64_t key;		/* its upstream's */
	struct h2r_up *up;	/* NULL: not routed, or its upstream is gone */
	struct h2r_h1 *h1;	/* instead of up: relayed as an HTTP/1.1 request */
	struct h2r_hdrs in;	/* from the client: request head, then trailers */
	struct h2r_hdrs head;	/* the request head while held (up->nheld) */
	struct h2r_hdrs uin;	/* from upstream: response head, then trailers */
	struct evbuffer *req, *resp;	/* bodies waiting for the other side */
	unsigned req_eof:1, req_trl:1, resp_eof:1, resp_trl:1, resp_started:1;
	unsigned resp_out:1;	/* the client's response ended (END_STREAM queued) */
	unsigned rst_after:1;	/* upstream reset it (NO_ERROR): so do we after the response */
	unsigned grpc:1;	/* a gRPC call: errors as grpc-status */
	unsigned cl_closed:1, up_closed:1;
	unsigned raw:1;		/* stream 1 of an Upgrade: its body came as HTTP/1 bytes */
	unsigned held:1;	/* routed to up, not sent yet: up's SETTINGS did not come */
};

struct h2r_conn {
	struct event_base *base;
	struct hp_upstreams up;
	struct h2r_io io;
	struct event *kick;	/* more sending, next loop iteration */
	struct event *idle;	/* no stream for h2r_idle_ms: GOAWAY; then linger */
	unsigned closing:1;	/* GOAWAY sent for idling: h2r_linger_ms to leave */
	struct h2r_stream *raw;	/* the Upgrade request whose body is still coming */
	uint64_t raw_left;	/* bytes of that body still to read (HTTP/1, not frames) */
	TAILQ_HEAD(, h2r_stream) streams;
	LIST_HEAD(, h2r_up) ups;
	size_t nstreams;
	size_t nh1;		/* streams relayed as HTTP/1.1 */
};

static void h2r_settle(struct h2r_conn *);
static void conn_timer(struct h2r_conn *, int);
static void conn_abandon(struct h2r_conn *);
static void h1_free(struct h2r_stream *);
static void h1_start(struct h2r_stream *, struct h2r_hdrs *);
static void h1_pump(struct h2r_stream *);

/* --- header blocks --- */

static int
hdrs_add(struct h2r_hdrs *h, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
	nghttp2_nv *nv;
	uint8_t *b, *m;
	size_t cap, i, need = nlen + vlen + 2;

	if (h->n == HP_MAX_HEADERS || h->bytes + nlen + vlen + 32 > HP_MAX_HEADER_BYTES)
		return -1;
	if (h->n == h->cap) {
		cap = h->cap ? 2 * h->cap : 16;
		if ((nv = reallocarray(h->nv, cap, sizeof(*nv))) == NULL)
			return -1;
		h->nv = nv;
		h->cap = cap;
	}
	if (h->size - h->used < need) {
		for (cap = h->size ? 2 * h->size : 512; cap - h->used < need; cap *= 2)
			;
		if ((b = realloc(h->buf, cap)) == NULL)
			return -1;
		for (i = 0; i < h->n; i++) {	/* the fields move with the buffer */
			h->nv[i].name = b + (h->nv[i].name - h->buf);
			h->nv[i].value = b + (h->nv[i].value - h->buf);
		}
		h->buf = b;
		h->size = cap;
	}
	m = h->buf + h->used;
	memcpy(m, name, nlen);
	m[nlen] = '\0';
	memcpy(m + nlen + 1, value, vlen);
	m[nlen + 1 + vlen] = '\0';
	h->used += need;
	h->nv[h->n++] = (nghttp2_nv){ m, m + nlen + 1, nlen, vlen, NGHTTP2_NV_FLAG_NONE };
	h->bytes += nlen + vlen + 32;
	return 0;
}

static void
hdrs_clear(struct h2r_hdrs *h)
{
	h->n = h->bytes = h->used = 0;
}

static void
hdrs_free(struct h2r_hdrs *h)
{
	hdrs_clear(h);
	free(h->nv);
	free(h->buf);
	h->nv = NULL;
	h->buf = NULL;
	h->cap = h->size = 0;
}

static const nghttp2_nv *
hdrs_get(const struct h2r_hdrs *h, const char *name)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		if (!strcmp((const char *)h->nv[i].name, name))
			return &h->nv[i];
	return NULL;
}

/* --- the request as route() sees it --- */

static char *
h2r_copy(char **o, char *end, const char *s, size_t n)
{
	char *r = *o;

	if ((size_t)(end - *o) < n + 1)
		return NULL;
	memcpy(r, s, n);
	r[n] = '\0';
	*o += n + 1;
	return r;
}

int
h2r_request(const struct h2r_field *f, size_t nf, struct hp_request *req,
    struct hp_header *h, size_t nh, char *buf, size_t bufsz)
{
	const struct h2r_field *authority = NULL;
	char *o = buf, *end = buf + bufsz;
	size_t i, n = 0, hosts = 0;
	const char **slot;

	memset(req, 0, sizeof(*req));
	for (i = 0; i < nf; i++) {
		if (f[i].namelen == 0)
			return -1;
		if (f[i].name[0] != ':') {
			if (n == nh || (h[n].name = h2r_copy(&o, end, f[i].name, f[i].namelen)) == NULL ||
			    (h[n].value = h2r_copy(&o, end, f[i].value, f[i].valuelen)) == NULL)
				return -1;
			if (!strcasecmp(h[n].name, "host"))
				hosts++;
			n++;
			continue;
		}
#define H2R_IS(s) (f[i].namelen == sizeof(s) - 1 && !memcmp(f[i].name, s, sizeof(s) - 1))
		if (H2R_IS(":method"))
			slot = &req->method;
		else if (H2R_IS(":path"))
			slot = &req->target;
		else if (H2R_IS(":authority")) {
			if (authority != NULL)
				return -1;
			authority = &f[i];
			continue;
		} else if (H2R_IS(":scheme"))
			continue;
		else
			return -1;
#undef H2R_IS
		if (*slot != NULL || (*slot = h2r_copy(&o, end, f[i].value, f[i].valuelen)) == NULL)
			return -1;
	}
	if (req->method == NULL || req->target == NULL)
		return -1;
	if (authority != NULL && hosts == 0) {
		if (n == nh || (h[n].value = h2r_copy(&o, end, authority->value,
		    authority->valuelen)) == NULL)
			return -1;
		h[n++].name = "host";
	}
	req->headers = h;
	req->nheaders = n;
	return 0;
}

/* --- sockets --- */

static int
io_init(struct h2r_conn *c, struct h2r_io *io, int fd, event_callback_fn rcb,
    event_callback_fn wcb, void *arg)
{
	int one = 1;

	io->fd = fd;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((io->rev = event_new(c->base, fd, EV_READ | EV_PERSIST, rcb, arg)) == NULL ||
	    (io->wev = event_new(c->base, fd, EV_WRITE | EV_PERSIST, wcb, arg)) == NULL)
		return -1;
	return 0;
}

static void
io_fini(struct h2r_io *io)
{
	if (io->rev != NULL)
		event_free(io->rev);
	if (io->wev != NULL)
		event_free(io->wev);
	free(io->out.p);
	io->out.p = NULL;
	if (io->sout != NULL)
		evbuffer_free(io->sout);
	io->sout = NULL;
	if (io->sess != NULL)
		nghttp2_session_del(io->sess);
	if (io->fd != -1)
		close(io->fd);
}

static int
buf_add(struct h2r_buf *b, const void *p, size_t n)
{
	size_t cap;
	uint8_t *q;

	if (b->cap - b->off - b->len < n && b->off > 0) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
	}
	if (b->cap - b->len < n) {
		for (cap = b->cap ? 2 * b->cap : H2R_BUF_KEEP; cap - b->len < n; cap *= 2)
			;
		if ((q = realloc(b->p, cap)) == NULL)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->off + b->len, p, n);
	b->len += n;
	return 0;
}

/* Write what b holds to fd: bytes written, or -1 (errno). */
static ssize_t
buf_write(struct h2r_buf *b, int fd)
{
	ssize_t w;

	while ((w = send(fd, b->p + b->off, b->len, MSG_NOSIGNAL)) == -1 && errno == EINTR)
		;
	if (w <= 0)
		return w;
	b->off += w;
	b->len -= w;
	if (b->len == 0) {
		b->off = 0;
		if (b->cap > H2R_BUF_KEEP) {
			free(b->p);
			b->p = NULL;
			b->cap = 0;
		}
	}
	return w;
}

/* Bytes made and not taken by the socket or stream yet. */
static size_t
io_pending(const struct h2r_io *io)
{
	return io->sout != NULL ? evbuffer_get_length(io->sout) : io->out.len;
}

/* io_send() for a session stream: it takes what its credit allows, and
 * says when it can take more (on_writable). */
static size_t
io_send_st(struct h2r_io *io)
{
	const uint8_t *p;
	size_t made = 0;
	ssize_t n;

	for (;;) {
		while (evbuffer_get_length(io->sout) < H2R_HIGH_WATER) {
			if ((n = nghttp2_session_mem_send(io->sess, &p)) < 0) {
				log_debug("%s: %s", __func__, nghttp2_strerror((int)n));
				io->err = 1;
				return made;
			}
			if (n == 0)
				break;
			if (evbuffer_add(io->sout, p, n) == -1) {
				io->err = 1;
				return made;
			}
			made += n;
		}
		if (io->st == NULL || evbuffer_get_length(io->sout) == 0)
			return made;
		if (io->ops->write(io->st, io->sout) > 0)
			io->wrote = 1;
		if (evbuffer_get_length(io->sout) > 0)
			return made;	/* on_writable comes */
	}
}

/* Let the session produce up to the high-water mark, write, and again
 * while the socket takes it all (a queue the socket just emptied must not
 * leave the session's frames unmade). Returns how many bytes were made. */
static size_t
io_send(struct h2r_io *io)
{
	const uint8_t *p;
	size_t made = 0;
	ssize_t n, w;

	if (io->err || io->sess == NULL)
		return 0;
	if (io->sout != NULL)
		return io_send_st(io);
	for (;;) {
		while (io->out.len < H2R_HIGH_WATER) {
			if ((n = nghttp2_session_mem_send(io->sess, &p)) < 0) {
				log_debug("%s: %s", __func__, nghttp2_strerror((int)n));
				io->err = 1;
				return made;
			}
			if (n == 0)
				break;
			if (buf_add(&io->out, p, n) == -1) {
				io->err = 1;
				return made;
			}
			made += n;
		}
		if (io->connecting || io->out.len == 0)
			return made;
		if ((w = buf_write(&io->out, io->fd)) == -1 && errno != EAGAIN &&
		    errno != EWOULDBLOCK) {
			log_debug("%s: fd %d: %s", __func__, io->fd, strerror(errno));
			io->err = 1;
			return made;
		}
		if (w > 0)
			io->wrote = 1;
		if (io->out.len > 0)
			return made;	/* the write event goes on */
	}
}

static void
io_recv(struct h2r_io *io)
{
	uint8_t buf[H2R_READ_SIZE];
	ssize_t n, rv;

	n = recv(io->fd, buf, sizeof(buf), 0);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		if (n == 0)
			io->eof = 1;
		else
			io->err = 1;
		return;
	}
	if ((rv = nghttp2_session_mem_recv(io->sess, buf, n)) < 0) {
		log_debug("%s: %s", __func__, nghttp2_strerror((int)rv));
		io->err = 1;
	}
}

/* io_recv() for a session stream: what came, unless the session's
 * output is at the high-water mark (what is left holds the peer back). */
static void
io_recv_st(struct h2r_io *io)
{
	struct evbuffer *in;
	struct evbuffer_iovec v;
	ssize_t rv;

	if (io->st == NULL || io->eof || io->err)
		return;
	in = io->ops->input(io->st);
	while (io_pending(io) < H2R_HIGH_WATER && evbuffer_peek(in, -1, NULL, &v, 1) == 1) {
		if ((rv = nghttp2_session_mem_recv(io->sess, v.iov_base, v.iov_len)) < 0) {
			log_debug("%s: %s", __func__, nghttp2_strerror((int)rv));
			io->err = 1;
			return;
		}
		evbuffer_drain(in, v.iov_len);
	}
	if (evbuffer_get_length(in) == 0 && io->ops->eof(io->st))
		io->eof = 1;
}

static void
io_arm(struct h2r_io *io)
{
	int r, w;

	if (io->rev == NULL)
		return;	/* a stream's events are the session's */
	r = !io->eof && !io->err && !io->connecting && !io->hold &&
	    io_pending(io) < H2R_HIGH_WATER;
	w = !io->err && (io->connecting || io->out.len > 0);
	if (r != io->rarmed) {
		if (r)
			event_add(io->rev, NULL);
		else
			event_del(io->rev);
		io->rarmed = r;
	}
	if (w != io->warmed) {
		if (w)
			event_add(io->wev, NULL);
		else
			event_del(io->wev);
		io->warmed = w;
	}
}

/* The session has nothing more to do and nothing waits to be written. */
static int
io_finished(const struct h2r_io *io)
{
	return !nghttp2_session_want_read(io->sess) && !nghttp2_session_want_write(io->sess) &&
	    io_pending(io) == 0;
}

/* --- streams --- */

static void
stream_free(struct h2r_stream *s)
{
	TAILQ_REMOVE(&s->c->streams, s, entry);
	s->c->nstreams--;
	if (s->c->raw == s)
		s->c->raw = NULL;	/* the rest of its body is read and dropped */
	h1_free(s);
	hdrs_free(&s->head);
	hdrs_free(&s->in);
	hdrs_free(&s->uin);
	if (s->req != NULL)
		evbuffer_free(s->req);
	if (s->resp != NULL)
		evbuffer_free(s->resp);
	free(s);
}

static void
stream_maybe_free(struct h2r_stream *s)
{
	if (s->cl_closed && (s->up_closed || (s->up == NULL && s->h1 == NULL)))
		stream_free(s);
}

/* n bytes of the request body left: the client may send more. Not for an
 * Upgrade's body, which came outside the frames and their windows. */
static void
stream_ack_req(struct h2r_stream *s, size_t n)
{
	if (!s->raw)
		nghttp2_session_consume(s->c->io.sess, s->sid, n);
}

/* Hand over, by both ends' data providers: bytes that left src were
 * received on the other session, which may now open its window. */
static ssize_t
h2r_read_data(nghttp2_session *sess, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
    nghttp2_data_source *src, void *ud)
{
	struct h2r_stream *s = src->ptr;
	int toclient = sess == s->c->io.sess;
	struct evbuffer *b = toclient ? s->resp : s->req;
	struct h2r_hdrs *trl = toclient ? &s->uin : &s->in;
	int n;

	(void)ud;
	if ((n = evbuffer_remove(b, buf, len)) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (n > 0) {
		if (!toclient)
			stream_ack_req(s, n);
		else if (s->up != NULL && s->usid >= 0)
			nghttp2_session_consume(s->up->io.sess, s->usid, n);
	}
	if (evbuffer_get_length(b) == 0 && (toclient ? s->resp_eof : s->req_eof)) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if ((toclient ? s->resp_trl : s->req_trl) && trl->n > 0) {
			if (nghttp2_submit_trailer(sess, sid, trl->nv, trl->n) == 0)
				*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			hdrs_clear(trl);
		}
		if (toclient) {
			s->resp_out = 1;
			/* After the response, as the app did: the rest of the
			 * request is not wanted (RFC 9113 8.1). */
			if (s->rst_after)
				nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, sid,
				    NGHTTP2_NO_ERROR);
		}
	} else if (n == 0)
		return NGHTTP2_ERR_DEFERRED;
	return n;
}

/* The mark on the answers that say the app did not speak HTTP/2 (h1h2.h):
 * a preview (agent/h1h2.c) sends the request again as HTTP/1.1. Set here
 * only; an app's or a client's header of that name is dropped
 * (header_into(), h1_on_value_done(), upgrade_head()). */
static const nghttp2_nv not_h2c_nv = { (uint8_t *)H1H2_PROTO_HEADER, (uint8_t *)H1H2_NOT_H2C,
    sizeof(H1H2_PROTO_HEADER) - 1, sizeof(H1H2_NOT_H2C) - 1, NGHTTP2_NV_FLAG_NONE };

static int
is_mark(const uint8_t *name, size_t len)
{
	return len == sizeof(H1H2_PROTO_HEADER) - 1 &&
	    strncasecmp((const char *)name, H1H2_PROTO_HEADER, len) == 0;
}

/* A gRPC call's error: a trailers-only response, UNAVAILABLE (14); marked
 * not-h2c (above) if mark. */
static int
stream_grpc_error(struct h2r_stream *s, const char *why, int mark)
{
	char msg[256];
	size_t i, n = 0;
	nghttp2_nv nv[] = {
		{ (uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
		    NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"grpc-status", (uint8_t *)"14", 11, 2, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"grpc-message", (uint8_t *)msg, 12, 0, NGHTTP2_NV_FLAG_NONE },
		not_h2c_nv,
	};

	/* grpc-message is percent-encoded outside printable ASCII and '%'. */
	for (i = 0; why[i] != '\0' && n + 4 < sizeof(msg); i++) {
		unsigned char ch = why[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '%')
			msg[n++] = ch;
		else
			n += snprintf(msg + n, sizeof(msg) - n, "%%%02X", ch);
	}
	nv[3].valuelen = n;
	s->resp_out = 1;
	return nghttp2_submit_response(s->c->io.sess, s->sid, nv, mark ? 5 : 4, NULL);
}

/* Answer a stream that no upstream serves: 502 with why as its body (or
 * a gRPC status); marked not-h2c (not_h2c_nv) if mark: only when the app
 * did not speak HTTP/2. */
static void
stream_502_mark(struct h2r_stream *s, const char *why, int mark)
{
	nghttp2_data_provider prd = { .source.ptr = s, .read_callback = h2r_read_data };
	nghttp2_nv nv[] = {
		{ (uint8_t *)":status", (uint8_t *)"502", 7, 3, NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10,
		    NGHTTP2_NV_FLAG_NONE },
		not_h2c_nv,
	};

	log_debug("%s: stream %d: %s", __func__, s->sid, why);
	if (s->cl_closed || s->resp_started)
		return;
	s->resp_started = 1;
	s->resp_eof = 1;
	hdrs_clear(&s->uin);
	s->resp_trl = 0;
	evbuffer_drain(s->resp, evbuffer_get_length(s->resp));
	if (s->grpc) {
		if (stream_grpc_error(s, why, mark) != 0)
			nghttp2_submit_rst_stream(s->c->io.sess, NGHTTP2_FLAG_NONE, s->sid,
			    NGHTTP2_INTERNAL_ERROR);
		return;
	}
	if (evbuffer_add_printf(s->resp, "%s\n", why) < 0 ||
	    nghttp2_submit_response(s->c->io.sess, s->sid, nv, mark ? 3 : 2, &prd) != 0)
		nghttp2_submit_rst_stream(s->c->io.sess, NGHTTP2_FLAG_NONE, s->sid,
		    NGHTTP2_INTERNAL_ERROR);
}

static void
stream_502(struct h2r_stream *s, const char *why)
{
	stream_502_mark(s, why, 0);
}

/* The request body has nowhere to go: acknowledge what waits and what
 * comes. */
static void
stream_drop_req(struct h2r_stream *s)
{
	size_t n = evbuffer_get_length(s->req);

	if (n > 0) {
		evbuffer_drain(s->req, n);
		stream_ack_req(s, n);
	}
}

/* --- upstreams --- */

static void up_read_cb(evutil_socket_t, short, void *);
static void up_write_cb(evutil_socket_t, short, void *);
static const struct kb_stream_cbs up_st_cbs;
static nghttp2_session_callbacks *up_callbacks(void);

static void
up_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2r_up *u = arg;

	(void)fd;
	(void)what;
	if (u->io.connecting)
		snprintf(u->why, sizeof(u->why), "kbridge: timed out connecting to the upstream");
	else if (u->nheld > 0)
		snprintf(u->why, sizeof(u->why), "kbridge: the intercepting workstation's local "
		    "app did not answer in HTTP/2 (SETTINGS) within %d s", H2R_CONNECT_MS / 1000);
	h2r_settle(u->c);
}

/* A session stream given up: what is still in it is not wanted (reset);
 * if nothing is, it ends with FINs, and data that comes after resets it. */
static void
st_drop_data(struct kb_stream *st, void *arg)
{
	const struct hp_stream_ops *ops = arg;

	if (evbuffer_get_length(ops->input(st)) > 0) {
		ops->set_cbs(st, NULL, NULL);
		ops->reset(st, KB_RST_CANCEL, "kbridge: not wanted any more");
	}
}

static const struct kb_stream_cbs st_drop_cbs = { .on_data = st_drop_data };

static void
st_release(const struct hp_stream_ops *ops, struct kb_stream *st, int clean)
{
	if (clean && evbuffer_get_length(ops->input(st)) == 0) {
		ops->set_cbs(st, &st_drop_cbs, (void *)ops);
		ops->shutdown(st);
		return;
	}
	ops->set_cbs(st, NULL, NULL);
	ops->reset(st, KB_RST_CANCEL, "kbridge: not wanted any more");
}

static void
up_free(struct h2r_up *u)
{
	struct h2r_stream *s;

	TAILQ_FOREACH(s, &u->c->streams, entry)
		if (s->up == u)
			s->up = NULL;	/* closed there: nothing more to acknowledge */
	if (u->io.st != NULL)
		st_release(u->io.ops, u->io.st, !u->io.err && io_pending(&u->io) == 0);
	u->io.st = NULL;
	LIST_REMOVE(u, entry);
	if (u->timer != NULL)
		event_free(u->timer);
	io_fini(&u->io);
	free(u);
}

/* u is of no more use: its streams that are not answered get a 502, the
 * others are reset; then it goes. */
static void
up_fail(struct h2r_up *u, const char *why)
{
	struct h2r_conn *c = u->c;
	struct h2r_stream *s, *t;

	for (s = TAILQ_FIRST(&c->streams); s != NULL; s = t) {
		t = TAILQ_NEXT(s, entry);
		if (s->up != u)
			continue;
		s->up = NULL;
		s->up_closed = 1;
		s->held = 0;
		stream_drop_req(s);
		if (!s->cl_closed) {
			if (!s->resp_started)	/* marked: the app speaks no HTTP/2 */
				stream_502_mark(s, why, u->not_h2);
			else if (!s->resp_eof)
				nghttp2_submit_rst_stream(c->io.sess, NGHTTP2_FLAG_NONE, s->sid,
				    NGHTTP2_INTERNAL_ERROR);
		}
		stream_maybe_free(s);
	}
	up_free(u);
}

static struct h2r_up *
up_new(struct h2r_conn *c, uint64_t key, char *reason, size_t len)
{
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2R_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HP_MAX_HEADER_BYTES },
	};
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt = NULL;
	struct timeval tv = kb_ms_tv(H2R_CONNECT_MS);
	struct h2r_up *u;
	int fd = -1;

	if ((u = calloc(1, sizeof(*u))) == NULL) {
		snprintf(reason, len, "kbridge: out of memory");
		return NULL;
	}
	u->c = c;
	u->key = key;
	u->io.fd = -1;
	if (key != 0 && c->up.streams != NULL) {
		/* An intercept's: a session stream, no socket. */
		u->io.ops = c->up.streams;
		if ((u->io.sout = evbuffer_new()) == NULL) {
			free(u);
			snprintf(reason, len, "kbridge: out of memory");
			return NULL;
		}
		if ((u->io.st = u->io.ops->open(c->up.arg, key, &up_st_cbs, u, reason,
		    len)) == NULL) {
			evbuffer_free(u->io.sout);
			free(u);
			return NULL;
		}
	} else if ((fd = c->up.open(c->up.arg, key, reason, len)) == -1) {
		free(u);
		return NULL;
	} else
		u->io.connecting = 1;
	LIST_INSERT_HEAD(&c->ups, u, entry);
	if ((fd != -1 && io_init(c, &u->io, fd, up_read_cb, up_write_cb, u) == -1) ||
	    (u->timer = evtimer_new(c->base, up_timer_cb, u)) == NULL ||
	    (cbs = up_callbacks()) == NULL || nghttp2_option_new(&opt) != 0)
		goto fail;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_peer_max_concurrent_streams(opt, H2R_MAX_STREAMS);
	if (nghttp2_session_client_new2(&u->io.sess, cbs, u, opt) != 0)
		goto fail;
	nghttp2_option_del(opt);
	opt = NULL;
	if (nghttp2_submit_settings(u->io.sess, NGHTTP2_FLAG_NONE, set, 3) != 0 ||
	    nghttp2_session_set_local_window_size(u->io.sess, NGHTTP2_FLAG_NONE, 0,
	    H2R_CONN_WINDOW) != 0)
		goto fail;
	evtimer_add(u->timer, &tv);
	return u;
fail:
	if (fd != -1 && u->io.fd == -1)
		close(fd);
	nghttp2_option_del(opt);
	up_free(u);
	snprintf(reason, len, "kbridge: out of memory");
	return NULL;
}

/* The upstream for key that takes new streams, or a new one. */
static struct h2r_up *
up_get(struct h2r_conn *c, uint64_t key, char *reason, size_t len)
{
	struct h2r_up *u;

	LIST_FOREACH(u, &c->ups, entry)
		if (u->key == key && !u->goaway && u->why[0] == '\0' && !u->io.eof && !u->io.err)
			return u;
	return up_new(c, key, reason, len);
}

/* An upstream whose answer to our preface does not start with a SETTINGS
 * frame, as every HTTP/2 server's must (RFC 9113 3.4), speaks no h2c: an
 * HTTP/1 app's 400, say. It is named so, rather than as a framing error.
 * 1 if so. */
static void
up_not_h2(struct h2r_up *u, int http1)
{
	u->not_h2 = 1;	/* its streams' 502s are marked not-h2c (up_fail()) */
	snprintf(u->why, sizeof(u->why), "kbridge: the %s answered %s, not HTTP/2: "
	    "it must speak HTTP/2 without TLS (h2c, prior knowledge), as a gRPC server does",
	    u->key == 0 ? "app" : "intercepting workstation's local app",
	    http1 ? "in HTTP/1" : "something else");
	log_debug("%s: key %llu: %s", __func__, (unsigned long long)u->key, u->why);
}

static int
up_http1(struct h2r_up *u)
{
	uint8_t b[5];
	ssize_t n;

	u->heard = 1;
	if ((n = recv(u->io.fd, b, sizeof(b), MSG_PEEK)) < 4 || b[3] == NGHTTP2_SETTINGS)
		return 0;
	up_not_h2(u, n == 5 && !memcmp(b, "HTTP/", 5));
	return 1;
}

static void stream_submit(struct h2r_stream *, struct h2r_hdrs *);

/* A stream upstream's local app answered our preface with SETTINGS: it
 * speaks HTTP/2, the streams held for it go. */
static void
up_unhold(struct h2r_up *u)
{
	struct h2r_stream *s, *t;

	for (s = TAILQ_FIRST(&u->c->streams); s != NULL && u->nheld > 0; s = t) {
		t = TAILQ_NEXT(s, entry);
		if (s->up == u && s->held)
			stream_submit(s, &s->head);
	}
}

/* It answered in HTTP/1: noted for the intercept (up.h1), the streams held
 * for it go as HTTP/1.1 requests, each on a stream of its own; u goes. */
static void
up_to_h1(struct h2r_up *u)
{
	struct h2r_conn *c = u->c;
	struct h2r_stream *s, *t;

	if (c->up.h1 != NULL)
		c->up.h1(c->up.arg, u->key, 1);
	for (s = TAILQ_FIRST(&c->streams); s != NULL; s = t) {
		t = TAILQ_NEXT(s, entry);
		if (s->up != u || !s->held)
			continue;
		s->up = NULL;
		s->held = 0;
		u->nheld--;
		u->nstreams--;
		h1_start(s, &s->head);
	}
	snprintf(u->why, sizeof(u->why), "kbridge: the intercepting workstation's local app "
	    "speaks HTTP/1");
}

/* A stream upstream's bytes: the first ones say whether it speaks HTTP/2
 * (a SETTINGS frame) or not, then HTTP/1 (up_http1() for a socket); until
 * then its streams are held. */
static void
up_recv_st(struct h2r_up *u)
{
	uint8_t b[5];
	ssize_t n;

	if (u->io.st == NULL || u->io.eof || u->io.err || u->why[0] != '\0')
		return;
	if (!u->heard) {
		n = evbuffer_copyout(u->io.ops->input(u->io.st), b, sizeof(b));
		if (n < (ssize_t)sizeof(b) && !u->io.ops->eof(u->io.st))
			return;
		if (n <= 0) {
			u->io.eof = 1;
			return;
		}
		u->heard = 1;
		evtimer_del(u->timer);
		if (n < 4 || b[3] != NGHTTP2_SETTINGS) {
			/* Not HTTP/2 (an HTTP/1 server's 505 or 400, with or
			 * without a status line): HTTP/1.1 it is. */
			up_to_h1(u);
			return;
		}
		if (u->c->up.h1 != NULL)
			u->c->up.h1(u->c->up.arg, u->key, -1);	/* HTTP/2 (again) */
		up_unhold(u);
	}
	io_recv_st(&u->io);
}

/* A callback stream (an upstream's or an HTTP/1.1 relay's) has bytes to
 * read or room to write: its connection settles. arg is a struct h2r_up or
 * a struct h2r_stream, both of which begin with their connection. */
_Static_assert(offsetof(struct h2r_up, c) == 0 && offsetof(struct h2r_stream, c) == 0,
    "st_settle reads the connection at the start of either");

static void
st_settle(struct kb_stream *st, void *arg)
{
	(void)st;
	h2r_settle(*(struct h2r_conn **)arg);
}

/* Why the workstation or the manager refused or reset a stream, for a
 * 502 page or a grpc-message. */
static void
st_why(char *why, size_t len, const char *text)
{
	if (text == NULL || *text == '\0')
		snprintf(why, len, "kbridge: the intercepting workstation reset the stream");
	else
		snprintf(why, len, "%s%s", strncmp(text, "kbridge: ", 9) ? "kbridge: " : "", text);
}

static void
up_st_close(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct h2r_up *u = arg;

	(void)st;
	u->io.st = NULL;	/* what it held is gone with it */
	if (reason == 0)
		u->io.eof = 1;
	else if (u->why[0] == '\0')
		st_why(u->why, sizeof(u->why), text);
	h2r_settle(u->c);
}

static const struct kb_stream_cbs up_st_cbs = {
	.on_close = up_st_close,
	.on_data = st_settle,
	.on_writable = st_settle,
};

static void
up_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2r_up *u = arg;

	(void)fd;
	(void)what;
	if (!u->heard && up_http1(u)) {
		h2r_settle(u->c);
		return;
	}
	io_recv(&u->io);
	h2r_settle(u->c);
}

static void
up_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2r_up *u = arg;
	socklen_t sl = sizeof(int);
	int err = 0;

	(void)what;
	if (u->io.connecting) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) == -1)
			err = errno;
		if (err != 0) {
			snprintf(u->why, sizeof(u->why),
			    "kbridge: cannot connect to the upstream: %s", strerror(err));
			h2r_settle(u->c);
			return;
		}
		u->io.connecting = 0;
		evtimer_del(u->timer);
	}
	h2r_settle(u->c);
}

/* upstream session callbacks (user data: the struct h2r_up) */

/* A header field of a HEADERS frame into the stream's list: the client's
 * request (in) or the upstream's answer (uin). */
static int
header_into(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
    const uint8_t *value, size_t vlen, int upstream)
{
	struct h2r_stream *s;

	if (f->hd.type != NGHTTP2_HEADERS ||
	    (s = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id)) == NULL)
		return 0;
	if (is_mark(name, nlen))
		return 0;	/* the sidecar's own (not_h2c_nv): neither side's to send */
	if (hdrs_add(upstream ? &s->uin : &s->in, name, nlen, value, vlen) == -1)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static int
up_on_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
    const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	return header_into(sess, f, name, nlen, value, vlen, 1);
}

static int
up_on_data(nghttp2_session *sess, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
    void *ud)
{
	struct h2r_stream *s = nghttp2_session_get_stream_user_data(sess, sid);

	(void)flags;
	(void)ud;
	if (s == NULL || s->cl_closed || evbuffer_add(s->resp, data, len) == -1) {
		nghttp2_session_consume(sess, sid, len);
		return 0;
	}
	nghttp2_session_resume_data(s->c->io.sess, s->sid);
	return 0;
}

/* A response head: 1xx goes on as it is, the final one opens the
 * client's response; a head without :status is the trailers. */
static void
up_head(struct h2r_stream *s, int end)
{
	nghttp2_data_provider prd = { .source.ptr = s, .read_callback = h2r_read_data };
	nghttp2_session *cs = s->c->io.sess;
	const nghttp2_nv *st = hdrs_get(&s->uin, ":status");

	if (s->cl_closed) {
		hdrs_clear(&s->uin);
		return;
	}
	if (st == NULL) {
		if (end)
			s->resp_trl = 1;	/* kept in uin until the body is out */
		else
			hdrs_clear(&s->uin);
		return;
	}
	if (st->valuelen == 3 && st->value[0] == '1') {
		nghttp2_submit_headers(cs, NGHTTP2_FLAG_NONE, s->sid, NULL, s->uin.nv, s->uin.n,
		    NULL);
		hdrs_clear(&s->uin);
		return;
	}
	s->resp_started = 1;
	s->resp_out = end;
	if (nghttp2_submit_response(cs, s->sid, s->uin.nv, s->uin.n, end ? NULL : &prd) != 0)
		nghttp2_submit_rst_stream(cs, NGHTTP2_FLAG_NONE, s->sid, NGHTTP2_INTERNAL_ERROR);
	hdrs_clear(&s->uin);
}

static int
up_on_frame(nghttp2_session *sess, const nghttp2_frame *f, void *ud)
{
	struct h2r_up *u = ud;
	struct h2r_conn *c = u->c;
	struct h2r_stream *s;
	int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

	switch (f->hd.type) {
	case NGHTTP2_GOAWAY:
		u->goaway = 1;
		/* The app leaves: so does this connection, gracefully, as it would
		 * without us; an owner's workstation leaving ends nothing here. */
		if (u->key == 0)
			nghttp2_submit_goaway(c->io.sess, NGHTTP2_FLAG_NONE,
			    nghttp2_session_get_last_proc_stream_id(c->io.sess),
			    f->goaway.error_code, NULL, 0);
		return 0;
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		break;
	default:
		return 0;
	}
	if ((s = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id)) == NULL)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS)
		up_head(s, end);
	if (end && s->resp_started) {
		s->resp_eof = 1;
		if (!s->cl_closed)
			nghttp2_session_resume_data(c->io.sess, s->sid);
	}
	return 0;
}

static int
up_on_close(nghttp2_session *sess, int32_t sid, uint32_t code, void *ud)
{
	struct h2r_up *u = ud;
	struct h2r_stream *s = nghttp2_session_get_stream_user_data(sess, sid);
	nghttp2_session *cs;

	if (s == NULL)
		return 0;
	u->nstreams--;
	s->up_closed = 1;
	stream_drop_req(s);
	cs = s->c->io.sess;
	if (!s->cl_closed && s->resp_eof && code == NGHTTP2_NO_ERROR && !s->req_eof) {
		/* The response is whole, the request body is not wanted. */
		if (s->resp_out)
			nghttp2_submit_rst_stream(cs, NGHTTP2_FLAG_NONE, s->sid, NGHTTP2_NO_ERROR);
		else
			s->rst_after = 1;
	} else if (!s->cl_closed && !s->resp_eof) {
		if (code == NGHTTP2_NO_ERROR && !s->resp_started)
			stream_502(s, "kbridge: the upstream closed the stream without answering");
		else
			nghttp2_submit_rst_stream(cs, NGHTTP2_FLAG_NONE, s->sid,
			    code != NGHTTP2_NO_ERROR ? code : NGHTTP2_INTERNAL_ERROR);
	}
	if (s->cl_closed)
		s->up = NULL;	/* nothing more to acknowledge to u */
	stream_maybe_free(s);
	return 0;
}

static nghttp2_session_callbacks *
up_callbacks(void)
{
	static nghttp2_session_callbacks *cbs;	/* made once, never changed */

	if (cbs != NULL || nghttp2_session_callbacks_new(&cbs) != 0)
		return cbs;
	nghttp2_session_callbacks_set_on_header_callback(cbs, up_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, up_on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, up_on_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, up_on_close);
	return cbs;
}

/* --- HTTP/2 streams as HTTP/1.1 requests (an intercept whose local app
 * speaks HTTP/1 only: up.h1) ---
 *
 * Each stream gets a session stream of its own to the workstation, whose
 * local app sees one HTTP/1.1 request with "Connection: close": the head
 * from h2r_h1_head(), the body as it comes (chunked when no
 * content-length says its length; trailers go as chunked trailers), and
 * answers in HTTP/1.x, parsed by llhttp into the client's response (head,
 * DATA, trailers from chunked trailers); hop-by-hop headers are dropped
 * both ways. Bounded as the rest: the request body is taken from the
 * client (and acknowledged) only while less than H2R_HIGH_WATER waits for
 * the stream, the answer read only while less than H2R_WINDOW waits for
 * the client. gRPC cannot work over HTTP/1: its calls get UNAVAILABLE. */

#define H2R_H1_GRPC H1H2_H1_ONLY ": gRPC needs HTTP/2 without TLS (h2c, prior knowledge)"
#define H2R_H1_BAD "kbridge: the intercepting workstation's local app sent an invalid " \
	"HTTP/1 answer"

struct h2r_h1 {
	struct kb_stream *st;
	struct evbuffer *out;	/* the request for st, not taken yet */
	llhttp_t p;		/* the answer */
	char *f;		/* header being parsed: name NUL value NUL */
	size_t flen, fcap, nlen;
	char *conn;		/* Connection header values, NUL-separated */
	size_t connlen;
	size_t fields;		/* bytes of fields so far (HP_MAX_HEADER_BYTES at most) */
	unsigned chunked:1;	/* the request body goes chunked */
	unsigned req_done:1;	/* the request's end is in out */
	unsigned resp_done:1;	/* the answer is whole */
	unsigned head:1;	/* a HEAD request: no body in the answer */
	unsigned info:1;	/* a 1xx answer comes (not passed on) */
	unsigned body:1;	/* the answer's head is done: fields are trailers */
};

/* Request fields for this hop only (RFC 9110 7.6.1, RFC 9113 8.2.2), and
 * host, which goes first. */
static int
h1_hop(const char *n)
{
	return !strcmp(n, "connection") || !strcmp(n, "keep-alive") ||
	    !strcmp(n, "proxy-connection") || !strcmp(n, "transfer-encoding") ||
	    !strcmp(n, "upgrade") || !strcmp(n, "te") || !strcmp(n, "http2-settings") ||
	    !strcmp(n, "trailer");
}

/* The HTTP/2 request head nv[0..n) as an HTTP/1.1 request into out:
 * request line from :method and :path, Host from the host field or
 * :authority, the regular fields but hop-by-hop ones, the cookie fields
 * as one (RFC 9113 8.2.3), "Connection: close"; a body (body 1) without
 * content-length goes chunked (*chunked 1). 0, or -1 (no :method or
 * :path, or out of memory). */
static int
h2r_h1_head(const nghttp2_nv *nv, size_t n, int body, struct evbuffer *out, int *chunked)
{
	const nghttp2_nv *method = NULL, *path = NULL, *auth = NULL, *host = NULL, *v;
	size_t i, cookies = 0;
	int cl = 0, rc = 0;

	for (i = 0; i < n; i++) {
		const char *name = (const char *)nv[i].name;

		if (!strcmp(name, ":method"))
			method = &nv[i];
		else if (!strcmp(name, ":path"))
			path = &nv[i];
		else if (!strcmp(name, ":authority"))
			auth = &nv[i];
		else if (!strcmp(name, "host"))
			host = &nv[i];
		else if (!strcmp(name, "content-length"))
			cl = 1;
	}
	if (method == NULL || path == NULL)
		return -1;
	v = host != NULL ? host : auth;
	rc |= evbuffer_add_printf(out, "%s %s HTTP/1.1\r\nHost: %s\r\n", method->value,
	    path->value, v != NULL ? (const char *)v->value : "") < 0;
	for (i = 0; i < n; i++) {
		const char *name = (const char *)nv[i].name;

		if (name[0] == ':' || !strcmp(name, "host") || h1_hop(name) ||
		    !strcmp(name, "cookie"))
			continue;
		rc |= evbuffer_add_printf(out, "%s: %s\r\n", name, nv[i].value) < 0;
	}
	for (i = 0; i < n; i++)
		if (!strcmp((const char *)nv[i].name, "cookie"))
			rc |= evbuffer_add_printf(out, "%s%s", cookies++ ? "; " : "Cookie: ",
			    nv[i].value) < 0;
	if (cookies > 0)
		rc |= evbuffer_add(out, "\r\n", 2);
	*chunked = body && !cl;
	rc |= evbuffer_add_printf(out, "%sConnection: close\r\n\r\n",
	    *chunked ? "Transfer-Encoding: chunked\r\n" : "") < 0;
	return rc ? -1 : 0;
}

/* Whether the NUL-separated Connection values in list (len bytes) name
 * the field name (lower case). */
static int
h1_listed(const char *list, size_t len, const char *name)
{
	const char *v, *end = list + len, *t, *e;
	size_t nl = strlen(name);

	for (v = list; v < end; v += strlen(v) + 1) {
		for (t = v; *t != '\0';) {
			t += strspn(t, " \t,");
			e = t + strcspn(t, ",");
			v = e;
			while (e > t && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if ((size_t)(e - t) == nl && !strncasecmp(t, name, nl))
				return 1;
			t = v;
		}
	}
	return 0;
}

static struct h2r_stream *
h1_of(llhttp_t *p)
{
	return p->data;
}

static int
h1_grow(struct h2r_h1 *h, const char *at, size_t len)
{
	size_t cap;
	char *f;

	if (h->flen + len + 1 > HP_MAX_HEADER_BYTES)
		return -1;
	if (h->flen + len + 1 > h->fcap) {
		for (cap = h->fcap ? 2 * h->fcap : 256; cap < h->flen + len + 1; cap *= 2)
			;
		if ((f = realloc(h->f, cap)) == NULL)
			return -1;
		h->f = f;
		h->fcap = cap;
	}
	memcpy(h->f + h->flen, at, len);
	h->flen += len;
	h->f[h->flen] = '\0';
	return 0;
}

static int
h1_on_part(llhttp_t *p, const char *at, size_t len)
{
	return h1_grow(h1_of(p)->h1, at, len);
}

static int
h1_on_name_done(llhttp_t *p)
{
	struct h2r_h1 *h = h1_of(p)->h1;

	h->nlen = h->flen;
	h->flen++;	/* past the name's NUL */
	if (h->flen >= h->fcap && h1_grow(h, "", 0) == -1)
		return -1;
	h->f[h->flen] = '\0';
	return 0;
}

/* :status first, once, before the first field. */
static int
h1_status(struct h2r_stream *s)
{
	char st[8];
	int n;

	if (s->uin.n > 0 && !strcmp((const char *)s->uin.nv[0].name, ":status"))
		return 0;
	n = snprintf(st, sizeof(st), "%03d", llhttp_get_status_code(&s->h1->p) % 1000);
	return hdrs_add(&s->uin, (const uint8_t *)":status", 7, (const uint8_t *)st, n);
}

static int
h1_on_value_done(llhttp_t *p)
{
	struct h2r_stream *s = h1_of(p);
	struct h2r_h1 *h = s->h1;
	char *name = h->f, *value = h->f + h->nlen + 1;
	size_t i, vlen = h->flen - h->nlen - 1;

	h->flen = 0;
	if ((h->fields += h->nlen + vlen + 32) > HP_MAX_HEADER_BYTES)
		return -1;	/* a head (or trailers) too large, kept or not */
	for (i = 0; i < h->nlen; i++)
		name[i] = tolower((unsigned char)name[i]);
	while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
		vlen--;
	if (!h->body && !strcmp(name, "connection")) {
		if ((name = realloc(h->conn, h->connlen + vlen + 1)) == NULL)
			return -1;
		h->conn = name;
		memcpy(h->conn + h->connlen, value, vlen);
		h->conn[h->connlen + vlen] = '\0';
		h->connlen += vlen + 1;
		return 0;
	}
	for (i = 0; i < vlen; i++)
		if (value[i] == '\0' || value[i] == '\r' || value[i] == '\n')
			return 0;	/* not a field HTTP/2 can carry */
	if (h1_hop(name) || is_mark((const uint8_t *)name, h->nlen))
		return 0;	/* (the mark is the sidecar's own: not_h2c_nv) */
	if (!h->body && h1_status(s) == -1)
		return -1;
	return hdrs_add(&s->uin, (uint8_t *)name, h->nlen, (uint8_t *)value, vlen);
}

static int
h1_on_head(llhttp_t *p)
{
	nghttp2_data_provider prd = { .read_callback = h2r_read_data };
	struct h2r_stream *s = h1_of(p);
	struct h2r_h1 *h = s->h1;
	int code = llhttp_get_status_code(p);
	size_t i, j;

	if (code == 101)
		return -1;	/* no upgrade was asked for */
	if (code < 200) {
		h->info = 1;	/* 100 Continue and the like stay here */
		hdrs_clear(&s->uin);
		h->fields = 0;
		return 0;
	}
	if (h1_status(s) == -1)
		return -1;
	for (i = j = 1; i < s->uin.n; i++)	/* what Connection names is for this hop */
		if (!h1_listed(h->conn != NULL ? h->conn : "", h->connlen,
		    (const char *)s->uin.nv[i].name))
			s->uin.nv[j++] = s->uin.nv[i];
	s->uin.n = j;
	h->body = 1;
	h->fields = 0;	/* the trailers' own count */
	prd.source.ptr = s;
	s->resp_started = 1;
	if (nghttp2_submit_response(s->c->io.sess, s->sid, s->uin.nv, s->uin.n, &prd) != 0)
		return -1;
	hdrs_clear(&s->uin);
	return h->head ? 1 : 0;	/* 1: no body follows */
}

static int
h1_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct h2r_stream *s = h1_of(p);

	if (evbuffer_add(s->resp, at, len) == -1)
		return -1;
	nghttp2_session_resume_data(s->c->io.sess, s->sid);
	return 0;
}

static int
h1_on_done(llhttp_t *p)
{
	struct h2r_stream *s = h1_of(p);
	struct h2r_h1 *h = s->h1;

	if (h->info) {
		h->info = 0;
		return 0;
	}
	h->resp_done = 1;
	s->resp_eof = 1;
	s->resp_trl = s->uin.n > 0;	/* the chunked trailers */
	nghttp2_session_resume_data(s->c->io.sess, s->sid);
	return HPE_PAUSED;	/* "Connection: close": nothing else comes */
}

static const llhttp_settings_t h1_settings = {
	.on_header_field = h1_on_part,
	.on_header_field_complete = h1_on_name_done,
	.on_header_value = h1_on_part,
	.on_header_value_complete = h1_on_value_done,
	.on_headers_complete = h1_on_head,
	.on_body = h1_on_body,
	.on_message_complete = h1_on_done,
};

static void
h1_free(struct h2r_stream *s)
{
	struct h2r_h1 *h = s->h1;

	if (h == NULL)
		return;
	if (h->st != NULL)
		st_release(s->c->up.streams, h->st, h->resp_done && h->req_done &&
		    evbuffer_get_length(h->out) == 0);
	evbuffer_free(h->out);
	free(h->f);
	free(h->conn);
	free(h);
	s->h1 = NULL;
	s->c->nh1--;
}

/* The relay is over: the answer is whole, or why says what went wrong
 * (a 502 if nothing of the answer went yet, else a reset). */
static void
h1_end(struct h2r_stream *s, const char *why)
{
	nghttp2_session *cs = s->c->io.sess;

	if (why != NULL)
		log_debug("%s: stream %d: %s", __func__, s->sid, why);
	h1_free(s);
	s->up_closed = 1;
	stream_drop_req(s);
	if (why != NULL && !s->resp_started)
		stream_502(s, why);
	else if (why != NULL && !s->resp_eof)
		nghttp2_submit_rst_stream(cs, NGHTTP2_FLAG_NONE, s->sid, NGHTTP2_INTERNAL_ERROR);
	else if (why == NULL && !s->req_eof) {
		/* Answered before the whole request came: the rest is not wanted. */
		if (s->resp_out)
			nghttp2_submit_rst_stream(cs, NGHTTP2_FLAG_NONE, s->sid, NGHTTP2_NO_ERROR);
		else
			s->rst_after = 1;
	}
}

/* Move the request body (and its end) into h->out, while less than
 * H2R_HIGH_WATER waits there. -1: out of memory. */
static int
h1_fill(struct h2r_stream *s)
{
	struct h2r_h1 *h = s->h1;
	size_t i, n;

	while (!h->req_done && evbuffer_get_length(h->out) < H2R_HIGH_WATER) {
		if ((n = evbuffer_get_length(s->req)) > 0) {
			if ((h->chunked && evbuffer_add_printf(h->out, "%zx\r\n", n) < 0) ||
			    evbuffer_remove_buffer(s->req, h->out, n) != (int)n ||
			    (h->chunked && evbuffer_add(h->out, "\r\n", 2) == -1))
				return -1;
			stream_ack_req(s, n);
			continue;
		}
		if (!s->req_eof)
			break;
		if (h->chunked) {
			if (evbuffer_add(h->out, "0\r\n", 3) == -1)
				return -1;
			for (i = 0; s->req_trl && i < s->in.n; i++)
				if (!h1_hop((const char *)s->in.nv[i].name) &&
				    evbuffer_add_printf(h->out, "%s: %s\r\n", s->in.nv[i].name,
				    s->in.nv[i].value) < 0)
					return -1;
			if (evbuffer_add(h->out, "\r\n", 2) == -1)
				return -1;
		}
		hdrs_clear(&s->in);
		h->req_done = 1;
	}
	return 0;
}

/* The request to the stream while it takes it all (when it takes less,
 * on_writable comes). */
static void
h1_send(struct h2r_stream *s)
{
	struct h2r_h1 *h = s->h1;

	for (;;) {
		if (h1_fill(s) == -1) {
			h1_end(s, "kbridge: out of memory");
			return;
		}
		if (evbuffer_get_length(h->out) == 0)
			return;
		s->c->up.streams->write(h->st, h->out);
		if (evbuffer_get_length(h->out) > 0 ||
		    (evbuffer_get_length(s->req) == 0 && (h->req_done || !s->req_eof)))
			return;
	}
}

/* The answer from the stream, while the client takes it. */
static void
h1_recv(struct h2r_stream *s)
{
	const struct hp_stream_ops *ops = s->c->up.streams;
	struct h2r_h1 *h = s->h1;
	struct evbuffer *in = ops->input(h->st);
	struct evbuffer_iovec v;
	llhttp_errno_t e = HPE_OK;
	size_t n;

	while (!h->resp_done && evbuffer_get_length(s->resp) < H2R_WINDOW &&
	    evbuffer_peek(in, -1, NULL, &v, 1) == 1) {
		n = v.iov_len;
		if (n > H2R_WINDOW - evbuffer_get_length(s->resp))
			n = H2R_WINDOW - evbuffer_get_length(s->resp);
		e = llhttp_execute(&h->p, v.iov_base, n);
		evbuffer_drain(in, e == HPE_PAUSED ? evbuffer_get_length(in) : n);
		if (e != HPE_OK && e != HPE_PAUSED) {
			h1_end(s, H2R_H1_BAD);
			return;
		}
	}
	if (!h->resp_done && evbuffer_get_length(in) == 0 && ops->eof(h->st)) {
		e = llhttp_finish(&h->p);
		if (!h->resp_done) {
			h1_end(s, e != HPE_OK && e != HPE_PAUSED ? H2R_H1_BAD :
			    "kbridge: the intercepting workstation's local app closed the "
			    "connection before a whole answer");
			return;
		}
	}
	if (h->resp_done && h->req_done && evbuffer_get_length(h->out) == 0)
		h1_end(s, NULL);
	else if (h->resp_done && !s->req_eof)
		h1_end(s, NULL);	/* the rest of the request is not wanted */
}

static void
h1_pump(struct h2r_stream *s)
{
	if (s->h1->st != NULL)
		h1_send(s);
	if (s->h1 != NULL && s->h1->st != NULL)
		h1_recv(s);
}

static void
h1_st_close(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct h2r_stream *s = arg;
	struct h2r_conn *c = s->c;
	char why[256];

	(void)st;
	s->h1->st = NULL;	/* what it held is gone with it */
	if (reason != 0)
		st_why(why, sizeof(why), text);
	else
		snprintf(why, sizeof(why), "kbridge: the intercepting workstation's local app "
		    "closed the connection before a whole answer");
	if (s->h1->resp_done)
		h1_end(s, NULL);
	else
		h1_end(s, why);
	h2r_settle(c);
}

static const struct kb_stream_cbs h1_st_cbs = {
	.on_close = h1_st_close,
	.on_data = st_settle,
	.on_writable = st_settle,
};

/* Relay s, whose request head is h (then cleared), as an HTTP/1.1
 * request; a gRPC call gets UNAVAILABLE instead. */
static void
h1_start(struct h2r_stream *s, struct h2r_hdrs *hd)
{
	struct h2r_conn *c = s->c;
	const nghttp2_nv *m = hdrs_get(hd, ":method");
	struct h2r_h1 *h;
	char reason[256];
	int chunked = 0;

	if (s->grpc) {
		hdrs_clear(hd);
		/* marked not-h2c: a preview's gRPC-web call goes again as
		 * HTTP/1.1 (to a gRPC-web proxy, say) */
		stream_502_mark(s, H2R_H1_GRPC, 1);
		return;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL || (h->out = evbuffer_new()) == NULL ||
	    h2r_h1_head(hd->nv, hd->n, !(s->req_eof && evbuffer_get_length(s->req) == 0 &&
	    !s->req_trl), h->out, &chunked) == -1) {
		if (h != NULL && h->out != NULL)
			evbuffer_free(h->out);
		free(h);
		hdrs_clear(hd);
		stream_502(s, "kbridge: cannot make the HTTP/1.1 request");
		return;
	}
	h->chunked = chunked;
	h->head = m != NULL && !strcmp((const char *)m->value, "HEAD");
	hdrs_clear(hd);
	llhttp_init(&h->p, HTTP_RESPONSE, &h1_settings);
	h->p.data = s;
	s->h1 = h;
	c->nh1++;
	reason[0] = '\0';
	if ((h->st = c->up.streams->open(c->up.arg, s->key, &h1_st_cbs, s, reason,
	    sizeof(reason))) == NULL) {
		reason[sizeof(reason) - 1] = '\0';
		h1_end(s, reason[0] != '\0' ? reason : "kbridge: the upstream is unavailable");
		return;
	}
	h1_send(s);
}

/* --- the client's session (user data: the struct h2r_conn) --- */

static int
hdr_grpc(const struct hp_request *req)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (!strcasecmp(req->headers[i].name, "content-type"))
			return !strncmp(req->headers[i].value, "application/grpc", 16);
	return 0;
}

/* Send the request head h (then cleared) on s->up, with the body after
 * it if any. */
static void
stream_submit(struct h2r_stream *s, struct h2r_hdrs *h)
{
	nghttp2_data_provider prd = { .source.ptr = s, .read_callback = h2r_read_data };
	struct h2r_up *u = s->up;
	int end = s->req_eof && evbuffer_get_length(s->req) == 0 && !s->req_trl;
	int32_t usid;

	if (s->held) {
		s->held = 0;
		u->nheld--;
	}
	usid = nghttp2_submit_request(u->io.sess, NULL, h->nv, h->n, end ? NULL : &prd, s);
	hdrs_clear(h);
	if (usid < 0) {
		s->up = NULL;
		u->nstreams--;
		stream_502(s, "kbridge: cannot open a stream to the upstream");
		return;
	}
	s->usid = usid;
}

/* More of the request (or its end) for the upstream to take. */
static void
stream_req_more(struct h2r_stream *s)
{
	if (s->up != NULL && s->usid >= 0 && !s->up_closed)
		nghttp2_session_resume_data(s->up->io.sess, s->usid);
}

/* The request head is whole: route it, open its upstream stream. */
static void
stream_route(struct h2r_stream *s, int end)
{
	struct h2r_field f[HP_MAX_HEADERS];
	struct hp_header h[HP_MAX_HEADERS + 1];
	struct hp_request req;
	struct h2r_conn *c = s->c;
	struct h2r_up *u;
	char reason[256], sbuf[2048], *buf;
	uint64_t key;
	size_t i;

	for (i = 0; i < s->in.n; i++)
		f[i] = (struct h2r_field){ (const char *)s->in.nv[i].name,
		    (const char *)s->in.nv[i].value, s->in.nv[i].namelen, s->in.nv[i].valuelen };
	/* Copies for route(): on the stack unless large. */
	buf = s->in.bytes + 64 <= sizeof(sbuf) ? sbuf : malloc(s->in.bytes + 64);
	if (buf == NULL ||
	    h2r_request(f, s->in.n, &req, h, HP_MAX_HEADERS + 1, buf, s->in.bytes + 64) == -1) {
		if (buf != sbuf)
			free(buf);
		nghttp2_submit_rst_stream(c->io.sess, NGHTTP2_FLAG_NONE, s->sid,
		    NGHTTP2_PROTOCOL_ERROR);
		return;
	}
	key = c->up.route(c->up.arg, &req, NULL);
	s->grpc = hdr_grpc(&req);
	log_debug("%s: %s %s -> %llu", __func__, req.method, req.target, (unsigned long long)key);
	if (buf != sbuf)
		free(buf);
	s->req_eof = end;
	s->key = key;
	/* Its local app speaks HTTP/1: so goes the stream, unless gRPC,
	 * which asks again (the developer may have started a gRPC server). */
	if (key != 0 && c->up.streams != NULL && c->up.h1 != NULL && !s->grpc &&
	    c->up.h1(c->up.arg, key, 0)) {
		h1_start(s, &s->in);
		return;
	}
	reason[0] = '\0';
	if ((u = up_get(c, key, reason, sizeof(reason))) == NULL) {
		reason[sizeof(reason) - 1] = '\0';
		stream_502(s, reason[0] ? reason : "kbridge: the upstream is unavailable");
		return;
	}
	s->up = u;
	u->nstreams++;
	if (u->io.st != NULL && !u->heard) {
		/* Held until it answers our preface: HTTP/2 or HTTP/1. The
		 * trailers, if any, come into s->in meanwhile. */
		struct timeval tv = kb_ms_tv(H2R_CONNECT_MS);

		s->head = s->in;
		memset(&s->in, 0, sizeof(s->in));
		s->held = 1;
		if (u->nheld++ == 0 && !evtimer_pending(u->timer, NULL))
			evtimer_add(u->timer, &tv);
		return;
	}
	stream_submit(s, &s->in);
}

static struct h2r_stream *
stream_new(struct h2r_conn *c, int32_t sid)
{
	struct h2r_stream *s;

	if (c->nstreams >= H2R_MAX_LIVE || (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->c = c;
	s->sid = sid;
	s->usid = -1;
	if ((s->req = evbuffer_new()) == NULL || (s->resp = evbuffer_new()) == NULL) {
		if (s->req != NULL)
			evbuffer_free(s->req);
		free(s);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&c->streams, s, entry);
	c->nstreams++;
	return s;
}

static int
cl_on_begin(nghttp2_session *sess, const nghttp2_frame *f, void *ud)
{
	struct h2r_conn *c = ud;
	struct h2r_stream *s;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if ((s = stream_new(c, f->hd.stream_id)) == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(sess, s->sid, s);
	return 0;
}

static int
cl_on_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
    const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	return header_into(sess, f, name, nlen, value, vlen, 0);
}

static int
cl_on_data(nghttp2_session *sess, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
    void *ud)
{
	struct h2r_stream *s = nghttp2_session_get_stream_user_data(sess, sid);

	(void)flags;
	(void)ud;
	if (s == NULL || (s->up == NULL && s->h1 == NULL) || s->up_closed ||
	    evbuffer_add(s->req, data, len) == -1) {
		nghttp2_session_consume(sess, sid, len);
		return 0;
	}
	stream_req_more(s);
	return 0;
}

static int
cl_on_frame(nghttp2_session *sess, const nghttp2_frame *f, void *ud)
{
	struct h2r_stream *s;
	int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

	(void)ud;
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	if ((s = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id)) == NULL)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
		stream_route(s, end);
		return 0;
	}
	if (f->hd.type == NGHTTP2_HEADERS) {
		if (end)
			s->req_trl = 1;	/* trailers: kept in in until the body is out */
		else
			hdrs_clear(&s->in);
	}
	if (end) {
		s->req_eof = 1;
		stream_req_more(s);
	}
	return 0;
}

static int
cl_on_close(nghttp2_session *sess, int32_t sid, uint32_t code, void *ud)
{
	struct h2r_stream *s = nghttp2_session_get_stream_user_data(sess, sid);
	size_t n;

	(void)ud;
	if (s == NULL)
		return 0;
	s->cl_closed = 1;
	stream_drop_req(s);
	if ((n = evbuffer_get_length(s->resp)) > 0) {
		evbuffer_drain(s->resp, n);
		if (s->up != NULL && s->usid >= 0)
			nghttp2_session_consume(s->up->io.sess, s->usid, n);
	}
	if (s->h1 != NULL) {
		h1_free(s);
		s->up_closed = 1;
	} else if (s->held) {
		s->held = 0;
		s->up->nheld--;
		s->up->nstreams--;
		s->up = NULL;
	} else if (s->up != NULL && !s->up_closed)
		nghttp2_submit_rst_stream(s->up->io.sess, NGHTTP2_FLAG_NONE, s->usid,
		    code != NGHTTP2_NO_ERROR ? code : NGHTTP2_CANCEL);
	stream_maybe_free(s);
	return 0;
}

static nghttp2_session_callbacks *
cl_callbacks(void)
{
	static nghttp2_session_callbacks *cbs;	/* made once, never changed */

	if (cbs != NULL || nghttp2_session_callbacks_new(&cbs) != 0)
		return cbs;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cl_on_begin);
	nghttp2_session_callbacks_set_on_header_callback(cbs, cl_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cl_on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cl_on_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cl_on_close);
	return cbs;
}

/* --- the connection --- */

static void
conn_free(struct h2r_conn *c)
{
	struct hp_upstreams up = c->up;
	struct h2r_up *u;

	/* Streams still alive go with the sessions, without their callbacks. */
	while ((u = LIST_FIRST(&c->ups)) != NULL)
		up_free(u);
	io_fini(&c->io);
	c->io.sess = NULL;
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->idle != NULL)
		event_free(c->idle);
	while (!TAILQ_EMPTY(&c->streams))
		stream_free(TAILQ_FIRST(&c->streams));
	free(c);
	if (up.done != NULL)
		up.done(up.arg, NULL);
}

/* Send what every session has (what one sends may let another
 * acknowledge bytes: its WINDOW_UPDATE goes in the next pass, until no
 * pass makes anything), fail dead upstreams, free what is finished, arm. */
static void
h2r_settle(struct h2r_conn *c)
{
	struct h2r_stream *s;
	struct h2r_up *u, *t;
	size_t made = 1;
	int pass;

	for (pass = 0; made > 0; pass++) {
		if (pass == H2R_MAX_PASSES) {
			/* Others not starved: the rest in the next loop iteration
			 * (not by the write event, which io_arm() may delete). */
			event_active(c->kick, EV_TIMEOUT, 0);
			break;
		}
		made = 0;
		if (c->nh1 > 0)
			TAILQ_FOREACH(s, &c->streams, entry)
				if (s->h1 != NULL)
					h1_pump(s);
		for (u = LIST_FIRST(&c->ups); u != NULL; u = t) {
			t = LIST_NEXT(u, entry);
			if (u->io.st != NULL)
				up_recv_st(u);
			if (u->why[0] == '\0' && !u->io.err && !u->io.eof)
				made += io_send(&u->io);
			if (u->why[0] == '\0' && (u->io.err || u->io.eof)) {
				snprintf(u->why, sizeof(u->why), "kbridge: the upstream %s",
				    u->io.eof ? "closed the connection" : "failed");
			}
			if (u->why[0] != '\0')
				up_fail(u, u->why);
			else if (u->nstreams == 0 && (u->goaway || io_finished(&u->io)))
				up_free(u);
		}
		made += io_send(&c->io);
	}
	/* A client that closed its end cannot take an answer any more. */
	if (c->io.err || c->io.eof || io_finished(&c->io)) {
		conn_free(c);
		return;
	}
	if (c->closing)
		;	/* the linger timer runs */
	else if (c->nstreams > 0)
		evtimer_del(c->idle);
	else if (!evtimer_pending(c->idle, NULL))
		conn_timer(c, h2r_idle_ms);
	/* An Upgrade's body waits for its upstream at one window, as frames would. */
	c->io.hold = c->raw != NULL && evbuffer_get_length(c->raw->req) >= H2R_WINDOW;
	io_arm(&c->io);
	LIST_FOREACH(u, &c->ups, entry)
		io_arm(&u->io);
}

static void
conn_timer(struct h2r_conn *c, int ms)
{
	struct timeval tv = kb_ms_tv(ms);

	c->io.wrote = 0;
	evtimer_add(c->idle, &tv);
}

/* Bytes of an Upgrade's request body (HTTP/1, before the client's
 * preface): to its stream, or dropped if that has no upstream any more.
 * Returns how many of the len at p they were. */
static size_t
cl_raw(struct h2r_conn *c, const uint8_t *p, size_t len)
{
	struct h2r_stream *s = c->raw;
	size_t n = len < c->raw_left ? len : c->raw_left;

	c->raw_left -= n;
	if (s == NULL || (s->up == NULL && s->h1 == NULL) || s->up_closed)
		return n;
	if (evbuffer_add(s->req, p, n) == -1)
		c->io.err = 1;
	if (c->raw_left == 0) {
		s->req_eof = 1;
		c->raw = NULL;
	}
	stream_req_more(s);
	return n;
}

static void
cl_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2r_conn *c = arg;
	uint8_t buf[H2R_READ_SIZE];
	ssize_t n, rv;
	size_t raw;

	(void)what;
	if (c->raw_left == 0) {
		io_recv(&c->io);
		h2r_settle(c);
		return;
	}
	n = recv(fd, buf, sizeof(buf), 0);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		c->io.err = 1;	/* the body was not whole: no answer to give */
		h2r_settle(c);
		return;
	}
	raw = cl_raw(c, buf, n);
	if ((size_t)n > raw && (rv = nghttp2_session_mem_recv(c->io.sess, buf + raw,
	    n - raw)) < 0) {
		log_debug("%s: %s", __func__, nghttp2_strerror((int)rv));
		c->io.err = 1;
	}
	h2r_settle(c);
}

/* No stream for h2r_idle_ms (a client still taking bytes is not idle):
 * GOAWAY, then h2r_linger_ms for the client to take it and leave. */
static void
cl_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2r_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->closing) {
		log_debug("%s: linger", __func__);
		conn_free(c);
		return;
	}
	if (c->nstreams > 0)
		return;
	if (c->io.wrote) {
		conn_timer(c, h2r_idle_ms);
		return;
	}
	log_debug("%s: idle", __func__);
	c->closing = 1;
	conn_timer(c, h2r_linger_ms);
	if (nghttp2_session_terminate_session(c->io.sess, NGHTTP2_NO_ERROR) != 0) {
		conn_free(c);
		return;
	}
	h2r_settle(c);
}

static void
cl_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	h2r_settle(arg);
}

/* A connection with its server session toward the client, SETTINGS
 * queued; the session is not fed yet. NULL: out of memory (fd stays the
 * caller's). */
static struct h2r_conn *
conn_new(struct event_base *base, int fd, const struct hp_upstreams *up)
{
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2R_MAX_STREAMS },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2R_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HP_MAX_HEADER_BYTES },
	};
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt = NULL;
	struct h2r_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->base = base;
	c->up = *up;
	c->io.fd = -1;
	TAILQ_INIT(&c->streams);
	LIST_INIT(&c->ups);
	if (io_init(c, &c->io, fd, cl_read_cb, cl_write_cb, c) == -1 ||
	    (c->kick = event_new(base, -1, 0, cl_write_cb, c)) == NULL ||
	    (c->idle = evtimer_new(base, cl_idle_cb, c)) == NULL ||
	    (cbs = cl_callbacks()) == NULL || nghttp2_option_new(&opt) != 0)
		goto fail;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
	if (nghttp2_session_server_new2(&c->io.sess, cbs, c, opt) != 0)
		goto fail;
	nghttp2_option_del(opt);
	opt = NULL;
	if (nghttp2_submit_settings(c->io.sess, NGHTTP2_FLAG_NONE, set, 3) != 0 ||
	    nghttp2_session_set_local_window_size(c->io.sess, NGHTTP2_FLAG_NONE, 0,
	    H2R_CONN_WINDOW) != 0)
		goto fail;
	return c;
fail:
	nghttp2_option_del(opt);
	conn_abandon(c);
	return NULL;
}

/* Free a connection that never ran, leaving its socket to the caller. */
static void
conn_abandon(struct h2r_conn *c)
{
	c->io.fd = -1;
	io_fini(&c->io);
	c->io.sess = NULL;
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->idle != NULL)
		event_free(c->idle);
	while (!TAILQ_EMPTY(&c->streams))
		stream_free(TAILQ_FIRST(&c->streams));
	free(c);
}

int
h2r_start(struct event_base *base, int fd, const void *p, size_t len,
    const struct hp_upstreams *up)
{
	struct h2r_conn *c;
	ssize_t rv;

	if ((c = conn_new(base, fd, up)) == NULL)
		return -1;
	if (len > 0 && (rv = nghttp2_session_mem_recv(c->io.sess, p, len)) < 0) {
		log_debug("%s: %s", __func__, nghttp2_strerror((int)rv));
		c->io.err = 1;
	}
	h2r_settle(c);
	return 0;
}

/* --- HTTP/1.1 Upgrade: h2c (RFC 7540 3.2) --- */

/* base64url without padding (RFC 7540 3.2.1), as HTTP2-Settings is:
 * the bytes decoded into out, or -1. */
static ssize_t
h2r_b64url(const char *in, uint8_t *out, size_t outsz)
{
	uint32_t acc = 0;
	size_t i, n = 0, bits = 0;
	const char *q;
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

	for (i = 0; in[i] != '\0' && in[i] != '='; i++) {
		if ((q = strchr(a, in[i])) == NULL)
			return -1;
		acc = acc << 6 | (uint32_t)(q - a);
		if ((bits += 6) >= 8) {
			if (n == outsz)
				return -1;
			bits -= 8;
			out[n++] = acc >> bits & 0xff;
		}
	}
	while (in[i] == '=')
		i++;
	/* Left-over bits must be zero, and a lone 6-bit group is no byte. */
	if (in[i] != '\0' || bits >= 6 || (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return n;
}

/* The value of the request's first header called name (any case): as
 * httpproxy.h's hp_header(), which this does not link with. */
static const char *
req_header(const struct hp_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (!strcasecmp(req->headers[i].name, name))
			return req->headers[i].value;
	return NULL;
}

/* Whether a Connection header value lists name (any case). */
static int
conn_lists(const struct hp_request *req, const char *name)
{
	const char *v, *t, *e;
	size_t i, len = strlen(name);

	for (i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, "connection"))
			continue;
		for (v = req->headers[i].value; *v != '\0';) {
			v += strspn(v, " \t,");
			t = v;
			v += strcspn(v, ",");
			for (e = v; e > t && (e[-1] == ' ' || e[-1] == '\t'); e--)
				;
			if ((size_t)(e - t) == len && !strncasecmp(t, name, len))
				return 1;
		}
	}
	return 0;
}

/* The HTTP/1.1 request as an HTTP/2 head, in h: the pseudo-headers, then
 * its headers in lower case, less those for this hop only (RFC 9113
 * 8.2.2). 0, or -1 (too many, or out of memory). */
static int
upgrade_head(const struct hp_request *req, struct h2r_hdrs *h)
{
	const char *host = req_header(req, "host"), *n, *v;
	char lower[256];
	size_t i, j, len;

#define ADD(a, b) hdrs_add(h, (const uint8_t *)(a), strlen(a), (const uint8_t *)(b), strlen(b))
	if (ADD(":method", req->method) == -1 || ADD(":scheme", "http") == -1 ||
	    (host != NULL && ADD(":authority", host) == -1) || ADD(":path", req->target) == -1)
		return -1;
	for (i = 0; i < req->nheaders; i++) {
		n = req->headers[i].name;
		v = req->headers[i].value;
		if ((len = strlen(n)) >= sizeof(lower))
			return -1;
		for (j = 0; j <= len; j++)
			lower[j] = tolower((unsigned char)n[j]);
		if (!strcmp(lower, "host") || !strcmp(lower, "connection") ||
		    !strcmp(lower, "keep-alive") || !strcmp(lower, "proxy-connection") ||
		    !strcmp(lower, "transfer-encoding") || !strcmp(lower, "upgrade") ||
		    !strcmp(lower, "http2-settings") || conn_lists(req, lower) ||
		    is_mark((const uint8_t *)lower, len) ||
		    (!strcmp(lower, "te") && strcasecmp(v, "trailers")))
			continue;
		if (ADD(lower, v) == -1)
			return -1;
	}
#undef ADD
	return 0;
}

int
h2r_upgrade(struct event_base *base, int fd, const struct hp_request *req, uint64_t bodylen,
    const void *p, size_t len, const struct hp_upstreams *up)
{
	static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n"
	    "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
	uint8_t set[H2R_SETTINGS_B64 * 3 / 4];
	const char *b64 = req_header(req, "http2-settings");
	struct h2r_stream *s;
	struct h2r_conn *c;
	ssize_t nset, rv;
	size_t raw;

	if (b64 == NULL || strlen(b64) > H2R_SETTINGS_B64 ||
	    (nset = h2r_b64url(b64, set, sizeof(set))) < 0 || nset % 6 != 0)
		return -1;
	if ((c = conn_new(base, fd, up)) == NULL)
		return -1;
	if ((s = stream_new(c, 1)) == NULL || upgrade_head(req, &s->in) == -1 ||
	    nghttp2_session_upgrade2(c->io.sess, set, nset, !strcmp(req->method, "HEAD"),
	    s) != 0 || nghttp2_session_set_stream_user_data(c->io.sess, 1, s) != 0 ||
	    buf_add(&c->io.out, sw, sizeof(sw) - 1) == -1) {
		if (s != NULL)
			hdrs_free(&s->in);
		conn_abandon(c);
		return -1;
	}
	/* Stream 1 is the request, half-closed: routed as any other. */
	s->raw = 1;
	stream_route(s, bodylen == 0);
	if (bodylen > 0) {
		c->raw = s;
		c->raw_left = bodylen;
		s->req_eof = 0;
	}
	raw = c->raw_left > 0 ? cl_raw(c, p, len) : 0;
	if (len > raw && (rv = nghttp2_session_mem_recv(c->io.sess, (const uint8_t *)p + raw,
	    len - raw)) < 0) {
		log_debug("%s: %s", __func__, nghttp2_strerror((int)rv));
		c->io.err = 1;
	}
	h2r_settle(c);
	return 0;
}
