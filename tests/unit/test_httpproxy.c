/* The sidecar's HTTP proxy (agent/httpproxy.c) in one process, on one
 * event_base: test clients on loopback TCP talk to hp_conn objects whose
 * upstreams are small HTTP servers written here. "app" (key 0) echoes the
 * request line and the headers it received; "icpt" (key 1) does the same as
 * an intercept would; key 2 cannot be opened; key 3 is a port nobody
 * listens on. Socket buffers are small so that backpressure shows. Every
 * wait is bounded by an event-loop timeout; checks are on outcomes, never
 * on timings.
 *
 *   client --TCP--> [hp_conn] --key 0 (no x-dev)--------> app (or rawapp)
 *                             --key 1 (x-dev: alice)----> icpt
 *                             --key 2 (x-dev: nobody)---> open() fails
 *                             --key 3 (x-dev: refused)--> connect() refused
 *
 * The proxy runs as the sidecar does (pass): what is not HTTP/1 goes to
 * key 0 untouched; test_pass() points key 0 at "rawapp", which echoes
 * whatever it gets (and may speak first).
 */
#include "../../agent/applat.c"
#include "../../agent/batch.c"
#include "../../agent/httpproxy.c"

#include <sys/queue.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>

#include <cjson/cJSON.h>

#include "conn.h"
#include "evloop.h"
#include "ok.h"

#define KiB		1024
#define MiB		(1024 * 1024)
#define BIG		(32 * MiB)
#define SOCKBUF		(128 * KiB)
#define PEAK_BOUND	(HP_HIGH_WATER + 2 * HP_READ_SIZE)
#define FNV0		14695981039346656037ULL


/* --- data --- */

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	while (n-- > 0) {
		h ^= *s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static uint64_t
xorshift(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *st = x;
}

static void
prng_fill(uint64_t *st, char *buf, size_t n)
{
	uint64_t x = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if ((i & 7) == 0)
			x = xorshift(st);
		buf[i] = (char)(x >> ((i & 7) * 8));
	}
}

static void
sockbufs(int fd)
{
	int n = SOCKBUF;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof(n));
}

static void
sappend(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
	if (*len + n >= cap)
		n = cap - 1 - *len;
	memcpy(buf + *len, p, n);
	*len += n;
	buf[*len] = '\0';
}

static int
starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* --- upstream servers --- */

struct server;

struct sconn {
	struct server *srv;
	struct bufferevent *bev;
	llhttp_t p;
	LIST_ENTRY(sconn) entry;
	char method[16], url[512], hdrs[8192];
	size_t mlen, ulen, hlen;
	int paused_at;		/* 1: head complete, 2: message complete */
	int nreq;
	int in_body, raw, kill, close_after, keep;
	uint64_t body_len, body_hash, raw_len, raw_hash;
	uint64_t dl_left, dl_seed;
};

struct server {
	const char *name;
	struct evconnlistener *l;
	int port, accepts, requests, eofs;
	LIST_HEAD(, sconn) conns;
	uint64_t stall_at;	/* stop reading a body after this many bytes */
	struct sconn *stalled, *dl;
	uint64_t dl_queued;
	char last_head[8800];
};

static struct server app = { .name = "app" }, icpt = { .name = "icpt" };

/* Key 0 for test_pass(): records every byte, echoes it, may greet first. */
static struct {
	struct evconnlistener *l;
	int port, accepts, use;	/* use: 1 for key 0, 2: key 0 refuses */
	const char *greet;
	struct evbuffer *got;
	struct bufferevent *bev;	/* the last connection */
} rawapp;
static char genbuf[64 * KiB];

static void
sconn_free(struct sconn *sc)
{
	if (sc->srv->stalled == sc)
		sc->srv->stalled = NULL;
	if (sc->srv->dl == sc)
		sc->srv->dl = NULL;
	LIST_REMOVE(sc, entry);
	bufferevent_free(sc->bev);
	free(sc);
}

static void
server_gen(struct sconn *sc)
{
	struct evbuffer *out = bufferevent_get_output(sc->bev);
	size_t n;

	while (sc->dl_left > 0 && evbuffer_get_length(out) < 512 * KiB) {
		n = sc->dl_left < sizeof(genbuf) ? sc->dl_left : sizeof(genbuf);
		prng_fill(&sc->dl_seed, genbuf, n);
		evbuffer_add(out, genbuf, n);
		sc->dl_left -= n;
		sc->srv->dl_queued += n;
	}
}

static void
swrite(struct sconn *sc, const char *s)
{
	bufferevent_write(sc->bev, s, strlen(s));
}

static int
s_begin(llhttp_t *p)
{
	struct sconn *sc = p->data;

	sc->mlen = sc->ulen = sc->hlen = 0;
	sc->method[0] = sc->url[0] = sc->hdrs[0] = '\0';
	sc->body_len = sc->raw_len = 0;
	sc->body_hash = sc->raw_hash = FNV0;
	return 0;
}

static int
s_method(llhttp_t *p, const char *at, size_t n)
{
	struct sconn *sc = p->data;

	sappend(sc->method, sizeof(sc->method), &sc->mlen, at, n);
	return 0;
}

static int
s_url(llhttp_t *p, const char *at, size_t n)
{
	struct sconn *sc = p->data;

	sappend(sc->url, sizeof(sc->url), &sc->ulen, at, n);
	return 0;
}

static int
s_hspan(llhttp_t *p, const char *at, size_t n)
{
	struct sconn *sc = p->data;

	sappend(sc->hdrs, sizeof(sc->hdrs), &sc->hlen, at, n);
	return 0;
}

static int
s_field_complete(llhttp_t *p)
{
	return s_hspan(p, ": ", 2);
}

static int
s_value_complete(llhttp_t *p)
{
	return s_hspan(p, "\n", 1);
}

static int
s_headers_complete(llhttp_t *p)
{
	struct sconn *sc = p->data;

	sc->paused_at = 1;
	if (strcmp(sc->url, "/continue") == 0)
		swrite(sc, "HTTP/1.1 100 Continue\r\n\r\n");
	return HPE_PAUSED;
}

static int
s_body(llhttp_t *p, const char *at, size_t n)
{
	struct sconn *sc = p->data;

	sc->body_len += n;
	sc->body_hash = fnv(sc->body_hash, at, n);
	if (sc->srv->stall_at && sc->body_len >= sc->srv->stall_at) {
		sc->srv->stall_at = 0;
		sc->srv->stalled = sc;
		bufferevent_disable(sc->bev, EV_READ);
	}
	return 0;
}

static int
s_message_complete(llhttp_t *p)
{
	struct sconn *sc = p->data;

	sc->paused_at = 2;
	sc->keep = llhttp_should_keep_alive(p);
	return HPE_PAUSED;
}

static const llhttp_settings_t s_settings = {
	.on_message_begin = s_begin,
	.on_method = s_method,
	.on_url = s_url,
	.on_header_field = s_hspan,
	.on_header_field_complete = s_field_complete,
	.on_header_value = s_hspan,
	.on_header_value_complete = s_value_complete,
	.on_headers_complete = s_headers_complete,
	.on_body = s_body,
	.on_message_complete = s_message_complete,
};

/* The rest of /forge-split's answer, a moment later: another read. */
static void
forge_rest(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	swrite(arg, "ream-Proto: not-http1\r\nContent-Length: 3\r\n\r\nok\n");
}

