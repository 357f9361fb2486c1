/* Asynchronous TCP connect with a timeout, what a failed connect means for
 * a stream (reset reason and text), and dialing for a stream the peer
 * opened: accept it with the socket, or reset it. */
#ifndef KB_DIAL_H
#define KB_DIAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct kb_dial;
struct kb_stream;

/* fd >= 0 (connected, non-blocking, TCP_NODELAY; the callee owns it) with
 * err 0, or fd -1 with an errno value (ETIMEDOUT after the timeout). */
typedef void (*kb_dial_cb)(int fd, int err, void *arg);

/* Start connecting; cb runs later (never before this returns). NULL with
 * errno set if not even the attempt could start. */
struct kb_dial *kb_dial_start(struct event_base *base, const struct sockaddr *sa, socklen_t salen,
    unsigned timeout_ms, kb_dial_cb cb, void *arg);
/* Give up: cb is not called, the socket is closed. */
void kb_dial_cancel(struct kb_dial *d);
/* The KB_RST_* reason for a failed connect's errno. */
uint8_t kb_dial_reset_reason(int err);

/* How kb_stream_dial ended, told exactly once, with the stream's callbacks
 * cleared (done may set its own, e.g. to log the stream's end):
 *   err 0:  connected; st is accepted with the socket right after.
 *   err >0: the connect's errno; st is reset right after with
 *           kb_dial_reset_reason(err) and text (textlen bytes, preset to
 *           strerror(err)), which done may rewrite.
 *   err <0: the peer reset st first (text: its reason, may be NULL); the
 *           connect is abandoned. */
typedef void (*kb_stream_dial_fn)(void *arg, struct kb_stream *st, int err, char *text,
    size_t textlen);
/* Connect to sa for st, a stream the peer opened that is not yet accepted
 * (its callbacks are ours until done). 0 once done is (or will be) told;
 * -1 if out of memory: st was reset (KB_RST_INTERNAL) and done is not told. */
int kb_stream_dial(struct event_base *base, struct kb_stream *st, const struct sockaddr *sa,
    socklen_t salen, unsigned timeout_ms, kb_stream_dial_fn done, void *arg);
/* kb_stream_dial, trying sa2 (unless NULL) when sa fails other than by
 * timing out: done is told of the last try. */
int kb_stream_dial2(struct event_base *base, struct kb_stream *st, const struct sockaddr *sa,
    socklen_t salen, const struct sockaddr *sa2, socklen_t salen2, unsigned timeout_ms,
    kb_stream_dial_fn done, void *arg);

#endif
