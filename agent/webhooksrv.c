/* The injection webhook's HTTPS endpoint (see webhooksrv.h): TLS through
 * proto/conn.c, the request parsed with llhttp, the answer from
 * webhook_review(), then the connection closes. */
#include "webhooksrv.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <llhttp.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "enroll.h"
#include "listener.h"
#include "log.h"
#include "tls.h"
#include "util.h"

struct wh_conn;

struct webhook_srv {
	struct event_base *base;
	SSL_CTX *ctx;
	struct kb_listener *listener;
	struct kb_pool *pool;	/* every connection, until it is answered */
	struct webhook_cfg cfg;
	char *image, *manager, *enroll, *ca;
	size_t nconns;
	struct wh_conn *conns;
};

struct wh_conn {
	struct webhook_srv *w;
	struct wh_conn *next, **prevp;
	struct kb_conn *conn;
	struct kb_pool_entry pe;
	size_t got;		/* request bytes read */
	llhttp_t parser;
	llhttp_settings_t settings;
	char url[64];
	size_t urllen;
	int url_long, done, too_big;
	struct evbuffer *body;
	char peer[64];
	struct enroll_req *er;	/* an enrollment being answered */
};

static void
conn_free(struct wh_conn *c)
{
	if (c->prevp) {
		*c->prevp = c->next;
		if (c->next)
			c->next->prevp = c->prevp;
		c->w->nconns--;
	}
	kb_pool_remove(&c->pe);
	enroll_cancel(c->er);
	if (c->conn)
		kb_conn_free(c->conn);
	if (c->body)
		evbuffer_free(c->body);
	free(c);
}

/* Answer and close once sent (kb_conn_close_flushed owns it then). */
static void
respond(struct wh_conn *c, int status, const char *reason, const char *body)
{
	struct kb_conn *conn = c->conn;

	evbuffer_add_printf(kb_conn_output(conn), "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status, reason,
	    status == 200 ? "application/json" : "text/plain", strlen(body), body);
	c->conn = NULL;
	c->done = 1;
	kb_conn_close_flushed(conn);
	conn_free(c);
}

static int
on_url(llhttp_t *p, const char *at, size_t n)
{
	struct wh_conn *c = p->data;

	if (c->urllen + n >= sizeof(c->url)) {
		c->url_long = 1;
		return 0;
	}
	memcpy(c->url + c->urllen, at, n);
	c->urllen += n;
	c->url[c->urllen] = '\0';
	return 0;
}

static int
on_headers(llhttp_t *p)
{
	struct wh_conn *c = p->data;

	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > WEBHOOK_MAX_BODY) {
		c->too_big = 1;
		return -1;	/* any error ends the parse; too_big says which */
	}
	return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t n)
{
	struct wh_conn *c = p->data;

	if (evbuffer_get_length(c->body) + n > WEBHOOK_MAX_BODY) {
		c->too_big = 1;
		return -1;
	}
	return evbuffer_add(c->body, at, n) == 0 ? 0 : HPE_USER;
}

static int
on_complete(llhttp_t *p)
{
	(void)p;
	return HPE_PAUSED;
}

static void
enrolled(void *arg, int status, const char *body)
{
	struct wh_conn *c = arg;

	c->er = NULL;
	respond(c, status, status == 200 ? "OK" : status == 403 ? "Forbidden" :
	    status == 502 ? "Bad Gateway" : status == 503 ? "Service Unavailable" : "Error", body);
}

/* POST /enroll: answered when the API has (agent/enroll.c); the
 * connection stays in the pool (and under its deadline) meanwhile. */
static void
handle_enroll(struct wh_conn *c, const char *body, size_t len)
{
	char why[300], line[400];
	int status = 400;

	if ((c->er = enroll_start(c->w->cfg.enroller, body, len, c->peer, enrolled, c, &status,
	    why, sizeof(why))) != NULL)
		return;
	log_debug("webhook: %s: enrollment refused: %s", c->peer, why);
	snprintf(line, sizeof(line), "kbridge: enrollment refused: %s\n", why);
	respond(c, status, status == 400 ? "Bad Request" : "Service Unavailable", line);
}

