/* The manager's registry of workloads, their sidecars and the intercepts on
 * them: who may intercept what, which matches overlap, and joining a
 * sidecar's intercepted stream to the owner's workstation. */
#include "intercepts.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "api.h"
#include "client.h"
#include "htab.h"
#include "log.h"
#include "msg.h"
#include "podenvapi.h"
#include "preview.h"
#include "session.h"
#include "store.h"
#include "util.h"

#define MAX_SIDECARS 32
#define ID_LEN 24
/* Restored from the store at start: how long their workstations have to
 * come back to the new manager (at least; the grace period if longer). */
#define RESTORED_GRACE_MS 60000

struct workload;

struct intercept {
	TAILQ_ENTRY(intercept) entry;
	struct workload *w;
	char id[ID_LEN + 1];
	char owner[64];
	char instance[40];     /* the owner's daemon process */
	struct client *client; /* the owner's session; NULL in the grace period */
	struct event *grace;
	unsigned port;
	int global;
	char *path_prefix;
	size_t nheaders;
	char *hname[KB_MAX_MATCH_HEADERS], *hvalue[KB_MAX_MATCH_HEADERS];
};

struct workload {
	TAILQ_ENTRY(workload) entry;
	struct icpt_reg *reg;	/* the registry it is in */
	char name[64], ns[64], protocol[8];
	char key[130];	/* "NAME.NS" (labels hold no dot): its key in by_name */
	cJSON *env;
	/* In-cluster: the env from the pod spec of the sidecar's pod, asked
	 * for at each sidecar hello (as the kubelet makes it at each container
	 * start); env_err why the sidecar's own env stands instead. */
	struct podenv_fetch *fetch;
	char fetch_ip[64], fetch_pod[256];
	char env_err[600];
	struct client *sidecars[MAX_SIDECARS];
	size_t nsidecars;
	TAILQ_HEAD(, intercept) icpts;
};

struct icpt_reg {
	TAILQ_HEAD(, workload) workloads;
	/* What requests and streams look up, at a cost that does not grow
	 * with the number of workloads and intercepts: workloads by "NAME.NS",
	 * intercepts by id. The list stays for what goes over all of them. */
	struct kb_htab by_name, by_id;
	struct event_base *base;
	struct kb_kube *kube;	/* borrowed; NULL: none */
	unsigned grace_ms;
};

struct icpt_reg *
icpt_new(struct event_base *base, unsigned grace_ms)
{
	struct icpt_reg *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	TAILQ_INIT(&r->workloads);
	r->base = base;
	r->grace_ms = grace_ms;
	return r;
}

static int
http_token(const char *s)
{
	const char *p;

	if (!*s || strlen(s) > 128)
		return 0;
	for (p = s; *p; p++)
		if (!kb_http_tchar(*p))
			return 0;
	return 1;
}

static struct workload *
find_workload(struct icpt_reg *r, const char *name, const char *ns)
{
	char key[sizeof(((struct workload *)NULL)->key)];
	int n = snprintf(key, sizeof(key), "%s.%s", name, ns);

	if (n < 0 || (size_t)n >= sizeof(key))
		return NULL;
	return kb_htab_get(&r->by_name, key, (size_t)n);
}

/* A new workload name.ns, in the list and the index; NULL when out of
 * memory. */
static struct workload *
workload_new(struct icpt_reg *r, const char *name, const char *ns)
{
	struct workload *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	snprintf(w->name, sizeof(w->name), "%s", name);
	snprintf(w->ns, sizeof(w->ns), "%s", ns);
	snprintf(w->key, sizeof(w->key), "%s.%s", w->name, w->ns);
	TAILQ_INIT(&w->icpts);
	w->reg = r;
	if (kb_htab_put(&r->by_name, w->key, strlen(w->key), w) < 0) {
		free(w);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&r->workloads, w, entry);
	return w;
}

/* Put i (not yet listed) on its workload's list and in the index: 0, or -1
 * (out of memory, or its id is taken). */
static int
intercept_link(struct intercept *i)
{
	if (kb_htab_put(&i->w->reg->by_id, i->id, strlen(i->id), i) < 0)
		return -1;
	TAILQ_INSERT_TAIL(&i->w->icpts, i, entry);
	return 0;
}

static void
intercept_unlink(struct intercept *i)
{
	kb_htab_del(&i->w->reg->by_id, i->id, strlen(i->id));
	TAILQ_REMOVE(&i->w->icpts, i, entry);
}

/* Free i, which is in no list (or no longer). */
static void
intercept_release(struct intercept *i)
{
	size_t k;

	if (i->grace)
		event_free(i->grace);
	for (k = 0; k < i->nheaders; k++) {
		free(i->hname[k]);
		free(i->hvalue[k]);
	}
	free(i->path_prefix);
	free(i);
}

static void
intercept_free(struct intercept *i)
{
	intercept_unlink(i);
	intercept_release(i);
}

static void
workload_gc(struct workload *w)
{
	if (w->nsidecars > 0 || !TAILQ_EMPTY(&w->icpts))
		return;
	TAILQ_REMOVE(&w->reg->workloads, w, entry);
	kb_htab_del(&w->reg->by_name, w->key, strlen(w->key));
	podenv_fetch_cancel(w->fetch);
	cJSON_Delete(w->env);
	free(w);
}

static cJSON *
match_json(const struct intercept *i)
{
	cJSON *m = cJSON_CreateObject(), *h, *a;
	size_t k;

	cJSON_AddBoolToObject(m, "global", i->global);
	a = cJSON_AddArrayToObject(m, "headers");
	for (k = 0; k < i->nheaders; k++) {
		h = cJSON_CreateObject();
		cJSON_AddStringToObject(h, "name", i->hname[k]);
		cJSON_AddStringToObject(h, "value", i->hvalue[k]);
		cJSON_AddItemToArray(a, h);
	}
	if (i->path_prefix)
		cJSON_AddStringToObject(m, "path_prefix", i->path_prefix);
	else
		cJSON_AddNullToObject(m, "path_prefix");
	return m;
}

