/* The previews' HTTP/1.1 to h2c translator (agent/h1h2.c): its pure parts,
 * then translators on one event_base whose upstream is a real gRPC server
 * (tests/e2e/grpcpeer.py, python3-grpcio, h2c only): gRPC-web over
 * HTTP/1.1 in, the messages and a trailer frame out; and the replay: the
 * first upstream connection answers as the sidecar does when the app did
 * not speak HTTP/1.1 (its 502 page), the request goes again as h2c on a
 * second one, and the protocol is learnt; gRPC over HTTP/1.1, whose HTTP/2
 * trailers become chunked trailers; a WebSocket relayed to an HTTP/1.1 app
 * (tests/e2e/devserver.py). Every wait is bounded. */
#include "../../agent/h1h2.c"

#include <sys/wait.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>

#include "children.h"
#include "evloop.h"
#include "ok.h"

#define PY	"/usr/bin/python3"
#define PEER	"tests/e2e/grpcpeer.py"

static int grpc_port, dev_port, opens, fake_fd = -1;
static enum h1h2_proto learnt = H1H2_UNKNOWN, proto_now = H1H2_UNKNOWN;

static int
tcp_to(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The first connection of a "replay" translator is the fake sidecar's. */
static int replay_mode;
/* Every connection goes to a socket pair whose other end is kept here
 * (sinks[], closed at the end): a relay that goes nowhere. */
static int sink_mode, sinks[128], nsinks;

/* Visitors' addresses, IPv4 mapped into IPv6 (10.0.0.N). */
#define SRC(n)	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, n }
static const uint8_t src_a[16] = SRC(1), src_b[16] = SRC(2), src_c[16] = SRC(3),
    src_d[16] = SRC(4), src_e[16] = SRC(5);

static int
t_open(void *arg, uint64_t key, char *reason, size_t len)
{
	int sv[2];

	(void)arg;
	(void)key;
	opens++;
	if (sink_mode && nsinks < (int)(sizeof(sinks) / sizeof(sinks[0]))) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
			return -1;
		sinks[nsinks++] = sv[0];
		return sv[1];
	}
	if (replay_mode && opens == 1) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
			return -1;
		fake_fd = sv[0];
		return sv[1];
	}
	snprintf(reason, len, "no");
	return tcp_to(dev_port ? dev_port : grpc_port);
}

static enum h1h2_proto
t_proto(void *arg, uint64_t key)
{
	(void)arg;
	(void)key;
	return proto_now;
}

static void
t_learnt(void *arg, uint64_t key, enum h1h2_proto p)
{
	(void)arg;
	(void)key;
	learnt = proto_now = p;
}

static const struct h1h2_ops ops = { t_open, t_proto, t_learnt, NULL };

static int
listening(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), r;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	close(fd);
	return r == 0;
}

/* What came back on the proxy's end of the pair. */
#define GOT_MAX	(8 * 1024 * 1024)
static char *got;
static size_t gotlen;
static int cl;
/* what is still to be written of a request */
static const char *wleft;
static size_t wlen;

static int
answered(void *arg)
{
	ssize_t n;

	(void)arg;
	while (wlen > 0 && (n = write(cl, wleft, wlen)) > 0)
		wleft += n, wlen -= (size_t)n;
	while ((n = read(cl, got + gotlen, GOT_MAX - 1 - gotlen)) > 0)
		gotlen += (size_t)n;
	got[gotlen] = '\0';
	/* a chunked answer ends with its last chunk */
	/* a chunked answer ends with its last chunk and its trailers, if any */
	return (memmem(got, gotlen, "\r\n0\r\n", 5) != NULL && gotlen >= 4 &&
	    memcmp(got + gotlen - 4, "\r\n\r\n", 4) == 0) || (n == 0 && gotlen > 0);
}

static int
ws_switched(void *arg)
{
	answered(arg);
	return strstr(got, "\r\n\r\n") != NULL;
}

static int
ws_echoed(void *arg)
{
	answered(arg);
	return gotlen >= 11 && memcmp(got, "\x81\x09" "echo: hey", 11) == 0;
}

/* The fake sidecar saw the request and answers with its 502 page. */
static int asked;

