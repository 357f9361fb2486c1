/* The manager: one per cluster. Accepts mutually authenticated sessions from
 * workstation daemons, dials cluster addresses for them (only inside the
 * cluster subnets: it is not an open proxy) and resolves cluster names. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "discovery.h"
#include "dial.h"
#include "client.h"
#include "identity.h"
#include "incluster.h"
#include "csr.h"
#include "enroll.h"
#include "intercepts.h"
#include "kubeapi.h"
#include "listener.h"
#include "log.h"
#include "httpproxy.h"
#include "manager.h"
#include "msg.h"
#include "preview.h"
#include "resolver.h"
#include "session.h"
#include "store.h"
#include "tls.h"
#include "util.h"
#include "webhooksrv.h"

#define MAX_SUBNETS 64
#define MAX_NAMESPACES 256
#define DIAL_TIMEOUT_S 5
/* Admission: a connection is unauthenticated until its hello (after the TLS
 * handshake) and waits in a pool of its own, so that connections that never
 * finish cannot take the slots of sessions. */
#define MAX_SESSIONS 4096	/* daemons and sidecars after their hello */
#define PREAUTH_MAX 256		/* connections before their hello */
#define PREAUTH_PER_SRC 32	/* of those from one address */
#define PREAUTH_TIMEOUT_MS 5000	/* for the TLS handshake and the hello */
/* Per session: connects in progress and lookups in flight. More are
 * refused at once (a reset, a REFUSED answer), so one session cannot hold
 * the manager's sockets, memory or resolver. */
#define MAX_DIALS 64
#define MAX_LOOKUPS 256
/* The newest log lines kept in memory for "logs" (kbridge gather-logs). */
#define LOG_RING_SIZE (256 * 1024)
/* The manager's own addresses, read again at most this often. */
#define OWN_MAX 64
#define OWN_REFRESH_MS 10000

struct manager {
	struct event_base *base;
	SSL_CTX *ctx;
	struct kb_listener *listener;
	struct kb_pool *preauth;
	size_t nsessions;
	struct kb_resolver *resolver;
	struct kb_cidr subnets[MAX_SUBNETS];
	size_t nsubnets;
	const char *namespaces[MAX_NAMESPACES];
	size_t nnamespaces;
	/* --in-cluster: the API tells subnets and namespaces (discovery). */
	struct kb_kube *kube;
	struct log_wait *log_waits;	/* daemons' "logs" waiting for a sidecar */
	unsigned log_seq;
	struct discovery *disc;
	struct csr_signer *csr;	/* developers' CertificateSigningRequests */
	struct enroller *enroll;	/* injected sidecars' certificates (webhook /enroll) */
	char *ns_owned[MAX_NAMESPACES]; /* what namespaces[] points to then */
	int have_subnets, have_namespaces;
	const char *domain;
	int domain_set;		/* --cluster-domain given */
	char domain_buf[256];
	size_t nclients;
	struct client *clients;
	int stopping;
	char instance[33];	/* this process: daemons see that we restarted */
	uint32_t own[OWN_MAX];	/* our interfaces' IPv4 addresses, host order */
	size_t nown;
	uint64_t own_at;	/* when they were read (0: never) */
	struct webhook_srv *webhook;	/* --webhook-listen: sidecar injection */
	struct icpt_reg *icpts;	/* the intercept registry */
};

/* A connect to a cluster address for a stream (kb_stream_dial). */
struct dial {
	struct client *c;
	char dst[64];
};

struct lookup {
	struct client *c;
	double id;
	int qtype;
};

/* A daemon's "logs" for a sidecar, asked of that sidecar as id sid. */
struct log_wait {
	struct log_wait *next;
	struct client *daemon, *sidecar;	/* a reference each */
	double id;
	unsigned sid;
	size_t replicas;		/* the workload's sidecars, for the answer */
	struct event *timer;
};

/* How long a sidecar has to answer "logs"; how many of a daemon's may
 * wait at once; how often it may read the manager's ring. */
#define SIDECAR_LOGS_MS 3000
#define LOG_WAITS_MAX 4
#define RING_LOGS_EVERY_MS 200

void
client_unref(struct client *c)
{
	if (--c->refs > 0)
		return;
	free(c);
}

const char *
client_user(const struct client *c)
{
	return strcmp(c->role, KB_ROLE_USER) == 0 && c->name[0] ? c->name : NULL;
}

/* At most this many debug lines a second for a session whose developer
 * asked for them: the ring is shared, and one developer's lines must not
 * push out the others'. The rest of the second's are not logged. */
#define SESSION_DEBUG_PER_S 50

int
client_debug(struct client *c)
{
	uint64_t s;

	if (log_level() >= KB_LOG_DEBUG)
		return 1;
	if (!c->debug)
		return 0;
	if ((s = kb_now_ms() / 1000) != c->debug_s) {
		c->debug_s = s;
		c->debug_n = 0;
	}
	if (c->debug_n >= SESSION_DEBUG_PER_S)
		return 0;
	c->debug_n++;
	return 1;
}

static void
client_gone(struct client *c)
{
	struct manager *m = c->m;

	if (c->prevp) {
		*c->prevp = c->next;
		if (c->next)
			c->next->prevp = c->prevp;
		c->prevp = NULL;
		m->nclients--;
	}
	kb_pool_remove(&c->pre);
	if (c->authed) {
		c->authed = 0;
		m->nsessions--;
	}
	client_unref(c);
}

static int
addr_allowed(void *arg, uint32_t a)
{
	const struct manager *m = arg;
	size_t i;

	for (i = 0; i < m->nsubnets; i++)
		if (kb_cidr_contains(&m->subnets[i], a))
			return 1;
	return 0;
}

static int
in_subnets(struct manager *m, const struct kb_open *o)
{
	if (o->family != 4)
		return 0;
	return addr_allowed(m, (uint32_t)o->addr[0] << 24 | (uint32_t)o->addr[1] << 16 |
	    (uint32_t)o->addr[2] << 8 | o->addr[3]);
}

/* Read our interfaces' addresses again if the list is old. On failure the
 * old list stays. */
