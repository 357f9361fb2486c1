/* The sidecar's HTTP/1.x proxy, one client connection at a time. A request
 * head is parsed with llhttp, routed, and sent on rebuilt without hop-by-hop
 * headers; the body follows verbatim (chunk framing included) as far as the
 * parser says the message goes. The response is forwarded verbatim while a
 * second parser finds where it ends. Reads land in the proxy's scratch buffer
 * and go straight to the other socket when nothing is queued there, so the
 * usual request copies nothing; queues stop the reading side at a watermark.
 * Requests are served one after another: no read-ahead beyond a head's worth.
 * With up.pass, the first request line is sniffed before llhttp sees it: a
 * connection that is not HTTP/1 goes to the app as it came (hp_pass()), the
 * HTTP/2 preface to up.h2 if set (hp_hand_h2()).
 * Small writes wait for the end of the loop iteration and go out in groups
 * (batch.h); the app's answer times are noted for pace.h (applat.h).
 * An upstream is a socket, or (up.streams) a session stream whose
 * data comes to on_data and leaves with kb_stream_write (hp_st_*): the
 * same states and queues, without a descriptor in between.
 * hp_conn_free() must not be called from the route(), open() or done()
 * callbacks. */
#include "httpproxy.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <sys/queue.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include <llhttp.h>

#include "applat.h"
#include "batch.h"
#include "h1h2.h"	/* H1H2_PROTO_HEADER: the sidecar's mark */
#include "log.h"
#include "session.h"	/* struct kb_stream_cbs; the functions come with up.streams */
#include "util.h"

#define HP_READ_SIZE	(64 * 1024)
#define HP_HIGH_WATER	(256 * 1024)	/* stop reading while the peer has this queued */
#define HP_HBUF_KEEP	(8 * 1024)	/* larger head buffers are freed after use */
#define HP_IOV		BATCH_IOV
#define HP_ROUTE_DROP	8	/* header names route() may drop */
#define HP_DIRECT_MIN	(16 * 1024) /* bulk goes out at once, uncopied */

/* The proxy's state, one per event base: what its connections share. */
struct hp_proxy {
	struct event_base *base;
	/* Timeouts (ms), fields so that tests can shorten them. */
	int idle_ms;		/* no request on a kept-alive connection */
	int head_ms;		/* a request head that does not complete */
	int linger_ms;		/* last response not taken by the client */
	int connect_ms;		/* an upstream connect() in progress */
	/* A client still silent after sniff_ms gets its app connection
	 * opened: if the app speaks first (a server-first protocol on an http
	 * port), the two are joined; if the client speaks first, that
	 * connection serves its first request routed to the app. Short, so
	 * that a greeting is not held back long; a slow HTTP client still gets
	 * its requests routed. */
	int sniff_ms;
	unsigned passed_kinds;	/* bits of the kinds already logged (hp_pass()) */
	unsigned h2_logged:1;	/* a connection went to up.h2 (hp_hand_h2()) */
	unsigned h2c_logged:1;	/* one went to up.h2c (hp_hand_h2c()) */
	struct applat lat;	/* for pace.h */
	struct batch batch;	/* writes of several connections in one go */
	char rbuf[HP_READ_SIZE];	/* every read lands here */
};

/* What the first bytes of a connection are (hp_sniff()). */
enum hp_kind {
	HP_K_MORE,		/* cannot tell yet */
	HP_K_HTTP1,
	HP_K_H2,		/* the HTTP/2 preface: prior knowledge, as gRPC sends */
	HP_K_TLS,
	HP_K_HTTP09,
	HP_K_APP_FIRST,		/* the app spoke before the client */
	HP_K_OTHER,
};

static const char *const hp_kind_name[] = {
	[HP_K_H2] = "HTTP/2 preface",
	[HP_K_TLS] = "TLS",
	[HP_K_HTTP09] = "HTTP/0.9 request",
	[HP_K_APP_FIRST] = "the app spoke first",
	[HP_K_OTHER] = "not an HTTP/1 request line",
};

/* Where the sniffer is in the first request line. */
struct hp_sniff {
	uint8_t st;		/* HP_S_* */
	uint8_t ver;		/* bytes of "HTTP/d.d" matched */
	uint8_t major;
	uint8_t pri;		/* bytes of HP_H2_LINE matched from the first */
	size_t n;		/* bytes looked at */
};

enum hp_state {
	HP_HEAD,	/* waiting for a request head */
	HP_XFER,	/* a request and its response in flight */
	HP_TUNNEL,	/* after 101: raw bytes both ways */
	HP_CLOSING,	/* flushing the last response, then close */
	HP_DONE,
};

struct hp_sock {
	struct hp_conn *c;
	int fd;
	struct kb_stream *st;	/* a stream upstream (is_st): NULL once it ended */
	uint64_t key;
	struct event *rev, *wev;
	struct evbuffer *out;
	unsigned rarmed:1, warmed:1;
	unsigned connecting:1;	/* wait for writability, then SO_ERROR */
	unsigned rdeof:1, wshut:1, werr:1;
	unsigned is_st:1;	/* st, not fd; rev only kicks hp_st_read() */
};

/* One request and its response; cleared for every request. */
struct hp_txn {
	unsigned head_done:1;
	unsigned hfield:1;	/* collecting a header name */
	unsigned req_done:1;
	unsigned req_keep:1;
	unsigned req_head:1;	/* HEAD: the response has no body */
	unsigned req_upgrade:1;
	unsigned expect:1;	/* Expect: 100-continue */
	unsigned resp_started:1;/* response bytes went to the client */
	unsigned resp_done:1;
	unsigned resp_keep:1;
	unsigned switching:1;	/* 101 to an upgrade request */
	unsigned idempotent:1;	/* may be sent again (RFC 9110 9.2.2) */
	unsigned reused:1;	/* went to a kept-alive upstream */
	unsigned body_fwd:1;	/* body bytes went upstream */
	unsigned discard:1;	/* answered without upstream: drop the body */
	unsigned must_close:1;
	unsigned us_bad:1;	/* the upstream cannot serve another request */
	unsigned replied:1;	/* route() answered it here */
	int herr;		/* status for a head we refuse */
	/* of the response header name being read, the bytes that match
	 * H1H2_PROTO_HEADER (its length + 1: it does not) */
	unsigned char mark_n;
	uint64_t sent_us;	/* when the head went to the app (key 0), or 0 */
};

/* route()'s changes to the request in flight; cleared for every request. */
struct hp_route {
	struct hp_conn *c;
	const char *drop[HP_ROUTE_DROP];
	size_t ndrop;
	struct evbuffer *add;	/* header lines to add, made on first use */
};

struct hp_conn {
	struct hp_proxy *hp;
	struct hp_upstreams up;
	enum hp_state state;
	struct hp_sock cl;
	struct evbuffer *cin;	/* client bytes the current state cannot take yet */
	struct hp_sock *us;	/* the upstream of the request in flight */
	struct hp_sock *idle;	/* kept alive from an earlier request */
	struct event *timer;
	llhttp_t rp, sp;	/* request and response parsers */
	struct hp_txn t;
	struct hp_route rt;

	/* The request head as NUL-terminated strings: method, target, then
	 * name and value of each header. */
	char *hbuf;
	size_t hlen, hcap, head_bytes, nhdr;
	uint32_t url_off;
	uint32_t hoff[HP_MAX_HEADERS][2];

	/* Until the first request line shows this is HTTP/1 (up.pass only). */
	unsigned sniff:1;
	unsigned probed:1;	/* the app's connection was opened for a silent client */
	unsigned handed:1;	/* the client socket went to up.h2 (with up.arg) */
	struct hp_sniff sn;

	int wrote;		/* the client took queued bytes since the timer was set */
	size_t peak;		/* most bytes queued at once; tests check it */
	struct batch_member bm;	/* its writes wait for the end of the iteration */
};

#define HP_CONN_OF_BM(m) ((struct hp_conn *)((char *)(m) - offsetof(struct hp_conn, bm)))


static void hp_read_cb(evutil_socket_t, short, void *);
static void hp_write_cb(evutil_socket_t, short, void *);
static void hp_closing(struct hp_conn *);
static void hp_settle(struct hp_conn *);
static void hp_st_release(struct hp_sock *);
static void hp_upstream_input(struct hp_conn *, const char *, size_t);
static void hp_upstream_eof(struct hp_conn *, int, const char *);
static void hp_upstream_fail(struct hp_conn *, const char *);
static void hp_flush_sock(struct hp_conn *, struct hp_sock *);

static void
hp_note_peak(struct hp_conn *c)
{
	size_t n = evbuffer_get_length(c->cl.out) + evbuffer_get_length(c->cin);

	if (c->us != NULL)
		n += evbuffer_get_length(c->us->out);
	if (n > c->peak)
		c->peak = n;
}

