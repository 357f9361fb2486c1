/* Asynchronous TCP connect with a timeout, and what a failed connect means
 * for a stream (reset reason and text). */
#ifndef KB_DIAL_H
#define KB_DIAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct kb_dial;

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

#endif
