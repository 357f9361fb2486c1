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
#include "session.h"
#include "tls.h"

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

	if (!cJSON_IsNumber(id))
		return -1;
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

/* A session ended or could not be set up. Before the first success the
 * waiting connect requests get the error; afterwards we retry. */
static void
lost(struct kbd *d, const char *err)
{
	struct timeval tv;
	unsigned ms;

	fail_lookups(d);
	snprintf(d->last_error, sizeof(d->last_error), "%s", err ? err : "session closed");
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
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	log_debug("%s: retry in %u ms", __func__, ms);
	evtimer_add(d->retry_ev, &tv);
}

static int
parse_manager_hello(struct kbd *d, const cJSON *h, char *reason, size_t rlen)
{
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(h, "user");
	const cJSON *dom = cJSON_GetObjectItemCaseSensitive(h, "cluster_domain");
	const cJSON *subs = cJSON_GetObjectItemCaseSensitive(h, "subnets");
	const cJSON *nss = cJSON_GetObjectItemCaseSensitive(h, "namespaces");
	const cJSON *e;
	size_t i;

	if (!cJSON_IsString(user) || !cJSON_IsString(dom) || !cJSON_IsArray(subs) ||
	    !cJSON_IsArray(nss) || strlen(dom->valuestring) >= sizeof(d->domain) ||
	    strlen(user->valuestring) >= sizeof(d->user)) {
		snprintf(reason, rlen, "manager hello lacks user, cluster_domain, subnets or namespaces");
		return -1;
	}
	if (cJSON_GetArraySize(subs) > KBD_MAX_SUBNETS ||
	    cJSON_GetArraySize(nss) > KBD_MAX_NAMESPACES) {
		snprintf(reason, rlen, "manager hello has too many subnets or namespaces");
		return -1;
	}
	d->nsubnets = 0;
	cJSON_ArrayForEach(e, subs) {
		if (!cJSON_IsString(e) || kb_cidr_parse(e->valuestring, &d->subnets[d->nsubnets]) < 0) {
			snprintf(reason, rlen, "manager sent an invalid subnet");
			return -1;
		}
		d->nsubnets++;
	}
	for (i = 0; i < d->nnamespaces; i++)
		free(d->namespaces[i]);
	d->nnamespaces = 0;
	cJSON_ArrayForEach(e, nss) {
		if (!cJSON_IsString(e) || !(d->namespaces[d->nnamespaces] = strdup(e->valuestring))) {
			snprintf(reason, rlen, "manager sent an invalid namespace");
			return -1;
		}
		d->nnamespaces++;
	}
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
	d->state = KBD_CONNECTED;
	d->connected_since = time(NULL);
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

static int
on_control(struct kb_session *s, const cJSON *msg, const char *type, void *arg)
{
	struct kbd *d = arg;
	const cJSON *id, *rc, *ttl, *addrs, *e;
	struct pending_lookup **pp, *p;
	const char *list[64];
	size_t n = 0;

	(void)s;
	if (!strcmp(type, "result"))
		return request_result(d, msg);
	if (strcmp(type, "resolved") != 0)
		return -1;
	id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	rc = cJSON_GetObjectItemCaseSensitive(msg, "rcode");
	ttl = cJSON_GetObjectItemCaseSensitive(msg, "ttl");
	addrs = cJSON_GetObjectItemCaseSensitive(msg, "addrs");
	if (!cJSON_IsNumber(id) || !cJSON_IsNumber(rc) || (addrs && !cJSON_IsArray(addrs)))
		return -1;
	for (pp = &d->lookups; (p = *pp) != NULL; pp = &p->next)
		if (id->valuedouble == p->id)
			break;
	if (!p)
		return 0; /* answered after we gave up on it */
	*pp = p->next;
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

	cJSON_AddStringToObject(hello, "role", "daemon");
	cJSON_AddStringToObject(hello, "software", "kbridge/" KBD_VERSION);
	cJSON_AddStringToObject(hello, "namespace", d->ns);
	cJSON_AddStringToObject(hello, "instance", d->instance_id);
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

void
tunnel_stop(struct kbd *d, const char *why)
{
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
	if ((m = cJSON_CreateObject()) == NULL) {
		free(p);
		return -1;
	}
	p->id = ++d->next_lookup;
	p->done = done;
	p->ctx = ctx;
	cJSON_AddStringToObject(m, "type", "resolve");
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
	kb_stream_open(d->sess, &o, fd, NULL, NULL);
}
