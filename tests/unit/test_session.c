/* The session layer end to end in one process: two kb_session objects joined
 * by a socketpair on one event_base, streams whose local ends are further
 * socketpairs driven by the test (or TCP on loopback where a real RST
 * matters), and a "raw" peer that writes hand-made frames to check protocol
 * error handling. Every wait is bounded by an event-loop timeout; the checks
 * are on outcomes, never on timings.
 *
 *   test end (ep) --local--> [kb A: initiator] ==session== [kb B: responder] --local--> test end (ep)
 *      op[i].ep                 odd stream ids                even stream ids             acc[i].ep
 */
#include <errno.h>
#include <sys/uio.h>

/* readv calls on one descriptor, and how many said EAGAIN (test_accept_read) */
static int readv_watch = -1;
static unsigned readv_calls, readv_eagain;

static ssize_t
counted_readv(int fd, const struct iovec *iov, int n)
{
	ssize_t r = readv(fd, iov, n);

	if (fd == readv_watch) {
		readv_calls++;
		if (r < 0 && errno == EAGAIN)
			readv_eagain++;
	}
	return r;
}
#define readv counted_readv
#include "../../proto/session.c"
#undef readv
#include "dial.h"

#include <event2/bufferevent.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "evloop.h"
#include "ok.h"

#define MiB (1024 * 1024)
#define KiB 1024
#define POOL_SIZE (24 * MiB)
#define PORT_BASE 1000
#define PORT_REFUSE 9   /* the responder resets it with KB_RST_REFUSED */
#define PORT_DEFER 7    /* the responder answers later (or never) */
#define PORT_HOLD 8     /* the responder never answers (many streams may) */
#define PORT_KBDIAL 6   /* the responder dials 127.0.0.1:kbdial_port (kb_stream_dial) */
#define PORT_KBDIAL2 5  /* 127.0.0.1:kbdial_port, then [::1]:kbdial_port (kb_stream_dial2) */

static uint8_t *pool;   /* random bytes that streams carry */
static int use_tcp;     /* local endpoints on TCP loopback instead of AF_UNIX */
static int lfd = -1;    /* TCP listener for use_tcp */

static int
pred_flag(void *arg)
{
	return *(int *)arg != 0;
}

/* --- local endpoints driven by the test --- */

struct ep {
	int fd;
	struct event *rev, *wev;
	/* what we write; shut: shutdown(SHUT_WR) once all is written */
	const uint8_t *tx;
	size_t txlen, txoff;
	int shut, tx_hold, txdone, txerr, tx_blocked;
	/* what we expect to read */
	const uint8_t *exp;
	size_t explen, rxlen;
	int mismatch, eof, rxerr, paused;
	void (*on_eof)(struct ep *);
	void *owner;
};

static void
nonblock(int fd)
{
	evutil_make_socket_nonblocking(fd);
}

static void
ep_read_cb(evutil_socket_t fd, short what, void *arg)
{
	static uint8_t buf[64 * KiB];
	struct ep *e = arg;
	int i;

	(void)what;
	for (i = 0; i < 8; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n > 0) {
			if (e->rxlen + (size_t)n > e->explen ||
			    memcmp(e->exp + e->rxlen, buf, (size_t)n) != 0)
				e->mismatch = 1;
			e->rxlen += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		event_del(e->rev);
		if (n == 0)
			e->eof = 1;
		else
			e->rxerr = errno;
		if (e->on_eof)
			e->on_eof(e);
		return;
	}
}

static void
ep_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ep *e = arg;

	(void)what;
	while (e->txoff < e->txlen) {
		size_t n = e->txlen - e->txoff;
		ssize_t w;

		if (n > 64 * KiB)
			n = 64 * KiB;
		w = write(fd, e->tx + e->txoff, n);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				e->tx_blocked = 1;
				return;
			}
			e->txerr = errno;
			event_del(e->wev);
			return;
		}
		e->tx_blocked = 0;
		e->txoff += (size_t)w;
	}
	if (e->shut)
		shutdown(fd, SHUT_WR);
	e->txdone = 1;
	event_del(e->wev);
}

static void
ep_attach(struct ep *e, int fd)
{
	e->fd = fd;
	nonblock(fd);
	e->rev = event_new(base, fd, EV_READ | EV_PERSIST, ep_read_cb, e);
	e->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, ep_write_cb, e);
	if (!e->paused)
		event_add(e->rev, NULL);
	if ((e->txlen || e->shut) && !e->tx_hold)
		event_add(e->wev, NULL);
}

static void
ep_resume(struct ep *e)
{
	e->paused = 0;
	if (e->rev && !e->eof && !e->rxerr)
		event_add(e->rev, NULL);
}

static void
ep_go(struct ep *e)
{
	e->tx_hold = 0;
	if (e->wev && !e->txdone)
		event_add(e->wev, NULL);
}

/* Close the test's end; abortive: SO_LINGER 0 first (a TCP RST). */
static void
ep_close(struct ep *e, int abortive)
{
	if (e->rev)
		event_free(e->rev);
	if (e->wev)
		event_free(e->wev);
	e->rev = e->wev = NULL;
	if (e->fd >= 0) {
		if (abortive) {
			struct linger l = { 1, 0 };
			setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		close(e->fd);
	}
	e->fd = -1;
}

/* Reading is over: end of file, an error, or the socket is gone. */
static int
ep_rx_over(const struct ep *e)
{
	return e->eof || e->rxerr || e->fd < 0;
}

/* --- socket pairs --- */

static void
tcp_pair(int sv[2])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int c, one = 1;

	if (lfd < 0) {
		lfd = socket(AF_INET, SOCK_STREAM, 0);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 64) < 0)
			abort();
	}
	if (getsockname(lfd, (struct sockaddr *)&sin, &len) < 0)
		abort();
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		abort();
	sv[0] = accept(lfd, NULL, NULL);
	sv[1] = c;
	if (sv[0] < 0)
		abort();
	setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* sv[0] goes to kbridge (as a plain kb_conn), sv[1] to the test. */
static void
mkpair(int sv[2])
{
	if (use_tcp)
		tcp_pair(sv);
	else if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	nonblock(sv[0]);
	nonblock(sv[1]);
}

static struct kb_conn *
kb_end(int fd)
{
	return kb_conn_new(base, fd, NULL, 1);
}

/* How many bytes a fresh AF_UNIX socketpair takes before EAGAIN, writing
 * chunk bytes at a time. */
static size_t
fill_capacity(size_t chunk)
{
	int sv[2];
	size_t total = 0;
	ssize_t w;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	nonblock(sv[0]);
	while ((w = write(sv[0], pool, chunk)) > 0)
		total += (size_t)w;
	close(sv[0]);
	close(sv[1]);
	return total;
}

/* Generous upper bound of the bytes one socketpair direction can hold. */
static size_t
kernel_cap(void)
{
	int sv[2], snd = 0, rcv = 0;
	socklen_t l = sizeof(int);
	size_t fill = fill_capacity(64 * KiB), lim;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &snd, &l);
	l = sizeof(int);
	getsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &rcv, &l);
	close(sv[0]);
	close(sv[1]);
	lim = 2 * (size_t)(snd > rcv ? snd : rcv);
	return fill > lim ? fill : lim;
}

/* --- streams and sessions as the test sees them --- */

struct tstream {
	struct kb_stream *st;
	uint32_t id;
	int accepted, closed, reason;
	char text[256];
	struct ep ep;
};

static void
t_on_accept(struct kb_stream *st, void *arg)
{
	struct tstream *t = arg;

	(void)st;
	t->accepted = 1;
}

static void
t_on_close(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct tstream *t = arg;

	(void)st;
	t->closed++;
	t->reason = reason;
	snprintf(t->text, sizeof(t->text), "%s", text ? text : "");
	t->st = NULL;
}

static const struct kb_stream_cbs tcbs = { .on_accept = t_on_accept, .on_close = t_on_close };

static void
tstream_init(struct tstream *t)
{
	memset(t, 0, sizeof(*t));
	t->ep.fd = -1;
}

static int
tstream_done(const struct tstream *t)
{
	return t->closed && ep_rx_over(&t->ep);
}

struct sctx {
	const char *name;
	struct kb_session *s;
	int initiator;
	int hellos, refuse, no_answer;
	int closed, err_null;
	char err[512];
	int goaways;
	char goaway_reason[256];
	int opens;
	int limits;           /* on_limit calls */
	char limit_what[128];
	struct tstream *acc;  /* accepting ends, indexed by port - PORT_BASE */
	int nacc;
	struct tstream dt;    /* a stream answered later (PORT_DEFER) */
};

static int
s_on_hello(struct kb_session *s, const cJSON *hello, char *reason, size_t reasonlen, void *arg)
{
	struct sctx *c = arg;
	const cJSON *role = cJSON_GetObjectItemCaseSensitive(hello, "role");

	c->hellos++;
	if (c->refuse) {
		snprintf(reason, reasonlen, "user %s is not allowed here",
		    cJSON_IsString(role) ? role->valuestring : "?");
		return -1;
	}
	if (!c->initiator && !c->no_answer) {
		cJSON *h = cJSON_CreateObject();
		cJSON_AddStringToObject(h, "software", "kbridge/test");
		cJSON_AddStringToObject(h, "user", "alice");
		if (kb_session_send_hello(s, h) < 0)
			return -1;
	}
	return 0;
}

/* kb_stream_dial (proto/dial.c) behind PORT_KBDIAL: what it told. */
static uint16_t kbdial_port;
static int kbdial_told, kbdial_err;

static void
kbdial_done(void *arg, struct kb_stream *st, int err, char *text, size_t textlen)
{
	char why[160];

	(void)arg;
	(void)st;
	kbdial_told++;
	kbdial_err = err;
	if (err > 0) {
		snprintf(why, sizeof(why), "%s", text);
		snprintf(text, textlen, "nothing on port %u (%s)", kbdial_port, why);
	}
}

static void
s_on_open(struct kb_session *s, struct kb_stream *st, const struct kb_open *o, void *arg)
{
	struct sctx *c = arg;
	struct tstream *t;
	int sv[2], i = (int)o->port - PORT_BASE;

	(void)s;
	c->opens++;
	if (o->port == PORT_REFUSE) {
		kb_stream_reset(st, KB_RST_REFUSED, "connection refused by 10.96.0.1:9");
		return;
	}
	if (o->port == PORT_HOLD)
		return;
	if (o->port == PORT_KBDIAL) {
		struct sockaddr_in sin = { .sin_family = AF_INET };

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = htons(kbdial_port);
		kb_stream_dial(base, st, (struct sockaddr *)&sin, sizeof(sin), 2000, kbdial_done, c);
		return;
	}
	if (o->port == PORT_KBDIAL2) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = htons(kbdial_port);
		sin6.sin6_addr = in6addr_loopback;
		sin6.sin6_port = htons(kbdial_port);
		kb_stream_dial2(base, st, (struct sockaddr *)&sin, sizeof(sin),
		    (struct sockaddr *)&sin6, sizeof(sin6), 2000, kbdial_done, c);
		return;
	}
	if (o->port == PORT_DEFER) {
		c->dt.st = st;
		c->dt.id = kb_stream_id(st);
		kb_stream_set_cbs(st, &tcbs, &c->dt);
		return;
	}
	if (i < 0 || i >= c->nacc) {
		kb_stream_reset(st, KB_RST_DENIED, "no such test port");
		return;
	}
	t = &c->acc[i];
	mkpair(sv);
	ep_attach(&t->ep, sv[1]);
	t->st = st;
	t->id = kb_stream_id(st);
	kb_stream_accept(st, sv[0], &tcbs, t);
}

static int
s_on_control(struct kb_session *s, const cJSON *msg, const char *type, void *arg)
{
	(void)s;
	(void)msg;
	(void)arg;
	return strcmp(type, "test-ok") == 0 ? 0 : -1;
}