static void
own_refresh(struct manager *m)
{
	struct ifaddrs *ifa, *i;
	uint64_t now = kb_now_ms();

	if (m->own_at && now - m->own_at < OWN_REFRESH_MS)
		return;
	m->own_at = now;
	if (getifaddrs(&ifa) < 0) {
		log_warn("%s: getifaddrs", __func__);
		return;
	}
	m->nown = 0;
	for (i = ifa; i && m->nown < OWN_MAX; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
			m->own[m->nown++] = ntohl(((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr);
	freeifaddrs(ifa);
}

/* Our own listeners (sessions, previews, whatever else the pod runs) are
 * no destination, even inside a cluster subnet: the tunnel must not reach
 * around them. */
static int
own_address(struct manager *m, uint32_t a)
{
	size_t i;

	if ((a >> 24) == 127 || (a >> 24) == 0)
		return 1;
	own_refresh(m);
	for (i = 0; i < m->nown; i++)
		if (m->own[i] == a)
			return 1;
	return 0;
}

/* Something of this session was refused: the first time one line, later
 * only counted (on_close reports the counts), so a peer cannot flood the log. */
static void
refused(struct client *c, unsigned long *count, const char *what)
{
	if ((*count)++ == 0)
		log_warnx_for(client_user(c), "session %s from %s: %s; more like it are counted "
		    "until the session ends", c->name, c->peer, what);
	else
		log_debug_for(client_user(c), client_debug(c), "session %s: %s", c->name, what);
}

/* --- dialing cluster addresses --- */

static void
stream_closed(struct kb_stream *st, int reason, const char *text, void *arg)
{
	(void)st;
	(void)arg;
	if (reason)
		log_debug("stream closed: %d %s", reason, text ? text : "");
}

static const struct kb_stream_cbs open_cbs = { .on_close = stream_closed };

/* The connect finished (err 0), failed (err an errno: say why in text), or
 * the stream was reset while we were still connecting (err < 0). */
static void
dial_done(void *arg, struct kb_stream *st, int err, char *text, size_t textlen)
{
	struct dial *dl = arg;

	dl->c->dials--;
	if (err < 0) {
		log_debug_for(client_user(dl->c), client_debug(dl->c), "session %s: dial to %s "
		    "cancelled", dl->c->name, dl->dst);
		free(dl);
		return;
	}
	kb_stream_set_cbs(st, &open_cbs, NULL);
	if (err == 0)
		log_debug_for(client_user(dl->c), client_debug(dl->c), "session %s: connected "
		    "to %s", dl->c->name, dl->dst);
	else if (err == ECONNREFUSED)
		snprintf(text, textlen, "connection to %s refused", dl->dst);
	else if (err == ETIMEDOUT)
		snprintf(text, textlen, "connect to %s timed out", dl->dst);
	else
		snprintf(text, textlen, "%s is unreachable: %s", dl->dst, strerror(err));
	if (err)
		log_debug_for(client_user(dl->c), client_debug(dl->c), "session %s: %s",
		    dl->c->name, text);
	free(dl);
}

static void
dial(struct client *c, struct kb_stream *st, const struct kb_open *o)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct dial *dl;
	char dst[64], text[160];

	kb_open_str(o, dst, sizeof(dst));
	if (!in_subnets(c->m, o)) {
		snprintf(text, sizeof(text), "%s is outside the cluster subnets", dst);
		refused(c, &c->denied, text);
		kb_stream_reset(st, KB_RST_DENIED, text);
		return;
	}
	if (own_address(c->m, (uint32_t)o->addr[0] << 24 | (uint32_t)o->addr[1] << 16 |
	    (uint32_t)o->addr[2] << 8 | o->addr[3])) {
		snprintf(text, sizeof(text), "%s is the kbridge manager's own address", dst);
		refused(c, &c->denied, text);
		kb_stream_reset(st, KB_RST_DENIED, text);
		return;
	}
	if (c->dials >= MAX_DIALS) {
		snprintf(text, sizeof(text),
		    "%s not tried: too many connections of this session being set up (limit %d)",
		    dst, MAX_DIALS);
		refused(c, &c->over_dials, text);
		kb_stream_reset(st, KB_RST_INTERNAL, text);
		return;
	}
	if ((dl = calloc(1, sizeof(*dl))) == NULL) {
		kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
		return;
	}
	c->dials++;
	dl->c = c;
	snprintf(dl->dst, sizeof(dl->dst), "%s", dst);
	memcpy(&sin.sin_addr, o->addr, 4);
	sin.sin_port = htons(o->port);
	if (kb_stream_dial(c->m->base, st, (struct sockaddr *)&sin, sizeof(sin),
	    DIAL_TIMEOUT_S * 1000, dial_done, dl) < 0) {
		c->dials--;
		free(dl);
	}
}

static void
on_open(struct kb_session *s, struct kb_stream *st, const struct kb_open *o, void *arg)
{
	struct client *c = arg;

	(void)s;
	if (o->kind == KB_OPEN_DIAL && c->kind == CLIENT_DAEMON) {
		dial(c, st, o);
	} else if (o->kind == KB_OPEN_INTERCEPT && c->kind == CLIENT_SIDECAR) {
		icpt_route_stream(c->m->icpts, c, st, o->ref);
	} else {
		char text[80];
		snprintf(text, sizeof(text), "stream kind %u is not allowed for this peer", o->kind);
		refused(c, &c->denied, text);
		kb_stream_reset(st, KB_RST_DENIED, text);
	}
}

/* --- name resolution --- */

/* The answer: "addrs" (the records of the asked type, A or AAAA, for
 * daemons before "records") and "records" (the answer section). */
static void
lookup_done(void *arg, int rcode, const struct resolver_rr *rrs, size_t n, uint32_t ttl)
{
	struct lookup *lk = arg;
	struct client *c = lk->c;
	cJSON *msg, *a, *recs, *o;
	size_t i;

	log_debug_for(client_user(c), client_debug(c), "session %s: resolved type %d: rcode %d, "
	    "%zu records", c->name, lk->qtype, rcode, n);

	if (c->sess && (msg = kb_msg_new(KB_MSG_RESOLVED)) != NULL) {
		cJSON_AddNumberToObject(msg, "id", lk->id);
		cJSON_AddNumberToObject(msg, "rcode", rcode);
		cJSON_AddNumberToObject(msg, "ttl", ttl);
		a = cJSON_AddArrayToObject(msg, "addrs");
		recs = cJSON_AddArrayToObject(msg, "records");
		for (i = 0; i < n; i++) {
			if (rrs[i].type == lk->qtype && (lk->qtype == 1 || lk->qtype == 28))
				cJSON_AddItemToArray(a, cJSON_CreateString(rrs[i].data));
			if ((o = cJSON_CreateObject()) == NULL)
				continue;
			cJSON_AddStringToObject(o, "name", rrs[i].name);
			cJSON_AddNumberToObject(o, "type", rrs[i].type);
			cJSON_AddNumberToObject(o, "ttl", rrs[i].ttl);
			cJSON_AddStringToObject(o, "data", rrs[i].data);
			cJSON_AddItemToArray(recs, o);
		}
		kb_session_send_control(c->sess, msg);
	}
	c->lookups--;
	client_unref(c);
	free(lk);
}

/* Answer a lookup over the limit at once: REFUSED, which the daemon turns
 * into SERVFAIL for its client (who may ask again). */
static void
lookup_refuse(struct client *c, double id)
{
	cJSON *msg = kb_msg_new(KB_MSG_RESOLVED);
	char text[80];

	snprintf(text, sizeof(text), "more than %d lookups in flight", MAX_LOOKUPS);
	refused(c, &c->over_lookups, text);
	if (!msg)
		return;
	cJSON_AddNumberToObject(msg, "id", id);
	cJSON_AddNumberToObject(msg, "rcode", 5);
	cJSON_AddNumberToObject(msg, "ttl", 0);
	cJSON_AddArrayToObject(msg, "addrs");
	kb_session_send_control(c->sess, msg);
}

/* Answer "logs": the newest of the ring's lines tagged with the session's
 * user (log_*_for; not other developers' lines, nor untagged ones), at
 * most KB_LOGS_MAX bytes. */
static void
answer_logs(struct client *c, double id)
{
	char *out;
	size_t n;
	uint64_t now = kb_now_ms();
	cJSON *r;

	if (c->logs_ms && now - c->logs_ms < RING_LOGS_EVERY_MS) {
		kb_session_send_control(c->sess, kb_msg_result(id, 0, 429,
		    "one request for the manager's log at a time; try again"));
		return;
	}
	c->logs_ms = now;
	if ((out = malloc(KB_LOGS_MAX + 1)) == NULL) {
		kb_session_send_control(c->sess, kb_msg_result(id, 0, 500, "out of memory"));
		return;
	}
	n = log_ring_copy_for(client_user(c), out, KB_LOGS_MAX);
	log_text_clean(out, n);
	out[n] = '\0';
	if ((r = kb_msg_result(id, 1, 0, NULL)) != NULL)
		cJSON_AddStringToObject(r, "log", out);
	free(out);
	kb_session_send_control(c->sess, r);
}

/* End a wait: answer the daemon with res (taken; NULL: none), drop it. */
static void
log_wait_end(struct log_wait *w, cJSON *res)
{
	struct manager *m = w->daemon->m;
	struct log_wait **pp;

	for (pp = &m->log_waits; *pp && *pp != w; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = w->next;
	w->daemon->log_waits--;
	if (res && w->daemon->sess)
		kb_session_send_control(w->daemon->sess, res);
	else
		cJSON_Delete(res);
	event_free(w->timer);
	client_unref(w->daemon);
	client_unref(w->sidecar);
	free(w);
}

static void
log_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct log_wait *w = arg;

	(void)fd;
	(void)what;
	log_wait_end(w, kb_msg_result(w->id, 0, 504, "the sidecar did not answer in time"));
}

/* Ask the replica-th sidecar of workload.ns for its log, for daemon c
 * that intercepts that workload (its request id). */
static void
sidecar_logs(struct client *c, double id, const char *wl, const char *ns, int replica)
{
	struct manager *m = c->m;
	struct timeval tv = kb_ms_tv(SIDECAR_LOGS_MS);
	struct client *sc;
	struct log_wait *w;
	char icpt[80], text[200];
	size_t n;
	cJSON *msg;
	int http;

	/* Only the workloads this user intercepts: their traffic is theirs
	 * already, and nothing else of the cluster's. */
	if (icpt_owned(m->icpts, c->name, wl, ns, icpt, sizeof(icpt), &http) < 0) {
		snprintf(text, sizeof(text), "you have no intercept of %s.%s", wl, ns);
		kb_session_send_control(c->sess, kb_msg_result(id, 0, 404, text));
		return;
	}
	if ((sc = icpt_sidecar(m->icpts, wl, ns, (size_t)replica, &n)) == NULL || !sc->sess) {
		snprintf(text, sizeof(text), "%s.%s has %zu sidecar(s) connected", wl, ns, n);
		kb_session_send_control(c->sess, kb_msg_result(id, 0, 404, text));
		return;
	}
	if (!sc->logs) {
		kb_session_send_control(c->sess, kb_msg_result(id, 0, 501,
		    "the sidecar is older than the manager: it hands out no logs"));
		return;
	}
	if (c->log_waits >= LOG_WAITS_MAX) {
		kb_session_send_control(c->sess, kb_msg_result(id, 0, 429,
		    "too many sidecar log requests at once"));
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (w->timer = evtimer_new(m->base, log_wait_timeout, w)) == NULL ||
	    (msg = kb_msg_new(KB_MSG_LOGS)) == NULL) {
		if (w)
			event_free(w->timer);
		free(w);
		kb_session_send_control(c->sess, kb_msg_result(id, 0, 500, "out of memory"));
		return;
	}
	w->daemon = c;
	w->sidecar = sc;
	c->log_waits++;
	c->refs++;
	sc->refs++;
	w->id = id;
	w->sid = ++m->log_seq;
	w->replicas = n;
	cJSON_AddNumberToObject(msg, "id", w->sid);
	w->next = m->log_waits;
	m->log_waits = w;
	evtimer_add(w->timer, &tv);
	if (kb_session_send_control(sc->sess, msg) < 0)
		log_wait_end(w, kb_msg_result(id, 0, 502, "the sidecar's session failed"));
}

/* A sidecar's "result" to our "logs": the daemon gets it, as its answer. */
static int
sidecar_result(struct client *c, const cJSON *msg)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	const cJSON *log = cJSON_GetObjectItemCaseSensitive(msg, "log");
	struct log_wait *w;
	cJSON *r;

	for (w = c->m->log_waits; w; w = w->next)
		if (w->sidecar == c && (double)w->sid == id->valuedouble)
			break;
	if (w == NULL)
		return 0;	/* after the timeout */
	if (!cJSON_IsString(log) || strlen(log->valuestring) > KB_LOGS_MAX) {
		log_wait_end(w, kb_msg_result(w->id, 0, 502, "the sidecar's answer is not a log"));
		return 0;
	}
	if ((r = kb_msg_result(w->id, 1, 0, NULL)) != NULL) {
		cJSON_AddStringToObject(r, "log", log->valuestring);
		cJSON_AddNumberToObject(r, "replicas", (double)w->replicas);
	}
	log_wait_end(w, r);
	return 0;
}

/* "loglevel" (kbridge loglevel): this session's debug lines on or off,
 * never the manager's level, which is the operator's. */
static void
client_loglevel(struct client *c, const char *level)
{
	int on = strcmp(level, "debug") == 0;

	if (on == c->debug)
		return;
	c->debug = on;
	log_info_for(client_user(c), "session %s from %s: its debug lines %s (kbridge loglevel)",
	    c->name, c->peer, on ? "on" : "off");
}

static int
on_control(struct kb_session *s, const cJSON *msg, const char *type, void *arg)
{
	struct client *c = arg;
	const cJSON *id, *name, *qt, *wl, *ns, *rep;
	enum kb_msg_type t;
	struct lookup *lk;
	char err[200];
	cJSON *r;
	int rc;

	(void)type;
	if (c->kind == CLIENT_SIDECAR) {
		/* A sidecar sends only results, to our "logs". */
		if (kb_msg_parse(msg, &t, err, sizeof(err)) != 0) {
			log_warnx("session %s from %s: %s", c->name, c->peer, err);
			return -1;
		}
		if (t != KB_MSG_RESULT) {
			log_warnx("session %s from %s: \"%s\" is not a message a sidecar sends",
			    c->name, c->peer, type);
			return -1;
		}
		return sidecar_result(c, msg);
	}
	if (c->kind != CLIENT_DAEMON)
		return -1;
	if ((rc = kb_msg_parse(msg, &t, err, sizeof(err))) < 0) {
		log_warnx_for(client_user(c), "session %s from %s: %s", c->name, c->peer, err);
		return -1;
	}
	switch (t) {
	case KB_MSG_RESOLVE:
		break;
	case KB_MSG_LOGLEVEL:
		client_loglevel(c, cJSON_GetObjectItemCaseSensitive(msg, "level")->valuestring);
		return 0;
	case KB_MSG_LOGS:
		id = cJSON_GetObjectItemCaseSensitive(msg, "id");
		wl = cJSON_GetObjectItemCaseSensitive(msg, "workload");
		ns = cJSON_GetObjectItemCaseSensitive(msg, "namespace");
		rep = cJSON_GetObjectItemCaseSensitive(msg, "replica");
		if (rc > 0)
			kb_session_send_control(s, kb_msg_result(id->valuedouble, 0, rc, err));
		else if (cJSON_IsString(wl))
			sidecar_logs(c, id->valuedouble, wl->valuestring, ns->valuestring,
			    cJSON_IsNumber(rep) ? rep->valueint : 0);
		else
			answer_logs(c, id->valuedouble);
		return 0;
	case KB_MSG_INTERCEPT:
	case KB_MSG_LEAVE:
	case KB_MSG_LEAVE_ALL:
	case KB_MSG_LIST:
	case KB_MSG_PREVIEW_CREATE:
	case KB_MSG_PREVIEW_LIST:
	case KB_MSG_PREVIEW_REMOVE:
		/* A request with an invalid field is answered, not fatal. */
		if (rc > 0) {
			id = cJSON_GetObjectItemCaseSensitive(msg, "id");
			kb_session_send_control(s, kb_msg_result(id->valuedouble, 0, rc, err));
		} else if (t == KB_MSG_PREVIEW_CREATE || t == KB_MSG_PREVIEW_LIST ||
		    t == KB_MSG_PREVIEW_REMOVE) {
			preview_request(c, t, msg);
		} else if ((r = icpt_request(c->m->icpts, c, t, msg)) != NULL) {
			kb_session_send_control(s, r);
		}
		return 0;
	default:
		return -1; /* not one a daemon sends */
	}
	/* resolve: the table checked id, name (1-253) and qtype (kb_dns_qtype_ok). */
	id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	name = cJSON_GetObjectItemCaseSensitive(msg, "name");
	qt = cJSON_GetObjectItemCaseSensitive(msg, "qtype");
	if (c->lookups >= MAX_LOOKUPS) {
		lookup_refuse(c, id->valuedouble);
		return 0;
	}
	if ((lk = calloc(1, sizeof(*lk))) == NULL)
		return 0;
	lk->c = c;
	lk->id = id->valuedouble;
	lk->qtype = qt->valueint;
	c->refs++;
	c->lookups++;
	log_debug_for(client_user(c), client_debug(c), "session %s: resolve %s type %d",
	    c->name, name->valuestring, qt->valueint);
	resolver_lookup_rr(c->m->resolver, name->valuestring, qt->valueint, lookup_done, lk);
	return 0;
}

/* --- sessions --- */

/* The cluster's subnets and namespaces, as the hello and "cluster" carry them. */
static void
cluster_lists(const struct manager *m, cJSON *r)
{
	char buf[32];
	cJSON *a;
	size_t i;

	a = cJSON_AddArrayToObject(r, "subnets");
	for (i = 0; i < m->nsubnets; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(kb_cidr_str(&m->subnets[i], buf, sizeof(buf))));
	a = cJSON_AddArrayToObject(r, "namespaces");
	for (i = 0; i < m->nnamespaces; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(m->namespaces[i]));
}

/* Tell every connected daemon the new lists (PROTOCOL.md, "cluster"). */
static void
cluster_broadcast(struct manager *m)
{
	struct client *c;
	cJSON *msg;

	for (c = m->clients; c; c = c->next) {
		/* An older daemon would end its session on an unknown type. */
		if (c->kind != CLIENT_DAEMON || !c->cluster_updates || !c->sess ||
		    !kb_session_ready(c->sess))
			continue;
		if ((msg = kb_msg_new(KB_MSG_CLUSTER)) == NULL)
			return;
		cluster_lists(m, msg);
		kb_session_send_control(c->sess, msg);
	}
}

static void
disc_subnets(void *arg, const struct kb_cidr *v, size_t n)
{
	struct manager *m = arg;

	if (n > MAX_SUBNETS)
		n = MAX_SUBNETS;
	memcpy(m->subnets, v, n * sizeof(v[0]));
	m->nsubnets = n;
	if (m->have_subnets)
		cluster_broadcast(m);
	m->have_subnets = 1;
}

static void
disc_namespaces(void *arg, const char *const *v, size_t n)
{
	struct manager *m = arg;
	size_t i, k = 0;

	for (i = 0; i < m->nnamespaces; i++)
		free(m->ns_owned[i]);
	for (i = 0; i < n && k < MAX_NAMESPACES; i++)
		if ((m->ns_owned[k] = strdup(v[i])) != NULL)
			m->namespaces[k] = m->ns_owned[k], k++;
	m->nnamespaces = k;
	if (m->have_namespaces)
		cluster_broadcast(m);
	m->have_namespaces = 1;
}

/* One session per user: a daemon of the same identity on another
 * workstation is refused, unless it asks to replace the first (connect
 * --replace), which is then told so and ends. The same daemon coming back
 * before its old session was seen to end takes its place quietly. */
static int
one_session(struct client *c, const cJSON *h, char *reason, size_t rlen)
{
	struct client *o;
	char why[200];
	cJSON *msg;

	for (o = c->m->clients; o; o = o->next)
		if (o != c && o->kind == CLIENT_DAEMON && o->sess && kb_session_ready(o->sess) &&
		    !o->leaving && !strcmp(o->name, c->name))
			break;
	if (!o)
		return 0;
	if (c->instance[0] && !strcmp(o->instance, c->instance)) {
		log_info_for(client_user(c), "session %s from %s replaces its own older session "
		    "from %s", c->name, c->peer, o->peer);
		icpt_move(c->m->icpts, o, c);
		kb_session_goaway(o->sess, "replaced by a newer session of this daemon", 0);
		return 0;
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "replace"))) {
		snprintf(reason, rlen, "%s is already connected from %s (another workstation or "
		    "daemon); 'kbridge connect --replace' ends that session and takes over",
		    c->name, o->peer);
		return -1;
	}
	log_info_for(client_user(c), "session %s from %s replaces the session from %s", c->name,
	    c->peer, o->peer);
	cJSON_Delete(icpt_end_all(c->m->icpts, o, "its session was replaced"));
	if (o->replaceable && (msg = kb_msg_new(KB_MSG_REPLACED)) != NULL) {
		cJSON_AddStringToObject(msg, "by", c->peer);
		kb_session_send_control(o->sess, msg);
	}
	snprintf(why, sizeof(why), "replaced by another session of %s from %s", c->name, c->peer);
	kb_session_goaway(o->sess, why, 0);
	return 0;
}

