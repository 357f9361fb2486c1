/* The sidecar's HTTP/2 routing (agent/h2route.c) in one process, on one
 * event_base, with real peers on loopback: h2r_request() on its own, then
 * connections accepted here and given to h2r_start(), whose upstreams are
 * real HTTP/2 servers (tests/e2e/grpcpeer.py, python3-grpcio: "app" for
 * key 0, "alice" for key 1 = x-dev: alice; nginx h2c for the upload
 * case), and whose clients are real programs (grpcpeer.py, curl, h2load)
 * run as children. Key 2 cannot be opened; key 3 is a port nobody
 * listens on. Every wait is bounded.
 *
 *   client --TCP--> [h2r_conn] --key 0--> app     --key 1--> alice
 *                              --key 2--> open() fails  --key 3--> refused
 *                              --key 5--> nginx without http2 (HTTP/1 only)
 */
#include "../../agent/h2route.c"

#include <sys/wait.h>

#include <malloc.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <strings.h>

#include <event2/listener.h>

#include <cjson/cJSON.h>

#include "conn.h"
#include "children.h"
#include "evloop.h"
#include "ok.h"

#define PY	"/usr/bin/python3"
#define PEER	"tests/e2e/grpcpeer.py"
#define SOCKBUF	(64 * 1024)
#define H1_WHY	"kbridge: the intercepting workstation's local app answered in HTTP/1, not " \
	"HTTP/2: it must speak HTTP/2 without TLS (h2c, prior knowledge), as a gRPC server does"

static int app_port, alice_port, nginx_port, refused_port, listen_port, h1_port;
static int conns_done, conns_live;
static uint64_t last_key;

/* --- h2r_request --- */

#define F(n, v) { n, v, sizeof(n) - 1, sizeof(v) - 1 }

static const char *
hdr(const struct hp_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (!strcasecmp(req->headers[i].name, name))
			return req->headers[i].value;
	return NULL;
}

static void
test_request(void)
{
	struct h2r_field good[] = {
		F(":method", "POST"), F(":scheme", "http"), F(":authority", "web:82"),
		F(":path", "/kb.Echo/Unary"), F("content-type", "application/grpc"),
		F("x-dev", "alice"), F("te", "trailers"),
	};
	struct h2r_field withhost[] = {
		F(":method", "GET"), F(":path", "/"), F(":authority", "a"), F("host", "b"),
	};
	struct h2r_field nopath[] = { F(":method", "GET"), F("x", "y") };
	struct h2r_field twice[] = { F(":method", "GET"), F(":path", "/"), F(":path", "/x") };
	struct h2r_field unknown[] = { F(":method", "GET"), F(":path", "/"), F(":protocol", "ws") };
	struct h2r_field empty[] = { F(":method", "GET"), F(":path", "/"), { "", "", 0, 0 } };
	struct hp_header h[16];
	struct hp_request req;
	char buf[512];

	ok(h2r_request(good, 7, &req, h, 16, buf, sizeof(buf)) == 0);
	ok(!strcmp(req.method, "POST") && !strcmp(req.target, "/kb.Echo/Unary"));
	ok(req.nheaders == 4);
	ok(hdr(&req, "x-dev") && !strcmp(hdr(&req, "x-dev"), "alice"));
	ok(hdr(&req, "host") && !strcmp(hdr(&req, "host"), "web:82"));
	ok(hdr(&req, ":path") == NULL && hdr(&req, ":authority") == NULL);
	ok(h2r_request(withhost, 4, &req, h, 16, buf, sizeof(buf)) == 0 &&
	    req.nheaders == 1 && !strcmp(hdr(&req, "host"), "b"));
	ok(h2r_request(nopath, 2, &req, h, 16, buf, sizeof(buf)) == -1);
	ok(h2r_request(twice, 3, &req, h, 16, buf, sizeof(buf)) == -1);
	ok(h2r_request(unknown, 3, &req, h, 16, buf, sizeof(buf)) == -1);
	ok(h2r_request(empty, 3, &req, h, 16, buf, sizeof(buf)) == -1);
	/* Too small a buffer, too few header slots: refused, not overrun. */
	ok(h2r_request(good, 7, &req, h, 16, buf, 40) == -1);
	ok(h2r_request(good, 7, &req, h, 2, buf, sizeof(buf)) == -1);
}

/* --- the upstreams --- */

static uint64_t
route(void *arg, const struct hp_request *req, struct hp_route *r)
{
	const char *v = hdr(req, "x-dev");

	(void)arg;
	(void)r;
	last_key = 0;
	if (v != NULL && !strcmp(v, "alice"))
		last_key = 1;
	else if (v != NULL && !strcmp(v, "nobody"))
		last_key = 2;
	else if (v != NULL && !strcmp(v, "refused"))
		last_key = 3;
	else if (v != NULL && !strcmp(v, "nginx"))
		last_key = 4;
	else if (v != NULL && !strcmp(v, "h1"))
		last_key = 5;
	return last_key;
}