static int
fake_asked(void *arg)
{
	char buf[4096];

	(void)arg;
	if (!asked && fake_fd >= 0 && read(fake_fd, buf, sizeof(buf)) > 0)
		asked = 1;	/* (run_until asks again at the end) */
	return asked;
}

static void
grpcweb_call_from(uint64_t key, const uint8_t *src, const char *method, const char *msg)
{
	char req[1024];
	unsigned char frame[256 + 5];
	size_t ml = strlen(msg);
	int sv[2], n;

	frame[0] = 0;
	frame[1] = frame[2] = frame[3] = 0;
	frame[4] = (unsigned char)ml;
	memcpy(frame + 5, msg, ml);
	ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	ok(h1h2_new(base, sv[1], key, src, &ops) == 0);
	cl = sv[0];
	n = snprintf(req, sizeof(req), "POST /kb.Echo/%s HTTP/1.1\r\nHost: web\r\n"
	    "Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n"
	    "Content-Length: %zu\r\n\r\n", method, ml + 5);
	memcpy(req + n, frame, ml + 5);
	ok(write(cl, req, (size_t)n + ml + 5) == (ssize_t)(n + ml + 5));
	gotlen = 0;
}

static void
grpcweb_call(const char *method, const char *msg)
{
	grpcweb_call_from(7, src_a, method, msg);
}

/* The sidecar's answer when the app did not speak HTTP/1.1: its page,
 * with these header lines (fake_hdrs): its mark, or others. */
#define MARK_H1	H1H2_PROTO_HEADER ": " H1H2_NOT_HTTP1 "\r\n"
static const char *fake_hdrs = MARK_H1;

static int
fake_not_h1(int fd)
{
	char page[512];
	int m = snprintf(page, sizeof(page), "HTTP/1.1 502 Bad Gateway\r\n"
	    "Content-Type: text/plain\r\n%sContent-Length: %zu\r\n\r\n%s\n",
	    fake_hdrs, strlen(H1H2_NOT_H1) + 1, H1H2_NOT_H1);

	return write(fd, page, (size_t)m) == m;
}

/* answered(), or the fake sidecar's page (with a length) came whole. */
static int
page_got(void *arg)
{
	return answered(arg) || memmem(got, gotlen, H1H2_NOT_H1 "\n", strlen(H1H2_NOT_H1) + 1);
}

/* A gRPC-web call to preview key from src, not known yet: HTTP/1.1 first,
 * the fake sidecar answers (with fake_hdrs) that it did not speak that.
 * With msg, the request (its body kept) must go again as h2c to the gRPC
 * server and its answer come; with msg NULL, the 502 must reach the
 * browser as it is: no replay. 1 if so. */
static int
call(uint64_t key, const uint8_t *src, const char *msg)
{
	int fine;

	proto_now = learnt = H1H2_UNKNOWN;
	replay_mode = 1;
	opens = asked = 0;
	grpcweb_call_from(key, src, "Unary", msg ? msg : "no");
	fine = run_until(fake_asked, NULL, 5000) && fake_not_h1(fake_fd);
	if (msg)
		fine = fine && run_until(answered, NULL, 10000) && opens == 2 &&
		    strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0 &&
		    memmem(got, gotlen, "alice: ", 7) != NULL &&
		    memmem(got, gotlen, msg, strlen(msg)) != NULL &&
		    memmem(got, gotlen, H1H2_NOT_H1, strlen(H1H2_NOT_H1)) == NULL &&
		    learnt == H1H2_H2C;
	else
		fine = fine && run_until(page_got, NULL, 5000) && opens == 1 &&
		    strncmp(got, "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0 &&
		    memmem(got, gotlen, H1H2_NOT_H1, strlen(H1H2_NOT_H1)) != NULL &&
		    learnt == H1H2_UNKNOWN;
	if (!fine)
		printf("# %s: opens %d, got %.60s\n", msg ? "replay" : "no replay", opens, got);
	close(cl);
	close(fake_fd);
	fake_fd = -1;
	replay_mode = 0;
	run_for(50);
	return fine;
}

/* Sockets of the requests fill_share() keeps waiting. */
static int fills[256], nfills;

static int
body_read(void *arg)
{
	struct h1h2 *t = arg;

	return t->too_big || t->counted == H1H2_BODY_MAX - 1;
}

/* A visitor at src sends requests to preview key, each with a body of
 * H1H2_BODY_MAX of which all but its last byte come (so each is kept,
 * waiting), until one is not kept any more (a cap met: it goes on to a
 * sink) or max were: how many were kept. */
static int
fill_share(uint64_t key, const uint8_t *src, int max)
{
	static char chunk[64 * 1024];
	char head[256];
	struct h1h2 *t;
	size_t left;
	ssize_t w;
	int sv[2], k, hl;

	sink_mode = 1;
	for (k = 0; k < max && nfills < (int)(sizeof(fills) / sizeof(fills[0])); k++) {
		ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
		ok(h1h2_new(base, sv[1], key, src, &ops) == 0);
		t = LIST_FIRST(&hh_all);
		fills[nfills++] = sv[0];
		hl = snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: web\r\n"
		    "Content-Length: %d\r\n\r\n", H1H2_BODY_MAX);
		ok(write(sv[0], head, (size_t)hl) == hl);
		for (left = H1H2_BODY_MAX - 1; left > 0 && !t->too_big;) {
			w = write(sv[0], chunk, left < sizeof(chunk) ? left : sizeof(chunk));
			if (w > 0)
				left -= (size_t)w;
			else
				event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		}
		if (!run_until(body_read, t, 5000) || t->too_big)
			break;
	}
	sink_mode = 0;
	return k;
}

