/* proto/portforward.c: the RFC 6455 framing (masking, lengths, refusals),
 * the upgrade answer's checks, and kb_pf_open against a loopback TLS server
 * thread speaking the kubelet's v4.channel.k8s.io (ports, fragmented
 * messages, ping, the error channel, close, an HTTP 403 and a 401 retry,
 * bulk data in full 32 KiB frames, what one send takes from the queue)
 * or the API server's SPDY tunnel (the streams' headers, replies, a window
 * of 3 bytes opened by WINDOW_UPDATE, ping, data split over messages, the
 * error stream, FINs, a half-close). */
#include "../../proto/portforward.c"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ok.h"

/* ---- framing ---- */

static void
test_accept(void)
{
	char out[29];

	/* RFC 6455 section 1.3's example */
	ws_accept("dGhlIHNhbXBsZSBub25jZQ==", out);
	ok(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
}

/* ws_put then ws_parse (as a server would, masked allowed): same bytes. */
static int
roundtrip(size_t len)
{
	struct evbuffer *b = evbuffer_new();
	unsigned char *data = malloc(len + 1), *p;
	struct ws_frame f;
	size_t need, i, n;
	char err[128];
	int r, good;

	for (i = 0; i < len; i++)
		data[i] = (unsigned char)(i * 7 + 3);
	ws_put(b, 1, OP_BIN, CH_DATA, data, len);
	n = evbuffer_get_length(b);
	p = evbuffer_pullup(b, -1);
	good = (p[1] & 0x80) != 0; /* masked */
	/* every prefix is "need more" */
	r = ws_parse(p, n - 1, 1, 1u << 30, &f, &need, err, sizeof(err));
	good = good && r == 0;
	r = ws_parse(p, n, 1, 1u << 30, &f, &need, err, sizeof(err));
	good = good && r == 1 && f.fin && f.op == OP_BIN && f.len == len + 1 &&
	    f.hdr + f.len == n && f.payload[0] == CH_DATA &&
	    (len == 0 || memcmp(f.payload + 1, data, len) == 0);
	/* and not from a server */
	p[1] |= 0x80;
	good = good && ws_parse(p, n, 0, 1u << 30, &f, &need, err, sizeof(err)) == -1 &&
	    strstr(err, "masked") != NULL;
	free(data);
	evbuffer_free(b);
	return good;
}

static void
test_framing(void)
{
	unsigned char b[32], h[14];
	struct ws_frame f;
	size_t need;
	char err[128];

	ok(roundtrip(0));
	ok(roundtrip(124));	/* 125 with the channel: 7-bit length */
	ok(roundtrip(125));	/* 126: 16-bit */
	ok(roundtrip(65534));
	ok(roundtrip(65535));	/* 65536: 64-bit */
	ok(roundtrip(300000));

	/* unmasked server frames */
	ok(ws_header(h, 1, OP_PING, 3, NULL) == 2 && h[0] == 0x89 && h[1] == 3);
	memcpy(b, h, 2);
	memcpy(b + 2, "abc", 3);
	ok(ws_parse(b, 5, 0, 1024, &f, &need, err, sizeof(err)) == 1 && f.op == OP_PING &&
	    f.len == 3 && memcmp(f.payload, "abc", 3) == 0);
	/* refusals */
	b[0] = 0xc2; /* RSV1 */
	ok(ws_parse(b, 5, 0, 1024, &f, &need, err, sizeof(err)) == -1 && strstr(err, "reserved") != NULL);
	b[0] = 0x83; /* opcode 3 */
	ok(ws_parse(b, 5, 0, 1024, &f, &need, err, sizeof(err)) == -1 && strstr(err, "opcode") != NULL);
	b[0] = 0x09; /* ping without FIN */
	ok(ws_parse(b, 5, 0, 1024, &f, &need, err, sizeof(err)) == -1 && strstr(err, "control") != NULL);
	ws_header(b, 1, OP_BIN, 2000, NULL);
	ok(ws_parse(b, 4, 0, 1024, &f, &need, err, sizeof(err)) == -1 &&
	    strstr(err, "frame of 2000 bytes"));
	ok(ws_parse(b, 4, 0, 4096, &f, &need, err, sizeof(err)) == 0 && need == 2004);
	b[0] = 0x82;
	b[1] = 126;
	b[2] = 0;
	b[3] = 5; /* 16-bit form of a 7-bit length */
	ok(ws_parse(b, 4, 0, 4096, &f, &need, err, sizeof(err)) == -1 && strstr(err, "minimally") != NULL);
}

static void
test_upgrade(void)
{
	char key[] = "dGhlIHNhbXBsZSBub25jZQ==", err[256];
	const char *good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	    "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n";
	const char *bad = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
	    "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n";
	const char *noproto = "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
	    "connection: keep-alive, Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
	const char *tunnel = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	    "Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n";
	const char *body = "{\"kind\":\"Status\",\"message\":\"pods \\\"x\\\" is forbidden\\nsecond\"}";
	int spdy = -1;

	ok(upgrade_ok(good, key, 1, &spdy, err, sizeof(err)) == 0 && spdy == 0);
	ok(upgrade_ok(good, key, 0, &spdy, err, sizeof(err)) == 0 && spdy == 0);
	/* the tunnel when offered (and chosen); never when not offered */
	ok(upgrade_ok(tunnel, key, 1, &spdy, err, sizeof(err)) == 0 && spdy == 1);
	ok(upgrade_ok(tunnel, key, 0, &spdy, err, sizeof(err)) == -1 &&
	    strstr(err, "did not choose v4.channel.k8s.io") != NULL);
	ok(upgrade_ok(bad, key, 1, &spdy, err, sizeof(err)) == -1 &&
	    strstr(err, "Sec-WebSocket-Accept") != NULL);
	ok(upgrade_ok(noproto, key, 1, &spdy, err, sizeof(err)) == -1 &&
	    strstr(err, "did not choose") != NULL);
	http_error(403, "HTTP/1.1 403 Forbidden\r\n", body, strlen(body), err, sizeof(err));
	ok(strcmp(err, "HTTP 403: pods \"x\" is forbidden second") == 0);
	http_error(404, "HTTP/1.1 404 x\r\nTransfer-Encoding: chunked\r\n", "5\r\nnope!\r\n0\r\n",
	    13, err, sizeof(err));
	ok(strcmp(err, "HTTP 404: nope!") == 0);
}

/* ---- kb_pf_open against a loopback server ---- */

enum mode { M_OK, M_BADKEY, M_403, M_ERRCH, M_OVERSIZE, M_401, M_EOF, M_BULK, M_SPDY,
	M_SPDY_ERR, M_SPDY_EOF };

static EVP_PKEY *srv_key;
static X509 *srv_x;
static char *srv_pem;

struct srv {
	SSL_CTX *ctx;
	int fd;
	enum mode modes[2];
	int nmodes;
	char req[4096];
	int got_pong, got_close, all_masked;
	char got_data[64];
	size_t bulk;	/* data bytes received (M_BULK) */
	size_t bulk_max;	/* the largest data frame's payload (M_BULK) */
	int v4only;	/* the client offers v4 only (KB_PF_V4_ONLY) */
	/* M_SPDY*: the client's announced window, SYN_STREAMs as client-go's,
	 * the error stream's FIN, its data stream's FIN, its largest DATA */
	uint32_t client_window;
	int syn_ok, err_fin, data_fin;
	size_t maxdata;
};

#define BULK (3u << 20)

static int
ssl_all(SSL *s, const void *p, size_t n)
{
	return SSL_write(s, p, (int)n) == (int)n ? 0 : -1;
}

static int
sframe(SSL *s, int fin, int op, const void *p, size_t n)
{
	unsigned char h[14];
	size_t hl = ws_header(h, fin, op, n, NULL);

	return ssl_all(s, h, hl) || (n && ssl_all(s, p, n));
}

/* One client frame (masked), into f; buf holds it. 0 or -1. */
static int
rframe(SSL *s, unsigned char *buf, size_t cap, size_t *have, struct ws_frame *f, struct srv *sv)
{
	size_t need;
	char err[128];
	int r, n;

	for (;;) {
		r = ws_parse(buf, *have, 1, cap - 14, f, &need, err, sizeof(err));
		if (r == 1) {
			if (!f->masked)
				sv->all_masked = 0;
			return 0;
		}
		if (r < 0 || need > cap)
			return -1;
		if ((n = SSL_read(s, buf + *have, (int)(cap - *have))) <= 0)
			return -1;
		*have += (size_t)n;
	}
}

static void
consume(unsigned char *buf, size_t *have, const struct ws_frame *f)
{
	size_t used = f->hdr + (size_t)f->len;

	memmove(buf, buf + used, *have - used);
	*have -= used;
}

/* The server's side of the SPDY tunnel. */
struct ssp {
	SSL *s;
	struct srv *sv;
	struct kb_spdy *z;
	unsigned char buf[8192];   /* WebSocket bytes */
	size_t have;
	unsigned char q[16384];    /* SPDY bytes */
	size_t qlen, used;
};

/* The client's next SPDY frame into f (valid until the next call): 0, or
 * -1 (its close frame: got_close; or an error). */
static int
ssp_next(struct ssp *p, struct kb_spdy_frame *f)
{
	struct ws_frame w;
	size_t need;
	char err[200];
	int r;

	memmove(p->q, p->q + p->used, p->qlen - p->used);
	p->qlen -= p->used;
	p->used = 0;
	for (;;) {
		r = kb_spdy_parse(p->z, p->q, p->qlen, sizeof(p->q) - 8, f, &need, err, sizeof(err));
		if (r == 1) {
			p->used = need;
			return 0;
		}
		if (r < 0 || rframe(p->s, p->buf, sizeof(p->buf), &p->have, &w, p->sv) < 0) {
			printf("# server: %s\n", r < 0 ? err : "no frame");
			return -1;
		}
		if (w.op == OP_CLOSE) {
			p->sv->got_close = 1;
			return -1;
		}
		if ((w.op == OP_BIN || w.op == OP_CONT) && p->qlen + w.len <= sizeof(p->q)) {
			memcpy(p->q + p->qlen, w.payload, (size_t)w.len);
			p->qlen += (size_t)w.len;
		}
		consume(p->buf, &p->have, &w);
	}
}

static void
ssp_data(struct ssp *p, uint32_t sid, int fl, const char *d, size_t n)
{
	unsigned char b[256];

	kb_spdy_data_header(b, sid, fl, n);
	memcpy(b + KB_SPDY_HDR, d, n);
	sframe(p->s, 1, OP_BIN, b, KB_SPDY_HDR + n);
}

static void
serve_spdy(struct srv *sv, SSL *s, enum mode m)
{
	static struct ssp p;
	struct kb_spdy_frame f;
	unsigned char out[512];
	uint32_t i, id = KB_SPDY_SETTINGS_INITIAL_WINDOW, v, win = 3;
	const char *t;
	size_t n, l;
	int syn = 0, fl;

	memset(&p, 0, sizeof(p));
	p.s = s;
	p.sv = sv;
	p.z = kb_spdy_new();
	sv->syn_ok = sv->err_fin = sv->data_fin = 0;
	sv->maxdata = 0;
	sv->client_window = 0;
	/* the client's SETTINGS, then its error and data streams */
	while (syn < 2 && ssp_next(&p, &f) == 0) {
		for (i = 0; f.type == KB_SPDY_SETTINGS && i < f.nsettings; i++) {
			kb_spdy_setting(&f, i, &id, &fl, &v);
			if (id == KB_SPDY_SETTINGS_INITIAL_WINDOW)
				sv->client_window = v;
		}
		if (f.type != KB_SPDY_SYN_STREAM)
			continue;
		t = kb_spdy_header(&f, "streamtype");
		if (f.stream == (uint32_t)(1 + 2 * syn) && t && strcmp(t, syn ? "data" : "error") == 0 &&
		    (t = kb_spdy_header(&f, "port")) && strcmp(t, "8443") == 0 &&
		    (t = kb_spdy_header(&f, "requestid")) && strcmp(t, "0") == 0 && f.npairs == 3)
			sv->syn_ok++;
		syn++;
	}
	n = kb_spdy_headers_frame(p.z, out, sizeof(out), KB_SPDY_SYN_REPLY, 1, 0, NULL, NULL, 0);
	sframe(s, 1, OP_BIN, out, n);
	if (m == M_SPDY) {
		/* a 3-byte window: the client sends "wor", waits for an update */
		id = KB_SPDY_SETTINGS_INITIAL_WINDOW;
		sframe(s, 1, OP_BIN, out, kb_spdy_settings(out, sizeof(out), &id, &win, 1));
	}
	n = kb_spdy_headers_frame(p.z, out, sizeof(out), KB_SPDY_SYN_REPLY, 3, 0, NULL, NULL, 0);
	sframe(s, 1, OP_BIN, out, n);
	if (m == M_SPDY_ERR) {
		ssp_data(&p, 1, KB_SPDY_FLAG_FIN, "dial tcp: connection refused\n", 29);
		ssp_data(&p, 3, KB_SPDY_FLAG_FIN, "", 0);
	} else if (m == M_SPDY) {
		sframe(s, 1, OP_BIN, out, kb_spdy_ping(out, 2));
		/* "hello" in one DATA frame split over a fragmented message */
		kb_spdy_data_header(out, 3, 0, 5);
		memcpy(out + KB_SPDY_HDR, "hello", 5);
		sframe(s, 0, OP_BIN, out, 10);
		sframe(s, 1, OP_CONT, out + 10, 3);
		while ((strcmp(sv->got_data, "world") || !sv->got_pong || !sv->err_fin) &&
		    ssp_next(&p, &f) == 0) {
			if (f.type == KB_SPDY_PING && f.value == 2)
				sv->got_pong = 1;
			if (f.type == KB_SPDY_DATA && f.stream == 1 && (f.flags & KB_SPDY_FLAG_FIN))
				sv->err_fin = 1;
			if (f.type != KB_SPDY_DATA || f.stream != 3 || f.len == 0)
				continue;
			l = strlen(sv->got_data);
			if (l + f.len < sizeof(sv->got_data)) {
				memcpy(sv->got_data + l, f.data, f.len);
				sv->got_data[l + f.len] = '\0';
			}
			sv->maxdata = f.len > sv->maxdata ? f.len : sv->maxdata;
			ssp_data(&p, 3, 0, (const char *)f.data, f.len); /* the echo */
			if (strcmp(sv->got_data, "wor") == 0)
				sframe(s, 1, OP_BIN, out, kb_spdy_window_update(out, 3, 2));
		}
		ssp_data(&p, 3, KB_SPDY_FLAG_FIN, "", 0);
		ssp_data(&p, 1, KB_SPDY_FLAG_FIN, "", 0);
	} else {
		/* M_SPDY_EOF: the local side's bytes and its FIN, then an answer */
		while (!sv->data_fin && ssp_next(&p, &f) == 0) {
			if (f.type != KB_SPDY_DATA || f.stream != 3)
				continue;
			l = strlen(sv->got_data);
			if (l + f.len < sizeof(sv->got_data)) {
				memcpy(sv->got_data + l, f.data, f.len);
				sv->got_data[l + f.len] = '\0';
			}
			sv->data_fin = (f.flags & KB_SPDY_FLAG_FIN) != 0;
		}
		/* and how the pod's connection ended after it: not an error */
		ssp_data(&p, 3, 0, "late", 4);
		ssp_data(&p, 3, KB_SPDY_FLAG_FIN, "", 0);
		ssp_data(&p, 1, KB_SPDY_FLAG_FIN, "read: connection reset by peer", 30);
	}
	/* the client's close (after the streams' end), answered */
	while (ssp_next(&p, &f) == 0)
		;
	sframe(s, 1, OP_CLOSE, "\x03\xe8", 2);
	kb_spdy_free(p.z);
}

static void
serve_one(struct srv *sv, SSL *s, enum mode m)
{
	static const unsigned char port[] = { 0xfb, 0x20 }; /* 8443, little endian */
	unsigned char buf[8192], msg[64];
	char key[64] = "", acc[29], resp[512];
	const char *k;
	size_t have = 0;
	struct ws_frame f;
	int n, len = 0;

	memset(sv->req, 0, sizeof(sv->req));
	while (len < (int)sizeof(sv->req) - 1 && !strstr(sv->req, "\r\n\r\n") &&
	    (n = SSL_read(s, sv->req + len, (int)sizeof(sv->req) - 1 - len)) > 0)
		len += n;
	if ((k = strstr(sv->req, "Sec-WebSocket-Key: ")) != NULL)
		sscanf(k + 19, "%63[^\r]", key);
	ws_accept(key, acc);
	if (m == M_403 || m == M_401) {
		const char *b = m == M_403 ?
		    "{\"kind\":\"Status\",\"message\":\"pods \\\"pod1\\\" is forbidden: User "
		    "\\\"bob\\\" cannot create resource \\\"pods/portforward\\\"\",\"code\":403}" :
		    "{\"kind\":\"Status\",\"message\":\"Unauthorized\",\"code\":401}";
		snprintf(resp, sizeof(resp), "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
		    "Content-Length: %zu\r\n\r\n%s", m == M_403 ? "403 Forbidden" :
		    "401 Unauthorized", strlen(b), b);
		ssl_all(s, resp, strlen(resp));
		return;
	}
	snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
	    "Sec-WebSocket-Protocol: %s\r\n\r\n",
	    m == M_BADKEY ? "AAAAAAAAAAAAAAAAAAAAAAAAAAA=" : acc,
	    m >= M_SPDY ? "SPDY/3.1+portforward.k8s.io" : "v4.channel.k8s.io");
	ssl_all(s, resp, strlen(resp));
	if (m == M_BADKEY)
		return;
	if (m >= M_SPDY) {
		serve_spdy(sv, s, m);
		return;
	}
	/* the port on each channel, each in its own message */
	msg[0] = CH_DATA;
	memcpy(msg + 1, port, 2);
	sframe(s, 1, OP_BIN, msg, 3);
	msg[0] = CH_ERROR;
	sframe(s, 1, OP_BIN, msg, 3);
	if (m == M_OVERSIZE) {
		unsigned char h[14];
		size_t hl = ws_header(h, 1, OP_BIN, 2u << 20, NULL);
		ssl_all(s, h, hl);
		SSL_read(s, buf, sizeof(buf)); /* until the client goes */
		return;
	}
	if (m == M_ERRCH) {
		msg[0] = CH_ERROR;
		memcpy(msg + 1, "dial tcp: connection refused\n", 29);
		sframe(s, 1, OP_BIN, msg, 30);
		sframe(s, 1, OP_CLOSE, "\x03\xe8", 2);
		/* the answer (the local side's bytes may come first) */
		while (rframe(s, buf, sizeof(buf), &have, &f, sv) == 0) {
			if (f.op == OP_CLOSE) {
				sv->got_close = 1;
				break;
			}
			consume(buf, &have, &f);
		}
		return;
	}
	if (m == M_BULK) {
		/* much more than the buffers hold, then the local EOF: every
		 * byte comes before the close */
		static unsigned char big[KB_PF_FRAME_MAX + 64];
		while (rframe(s, big, sizeof(big), &have, &f, sv) == 0) {
			if (f.op == OP_BIN && f.len > 1 && f.payload[0] == CH_DATA) {
				sv->bulk += (size_t)f.len - 1;
				if (f.len > sv->bulk_max)
					sv->bulk_max = (size_t)f.len;
			}
			if (f.op == OP_CLOSE) {
				sv->got_close = 1;
				break;
			}
			consume(big, &have, &f);
		}
		sframe(s, 1, OP_CLOSE, "\x03\xe8", 2);
		return;
	}
	if (m == M_EOF) {
		/* the local side's bytes, then its close; an answer after it */
		while (rframe(s, buf, sizeof(buf), &have, &f, sv) == 0) {
			if (f.op == OP_BIN && f.len > 1 && f.payload[0] == CH_DATA) {
				size_t l = strlen(sv->got_data), c = (size_t)f.len - 1;
				if (l + c < sizeof(sv->got_data))
					memcpy(sv->got_data + l, f.payload + 1, c);
			}
			if (f.op == OP_CLOSE) {
				sv->got_close = 1;
				break;
			}
			consume(buf, &have, &f);
		}
		msg[0] = CH_DATA;
		memcpy(msg + 1, "late", 4);
		sframe(s, 1, OP_BIN, msg, 5);
		sframe(s, 1, OP_CLOSE, "\x03\xe8", 2);
		return;
	}
	/* "hello" as a fragmented message with a ping inside it */
	msg[0] = CH_DATA;
	memcpy(msg + 1, "he", 2);
	sframe(s, 0, OP_BIN, msg, 3);
	sframe(s, 1, OP_PING, "pp", 2);
	sframe(s, 1, OP_CONT, "llo", 3);
	/* the pong, then what the local side wrote ("world"), echoed */
	while (rframe(s, buf, sizeof(buf), &have, &f, sv) == 0) {
		if (f.op == OP_PONG && f.len == 2 && memcmp(f.payload, "pp", 2) == 0)
			sv->got_pong = 1;
		if (f.op == OP_BIN && f.len > 1 && f.payload[0] == CH_DATA) {
			size_t l = strlen(sv->got_data), c = (size_t)f.len - 1;
			if (l + c < sizeof(sv->got_data))
				memcpy(sv->got_data + l, f.payload + 1, c);
			/* echo it */
			sframe(s, 1, OP_BIN, f.payload, (size_t)f.len);
		}
		consume(buf, &have, &f);
		/* the pong may come after the data (read as soon as open) */
		if (strcmp(sv->got_data, "world") == 0 && sv->got_pong)
			break;
	}
	sframe(s, 1, OP_CLOSE, "\x03\xe8", 2);
	while (rframe(s, buf, sizeof(buf), &have, &f, sv) == 0) {
		if (f.op == OP_CLOSE) {
			sv->got_close = 1;
			break;
		}
		consume(buf, &have, &f);
	}
}