/* "header x-dev=bob", "path /api", "all traffic" */
static void
match_str(const struct intercept *i, char *buf, size_t len)
{
	size_t k, off = 0;

	buf[0] = '\0';
	if (i->global) {
		snprintf(buf, len, "all traffic");
		return;
	}
	for (k = 0; k < i->nheaders && off < len; k++)
		off += snprintf(buf + off, len - off, "%sheader %s=%s", k ? ", " : "", i->hname[k],
		    i->hvalue[k]);
	if (i->path_prefix && off < len)
		snprintf(buf + off, len - off, "%spath %s*", off ? ", " : "", i->path_prefix);
}

/* Tell every sidecar of w what is intercepted now. */
static void
push(struct workload *w)
{
	struct intercept *i;
	size_t k;

	for (k = 0; k < w->nsidecars; k++) {
		cJSON *msg = kb_msg_new(KB_MSG_INTERCEPTS), *a, *o;

		a = cJSON_AddArrayToObject(msg, "intercepts");
		TAILQ_FOREACH(i, &w->icpts, entry) {
			o = match_json(i);
			cJSON_AddStringToObject(o, "id", i->id);
			cJSON_AddStringToObject(o, "owner", i->owner);
			cJSON_AddItemToArray(a, o);
		}
		if (w->sidecars[k]->sess)
			kb_session_send_control(w->sidecars[k]->sess, msg);
		else
			cJSON_Delete(msg);
	}
}

void
icpt_set_kube(struct icpt_reg *r, struct kb_kube *k)
{
	r->kube = k;
}

/* The pod's IPs hold ip? */
static int
pod_has_ip(const cJSON *pod, const char *ip)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(pod, "status"), *e;
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "podIP"));

	if (v && !strcmp(v, ip))
		return 1;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(st, "podIPs")) {
		v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "ip"));
		if (v && !strcmp(v, ip))
			return 1;
	}
	return 0;
}

static void
env_fetched(void *arg, const cJSON *env, const cJSON *pod, const char *err)
{
	struct workload *w = arg;
	cJSON *dup;

	w->fetch = NULL;
	/* The sidecar names its pod; the address it came from must be that
	 * pod's, so a sidecar gets no other pod's environment for its
	 * workload's intercepts. */
	if (env && !pod_has_ip(pod, w->fetch_ip)) {
		snprintf(w->env_err, sizeof(w->env_err), "pod %s/%s does not have the sidecar's "
		    "address %s", w->ns, w->fetch_pod, w->fetch_ip);
		env = NULL;
	} else if (!env) {
		snprintf(w->env_err, sizeof(w->env_err), "%s", err);
	}
	if (env && (dup = cJSON_Duplicate(env, 1)) != NULL) {
		cJSON_Delete(w->env);
		w->env = dup;
		w->env_err[0] = '\0';
		log_info("workload %s.%s: environment from the spec of pod %s/%s (%d variables)",
		    w->name, w->ns, w->ns, w->fetch_pod, cJSON_GetArraySize(env));
		return;
	}
	log_warnx("workload %s.%s: the environment of pod %s/%s cannot be made from its spec, "
	    "the sidecar's own stands: %s", w->name, w->ns, w->ns, w->fetch_pod, w->env_err);
}

/* In-cluster, a sidecar that names its pod ("pod", and "container": the
 * app's; default the pod's first): the env from the pod spec replaces
 * the sidecar's own once the API has answered. */
static void
env_from_pod(struct workload *w, struct client *c, const cJSON *hello)
{
	const char *pod = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(hello, "pod"));
	const char *ctr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(hello,
	    "container"));
	char *colon;

	w->env_err[0] = '\0';
	if (!w->reg->kube || !pod)
		return;
	podenv_fetch_cancel(w->fetch);
	w->fetch = NULL;
	/* c->peer is IP:PORT or [IP6]:PORT */
	snprintf(w->fetch_ip, sizeof(w->fetch_ip), "%s", c->peer[0] == '[' ? c->peer + 1 :
	    c->peer);
	if ((colon = strrchr(w->fetch_ip, c->peer[0] == '[' ? ']' : ':')) != NULL)
		*colon = '\0';
	snprintf(w->fetch_pod, sizeof(w->fetch_pod), "%s", pod);
	if ((w->fetch = podenv_fetch(w->reg->kube, w->ns, pod, ctr, env_fetched, w)) == NULL) {
		snprintf(w->env_err, sizeof(w->env_err), "sidecar %s names an invalid pod or "
		    "container", c->name);
		log_warnx("workload %s.%s: %s", w->name, w->ns, w->env_err);
	}
}

/* Why the env in an intercept's result is the sidecar's, if it is. */
static void
env_note(const struct workload *w, cJSON *r)
{
	char why[700];

	if (w->fetch) {
		snprintf(why, sizeof(why), "pod %s/%s is still being read from the API (run the "
		    "intercept again in a moment)", w->ns, w->fetch_pod);
		cJSON_AddStringToObject(r, "env_error", why);
	} else if (w->env_err[0]) {
		cJSON_AddStringToObject(r, "env_error", w->env_err);
	}
}

