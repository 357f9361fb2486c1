/* The daemon's session to the manager: connect, hello, reconnect with
 * backoff, cluster lookups and outbound streams. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
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
#include "log.h"
#include "msg.h"
#include "session.h"
#include "tls.h"
#include "util.h"

#define CONNECT_TIMEOUT_S 5

struct pending_lookup {
	struct pending_lookup *next;
	uint32_t id;
	dns_done_fn done;
	void *ctx;
};

struct pending_request {
	struct pending_request *next;
	uint32_t id;
	tunnel_done_fn done;
	void *ctx;
};


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
fail_lookups(struct kbd *d)
{
	struct pending_lookup *p;
	struct pending_request *r;

	while ((p = d->lookups) != NULL) {
		d->lookups = p->next;
		p->done(p->ctx, 2, NULL, 0, 0);
		free(p);
	}
	while ((r = d->requests) != NULL) {
		d->requests = r->next;
		r->done(r->ctx, NULL, "the session to the manager was lost before it answered");
		free(r);
	}
}

int
tunnel_request(struct kbd *d, cJSON *msg, tunnel_done_fn done, void *ctx)
{
	struct pending_request *r;

	if (!d->sess || !kb_session_ready(d->sess) || (r = calloc(1, sizeof(*r))) == NULL) {
		cJSON_Delete(msg);
		return -1;
	}
	r->id = ++d->next_request;
	r->done = done;
	r->ctx = ctx;
	cJSON_AddNumberToObject(msg, "id", r->id);
	if (kb_session_send_control(d->sess, msg) < 0) {
		free(r);
		return -1;
	}
	r->next = d->requests;
	d->requests = r;
	return 0;
}

/* The manager answered request msg["id"]. */
static int
request_result(struct kbd *d, const cJSON *msg)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	struct pending_request **pp, *r;

	/* kb_msg_parse made sure id is a number; compared as one, an id no
	 * u32 can hold matches no request. */
	for (pp = &d->requests; (r = *pp) != NULL; pp = &r->next) {
		if (id->valuedouble == r->id) {
			*pp = r->next;
			r->done(r->ctx, msg, NULL);
			free(r);
			return 0;
		}
	}
	return 0;
}

/* The manager gave our user's session to another workstation (connect
 * --replace there): our intercepts went with it. Stay down, and say why in
 * the status, rather than reconnect and take it back. */
static void
replaced_down(struct kbd *d)
{
	log_warnx("session replaced by another session of %s from %s: disconnected", d->user,
	    d->replaced_by);
	snprintf(d->last_error, sizeof(d->last_error), "replaced by another session of %s from "
	    "%s ('kbridge connect --replace' takes it back)", d->user, d->replaced_by);
	d->state = KBD_DISCONNECTED;
	d->quitting = 1;
	if (d->retry_ev)
		evtimer_del(d->retry_ev);
	kb_mlink_cancel(&d->link);
	intercept_shutdown();
	net_down(d);
	kb_profile_free(&d->profile);
	d->have_profile = 0;
	SSL_CTX_free(d->ssl_ctx);
	d->ssl_ctx = NULL;
}

/* A session ended or could not be set up. Before the first success the
 * waiting connect requests get the error; afterwards we retry. */