static void
s_on_goaway(struct kb_session *s, const char *reason, void *arg)
{
	struct sctx *c = arg;

	(void)s;
	c->goaways++;
	snprintf(c->goaway_reason, sizeof(c->goaway_reason), "%s", reason);
}

static void
s_on_close(struct kb_session *s, const char *err, void *arg)
{
	struct sctx *c = arg;

	c->closed++;
	c->err_null = err == NULL;
	snprintf(c->err, sizeof(c->err), "%s", err ? err : "");
	kb_session_free(s);
	c->s = NULL;
}

static void
s_on_limit(struct kb_session *s, const char *what, void *arg)
{
	struct sctx *c = arg;

	(void)s;
	c->limits++;
	snprintf(c->limit_what, sizeof(c->limit_what), "%s", what);
}

static const struct kb_session_cbs scbs = {
	s_on_hello, s_on_open, s_on_control, s_on_goaway, s_on_close, s_on_limit
};

static void
sctx_init(struct sctx *c, const char *name, int initiator)
{
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->initiator = initiator;
	tstream_init(&c->dt);
}

static void
pair_new(struct sctx *a, struct sctx *b)
{
	int sv[2];

	sctx_init(a, "A", 1);
	sctx_init(b, "B", 0);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	nonblock(sv[0]);
	nonblock(sv[1]);
	a->s = kb_session_new(kb_end(sv[0]), 1, &scbs, a);
	b->s = kb_session_new(kb_end(sv[1]), 0, &scbs, b);
}

static int
send_daemon_hello(struct sctx *a)
{
	cJSON *h = cJSON_CreateObject();

	cJSON_AddStringToObject(h, "role", "daemon");
	cJSON_AddStringToObject(h, "software", "kbridge/test");
	cJSON_AddStringToObject(h, "namespace", "default");
	return kb_session_send_hello(a->s, h);
}

struct two {
	struct sctx *a, *b;
};

static int
pred_ready(void *arg)
{
	struct two *p = arg;

	return p->a->s && p->b->s && kb_session_ready(p->a->s) && kb_session_ready(p->b->s);
}

static int
pred_both_closed(void *arg)
{
	struct two *p = arg;

	return p->a->closed && p->b->closed;
}

static int
pair_up(struct sctx *a, struct sctx *b)
{
	struct two p = { a, b };

	pair_new(a, b);
	send_daemon_hello(a);
	return run_until(pred_ready, &p, 2000);
}

/* Free whatever is left and let lingering connections go. */
static void
pair_free(struct sctx *a, struct sctx *b)
{
	if (a->s)
		kb_session_free(a->s);
	if (b->s)
		kb_session_free(b->s);
	a->s = b->s = NULL;
	ep_close(&a->dt.ep, 0);
	ep_close(&b->dt.ep, 0);
	run_for(20);
}

static struct kb_stream *
open_stream(struct sctx *c, struct tstream *t, uint16_t port)
{
	struct kb_open o = { .kind = KB_OPEN_DIAL, .family = 4, .port = port,
		.addr = { 10, 96, 0, 1 } };
	int sv[2];

	mkpair(sv);
	ep_attach(&t->ep, sv[1]);
	t->st = kb_stream_open(c->s, &o, sv[0], &tcbs, t);
	if (t->st)
		t->id = kb_stream_id(t->st);
	return t->st;
}

/* op carries len_up bytes from pool+off_up to acc, acc carries len_down
 * bytes from pool+off_down back; both shut down writing when done. */
static void
spec(struct tstream *op, struct tstream *acc, size_t off_up, size_t len_up, size_t off_down,
    size_t len_down)
{
	op->ep.tx = pool + off_up;
	op->ep.txlen = len_up;
	op->ep.shut = 1;
	op->ep.exp = pool + off_down;
	op->ep.explen = len_down;
	acc->ep.tx = pool + off_down;
	acc->ep.txlen = len_down;
	acc->ep.shut = 1;
	acc->ep.exp = pool + off_up;
	acc->ep.explen = len_up;
}

static int
intact(const struct tstream *t)
{
	return !t->ep.mismatch && t->ep.rxlen == t->ep.explen && t->ep.eof;
}

struct group {
	struct tstream *v;
	int n;
};

static int
pred_group_done(void *arg)
{
	struct group *g = arg;
	int i;

	for (i = 0; i < g->n; i++)
		if (!tstream_done(&g->v[i]))
			return 0;
	return 1;
}

/* The kb_stream of id on session s (NULL once closed). */
static struct kb_stream *
find_stream(struct kb_session *s, uint32_t id)
{
	return s ? table_get(s, id) : NULL;
}

/* --- 1. hello --- */

static void
test_hello(void)
{
	struct sctx a, b;
	struct two p = { &a, &b };
	cJSON *h;

	printf("# hello exchange\n");
	ok(pair_up(&a, &b));
	ok(a.hellos == 1 && b.hellos == 1);
	ok(kb_session_ready(a.s) && kb_session_ready(b.s));
	/* a second hello is refused locally */
	ok(kb_session_send_hello(a.s, cJSON_CreateObject()) == -1);
	/* a control message the peer knows passes, and the session stays */
	h = cJSON_CreateObject();
	cJSON_AddStringToObject(h, "type", "test-ok");
	ok(kb_session_send_control(a.s, h) == 0);
	run_for(50);
	ok(!a.closed && !b.closed);
	/* goaway without streams ends the session at once, cleanly */
	kb_session_goaway(a.s, "bye now", 1000);
	ok(a.closed == 1 && a.err_null);
	ok(run_until(pred_flag, &b.closed, 2000));
	ok(b.goaways == 1 && strcmp(b.goaway_reason, "bye now") == 0);
	ok(strstr(b.err, "bye now") != NULL);
	pair_free(&a, &b);

	printf("# hello with proto 2 is refused\n");
	pair_new(&a, &b);
	h = cJSON_CreateObject();
	cJSON_AddNumberToObject(h, "proto", 2);
	cJSON_AddStringToObject(h, "role", "daemon");
	a.s->hello_sent = 1;
	ok(send_json(a.s, KB_F_HELLO, h) == 0);
	ok(run_until(pred_both_closed, &p, 2000));
	ok(b.hellos == 0); /* the version is checked before on_hello */
	ok(strstr(b.err, "unsupported protocol version 2") != NULL);
	ok(strstr(a.err, "unsupported protocol version 2") != NULL);
	pair_free(&a, &b);

	printf("# hello without proto is refused\n");
	pair_new(&a, &b);
	h = cJSON_CreateObject();
	cJSON_AddStringToObject(h, "role", "daemon");
	a.s->hello_sent = 1;
	ok(send_json(a.s, KB_F_HELLO, h) == 0);
	ok(run_until(pred_both_closed, &p, 2000));
	ok(strstr(a.err, "unsupported protocol version") != NULL);
	pair_free(&a, &b);

	printf("# on_hello returning -1 closes with the reason\n");
	pair_new(&a, &b);
	b.refuse = 1;
	send_daemon_hello(&a);
	ok(run_until(pred_both_closed, &p, 2000));
	ok(b.hellos == 1 && a.hellos == 0);
	ok(strstr(b.err, "user daemon is not allowed here") != NULL);
	ok(strstr(a.err, "user daemon is not allowed here") != NULL);
	ok(!a.err_null && !b.err_null);
	pair_free(&a, &b);
}

/* --- 2. data both ways on one stream --- */

static void
test_data(void)
{
	struct sctx a, b;
	struct tstream op, acc;
	struct group g = { NULL, 0 };
	struct kb_session_stats sa, sb;

	printf("# 8 MiB up and 4 MiB down on one stream\n");
	ok(pair_up(&a, &b));
	tstream_init(&op);
	tstream_init(&acc);
	spec(&op, &acc, 0, 8 * MiB, 8 * MiB, 4 * MiB);
	b.acc = &acc;
	b.nacc = 1;
	ok(open_stream(&a, &op, PORT_BASE) != NULL);
	g.v = &op;
	g.n = 1;
	ok(run_until(pred_group_done, &g, 10000));
	g.v = &acc;
	ok(run_until(pred_group_done, &g, 5000));
	ok(op.accepted);
	ok(intact(&op));
	ok(intact(&acc));
	ok(op.closed == 1 && op.reason == 0 && op.text[0] == '\0');
	ok(acc.closed == 1 && acc.reason == 0);
	ok(op.ep.txdone && acc.ep.txdone && !op.ep.txerr && !acc.ep.txerr);
	kb_session_stats(a.s, &sa);
	kb_session_stats(b.s, &sb);
	ok(sa.bytes_out == 8 * MiB && sa.bytes_in == 4 * MiB);
	ok(sb.bytes_in == 8 * MiB && sb.bytes_out == 4 * MiB);
	ok(sa.streams_opened == 1 && sb.streams_opened == 1);
	ok(sa.streams == 0 && sb.streams == 0);
	ok(!a.closed && !b.closed);
	pair_free(&a, &b);
	ep_close(&op.ep, 0);
	ep_close(&acc.ep, 0);
}

/* --- 3. many streams at once --- */

#define NMANY 200

static void
test_many(void)
{
	static struct tstream op[NMANY], acc[NMANY];
	struct sctx a, b;
	struct group g;
	struct kb_session_stats sa, sb;
	uint64_t up = 0, down = 0;
	int i, opened = 0, good = 0, clean = 0;

	printf("# %d streams at once\n", NMANY);
	ok(pair_up(&a, &b));
	b.acc = acc;
	b.nacc = NMANY;
	for (i = 0; i < NMANY; i++) {
		size_t lu = 32 * KiB + (size_t)i * 101, ld = 8 * KiB + (size_t)i * 37;

		tstream_init(&op[i]);
		tstream_init(&acc[i]);
		spec(&op[i], &acc[i], (size_t)i * 40009, lu, 12 * MiB + (size_t)i * 30011, ld);
		up += lu;
		down += ld;
	}
	for (i = 0; i < NMANY; i++)
		opened += open_stream(&a, &op[i], PORT_BASE + i) != NULL;
	ok(opened == NMANY);
	g.v = op;
	g.n = NMANY;
	ok(run_until(pred_group_done, &g, 10000));
	g.v = acc;
	ok(run_until(pred_group_done, &g, 5000));
	for (i = 0; i < NMANY; i++) {
		good += intact(&op[i]) && intact(&acc[i]);
		clean += op[i].closed == 1 && op[i].reason == 0 && acc[i].closed == 1 &&
		    acc[i].reason == 0;
	}
	ok(good == NMANY);
	ok(clean == NMANY);
	kb_session_stats(a.s, &sa);
	kb_session_stats(b.s, &sb);
	ok(sa.bytes_out == up && sb.bytes_in == up);
	ok(sa.bytes_in == down && sb.bytes_out == down);
	ok(sa.streams_opened == NMANY && sb.streams_opened == NMANY);
	ok(sa.streams == 0 && sb.streams == 0);
	pair_free(&a, &b);
	for (i = 0; i < NMANY; i++) {
		ep_close(&op[i].ep, 0);
		ep_close(&acc[i].ep, 0);
	}
}

/* --- 4. flow control: a stalled stream does not stop the others --- */

struct stall_watch {
	struct sctx *b;
	uint32_t id;
	size_t max_buffered;
};

static void
stall_sample(evutil_socket_t fd, short what, void *arg)
{
	struct stall_watch *w = arg;
	struct kb_stream *st = find_stream(w->b->s, w->id);

	(void)fd;
	(void)what;
	if (st && st->out) {
		size_t n = evbuffer_get_length(st->out);
		if (n > w->max_buffered)
			w->max_buffered = n;
	}
}

struct stall_state {
	struct sctx *a;
	struct tstream *op;
};

/* The opener's stream is out of credit and its local writer is blocked. */
static int
pred_stalled(void *arg)
{
	struct stall_state *p = arg;
	struct kb_stream *st = find_stream(p->a->s, p->op->id);

	return st && st->tx_credit == 0 && p->op->ep.tx_blocked;
}

