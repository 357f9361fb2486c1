/* Two sockets joined: each side's bytes are read into a buffer and
 * written to the other (plain read/write through libevent, not splice(2)). */
#include "join.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/event.h>

#define JOIN_HWM (256 * 1024) /* stop reading a side while this much waits */
#define READ_CHUNK (64 * 1024)

struct join;

struct half {
	struct join *sp;
	int from, to;
	struct event *rev, *wev;
	struct evbuffer *buf;
	int eof, done;
};

struct join {
	struct half h[2];
	int fds[2];
	void (*done)(void *);
	void *arg;
};

static void
join_free(struct join *sp, int abortive)
{
	void (*done)(void *);
	void *arg;
	int i;

	for (i = 0; i < 2; i++) {
		if (sp->h[i].rev)
			event_free(sp->h[i].rev);
		if (sp->h[i].wev)
			event_free(sp->h[i].wev);
		if (sp->h[i].buf)
			evbuffer_free(sp->h[i].buf);
		if (abortive) {
			struct linger l = { 1, 0 };
			setsockopt(sp->fds[i], SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		close(sp->fds[i]);
	}
	done = sp->done;
	arg = sp->arg;
	free(sp);
	if (done)
		done(arg);
}

/* Move what is buffered on; at EOF with nothing left, pass the half-close
 * on. Returns -1 if sp was freed. */
static int
half_flush(struct half *h)
{
	struct join *sp = h->sp;

	while (evbuffer_get_length(h->buf) > 0) {
		if (evbuffer_write(h->buf, h->to) < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			join_free(sp, 1);
			return -1;
		}
	}
	if (evbuffer_get_length(h->buf) > 0) {
		event_add(h->wev, NULL);
		event_del(h->rev);
		return 0;
	}
	event_del(h->wev);
	if (h->eof && !h->done) {
		shutdown(h->to, SHUT_WR);
		h->done = 1;
		if (sp->h[0].done && sp->h[1].done) {
			join_free(sp, 0);
			return -1;
		}
		return 0;
	}
	if (!h->eof)
		event_add(h->rev, NULL);
	return 0;
}

static void
half_read(evutil_socket_t fd, short what, void *arg)
{
	struct half *h = arg;
	struct evbuffer_iovec v;
	ssize_t n;

	(void)what;
	while (evbuffer_get_length(h->buf) < JOIN_HWM) {
		if (evbuffer_reserve_space(h->buf, READ_CHUNK, &v, 1) != 1)
			break;
		n = read(fd, v.iov_base, READ_CHUNK);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n < 0) {
			join_free(h->sp, 1);
			return;
		}
		if (n == 0) {
			h->eof = 1;
			event_del(h->rev);
			break;
		}
		v.iov_len = (size_t)n;
		evbuffer_commit_space(h->buf, &v, 1);
		if ((size_t)n < READ_CHUNK)
			break;
	}
	half_flush(h);
}

static void
half_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	half_flush(arg);
}

int
join_start(struct event_base *base, int a, int b, void (*done)(void *), void *arg)
{
	struct join *sp = calloc(1, sizeof(*sp));
	int i, one = 1;

	/* What a read brought is written at once: Nagle would hold a
	 * response's last small piece until the peer's delayed ACK (40 ms).
	 * Fails harmlessly on a socket that is not TCP. */
	(void)setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!sp) {
		close(a);
		close(b);
		return -1;
	}
	sp->fds[0] = a;
	sp->fds[1] = b;
	for (i = 0; i < 2; i++) {
		struct half *h = &sp->h[i];
		h->sp = sp;
		h->from = sp->fds[i];
		h->to = sp->fds[1 - i];
		h->buf = evbuffer_new();
		h->rev = event_new(base, h->from, EV_READ | EV_PERSIST, half_read, h);
		h->wev = event_new(base, h->to, EV_WRITE | EV_PERSIST, half_write, h);
		if (!h->buf || !h->rev || !h->wev) {
			join_free(sp, 1);
			return -1;
		}
	}
	sp->done = done;
	sp->arg = arg;
	event_add(sp->h[0].rev, NULL);
	event_add(sp->h[1].rev, NULL);
	return 0;
}