static void
hp_timer_set(struct hp_conn *c, int ms)
{
	struct timeval tv = kb_ms_tv(ms);

	evtimer_add(c->timer, &tv);
}

/* --- sockets --- */

static int
hp_sock_init(struct hp_conn *c, struct hp_sock *s, int fd)
{
	int one = 1;

	s->c = c;
	s->fd = fd;
	/* Fails harmlessly on a non-TCP socket. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((s->out = evbuffer_new()) == NULL ||
	    (s->rev = event_new(c->hp->base, fd, EV_READ | EV_PERSIST, hp_read_cb, s)) == NULL ||
	    (s->wev = event_new(c->hp->base, fd, EV_WRITE | EV_PERSIST, hp_write_cb, s)) == NULL)
		return -1;
	return 0;
}

static void
hp_sock_fini(struct hp_sock *s)
{
	if (s->is_st)
		hp_st_release(s);
	if (s->rev != NULL)
		event_free(s->rev);
	if (s->wev != NULL)
		event_free(s->wev);
	if (s->out != NULL)
		evbuffer_free(s->out);
	if (s->fd != -1)
		close(s->fd);
}

static struct hp_sock *
hp_up_new(struct hp_conn *c, int fd, uint64_t key)
{
	struct hp_sock *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		return NULL;
	}
	if (hp_sock_init(c, s, fd) == -1) {
		hp_sock_fini(s);
		free(s);
		return NULL;
	}
	s->key = key;
	s->connecting = 1;
	return s;
}

static void
hp_up_free(struct hp_sock *s)
{
	if (s == NULL)
		return;
	hp_sock_fini(s);
	free(s);
}

/* --- stream upstreams (up.streams) --- */

#define SOPS(s) ((s)->c->up.streams)

/* What the stream brought, one read's worth at a time as from a socket;
 * its end once all of it was taken. */
static void
hp_st_read(struct hp_sock *s)
{
	struct hp_conn *c = s->c;
	struct evbuffer *in;
	int n;

	c->hp->lat.events++;
	if (s == c->idle) {
		/* A kept-alive upstream that talks or closes is of no more use. */
		hp_up_free(s);
		c->idle = NULL;
		return;
	}
	if (s->st == NULL || s->rdeof || (in = SOPS(s)->input(s->st)) == NULL)
		return;
	if ((n = evbuffer_remove(in, c->hp->rbuf, sizeof(c->hp->rbuf))) > 0)
		hp_upstream_input(c, c->hp->rbuf, n);
	else if (SOPS(s)->eof(s->st))
		hp_upstream_eof(c, 0, NULL);
	else
		return;
	hp_settle(c);
}

static void
hp_st_kick(evutil_socket_t fd, short what, void *arg)
{
	struct hp_sock *s = arg;

	(void)fd;
	(void)what;
	if (s->rarmed)
		hp_st_read(s);
}

static void
hp_st_data(struct kb_stream *st, void *arg)
{
	struct hp_sock *s = arg;

	(void)st;
	if (s->rarmed)
		hp_st_read(s);
}

static void
hp_st_writable(struct kb_stream *st, void *arg)
{
	struct hp_sock *s = arg;

	(void)st;
	hp_flush_sock(s->c, s);
	hp_settle(s->c);
}

/* The stream ended: cleanly (both ways done), or reset with a reason,
 * a refusal's among them, which goes into the 502 page. */
static void
hp_st_close(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct hp_sock *s = arg;
	struct hp_conn *c = s->c;

	(void)st;
	s->st = NULL;
	if (s == c->idle) {
		hp_up_free(s);
		c->idle = NULL;
		return;
	}
	if (s != c->us)
		return;
	if (reason)
		s->werr = 1;
	if (!s->rdeof)
		hp_upstream_eof(c, reason ? EPIPE : 0, reason ? (text && *text ? text :
		    "the intercepting workstation reset the request") : NULL);
	hp_settle(c);
}

static const struct kb_stream_cbs hp_st_cbs = {
	.on_close = hp_st_close,
	.on_data = hp_st_data,
	.on_writable = hp_st_writable,
};

/* A stream given up before its end: it may finish with its FINs (all
 * read, nothing more comes), else, like a closed socket with data
 * unread, it is reset. */
static void
hp_st_drop_data(struct kb_stream *st, void *arg)
{
	const struct hp_stream_ops *ops = arg;

	if (evbuffer_get_length(ops->input(st)) > 0) {
		ops->set_cbs(st, NULL, NULL);
		ops->reset(st, KB_RST_CANCEL, "the client went away");
	}
}

static const struct kb_stream_cbs hp_st_drop_cbs = { .on_data = hp_st_drop_data };

static void
hp_st_release(struct hp_sock *s)
{
	struct kb_stream *st = s->st;

	if (st == NULL)
		return;
	s->st = NULL;
	if (!s->werr && evbuffer_get_length(s->out) == 0 &&
	    evbuffer_get_length(SOPS(s)->input(st)) == 0) {
		SOPS(s)->set_cbs(st, &hp_st_drop_cbs, (void *)SOPS(s));
		SOPS(s)->shutdown(st);
		return;
	}
	SOPS(s)->set_cbs(st, NULL, NULL);
	SOPS(s)->reset(st, KB_RST_CANCEL, "the client went away");
}

/* c->us becomes a new stream upstream for key; 0, or -1 after a 502. */
static int
hp_st_get(struct hp_conn *c, uint64_t key)
{
	char reason[256];
	struct hp_sock *s;

	reason[0] = '\0';
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		hp_upstream_fail(c, "out of memory");
		return -1;
	}
	s->c = c;
	s->fd = -1;
	s->key = key;
	s->is_st = 1;
	if ((s->out = evbuffer_new()) == NULL ||
	    (s->rev = event_new(c->hp->base, -1, 0, hp_st_kick, s)) == NULL) {
		hp_up_free(s);
		hp_upstream_fail(c, "out of memory");
		return -1;
	}
	s->st = c->up.streams->open(c->up.arg, key, &hp_st_cbs, s, reason, sizeof(reason));
	reason[sizeof(reason) - 1] = '\0';
	if (s->st == NULL) {
		hp_up_free(s);
		hp_upstream_fail(c, reason[0] != '\0' ? reason : "the upstream is unavailable");
		return -1;
	}
	c->us = s;
	return 0;
}

static void
hp_sock_arm(struct hp_sock *s, int r, int w)
{
	if (s->is_st) {
		/* Data waits in the stream: go on taking it when reading again. */
		s->rarmed = r;
		if (r && s->st != NULL && (evbuffer_get_length(SOPS(s)->input(s->st)) > 0 ||
		    SOPS(s)->eof(s->st)))
			event_active(s->rev, EV_TIMEOUT, 0);
		return;
	}
	if (r != s->rarmed) {
		if (r)
			event_add(s->rev, NULL);
		else
			event_del(s->rev);
		s->rarmed = r;
	}
	if (w != s->warmed) {
		if (w)
			event_add(s->wev, NULL);
		else
			event_del(s->wev);
		s->warmed = w;
	}
}

static void
hp_sock_werr(struct hp_sock *s)
{
	s->werr = 1;
	evbuffer_drain(s->out, evbuffer_get_length(s->out));
}