static void
test_flow(void)
{
	struct sctx a, b;
	struct tstream op[2], acc[2];
	struct stall_watch w;
	struct stall_state ss;
	struct event *sampler;
	struct timeval tv = { 0, 2000 };
	struct group g;
	struct kb_session_stats sa, sb;
	size_t kcap = kernel_cap(), bound, pushed;

	printf("# flow control: a stalled reader, 16 MiB on another stream\n");
	ok(pair_up(&a, &b));
	b.acc = acc;
	b.nacc = 2;
	tstream_init(&op[0]);
	tstream_init(&acc[0]);
	tstream_init(&op[1]);
	tstream_init(&acc[1]);
	spec(&op[0], &acc[0], 0, 16 * MiB, 0, 0);
	spec(&op[1], &acc[1], 16 * MiB, 4 * MiB, 0, 0);
	acc[1].ep.paused = 1; /* the local program of stream 2 never reads */
	ok(open_stream(&a, &op[1], PORT_BASE + 1) != NULL);
	ok(open_stream(&a, &op[0], PORT_BASE + 0) != NULL);
	w.b = &b;
	w.id = op[1].id;
	w.max_buffered = 0;
	sampler = event_new(base, -1, EV_PERSIST, stall_sample, &w);
	event_add(sampler, &tv);

	g.v = op;
	g.n = 1;
	ok(run_until(pred_group_done, &g, 10000));
	g.v = acc;
	ok(run_until(pred_group_done, &g, 5000));
	ok(intact(&acc[0]) && op[0].reason == 0 && acc[0].reason == 0);
	ok(!op[1].closed && !acc[1].closed && acc[1].ep.rxlen == 0);

	ss.a = &a;
	ss.op = &op[1];
	ok(run_until(pred_stalled, &ss, 3000));
	/* what the writer got in: its kernel buffer, one window, and the
	 * kernel buffer on the far side (kbridge reads local sockets only
	 * as far as it has credit) */
	pushed = op[1].ep.txoff;
	bound = KB_WINDOW_INIT + 2 * kcap;
	printf("# stalled writer pushed %zu bytes (bound %zu, kernel cap %zu), "
	    "receiver buffered at most %zu\n", pushed, bound, kcap, w.max_buffered);
	ok(pushed >= KB_WINDOW_INIT);
	ok(pushed <= bound);
	ok(pushed < op[1].ep.txlen);
	ok(w.max_buffered <= KB_WINDOW_INIT);
	ok(w.max_buffered > 0);

	/* now the reader wakes up and everything arrives */
	ep_resume(&acc[1].ep);
	g.v = &op[1];
	ok(run_until(pred_group_done, &g, 10000));
	g.v = &acc[1];
	ok(run_until(pred_group_done, &g, 5000));
	ok(intact(&acc[1]));
	ok(op[1].reason == 0 && acc[1].reason == 0);
	ok(w.max_buffered <= KB_WINDOW_INIT);
	kb_session_stats(a.s, &sa);
	kb_session_stats(b.s, &sb);
	ok(sa.bytes_out == 20 * MiB && sb.bytes_in == 20 * MiB);
	event_free(sampler);
	pair_free(&a, &b);
	ep_close(&op[0].ep, 0);
	ep_close(&op[1].ep, 0);
	ep_close(&acc[0].ep, 0);
	ep_close(&acc[1].ep, 0);
}

/* --- 5. half-close --- */

static uint8_t reply_txt[200 * KiB];

static void
reply_on_eof(struct ep *e)
{
	struct tstream *t = e->owner;

	/* the stream is still open: the other direction goes on */
	e->owner = NULL;
	if (t && !t->closed && e->eof) {
		e->tx = reply_txt;
		e->txlen = sizeof(reply_txt);
		e->shut = 1;
		ep_go(e);
	}
}

static void
test_halfclose(void)
{
	struct sctx a, b;
	struct tstream op, acc;
	struct group g;

	printf("# half-close: request, EOF, then the reply\n");
	memcpy(reply_txt, pool + 5 * MiB, sizeof(reply_txt));
	ok(pair_up(&a, &b));
	b.acc = &acc;
	b.nacc = 1;
	tstream_init(&op);
	tstream_init(&acc);
	op.ep.tx = pool;
	op.ep.txlen = 100 * KiB;
	op.ep.shut = 1;
	op.ep.exp = reply_txt;
	op.ep.explen = sizeof(reply_txt);
	acc.ep.exp = pool;
	acc.ep.explen = 100 * KiB;
	acc.ep.on_eof = reply_on_eof;
	acc.ep.owner = &acc;
	ok(open_stream(&a, &op, PORT_BASE) != NULL);
	g.v = &op;
	g.n = 1;
	ok(run_until(pred_group_done, &g, 5000));
	g.v = &acc;
	ok(run_until(pred_group_done, &g, 5000));
	ok(acc.ep.eof && acc.ep.rxlen == 100 * KiB && !acc.ep.mismatch);
	ok(acc.ep.tx == reply_txt && acc.ep.txdone && !acc.ep.txerr);
	ok(intact(&op));
	ok(op.closed == 1 && op.reason == 0 && op.text[0] == '\0');
	ok(acc.closed == 1 && acc.reason == 0 && acc.text[0] == '\0');
	pair_free(&a, &b);
	ep_close(&op.ep, 0);
	ep_close(&acc.ep, 0);
}

/* --- 6. reset --- */

struct arrived {
	struct sctx *a;
	struct tstream *op;
	uint64_t n;
};

/* n bytes reached the opener's local socket (none left in kbridge). */
static int
pred_arrived(void *arg)
{
	struct arrived *p = arg;
	struct kb_stream *st = find_stream(p->a->s, p->op->id);
	struct kb_session_stats s;

	if (!st)
		return 0;
	kb_session_stats(p->a->s, &s);
	return s.bytes_in == p->n && evbuffer_get_length(st->out) == 0;
}

static int
pred_two_closed(void *arg)
{
	struct tstream **t = arg;

	return t[0]->closed && t[1]->closed;
}

static void
test_reset(void)
{
	struct sctx a, b;
	struct tstream op, acc, *pair[2] = { &op, &acc };
	struct arrived ar;
	int tcp;

	printf("# reset: refused open\n");
	ok(pair_up(&a, &b));
	tstream_init(&op);
	ok(open_stream(&a, &op, PORT_REFUSE) != NULL);
	ok(op.id == 1);
	ok(run_until(pred_flag, &op.closed, 2000));
	ok(op.reason == KB_RST_REFUSED);
	ok(strcmp(op.text, "connection refused by 10.96.0.1:9") == 0);
	ok(!op.accepted);
	ok(run_until(pred_flag, &op.ep.eof, 2000) || op.ep.rxerr == ECONNRESET);
	ok(b.opens == 1);
	ep_close(&op.ep, 0);

	printf("# reset: kb_stream_reset with a reason from the opener\n");
	b.acc = &acc;
	b.nacc = 1;
	tstream_init(&op);
	tstream_init(&acc);
	ok(open_stream(&a, &op, PORT_BASE) != NULL);
	ok(run_until(pred_flag, &op.accepted, 2000));
	kb_stream_reset(op.st, KB_RST_TIMEOUT, "idle timeout");
	ok(op.closed == 1 && op.reason == KB_RST_TIMEOUT && strcmp(op.text, "idle timeout") == 0);
	ok(run_until(pred_flag, &acc.closed, 2000));
	ok(acc.reason == KB_RST_TIMEOUT && strcmp(acc.text, "idle timeout") == 0);
	ok(run_until(pred_group_done, &(struct group){ &acc, 1 }, 2000));
	ok(!a.closed && !b.closed);
	ep_close(&op.ep, 0);
	ep_close(&acc.ep, 0);

	for (tcp = 0; tcp <= 1; tcp++) {
		printf("# reset: the opener's local end closes abortively (%s)\n",
		    tcp ? "TCP" : "AF_UNIX");
		use_tcp = tcp;
		tstream_init(&op);
		tstream_init(&acc);
		/* the accepting side's program sends 1000 bytes that the
		 * opener's program never reads, then the latter aborts */
		acc.ep.tx = pool;
		acc.ep.txlen = 1000;
		op.ep.paused = 1;
		op.ep.exp = pool;
		op.ep.explen = 1000;
		ok(open_stream(&a, &op, PORT_BASE) != NULL);
		ar.a = &a;
		ar.op = &op;
		{
			struct kb_session_stats s;
			kb_session_stats(a.s, &s);
			ar.n = s.bytes_in + 1000;
		}
		ok(run_until(pred_arrived, &ar, 2000));
		ep_close(&op.ep, 1);
		ok(run_until(pred_two_closed, pair, 2000));
		ok(op.reason == KB_RST_CANCEL);
		ok(acc.reason == KB_RST_CANCEL);
		ok(strstr(acc.text, "local connection") != NULL && strstr(acc.text, "reset") != NULL);
		if (!strstr(acc.text, "reset"))
			printf("# reset text: %s\n", acc.text);
		ok(run_until(pred_group_done, &(struct group){ &acc, 1 }, 2000));
		if (tcp)
			ok(acc.ep.rxerr == ECONNRESET);
		else
			ok(acc.ep.eof || acc.ep.rxerr == ECONNRESET);
		ok(!a.closed && !b.closed);
		ep_close(&acc.ep, 0);
	}
	use_tcp = 0;
	pair_free(&a, &b);
}

/* --- 7. heartbeat --- */

/* kb_stream_dial: the stream is accepted with the connected socket, or
 * reset with the reason of the failed connect and the text done wrote;
 * done is told exactly once either way. */
