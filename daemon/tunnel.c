/* The daemon's session to the manager: connect, hello, reconnect with
 * backoff, cluster lookups and outbound streams. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "dns.h"
#include "firewall.h"
#include "kbridged.h"
#include "dnsmsg.h"
#include "log.h"
#include "msg.h"
#include "session.h"
#include "tls.h"
#include "util.h"

#define CONNECT_TIMEOUT_S 5

/* A request to the manager waiting for its answer: a lookup ("resolve",
 * answered by "resolved") or any other request (answered by "result"). One
 * table and one id counter for both. */
struct pending {
	struct pending *next;
	uint32_t id;
	dns_done_fn resolved;		/* a lookup of addresses, */
	dns_done_rr_fn resolved_rr;	/* or of records; else: */
	tunnel_done_fn done;		/* a request */
	void *ctx;
};

/* The session to the manager and everything about it. Only this file reads
 * or writes it; the rest of the daemon goes through the functions in
 * kbridged.h. */
struct tunnel {
	struct kbd *d;
	enum kbd_state state;
	int quitting;               /* no reconnects: the session is being stopped */
	int give_up;                /* a local failure: do not retry, end the connect */

	/* what the user asked for */
	struct kb_profile profile;
	int have_profile;
	struct cJSON *kube;	/* what the CLI read of the kubeconfig (API.md), or NULL */
	int replace;                /* connect --replace: take over our user's other session */

	struct ssl_ctx_st *ssl_ctx;
	struct kb_session *sess;
	struct kb_mlink link;       /* dialing the manager, pacing retries */
	struct event *retry_ev;
	char manager_instance[40];  /* the manager process we talk to, from its hello */
	int mgr_leave_all;          /* it takes "leave-all" (its hello says so) */
	int mgr_dns_records;        /* it answers "records" and any type (its hello) */
	int mgr_logs;               /* it answers "logs" (its hello) */
	int mgr_loglevel;           /* it takes "loglevel" (its hello) */
	int left_all;               /* we sent it: our intercepts ended at once */
	char replaced_by[80];       /* the manager gave our session to another workstation */
	unsigned reconnects;
	time_t connected_since;
	char last_error[256];
	struct pending *pending;
	uint32_t next_id;
	uint64_t proxied;
	unsigned refusals_logged;   /* this session: bit N reset reason N, bit 0 lookups */

	struct kbd_cluster cl;      /* what the manager told us */
};

struct tunnel *
tunnel_new(struct kbd *d)
{
	struct tunnel *t = calloc(1, sizeof(*t));

	if (t)
		t->d = d;
	return t;
}

enum kbd_state
tunnel_state(const struct tunnel *t)
{
	return t->state;
}

const struct kb_profile *
tunnel_profile(const struct tunnel *t)
{
	return t->have_profile ? &t->profile : NULL;
}

int
tunnel_manager_logs(const struct tunnel *t)
{
	return t->mgr_logs;
}

int
tunnel_loglevel(struct tunnel *t, int level)
{
	cJSON *msg;

	if (!t->sess || !kb_session_ready(t->sess) || !t->mgr_loglevel)
		return 0;
	if ((msg = kb_msg_new(KB_MSG_LOGLEVEL)) == NULL ||
	    cJSON_AddStringToObject(msg, "level", level >= KB_LOG_DEBUG ? "debug" : "info") ==
	    NULL) {
		cJSON_Delete(msg);
		return -1;
	}
	return kb_session_send_control(t->sess, msg) < 0 ? -1 : 1;
}

const char *
tunnel_namespace(const struct tunnel *t)
{
	return t->cl.ns;
}

const char *
kbd_state_name(enum kbd_state s)
{
	switch (s) {
	case KBD_DISCONNECTED:
		return "disconnected";
	case KBD_CONNECTING:
		return "connecting";
	case KBD_CONNECTED:
		return "connected";
	case KBD_RECONNECTING:
		return "reconnecting";
	}
	return "?";
}