int
icpt_sidecar_hello(struct icpt_reg *r, struct client *c, const cJSON *hello, char *reason,
    size_t len)
{
	const cJSON *wl = cJSON_GetObjectItemCaseSensitive(hello, "workload");
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(hello, "namespace");
	const cJSON *proto = cJSON_GetObjectItemCaseSensitive(hello, "protocol");
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(hello, "env"), *e;
	struct workload *w;
	char want[2 * 64 + 2];

	if (!cJSON_IsString(wl) || !kb_dns_label(wl->valuestring) || !cJSON_IsString(ns) ||
	    !kb_dns_label(ns->valuestring)) {
		snprintf(reason, len, "sidecar hello needs a valid workload and namespace");
		return -1;
	}
	/* The certificate names the one workload this sidecar speaks for:
	 * another's intercept list, streams, protocol and environment are not
	 * its to have or set. */
	if (!c->workload[0]) {
		snprintf(reason, len, "sidecar certificate %s is bound to no workload; issue a new "
		    "one with 'kbridge-agent issue --sidecar --workload NAME --namespace NS'",
		    c->name);
		return -1;
	}
	/* Labels hold no dot, so NAME.NS names one workload. */
	snprintf(want, sizeof(want), "%s.%s", wl->valuestring, ns->valuestring);
	if (strcmp(c->workload, want)) {
		snprintf(reason, len, "sidecar certificate %s is for workload %s, not %s.%s",
		    c->name, c->workload, wl->valuestring, ns->valuestring);
		return -1;
	}
	if (!cJSON_IsString(proto) || (strcmp(proto->valuestring, "http") &&
	    strcmp(proto->valuestring, "tcp"))) {
		snprintf(reason, len, "sidecar protocol must be http or tcp");
		return -1;
	}
	if (env && !cJSON_IsObject(env)) {
		snprintf(reason, len, "sidecar env must be an object");
		return -1;
	}
	cJSON_ArrayForEach(e, env) {
		if (!cJSON_IsString(e)) {
			snprintf(reason, len, "sidecar env values must be strings");
			return -1;
		}
	}
	if ((w = find_workload(r, wl->valuestring, ns->valuestring)) == NULL &&
	    (w = workload_new(r, wl->valuestring, ns->valuestring)) == NULL) {
		snprintf(reason, len, "out of memory");
		return -1;
	}
	if (w->nsidecars == MAX_SIDECARS) {
		snprintf(reason, len, "too many sidecars for %s.%s", w->name, w->ns);
		workload_gc(w);
		return -1;
	}
	snprintf(w->protocol, sizeof(w->protocol), "%s", proto->valuestring);
	cJSON_Delete(w->env);
	w->env = env ? cJSON_Duplicate(env, 1) : cJSON_CreateObject();
	w->sidecars[w->nsidecars++] = c;
	log_info("sidecar %s joined workload %s.%s (%s)", c->name, w->name, w->ns, w->protocol);
	env_from_pod(w, c, hello);
	return 0;
}

void
icpt_sidecar_ready(struct icpt_reg *r, struct client *c)
{
	struct workload *w;
	size_t k;

	TAILQ_FOREACH(w, &r->workloads, entry)
		for (k = 0; k < w->nsidecars; k++)
			if (w->sidecars[k] == c)
				push(w);
}

static void grace_expired(evutil_socket_t fd, short what, void *arg);

/* After a change that can only shrink the stored state. */
static void
saved(void)
{
	char err[300];

	if (store_changed(err, sizeof(err)) < 0)
		log_warnx("intercepts: %s", err);
}

void
icpt_owner_hello(struct icpt_reg *r, struct client *c)
{
	struct workload *w, *wn;
	struct intercept *i, *in;

	for (w = TAILQ_FIRST(&r->workloads); w; w = wn) {
		wn = TAILQ_NEXT(w, entry);
		for (i = TAILQ_FIRST(&w->icpts); i; i = in) {
			in = TAILQ_NEXT(i, entry);
			if (i->client != NULL || strcmp(i->owner, c->name))
				continue;
			if (!strcmp(i->instance, c->instance)) {
				/* The same daemon reconnected: it still knows the intercept. */
				i->client = c;
				evtimer_del(i->grace);
				log_info_for(i->owner, "intercept %s of %s on %s.%s is back",
				    i->id, i->owner, w->name, w->ns);
				/* After a restart, its previews wait for it. */
				preview_intercept_made(i->owner, w->name, w->ns, i->id);
			} else {
				/* A new daemon of the same user cannot serve it: release now. */
				grace_expired(-1, 0, i);
			}
		}
	}
}

static void
grace_expired(evutil_socket_t fd, short what, void *arg)
{
	struct intercept *i = arg;
	struct workload *w = i->w;

	(void)fd;
	(void)what;
	log_info_for(i->owner, "intercept %s of %s on %s.%s released: its workstation did not "
	    "come back", i->id, i->owner, w->name, w->ns);
	preview_intercept_ended(i->id, 1);
	intercept_free(i);
	push(w);
	workload_gc(w);
	saved();
}

void
icpt_client_gone(struct icpt_reg *r, struct client *c)
{
	struct workload *w, *wn;
	struct intercept *i;
	struct timeval tv = kb_ms_tv(r->grace_ms);
	size_t k;

	for (w = TAILQ_FIRST(&r->workloads); w; w = wn) {
		wn = TAILQ_NEXT(w, entry);
		for (k = 0; k < w->nsidecars; k++) {
			if (w->sidecars[k] == c) {
				w->sidecars[k] = w->sidecars[--w->nsidecars];
				log_info("sidecar %s left workload %s.%s", c->name, w->name, w->ns);
				break;
			}
		}
		TAILQ_FOREACH(i, &w->icpts, entry) {
			if (i->client != c)
				continue;
			i->client = NULL;
			if (!i->grace)
				i->grace = evtimer_new(r->base, grace_expired, i);
			if (i->grace)
				evtimer_add(i->grace, &tv);
		}
		workload_gc(w);
	}
}

static cJSON *
result(const cJSON *req, int ok, int status, const char *error)
{
	/* kb_msg_parse made sure of the id. */
	return kb_msg_result(cJSON_GetObjectItemCaseSensitive(req, "id")->valuedouble, ok, status,
	    error);
}

static cJSON *
intercept_json(const struct intercept *i, const struct client *c)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", i->id);
	cJSON_AddStringToObject(o, "workload", i->w->name);
	cJSON_AddStringToObject(o, "namespace", i->w->ns);
	cJSON_AddStringToObject(o, "owner", i->owner);
	cJSON_AddStringToObject(o, "protocol", i->w->protocol);
	cJSON_AddBoolToObject(o, "mine", !strcmp(i->owner, c->name));
	if (!strcmp(i->owner, c->name))
		cJSON_AddNumberToObject(o, "port", i->port);
	cJSON_AddBoolToObject(o, "active", i->client != NULL);
	cJSON_AddItemToObject(o, "match", match_json(i));
	return o;
}