static void
server_respond(struct sconn *sc)
{
	struct server *s = sc->srv;
	char body[9000], head[512];
	int bl, hl, minor = sc->p.http_minor;
	const char *u = sc->url, *extra = "";

	s->requests++;
	sc->nreq++;
	snprintf(s->last_head, sizeof(s->last_head), "%s %s\n%s", sc->method, u, sc->hdrs);
	if (strcmp(u, "/ws") == 0) {
		swrite(sc, "HTTP/1.1 101 Switching Protocols\r\n"
		    "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
		sc->raw = 1;
		return;
	}
	if (strcmp(u, "/close-now") == 0 ||
	    (strcmp(u, "/close-if-reused") == 0 && sc->nreq > 1)) {
		sc->kill = 1;
		return;
	}
	if (strcmp(u, "/download") == 0) {
		hl = snprintf(head, sizeof(head),
		    "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG);
		bufferevent_write(sc->bev, head, hl);
		sc->dl_left = BIG;
		sc->dl_seed = 42;
		s->dl = sc;
		server_gen(sc);
		return;
	}
	if (strcmp(u, "/forge") == 0) {
		/* an app that forges the sidecar's mark (h1h2.h) */
		swrite(sc, "HTTP/1.1 502 Bad Gateway\r\nKbridge-Upstream-Proto: not-http1\r\n"
		    "Content-Length: 3\r\n\r\nno\n");
	} else if (strcmp(u, "/forge-split") == 0) {
		struct timeval tv = { 0, 50000 };

		swrite(sc, "HTTP/1.1 502 Bad Gateway\r\nX-A: 1\r\nkbridge-upst");
		event_base_once(base, -1, EV_TIMEOUT, forge_rest, sc, &tv);
	} else if (strcmp(u, "/h2frames") == 0) {
		/* an h2c-only app's answer to HTTP/1.1: its SETTINGS frame */
		bufferevent_write(sc->bev, "\0\0\0\4\0\0\0\0\0", 9);
	} else if (strcmp(u, "/204") == 0)
		swrite(sc, "HTTP/1.1 204 No Content\r\n\r\n");
	else if (strcmp(u, "/304") == 0) {
		/* A length for the entity, but no body: the proxy must not wait. */
		swrite(sc, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n"
		    "Content-Length: 50\r\n\r\n");
	} else if (strcmp(u, "/close-mid") == 0) {
		swrite(sc, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial");
		sc->close_after = 1;
	} else if (strcmp(u, "/eof-body") == 0) {
		swrite(sc, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close");
		sc->close_after = 1;
	} else {
		if (sc->body_len > 0 || strcmp(u, "/continue") == 0 || strcmp(u, "/upload") == 0)
			bl = snprintf(body, sizeof(body),
			    "len=%llu hash=%016llx rawlen=%llu rawhash=%016llx\n",
			    (unsigned long long)sc->body_len, (unsigned long long)sc->body_hash,
			    (unsigned long long)sc->raw_len, (unsigned long long)sc->raw_hash);
		else
			bl = snprintf(body, sizeof(body), "%s:%s %s\n%s", s->name, sc->method, u,
			    sc->hdrs);
		if (bl >= (int)sizeof(body))
			bl = sizeof(body) - 1;
		if (minor == 0 && sc->keep)
			extra = "Connection: keep-alive\r\n";
		if (strcmp(u, "/srv-close") == 0) {
			extra = "Connection: close\r\n";
			sc->keep = 0;
		}
		if (strcmp(u, "/then-close") == 0)
			sc->keep = 0;	/* closes unannounced, as on a keep-alive timeout */
		hl = snprintf(head, sizeof(head), "HTTP/1.%d 200 OK\r\nContent-Type: text/plain\r\n"
		    "Content-Length: %d\r\n%s\r\n", minor, bl, extra);
		bufferevent_write(sc->bev, head, hl);
		if (strcmp(sc->method, "HEAD") != 0)
			bufferevent_write(sc->bev, body, bl);
	}
	if (!sc->keep)
		sc->close_after = 1;
}

static void
sconn_read(struct bufferevent *bev, void *arg)
{
	struct sconn *sc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;
	enum llhttp_errno e;
	const char *d;
	size_t avail, n;
	int kick = 0;

	for (;;) {
		if (sc->raw) {
			bufferevent_write_buffer(bev, in);	/* echo */
			return;
		}
		avail = evbuffer_peek(in, -1, NULL, &v, 1) > 0 ? v.iov_len : 0;
		if (avail == 0 && !kick)
			return;
		d = avail > 0 ? v.iov_base : "";
		kick = 0;
		sc->paused_at = 0;
		if (llhttp_get_errno(&sc->p) == HPE_PAUSED)
			llhttp_resume(&sc->p);
		e = llhttp_execute(&sc->p, d, avail);
		n = e == HPE_OK ? avail : (size_t)(llhttp_get_error_pos(&sc->p) - d);
		if (sc->in_body) {
			sc->raw_len += n;
			sc->raw_hash = fnv(sc->raw_hash, d, n);
		}
		evbuffer_drain(in, n);
		if (e == HPE_OK)
			continue;
		if (e != HPE_PAUSED) {
			sconn_free(sc);
			return;
		}
		if (sc->paused_at == 1) {
			/* A bodyless request completes on an empty execute. */
			sc->in_body = 1;
			kick = 1;
			continue;
		}
		sc->in_body = 0;
		server_respond(sc);
		if (sc->kill) {
			sconn_free(sc);
			return;
		}
	}
}

static void
sconn_write(struct bufferevent *bev, void *arg)
{
	struct sconn *sc = arg;

	if (sc->dl_left > 0)
		server_gen(sc);
	if (sc->close_after && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		sconn_free(sc);
}

static void
sconn_event(struct bufferevent *bev, short what, void *arg)
{
	struct sconn *sc = arg;

	(void)bev;
	if (sc->raw && (what & BEV_EVENT_EOF) && !sc->close_after) {
		/* The client half-closed: we can still talk, then close. */
		swrite(sc, "bye\n");
		sc->close_after = 1;
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		sc->srv->eofs++;
		sconn_free(sc);
	}
}

static void
server_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct server *s = arg;
	struct sconn *sc = calloc(1, sizeof(*sc));

	(void)l;
	(void)sa;
	(void)salen;
	sockbufs(fd);
	sc->srv = s;
	sc->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	llhttp_init(&sc->p, HTTP_REQUEST, &s_settings);
	sc->p.data = sc;
	bufferevent_setcb(sc->bev, sconn_read, sconn_write, sconn_event, sc);
	bufferevent_setwatermark(sc->bev, EV_WRITE, 256 * KiB, 0);
	bufferevent_enable(sc->bev, EV_READ | EV_WRITE);
	LIST_INSERT_HEAD(&s->conns, sc, entry);
	s->accepts++;
}

static int
bound_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	getsockname(fd, (struct sockaddr *)&sin, &len);
	return ntohs(sin.sin_port);
}

static void
server_start(struct server *s)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	LIST_INIT(&s->conns);
	s->l = evconnlistener_new_bind(base, server_accept, s,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64, (struct sockaddr *)&sin, sizeof(sin));
	s->port = bound_port(evconnlistener_get_fd(s->l));
}

static void
server_stop(struct server *s)
{
	while (!LIST_EMPTY(&s->conns))
		sconn_free(LIST_FIRST(&s->conns));
	evconnlistener_free(s->l);
}


/* --- the raw app --- */

static void
rawapp_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg;
	evbuffer_add(rawapp.got, evbuffer_pullup(in, -1), evbuffer_get_length(in));
	bufferevent_write_buffer(bev, in);	/* echo */
}

static void
rawapp_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (rawapp.bev == bev)
			rawapp.bev = NULL;
		bufferevent_free(bev);
	}
}

static void
rawapp_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	rawapp.accepts++;
	rawapp.bev = bev;
	bufferevent_setcb(bev, rawapp_read, NULL, rawapp_event, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (rawapp.greet != NULL)
		bufferevent_write(bev, rawapp.greet, strlen(rawapp.greet));
}

static void
rawapp_start(void)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rawapp.got = evbuffer_new();
	rawapp.l = evconnlistener_new_bind(base, rawapp_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64, (struct sockaddr *)&sin, sizeof(sin));
	rawapp.port = bound_port(evconnlistener_get_fd(rawapp.l));
}

static void
rawapp_stop(void)
{
	if (rawapp.bev != NULL)
		bufferevent_free(rawapp.bev);
	evconnlistener_free(rawapp.l);
	evbuffer_free(rawapp.got);
}

/* --- routing --- */

static int closed_fd = -1, closed_port;
static int nopens[5], nroutes, nproxy, ndone;
static int stuck_peer = -1;	/* holds a socketpair whose other end never becomes writable */

static uint64_t
t_route(void *arg, const struct hp_request *req, struct hp_route *r)
{
	size_t i;

	(void)arg;
	nroutes++;
	for (i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, "x-dev") != 0)
			continue;
		if (strcmp(req->headers[i].value, "reply") == 0) {
			hp_route_reply(r, 302, "Found", "Location: /\r\nSet-Cookie: t=1; HttpOnly\r\n",
			    "text/html", "<p>moved</p>\n");
			return 0;
		}
		if (strcmp(req->headers[i].value, "edit") == 0) {
			ok(hp_route_drop(r, "x-kbridge-intercept-id") == 0);
			ok(hp_route_drop(r, "cookie") == 0);
			ok(hp_route_add(r, "x-kbridge-intercept-id", "abc") == 0);
			ok(hp_route_add(r, "Cookie", "keep=1") == 0);
			ok(hp_route_add(r, "bad", "a\r\nb: c") == -1);
			return 0;
		}
		if (strcmp(req->headers[i].value, "alice") == 0)
			return 1;
		if (strcmp(req->headers[i].value, "nobody") == 0)
			return 2;
		if (strcmp(req->headers[i].value, "refused") == 0)
			return 3;
		if (strcmp(req->headers[i].value, "stuck") == 0)
			return 4;
	}
	return 0;
}

/* A socket that never becomes writable, like a connect() that never ends. */
static int
stuck_socket(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == -1)
		return -1;
	while (write(sv[0], genbuf, sizeof(genbuf)) > 0)
		;
	if (stuck_peer != -1)
		close(stuck_peer);
	stuck_peer = sv[1];
	return sv[0];
}

