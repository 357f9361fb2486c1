/* The session state machine of PROTOCOL.md: streams, credit, heartbeats,
 * goaway. Any callback may free the session (session.h): while callbacks
 * run (depth > 0) kb_session_free only marks it, the outermost return frees.
 * A stream's local end is a socket (its data read into frames, written
 * from its buffer) or the owner's code (ST_CB: on_data, kb_stream_write);
 * both keep the peer's data in st->out and return credit as it drains. */
#include "session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "conn.h"
#include "log.h"
#include "util.h"

/* Stop reading local sockets while the session's output holds this much. */
#define SESSION_HWM (1024 * 1024)
#define SESSION_LWM (SESSION_HWM / 2)
/* Stop reading the peer's frames while our output holds this much: what we
 * send in answer to them (PONG, RESET, control answers) would otherwise grow
 * without bound for a peer that sends but never reads. Stream data stays
 * under SESSION_HWM, so only such a peer gets here. */
#define SESSION_OUT_MAX (4 * SESSION_HWM)
/* Return credit once this much of a stream's window was consumed. */
#define CREDIT_STEP(st) ((st)->rx_size / 4)
/* A stream whose local reader keeps up while the peer runs out of credit
 * gets its window doubled, up to this much; the grown part of all windows of
 * a session stays under SESSION_GROWN_MAX, which bounds memory. */
#define WINDOW_GROW_MAX (4u * 1024 * 1024)
#define SESSION_GROWN_MAX (32u * 1024 * 1024)
/* DATA payload per frame: header and payload fill one 16 KiB TLS record. */
#define DATA_CHUNK (16384 - KB_FRAME_HDR)
#define FRAME_SPAN (KB_FRAME_HDR + DATA_CHUNK)
/* Frames filled by one readv() of a local socket: READ_FRAMES, or once a
 * readv filled all it offered (a bulk sender), READ_FRAMES_BULK (256 KiB:
 * kbridged's system calls per MiB of an upload 24 -> 11, its CPU per byte
 * 5-20 % less). Each readv reserves that much of the session's output at
 * once, so a stream with little to say keeps the small size. */
#define READ_FRAMES 4
#define READ_FRAMES_BULK 16

enum {
	ST_OURS = 1 << 0,        /* we opened it */
	ST_ACCEPTED = 1 << 1,    /* data may flow */
	ST_LOCAL_EOF = 1 << 2,   /* local side sent EOF */
	ST_FIN_SENT = 1 << 3,
	ST_PEER_FIN = 1 << 4,
	ST_SHUT_WR = 1 << 5,     /* peer FIN delivered to the local socket */
	ST_BLOCKED = 1 << 6,     /* on the session's blocked list */
	ST_READING = 1 << 7,     /* read event armed */
	ST_WRITING = 1 << 8,     /* write event armed */
	ST_DIRTY = 1 << 9,       /* on the session's list of streams to flush */
	ST_EARLY = 1 << 10,      /* ours: data may flow before ACCEPT (early_data) */
	ST_CB = 1 << 11,         /* the local end is callbacks, not a socket */
	ST_WANT_WRITE = 1 << 12, /* ST_CB: kb_stream_write took less than offered */
	ST_BULK = 1 << 13,       /* the last readv of the local socket filled all it offered */
	ST_DRAINED = 1 << 14,    /* the last readv came back short: empty until the read event */
};

struct kb_stream {
	struct kb_session *s;
	uint32_t id;
	unsigned flags;
	/* The local endpoint is a plain socket: reads go straight into DATA
	 * frames, 16 KiB at a time (libevent 2.1's bufferevents read at most
	 * 4 KiB per call, which would cap throughput). */
	int fd;
	struct event *rev, *wev;
	struct evbuffer *out;           /* the peer's data on its way to fd */
	struct evbuffer_cb_entry *drain_cb;
	const struct kb_stream_cbs *cbs;
	void *arg;
	uint32_t tx_credit;  /* bytes we may still send */
	uint32_t rx_window;  /* bytes the peer may still send */
	uint32_t rx_consumed; /* delivered locally, not yet returned as credit */
	uint32_t rx_size;     /* the window we grant: KB_WINDOW_INIT, growing */
	uint32_t early_left;  /* ours, not yet accepted: bytes the peer still takes early */
	struct kb_stream *hnext;
	TAILQ_ENTRY(kb_stream) blocked;
	TAILQ_ENTRY(kb_stream) dirty;
};

TAILQ_HEAD(stream_list, kb_stream);

struct kb_session {
	struct kb_conn *conn;
	int failure;                /* enum kb_conn_failure once the connection failed, else -1 */
	int initiator;
	const struct kb_session_cbs *cbs;
	void *arg;

	int hello_sent, hello_rcvd;
	uint32_t peer_early;        /* early data the peer takes per stream (0: none) */
	size_t npeer;               /* streams the peer opened that are open */
	unsigned limits_hit;        /* limits already reported to on_limit */
	int goaway_sent, goaway_rcvd;
	char goaway_text[128]; /* the peer's goaway reason */
	int dead;           /* on_close delivered or pending */
	int depth;          /* nesting of our callbacks, for deferred free */
	int free_pending;
	int read_paused;    /* output over SESSION_OUT_MAX: the peer's frames wait */

	uint32_t next_id;   /* next stream id we open */
	size_t grown;       /* sum over streams of rx_size - KB_WINDOW_INIT */
	uint32_t max_peer_id;

	struct kb_stream **table;
	size_t tsize, nstreams;
	struct stream_list blocked;
	struct stream_list dirty;   /* got data in this read: write it out after */
	struct event *sweep;        /* runs flush_dirty outside a read (ST_CB streams) */

	struct event *timer;
	struct event *linger;
	unsigned ping_ms, dead_ms;
	uint64_t last_rx, last_tx;
	uint64_t ping_sent_us;

	struct kb_session_stats stats;
};

static void session_end(struct kb_session *s, uint8_t code, const char *err);
static void stream_finish(struct kb_stream *st, int reason, const char *text, int abortive);
static void stream_pump(struct kb_stream *st);
static void session_maybe_done(struct kb_session *s);
static void mark_dirty(struct kb_session *s, struct kb_stream *st);
static void cb_later(struct kb_stream *st);
static void flush_dirty(struct kb_session *s);

/* --- stream table: chained hash on the stream id --- */

static size_t
slot(const struct kb_session *s, uint32_t id)
{
	return (id * 2654435761u) & (s->tsize - 1);
}

static struct kb_stream *
table_get(const struct kb_session *s, uint32_t id)
{
	struct kb_stream *st;

	for (st = s->table[slot(s, id)]; st; st = st->hnext)
		if (st->id == id)
			return st;
	return NULL;
}

