/* A TLS connection on a non-blocking socket, driven by the event loop, with
 * plaintext evbuffers for input and output.
 *
 * Why not bufferevent_openssl: in libevent 2.1 it decrypts one record per
 * wakeup (two read() calls each) and writes one record per write(). Here
 * one read() takes up to 256 KiB of ciphertext (many records), decrypted
 * 128 KiB at a time, each batch handed to on_read at once; output is
 * encrypted as soon as 64 KiB wait (while still in the cache) and goes out
 * in writes of up to 256 KiB, the rest at the end of the loop iteration.
 * With ssl NULL the connection is plain TCP (tests). */
#ifndef KB_CONN_H
#define KB_CONN_H

#include <stddef.h>
#include <openssl/ssl.h>

struct event_base;
struct evbuffer;
struct kb_conn;

enum kb_conn_event {
	KB_CONN_CONNECTED = 1, /* TCP connected and TLS handshake done */
	KB_CONN_EOF = 2,       /* the peer closed the connection */
	KB_CONN_ERROR = 4,     /* see kb_conn_error() */
	KB_CONN_TIMEOUT = 8,   /* the connect/handshake timeout expired */
};

struct kb_conn_cbs {
	void (*on_read)(struct kb_conn *c, void *arg);   /* input has new data */
	void (*on_drain)(struct kb_conn *c, void *arg);  /* output fell to the low mark */
	void (*on_event)(struct kb_conn *c, int what, void *arg);
};

/* Take fd (connected, or with a non-blocking connect() in progress) and ssl
 * (ownership of both passes, also on failure). server: accept the handshake
 * instead of starting it. on_event(KB_CONN_CONNECTED) reports readiness. */
struct kb_conn *kb_conn_new(struct event_base *base, int fd, SSL *ssl, int server);
/* Connect to "HOST:PORT" over TLS as a client; mark (SO_MARK) the socket
 * unless mark is 0. The connect/handshake timeout is set to timeout_ms.
 * NULL with a one-line err if the attempt cannot even start. */
struct kb_conn *kb_conn_dial(struct event_base *base, const char *hostport, SSL_CTX *ctx,
    unsigned mark, unsigned timeout_ms, char *err, size_t errlen);
void kb_conn_setcb(struct kb_conn *c, const struct kb_conn_cbs *cbs, void *arg);
/* Fail with KB_CONN_TIMEOUT unless connected within ms (0: no limit). */
void kb_conn_set_timeout(struct kb_conn *c, unsigned ms);
/* on_drain fires when output falls to at most lowat bytes after a write. */
void kb_conn_set_lowat(struct kb_conn *c, size_t lowat);
/* Stop (0) or resume (1) reading from the socket. */
void kb_conn_read_enable(struct kb_conn *c, int on);
struct evbuffer *kb_conn_input(struct kb_conn *c);
struct evbuffer *kb_conn_output(struct kb_conn *c);
struct event_base *kb_conn_base(struct kb_conn *c);
SSL *kb_conn_ssl(struct kb_conn *c);
/* Why the connection failed, in one line ("peer certificate rejected: ...",
 * "tlsv1 alert unknown ca", "Connection refused", ...). */
const char *kb_conn_error(struct kb_conn *c, char *buf, size_t len);

/* What kind of failure that was, for a message in the caller's words. */
enum kb_conn_failure {
	KB_CONN_FAIL_NETWORK,       /* the connect failed, or the connection dropped */
	KB_CONN_FAIL_PEER_CERT,     /* we did not accept the peer's certificate */
	KB_CONN_FAIL_PEER_REFUSED,  /* the peer sent a TLS alert: it refused us */
	KB_CONN_FAIL_HANDSHAKE_EOF, /* closed during the handshake, no alert */
	KB_CONN_FAIL_TLS,           /* another TLS error */
};
enum kb_conn_failure kb_conn_failure(struct kb_conn *c);
/* Close now: no callbacks, nothing more is sent. */
void kb_conn_free(struct kb_conn *c);
/* Send what is queued (for at most 2 s), then free. No more callbacks. */
void kb_conn_close_flushed(struct kb_conn *c);

/* The event loop, set up for many short connections: changes to watched
 * descriptors are batched per loop iteration (fewer epoll_ctl calls). */
struct event_base *kb_event_base_new(void);

#endif
