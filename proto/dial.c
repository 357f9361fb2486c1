/* Non-blocking TCP connect with a timer; the errno of a failed connect is
 * mapped to the reset reason a stream reports. */
#include "dial.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "frame.h"
#include "util.h"

struct kb_dial {
	int fd;
	struct event *ev;
	kb_dial_cb cb;
	void *arg;
};

static void
dial_event(evutil_socket_t fd, short what, void *arg)
{
	struct kb_dial *d = arg;
	kb_dial_cb cb = d->cb;
	void *cbarg = d->arg;
	int e = 0, one = 1;
	socklen_t len = sizeof(e);

	if (what & EV_TIMEOUT)
		e = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	event_free(d->ev);
	free(d);
	if (e) {
		close(fd);
		cb(-1, e, cbarg);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	cb(fd, 0, cbarg);
}

struct kb_dial *
kb_dial_start(struct event_base *base, const struct sockaddr *sa, socklen_t salen,
    unsigned timeout_ms, kb_dial_cb cb, void *arg)
{
	struct timeval tv = kb_ms_tv(timeout_ms);
	struct kb_dial *d = calloc(1, sizeof(*d));
	int saved;

	if (!d)
		return NULL;
	d->cb = cb;
	d->arg = arg;
	d->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->fd < 0)
		goto fail;
	/* Even an immediate result is reported through the event, so that cb
	 * never runs inside the caller. */
	if (connect(d->fd, sa, salen) < 0 && errno != EINPROGRESS)
		goto fail;
	if ((d->ev = event_new(base, d->fd, EV_WRITE, dial_event, d)) == NULL ||
	    event_add(d->ev, &tv) < 0)
		goto fail;
	return d;
fail:
	saved = errno;
	if (d->ev)
		event_free(d->ev);
	if (d->fd >= 0)
		close(d->fd);
	free(d);
	errno = saved;
	return NULL;
}

void
kb_dial_cancel(struct kb_dial *d)
{
	if (!d)
		return;
	event_free(d->ev);
	close(d->fd);
	free(d);
}

uint8_t
kb_dial_reset_reason(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return KB_RST_REFUSED;
	case ETIMEDOUT:
		return KB_RST_TIMEOUT;
	default:
		return KB_RST_UNREACHABLE;
	}
}