/* One complete request: route it and answer. */
static void
handle(struct wh_conn *c)
{
	size_t len = evbuffer_get_length(c->body);
	const char *body = (const char *)evbuffer_pullup(c->body, -1);
	struct webhook_result res;
	char err[200], *out, *q;

	if ((q = strchr(c->url, '?')) != NULL)
		*q = '\0';
	if (c->url_long || (strcmp(c->url, WEBHOOK_PATH) != 0 &&
	    (strcmp(c->url, ENROLL_PATH) != 0 || !c->w->cfg.enroller))) {
		respond(c, 404, "Not Found", "not found\n");
		return;
	}
	if (llhttp_get_method(&c->parser) != HTTP_POST) {
		respond(c, 405, "Method Not Allowed", "POST only\n");
		return;
	}
	if (strcmp(c->url, ENROLL_PATH) == 0) {
		handle_enroll(c, body ? body : "", len);
		return;
	}
	if ((out = webhook_review(&c->w->cfg, body ? body : "", len, &res, err,
	    sizeof(err))) == NULL) {
		log_debug("webhook: %s: bad request: %s", c->peer, err);
		respond(c, 400, "Bad Request", err);
		return;
	}
	if (res.pod_create && (res.patched || res.warn[0]))
		log_info("webhook: pod %s: %s", res.pod, res.patched ? "sidecar injected" :
		    strncmp(res.warn, "kbridge: ", 9) == 0 ? res.warn + 9 : res.warn);
	else if (res.pod_create)
		log_debug("webhook: pod %s: unchanged", res.pod);
	respond(c, 200, "OK", out);
	free(out);
}

static void
on_read(struct kb_conn *kc, void *arg)
{
	struct wh_conn *c = arg;
	struct evbuffer *in = kb_conn_input(kc);
	size_t len = evbuffer_get_length(in);
	const char *data = (const char *)evbuffer_pullup(in, -1);
	llhttp_errno_t e;

	if (len == 0 || c->done)
		return;
	c->got += len;
	e = llhttp_execute(&c->parser, data, len);
	evbuffer_drain(in, len);
	if (e == HPE_PAUSED) {
		handle(c);
		return;
	}
	if (c->too_big) {
		respond(c, 413, "Payload Too Large", "body too large\n");
		return;
	}
	if (e != HPE_OK)
		respond(c, 400, "Bad Request", "bad request\n");
}

static void
on_event(struct kb_conn *kc, int what, void *arg)
{
	struct wh_conn *c = arg;
	char buf[200];

	(void)kc;
	if (what & KB_CONN_CONNECTED)
		return;
	if (what & KB_CONN_ERROR)
		log_debug("webhook: %s: %s", c->peer, kb_conn_error(c->conn, buf, sizeof(buf)));
	conn_free(c);
}

/* Out of the pool: too slow, or room was needed for a newer connection. */
static void
pool_expel(struct kb_pool_entry *e, enum kb_pool_why why)
{
	struct wh_conn *c = e->owner;

	log_debug("webhook: %s: %s", c->peer, why == KB_POOL_DEADLINE ?
	    "no complete request in time" : "room for a newer connection");
	conn_free(c);
}

static int
pool_quiet(struct kb_pool_entry *e)
{
	return ((struct wh_conn *)e->owner)->got == 0;
}

static const struct kb_conn_cbs conn_cbs = { .on_read = on_read, .on_event = on_event };

