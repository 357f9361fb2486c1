/* TLS on a non-blocking socket without bufferevent_openssl (see conn.h):
 * reads drain the socket in large reads, writes go out in large batches. */
#include "conn.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "log.h"
#include "util.h"

#define READ_CHUNK 16384          /* one TLS record of plaintext */
#define RBUF_SIZE (256 * 1024)    /* ciphertext per read(): several records at once */
#define READ_BATCH (128 * 1024)   /* plaintext per on_read call */
#define READ_BUDGET (1024 * 1024) /* per wakeup, then let others run */
#define WBUF_MAX (256 * 1024)     /* ciphertext waiting for the socket before we stop encrypting */
#define EARLY_MIN (64 * 1024)     /* plaintext queued: encrypt now, not at the flush */
#define LINGER_MS 2000

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_DEAD };

struct kb_conn {
	struct event_base *base;
	int fd;
	SSL *ssl;
	int state;
	struct event *rev, *wev, *flush_ev, *timer;
	struct event *more;    /* read again after a full budget, once others had a turn */
	int writing, flush_pending;
	struct evbuffer *in, *out;
	struct evbuffer *wbuf; /* ciphertext on its way to the socket */
	uint8_t *rbuf;         /* ciphertext read from the socket, for OpenSSL */
	size_t roff, rlen;     /* rbuf[roff..rlen) not yet taken by OpenSSL */
	int reof;              /* the socket said end of file */
	int drained;           /* a read came back short: the socket is empty until
	                        * epoll says otherwise (level-triggered) */
	int rerr;              /* or failed with this errno */
	int read_stopped;      /* kb_conn_read_enable(c, 0) during on_read */
	int write_failed;      /* an early encryption or write failed: fail at the flush */
	int shrunk;            /* output taken early since the last flush */
	size_t lowat;
	const struct kb_conn_cbs *cbs;
	void *arg;
	int lingering;
	int depth, free_pending;
	int sys_errno;
	unsigned long ssl_err;
	int was_open;
};

static void conn_destroy(struct kb_conn *c);

/* --- BIOs between OpenSSL and the socket ---
 *
 * Writes append ciphertext to c->wbuf, which leaves in one write() per
 * loop iteration. Reads come from c->rbuf, which one read() of up to
 * RBUF_SIZE fills when OpenSSL has taken all of it. Not OpenSSL's own
 * read-ahead: on every record it moves what is left of its buffer to the
 * front (memmove, for alignment), so with a large buffer it copies each
 * byte many times over; here OpenSSL reads without read-ahead (a header,
 * then a body) and every ciphertext byte is copied once. A read that came
 * back short emptied the socket: until the next read event (epoll is
 * level-triggered, so data that arrives after it is not missed) OpenSSL
 * is told "retry" without another read() that would only say EAGAIN, one
 * system call saved per wakeup. Records left in rbuf are still served:
 * the flag only stops refills. */

static BIO_METHOD *wbio_method, *rbio_method;

static int
wbio_write(BIO *b, const char *data, int len)
{
	struct kb_conn *c = BIO_get_data(b);

	return evbuffer_add(c->wbuf, data, (size_t)len) < 0 ? -1 : len;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct kb_conn *c = BIO_get_data(b);

	(void)num;
	(void)ptr;
	if (cmd == BIO_CTRL_FLUSH)
		return 1;
	if (cmd == BIO_CTRL_EOF)
		return c && c->reof && c->roff == c->rlen;
	return 0;
}

static int
bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