/* Write what is queued; returns the bytes written or -1 on error. */
static ssize_t
hp_sock_flush(struct hp_sock *s)
{
	struct evbuffer_iovec ev[HP_IOV];
	struct iovec iov[HP_IOV];
	struct msghdr m;
	size_t want;
	ssize_t n, total = 0;
	int i, nv;

	if (s->is_st)
		return s->st != NULL ? (ssize_t)SOPS(s)->write(s->st, s->out) : -1;
	while (evbuffer_get_length(s->out) > 0) {
		nv = evbuffer_peek(s->out, -1, NULL, ev, HP_IOV);
		if (nv > HP_IOV)
			nv = HP_IOV;
		for (i = 0, want = 0; i < nv; i++) {
			iov[i].iov_base = ev[i].iov_base;
			iov[i].iov_len = ev[i].iov_len;
			want += ev[i].iov_len;
		}
		memset(&m, 0, sizeof(m));
		m.msg_iov = iov;
		m.msg_iovlen = nv;
		if ((n = sendmsg(s->fd, &m, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			log_debug("%s: fd %d: %s", __func__, s->fd, strerror(errno));
			return -1;
		}
		evbuffer_drain(s->out, n);
		total += n;
		if ((size_t)n < want)
			break;	/* the socket buffer is full */
	}
	return total;
}

/* Send now if nothing is queued, queue the rest. Errors are noted on the
 * socket and handled by hp_settle(). */
static void
hp_send(struct hp_sock *s, const char *p, size_t len)
{
	ssize_t n;

	if (s->werr || s->wshut || len == 0)
		return;
	if (evbuffer_get_length(s->out) == 0 && !s->connecting && !s->is_st &&
	    (s->c->hp->batch.flushing || s->c->hp->batch.ev == NULL || len >= HP_DIRECT_MIN)) {
		while ((n = send(s->fd, p, len, MSG_NOSIGNAL)) == -1 && errno == EINTR)
			;
		if (n == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				log_debug("%s: fd %d: %s", __func__, s->fd, strerror(errno));
				s->werr = 1;
				return;
			}
			n = 0;
		}
		p += n;
		len -= n;
		if (len == 0)
			return;
	}
	if (evbuffer_add(s->out, p, len) == -1)
		hp_sock_werr(s);
	hp_note_peak(s->c);
}

static void
hp_flush_sock(struct hp_conn *c, struct hp_sock *s)
{
	ssize_t n;

	if ((n = hp_sock_flush(s)) == -1)
		hp_sock_werr(s);
	else if (n > 0 && s == &c->cl)
		c->wrote = 1;
}

/* --- responses made here --- */

/* A whole response made here: closes the connection after it if last. */
static void
hp_answer(struct hp_conn *c, int code, const char *text, const char *headers,
    const char *ctype, const char *body, size_t bodylen, int last)
{
	char head[1024];
	const char *conn = "";
	int n;

	if (last)
		conn = "Connection: close\r\n";
	else if (c->rp.http_major == 1 && c->rp.http_minor == 0)
		conn = "Connection: keep-alive\r\n";
	if (body == NULL)
		bodylen = 0;
	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\n%s%s\r\n",
	    code, text, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
	    bodylen, headers ? headers : "", conn);
	if (n < 0 || (size_t)n >= sizeof(head)) {
		n = snprintf(head, sizeof(head), "HTTP/1.1 500 Internal Server Error\r\n"
		    "Content-Length: 0\r\nConnection: close\r\n\r\n");
		body = NULL;
		c->t.must_close = 1;
	}
	hp_send(&c->cl, head, n);
	if (body != NULL && !c->t.req_head)
		hp_send(&c->cl, body, bodylen);
}

/* A text/plain page saying msg; headers: more header lines, or NULL. */
static void
hp_respond_h(struct hp_conn *c, int code, const char *text, const char *headers,
    const char *msg, int last)
{
	char body[320];
	int bl;

	bl = snprintf(body, sizeof(body), "%s%s\n",
	    strncmp(msg, "kbridge:", 8) == 0 ? "" : "kbridge: ", msg);
	if (bl < 0)
		return;
	if ((size_t)bl >= sizeof(body)) {
		bl = sizeof(body) - 1;
		body[bl - 1] = '\n';
	}
	hp_answer(c, code, text, headers, "text/plain", body, bl, last);
}

static void
hp_respond(struct hp_conn *c, int code, const char *text, const char *msg, int last)
{
	hp_respond_h(c, code, text, NULL, msg, last);
}

/* Refuse the request and close the connection. */
static void
hp_client_error(struct hp_conn *c, int code)
{
	switch (code) {
	case 405:
		hp_respond(c, code, "Method Not Allowed", "CONNECT is not served here", 1);
		break;
	case 431:
		hp_respond(c, code, "Request Header Fields Too Large",
		    "the request head is too large", 1);
		break;
	case 500:
		hp_respond(c, code, "Internal Server Error", "out of memory", 1);
		break;
	default:
		hp_respond(c, 400, "Bad Request", "malformed HTTP request", 1);
		break;
	}
	hp_closing(c);
}

/* A connection passed to the app (hp_pass()) that cannot reach it: the
 * client gets a reset, as when nothing is intercepted. */
