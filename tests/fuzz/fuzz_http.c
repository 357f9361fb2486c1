/* libFuzzer target for the HTTP proxy as the preview listener runs it
 * (agent/httpproxy.c routed by agent/preview.c): the input is what a client
 * sends and what the upstream answers. Each input gets a fresh connection
 * over socketpairs; the client's bytes, then EOF, go in, the upstream
 * answers with its part, then EOF, and the loop runs until the proxy is
 * done. Any crash, leak or sanitizer report is a bug. Build and run with
 * `make fuzz`.
 *
 * Input: byte 0: bit 0 = the preview's workstation is connected, bit 1 =
 * its intercept was released, bit 2 = pass what is not HTTP/1 to key 0 as
 * the sidecar does; bytes 1-2: length of the client's part
 * (little endian); then the client's part; the rest is the upstream's.
 *
 * Doubles for what the manager would provide (as in tests/unit/test_preview.c):
 * the intercept registry, the resolver and the session to a daemon. */
#include "../../agent/applat.c"
#include "../../agent/batch.c"
#include "../../agent/httpproxy.c"
#include "../../agent/h1h2.c"
#include "../../agent/preview.c"

#include <fcntl.h>
#include <signal.h>

#include "../unit/preview_doubles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

void
resolver_lookup(struct kb_resolver *r, const char *name, int qtype, resolver_cb cb, void *arg)
{
	(void)r;
	(void)name;
	(void)qtype;
	cb(arg, 3, NULL, 0, 0);
}

int
kb_session_send_control(struct kb_session *s, cJSON *msg)
{
	(void)s;
	cJSON_Delete(msg);
	return 0;
}

static struct event_base *fbase;
static struct hp_proxy *fhp;	/* its proxy */
static const uint8_t *up_data;
static size_t up_len;
static int up_peer = -1, finished;

/* Every upstream is a socketpair whose far end answers with the input's
 * upstream part and then closes its sending side. */
static int
f_open(void *arg, uint64_t key, char *reason, size_t len)
{
	int sv[2];

	(void)arg;
	(void)key;
	if (up_peer != -1 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
		snprintf(reason, len, "one upstream per input");
		return -1;
	}
	if (up_len > 0 && write(sv[1], up_data, up_len) < 0)
		(void)0;
	shutdown(sv[1], SHUT_WR);
	up_peer = sv[1];
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
	struct preview *p;
	char err[200];

	log_init("fuzz_http", KB_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	fbase = event_base_new();
	if ((fhp = hp_proxy_new(fbase)) == NULL)
		abort();
	fhp->idle_ms = fhp->head_ms = fhp->linger_ms = fhp->connect_ms = 50;
	fhp->sniff_ms = 20;
	if (preview_config("127.0.0.1:1", "http://preview.test:8080", err, sizeof(err)) < 0)
		abort();
	p = calloc(1, sizeof(*p));
	snprintf(p->token, sizeof(p->token), "abcdefghijklmnopqrstuvwxyz");
	snprintf(p->workload, sizeof(p->workload), "web");
	snprintf(p->ns, sizeof(p->ns), "default");
	snprintf(p->owner, sizeof(p->owner), "alice");
	snprintf(p->icpt, sizeof(p->icpt), "icpt1");
	p->key = 1;
	TAILQ_INSERT_TAIL(&pv.list, p, entry);
	pv.count = 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pvconn pc = { .peer = "192.0.2.1" };
	struct hp_upstreams up = { .route = pv_route, .open = f_open, .done = f_done, .arg = &pc };
	unsigned char buf[65536];
	struct hp_conn *c;
	size_t clen, off = 0;
	ssize_t n;
	int sv[2], i, shut = 0;

	if (fbase == NULL)
		setup();
	if (size < 3)
		return 0;
	state = data[0] & 1;
	/* Bit 1: the preview's intercept has ended (the registry knows another). */
	icpt_id = (data[0] >> 1) & 1 ? "icpt2" : "icpt1";
	up.pass = (data[0] >> 2) & 1;
	clen = (size_t)data[1] | (size_t)data[2] << 8;
	data += 3;
	size -= 3;
	if (clen > size)
		clen = size;
	up_data = data + clen;
	up_len = size - clen;
	finished = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		return 0;
	if ((c = hp_conn_new(fhp, sv[1], &up)) == NULL) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	/* The client writes what the socket takes, reads what comes back. */
	for (i = 0; i < 400 && !finished; i++) {
		if (off < clen && (n = write(sv[0], data + off, clen - off)) > 0)
			off += n;
		if (off == clen && !shut) {
			shutdown(sv[0], SHUT_WR);
			shut = 1;
		}
		while (read(sv[0], buf, sizeof(buf)) > 0)
			;
		if (up_peer != -1)
			while (read(up_peer, buf, sizeof(buf)) > 0)
				;
		event_base_loop(fbase, EVLOOP_NONBLOCK);
	}
	if (!finished)
		hp_conn_free(c);
	/* Anything still queued for the end of the iteration goes now. */
	event_base_loop(fbase, EVLOOP_NONBLOCK);
	close(sv[0]);
	if (up_peer != -1) {
		close(up_peer);
		up_peer = -1;
	}
	return 0;
}