static void
on_accept(int fd, struct sockaddr *sa, int salen, void *arg)
{
	struct webhook_srv *w = arg;
	struct wh_conn *c;
	SSL *ssl;
	int one = 1;

	(void)salen;
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->body = evbuffer_new()) == NULL ||
	    (ssl = SSL_new(w->ctx)) == NULL) {
		kb_listener_refused(w->listener, "out of memory");
		evutil_closesocket(fd);
		if (c)
			conn_free(c);
		return;
	}
	c->w = w;
	kb_sockaddr_str(sa, c->peer, sizeof(c->peer));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	if ((c->conn = kb_conn_new(w->base, fd, ssl, 1)) == NULL) {
		conn_free(c);
		return;
	}
	llhttp_settings_init(&c->settings);
	c->settings.on_url = on_url;
	c->settings.on_headers_complete = on_headers;
	c->settings.on_body = on_body;
	c->settings.on_message_complete = on_complete;
	llhttp_init(&c->parser, HTTP_REQUEST, &c->settings);
	c->parser.data = c;
	kb_conn_setcb(c->conn, &conn_cbs, c);
	kb_conn_set_timeout(c->conn, WEBHOOK_TIMEOUT_MS);
	c->next = w->conns;
	if (c->next)
		c->next->prevp = &c->next;
	c->prevp = &w->conns;
	w->conns = c;
	w->nconns++;
	kb_pool_add(w->pool, &c->pe, sa, c);
}

struct webhook_srv *
webhook_srv_start(struct event_base *base, const char *hostport, const char *ca_pem,
    const char *cert_pem, const char *key_pem, const struct webhook_cfg *cfg, char *err,
    size_t errlen)
{
	struct evutil_addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct evutil_addrinfo *ai = NULL;
	struct webhook_srv *w;
	char host[256], portstr[8];
	uint16_t port;

	if (kb_hostport_parse(hostport, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "invalid webhook address '%s' (expected HOST:PORT)", hostport);
		return NULL;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL || (w->image = strdup(cfg->image)) == NULL ||
	    (w->manager = strdup(cfg->manager)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((cfg->enroll && (w->enroll = strdup(cfg->enroll)) == NULL) ||
	    (cfg->ca && (w->ca = strdup(cfg->ca)) == NULL)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	w->base = base;
	w->cfg = *cfg;
	w->cfg.image = w->image;
	w->cfg.manager = w->manager;
	w->cfg.enroll = w->enroll;
	w->cfg.ca = w->ca;
	/* The manager's server context, but no client certificate: the API
	 * server calls without one. */
	if ((w->ctx = kb_tls_server_ctx(ca_pem, cert_pem, key_pem, err, errlen)) == NULL)
		goto fail;
	SSL_CTX_set_verify(w->ctx, SSL_VERIFY_NONE, NULL);
	if ((w->pool = kb_pool_new(base, "webhook: connections", WEBHOOK_MAX_CONNS,
	    WEBHOOK_MAX_PER_SRC, WEBHOOK_TIMEOUT_MS, pool_expel, pool_quiet, err,
	    errlen)) == NULL)
		goto fail;
	snprintf(portstr, sizeof(portstr), "%u", port);
	if (evutil_getaddrinfo(host, portstr, &hints, &ai) != 0 || !ai) {
		snprintf(err, errlen, "cannot resolve webhook address %s", host);
		goto fail;
	}
	w->listener = kb_listener_bind(base, "webhook listener", ai->ai_addr, (int)ai->ai_addrlen,
	    128, on_accept, w);
	evutil_freeaddrinfo(ai);
	if (!w->listener) {
		snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(errno));
		goto fail;
	}
	log_info("injection webhook listening on %s%s (sidecar image %s)", hostport, WEBHOOK_PATH,
	    w->image);
	return w;
fail:
	webhook_srv_free(w);
	return NULL;
}

void
webhook_srv_free(struct webhook_srv *w)
{
	if (!w)
		return;
	while (w->conns)
		conn_free(w->conns);
	kb_listener_free(w->listener);
	kb_pool_free(w->pool);
	SSL_CTX_free(w->ctx);
	free(w->image);
	free(w->manager);
	free(w->enroll);
	free(w->ca);
	free(w);
}
