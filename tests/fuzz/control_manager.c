/* The manager's side for fuzz_control.c: the real session callbacks of
 * agent/manager.c, with agent/intercepts.c and agent/preview.c behind them.
 * Peers 0 and 1 are workstation daemons (users alice and bob), peer 2 a
 * sidecar; their certificates' identities are set as the TLS handshake would.
 * Only the cluster DNS is a double (answers from the loop, like c-ares). */
#include "../../agent/manager.c"
#include "../../agent/preview.c"

#include <sys/un.h>

#include "control.h"

static struct manager fm = { .domain = "cluster.local" };
static int lookups;

struct fz_lookup {
	resolver_cb cb;
	resolver_rr_cb rrcb;	/* a lookup of records */
	void *arg;
	int qtype;
	char name[256];
};

/* Records: a CNAME chain for "ext*", addresses, an SRV, a TXT. */
static void
lookup_answer_rr(struct fz_lookup *l, size_t n)
{
	struct resolver_rr rr[3];
	size_t nrr = 0;
	int local = n > 6 && !strcmp(l->name + n - 6, ".local");

	memset(rr, 0, sizeof(rr));
	if (!strncmp(l->name, "fail", 4) || !local) {
		l->rrcb(l->arg, !local && strncmp(l->name, "fail", 4) ? 3 : 2, NULL, 0, 0);
		return;
	}
	if (!strncmp(l->name, "ext", 3)) {
		snprintf(rr[nrr].name, sizeof(rr[nrr].name), "%s", l->name);
		rr[nrr].type = 5;
		snprintf(rr[nrr++].data, sizeof(rr[0].data), "web.default.svc.cluster.local");
	}
	snprintf(rr[nrr].name, sizeof(rr[nrr].name), "%s",
	    nrr ? "web.default.svc.cluster.local" : l->name);
	rr[nrr].type = (uint16_t)l->qtype;
	rr[nrr].ttl = 30;
	if (l->qtype == 1 || l->qtype == 28)
		snprintf(rr[nrr++].data, sizeof(rr[0].data), l->qtype == 1 ? "10.96.1.1" : "fd00::1");
	else if (l->qtype == 33)
		snprintf(rr[nrr++].data, sizeof(rr[0].data), "0 0 80 web.default.svc.cluster.local");
	else if (l->qtype == 16)
		snprintf(rr[nrr++].data, sizeof(rr[0].data), "026869");
	l->rrcb(l->arg, 0, rr, nrr, 30);
}

static void
lookup_answer(evutil_socket_t fd, short what, void *arg)
{
	struct fz_lookup *l = arg;
	const char *v4[] = { "10.96.1.1", "10.96.1.2" }, *out[] = { "192.0.2.1" }, *v6[] = { "fd00::1" };
	size_t n = strlen(l->name);

	(void)fd;
	(void)what;
	lookups--;
	if (n > 0 && l->name[n - 1] == '.')	/* absolute, as the daemon asks */
		l->name[--n] = '\0';
	if (l->rrcb) {
		lookup_answer_rr(l, n);
		free(l);
		return;
	}
	if (n > 6 && !strcmp(l->name + n - 6, ".local") && !strncmp(l->name, "out", 3))
		l->cb(l->arg, 0, out, 1, 30);
	else if (n > 6 && !strcmp(l->name + n - 6, ".local") && l->qtype == 28)
		l->cb(l->arg, 0, v6, 1, 30);
	else if (n > 6 && !strcmp(l->name + n - 6, ".local"))
		l->cb(l->arg, 0, v4, 2, 30);
	else if (!strncmp(l->name, "fail", 4))
		l->cb(l->arg, 2, NULL, 0, 0);
	else
		l->cb(l->arg, 3, NULL, 0, 0);
	free(l);
}

void
resolver_lookup(struct kb_resolver *r, const char *name, int qtype, resolver_cb cb, void *arg)
{
	struct timeval zero = { 0, 0 };
	struct fz_lookup *l;

	(void)r;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		abort();
	l->cb = cb;
	l->arg = arg;
	l->qtype = qtype;
	snprintf(l->name, sizeof(l->name), "%s", name);
	lookups++;
	if (event_base_once(fm.base, -1, EV_TIMEOUT, lookup_answer, l, &zero) < 0)
		abort();
}

