/* HTTP/2 cleartext (prior knowledge, or an HTTP/1.1 Upgrade: h2c) in the
 * sidecar, routed per stream:
 * nghttp2 terminates the client's connection; each stream's request head
 * goes through the same route() as an HTTP/1 request (its :path is the
 * target, :authority is also "host"), and the stream is relayed over one
 * HTTP/2 client connection per upstream key of this client connection
 * (key 0: the app, by a socket from up.open; an intercept: its owner's
 * workstation, by a session stream from up.streams->open). DATA,
 * trailers, RST_STREAM and GOAWAY pass through, flow controlled end to
 * end: a stream's bytes are acknowledged to their sender only when the
 * other side took them. A refused intercept stream's reason goes into
 * the 502 page (gRPC: UNAVAILABLE, grpc-message). An intercept whose
 * local app answers HTTP/2 in HTTP/1 gets each stream as one HTTP/1.1
 * request (chunked body when its length is unknown, trailers both ways as
 * chunked trailers, hop-by-hop fields dropped), no request lost meanwhile;
 * a gRPC call then gets UNAVAILABLE saying why. The app (key 0) must
 * speak HTTP/2 when the client does: if not, its streams get a 502 that
 * says so. A client connection without a stream for 60 s gets GOAWAY and
 * is closed, as an idle kept-alive HTTP/1 connection is. */
#ifndef KB_H2ROUTE_H
#define KB_H2ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "httpproxy.h"

struct event_base;

#define H2R_MAX_STREAMS	100		/* concurrent streams per client connection */
#define H2R_WINDOW	(256 * 1024)	/* per stream, each way */
#define H2R_CONN_WINDOW	(1024 * 1024)	/* per connection, each way */
#define H2R_HIGH_WATER	(64 * 1024)	/* bytes queued for a socket before we stop producing */

/* One header as nghttp2 gives it: not NUL-terminated. */
struct h2r_field {
	const char *name, *value;
	size_t namelen, valuelen;
};

/* An HTTP/2 request head as route() wants it: method from :method, target
 * from :path, the regular headers and "host" from :authority (when no host
 * header came). h is filled with NUL-terminated copies held in buf (bufsz
 * bytes). 0, or -1 when a pseudo-header is missing, repeated or unknown,
 * or there are more than nh headers or bytes than buf holds. */
int h2r_request(const struct h2r_field *f, size_t nf, struct hp_request *req,
    struct hp_header *h, size_t nh, char *buf, size_t bufsz);

/* Take over the accepted client socket fd (non-blocking) whose first len
 * bytes, already read, are at p (the start of the HTTP/2 preface). The
 * streams are routed and their upstreams opened with up's callbacks (the
 * route callback gets no struct hp_route: it names an upstream only); when
 * the connection is finished, up->done(up->arg, NULL) is called. 0, or -1
 * (out of memory; fd and up->arg stay the caller's). */
int h2r_start(struct event_base *base, int fd, const void *p, size_t len,
    const struct hp_upstreams *up);

/* The same for an HTTP/1.1 request that asks to upgrade to h2c (RFC 7540
 * 3.2: "Upgrade: h2c" and an HTTP2-Settings header) on the accepted client
 * socket fd: answers 101 and takes the connection; the request becomes
 * stream 1, routed as any other. Its body, bodylen bytes (Content-Length;
 * not chunked), follows the head; the len bytes at p are what was read
 * after the head. 0, or -1 (a bad HTTP2-Settings, too large a head, out of
 * memory: nothing was sent, fd and up->arg stay the caller's, who then
 * serves the request as HTTP/1.1 without the upgrade). */
int h2r_upgrade(struct event_base *base, int fd, const struct hp_request *req,
    uint64_t bodylen, const void *p, size_t len, const struct hp_upstreams *up);

#endif