static int
table_put(struct kb_session *s, struct kb_stream *st)
{
	if (s->nstreams + 1 > s->tsize) {
		size_t nsize = s->tsize * 2, i;
		struct kb_stream **nt = calloc(nsize, sizeof(*nt)), **old = s->table;
		size_t osize = s->tsize;

		if (!nt)
			return -1;
		s->table = nt;
		s->tsize = nsize;
		for (i = 0; i < osize; i++) {
			struct kb_stream *e = old[i], *next;
			for (; e; e = next) {
				next = e->hnext;
				e->hnext = nt[slot(s, e->id)];
				nt[slot(s, e->id)] = e;
			}
		}
		free(old);
	}
	st->hnext = s->table[slot(s, st->id)];
	s->table[slot(s, st->id)] = st;
	s->nstreams++;
	return 0;
}

static void
table_del(struct kb_session *s, struct kb_stream *st)
{
	struct kb_stream **pp;

	for (pp = &s->table[slot(s, st->id)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == st) {
			*pp = st->hnext;
			s->nstreams--;
			return;
		}
	}
}

/* --- sending --- */

static struct evbuffer *
sess_out(struct kb_session *s)
{
	return kb_conn_output(s->conn);
}

/* Every frame goes into the output as one contiguous piece: the connection
 * encrypts each contiguous piece as one record, so a header added apart
 * from its payload would cost a record of its own. */
static uint8_t *
frame_begin(struct kb_session *s, struct evbuffer_iovec *v, uint8_t type, uint32_t stream,
    size_t len)
{
	if (!s->conn || len > KB_FRAME_MAX ||
	    evbuffer_reserve_space(sess_out(s), KB_FRAME_HDR + len, v, 1) != 1)
		return NULL;
	kb_frame_header_encode(v->iov_base, type, stream, (uint16_t)len);
	v->iov_len = KB_FRAME_HDR + len;
	return (uint8_t *)v->iov_base + KB_FRAME_HDR;
}

static int
frame_commit(struct kb_session *s, struct evbuffer_iovec *v)
{
	s->last_tx = kb_now_ms();
	return evbuffer_commit_space(sess_out(s), v, 1);
}

static int
send_frame(struct kb_session *s, uint8_t type, uint32_t stream, const void *p, size_t len)
{
	struct evbuffer_iovec v;
	uint8_t *payload = frame_begin(s, &v, type, stream, len);

	if (!payload)
		return -1;
	if (len)
		memcpy(payload, p, len);
	return frame_commit(s, &v);
}

static void
send_u32(struct kb_session *s, uint8_t type, uint32_t stream, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	send_frame(s, type, stream, b, 4);
}

static void
send_reset(struct kb_session *s, uint32_t id, uint8_t reason, const char *text)
{
	uint8_t b[1 + 200];
	size_t tl = text ? strlen(text) : 0;

	if (tl > sizeof(b) - 1)
		tl = sizeof(b) - 1;
	b[0] = reason;
	if (tl)
		memcpy(b + 1, text, tl);
	send_frame(s, KB_F_RESET, id, b, 1 + tl);
}

static void
send_goaway(struct kb_session *s, uint8_t code, const char *text)
{
	uint8_t b[5 + 400];
	size_t tl = text ? strlen(text) : 0;

	if (tl > sizeof(b) - 5)
		tl = sizeof(b) - 5;

	b[0] = s->max_peer_id >> 24;
	b[1] = s->max_peer_id >> 16;
	b[2] = s->max_peer_id >> 8;
	b[3] = s->max_peer_id;
	b[4] = code;
	if (tl)
		memcpy(b + 5, text, tl);
	send_frame(s, KB_F_GOAWAY, 0, b, 5 + tl);
}

static int
send_json(struct kb_session *s, uint8_t type, cJSON *obj)
{
	char *txt = cJSON_PrintUnformatted(obj);
	int rc = -1;

	cJSON_Delete(obj);
	if (!txt)
		return -1;
	if (strlen(txt) <= KB_FRAME_MAX)
		rc = send_frame(s, type, 0, txt, strlen(txt));
	else
		log_warnx("%s: message of %zu bytes is too large", __func__, strlen(txt));
	free(txt);
	return rc;
}

static void
close_abort(int fd)
{
	struct linger l = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

/* --- streams --- */

static struct kb_stream *
stream_new(struct kb_session *s, uint32_t id, unsigned flags)
{
	struct kb_stream *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->s = s;
	st->id = id;
	st->flags = flags;
	st->fd = -1;
	st->tx_credit = KB_WINDOW_INIT;
	st->rx_window = KB_WINDOW_INIT;
	st->rx_size = KB_WINDOW_INIT;
	if (table_put(s, st) < 0) {
		free(st);
		return NULL;
	}
	return st;
}

static void
stream_unblock(struct kb_stream *st)
{
	if (st->flags & ST_BLOCKED) {
		TAILQ_REMOVE(&st->s->blocked, st, blocked);
		st->flags &= ~ST_BLOCKED;
	}
}

static void
stream_detach(struct kb_stream *st, int abortive)
{
	if (st->flags & ST_CB) {
		if (st->drain_cb)
			evbuffer_remove_cb_entry(st->out, st->drain_cb);
		evbuffer_free(st->out);
		st->out = NULL;
		st->drain_cb = NULL;
		return;
	}
	if (st->fd < 0) {
		/* Early data that arrived before we accepted. */
		if (st->out)
			evbuffer_free(st->out);
		st->out = NULL;
		return;
	}
	event_free(st->rev);
	event_free(st->wev);
	if (st->drain_cb)
		evbuffer_remove_cb_entry(st->out, st->drain_cb);
	evbuffer_free(st->out);
	if (abortive)
		close_abort(st->fd);
	else
		close(st->fd);
	st->fd = -1;
}

/* Remove the stream and tell its owner; reason 0 means a clean end. */
static void
stream_finish(struct kb_stream *st, int reason, const char *text, int abortive)
{
	struct kb_session *s = st->s;

	stream_unblock(st);
	if (st->flags & ST_DIRTY)
		TAILQ_REMOVE(&s->dirty, st, dirty);
	s->grown -= st->rx_size - KB_WINDOW_INIT;
	table_del(s, st);
	if (!(st->flags & ST_OURS))
		s->npeer--;
	stream_detach(st, abortive);
	/* on_close may free the session: not before we are done with it. */
	s->depth++;
	if (st->cbs && st->cbs->on_close)
		st->cbs->on_close(st, reason, text, st->arg);
	free(st);
	session_maybe_done(s);
	s->depth--;
	if (s->depth == 0 && s->free_pending)
		kb_session_free(s);
}

/* Both ways finished: FIN sent, and the peer's FIN delivered (for ST_CB:
 * reported to the owner, who took all the data). */
static int
stream_done(const struct kb_stream *st)
{
	return (st->flags & ST_FIN_SENT) && (st->flags & ST_SHUT_WR) &&
	    (!(st->flags & ST_CB) || evbuffer_get_length(st->out) == 0);
}

static void
stream_check_done(struct kb_stream *st)
{
	if (stream_done(st))
		stream_finish(st, 0, NULL, 0);
}

void
kb_stream_reset(struct kb_stream *st, uint8_t reason, const char *text)
{
	if (st->s->conn && !st->s->dead)
		send_reset(st->s, st->id, reason, text);
	stream_finish(st, reason, text, 1);
}

static void
local_failed(struct kb_stream *st, const char *what, int err)
{
	char text[128];

	snprintf(text, sizeof(text), "local connection %s: %s", what, strerror(err));
	kb_stream_reset(st, KB_RST_CANCEL, text);
}

static void
set_reading(struct kb_stream *st, int on)
{
	if (on && !(st->flags & ST_READING)) {
		event_add(st->rev, NULL);
		st->flags |= ST_READING;
	} else if (!on && (st->flags & ST_READING)) {
		event_del(st->rev);
		st->flags &= ~ST_READING;
	}
}

static void
set_writing(struct kb_stream *st, int on)
{
	if (on && !(st->flags & ST_WRITING)) {
		event_add(st->wev, NULL);
		st->flags |= ST_WRITING;
	} else if (!on && (st->flags & ST_WRITING)) {
		event_del(st->wev);
		st->flags &= ~ST_WRITING;
	}
}

/* Write what the peer sent to the local socket; once all of it left and the
 * peer sent FIN, shut down our writing side. Returns -1 if st was freed. */
static int
stream_flush(struct kb_stream *st)
{
	while (evbuffer_get_length(st->out) > 0) {
		int n = evbuffer_write(st->out, st->fd);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			local_failed(st, "write failed", errno);
			return -1;
		}
	}
	if (evbuffer_get_length(st->out) > 0) {
		set_writing(st, 1);
		return 0;
	}
	set_writing(st, 0);
	if ((st->flags & ST_PEER_FIN) && !(st->flags & ST_SHUT_WR)) {
		st->flags |= ST_SHUT_WR;
		if ((st->flags & ST_FIN_SENT)) {
			/* Both ways done: close() sends the FIN, no shutdown() needed. */
			stream_finish(st, 0, NULL, 0);
			return -1;
		}
		shutdown(st->fd, SHUT_WR);
	}
	return 0;
}

