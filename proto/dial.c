/* Non-blocking TCP connect with a timer; the errno of a failed connect is
 * mapped to the reset reason a stream reports; and the dial behind a stream
 * the peer opened (the manager's to cluster addresses, the daemon's to the
 * local port of an intercept). */
#include "dial.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "frame.h"
#include "session.h"
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

/* A stream waiting for its connect. */
struct stream_dial {
	struct kb_stream *st;
	struct kb_dial *dial;
	kb_stream_dial_fn done;
	void *arg;
	/* kb_stream_dial2: the address to try when the first one fails. */
	struct event_base *base;
	struct sockaddr_storage next;
	socklen_t nextlen;
	unsigned timeout_ms;
};

/* The peer reset the stream while we were still connecting. */
static void
stream_dial_gone(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct stream_dial *sd = arg;
	char copy[160];

	(void)reason;
	kb_dial_cancel(sd->dial);
	snprintf(copy, sizeof(copy), "%s", text ? text : "");
	sd->done(sd->arg, st, -1, copy, sizeof(copy));
	free(sd);
}

static const struct kb_stream_cbs stream_dial_cbs = { .on_close = stream_dial_gone };

/* The connect finished: fd, or -1 and errno e. */
static void
stream_dialed(int fd, int e, void *arg)
{
	struct stream_dial *sd = arg;
	struct kb_stream *st = sd->st;
	char text[160];

	/* Refused or unreachable there: the other address (a timeout has
	 * used up the time already). */
	if (fd < 0 && sd->nextlen && e != ETIMEDOUT) {
		sd->dial = kb_dial_start(sd->base, (struct sockaddr *)&sd->next, sd->nextlen,
		    sd->timeout_ms, stream_dialed, sd);
		sd->nextlen = 0;
		if (sd->dial != NULL)
			return;
	}
	kb_stream_set_cbs(st, NULL, NULL);
	snprintf(text, sizeof(text), "%s", fd >= 0 ? "" : strerror(e));
	sd->done(sd->arg, st, fd >= 0 ? 0 : e, text, sizeof(text));
	free(sd);
	if (fd >= 0)
		kb_stream_accept(st, fd, NULL, NULL);
	else
		kb_stream_reset(st, kb_dial_reset_reason(e), text);
}

int
kb_stream_dial(struct event_base *base, struct kb_stream *st, const struct sockaddr *sa,
    socklen_t salen, unsigned timeout_ms, kb_stream_dial_fn done, void *arg)
{
	return kb_stream_dial2(base, st, sa, salen, NULL, 0, timeout_ms, done, arg);
}

int
kb_stream_dial2(struct event_base *base, struct kb_stream *st, const struct sockaddr *sa,
    socklen_t salen, const struct sockaddr *sa2, socklen_t salen2, unsigned timeout_ms,
    kb_stream_dial_fn done, void *arg)
{
	struct stream_dial *sd;

	if ((sd = calloc(1, sizeof(*sd))) == NULL) {
		kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
		return -1;
	}
	sd->st = st;
	sd->done = done;
	sd->arg = arg;
	sd->base = base;
	sd->timeout_ms = timeout_ms;
	if (sa2 && salen2 <= sizeof(sd->next)) {
		memcpy(&sd->next, sa2, salen2);
		sd->nextlen = salen2;
	}
	/* Ours before the dial: stream_dialed may go on to sa2 at once. */
	kb_stream_set_cbs(st, &stream_dial_cbs, sd);
	if ((sd->dial = kb_dial_start(base, sa, salen, timeout_ms, stream_dialed, sd)) == NULL)
		stream_dialed(-1, errno, sd);
	return 0;
}
