/* A session: one authenticated TLS connection carrying many streams with
 * per-stream credit flow control, heartbeats and goaway (see PROTOCOL.md).
 * Both sides use the same code; the initiator (TLS client) opens odd stream
 * ids, the other side even ones.
 *
 * Rule for users: any callback (session or stream) may free the session
 * with kb_session_free(); the session defers the free until its outermost
 * callback returns. After a call that can run callbacks, the caller must
 * not touch a session (or its streams) it did not know to be still alive. */
#ifndef KB_SESSION_H
#define KB_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Streams the peer may have open at once on a session; an OPEN beyond it
 * is answered with RESET reason 8 (KB_RST_INTERNAL). */
#define KB_SESSION_MAX_STREAMS 256
/* Early data (DATA before our ACCEPT) kept per stream, announced in our
 * hello; a stream whose peer sends more is reset with reason 6. Together:
 * at most 256 x 64 KiB (16 MiB) of early data per session. */
#define KB_EARLY_DATA_MAX (64 * 1024)

struct kb_conn;
struct cJSON;
struct kb_session;
struct kb_stream;

struct kb_session_cbs {
	/* The peer's hello (a JSON object, version already checked). Return 0 to
	 * go on, -1 to refuse the session (reason goes into the goaway). */
	int (*on_hello)(struct kb_session *s, const struct cJSON *hello, char *reason,
	    size_t reasonlen, void *arg);
	/* The peer asks to open a stream: answer now or later with
	 * kb_stream_accept() or kb_stream_reset(). May be NULL (refuse all). */
	void (*on_open)(struct kb_session *s, struct kb_stream *st, const struct kb_open *o, void *arg);
	/* A control message; type is its "type" string. Return -1 if it is
	 * malformed or unknown: that is a protocol error and ends the session. */
	int (*on_control)(struct kb_session *s, const struct cJSON *msg, const char *type, void *arg);
	/* The peer sent goaway: open no new streams. May be NULL. */
	void (*on_goaway)(struct kb_session *s, const char *reason, void *arg);
	/* The session is over (err is NULL after a clean goaway). Every stream has
	 * been closed already. The callee must call kb_session_free(), now or later. */
	void (*on_close)(struct kb_session *s, const char *err, void *arg);
	/* The peer hit one of the limits above for the first time on this
	 * session (what says which, for one log line); later hits are only
	 * counted in kb_session_stats. May be NULL. */
	void (*on_limit)(struct kb_session *s, const char *what, void *arg);
};

struct kb_stream_cbs {
	/* A stream we opened was accepted; data starts to flow. May be NULL. */
	void (*on_accept)(struct kb_stream *st, void *arg);
	/* The stream is finished: reason 0 after a clean close (FIN both ways),
	 * else a KB_RST_* code and the peer's text (a refused stream: why the
	 * peer refused it). The stream is freed after. */
	void (*on_close)(struct kb_stream *st, int reason, const char *text, void *arg);
	/* Only for streams without a descriptor (kb_stream_open_cb,
	 * kb_stream_accept_cb): */
	/* The peer's data, or its FIN (kb_stream_eof), arrived: take what you
	 * can from kb_stream_input(). What you leave there holds the peer back
	 * through the stream's window (memory stays bounded by it); take the
	 * rest later, from any callback or event. May be NULL. */
	void (*on_data)(struct kb_stream *st, void *arg);
	/* kb_stream_write() took less than it was offered, and can take more
	 * now (credit came back, or the session's output drained). */
	void (*on_writable)(struct kb_stream *st, void *arg);
};

/* Take ownership of conn (connected, TLS or not) and run the protocol on
 * it. initiator: this side is the TLS client. */
struct kb_session *kb_session_new(struct kb_conn *conn, int initiator,
    const struct kb_session_cbs *cbs, void *arg);
/* Close every stream (their on_close runs), flush and free the connection
 * and the session. Safe to call from any callback of this session. */
void kb_session_free(struct kb_session *s);
/* Heartbeat: ping after interval_ms without sending, declare the peer dead
 * after dead_ms without receiving anything. Defaults: 1000 and 4000. */
void kb_session_set_heartbeat(struct kb_session *s, unsigned interval_ms, unsigned dead_ms);

/* Send our hello; "proto" is added. The initiator sends first; the other side
 * answers from on_hello. Takes ownership of hello. */