static void
local_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct kb_stream *st = arg;

	(void)buf;
	if (info->n_deleted == 0)
		return;
	st->rx_consumed += info->n_deleted;
	if (st->rx_consumed >= CREDIT_STEP(st)) {
		struct kb_session *s = st->s;
		uint32_t inc = st->rx_consumed;

		if (evbuffer_get_length(buf) == 0 && st->rx_window < st->rx_size / 2 &&
		    st->rx_size < WINDOW_GROW_MAX && s->grown + st->rx_size <= SESSION_GROWN_MAX) {
			inc += st->rx_size;
			s->grown += st->rx_size;
			st->rx_size *= 2;
		}
		send_u32(s, KB_F_WINDOW, st->id, inc);
		st->rx_window += inc;
		st->rx_consumed = 0;
	}
	/* The owner took the last of it: the stream may be finished now. */
	if ((st->flags & ST_CB) && evbuffer_get_length(buf) == 0 && stream_done(st))
		cb_later(st);
}

/* What we may send now: the credit, and before the ACCEPT no more early
 * data than the peer takes. */
static uint32_t
send_room(const struct kb_stream *st)
{
	if (!(st->flags & ST_ACCEPTED) && st->early_left < st->tx_credit)
		return st->early_left;
	return st->tx_credit;
}

/* Read from the local socket straight into DATA frames, as far as credit
 * and the session's output allow, then send FIN at end of file. */
static void
stream_pump(struct kb_stream *st)
{
	struct kb_session *s = st->s;
	size_t budget = 256 * 1024; /* then let other streams have a turn */
	uint32_t room;

	if (st->flags & ST_CB) {
		/* The owner writes: tell it that it can go on. */
		if ((st->flags & ST_WANT_WRITE) && (st->flags & (ST_ACCEPTED | ST_EARLY)) &&
		    !(st->flags & ST_FIN_SENT) && send_room(st) > 0 &&
		    evbuffer_get_length(sess_out(s)) < SESSION_HWM) {
			st->flags &= ~ST_WANT_WRITE;
			if (st->cbs && st->cbs->on_writable)
				st->cbs->on_writable(st, st->arg);
		}
		return;
	}
	if (st->fd < 0 || !(st->flags & (ST_ACCEPTED | ST_EARLY)) ||
	    (st->flags & (ST_FIN_SENT | ST_LOCAL_EOF)))
		return;
	/* After a short readv the socket is empty: a pump from an ACCEPT or a
	 * WINDOW only arms the read event (level-triggered: data that came
	 * since fires it), instead of a readv that would say EAGAIN (one
	 * system call per new connection in kbridged). */
	while (!(st->flags & ST_DRAINED) && (room = send_room(st)) > 0 && budget > 0) {
		struct evbuffer_iovec v;
		struct iovec iov[READ_FRAMES_BULK];
		int maxfr = (st->flags & ST_BULK) ? READ_FRAMES_BULK : READ_FRAMES;
		size_t want = 0, left, off;
		int i, nfr;
		ssize_t n;
		uint8_t *base;

		if (evbuffer_get_length(sess_out(s)) >= SESSION_HWM) {
			if (!(st->flags & ST_BLOCKED)) {
				TAILQ_INSERT_TAIL(&s->blocked, st, blocked);
				st->flags |= ST_BLOCKED;
			}
			set_reading(st, 0);
			return;
		}
		/* One readv fills up to maxfr whole frames laid end to end. */
		nfr = (int)((room + DATA_CHUNK - 1) / DATA_CHUNK);
		if (nfr > maxfr)
			nfr = maxfr;
		if (evbuffer_reserve_space(sess_out(s), (ev_ssize_t)nfr * FRAME_SPAN, &v, 1) != 1) {
			kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
			return;
		}
		base = v.iov_base;
		for (i = 0; i < nfr; i++) {
			size_t k = room - want < DATA_CHUNK ? room - want : DATA_CHUNK;
			iov[i].iov_base = base + (size_t)i * FRAME_SPAN + KB_FRAME_HDR;
			iov[i].iov_len = k;
			want += k;
		}
		n = readv(st->fd, iov, nfr);
		if (n < 0) {
			if (errno == EAGAIN)
				st->flags |= ST_DRAINED;
			if (errno == EAGAIN || errno == EINTR)
				break;
			local_failed(st, "read failed", errno);
			return;
		}
		if (n == 0) {
			st->flags |= ST_LOCAL_EOF;
			send_frame(s, KB_F_FIN, st->id, NULL, 0);
			st->flags |= ST_FIN_SENT;
			set_reading(st, 0);
			stream_check_done(st);
			return;
		}
		for (i = 0, left = (size_t)n, off = 0; left > 0; i++) {
			size_t k = left < iov[i].iov_len ? left : iov[i].iov_len;
			kb_frame_header_encode(base + (size_t)i * FRAME_SPAN, KB_F_DATA, st->id, (uint16_t)k);
			off = (size_t)i * FRAME_SPAN + KB_FRAME_HDR + k;
			left -= k;
		}
		v.iov_len = off;
		evbuffer_commit_space(sess_out(s), &v, 1);
		s->last_tx = kb_now_ms();
		st->tx_credit -= n;
		if (!(st->flags & ST_ACCEPTED))
			st->early_left -= n;
		s->stats.bytes_out += n;
		budget -= (size_t)n < budget ? (size_t)n : budget;
		if ((size_t)n < want) {
			st->flags &= ~ST_BULK;
			st->flags |= ST_DRAINED;
			break; /* the socket is empty now */
		}
		st->flags |= ST_BULK;
	}
	/* Out of credit: a WINDOW frame (or the ACCEPT) will resume us. */
	set_reading(st, send_room(st) > 0);
}