static int
on_hello(struct kb_session *s, const cJSON *h, char *reason, size_t rlen, void *arg)
{
	struct client *c = arg;
	struct manager *m = c->m;
	const cJSON *role = cJSON_GetObjectItemCaseSensitive(h, "role");
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(h, "namespace");
	int sidecar = cJSON_IsString(role) && !strcmp(role->valuestring, KB_HELLO_ROLE_SIDECAR);
	cJSON *r;

	if (!cJSON_IsString(role) || (strcmp(role->valuestring, KB_HELLO_ROLE_DAEMON) && !sidecar) ||
	    strcmp(c->role, sidecar ? KB_ROLE_SIDECAR : KB_ROLE_USER) != 0) {
		snprintf(reason, rlen, "role %s is not allowed for certificate role %s",
		    cJSON_IsString(role) ? role->valuestring : "(none)", c->role);
		return -1;
	}
	if (ns && !cJSON_IsString(ns)) {
		snprintf(reason, rlen, "namespace must be a string");
		return -1;
	}
	if (!c->authed) {
		if (m->nsessions >= MAX_SESSIONS) {
			snprintf(reason, rlen, "the manager has %d sessions already", MAX_SESSIONS);
			return -1;
		}
		kb_pool_remove(&c->pre);
		c->authed = 1;
		m->nsessions++;
	}
	if (sidecar && icpt_sidecar_hello(m->icpts, c, h, reason, rlen) < 0)
		return -1;
	c->logs = sidecar && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "logs"));
	if (!sidecar) {
		const cJSON *inst = cJSON_GetObjectItemCaseSensitive(h, "instance");
		snprintf(c->instance, sizeof(c->instance), "%s",
		    cJSON_IsString(inst) ? inst->valuestring : "");
		c->replaceable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "replaceable"));
		c->cluster_updates = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h,
		    "cluster_updates"));
		c->debug = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "debug"));
		if (one_session(c, h, reason, rlen) < 0)
			return -1;
	}
	c->kind = sidecar ? CLIENT_SIDECAR : CLIENT_DAEMON;
	r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "software", KB_SOFTWARE);
	cJSON_AddStringToObject(r, "instance", m->instance);
	cJSON_AddStringToObject(r, "user", c->name);
	cJSON_AddStringToObject(r, "cluster_domain", m->domain);
	cJSON_AddTrueToObject(r, "leave_all");
	cJSON_AddTrueToObject(r, "dns_records");
	cJSON_AddTrueToObject(r, "logs");
	cJSON_AddTrueToObject(r, "loglevel");
	cluster_lists(m, r);
	log_info_for(client_user(c), "session %s from %s: hello (%s, namespace %s%s)", c->name,
	    c->peer, role->valuestring, cJSON_IsString(ns) ? ns->valuestring : "-",
	    c->debug ? ", its debug lines on" : "");
	if (kb_session_send_hello(s, r) < 0)
		return -1;
	if (sidecar)
		icpt_sidecar_ready(m->icpts, c);
	else
		icpt_owner_hello(m->icpts, c);
	return 0;
}

