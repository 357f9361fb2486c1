/* The daemon's side for fuzz_control.c: the real session callbacks of
 * daemon/tunnel.c (the manager's hello, "resolved", "result") with
 * daemon/control.c and daemon/intercept.c behind them. Peer 0 is the
 * manager. Once the session is up, the daemon has lookups and requests
 * waiting (ids 1, 2, ... in each input, from one counter), for the fuzzer
 * to answer. */
#define kb_mlink_dial fz_daemon_dial	/* no dial leaves the fuzzer */
#include "../../daemon/tunnel.c"

#include <stdlib.h>

#include "control.h"

/* A reconnect (the retry timer fired) stays pending until the input ends. */
void
fz_daemon_dial(struct kb_mlink *l)
{
	(void)l;
}
#include "daemon_doubles.h"

#define check(cond) do { if (!(cond)) abort(); } while (0)

static struct kbd fd_kbd;
static int inputs, lookups_asked, requests_asked;

static void
lookup_done(void *ctx, int rcode, const char *const *addrs, size_t n, uint32_t ttl)
{
	size_t i;

	(void)ctx;
	(void)rcode;
	(void)ttl;
	check(n <= 64 && (n == 0 || addrs));
	for (i = 0; i < n; i++)
		check(strlen(addrs[i]) < 1 << 20);
}

static void
request_done(void *ctx, const cJSON *res, const char *err)
{
	(void)ctx;
	check(res ? cJSON_IsObject(res) && !err : err && err[0]);
	if (res)
		check(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(res, "id")));
}

static void
d_setup(struct event_base *base)
{
	fd_kbd.base = base;
	fd_kbd.socket_path = "/nonexistent/kbridged.sock";
	snprintf(fd_kbd.instance_id, sizeof(fd_kbd.instance_id), "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz");
	if ((fd_kbd.tunnel = tunnel_new(&fd_kbd)) == NULL ||
	    (fd_kbd.tunnel->retry_ev = evtimer_new(base, retry, fd_kbd.tunnel)) == NULL)
		abort();
}

static void
d_start(int i, int fd)
{
	struct tunnel *d = fd_kbd.tunnel;
	struct kb_conn *conn;

	(void)i;
	/* Every other input is the first connect, the others a reconnect. */
	d->state = inputs++ % 2 ? KBD_RECONNECTING : KBD_CONNECTING;
	d->quitting = 0;
	d->next_id = 0;
	lookups_asked = requests_asked = 0;
	snprintf(d->cl.ns, sizeof(d->cl.ns), "default");
	snprintf(d->manager_instance, sizeof(d->manager_instance), "0123456789abcdef");
	if (!d->have_profile) {
		d->profile.manager = strdup("manager.example:7443");
		d->profile.name = strdup("alice");
		d->have_profile = 1;
	}
	if ((conn = kb_conn_new(fd_kbd.base, fd, NULL, 1)) == NULL ||
	    (d->sess = kb_session_new(conn, 1, &session_cbs, d)) == NULL ||
	    kb_session_send_hello(d->sess, link_hello(d)) < 0)
		abort();
}

static void
d_poke(void)
{
	struct tunnel *d = fd_kbd.tunnel;
	cJSON *m;

	if (!d->sess || !kb_session_ready(d->sess))
		return;
	if (lookups_asked < 3 && tunnel_resolve(d, lookups_asked ? "web.default" : "api",
	    1 + 27 * (lookups_asked == 1), lookup_done, NULL) == 0)
		lookups_asked++;
	if (requests_asked < 3 && (m = cJSON_CreateObject()) != NULL) {
		cJSON_AddStringToObject(m, "type", requests_asked ? "intercept" : "list");
		if (tunnel_request(d, m, request_done, NULL) == 0)
			requests_asked++;
	}
}

static int
d_ended(void)
{
	return fd_kbd.tunnel->sess == NULL;
}

static void
d_finish(void)
{
	evtimer_del(fd_kbd.tunnel->retry_ev);
	fz_trim_now(fd_kbd.base);
	check(!fd_kbd.tunnel->pending);
}

const struct fz_side fz_daemon = {
	.name = "daemon",
	.npeers = 1,
	.setup = d_setup,
	.start = d_start,
	.poke = d_poke,
	.ended = d_ended,
	.finish = d_finish,
};