static void
local_readable(evutil_socket_t fd, short what, void *arg)
{
	struct kb_stream *st = arg;

	(void)fd;
	(void)what;
	st->flags &= ~ST_DRAINED;
	stream_pump(st);
}

static void
local_writable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	stream_flush(arg);
}

static int
stream_attach(struct kb_stream *st, int fd)
{
	struct event_base *base = kb_conn_base(st->s->conn);

	st->fd = fd;
	if (!st->out)
		st->out = evbuffer_new();
	st->rev = event_new(base, fd, EV_READ | EV_PERSIST, local_readable, st);
	st->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, local_writable, st);
	if (st->out)
		st->drain_cb = evbuffer_add_cb(st->out, local_drained, st);
	if (!st->out || !st->rev || !st->wev || !st->drain_cb) {
		if (st->rev)
			event_free(st->rev);
		if (st->wev)
			event_free(st->wev);
		if (st->out)
			evbuffer_free(st->out);
		st->out = NULL;
		st->fd = -1;
		return -1;
	}
	return 0;
}

static void
stream_start(struct kb_stream *st, int read_now)
{
	st->flags |= ST_ACCEPTED;
	/* A stream read since the OPEN (early data: ST_READING) is left to
	 * its read event, level-triggered: a readv now would find nothing yet
	 * (EAGAIN), or take what the poll that brought this ACCEPT also
	 * found, whose read event would then say EAGAIN; either way one
	 * system call per new connection in kbridged. */
	if (read_now && !(st->flags & ST_READING))
		stream_pump(st);
	else
		set_reading(st, 1);
}

/* Our new stream st is set up: take its id, send the OPEN. With the
 * peer's early data, what our side says goes out at once, within the
 * initial window: the peer keeps it until its connect is done. */
static void
open_sent(struct kb_session *s, struct kb_stream *st, const struct kb_open *o,
    const struct kb_stream_cbs *cbs, void *arg)
{
	uint8_t buf[32];
	size_t n;

	s->next_id += 2;
	s->stats.streams_opened++;
	st->cbs = cbs;
	st->arg = arg;
	n = kb_open_encode(o, buf);
	send_frame(s, KB_F_OPEN, st->id, buf, n);
	if (s->peer_early) {
		st->flags |= ST_EARLY;
		st->early_left = s->peer_early;
	}
}

struct kb_stream *
kb_stream_open(struct kb_session *s, const struct kb_open *o, int fd,
    const struct kb_stream_cbs *cbs, void *arg)
{
	struct kb_stream *st;

	if (!kb_session_ready(s) || s->goaway_rcvd || s->next_id > 0x7ffffffe)
		goto fail;
	if ((st = stream_new(s, s->next_id, ST_OURS)) == NULL)
		goto fail;
	if (stream_attach(st, fd) < 0) {
		table_del(s, st);
		free(st);
		goto fail;
	}
	open_sent(s, st, o, cbs, arg);
	if (s->peer_early)
		set_reading(st, 1);	/* the local client's first bytes, now */
	return st;
fail:
	close_abort(fd);
	return NULL;
}

void
kb_stream_set_cbs(struct kb_stream *st, const struct kb_stream_cbs *cbs, void *arg)
{
	st->cbs = cbs;
	st->arg = arg;
}

int
kb_stream_accept(struct kb_stream *st, int fd, const struct kb_stream_cbs *cbs, void *arg)
{
	if (cbs)
		kb_stream_set_cbs(st, cbs, arg);
	if (st->fd >= 0 || (st->flags & ST_OURS)) {
		close_abort(fd);
		return -1;
	}
	if (stream_attach(st, fd) < 0) {
		close_abort(fd);
		kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
		return -1;
	}
	send_frame(st->s, KB_F_ACCEPT, st->id, NULL, 0);
	/* A socket we just connected has rarely anything to say yet (most
	 * protocols let the client speak first): wait for it, don't read. */
	stream_start(st, 0);
	/* The client's early data (and FIN) go to the socket now. */
	if (evbuffer_get_length(st->out) > 0 || (st->flags & ST_PEER_FIN))
		stream_flush(st);
	return 0;
}

uint32_t
kb_stream_id(const struct kb_stream *st)
{
	return st->id;
}

/* --- streams whose local end is callbacks --- */

/* Run flush_dirty for st soon, outside the caller's call (an owner's
 * kb_stream_shutdown or drain must not see on_close run inside it). */
static void
cb_later(struct kb_stream *st)
{
	mark_dirty(st->s, st);
	if (st->s->sweep)
		event_active(st->s->sweep, EV_TIMEOUT, 0);
}

/* Tell the owner what the peer sent (data, or its FIN once), then finish
 * the stream if both ways are done. Returns -1 if st was freed. */
static int
cb_deliver(struct kb_stream *st)
{
	struct kb_session *s = st->s;
	uint32_t id = st->id;
	int news = evbuffer_get_length(st->out) > 0 ||
	    ((st->flags & ST_PEER_FIN) && !(st->flags & ST_SHUT_WR));

	if (news && st->cbs && st->cbs->on_data) {
		if (st->flags & ST_PEER_FIN)
			st->flags |= ST_SHUT_WR;
		st->cbs->on_data(st, st->arg);
		if (table_get(s, id) != st)
			return -1; /* reset by the owner */
	}
	if (stream_done(st)) {
		stream_finish(st, 0, NULL, 0);
		return -1;
	}
	return 0;
}

static void
session_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct kb_session *s = arg;

	(void)fd;
	(void)what;
	s->depth++;
	flush_dirty(s);
	s->depth--;
	if (s->depth == 0 && s->free_pending)
		kb_session_free(s);
}

/* Make st a callback stream. credit: from now on what the owner takes is
 * credited back to the peer, and what it took before (early data, before
 * the ACCEPT: no credit goes back for a stream not accepted) counts too. */
static int
cb_attach(struct kb_stream *st, int credit)
{
	size_t have;

	if (!st->out && (st->out = evbuffer_new()) == NULL)
		return -1;
	st->flags |= ST_CB;
	if (!credit)
		return 0;
	if ((st->drain_cb = evbuffer_add_cb(st->out, local_drained, st)) == NULL)
		return -1;
	have = evbuffer_get_length(st->out);
	if (KB_WINDOW_INIT - st->rx_window > have)
		st->rx_consumed = KB_WINDOW_INIT - st->rx_window - (uint32_t)have;
	return 0;
}