void
resolver_lookup_rr(struct kb_resolver *r, const char *name, int qtype, resolver_rr_cb cb,
    void *arg)
{
	struct timeval zero = { 0, 0 };
	struct fz_lookup *l;

	(void)r;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		abort();
	l->rrcb = cb;
	l->arg = arg;
	l->qtype = qtype;
	snprintf(l->name, sizeof(l->name), "%s", name);
	lookups++;
	if (event_base_once(fm.base, -1, EV_TIMEOUT, lookup_answer, l, &zero) < 0)
		abort();
}

/* The manager's own setup is not run. */
struct kb_resolver *
resolver_new(struct event_base *base, const char *server, char *err, size_t errlen)
{
	(void)base;
	(void)server;
	snprintf(err, errlen, "not in the fuzzer");
	return NULL;
}

void
resolver_free(struct kb_resolver *r)
{
	(void)r;
}

static void
m_setup(struct event_base *base)
{
	char err[200];
	int lfd;

	fm.base = base;
	if (kb_cidr_parse("10.96.0.0/12", &fm.subnets[0]) < 0 ||
	    kb_cidr_parse("10.244.0.0/16", &fm.subnets[1]) < 0)
		abort();
	fm.nsubnets = 2;
	fm.namespaces[0] = "default";
	fm.namespaces[1] = "kube-system";
	fm.nnamespaces = 2;
	snprintf(fm.instance, sizeof(fm.instance), "0123456789abcdef0123456789abcdef");
	/* Intercepts of a workstation that left end at once. */
	if ((fm.icpts = icpt_new(base, 0)) == NULL)
		abort();
	if (preview_config("127.0.0.1:1", "https://preview.example.com", err, sizeof(err)) < 0)
		abort();
	/* As preview_start, without a store, listening on an unnamed Unix socket
	 * nobody connects to (the preview proxy has its own fuzzer). */
	pv.env = (struct preview_env){ .base = base, .domain = fm.domain, .allowed = addr_allowed,
	    .arg = &fm, .icpts = fm.icpts };
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&(struct sockaddr_un){ .sun_family = AF_UNIX },
	    sizeof(sa_family_t)) < 0 || listen(lfd, 1) < 0 ||
	    (pv.fresh = kb_pool_new(base, "previews: connections without a request", FRESH_MAX,
	    FRESH_PER_SRC, FIRST_REQUEST_MS, pv_expel, NULL, err, sizeof(err))) == NULL ||
	    (pv.listener = kb_listener_new(base, "preview listener", lfd, pv_accept, NULL)) == NULL)
		abort();
}

static void
m_start(int i, int fd)
{
	static const char *const names[] = { "alice", "bob", "web-7f9c" };
	struct kb_conn *conn;
	struct client *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		abort();
	c->m = &fm;
	c->refs = 1;
	snprintf(c->peer, sizeof(c->peer), "192.0.2.%d:40000", 10 + i);
	snprintf(c->name, sizeof(c->name), "%s", names[i]);
	snprintf(c->role, sizeof(c->role), "%s", i < 2 ? KB_ROLE_USER : KB_ROLE_SIDECAR);
	/* The sidecar's certificate binds it to web.default (its OU). */
	if (i == 2)
		snprintf(c->workload, sizeof(c->workload), "web.default");
	c->next = fm.clients;
	if (c->next)
		c->next->prevp = &c->next;
	c->prevp = &fm.clients;
	fm.clients = c;
	fm.nclients++;
	if ((conn = kb_conn_new(fm.base, fd, NULL, 1)) == NULL ||
	    (c->sess = kb_session_new(conn, 0, &session_cbs, c)) == NULL)
		abort();
}

static void
m_poke(void)
{
}

static int
m_ended(void)
{
	return fm.nclients == 0 && lookups == 0;
}

static void
m_finish(void)
{
	/* The intercepts' grace timers (0 ms) run; previews go. */
	fz_loop();
	while (!TAILQ_EMPTY(&pv.list))
		preview_free(TAILQ_FIRST(&pv.list));
}

const struct fz_side fz_manager = {
	.name = "manager",
	.npeers = 3,
	.setup = m_setup,
	.start = m_start,
	.poke = m_poke,
	.ended = m_ended,
	.finish = m_finish,
};
