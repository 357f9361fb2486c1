/* Two kbridge sessions on a socketpair, as a sidecar and a workstation
 * behind the manager: "sc" opens a stream per intercept upstream through
 * t_streams (the proxy's stream ops), "ws" accepts each with a socket to
 * the loopback port sp_port() names for the stream's ref, or refuses it
 * with the reason sp_port() gives. The including test defines, before
 * including this:
 *	static int sp_port(const char *ref, const char **why);
 * and may define SP_ACCEPTED(fd) (socket options for the workstation's
 * socket) and SP_OPENED(key) (counting opens). Needs evloop.h's base. */
#ifndef KB_TEST_SESSPAIR_H
#define KB_TEST_SESSPAIR_H

#include <sys/socket.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "conn.h"
#include "session.h"

#ifndef SP_ACCEPTED
#define SP_ACCEPTED(fd) ((void)(fd))
#endif
#ifndef SP_OPENED
#define SP_OPENED(key) ((void)(key))
#endif

static struct kb_session *sc_sess, *ws_sess;
static int ws_opens;

static void
ws_on_open(struct kb_session *s, struct kb_stream *st, const struct kb_open *o, void *arg)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	const char *why = "test: refused";
	int fd, port = sp_port(o->ref, &why);

	(void)s;
	(void)arg;
	ws_opens++;
	if (port == 0) {
		kb_stream_reset(st, KB_RST_REFUSED, why);
		return;
	}
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		if (fd != -1)
			close(fd);
		kb_stream_reset(st, KB_RST_REFUSED, "test: cannot connect");
		return;
	}
	SP_ACCEPTED(fd);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	kb_stream_accept(st, fd, NULL, NULL);
}

static int
ws_on_hello(struct kb_session *s, const cJSON *h, char *reason, size_t len, void *arg)
{
	(void)h;
	(void)reason;
	(void)len;
	(void)arg;
	return s == ws_sess ? kb_session_send_hello(s, cJSON_CreateObject()) : 0;
}

static void
ws_on_close(struct kb_session *s, const char *err, void *arg)
{
	(void)err;
	(void)arg;
	if (s == sc_sess)
		sc_sess = NULL;
	else
		ws_sess = NULL;
	kb_session_free(s);
}

static const struct kb_session_cbs ws_cbs = {
	.on_hello = ws_on_hello, .on_open = ws_on_open, .on_close = ws_on_close,
};

static struct kb_stream *
t_sopen(void *arg, uint64_t key, const struct kb_stream_cbs *cbs, void *cbarg, char *reason,
    size_t len)
{
	struct kb_open o = { .kind = KB_OPEN_INTERCEPT };
	struct kb_stream *st;

	(void)arg;
	SP_OPENED(key);
	snprintf(o.ref, sizeof(o.ref), "%llu", (unsigned long long)key);
	if (sc_sess == NULL || (st = kb_stream_open_cb(sc_sess, &o, cbs, cbarg)) == NULL) {
		snprintf(reason, len, "kbridge: no session");
		return NULL;
	}
	return st;
}

static const struct hp_stream_ops t_streams = {
	.open = t_sopen, .input = kb_stream_input, .eof = kb_stream_eof, .write = kb_stream_write,
	.shutdown = kb_stream_shutdown, .set_cbs = kb_stream_set_cbs, .reset = kb_stream_reset,
};

static int
sessions_ready(void *arg)
{
	(void)arg;
	return sc_sess && ws_sess && kb_session_ready(sc_sess) && kb_session_ready(ws_sess);
}

static int
no_session_streams(void *arg)
{
	struct kb_session_stats st;

	(void)arg;
	if (sc_sess == NULL)
		return 0;
	kb_session_stats(sc_sess, &st);
	return st.streams == 0;
}

/* Both sessions up on a new socketpair (the caller checks with ok()). */
static int
sessions_start(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		return 0;
	sc_sess = kb_session_new(kb_conn_new(base, sv[0], NULL, 1), 1, &ws_cbs, NULL);
	ws_sess = kb_session_new(kb_conn_new(base, sv[1], NULL, 1), 0, &ws_cbs, NULL);
	return sc_sess && ws_sess && kb_session_send_hello(sc_sess, cJSON_CreateObject()) == 0 &&
	    run_until(sessions_ready, NULL, 2000);
}

/* Both sessions gone. */
static void
sessions_stop(void)
{
	kb_session_free(sc_sess);
	kb_session_free(ws_sess);
	sc_sess = ws_sess = NULL;
}

#endif