static void
hp_pass_fail(struct hp_conn *c, const char *why)
{
	struct linger l = { 1, 0 };

	log_warnx("cannot pass a connection to the app: %s", why);
	(void)setsockopt(c->cl.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	hp_up_free(c->us);
	c->us = NULL;
	c->state = HP_DONE;
}

/* The upstream is gone: answer 502 saying why (with the header lines
 * headers, or NULL) if the client has seen nothing yet (and drop the rest
 * of the request body), otherwise cut the client off. */
static void
hp_upstream_fail_h(struct hp_conn *c, const char *why, const char *headers)
{
	char reason[256];

	if (c->state == HP_TUNNEL) {
		hp_pass_fail(c, why);	/* no HTTP to answer in */
		return;
	}
	snprintf(reason, sizeof(reason), "%s", why);
	hp_up_free(c->us);
	c->us = NULL;
	if (c->t.resp_started) {
		log_debug("%s: after response bytes: %s", __func__, reason);
		hp_closing(c);
		return;
	}
	log_info("502 for %s %s: %s", c->hbuf, c->hbuf + c->url_off, reason);
	c->t.discard = 1;
	/* A client waiting for 100 Continue may never send the body. */
	if (c->t.expect && !c->t.req_done)
		c->t.must_close = 1;
	c->t.resp_keep = c->t.req_keep && !c->t.must_close;
	hp_respond_h(c, 502, "Bad Gateway", headers, reason, !c->t.resp_keep);
	c->t.resp_started = 1;
	c->t.resp_done = 1;
}

static void
hp_upstream_fail(struct hp_conn *c, const char *why)
{
	hp_upstream_fail_h(c, why, NULL);
}

/* --- request head --- */

static int
hp_hput(struct hp_conn *c, const char *s, size_t n)
{
	size_t need = c->hlen + n, cap;
	char *nb;

	if (need > HP_MAX_HEADER_BYTES) {
		c->t.herr = 431;
		return -1;
	}
	if (need > c->hcap) {
		for (cap = c->hcap ? c->hcap : 1024; cap < need; cap *= 2)
			;
		if (cap > HP_MAX_HEADER_BYTES)
			cap = HP_MAX_HEADER_BYTES;
		if ((nb = realloc(c->hbuf, cap)) == NULL) {
			c->t.herr = 500;
			return -1;
		}
		c->hbuf = nb;
		c->hcap = cap;
	}
	memcpy(c->hbuf + c->hlen, s, n);
	c->hlen += n;
	return 0;
}

static int
hp_req_begin(llhttp_t *p)
{
	struct hp_conn *c = p->data;

	hp_timer_set(c, c->hp->head_ms);
	return 0;
}

static int
hp_req_span(llhttp_t *p, const char *at, size_t n)
{
	struct hp_conn *c = p->data;

	return c->t.head_done ? 0 : hp_hput(c, at, n);
}

static int
hp_req_method_complete(llhttp_t *p)
{
	struct hp_conn *c = p->data;

	if (hp_hput(c, "", 1) == -1)
		return -1;
	c->url_off = c->hlen;
	return 0;
}

static int
hp_req_url_complete(llhttp_t *p)
{
	return hp_hput(p->data, "", 1);
}

static int
hp_req_field(llhttp_t *p, const char *at, size_t n)
{
	struct hp_conn *c = p->data;

	/* Trailers stay in the body, which is forwarded as it came. */
	if (c->t.head_done)
		return 0;
	if (!c->t.hfield) {
		if (c->nhdr == HP_MAX_HEADERS) {
			c->t.herr = 431;
			return -1;
		}
		c->hoff[c->nhdr][0] = c->hlen;
		c->t.hfield = 1;
	}
	return hp_hput(c, at, n);
}

/* llhttp's loose mode lets spaces and empty names through; a proxy must not. */
static int
hp_token(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	while (n-- > 0)
		if (!kb_http_tchar(*s++))
			return 0;
	return 1;
}

static int
hp_req_field_complete(llhttp_t *p)
{
	struct hp_conn *c = p->data;

	if (c->t.head_done)
		return 0;
	c->t.hfield = 0;
	if (!hp_token(c->hbuf + c->hoff[c->nhdr][0], c->hlen - c->hoff[c->nhdr][0]))
		return -1;
	if (hp_hput(c, "", 1) == -1)
		return -1;
	c->hoff[c->nhdr][1] = c->hlen;
	return 0;
}

static int
hp_req_value_complete(llhttp_t *p)
{
	struct hp_conn *c = p->data;

	if (c->t.head_done)
		return 0;
	while (c->hlen > c->hoff[c->nhdr][1] &&
	    (c->hbuf[c->hlen - 1] == ' ' || c->hbuf[c->hlen - 1] == '\t'))
		c->hlen--;
	if (hp_hput(c, "", 1) == -1)
		return -1;
	c->nhdr++;
	return 0;
}

static int
hp_req_headers_complete(llhttp_t *p)
{
	struct hp_conn *c = p->data;

	c->t.req_keep = llhttp_should_keep_alive(p);
	/* Stop here so that the caller learns where the body starts. */
	return HPE_PAUSED;
}

static int
hp_req_message_complete(llhttp_t *p)
{
	struct hp_conn *c = p->data;

	c->t.req_done = 1;
	return HPE_PAUSED;
}

static const llhttp_settings_t hp_req_settings = {
	.on_message_begin = hp_req_begin,
	.on_method = hp_req_span,
	.on_method_complete = hp_req_method_complete,
	.on_url = hp_req_span,
	.on_url_complete = hp_req_url_complete,
	.on_header_field = hp_req_field,
	.on_header_field_complete = hp_req_field_complete,
	.on_header_value = hp_req_span,
	.on_header_value_complete = hp_req_value_complete,
	.on_headers_complete = hp_req_headers_complete,
	.on_message_complete = hp_req_message_complete,
};

/* Hop-by-hop headers are for this proxy, not the upstream (RFC 9110 7.6.1). */
static int
hp_hop_by_hop(const char *name, int upgrade)
{
	switch (strlen(name)) {
	case 2:
		return strcasecmp(name, "te") == 0;
	case 7:
		return strcasecmp(name, "trailer") == 0 ||
		    (!upgrade && strcasecmp(name, "upgrade") == 0);
	case 10:
		return strcasecmp(name, "connection") == 0 ||
		    strcasecmp(name, "keep-alive") == 0;
	case 16:
		return strcasecmp(name, "proxy-connection") == 0;
	}
	return 0;
}

static int
hp_is_mark(const char *name)
{
	return strlen(name) == sizeof(H1H2_PROTO_HEADER) - 1 &&
	    strcasecmp(name, H1H2_PROTO_HEADER) == 0;
}

/* Headers that Connection may not remove: dropping the framing would let
 * the body be read as another request upstream. */
static int
hp_protected(const char *name, int upgrade)
{
	return strcasecmp(name, "content-length") == 0 ||
	    strcasecmp(name, "transfer-encoding") == 0 ||
	    strcasecmp(name, "host") == 0 ||
	    (upgrade && strcasecmp(name, "upgrade") == 0);
}

/* Drop the headers that a Connection header names. */
static void
hp_conn_tokens(const char *v, const struct hp_header *h, size_t nh, uint8_t *drop,
    int upgrade)
{
	const char *t, *e;
	size_t len, j;

	while (*v != '\0') {
		v += strspn(v, " \t,");
		t = v;
		v += strcspn(v, ",");
		for (e = v; e > t && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		if ((len = e - t) == 0)
			continue;
		for (j = 0; j < nh; j++)
			if (!drop[j] && strncasecmp(h[j].name, t, len) == 0 &&
			    h[j].name[len] == '\0' && !hp_protected(h[j].name, upgrade))
				drop[j] = 1;
	}
}

static char *
hp_put(char *o, const char *s)
{
	size_t n = strlen(s);

	memcpy(o, s, n);
	return o + n;
}

/* Queue the request head for the upstream, minus hop-by-hop headers. */
static int
hp_emit_head(struct hp_conn *c, const struct hp_header *h, size_t nh)
{
	uint8_t drop[HP_MAX_HEADERS];
	struct evbuffer_iovec v;
	size_t i, j, added = c->rt.add != NULL ? evbuffer_get_length(c->rt.add) : 0;
	char *o;
	int upgrade = c->t.req_upgrade;

	for (i = 0; i < nh; i++) {
		/* a client's kbridge-upstream-proto is not the sidecar's (h1h2.h) */
		drop[i] = hp_hop_by_hop(h[i].name, upgrade) || hp_is_mark(h[i].name);
		for (j = 0; j < c->rt.ndrop && !drop[i]; j++)
			drop[i] = strcasecmp(h[i].name, c->rt.drop[j]) == 0;
	}
	for (i = 0; i < nh; i++)
		if (strcasecmp(h[i].name, "connection") == 0)
			hp_conn_tokens(h[i].value, h, nh, drop, upgrade);
	/* hbuf holds each string plus a NUL; the head adds at most 2 bytes
	 * per header, 10 to the request line and 26 at the end. */
	if (evbuffer_reserve_space(c->us->out, c->hlen + 2 * nh + 64 + added, &v, 1) < 1)
		return -1;
	o = v.iov_base;
	o = hp_put(o, c->hbuf);
	*o++ = ' ';
	o = hp_put(o, c->hbuf + c->url_off);
	o = hp_put(o, " HTTP/");
	*o++ = '0' + c->rp.http_major % 10;
	*o++ = '.';
	*o++ = '0' + c->rp.http_minor % 10;
	o = hp_put(o, "\r\n");
	for (i = 0; i < nh; i++) {
		if (drop[i])
			continue;
		o = hp_put(o, h[i].name);
		o = hp_put(o, ": ");
		o = hp_put(o, h[i].value);
		o = hp_put(o, "\r\n");
	}
	if (added > 0)
		o += evbuffer_copyout(c->rt.add, o, added);
	if (upgrade)
		o = hp_put(o, "Connection: upgrade\r\n");
	else if (c->t.req_keep && c->rp.http_major == 1 && c->rp.http_minor == 0)
		o = hp_put(o, "Connection: keep-alive\r\n");
	else if (!c->t.req_keep)
		/* The client closes after this response: so does the upstream,
		 * and its response says so (the response head is passed on as is). */
		o = hp_put(o, "Connection: close\r\n");
	o = hp_put(o, "\r\n");
	v.iov_len = o - (char *)v.iov_base;
	return evbuffer_commit_space(c->us->out, &v, 1);
}

/* Reuse the kept-alive upstream if it serves this key, else open one. */
static int
hp_up_get(struct hp_conn *c, uint64_t key)
{
	char reason[256];
	int fd;

	if (c->idle != NULL) {
		/* No liveness probe here (a syscall per request): an idle upstream
		 * that closes or talks is dropped by its read event, and a request
		 * that loses the race is retried once if it may be (t.reused). */
		if (c->idle->key == key) {
			c->us = c->idle;
			c->idle = NULL;
			c->t.reused = 1;
			if (c->us->connecting)	/* a silent client's, opened early */
				hp_timer_set(c, c->hp->connect_ms);
			return 0;
		}
		hp_up_free(c->idle);
		c->idle = NULL;
	}
	reason[0] = '\0';
	if (key != 0 && c->up.streams != NULL)
		return hp_st_get(c, key);
	fd = c->up.open(c->up.arg, key, reason, sizeof(reason));
	reason[sizeof(reason) - 1] = '\0';
	if (fd == -1) {
		hp_upstream_fail(c, reason[0] != '\0' ? reason : "the upstream is unavailable");
		return -1;
	}
	if ((c->us = hp_up_new(c, fd, key)) == NULL) {
		hp_upstream_fail(c, "out of memory");
		return -1;
	}
	hp_timer_set(c, c->hp->connect_ms);
	return 0;
}

static void
hp_header_list(struct hp_conn *c, struct hp_header *h)
{
	size_t i;

	for (i = 0; i < c->nhdr; i++) {
		h[i].name = c->hbuf + c->hoff[i][0];
		h[i].value = c->hbuf + c->hoff[i][1];
	}
}

/* A kept-alive upstream may close just as we reuse it: a request that
 * can be sent again goes to a fresh connection then (RFC 9112 9.3.1).
 * Returns -1 if this one cannot. */
static int
hp_retry(struct hp_conn *c)
{
	struct hp_header h[HP_MAX_HEADERS];
	uint64_t key = c->us->key;

	if (!c->t.reused || !c->t.req_done || c->t.body_fwd || !c->t.idempotent ||
	    c->t.resp_started)
		return -1;
	log_debug("%s: %s %s", __func__, c->hbuf, c->hbuf + c->url_off);
	hp_up_free(c->us);
	c->us = NULL;
	c->t.reused = 0;
	if (hp_up_get(c, key) == -1)
		return 0;
	llhttp_reset(&c->sp);
	hp_header_list(c, h);
	if (hp_emit_head(c, h, c->nhdr) == -1)
		hp_upstream_fail(c, "out of memory");
	return 0;
}

const char *
hp_header(const struct hp_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

void
hp_route_reply(struct hp_route *r, int status, const char *reason, const char *headers,
    const char *ctype, const char *body)
{
	struct hp_conn *c;

	if (r == NULL)
		return;
	c = r->c;
	if (c->t.replied)
		return;
	/* A client waiting for 100 Continue may never send the body. */
	if (c->t.expect)
		c->t.must_close = 1;
	c->t.replied = 1;
	hp_answer(c, status, reason, headers, ctype, body, body ? strlen(body) : 0,
	    !c->t.req_keep || c->t.must_close);
}

int
hp_route_drop(struct hp_route *r, const char *name)
{
	if (r == NULL || r->ndrop == HP_ROUTE_DROP)
		return -1;
	r->drop[r->ndrop++] = name;
	return 0;
}

int
hp_route_add(struct hp_route *r, const char *name, const char *value)
{
	if (r == NULL || strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL)
		return -1;
	if (r->add == NULL && (r->add = evbuffer_new()) == NULL)
		return -1;
	return evbuffer_add_printf(r->add, "%s: %s\r\n", name, value) < 0 ? -1 : 0;
}

/* An HTTP/1.1 request offering to upgrade to h2c (RFC 7540 3.2). */
static int
hp_h2c_offer(struct hp_conn *c, const struct hp_request *req)
{
	const char *u = hp_header(req, "upgrade");

	return req->upgrade && c->rp.http_major == 1 && c->rp.http_minor == 1 &&
	    u != NULL && strcasecmp(u, "h2c") == 0 && hp_header(req, "http2-settings") != NULL;
}

/* The h2c offer goes to up.h2c with the bytes read after the head (p, len:
 * the rest of the chunk being parsed, or, parsing cin, all of cin past the
 * head). 0: c is done, as after hp_hand_h2(); -1: not taken. */
static int
hp_hand_h2c(struct hp_conn *c, const struct hp_request *req, const char *p, size_t len)
{
	struct evbuffer_iovec v;
	uint64_t bodylen = 0;
	size_t q = evbuffer_get_length(c->cin), off;
	const char *b;

	/* A client waiting for 100 Continue would send its body after the
	 * 101, where the preface belongs: served as HTTP/1.1 instead. */
	if (c->up.h2c == NULL || (c->rp.flags & F_CHUNKED) || c->t.expect)
		return -1;
	if (c->rp.flags & F_CONTENT_LENGTH)
		bodylen = c->rp.content_length;
	if (q > 0) {
		/* p is in cin's first chunk: the rest of cin follows it. */
		if (evbuffer_peek(c->cin, -1, NULL, &v, 1) < 1)
			return -1;
		off = p - (const char *)v.iov_base;
		if ((b = (const char *)evbuffer_pullup(c->cin, -1)) == NULL)
			return -1;
		p = b + off;
		len = q - off;
	}
	if (c->up.h2c(c->hp->base, c->cl.fd, req, bodylen, p, len, &c->up) == -1)
		return -1;
	if (!c->hp->h2c_logged) {
		c->hp->h2c_logged = 1;	/* logged once */
		log_info("HTTP/1.1 Upgrade: h2c: taken here, routed per stream");
	}
	hp_sock_arm(&c->cl, 0, 0);
	c->cl.fd = -1;
	c->handed = 1;
	c->state = HP_DONE;
	return 0;
}

static void
hp_request_start(struct hp_conn *c, const char *rest, size_t restlen)
{
	struct hp_header h[HP_MAX_HEADERS];
	struct hp_request req;
	uint64_t key;
	size_t i;

	c->t.head_done = 1;
	c->state = HP_XFER;
	evtimer_del(c->timer);
	hp_header_list(c, h);
	for (i = 0; i < c->nhdr; i++)
		if (strcasecmp(h[i].name, "expect") == 0 &&
		    strcasecmp(h[i].value, "100-continue") == 0)
			c->t.expect = 1;
	switch (c->rp.method) {
	case HTTP_CONNECT:
		hp_client_error(c, 405);
		return;
	case HTTP_HEAD:
		c->t.req_head = 1;
		/* FALLTHROUGH */
	case HTTP_GET:
	case HTTP_PUT:
	case HTTP_DELETE:
	case HTTP_OPTIONS:
	case HTTP_TRACE:
		c->t.idempotent = 1;
		break;
	default:
		break;
	}
	c->t.req_upgrade = c->rp.upgrade != 0;
	memset(&req, 0, sizeof(req));
	req.method = c->hbuf;
	req.target = c->hbuf + c->url_off;
	req.headers = h;
	req.nheaders = c->nhdr;
	req.upgrade = c->t.req_upgrade;
	if (hp_h2c_offer(c, &req)) {
		if (hp_hand_h2c(c, &req, rest, restlen) == 0)
			return;
		/* Served as HTTP/1.1: a tunnel would take the later requests
		 * out of routing. */
		c->t.req_upgrade = req.upgrade = 0;
		(void)hp_route_drop(&c->rt, "http2-settings");
	}
	key = c->up.route(c->up.arg, &req, &c->rt);
	if (c->t.replied) {
		/* Not logged here: the target may hold a secret (a preview token). */
		/* The answer is queued; the body, if any, is read and dropped. */
		c->t.discard = 1;
		c->t.resp_keep = c->t.req_keep && !c->t.must_close;
		c->t.resp_started = 1;
		c->t.resp_done = 1;
		return;
	}
	log_debug("%s: %s %s -> %llu", __func__, req.method, req.target, (unsigned long long)key);
	if (hp_up_get(c, key) == -1)
		return;
	if (key == 0)
		c->t.sent_us = applat_now_us();
	llhttp_reset(&c->sp);
	if (hp_emit_head(c, h, c->nhdr) == -1)
		hp_upstream_fail(c, "out of memory");
}

/* --- request parsing --- */

static size_t
hp_parse_head(struct hp_conn *c, const char *p, size_t len)
{
	enum llhttp_errno e;
	size_t n;

	e = llhttp_execute(&c->rp, p, len);
	n = e == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&c->rp) - p);
	c->head_bytes += n;
	if (c->head_bytes > HP_MAX_HEADER_BYTES)
		c->t.herr = 431;
	else if (e == HPE_OK)
		return n;
	else if (e == HPE_PAUSED) {
		hp_request_start(c, p + n, len - n);
		return n;
	}
	log_debug("%s: refused: %d %s", __func__, c->t.herr,
	    c->t.herr ? "" : llhttp_get_error_reason(&c->rp));
	hp_client_error(c, c->t.herr ? c->t.herr : 400);
	return len;
}

static size_t
hp_parse_body(struct hp_conn *c, const char *p, size_t len)
{
	enum llhttp_errno e;
	size_t n;

	if (llhttp_get_errno(&c->rp) == HPE_PAUSED)
		llhttp_resume(&c->rp);
	e = llhttp_execute(&c->rp, p, len);
	n = e == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&c->rp) - p);
	if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
		log_debug("%s: bad body: %s", __func__, llhttp_get_error_reason(&c->rp));
		if (c->t.resp_started)
			hp_closing(c);
		else {
			hp_up_free(c->us);
			c->us = NULL;
			hp_client_error(c, 400);
		}
		return len;
	}
	if (c->us != NULL && n > 0) {
		hp_send(c->us, p, n);
		c->t.body_fwd = 1;
	}
	return n;
}