static void
fail_pending(struct tunnel *t)
{
	struct pending *p;

	while ((p = t->pending) != NULL) {
		t->pending = p->next;
		if (p->resolved)
			p->resolved(p->ctx, 2, NULL, 0, 0);
		else if (p->resolved_rr)
			p->resolved_rr(p->ctx, 2, NULL, 0, 0);
		else
			p->done(p->ctx, NULL, "the session to the manager was lost before it answered");
		free(p);
	}
}

/* Send msg (taken) with the next id, and remember p for its answer. */
static int
pending_send(struct tunnel *t, cJSON *msg, struct pending *p)
{
	if (!t->sess || !kb_session_ready(t->sess)) {
		cJSON_Delete(msg);
		free(p);
		return -1;
	}
	p->id = ++t->next_id;
	cJSON_AddNumberToObject(msg, "id", p->id);
	if (kb_session_send_control(t->sess, msg) < 0) {
		free(p);
		return -1;
	}
	p->next = t->pending;
	t->pending = p;
	return 0;
}

/* The waiting request the manager's answer msg["id"] is for, taken off the
 * table; NULL if none (answered after we gave up on it), or if it is of the
 * other kind. */
static struct pending *
pending_take(struct tunnel *t, const cJSON *msg, int lookup)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	struct pending **pp, *p;

	/* kb_msg_parse made sure id is a number; compared as one, an id no
	 * u32 can hold matches no request. */
	for (pp = &t->pending; (p = *pp) != NULL; pp = &p->next) {
		if (id->valuedouble == p->id) {
			if (!(p->resolved || p->resolved_rr) != !lookup)
				return NULL;
			*pp = p->next;
			return p;
		}
	}
	return NULL;
}

int
tunnel_request(struct tunnel *t, cJSON *msg, tunnel_done_fn done, void *ctx)
{
	struct pending *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		cJSON_Delete(msg);
		return -1;
	}
	p->done = done;
	p->ctx = ctx;
	return pending_send(t, msg, p);
}

/* The manager answered request msg["id"]. */
static int
request_result(struct tunnel *t, const cJSON *msg)
{
	struct pending *p = pending_take(t, msg, 0);

	if (p) {
		p->done(p->ctx, msg, NULL);
		free(p);
	}
	return 0;
}

/* Forget what the user asked for and the TLS context made from it. */
static void
drop_profile(struct tunnel *t)
{
	kb_profile_free(&t->profile);
	t->have_profile = 0;
	cJSON_Delete(t->kube);
	t->kube = NULL;
	SSL_CTX_free(t->ssl_ctx);
	t->ssl_ctx = NULL;
}

/* The manager gave our user's session to another workstation (connect
 * --replace there): our intercepts went with it. Stay down, and say why in
 * the status, rather than reconnect and take it back. */
static void
replaced_down(struct tunnel *t)
{
	log_warnx("session replaced by another session of %s from %s: disconnected", t->cl.user,
	    t->replaced_by);
	snprintf(t->last_error, sizeof(t->last_error), "replaced by another session of %s from "
	    "%s ('kbridge connect --replace' takes it back)", t->cl.user, t->replaced_by);
	t->state = KBD_DISCONNECTED;
	t->quitting = 1;
	if (t->retry_ev)
		evtimer_del(t->retry_ev);
	kb_mlink_cancel(&t->link);
	intercept_shutdown(t->d);
	net_down(t->d);
	drop_profile(t);
}

/* A session ended or could not be set up. Before the first success (or
 * after a local failure, give_up) the waiting connect requests get the
 * error; otherwise we retry. */
