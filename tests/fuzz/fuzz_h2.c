/* libFuzzer target for the sidecar's HTTP/2 routing (agent/h2route.c)
 * behind its HTTP/1 proxy (agent/httpproxy.c), as the sidecar runs them:
 * a client's bytes (the HTTP/2 preface, an HTTP/1.1 Upgrade: h2c, or
 * anything) and what every upstream answers. Each input gets a fresh
 * connection over socketpairs; requests with "x-dev: alice" go to key 1,
 * the others to key 0. Key 0's upstream is a socketpair whose far end
 * sends a SETTINGS frame, then the input's upstream part, then EOF; key
 * 1's is a stand-in session stream (up.streams, as an intercept's) that
 * brings the same (after a SETTINGS frame, unless it starts with "HTTP/":
 * an HTTP/1-only local app), then its FIN, or refuses the stream when it
 * starts with 'R'. The loop runs until the connection is done. Any crash,
 * leak or sanitizer report is a bug. Build and run with `make fuzz`.
 *
 * Input: bytes 0-1: length of the client's part (little endian); then the
 * client's part; the rest is the upstreams'. */
#include "../../agent/applat.c"
#include "../../agent/batch.c"
#include "../../agent/httpproxy.c"
#include "../../agent/h2route.c"

#include <signal.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define F_UPS	4	/* upstreams per input at most */

static struct event_base *fbase;
static struct hp_proxy *fhp;
static const uint8_t *up_data;
static size_t up_len;
static int up_peer[F_UPS], nup, finished, handed, noted_h1;

/* --- stand-in session streams (session.h's are not linked here) --- */

struct kb_stream {
	LIST_ENTRY(kb_stream) entry;
	struct evbuffer *in;
	const struct kb_stream_cbs *cbs;
	void *arg;
	struct event *ev;
	int refuse, shut;
};

static LIST_HEAD(, kb_stream) fsts = LIST_HEAD_INITIALIZER(fsts);
static int nfst;

static void
fst_free(struct kb_stream *st)
{
	LIST_REMOVE(st, entry);
	event_free(st->ev);
	evbuffer_free(st->in);
	free(st);
}

static void
fst_end(struct kb_stream *st, int reason, const char *text)
{
	if (st->cbs != NULL && st->cbs->on_close != NULL)
		st->cbs->on_close(st, reason, text, st->arg);
	fst_free(st);
}

/* From the loop, as a session's events: the data and FIN (all at once),
 * a refusal, or the clean end after both FINs. */
static void
fst_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kb_stream *st = arg;

	(void)fd;
	(void)what;
	if (st->refuse) {
		fst_end(st, KB_RST_REFUSED, "fuzz: refused");
		return;
	}
	if (evbuffer_get_length(st->in) == 0 && st->shut) {
		fst_end(st, 0, NULL);
		return;
	}
	if (st->cbs != NULL && st->cbs->on_data != NULL)
		st->cbs->on_data(st, st->arg);
}

static struct kb_stream *
f_sopen(void *arg, uint64_t key, const struct kb_stream_cbs *cbs, void *cbarg, char *reason,
    size_t len)
{
	static const uint8_t settings[] = { 0, 0, 0, 4, 0, 0, 0, 0, 0 };
	struct kb_stream *st;

	(void)arg;
	(void)key;
	if (nfst == 64 || (st = calloc(1, sizeof(*st))) == NULL) {
		snprintf(reason, len, "no more streams");
		return NULL;
	}
	st->in = evbuffer_new();
	st->ev = event_new(fbase, -1, 0, fst_cb, st);
	st->cbs = cbs;
	st->arg = cbarg;
	st->refuse = up_len > 0 && up_data[0] == 'R';
	if (!(up_len >= 5 && !memcmp(up_data, "HTTP/", 5)))
		evbuffer_add(st->in, settings, sizeof(settings));
	evbuffer_add(st->in, up_data, up_len);
	LIST_INSERT_HEAD(&fsts, st, entry);
	nfst++;
	event_active(st->ev, EV_TIMEOUT, 0);
	return st;
}

static struct evbuffer *
f_input(struct kb_stream *st)
{
	return st->in;
}

static int
f_eof(const struct kb_stream *st)
{
	(void)st;
	return 1;	/* everything came at once */
}

static size_t
f_write(struct kb_stream *st, struct evbuffer *buf)
{
	size_t n = evbuffer_get_length(buf);

	(void)st;
	evbuffer_drain(buf, n);
	return n;
}

static void
f_shutdown(struct kb_stream *st)
{
	st->shut = 1;
	event_active(st->ev, EV_TIMEOUT, 0);
}

static void
f_set_cbs(struct kb_stream *st, const struct kb_stream_cbs *cbs, void *arg)
{
	st->cbs = cbs;
	st->arg = arg;
}

static void
f_reset(struct kb_stream *st, uint8_t reason, const char *text)
{
	fst_end(st, reason, text);
}

static const struct hp_stream_ops f_streams = {
	.open = f_sopen, .input = f_input, .eof = f_eof, .write = f_write,
	.shutdown = f_shutdown, .set_cbs = f_set_cbs, .reset = f_reset,
};