static void
lost(struct kbd *d, const char *err)
{
	struct timeval tv;
	unsigned ms;

	fail_lookups(d);
	snprintf(d->last_error, sizeof(d->last_error), "%s", err ? err : "session closed");
	if (d->replaced_by[0]) {
		replaced_down(d);
		return;
	}
	if (d->quitting)
		return;
	if (d->state == KBD_CONNECTING) {
		log_warnx("connect to %s failed: %s", d->profile.manager, d->last_error);
		d->state = KBD_DISCONNECTED;
		control_connect_done(d, 0, d->last_error);
		kb_profile_free(&d->profile);
		d->have_profile = 0;
		SSL_CTX_free(d->ssl_ctx);
		d->ssl_ctx = NULL;
		return;
	}
	if (d->state == KBD_CONNECTED)
		log_warnx("session to %s lost: %s; reconnecting", d->profile.manager, d->last_error);
	d->state = KBD_RECONNECTING;
	ms = kb_mlink_backoff(&d->link);
	tv = kb_ms_tv(ms);
	log_debug("%s: retry in %u ms", __func__, ms);
	evtimer_add(d->retry_ev, &tv);
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
parse_manager_hello(struct kbd *d, const cJSON *h, char *reason, size_t rlen)
{
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(h, "user");
	const cJSON *dom = cJSON_GetObjectItemCaseSensitive(h, "cluster_domain");
	const cJSON *subs = cJSON_GetObjectItemCaseSensitive(h, "subnets");
	const cJSON *nss = cJSON_GetObjectItemCaseSensitive(h, "namespaces");
	struct kb_cidr v[KBD_MAX_SUBNETS];
	char *names[KBD_MAX_NAMESPACES], why[64];
	size_t i, n, nn;

	if (!cJSON_IsString(user) || !cJSON_IsString(dom) || !cJSON_IsArray(subs) ||
	    !cJSON_IsArray(nss) || strlen(dom->valuestring) >= sizeof(d->domain) ||
	    strlen(user->valuestring) >= sizeof(d->user)) {
		snprintf(reason, rlen, "manager hello lacks user, cluster_domain, subnets or namespaces");
		return -1;
	}
	if (cluster_lists(subs, nss, v, &n, names, &nn, why, sizeof(why)) < 0) {
		snprintf(reason, rlen, "manager hello: %s", why);
		return -1;
	}
	memcpy(d->subnets, v, n * sizeof(v[0]));
	d->nsubnets = n;
	for (i = 0; i < d->nnamespaces; i++)
		free(d->namespaces[i]);
	memcpy(d->namespaces, names, nn * sizeof(names[0]));
	d->nnamespaces = nn;
	snprintf(d->user, sizeof(d->user), "%s", user->valuestring);
	snprintf(d->domain, sizeof(d->domain), "%s", dom->valuestring);
	return 0;
}

/* A different manager process than before has forgotten our intercepts. */
static int
manager_restarted(struct kbd *d, const cJSON *h)
{
	const char *inst = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "instance"));
	int restarted;

	if (!inst)
		return 0;
	restarted = d->manager_instance[0] && strcmp(d->manager_instance, inst) != 0;
	snprintf(d->manager_instance, sizeof(d->manager_instance), "%s", inst);
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
	struct kbd *d = arg;
	char err[256];
	size_t i;
	int known = 0;

	(void)s;
	if (parse_manager_hello(d, h, reason, rlen) < 0)
		return -1;
	for (i = 0; i < d->nnamespaces; i++)
		known |= !strcmp(d->namespaces[i], d->ns);
	if (!known) {
		snprintf(reason, rlen, "namespace \"%s\" does not exist in the cluster", d->ns);
		return -1;
	}
	if (net_up(d, err, sizeof(err)) < 0) {
		snprintf(reason, rlen, "cannot set up the workstation's network: %s", err);
		/* A local failure: retrying would not help, so give up. */
		d->state = KBD_CONNECTING;
		return -1;
	}
	if (d->state == KBD_RECONNECTING)
		d->reconnects++;
	d->mgr_leave_all = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "leave_all"));
	d->left_all = 0;
	d->replace = 0;	/* taken over once; a reconnect is the same session */
	d->replaced_by[0] = '\0';
	d->state = KBD_CONNECTED;
	d->connected_since = time(NULL);
	d->refusals_logged = 0;
	kb_mlink_backoff_reset(&d->link);
	d->last_error[0] = '\0';
	log_info("connected to %s as %s (namespace %s)", d->profile.manager, d->user, d->ns);
	control_connect_done(d, 1, NULL);
	if (manager_restarted(d, h)) {
		log_info("the manager restarted: making our intercepts again");
		intercept_restore(d);
	}
	/* Setting up left freed memory behind; an idle daemon should be small.
	 * A moment later, so the answer to the waiting CLI leaves first. */
	event_base_once(d->base, -1, EV_TIMEOUT, trim_heap, NULL, &(struct timeval){ 0, 200000 });
	return 0;
}

/* "cluster": the manager's lists changed. The namespaces apply at once
 * (DNS), and so do the subnets (routes and nft set, on the same link and
 * table; if that fails the old ones stay). -1 on a malformed message. */
static int
cluster_update(struct kbd *d, const cJSON *msg)
{
	const cJSON *subs = cJSON_GetObjectItemCaseSensitive(msg, "subnets");
	const cJSON *nss = cJSON_GetObjectItemCaseSensitive(msg, "namespaces");
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
		known |= !strcmp(names[i], d->ns);
	if (nn != d->nnamespaces)
		log_info("the cluster has %zu namespaces now", nn);
	for (i = 0; i < d->nnamespaces; i++)
		free(d->namespaces[i]);
	memcpy(d->namespaces, names, nn * sizeof(names[0]));
	d->nnamespaces = nn;
	if (d->dns)
		dns_set_cluster(d->dns, d->domain, (const char *const *)d->namespaces,
		    d->nnamespaces, d->ns);
	if (!known)
		log_warnx("namespace %s is gone from the cluster", d->ns);
	if (n != d->nsubnets || memcmp(v, d->subnets, n * sizeof(v[0])) != 0) {
		char err[256];

		if (net_subnets(d, v, n, err, sizeof(err)) < 0)
			log_warnx("the cluster's subnets changed (%zu now) but cannot be applied, "
			    "the old ones stay: %s", n, err);
		else
			log_info("the cluster's subnets changed: %zu now", n);
	}
	return 0;
}

