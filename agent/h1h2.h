/* HTTP/1.1 to HTTP/2 cleartext, per request, for the preview listener
 * (agent/preview.c): one translator per upstream connection of the preview
 * proxy. It reads the HTTP/1.1 requests the proxy sends on a socket pair and
 * sends each on to the workload's service (the sidecar, which routes it to
 * the intercept's owner) either as it came (HTTP/1.1) or, when the owner's
 * local app speaks only h2c, as an HTTP/2 stream over an nghttp2 client
 * session; the answer comes back as HTTP/1.1 (chunked when its length is
 * unknown, HTTP/2 trailers as chunked trailers). gRPC-web over HTTP/1.1
 * becomes gRPC over HTTP/2, its trailers a trailer frame (0x80) at the end
 * of the body (grpc/doc/PROTOCOL-WEB.md); to an HTTP/1.1 app it passes
 * untouched. gRPC-web text (application/grpc-web-text[+fmt]) likewise,
 * its request body decoded from base64 (padded per chunk or not, split
 * anywhere), its answer, trailer frame too, encoded (padded per chunk).
 *
 * Which one the owner's app speaks is learnt, not guessed: a request goes
 * out as the preview last learnt (HTTP/1.1 at first); when the sidecar
 * says the app did not speak that protocol (H1H2_PROTO_HEADER below: an
 * h2c-only app answers HTTP/1.1 with HTTP/2 frames, an HTTP/1 app rejects
 * the preface), the request, kept whole (head and at most H1H2_BODY_MAX of
 * body) until its answer began, goes again in the other protocol on a new
 * connection. Neither app has acted on the request it could not read, so
 * the replay is safe. Once the preview learnt h2c, a body over that bound
 * is streamed instead (not replayed): the browser side is read only as
 * the stream's flow control takes the bytes. */
#ifndef KB_H1H2_H
#define KB_H1H2_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

enum h1h2_proto { H1H2_UNKNOWN, H1H2_H1, H1H2_H2C };

#define H1H2_BODY_MAX	(1024 * 1024)	/* request body kept for a replay */
/* Request bodies kept for replays: by all translators together, by those
 * of one preview (its key), by those of one visitor's address (as
 * listener.h's pool counts addresses: IPv4 mapped into IPv6). So a
 * visitor holding a preview link, who needs no account, keeps at most an
 * eighth of the whole, and one preview at most a quarter: others' requests
 * are still kept. A body over any of these goes on as one over
 * H1H2_BODY_MAX does (HTTP/1.1 without a replay, or streamed to a learnt
 * h2c app) and the manager logs which cap it met (at most once a second). */
#define H1H2_BODIES_MAX	(64 * 1024 * 1024)
#define H1H2_BODIES_TEXT	"64 MiB"
#define H1H2_PREVIEW_BODIES_MAX	(16 * 1024 * 1024)
#define H1H2_PREVIEW_BODIES_TEXT	"16 MiB"
#define H1H2_SRC_BODIES_MAX	(8 * 1024 * 1024)
#define H1H2_SRC_BODIES_TEXT	"8 MiB"
#define H1H2_HIGH_WATER	(256 * 1024)	/* answer bytes queued for the proxy */

/* How the sidecar says that the owner's app did not speak the protocol of
 * the request: a header of its own on exactly those answers, read here
 * instead of their text (which is for people and may change):
 *   kbridge-upstream-proto: not-http1
 *	agent/httpproxy.c's 502 when the app's answer to an HTTP/1.x request
 *	was not HTTP/1 before any of it went on (an h2c-only app answers
 *	with HTTP/2 frames): the request may go again as h2c;
 *   kbridge-upstream-proto: not-h2c
 *	agent/h2route.c's 502 (or, to a gRPC call, its trailers-only
 *	UNAVAILABLE, :status 200) when the app did not answer the HTTP/2
 *	preface with SETTINGS (an HTTP/1 app), or a gRPC call for an app it
 *	noted as HTTP/1-only: the request may go again as HTTP/1.1.
 * Only these values, in lower case, in the final answer's head; nothing
 * else (no text) counts. The sidecar drops the header from every request
 * it sends on (HTTP/1 and HTTP/2) and from every HTTP/2 answer it relays,
 * and renames it in the HTTP/1 answers it relays verbatim (its last byte),
 * so neither a visitor nor an app can make or hide the mark. */
#define H1H2_PROTO_HEADER	"kbridge-upstream-proto"
#define H1H2_NOT_HTTP1	"not-http1"
#define H1H2_NOT_H2C	"not-h2c"
/* What those answers say to people (tests, logs). */
#define H1H2_NOT_H1	"kbridge: the upstream sent an invalid HTTP response"
#define H1H2_H1_ONLY	"kbridge: the intercepting workstation's local app speaks HTTP/1 only"

struct h1h2_ops {
	/* A non-blocking socket to key's service (connect() maybe in
	 * progress), or -1 with a short reason for the 502 page. */
	int (*open)(void *arg, uint64_t key, char *reason, size_t len);
	/* What key's owner app was last seen to speak. */
	enum h1h2_proto (*proto)(void *arg, uint64_t key);
	/* It answered a request in proto. */
	void (*learnt)(void *arg, uint64_t key, enum h1h2_proto proto);
	void *arg;
};

/* Serve the non-blocking socket fd (the proxy's end is the other one of
 * the pair) for key, whose browser connection came from the address src
 * (16 bytes, IPv4 mapped into IPv6: its share of the bodies kept). ops
 * must outlive it. 0, or -1 (fd stays the caller's). */
int h1h2_new(struct event_base *base, int fd, uint64_t key, const uint8_t src[16],
    const struct h1h2_ops *ops);
/* Close every translator (at shutdown). */
void h1h2_free_all(void);

/* Pure parts, for the tests. */
/* 1 if ctype is gRPC-web in binary (application/grpc-web[+fmt]), 2 in
 * text (application/grpc-web-text[+fmt], base64), else 0. */
int h1h2_grpc_web(const char *ctype);
/* Base64 of a body that may come in pieces split anywhere, each padded or
 * not: decode n bytes at in into out (room for n / 4 * 3 + 3 bytes)
 * carrying an unfinished quantum in st (zeroed at first): the bytes
 * written, or -1 on bad input. st->n is 0 at a quantum's end. */
struct h1h2_b64 {
	char q[4];
	size_t n;
};
long h1h2_b64_decode(struct h1h2_b64 *st, const char *in, size_t n, unsigned char *out);
/* 1 if the HTTP/1.1 request header name is not sent on over HTTP/2. */
int h1h2_hop(const char *name);
/* 1 if an answer with this status and this H1H2_PROTO_HEADER value (vl
 * bytes; NULL: none) says the app did not speak proto, the protocol the
 * request went in. */
int h1h2_mismatch(enum h1h2_proto proto, int status, const char *v, size_t vl);
/* A gRPC-web trailer frame of the n fields names[i]: values[i] into out
 * (at most outlen bytes): its length, or 0 if it does not fit. */
size_t h1h2_grpc_trailer(const char *const *names, const char *const *values, size_t n,
    unsigned char *out, size_t outlen);

#endif
