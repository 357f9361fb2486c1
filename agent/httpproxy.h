/* The sidecar's HTTP/1.x proxy for one client connection: every request is
 * routed on its own (to the app, or to an intercept) by the caller's route
 * function; bodies stream through without being buffered whole; Upgrade
 * switches the connection to raw forwarding; hop-by-hop headers are handled
 * as a proxy must; malformed requests get 400, header blocks over 64 KiB get
 * 431, an upstream that cannot be reached gets 502. Optionally (pass), a
 * connection that does not start with an HTTP/1 request line (the HTTP/2
 * preface, TLS, HTTP/0.9, anything else) goes to the app untouched, or,
 * the HTTP/2 preface, to up.h2 (h2route.h) when set; an HTTP/1.1 request
 * that offers to upgrade to h2c goes to up.h2c. */
#ifndef KB_HTTPPROXY_H
#define KB_HTTPPROXY_H

#include <stddef.h>
#include <stdint.h>

struct applat;
struct event_base;
struct hp_conn;
struct hp_proxy;
struct kb_stream;
struct kb_stream_cbs;

#define HP_MAX_HEADER_BYTES (64 * 1024)
#define HP_MAX_HEADERS 128

struct hp_header {
	const char *name, *value; /* NUL-terminated, as received */
};

struct hp_request {
	const char *method;                /* "GET", ... */
	const char *target;                /* request target as received ("/api?x=1") */
	const struct hp_header *headers;   /* all of them, hop-by-hop included */
	size_t nheaders;
	int upgrade;                       /* an Upgrade request (WebSocket) */
};

/* The value of the request's first header called name (any case), or NULL. */
const char *hp_header(const struct hp_request *req, const char *name);

/* What route() may do with a request besides naming its upstream: answer
 * it here, or change its headers on the way (see hp_route_* below). */
struct hp_route;

/* Stream upstreams: open() opens key's stream with kb_stream_open_cb(...,
 * cbs, cbarg) and returns it, or NULL with a short reason for the 502 page;
 * a refused stream's reason also goes into the 502 page. The others are
 * session.h's functions of the same names (kb_stream_input, ...): given
 * by the caller, so that the proxy links without the session. The table
 * must outlive every stream opened through it (a static one). */
struct evbuffer;
struct hp_stream_ops {
	struct kb_stream *(*open)(void *arg, uint64_t key, const struct kb_stream_cbs *cbs,
	    void *cbarg, char *reason, size_t reasonlen);
	struct evbuffer *(*input)(struct kb_stream *st);
	int (*eof)(const struct kb_stream *st);
	size_t (*write)(struct kb_stream *st, struct evbuffer *buf);
	void (*shutdown)(struct kb_stream *st);
	void (*set_cbs)(struct kb_stream *st, const struct kb_stream_cbs *cbs, void *arg);
	void (*reset)(struct kb_stream *st, uint8_t reason, const char *text);
};

/* Where requests go. route() names the upstream of a request with a key
 * (0 = the app, anything else = an intercept); requests with the same key
 * may reuse an idle upstream connection of this client connection. open()
 * returns a non-blocking socket to that upstream (connected, or with a
 * connect() in progress), or -1 with a short reason for the 502 page. */
struct hp_upstreams {
	uint64_t (*route)(void *arg, const struct hp_request *req, struct hp_route *r);
	int (*open)(void *arg, uint64_t key, char *reason, size_t reasonlen);
	/* When set, the upstream of a key other than 0 is a session stream
	 * (session.h) instead of a socket; see struct hp_stream_ops. */
	const struct hp_stream_ops *streams;
	/* The client connection is finished and freed. May be NULL. */
	void (*done)(void *arg, struct hp_conn *c);
	void *arg;
	/* With pass: a connection that starts with the HTTP/2 preface is
	 * given to h2() (h2route.h's h2r_start: the client socket, the bytes
	 * read so far, these upstreams) instead of to the app; 0: h2() took
	 * the socket and arg (done is then its to call), -1: passed to the app
	 * as without h2. May be NULL. */
	int (*h2)(struct event_base *base, int fd, const void *p, size_t len,
	    const struct hp_upstreams *up);
	/* An HTTP/1.1 request offering "Upgrade: h2c" (with HTTP2-Settings,
	 * no Expect, and a body, if any, of a known length) is given to h2c() (h2route.h's
	 * h2r_upgrade: the head, the body's length, the bytes read after the
	 * head) instead of being routed; 0: h2c() took the socket and arg, as
	 * h2() does; -1, or h2c NULL: the offer is dropped and the request
	 * served as HTTP/1.1 (an upgrade to h2c is never tunnelled, so later
	 * requests stay routed). May be NULL. */
	int (*h2c)(struct event_base *base, int fd, const struct hp_request *req,
	    uint64_t bodylen, const void *p, size_t len, const struct hp_upstreams *up);
	/* h2route: whether the local app of intercept key was seen to
	 * answer HTTP/2 in HTTP/1 (then its streams go as HTTP/1.1 requests):
	 * h1(arg, key, 0) asks, h1(arg, key, 1) notes it, h1(arg, key, -1)
	 * notes that it answered in HTTP/2. May be NULL. */
	int (*h1)(void *arg, uint64_t key, int note);
	/* 1: a connection whose first bytes are not an HTTP/1 request line,
	 * or whose app speaks first, is joined to key 0 as it is (what is not
	 * HTTP/1 cannot be routed, and must not be broken); 0: it gets 400. */
	int pass;
};

/* r is NULL for a request that came over HTTP/2 (h2 above): it is routed
 * only; the functions below then do nothing (the first) or return -1. */
/* From route(): answer the request here instead (its body, if any, is read
 * and dropped). headers: more header lines, each ending in CRLF, or NULL;
 * body: sent with Content-Type ctype (omitted for HEAD), or NULL. */
void hp_route_reply(struct hp_route *r, int status, const char *reason, const char *headers,
    const char *ctype, const char *body);
/* From route(): leave out the request headers called name (any case) when
 * forwarding. name must outlive the request (a string literal). 0 or -1. */
int hp_route_drop(struct hp_route *r, const char *name);
/* From route(): add the header "name: value" when forwarding. 0 or -1. */
int hp_route_add(struct hp_route *r, const char *name, const char *value);

/* What the connections of one event base share: the read buffer, the
 * grouping of their writes (batch.h), the app's latency (applat.h). NULL
 * when out of memory. Freed after its last connection, before the base. */
struct hp_proxy *hp_proxy_new(struct event_base *base);
void hp_proxy_free(struct hp_proxy *hp);
/* For pace.h: how many times a socket of any connection was read so far,
 * and how long the app takes to answer (applat.h). */
const struct applat *hp_applat(const struct hp_proxy *hp);

/* Serve the accepted, non-blocking client socket fd. */
struct hp_conn *hp_conn_new(struct hp_proxy *hp, int fd, const struct hp_upstreams *up);
/* Whether c waits for a request and has nothing of one nor of a response
 * (kept alive between requests, or new): closing it loses nothing. */
int hp_conn_idle(const struct hp_conn *c);
/* Close the client and its upstreams now (done is not called). Not from
 * within the route, open, streams->open or done callbacks. */
void hp_conn_free(struct hp_conn *c);
/* After the last proxy is freed: what the writes of all share (sendmany.h's
 * ring) goes. */
void hp_fini(void);

#endif