/* answered(), noting the most a streamed body kept waiting in the newest
 * translator once the body kept before (H1H2_BODY_MAX) went (the bound:
 * side is not parsed while H1H2_HIGH_WATER wait). */
static size_t tmp_max;
static int stalls, drained;

static int
stream_answered(void *arg)
{
	struct h1h2 *t = LIST_FIRST(&hh_all);

	if (t && t->streaming && evbuffer_get_length(t->tmp) < H1H2_HIGH_WATER)
		drained = 1;
	if (t && drained && evbuffer_get_length(t->tmp) > tmp_max)
		tmp_max = evbuffer_get_length(t->tmp);
	if (t && t->stalled)
		stalls++;
	return answered(arg);
}

/* The chunked body's data after the head at p, into out: its length. */
static size_t
unchunk(const char *p, unsigned char *out)
{
	size_t len = 0, k;
	char *e;

	while ((k = strtoul(p, &e, 16)) > 0 && e[0] == '\r') {
		memcpy(out + len, e + 2, k);
		len += k;
		p = e + 2 + k + 2;
	}
	return len;
}

/* Decode base64 as the pieces split it; -1 if bad or a quantum unfinished. */
static long
b64_pieces(const char *in, const size_t *cuts, size_t ncut, unsigned char *out)
{
	struct h1h2_b64 st = { .n = 0 };
	size_t i, from = 0, to;
	long len = 0, r;

	for (i = 0; i <= ncut; i++) {
		to = i < ncut ? cuts[i] : strlen(in);
		if ((r = h1h2_b64_decode(&st, in + from, to - from, out + len)) < 0)
			return -1;
		len += r;
		from = to;
	}
	return st.n == 0 ? len : -1;
}

/* A gRPC-web text call: the request body written in two pieces split at
 * cut (of its base64), an event loop turn between them. */
static void
grpcweb_text_call(const char *method, const char *b64, size_t cut)
{
	char req[1024];
	int sv[2], n;

	ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	ok(h1h2_new(base, sv[1], 7, src_a, &ops) == 0);
	cl = sv[0];
	n = snprintf(req, sizeof(req), "POST /kb.Echo/%s HTTP/1.1\r\nHost: web\r\n"
	    "Content-Type: application/grpc-web-text+proto\r\nX-Grpc-Web: 1\r\n"
	    "Content-Length: %zu\r\n\r\n%.*s", method, strlen(b64), (int)cut, b64);
	ok(write(cl, req, (size_t)n) == n);
	run_for(30);
	ok(write(cl, b64 + cut, strlen(b64 + cut)) == (ssize_t)strlen(b64 + cut));
	gotlen = 0;
}