/* Fill rbuf with one read(); 1, 0 at end of file, -1 (errno) otherwise. */
static int
rbuf_fill(struct kb_conn *c)
{
	ssize_t n;

	if (c->reof)
		return 0;
	if (c->rerr) {
		errno = c->rerr;
		return -1;
	}
	if (!c->rbuf && (c->rbuf = malloc(RBUF_SIZE)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	c->roff = c->rlen = 0;
	if (c->drained) {
		errno = EAGAIN;
		return -1;
	}
	while ((n = read(c->fd, c->rbuf, RBUF_SIZE)) < 0 && errno == EINTR)
		;
	c->drained = n < RBUF_SIZE;
	if (n <= 0) {
		if (n == 0)
			c->reof = 1;
		else if (errno != EAGAIN)
			c->rerr = errno;
		return n == 0 ? 0 : -1;
	}
	c->rlen = (size_t)n;
	return 1;
}

static int
rbio_read(BIO *b, char *out, int len)
{
	struct kb_conn *c = BIO_get_data(b);
	size_t k;
	int r;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (c->roff == c->rlen && (r = rbuf_fill(c)) <= 0) {
		if (r < 0 && errno == EAGAIN)
			BIO_set_retry_read(b);
		else if (r == 0)
			errno = 0;
		return r;
	}
	k = c->rlen - c->roff;
	if (k > (size_t)len)
		k = (size_t)len;
	memcpy(out, c->rbuf + c->roff, k);
	c->roff += k;
	return (int)k;
}

/* The read buffer while it is empty: only busy connections hold one. */
static void
rbuf_release(struct kb_conn *c)
{
	if (c->rbuf && c->roff == c->rlen) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->roff = c->rlen = 0;
	}
}

static BIO_METHOD *
bio_method(int reader)
{
	BIO_METHOD **m = reader ? &rbio_method : &wbio_method;

	if (!*m) {
		BIO_METHOD *n = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
		    reader ? "kb_conn_r" : "kb_conn_w");
		if (!n)
			return NULL;
		if (reader)
			BIO_meth_set_read(n, rbio_read);
		else
			BIO_meth_set_write(n, wbio_write);
		BIO_meth_set_ctrl(n, bio_ctrl);
		BIO_meth_set_create(n, bio_create);
		*m = n;
	}
	return *m;
}

static BIO *
bio_new(struct kb_conn *c, int reader)
{
	BIO_METHOD *m = bio_method(reader);
	BIO *b;

	if (!m)
		return NULL;
	if ((b = BIO_new(m)) != NULL)
		BIO_set_data(b, c);
	return b;
}

/* --- callbacks, guarded so that a callback may free the connection --- */

static void
enter(struct kb_conn *c)
{
	c->depth++;
}

/* Returns -1 if the connection is gone. */
static int
leave(struct kb_conn *c)
{
	if (--c->depth == 0 && c->free_pending) {
		conn_destroy(c);
		return -1;
	}
	return c->free_pending ? -1 : 0;
}

static void
notify(struct kb_conn *c, int what)
{
	if (c->cbs && c->cbs->on_event && !c->free_pending)
		c->cbs->on_event(c, what, c->arg);
}

static void
record_ssl_error(struct kb_conn *c)
{
	unsigned long e;

	while ((e = ERR_get_error()) != 0)
		c->ssl_err = e;
}

static void
fail(struct kb_conn *c, int what)
{
	if (c->state == ST_DEAD)
		return;
	c->state = ST_DEAD;
	event_del(c->rev);
	event_del(c->more);
	event_del(c->wev);
	evtimer_del(c->timer);
	if (c->lingering) {
		kb_conn_free(c);
		return;
	}
	/* After this, c may be gone unless the caller holds enter(). */
	enter(c);
	notify(c, what);
	leave(c);
}

static void
set_writing(struct kb_conn *c, int on)
{
	if (on != c->writing) {
		if (on)
			event_add(c->wev, NULL);
		else
			event_del(c->wev);
		c->writing = on;
	}
}

/* --- writing --- */

/* Push ciphertext (or, without TLS, the output) into the socket. */
static int
write_socket(struct kb_conn *c, struct evbuffer *b)
{
	while (evbuffer_get_length(b) > 0) {
		if (evbuffer_write(b, c->fd) < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			c->sys_errno = errno;
			return -1;
		}
	}
	return 0;
}

static int
encrypt_output(struct kb_conn *c)
{
	while (evbuffer_get_length(c->out) > 0 && evbuffer_get_length(c->wbuf) < WBUF_MAX) {
		struct evbuffer_iovec v;
		int n;

		if (evbuffer_peek(c->out, -1, NULL, &v, 1) < 1)
			break;
		ERR_clear_error();
		n = SSL_write(c->ssl, v.iov_base, (int)(v.iov_len > 65536 ? 65536 : v.iov_len));
		if (n <= 0) {
			record_ssl_error(c);
			return -1;
		}
		evbuffer_drain(c->out, (size_t)n);
	}
	return 0;
}