static int
t_open(void *arg, uint64_t key, char *reason, size_t len)
{
	struct sockaddr_in sin;
	int fd, port;

	(void)arg;
	nopens[key]++;
	switch (key) {
	case 0:
		port = rawapp.use == 2 ? closed_port : rawapp.use ? rawapp.port : app.port;
		break;
	case 1:
		port = icpt.port;
		break;
	case 2:
		snprintf(reason, len, "kbridge: the intercepting workstation's local port "
		    "refused the connection");
		return -1;
	case 4:
		return stuck_socket();
	default:
		port = closed_port;
		break;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1) {
		snprintf(reason, len, "socket: %s", strerror(errno));
		return -1;
	}
	sockbufs(fd);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 && errno != EINPROGRESS) {
		snprintf(reason, len, "connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* --- clients --- */

struct cresp {
	int status, complete;
	char head[2048], body[9000];
	size_t hlen, blen;
	uint64_t total, hash;
};

struct client {
	int fd;
	struct bufferevent *bev;
	struct hp_conn *hc;
	int proxy_done, eof;
	llhttp_t p;
	int raw;		/* after 101 */
	struct evbuffer *rawin;
	int nresp, ninterim;
	unsigned head_mask;	/* responses (by index) to HEAD requests */
	struct cresp r[12];
	/* chunked upload */
	int uploading, up_final;
	uint64_t up_left, up_seed, chunk_seed, up_gen, up_hash, up_raw_len, up_raw_hash;
};

#define MAXCLIENTS 32
static struct client *clients[MAXCLIENTS];
static struct hp_proxy *tp;	/* the proxy under test */
static int lfd = -1;	/* where test clients connect; accepted ends go to hp_conn */

static void
t_done(void *arg, struct hp_conn *c)
{
	int i;

	(void)arg;
	ndone++;
	for (i = 0; i < MAXCLIENTS; i++)
		if (clients[i] != NULL && clients[i]->hc == c) {
			clients[i]->hc = NULL;
			clients[i]->proxy_done = 1;
		}
}

/* up.h2c: takes the connection (answers 299 itself and closes it) if
 * h2c_take, else refuses it; notes what it was given. */
static int h2c_take, h2c_calls;
static uint64_t h2c_bodylen;
static char h2c_target[64], h2c_rest[64];
static size_t h2c_restlen;

static int
t_h2c(struct event_base *b, int fd, const struct hp_request *req, uint64_t bodylen,
    const void *p, size_t len, const struct hp_upstreams *up)
{
	static const char taken[] = "HTTP/1.1 299 Taken\r\nContent-Length: 0\r\n\r\n";

	(void)b;
	h2c_calls++;
	snprintf(h2c_target, sizeof(h2c_target), "%s", req->target);
	h2c_bodylen = bodylen;
	h2c_restlen = len < sizeof(h2c_rest) ? len : sizeof(h2c_rest);
	memcpy(h2c_rest, p, h2c_restlen);
	if (!h2c_take)
		return -1;
	(void)write(fd, taken, sizeof(taken) - 1);
	close(fd);
	up->done(up->arg, NULL);	/* as h2route.c does when its connection ends */
	return 0;
}

static struct hp_upstreams ups = { .route = t_route, .open = t_open, .done = t_done,
    .h2c = t_h2c, .pass = 1 };

static struct cresp *
cur(struct client *cl)
{
	return &cl->r[cl->nresp < 12 ? cl->nresp : 11];
}

static int
c_begin(llhttp_t *p)
{
	memset(cur(p->data), 0, sizeof(struct cresp));
	cur(p->data)->hash = FNV0;
	return 0;
}

static int
c_hspan(llhttp_t *p, const char *at, size_t n)
{
	struct cresp *r = cur(p->data);

	sappend(r->head, sizeof(r->head), &r->hlen, at, n);
	return 0;
}

static int
c_field_complete(llhttp_t *p)
{
	return c_hspan(p, ": ", 2);
}

static int
c_value_complete(llhttp_t *p)
{
	return c_hspan(p, "\n", 1);
}

static int
c_headers_complete(llhttp_t *p)
{
	struct client *cl = p->data;

	cur(cl)->status = p->status_code;
	return p->status_code < 200 || p->status_code == 204 || p->status_code == 304 ||
	    (cl->nresp < 32 && (cl->head_mask & (1u << cl->nresp)));
}

static int
c_body(llhttp_t *p, const char *at, size_t n)
{
	struct cresp *r = cur(p->data);

	sappend(r->body, sizeof(r->body), &r->blen, at, n);
	r->total += n;
	r->hash = fnv(r->hash, at, n);
	return 0;
}

static int
c_message_complete(llhttp_t *p)
{
	struct client *cl = p->data;

	if (p->status_code < 200 && p->status_code != 101) {
		cl->ninterim++;
		return 0;
	}
	cur(cl)->complete = 1;
	cl->nresp++;
	if (p->status_code == 101) {
		cl->raw = 1;
		return HPE_PAUSED;
	}
	return 0;
}

static const llhttp_settings_t c_settings = {
	.on_message_begin = c_begin,
	.on_header_field = c_hspan,
	.on_header_field_complete = c_field_complete,
	.on_header_value = c_hspan,
	.on_header_value_complete = c_value_complete,
	.on_headers_complete = c_headers_complete,
	.on_body = c_body,
	.on_message_complete = c_message_complete,
};

static void
client_read(struct bufferevent *bev, void *arg)
{
	struct client *cl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;
	enum llhttp_errno e;
	size_t n;

	for (;;) {
		if (cl->raw) {
			evbuffer_add_buffer(cl->rawin, in);
			return;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) <= 0)
			return;
		e = llhttp_execute(&cl->p, v.iov_base, v.iov_len);
		n = e == HPE_OK ? v.iov_len :
		    (size_t)(llhttp_get_error_pos(&cl->p) - (const char *)v.iov_base);
		evbuffer_drain(in, n);
		if (e != HPE_OK && !(e == HPE_PAUSED && cl->raw)) {
			printf("# client: bad response: %s\n", llhttp_errno_name(e));
			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		}
	}
}

static void
client_gen(struct client *cl)
{
	struct evbuffer *out = bufferevent_get_output(cl->bev);
	char hdr[32];
	size_t n;
	int hl;

	while (cl->up_left > 0 && evbuffer_get_length(out) < 256 * KiB) {
		n = 1 + xorshift(&cl->chunk_seed) % (sizeof(genbuf) - 1);
		if (n > cl->up_left)
			n = cl->up_left;
		prng_fill(&cl->up_seed, genbuf, n);
		hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
		evbuffer_add(out, hdr, hl);
		evbuffer_add(out, genbuf, n);
		evbuffer_add(out, "\r\n", 2);
		cl->up_hash = fnv(cl->up_hash, genbuf, n);
		cl->up_raw_hash = fnv(cl->up_raw_hash, hdr, hl);
		cl->up_raw_hash = fnv(cl->up_raw_hash, genbuf, n);
		cl->up_raw_hash = fnv(cl->up_raw_hash, "\r\n", 2);
		cl->up_raw_len += hl + n + 2;
		cl->up_gen += hl + n + 2;
		cl->up_left -= n;
	}
	if (cl->up_left == 0 && !cl->up_final) {
		evbuffer_add(out, "0\r\n\r\n", 5);
		cl->up_raw_hash = fnv(cl->up_raw_hash, "0\r\n\r\n", 5);
		cl->up_raw_len += 5;
		cl->up_gen += 5;
		cl->up_final = 1;
	}
}

static void
client_write(struct bufferevent *bev, void *arg)
{
	struct client *cl = arg;

	(void)bev;
	if (cl->uploading && !cl->up_final)
		client_gen(cl);
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *cl = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (!cl->raw)
			(void)llhttp_finish(&cl->p);	/* a body delimited by EOF */
		cl->eof = 1;
		bufferevent_disable(cl->bev, EV_READ);
	}
}