static void
test_stream_dial(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct sctx a, b;
	struct tstream op, op2;
	char expect[200];
	int l, fd;

	printf("# kb_stream_dial: a port that answers\n");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	ok(l >= 0 && bind(l, (struct sockaddr *)&sin, sizeof(sin)) == 0 && listen(l, 4) == 0 &&
	    getsockname(l, (struct sockaddr *)&sin, &len) == 0);
	kbdial_port = ntohs(sin.sin_port);
	ok(pair_up(&a, &b));
	tstream_init(&op);
	kbdial_told = 0;
	ok(open_stream(&a, &op, PORT_KBDIAL) != NULL);
	ok(run_until(pred_flag, &op.accepted, 2000));
	ok(kbdial_told == 1 && kbdial_err == 0 && !op.closed);
	fd = accept(l, NULL, NULL);
	ok(fd >= 0);
	if (fd >= 0)
		close(fd);
	ep_close(&op.ep, 0);

	printf("# kb_stream_dial: a port nobody listens on\n");
	close(l);	/* the port is free now: connects are refused */
	tstream_init(&op2);
	kbdial_told = 0;
	ok(open_stream(&a, &op2, PORT_KBDIAL) != NULL);
	ok(run_until(pred_flag, &op2.closed, 2000));
	snprintf(expect, sizeof(expect), "nothing on port %u (%s)", kbdial_port,
	    strerror(ECONNREFUSED));
	ok(kbdial_told == 1 && kbdial_err == ECONNREFUSED && !op2.accepted);
	ok(op2.reason == KB_RST_REFUSED && !strcmp(op2.text, expect));
	ep_close(&op2.ep, 0);

	printf("# kb_stream_dial: the opener resets the stream while it connects\n");
	{
		struct tstream op3;
		int fill[4], i;

		/* A listener whose queue is full drops our SYN: the connect hangs. */
		sin.sin_port = 0;
		len = sizeof(sin);
		l = socket(AF_INET, SOCK_STREAM, 0);
		ok(l >= 0 && bind(l, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		    listen(l, 0) == 0 && getsockname(l, (struct sockaddr *)&sin, &len) == 0);
		for (i = 0; i < 4; i++) {
			fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			(void)connect(fill[i], (struct sockaddr *)&sin, sizeof(sin));
		}
		run_for(50);
		kbdial_port = ntohs(sin.sin_port);
		tstream_init(&op3);
		kbdial_told = 0;
		ok(open_stream(&a, &op3, PORT_KBDIAL) != NULL);
		run_for(100);
		ok(kbdial_told == 0 && !op3.closed && !op3.accepted);
		kb_stream_reset(op3.st, KB_RST_CANCEL, "the caller went away");
		ok(run_until(pred_flag, &kbdial_told, 2000));
		ok(kbdial_told == 1 && kbdial_err < 0);
		run_for(50);
		ok(kbdial_told == 1);
		ep_close(&op3.ep, 0);
		for (i = 0; i < 4; i++)
			close(fill[i]);
		close(l);
	}

	printf("# kb_stream_dial2: 127.0.0.1 refuses, ::1 answers (a Node or Vite server)\n");
	{
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
		struct tstream op4, op5;
		int one = 1;

		sin6.sin6_addr = in6addr_loopback;
		len = sizeof(sin6);
		l = socket(AF_INET6, SOCK_STREAM, 0);
		ok(l >= 0 && setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0 &&
		    bind(l, (struct sockaddr *)&sin6, sizeof(sin6)) == 0 && listen(l, 4) == 0 &&
		    getsockname(l, (struct sockaddr *)&sin6, &len) == 0);
		kbdial_port = ntohs(sin6.sin6_port);
		tstream_init(&op4);
		kbdial_told = 0;
		ok(open_stream(&a, &op4, PORT_KBDIAL2) != NULL);
		ok(run_until(pred_flag, &op4.accepted, 2000));
		ok(kbdial_told == 1 && kbdial_err == 0 && !op4.closed);
		fd = accept(l, NULL, NULL);
		ok(fd >= 0);
		if (fd >= 0)
			close(fd);
		ep_close(&op4.ep, 0);

		printf("# kb_stream_dial2: both refuse: told once, refused\n");
		close(l);
		tstream_init(&op5);
		kbdial_told = 0;
		ok(open_stream(&a, &op5, PORT_KBDIAL2) != NULL);
		ok(run_until(pred_flag, &op5.closed, 2000));
		run_for(50);
		ok(kbdial_told == 1 && kbdial_err == ECONNREFUSED && !op5.accepted &&
		    op5.reason == KB_RST_REFUSED);
		ep_close(&op5.ep, 0);
	}
	pair_free(&a, &b);
}

static void
test_heartbeat(void)
{
	struct sctx a, b;
	struct two p = { &a, &b };

	printf("# heartbeat: an idle session stays up\n");
	ok(pair_up(&a, &b));
	kb_session_set_heartbeat(a.s, 100, 400);
	kb_session_set_heartbeat(b.s, 100, 400);
	run_for(1200);
	ok(!a.closed && !b.closed);
	ok(a.s && b.s && kb_session_ready(a.s) && kb_session_ready(b.s));
	ok(a.s && a.s->ping_sent_us != 0 && b.s && b.s->ping_sent_us != 0);

	printf("# heartbeat: a peer that stops is declared dead\n");
	if (b.s) {
		evtimer_del(b.s->timer);
		kb_conn_read_enable(b.s->conn, 0);
	}
	ok(run_until(pred_flag, &a.closed, 3000));
	ok(strstr(a.err, "timed out") != NULL);
	ok(!b.closed);
	/* B wakes up and finds the goaway (code 3) */
	if (b.s)
		kb_conn_read_enable(b.s->conn, 1);
	ok(run_until(pred_flag, &b.closed, 2000));
	ok(strstr(b.err, "timed out") != NULL);
	pair_free(&a, &b);

	printf("# heartbeat: the stopped side itself notices silence\n");
	ok(pair_up(&a, &b));
	kb_session_set_heartbeat(a.s, 100, 400);
	kb_session_set_heartbeat(b.s, 100, 400);
	kb_conn_read_enable(b.s->conn, 0); /* B pings on, hears nothing */
	ok(run_until(pred_flag, &b.closed, 3000));
	ok(strstr(b.err, "timed out") != NULL);
	ok(run_until(pred_flag, &a.closed, 2000));
	pair_free(&a, &b);

	printf("# heartbeat: no PING before the hellos (PROTOCOL.md 3)\n");
	pair_new(&a, &b);
	kb_session_set_heartbeat(b.s, 50, 5000);
	kb_session_set_heartbeat(a.s, 50, 5000);
	run_for(300); /* the initiator is slow to send its hello */
	if (a.s)
		send_daemon_hello(&a);
	run_until(pred_ready, &p, 2000);
	ok(!a.closed && !b.closed);
	ok(a.s && b.s && kb_session_ready(a.s) && kb_session_ready(b.s));
	if (a.closed)
		printf("# initiator closed: %s\n", a.err);
	pair_free(&a, &b);
}

/* --- 8. goaway --- */

static void
test_goaway(void)
{
	struct sctx a, b;
	struct tstream op, acc, op2, op3;
	struct two p = { &a, &b };
	struct group g;
	int sv[2];

	printf("# goaway with a stream open\n");
	ok(pair_up(&a, &b));
	b.acc = &acc;
	b.nacc = 1;
	tstream_init(&op);
	tstream_init(&acc);
	tstream_init(&op2);
	tstream_init(&op3);
	spec(&op, &acc, 0, 256 * KiB, MiB, 128 * KiB);
	op.ep.tx_hold = acc.ep.tx_hold = 1;
	ok(open_stream(&a, &op, PORT_BASE) != NULL);
	ok(run_until(pred_flag, &op.accepted, 2000));

	kb_session_goaway(b.s, "maintenance", 5000);
	ok(!b.closed && !kb_session_ready(b.s));
	/* an open that crosses the goaway is reset with reason 7 */
	ok(open_stream(&a, &op2, PORT_BASE) != NULL);
	ok(run_until(pred_flag, &op2.closed, 2000));
	ok(op2.reason == KB_RST_SESSION && strstr(op2.text, "going away") != NULL);
	ok(a.goaways == 1 && strcmp(a.goaway_reason, "maintenance") == 0);
	/* after the goaway no side opens streams */
	ok(open_stream(&a, &op3, PORT_BASE) == NULL);
	ep_close(&op3.ep, 0);
	tstream_init(&op3);
	mkpair(sv);
	close(sv[1]);
	ok(kb_stream_open(b.s, &(struct kb_open){ .kind = KB_OPEN_DIAL, .family = 4, .port = 80, .addr = { 10, 0, 0, 1 } },
	    sv[0], &tcbs, &op3) == NULL);
	ok(!op.closed && !acc.closed && !a.closed && !b.closed);

	/* the open stream finishes, then both sessions end; the reply first,
	 * so that B's stream ends last (see test_goaway_delivery) */
	ep_go(&acc.ep);
	ok(run_until(pred_flag, &op.ep.eof, 5000));
	ep_go(&op.ep);
	g.v = &op;
	g.n = 1;
	ok(run_until(pred_group_done, &g, 5000));
	g.v = &acc;
	ok(run_until(pred_group_done, &g, 5000));
	ok(intact(&op) && intact(&acc));
	ok(op.reason == 0 && acc.reason == 0);
	ok(run_until(pred_both_closed, &p, 3000));
	ok(b.closed == 1 && b.err_null);
	ok(a.closed == 1 && strstr(a.err, "maintenance") != NULL);
	pair_free(&a, &b);
	ep_close(&op.ep, 0);
	ep_close(&acc.ep, 0);
	ep_close(&op2.ep, 0);
}

/* The goaway side ends the session as soon as its streams are done; the peer
 * must still deliver what it already received to its local socket. */
static void
test_goaway_delivery(void)
{
	struct sctx a, b;
	struct tstream op, acc;
	size_t total = 384 * KiB; /* less than one window: B sends it all alone */
	struct group g;

	printf("# goaway: data received before the session closes still arrives\n");
	ok(pair_up(&a, &b));
	b.acc = &acc;
	b.nacc = 1;
	tstream_init(&op);
	tstream_init(&acc);
	/* request: 1 KiB and EOF; reply: total bytes and EOF, which B can
	 * send without any credit coming back */
	spec(&op, &acc, 0, KiB, 2 * MiB, total);
	op.ep.paused = 1; /* the opener's program reads only later */
	ok(open_stream(&a, &op, PORT_BASE) != NULL);
	ok(run_until(pred_flag, &op.accepted, 2000));
	kb_session_goaway(b.s, "done", 10000);
	/* B sent everything and its FIN: its stream is done, it closes */
	ok(run_until(pred_flag, &b.closed, 3000));
	ok(b.err_null);
	ok(acc.closed && acc.reason == 0);
	ok(run_until(pred_flag, &a.closed, 2000));
	ep_resume(&op.ep);
	g.v = &op;
	g.n = 1;
	ok(run_until(pred_group_done, &g, 3000));
	printf("# opener's program got %zu of %zu bytes, stream reason %d (%s)\n",
	    op.ep.rxlen, total, op.reason, op.text);
	ok(op.ep.rxlen == total && !op.ep.mismatch && op.ep.eof);
	ok(op.reason == 0);
	pair_free(&a, &b);
	ep_close(&op.ep, 0);
	ep_close(&acc.ep, 0);
}

/* --- 9. protocol errors from a raw peer --- */

struct raw {
	struct bufferevent *bev;
	int eof;
};

static void
raw_event(struct bufferevent *bev, short what, void *arg)
{
	struct raw *r = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		r->eof = 1;
}

static void
rawf(struct raw *r, uint8_t type, uint8_t flags, uint16_t len, uint32_t stream, const void *p,
    size_t plen)
{
	uint8_t h[KB_FRAME_HDR] = { type, flags, len >> 8, len & 0xff, stream >> 24,
		(stream >> 16) & 0xff, (stream >> 8) & 0xff, stream & 0xff };

	bufferevent_write(r->bev, h, sizeof(h));
	if (plen)
		bufferevent_write(r->bev, p, plen);
}

static void
raw_frame(struct raw *r, uint8_t type, uint32_t stream, const void *p, size_t plen)
{
	rawf(r, type, 0, (uint16_t)plen, stream, p, plen);
}

static void
raw_hello(struct raw *r)
{
	const char *h = "{\"proto\":1,\"role\":\"daemon\"}";

	raw_frame(r, KB_F_HELLO, 0, h, strlen(h));
}

static void
raw_open(struct raw *r, uint32_t id, uint16_t port)
{
	struct kb_open o = { .kind = KB_OPEN_DIAL, .family = 4, .port = port,
		.addr = { 10, 96, 0, 1 } };
	uint8_t b[32];

	raw_frame(r, KB_F_OPEN, id, b, kb_open_encode(&o, b));
}

/* DATA frames carrying pool[off..off+len) on stream id. */
static void
raw_send_data(struct raw *r, uint32_t id, size_t off, size_t len)
{
	while (len > 0) {
		size_t n = len < KB_FRAME_MAX ? len : KB_FRAME_MAX;

		raw_frame(r, KB_F_DATA, id, pool + off, n);
		off += n;
		len -= n;
	}
}

static void
raw_u32(struct raw *r, uint8_t type, uint32_t id, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	raw_frame(r, type, id, b, 4);
}

/* Find the n-th frame of type in what the raw peer received; copies up to
 * cap payload bytes. Returns the payload length or -1. */
static long
raw_find(struct raw *r, uint8_t type, int nth, uint32_t *stream, uint8_t *out, size_t cap)
{
	struct evbuffer *in = bufferevent_get_input(r->bev);
	size_t len = evbuffer_get_length(in), off = 0;
	uint8_t *p = evbuffer_pullup(in, -1);

	while (off + KB_FRAME_HDR <= len) {
		uint16_t fl = (uint16_t)(p[off + 2] << 8 | p[off + 3]);

		if (off + KB_FRAME_HDR + fl > len)
			break;
		if (p[off] == type && nth-- == 0) {
			if (stream)
				*stream = (uint32_t)p[off + 4] << 24 | (uint32_t)p[off + 5] << 16 |
				    (uint32_t)p[off + 6] << 8 | p[off + 7];
			if (out)
				memcpy(out, p + off + KB_FRAME_HDR, fl < cap ? fl : cap);
			return fl;
		}
		off += KB_FRAME_HDR + fl;
	}
	return -1;
}

/* Sum of the WINDOW increments received for stream id. */
static uint32_t
raw_window_sum(struct raw *r, uint32_t id)
{
	uint32_t sum = 0, sid;
	uint8_t b[4];
	int i;

	for (i = 0; raw_find(r, KB_F_WINDOW, i, &sid, b, sizeof(b)) == 4; i++)
		if (sid == id)
			sum += (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return sum;
}

/* Type of the first frame received, or -1. */
static int
raw_first_type(struct raw *r)
{
	struct evbuffer *in = bufferevent_get_input(r->bev);
	uint8_t *p;

	if (evbuffer_get_length(in) < KB_FRAME_HDR)
		return -1;
	p = evbuffer_pullup(in, KB_FRAME_HDR);
	return p[0];
}

struct rawcase {
	struct sctx b;
	struct tstream acc[1];
	struct raw r;
	uint64_t want_in;
};

static void
raw_new(struct rawcase *c)
{
	int sv[2];

	sctx_init(&c->b, "B", 0);
	tstream_init(&c->acc[0]);
	c->b.acc = c->acc;
	c->b.nacc = 1;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	nonblock(sv[0]);
	nonblock(sv[1]);
	c->b.s = kb_session_new(kb_end(sv[1]), 0, &scbs, &c->b);
	c->r.eof = 0;
	c->r.bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->r.bev, NULL, NULL, raw_event, &c->r);
	bufferevent_enable(c->r.bev, EV_READ | EV_WRITE);
}

struct raw_wait {
	struct raw *r;
	uint8_t type;
};

static int
pred_raw_has(void *arg)
{
	struct raw_wait *w = arg;

	return raw_find(w->r, w->type, 0, NULL, NULL, 0) >= 0;
}

static int
pred_bytes_in(void *arg)
{
	struct rawcase *c = arg;
	struct kb_session_stats s;

	if (!c->b.s)
		return 0;
	kb_session_stats(c->b.s, &s);
	return s.bytes_in == c->want_in;
}

static int
pred_raw_over(void *arg)
{
	struct rawcase *c = arg;

	return c->b.closed && c->r.eof;
}

/* The responder ended with a protocol error naming what, and told the raw
 * peer with GOAWAY code 1. */
static void
raw_expect_error(struct rawcase *c, const char *name, const char *what)
{
	uint8_t g[64];
	long gl;
	int good;

	ok(run_until(pred_raw_over, c, 2000));
	good = strstr(c->b.err, "protocol error") != NULL && (!what || strstr(c->b.err, what));
	if (!good)
		printf("# %s: responder closed with \"%s\"\n", name, c->b.err);
	ok(good);
	gl = raw_find(&c->r, KB_F_GOAWAY, 0, NULL, g, sizeof(g));
	ok(gl >= 5 + 14 && g[4] == KB_GOAWAY_PROTOCOL && memcmp(g + 5, "protocol error", 14) == 0);
}

static void
raw_free(struct rawcase *c)
{
	if (c->b.s)
		kb_session_free(c->b.s);
	c->b.s = NULL;
	bufferevent_free(c->r.bev);
	ep_close(&c->acc[0].ep, 0);
	ep_close(&c->b.dt.ep, 0);
	run_for(10);
}

enum { PRE_NONE, PRE_HELLO, PRE_OPEN, PRE_DEFER };

struct bad {
	const char *name;
	int pre;            /* what the raw peer does first */
	uint8_t type, flags;
	int len;            /* header length; -1: the payload's */
	uint32_t stream;
	const char *payload;
	size_t plen;
	const char *what;   /* expected in the error, NULL: any */
};

static const struct bad bads[] = {
	{ "data before hello", PRE_NONE, KB_F_DATA, 0, -1, 1, "abcd", 4, "before hello" },
	{ "ping before hello", PRE_NONE, KB_F_PING, 0, -1, 0, "12345678", 8, "before hello" },
	{ "open before hello", PRE_NONE, KB_F_OPEN, 0, -1, 1,
	    "\x01\x04\x00\x50\x0a\x00\x00\x01", 8, "before hello" },
	{ "unknown frame type", PRE_HELLO, 12, 0, -1, 0, "x", 1, "unknown frame type" },
	{ "type zero", PRE_HELLO, 0, 0, -1, 0, "", 0, "unknown frame type" },
	{ "flags set", PRE_HELLO, KB_F_PING, 1, -1, 0, "12345678", 8, "flags" },
	{ "reserved stream bit", PRE_OPEN, KB_F_WINDOW, 0, -1, 0x80000001u, "\0\0\0\1", 4,
	    "reserved" },
	{ "length too large", PRE_HELLO, KB_F_DATA, 0, 0xffff, 1, "", 0, "too long" },
	{ "data on stream 0", PRE_HELLO, KB_F_DATA, 0, -1, 0, "abcd", 4, NULL },
	{ "ping on a stream", PRE_HELLO, KB_F_PING, 0, -1, 1, "12345678", 8, NULL },
	{ "short ping", PRE_HELLO, KB_F_PING, 0, -1, 0, "1234", 4, "length" },
	{ "never opened stream", PRE_HELLO, KB_F_WINDOW, 0, -1, 5, "\0\0\0\1", 4, "never opened" },
	{ "data on never opened stream", PRE_HELLO, KB_F_DATA, 0, -1, 7, "abcd", 4, "never opened" },
	{ "second hello", PRE_HELLO, KB_F_HELLO, 0, -1, 0, "{\"proto\":1}", 11, "second hello" },
	{ "hello not json", PRE_NONE, KB_F_HELLO, 0, -1, 0, "{\"proto\":1", 10, NULL },
	{ "hello with nul", PRE_NONE, KB_F_HELLO, 0, -1, 0, "{\"p\0\":1}", 8, "nul" },
	{ "control without type", PRE_HELLO, KB_F_CONTROL, 0, -1, 0, "{\"id\":1}", 8, "control" },
	{ "control unknown type", PRE_HELLO, KB_F_CONTROL, 0, -1, 0, "{\"type\":\"nope\"}", 15,
	    "bad control message nope" },
	{ "open with even id", PRE_HELLO, KB_F_OPEN, 0, -1, 2,
	    "\x01\x04\x03\xe8\x0a\x00\x00\x01", 8, "bad stream id" },
	{ "open with old id", PRE_OPEN, KB_F_OPEN, 0, -1, 1,
	    "\x01\x04\x03\xe8\x0a\x00\x00\x01", 8, "bad stream id" },
	{ "open port zero", PRE_HELLO, KB_F_OPEN, 0, -1, 1,
	    "\x01\x04\x00\x00\x0a\x00\x00\x01", 8, "port zero" },
	{ "open unknown kind", PRE_HELLO, KB_F_OPEN, 0, -1, 1,
	    "\x09\x04\x00\x50\x0a\x00\x00\x01", 8, "kind" },
	{ "accept on the peer's stream", PRE_OPEN, KB_F_ACCEPT, 0, -1, 1, "", 0,
	    "unexpected accept" },
	{ "window overflow", PRE_OPEN, KB_F_WINDOW, 0, -1, 1, "\x7f\xff\xff\xff", 4,
	    "window overflow" },
	{ "zero window", PRE_OPEN, KB_F_WINDOW, 0, -1, 1, "\0\0\0\0", 4, "zero window" },
	{ "reset reason 0", PRE_OPEN, KB_F_RESET, 0, -1, 1, "\0oops", 5, "reset reason" },
	{ "reset reason 9", PRE_OPEN, KB_F_RESET, 0, -1, 1, "\x09", 1, "reset reason" },
	{ "goaway bad code", PRE_HELLO, KB_F_GOAWAY, 0, -1, 0, "\0\0\0\0\x09", 5, "goaway code" },
};

static int
pred_ep_eof(void *arg)
{
	return ((struct ep *)arg)->eof;
}

static void
test_protocol_errors(void)
{
	static struct rawcase c;
	size_t i;

	printf("# protocol errors from a raw peer\n");
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *x = &bads[i];

		printf("# case: %s\n", x->name);
		raw_new(&c);
		if (x->pre != PRE_NONE)
			raw_hello(&c.r);
		if (x->pre == PRE_OPEN)
			raw_open(&c.r, 1, PORT_BASE);
		if (x->pre == PRE_DEFER)
			raw_open(&c.r, 1, PORT_DEFER);
		rawf(&c.r, x->type, x->flags, x->len < 0 ? (uint16_t)x->plen : (uint16_t)x->len,
		    x->stream, x->payload, x->plen);
		raw_expect_error(&c, x->name, x->what);
		if (x->pre == PRE_HELLO || x->pre == PRE_OPEN || x->pre == PRE_DEFER)
			ok(c.b.hellos == 1 && raw_first_type(&c.r) == KB_F_HELLO);
		if (x->pre == PRE_OPEN)
			ok(c.acc[0].closed == 1 && c.acc[0].reason == KB_RST_SESSION);
		if (x->pre == PRE_DEFER)
			ok(c.b.dt.closed == 1 && c.b.dt.reason == KB_RST_SESSION);
		raw_free(&c);
	}

	printf("# case: early DATA and FIN before our ACCEPT are kept, then delivered\n");
	{
		int sv[2];

		raw_new(&c);
		raw_hello(&c.r);
		raw_open(&c.r, 1, PORT_DEFER);
		raw_send_data(&c.r, 1, 0, 3000);
		raw_frame(&c.r, KB_F_FIN, 1, NULL, 0);
		run_for(100);
		ok(c.b.dt.st != NULL && !c.b.dt.closed && c.b.closed == 0);
		c.b.dt.ep.exp = pool;
		c.b.dt.ep.explen = 3000;
		mkpair(sv);
		ep_attach(&c.b.dt.ep, sv[1]);
		ok(kb_stream_accept(c.b.dt.st, sv[0], NULL, NULL) == 0);
		ok(run_until(pred_ep_eof, &c.b.dt.ep, 2000));
		ok(c.b.dt.ep.rxlen == 3000 && !c.b.dt.ep.mismatch);
		raw_free(&c);
	}

	printf("# case: early DATA, then the open fails: nothing is left behind\n");
	raw_new(&c);
	raw_hello(&c.r);
	raw_open(&c.r, 1, PORT_DEFER);
	raw_send_data(&c.r, 1, 0, 2000);
	run_for(100);
	ok(c.b.dt.st != NULL && !c.b.dt.closed);
	kb_stream_reset(c.b.dt.st, KB_RST_REFUSED, "refused");
	ok(c.b.dt.closed == 1 && c.b.closed == 0);
	raw_free(&c);

	printf("# case: DATA after FIN\n");
	raw_new(&c);
	raw_hello(&c.r);
	raw_open(&c.r, 1, PORT_BASE);
	raw_frame(&c.r, KB_F_FIN, 1, NULL, 0);
	raw_frame(&c.r, KB_F_DATA, 1, "late", 4);
	raw_expect_error(&c, "data after fin", "cannot take");
	raw_free(&c);

	printf("# case: DATA up to the window passes, one byte more does not\n");
	raw_new(&c);
	c.acc[0].ep.paused = 1; /* the local program reads nothing */
	c.acc[0].ep.exp = pool;
	c.acc[0].ep.explen = 2 * MiB;
	raw_hello(&c.r);
	raw_open(&c.r, 1, PORT_BASE);
	raw_send_data(&c.r, 1, 0, KB_WINDOW_INIT);
	c.want_in = KB_WINDOW_INIT;
	ok(run_until(pred_bytes_in, &c, 3000));
	{
		/* The responder returned credit for what its local socket took;
		 * a PING answered after every WINDOW those DATA caused tells us
		 * how much. The local socket is full: no more credit comes. */
		struct raw_wait w = { &c.r, KB_F_PONG };
		struct kb_stream *st;
		uint32_t granted;

		raw_frame(&c.r, KB_F_PING, 0, "barrier!", 8);
		ok(run_until(pred_raw_has, &w, 2000));
		granted = raw_window_sum(&c.r, 1);
		st = find_stream(c.b.s, 1);
		ok(st && evbuffer_get_length(st->out) > 0 && st->rx_window == granted);
		raw_send_data(&c.r, 1, KB_WINDOW_INIT, granted);
		c.want_in = KB_WINDOW_INIT + granted;
		ok(run_until(pred_bytes_in, &c, 3000));
		ok(!c.b.closed);
		st = find_stream(c.b.s, 1);
		ok(st && st->rx_window == 0 && raw_window_sum(&c.r, 1) == granted);
		printf("# window: %u bytes of credit came back before the stall\n", granted);
		raw_send_data(&c.r, 1, KB_WINDOW_INIT + granted, 1);
	}
	raw_expect_error(&c, "data beyond the window", "beyond the flow-control window");
	raw_free(&c);

	printf("# case: HTTP instead of frames\n");
	raw_new(&c);
	bufferevent_write(c.r.bev, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	raw_expect_error(&c, "http", NULL);
	ok(c.b.hellos == 0);
	raw_free(&c);

	printf("# case: random bytes after a hello\n");
	raw_new(&c);
	raw_hello(&c.r);
	{
		uint8_t junk[4096];
		memcpy(junk, pool + 3 * MiB, sizeof(junk));
		junk[0] = 0xff;
		bufferevent_write(c.r.bev, junk, sizeof(junk));
	}
	raw_expect_error(&c, "random", NULL);
	raw_free(&c);

	printf("# frames for closed streams are ignored (PROTOCOL.md 5.1)\n");
	raw_new(&c);
	raw_hello(&c.r);
	raw_open(&c.r, 1, PORT_REFUSE);             /* reset at once by the responder */
	raw_frame(&c.r, KB_F_DATA, 1, "crossing", 8); /* crosses the reset */
	raw_u32(&c.r, KB_F_WINDOW, 1, 100);
	raw_frame(&c.r, KB_F_FIN, 1, NULL, 0);
	raw_frame(&c.r, KB_F_RESET, 1, "\x01", 1);
	raw_frame(&c.r, KB_F_PING, 0, "pingping", 8);
	{
		uint8_t pl[300];
		uint32_t sid = 0;
		long n;
		struct raw_wait w = { &c.r, KB_F_PONG };
		ok(run_until(pred_raw_has, &w, 2000));
		ok(!c.b.closed);
		n = raw_find(&c.r, KB_F_RESET, 0, &sid, pl, sizeof(pl));
		ok(n > 1 && sid == 1 && pl[0] == KB_RST_REFUSED);
		n = raw_find(&c.r, KB_F_PONG, 0, NULL, pl, sizeof(pl));
		ok(n == 8 && memcmp(pl, "pingping", 8) == 0);
	}
	raw_free(&c);

	printf("# the responder sends nothing before the peer's hello\n");
	raw_new(&c);
	kb_session_set_heartbeat(c.b.s, 50, 5000);
	run_for(300);
	ok(evbuffer_get_length(bufferevent_get_input(c.r.bev)) == 0);
	if (evbuffer_get_length(bufferevent_get_input(c.r.bev)))
		printf("# first frame before hello: type %d\n", raw_first_type(&c.r));
	raw_hello(&c.r);
	{
		struct raw_wait w = { &c.r, KB_F_HELLO };
		ok(run_until(pred_raw_has, &w, 2000));
	}
	ok(raw_first_type(&c.r) == KB_F_HELLO);
	ok(!c.b.closed);
	raw_free(&c);
}

/* --- 10. stream ids --- */

static void
test_ids(void)
{
	struct sctx a, b;
	struct tstream op[5], acc[5];
	struct group g;
	int i, good = 0;

	printf("# stream ids: initiator odd, responder even\n");
	ok(pair_up(&a, &b));
	b.acc = acc;
	b.nacc = 3;
	a.acc = acc + 3; /* streams B opens are accepted by A */
	a.nacc = 2;
	for (i = 0; i < 5; i++) {
		tstream_init(&op[i]);
		tstream_init(&acc[i]);
		spec(&op[i], &acc[i], (size_t)i * 1000, 500 + i, MiB + (size_t)i * 1000, 300 + i);
	}
	for (i = 0; i < 3; i++)
		ok(open_stream(&a, &op[i], PORT_BASE + i) != NULL);
	for (i = 3; i < 5; i++)
		ok(open_stream(&b, &op[i], PORT_BASE + i - 3) != NULL);
	ok(op[0].id == 1 && op[1].id == 3 && op[2].id == 5);
	ok(op[3].id == 2 && op[4].id == 4);
	g.v = op;
	g.n = 5;
	ok(run_until(pred_group_done, &g, 3000));
	g.v = acc;
	ok(run_until(pred_group_done, &g, 3000));
	for (i = 0; i < 5; i++)
		good += intact(&op[i]) && intact(&acc[i]) && op[i].reason == 0 &&
		    acc[i].reason == 0 && acc[i].id == op[i].id;
	ok(good == 5);
	ok(a.opens == 2 && b.opens == 3);
	pair_free(&a, &b);
	for (i = 0; i < 5; i++) {
		ep_close(&op[i].ep, 0);
		ep_close(&acc[i].ep, 0);
	}
}

/* --- freeing the session from a stream's on_close --- */

static struct sctx *free_target;

static void
t_close_free_session(struct kb_stream *st, int reason, const char *text, void *arg)
{
	t_on_close(st, reason, text, arg);
	if (free_target->s) {
		kb_session_free(free_target->s);
		free_target->s = NULL;
	}
}

static const struct kb_stream_cbs tcbs_free = { .on_accept = t_on_accept, .on_close = t_close_free_session };

/* session.h: kb_session_free is "safe to call from any callback of this
 * session". Run in a child so that a crash (ASan: use after free) does not
 * take the other tests with it. */
static void
test_free_from_stream_close(void)
{
	struct sctx a, b;
	struct tstream op, acc;
	pid_t pid;
	int status = -1, bad = 0;

	printf("# kb_session_free from a stream's on_close (in a child)\n");
	fflush(stdout);
	if ((pid = fork()) < 0) {
		ok(0);
		return;
	}
	if (pid == 0) {
		base = event_base_new(); /* the parent's base is not ours to touch */
		bad |= !pair_up(&a, &b);
		tstream_init(&op);
		tstream_init(&acc);
		b.acc = &acc;
		b.nacc = 1;
		free_target = &a;
		bad |= open_stream(&a, &op, PORT_BASE) == NULL;
		if (op.st)
			kb_stream_set_cbs(op.st, &tcbs_free, &op);
		bad |= !run_until(pred_flag, &op.accepted, 2000);
		if (op.st)
			kb_stream_reset(op.st, KB_RST_CANCEL, "done with it");
		bad |= op.closed != 1 || a.s != NULL;
		bad |= !run_until(pred_flag, &acc.closed, 2000);
		_exit(bad ? 1 : 0);
	}
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		printf("# child status 0x%x\n", status);
}

/* --- 12. per-session limits: streams and early data --- */

/* RESET frames the raw peer received with this reason (on stream id, or any if 0). */
static int
raw_resets(struct raw *r, uint8_t reason, uint32_t id)
{
	uint32_t sid;
	uint8_t b[1];
	int i, n = 0;

	for (i = 0; raw_find(r, KB_F_RESET, i, &sid, b, sizeof(b)) >= 1; i++)
		if (b[0] == reason && (id == 0 || sid == id))
			n++;
	return n;
}

struct resets_wait {
	struct raw *r;
	uint8_t reason;
	uint32_t id;
	int n;
};

static int
pred_resets(void *arg)
{
	struct resets_wait *w = arg;

	return raw_resets(w->r, w->reason, w->id) >= w->n;
}

/* Every frame sent so far was read: the n-th PONG is back. */
static int
raw_barrier(struct rawcase *c, int nth)
{
	long i;

	raw_frame(&c->r, KB_F_PING, 0, "barrier!", 8);
	for (i = 0; i < 200 && raw_find(&c->r, KB_F_PONG, nth, NULL, NULL, 0) < 0; i++)
		run_for(10);
	return raw_find(&c->r, KB_F_PONG, nth, NULL, NULL, 0) >= 0;
}

/* Bytes the session keeps for its streams' local sockets. */
static size_t
buffered(const struct kb_session *s)
{
	size_t i, n = 0;
	struct kb_stream *st;

	for (i = 0; s && i < s->tsize; i++)
		for (st = s->table[i]; st; st = st->hnext)
			n += st->out ? evbuffer_get_length(st->out) : 0;
	return n;
}

static int
pred_raw_drained(void *arg)
{
	struct raw *r = arg;

	return evbuffer_get_length(bufferevent_get_output(r->bev)) == 0;
}

static void
test_limits(void)
{
	static struct rawcase c;
	struct kb_session_stats stx;
	struct resets_wait rw;
	size_t maxbuf = 0;
	int i, n = KB_SESSION_MAX_STREAMS + 44;

	printf("# limits: %d streams opened at once, %d of them over the limit\n", n,
	    n - KB_SESSION_MAX_STREAMS);
	raw_new(&c);
	raw_hello(&c.r);
	for (i = 0; i < n; i++) {
		raw_open(&c.r, 2 * (uint32_t)i + 1, PORT_HOLD);
		/* early data, right up to the limit: allowed */
		raw_send_data(&c.r, 2 * (uint32_t)i + 1, (size_t)i * 512, KB_EARLY_DATA_MAX);
		if (i % 16 == 15) {
			run_until(pred_raw_drained, &c.r, 2000);
			if (buffered(c.b.s) > maxbuf)
				maxbuf = buffered(c.b.s);
		}
	}
	ok(raw_barrier(&c, 0));
	if (buffered(c.b.s) > maxbuf)
		maxbuf = buffered(c.b.s);
	ok(c.b.s && c.b.closed == 0);
	kb_session_stats(c.b.s, &stx);
	printf("# %zu streams, %llu refused, %zu bytes of early data kept\n", stx.streams,
	    (unsigned long long)stx.streams_refused, maxbuf);
	ok(stx.streams == KB_SESSION_MAX_STREAMS);
	ok(stx.streams_refused == (uint64_t)(n - KB_SESSION_MAX_STREAMS));
	ok(raw_resets(&c.r, KB_RST_INTERNAL, 0) == n - KB_SESSION_MAX_STREAMS);
	ok(raw_resets(&c.r, KB_RST_INTERNAL, 2 * (uint32_t)KB_SESSION_MAX_STREAMS + 1) == 1);
	ok(raw_resets(&c.r, KB_RST_INTERNAL, 2 * (uint32_t)KB_SESSION_MAX_STREAMS - 1) == 0);
	ok(maxbuf <= (size_t)KB_SESSION_MAX_STREAMS * KB_EARLY_DATA_MAX);
	ok(c.b.limits == 1 && strstr(c.b.limit_what, "too many streams") != NULL);
	/* One stream ends: there is room for one more. */
	{
		uint8_t b[] = { KB_RST_CANCEL };
		uint32_t next = 2 * (uint32_t)n + 1;
		struct raw_wait w = { &c.r, KB_F_ACCEPT };

		raw_frame(&c.r, KB_F_RESET, 1, b, 1);
		raw_open(&c.r, next, PORT_BASE);
		ok(run_until(pred_raw_has, &w, 2000));
		ok(raw_resets(&c.r, KB_RST_INTERNAL, next) == 0);
		raw_open(&c.r, next + 2, PORT_HOLD);
		rw = (struct resets_wait){ &c.r, KB_RST_INTERNAL, next + 2, 1 };
		ok(run_until(pred_resets, &rw, 2000));
		ok(c.b.limits == 1 && c.b.closed == 0);
	}
	raw_free(&c);

	printf("# limits: early data beyond %d bytes resets the stream, not the session\n",
	    KB_EARLY_DATA_MAX);
	raw_new(&c);
	raw_hello(&c.r);
	raw_open(&c.r, 1, PORT_HOLD);
	raw_open(&c.r, 3, PORT_HOLD);
	raw_send_data(&c.r, 1, 0, KB_EARLY_DATA_MAX);
	raw_send_data(&c.r, 3, 0, 100);
	ok(raw_barrier(&c, 0));
	ok(raw_resets(&c.r, KB_RST_PROTOCOL, 0) == 0 && buffered(c.b.s) == KB_EARLY_DATA_MAX + 100);
	raw_frame(&c.r, KB_F_DATA, 1, "x", 1);
	rw = (struct resets_wait){ &c.r, KB_RST_PROTOCOL, 1, 1 };
	ok(run_until(pred_resets, &rw, 2000));
	{
		uint8_t t[128] = { 0 };
		uint32_t sid = 0;
		raw_find(&c.r, KB_F_RESET, 0, &sid, t, sizeof(t) - 1);
		ok(sid == 1 && strstr((char *)t + 1, "early data") != NULL);
	}
	/* more DATA on the reset stream crosses the RESET: ignored */
	raw_send_data(&c.r, 1, 0, 5000);
	ok(raw_barrier(&c, 1));
	kb_session_stats(c.b.s, &stx);
	ok(c.b.closed == 0 && stx.streams == 1 && stx.early_refused == 1 &&
	    buffered(c.b.s) == 100);
	ok(c.b.limits == 1 && strstr(c.b.limit_what, "early data") != NULL);
	raw_free(&c);

	printf("# limits: 40 streams each sending a whole window of early data\n");
	raw_new(&c);
	raw_hello(&c.r);
	maxbuf = 0;
	for (i = 0; i < 40; i++) {
		raw_open(&c.r, 2 * (uint32_t)i + 1, PORT_HOLD);
		raw_send_data(&c.r, 2 * (uint32_t)i + 1, 0, KB_WINDOW_INIT);
		run_until(pred_raw_drained, &c.r, 2000);
		if (buffered(c.b.s) > maxbuf)
			maxbuf = buffered(c.b.s);
	}
	ok(raw_barrier(&c, 0));
	kb_session_stats(c.b.s, &stx);
	printf("# at most %zu bytes kept, %llu streams reset\n", maxbuf,
	    (unsigned long long)stx.early_refused);
	ok(c.b.closed == 0 && stx.early_refused == 40 && stx.streams == 0);
	ok(maxbuf <= KB_EARLY_DATA_MAX);
	raw_free(&c);

	printf("# limits: a peer that sends but never reads: its frames wait, our output stays bounded\n");
	{
		struct raw_wait w = { &c.r, KB_F_HELLO };
		size_t k, npings = 500000, want;
		struct evbuffer *rin;

		raw_new(&c);
		raw_hello(&c.r);
		ok(run_until(pred_raw_has, &w, 2000));
		bufferevent_disable(c.r.bev, EV_READ);
		for (k = 0; k < npings; k++)
			raw_frame(&c.r, KB_F_PING, 0, "floodfld", 8);
		for (k = 0; k < 100 && !pred_raw_drained(&c.r); k++)
			run_for(10);
		printf("# responder output %zu bytes, %zu bytes of pings not taken\n",
		    c.b.s ? evbuffer_get_length(sess_out(c.b.s)) : 0,
		    evbuffer_get_length(bufferevent_get_output(c.r.bev)));
		ok(c.b.s && c.b.closed == 0 && c.b.s->read_paused);
		ok(c.b.s && evbuffer_get_length(sess_out(c.b.s)) <= SESSION_OUT_MAX + 1024);
		/* the peer reads again: every PING gets its PONG */
		bufferevent_enable(c.r.bev, EV_READ);
		rin = bufferevent_get_input(c.r.bev);
		want = npings * (KB_FRAME_HDR + 8);
		for (k = 0; k < 500 && evbuffer_get_length(rin) < want; k++)
			run_for(10);
		ok(evbuffer_get_length(rin) >= want && c.b.closed == 0 && !c.b.s->read_paused);
		ok(raw_find(&c.r, KB_F_GOAWAY, 0, NULL, NULL, 0) < 0);
		raw_free(&c);
	}

	printf("# limits: the announced early data limit, and older peers' true\n");
	{
		static const struct { const char *hello; uint32_t want; } hs[] = {
			{ "{\"proto\":1,\"role\":\"daemon\",\"early_data\":true}", KB_WINDOW_INIT },
			{ "{\"proto\":1,\"role\":\"daemon\",\"early_data\":1000}", 1000 },
			{ "{\"proto\":1,\"role\":\"daemon\",\"early_data\":1e12}", KB_WINDOW_INIT },
			{ "{\"proto\":1,\"role\":\"daemon\",\"early_data\":0}", 0 },
			{ "{\"proto\":1,\"role\":\"daemon\",\"early_data\":false}", 0 },
			{ "{\"proto\":1,\"role\":\"daemon\"}", 0 },
		};
		size_t k;

		for (k = 0; k < sizeof(hs) / sizeof(hs[0]); k++) {
			raw_new(&c);
			raw_frame(&c.r, KB_F_HELLO, 0, hs[k].hello, strlen(hs[k].hello));
			run_until(pred_flag, &c.b.hellos, 2000);
			ok(c.b.s && c.b.s->peer_early == hs[k].want);
			raw_free(&c);
		}
	}
}

static int
pred_dt_early(void *arg)
{
	struct sctx *b = arg;

	return b->dt.st && b->dt.st->out && evbuffer_get_length(b->dt.st->out) >= KB_EARLY_DATA_MAX;
}

/* Our side as the opener keeps to the early data limit the peer announced,
 * and sends the rest once the stream is accepted. */
static void
test_early_sender(void)
{
	struct sctx a, b;
	struct tstream op;
	int sv[2];
	size_t len = 200 * KiB;

	printf("# the opener sends no more early data than announced, the rest after ACCEPT\n");
	ok(pair_up(&a, &b));
	ok(a.s->peer_early == KB_EARLY_DATA_MAX);
	tstream_init(&op);
	op.ep.tx = pool;
	op.ep.txlen = len;
	op.ep.shut = 1;
	ok(open_stream(&a, &op, PORT_DEFER) != NULL);
	ok(run_until(pred_dt_early, &b, 2000));
	run_for(100);
	ok(b.dt.st && !b.dt.closed && evbuffer_get_length(b.dt.st->out) == KB_EARLY_DATA_MAX);
	b.dt.ep.exp = pool;
	b.dt.ep.explen = len;
	mkpair(sv);
	ep_attach(&b.dt.ep, sv[1]);
	ok(kb_stream_accept(b.dt.st, sv[0], NULL, NULL) == 0);
	ok(run_until(pred_ep_eof, &b.dt.ep, 3000));
	ok(b.dt.ep.rxlen == len && !b.dt.ep.mismatch);
	ok(b.limits == 0 && b.closed == 0);
	ep_close(&op.ep, 0);
	pair_free(&a, &b);
}

/* --- callback streams (kb_stream_open_cb, kb_stream_accept_cb) --- */

/* A local end that is the test's code: it writes tx through kb_stream_write
 * as credit allows, takes the peer's data in on_data unless paused, and
 * checks it against exp. */
struct cbend {
	struct kb_stream *st;
	const uint8_t *tx;
	size_t txlen, txoff;
	int shut, shut_sent;
	const uint8_t *exp;
	size_t explen, rxlen;
	int mismatch, eof, paused;
	int accepted, closed, reason, writable;
	char text[256];
	size_t max_input;       /* most bytes the stream held for us at once */
	size_t took_short;      /* kb_stream_write calls that took less than offered */
	int reply_on_eof;       /* start sending tx once the peer's FIN came */
	struct evbuffer *txbuf;
};

static void
cb_pump_tx(struct cbend *e)
{
	if (!e->st || e->shut_sent || (e->reply_on_eof && !e->eof))
		return;
	for (;;) {
		size_t n = e->txlen - e->txoff, took;

		if (evbuffer_get_length(e->txbuf) == 0) {
			if (n == 0)
				break;
			if (n > 100 * KiB)
				n = 100 * KiB;
			evbuffer_add(e->txbuf, e->tx + e->txoff, n);
			e->txoff += n;
		}
		n = evbuffer_get_length(e->txbuf);
		took = kb_stream_write(e->st, e->txbuf);
		if (took < n) {
			e->took_short++;
			return; /* on_writable goes on */
		}
	}
	if (e->shut) {
		e->shut_sent = 1;
		kb_stream_shutdown(e->st);
	}
}

static void
cb_take(struct cbend *e)
{
	struct evbuffer *in = kb_stream_input(e->st);
	size_t n = evbuffer_get_length(in);

	if (n > e->max_input)
		e->max_input = n;
	if (e->paused)
		return;
	while ((n = evbuffer_get_length(in)) > 0) {
		uint8_t buf[16 * KiB];
		int k = evbuffer_remove(in, buf, n < sizeof(buf) ? n : sizeof(buf));

		if (k <= 0)
			break;
		if (e->rxlen + (size_t)k > e->explen || memcmp(e->exp + e->rxlen, buf, (size_t)k))
			e->mismatch = 1;
		e->rxlen += (size_t)k;
	}
	if (kb_stream_eof(e->st) && !e->eof) {
		e->eof = 1;
		cb_pump_tx(e);
	}
}

static void
cb_on_accept(struct kb_stream *st, void *arg)
{
	(void)st;
	((struct cbend *)arg)->accepted = 1;
}

static void
cb_on_close(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct cbend *e = arg;

	(void)st;
	e->closed++;
	e->reason = reason;
	snprintf(e->text, sizeof(e->text), "%s", text ? text : "");
	e->st = NULL;
}

static void
cb_on_data(struct kb_stream *st, void *arg)
{
	(void)st;
	cb_take(arg);
}

static void
cb_on_writable(struct kb_stream *st, void *arg)
{
	struct cbend *e = arg;

	(void)st;
	e->writable++;
	cb_pump_tx(e);
}

static const struct kb_stream_cbs cbcbs = {
	.on_accept = cb_on_accept, .on_close = cb_on_close,
	.on_data = cb_on_data, .on_writable = cb_on_writable,
};

static void
cbend_init(struct cbend *e)
{
	memset(e, 0, sizeof(*e));
	e->txbuf = evbuffer_new();
}

static void
cbend_free(struct cbend *e)
{
	evbuffer_free(e->txbuf);
}

static struct kb_stream *
open_cb(struct sctx *c, struct cbend *e, uint16_t port)
{
	struct kb_open o = { .kind = KB_OPEN_DIAL, .family = 4, .port = port,
		.addr = { 10, 96, 0, 1 } };

	if ((e->st = kb_stream_open_cb(c->s, &o, &cbcbs, e)) != NULL)
		cb_pump_tx(e);
	return e->st;
}

static int
pred_cb_done(void *arg)
{
	struct cbend *e = arg;

	return e->closed && (e->eof || e->reason);
}

static int
pred_cb_paused_full(void *arg)
{
	struct cbend *e = arg;

	return e->st && evbuffer_get_length(kb_stream_input(e->st)) >= KB_WINDOW_INIT;
}

static int
pred_ep_tx_blocked(void *arg)
{
	return ((struct ep *)arg)->tx_blocked;
}

static int
pred_ep_rx(void *arg)
{
	const struct ep *e = arg;

	return e->rxlen >= e->explen;
}

static int
pred_cb_rx(void *arg)
{
	const struct cbend *e = arg;

	return e->rxlen >= e->explen;
}

static int
pred_cb_early(void *arg)
{
	const struct cbend *e = arg;

	return e->rxlen >= KB_EARLY_DATA_MAX;
}

static void
test_cb_streams(void)
{
	struct sctx a, b;
	struct tstream acc;
	struct cbend ce;
	struct group g = { &acc, 1 };
	struct kb_session_stats sa;

	printf("# callback stream: 8 MiB up and 4 MiB down, clean close both sides\n");
	ok(pair_up(&a, &b));
	tstream_init(&acc);
	cbend_init(&ce);
	ce.tx = pool;
	ce.txlen = 8 * MiB;
	ce.shut = 1;
	ce.exp = pool + 8 * MiB;
	ce.explen = 4 * MiB;
	acc.ep.tx = pool + 8 * MiB;
	acc.ep.txlen = 4 * MiB;
	acc.ep.shut = 1;
	acc.ep.exp = pool;
	acc.ep.explen = 8 * MiB;
	b.acc = &acc;
	b.nacc = 1;
	ok(open_cb(&a, &ce, PORT_BASE) != NULL);
	ok(run_until(pred_cb_done, &ce, 10000));
	ok(run_until(pred_group_done, &g, 5000));
	ok(ce.accepted && ce.closed == 1 && ce.reason == 0 && ce.text[0] == '\0');
	ok(ce.eof && ce.rxlen == 4 * MiB && !ce.mismatch);
	ok(intact(&acc) && acc.closed == 1 && acc.reason == 0);
	ok(ce.took_short > 0 && ce.writable > 0); /* the credit ran out and came back */
	kb_session_stats(a.s, &sa);
	ok(sa.bytes_out == 8 * MiB && sa.bytes_in == 4 * MiB && sa.streams == 0);
	pair_free(&a, &b);
	ep_close(&acc.ep, 0);
	cbend_free(&ce);

	printf("# callback stream: half-close, the reply comes after our FIN\n");
	memcpy(reply_txt, pool + 5 * MiB, sizeof(reply_txt));
	ok(pair_up(&a, &b));
	tstream_init(&acc);
	cbend_init(&ce);
	ce.tx = pool;
	ce.txlen = 100 * KiB;
	ce.shut = 1;
	ce.exp = reply_txt;
	ce.explen = sizeof(reply_txt);
	acc.ep.exp = pool;
	acc.ep.explen = 100 * KiB;
	acc.ep.on_eof = reply_on_eof;
	acc.ep.owner = &acc;
	b.acc = &acc;
	b.nacc = 1;
	ok(open_cb(&a, &ce, PORT_BASE) != NULL);
	ok(run_until(pred_cb_done, &ce, 5000));
	ok(run_until(pred_group_done, &g, 5000));
	ok(acc.ep.eof && acc.ep.rxlen == 100 * KiB && !acc.ep.mismatch);
	ok(ce.eof && ce.rxlen == sizeof(reply_txt) && !ce.mismatch);
	ok(ce.closed == 1 && ce.reason == 0 && acc.closed == 1 && acc.reason == 0);
	pair_free(&a, &b);
	ep_close(&acc.ep, 0);
	cbend_free(&ce);

	printf("# callback stream: a refusal comes to on_close with its reason\n");
	ok(pair_up(&a, &b));
	cbend_init(&ce);
	ce.tx = pool;
	ce.txlen = 1000;
	ok(open_cb(&a, &ce, PORT_REFUSE) != NULL);
	ok(run_until(pred_flag, &ce.closed, 2000));
	ok(!ce.accepted && ce.reason == KB_RST_REFUSED);
	ok(strcmp(ce.text, "connection refused by 10.96.0.1:9") == 0);
	ok(a.s && a.s->nstreams == 0 && !a.closed && !b.closed);
	pair_free(&a, &b);
	cbend_free(&ce);

	printf("# callback stream: a reader that does not take holds the peer at the window\n");
	ok(pair_up(&a, &b));
	tstream_init(&acc);
	cbend_init(&ce);
	ce.paused = 1;
	ce.exp = pool;
	ce.explen = 8 * MiB;
	acc.ep.tx = pool;
	acc.ep.txlen = 8 * MiB;
	acc.ep.shut = 1;
	b.acc = &acc;
	b.nacc = 1;
	ok(open_cb(&a, &ce, PORT_BASE) != NULL);
	ok(run_until(pred_cb_paused_full, &ce, 3000));
	ok(run_until(pred_ep_tx_blocked, &acc.ep, 3000));
	run_for(200);
	printf("# held %zu bytes for the reader, sender at %zu of %d\n", ce.max_input,
	    acc.ep.txoff, 8 * MiB);
	ok(ce.max_input == KB_WINDOW_INIT && !acc.ep.txdone);
	ce.paused = 0;
	cb_take(&ce); /* taking it later returns the credit */
	ok(run_until(pred_flag, &acc.ep.txdone, 5000));
	ok(run_until(pred_flag, &ce.eof, 5000));
	ok(ce.rxlen == 8 * MiB && !ce.mismatch);
	ok(ce.max_input <= WINDOW_GROW_MAX);
	kb_stream_shutdown(ce.st);
	ok(ce.closed == 0); /* never inside the owner's call */
	ok(run_until(pred_flag, &ce.closed, 2000) && ce.reason == 0);
	pair_free(&a, &b);
	ep_close(&acc.ep, 0);
	cbend_free(&ce);

	printf("# callback stream: a peer that does not read stops our writes at its window\n");
	ok(pair_up(&a, &b));
	tstream_init(&acc);
	cbend_init(&ce);
	ce.tx = pool;
	ce.txlen = 4 * MiB;
	ce.shut = 1;
	acc.ep.paused = 1;
	acc.ep.exp = pool;
	acc.ep.explen = 4 * MiB;
	b.acc = &acc;
	b.nacc = 1;
	ok(open_cb(&a, &ce, PORT_BASE) != NULL);
	run_for(300);
	printf("# took %zu of 4 MiB (short writes %zu)\n", ce.txoff - evbuffer_get_length(ce.txbuf),
	    ce.took_short);
	ok(ce.took_short > 0 && !ce.shut_sent);
	ok(ce.txoff - evbuffer_get_length(ce.txbuf) <= 2 * KB_WINDOW_INIT + 256 * KiB);
	ep_resume(&acc.ep);
	ok(run_until(pred_flag, &ce.shut_sent, 5000));
	ok(run_until(pred_group_done, &g, 5000) || (acc.ep.eof && acc.ep.rxlen == 4 * MiB));
	ok(acc.ep.rxlen == 4 * MiB && !acc.ep.mismatch && acc.ep.eof);
	pair_free(&a, &b);
	ep_close(&acc.ep, 0);
	cbend_free(&ce);

	printf("# callback accept: early data before the ACCEPT, then both ways, then a reset with its reason\n");
	{
		struct tstream op;

		ok(pair_up(&a, &b));
		tstream_init(&op);
		cbend_init(&ce);
		op.ep.tx = pool;
		op.ep.txlen = 200 * KiB;
		op.ep.exp = pool + MiB;
		op.ep.explen = 300 * KiB;
		ok(open_stream(&a, &op, PORT_DEFER) != NULL);
		ok(run_until(pred_dt_early, &b, 2000));
		ce.exp = pool;
		ce.explen = 200 * KiB;
		ce.tx = pool + MiB;
		ce.txlen = 300 * KiB;
		ce.st = b.dt.st;
		/* taken before the ACCEPT: the early data comes, no more */
		ok(kb_stream_early_cb(b.dt.st, &cbcbs, &ce) == 0);
		ok(ce.rxlen == 0); /* it comes after the call */
		ok(run_until(pred_cb_early, &ce, 2000));
		run_for(100);
		ok(ce.rxlen == KB_EARLY_DATA_MAX && !op.accepted && !ce.closed);
		ok(kb_stream_early_cb(ce.st, &cbcbs, &ce) == -1); /* not twice */
		ok(kb_stream_accept_cb(ce.st, &cbcbs, &ce) == 0);
		ok(kb_stream_accept_cb(ce.st, &cbcbs, &ce) == -1); /* not twice */
		cb_pump_tx(&ce);
		ok(run_until(pred_flag, &op.accepted, 2000));
		ok(run_until(pred_ep_rx, &op.ep, 3000));
		ok(run_until(pred_cb_rx, &ce, 3000));
		ok(!ce.mismatch && !op.ep.mismatch);
		kb_stream_set_cbs(ce.st, &cbcbs, &ce);
		kb_stream_reset(ce.st, KB_RST_CANCEL, "the caller went away");
		ok(ce.closed == 1 && ce.reason == KB_RST_CANCEL);
		ok(run_until(pred_flag, &op.closed, 2000));
		ok(op.reason == KB_RST_CANCEL && strcmp(op.text, "the caller went away") == 0);
		pair_free(&a, &b);
		ep_close(&op.ep, 0);
		cbend_free(&ce);
	}
}

static int
pred_flag_dt(void *arg)
{
	const struct sctx *b = arg;

	return b->dt.st != NULL;
}

/* Our stream, read since the OPEN (the peer takes early data), is
 * accepted: its socket is read when the read event says so, never for the
 * ACCEPT itself, which found nothing yet (EAGAIN) or took what the same
 * poll had reported, whose read event then said EAGAIN (one system call
 * per new connection in kbridged, either way). same_poll: the ACCEPT and
 * the client's first bytes come in one poll, the session's socket first,
 * as when they arrive together; else the ACCEPT comes first. */
static void
accept_read_case(int same_poll)
{
	struct sctx a, b;
	struct tstream op;
	int sv[2];
	size_t len = 100;

	printf("# ACCEPT %s the client's first bytes: one readv, no EAGAIN\n",
	    same_poll ? "in the same poll as" : "before");
	ok(pair_up(&a, &b));
	ok(a.s->peer_early > 0);
	tstream_init(&op);
	ok(open_stream(&a, &op, PORT_DEFER) != NULL);
	ok(run_until(pred_flag_dt, &b, 2000));
	readv_watch = op.st->fd;
	readv_calls = readv_eagain = 0;
	b.dt.ep.exp = pool;
	b.dt.ep.explen = len;
	mkpair(sv);
	ep_attach(&b.dt.ep, sv[1]);
	ok(kb_stream_accept(b.dt.st, sv[0], NULL, NULL) == 0);
	if (same_poll) {
		/* one pass: b sends the ACCEPT; a's poll is the next one */
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	} else {
		run_for(50);
		ok(op.st && (op.st->flags & ST_ACCEPTED));
	}
	ok(readv_calls == 0);
	ok(write(op.ep.fd, pool, len) == (ssize_t)len);
	ok(run_until(pred_ep_rx, &b.dt.ep, 2000));
	printf("# readv on the client's socket: %u, EAGAIN %u\n", readv_calls, readv_eagain);
	ok(b.dt.ep.rxlen == len && !b.dt.ep.mismatch);
	ok(readv_calls == 1 && readv_eagain == 0);
	readv_watch = -1;
	ep_close(&op.ep, 0);
	pair_free(&a, &b);
}

static void
test_accept_read(void)
{
	accept_read_case(1);
	accept_read_case(0);
}

int
main(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t i;
	struct rlimit rl;

	signal(SIGPIPE, SIG_IGN);
	log_init("test_session", KB_LOG_WARN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2048 && rl.rlim_max > rl.rlim_cur) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	pool = malloc(POOL_SIZE);
	for (i = 0; i < POOL_SIZE / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(pool + i * 8, &x, 8);
	}
	base = event_base_new();

	test_hello();
	test_data();
	test_many();
	test_flow();
	test_halfclose();
	test_reset();
	test_stream_dial();
	test_heartbeat();
	test_goaway();
	test_goaway_delivery();
	test_protocol_errors();
	test_ids();
	test_free_from_stream_close();
	test_limits();
	test_early_sender();
	test_accept_read();
	test_cb_streams();

	run_for(50);
	if (lfd >= 0)
		close(lfd);
	event_base_free(base);
	libevent_global_shutdown();
	free(pool);
	return ok_done();
}