static void
conn_flush(struct kb_conn *c)
{
	size_t before = evbuffer_get_length(c->out);
	struct evbuffer *pending = c->ssl ? c->wbuf : c->out;

	if (c->state != ST_OPEN)
		return;
	if (c->write_failed) {
		fail(c, KB_CONN_ERROR);
		return;
	}
	do {
		if (c->ssl && encrypt_output(c) < 0) {
			fail(c, KB_CONN_ERROR);
			return;
		}
		if (write_socket(c, pending) < 0) {
			fail(c, KB_CONN_ERROR);
			return;
		}
	} while (c->ssl && evbuffer_get_length(c->wbuf) == 0 && evbuffer_get_length(c->out) > 0);
	set_writing(c, evbuffer_get_length(pending) > 0);
	if (c->lingering) {
		if (evbuffer_get_length(c->out) == 0 && evbuffer_get_length(pending) == 0)
			kb_conn_free(c);
		return;
	}
	if ((evbuffer_get_length(c->out) < before || c->shrunk) &&
	    evbuffer_get_length(c->out) <= c->lowat && c->cbs && c->cbs->on_drain) {
		c->shrunk = 0;
		enter(c);
		c->cbs->on_drain(c, c->arg);
		leave(c);
	}
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kb_conn *c = arg;

	(void)fd;
	(void)what;
	c->flush_pending = 0;
	conn_flush(c);
}

/* Everything added to the output during one loop iteration leaves together. */
static void
schedule_flush(struct kb_conn *c)
{
	if (!c->flush_pending) {
		c->flush_pending = 1;
		event_active(c->flush_ev, EV_WRITE, 1);
	}
}

/* Plaintext queued this far is encrypted at once, while it is still in the
 * cache (a loop iteration may queue a megabyte); once WBUF_MAX of
 * ciphertext waits, it goes to the socket at once too. The rest waits for
 * the flush at the end of the loop iteration. */
static void
encrypt_early(struct kb_conn *c)
{
	if (encrypt_output(c) < 0) {
		c->write_failed = 1;
		return;
	}
	c->shrunk = 1;
	if (evbuffer_get_length(c->wbuf) >= WBUF_MAX && !c->writing &&
	    write_socket(c, c->wbuf) < 0)
		c->write_failed = 1;
}

static void
output_added(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	struct kb_conn *c = arg;

	if (!info->n_added)
		return;
	schedule_flush(c);
	if (c->ssl && c->state == ST_OPEN && !c->lingering && !c->write_failed &&
	    evbuffer_get_length(b) >= EARLY_MIN && evbuffer_get_length(c->wbuf) < WBUF_MAX)
		encrypt_early(c);
}

/* --- reading --- */

/* Decrypt (or read) want bytes (one read more at most) into c->in; *got
 * says how many. Returns 0, or KB_CONN_EOF/KB_CONN_ERROR. */
static int
read_batch(struct kb_conn *c, size_t want, size_t *got)
{
	while (*got < want) {
		struct evbuffer_iovec v;
		int n;

		if (evbuffer_reserve_space(c->in, READ_CHUNK, &v, 1) != 1) {
			c->sys_errno = ENOMEM;
			return KB_CONN_ERROR;
		}
		if (c->ssl) {
			/* Nothing left to decrypt: rbuf is used up, the socket
			 * was found empty (not at its end, nor failed) and
			 * OpenSSL holds no record, not even part of one, so
			 * SSL_read could only say WANT_READ. */
			if (c->roff == c->rlen && c->drained && !c->reof && !c->rerr &&
			    !SSL_has_pending(c->ssl))
				return 0;
			ERR_clear_error();
			n = SSL_read(c->ssl, v.iov_base, READ_CHUNK);
			if (n <= 0) {
				int e = SSL_get_error(c->ssl, n);
				if (e == SSL_ERROR_WANT_READ)
					return 0;
				if (e == SSL_ERROR_ZERO_RETURN ||
				    (e == SSL_ERROR_SYSCALL && !c->rerr && errno == 0))
					return KB_CONN_EOF;
				if (e == SSL_ERROR_SYSCALL)
					c->sys_errno = c->rerr ? c->rerr : errno;
				record_ssl_error(c);
				return KB_CONN_ERROR;
			}
		} else {
			n = (int)read(c->fd, v.iov_base, READ_CHUNK);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (n <= 0) {
				c->sys_errno = n < 0 ? errno : 0;
				return n < 0 ? KB_CONN_ERROR : KB_CONN_EOF;
			}
		}
		v.iov_len = (size_t)n;
		evbuffer_commit_space(c->in, &v, 1);
		*got += (size_t)n;
	}
	return 0;
}