static int
port_socket(int port, char *reason, size_t len)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 &&
	    errno != EINPROGRESS)) {
		snprintf(reason, len, "connect: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int
open_up(void *arg, uint64_t key, char *reason, size_t len)
{
	(void)arg;
	switch (key) {
	case 0:
		return port_socket(app_port, reason, len);
	case 1:
		return port_socket(alice_port, reason, len);
	case 3:
		return port_socket(refused_port, reason, len);
	case 4:
		return port_socket(nginx_port, reason, len);
	case 5:
		return port_socket(h1_port, reason, len);
	default:
		snprintf(reason, len, "kbridge: no such upstream");
		return -1;
	}
}

static void
done(void *arg, struct hp_conn *c)
{
	(void)arg;
	(void)c;
	conns_done++;
	conns_live--;
}

static const struct hp_upstreams ups = {
	.route = route, .open = open_up, .done = done, .pass = 1,
};

static void
accepted(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	evutil_make_socket_nonblocking(fd);
	if (h2r_start(base, fd, NULL, 0, arg != NULL ? arg : &ups) == -1) {
		close(fd);
		return;
	}
	conns_live++;
}

/* --- children --- */

struct child {
	pid_t pid;
	int status, exited;
};

static int
child_exited(void *arg)
{
	struct child *ch = arg;

	if (!ch->exited && waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid)
		ch->exited = 1;
	return ch->exited;
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Run argv as a client while the loop serves it; its output in buf. */
static int
client(char *const argv[], char *buf, size_t len, int ms)
{
	static const char out[] = "build/tests/h2route.client.out";
	struct child ch = { 0 };
	struct timeval tv = { 0, 20000 };
	struct event *tick = event_new(base, -1, EV_PERSIST, poll_cb, NULL);
	ssize_t n;
	int fd;

	event_add(tick, &tv);	/* wakes the loop to look at the child */
	ch.pid = spawn(argv, out);
	if (!run_until(child_exited, &ch, ms)) {
		kill(ch.pid, SIGKILL);
		waitpid(ch.pid, &ch.status, 0);
		ch.status = -1;
	}
	event_free(tick);
	buf[0] = '\0';
	if ((fd = open(out, O_RDONLY)) >= 0) {
		n = read(fd, buf, len - 1);
		buf[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	return ch.status == -1 ? -1 : WIFEXITED(ch.status) ? WEXITSTATUS(ch.status) : -1;
}

static int
listening(int port)
{
	char r[64];
	int fd = port_socket(port, r, sizeof(r)), e = 0;
	socklen_t sl = sizeof(e);
	fd_set w;
	struct timeval tv = { 1, 0 };

	if (fd < 0)
		return 0;
	FD_ZERO(&w);
	FD_SET(fd, &w);
	if (select(fd + 1, NULL, &w, NULL, &tv) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0)
		e = -1;
	close(fd);
	return e == 0;
}

static pid_t
server(const char *name, int port)
{
	char addr[64], out[128];
	char *argv[] = { PY, PEER, "serve", (char *)name, addr, NULL };
	int i;
	pid_t pid;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(out, sizeof(out), "build/tests/h2route.%s.log", name);
	pid = spawn(argv, out);
	for (i = 0; i < 100 && !listening(port); i++)
		usleep(100000);
	return pid;
}

/* An app that forges the sidecar's mark (h1h2.h) on a 502, and shows
 * the one its client sent (x-got): neither gets through. */
#define FORGE "default_type text/plain; add_header kbridge-upstream-proto not-h2c always; " \
	"add_header x-got \"$http_kbridge_upstream_proto\" always;"

static pid_t
nginx(const char *dir)
{
	char conf[256], cmd[1024], cwd[512];
	FILE *f;
	int i;

	snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
	if ((f = fopen(conf, "w")) == NULL)
		return -1;
	fprintf(f, "worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/error.log;\n"
	    "events { worker_connections 64; }\n"
	    "http { access_log off; client_body_temp_path %s/body; proxy_temp_path %s/p;\n"
	    " fastcgi_temp_path %s/f; uwsgi_temp_path %s/u; scgi_temp_path %s/s;\n"
	    " server { listen 127.0.0.1:%d http2;\n"
	    "  location = /big.bin { alias %s/build/tests/h2route.big.bin; }\n"
	    "  location = /forge { %s return 502 \"forged over h2c\"; }\n"
	    "  location / { default_type text/plain; return 200 \"hello over h2c\"; } }\n"
	    " server { listen 127.0.0.1:%d;\n"
	    "  location = /forge { %s return 502 \"forged over http/1\"; }\n"
	    "  location / { return 200 \"hello over http/1\"; } } }\n",
	    dir, dir, dir, dir, dir, dir, dir, nginx_port, getcwd(cwd, sizeof(cwd)), FORGE,
	    h1_port, FORGE);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "-p%s/", dir);
	{
		char *argv[] = { "/usr/sbin/nginx", cmd, "-c", conf, "-e", "/dev/null", NULL };
		char out[300];
		pid_t pid;

		snprintf(out, sizeof(out), "%s/out.log", dir);
		pid = spawn(argv, out);
		for (i = 0; i < 100 && !(listening(nginx_port) && listening(h1_port)); i++)
			usleep(100000);
		return pid;
	}
}

static int
no_conns(void *arg)
{
	(void)arg;
	return conns_live == 0;
}

/* --- a client of our own (nghttp2): many streams at once, or one that
 * never reads --- */

struct rawcl {
	int fd;
	nghttp2_session *sess;
	struct event *rev;
	int responses, refused, closed, goaway, eof;
	size_t bytes;
	const char *body;
	size_t bodylen;
};

static ssize_t
raw_body(nghttp2_session *sess, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
    nghttp2_data_source *src, void *ud)
{
	struct rawcl *r = ud;

	(void)sess;
	(void)sid;
	(void)src;
	if (len > r->bodylen)
		len = r->bodylen;
	memcpy(buf, r->body, len);
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	return len;
}

static int
raw_frame(nghttp2_session *sess, const nghttp2_frame *f, void *ud)
{
	struct rawcl *r = ud;

	(void)sess;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE)
		r->responses++;
	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code == NGHTTP2_NO_ERROR)
		r->goaway++;
	return 0;
}

static int
raw_data(nghttp2_session *sess, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
    void *ud)
{
	struct rawcl *r = ud;

	(void)flags;
	(void)data;
	r->bytes += len;
	nghttp2_session_consume(sess, sid, 0);
	return 0;
}

static int
raw_close(nghttp2_session *sess, int32_t sid, uint32_t code, void *ud)
{
	struct rawcl *r = ud;

	(void)sess;
	(void)sid;
	if (code == NGHTTP2_REFUSED_STREAM)
		r->refused++;
	else
		r->closed++;
	return 0;
}

static void
raw_send(struct rawcl *r)
{
	const uint8_t *p;
	ssize_t n, w;

	while ((n = nghttp2_session_mem_send(r->sess, &p)) > 0)
		while (n > 0) {
			if ((w = write(r->fd, p, n)) < 0) {
				if (errno != EAGAIN)
					return;
				usleep(1000);
				continue;
			}
			p += w;
			n -= w;
		}
}

static void
raw_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rawcl *r = arg;
	uint8_t buf[16384];
	ssize_t n;

	(void)what;
	if ((n = read(fd, buf, sizeof(buf))) > 0)
		nghttp2_session_mem_recv(r->sess, buf, n);
	else if (n == 0 || errno != EAGAIN) {
		r->eof = 1;
		event_del(r->rev);
	}
	raw_send(r);
}

static int
raw_open(struct rawcl *r, int reads)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	char reason[64];

	memset(r, 0, sizeof(*r));
	if ((r->fd = port_socket(listen_port, reason, sizeof(reason))) < 0 ||
	    nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
		return -1;
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, raw_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, raw_close);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, raw_data);
	/* Not the default 100 until the server says: all streams go at once. */
	nghttp2_option_set_peer_max_concurrent_streams(opt, 1000);
	if (nghttp2_session_client_new2(&r->sess, cbs, r, opt) != 0)
		return -1;
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_submit_settings(r->sess, NGHTTP2_FLAG_NONE, NULL, 0);
	r->rev = event_new(base, r->fd, EV_READ | EV_PERSIST, raw_read_cb, r);
	if (reads)
		event_add(r->rev, NULL);
	return 0;
}

