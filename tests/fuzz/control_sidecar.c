/* The sidecar's side for fuzz_control.c: the real session callbacks of
 * agent/sidecar.c (the manager's hello, "intercepts"). Peer 0 is the
 * manager. */
#define kb_mlink_dial fz_sidecar_dial	/* no dial leaves the fuzzer */
#include "../../agent/sidecar.c"

#include "control.h"

/* The fuzzer's sidecar (cmd_sidecar() would allocate it). */
static struct sidecar fz_sc;

/* A reconnect (the retry timer fired) stays pending until the input ends. */
void
fz_sidecar_dial(struct kb_mlink *l)
{
	(void)l;
}

static void
s_setup(struct event_base *base)
{
	fz_sc.base = base;
	fz_sc.workload = "web";
	fz_sc.ns = "default";
	fz_sc.protocol = "http";
	if ((fz_sc.retry = evtimer_new(base, retry, &fz_sc)) == NULL)
		abort();
}

static void
s_start(int i, int fd)
{
	struct kb_conn *conn;

	(void)i;
	if ((conn = kb_conn_new(fz_sc.base, fd, NULL, 1)) == NULL ||
	    (fz_sc.sess = kb_session_new(conn, 1, &session_cbs, &fz_sc)) == NULL ||
	    kb_session_send_hello(fz_sc.sess, link_hello(&fz_sc)) < 0)
		abort();
}

static void
s_poke(void)
{
	const struct sc_intercept *ic;
	size_t i;

	/* What the proxy looks up for each request. */
	for (i = 0; i < fz_sc.nicpts; i++)
		if ((ic = icpt_by_key(&fz_sc, fz_sc.icpts[i].key)) == NULL ||
		    ic->key != fz_sc.icpts[i].key || strlen(ic->id) > KB_OPEN_REF_MAX)
			abort();
	(void)icpt_global(&fz_sc);
}

static int
s_ended(void)
{
	return fz_sc.sess == NULL;
}

static void
s_finish(void)
{
	evtimer_del(fz_sc.retry);
	if (fz_sc.nicpts)
		abort();
}

const struct fz_side fz_sidecar = {
	.name = "sidecar",
	.npeers = 1,
	.setup = s_setup,
	.start = s_start,
	.poke = s_poke,
	.ended = s_ended,
	.finish = s_finish,
};