static int
on_control(struct kb_session *s, const cJSON *msg, const char *type, void *arg)
{
	struct kbd *d = arg;
	const cJSON *id, *rc, *ttl, *addrs, *e;
	struct pending_lookup **pp, *p;
	const char *list[64];
	size_t n = 0;
	enum kb_msg_type t;
	char err[200];

	(void)s;
	(void)type;
	if (kb_msg_parse(msg, &t, err, sizeof(err)) != 0) {
		log_warnx("the manager: %s", err);
		return -1;
	}
	switch (t) {
	case KB_MSG_RESULT:
		return request_result(d, msg);
	case KB_MSG_REPLACED: {
		const char *by = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "by"));

		/* The manager's goaway follows and ends the session. */
		snprintf(d->replaced_by, sizeof(d->replaced_by), "%s", by && *by ? by : "?");
		return 0;
	}
	case KB_MSG_CLUSTER:
		return cluster_update(d, msg);
	case KB_MSG_RESOLVED:
		break;
	default:
		return -1; /* not one the manager sends a daemon */
	}
	/* The table checked: id a number, rcode 0-15, addrs a list if there. */
	id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	rc = cJSON_GetObjectItemCaseSensitive(msg, "rcode");
	ttl = cJSON_GetObjectItemCaseSensitive(msg, "ttl");
	addrs = cJSON_GetObjectItemCaseSensitive(msg, "addrs");
	for (pp = &d->lookups; (p = *pp) != NULL; pp = &p->next)
		if (id->valuedouble == p->id)
			break;
	if (!p)
		return 0; /* answered after we gave up on it */
	*pp = p->next;
	if (rc->valueint == 5 && !(d->refusals_logged & 1)) {
		/* Our DNS client gets SERVFAIL and asks again. */
		d->refusals_logged |= 1;
		log_warnx("the manager refused a lookup: too many of this workstation's lookups "
		    "in flight (answered SERVFAIL; logged once per session)");
	}
	cJSON_ArrayForEach(e, addrs) {
		if (cJSON_IsString(e) && n < sizeof(list) / sizeof(list[0]))
			list[n++] = e->valuestring;
	}
	/* Converting a double outside uint32_t's range is undefined. */
	p->done(p->ctx, rc->valueint, list, n, cJSON_IsNumber(ttl) && ttl->valuedouble >= 0 &&
	    ttl->valuedouble <= UINT32_MAX ? (uint32_t)ttl->valuedouble : 5);
	free(p);
	return 0;
}

static void
on_close(struct kb_session *s, const char *err, void *arg)
{
	struct kbd *d = arg;
	char why[300];

	/* With TLS 1.3 the manager's verdict on our certificate arrives
	 * after our side of the handshake is done: it is the first thing
	 * the session reads. */
	if (err && d->state == KBD_CONNECTING && kb_session_failure(s) == KB_CONN_FAIL_PEER_REFUSED) {
		snprintf(why, sizeof(why), "the manager refused this profile's certificate (%s)", err);
		err = why;
	}
	kb_session_free(s);
	d->sess = NULL;
	lost(d, err ? err : "manager closed the session");
}