static void
raw_close_all(struct rawcl *r)
{
	if (r->rev != NULL)
		event_free(r->rev);
	if (r->sess != NULL)
		nghttp2_session_del(r->sess);
	if (r->fd >= 0)
		close(r->fd);
}

static int32_t
raw_call(struct rawcl *r, const char *method, const char *dev)
{
	char path[64];
	nghttp2_data_provider prd = { .read_callback = raw_body };
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"web", 10, 3, 0 },
		{ (uint8_t *)":path", (uint8_t *)path, 5, 0, 0 },
		{ (uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0 },
		{ (uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0 },
		{ (uint8_t *)"x-dev", (uint8_t *)dev, 5, dev ? strlen(dev) : 0, 0 },
	};

	nv[3].valuelen = snprintf(path, sizeof(path), "/kb.Echo/%s", method);
	return nghttp2_submit_request(r->sess, NULL, nv, dev ? 7 : 6, &prd, NULL);
}

static int
raw_all_closed(void *arg)
{
	struct rawcl *r = arg;

	return r->refused + r->closed == 150;
}

static int
raw_one_closed(void *arg)
{
	struct rawcl *r = arg;

	return r->closed == 1;
}

/* 150 streams at once on one connection, before our SETTINGS arrive:
 * 100 are served, the others refused (the client may retry them). */
static void
test_max_streams(void)
{
	struct rawcl r;
	int i;

	if (raw_open(&r, 1) == -1) {
		ok(0);
		return;
	}
	r.body = "\0\0\0\0\0011";	/* Slow: 1 s */
	r.bodylen = 6;
	for (i = 0; i < 150; i++)
		raw_call(&r, "Slow", NULL);
	raw_send(&r);
	ok(run_until(raw_all_closed, &r, 20000));
	ok(r.refused == 50 && r.responses == 100);
	if (r.refused != 50 || r.responses != 100)
		printf("# refused %d, responses %d, closed %d\n", r.refused, r.responses, r.closed);
	raw_close_all(&r);
}

static size_t
heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks;
}

/* A client that asks for 6 GiB and never reads: what the proxy holds for
 * it stays within its windows, and the app is held back. Then it goes. */
static void
test_never_reads(void)
{
	struct rawcl r;
	size_t before, after;
	int i, rcv = SOCKBUF;

	/* A client that reads gets a flood of 50 x 64 KiB whole. */
	if (raw_open(&r, 1) == -1) {
		ok(0);
		return;
	}
	r.body = "\0\0\0\0\00250";
	r.bodylen = 7;
	raw_call(&r, "Flood", NULL);
	raw_send(&r);
	ok(run_until(raw_one_closed, &r, 20000) && r.responses == 1 &&
	    r.bytes == 50 * (65536 + 5));
	raw_close_all(&r);

	before = heap_used();
	if (raw_open(&r, 0) == -1) {
		ok(0);
		return;
	}
	setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	r.body = "\0\0\0\0\00599999";	/* Flood: 99999 x 64 KiB */
	r.bodylen = 10;
	for (i = 0; i < 4; i++)
		raw_call(&r, "Flood", i % 2 ? "alice" : NULL);
	raw_send(&r);
	run_for(3000);
	after = heap_used();
	ok(after < before + 8 * 1024 * 1024);
	printf("# heap grew by %zu KiB for a client that never reads 4 floods\n",
	    after > before ? (after - before) / 1024 : 0);
	raw_close_all(&r);
	run_for(200);
	ok(run_until(no_conns, NULL, 10000));
}

static int
raw_eof(void *arg)
{
	return ((struct rawcl *)arg)->eof;
}

/* No stream for h2r_idle_ms: GOAWAY (NO_ERROR), then the connection
 * closes; a stream that runs longer than that keeps it. */