/* " (refused: 12 streams over the limit, ...)" if anything was refused. */
static void
refused_counts(char *buf, size_t len, const struct kb_session_stats *st, const struct client *c)
{
	const struct { unsigned long long n; const char *what; } v[] = {
		{ st->streams_refused, "streams over the limit" },
		{ st->early_refused, "streams with too much early data" },
		{ c->over_dials, "connects over the limit" },
		{ c->over_lookups, "lookups over the limit" },
		{ c->denied, "denied destinations" },
	};
	size_t i, off = 0;

	for (i = 0; i < sizeof(v) / sizeof(v[0]) && off < len; i++)
		if (v[i].n)
			off += (size_t)snprintf(buf + off, len - off, "%s%llu %s",
			    off ? ", " : " (refused: ", v[i].n, v[i].what);
	if (off && off < len)
		snprintf(buf + off, len - off, ")");
}

static void
on_limit(struct kb_session *s, const char *what, void *arg)
{
	struct client *c = arg;

	(void)s;
	log_warnx_for(client_user(c), "session %s from %s: %s; more like it are counted until "
	    "the session ends", c->name, c->peer, what);
}

static void
on_close(struct kb_session *s, const char *err, void *arg)
{
	struct client *c = arg;
	struct kb_session_stats st;
	char counts[256] = "";

	kb_session_stats(s, &st);
	refused_counts(counts, sizeof(counts), &st, c);
	log_info_for(client_user(c), "session %s from %s closed%s%s%s", c->name, c->peer,
	    err ? ": " : "", err ? err : "", counts);
	kb_session_free(s);
	c->sess = NULL;
	icpt_client_gone(c->m->icpts, c);
	client_gone(c);
}