struct kb_stream *
kb_stream_open_cb(struct kb_session *s, const struct kb_open *o,
    const struct kb_stream_cbs *cbs, void *arg)
{
	struct kb_stream *st;

	if (!kb_session_ready(s) || s->goaway_rcvd || s->next_id > 0x7ffffffe)
		return NULL;
	if ((st = stream_new(s, s->next_id, ST_OURS)) == NULL)
		return NULL;
	if (cb_attach(st, 1) < 0) {
		if (st->out)
			evbuffer_free(st->out);
		table_del(s, st);
		free(st);
		return NULL;
	}
	open_sent(s, st, o, cbs, arg);
	return st;
}

int
kb_stream_early_cb(struct kb_stream *st, const struct kb_stream_cbs *cbs, void *arg)
{
	kb_stream_set_cbs(st, cbs, arg);
	if (st->fd >= 0 || (st->flags & (ST_OURS | ST_CB | ST_ACCEPTED)))
		return -1;
	if (cb_attach(st, 0) < 0) {
		kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
		return -1;
	}
	if (evbuffer_get_length(st->out) > 0 || (st->flags & ST_PEER_FIN))
		cb_later(st);
	return 0;
}

int
kb_stream_accept_cb(struct kb_stream *st, const struct kb_stream_cbs *cbs, void *arg)
{
	if (cbs)
		kb_stream_set_cbs(st, cbs, arg);
	if (st->fd >= 0 || (st->flags & (ST_OURS | ST_ACCEPTED)) || st->drain_cb)
		return -1;
	if (cb_attach(st, 1) < 0) {
		kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
		return -1;
	}
	send_frame(st->s, KB_F_ACCEPT, st->id, NULL, 0);
	st->flags |= ST_ACCEPTED;
	/* Early data (and FIN) go to the owner after this call. */
	if (evbuffer_get_length(st->out) > 0 || (st->flags & ST_PEER_FIN))
		cb_later(st);
	return 0;
}

struct evbuffer *
kb_stream_input(struct kb_stream *st)
{
	if (!st->out)
		st->out = evbuffer_new();
	return st->out;
}

int
kb_stream_eof(const struct kb_stream *st)
{
	return (st->flags & ST_PEER_FIN) != 0;
}

size_t
kb_stream_write(struct kb_stream *st, struct evbuffer *buf)
{
	struct kb_session *s = st->s;
	size_t total = 0, len;
	uint32_t room;

	if (!(st->flags & ST_CB) || (st->flags & ST_FIN_SENT) || s->dead || !s->conn)
		return 0;
	while ((len = evbuffer_get_length(buf)) > 0) {
		struct evbuffer_iovec v;
		uint8_t *payload;

		room = (st->flags & (ST_ACCEPTED | ST_EARLY)) ? send_room(st) : 0;
		if (room == 0)
			break;
		if (evbuffer_get_length(sess_out(s)) >= SESSION_HWM) {
			if (!(st->flags & ST_BLOCKED)) {
				TAILQ_INSERT_TAIL(&s->blocked, st, blocked);
				st->flags |= ST_BLOCKED;
			}
			break;
		}
		if (len > room)
			len = room;
		if (len > DATA_CHUNK)
			len = DATA_CHUNK;
		if ((payload = frame_begin(s, &v, KB_F_DATA, st->id, len)) == NULL)
			break;
		evbuffer_remove(buf, payload, len);
		frame_commit(s, &v);
		st->tx_credit -= len;
		if (!(st->flags & ST_ACCEPTED))
			st->early_left -= len;
		s->stats.bytes_out += len;
		total += len;
	}
	if (evbuffer_get_length(buf) > 0)
		st->flags |= ST_WANT_WRITE;
	return total;
}

size_t
kb_stream_write_room(const struct kb_stream *st)
{
	if (!(st->flags & ST_CB) || (st->flags & ST_FIN_SENT) ||
	    !(st->flags & (ST_ACCEPTED | ST_EARLY)))
		return 0;
	return send_room(st);
}

void
kb_stream_shutdown(struct kb_stream *st)
{
	if (!(st->flags & ST_CB) || (st->flags & ST_FIN_SENT))
		return;
	st->flags |= ST_LOCAL_EOF | ST_FIN_SENT;
	st->flags &= ~ST_WANT_WRITE;
	if (st->s->conn && !st->s->dead)
		send_frame(st->s, KB_F_FIN, st->id, NULL, 0);
	if (stream_done(st))
		cb_later(st);
}


/* --- receiving --- */

static void
protocol_error(struct kb_session *s, const char *what)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "protocol error: %s", what);
	session_end(s, KB_GOAWAY_PROTOCOL, msg);
}

enum { LIMIT_STREAMS = 1 << 0, LIMIT_EARLY = 1 << 1 };

/* Tell the owner once per session and kind; the stats count every time. */
static void
limit_hit(struct kb_session *s, unsigned kind, const char *what)
{
	if (s->limits_hit & kind)
		return;
	s->limits_hit |= kind;
	if (s->cbs->on_limit)
		s->cbs->on_limit(s, what, s->arg);
	else
		log_info("session: the peer went over a limit: %s", what);
}

/* Find the stream a frame refers to. NULL and *ignore set when the stream is
 * already gone; NULL alone when the id was never opened (protocol error). */
static struct kb_stream *
frame_stream(struct kb_session *s, uint32_t id, int *ignore)
{
	struct kb_stream *st = table_get(s, id);
	int ours = (id & 1) == (s->initiator ? 1u : 0u);

	*ignore = 0;
	if (st)
		return st;
	if (ours ? id < s->next_id : id <= s->max_peer_id)
		*ignore = 1;
	return NULL;
}

static cJSON *
parse_json(struct kb_session *s, const struct kb_frame *f)
{
	cJSON *j = cJSON_ParseWithLength((const char *)f->payload, f->len);

	if (!j || !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		protocol_error(s, "payload is not a JSON object");
		return NULL;
	}
	return j;
}

static void
handle_hello(struct kb_session *s, const struct kb_frame *f)
{
	cJSON *j, *v;
	char reason[200] = "";

	if (s->hello_rcvd) {
		protocol_error(s, "second hello");
		return;
	}
	if ((j = parse_json(s, f)) == NULL)
		return;
	v = cJSON_GetObjectItemCaseSensitive(j, "proto");
	if (!cJSON_IsNumber(v) || v->valuedouble != KB_PROTO_VERSION) {
		snprintf(reason, sizeof(reason), "unsupported protocol version %s (this side speaks %d)",
		    cJSON_IsNumber(v) ? "given" : "missing", KB_PROTO_VERSION);
		if (cJSON_IsNumber(v))
			snprintf(reason, sizeof(reason),
			    "unsupported protocol version %g (this side speaks %d)", v->valuedouble,
			    KB_PROTO_VERSION);
		cJSON_Delete(j);
		session_end(s, KB_GOAWAY_REFUSED, reason);
		return;
	}
	s->hello_rcvd = 1;
	v = cJSON_GetObjectItemCaseSensitive(j, "early_data");
	/* true (older peers): as much as the initial window; a number: that much. */
	if (cJSON_IsTrue(v))
		s->peer_early = KB_WINDOW_INIT;
	else if (cJSON_IsNumber(v) && v->valuedouble >= 1)
		s->peer_early = v->valuedouble < KB_WINDOW_INIT ? (uint32_t)v->valuedouble :
		    KB_WINDOW_INIT;
	if (s->cbs->on_hello && s->cbs->on_hello(s, j, reason, sizeof(reason), s->arg) < 0) {
		cJSON_Delete(j);
		session_end(s, KB_GOAWAY_REFUSED, reason[0] ? reason : "refused");
		return;
	}
	cJSON_Delete(j);
}