static int
f_h1(void *arg, uint64_t key, int note)
{
	(void)arg;
	(void)key;
	if (note != 0)
		noted_h1 = note > 0;
	return noted_h1;
}

/* up.h2 and up.h2c, noting that the connection left the HTTP/1 proxy. */
static int
f_h2(struct event_base *b, int fd, const void *p, size_t len, const struct hp_upstreams *up)
{
	int rc = h2r_start(b, fd, p, len, up);

	handed |= rc == 0;
	return rc;
}

static int
f_h2c(struct event_base *b, int fd, const struct hp_request *req, uint64_t bodylen,
    const void *p, size_t len, const struct hp_upstreams *up)
{
	int rc = h2r_upgrade(b, fd, req, bodylen, p, len, up);

	handed |= rc == 0;
	return rc;
}

static uint64_t
f_route(void *arg, const struct hp_request *req, struct hp_route *r)
{
	const char *v = hp_header(req, "x-dev");

	(void)arg;
	(void)r;
	return v != NULL && !strcmp(v, "alice");
}

static int
f_open(void *arg, uint64_t key, char *reason, size_t len)
{
	static const uint8_t settings[] = { 0, 0, 0, 4, 0, 0, 0, 0, 0 };
	int sv[2];

	(void)arg;
	(void)key;
	if (nup == F_UPS || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
		snprintf(reason, len, "no more upstreams");
		return -1;
	}
	if (write(sv[1], settings, sizeof(settings)) < 0 ||
	    (up_len > 0 && write(sv[1], up_data, up_len) < 0))
		(void)0;
	shutdown(sv[1], SHUT_WR);
	up_peer[nup++] = sv[1];
	return sv[0];
}

static void
f_done(void *arg, struct hp_conn *c)
{
	(void)arg;
	(void)c;
	finished = 1;
}

static void
setup(void)
{
	log_init("fuzz_h2", KB_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	fbase = event_base_new();
	if ((fhp = hp_proxy_new(fbase)) == NULL)
		abort();
	fhp->idle_ms = fhp->head_ms = fhp->linger_ms = fhp->connect_ms = 50;
	fhp->sniff_ms = 20;
	h2r_idle_ms = h2r_linger_ms = 50;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hp_upstreams up = { .route = f_route, .open = f_open, .done = f_done,
	    .streams = &f_streams, .h1 = f_h1, .h2 = f_h2, .h2c = f_h2c, .pass = 1 };
	unsigned char buf[65536];
	struct hp_conn *c;
	size_t clen, off = 0;
	ssize_t n;
	int sv[2], i, j, shut = 0;

	if (fbase == NULL)
		setup();
	if (size < 2)
		return 0;
	clen = (size_t)data[0] | (size_t)data[1] << 8;
	data += 2;
	size -= 2;
	if (clen > size)
		clen = size;
	up_data = data + clen;
	up_len = size - clen;
	finished = handed = noted_h1 = 0;
	nup = nfst = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		return 0;
	if ((c = hp_conn_new(fhp, sv[1], &up)) == NULL) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	/* The client writes what the socket takes, reads what comes back;
	 * once the proxy handed the connection to h2route.c, c is gone and
	 * only done (finished) tells that it ended. */
	for (i = 0; i < 400 && !finished; i++) {
		if (off < clen && (n = write(sv[0], data + off, clen - off)) > 0)
			off += n;
		if (off == clen && !shut) {
			shutdown(sv[0], SHUT_WR);
			shut = 1;
		}
		while (read(sv[0], buf, sizeof(buf)) > 0)
			;
		for (j = 0; j < nup; j++)
			while (read(up_peer[j], buf, sizeof(buf)) > 0)
				;
		event_base_loop(fbase, EVLOOP_NONBLOCK);
	}
	/* Not finished: the client's end closes, which ends either kind
	 * (HTTP/1 after its timers, at most 50 ms here). */
	close(sv[0]);
	for (i = 0; i < 300 && !finished; i++) {
		for (j = 0; j < nup; j++)
			while (read(up_peer[j], buf, sizeof(buf)) > 0)
				;
		event_base_loop(fbase, EVLOOP_NONBLOCK);
		if (!finished)
			usleep(1000);
	}
	if (!finished && handed)
		abort();	/* an HTTP/2 connection that outlives its client */
	if (!finished)
		hp_conn_free(c);
	event_base_loop(fbase, EVLOOP_NONBLOCK);
	for (j = 0; j < nup; j++)
		close(up_peer[j]);
	/* Streams given up with a FIN end by themselves; an owner that still
	 * holds one when its connection is gone is a bug. */
	for (i = 0; i < 10 && !LIST_EMPTY(&fsts); i++)
		event_base_loop(fbase, EVLOOP_NONBLOCK);
	if (!LIST_EMPTY(&fsts)) {
		if (LIST_FIRST(&fsts)->cbs != NULL)
			abort();
		while (!LIST_EMPTY(&fsts))
			fst_free(LIST_FIRST(&fsts));
	}
	return 0;
}