static cJSON *
do_list(struct icpt_reg *reg, struct client *c, const cJSON *req)
{
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(req, "namespace");
	cJSON *r = result(req, 1, 0, NULL), *a, *o, *ia;
	struct workload *w;
	struct intercept *i;

	a = cJSON_AddArrayToObject(r, "workloads");
	TAILQ_FOREACH(w, &reg->workloads, entry) {
		if (cJSON_IsString(ns) && strcmp(ns->valuestring, w->ns))
			continue;
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", w->name);
		cJSON_AddStringToObject(o, "namespace", w->ns);
		cJSON_AddStringToObject(o, "protocol", w->protocol);
		cJSON_AddNumberToObject(o, "replicas", w->nsidecars);
		ia = cJSON_AddArrayToObject(o, "intercepts");
		TAILQ_FOREACH(i, &w->icpts, entry)
			cJSON_AddItemToArray(ia, intercept_json(i, c));
		cJSON_AddItemToArray(a, o);
	}
	return r;
}

/* Could one request match both? Two matches are apart only when they want
 * the same header with different values, or have path prefixes neither of
 * which starts the other; otherwise a request can carry both and whichever
 * the sidecar tried first would take it. */
static int
overlaps(const struct intercept *a, const struct intercept *b)
{
	size_t k, l, n;

	if (a->global || b->global)
		return 1;
	for (k = 0; k < a->nheaders; k++)
		for (l = 0; l < b->nheaders; l++)
			if (!strcmp(a->hname[k], b->hname[l]) && strcmp(a->hvalue[k], b->hvalue[l]))
				return 0;
	if (a->path_prefix && b->path_prefix) {
		n = strlen(a->path_prefix) < strlen(b->path_prefix) ? strlen(a->path_prefix) :
		    strlen(b->path_prefix);
		if (strncmp(a->path_prefix, b->path_prefix, n))
			return 0;
	}
	return 1;
}

/* The message below says 1024. */
_Static_assert(KB_API_HDR_VALUE_MAX == 1024, "update the header value message");