static void
test_idle(void)
{
	struct rawcl r;
	int live;

	h2r_idle_ms = 300;
	if (raw_open(&r, 1) == -1) {
		ok(0);
		return;
	}
	r.body = "\0\0\0\0\003one";
	r.bodylen = 8;
	raw_call(&r, "Unary", NULL);
	raw_send(&r);
	ok(run_until(raw_one_closed, &r, 10000) && r.responses == 1);
	live = conns_live;
	ok(run_until(raw_eof, &r, 3000) && r.goaway == 1);
	ok(run_until(no_conns, NULL, 3000) && live == 1);
	raw_close_all(&r);

	/* Slow: 1 s, more than three idle times, on a connection with nothing else. */
	if (raw_open(&r, 1) == -1) {
		ok(0);
		return;
	}
	r.body = "\0\0\0\0\0011";
	r.bodylen = 6;
	raw_call(&r, "Slow", "alice");
	raw_send(&r);
	ok(run_until(raw_one_closed, &r, 10000) && r.responses == 1 && r.goaway == 0);
	ok(run_until(raw_eof, &r, 3000) && r.goaway == 1);
	raw_close_all(&r);
	h2r_idle_ms = H2R_IDLE_MS;
	ok(run_until(no_conns, NULL, 3000));
}

static void
test_b64url(void)
{
	uint8_t b[18];

	ok(h2r_b64url("AAMAAABkAAQCAAAAAAIAAAAA", b, sizeof(b)) == 18 &&
	    !memcmp(b, "\0\3\0\0\0\144\0\4\2\0\0\0\0\2\0\0\0\0", 18));
	ok(h2r_b64url("", b, sizeof(b)) == 0);
	ok(h2r_b64url("_-8", b, sizeof(b)) == 2 && b[0] == 0xff && b[1] == 0xef);
	ok(h2r_b64url("QQ==", b, sizeof(b)) == 1 && b[0] == 'A');
	ok(h2r_b64url("QR", b, sizeof(b)) == -1);	/* left-over bits set */
	ok(h2r_b64url("Q", b, sizeof(b)) == -1);	/* 6 bits: no byte */
	ok(h2r_b64url("AA+A", b, sizeof(b)) == -1);	/* base64, not base64url */
	ok(h2r_b64url("QQ==x", b, sizeof(b)) == -1);
	ok(h2r_b64url("AAAAAAAAAAAAAAAAAAAAAAAAAA", b, sizeof(b)) == -1);	/* 18 + 1 > 18 */
}

/* An HTTP/1.1 head read here by hand (as httpproxy.c would parse it),
 * then given to h2r_upgrade() with the bytes after it. */
static void
up_accepted(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	static char buf[8192];
	struct hp_header h[32];
	struct hp_request req = { 0 };
	char *line, *end = NULL, *save, *colon;
	size_t len = 0, nh = 0;
	uint64_t bodylen = 0;
	ssize_t n;
	int i;

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	for (i = 0; i < 200 && (end = memmem(buf, len, "\r\n\r\n", 4)) == NULL; i++) {
		if ((n = read(fd, buf + len, sizeof(buf) - len - 1)) > 0)
			len += n;
		else
			usleep(10000);
	}
	evutil_make_socket_nonblocking(fd);
	if (end == NULL) {
		close(fd);
		return;
	}
	*end = '\0';
	req.method = strtok_r(buf, " ", &save);
	req.target = strtok_r(NULL, " ", &save);
	strtok_r(NULL, "\r\n", &save);
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL && nh < 32) {
		if ((colon = strchr(line, ':')) == NULL)
			continue;
		*colon++ = '\0';
		h[nh].name = line;
		h[nh++].value = colon + strspn(colon, " ");
		if (!strcasecmp(line, "content-length"))
			bodylen = strtoull(h[nh - 1].value, NULL, 10);
	}
	req.headers = h;
	req.nheaders = nh;
	req.upgrade = 1;
	if (h2r_upgrade(base, fd, &req, bodylen, end + 4, buf + len - (end + 4), &ups) == -1) {
		close(fd);
		return;
	}
	conns_live++;
}

/* curl --http2 (Upgrade: h2c): the upgrade request is stream 1, routed
 * like any other, with its body; later requests on the connection too. */
static void
test_upgrade(void)
{
	char url[128], url2[128], buf[8192];
	char *get[] = { "/usr/bin/curl", "-sS", "-m", "10", "--http2", "-H", "x-dev: nginx",
	    "-w", " %{http_version} %{http_code}", url, NULL };
	char *two[] = { "/bin/bash", "-c", "f=build/tests/h2route.up; curl -sS -m 10 --http2 "
	    "-H 'content-type: application/grpc' -H 'te: trailers' -H 'x-dev: alice' "
	    "--data-binary @build/tests/h2route.req.bin -o $f.1 -w '%{num_connects}\\n' \"$0\" "
	    "--next --http2 -H 'content-type: application/grpc' -H 'te: trailers' "
	    "--data-binary @build/tests/h2route.req.bin -o $f.2 -w '%{num_connects} "
	    "%{http_version}\\n' \"$0\" && tail -c +6 $f.1 && echo && tail -c +6 $f.2", url2, NULL };
	char *nobody[] = { "/usr/bin/curl", "-sS", "-m", "10", "--http2", "-H", "x-dev: nobody",
	    "-w", " %{http_version} %{http_code}", url, NULL };
	struct evconnlistener *l;
	struct sockaddr_in sin = { .sin_family = AF_INET }, a;
	socklen_t al = sizeof(a);
	int rc;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = evconnlistener_new_bind(base, up_accepted, NULL, LEV_OPT_CLOSE_ON_FREE |
	    LEV_OPT_REUSEABLE, 64, (struct sockaddr *)&sin, sizeof(sin));
	ok(l != NULL);
	if (l == NULL)
		return;
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&a, &al);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", ntohs(a.sin_port));
	snprintf(url2, sizeof(url2), "http://127.0.0.1:%d/kb.Echo/Unary", ntohs(a.sin_port));
	rc = client(get, buf, sizeof(buf), 15000);
	ok(rc == 0 && !strcmp(buf, "hello over h2c 2 200"));
	if (rc != 0 || strcmp(buf, "hello over h2c 2 200"))
		printf("# %d %s\n", rc, buf);
	rc = client(two, buf, sizeof(buf), 15000);
	ok(rc == 0 && !strcmp(buf, "1\n0 2\nalice: hi\napp: hi"));
	if (rc != 0 || strcmp(buf, "1\n0 2\nalice: hi\napp: hi"))
		printf("# %d %s\n", rc, buf);
	rc = client(nobody, buf, sizeof(buf), 15000);
	ok(rc == 0 && !strcmp(buf, "kbridge: no such upstream\n 2 502"));
	evconnlistener_free(l);
}