/* Take client bytes as the state allows; returns how many were taken. */
static size_t
hp_consume(struct hp_conn *c, const char *p, size_t len)
{
	size_t n;

	switch (c->state) {
	case HP_HEAD:
		n = hp_parse_head(c, p, len);
		/* Also when no byte is left: a bodyless request ends here. */
		if (c->state == HP_XFER)
			return n + hp_parse_body(c, p + n, len - n);
		return c->state == HP_HEAD ? n : len;
	case HP_XFER:
		return c->t.req_done ? 0 : hp_parse_body(c, p, len);
	case HP_TUNNEL:
		hp_send(c->us, p, len);
		return len;
	default:
		return len;
	}
}

static void
hp_process_cin(struct hp_conn *c)
{
	struct evbuffer_iovec v;
	size_t n;

	while (evbuffer_peek(c->cin, -1, NULL, &v, 1) > 0) {
		n = hp_consume(c, v.iov_base, v.iov_len);
		evbuffer_drain(c->cin, n);
		if (n < v.iov_len)
			break;
	}
}

/* --- not HTTP/1: to the app untouched --- */

#define HP_H2_LINE	"PRI * HTTP/2.0\r\n"	/* how the HTTP/2 preface starts */

enum { HP_S_START, HP_S_METHOD, HP_S_TARGET0, HP_S_TARGET, HP_S_CR09, HP_S_VERSION, HP_S_CR };

static int
hp_sniff_line(const struct hp_sniff *s)
{
	if (s->pri == sizeof(HP_H2_LINE) - 1)
		return HP_K_H2;
	return s->major == '1' ? HP_K_HTTP1 : HP_K_OTHER;
}

/* Feed the next bytes of a connection: the verdict once the first request
 * line (RFC 9112 3: method SP target SP HTTP/d.d CRLF, after empty lines)
 * is whole or cannot be one, else HP_K_MORE. s->n is then where the line
 * ends. Rejects early, so that a binary protocol is not kept waiting. */