static void
handle_control(struct kb_session *s, const struct kb_frame *f)
{
	cJSON *j, *t;

	if ((j = parse_json(s, f)) == NULL)
		return;
	t = cJSON_GetObjectItemCaseSensitive(j, "type");
	if (!cJSON_IsString(t) || !s->cbs->on_control ||
	    s->cbs->on_control(s, j, t->valuestring, s->arg) < 0) {
		char what[96];
		snprintf(what, sizeof(what), "bad control message%s%.40s",
		    cJSON_IsString(t) ? " " : "", cJSON_IsString(t) ? t->valuestring : "");
		cJSON_Delete(j);
		protocol_error(s, what);
		return;
	}
	cJSON_Delete(j);
}

static void
handle_open(struct kb_session *s, const struct kb_frame *f)
{
	struct kb_open o;
	struct kb_stream *st;
	const char *err;
	int theirs = (f->stream & 1) == (s->initiator ? 0u : 1u);

	if (!theirs || f->stream <= s->max_peer_id) {
		protocol_error(s, "bad stream id in open");
		return;
	}
	if (kb_open_decode(f->payload, f->len, &o, &err) < 0) {
		protocol_error(s, err);
		return;
	}
	s->max_peer_id = f->stream;
	if (s->goaway_sent || !s->cbs->on_open) {
		send_reset(s, f->stream, KB_RST_SESSION, "session is going away");
		return;
	}
	if (s->npeer >= KB_SESSION_MAX_STREAMS) {
		char text[80];
		snprintf(text, sizeof(text), "too many streams open on this session (limit %d)",
		    KB_SESSION_MAX_STREAMS);
		s->stats.streams_refused++;
		send_reset(s, f->stream, KB_RST_INTERNAL, text);
		limit_hit(s, LIMIT_STREAMS, text);
		return;
	}
	if ((st = stream_new(s, f->stream, 0)) == NULL) {
		send_reset(s, f->stream, KB_RST_INTERNAL, "out of memory");
		return;
	}
	s->npeer++;
	s->stats.streams_opened++;
	s->cbs->on_open(s, st, &o, s->arg);
}

/* Data for a stream is written once per read of the session, not per frame. */
static void
mark_dirty(struct kb_session *s, struct kb_stream *st)
{
	if (!(st->flags & ST_DIRTY)) {
		TAILQ_INSERT_TAIL(&s->dirty, st, dirty);
		st->flags |= ST_DIRTY;
	}
}

static void
flush_dirty(struct kb_session *s)
{
	struct kb_stream *st;

	while ((st = TAILQ_FIRST(&s->dirty)) != NULL && !s->dead) {
		TAILQ_REMOVE(&s->dirty, st, dirty);
		st->flags &= ~ST_DIRTY;
		if (st->flags & ST_CB)
			cb_deliver(st);
		else
			stream_flush(st);
	}
}

static void
handle_stream_frame(struct kb_session *s, const struct kb_frame *f, struct evbuffer *in)
{
	struct kb_stream *st;
	int ignore;

	st = frame_stream(s, f->stream, &ignore);
	if (!st) {
		if (ignore) {
			if (f->type == KB_F_DATA) /* others are drained by the caller */
				evbuffer_drain(in, f->len);
			return;
		}
		protocol_error(s, "frame for a stream that was never opened");
		return;
	}
	switch (f->type) {
	case KB_F_ACCEPT:
		if (!(st->flags & ST_OURS) || (st->flags & ST_ACCEPTED)) {
			protocol_error(s, "unexpected accept");
			return;
		}
		if (st->flags & ST_CB) {
			uint32_t id = st->id;

			st->flags |= ST_ACCEPTED;
			if (st->cbs && st->cbs->on_accept)
				st->cbs->on_accept(st, st->arg);
			if ((st = table_get(s, id)) != NULL)
				stream_pump(st); /* on_writable, if it waits */
			return;
		}
		/* Our local client has most likely written while we waited. */
		stream_start(st, 1);
		if (st->cbs && st->cbs->on_accept)
			st->cbs->on_accept(st, st->arg);
		return;
	case KB_F_DATA:
		/* Before our ACCEPT only on a stream the peer opened (early data,
		 * which our hello offers): kept until the stream is accepted. */
		if ((!(st->flags & ST_ACCEPTED) && (st->flags & ST_OURS)) ||
		    (st->flags & ST_PEER_FIN)) {
			protocol_error(s, "data on a stream that cannot take it");
			return;
		}
		if (f->len > st->rx_window) {
			protocol_error(s, "data beyond the flow-control window");
			return;
		}
		if (!(st->flags & (ST_ACCEPTED | ST_OURS)) &&
		    (st->out ? evbuffer_get_length(st->out) : 0) + f->len > KB_EARLY_DATA_MAX) {
			char text[80];
			/* Kept for a connect that may never finish: bounded, and
			 * a peer that ignores our hello loses only this stream. */
			snprintf(text, sizeof(text), "more than %d bytes of early data",
			    KB_EARLY_DATA_MAX);
			evbuffer_drain(in, f->len);
			s->stats.early_refused++;
			kb_stream_reset(st, KB_RST_PROTOCOL, text);
			limit_hit(s, LIMIT_EARLY, text);
			return;
		}
		if (!st->out && (st->out = evbuffer_new()) == NULL) {
			kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
			evbuffer_drain(in, f->len);
			return;
		}
		st->rx_window -= f->len;
		s->stats.bytes_in += f->len;
		evbuffer_remove_buffer(in, st->out, f->len);
		if (st->fd >= 0 || (st->flags & ST_CB))
			mark_dirty(s, st);
		return;
	case KB_F_WINDOW: {
		uint32_t inc = (uint32_t)f->payload[0] << 24 | (uint32_t)f->payload[1] << 16 |
		    (uint32_t)f->payload[2] << 8 | f->payload[3];
		if ((uint64_t)st->tx_credit + inc > KB_WINDOW_MAX) {
			protocol_error(s, "window overflow");
			return;
		}
		st->tx_credit += inc;
		stream_pump(st);
		return;
	}
	case KB_F_FIN:
		if ((!(st->flags & ST_ACCEPTED) && (st->flags & ST_OURS)) ||
		    (st->flags & ST_PEER_FIN)) {
			protocol_error(s, "unexpected fin");
			return;
		}
		st->flags |= ST_PEER_FIN;
		if (st->fd >= 0 || (st->flags & ST_CB))
			mark_dirty(s, st);
		return;
	case KB_F_RESET: {
		char text[256];
		size_t tl = (size_t)f->len - 1;
		if (tl > sizeof(text) - 1)
			tl = sizeof(text) - 1;
		memcpy(text, f->payload + 1, tl);
		text[tl] = '\0';
		stream_finish(st, f->payload[0], text, 1);
		return;
	}
	}
}

