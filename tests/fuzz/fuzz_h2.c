/* libFuzzer target for the sidecar's HTTP/2 routing (agent/h2route.c)
 * behind its HTTP/1 proxy (agent/httpproxy.c), as the sidecar runs them:
 * a client's bytes (the HTTP/2 preface, an HTTP/1.1 Upgrade: h2c, or
 * anything) and what every upstream answers. Each input gets a fresh
 * connection over socketpairs; requests with "x-dev: alice" go to key 1,
 * the others to key 0, each upstream a socketpair whose far end sends a
 * SETTINGS frame, then the input's upstream part, then EOF. The loop runs
 * until the connection is done. Any crash, leak or sanitizer report is a
 * bug. Build and run with `make fuzz`.
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
static int up_peer[F_UPS], nup, finished, handed;

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
	    .h2 = f_h2, .h2c = f_h2c, .pass = 1 };
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
	finished = handed = 0;
	nup = 0;
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
	return 0;
}