/* A peer that said goaway (kbridge quit, a sidecar stopping) is leaving:
 * a daemon's identity is free at once (through a port-forward the API
 * server and the kubelet close the connection in their own time, and a
 * connect right after the quit must not be refused for it), and the
 * session gets our goaway too, so it opens no new stream and ends within
 * LEAVING_LINGER_MS. Otherwise a peer could say goaway, keep a stream
 * open, and connect again: as many sessions of one identity as it likes. */
#define LEAVING_LINGER_MS 2000

static void
on_goaway(struct kb_session *s, const char *reason, void *arg)
{
	struct client *c = arg;

	if (c->kind == CLIENT_DAEMON && !c->leaving) {
		c->leaving = 1;
		log_info_for(client_user(c), "session %s from %s leaving: %s", c->name, c->peer,
		    reason);
	}
	/* May end the session now (no stream open): c may be gone after. */
	kb_session_goaway(s, "goodbye", LEAVING_LINGER_MS);
}

static const struct kb_session_cbs session_cbs = {
	.on_hello = on_hello,
	.on_goaway = on_goaway,
	.on_open = on_open,
	.on_control = on_control,
	.on_close = on_close,
	.on_limit = on_limit,
};

/* Anyone can make these happen: logged once per interval with a count. */
static void
dropped(struct manager *m, const char *why)
{
	if (m->listener)
		kb_listener_refused(m->listener, why);
	else
		log_debug("%s", why);
}

/* Out of the pool before its hello: too slow, or room for a newer one. */
static void
preauth_expel(struct kb_pool_entry *e, enum kb_pool_why why)
{
	struct client *c = e->owner;

	log_debug("%s: %s: %s", __func__, c->peer, why == KB_POOL_DEADLINE ? "too slow" :
	    "room for a newer connection");
	if (c->handshake) {
		kb_conn_free(c->handshake);
		c->handshake = NULL;
	}
	if (c->sess) {
		kb_session_free(c->sess);
		c->sess = NULL;
		icpt_client_gone(c->m->icpts, c);
	}
	client_gone(c);
}

/* No ClientHello yet: the first to go when room is needed. */
static int
preauth_quiet(struct kb_pool_entry *e)
{
	struct client *c = e->owner;

	return c->handshake && SSL_in_before(kb_conn_ssl(c->handshake));
}

static void
handshake_event(struct kb_conn *conn, int what, void *arg)
{
	struct client *c = arg;
	char ebuf[256], why[400];

	c->handshake = NULL;
	if (what & KB_CONN_CONNECTED) {
		if (kb_tls_peer_identity(kb_conn_ssl(conn), c->name, sizeof(c->name), c->role,
		    sizeof(c->role)) < 0 ||
		    kb_tls_peer_workload(kb_conn_ssl(conn), c->workload, sizeof(c->workload)) < 0) {
			snprintf(ebuf, sizeof(ebuf), "session from %s: peer certificate without a "
			    "usable identity", c->peer);
			dropped(c->m, ebuf);
			kb_conn_free(conn);
			client_gone(c);
			return;
		}
		kb_conn_set_timeout(conn, 0);
		c->sess = kb_session_new(conn, 0, &session_cbs, c);
		if (!c->sess)
			client_gone(c);
		return;
	}
	snprintf(why, sizeof(why), "TLS handshake from %s failed: %s", c->peer,
	    (what & KB_CONN_TIMEOUT) ? "timed out" : kb_conn_error(conn, ebuf, sizeof(ebuf)));
	dropped(c->m, why);
	kb_conn_free(conn);
	client_gone(c);
}

static const struct kb_conn_cbs handshake_cbs = { .on_event = handshake_event };