/* Read in batches of READ_BATCH, each handed to on_read at once, so that
 * what was decrypted is still in the cache when it is used. */
static void
conn_read(struct kb_conn *c)
{
	size_t total = 0, got = 0, want = 0;
	int what = 0;

	enter(c);
	c->read_stopped = 0;
	/* A batch that got less than it wanted found the socket drained
	 * (records may end anywhere in a batch: more than wanted is not). */
	while (!what && got >= want && total < READ_BUDGET && c->state == ST_OPEN &&
	    !c->read_stopped && !c->lingering && !c->free_pending) {
		size_t w0 = c->ssl ? evbuffer_get_length(c->wbuf) : 0;

		want = READ_BUDGET - total < READ_BATCH ? READ_BUDGET - total : READ_BATCH;
		got = 0;
		what = read_batch(c, want, &got);
		total += got;
		if (c->ssl && evbuffer_get_length(c->wbuf) > w0)
			schedule_flush(c); /* e.g. a key update answer */
		if (got && c->cbs && c->cbs->on_read && c->state == ST_OPEN && !c->free_pending)
			c->cbs->on_read(c, c->arg);
	}
	if (c->ssl)
		rbuf_release(c);
	/* Records may wait in rbuf, where epoll cannot see them: come back
	 * for them, but after the loop has polled again (a zero timeout, not
	 * event_active, which would run us again before any other descriptor:
	 * one fast sender would starve the rest). */
	if (total >= READ_BUDGET && !what && c->state == ST_OPEN && !c->read_stopped &&
	    !c->lingering && !c->free_pending) {
		struct timeval now = { 0, 0 };
		evtimer_add(c->more, &now);
	}
	if (what && !c->free_pending)
		fail(c, what);
	leave(c);
}

/* --- connecting and handshake --- */

static void
handshake(struct kb_conn *c)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (write_socket(c, c->wbuf) < 0) {
		fail(c, KB_CONN_ERROR);
		return;
	}
	set_writing(c, evbuffer_get_length(c->wbuf) > 0);
	if (r == 1) {
		c->state = ST_OPEN;
		c->was_open = 1;
		evtimer_del(c->timer);
		enter(c);
		notify(c, KB_CONN_CONNECTED);
		if (leave(c) < 0)
			return;
		/* Data that came with the handshake's end is read next. */
		event_active(c->rev, EV_READ, 1);
		if (evbuffer_get_length(c->out) > 0)
			schedule_flush(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		rbuf_release(c);
		return;
	}
	if (e == SSL_ERROR_SYSCALL)
		c->sys_errno = c->rerr ? c->rerr : errno;
	record_ssl_error(c);
	fail(c, KB_CONN_ERROR);
}

static void
connected(struct kb_conn *c)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	set_writing(c, 0);
	if (e) {
		c->sys_errno = e;
		fail(c, KB_CONN_ERROR);
		return;
	}
	event_add(c->rev, NULL);
	if (c->ssl) {
		c->state = ST_HANDSHAKE;
		handshake(c);
		return;
	}
	c->state = ST_OPEN;
	c->was_open = 1;
	evtimer_del(c->timer);
	enter(c);
	notify(c, KB_CONN_CONNECTED);
	leave(c);
}

static void
readable(evutil_socket_t fd, short what, void *arg)
{
	struct kb_conn *c = arg;

	(void)fd;
	(void)what;
	c->drained = 0; /* epoll (or we, for records in rbuf) said read again */
	if (c->state == ST_HANDSHAKE)
		handshake(c);
	else if (c->state == ST_OPEN)
		conn_read(c);
}