static void
lost(struct tunnel *t, const char *err)
{
	struct timeval tv;
	unsigned ms;

	fail_pending(t);
	snprintf(t->last_error, sizeof(t->last_error), "%s", err ? err : "session closed");
	if (t->replaced_by[0]) {
		replaced_down(t);
		return;
	}
	if (t->quitting)
		return;
	if (t->state == KBD_CONNECTING || t->give_up) {
		log_warnx("connect to %s failed: %s", t->profile.manager, t->last_error);
		t->state = KBD_DISCONNECTED;
		t->give_up = 0;
		control_connect_done(t->d, 0, t->last_error);
		drop_profile(t);
		return;
	}
	if (t->state == KBD_CONNECTED)
		log_warnx("session to %s lost: %s; reconnecting", t->profile.manager, t->last_error);
	t->state = KBD_RECONNECTING;
	ms = kb_mlink_backoff(&t->link);
	tv = kb_ms_tv(ms);
	log_debug("%s: retry in %u ms", __func__, ms);
	evtimer_add(t->retry_ev, &tv);
}

static void
free_namespaces(struct kbd_cluster *c)
{
	size_t i;

	for (i = 0; i < c->nnamespaces; i++)
		free(c->namespaces[i]);
	c->nnamespaces = 0;
}

/* The manager's subnet and namespace lists (its hello, a "cluster"
 * message): at most KBD_MAX_* entries, CIDRs, namespaces that are DNS
 * labels. On success names[] holds nn strings of the caller's. */
static int
cluster_lists(const cJSON *subs, const cJSON *nss, struct kb_cidr *v, size_t *n,
    char **names, size_t *nn, char *err, size_t errlen)
{
	const cJSON *e;
	size_t i;

	*n = *nn = 0;
	cJSON_ArrayForEach(e, subs) {
		if (*n == KBD_MAX_SUBNETS || !cJSON_IsString(e) ||
		    kb_cidr_parse(e->valuestring, &v[*n]) < 0) {
			snprintf(err, errlen, "invalid subnet list");
			return -1;
		}
		(*n)++;
	}
	cJSON_ArrayForEach(e, nss) {
		if (*nn == KBD_MAX_NAMESPACES || !cJSON_IsString(e) ||
		    !kb_dns_label(e->valuestring) || (names[*nn] = strdup(e->valuestring)) == NULL) {
			for (i = 0; i < *nn; i++)
				free(names[i]);
			*nn = 0;
			snprintf(err, errlen, "invalid namespace list");
			return -1;
		}
		(*nn)++;
	}
	return 0;
}

static int
parse_manager_hello(struct tunnel *t, const cJSON *h, char *reason, size_t rlen)
{
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(h, "user");
	const cJSON *dom = cJSON_GetObjectItemCaseSensitive(h, "cluster_domain");
	const cJSON *subs = cJSON_GetObjectItemCaseSensitive(h, "subnets");
	const cJSON *nss = cJSON_GetObjectItemCaseSensitive(h, "namespaces");
	struct kbd_cluster *c = &t->cl;
	struct kb_cidr v[KBD_MAX_SUBNETS];
	char *names[KBD_MAX_NAMESPACES], why[64];
	size_t n, nn;

	if (!cJSON_IsString(user) || !cJSON_IsString(dom) || !cJSON_IsArray(subs) ||
	    !cJSON_IsArray(nss) || strlen(dom->valuestring) >= sizeof(c->domain) ||
	    strlen(user->valuestring) >= sizeof(c->user)) {
		snprintf(reason, rlen, "manager hello lacks user, cluster_domain, subnets or namespaces");
		return -1;
	}
	if (cluster_lists(subs, nss, v, &n, names, &nn, why, sizeof(why)) < 0) {
		snprintf(reason, rlen, "manager hello: %s", why);
		return -1;
	}
	memcpy(c->subnets, v, n * sizeof(v[0]));
	c->nsubnets = n;
	free_namespaces(c);
	memcpy(c->namespaces, names, nn * sizeof(names[0]));
	c->nnamespaces = nn;
	snprintf(c->user, sizeof(c->user), "%s", user->valuestring);
	snprintf(c->domain, sizeof(c->domain), "%s", dom->valuestring);
	return 0;
}

