/* Write grouping across connections: see batch.h. */
#include "batch.h"

#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

/* What the waiting members (and extra, unless NULL) have queued goes out in
 * one system call. What a socket does not take stays queued; the owner's
 * sent() makes it wait for writability (not tried again at once: the socket
 * just said it is full). */
static void
batch_send(struct batch *b, struct batch_member *extra)
{
	struct batch_member *m;
	unsigned i;

	b->n = 0;
	TAILQ_FOREACH(m, &b->pending, link)
		b->ops->collect(b, m);
	if (extra != NULL)
		b->ops->collect(b, extra);
	kb_sendmany(b->v, b->n);
	for (i = 0; i < b->n; i++)
		b->ops->sent(b->sock[i], b->v[i].res);
}

/* The end of a loop iteration, or a full group (extra: the member that
 * filled it, which is settling and writes for itself). */
static void
batch_flush(struct batch *b, struct batch_member *extra)
{
	struct batch_member *m;

	batch_send(b, extra);
	b->flushing = 1;
	while ((m = TAILQ_FIRST(&b->pending)) != NULL) {
		TAILQ_REMOVE(&b->pending, m, link);
		m->pending = 0;
		b->npending--;
		b->ops->settle(m);
	}
	b->flushing = 0;
}

static void
batch_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	batch_flush(arg, NULL);
}

int
batch_init(struct batch *b, struct event_base *base, const struct batch_ops *ops)
{
	b->ops = ops;
	TAILQ_INIT(&b->pending);
	b->flushing = 0;
	b->npending = 0;
	b->groups = 0;
	b->n = 0;
	b->ev = event_new(base, -1, 0, batch_flush_cb, b);
	return b->ev != NULL ? 0 : -1;
}

void
batch_fini(struct batch *b)
{
	if (b->ev != NULL)
		event_free(b->ev);
	b->ev = NULL;
}

int
batch_enqueue(struct batch *b, struct batch_member *m)
{
	if (b->npending >= BATCH_MAX - 1) {
		/* A full group: the waiting ones go now, m's bytes in the
		 * same system call. */
		b->groups++;
		batch_flush(b, m);
		return 0;
	}
	TAILQ_INSERT_TAIL(&b->pending, m, link);
	m->pending = 1;
	b->npending++;
	event_active(b->ev, EV_READ, 0);
	return 1;
}

void
batch_add(struct batch *b, int fd, struct evbuffer *out, void *sock)
{
	struct evbuffer_iovec ev[BATCH_IOV];
	unsigned n = b->n;
	int i, nv;

	if (n == BATCH_SOCKS)
		return;	/* (not expected: the owner writes the rest when it settles) */
	nv = evbuffer_peek(out, -1, NULL, ev, BATCH_IOV);
	if (nv > BATCH_IOV)
		nv = BATCH_IOV;
	for (i = 0; i < nv; i++) {
		b->iov[n][i].iov_base = ev[i].iov_base;
		b->iov[n][i].iov_len = ev[i].iov_len;
	}
	memset(&b->m[n], 0, sizeof(b->m[n]));
	b->m[n].msg_iov = b->iov[n];
	b->m[n].msg_iovlen = nv;
	b->sock[n] = sock;
	b->v[n].fd = fd;
	b->v[n].msg = &b->m[n];
	b->n++;
}

void
batch_remove(struct batch *b, struct batch_member *m)
{
	if (!m->pending)
		return;
	TAILQ_REMOVE(&b->pending, m, link);
	m->pending = 0;
	b->npending--;
}

void
batch_shutdown(void)
{
	kb_sendmany_fini();
}