static struct client *
client_new(void)
{
	struct client *cl = calloc(1, sizeof(*cl));
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int pfd, i;

	getsockname(lfd, (struct sockaddr *)&sin, &len);
	cl->fd = socket(AF_INET, SOCK_STREAM, 0);
	sockbufs(cl->fd);
	if (connect(cl->fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		perror("connect");
	pfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	sockbufs(pfd);
	evutil_make_socket_nonblocking(cl->fd);
	cl->hc = hp_conn_new(tp, pfd, &ups);
	nproxy++;
	cl->bev = bufferevent_socket_new(base, cl->fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(cl->bev, client_read, client_write, client_event, cl);
	bufferevent_setwatermark(cl->bev, EV_WRITE, 128 * KiB, 0);
	bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
	cl->rawin = evbuffer_new();
	llhttp_init(&cl->p, HTTP_RESPONSE, &c_settings);
	cl->p.data = cl;
	for (i = 0; i < MAXCLIENTS; i++)
		if (clients[i] == NULL) {
			clients[i] = cl;
			break;
		}
	return cl;
}

static void
client_free(struct client *cl)
{
	int i;

	for (i = 0; i < MAXCLIENTS; i++)
		if (clients[i] == cl)
			clients[i] = NULL;
	bufferevent_free(cl->bev);
	evbuffer_free(cl->rawin);
	free(cl);
}

static void
client_send(struct client *cl, const char *s)
{
	bufferevent_write(cl->bev, s, strlen(s));
}

static void
client_upload(struct client *cl, const char *path, uint64_t total)
{
	char head[256];

	snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: web.default\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", path);
	client_send(cl, head);
	cl->uploading = 1;
	cl->up_left = total;
	cl->up_seed = 7;
	cl->chunk_seed = 99;
	cl->up_hash = cl->up_raw_hash = FNV0;
	client_gen(cl);
}

static struct client *w_cl;
static int w_n;

static int
pred_resp(void *arg)
{
	(void)arg;
	return w_cl->nresp >= w_n || w_cl->eof;
}

/* Wait for the n-th response (counted from the start) or EOF. */
static int
wait_resp(struct client *cl, int n, int ms)
{
	w_cl = cl;
	w_n = n;
	run_until(pred_resp, NULL, ms);
	return cl->nresp >= n;
}

static int
pred_eof(void *arg)
{
	return ((struct client *)arg)->eof;
}

static int
pred_proxy_done(void *arg)
{
	return ((struct client *)arg)->proxy_done;
}

static int
pred_int_ge(void *arg)
{
	return *(int *)arg >= w_n;
}

static int
pred_raw(void *arg)
{
	return (int)evbuffer_get_length(((struct client *)arg)->rawin) >= w_n;
}

static int
pred_out_empty(void *arg)
{
	return evbuffer_get_length(bufferevent_get_output(((struct client *)arg)->bev)) == 0;
}

static int
pred_no_idle(void *arg)
{
	return ((struct hp_conn *)arg)->idle == NULL;
}

static int
pred_ptr(void *arg)
{
	return *(void **)arg != NULL;
}

/* --- tests --- */

static void
test_routing(void)
{
	struct client *a = client_new(), *b, *c;
	int acc;

	/* One keep-alive connection, requests for app and intercept in turn. */
	client_send(a, "GET /one HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 1, 5000) && a->r[0].status == 200);
	ok(starts(a->r[0].body, "app:GET /one\nHost: web.default\n"));
	client_send(a, "GET /two HTTP/1.1\r\nHost: web.default\r\nX-Dev: alice\r\n\r\n");
	ok(wait_resp(a, 2, 5000) && starts(a->r[1].body, "icpt:GET /two\n"));
	client_send(a, "GET /three HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 3, 5000) && starts(a->r[2].body, "app:GET /three\n"));

	/* The same, pipelined in one write: answers come back in order. */
	client_send(a, "GET /p1 HTTP/1.1\r\nHost: web.default\r\n\r\n"
	    "GET /p2 HTTP/1.1\r\nHost: web.default\r\nx-dev: alice\r\n\r\n"
	    "GET /p3 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 6, 5000));
	ok(starts(a->r[3].body, "app:GET /p1\n"));
	ok(starts(a->r[4].body, "icpt:GET /p2\n"));
	ok(starts(a->r[5].body, "app:GET /p3\n"));
	ok(strstr(a->r[4].body, "x-dev: alice\n") != NULL);
	ok(!a->eof && a->hc != NULL);

	/* Consecutive requests with the same key share one upstream connection. */
	b = client_new();
	acc = app.accepts;
	client_send(b, "GET /r1 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 1, 5000) && starts(b->r[0].body, "app:GET /r1\n"));
	client_send(b, "GET /r2 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 2, 5000) && starts(b->r[1].body, "app:GET /r2\n"));
	ok(app.accepts == acc + 1);

	/* Pipelined requests, then EOF: all are answered before the close. */
	c = client_new();
	client_send(c, "GET /h1 HTTP/1.1\r\nHost: web.default\r\n\r\n"
	    "GET /h2 HTTP/1.1\r\nHost: web.default\r\nX-Dev: alice\r\n\r\n"
	    "GET /h3 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(run_until(pred_out_empty, c, 5000));
	shutdown(c->fd, SHUT_WR);
	ok(run_until(pred_eof, c, 5000) && c->nresp == 3);
	ok(starts(c->r[0].body, "app:GET /h1\n") && starts(c->r[1].body, "icpt:GET /h2\n") &&
	    starts(c->r[2].body, "app:GET /h3\n"));
	client_free(a);
	client_free(b);
	client_free(c);
}

/* Many connections with a request each at the same moment: the proxy
 * sends them on in groups of HP_FLUSH_BATCH (not all at the end of the loop
 * iteration), each group in one system call through io_uring (plain: one
 * sendmsg each, as where io_uring is refused), and every answer reaches the
 * right client. Also the counters the sidecar's event loop paces itself by
 * (pace.h). */
static void
test_groups(int plain)
{
	struct client *cl[20];
	unsigned long groups = tp->batch.groups;
	uint64_t events = tp->lat.events;
	char req[80], want[40];
	int i, good = 0, n = (int)(sizeof(cl) / sizeof(cl[0]));

	printf("# groups, %s\n", plain ? "one sendmsg each" : "io_uring");
	kb_sendmany_plain = plain;
	for (i = 0; i < n; i++)
		cl[i] = client_new();
	run_for(50);	/* connections settle */
	for (i = 0; i < n; i++) {
		snprintf(req, sizeof(req), "GET /g%d HTTP/1.1\r\nHost: web.default\r\n\r\n", i);
		client_send(cl[i], req);
	}
	for (i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "app:GET /g%d\n", i);
		if (wait_resp(cl[i], 1, 5000) && cl[i]->r[0].status == 200 &&
		    starts(cl[i]->r[0].body, want))
			good++;
	}
	ok(good == n);
	ok(tp->batch.groups > groups);
	ok(tp->batch.npending == 0);
	ok(kb_sendmany_uring() == !plain);
	/* what pace.h reads: 20 requests and 20 responses read, and a time
	 * for the app to answer (at least a microsecond, under 5 s) */
	ok(tp->lat.events >= events + 2 * (uint64_t)n);
	ok(applat_wait_us(&tp->lat) > 0 && applat_wait_us(&tp->lat) < 5000000);
	/* only the app's (key 0) answers count: an intercept is far, not busy */
	tp->lat.avg16 = 0;
	client_send(cl[0], "GET /i HTTP/1.1\r\nHost: web.default\r\nX-Dev: alice\r\n\r\n");
	ok(wait_resp(cl[0], 2, 5000) && starts(cl[0]->r[1].body, "icpt:GET /i\n"));
	ok(applat_wait_us(&tp->lat) == 0);
	client_send(cl[0], "GET /a HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(cl[0], 3, 5000) && starts(cl[0]->r[2].body, "app:GET /a\n"));
	ok(tp->lat.avg16 > 0 && applat_wait_us(&tp->lat) == tp->lat.avg16 / 16);
	/* an average the app has not refreshed for 0.1 s no longer counts */
	tp->lat.last_us -= 200 * 1000;
	ok(tp->lat.avg16 > 0 && applat_wait_us(&tp->lat) == 0);
	for (i = 0; i < n; i++)
		client_free(cl[i]);
	kb_sendmany_plain = 0;
}

/* Clients that stop reading while their answers pile up (plain: one
 * sendmsg each): the proxy's writes to them come back short, in the batch
 * of a group too, the rest stays queued, and every answer arrives whole
 * and in order once they read again. */
static void
test_stalled_clients(int plain)
{
	enum { NCL = 4, NREQ = 100 };
	struct client *cl[NCL];
	static char pad[8001], req[8400];
	char want[40];
	int i, k, good = 0;

	printf("# stalled clients, %s\n", plain ? "one sendmsg each" : "io_uring");
	kb_sendmany_plain = plain;
	memset(pad, 'p', sizeof(pad) - 1);
	for (i = 0; i < NCL; i++) {
		cl[i] = client_new();
		bufferevent_disable(cl[i]->bev, EV_READ);
	}
	/* about 800 KiB of answers each: more than both socket buffers hold */
	for (k = 0; k < NREQ; k++)
		for (i = 0; i < NCL; i++) {
			snprintf(req, sizeof(req), "GET /q%d-%d HTTP/1.1\r\nHost: web.default\r\n"
			    "X-Pad: %s\r\n\r\n", i, k, pad);
			client_send(cl[i], req);
		}
	run_for(300);
	for (i = 0; i < NCL; i++) {
		ok(cl[i]->nresp == 0 && cl[i]->hc != NULL && cl[i]->hc->peak > 0);
		bufferevent_enable(cl[i]->bev, EV_READ);
	}
	for (i = 0; i < NCL; i++) {
		if (!wait_resp(cl[i], NREQ, 10000) || cl[i]->nresp != NREQ)
			continue;
		snprintf(want, sizeof(want), "app:GET /q%d-0\n", i);
		if (!starts(cl[i]->r[0].body, want))
			continue;
		for (k = 1; k < 11; k++) {
			snprintf(want, sizeof(want), "app:GET /q%d-%d\n", i, k);
			if (!starts(cl[i]->r[k].body, want))
				break;
		}
		snprintf(want, sizeof(want), "app:GET /q%d-%d\n", i, NREQ - 1);
		if (k == 11 && starts(cl[i]->r[11].body, want) && cl[i]->r[11].status == 200)
			good++;
	}
	ok(good == NCL);
	for (i = 0; i < NCL; i++)
		client_free(cl[i]);
	kb_sendmany_plain = 0;
}

static void
test_bulk(void)
{
	struct client *a = client_new(), *b;
	char want[256];
	uint64_t seed = 42, h = FNV0, sent, left;
	size_t n;

	/* Upload: the upstream stops reading after 1 MiB; the proxy must hold
	 * the client back instead of buffering. */
	app.stall_at = MiB;
	client_upload(a, "/upload", BIG);
	ok(run_until(pred_ptr, &app.stalled, 20000));
	run_for(300);
	sent = a->up_gen - evbuffer_get_length(bufferevent_get_output(a->bev));
	ok(sent < BIG / 2);
	ok(a->hc != NULL && a->hc->peak <= PEAK_BOUND);
	if (app.stalled != NULL)
		bufferevent_enable(app.stalled->bev, EV_READ);
	ok(wait_resp(a, 1, 60000) && a->r[0].status == 200);
	snprintf(want, sizeof(want), "len=%llu hash=%016llx rawlen=%llu rawhash=%016llx\n",
	    (unsigned long long)BIG, (unsigned long long)a->up_hash,
	    (unsigned long long)a->up_raw_len, (unsigned long long)a->up_raw_hash);
	ok(strcmp(a->r[0].body, want) == 0);
	if (strcmp(a->r[0].body, want) != 0)
		printf("# got %s# want %s", a->r[0].body, want);
	ok(a->hc != NULL && a->hc->peak <= PEAK_BOUND);
	printf("# upload: proxy peak %zu bytes queued\n", a->hc ? a->hc->peak : 0);

	/* Download to a client that does not read at first. */
	b = client_new();
	bufferevent_disable(b->bev, EV_READ);
	app.dl_queued = 0;
	client_send(b, "GET /download HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(run_until(pred_ptr, &app.dl, 5000));
	run_for(300);
	sent = app.dl_queued;
	if (app.dl != NULL)
		sent -= evbuffer_get_length(bufferevent_get_output(app.dl->bev));
	ok(sent < BIG / 2);
	ok(b->hc != NULL && b->hc->peak <= PEAK_BOUND);
	bufferevent_enable(b->bev, EV_READ);
	ok(wait_resp(b, 1, 60000) && b->r[0].status == 200);
	for (left = BIG; left > 0; left -= n) {
		n = left < sizeof(genbuf) ? left : sizeof(genbuf);
		prng_fill(&seed, genbuf, n);
		h = fnv(h, genbuf, n);
	}
	ok(b->r[0].total == BIG && b->r[0].hash == h);
	ok(b->hc != NULL && b->hc->peak <= PEAK_BOUND);
	printf("# download: proxy peak %zu bytes queued\n", b->hc ? b->hc->peak : 0);
	ok(!a->eof && !b->eof);
	client_free(a);
	client_free(b);
}

static void
test_bad_requests(void)
{
	struct client *a, *b = client_new(), *c, *d, *e;
	char *big;
	size_t off;
	int i, routes;

	client_send(b, "GET /b1 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 1, 5000) && b->r[0].status == 200);

	routes = nroutes;
	a = client_new();
	client_send(a, "GET / HTTP/1.1\r\nHost: web.default\r\nBad Header: x\r\n\r\n");
	ok(wait_resp(a, 1, 5000) && a->r[0].status == 400);
	ok(strstr(a->r[0].body, "malformed") != NULL);
	ok(run_until(pred_eof, a, 5000));
	ok(nroutes == routes);
	client_send(b, "GET /b2 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 2, 5000) && starts(b->r[1].body, "app:GET /b2\n"));

	/* A header block over 64 KiB. */
	c = client_new();
	big = malloc(80 * KiB);
	off = snprintf(big, 80 * KiB, "GET / HTTP/1.1\r\nHost: web.default\r\nX-Big: ");
	memset(big + off, 'a', 70 * KiB);
	off += 70 * KiB;
	snprintf(big + off, 80 * KiB - off, "\r\n\r\n");
	client_send(c, big);
	ok(wait_resp(c, 1, 5000) && c->r[0].status == 431);
	ok(run_until(pred_eof, c, 5000));

	/* More headers than HP_MAX_HEADERS, each small. */
	d = client_new();
	off = snprintf(big, 80 * KiB, "GET / HTTP/1.1\r\nHost: web.default\r\n");
	for (i = 0; i < HP_MAX_HEADERS + 10; i++)
		off += snprintf(big + off, 80 * KiB - off, "X-H%d: v\r\n", i);
	snprintf(big + off, 80 * KiB - off, "\r\n");
	client_send(d, big);
	ok(wait_resp(d, 1, 5000) && d->r[0].status == 431);
	ok(run_until(pred_eof, d, 5000));
	free(big);

	/* A broken chunked body, before any response: 400 too. */
	e = client_new();
	client_send(e, "POST /x HTTP/1.1\r\nHost: web.default\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "zz\r\n");
	ok(wait_resp(e, 1, 5000) && e->r[0].status == 400);
	ok(run_until(pred_eof, e, 5000));

	client_send(b, "GET /b3 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 3, 5000) && starts(b->r[2].body, "app:GET /b3\n") && !b->eof);
	client_free(a);
	client_free(b);
	client_free(c);
	client_free(d);
	client_free(e);
}

static void
test_bad_gateway(void)
{
	struct client *a = client_new();

	client_send(a, "GET /x HTTP/1.1\r\nHost: web.default\r\nX-Dev: nobody\r\n\r\n");
	ok(wait_resp(a, 1, 5000) && a->r[0].status == 502);
	ok(strcmp(a->r[0].body,
	    "kbridge: the intercepting workstation's local port refused the connection\n") == 0);
	client_send(a, "GET /y HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 2, 5000) && starts(a->r[1].body, "app:GET /y\n"));

	/* connect() in progress that fails. */
	client_send(a, "GET /x HTTP/1.1\r\nHost: web.default\r\nX-Dev: refused\r\n\r\n");
	ok(wait_resp(a, 3, 5000) && a->r[2].status == 502);
	ok(strstr(a->r[2].body, strerror(ECONNREFUSED)) != NULL);

	/* The body of a request that cannot be delivered is read and dropped. */
	client_send(a, "POST /z HTTP/1.1\r\nHost: web.default\r\nX-Dev: nobody\r\n"
	    "Content-Length: 10\r\n\r\n0123456789GET /w HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 5, 5000) && a->r[3].status == 502);
	ok(starts(a->r[4].body, "app:GET /w\n"));
	ok(!a->eof);
	client_free(a);
}

/* route() answers some requests itself and edits the headers of others. */
static void
test_route_edits(void)
{
	struct client *a = client_new(), *b;

	client_send(a, "POST /r HTTP/1.1\r\nHost: web.default\r\nX-Dev: reply\r\n"
	    "Content-Length: 10\r\n\r\n0123456789GET /after HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 2, 5000) && a->r[0].status == 302);
	ok(strstr(a->r[0].head, "Location: /\n") && strstr(a->r[0].head, "Set-Cookie: t=1; HttpOnly\n") &&
	    strstr(a->r[0].head, "Content-Type: text/html\n"));
	ok(strcmp(a->r[0].body, "<p>moved</p>\n") == 0);
	ok(starts(a->r[1].body, "app:GET /after\n"));
	a->head_mask |= 1u << 2;
	client_send(a, "HEAD /r HTTP/1.1\r\nHost: web.default\r\nX-Dev: reply\r\n\r\n");
	ok(wait_resp(a, 3, 5000) && a->r[2].status == 302 && a->r[2].blen == 0);
	ok(strstr(a->r[2].head, "Content-Length: 13\n") != NULL);

	/* The client's own copies of the dropped headers never reach the upstream. */
	client_send(a, "GET /e HTTP/1.1\r\nHost: web.default\r\nX-Kbridge-Intercept-Id: evil\r\n"
	    "X-Dev: edit\r\nCookie: kbridge-preview=t; keep=1\r\nAccept: */*\r\n\r\n");
	ok(wait_resp(a, 4, 5000) && starts(a->r[3].body, "app:GET /e\n"));
	ok(strstr(a->r[3].body, "x-kbridge-intercept-id: abc\n") != NULL);
	ok(strstr(a->r[3].body, "Cookie: keep=1\n") != NULL);
	ok(strstr(a->r[3].body, "evil") == NULL && strstr(a->r[3].body, "kbridge-preview") == NULL);
	ok(strstr(a->r[3].body, "Accept: */*\n") != NULL);
	/* The edits were for that request only. */
	client_send(a, "GET /n HTTP/1.1\r\nHost: web.default\r\nCookie: c=2\r\n\r\n");
	ok(wait_resp(a, 5, 5000) && strstr(a->r[4].body, "Cookie: c=2\n") != NULL &&
	    strstr(a->r[4].body, "abc") == NULL);
	ok(!a->eof);

	/* HTTP/1.0 without keep-alive: answered, then closed. */
	b = client_new();
	client_send(b, "GET /r HTTP/1.0\r\nX-Dev: reply\r\n\r\n");
	ok(wait_resp(b, 1, 5000) && b->r[0].status == 302);
	ok(strstr(b->r[0].head, "Connection: close\n") != NULL);
	ok(run_until(pred_eof, b, 5000));
	client_free(a);
	client_free(b);
}

static void
test_upgrade(void)
{
	struct client *a = client_new();
	char *blob = malloc(256 * KiB), *got;
	uint64_t seed = 5;
	size_t len;

	client_send(a, "GET /ws HTTP/1.1\r\nHost: web.default\r\nConnection: Upgrade\r\n"
	    "Upgrade: websocket\r\nSec-WebSocket-Key: abc\r\n\r\n");
	ok(wait_resp(a, 1, 5000) && a->r[0].status == 101 && a->raw);
	ok(strstr(app.last_head, "Upgrade: websocket\n") != NULL);
	ok(strstr(app.last_head, "Connection: upgrade\n") != NULL);
	ok(strstr(app.last_head, "Sec-WebSocket-Key: abc\n") != NULL);

	client_send(a, "ping-1");
	w_n = 6;
	ok(run_until(pred_raw, a, 5000));
	ok(evbuffer_get_length(a->rawin) == 6 &&
	    memcmp(evbuffer_pullup(a->rawin, -1), "ping-1", 6) == 0);
	evbuffer_drain(a->rawin, 6);

	/* Bulk through the tunnel, echoed. */
	prng_fill(&seed, blob, 256 * KiB);
	bufferevent_write(a->bev, blob, 256 * KiB);
	w_n = 256 * KiB;
	ok(run_until(pred_raw, a, 10000));
	got = (char *)evbuffer_pullup(a->rawin, -1);
	ok(evbuffer_get_length(a->rawin) == 256 * KiB && memcmp(got, blob, 256 * KiB) == 0);
	evbuffer_drain(a->rawin, 256 * KiB);

	/* Half-close: our EOF reaches the server, which can still answer. */
	ok(run_until(pred_out_empty, a, 5000));
	shutdown(a->fd, SHUT_WR);
	ok(run_until(pred_eof, a, 5000));
	len = evbuffer_get_length(a->rawin);
	ok(len == 4 && memcmp(evbuffer_pullup(a->rawin, -1), "bye\n", 4) == 0);
	ok(run_until(pred_proxy_done, a, 5000));
	free(blob);
	client_free(a);
}

/* "Upgrade: h2c" goes to up.h2c with the head, the body's length and the
 * bytes after the head; refused (or chunked), the request is served as
 * HTTP/1.1 without the offer, and the connection stays routed. */
static void
test_h2c(void)
{
	static const char offer[] = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
	    "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n";
	char req[512];
	struct client *a = client_new(), *b;
	int done0 = ndone, calls0 = h2c_calls;

	h2c_take = 1;
	snprintf(req, sizeof(req), "POST /up HTTP/1.1\r\nHost: web\r\n%sContent-Length: 5\r\n"
	    "\r\nhelloPRI * HTTP/2.0", offer);
	client_send(a, req);
	ok(wait_resp(a, 1, 5000) && a->r[0].status == 299);
	ok(run_until(pred_eof, a, 5000));
	ok(h2c_calls == calls0 + 1 && !strcmp(h2c_target, "/up") && h2c_bodylen == 5);
	/* What was read with the head came along (all of it, in one segment here). */
	ok(h2c_restlen > 0 && h2c_restlen <= 19 && !memcmp(h2c_rest, "helloPRI * HTTP/2.0",
	    h2c_restlen));
	run_for(50);
	ok(ndone == done0 + 1);	/* by the taker only: up.arg went along */
	client_free(a);

	/* Refused: HTTP/1.1 to the app without the offer, then routed on. */
	h2c_take = 0;
	b = client_new();
	snprintf(req, sizeof(req), "GET /plain HTTP/1.1\r\nHost: web\r\n%s\r\n", offer);
	client_send(b, req);
	ok(wait_resp(b, 1, 5000) && b->r[0].status == 200 &&
	    starts(b->r[0].body, "app:GET /plain\n"));
	ok(h2c_calls == calls0 + 2);
	ok(strcasestr(b->r[0].body, "upgrade") == NULL &&
	    strcasestr(b->r[0].body, "http2-settings") == NULL);
	client_send(b, "GET /next HTTP/1.1\r\nHost: web\r\nX-Dev: alice\r\n\r\n");
	ok(wait_resp(b, 2, 5000) && starts(b->r[1].body, "icpt:GET /next\n"));
	/* A chunked body is not offered to up.h2c at all. */
	h2c_take = 1;
	snprintf(req, sizeof(req), "POST /chunked HTTP/1.1\r\nHost: web\r\n%s"
	    "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", offer);
	client_send(b, req);
	ok(wait_resp(b, 3, 5000) && b->r[2].status == 200 &&
	    starts(b->r[2].body, "len=3 ") && starts(app.last_head, "POST /chunked\n") &&
	    strcasestr(app.last_head, "upgrade") == NULL);
	ok(h2c_calls == calls0 + 2 && !b->eof);
	/* Nor one waiting for 100 Continue (its body would come after the 101). */
	snprintf(req, sizeof(req), "POST /continue HTTP/1.1\r\nHost: web\r\n%s"
	    "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", offer);
	client_send(b, req);
	w_n = 1;
	ok(run_until(pred_int_ge, &b->ninterim, 5000));
	client_send(b, "hello");
	ok(wait_resp(b, 4, 5000) && b->r[3].status == 200 && starts(b->r[3].body, "len=5 ") &&
	    starts(app.last_head, "POST /continue\n") && strcasestr(app.last_head, "upgrade") == NULL);
	ok(h2c_calls == calls0 + 2 && !b->eof);
	h2c_take = 0;
	client_free(b);
}

static void
test_special(void)
{
	struct client *a = client_new(), *b, *c, *d;
	const char *body;

	/* HEAD: a Content-Length but no body. */
	a->head_mask = 1;
	client_send(a, "HEAD /h HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 1, 5000) && a->r[0].status == 200 && a->r[0].total == 0);
	ok(strstr(a->r[0].head, "Content-Length: ") != NULL);
	client_send(a, "GET /after HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 2, 5000) && starts(a->r[1].body, "app:GET /after\n"));

	client_send(a, "GET /204 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 3, 5000) && a->r[2].status == 204);
	client_send(a, "GET /304 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 4, 5000) && a->r[3].status == 304 && a->r[3].total == 0);
	client_send(a, "GET /after2 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 5, 5000) && starts(a->r[4].body, "app:GET /after2\n"));

	/* 100-continue: the interim answer arrives before the body is sent. */
	client_send(a, "POST /continue HTTP/1.1\r\nHost: web.default\r\nExpect: 100-continue\r\n"
	    "Content-Length: 5\r\n\r\n");
	w_n = 1;
	ok(run_until(pred_int_ge, &a->ninterim, 5000));
	ok(a->nresp == 5);
	client_send(a, "hello");
	ok(wait_resp(a, 6, 5000) && a->r[5].status == 200 && starts(a->r[5].body, "len=5 "));

	/* Hop-by-hop headers stay here; Host and target go through unchanged. */
	client_send(a, "GET /p/a%20th?q=1&r=%2F HTTP/1.1\r\nHost: example.test:8080\r\n"
	    "Connection: foo, keep-alive\r\nFoo: bar\r\nKeep-Alive: timeout=5\r\n"
	    "Proxy-Connection: keep-alive\r\nTE: trailers\r\nX-Keep: yes\r\n\r\n");
	ok(wait_resp(a, 7, 5000) && a->r[6].status == 200);
	body = a->r[6].body;
	ok(starts(body, "app:GET /p/a%20th?q=1&r=%2F\nHost: example.test:8080\n"));
	ok(strstr(body, "X-Keep: yes\n") != NULL);
	ok(strcasestr(body, "\nfoo:") == NULL);
	ok(strcasestr(body, "\nkeep-alive:") == NULL);
	ok(strcasestr(body, "\nproxy-connection:") == NULL);
	ok(strcasestr(body, "\nte:") == NULL);
	ok(strcasestr(body, "\nconnection:") == NULL);

	/* Connection cannot strip the framing: the body stays a body. */
	client_send(a, "POST /cl HTTP/1.1\r\nHost: web.default\r\nConnection: content-length\r\n"
	    "Content-Length: 4\r\n\r\nabcd");
	ok(wait_resp(a, 8, 5000) && starts(a->r[7].body, "len=4 "));
	client_send(a, "GET /last HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 9, 5000) && starts(a->r[8].body, "app:GET /last\n"));
	ok(!a->eof);

	/* HTTP/1.0 without keep-alive: the answer, then close. */
	b = client_new();
	client_send(b, "GET /ten HTTP/1.0\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 1, 5000) && starts(b->r[0].body, "app:GET /ten\n"));
	ok(run_until(pred_eof, b, 5000));

	/* HTTP/1.0 with keep-alive stays open. */
	c = client_new();
	client_send(c, "GET /k1 HTTP/1.0\r\nHost: web.default\r\nConnection: keep-alive\r\n\r\n");
	ok(wait_resp(c, 1, 5000) && starts(c->r[0].body, "app:GET /k1\n"));
	client_send(c, "GET /k2 HTTP/1.0\r\nHost: web.default\r\nConnection: keep-alive\r\n\r\n");
	ok(wait_resp(c, 2, 5000) && starts(c->r[1].body, "app:GET /k2\n") && !c->eof);

	/* A response delimited by the upstream's close: the client sees it
	 * whole, then its connection closes. */
	d = client_new();
	client_send(d, "GET /eof-body HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(run_until(pred_eof, d, 5000));
	ok(d->nresp == 1 && strcmp(d->r[0].body, "until-close") == 0);

	client_free(a);
	client_free(b);
	client_free(c);
	client_free(d);
}

static void
test_upstream_failures(void)
{
	struct client *a = client_new(), *b = client_new(), *c = client_new(), *d, *e;
	int done, eofs, acc;

	client_send(a, "GET /close-mid HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(run_until(pred_eof, a, 5000));
	ok(a->nresp == 0 && a->r[0].status == 200 && a->r[0].total == 7);

	client_send(b, "GET /close-now HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 1, 5000) && b->r[0].status == 502);
	ok(strstr(b->r[0].body, "without answering") != NULL);
	client_send(b, "GET /again HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 2, 5000) && starts(b->r[1].body, "app:GET /again\n"));

	/* The sidecar's mark (h1h2.h): on its 502 for an answer that is not
	 * HTTP/1 (an h2c-only app's frames), and on nothing else: an app's
	 * is renamed, a client's dropped. */
	client_send(b, "GET /h2frames HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 3, 5000) && b->r[2].status == 502);
	ok(strstr(b->r[2].head, H1H2_PROTO_HEADER ": " H1H2_NOT_HTTP1 "\n") != NULL);
	ok(strstr(b->r[2].body, "invalid HTTP response") != NULL);
	client_send(b, "GET /forge HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 4, 5000) && b->r[3].status == 502 && strcmp(b->r[3].body, "no\n") == 0);
	ok(strcasestr(b->r[3].head, H1H2_PROTO_HEADER ":") == NULL);
	ok(strstr(b->r[3].head, "Kbridge-Upstream-Protx: not-http1\n") != NULL);
	client_send(b, "GET /forge-split HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 5, 5000) && b->r[4].status == 502 && strcmp(b->r[4].body, "ok\n") == 0);
	ok(strcasestr(b->r[4].head, H1H2_PROTO_HEADER ":") == NULL);
	ok(strstr(b->r[4].head, "X-A: 1\n") != NULL);
	client_send(b, "GET /echo HTTP/1.1\r\nHost: web.default\r\n"
	    "kbridge-upstream-proto: not-http1\r\nKBRIDGE-UPSTREAM-PROTO: not-h2c\r\n"
	    "X-After: 1\r\n\r\n");
	ok(wait_resp(b, 6, 5000) && starts(b->r[5].body, "app:GET /echo\n"));
	ok(strcasestr(b->r[5].body, H1H2_PROTO_HEADER) == NULL);
	ok(strstr(b->r[5].body, "X-After: 1\n") != NULL);
	ok(!b->eof);

	/* The client leaves in the middle of a body: everything closes. */
	client_send(c, "POST /x HTTP/1.1\r\nHost: web.default\r\nContent-Length: 100\r\n\r\n"
	    "0123456789");
	w_n = app.accepts + 1;
	ok(run_until(pred_int_ge, &app.accepts, 5000));
	run_for(50);
	done = ndone;
	eofs = app.eofs;
	client_free(c);
	w_n = done + 1;
	ok(run_until(pred_int_ge, &ndone, 5000));
	w_n = eofs + 1;
	ok(run_until(pred_int_ge, &app.eofs, 5000));
	/* A kept-alive upstream that closes while idle is not used again. */
	d = client_new();
	client_send(d, "GET /then-close HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(d, 1, 5000) && starts(d->r[0].body, "app:GET /then-close\n"));
	ok(run_until(pred_no_idle, d->hc, 5000));
	acc = app.accepts;
	client_send(d, "GET /next HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(d, 2, 5000) && starts(d->r[1].body, "app:GET /next\n"));
	ok(app.accepts == acc + 1 && !d->eof);

	/* A kept-alive upstream that closes on the next request: a GET goes
	 * again on a fresh connection, a POST gets 502. */
	acc = app.accepts;
	client_send(d, "GET /close-if-reused HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(d, 3, 5000) && starts(d->r[2].body, "app:GET /close-if-reused\n"));
	ok(app.accepts == acc + 1);
	client_send(d, "POST /close-if-reused HTTP/1.1\r\nHost: web.default\r\n"
	    "Content-Length: 2\r\n\r\nhi");
	ok(wait_resp(d, 4, 5000) && d->r[3].status == 502 && !d->eof);

	/* Connection: close from either side closes the client after the answer. */
	client_send(d, "GET /srv-close HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(d, 5, 5000) && starts(d->r[4].body, "app:GET /srv-close\n"));
	ok(run_until(pred_eof, d, 5000));
	e = client_new();
	client_send(e, "GET /cc HTTP/1.1\r\nHost: web.default\r\nConnection: close\r\n\r\n");
	ok(wait_resp(e, 1, 5000) && starts(e->r[0].body, "app:GET /cc\n"));
	ok(run_until(pred_eof, e, 5000));
	client_free(a);
	client_free(b);
	client_free(d);
	client_free(e);
}

static void
test_timeouts(void)
{
	struct client *a, *b, *c, *d;

	tp->idle_ms = 200;
	tp->head_ms = 200;
	a = client_new();
	b = client_new();
	c = client_new();
	client_send(b, "GET /slow HTTP/1.1\r\nHost: web");
	client_send(c, "GET /t HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(c, 1, 5000));
	ok(run_until(pred_eof, a, 5000) && a->nresp == 0);
	ok(run_until(pred_eof, b, 5000) && b->nresp == 0);
	ok(run_until(pred_eof, c, 5000));

	/* An upstream connect() that does not finish gets 502 in the end. */
	tp->connect_ms = 200;
	d = client_new();
	client_send(d, "GET /x HTTP/1.1\r\nHost: web.default\r\nX-Dev: stuck\r\n\r\n");
	ok(wait_resp(d, 1, 5000) && d->r[0].status == 502);
	ok(strstr(d->r[0].body, "timed out") != NULL);
	tp->connect_ms = 10 * 1000;
	tp->idle_ms = 60 * 1000;
	tp->head_ms = 30 * 1000;
	client_free(a);
	client_free(b);
	client_free(c);
	client_free(d);
}


/* The sniffer's verdicts, on whole inputs and byte by byte. */
static void
test_sniff(void)
{
	static const struct {
		const char *in;
		size_t len;
		int kind;
	} t[] = {
#define T(s, k) { s, sizeof(s) - 1, k }
		T("GET / HTTP/1.1\r\n", HP_K_HTTP1),
		T("\r\nPOST /a?b=c HTTP/1.0\n", HP_K_HTTP1),
		T("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HP_K_H2),
		T("\x16\x03\x01\x02\x00\x01", HP_K_TLS),
		T("GET /\r\n", HP_K_HTTP09),
		T("GET /x\n", HP_K_HTTP09),
		T("GET / HTTP/2.0\r\n", HP_K_OTHER),
		T("GET  / HTTP/1.1\r\n", HP_K_OTHER),
		T("GET / HTTP/1.1 \r\n", HP_K_OTHER),
		T("GET / HTTP/x.1\r\n", HP_K_OTHER),
		T("SSH-2.0-OpenSSH_9.2\r\n", HP_K_OTHER),
		T("\x00\x00\x00\x04", HP_K_OTHER),
		T("GET / HTTP/1.1", HP_K_MORE),
		T("GET /", HP_K_MORE),
		T("\r\n", HP_K_MORE),
#undef T
	};
	struct hp_sniff sn;
	size_t i, k;
	int v, bytewise;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(&sn, 0, sizeof(sn));
		v = hp_sniff(&sn, t[i].in, t[i].len);
		memset(&sn, 0, sizeof(sn));
		for (k = 0, bytewise = HP_K_MORE; k < t[i].len && bytewise == HP_K_MORE; k++)
			bytewise = hp_sniff(&sn, t[i].in + k, 1);
		if (v != t[i].kind || bytewise != t[i].kind)
			printf("# sniff %zu: got %d and %d, want %d\n", i, v, bytewise, t[i].kind);
		ok(v == t[i].kind && bytewise == t[i].kind);
	}
}

static int
pred_rawapp_got(void *arg)
{
	return evbuffer_get_length(rawapp.got) >= *(size_t *)arg;
}

static int
buf_is(struct evbuffer *b, const void *p, size_t len)
{
	return evbuffer_get_length(b) == len && memcmp(evbuffer_pullup(b, -1), p, len) == 0;
}

/* Lines of the log file f that contain s. */
static int
log_count(FILE *f, const char *s)
{
	char line[512];
	int n = 0;

	fflush(stderr);
	rewind(f);
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, s) != NULL;
	return n;
}

/* With an intercept active (x-dev: alice goes to key 1), connections that
 * are not HTTP/1 reach the app byte for byte, the app's answer comes back,
 * and each kind is logged once. */
static void
test_pass(void)
{
	static const char h2[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	    "\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64";
	static const char tls[] = "\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03"
	    "0123456789abcdef0123456789abcdef\x00\x00\x02\x13\x01\x01\x00";
	static const char h09[] = "GET /old\r\n";
	static const char brew[] = "BREW /pot HTTP/1.1\r\nHost: web\r\n\r\n";
	struct {
		const char *name, *data;
		size_t len;
		int split;	/* sent in two writes, the loop running in between */
	} cs[] = {
		{ "h2 preface", h2, sizeof(h2) - 1, 10 },
		{ "h2 preface again", h2, sizeof(h2) - 1, 0 },
		{ "TLS ClientHello", tls, sizeof(tls) - 1, 1 },
		{ "HTTP/0.9", h09, sizeof(h09) - 1, 5 },
		{ "unknown method", brew, sizeof(brew) - 1, 0 },
		{ "binary", NULL, 256 * KiB, 0 },
	};
	char *bin = malloc(256 * KiB);
	struct client *c;
	uint64_t seed = 11;
	size_t i, want;
	int routes = nroutes, icpt_opens = nopens[1], saved = dup(2), level;
	FILE *logf = tmpfile();

	prng_fill(&seed, bin, 256 * KiB);
	bin[0] = '\x01';
	cs[5].data = bin;
	/* The log, at info level, to a file. */
	fflush(stderr);
	dup2(fileno(logf), 2);
	level = getenv("KB_DEBUG") ? KB_LOG_DEBUG : KB_LOG_WARN;
	log_init("test_httpproxy", KB_LOG_INFO);
	rawapp.use = 1;

	for (i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
		printf("# pass: %s\n", cs[i].name);
		evbuffer_drain(rawapp.got, evbuffer_get_length(rawapp.got));
		c = client_new();
		c->raw = 1;
		if (cs[i].split) {
			bufferevent_write(c->bev, cs[i].data, cs[i].split);
			run_for(30);
		}
		bufferevent_write(c->bev, cs[i].data + cs[i].split, cs[i].len - cs[i].split);
		want = cs[i].len;
		ok(run_until(pred_rawapp_got, &want, 10000));
		ok(buf_is(rawapp.got, cs[i].data, cs[i].len));
		w_n = cs[i].len;
		ok(run_until(pred_raw, c, 10000) && buf_is(c->rawin, cs[i].data, cs[i].len));
		/* Half-close reaches the app, which closes: so does the proxy. */
		ok(run_until(pred_out_empty, c, 5000));
		shutdown(c->fd, SHUT_WR);
		ok(run_until(pred_eof, c, 5000) && run_until(pred_proxy_done, c, 5000));
		client_free(c);
	}
	ok(nroutes == routes && nopens[1] == icpt_opens);

	/* The app refuses: the client is cut off, with no HTTP answer. */
	rawapp.use = 2;
	c = client_new();
	c->raw = 1;
	bufferevent_write(c->bev, tls, sizeof(tls) - 1);
	ok(run_until(pred_eof, c, 5000) && evbuffer_get_length(c->rawin) == 0);
	ok(run_until(pred_proxy_done, c, 5000));
	client_free(c);
	rawapp.use = 1;

	/* The app speaks first: a silent client gets the greeting, then talks. */
	tp->sniff_ms = 50;
	rawapp.greet = "220 raw app ready\r\n";
	evbuffer_drain(rawapp.got, evbuffer_get_length(rawapp.got));
	c = client_new();
	c->raw = 1;
	w_n = strlen(rawapp.greet);
	ok(run_until(pred_raw, c, 5000) && buf_is(c->rawin, rawapp.greet, strlen(rawapp.greet)));
	evbuffer_drain(c->rawin, evbuffer_get_length(c->rawin));
	client_send(c, "GET / HTTP/1.1\r\nX-Dev: alice\r\n\r\n");
	want = 32;
	ok(run_until(pred_rawapp_got, &want, 5000) &&
	    buf_is(rawapp.got, "GET / HTTP/1.1\r\nX-Dev: alice\r\n\r\n", 32));
	w_n = 32;
	ok(run_until(pred_raw, c, 5000));
	ok(nroutes == routes && nopens[1] == icpt_opens);
	client_free(c);
	rawapp.greet = NULL;
	rawapp.use = 0;

	/* A silent client whose app stays silent too: its requests are still
	 * routed, the first one to the app on the connection opened early. */
	c = client_new();
	w_n = nopens[0] + 1;
	ok(run_until(pred_int_ge, &nopens[0], 5000));
	run_for(30);
	i = app.accepts;
	client_send(c, "GET /late HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(c, 1, 5000) && starts(c->r[0].body, "app:GET /late\n"));
	ok((size_t)app.accepts == i);
	client_send(c, "GET /late2 HTTP/1.1\r\nHost: web.default\r\nX-Dev: alice\r\n\r\n");
	ok(wait_resp(c, 2, 5000) && starts(c->r[1].body, "icpt:GET /late2\n"));
	client_free(c);
	tp->sniff_ms = 1000;

	/* Without pass (the preview listener), TLS gets 400 as before. */
	ups.pass = 0;
	c = client_new();
	bufferevent_write(c->bev, tls, sizeof(tls) - 1);
	ok(wait_resp(c, 1, 5000) && c->r[0].status == 400);
	client_free(c);
	ups.pass = 1;

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	log_init("test_httpproxy", level);
	ok(log_count(logf, "connection is not HTTP/1 (HTTP/2 preface): passed to the app untouched") == 1);
	ok(log_count(logf, "connection is not HTTP/1 (TLS): passed") == 1);
	ok(log_count(logf, "connection is not HTTP/1 (HTTP/0.9 request): passed") == 1);
	ok(log_count(logf, "connection is not HTTP/1 (not an HTTP/1 request line): passed") == 1);
	ok(log_count(logf, "connection is not HTTP/1 (the app spoke first): passed") == 1);
	ok(log_count(logf, "passed to the app untouched") == 5);
	ok(log_count(logf, "cannot pass a connection to the app: cannot connect to the upstream: "
	    "Connection refused") == 1);
	fclose(logf);
	free(bin);
}

/* --- stream upstreams (up.streams): key 1 over a session, as in the sidecar --- */

/* The workstation's port: ref 1 the icpt server; others refused with a
 * reason (sesspair.h). */
static int
sp_port(const char *ref, const char **why)
{
	*why = "nothing listens on localhost:8089";
	return !strcmp(ref, "1") ? icpt.port : 0;
}

#define SP_ACCEPTED(fd) sockbufs(fd)
#define SP_OPENED(key) (nopens[key]++)
#include "sesspair.h"

static void
test_streams(void)
{
	struct client *a, *b, *u, *d;
	struct kb_session_stats st;
	char head[256], want[256];
	uint64_t seed = 42, h = FNV0, sent, left;
	size_t n;
	int acc, opens;

	ok(sessions_start());
	ups.streams = &t_streams;

	/* The intercept's requests through a stream, the app's as before; one
	 * stream serves consecutive requests (keep-alive). */
	a = client_new();
	acc = icpt.accepts;
	opens = ws_opens;
	client_send(a, "GET /s1 HTTP/1.1\r\nHost: web.default\r\nX-Dev: alice\r\n\r\n");
	ok(wait_resp(a, 1, 5000) && starts(a->r[0].body, "icpt:GET /s1\n"));
	client_send(a, "GET /s2 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(a, 2, 5000) && starts(a->r[1].body, "app:GET /s2\n"));
	client_send(a, "GET /s3 HTTP/1.1\r\nHost: web.default\r\nX-Dev: alice\r\n\r\n"
	    "GET /s4 HTTP/1.1\r\nHost: web.default\r\nX-Dev: alice\r\n\r\n");
	ok(wait_resp(a, 4, 5000) && starts(a->r[2].body, "icpt:GET /s3\n") &&
	    starts(a->r[3].body, "icpt:GET /s4\n"));
	ok(ws_opens == opens + 2 && icpt.accepts == acc + 2); /* s1; s3 and s4 share one */

	/* A refused stream: its reason is the 502's, and the connection goes on. */
	b = client_new();
	client_send(b, "GET /r HTTP/1.1\r\nHost: web.default\r\nX-Dev: nobody\r\n\r\n");
	ok(wait_resp(b, 1, 5000) && b->r[0].status == 502);
	ok(strcmp(b->r[0].body, "kbridge: nothing listens on localhost:8089\n") == 0);
	client_send(b, "GET /r2 HTTP/1.1\r\nHost: web.default\r\n\r\n");
	ok(wait_resp(b, 2, 5000) && starts(b->r[1].body, "app:GET /r2\n") && !b->eof);

	/* Upload to an intercept that stops reading: the stream's window and
	 * the proxy's watermark hold the client back. */
	u = client_new();
	icpt.stall_at = MiB;
	snprintf(head, sizeof(head), "POST /upload HTTP/1.1\r\nHost: web.default\r\n"
	    "X-Dev: alice\r\nTransfer-Encoding: chunked\r\n\r\n");
	client_send(u, head);
	u->uploading = 1;
	u->up_left = BIG;
	u->up_seed = 7;
	u->chunk_seed = 99;
	u->up_hash = u->up_raw_hash = FNV0;
	client_gen(u);
	ok(run_until(pred_ptr, &icpt.stalled, 20000));
	run_for(300);
	sent = u->up_gen - evbuffer_get_length(bufferevent_get_output(u->bev));
	printf("# upload through a stream: %llu of %d bytes left the client while stalled\n",
	    (unsigned long long)sent, BIG);
	ok(sent < BIG / 2);
	ok(u->hc != NULL && u->hc->peak <= PEAK_BOUND);
	if (icpt.stalled != NULL)
		bufferevent_enable(icpt.stalled->bev, EV_READ);
	ok(wait_resp(u, 1, 60000) && u->r[0].status == 200);
	snprintf(want, sizeof(want), "len=%llu hash=%016llx rawlen=%llu rawhash=%016llx\n",
	    (unsigned long long)BIG, (unsigned long long)u->up_hash,
	    (unsigned long long)u->up_raw_len, (unsigned long long)u->up_raw_hash);
	ok(strcmp(u->r[0].body, want) == 0);

	/* Download to a client that does not read at first. */
	d = client_new();
	bufferevent_disable(d->bev, EV_READ);
	icpt.dl_queued = 0;
	client_send(d, "GET /download HTTP/1.1\r\nHost: web.default\r\nX-Dev: alice\r\n\r\n");
	ok(run_until(pred_ptr, &icpt.dl, 5000));
	run_for(300);
	sent = icpt.dl_queued;
	if (icpt.dl != NULL)
		sent -= evbuffer_get_length(bufferevent_get_output(icpt.dl->bev));
	printf("# download through a stream: %llu of %d bytes left the server while the client "
	    "did not read\n", (unsigned long long)sent, BIG);
	ok(sent < BIG / 2);
	ok(d->hc != NULL && d->hc->peak <= PEAK_BOUND);
	bufferevent_enable(d->bev, EV_READ);
	ok(wait_resp(d, 1, 60000) && d->r[0].status == 200);
	for (left = BIG; left > 0; left -= n) {
		n = left < sizeof(genbuf) ? left : sizeof(genbuf);
		prng_fill(&seed, genbuf, n);
		h = fnv(h, genbuf, n);
	}
	ok(d->r[0].total == BIG && d->r[0].hash == h);

	/* Clients gone: every stream ends. */
	client_free(a);
	client_free(b);
	client_free(u);
	client_free(d);
	ok(run_until(no_session_streams, NULL, 5000));
	kb_session_stats(sc_sess, &st);
	ok(st.streams == 0);
	ups.streams = NULL;
	sessions_stop();
	run_for(100); /* the connections flush and go */
}

int
main(void)
{
	struct sockaddr_in sin;
	int i;

	signal(SIGPIPE, SIG_IGN);
	log_init("test_httpproxy", getenv("KB_DEBUG") ? KB_LOG_DEBUG : KB_LOG_WARN);
	base = event_base_new();
	if ((tp = hp_proxy_new(base)) == NULL)
		return 1;
	server_start(&app);
	server_start(&icpt);
	rawapp_start();

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	bind(lfd, (struct sockaddr *)&sin, sizeof(sin));
	listen(lfd, 64);
	/* Bound, never listening: connecting gets refused. */
	closed_fd = socket(AF_INET, SOCK_STREAM, 0);
	bind(closed_fd, (struct sockaddr *)&sin, sizeof(sin));
	closed_port = bound_port(closed_fd);

	test_routing();
	test_groups(0);
	test_groups(1);
	test_stalled_clients(0);
	test_stalled_clients(1);
	test_bulk();
	test_bad_requests();
	test_bad_gateway();
	test_route_edits();
	test_upgrade();
	test_h2c();
	test_special();
	test_upstream_failures();
	test_timeouts();
	test_sniff();
	test_pass();
	test_streams();

	/* Every proxied connection ends once its client has gone. */
	w_n = nproxy;
	ok(run_until(pred_int_ge, &ndone, 5000));
	ok(ndone == nproxy);
	for (i = 0; i < MAXCLIENTS; i++)
		if (clients[i] != NULL) {
			hp_conn_free(clients[i]->hc);
			client_free(clients[i]);
		}
	server_stop(&app);
	server_stop(&icpt);
	rawapp_stop();
	close(lfd);
	close(closed_fd);
	if (stuck_peer != -1)
		close(stuck_peer);
	hp_proxy_free(tp);
	hp_fini();
	event_base_free(base);
	return ok_done();
}