/* A different manager process than before has forgotten our intercepts. */
static int
manager_restarted(struct tunnel *t, const cJSON *h)
{
	const char *inst = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "instance"));
	int restarted;

	if (!inst)
		return 0;
	restarted = t->manager_instance[0] && strcmp(t->manager_instance, inst) != 0;
	snprintf(t->manager_instance, sizeof(t->manager_instance), "%s", inst);
	return restarted;
}

static void
trim_heap(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	malloc_trim(0);
}

static int
on_hello(struct kb_session *s, const cJSON *h, char *reason, size_t rlen, void *arg)
{
	struct tunnel *t = arg;
	char err[256];
	size_t i;
	int known = 0;

	(void)s;
	if (parse_manager_hello(t, h, reason, rlen) < 0)
		return -1;
	for (i = 0; i < t->cl.nnamespaces; i++)
		known |= !strcmp(t->cl.namespaces[i], t->cl.ns);
	if (!known) {
		snprintf(reason, rlen, "namespace \"%s\" does not exist in the cluster", t->cl.ns);
		return -1;
	}
	if (net_up(t->d, &t->cl, err, sizeof(err)) < 0) {
		snprintf(reason, rlen, "cannot set up the workstation's network: %s", err);
		/* A local failure: retrying would not help, so give up. */
		t->give_up = 1;
		return -1;
	}
	if (t->state == KBD_RECONNECTING)
		t->reconnects++;
	t->mgr_leave_all = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "leave_all"));
	t->mgr_dns_records = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "dns_records"));
	t->mgr_logs = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "logs"));
	t->mgr_loglevel = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "loglevel"));
	t->left_all = 0;
	t->replace = 0;	/* taken over once; a reconnect is the same session */
	t->replaced_by[0] = '\0';
	t->state = KBD_CONNECTED;
	t->connected_since = time(NULL);
	t->refusals_logged = 0;
	kb_mlink_backoff_reset(&t->link);
	t->last_error[0] = '\0';
	log_info("connected to %s as %s (namespace %s)", t->profile.manager, t->cl.user, t->cl.ns);
	control_connect_done(t->d, 1, NULL);
	if (manager_restarted(t, h)) {
		log_info("the manager restarted: making our intercepts again");
		intercept_restore(t->d);
	}
	/* Setting up left freed memory behind; an idle daemon should be small.
	 * A moment later, so the answer to the waiting CLI leaves first. */
	event_base_once(t->d->base, -1, EV_TIMEOUT, trim_heap, NULL, &(struct timeval){ 0, 200000 });
	return 0;
}

/* "cluster": the manager's lists changed. The namespaces apply at once
 * (DNS), and so do the subnets (routes and nft set, on the same link and
 * table; if that fails the old ones stay). -1 on a malformed message. */
static int
cluster_update(struct tunnel *t, const cJSON *msg)
{
	const cJSON *subs = cJSON_GetObjectItemCaseSensitive(msg, "subnets");
	const cJSON *nss = cJSON_GetObjectItemCaseSensitive(msg, "namespaces");
	struct kbd_cluster *c = &t->cl;
	struct kb_cidr v[KBD_MAX_SUBNETS];
	char *names[KBD_MAX_NAMESPACES], why[64];
	size_t n, nn, i;
	int known = 0;

	memset(v, 0, sizeof(v));
	if (cluster_lists(subs, nss, v, &n, names, &nn, why, sizeof(why)) < 0) {
		log_warnx("the manager: cluster: %s", why);
		return -1;
	}
	for (i = 0; i < nn; i++)
		known |= !strcmp(names[i], c->ns);
	if (nn != c->nnamespaces)
		log_info("the cluster has %zu namespaces now", nn);
	free_namespaces(c);
	memcpy(c->namespaces, names, nn * sizeof(names[0]));
	c->nnamespaces = nn;
	net_namespaces(t->d, c);
	if (!known)
		log_warnx("namespace %s is gone from the cluster", c->ns);
	if (n != c->nsubnets || memcmp(v, c->subnets, n * sizeof(v[0])) != 0) {
		char err[256];

		if (net_subnets(t->d, v, n, err, sizeof(err)) < 0) {
			log_warnx("the cluster's subnets changed (%zu now) but cannot be applied, "
			    "the old ones stay: %s", n, err);
		} else {
			memcpy(c->subnets, v, n * sizeof(v[0]));
			c->nsubnets = n;
			log_info("the cluster's subnets changed: %zu now", n);
		}
	}
	return 0;
}