int
main(void)
{
	const char *names[] = { "grpc-status", "Grpc-Message" }, *values[] = { "3", "no" };
	unsigned char tr[64];
	char addr[64], *argv[] = { PY, PEER, "serve", "alice", addr, NULL };
	const char *p;
	pid_t srv;
	size_t n;
	int i;

	/* --- pure parts */
	ok(h1h2_grpc_web("application/grpc-web") == 1);
	ok(h1h2_grpc_web("application/grpc-web+proto") == 1);
	ok(h1h2_grpc_web("Application/gRPC-Web+json") == 1);
	ok(h1h2_grpc_web("application/grpc-web-text") == 2);
	ok(h1h2_grpc_web("application/grpc-web-text+proto") == 2);
	ok(h1h2_grpc_web("application/grpc-web-textual") == 0);
	ok(h1h2_grpc_web("application/grpc-webby") == 0);
	ok(h1h2_grpc_web("application/grpc") == 0);
	ok(h1h2_grpc_web("text/plain") == 0 && h1h2_grpc_web(NULL) == 0);
	ok(h1h2_hop("Connection") && h1h2_hop("transfer-encoding") && h1h2_hop("Host") &&
	    h1h2_hop("te") && h1h2_hop("upgrade") && !h1h2_hop("cookie") &&
	    !h1h2_hop("x-kbridge-intercept-id") && !h1h2_hop("content-type"));
	/* the sidecar's mark, not its text, says the app did not speak it */
	ok(h1h2_mismatch(H1H2_H1, 502, "not-http1", 9));
	ok(!h1h2_mismatch(H1H2_H1, 500, "not-http1", 9));
	ok(!h1h2_mismatch(H1H2_H1, 200, "not-http1", 9));
	ok(!h1h2_mismatch(H1H2_H1, 502, "not-h2c", 7));
	ok(!h1h2_mismatch(H1H2_H1, 502, "not-http1x", 10));
	ok(!h1h2_mismatch(H1H2_H1, 502, "not-http", 8));
	ok(!h1h2_mismatch(H1H2_H1, 502, NULL, 0));
	ok(h1h2_mismatch(H1H2_H2C, 502, "not-h2c", 7));
	ok(h1h2_mismatch(H1H2_H2C, 200, "not-h2c", 7));	/* gRPC's UNAVAILABLE */
	ok(!h1h2_mismatch(H1H2_H2C, 503, "not-h2c", 7));
	ok(!h1h2_mismatch(H1H2_H2C, 502, "not-http1", 9));
	ok(!h1h2_mismatch(H1H2_H2C, 502, "Not-H2C", 7));
	ok(!h1h2_mismatch(H1H2_H2C, 502, NULL, 0));
	n = h1h2_grpc_trailer(names, values, 2, tr, sizeof(tr));
	ok(n == 5 + 34 && tr[0] == 0x80 && tr[1] == 0 && tr[2] == 0 && tr[3] == 0 && tr[4] == 34);
	ok(memcmp(tr + 5, "grpc-status: 3\r\ngrpc-message: no\r\n", 34) == 0);
	ok(h1h2_grpc_trailer(names, values, 2, tr, 20) == 0);
	ok(h1h2_grpc_trailer(names, values, 0, tr, sizeof(tr)) == 5 && tr[4] == 0);

	/* base64 split at every byte boundary, padded per piece or not */
	{
		static const char *const good[][2] = {
			{ "aGVsbG8gd29ybGQh", "hello world!" },
			{ "aGVsbG8gd29ybGQ=", "hello world" },
			{ "aGk=aGk=", "hihi" },
			{ "YQ==Yg==Yw", NULL },		/* a quantum unfinished */
			{ "YQ==Yg==YwA=", "abc\0" },
			{ "YQ==\r\nYmM=", "abc" },
			{ "", "" },
		};
		static const char *const bad[] = { "a$bc", "=AAA", "A=AA", "AA=A", "YQ==Y=", "YQ=x",
		    "YQ===AAA", "AAAA-AAA" };
		unsigned char out[64];
		size_t c1, c2, cuts[2], k;
		long r;
		int fine = 1;

		for (k = 0; k < sizeof(good) / sizeof(good[0]); k++)
			for (c1 = 0; c1 <= strlen(good[k][0]); c1++)
				for (c2 = c1; c2 <= strlen(good[k][0]); c2++) {
					cuts[0] = c1;
					cuts[1] = c2;
					r = b64_pieces(good[k][0], cuts, 2, out);
					if (good[k][1] == NULL ? r != -1 : (r < 0 ||
					    (size_t)r != strlen(good[k][1]) + (k == 4) ||
					    memcmp(out, good[k][1], (size_t)r) != 0))
						fine = 0;
				}
		ok(fine);
		fine = 1;
		for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
			for (c1 = 0; c1 <= strlen(bad[k]); c1++) {
				cuts[0] = c1;
				if (b64_pieces(bad[k], cuts, 1, out) != -1)
					fine = 0;
			}
		ok(fine);
	}

	/* --- a real gRPC server upstream */
	if (access(PY, X_OK) != 0 || system(PY " -c 'import grpc' 2>/dev/null") != 0) {
		skip_or_fail_tool("python3-grpcio is not installed");
		return ok_done();
	}
	signal(SIGPIPE, SIG_IGN);
	ok((got = malloc(GOT_MAX)) != NULL);
	base = event_base_new();
	grpc_port = free_port();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", grpc_port);
	srv = spawn(argv, "build/tests/h1h2.grpc.log");
	for (i = 0; i < 100 && !listening(grpc_port); i++)
		usleep(100000);
	ok(listening(grpc_port));

	/* learnt h2c: gRPC-web in, gRPC over h2 out */
	proto_now = H1H2_H2C;
	grpcweb_call("Unary", "hi");
	ok(run_until(answered, NULL, 10000));
	ok(strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0);
	ok(strcasestr(got, "\r\ncontent-type: application/grpc-web+proto\r\n") != NULL);
	ok(strcasestr(got, "\r\ntransfer-encoding: chunked\r\n") != NULL);
	ok(strcasestr(got, "content-length") == NULL);
	/* chunks: the message frame, then the trailer frame */
	p = strstr(got, "\r\n\r\n");
	ok(p && memcmp(p + 4, "e\r\n\0\0\0\0\x09" "alice: hi\r\n", 3 + 14 + 2) == 0);
	ok(p && (p = memmem(p, gotlen - (size_t)(p - got), "\x80\0\0\0", 4)) != NULL &&
	    strstr(p + 5, "grpc-status: 0\r\n") != NULL);
	ok(learnt == H1H2_H2C);
	close(cl);

	/* an error: trailers-only, grpc-status in the head */
	grpcweb_call("Fail", "x");
	ok(run_until(answered, NULL, 10000));
	ok(strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0);
	ok(strcasestr(got, "\r\ngrpc-status: 3\r\n") != NULL);
	ok(strcasestr(got, "\r\ngrpc-message: alice says no\r\n") != NULL);
	close(cl);

	/* gRPC-web text: the body's base64 split mid-quantum, the answer
	 * base64 (each chunk padded), the trailer frame too, content type as
	 * asked */
	{
		/* frame 0, length 5, "hello" */
		static const char b64[] = "AAAAAAVoZWxsbw==";
		static const char b64s[] = "AAAAAAEz";	/* Stream, "3" */
		unsigned char dec[4096];
		size_t k;
		long r;
		struct h1h2_b64 st = { .n = 0 };

		for (k = 1; k < sizeof(b64) - 1; k += 5) {
			grpcweb_text_call("Unary", b64, k);
			ok(run_until(answered, NULL, 10000));
			ok(strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0);
			ok(strcasestr(got, "\r\ncontent-type: application/grpc-web-text+proto\r\n") != NULL);
			p = strstr(got, "\r\n\r\n");
			n = p ? unchunk(p + 4, (unsigned char *)got + gotlen + 1) : 0;
			st.n = 0;
			r = h1h2_b64_decode(&st, got + gotlen + 1, n, dec);
			ok(r >= 5 + 12 + 5 + 16 && st.n == 0 &&
			    memcmp(dec, "\0\0\0\0\x0c" "alice: hello\x80\0\0\0", 21) == 0 &&
			    memmem(dec + 22, (size_t)r - 22, "grpc-status: 0\r\n", 16) != NULL);
			close(cl);
		}
		grpcweb_text_call("Stream", b64s, 3);
		ok(run_until(answered, NULL, 10000));
		p = strstr(got, "\r\n\r\n");
		n = p ? unchunk(p + 4, (unsigned char *)got + gotlen + 1) : 0;
		st.n = 0;
		r = h1h2_b64_decode(&st, got + gotlen + 1, n, dec);
		ok(r > 3 * 12 && memcmp(dec, "\0\0\0\0\x07" "alice 0\0\0\0\0\x07" "alice 1"
		    "\0\0\0\0\x07" "alice 2\x80", 37) == 0);
		close(cl);

		/* bad base64: 400, and grpc-status for the gRPC-web client */
		grpcweb_text_call("Unary", "AAAA*AVoZWxsbw==", 4);
		ok(run_until(answered, NULL, 10000));
		ok(strncmp(got, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
		ok(strcasestr(got, "\r\ngrpc-status: 3\r\n") != NULL);
		ok(strstr(got, "not base64") != NULL);
		close(cl);
		/* a body that ends mid-quantum is bad too */
		grpcweb_text_call("Unary", "AAAAAAVoZWxsbw=", 4);
		ok(run_until(answered, NULL, 10000));
		ok(strncmp(got, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
		close(cl);
	}

	/* learnt h2c: a body over H1H2_BODY_MAX is streamed, not refused */
	{
		size_t ml = 3 * 1024 * 1024, hl;
		char *req = malloc(ml + 512);
		unsigned char *dec;
		int sv[2];

		ok(req != NULL);
		hl = (size_t)snprintf(req, 512, "POST /kb.Echo/Unary HTTP/1.1\r\nHost: web\r\n"
		    "Content-Type: application/grpc-web+proto\r\nContent-Length: %zu\r\n\r\n", ml + 5);
		req[hl] = 0;
		req[hl + 1] = (char)(ml >> 24);
		req[hl + 2] = (char)(ml >> 16);
		req[hl + 3] = (char)(ml >> 8);
		req[hl + 4] = (char)ml;
		for (n = 0; n < ml; n++)
			req[hl + 5 + n] = (char)('a' + n * 7 % 26);
		ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
		ok(h1h2_new(base, sv[1], 7, src_a, &ops) == 0);
		cl = sv[0];
		gotlen = 0;
		wleft = req;
		wlen = hl + 5 + ml;
		ok(run_until(stream_answered, NULL, 30000));
		ok(wlen == 0 && strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0);
		ok(drained && tmp_max <= H1H2_HIGH_WATER + HH_READ_MAX && stalls > 0);
		printf("# streamed: at most %zu bytes waited, %d stalls seen\n", tmp_max, stalls);
		p = strstr(got, "\r\n\r\n");
		dec = malloc(GOT_MAX);
		ok(dec != NULL && p != NULL);
		n = unchunk(p + 4, dec);
		ok(n > 12 + ml && dec[0] == 0 && memcmp(dec + 5, "alice: ", 7) == 0 &&
		    memcmp(dec + 12, req + hl + 5, ml) == 0);
		ok(memmem(dec + 12 + ml, n - 12 - ml, "grpc-status: 0\r\n", 16) != NULL);
		ok(hh_bodies == 0);
		free(dec);
		free(req);
		close(cl);
	}

	/* gRPC itself over HTTP/1.1 (TE: trailers): its trailers become the
	 * chunked body's trailers */
	{
		static const char req[] = "POST /kb.Echo/Unary HTTP/1.1\r\nHost: web\r\n"
		    "Content-Type: application/grpc\r\nTE: trailers\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n7\r\n\0\0\0\0\2yo\r\n0\r\n\r\n";
		int sv[2];

		ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
		ok(h1h2_new(base, sv[1], 9, src_a, &ops) == 0);
		cl = sv[0];
		gotlen = 0;
		ok(write(cl, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1);
		ok(run_until(answered, NULL, 10000));
		ok(strcasestr(got, "\r\ncontent-type: application/grpc\r\n") != NULL);
		ok(strcasestr(got, "\r\ntransfer-encoding: chunked\r\n") != NULL);
		ok(memmem(got, gotlen, "\0\0\0\0\x09" "alice: yo\r\n0\r\ngrpc-status: 0\r\n", 35) != NULL);
		ok(gotlen > 4 && memcmp(got + gotlen - 4, "\r\n\r\n", 4) == 0);
		close(cl);
	}

	/* not known yet: HTTP/1.1 first; the sidecar's 502 -> h2c, learnt */
	ok(call(7, src_a, "again"));
	/* the header's name in any case, as HTTP/1.1 allows */
	fake_hdrs = "KBridge-Upstream-Proto: not-http1\r\n";
	ok(call(7, src_a, "again"));
	/* its text alone is not the mark: the 502 goes to the browser */
	fake_hdrs = "";
	ok(call(7, src_a, NULL));
	/* nor another value, nor the mark renamed (as the sidecar does to an
	 * app's: agent/httpproxy.c) */
	fake_hdrs = H1H2_PROTO_HEADER ": " H1H2_NOT_H2C "\r\n";
	ok(call(7, src_a, NULL));
	fake_hdrs = H1H2_PROTO_HEADER ": " H1H2_NOT_HTTP1 "x\r\n";
	ok(call(7, src_a, NULL));
	fake_hdrs = "kbridge-upstream-protx: " H1H2_NOT_HTTP1 "\r\n";
	ok(call(7, src_a, NULL));
	fake_hdrs = MARK_H1;

	/* The bodies kept for replays: one visitor's address keeps at most
	 * its share, one preview its own; then others' requests are still
	 * kept (and replayed). With one cap for all, a visitor filled it and
	 * the next one's request went on as HTTP/1.1 without a replay (the
	 * bodies of 200 bytes are more than the fills leave: a byte each). */
	{
		int per = H1H2_BODY_MAX - 1;
		char mb[201], md[201];

		memset(mb, 'b', 200);
		memset(md, 'd', 200);
		mb[200] = md[200] = '\0';

		ok(hh_bodies == 0);
		ok(fill_share(20, src_a, 80) == H1H2_SRC_BODIES_MAX / per);
		ok(hh_bodies == (size_t)(H1H2_SRC_BODIES_MAX / per) * per);
		/* another address, the same preview */
		ok(call(20, src_b, mb));
		/* a third address meets the preview's share */
		ok(fill_share(20, src_c, 80) == H1H2_SRC_BODIES_MAX / per);
		ok(fill_share(20, src_e, 80) == 0);
		ok(hh_bodies <= H1H2_PREVIEW_BODIES_MAX);
		/* another preview, another address */
		ok(call(21, src_d, md));
		while (nfills > 0)
			close(fills[--nfills]);
		while (nsinks > 0)
			close(sinks[--nsinks]);
		run_for(200);
		ok(hh_bodies == 0);
		/* shares live only while used (the next test's is not yet) */
		ok(hh_shares.n == 0);
	}

	/* an HTTP/1.1 app (devserver.py): a WebSocket is relayed as it is */
	{
		char dport[16], *dargv[] = { PY, "tests/e2e/devserver.py", "alice", dport, NULL };
		static const char up[] = "GET /ws HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n";
		/* a masked text frame "hey" (mask 0) */
		static const char fr[] = "\x81\x83\0\0\0\0hey";
		int sv[2];
		pid_t dev;

		dev_port = free_port();
		snprintf(dport, sizeof(dport), "%d", dev_port);
		dev = spawn(dargv, "build/tests/h1h2.dev.log");
		for (i = 0; i < 100 && !listening(dev_port); i++)
			usleep(100000);
		replay_mode = 0;
		proto_now = H1H2_H1;
		ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
		ok(h1h2_new(base, sv[1], 8, src_a, &ops) == 0);
		cl = sv[0];
		gotlen = 0;
		ok(write(cl, up, sizeof(up) - 1) == (ssize_t)sizeof(up) - 1);
		run_until(ws_switched, NULL, 5000);
		ok(strncmp(got, "HTTP/1.1 101 ", 13) == 0);
		gotlen = 0;
		ok(write(cl, fr, sizeof(fr) - 1) == (ssize_t)sizeof(fr) - 1);
		ok(run_until(ws_echoed, NULL, 5000));
		close(cl);
		kill(dev, SIGTERM);
		waitpid(dev, NULL, 0);
	}

	h1h2_free_all();
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
	event_base_free(base);
	return ok_done();
}
