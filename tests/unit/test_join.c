/* Two TCP connections joined by agent/join.c on loopback: bytes both ways
 * (4 MiB checksummed), half-close passed on, both ends closed at the end,
 * and Nagle off on both sockets (a response's last small write must not
 * wait 40 ms for the peer's delayed ACK: the bug this test was written for). */
#include "../../agent/join.c"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include "evloop.h"
#include "ok.h"

#define BULK (4 * 1024 * 1024)

/* A connected TCP pair on loopback: *x is blocking, *y non-blocking. */
static void
tcp_pair(int *x, int *y)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(l, (struct sockaddr *)&sin, sizeof(sin));
	listen(l, 1);
	getsockname(l, (struct sockaddr *)&sin, &sl);
	*x = socket(AF_INET, SOCK_STREAM, 0);
	connect(*x, (struct sockaddr *)&sin, sizeof(sin));
	*y = accept(l, NULL, NULL);
	fcntl(*y, F_SETFL, O_NONBLOCK);
	close(l);
}

static int
nodelay(int fd)
{
	int v = 0;
	socklen_t l = sizeof(v);

	return getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l) == 0 && v;
}

struct reader {
	int fd;
	size_t got;
	uint32_t sum;
	int eof;
};

static int
drain(void *arg)
{
	struct reader *r = arg;
	unsigned char buf[65536];
	ssize_t n, i;

	while ((n = recv(r->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		for (i = 0; i < n; i++)
			r->sum = r->sum * 31 + buf[i];
		r->got += n;
	}
	if (n == 0)
		r->eof = 1;
	return r->eof;
}

int
main(void)
{
	static unsigned char data[BULK];
	struct reader r = { 0 };
	uint32_t want = 0;
	char buf[64];
	size_t off = 0, i;
	ssize_t n;
	int x1, y1, x2, y2;

	base = event_base_new();
	tcp_pair(&x1, &y1);
	tcp_pair(&x2, &y2);
	ok(!nodelay(y1) && !nodelay(y2));
	ok(join_start(base, y1, y2, NULL, NULL) == 0);
	ok(nodelay(y1) && nodelay(y2));

	/* A small exchange both ways. */
	ok(send(x1, "GET / HTTP/1.1\r\n\r\n", 18, 0) == 18);
	run_for(50);
	ok(recv(x2, buf, sizeof(buf), MSG_DONTWAIT) == 18);
	ok(send(x2, "HTTP/1.1 200 OK\r\n", 17, 0) == 17);
	run_for(50);
	ok(recv(x1, buf, sizeof(buf), MSG_DONTWAIT) == 17 && !memcmp(buf, "HTTP/1.1 200", 12));

	/* 4 MiB one way, then a half-close that reaches the other end. */
	for (i = 0; i < BULK; i++) {
		data[i] = (unsigned char)(i * 7 + (i >> 13));
		want = want * 31 + data[i];
	}
	fcntl(x1, F_SETFL, O_NONBLOCK);
	r.fd = x2;
	while (off < BULK) {
		n = send(x1, data + off, BULK - off, MSG_DONTWAIT);
		if (n > 0)
			off += n;
		event_base_loop(base, EVLOOP_NONBLOCK);
		drain(&r);
	}
	shutdown(x1, SHUT_WR);
	ok(run_until(drain, &r, 5000));
	ok(r.got == BULK && r.sum == want);

	/* The other way still works after the half-close; then both close. */
	ok(send(x2, "bye", 3, 0) == 3);
	run_for(50);
	ok(recv(x1, buf, sizeof(buf), 0) == 3);
	shutdown(x2, SHUT_WR);
	run_for(50);
	ok(recv(x1, buf, sizeof(buf), 0) == 0);
	ok(fcntl(y1, F_GETFD) == -1 && fcntl(y2, F_GETFD) == -1);
	close(x1);
	close(x2);
	event_base_free(base);
	return ok_done();
}