static void *
serve(void *arg)
{
	struct srv *sv = arg;
	int i, c;
	SSL *s;

	for (i = 0; i < sv->nmodes; i++) {
		if ((c = accept(sv->fd, NULL, NULL)) < 0)
			return NULL;
		s = SSL_new(sv->ctx);
		SSL_set_fd(s, c);
		if (SSL_accept(s) == 1)
			serve_one(sv, s, sv->modes[i]);
		SSL_shutdown(s);
		SSL_free(s);
		close(c);
	}
	return NULL;
}

struct result {
	int done, upgraded;
	char err[600];
	const char *transport;
	struct event_base *base;
};

static void
on_open(void *arg, const char *transport)
{
	struct result *r = arg;

	r->transport = transport;
}

static void
on_done(void *arg, int upgraded, const char *err)
{
	struct result *r = arg;

	r->done++;
	r->upgraded = upgraded;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
	event_base_loopexit(r->base, NULL);
}

static char *
b64(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc((n + 2) / 3 * 4 + 1);

	EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)s, (int)n);
	return o;
}

static void *
bulk_writer(void *arg)
{
	int fd = *(int *)arg;
	static char buf[64 << 10];
	size_t done = 0;
	ssize_t n;

	memset(buf, 'b', sizeof(buf));
	while (done < BULK && (n = write(fd, buf, sizeof(buf))) > 0)
		done += (size_t)n;
	shutdown(fd, SHUT_WR);
	return NULL;
}