static void
writable(evutil_socket_t fd, short what, void *arg)
{
	struct kb_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->state == ST_CONNECTING)
		connected(c);
	else if (c->state == ST_HANDSHAKE)
		handshake(c);
	else if (c->state == ST_OPEN)
		conn_flush(c);
}

static void
timed_out(evutil_socket_t fd, short what, void *arg)
{
	struct kb_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->lingering) {
		kb_conn_free(c);
		return;
	}
	fail(c, KB_CONN_TIMEOUT);
}

/* --- life cycle --- */

struct kb_conn *
kb_conn_new(struct event_base *base, int fd, SSL *ssl, int server)
{
	struct kb_conn *c = calloc(1, sizeof(*c));
	BIO *rbio = NULL, *wbio = NULL;

	if (!c)
		goto fail;
	c->base = base;
	c->fd = fd;
	c->ssl = ssl;
	/* Plain (no TLS) on the accepting side: open at once, no event. */
	c->state = server ? (ssl ? ST_HANDSHAKE : ST_OPEN) : ST_CONNECTING;
	c->was_open = c->state == ST_OPEN;
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->wbuf = evbuffer_new();
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, readable, c);
	c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, writable, c);
	c->flush_ev = event_new(base, -1, 0, flush_cb, c);
	c->timer = evtimer_new(base, timed_out, c);
	c->more = evtimer_new(base, readable, c);
	if (!c->in || !c->out || !c->wbuf || !c->rev || !c->wev || !c->flush_ev || !c->timer ||
	    !c->more ||
	    !evbuffer_add_cb(c->out, output_added, c))
		goto fail;
	if (ssl) {
		if ((rbio = bio_new(c, 1)) == NULL || (wbio = bio_new(c, 0)) == NULL)
			goto fail;
		SSL_set_bio(ssl, rbio, wbio);
		rbio = wbio = NULL;
		SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
		if (server)
			SSL_set_accept_state(ssl);
		else
			SSL_set_connect_state(ssl);
	}
	if (server)
		event_add(c->rev, NULL);
	else
		set_writing(c, 1);
	return c;
fail:
	BIO_free(rbio);
	BIO_free(wbio);
	if (c) {
		c->ssl = ssl;
		conn_destroy(c);
	} else {
		SSL_free(ssl);
		close(fd);
	}
	return NULL;
}

struct kb_conn *
kb_conn_dial(struct event_base *base, const char *hostport, SSL_CTX *ctx, unsigned mark,
    unsigned timeout_ms, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char host[256], portstr[8];
	struct kb_conn *c;
	uint16_t port;
	int rc, fd, one = 1;
	SSL *ssl;

	if (kb_hostport_parse(hostport, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "invalid address %s (not HOST:PORT)", hostport);
		return NULL;
	}
	snprintf(portstr, sizeof(portstr), "%u", port);
	if ((rc = getaddrinfo(host, portstr, &hints, &ai)) != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return NULL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
		freeaddrinfo(ai);
		return NULL;
	}
	if (mark)
		setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
		snprintf(err, errlen, "cannot connect to %s: %s", hostport, strerror(errno));
		close(fd);
		freeaddrinfo(ai);
		return NULL;
	}
	freeaddrinfo(ai);
	if ((ssl = SSL_new(ctx)) == NULL) {
		close(fd);
		snprintf(err, errlen, "cannot create a TLS connection");
		return NULL;
	}
	if ((c = kb_conn_new(base, fd, ssl, 0)) == NULL) {
		snprintf(err, errlen, "cannot create a TLS connection");
		return NULL;
	}
	kb_conn_set_timeout(c, timeout_ms);
	return c;
}

void
kb_conn_setcb(struct kb_conn *c, const struct kb_conn_cbs *cbs, void *arg)
{
	c->cbs = cbs;
	c->arg = arg;
}

void
kb_conn_set_timeout(struct kb_conn *c, unsigned ms)
{
	struct timeval tv = kb_ms_tv(ms);

	if (ms)
		evtimer_add(c->timer, &tv);
	else
		evtimer_del(c->timer);
}

void
kb_conn_set_lowat(struct kb_conn *c, size_t lowat)
{
	c->lowat = lowat;
}