/* The records of a "resolved" (the table checked: a list of at most
 * KB_DNS_RECORDS_MAX, if there): each one checked too, and one that is not
 * right makes the answer SERVFAIL. */
static void
lookup_records(struct pending *p, int rcode, const cJSON *recs, uint32_t ttl)
{
	struct dns_rr rrs[KB_DNS_RECORDS_MAX];
	struct kb_dns_record r;
	const cJSON *e;
	size_t n = 0;

	cJSON_ArrayForEach(e, recs) {
		if (n >= KB_DNS_RECORDS_MAX || kb_msg_dns_record(e, &r) < 0) {
			log_debug("%s: a record of the manager's answer is not valid", __func__);
			p->resolved_rr(p->ctx, 2, NULL, 0, 0);
			return;
		}
		rrs[n++] = (struct dns_rr){ r.name, r.type, r.ttl, r.data };
	}
	p->resolved_rr(p->ctx, rcode, rrs, n, ttl);
}

/* "resolved": the answer to a lookup. */
static int
lookup_result(struct tunnel *t, const cJSON *msg)
{
	const cJSON *rc, *ttl, *addrs, *e;
	struct pending *p;
	const char *list[64];
	size_t n = 0;
	uint32_t ttlv;

	/* The table checked: id a number, rcode 0-15, addrs a list if there. */
	rc = cJSON_GetObjectItemCaseSensitive(msg, "rcode");
	ttl = cJSON_GetObjectItemCaseSensitive(msg, "ttl");
	addrs = cJSON_GetObjectItemCaseSensitive(msg, "addrs");
	if ((p = pending_take(t, msg, 1)) == NULL)
		return 0; /* answered after we gave up on it */
	if (rc->valueint == 5 && !(t->refusals_logged & 1)) {
		/* Our DNS client gets SERVFAIL and asks again. */
		t->refusals_logged |= 1;
		log_warnx("the manager refused a lookup: too many of this workstation's lookups "
		    "in flight (answered SERVFAIL; logged once per session)");
	}
	/* Converting a double outside uint32_t's range is undefined. */
	ttlv = cJSON_IsNumber(ttl) && ttl->valuedouble >= 0 && ttl->valuedouble <= UINT32_MAX ?
	    (uint32_t)ttl->valuedouble : 5;
	if (p->resolved_rr) {
		lookup_records(p, rc->valueint, cJSON_GetObjectItemCaseSensitive(msg, "records"),
		    ttlv);
		free(p);
		return 0;
	}
	cJSON_ArrayForEach(e, addrs) {
		if (cJSON_IsString(e) && n < sizeof(list) / sizeof(list[0]))
			list[n++] = e->valuestring;
	}
	p->resolved(p->ctx, rc->valueint, list, n, ttlv);
	free(p);
	return 0;
}

static int
on_control(struct kb_session *s, const cJSON *msg, const char *type, void *arg)
{
	struct tunnel *t = arg;
	enum kb_msg_type mt;
	char err[200];

	(void)s;
	(void)type;
	if (kb_msg_parse(msg, &mt, err, sizeof(err)) != 0) {
		log_warnx("the manager: %s", err);
		return -1;
	}
	switch (mt) {
	case KB_MSG_RESULT:
		return request_result(t, msg);
	case KB_MSG_RESOLVED:
		return lookup_result(t, msg);
	case KB_MSG_REPLACED: {
		const char *by = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "by"));

		/* The manager's goaway follows and ends the session. */
		snprintf(t->replaced_by, sizeof(t->replaced_by), "%s", by && *by ? by : "?");
		return 0;
	}
	case KB_MSG_CLUSTER:
		return cluster_update(t, msg);
	default:
		return -1; /* not one the manager sends a daemon */
	}
}