static void
handle_goaway(struct kb_session *s, const struct kb_frame *f)
{
	uint32_t last;
	uint8_t code;
	const char *text;
	size_t tl;
	char msg[300];

	if (kb_goaway_decode(f->payload, f->len, &last, &code, &text, &tl) < 0) {
		protocol_error(s, "bad goaway");
		return;
	}
	snprintf(msg, sizeof(msg), "%.*s", (int)tl, text);
	if (tl)
		snprintf(s->goaway_text, sizeof(s->goaway_text), "%.*s", (int)(tl < 120 ? tl : 120), text);
	else
		snprintf(s->goaway_text, sizeof(s->goaway_text), "no reason given");
	s->goaway_rcvd = 1;
	if (s->cbs->on_goaway)
		s->cbs->on_goaway(s, msg, s->arg);
	if (code != KB_GOAWAY_NORMAL) {
		char err[340];
		snprintf(err, sizeof(err), "peer ended the session: %s", msg[0] ? msg : "no reason");
		session_end(s, KB_GOAWAY_NORMAL, err);
	}
}

static void
handle_frame(struct kb_session *s, const struct kb_frame *f, struct evbuffer *in)
{
	if (!s->hello_rcvd && f->type != KB_F_HELLO && f->type != KB_F_GOAWAY) {
		protocol_error(s, "frame before hello");
		return;
	}
	switch (f->type) {
	case KB_F_HELLO:
		handle_hello(s, f);
		break;
	case KB_F_CONTROL:
		handle_control(s, f);
		break;
	case KB_F_OPEN:
		handle_open(s, f);
		break;
	case KB_F_PING:
		send_frame(s, KB_F_PONG, 0, f->payload, 8);
		break;
	case KB_F_PONG: {
		uint64_t t = 0;
		int i;
		for (i = 0; i < 8; i++)
			t = t << 8 | f->payload[i];
		if (t == s->ping_sent_us && t)
			s->stats.rtt_us = kb_now_ms() * 1000 - t;
		break;
	}
	case KB_F_GOAWAY:
		handle_goaway(s, f);
		break;
	default:
		handle_stream_frame(s, f, in);
		return;
	}
}

static void
session_read(struct kb_conn *c, void *arg)
{
	struct kb_session *s = arg;
	struct evbuffer *in = kb_conn_input(c);

	s->depth++;
	s->last_rx = kb_now_ms();
	while (!s->dead) {
		struct kb_frame f;
		const char *err;
		uint8_t *p;
		size_t have = evbuffer_get_length(in);

		if (have < KB_FRAME_HDR)
			break;
		if (evbuffer_get_length(sess_out(s)) >= SESSION_OUT_MAX) {
			/* session_write resumes once the peer has read. */
			s->read_paused = 1;
			kb_conn_read_enable(c, 0);
			break;
		}
		p = evbuffer_pullup(in, KB_FRAME_HDR);
		if (kb_frame_header_decode(p, &f, &err) < 0) {
			protocol_error(s, err);
			break;
		}
		if (have < KB_FRAME_HDR + (size_t)f.len)
			break;
		evbuffer_drain(in, KB_FRAME_HDR);
		if (f.type == KB_F_DATA) {
			/* The payload moves to the local socket without a copy. */
			f.payload = NULL;
			handle_frame(s, &f, in);
			continue;
		}
		f.payload = f.len ? evbuffer_pullup(in, f.len) : (const uint8_t *)"";
		if (kb_frame_payload_check(&f, &err) < 0) {
			protocol_error(s, err);
			break;
		}
		handle_frame(s, &f, in);
		if (!s->dead)
			evbuffer_drain(in, f.len);
	}
	flush_dirty(s);
	s->depth--;
	if (s->depth == 0 && s->free_pending)
		kb_session_free(s);
}

static void
session_write(struct kb_conn *c, void *arg)
{
	struct kb_session *s = arg;
	struct kb_stream *st;

	s->depth++;
	if (s->read_paused && !s->dead) {
		s->read_paused = 0;
		kb_conn_read_enable(c, 1);
		session_read(c, s); /* the frames that waited */
	}
	/* Output fell below the low-water mark: let blocked streams go on. */
	while (!s->dead && (st = TAILQ_FIRST(&s->blocked)) != NULL &&
	    evbuffer_get_length(sess_out(s)) < SESSION_HWM) {
		stream_unblock(st);
		stream_pump(st);
	}
	s->depth--;
	if (s->depth == 0 && s->free_pending)
		kb_session_free(s);
}

static void
session_event(struct kb_conn *c, int what, void *arg)
{
	struct kb_session *s = arg;
	char err[200], why[160];

	s->depth++;
	if (s->goaway_rcvd) {
		snprintf(err, sizeof(err), "peer went away: %s", s->goaway_text);
		session_end(s, KB_GOAWAY_NORMAL, err);
	} else if (what & KB_CONN_EOF) {
		session_end(s, KB_GOAWAY_NORMAL, s->goaway_sent ? NULL : "connection closed by peer");
	} else {
		s->failure = (int)kb_conn_failure(c);
		snprintf(err, sizeof(err), "connection failed: %s", kb_conn_error(c, why, sizeof(why)));
		session_end(s, KB_GOAWAY_NORMAL, err);
	}
	s->depth--;
	if (s->depth == 0 && s->free_pending)
		kb_session_free(s);
}

static const struct kb_conn_cbs conn_cbs = {
	.on_read = session_read,
	.on_drain = session_write,
	.on_event = session_event,
};

static void
session_tick(evutil_socket_t fd, short what, void *arg)
{
	struct kb_session *s = arg;
	uint64_t now = kb_now_ms();

	(void)fd;
	(void)what;
	s->depth++;
	if (now - s->last_rx >= s->dead_ms) {
		char err[80];
		snprintf(err, sizeof(err), "peer timed out (nothing received for %u ms)", s->dead_ms);
		session_end(s, KB_GOAWAY_TIMEOUT, err);
	} else if (s->hello_sent && s->hello_rcvd && now - s->last_tx >= s->ping_ms) {
		uint8_t b[8];
		uint64_t t = now * 1000;
		int i;
		for (i = 7; i >= 0; i--, t >>= 8)
			b[i] = t & 0xff;
		s->ping_sent_us = now * 1000;
		send_frame(s, KB_F_PING, 0, b, 8);
	}
	s->depth--;
	if (s->depth == 0 && s->free_pending)
		kb_session_free(s);
}

/* --- session lifetime --- */

/* A stream whose both FINs were exchanged only lacks delivery to its local
 * socket: that goes on without the session, for 10 s at most. */
struct orphan {
	int fd;
	struct evbuffer *out;
	struct event *ev;
};

