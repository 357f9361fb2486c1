/* libFuzzer target for the daemon's control API (daemon/control.c: HTTP/1.1
 * + JSON served by evhttp on its Unix socket, with daemon/intercept.c and
 * daemon/preview.c behind it): the input is what the CLI sends, then what the
 * manager answers to each request the daemon relays to it. The socket is the
 * real one (control_listen, in a temporary directory); the session to the
 * manager is a real one (daemon/tunnel.c) on a socketpair whose other end the
 * fuzzer holds. Any crash, leak or sanitizer report is a bug. Build and run
 * with `make fuzz`.
 *
 * Input: byte 0 flags (below); bytes 1-2: length of the CLI's part (little
 * endian); the CLI's part; then the manager's answers, each two bytes of
 * length and a JSON payload, sent in order, one for each control message the
 * daemon sends.
 *
 * Dialing the manager (POST /v1/connect, reconnects) is the one double
 * beyond the host's network setup: it fails from the loop, as an unreachable
 * manager would. */
#define kb_mlink_dial fz_mlink_dial	/* no dial leaves the fuzzer */
#include "../../daemon/tunnel.c"

#include <sys/un.h>

#include <fcntl.h>
#include <signal.h>

#include "daemon_doubles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define F_SESSION	0x01	/* connected to the manager before the CLI speaks */
#define F_FIXUP		0x02	/* answers get "type":"result" and the request's id */
#define F_PROFILE	0x04	/* the daemon has a profile and is reconnecting */
#define F_EOF		0x08	/* the CLI half-closes after its request */

#define check(cond) do { if (!(cond)) abort(); } while (0)

static struct event_base *fbase;
static struct kbd fd_kbd;
static char dir[] = "/tmp/fuzz_api.XXXXXX", sock[64];

static void
dial_failed(evutil_socket_t fd, short what, void *arg)
{
	struct kb_mlink *l = arg;

	(void)fd;
	(void)what;
	l->failed(l->arg, "connection refused (no manager in the fuzzer)");
}

void
fz_mlink_dial(struct kb_mlink *l)
{
	struct timeval zero = { 0, 0 };

	check(l->session && l->hello && l->up && l->failed);
	event_base_once(fbase, -1, EV_TIMEOUT, dial_failed, l, &zero);
}

static void
cleanup(void)
{
	unlink(sock);
	rmdir(dir);
}