/* Parse the match of an intercept request into n. NULL, or an error text. */
static const char *
parse_match(const cJSON *req, struct intercept *n)
{
	const cJSON *hs = cJSON_GetObjectItemCaseSensitive(req, "headers");
	const cJSON *pp = cJSON_GetObjectItemCaseSensitive(req, "path_prefix"), *h;
	char *p;

	/* kb_msg_parse checked: a list (or null) of at most KB_MAX_MATCH_HEADERS. */
	cJSON_ArrayForEach(h, hs) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(h, "name");
		const cJSON *value = cJSON_GetObjectItemCaseSensitive(h, "value");

		if (!cJSON_IsString(name) || !http_token(name->valuestring))
			return "header name is not an HTTP token";
		if (!cJSON_IsString(value))
			return "header value must be a string";
		if (strlen(value->valuestring) > KB_API_HDR_VALUE_MAX)
			return "header value longer than 1024 characters";
		if (strpbrk(value->valuestring, "\r\n"))
			return "header value must not contain CR or LF";
		n->hname[n->nheaders] = strdup(name->valuestring);
		n->hvalue[n->nheaders] = strdup(value->valuestring);
		/* Counted either way, so the caller frees what was allocated. */
		if (!n->hname[n->nheaders++] || !n->hvalue[n->nheaders - 1])
			return "out of memory";
		for (p = n->hname[n->nheaders - 1]; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	/* "/" (or nothing) matches every path: no prefix at all. */
	if (pp && !cJSON_IsNull(pp) && !(cJSON_IsString(pp) && (!strcmp(pp->valuestring, "/") ||
	    !pp->valuestring[0]))) {
		if (!cJSON_IsString(pp) || pp->valuestring[0] != '/' ||
		    strpbrk(pp->valuestring, " \r\n") || strlen(pp->valuestring) > 1024)
			return "path prefix must start with / and contain no spaces";
		if ((n->path_prefix = strdup(pp->valuestring)) == NULL)
			return "out of memory";
	}
	n->global = n->nheaders == 0 && !n->path_prefix;
	return NULL;
}

static struct intercept *
find_id(struct icpt_reg *r, const char *id)
{
	return kb_htab_get(&r->by_id, id, strlen(id));
}

static int
id_ok(const char *s)
{
	const char *p;

	if (!s || strlen(s) != ID_LEN)
		return 0;
	for (p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

/* What an intercept request's "resume" (the id a daemon had before the
 * manager restarted) may have. Only its owner identity gets an id back:
 * ids are visible to everyone in "list". */
enum resume { RESUME_NONE, RESUME_FREE, RESUME_KEPT, RESUME_REFUSED };

static enum resume
resume_check(struct icpt_reg *r, const struct client *c, const cJSON *req,
    struct intercept **kept, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "resume");
	const char *wl = cJSON_GetObjectItemCaseSensitive(req, "workload")->valuestring;
	const char *ns = cJSON_GetObjectItemCaseSensitive(req, "namespace")->valuestring;
	const char *owner;
	struct intercept *i;

	*kept = NULL;
	if (!cJSON_IsString(v) || !id_ok(v->valuestring))
		return RESUME_NONE;
	if ((i = find_id(r, v->valuestring)) != NULL) {
		if (strcmp(i->owner, c->name)) {
			snprintf(err, errlen, "intercept %s is not yours to resume (it belongs to %s)",
			    i->id, i->owner);
			return RESUME_REFUSED;
		}
		if (strcmp(i->w->name, wl) || strcmp(i->w->ns, ns)) {
			snprintf(err, errlen, "intercept %s is on %s.%s, not %s.%s", i->id,
			    i->w->name, i->w->ns, wl, ns);
			return RESUME_REFUSED;
		}
		if (i->client && i->client != c) {
			snprintf(err, errlen, "you already intercept %s.%s from another workstation",
			    wl, ns);
			return RESUME_REFUSED;
		}
		*kept = i;
		return RESUME_KEPT;
	}
	/* Not kept (a manager without the in-cluster store): free, unless
	 * previews of another owner wait for it. */
	if ((owner = preview_icpt_owner(v->valuestring)) != NULL && strcmp(owner, c->name)) {
		snprintf(err, errlen, "intercept %s is not yours to resume (it belongs to %s)",
		    v->valuestring, owner);
		return RESUME_REFUSED;
	}
	return RESUME_FREE;
}

/* The owner's daemon makes a kept intercept again (the manager restarted
 * and kept it): it is served from c from now on, as it was. */
static cJSON *
resume_kept(struct client *c, const cJSON *req, struct intercept *i)
{
	int moved = strcmp(i->instance, c->instance) != 0;
	cJSON *r;

	i->client = c;
	snprintf(i->instance, sizeof(i->instance), "%s", c->instance);
	if (i->grace)
		evtimer_del(i->grace);
	log_info_for(i->owner, "intercept %s: %s resumed %s.%s", i->id, i->owner, i->w->name,
	    i->w->ns);
	preview_intercept_made(i->owner, i->w->name, i->w->ns, i->id);
	push(i->w);
	if (moved)
		saved();
	r = result(req, 1, 0, NULL);
	cJSON_AddItemToObject(r, "intercept", intercept_json(i, c));
	if (i->w->env)
		cJSON_AddItemToObject(r, "env", cJSON_Duplicate(i->w->env, 1));
	env_note(i->w, r);
	return r;
}

/* Why name.ns cannot be intercepted when no sidecar ever named it: the
 * namespaces where a workload of that name runs one ("add -n shop"), and
 * those that have any. */
static void
not_found(struct icpt_reg *reg, const char *name, const char *ns, char *err, size_t len)
{
	const struct workload *w, *v;
	char there[300] = "", all[300] = "";
	size_t off, nthere = 0;
	int cut;

	TAILQ_FOREACH(w, &reg->workloads, entry) {
		if (w->nsidecars == 0)
			continue;
		if (!strcmp(w->name, name) && (off = strlen(there)) < sizeof(there)) {
			snprintf(there + off, sizeof(there) - off, "%s%s", off ? ", " : "", w->ns);
			nthere++;
		}
		/* Each namespace once: at the first workload of it that runs one. */
		TAILQ_FOREACH(v, &reg->workloads, entry)
			if (v->nsidecars && !strcmp(v->ns, w->ns))
				break;
		if (v == w && (off = strlen(all)) < sizeof(all))
			snprintf(all + off, sizeof(all) - off, "%s%s", off ? ", " : "", w->ns);
	}
	/* A message cut short is still one (its length only bounds it). */
	if (nthere == 1)
		cut = snprintf(err, len, "no workload %s in namespace %s runs a kbridge sidecar, "
		    "but one in namespace %s does: add -n %s (namespaces with sidecars: %s)",
		    name, ns, there, there, all);
	else if (nthere > 1)
		cut = snprintf(err, len, "no workload %s in namespace %s runs a kbridge sidecar, "
		    "but ones in namespaces %s do: add -n with one of them", name, ns, there);
	else
		cut = snprintf(err, len, "no workload %s in namespace %s runs a kbridge sidecar "
		    "(namespaces with sidecars: %s; 'kbridge list -n NS' shows theirs)", name, ns,
		    all[0] ? all : "none");
	if (cut < 0 && len > 0)
		err[0] = '\0';
}

/* Do intercepts a and b match the same requests the same way? */
static int
same_match(const struct intercept *a, const struct intercept *b)
{
	size_t i, j;

	if (a->global != b->global || a->nheaders != b->nheaders ||
	    !a->path_prefix != !b->path_prefix ||
	    (a->path_prefix && strcmp(a->path_prefix, b->path_prefix)))
		return 0;
	for (i = 0; i < a->nheaders; i++) {
		for (j = 0; j < b->nheaders; j++)
			if (!strcmp(a->hname[i], b->hname[j]) && !strcmp(a->hvalue[i], b->hvalue[j]))
				break;
		if (j == b->nheaders)
			return 0;
	}
	return 1;
}

static cJSON *
do_intercept(struct icpt_reg *reg, struct client *c, const cJSON *req)
{
	const cJSON *wl = cJSON_GetObjectItemCaseSensitive(req, "workload");
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(req, "namespace");
	const cJSON *port = cJSON_GetObjectItemCaseSensitive(req, "port");
	struct intercept *n, *i;
	struct workload *w;
	char err[600], m[200];
	const char *why;
	enum resume rs;
	cJSON *r;
	size_t k;

	/* kb_msg_parse checked the names (DNS labels) and the port (1-65535). */
	rs = resume_check(reg, c, req, &i, err, sizeof(err));
	if (rs == RESUME_REFUSED)
		return result(req, 0, 403, err);
	if (rs == RESUME_KEPT)
		return resume_kept(c, req, i);
	if ((w = find_workload(reg, wl->valuestring, ns->valuestring)) == NULL) {
		not_found(reg, wl->valuestring, ns->valuestring, err, sizeof(err));
		return result(req, 0, 404, err);
	}
	if (w->nsidecars == 0) {
		snprintf(err, sizeof(err), "workload %s in namespace %s has no kbridge sidecar "
		    "connected now (its pods are gone or starting): try again once one runs",
		    wl->valuestring, ns->valuestring);
		return result(req, 0, 404, err);
	}
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return result(req, 0, 500, "out of memory");
	n->w = w;
	if ((why = parse_match(req, n)) != NULL) {
		r = result(req, 0, 400, why);
		goto fail;
	}
	if (!strcmp(w->protocol, "tcp") && !n->global) {
		snprintf(err, sizeof(err), "%s.%s is a TCP workload: only a global intercept "
		    "(no --http-header or --http-path-prefix) is possible", w->name, w->ns);
		r = result(req, 0, 400, err);
		goto fail;
	}
	TAILQ_FOREACH(i, &w->icpts, entry) {
		match_str(i, m, sizeof(m));
		/* The same intercept again from its session: it stands. */
		if (!strcmp(i->owner, c->name) && i->client == c &&
		    i->port == (unsigned)port->valuedouble &&
		    same_match(i, n)) {
			r = result(req, 1, 0, NULL);
			cJSON_AddItemToObject(r, "intercept", intercept_json(i, c));
			cJSON_AddItemToObject(r, "env", cJSON_Duplicate(w->env, 1));
			env_note(w, r);
			log_info_for(i->owner, "intercept %s: %s asked for it again", i->id,
			    i->owner);
			goto fail;	/* only frees n */
		}
		if (!strcmp(i->owner, c->name)) {
			snprintf(err, sizeof(err), "you already intercept %s.%s (%s); run 'kbridge "
			    "leave %s' first", w->name, w->ns, m, w->name);
		} else if (n->global || i->global) {
			snprintf(err, sizeof(err), "%s.%s is already intercepted by %s (%s)%s",
			    w->name, w->ns, i->owner, m,
			    n->global ? ": a global intercept needs the workload to itself" : "");
		} else if (overlaps(n, i)) {
			snprintf(err, sizeof(err), "%s already intercepts %s.%s with a match that "
			    "overlaps yours (%s): a request could match both; pick a header value "
			    "or path prefix of your own", i->owner, w->name, w->ns, m);
		} else {
			continue;
		}
		r = result(req, 0, 409, err);
		goto fail;
	}
	if (rs == RESUME_FREE) {
		/* Made again after a restart of the manager: the same id, so
		 * its previews (and only its) serve it again. */
		snprintf(n->id, sizeof(n->id), "%s",
		    cJSON_GetObjectItemCaseSensitive(req, "resume")->valuestring);
	} else {
		if (kb_random_hex(n->id, ID_LEN / 2) < 0) {
			r = result(req, 0, 500, "no randomness");
			goto fail;
		}
	}
	snprintf(n->owner, sizeof(n->owner), "%s", c->name);
	snprintf(n->instance, sizeof(n->instance), "%s", c->instance);
	n->client = c;
	n->port = (unsigned)port->valuedouble;
	if (intercept_link(n) < 0) {
		r = result(req, 0, 500, "out of memory");
		goto fail;
	}
	if (store_changed(err, sizeof(err)) < 0) {
		intercept_unlink(n);
		r = result(req, 0, 507, err);
		goto fail;
	}
	match_str(n, m, sizeof(m));
	log_info_for(n->owner, "intercept %s: %s intercepts %s.%s (%s) to port %u", n->id,
	    n->owner, w->name, w->ns, m, n->port);
	preview_intercept_made(n->owner, w->name, w->ns, n->id);
	push(w);
	r = result(req, 1, 0, NULL);
	cJSON_AddItemToObject(r, "intercept", intercept_json(n, c));
	cJSON_AddItemToObject(r, "env", cJSON_Duplicate(w->env, 1));
	env_note(w, r);
	return r;
fail:
	n->w = NULL;
	for (k = 0; k < n->nheaders; k++) {
		free(n->hname[k]);
		free(n->hvalue[k]);
	}
	free(n->path_prefix);
	free(n);
	return r;
}

static cJSON *
do_leave(struct icpt_reg *reg, struct client *c, const cJSON *req)
{
	const cJSON *wl = cJSON_GetObjectItemCaseSensitive(req, "workload");
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(req, "namespace");
	struct workload *w;
	struct intercept *i;
	char err[200];

	if ((w = find_workload(reg, wl->valuestring, ns->valuestring)) != NULL) {
		TAILQ_FOREACH(i, &w->icpts, entry) {
			if (!strcmp(i->owner, c->name)) {
				cJSON *r = result(req, 1, 0, NULL);

				log_info_for(i->owner, "intercept %s: %s left %s.%s", i->id,
				    i->owner, w->name, w->ns);
				cJSON_AddNumberToObject(r, "previews_ended",
				    preview_intercept_ended(i->id, 0));
				intercept_free(i);
				push(w);
				workload_gc(w);
				saved();
				return r;
			}
		}
	}
	snprintf(err, sizeof(err), "you have no intercept on %s.%s", wl->valuestring,
	    ns->valuestring);
	return result(req, 0, 404, err);
}

cJSON *
icpt_end_all(struct icpt_reg *r, struct client *c, const char *why)
{
	cJSON *a = cJSON_CreateArray(), *o;
	struct workload *w, *wn;
	struct intercept *i, *in;

	for (w = TAILQ_FIRST(&r->workloads); w; w = wn) {
		wn = TAILQ_NEXT(w, entry);
		for (i = TAILQ_FIRST(&w->icpts); i; i = in) {
			in = TAILQ_NEXT(i, entry);
			if (i->client != c)
				continue;
			log_info_for(i->owner, "intercept %s: %s left %s.%s (%s)", i->id,
			    i->owner, w->name, w->ns, why);
			o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "workload", w->name);
			cJSON_AddStringToObject(o, "namespace", w->ns);
			cJSON_AddStringToObject(o, "id", i->id);
			cJSON_AddNumberToObject(o, "previews_ended", preview_intercept_ended(i->id, 0));
			cJSON_AddItemToArray(a, o);
			intercept_free(i);
			push(w);
		}
		workload_gc(w);
	}
	if (cJSON_GetArraySize(a) > 0)
		saved();
	return a;
}

void
icpt_move(struct icpt_reg *r, struct client *from, struct client *to)
{
	struct workload *w;
	struct intercept *i;

	TAILQ_FOREACH(w, &r->workloads, entry)
		TAILQ_FOREACH(i, &w->icpts, entry)
			if (i->client == from)
				i->client = to;
}

/* The daemon is quitting: its intercepts and their previews end now, not
 * after a grace period in which their callers would get 502. */
static cJSON *
do_leave_all(struct icpt_reg *reg, struct client *c, const cJSON *req)
{
	cJSON *r = result(req, 1, 0, NULL);

	cJSON_AddItemToObject(r, "ended", icpt_end_all(reg, c, "its daemon quit"));
	return r;
}

int
icpt_owned(struct icpt_reg *r, const char *owner, const char *wl, const char *ns, char *id,
    size_t idlen, int *http)
{
	struct workload *w;
	struct intercept *i;

	if ((w = find_workload(r, wl, ns)) == NULL)
		return -1;
	TAILQ_FOREACH(i, &w->icpts, entry) {
		if (!strcmp(i->owner, owner)) {
			snprintf(id, idlen, "%s", i->id);
			*http = !strcmp(w->protocol, "http");
			return 0;
		}
	}
	return -1;
}

struct client *
icpt_sidecar(struct icpt_reg *r, const char *wl, const char *ns, size_t k, size_t *n)
{
	struct workload *w = find_workload(r, wl, ns);

	*n = w ? w->nsidecars : 0;
	return w && k < w->nsidecars ? w->sidecars[k] : NULL;
}

int
icpt_state(struct icpt_reg *r, const char *id, const char *owner)
{
	struct intercept *i = find_id(r, id);

	if (!i || strcmp(i->owner, owner))
		return -1;
	return i->client && i->client->sess && kb_session_ready(i->client->sess);
}

cJSON *
icpt_request(struct icpt_reg *r, struct client *c, enum kb_msg_type type, const cJSON *msg)
{
	switch (type) {
	case KB_MSG_LIST:
		return do_list(r, c, msg);
	case KB_MSG_INTERCEPT:
		return do_intercept(r, c, msg);
	case KB_MSG_LEAVE:
		return do_leave(r, c, msg);
	case KB_MSG_LEAVE_ALL:
		return do_leave_all(r, c, msg);
	default:
		return NULL;
	}
}

/* --- carrying an intercepted stream to the owner's workstation --- */

/* The sidecar's stream and one to the owner's daemon, joined stream to
 * stream (session.h's callback endpoint, no socket in between): what one
 * peer sends goes out on the other as far as the other's credit allows,
 * and the rest waits in the first, holding its peer back by the window.
 * The sidecar's stream is accepted once the daemon's is (a refusal comes
 * back as a reset with its reason), but its early data (the request) goes
 * on at once, as early data of ours, before the daemon has connected.
 * A FIN is passed on once the data before it went; a reset (the daemon's
 * refusal, with its reason) resets the other side. */
struct bridge {
	struct kb_stream *side; /* from the sidecar */
	struct kb_stream *dlv;  /* to the owner's daemon */
};

static void
bridge_pump(struct kb_stream *from, struct kb_stream *to)
{
	struct evbuffer *in = kb_stream_input(from);

	if (in == NULL)
		return;
	if (evbuffer_get_length(in) > 0)
		kb_stream_write(to, in);
	if (evbuffer_get_length(in) == 0 && kb_stream_eof(from))
		kb_stream_shutdown(to);
}

static void
side_data(struct kb_stream *st, void *arg)
{
	struct bridge *b = arg;

	if (b->dlv)
		bridge_pump(st, b->dlv);
}

static void
dlv_data(struct kb_stream *st, void *arg)
{
	struct bridge *b = arg;

	if (b->side)
		bridge_pump(st, b->side);
}

/* The daemon connected to the local port: the sidecar's stream goes on. */
static void
dlv_accepted(struct kb_stream *st, void *arg)
{
	struct bridge *b = arg;

	(void)st;
	/* On failure side is reset: side_closed resets dlv and frees b. */
	if (b->side)
		kb_stream_accept_cb(b->side, NULL, NULL);
}

static void
side_writable(struct kb_stream *st, void *arg)
{
	struct bridge *b = arg;

	if (b->dlv)
		bridge_pump(b->dlv, st);
}

static void
dlv_writable(struct kb_stream *st, void *arg)
{
	struct bridge *b = arg;

	if (b->side)
		bridge_pump(b->side, st);
}

/* One side ended. Cleanly: the other has sent and received everything
 * and ends by itself. Otherwise the other is reset (text passed on). */
static void
bridge_closed(struct bridge *b, struct kb_stream **self, struct kb_stream *other, int reason,
    uint8_t code, const char *text)
{
	*self = NULL;
	if (other && reason) {
		kb_stream_set_cbs(other, NULL, NULL);
		kb_stream_reset(other, code, text);
		other = NULL;
	}
	if (other == NULL) {
		b->side = b->dlv = NULL;
		free(b);
	}
}

static void
dlv_closed(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct bridge *b = arg;

	(void)st;
	bridge_closed(b, &b->dlv, b->side, reason, reason ? reason : KB_RST_CANCEL,
	    text && *text ? text : "the workstation closed the connection");
}

static void
side_closed(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct bridge *b = arg;

	(void)st;
	(void)text;
	bridge_closed(b, &b->side, b->dlv, reason, KB_RST_CANCEL, "the caller went away");
}

static const struct kb_stream_cbs dlv_cbs = {
	.on_accept = dlv_accepted, .on_close = dlv_closed, .on_data = dlv_data, .on_writable = dlv_writable,
};
static const struct kb_stream_cbs side_cbs = {
	.on_close = side_closed, .on_data = side_data, .on_writable = side_writable,
};

void
icpt_route_stream(struct icpt_reg *r, struct client *sidecar, struct kb_stream *st,
    const char *ref)
{
	struct workload *w;
	struct intercept *i = NULL;
	struct kb_open o = { .kind = KB_OPEN_DELIVER };
	struct bridge *b;
	char text[200];
	size_t k;

	/* Only an intercept on a workload this sidecar serves. */
	if ((i = find_id(r, ref)) != NULL) {
		w = i->w;
		for (k = 0; k < w->nsidecars && w->sidecars[k] != sidecar; k++)
			;
		if (k == w->nsidecars)
			i = NULL;
	}
	if (!i) {
		kb_stream_reset(st, KB_RST_DENIED, "no such intercept on this workload");
		return;
	}
	if (!i->client || !i->client->sess || !kb_session_ready(i->client->sess)) {
		snprintf(text, sizeof(text), "the workstation of %s is not connected", i->owner);
		kb_stream_reset(st, KB_RST_UNREACHABLE, text);
		return;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
		return;
	}
	snprintf(o.ref, sizeof(o.ref), "%s", i->id);
	if ((b->dlv = kb_stream_open_cb(i->client->sess, &o, &dlv_cbs, b)) == NULL) {
		free(b);
		kb_stream_reset(st, KB_RST_INTERNAL, "cannot reach the workstation");
		return;
	}
	b->side = st;
	/* On failure st is reset: side_closed resets dlv and frees b. */
	kb_stream_early_cb(st, &side_cbs, b);
}

/* --- kept across restarts of the in-cluster manager (agent/store.c) --- */

cJSON *
icpt_dump(struct icpt_reg *r)
{
	cJSON *a = cJSON_CreateArray(), *o;
	struct workload *w;
	struct intercept *i;

	if (!a)
		return NULL;
	TAILQ_FOREACH(w, &r->workloads, entry) {
		TAILQ_FOREACH(i, &w->icpts, entry) {
			if ((o = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(a, o)) {
				cJSON_Delete(o);
				cJSON_Delete(a);
				return NULL;
			}
			cJSON_AddStringToObject(o, "id", i->id);
			cJSON_AddStringToObject(o, "owner", i->owner);
			cJSON_AddStringToObject(o, "instance", i->instance);
			cJSON_AddStringToObject(o, "workload", w->name);
			cJSON_AddStringToObject(o, "namespace", w->ns);
			cJSON_AddStringToObject(o, "protocol", w->protocol);
			cJSON_AddNumberToObject(o, "port", i->port);
			cJSON_AddItemToObject(o, "match", match_json(i));
		}
	}
	return a;
}

static const char *
jstr(const cJSON *o, const char *key, size_t max)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return s && *s && strlen(s) < max ? s : NULL;
}

/* One kept intercept, checked as a request would be: 0, or -1 (invalid,
 * a duplicate, or out of memory; nothing added). */
static int
restore_one(struct icpt_reg *r, const cJSON *o, const struct timeval *tv)
{
	const char *id = jstr(o, "id", ID_LEN + 1), *owner = jstr(o, "owner", 64);
	const char *inst = jstr(o, "instance", 40), *wl = jstr(o, "workload", 64);
	const char *ns = jstr(o, "namespace", 64), *proto = jstr(o, "protocol", 8);
	const cJSON *match = cJSON_GetObjectItemCaseSensitive(o, "match");
	const cJSON *hs = cJSON_GetObjectItemCaseSensitive(match, "headers");
	double port = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "port"));
	struct intercept *n, *i;
	struct workload *w;
	int fresh = 0;

	if (!id_ok(id) || find_id(r, id) || !owner || !wl || !kb_dns_label(wl) || !ns ||
	    !kb_dns_label(ns) || !proto || (strcmp(proto, "http") && strcmp(proto, "tcp")) ||
	    !(port >= 1 && port <= 65535) || port != (unsigned)port || !cJSON_IsObject(match) ||
	    !(cJSON_IsNull(hs) || (cJSON_IsArray(hs) &&
	    cJSON_GetArraySize(hs) <= KB_MAX_MATCH_HEADERS)))
		return -1;
	if ((w = find_workload(r, wl, ns)) != NULL) {
		TAILQ_FOREACH(i, &w->icpts, entry)
			if (!strcmp(i->owner, owner))
				return -1;
	} else {
		if ((w = workload_new(r, wl, ns)) == NULL)
			return -1;
		snprintf(w->protocol, sizeof(w->protocol), "%s", proto);
		w->env = cJSON_CreateObject();
		fresh = 1;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL)
		goto fail;
	n->w = w;
	if (parse_match(match, n) != NULL || (!strcmp(w->protocol, "tcp") && !n->global) ||
	    (n->grace = evtimer_new(r->base, grace_expired, n)) == NULL)
		goto fail;
	TAILQ_FOREACH(i, &w->icpts, entry)
		if (n->global || i->global || overlaps(n, i))
			goto fail;
	snprintf(n->id, sizeof(n->id), "%s", id);
	snprintf(n->owner, sizeof(n->owner), "%s", owner);
	snprintf(n->instance, sizeof(n->instance), "%s", inst ? inst : "");
	n->port = (unsigned)port;
	if (intercept_link(n) < 0)
		goto fail;
	evtimer_add(n->grace, tv);
	return 0;