static void
on_close(struct kb_session *s, const char *err, void *arg)
{
	struct tunnel *t = arg;
	char why[300];

	/* With TLS 1.3 the manager's verdict on our certificate arrives
	 * after our side of the handshake is done: it is the first thing
	 * the session reads. */
	if (err && t->state == KBD_CONNECTING && kb_session_failure(s) == KB_CONN_FAIL_PEER_REFUSED) {
		snprintf(why, sizeof(why), "the manager refused this profile's certificate (%s)", err);
		err = why;
	}
	kb_session_free(s);
	t->sess = NULL;
	lost(t, err ? err : "manager closed the session");
}

static void
on_open(struct kb_session *s, struct kb_stream *st, const struct kb_open *o, void *arg)
{
	struct tunnel *t = arg;

	(void)s;
	if (o->kind == KB_OPEN_DELIVER) {
		intercept_deliver(t->d, st, o);
		return;
	}
	kb_stream_reset(st, KB_RST_DENIED, "a workstation only takes intercepted streams");
}

static const struct kb_session_cbs session_cbs = {
	.on_hello = on_hello,
	.on_open = on_open,
	.on_control = on_control,
	.on_close = on_close,
};

/* The link's callbacks: our hello, the session, a failed attempt. */
static cJSON *
link_hello(void *arg)
{
	struct tunnel *t = arg;
	cJSON *hello = cJSON_CreateObject();

	cJSON_AddStringToObject(hello, "role", KB_HELLO_ROLE_DAEMON);
	cJSON_AddStringToObject(hello, "software", KB_SOFTWARE);
	cJSON_AddStringToObject(hello, "namespace", t->cl.ns);
	cJSON_AddStringToObject(hello, "instance", t->d->instance_id);
	/* We understand "replaced"; and connect --replace takes over. */
	cJSON_AddTrueToObject(hello, "replaceable");
	cJSON_AddTrueToObject(hello, "cluster_updates");
	if (t->replace)
		cJSON_AddTrueToObject(hello, "replace");
	/* kbridge loglevel debug: the manager's lines about us too. */
	if (log_level() >= KB_LOG_DEBUG)
		cJSON_AddTrueToObject(hello, "debug");
	return hello;
}

static void
link_up(void *arg, struct kb_session *s)
{
	((struct tunnel *)arg)->sess = s;
}

static void
link_failed(void *arg, const char *why)
{
	lost(arg, why);
}

static void
retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	kb_mlink_dial(&((struct tunnel *)arg)->link);
}