static int
hp_sniff(struct hp_sniff *s, const char *p, size_t len)
{
	static const char ver[] = "HTTP/d.d";
	unsigned char ch;
	size_t i;

	for (i = 0; i < len; i++) {
		ch = p[i];
		if (s->pri == s->n && s->pri < sizeof(HP_H2_LINE) - 1 && ch == HP_H2_LINE[s->pri])
			s->pri++;
		s->n++;
		switch (s->st) {
		case HP_S_START:
			if (ch == '\r' || ch == '\n')
				break;
			if (!kb_http_tchar(ch))
				return ch == 0x16 ? HP_K_TLS : HP_K_OTHER; /* a TLS handshake record */
			s->st = HP_S_METHOD;
			break;
		case HP_S_METHOD:
			if (ch == ' ')
				s->st = HP_S_TARGET0;
			else if (!kb_http_tchar(ch))
				return HP_K_OTHER;
			break;
		case HP_S_TARGET0:
			if (ch <= ' ' || ch == 0x7f)
				return HP_K_OTHER;
			s->st = HP_S_TARGET;
			break;
		case HP_S_TARGET:
			if (ch == ' ')
				s->st = HP_S_VERSION;
			else if (ch == '\r')
				s->st = HP_S_CR09;
			else if (ch == '\n')
				return HP_K_HTTP09;
			else if (ch < ' ' || ch == 0x7f)
				return HP_K_OTHER;
			break;
		case HP_S_CR09:
			return ch == '\n' ? HP_K_HTTP09 : HP_K_OTHER;
		case HP_S_VERSION:
			if (s->ver == sizeof(ver) - 1) {
				if (ch == '\n')
					return hp_sniff_line(s);
				if (ch != '\r')
					return HP_K_OTHER;
				s->st = HP_S_CR;
				break;
			}
			if (ver[s->ver] == 'd' ? !(ch >= '0' && ch <= '9') : ch != ver[s->ver])
				return HP_K_OTHER;
			if (s->ver == 5)
				s->major = ch;
			s->ver++;
			break;
		case HP_S_CR:
			return ch == '\n' ? hp_sniff_line(s) : HP_K_OTHER;
		}
	}
	return HP_K_MORE;
}

/* The sniffed line is one llhttp takes (a method it knows, say). */
static int
hp_line_parses(struct hp_conn *c)
{
	llhttp_settings_t set;
	llhttp_t p;
	const char *line;

	llhttp_settings_init(&set);
	llhttp_init(&p, HTTP_REQUEST, &set);
	if ((line = (const char *)evbuffer_pullup(c->cin, c->sn.n)) == NULL)
		return 0;
	return llhttp_execute(&p, line, c->sn.n) == HPE_OK;
}

/* The HTTP/2 preface: the client socket and what it sent so far go to
 * up.h2, which routes each stream. 0: c is done, without its done
 * callback (up.arg went along); -1: up.h2 refused it. */
static int
hp_hand_h2(struct hp_conn *c)
{
	size_t n = evbuffer_get_length(c->cin);
	const void *p = evbuffer_pullup(c->cin, -1);

	if (c->up.h2 == NULL || (p == NULL && n > 0) ||
	    c->up.h2(c->hp->base, c->cl.fd, p, n, &c->up) == -1)
		return -1;
	if (!c->hp->h2_logged) {
		c->hp->h2_logged = 1;	/* logged once */
		log_info("HTTP/2 connection (prior knowledge): routed per stream");
	}
	hp_sock_arm(&c->cl, 0, 0);
	c->cl.fd = -1;
	c->handed = 1;
	c->sniff = 0;
	c->state = HP_DONE;
	return 0;
}

/* Join the client to the app (key 0, the silent client's connection if
 * open), with what the client sent so far: from now on a tunnel. Closes
 * the client, as a reset, if the app cannot be reached. */
static void
hp_pass(struct hp_conn *c, int kind)
{
	char reason[256];
	unsigned bit = 1u << kind;
	int fd;

	if (kind == HP_K_H2 && hp_hand_h2(c) == 0)
		return;
	if (!(c->hp->passed_kinds & bit)) {
		c->hp->passed_kinds |= bit;	/* logged once per kind */
		log_info("connection is not HTTP/1 (%s): passed to the app untouched",
		    hp_kind_name[kind]);
	}
	c->sniff = 0;
	c->state = HP_TUNNEL;
	if (c->idle != NULL && c->idle->key == 0) {
		c->us = c->idle;
		c->idle = NULL;
	} else {
		hp_up_free(c->idle);
		c->idle = NULL;
		reason[0] = '\0';
		fd = c->up.open(c->up.arg, 0, reason, sizeof(reason));
		reason[sizeof(reason) - 1] = '\0';
		if (fd == -1 || (c->us = hp_up_new(c, fd, 0)) == NULL) {
			hp_pass_fail(c, reason[0] != '\0' ? reason : "out of memory");
			return;
		}
	}
	if (c->us->connecting)
		hp_timer_set(c, c->hp->connect_ms);
	else
		evtimer_del(c->timer);
	if (evbuffer_add_buffer(c->us->out, c->cin) == -1)
		hp_sock_werr(c->us);
}

/* Client bytes while sniffing: they wait in cin until the verdict. */
static void
hp_sniff_input(struct hp_conn *c, const char *p, size_t len)
{
	int k = hp_sniff(&c->sn, p, len);

	if (evbuffer_add(c->cin, p, len) == -1) {
		c->state = HP_DONE;
		return;
	}
	if (k == HP_K_MORE && c->sn.n < HP_MAX_HEADER_BYTES)
		return;
	if (k == HP_K_MORE)
		k = HP_K_HTTP1;	/* a request line too long to tell: llhttp refuses it (431) */
	else if (k == HP_K_HTTP1 && !hp_line_parses(c))
		k = HP_K_OTHER;
	c->sniff = 0;
	if (k != HP_K_HTTP1)
		hp_pass(c, k);
	else
		hp_process_cin(c);
}

/* The client has been silent for sniff_ms: open its app connection,
 * which joins the two if the app speaks first (hp_read_cb()). */
static void
hp_probe(struct hp_conn *c)
{
	char reason[256];
	int fd;

	c->probed = 1;
	hp_timer_set(c, c->hp->idle_ms > c->hp->sniff_ms ? c->hp->idle_ms - c->hp->sniff_ms : 1);
	if (c->idle != NULL)
		return;
	reason[0] = '\0';
	if ((fd = c->up.open(c->up.arg, 0, reason, sizeof(reason))) == -1) {
		log_debug("%s: %s", __func__, reason);
		return;
	}
	c->idle = hp_up_new(c, fd, 0);
}

static void
hp_client_input(struct hp_conn *c, const char *p, size_t len)
{
	size_t n;

	if (c->sniff) {
		hp_sniff_input(c, p, len);
		return;
	}
	if (evbuffer_get_length(c->cin) > 0) {
		if (evbuffer_add(c->cin, p, len) == -1)
			c->state = HP_DONE;
		else
			hp_process_cin(c);
		return;
	}
	while (len > 0 && (n = hp_consume(c, p, len)) > 0) {
		p += n;
		len -= n;
	}
	if (len > 0 && evbuffer_add(c->cin, p, len) == -1)
		c->state = HP_DONE;
}

/* The client sent its last byte while we wait for a request: flush what
 * is queued and close; a partial head is dropped. */
static void
hp_eof_idle(struct hp_conn *c)
{
	if (c->sniff && evbuffer_get_length(c->cin) > 0)
		hp_pass(c, HP_K_OTHER);	/* not a whole request line: the app decides */
	else if (c->head_bytes == 0)
		hp_closing(c);
	else
		c->state = HP_DONE;
}

static void
hp_client_eof(struct hp_conn *c)
{
	c->cl.rdeof = 1;
	/* After a whole request, it and any pipelined ones are answered first. */
	if (c->state == HP_HEAD)
		hp_eof_idle(c);
	else if (c->state == HP_XFER && !c->t.req_done)
		c->state = HP_DONE;
}

/* --- response --- */

/* llhttp would read a body announced by Content-Length in any response;
 * these never have one (RFC 9112 6.3). */
static int
hp_resp_headers_complete(llhttp_t *p)
{
	struct hp_conn *c = p->data;
	int st = p->status_code;

	return c->t.req_head || st < 200 || st == 204 || st == 304;
}

static int
hp_resp_message_complete(llhttp_t *p)
{
	struct hp_conn *c = p->data;

	if (p->status_code == 101) {
		if (!c->t.req_upgrade)
			return -1;
		c->t.switching = 1;
		return HPE_PAUSED;
	}
	/* Interim responses go through; the real one follows. */
	if (p->status_code < 200)
		return 0;
	c->t.resp_keep = llhttp_should_keep_alive(p);
	c->t.resp_done = 1;
	if (c->t.sent_us != 0)
		applat_note(&c->hp->lat, c->t.sent_us);
	return HPE_PAUSED;
}

/* A response header called H1H2_PROTO_HEADER is the sidecar's mark for
 * h1h2.c (kbridge-upstream-proto): an upstream must not send it on. The
 * response goes on verbatim, so it is renamed in place instead, before the
 * bytes go (its last byte, in the read buffer, becomes 'x'); a name split
 * over reads is renamed when its bytes so far are the whole mark. */