fail:
	if (n)
		intercept_release(n);
	if (fresh)
		workload_gc(w);
	return -1;
}

size_t
icpt_restore(struct icpt_reg *r, const cJSON *list)
{
	struct timeval tv = kb_ms_tv(r->grace_ms > RESTORED_GRACE_MS ? r->grace_ms :
	    RESTORED_GRACE_MS);
	const cJSON *o;
	size_t n = 0, bad = 0;

	cJSON_ArrayForEach(o, list) {
		if (restore_one(r, o, &tv) == 0)
			n++;
		else
			bad++;
	}
	if (bad)
		log_warnx("intercepts: %zu kept ones are invalid or overlap others: dropped", bad);
	return n;
}

/* Every intercept and workload of r gone; r stays, empty. */
static void
icpt_clear(struct icpt_reg *r)
{
	struct workload *w;

	while ((w = TAILQ_FIRST(&r->workloads)) != NULL) {
		while (!TAILQ_EMPTY(&w->icpts))
			intercept_free(TAILQ_FIRST(&w->icpts));
		w->nsidecars = 0;
		workload_gc(w);
	}
	kb_htab_clear(&r->by_id);
	kb_htab_clear(&r->by_name);
}

void
icpt_free(struct icpt_reg *r)
{
	if (r == NULL)
		return;
	icpt_clear(r);
	free(r);
}