/* One kb_pf_open against the server in modes; local gets what came. */
static void
run(struct srv *sv, struct result *r, char *local, size_t locallen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct kb_kubeconfig *kc;
	struct timeval tv = { 10, 0 };
	char yaml[8192], err[512], *ca64 = b64(srv_pem);
	pthread_t th, wt;
	int sp[2], n, len = 0;
	struct kb_pf *pf;

	memset(r, 0, sizeof(*r));
	sv->got_pong = sv->got_close = 0;
	sv->all_masked = 1;
	sv->got_data[0] = '\0';
	sv->fd = socket(AF_INET, SOCK_STREAM, 0);
	bind(sv->fd, (struct sockaddr *)&sa, sizeof(sa));
	listen(sv->fd, 4);
	getsockname(sv->fd, (struct sockaddr *)&sa, &sl);
	pthread_create(&th, NULL, serve, sv);
	snprintf(yaml, sizeof(yaml), "current-context: c\ncontexts:\n- name: c\n"
	    "  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster:\n"
	    "    server: https://127.0.0.1:%d\n    certificate-authority-data: %s\n"
	    "users:\n- name: u\n  user: {token: tok-123}\n", ntohs(sa.sin_port), ca64);
	free(ca64);
	kc = kb_kubeconfig_load_buf(yaml, strlen(yaml), "mem", NULL, NULL, 0, err, sizeof(err));
	r->base = event_base_new();
	socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
	if (sv->modes[0] == M_BULK) {
		pthread_create(&wt, NULL, bulk_writer, &sp[1]);
	} else {
		write(sp[1], "world", 5);
		if (sv->modes[sv->nmodes - 1] == M_EOF || sv->modes[sv->nmodes - 1] == M_SPDY_EOF)
			shutdown(sp[1], SHUT_WR);
	}
	pf = kb_pf_open(r->base, kc, "ns1", "pod1", 8443, sp[0], on_done, r, err, sizeof(err));
	if (pf == NULL) {
		snprintf(r->err, sizeof(r->err), "open: %s", err);
	} else {
		kb_pf_options(pf, sv->v4only ? KB_PF_V4_ONLY : 0, on_open);
		event_base_loopexit(r->base, &tv);
		event_base_dispatch(r->base);
		if (!r->done)
			kb_pf_close(pf);
	}
	shutdown(sv->fd, SHUT_RDWR);
	pthread_join(th, NULL);
	if (sv->modes[0] == M_BULK)
		pthread_join(wt, NULL);
	close(sv->fd);
	fcntl(sp[1], F_SETFL, O_NONBLOCK);
	while (len < (int)locallen - 1 && (n = (int)read(sp[1], local + len, locallen - 1 - len)) > 0)
		len += n;
	local[len] = '\0';
	close(sp[1]);
	event_base_free(r->base);
	kb_kubeconfig_free(kc);
}