static int
hp_resp_field(llhttp_t *p, const char *at, size_t n)
{
	static const char mark[] = H1H2_PROTO_HEADER;
	struct hp_conn *c = p->data;
	size_t k = c->t.mark_n;

	if (k >= sizeof(mark))
		return 0;
	if (n > sizeof(mark) - 1 - k || strncasecmp(at, mark + k, n) != 0) {
		c->t.mark_n = sizeof(mark);
		return 0;
	}
	c->t.mark_n = (unsigned char)(k + n);
	/* at is in hp->rbuf (hp_upstream_input's p), which is ours to change */
	if (k + n == sizeof(mark) - 1 && at >= c->hp->rbuf &&
	    at + n <= c->hp->rbuf + HP_READ_SIZE)
		c->hp->rbuf[at + n - 1 - c->hp->rbuf] = 'x';
	return 0;
}

static int
hp_resp_field_complete(llhttp_t *p)
{
	((struct hp_conn *)p->data)->t.mark_n = 0;
	return 0;
}

static const llhttp_settings_t hp_resp_settings = {
	.on_header_field = hp_resp_field,
	.on_header_field_complete = hp_resp_field_complete,
	.on_headers_complete = hp_resp_headers_complete,
	.on_message_complete = hp_resp_message_complete,
};

static void
hp_tunnel_start(struct hp_conn *c, const char *p, size_t len)
{
	log_debug("%s: %s", __func__, c->hbuf + c->url_off);
	c->state = HP_TUNNEL;
	hp_up_free(c->idle);
	c->idle = NULL;
	hp_send(&c->cl, p, len);
	/* Bytes the client sent after its request belong to the new protocol. */
	if (evbuffer_get_length(c->cin) > 0 && !c->us->werr &&
	    evbuffer_add_buffer(c->us->out, c->cin) == -1)
		hp_sock_werr(c->us);
}

static void
hp_upstream_input(struct hp_conn *c, const char *p, size_t len)
{
	enum llhttp_errno e;
	size_t n;

	if (c->state == HP_TUNNEL) {
		hp_send(&c->cl, p, len);
		return;
	}
	if (c->state != HP_XFER || c->t.resp_done) {
		c->t.us_bad = 1;
		return;
	}
	e = llhttp_execute(&c->sp, p, len);
	n = e == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&c->sp) - p);
	if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
		log_debug("%s: bad response: %s", __func__, llhttp_get_error_reason(&c->sp));
		if (!c->t.resp_started) {
			/* Marked for h1h2.c (H1H2_PROTO_HEADER): what the app
			 * answered this HTTP/1 request was not HTTP/1 (an
			 * h2c-only app's HTTP/2 frames, say); a preview sends
			 * the request again as h2c. The text is for people. */
			hp_upstream_fail_h(c, "the upstream sent an invalid HTTP response",
			    H1H2_PROTO_HEADER ": " H1H2_NOT_HTTP1 "\r\n");
			return;
		}
		hp_send(&c->cl, p, n);
		hp_closing(c);
		return;
	}
	if (n > 0) {
		hp_send(&c->cl, p, n);
		c->t.resp_started = 1;
	}
	if (c->t.switching)
		hp_tunnel_start(c, p + n, len - n);
	else if (c->t.resp_done && n < len)
		c->t.us_bad = 1;	/* bytes after the response */
}

static void
hp_upstream_eof(struct hp_conn *c, int err, const char *why)
{
	char reason[256];

	c->us->rdeof = 1;
	if (c->state == HP_TUNNEL) {
		if (err)
			c->state = HP_DONE;
		return;
	}
	if (c->state != HP_XFER || c->t.resp_done) {
		c->t.us_bad = 1;
		return;
	}
	if (c->t.resp_started) {
		/* A response delimited by the close ends here. */
		if (!err)
			(void)llhttp_finish(&c->sp);
		if (c->t.resp_done)
			c->t.resp_keep = 0;
		else
			hp_closing(c);
		return;
	}
	if (hp_retry(c) == 0)
		return;
	if (why != NULL)
		snprintf(reason, sizeof(reason), "kbridge: %s", why);
	else if (err)
		snprintf(reason, sizeof(reason), "the upstream connection failed: %s",
		    strerror(err));
	else
		snprintf(reason, sizeof(reason),
		    "the upstream closed the connection without answering");
	hp_upstream_fail(c, reason);
}

/* --- connection --- */

static void
hp_head_reset(struct hp_conn *c)
{
	c->state = HP_HEAD;
	memset(&c->t, 0, sizeof(c->t));
	c->rt.ndrop = 0;
	if (c->rt.add != NULL)
		evbuffer_drain(c->rt.add, evbuffer_get_length(c->rt.add));
	c->hlen = c->head_bytes = c->nhdr = 0;
	c->url_off = 0;
	if (c->hcap > HP_HBUF_KEEP) {
		free(c->hbuf);
		c->hbuf = NULL;
		c->hcap = 0;
	}
	llhttp_reset(&c->rp);
	c->wrote = 0;
	hp_timer_set(c, c->hp->idle_ms);
}

static void
hp_closing(struct hp_conn *c)
{
	c->state = HP_CLOSING;
	hp_up_free(c->us);
	hp_up_free(c->idle);
	c->us = c->idle = NULL;
	c->wrote = 0;
	hp_timer_set(c, c->hp->linger_ms);
}

static void
hp_txn_end(struct hp_conn *c)
{
	int keep = c->t.req_keep && c->t.resp_keep && !c->t.must_close;
	struct hp_sock *u = c->us;

	c->us = NULL;
	if (u != NULL) {
		if (keep && !c->t.us_bad && !u->rdeof && !u->werr && c->idle == NULL &&
		    evbuffer_get_length(u->out) == 0)
			c->idle = u;
		else
			hp_up_free(u);
	}
	if (!keep) {
		hp_closing(c);
		return;
	}
	hp_head_reset(c);
	hp_process_cin(c);
	if (c->state == HP_HEAD && c->cl.rdeof)
		hp_eof_idle(c);
}

static void
hp_tunnel_shut(struct hp_conn *c)
{
	struct hp_sock *u = c->us;

	if (u->werr) {
		c->state = HP_DONE;
		return;
	}
	if (c->cl.rdeof && !u->wshut && !u->connecting && evbuffer_get_length(u->out) == 0) {
		if (u->is_st) {
			if (u->st != NULL)
				SOPS(u)->shutdown(u->st);
		} else
			shutdown(u->fd, SHUT_WR);
		u->wshut = 1;
	}
	if (u->rdeof && !c->cl.wshut && evbuffer_get_length(c->cl.out) == 0) {
		shutdown(c->cl.fd, SHUT_WR);
		c->cl.wshut = 1;
	}
	if (u->wshut && c->cl.wshut)
		c->state = HP_DONE;
}

/* Which sockets to read and write, from the state and the queues. */
static void
hp_arm(struct hp_conn *c)
{
	size_t clq = evbuffer_get_length(c->cl.out), cinq = evbuffer_get_length(c->cin);
	size_t usq = c->us != NULL ? evbuffer_get_length(c->us->out) : 0;
	int cr = 0, ur = 0;

	hp_note_peak(c);
	switch (c->state) {
	case HP_HEAD:
		cr = clq < HP_HIGH_WATER;
		break;
	case HP_XFER:
		/* After the request, read on only to see EOF or the next head. */
		cr = c->t.req_done ? cinq < HP_MAX_HEADER_BYTES : usq < HP_HIGH_WATER;
		ur = !c->t.resp_done && clq < HP_HIGH_WATER;
		break;
	case HP_TUNNEL:
		cr = usq < HP_HIGH_WATER;
		ur = clq < HP_HIGH_WATER;
		break;
	case HP_CLOSING:
		cr = 1;
		break;
	case HP_DONE:
		break;
	}
	/* Queued bytes of a pending connection go out at the end of this
	 * iteration; only what that leaves behind waits for writability. */
	hp_sock_arm(&c->cl, cr && !c->cl.rdeof, clq > 0 && !c->bm.pending);
	if (c->us != NULL)
		hp_sock_arm(c->us, ur && !c->us->rdeof && !c->us->connecting,
		    c->us->connecting || (usq > 0 && !c->bm.pending));
	if (c->idle != NULL)
		hp_sock_arm(c->idle, 1, 0);
}

static void
hp_finish(struct hp_conn *c)
{
	struct hp_upstreams up = c->up;
	uintptr_t id = (uintptr_t)c;
	int handed = c->handed;

	hp_conn_free(c);
	if (up.done != NULL && !handed)
		up.done(up.arg, (struct hp_conn *)id);
}

/* batch.h's callbacks: what a waiting connection has queued goes out with
 * its group, skipping a socket that cannot take it now. */
static void
hp_batch_sock(struct batch *b, struct hp_sock *s)
{
	if (s == NULL || s->werr || s->warmed || s->connecting ||
	    evbuffer_get_length(s->out) == 0)
		return;
	if (s->is_st) {
		/* Into the session's output now: no syscall of its own. */
		hp_flush_sock(s->c, s);
		return;
	}
	batch_add(b, s->fd, s->out, s);
}