static void
orphan_write(evutil_socket_t fd, short what, void *arg)
{
	struct orphan *o = arg;

	if (!(what & EV_TIMEOUT)) {
		while (evbuffer_get_length(o->out) > 0 && evbuffer_write(o->out, fd) > 0)
			;
		if (evbuffer_get_length(o->out) > 0 && (errno == EAGAIN || errno == EINTR))
			return;
	}
	event_free(o->ev);
	evbuffer_free(o->out);
	close(o->fd);
	free(o);
}

static int
stream_orphan(struct kb_stream *st)
{
	struct timeval tv = { 10, 0 };
	struct orphan *o;

	if ((st->flags & (ST_FIN_SENT | ST_PEER_FIN)) != (ST_FIN_SENT | ST_PEER_FIN) || st->fd < 0)
		return -1;
	if ((o = calloc(1, sizeof(*o))) == NULL)
		return -1;
	o->ev = event_new(kb_conn_base(st->s->conn), st->fd, EV_WRITE | EV_PERSIST, orphan_write, o);
	if (!o->ev) {
		free(o);
		return -1;
	}
	o->fd = st->fd;
	o->out = st->out;
	evbuffer_remove_cb_entry(st->out, st->drain_cb);
	event_free(st->rev);
	event_free(st->wev);
	st->fd = -1;
	st->out = NULL;
	st->drain_cb = NULL;
	event_add(o->ev, &tv);
	return 0;
}

static void
reset_all_streams(struct kb_session *s, const char *why)
{
	size_t i;

	for (i = 0; i < s->tsize; i++) {
		while (s->table[i]) {
			struct kb_stream *st = s->table[i];
			if ((st->flags & ST_CB) && stream_done(st))
				stream_finish(st, 0, NULL, 0);
			else if (stream_orphan(st) == 0)
				stream_finish(st, 0, NULL, 0);
			else
				stream_finish(st, KB_RST_SESSION, why, 1);
		}
	}
}

/* End the session: tell the peer (code), reset the streams and report err
 * (NULL for a clean end) to the owner. */
static void
session_end(struct kb_session *s, uint8_t code, const char *err)
{
	if (s->dead)
		return;
	s->dead = 1;
	if (err)
		log_debug("%s: %s", __func__, err);
	if (s->conn && (code != KB_GOAWAY_NORMAL || !s->goaway_sent))
		send_goaway(s, code, err ? err : "");
	evtimer_del(s->timer);
	if (s->linger)
		evtimer_del(s->linger);
	s->depth++;
	reset_all_streams(s, err ? err : "session closed");
	s->depth--;
	if (s->cbs->on_close)
		s->cbs->on_close(s, err, s->arg);
}

static void
session_maybe_done(struct kb_session *s)
{
	if (s->goaway_sent && !s->dead && s->nstreams == 0)
		session_end(s, KB_GOAWAY_NORMAL, NULL);
}

static void
linger_expired(evutil_socket_t fd, short what, void *arg)
{
	struct kb_session *s = arg;

	(void)fd;
	(void)what;
	s->depth++;
	session_end(s, KB_GOAWAY_NORMAL, NULL);
	s->depth--;
	if (s->depth == 0 && s->free_pending)
		kb_session_free(s);
}

struct kb_session *
kb_session_new(struct kb_conn *conn, int initiator, const struct kb_session_cbs *cbs, void *arg)
{
	struct kb_session *s = calloc(1, sizeof(*s));
	struct timeval tv = { 0, 250000 };

	if (!s)
		goto fail;
	s->tsize = 64;
	if ((s->table = calloc(s->tsize, sizeof(*s->table))) == NULL)
		goto fail;
	s->timer = event_new(kb_conn_base(conn), -1, EV_PERSIST, session_tick, s);
	s->sweep = event_new(kb_conn_base(conn), -1, 0, session_sweep, s);
	if (!s->timer || !s->sweep)
		goto fail;
	s->conn = conn;
	s->failure = -1;
	s->initiator = initiator;
	s->cbs = cbs;
	s->arg = arg;
	s->next_id = initiator ? 1 : 2;
	s->ping_ms = 1000;
	s->dead_ms = 4000;
	s->last_rx = s->last_tx = kb_now_ms();
	TAILQ_INIT(&s->blocked);
	TAILQ_INIT(&s->dirty);
	kb_conn_setcb(conn, &conn_cbs, s);
	kb_conn_set_lowat(conn, SESSION_LWM);
	evtimer_add(s->timer, &tv);
	return s;
fail:
	if (s) {
		if (s->timer)
			event_free(s->timer);
		if (s->sweep)
			event_free(s->sweep);
		free(s->table);
		free(s);
	}
	kb_conn_free(conn);
	return NULL;
}

void
kb_session_set_heartbeat(struct kb_session *s, unsigned interval_ms, unsigned dead_ms)
{
	struct timeval tv;
	unsigned tick = interval_ms / 4 ? interval_ms / 4 : 1;

	s->ping_ms = interval_ms;
	s->dead_ms = dead_ms;
	tv = kb_ms_tv(tick);
	evtimer_add(s->timer, &tv);
}

void
kb_session_free(struct kb_session *s)
{
	if (!s)
		return;
	if (s->depth > 0) {
		s->free_pending = 1;
		return;
	}
	s->dead = 1;
	s->depth++;
	reset_all_streams(s, "session closed");
	s->depth--;
	if (s->conn)
		kb_conn_close_flushed(s->conn);
	event_free(s->timer);
	event_free(s->sweep);
	if (s->linger)
		event_free(s->linger);
	free(s->table);
	free(s);
}

int
kb_session_send_hello(struct kb_session *s, cJSON *hello)
{
	if (s->hello_sent || s->dead) {
		cJSON_Delete(hello);
		return -1;
	}
	cJSON_AddNumberToObject(hello, "proto", KB_PROTO_VERSION);
	cJSON_AddNumberToObject(hello, "early_data", KB_EARLY_DATA_MAX);
	s->hello_sent = 1;
	return send_json(s, KB_F_HELLO, hello);
}

int
kb_session_send_control(struct kb_session *s, cJSON *msg)
{
	if (!kb_session_ready(s) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "type"))) {
		cJSON_Delete(msg);
		return -1;
	}
	return send_json(s, KB_F_CONTROL, msg);
}

void
kb_session_goaway(struct kb_session *s, const char *reason, unsigned linger_ms)
{
	struct timeval tv = kb_ms_tv(linger_ms);

	if (s->dead || s->goaway_sent)
		return;
	send_goaway(s, KB_GOAWAY_NORMAL, reason);
	s->goaway_sent = 1;
	if (s->nstreams == 0) {
		session_end(s, KB_GOAWAY_NORMAL, NULL);
		return;
	}
	s->linger = evtimer_new(kb_conn_base(s->conn), linger_expired, s);
	if (s->linger)
		evtimer_add(s->linger, &tv);
}

int
kb_session_failure(const struct kb_session *s)
{
	return s->failure;
}

int
kb_session_ready(const struct kb_session *s)
{
	return s->hello_sent && s->hello_rcvd && !s->dead && !s->goaway_sent;
}

void
kb_session_stats(const struct kb_session *s, struct kb_session_stats *st)
{
	*st = s->stats;
	st->streams = s->nstreams;
}