static void
on_open(struct kb_session *s, struct kb_stream *st, const struct kb_open *o, void *arg)
{
	(void)s;
	if (o->kind == KB_OPEN_DELIVER) {
		intercept_deliver(arg, st, o);
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
	struct kbd *d = arg;
	cJSON *hello = cJSON_CreateObject();

	cJSON_AddStringToObject(hello, "role", KB_HELLO_ROLE_DAEMON);
	cJSON_AddStringToObject(hello, "software", KB_SOFTWARE);
	cJSON_AddStringToObject(hello, "namespace", d->ns);
	cJSON_AddStringToObject(hello, "instance", d->instance_id);
	/* We understand "replaced"; and connect --replace takes over. */
	cJSON_AddTrueToObject(hello, "replaceable");
	cJSON_AddTrueToObject(hello, "cluster_updates");
	if (d->replace)
		cJSON_AddTrueToObject(hello, "replace");
	return hello;
}

static void
link_up(void *arg, struct kb_session *s)
{
	((struct kbd *)arg)->sess = s;
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
	kb_mlink_dial(&((struct kbd *)arg)->link);
}

int
tunnel_connect(struct kbd *d, char *err, size_t errlen)
{
	if (!d->retry_ev && (d->retry_ev = evtimer_new(d->base, retry, d)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->ssl_ctx = kb_tls_client_ctx(d->profile.ca_pem, d->profile.cert_pem, d->profile.key_pem,
	    err, errlen);
	if (!d->ssl_ctx)
		return -1;
	d->state = KBD_CONNECTING;
	/* Marked: our own connection must never be redirected into ourselves. */
	d->link = (struct kb_mlink){ .base = d->base, .manager = d->profile.manager,
	    .ctx = d->ssl_ctx, .mark = KB_FW_MARK, .timeout_ms = CONNECT_TIMEOUT_S * 1000,
	    .session = &session_cbs, .hello = link_hello, .up = link_up, .failed = link_failed,
	    .arg = d };
	kb_mlink_dial(&d->link);
	return 0;
}

int
tunnel_leave_all(struct kbd *d, tunnel_done_fn done, void *ctx)
{
	cJSON *m;

	if (!d->mgr_leave_all || !d->sess || !kb_session_ready(d->sess) ||
	    (m = kb_msg_new(KB_MSG_LEAVE_ALL)) == NULL)
		return -1;
	if (tunnel_request(d, m, done, ctx) < 0)
		return -1;
	d->left_all = 1;
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
tunnel_stop(struct kbd *d, const char *why)
{
	/* A deliberate stop: our intercepts end now, not after the grace
	 * period meant for crashes (their callers would get 502 until then).
	 * The request leaves before the goaway; the session flushes it. */
	if (!d->left_all)
		tunnel_leave_all(d, left_all, NULL);
	d->quitting = 1;
	if (d->retry_ev)
		evtimer_del(d->retry_ev);
	kb_mlink_cancel(&d->link);
	if (d->sess) {
		kb_session_goaway(d->sess, why, 0);
		/* With streams open the goaway would linger; we leave now. */
		if (d->sess) {
			kb_session_free(d->sess);
			d->sess = NULL;
		}
	}
	fail_lookups(d);
	control_connect_done(d, 0, why);
}

int
tunnel_resolve(void *arg, const char *name, int qtype,
    void (*done)(void *, int, const char *const *, size_t, uint32_t), void *ctx)
{
	struct kbd *d = arg;
	struct pending_lookup *p;
	cJSON *m;

	if (!d->sess || !kb_session_ready(d->sess))
		return -1;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	if ((m = kb_msg_new(KB_MSG_RESOLVE)) == NULL) {
		free(p);
		return -1;
	}
	p->id = ++d->next_lookup;
	p->done = done;
	p->ctx = ctx;
	cJSON_AddNumberToObject(m, "id", p->id);
	cJSON_AddStringToObject(m, "name", name);
	cJSON_AddNumberToObject(m, "qtype", qtype);
	if (kb_session_send_control(d->sess, m) < 0) {
		free(p);
		return -1;
	}
	p->next = d->lookups;
	d->lookups = p;
	return 0;
}

/* Besides "connection reset", the manager's reason for refusing a
 * connection (not allowed, a limit of the session) is all the user gets:
 * say it in the log, once per reason and session so that a refused burst
 * does not flood it; the rest at debug level. */
static void
stream_closed(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct kbd *d = arg;

	(void)st;
	if (reason != KB_RST_DENIED && reason != KB_RST_PROTOCOL && reason != KB_RST_INTERNAL) {
		if (reason)
			log_debug("stream reset by the manager (%d): %s", reason, text ? text : "");
		return;
	}
	if (d->refusals_logged & (1u << reason)) {
		log_debug("the manager refused a connection: %s", text ? text : "");
		return;
	}
	d->refusals_logged |= 1u << reason;
	log_warnx("the manager refused a connection: %s (more like it only in the debug log)",
	    text && *text ? text : "no reason given");
}

static const struct kb_stream_cbs stream_cbs = { .on_close = stream_closed };

void
tunnel_open_stream(struct kbd *d, int fd, const struct sockaddr_in *dst)
{
	struct kb_open o = { .kind = KB_OPEN_DIAL, .family = 4 };

	if (!d->sess || !kb_session_ready(d->sess)) {
		struct linger l = { 1, 0 };
		/* Fail fast: a reset now beats a hang until reconnect. */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		close(fd);
		return;
	}
	o.port = ntohs(dst->sin_port);
	memcpy(o.addr, &dst->sin_addr, 4);
	d->proxied++;
	kb_stream_open(d->sess, &o, fd, &stream_cbs, d);
}