void
kb_conn_read_enable(struct kb_conn *c, int on)
{
	if (c->state != ST_OPEN && c->state != ST_HANDSHAKE)
		return;
	if (on) {
		event_add(c->rev, NULL);
		event_active(c->rev, EV_READ, 1); /* rbuf may hold records */
	} else {
		c->read_stopped = 1;
		event_del(c->rev);
		event_del(c->more);
	}
}

struct evbuffer *
kb_conn_input(struct kb_conn *c)
{
	return c->in;
}

struct evbuffer *
kb_conn_output(struct kb_conn *c)
{
	return c->out;
}

struct event_base *
kb_conn_base(struct kb_conn *c)
{
	return c->base;
}

SSL *
kb_conn_ssl(struct kb_conn *c)
{
	return c->ssl;
}

const char *
kb_conn_error(struct kb_conn *c, char *buf, size_t len)
{
	long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
	const char *reason = c->ssl_err ? ERR_reason_error_string(c->ssl_err) : NULL;

	if (vr == X509_V_ERR_APPLICATION_VERIFICATION)
		snprintf(buf, len, "peer certificate has the wrong role");
	else if (vr != X509_V_OK)
		snprintf(buf, len, "peer certificate rejected: %s", X509_verify_cert_error_string(vr));
	else if (reason)
		snprintf(buf, len, "%s", reason);
	else if (c->sys_errno)
		snprintf(buf, len, "%s", strerror(c->sys_errno));
	else if (!c->was_open && c->ssl)
		snprintf(buf, len, "connection closed during the TLS handshake");
	else
		snprintf(buf, len, "connection closed");
	return buf;
}

enum kb_conn_failure
kb_conn_failure(struct kb_conn *c)
{
	if (c->ssl && SSL_get_verify_result(c->ssl) != X509_V_OK)
		return KB_CONN_FAIL_PEER_CERT;
	if (c->ssl_err) {
		/* OpenSSL reports a received alert as its code plus this offset. */
		if (ERR_GET_LIB(c->ssl_err) == ERR_LIB_SSL &&
		    ERR_GET_REASON(c->ssl_err) >= SSL_AD_REASON_OFFSET)
			return KB_CONN_FAIL_PEER_REFUSED;
		return KB_CONN_FAIL_TLS;
	}
	if (c->sys_errno)
		return KB_CONN_FAIL_NETWORK;
	if (!c->was_open && c->ssl)
		return KB_CONN_FAIL_HANDSHAKE_EOF;
	return KB_CONN_FAIL_NETWORK;
}

static void
conn_destroy(struct kb_conn *c)
{
	if (c->rev)
		event_free(c->rev);
	if (c->wev)
		event_free(c->wev);
	if (c->flush_ev)
		event_free(c->flush_ev);
	if (c->timer)
		event_free(c->timer);
	if (c->more)
		event_free(c->more);
	if (c->in)
		evbuffer_free(c->in);
	if (c->out)
		evbuffer_free(c->out);
	SSL_free(c->ssl); /* frees the BIOs, which point at wbuf and rbuf */
	if (c->wbuf)
		evbuffer_free(c->wbuf);
	free(c->rbuf);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

void
kb_conn_free(struct kb_conn *c)
{
	if (!c)
		return;
	c->cbs = NULL;
	if (c->depth > 0) {
		c->free_pending = 1;
		event_del(c->rev);
		event_del(c->more);
		event_del(c->wev);
		event_del(c->flush_ev);
		evtimer_del(c->timer);
		return;
	}
	conn_destroy(c);
}

void
kb_conn_close_flushed(struct kb_conn *c)
{
	if (c->state != ST_OPEN) {
		kb_conn_free(c);
		return;
	}
	c->cbs = NULL;
	c->lingering = 1;
	event_del(c->rev);
	event_del(c->more);
	kb_conn_set_timeout(c, LINGER_MS);
	/* Deferred, so that this is safe inside our own callbacks. */
	schedule_flush(c);
}

struct event_base *
kb_event_base_new(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (!cfg)
		return NULL;
	/* Safe here: no descriptor is ever dup()ed while it is watched. */
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}