int kb_session_send_hello(struct kb_session *s, struct cJSON *hello);
/* Send a control message (must have a "type" string). Takes ownership. */
int kb_session_send_control(struct kb_session *s, struct cJSON *msg);
/* Graceful goaway: tell the peer, accept no new streams, close the session
 * once every stream has finished (or after linger_ms at most). */
void kb_session_goaway(struct kb_session *s, const char *reason, unsigned linger_ms);
/* How the connection failed (enum kb_conn_failure), or -1 if it did not
 * fail (yet): for on_close's caller to word the error. */
int kb_session_failure(const struct kb_session *s);
/* Both hellos exchanged and not going away. */
int kb_session_ready(const struct kb_session *s);

struct kb_session_stats {
	size_t streams;
	uint64_t bytes_in, bytes_out; /* stream payload bytes */
	uint64_t streams_opened;
	uint64_t rtt_us;              /* last measured ping round trip */
	uint64_t streams_refused;     /* peer's opens over KB_SESSION_MAX_STREAMS */
	uint64_t early_refused;       /* peer's streams reset for early data over the limit */
};
void kb_session_stats(const struct kb_session *s, struct kb_session_stats *st);

/* Open a stream carrying the data of fd (a connected non-blocking socket;
 * ownership passes to the stream, also on failure). Nothing is read from fd until
 * the peer accepts. NULL if the session cannot open streams now. */
struct kb_stream *kb_stream_open(struct kb_session *s, const struct kb_open *o, int fd,
    const struct kb_stream_cbs *cbs, void *arg);
/* Set the callbacks of a stream the peer opened (call from on_open when the
 * answer comes later, so a reset in between is reported). */
void kb_stream_set_cbs(struct kb_stream *st, const struct kb_stream_cbs *cbs, void *arg);
/* Accept a stream the peer opened and attach fd, a connected non-blocking
 * socket, to it (ownership passes, also on failure). cbs NULL keeps those given to
 * kb_stream_set_cbs. */
int kb_stream_accept(struct kb_stream *st, int fd, const struct kb_stream_cbs *cbs, void *arg);
/* Abort the stream: send RESET, close the local side abortively, free it.
 * on_close is called with the reason. */
void kb_stream_reset(struct kb_stream *st, uint8_t reason, const char *text);
uint32_t kb_stream_id(const struct kb_stream *st);

/* Streams whose local end is the caller's code instead of a descriptor
 * (a proxy that joins a stream to its own connection, or two streams
 * joined): the peer's data is handed over with on_data, ours goes out with
 * kb_stream_write, a refusal comes to on_close with its reason. Callbacks
 * run from the session's events, never inside these calls (but
 * kb_stream_reset's on_close, as for any stream). */
struct evbuffer;
/* Open a stream; before the ACCEPT, kb_stream_write sends as much early
 * data as the peer takes. NULL if the session cannot open streams now. */
struct kb_stream *kb_stream_open_cb(struct kb_session *s, const struct kb_open *o,
    const struct kb_stream_cbs *cbs, void *arg);
/* Accept a stream the peer opened; its early data comes to on_data. -1 if
 * it cannot be (already accepted, ours, or out of memory: then reset). */
int kb_stream_accept_cb(struct kb_stream *st, const struct kb_stream_cbs *cbs, void *arg);
/* Before accepting a stream the peer opened: its early data (what the
 * peer sends before our ACCEPT, at most KB_EARLY_DATA_MAX held) comes to
 * on_data from now on, to be passed on at once; kb_stream_accept_cb
 * accepts it later, kb_stream_reset refuses it. No credit goes back until
 * the ACCEPT. -1 if it cannot be (then reset if out of memory). */
int kb_stream_early_cb(struct kb_stream *st, const struct kb_stream_cbs *cbs, void *arg);
/* The peer's data not taken yet; draining it returns credit to the peer.
 * Also usable before kb_stream_accept_cb (early data). */
struct evbuffer *kb_stream_input(struct kb_stream *st);
/* The peer sent FIN: nothing comes after what kb_stream_input holds. */
int kb_stream_eof(const struct kb_stream *st);
/* Send from buf as much as the stream's credit and the session's output
 * allow (removed from buf); returns the bytes taken. When it took less
 * than all, on_writable is called once more can go. */
size_t kb_stream_write(struct kb_stream *st, struct evbuffer *buf);
/* What kb_stream_write may take now (the credit). */
size_t kb_stream_write_room(const struct kb_stream *st);
/* Send FIN (half-close). The stream ends cleanly (on_close, reason 0)
 * once the peer's FIN came too and kb_stream_input was emptied. */
void kb_stream_shutdown(struct kb_stream *st);

#endif