static void
accept_cb(int fd, struct sockaddr *sa, int salen, void *arg)
{
	struct manager *m = arg;
	struct kb_conn *conn;
	struct client *c;
	SSL *ssl;
	int one = 1;

	(void)salen;
	if (m->stopping || (c = calloc(1, sizeof(*c))) == NULL) {
		evutil_closesocket(fd);
		return;
	}
	c->m = m;
	c->refs = 1;
	kb_sockaddr_str(sa, c->peer, sizeof(c->peer));
	snprintf(c->name, sizeof(c->name), "(unauthenticated)");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	if ((ssl = SSL_new(m->ctx)) == NULL) {
		evutil_closesocket(fd);
		free(c);
		return;
	}
	if ((conn = kb_conn_new(m->base, fd, ssl, 1)) == NULL) {
		free(c);
		return;
	}
	kb_conn_setcb(conn, &handshake_cbs, c);
	c->handshake = conn;
	c->next = m->clients;
	if (c->next)
		c->next->prevp = &c->next;
	c->prevp = &m->clients;
	m->clients = c;
	m->nclients++;
	kb_pool_add(m->preauth, &c->pre, sa, c);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct manager *m = arg;
	struct client *c, *next;
	struct timeval tv = { 1, 0 };

	(void)what;
	log_info("signal %d: shutting down", (int)sig);
	m->stopping = 1;
	if (m->listener) {
		kb_listener_free(m->listener);
		m->listener = NULL;
	}
	for (c = m->clients; c; c = next) {
		next = c->next;
		if (c->sess)
			kb_session_goaway(c->sess, "manager shutting down", 500);
	}
	event_base_loopexit(m->base, &tv);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: kbridge-agent manager --state-dir DIR --listen HOST:PORT\n"
	    "           --subnet CIDR [--subnet CIDR...] --namespace NAME [--namespace NAME...]\n"
	    "           [options]\n"
	    "       kbridge-agent manager --in-cluster --listen HOST:PORT [--ca-secret NAME]\n"
	    "           [--state-secret NAME] [options]\n"
	    "options:\n"
	    "           [--cluster-domain DOMAIN] [--dns IP[:PORT]] [--grace-period SECONDS]\n"
	    "           [--preview-listen HOST:PORT [--preview-url-base URL]] [-v]\n"
	    "\n"
	    "Run the in-cluster manager.\n"
	    "\n"
	    "  --state-dir DIR        the directory made by 'kbridge-agent init'\n"
	    "  --in-cluster           run in a pod: the API (service-account credentials)\n"
	    "                         tells the subnets and namespaces, and keeps the CA\n"
	    "  --ca-secret NAME       the Secret of the pod's namespace that holds the CA\n"
	    "                         (made at the first start; default kbridge-manager-ca)\n"
	    "  --state-secret NAME    the Secret of the pod's namespace that keeps the\n"
	    "                         previews and intercepts across restarts (default\n"
	    "                         kbridge-manager-state)\n"
	    "  --listen HOST:PORT     TLS address for workstation daemons\n"
	    "  --subnet CIDR          a cluster subnet (service or pod addresses); repeatable\n"
	    "  --namespace NAME       a cluster namespace; repeatable\n"
	    "  --cluster-domain D     the cluster DNS domain (default cluster.local; with\n"
	    "                         --in-cluster the pod's resolv.conf's svc.DOMAIN)\n"
	    "  --dns IP[:PORT]        resolve with this server instead of /etc/resolv.conf\n"
	    "  --grace-period SECONDS keep a disconnected workstation's intercepts this long\n"
	    "                         (default 10)\n"
	    "  --preview-listen HOST:PORT\n"
	    "                         serve preview URLs here (plain HTTP, usually behind an\n"
	    "                         ingress or load balancer)\n"
	    "  --preview-url-base URL how teammates reach that listener, e.g.\n"
	    "                         http://preview.example.com:8080; previews are\n"
	    "                         http://TOKEN.preview.example.com:8080/ (wildcard DNS) and\n"
	    "                         http://preview.example.com:8080/.kbridge/preview/TOKEN\n"
	    "                         (default http://HOST:PORT of --preview-listen)\n"
	    "  --webhook-listen HOST:PORT\n"
	    "                         with --in-cluster: serve the sidecar injection webhook\n"
	    "                         (HTTPS, POST /mutate-pods) and put the CA in the\n"
	    "                         caBundle of MutatingWebhookConfiguration kbridge-injector\n"
	    "  --sidecar-image IMAGE  the image of injected sidecars (needs --webhook-listen)\n"
	    "  -v, --verbose          debug logging\n");
}

static char *
read_state(const char *dir, const char *file, char *err, size_t errlen)
{
	char path[4096];
	char *txt;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if ((txt = kb_read_file(path, 1 << 20, NULL)) == NULL)
		snprintf(err, errlen, "cannot read %.200s: %s", path, strerror(errno));
	return txt;
}

/* The pod's namespace: $KB_NAMESPACE, else the service account's. */
static int
pod_namespace(const char *sadir, char *ns, size_t len, char *err, size_t errlen)
{
	const char *env = getenv("KB_NAMESPACE");
	char path[4096], *txt;

	if (env && *env) {
		snprintf(ns, len, "%s", env);
	} else {
		snprintf(path, sizeof(path), "%s/namespace",
		    sadir ? sadir : "/var/run/secrets/kubernetes.io/serviceaccount");
		if ((txt = kb_read_file(path, 256, NULL)) == NULL) {
			snprintf(err, errlen, "no KB_NAMESPACE and cannot read %.200s: %s", path,
			    strerror(errno));
			return -1;
		}
		txt[strcspn(txt, "\n")] = '\0';
		snprintf(ns, len, "%s", txt);
		free(txt);
	}
	if (!kb_dns_label(ns)) {
		snprintf(err, errlen, "invalid pod namespace '%.100s'", ns);
		return -1;
	}
	return 0;
}

/* --in-cluster: the API client, the CA from its Secret, a manager
 * certificate for this pod, and discovery, waited for until it told the
 * subnets and namespaces (daemons get them in the hello). */