/* --- the live cases --- */

static void test_stream_ups(void);

static void
test_live(void)
{
	char target[64], url[128], buf[8192], ndir[] = "/tmp/kb-h2route.XXXXXX";
	const char *p;
	char *unary_a[] = { PY, PEER, "call", target, "Unary", "hi", "x-dev=alice", NULL };
	char *unary_p[] = { PY, PEER, "call", target, "Unary", "hi", NULL };
	char *mixed[] = { PY, PEER, "mixed", target, "300", "x-dev=alice", NULL };
	char *stream[] = { PY, PEER, "call", target, "Stream", "500", "x-dev=alice", NULL };
	char *fail[] = { PY, PEER, "call", target, "Fail", "x", NULL };
	char *slow[] = { PY, PEER, "call", target, "Slow", "3", "x-dev=alice",
	    "deadline=0.3", NULL };
	char *big[] = { PY, PEER, "call", target, "Big", "3000000", "x-dev=alice", NULL };
	char *nobody[] = { PY, PEER, "call", target, "Unary", "x", "x-dev=nobody", NULL };
	char *refused[] = { PY, PEER, "call", target, "Unary", "x", "x-dev=refused", NULL };
	char *h1grpc[] = { PY, PEER, "call", target, "Unary", "x", "x-dev=h1", NULL };
	char *h1curl[] = { "/usr/bin/curl", "-sS", "-m", "10", "--http2-prior-knowledge", "-H",
	    "x-dev: h1", "-w", "%{http_code}", url, NULL };
	/* the same, and gRPC, with the answer's head; a forged mark both ways */
	char *h1curl_i[] = { "/usr/bin/curl", "-sS", "-i", "-m", "10", "--http2-prior-knowledge",
	    "-H", "x-dev: h1", url, NULL };
	char *h1grpc_i[] = { "/usr/bin/curl", "-sS", "-i", "-m", "10", "--http2-prior-knowledge",
	    "-H", "x-dev: h1", "-H", "content-type: application/grpc", "-H", "te: trailers",
	    "--data-binary", "", url, NULL };
	char *forge[] = { "/usr/bin/curl", "-sS", "-i", "-m", "10", "--http2-prior-knowledge",
	    "-H", "x-dev: nginx", "-H", "kbridge-upstream-proto: not-http1", url, NULL };

	/* nghttp's frame log, the received frames of the stream only */
	char *upload[] = { "/bin/bash", "-c", "set -o pipefail; /usr/bin/nghttp -v -t 20 "
	    "-H 'x-dev: nginx' -d build/tests/h2route.up.bin \"$0\" | "
	    "grep -E -A1 'recv \\(stream_id=[0-9]+\\) :status|recv RST_STREAM'", url, NULL };
	char *down[] = { "/usr/bin/curl", "--limit-rate", "8M", "-sS", "-m", "15", "--http2-prior-knowledge",
	    "-o", "build/tests/h2route.down.bin", "-w", "%{http_code} %{size_download}",
	    "-H", "x-dev: nginx", url, NULL };
	char *load[] = { "/usr/bin/h2load", "-n", "2000", "-c", "4", "-m", "10", "-d",
	    "build/tests/h2route.req.bin", "-H", "content-type: application/grpc",
	    "-H", "te: trailers", "-H", "x-dev: alice", url, NULL };
	struct evconnlistener *l;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	pid_t app, alice, ng = -1;
	FILE *f;
	int rc, i;

	if (access(PY, X_OK) != 0 || system(PY " -c 'import grpc' 2>/dev/null") != 0) {
		skip_or_fail_tool("python3-grpcio is not installed");
		return;
	}
	if (access("/usr/bin/h2load", X_OK) != 0 || access("/usr/bin/curl", X_OK) != 0 ||
	    access("/usr/sbin/nginx", X_OK) != 0) {
		skip_or_fail_tool("h2load (nghttp2-client), curl or nginx is not installed");
		return;
	}
	app_port = free_port();
	alice_port = free_port();
	nginx_port = free_port();
	h1_port = free_port();
	refused_port = free_port();
	app = server("app", app_port);
	alice = server("alice", alice_port);

	/* 8 MiB: down from nginx; its first 900 KiB up to it */
	if ((f = fopen("build/tests/h2route.big.bin", "w")) != NULL) {
		for (i = 0; i < 8 * 1024 * 1024; i++)
			fputc((i * 7) ^ (i >> 11), f);
		fclose(f);
	}
	(void)system("head -c 921600 build/tests/h2route.big.bin >build/tests/h2route.up.bin");
	if (mkdtemp(ndir) != NULL)
		ng = nginx(ndir);
	ok(listening(app_port) && listening(alice_port) && listening(nginx_port) &&
	    listening(h1_port));

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = evconnlistener_new_bind(base, accepted, NULL, LEV_OPT_CLOSE_ON_FREE |
	    LEV_OPT_REUSEABLE, 64, (struct sockaddr *)&sin, sizeof(sin));
	ok(l != NULL);
	if (l == NULL)
		goto out;
	{
		struct sockaddr_in a;
		socklen_t al = sizeof(a);

		getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&a, &al);
		listen_port = ntohs(a.sin_port);
	}
	snprintf(target, sizeof(target), "127.0.0.1:%d", listen_port);

	rc = client(unary_a, buf, sizeof(buf), 10000);
	ok(rc == 0 && !strcmp(buf, "alice: hi\n"));
	rc = client(unary_p, buf, sizeof(buf), 10000);
	ok(rc == 0 && !strcmp(buf, "app: hi\n"));
	rc = client(mixed, buf, sizeof(buf), 30000);
	ok(rc == 0 && !strcmp(buf, "with alice 150\nwithout app 150\n"));
	rc = client(stream, buf, sizeof(buf), 20000);
	ok(rc == 0 && strstr(buf, "alice 0\n") == buf && strstr(buf, "\nalice 499\n") != NULL);
	rc = client(fail, buf, sizeof(buf), 10000);
	ok(rc == 3 && !strcmp(buf, "status INVALID_ARGUMENT: app says no\n"));
	rc = client(slow, buf, sizeof(buf), 10000);
	ok(rc == 3 && !strcmp(buf, "status DEADLINE_EXCEEDED: Deadline Exceeded\n"));
	rc = client(nobody, buf, sizeof(buf), 10000);
	ok(rc == 3 && !strcmp(buf, "status UNAVAILABLE: kbridge: no such upstream\n"));
	rc = client(refused, buf, sizeof(buf), 10000);
	ok(rc == 3 && !strncmp(buf, "status UNAVAILABLE: kbridge: cannot connect to the upstream:", 60));
	/* An upstream that speaks HTTP/1 only: named so, to gRPC and to curl. */
	rc = client(h1grpc, buf, sizeof(buf), 10000);
	ok(rc == 3 && !strcmp(buf, "status UNAVAILABLE: " H1_WHY "\n"));
	if (rc != 3 || strcmp(buf, "status UNAVAILABLE: " H1_WHY "\n"))
		printf("# %d %s\n", rc, buf);
	snprintf(url, sizeof(url), "http://%s/h1", target);
	rc = client(h1curl, buf, sizeof(buf), 10000);
	ok(rc == 0 && !strcmp(buf, H1_WHY "\n502"));
	/* ... marked for a preview's translator (h1h2.h), to gRPC too */
	rc = client(h1curl_i, buf, sizeof(buf), 10000);
	ok(rc == 0 && strstr(buf, " 502") != NULL &&
	    strstr(buf, "\r\n" H1H2_PROTO_HEADER ": " H1H2_NOT_H2C "\r\n") != NULL);
	snprintf(url, sizeof(url), "http://%s/kb.Echo/Unary", target);
	rc = client(h1grpc_i, buf, sizeof(buf), 10000);
	ok(rc == 0 && strstr(buf, "\r\ngrpc-status: 14\r\n") != NULL &&
	    strstr(buf, "\r\n" H1H2_PROTO_HEADER ": " H1H2_NOT_H2C "\r\n") != NULL);
	if (rc != 0 || strstr(buf, H1H2_PROTO_HEADER) == NULL)
		printf("# %d %s\n", rc, buf);
	/* An HTTP/2 app's (nginx h2c) forged mark does not get through, nor
	 * does the client's reach it. */
	snprintf(url, sizeof(url), "http://%s/forge", target);
	rc = client(forge, buf, sizeof(buf), 10000);
	ok(rc == 0 && strstr(buf, " 502") != NULL && strstr(buf, "forged over h2c") != NULL);
	ok(strcasestr(buf, H1H2_PROTO_HEADER) == NULL && strcasestr(buf, "x-got") == NULL);
	if (strcasestr(buf, H1H2_PROTO_HEADER) != NULL || strcasestr(buf, "x-got") != NULL)
		printf("# %s\n", buf);

	/* 900 KiB up to nginx, which answers without reading it, then resets
	 * the stream (NO_ERROR, RFC 9113 8.1): through the proxy the client
	 * gets the whole response, then the reset, and the stream ends.
	 * (curl 7.88 sometimes waits for ever there even with nginx alone:
	 * nghttp shows the frames.) */
	snprintf(url, sizeof(url), "http://%s/up", target);
	for (i = 0; i < 3; i++) {
		rc = client(upload, buf, sizeof(buf), 25000);
		p = strstr(buf, "recv RST_STREAM");
		ok(rc == 0 && strstr(buf, ":status: 200") != NULL && p != NULL &&
		    strstr(p, "error_code=NO_ERROR") != NULL);
		if (rc != 0)
			printf("# %d %s\n", rc, buf);
	}
	/* 8 MiB down from nginx, byte for byte, 5 times, to a client that reads
	 * at most 8 MB/s (the proxy waits for it, and must resume). */
	snprintf(url, sizeof(url), "http://%s/big.bin", target);
	for (i = 0; i < 5; i++) {
		rc = client(down, buf, sizeof(buf), 20000);
		ok(rc == 0 && !strcmp(buf, "200 8388608"));
		if (rc != 0 || strcmp(buf, "200 8388608"))
			printf("# %d %s\n", rc, buf);
	}
	ok(system("cmp -s build/tests/h2route.big.bin build/tests/h2route.down.bin") == 0);
	rc = client(big, buf, sizeof(buf), 30000);
	ok(rc == 0 && !strcmp(buf, "big 3000000 same\n"));
	if (rc != 0)
		printf("# %s\n", buf);

	/* Load: 2000 calls, 10 at once on each of 4 connections, to alice. */
	if ((f = fopen("build/tests/h2route.req.bin", "w")) != NULL) {
		fwrite("\0\0\0\0\2hi", 1, 7, f);
		fclose(f);
	}
	snprintf(url, sizeof(url), "http://%s/kb.Echo/Unary", target);
	rc = client(load, buf, sizeof(buf), 60000);
	ok(rc == 0 && strstr(buf, "2000 succeeded, 0 failed, 0 errored") != NULL &&
	    strstr(buf, "status codes: 2000 2xx") != NULL);

	test_max_streams();
	test_never_reads();
	test_upgrade();
	test_idle();
	test_stream_ups();

	/* Every connection ends when its client goes. */
	run_for(100);	/* what the last client left settles */
	ok(run_until(no_conns, NULL, 10000));
	ok(conns_done >= 12);
	evconnlistener_free(l);