/* What one send takes from the queue: whole frames while they fit (a
 * send starts TLS records afresh: a full frame is two whole records). */
static void
test_wq_take(void)
{
	static unsigned char data[FRAME_FULL];
	struct kb_pf *pf = calloc(1, sizeof(*pf));
	int i;

	pf->wq = evbuffer_new();
	pf->st = PF_OPEN;
	ws_put_pre(pf->wq, 1, OP_PONG, NULL, 0, "pp", 2);
	for (i = 0; i < 3; i++)
		ws_put_pre(pf->wq, 1, OP_BIN, NULL, 0, data, FRAME_FULL - WS_HDR16);
	ok(evbuffer_get_length(pf->wq) == 8 + 3 * FRAME_FULL);
	/* the pong and one frame (two more would be 8 bytes over) */
	ok(wq_take(pf) == 8 + FRAME_FULL && pf->wbuf[0] == (0x80 | OP_PONG) &&
	    pf->wbuf[8] == (0x80 | OP_BIN));
	ok(wq_take(pf) == 2 * FRAME_FULL && evbuffer_get_length(pf->wq) == 0);
	evbuffer_free(pf->wq);
	free(pf);
}

static void
test_stream(void)
{
	struct srv sv = { 0 };
	struct result r;
	char local[256];

	srv_key = EVP_EC_gen("P-256");
	srv_x = X509_new();
	X509_set_version(srv_x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(srv_x), 1);
	X509_gmtime_adj(X509_getm_notBefore(srv_x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(srv_x), 86400);
	X509_set_pubkey(srv_x, srv_key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(srv_x), "CN", MBSTRING_ASC,
	    (const unsigned char *)"server", -1, -1, 0);
	X509_set_issuer_name(srv_x, X509_get_subject_name(srv_x));
	{
		X509V3_CTX c;
		X509_EXTENSION *e;
		X509V3_set_ctx(&c, srv_x, srv_x, NULL, NULL, 0);
		e = X509V3_EXT_conf_nid(NULL, &c, NID_subject_alt_name, "IP:127.0.0.1");
		X509_add_ext(srv_x, e, -1);
		X509_EXTENSION_free(e);
	}
	X509_sign(srv_x, srv_key, EVP_sha256());
	{
		BIO *b = BIO_new(BIO_s_mem());
		char *p;
		long n;
		PEM_write_bio_X509(b, srv_x);
		n = BIO_get_mem_data(b, &p);
		srv_pem = strndup(p, (size_t)n);
		BIO_free(b);
	}
	sv.ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(sv.ctx, srv_x);
	SSL_CTX_use_PrivateKey(sv.ctx, srv_key);

	/* data both ways, a fragmented message, ping, close handshake */
	sv.modes[0] = M_OK;
	sv.nmodes = 1;
	run(&sv, &r, local, sizeof(local));
	printf("# ok: err '%s' local '%s' server got '%s'\n", r.err, local, sv.got_data);
	ok(strstr(sv.req, "GET /api/v1/namespaces/ns1/pods/pod1/portforward?ports=8443 HTTP/1.1\r\n") != NULL);
	ok(strstr(sv.req, "\r\nAuthorization: Bearer tok-123\r\n") != NULL);
	ok(strstr(sv.req, "\r\nSec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io\r\n") != NULL);
	ok(strstr(sv.req, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
	ok(r.done == 1 && r.upgraded && r.err[0] == '\0');
	ok(strcmp(local, "helloworld") == 0);
	ok(strcmp(sv.got_data, "world") == 0 && sv.all_masked);
	ok(sv.got_pong);
	ok(sv.got_close);
	ok(r.transport && strcmp(r.transport, KB_PF_V4) == 0);

	/* KB_PF_V4_ONLY: v4.channel.k8s.io alone offered */
	sv.v4only = 1;
	run(&sv, &r, local, sizeof(local));
	ok(strstr(sv.req, "\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n") != NULL);
	ok(r.done == 1 && r.err[0] == '\0' && strcmp(local, "helloworld") == 0 &&
	    r.transport && strcmp(r.transport, KB_PF_V4) == 0);
	sv.v4only = 0;

	/* SPDY in the tunnel: streams as client-go's, a 3-byte window opened
	 * by an update, a ping, data over a fragmented message, echoed */
	sv.modes[0] = M_SPDY;
	run(&sv, &r, local, sizeof(local));
	printf("# spdy: err '%s' local '%s' server got '%s' syn %d window %u max %zu\n", r.err,
	    local, sv.got_data, sv.syn_ok, sv.client_window, sv.maxdata);
	ok(r.done == 1 && r.upgraded && r.err[0] == '\0' && r.transport &&
	    strcmp(r.transport, KB_PF_SPDY) == 0);
	ok(sv.syn_ok == 2 && sv.client_window == SPDY_RECV_WINDOW);
	ok(strcmp(local, "helloworld") == 0 && strcmp(sv.got_data, "world") == 0);
	ok(sv.maxdata == 3); /* the window held */
	ok(sv.got_pong && sv.err_fin && sv.got_close && sv.all_masked);

	/* the error stream's text, one line */
	sv.modes[0] = M_SPDY_ERR;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && r.upgraded && strcmp(r.err, "dial tcp: connection refused") == 0);
	ok(sv.got_close && local[0] == '\0');

	/* a half-close: the local EOF is a FIN; the answer after it arrives;
	 * the pod's reset after that is no error */
	sv.modes[0] = M_SPDY_EOF;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && r.upgraded && r.err[0] == '\0');
	ok(strcmp(sv.got_data, "world") == 0 && sv.data_fin && strcmp(local, "late") == 0 &&
	    sv.got_close);

	/* a wrong Sec-WebSocket-Accept */
	sv.modes[0] = M_BADKEY;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && !r.upgraded && strstr(r.err, "wrong Sec-WebSocket-Accept") != NULL);

	/* the API's refusal, one line */
	sv.modes[0] = M_403;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && !r.upgraded && strcmp(r.err, "HTTP 403: pods \"pod1\" is forbidden: "
	    "User \"bob\" cannot create resource \"pods/portforward\"") == 0);

	/* the kubelet's error channel */
	sv.modes[0] = M_ERRCH;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && r.upgraded && strcmp(r.err, "dial tcp: connection refused") == 0);
	ok(sv.got_close && local[0] == '\0');

	/* a frame over the limit */
	sv.modes[0] = M_OVERSIZE;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && strstr(r.err, "frame of 2097152 bytes") != NULL);

	/* a 401: credentials refreshed, one more try */
	sv.modes[0] = M_401;
	sv.modes[1] = M_OK;
	sv.nmodes = 2;
	run(&sv, &r, local, sizeof(local));
	printf("# 401 then ok: %d %d err %s local %s got %s pong %d close %d\n", r.done, r.upgraded, r.err, local, sv.got_data, sv.got_pong, sv.got_close);
	ok(r.done == 1 && r.upgraded && r.err[0] == '\0' && strcmp(local, "helloworld") == 0);

	/* the local side's EOF: its bytes, a close frame, and what the pod
	 * sends before the server's close still arrives */
	sv.modes[0] = M_EOF;
	sv.nmodes = 1;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && r.upgraded && r.err[0] == '\0');
	ok(strcmp(sv.got_data, "world") == 0 && sv.got_close && strcmp(local, "late") == 0);

	/* 3 MiB, then the local EOF at once: all of it before the close, in
	 * frames of 32 KiB (more than libevent's 4 KiB a read), not over */
	sv.modes[0] = M_BULK;
	sv.bulk = sv.bulk_max = 0;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && r.upgraded && r.err[0] == '\0');
	ok(sv.bulk == BULK && sv.got_close);
	printf("# bulk: largest frame %zu bytes\n", sv.bulk_max + WS_HDR16);
	ok(sv.bulk_max == 1 + CHUNK && sv.bulk_max + WS_HDR16 == FRAME_FULL);

	/* two 401s: the API's message */
	sv.nmodes = 2;
	sv.modes[0] = sv.modes[1] = M_401;
	run(&sv, &r, local, sizeof(local));
	ok(r.done == 1 && strcmp(r.err, "HTTP 401: Unauthorized") == 0);

	SSL_CTX_free(sv.ctx);
	X509_free(srv_x);
	EVP_PKEY_free(srv_key);
	free(srv_pem);
}

/* bad arguments: NULL, fd closed */
static void
test_args(void)
{
	char err[256];
	int sp[2];

	socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
	ok(kb_pf_open(NULL, NULL, "ns", "a/../b", 80, sp[0], NULL, NULL, err, sizeof(err)) == NULL &&
	    strstr(err, "bad pod"));
	ok(fcntl(sp[0], F_GETFD) == -1);
	close(sp[1]);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (getenv("KB_DEBUG"))
		log_init("test", KB_LOG_DEBUG);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	test_accept();
	test_framing();
	test_upgrade();
	test_args();
	test_wq_take();
	test_stream();
	curl_global_cleanup();
	printf("1..%d\n", ok_run);
	return ok_failed != 0;
}
