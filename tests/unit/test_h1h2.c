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

static int
t_open(void *arg, uint64_t key, char *reason, size_t len)
{
	int sv[2];

	(void)arg;
	(void)key;
	opens++;
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

static pid_t
spawn(char *const argv[], const char *out)
{
	pid_t pid = fork();
	int fd;

	if (pid == 0) {
		if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

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
static char got[65536];
static size_t gotlen;
static int cl;

static int
answered(void *arg)
{
	ssize_t n;

	(void)arg;
	while ((n = read(cl, got + gotlen, sizeof(got) - 1 - gotlen)) > 0)
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
static int
fake_asked(void *arg)
{
	static int asked;
	char buf[4096];

	(void)arg;
	if (!asked && fake_fd >= 0 && read(fake_fd, buf, sizeof(buf)) > 0)
		asked = 1;	/* (run_until asks again at the end) */
	return asked;
}

static void
grpcweb_call(const char *method, const char *msg)
{
	char req[1024];
	unsigned char frame[64];
	size_t ml = strlen(msg);
	int sv[2], n;

	frame[0] = 0;
	frame[1] = frame[2] = frame[3] = 0;
	frame[4] = (unsigned char)ml;
	memcpy(frame + 5, msg, ml);
	ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	ok(h1h2_new(base, sv[1], 7, &ops) == 0);
	cl = sv[0];
	n = snprintf(req, sizeof(req), "POST /kb.Echo/%s HTTP/1.1\r\nHost: web\r\n"
	    "Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n"
	    "Content-Length: %zu\r\n\r\n", method, ml + 5);
	memcpy(req + n, frame, ml + 5);
	ok(write(cl, req, (size_t)n + ml + 5) == (ssize_t)(n + ml + 5));
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
	ok(h1h2_grpc_web("application/grpc-web-text") == 0);
	ok(h1h2_grpc_web("application/grpc") == 0);
	ok(h1h2_grpc_web("text/plain") == 0 && h1h2_grpc_web(NULL) == 0);
	ok(h1h2_hop("Connection") && h1h2_hop("transfer-encoding") && h1h2_hop("Host") &&
	    h1h2_hop("te") && h1h2_hop("upgrade") && !h1h2_hop("cookie") &&
	    !h1h2_hop("x-kbridge-intercept-id") && !h1h2_hop("content-type"));
	ok(h1h2_mismatch(H1H2_H1, 502, H1H2_NOT_H1 "\n", strlen(H1H2_NOT_H1) + 1));
	ok(!h1h2_mismatch(H1H2_H1, 500, H1H2_NOT_H1, strlen(H1H2_NOT_H1)));
	ok(!h1h2_mismatch(H1H2_H1, 502, "kbridge: cannot reach", 21));
	ok(!h1h2_mismatch(H1H2_H2C, 502, H1H2_NOT_H1, strlen(H1H2_NOT_H1)));
	ok(h1h2_mismatch(H1H2_H2C, 502, H1H2_NOT_H2 "in HTTP/1", strlen(H1H2_NOT_H2) + 9));
	n = h1h2_grpc_trailer(names, values, 2, tr, sizeof(tr));
	ok(n == 5 + 34 && tr[0] == 0x80 && tr[1] == 0 && tr[2] == 0 && tr[3] == 0 && tr[4] == 34);
	ok(memcmp(tr + 5, "grpc-status: 3\r\ngrpc-message: no\r\n", 34) == 0);
	ok(h1h2_grpc_trailer(names, values, 2, tr, 20) == 0);
	ok(h1h2_grpc_trailer(names, values, 0, tr, sizeof(tr)) == 5 && tr[4] == 0);

	/* --- a real gRPC server upstream */
	if (access(PY, X_OK) != 0 || system(PY " -c 'import grpc' 2>/dev/null") != 0) {
		skip_or_fail_tool("python3-grpcio is not installed");
		return ok_done();
	}
	signal(SIGPIPE, SIG_IGN);
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

	/* gRPC itself over HTTP/1.1 (TE: trailers): its trailers become the
	 * chunked body's trailers */
	{
		static const char req[] = "POST /kb.Echo/Unary HTTP/1.1\r\nHost: web\r\n"
		    "Content-Type: application/grpc\r\nTE: trailers\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n7\r\n\0\0\0\0\2yo\r\n0\r\n\r\n";
		int sv[2];

		ok(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
		ok(h1h2_new(base, sv[1], 9, &ops) == 0);
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
	proto_now = learnt = H1H2_UNKNOWN;
	replay_mode = 1;
	opens = 0;
	grpcweb_call("Unary", "again");
	ok(run_until(fake_asked, NULL, 5000));
	{
		char page[512];
		int m = snprintf(page, sizeof(page), "HTTP/1.1 502 Bad Gateway\r\n"
		    "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s\n",
		    strlen(H1H2_NOT_H1) + 1, H1H2_NOT_H1);

		ok(write(fake_fd, page, (size_t)m) == m);
	}
	ok(run_until(answered, NULL, 10000));
	ok(opens == 2);
	ok(strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0 && memmem(got, gotlen, "alice: again", 12) != NULL);
	ok(memmem(got, gotlen, H1H2_NOT_H1, strlen(H1H2_NOT_H1)) == NULL);
	ok(learnt == H1H2_H2C);
	close(cl);
	close(fake_fd);
	run_for(50);

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
		ok(h1h2_new(base, sv[1], 8, &ops) == 0);
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