out:
	kill(app, SIGKILL);
	kill(alice, SIGKILL);
	waitpid(app, NULL, 0);
	waitpid(alice, NULL, 0);
	if (ng > 0) {
		kill(ng, SIGTERM);
		waitpid(ng, NULL, 0);
	}
	snprintf(buf, sizeof(buf), "rm -rf %s", ndir);
	if (ndir[strlen(ndir) - 1] != 'X')
		(void)system(buf);
}

/* --- intercept upstreams over session streams (up.streams), as in the
 * sidecar: two sessions on a socketpair, "sc" opens a stream per upstream
 * (key 1: alice's gRPC server, 5: nginx without http2, 3: refused with a
 * reason), "ws" accepts it with a socket to that port, as the
 * workstation does. */

static int h1_noted[8], h1_cleared[8];

/* The workstation's ports: 1 alice's gRPC server, 5 nginx without http2,
 * anything else refused with a reason. */
static int
sp_port(const char *ref, const char **why)
{
	*why = "nothing answers on localhost:8089 (test)";
	return !strcmp(ref, "1") ? alice_port : !strcmp(ref, "5") ? h1_port : 0;
}

#include "sesspair.h"

static int
t_h1(void *arg, uint64_t key, int note)
{
	(void)arg;
	if (key >= 8)
		return 0;
	if (note > 0)
		h1_noted[key]++;
	else if (note < 0)
		h1_cleared[key]++;
	return h1_noted[key] > h1_cleared[key];
}