int
tunnel_connect(struct tunnel *t, struct kb_profile *p, const struct cJSON *kube, const char *ns,
    int replace, char *err, size_t errlen)
{
	t->profile = *p;
	t->have_profile = 1;
	if (kube && (t->kube = cJSON_Duplicate(kube, 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	snprintf(t->cl.ns, sizeof(t->cl.ns), "%s", ns);
	t->last_error[0] = '\0';
	t->quitting = 0;
	t->give_up = 0;
	t->replaced_by[0] = '\0';
	t->replace = replace;
	if (!t->retry_ev && (t->retry_ev = evtimer_new(t->d->base, retry, t)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	t->ssl_ctx = kb_tls_client_ctx(t->profile.ca_pem, t->profile.cert_pem, t->profile.key_pem,
	    err, errlen);
	if (!t->ssl_ctx)
		goto fail;
	t->state = KBD_CONNECTING;
	/* Marked: our own connection must never be redirected into ourselves. */
	t->link = (struct kb_mlink){ .base = t->d->base, .manager = t->profile.manager,
	    .ctx = t->ssl_ctx, .mark = KB_FW_MARK, .timeout_ms = CONNECT_TIMEOUT_S * 1000,
	    .session = &session_cbs, .hello = link_hello, .up = link_up, .failed = link_failed,
	    .arg = t };
	kb_mlink_dial(&t->link);
	return 0;
fail:
	t->state = KBD_DISCONNECTED;
	drop_profile(t);
	return -1;
}

int
tunnel_leave_all(struct tunnel *t, tunnel_done_fn done, void *ctx)
{
	cJSON *m;

	if (!t->mgr_leave_all || !t->sess || !kb_session_ready(t->sess) ||
	    (m = kb_msg_new(KB_MSG_LEAVE_ALL)) == NULL)
		return -1;
	if (tunnel_request(t, m, done, ctx) < 0)
		return -1;
	t->left_all = 1;
	return 0;
}

static void
left_all(void *ctx, const cJSON *res, const char *err)
{
	(void)ctx;
	(void)res;
	(void)err;
}

void
tunnel_stop(struct tunnel *t, const char *why)
{
	/* A deliberate stop: our intercepts end now, not after the grace
	 * period meant for crashes (their callers would get 502 until then).
	 * The request leaves before the goaway; the session flushes it. */
	if (!t->left_all)
		tunnel_leave_all(t, left_all, NULL);
	t->quitting = 1;
	if (t->retry_ev)
		evtimer_del(t->retry_ev);
	kb_mlink_cancel(&t->link);
	if (t->sess) {
		kb_session_goaway(t->sess, why, 0);
		/* With streams open the goaway would linger; we leave now. */
		if (t->sess) {
			kb_session_free(t->sess);
			t->sess = NULL;
		}
	}
	fail_pending(t);
	control_connect_done(t->d, 0, why);
}

void
tunnel_free(struct tunnel *t)
{
	if (!t)
		return;
	if (t->retry_ev)
		event_free(t->retry_ev);
	drop_profile(t);
	free_namespaces(&t->cl);
	free(t);
}

void
tunnel_status_json(const struct tunnel *t, cJSON *j)
{
	const struct kbd_cluster *c = &t->cl;
	cJSON *a;
	char buf[64];
	size_t i;

	cJSON_AddStringToObject(j, "state", kbd_state_name(t->state));
	if (t->have_profile) {
		cJSON_AddStringToObject(j, "user", c->user[0] ? c->user : t->profile.name);
		cJSON_AddStringToObject(j, "manager", t->profile.manager);
		if (t->kube)
			cJSON_AddItemToObject(j, "kube", cJSON_Duplicate(t->kube, 1));
		cJSON_AddStringToObject(j, "namespace", c->ns);
	}
	if (t->state == KBD_CONNECTED || t->state == KBD_RECONNECTING) {
		struct tm tm;
		cJSON_AddStringToObject(j, "cluster_domain", c->domain);
		a = cJSON_AddArrayToObject(j, "subnets");
		for (i = 0; i < c->nsubnets; i++)
			cJSON_AddItemToArray(a,
			    cJSON_CreateString(kb_cidr_str(&c->subnets[i], buf, sizeof(buf))));
		a = cJSON_AddArrayToObject(j, "namespaces");
		for (i = 0; i < c->nnamespaces; i++)
			cJSON_AddItemToArray(a, cJSON_CreateString(c->namespaces[i]));
		gmtime_r(&t->connected_since, &tm);
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
		cJSON_AddStringToObject(j, "connected_since", buf);
	}
	if (t->replaced_by[0] && t->state == KBD_DISCONNECTED)
		cJSON_AddStringToObject(j, "replaced_by", t->replaced_by);
	if (t->last_error[0])
		cJSON_AddStringToObject(j, "last_error", t->last_error);
	else
		cJSON_AddNullToObject(j, "last_error");
	cJSON_AddNumberToObject(j, "reconnects", t->reconnects);
	cJSON_AddItemToObject(j, "intercepts", intercept_status(t->d));
	if (t->sess) {
		struct kb_session_stats st;
		kb_session_stats(t->sess, &st);
		cJSON_AddNumberToObject(j, "streams", st.streams);
		cJSON_AddNumberToObject(j, "bytes_in", st.bytes_in);
		cJSON_AddNumberToObject(j, "bytes_out", st.bytes_out);
		cJSON_AddNumberToObject(j, "rtt_us", st.rtt_us);
	}
	cJSON_AddNumberToObject(j, "connections", t->proxied);
	net_status_json(t->d, j);
}

/* A "resolve" for name and qtype, answered to done or done_rr. */
static int
resolve_send(struct tunnel *t, const char *name, int qtype, dns_done_fn done,
    dns_done_rr_fn done_rr, void *ctx)
{
	struct pending *p;
	char fqdn[256];
	cJSON *m;

	if (!t->sess || !kb_session_ready(t->sess) || strlen(name) > 253)
		return -1;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	if ((m = kb_msg_new(KB_MSG_RESOLVE)) == NULL) {
		free(p);
		return -1;
	}
	p->resolved = done;
	p->resolved_rr = done_rr;
	p->ctx = ctx;
	/* The final dot: an absolute name, which the manager resolves
	 * without its search list (a manager before it searches, with the
	 * same answer in the end). */
	snprintf(fqdn, sizeof(fqdn), "%s%s", name, strlen(name) < 253 ? "." : "");
	cJSON_AddStringToObject(m, "name", fqdn);
	cJSON_AddNumberToObject(m, "qtype", qtype);
	return pending_send(t, m, p);
}

int
tunnel_resolve(void *arg, const char *name, int qtype, dns_done_fn done, void *ctx)
{
	return resolve_send(arg, name, qtype, done, NULL, ctx);
}

int
tunnel_resolve_rr(void *arg, const char *name, int qtype, dns_done_rr_fn done, void *ctx)
{
	struct tunnel *t = arg;

	if (t->sess && kb_session_ready(t->sess) && !t->mgr_dns_records)
		return -2;	/* a manager before records: addresses only */
	if (!kb_dns_qtype_ok((unsigned)qtype))
		return -2;
	return resolve_send(t, name, qtype, NULL, done, ctx);
}

/* Besides "connection reset", the manager's reason for refusing a
 * connection (not allowed, a limit of the session) is all the user gets:
 * say it in the log, once per reason and session so that a refused burst
 * does not flood it; the rest at debug level. */
static void
stream_closed(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct tunnel *t = arg;

	(void)st;
	if (reason != KB_RST_DENIED && reason != KB_RST_PROTOCOL && reason != KB_RST_INTERNAL) {
		if (reason)
			log_debug("stream reset by the manager (%d): %s", reason, text ? text : "");
		return;
	}
	if (t->refusals_logged & (1u << reason)) {
		log_debug("the manager refused a connection: %s", text ? text : "");
		return;
	}
	t->refusals_logged |= 1u << reason;
	log_warnx("the manager refused a connection: %s (more like it only in the debug log)",
	    text && *text ? text : "no reason given");
}

static const struct kb_stream_cbs stream_cbs = { .on_close = stream_closed };

void
tunnel_open_stream(struct tunnel *t, int fd, const struct sockaddr_in *dst)
{
	struct kb_open o = { .kind = KB_OPEN_DIAL, .family = 4 };

	if (!t->sess || !kb_session_ready(t->sess)) {
		struct linger l = { 1, 0 };
		/* Fail fast: a reset now beats a hang until reconnect. */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		close(fd);
		return;
	}
	o.port = ntohs(dst->sin_port);
	memcpy(o.addr, &dst->sin_addr, 4);
	t->proxied++;
	kb_stream_open(t->sess, &o, fd, &stream_cbs, t);
}