static void
setup(void)
{
	struct kbd *d = &fd_kbd;
	char err[300];

	log_init("fuzz_api", getenv("FZ_DEBUG") ? KB_LOG_DEBUG : KB_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	fbase = event_base_new();
	if (!mkdtemp(dir))
		abort();
	snprintf(sock, sizeof(sock), "%s/kbridged.sock", dir);
	atexit(cleanup);
	d->base = fbase;
	d->socket_path = sock;
	snprintf(d->instance_id, sizeof(d->instance_id), "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz");
	if ((d->tunnel = tunnel_new(d)) == NULL ||
	    (d->tunnel->retry_ev = evtimer_new(fbase, retry, d->tunnel)) == NULL)
		abort();
	if (control_listen(d, 0, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
}

static void
loop(void)
{
	int i;

	for (i = 0; i < 4; i++)
		event_base_loop(fbase, EVLOOP_NONBLOCK);
}

static void
frame(int fd, uint8_t type, const void *p, size_t len)
{
	uint8_t hdr[KB_FRAME_HDR];

	kb_frame_header_encode(hdr, type, 0, (uint16_t)len);
	if (write(fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) || (len && write(fd, p, len) < 0))
		(void)0;
}

/* The manager's side: read what the daemon sent, answer each control
 * message with the input's next answer. */
static struct {
	int fd;
	uint8_t buf[1 << 17];
	size_t len;
	const uint8_t *ans;
	size_t anslen;
	uint8_t flags;
} mgr = { .fd = -1 };

static void
manager(void)
{
	struct kb_frame f;
	const char *err;
	cJSON *req, *a;
	size_t n;
	char *txt;
	ssize_t r;
	long k;

	while (mgr.fd >= 0 && (r = read(mgr.fd, mgr.buf + mgr.len, sizeof(mgr.buf) - mgr.len)) > 0)
		mgr.len += (size_t)r;
	while ((k = kb_frame_decode(mgr.buf, mgr.len, &f, &err)) > 0) {
		if (f.type == KB_F_CONTROL && mgr.anslen >= 2) {
			n = (size_t)mgr.ans[0] | (size_t)mgr.ans[1] << 8;
			mgr.ans += 2;
			mgr.anslen -= 2;
			if (n > mgr.anslen)
				n = mgr.anslen;
			a = NULL;
			if ((mgr.flags & F_FIXUP) &&
			    (req = cJSON_ParseWithLength((const char *)f.payload, f.len)) != NULL) {
				a = cJSON_ParseWithLength((const char *)mgr.ans, n);
				if (cJSON_IsObject(a)) {
					cJSON_DeleteItemFromObjectCaseSensitive(a, "type");
					cJSON_DeleteItemFromObjectCaseSensitive(a, "id");
					cJSON_AddStringToObject(a, "type", "result");
					cJSON_AddItemToObject(a, "id", cJSON_Duplicate(
					    cJSON_GetObjectItemCaseSensitive(req, "id"), 1));
				}
				cJSON_Delete(req);
			}
			if (cJSON_IsObject(a) && (txt = cJSON_PrintUnformatted(a)) != NULL) {
				frame(mgr.fd, KB_F_CONTROL, txt, strlen(txt));
				free(txt);
			} else {
				frame(mgr.fd, KB_F_CONTROL, mgr.ans, n);
			}
			cJSON_Delete(a);
			mgr.ans += n;
			mgr.anslen -= n;
		}
		memmove(mgr.buf, mgr.buf + k, mgr.len - (size_t)k);
		mgr.len -= (size_t)k;
	}
}

static void
session_up(void)
{
	static const char hello[] = "{\"proto\":1,\"software\":\"kbridge/0.1.0\","
	    "\"instance\":\"0123456789abcdef\",\"user\":\"alice\","
	    "\"cluster_domain\":\"cluster.local\",\"subnets\":[\"10.96.0.0/12\"],"
	    "\"namespaces\":[\"default\",\"kube-system\"]}";
	struct tunnel *d = fd_kbd.tunnel;
	struct kb_conn *conn;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	mgr.fd = sv[1];
	d->state = KBD_CONNECTING;
	if ((conn = kb_conn_new(fbase, sv[0], NULL, 1)) == NULL ||
	    (d->sess = kb_session_new(conn, 1, &session_cbs, d)) == NULL ||
	    kb_session_send_hello(d->sess, link_hello(d)) < 0)
		abort();
	frame(mgr.fd, KB_F_HELLO, hello, sizeof(hello) - 1);
	loop();
	check(d->state == KBD_CONNECTED);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct tunnel *d = fd_kbd.tunnel;
	char buf[65536];
	size_t clen, off = 0;
	int cli, round;
	ssize_t n;

	if (!fbase)
		setup();
	if (size < 3)
		return 0;
	mgr.flags = data[0];
	clen = (size_t)data[1] | (size_t)data[2] << 8;
	data += 3;
	size -= 3;
	if (clen > size)
		clen = size;
	mgr.ans = data + clen;
	mgr.anslen = size - clen;
	mgr.len = 0;

	d->quitting = 0;
	d->state = KBD_DISCONNECTED;
	d->next_id = 0;
	snprintf(d->cl.ns, sizeof(d->cl.ns), "default");
	if (mgr.flags & (F_SESSION | F_PROFILE)) {
		d->profile.manager = strdup("manager.example:7443");
		d->profile.name = strdup("alice");
		d->have_profile = 1;
	}
	if (mgr.flags & F_SESSION)
		session_up();
	else if (mgr.flags & F_PROFILE)
		d->state = KBD_RECONNECTING;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
	if ((cli = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(cli, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		abort();
	for (round = 0; round < 12; round++) {
		if (off < clen && (n = write(cli, data + off, clen - off)) > 0)
			off += (size_t)n;
		if (off == clen && (mgr.flags & F_EOF))
			shutdown(cli, SHUT_WR);
		loop();
		manager();
		loop();
		while ((n = read(cli, buf, sizeof(buf))) > 0)
			if (getenv("FZ_DEBUG"))
				fprintf(stderr, "%.*s", (int)n, buf);
	}
	/* The CLI goes, then the manager: nothing may be left waiting. */
	close(cli);
	loop();
	if (mgr.fd >= 0) {
		close(mgr.fd);
		mgr.fd = -1;
	}
	for (round = 0; round < 100 && d->sess; round++)
		loop();
	/* A connect waiting for a reconnect gets its outcome later; evhttp may
	 * not have noticed that its CLI left, and the answer must be safe. */
	control_connect_done(&fd_kbd, 0, "the manager is unreachable");
	loop();
	check(!d->sess && !d->pending);
	evtimer_del(d->retry_ev);
	/* What the daemon keeps between requests goes, so inputs do not mix. */
	intercept_shutdown(&fd_kbd);
	drop_profile(d);
	loop();
	fz_trim_now(fbase);
	return 0;
}