static const struct hp_upstreams ups_st = {
	.route = route, .open = open_up, .streams = &t_streams, .h1 = t_h1, .done = done,
	.pass = 1,
};

static void
test_stream_ups(void)
{
	char target[64], url[128], buf[8192];
	char *unary[] = { PY, PEER, "call", target, "Unary", "hi", "x-dev=alice", NULL };
	char *app[] = { PY, PEER, "call", target, "Unary", "hi", NULL };
	char *refused[] = { "/usr/bin/curl", "-sS", "-m", "10", "--http2-prior-knowledge", "-H",
	    "x-dev: refused", "-w", " %{http_code}", url, NULL };
	char *refused_grpc[] = { PY, PEER, "call", target, "Unary", "x", "x-dev=refused", NULL };
	/* (curl 7.88 fails a second request with --next on a prior-knowledge
	 * connection, whoever answers: one curl each.) */
	char *h1[] = { "/usr/bin/curl", "-sS", "-m", "10", "--http2-prior-knowledge", "-H",
	    "x-dev: h1", "-w", " %{http_code} %{http_version}", url, NULL };
	char *h1post[] = { "/usr/bin/curl", "-sS", "-m", "10", "--http2-prior-knowledge", "-H",
	    "x-dev: h1", "-w", " %{http_code}", "-d", "body", url, NULL };
	char *h1load[] = { "/usr/bin/h2load", "-n", "300", "-c", "2", "-m", "10", "-H",
	    "x-dev: h1", url, NULL };
	char *h1grpc[] = { PY, PEER, "call", target, "Unary", "x", "x-dev=h1", NULL };
	char *h1grpc_i[] = { "/usr/bin/curl", "-sS", "-i", "-m", "10", "--http2-prior-knowledge",
	    "-H", "x-dev: h1", "-H", "content-type: application/grpc", "-H", "te: trailers",
	    "--data-binary", "", url, NULL };
	char *forge[] = { "/usr/bin/curl", "-sS", "-i", "-m", "10", "--http2-prior-knowledge",
	    "-H", "x-dev: h1", "-H", "kbridge-upstream-proto: not-http1", url, NULL };
	struct sockaddr_in sin = { .sin_family = AF_INET }, a;
	socklen_t al = sizeof(a);
	struct evconnlistener *l;
	int rc, opens;

	ok(sessions_start());
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = evconnlistener_new_bind(base, accepted, (void *)&ups_st, LEV_OPT_CLOSE_ON_FREE |
	    LEV_OPT_REUSEABLE, 64, (struct sockaddr *)&sin, sizeof(sin));
	ok(l != NULL);
	if (l == NULL)
		return;
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&a, &al);
	snprintf(target, sizeof(target), "127.0.0.1:%d", ntohs(a.sin_port));
	snprintf(url, sizeof(url), "http://%s/s", target);

	/* HTTP/2 to alice over a stream; the app by its socket. */
	rc = client(unary, buf, sizeof(buf), 10000);
	ok(rc == 0 && !strcmp(buf, "alice: hi\n"));
	rc = client(app, buf, sizeof(buf), 10000);
	ok(rc == 0 && !strcmp(buf, "app: hi\n"));

	/* A refused stream: the workstation's reason, in the page and the status. */
	rc = client(refused, buf, sizeof(buf), 10000);
	ok(rc == 0 && !strcmp(buf, "kbridge: nothing answers on localhost:8089 (test)\n 502"));
	rc = client(refused_grpc, buf, sizeof(buf), 10000);
	ok(rc != 0 && strstr(buf, "status UNAVAILABLE: kbridge: nothing answers on "
	    "localhost:8089 (test)") == buf);
	if (strstr(buf, "status UNAVAILABLE: kbridge: nothing answers") != buf)
		printf("# %d %s\n", rc, buf);

	/* nginx without http2: found out on the first connection, noted once;
	 * GET and POST go as HTTP/1.1, one stream each. */
	ok(h1_noted[5] == 0);
	rc = client(h1load, buf, sizeof(buf), 30000);
	ok(rc == 0 && strstr(buf, "300 succeeded, 0 failed, 0 errored") != NULL &&
	    strstr(buf, "status codes: 300 2xx") != NULL);
	if (rc != 0 || strstr(buf, "300 succeeded") == NULL)
		printf("# %s\n", buf);
	ok(h1_noted[5] >= 1 && h1_noted[5] <= 2);	/* each connection may find out */
	opens = ws_opens;
	rc = client(h1, buf, sizeof(buf), 10000);
	ok(rc == 0 && !strcmp(buf, "hello over http/1 200 2"));
	rc = client(h1post, buf, sizeof(buf), 10000);
	ok(rc == 0 && !strcmp(buf, "hello over http/1 200"));
	if (rc != 0 || strcmp(buf, "hello over http/1 200"))
		printf("# %d %s\n", rc, buf);
	ok(ws_opens == opens + 2);	/* known: no HTTP/2 try first */
	/* gRPC asks again (it may be a gRPC server by now): still HTTP/1. */
	opens = ws_opens;
	rc = client(h1grpc, buf, sizeof(buf), 10000);
	ok(strstr(buf, "status UNAVAILABLE: " H2R_H1_GRPC) == buf);
	ok(ws_opens == opens + 1 && h1_cleared[5] == 0);
	/* ... marked for a preview's translator (h1h2.h) */
	rc = client(h1grpc_i, buf, sizeof(buf), 10000);
	ok(rc == 0 && strstr(buf, "\r\ngrpc-status: 14\r\n") != NULL &&
	    strstr(buf, "\r\n" H1H2_PROTO_HEADER ": " H1H2_NOT_H2C "\r\n") != NULL);
	/* The HTTP/1 app's forged mark does not get through, nor does the
	 * client's reach it. */
	snprintf(url, sizeof(url), "http://%s/forge", target);
	rc = client(forge, buf, sizeof(buf), 10000);
	ok(rc == 0 && strstr(buf, " 502") != NULL && strstr(buf, "forged over http/1") != NULL);
	ok(strcasestr(buf, H1H2_PROTO_HEADER) == NULL && strcasestr(buf, "x-got") == NULL);
	if (strcasestr(buf, H1H2_PROTO_HEADER) != NULL || strcasestr(buf, "x-got") != NULL)
		printf("# %s\n", buf);
	/* Alice's HTTP/2 server answers with SETTINGS: noted too. */
	ok(h1_cleared[1] >= 1 && h1_noted[1] == 0);

	/* Every stream ends with its client connection. */
	ok(run_until(no_conns, NULL, 10000));
	ok(run_until(no_session_streams, NULL, 5000));
	evconnlistener_free(l);
	sessions_stop();
}