static int
incluster_up(struct manager *m, const char *secret, char **ca, char **cert, char **key,
    char *err, size_t errlen)
{
	struct kb_kube_incluster ic = { .dir = getenv("KB_SERVICEACCOUNT_DIR") };
	const struct discovery_cbs cbs = { .on_subnets = disc_subnets,
	    .on_namespaces = disc_namespaces, .arg = m };
	const char *ip = getenv("KB_POD_IP");
	char ns[256], san[1200], svc_ip[16], why[300], *ca_key = NULL;
	struct in_addr a;
	uint64_t since, logged;
	int rc;

	if (ic.dir && !*ic.dir)
		ic.dir = NULL;
	if (pod_namespace(ic.dir, ns, sizeof(ns), err, errlen) < 0)
		return -1;
	if (!m->domain_set) {
		char *rc_text = kb_read_file("/etc/resolv.conf", 64 << 10, NULL);

		if (rc_text && discovery_domain_from_resolv(rc_text, m->domain_buf,
		    sizeof(m->domain_buf)) == 0)
			m->domain = m->domain_buf;
		log_info("cluster domain %s (%s)", m->domain, m->domain == m->domain_buf ?
		    "the search list of /etc/resolv.conf" : "default; none in /etc/resolv.conf");
		free(rc_text);
	}
	if ((m->kube = kb_kube_new_incluster(m->base, &ic, err, errlen)) == NULL)
		return -1;
	if (incluster_ca(m->base, m->kube, ns, secret, ca, &ca_key, err, errlen) < 0)
		return -1;
	/* Daemons check the CA and the role, not names (they come through
	 * port-forwards and NATs); the names are for anyone else. */
	snprintf(san, sizeof(san), "DNS:kbridge-manager.%s.svc,DNS:kbridge-manager.%s.svc.%s", ns,
	    ns, m->domain);
	if (ip && inet_pton(AF_INET, ip, &a) == 1)
		snprintf(san + strlen(san), sizeof(san) - strlen(san), ",IP:%s", ip);
	if (incluster_service_ip(m->base, m->kube, ns, "kbridge-manager", svc_ip,
	    sizeof(svc_ip)) == 0 && (!ip || strcmp(ip, svc_ip)))
		snprintf(san + strlen(san), sizeof(san) - strlen(san), ",IP:%s", svc_ip);
	rc = identity_manager_cert(*ca, ca_key, san, cert, key, err, errlen);
	/* Developers get certificates from this CA through CSRs (agent/csr.c)
	 * and check them with its certificate, published next to the Secret. */
	if (rc == 0 && (m->csr = csr_signer_new(m->kube, *ca, ca_key, err, errlen)) == NULL)
		rc = -1;
	/* Injected sidecars trade their pod's token for theirs (enroll.h). */
	if (rc == 0 && (m->enroll = enroller_new(m->kube, *ca, ca_key, err, errlen)) == NULL)
		rc = -1;
	identity_free_secret(ca_key);
	if (rc < 0)
		return -1;
	if (incluster_publish_ca(m->base, m->kube, ns, secret, *ca, why, sizeof(why)) < 0)
		log_warnx("developers cannot read the CA certificate: %s", why);
	if ((m->disc = discovery_new(m->base, m->kube, ns, &cbs)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	since = logged = kb_now_ms();
	while (!m->have_subnets || !m->have_namespaces) {
		struct timeval tv = { 0, 200000 };
		event_base_loopexit(m->base, &tv);
		event_base_dispatch(m->base);
		if (kb_now_ms() - logged >= 10000) {
			logged = kb_now_ms();
			log_warnx("still waiting for the API to tell the cluster's %s (%llu s)",
			    !m->have_subnets ? "subnets" : "namespaces",
			    (unsigned long long)(logged - since) / 1000);
		}
	}
	log_info("in-cluster: namespace %s, CA from Secret %s, certificate for %s", ns, secret, san);
	return 0;
}

/* --webhook-listen: the injection webhook, with the manager's certificate;
 * injected sidecars dial the manager's Service on the manager's port. The
 * caBundle is written after the listener is up, so the API server calls
 * only once it can be answered. */
static int
webhook_up(struct manager *m, const char *listen_on, const char *image, uint16_t port,
    const char *ca, const char *cert, const char *key, char *err, size_t errlen)
{
	const char *sadir = getenv("KB_SERVICEACCOUNT_DIR");
	char ns[256], mgr[400], enroll[400], why[300];
	struct webhook_cfg cfg = { .image = image, .manager = mgr, .enroll = enroll, .ca = ca,
	    .enroller = m->enroll };

	if (pod_namespace(sadir && *sadir ? sadir : NULL, ns, sizeof(ns), err, errlen) < 0)
		return -1;
	snprintf(mgr, sizeof(mgr), "kbridge-manager.%s.svc:%u", ns, port);
	/* The Service's webhook port (KB_WEBHOOK_SERVICE_PORT, cli/manifests.h). */
	snprintf(enroll, sizeof(enroll), "kbridge-manager.%s.svc:443", ns);
	if ((m->webhook = webhook_srv_start(m->base, listen_on, ca, cert, key, &cfg, err,
	    errlen)) == NULL)
		return -1;
	if (incluster_webhook_ca(m->base, m->kube, "kbridge-injector", ca, why, sizeof(why)) < 0)
		log_warnx("pods are not injected: %s", why);
	return 0;
}

/* --in-cluster: the previews and intercepts kept in Secret name of the
 * pod's namespace, read before the listeners open (agent/store.c). */
static int
state_up(struct manager *m, const char *name, char *err, size_t errlen)
{
	const char *sadir = getenv("KB_SERVICEACCOUNT_DIR");
	char ns[256];

	if (pod_namespace(sadir && *sadir ? sadir : NULL, ns, sizeof(ns), err, errlen) < 0)
		return -1;
	return store_open(m->base, m->kube, m->icpts, ns, name, err, errlen);
}

int
cmd_manager(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "subnet", required_argument, NULL, 'n' },
		{ "namespace", required_argument, NULL, 'N' },
		{ "cluster-domain", required_argument, NULL, 'd' },
		{ "dns", required_argument, NULL, 'D' },
		{ "grace-period", required_argument, NULL, 'g' },
		{ "preview-listen", required_argument, NULL, 'P' },
		{ "preview-url-base", required_argument, NULL, 'U' },
		{ "in-cluster", no_argument, NULL, 'I' },
		{ "ca-secret", required_argument, NULL, 'C' },
		{ "state-secret", required_argument, NULL, 'M' },
		{ "webhook-listen", required_argument, NULL, 'W' },
		{ "sidecar-image", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct manager m = { .domain = "cluster.local" };
	const char *ca_secret = NULL, *state_secret = NULL;
	int in_cluster = 0;
	const char *state = NULL, *listen_on = NULL, *dns = NULL;
	const char *preview_listen = NULL, *preview_base = NULL;
	const char *webhook_listen = NULL, *sidecar_image = NULL;
	struct preview_env penv;
	char store[4200];
	char err[300], host[256], *ca = NULL, *cert = NULL, *key = NULL;
	struct evutil_addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai = NULL;
	struct event *sigs[2] = { NULL, NULL };
	uint16_t port;
	int c, verbose = 0, rc = 1;
	double grace = 10;
	char *end;
	char portstr[8];
	size_t i;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			state = optarg;
			break;
		case 'l':
			listen_on = optarg;
			break;
		case 'n':
			if (m.nsubnets == MAX_SUBNETS) {
				fprintf(stderr, "kbridge-agent: too many --subnet options\n");
				return 2;
			}
			if (kb_cidr_parse(optarg, &m.subnets[m.nsubnets]) < 0) {
				fprintf(stderr, "kbridge-agent: invalid subnet '%s' (expected A.B.C.D/N with no host bits set)\n", optarg);
				return 2;
			}
			m.nsubnets++;
			break;
		case 'N':
			if (m.nnamespaces == MAX_NAMESPACES || !*optarg || strchr(optarg, '.')) {
				fprintf(stderr, "kbridge-agent: invalid or too many --namespace '%s'\n", optarg);
				return 2;
			}
			m.namespaces[m.nnamespaces++] = optarg;
			break;
		case 'd':
			m.domain = optarg;
			m.domain_set = 1;
			break;
		case 'D':
			dns = optarg;
			break;
		case 'g':
			grace = strtod(optarg, &end);
			if (*end || end == optarg || grace < 0 || grace > 3600) {
				fprintf(stderr, "kbridge-agent: invalid --grace-period '%s' (seconds, 0-3600)\n", optarg);
				return 2;
			}
			break;
		case 'P':
			preview_listen = optarg;
			break;
		case 'U':
			preview_base = optarg;
			break;
		case 'I':
			in_cluster = 1;
			break;
		case 'C':
			ca_secret = optarg;
			break;
		case 'M':
			state_secret = optarg;
			break;
		case 'W':
			webhook_listen = optarg;
			break;
		case 'S':
			sidecar_image = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kbridge-agent: manager: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	if (in_cluster && (state || m.nsubnets || m.nnamespaces)) {
		fprintf(stderr, "kbridge-agent: manager --in-cluster takes no --state-dir, --subnet or --namespace (the API tells them)\n");
		return 2;
	}
	if (!in_cluster && (ca_secret || state_secret)) {
		fprintf(stderr, "kbridge-agent: --ca-secret and --state-secret need --in-cluster\n");
		return 2;
	}
	if (!in_cluster && (!state || !listen_on || m.nsubnets == 0 || m.nnamespaces == 0)) {
		fprintf(stderr, "kbridge-agent: manager needs --state-dir, --listen, at least one --subnet and one --namespace, or --in-cluster (see --help)\n");
		return 2;
	}
	if (!listen_on) {
		fprintf(stderr, "kbridge-agent: manager needs --listen (see --help)\n");
		return 2;
	}
	if (ca_secret && !kb_dns_label(ca_secret)) {
		fprintf(stderr, "kbridge-agent: invalid --ca-secret '%s'\n", ca_secret);
		return 2;
	}
	if (state_secret && !kb_dns_label(state_secret)) {
		fprintf(stderr, "kbridge-agent: invalid --state-secret '%s'\n", state_secret);
		return 2;
	}
	if (webhook_listen && (!in_cluster || !sidecar_image || !*sidecar_image)) {
		fprintf(stderr, "kbridge-agent: --webhook-listen needs --in-cluster and --sidecar-image\n");
		return 2;
	}
	if (sidecar_image && !webhook_listen) {
		fprintf(stderr, "kbridge-agent: --sidecar-image needs --webhook-listen\n");
		return 2;
	}
	if (kb_hostport_parse(listen_on, host, sizeof(host), &port) < 0) {
		fprintf(stderr, "kbridge-agent: invalid --listen '%s' (expected HOST:PORT)\n", listen_on);
		return 2;
	}
	if (preview_base && !preview_listen) {
		fprintf(stderr, "kbridge-agent: --preview-url-base needs --preview-listen\n");
		return 2;
	}
	if (preview_listen && preview_config(preview_listen, preview_base, err, sizeof(err)) < 0) {
		fprintf(stderr, "kbridge-agent: %s\n", err);
		return 2;
	}
	log_init("kbridge-agent", verbose ? KB_LOG_DEBUG : KB_LOG_INFO);
	if (log_ring_init(LOG_RING_SIZE) < 0)
		log_warnx("no memory for the log ring: 'kbridge gather-logs' gets no manager log");
	kb_malloc_tune();
	signal(SIGPIPE, SIG_IGN);
	/* Every connection is a descriptor (two when proxied): 1024 is few. */
	if (kb_raise_nofile() < 0)
		log_warn("cannot raise the limit on open files");
	if ((m.base = kb_event_base_new()) == NULL) {
		snprintf(err, sizeof(err), "cannot create the event loop");
		goto out;
	}
	if (in_cluster) {
		if (incluster_up(&m, ca_secret ? ca_secret : "kbridge-manager-ca", &ca, &cert, &key,
		    err, sizeof(err)) < 0)
			goto out;
	} else if (!(ca = read_state(state, KB_STATE_CA_CERT, err, sizeof(err))) ||
	    !(cert = read_state(state, KB_STATE_MGR_CERT, err, sizeof(err))) ||
	    !(key = read_state(state, KB_STATE_MGR_KEY, err, sizeof(err)))) {
		goto out;
	}
	if ((m.ctx = kb_tls_server_ctx(ca, cert, key, err, sizeof(err))) == NULL)
		goto out;
	if ((m.icpts = icpt_new(m.base, (unsigned)(grace * 1000))) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	icpt_set_kube(m.icpts, m.kube);
	if (in_cluster && state_up(&m, state_secret ? state_secret : "kbridge-manager-state", err,
	    sizeof(err)) < 0)
		goto out;
	if (kb_random_hex(m.instance, (sizeof(m.instance) - 1) / 2) < 0) {
		snprintf(err, sizeof(err), "no randomness");
		goto out;
	}
	if ((m.resolver = resolver_new(m.base, dns, err, sizeof(err))) == NULL)
		goto out;
	snprintf(portstr, sizeof(portstr), "%u", port);
	if (evutil_getaddrinfo(host, portstr, &hints, &ai) != 0 || !ai) {
		snprintf(err, sizeof(err), "cannot resolve listen address %s", host);
		goto out;
	}
	if ((m.preauth = kb_pool_new(m.base, "manager: unauthenticated connections", PREAUTH_MAX,
	    PREAUTH_PER_SRC, PREAUTH_TIMEOUT_MS, preauth_expel, preauth_quiet, err,
	    sizeof(err))) == NULL)
		goto out;
	m.listener = kb_listener_bind(m.base, "manager listener", ai->ai_addr, (int)ai->ai_addrlen,
	    1024, accept_cb, &m);
	if (!m.listener) {
		snprintf(err, sizeof(err), "cannot listen on %s: %s", listen_on, strerror(errno));
		goto out;
	}
	if (state)
		snprintf(store, sizeof(store), "%s/previews.json", state);
	penv = (struct preview_env){ .base = m.base, .resolver = m.resolver, .domain = m.domain,
	    .allowed = addr_allowed, .arg = &m, .store = state ? store : NULL,
	    .icpts = m.icpts };
	if (preview_start(&penv, err, sizeof(err)) < 0)
		goto out;
	if (webhook_listen && webhook_up(&m, webhook_listen, sidecar_image, port, ca, cert, key,
	    err, sizeof(err)) < 0)
		goto out;
	sigs[0] = evsignal_new(m.base, SIGTERM, on_signal, &m);
	sigs[1] = evsignal_new(m.base, SIGINT, on_signal, &m);
	evsignal_add(sigs[0], NULL);
	evsignal_add(sigs[1], NULL);
	log_info("manager listening on %s: %zu subnets, %zu namespaces, domain %s", listen_on,
	    m.nsubnets, m.nnamespaces, m.domain);
	event_base_dispatch(m.base);
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "kbridge-agent: %s\n", err);
	while (m.clients) {
		struct client *cl = m.clients;
		if (cl->sess) {
			kb_session_free(cl->sess);
			cl->sess = NULL;
		}
		if (cl->handshake) {
			kb_conn_free(cl->handshake);
			cl->handshake = NULL;
		}
		client_gone(cl);
	}
	store_close();
	preview_shutdown();
	icpt_free(m.icpts);
	for (i = 0; i < 2; i++)
		if (sigs[i])
			event_free(sigs[i]);
	if (ai)
		evutil_freeaddrinfo(ai);
	kb_listener_free(m.listener);
	webhook_srv_free(m.webhook);
	kb_pool_free(m.preauth);
	csr_signer_free(m.csr);
	enroller_free(m.enroll);
	discovery_free(m.disc);
	if (m.kube)
		kb_kube_free(m.kube);
	for (i = 0; m.disc && i < m.nnamespaces; i++)
		free(m.ns_owned[i]);
	if (m.resolver)
		resolver_free(m.resolver);
	hp_fini();
	if (m.base)
		event_base_free(m.base);
	SSL_CTX_free(m.ctx);
	free(ca);
	free(cert);
	identity_free_secret(key);
	return rc;
}