static void
hp_batch_collect(struct batch *b, struct batch_member *m)
{
	struct hp_conn *c = HP_CONN_OF_BM(m);

	hp_batch_sock(b, &c->cl);
	hp_batch_sock(b, c->us);
}

/* What a socket does not take stays queued and waits for writability. */
static void
hp_batch_sent(void *arg, ssize_t res)
{
	struct hp_sock *s = arg;

	if (res > 0) {
		evbuffer_drain(s->out, res);
		if (s == &s->c->cl)
			s->c->wrote = 1;
	} else if (res != -EAGAIN && res != -EWOULDBLOCK) {
		log_debug("%s: fd %d: %s", __func__, s->fd, strerror((int)-res));
		hp_sock_werr(s);
		return;
	}
	if (evbuffer_get_length(s->out) > 0)
		hp_sock_arm(s, s->rarmed, 1);
}

static void
hp_batch_settle(struct batch_member *m)
{
	hp_settle(HP_CONN_OF_BM(m));
}

static const struct batch_ops hp_batch_ops = {
	.collect = hp_batch_collect,
	.sent = hp_batch_sent,
	.settle = hp_batch_settle,
};

/* Leave c's writes for the end of this loop iteration: 1, or 0 to write now. */
static int
hp_defer(struct hp_conn *c)
{
	if (evbuffer_get_length(c->cl.out) == 0 && (c->us == NULL || c->us->connecting ||
	    evbuffer_get_length(c->us->out) == 0))
		return 0;
	return batch_defer(&c->hp->batch, &c->bm);
}

/* Run after every event: move between states, write, decide what to wait for. */
static void
hp_settle(struct hp_conn *c)
{
	while (c->state == HP_XFER && c->t.resp_done) {
		if (c->t.req_done)
			hp_txn_end(c);
		else if (!c->t.discard || c->t.must_close)
			hp_closing(c);	/* answered before the body was all read */
		else
			break;
	}
	if (c->state != HP_DONE && !hp_defer(c)) {
		if (!c->cl.warmed && evbuffer_get_length(c->cl.out) > 0)
			hp_flush_sock(c, &c->cl);
		if (c->us != NULL && !c->us->warmed && !c->us->connecting &&
		    evbuffer_get_length(c->us->out) > 0)
			hp_flush_sock(c, c->us);
	}
	if (c->state != HP_DONE && c->cl.werr)
		c->state = HP_DONE;
	if (c->state == HP_TUNNEL)
		hp_tunnel_shut(c);
	if (c->state == HP_CLOSING && evbuffer_get_length(c->cl.out) == 0) {
		if (c->cl.rdeof)
			c->state = HP_DONE;
		else if (!c->cl.wshut) {
			/* Lingering close: the client reads our answer, then EOF. */
			shutdown(c->cl.fd, SHUT_WR);
			c->cl.wshut = 1;
		}
	}
	if (c->state == HP_DONE) {
		hp_finish(c);
		return;
	}
	hp_arm(c);
}

static void
hp_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hp_sock *s = arg;
	struct hp_conn *c = s->c;
	struct hp_proxy *hp = c->hp;
	ssize_t n;

	(void)what;
	hp->lat.events++;
	if (s == c->idle && !c->sniff) {
		/* A kept-alive upstream that talks or closes is of no more use. */
		hp_up_free(s);
		c->idle = NULL;
		return;
	}
	n = recv(fd, hp->rbuf, sizeof(hp->rbuf), 0);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (s == c->idle) {
		/* The silent client's app connection: a greeting joins them;
		 * refused or closed, it is of no more use. */
		if (n > 0) {
			s->connecting = 0;
			hp_pass(c, HP_K_APP_FIRST);
			if (c->state == HP_TUNNEL)
				hp_upstream_input(c, hp->rbuf, n);
		} else {
			hp_up_free(s);
			c->idle = NULL;
		}
		hp_settle(c);
		return;
	}
	if (s == &c->cl) {
		if (n > 0)
			hp_client_input(c, hp->rbuf, n);
		else if (n == 0)
			hp_client_eof(c);
		else {
			log_debug("%s: client: %s", __func__, strerror(errno));
			c->state = HP_DONE;
		}
	} else {
		if (n > 0)
			hp_upstream_input(c, hp->rbuf, n);
		else
			hp_upstream_eof(c, n == 0 ? 0 : errno, NULL);
	}
	hp_settle(c);
}

static void
hp_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hp_sock *s = arg;
	struct hp_conn *c = s->c;
	char reason[160];
	socklen_t len = sizeof(int);
	int err = 0;

	(void)what;
	if (s->connecting) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0) {
			snprintf(reason, sizeof(reason), "cannot connect to the upstream: %s",
			    strerror(err));
			hp_upstream_fail(c, reason);
			hp_settle(c);
			return;
		}
		s->connecting = 0;
		evtimer_del(c->timer);
	}
	hp_flush_sock(c, s);
	hp_settle(c);
}

static void
hp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hp_conn *c = arg;

	(void)fd;
	(void)what;
	if ((c->state == HP_XFER || c->state == HP_TUNNEL) && c->us != NULL && c->us->connecting) {
		hp_upstream_fail(c, "timed out connecting to the upstream");
		hp_settle(c);
		return;
	}
	if (c->state == HP_HEAD && c->sniff && !c->probed) {
		hp_probe(c);
		hp_arm(c);
		return;
	}
	if (c->state != HP_HEAD && c->state != HP_CLOSING)
		return;
	/* A slow reader still taking the last response is not idle. */
	if (c->wrote) {
		c->wrote = 0;
		hp_timer_set(c, c->state == HP_HEAD ? c->hp->idle_ms : c->hp->linger_ms);
		return;
	}
	log_debug("%s: %s", __func__, c->state == HP_HEAD ? "idle" : "linger");
	c->state = HP_DONE;
	hp_settle(c);
}

/* fd is closed with the connection; on failure it stays the caller's. */
struct hp_conn *
hp_conn_new(struct hp_proxy *hp, int fd, const struct hp_upstreams *up)
{
	struct hp_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warnx("%s: out of memory", __func__);
		return NULL;
	}
	c->hp = hp;
	c->up = *up;
	c->rt.c = c;
	if (hp_sock_init(c, &c->cl, fd) == -1 ||
	    (c->cin = evbuffer_new()) == NULL ||
	    (c->timer = evtimer_new(hp->base, hp_timer_cb, c)) == NULL) {
		log_warnx("%s: out of memory", __func__);
		c->cl.fd = -1;
		hp_conn_free(c);
		return NULL;
	}
	llhttp_init(&c->rp, HTTP_REQUEST, &hp_req_settings);
	llhttp_init(&c->sp, HTTP_RESPONSE, &hp_resp_settings);
	c->rp.data = c->sp.data = c;
	hp_head_reset(c);
	if (up->pass) {
		c->sniff = 1;
		if (c->hp->sniff_ms < c->hp->idle_ms)
			hp_timer_set(c, c->hp->sniff_ms);
		else
			c->probed = 1;
	}
	hp_arm(c);
	return c;
}

struct hp_proxy *
hp_proxy_new(struct event_base *base)
{
	struct hp_proxy *hp;

	if ((hp = calloc(1, sizeof(*hp))) == NULL) {
		log_warnx("%s: out of memory", __func__);
		return NULL;
	}
	hp->base = base;
	hp->idle_ms = 60 * 1000;
	hp->head_ms = 30 * 1000;
	hp->linger_ms = 10 * 1000;
	hp->connect_ms = 10 * 1000;
	hp->sniff_ms = 1000;
	if (batch_init(&hp->batch, base, &hp_batch_ops) == -1)
		log_warnx("%s: out of memory: writes are not grouped", __func__);
	return hp;
}

void
hp_proxy_free(struct hp_proxy *hp)
{
	if (hp == NULL)
		return;
	batch_fini(&hp->batch);
	free(hp);
}

const struct applat *
hp_applat(const struct hp_proxy *hp)
{
	return &hp->lat;
}

void
hp_fini(void)
{
	batch_shutdown();
}

int
hp_conn_idle(const struct hp_conn *c)
{
	return c->state == HP_HEAD && c->head_bytes == 0 && evbuffer_get_length(c->cin) == 0 &&
	    evbuffer_get_length(c->cl.out) == 0;
}

void
hp_conn_free(struct hp_conn *c)
{
	if (c == NULL)
		return;
	if (c->hp != NULL)
		batch_remove(&c->hp->batch, &c->bm);
	hp_up_free(c->us);
	hp_up_free(c->idle);
	hp_sock_fini(&c->cl);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->cin != NULL)
		evbuffer_free(c->cin);
	if (c->rt.add != NULL)
		evbuffer_free(c->rt.add);
	free(c->hbuf);
	free(c);
}