/* --- HTTP/2 requests as HTTP/1.1 (an HTTP/1-only local app) --- */

#define NV(n, v) { (uint8_t *)n, (uint8_t *)v, sizeof(n) - 1, sizeof(v) - 1, 0 }

static int
head_is(const nghttp2_nv *nv, size_t n, int body, const char *want, int want_chunked)
{
	struct evbuffer *b = evbuffer_new();
	char got[1024];
	int chunked = -1, rc;
	size_t len;

	rc = h2r_h1_head(nv, n, body, b, &chunked);
	len = evbuffer_remove(b, got, sizeof(got) - 1);
	got[len] = '\0';
	evbuffer_free(b);
	if (want == NULL)
		return rc == -1;
	if (rc != 0 || strcmp(got, want) || chunked != want_chunked) {
		printf("# rc %d chunked %d:\n%s", rc, chunked, got);
		return 0;
	}
	return 1;
}

static void
test_h1_head(void)
{
	const nghttp2_nv get[] = {
		NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "web:8082"),
		NV(":path", "/a?b=1"), NV("cookie", "a=1"), NV("x-dev", "alice"),
		NV("te", "trailers"), NV("cookie", "b=2"), NV("connection", "x"),
		NV("keep-alive", "1"), NV("upgrade", "h2c"), NV("transfer-encoding", "chunked"),
	};
	const nghttp2_nv post[] = {
		NV(":method", "POST"), NV(":path", "/up"), NV("host", "h"), NV(":authority", "a"),
		NV("content-length", "3"),
	};
	const nghttp2_nv put[] = { NV(":method", "PUT"), NV(":path", "/p") };
	const nghttp2_nv nopath[] = { NV(":method", "GET"), NV(":authority", "a") };

	ok(head_is(get, 12, 0, "GET /a?b=1 HTTP/1.1\r\nHost: web:8082\r\nx-dev: alice\r\n"
	    "Cookie: a=1; b=2\r\nConnection: close\r\n\r\n", 0));
	/* A body of known length as it is; the host field before :authority. */
	ok(head_is(post, 5, 1, "POST /up HTTP/1.1\r\nHost: h\r\ncontent-length: 3\r\n"
	    "Connection: close\r\n\r\n", 0));
	/* A body of unknown length: chunked; no :authority: an empty Host. */
	ok(head_is(put, 2, 1, "PUT /p HTTP/1.1\r\nHost: \r\n"
	    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", 1));
	ok(head_is(nopath, 2, 0, NULL, 0));
	ok(h1_listed("keep-alive, X-Hop\0close", 24, "x-hop"));
	ok(h1_listed("keep-alive, X-Hop\0close", 24, "close"));
	ok(!h1_listed("keep-alive, X-Hop\0close", 24, "x-ho"));
	ok(!h1_listed("", 0, "x"));
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_init("test_h2route", 0);
	test_request();
	test_b64url();
	test_h1_head();
	base = event_base_new();
	test_live();
	event_base_free(base);
	return ok_done();
}
