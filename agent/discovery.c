/* Discovery of the cluster's subnets and namespaces (see discovery.h). */
#include "discovery.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "kubeapi.h"
#include "log.h"

/* Without ServiceCIDR objects the range only changes with the API server's
 * flags: asked again this often. */
#define DRYRUN_EVERY_S 60
#define RANGE_TEXT "range of valid IPs is "
#define PROBE_IP "1.1.1.1"

struct discovery;

/* The objects of one watch, by namespace/name, each with the value that
 * matters (NULL: ignored object). */
struct set {
	struct discovery *d;
	struct kb_kube_watch *w;
	cJSON *items; /* object: key -> value */
	int synced;
	cJSON *(*value)(const cJSON *obj);
	const char *what;
};

struct discovery {
	struct event_base *base;
	struct kb_kube *kube;
	char *ns;
	struct discovery_cbs cbs;
	struct set svc, nodes, pods, nss;
	int svc_from_dryrun;		/* no ServiceCIDR objects to watch */
	struct kb_cidr dry[DISCOVERY_MAX_SUBNETS];
	size_t ndry;
	int dry_known;
	struct kb_kube_req *dry_req;
	struct event *dry_ev;
	struct kb_cidr last[DISCOVERY_MAX_SUBNETS];
	size_t nlast;
	int sent_subnets;
	char **last_ns;
	size_t nlast_ns;
	int sent_ns;
};

size_t
discovery_parse_range(const char *msg, struct kb_cidr *out, size_t max)
{
	const char *p = msg ? strstr(msg, RANGE_TEXT) : NULL;
	char tok[64];
	size_t n = 0, len;

	if (!p)
		return 0;
	p += strlen(RANGE_TEXT);
	while (*p && n < max) {
		p += strspn(p, " ,");
		if (!strncmp(p, "and ", 4)) {
			p += 4;
			continue;
		}
		len = strcspn(p, " ,;\"'");
		if (len == 0)
			break;
		if (len < sizeof(tok)) {
			memcpy(tok, p, len);
			tok[len] = '\0';
			/* The last one may end a sentence. */
			if (len > 1 && tok[len - 1] == '.')
				tok[len - 1] = '\0';
			if (kb_cidr_parse(tok, &out[n]) == 0)
				n++;
			else if (!strchr(tok, ':')) /* IPv6 ranges are skipped, prose ends */
				break;
		}
		p += len;
	}
	return n;
}

int
discovery_domain_from_resolv(const char *resolv, char *out, size_t len)
{
	const char *line = resolv, *p, *end;
	size_t n;

	for (; line && *line; line = end + (*end == '\n')) {
		end = line + strcspn(line, "\n");
		if (strncmp(line, "search", 6) || (line[6] != ' ' && line[6] != '\t'))
			continue;
		for (p = line + 6; p < end; p += n) {
			p += strspn(p, " \t");
			n = strcspn(p, " \t\n");
			if (n > 4 && !strncmp(p, "svc.", 4)) {
				const char *d = p + 4;
				size_t dn = n - 4, i;

				if (d[dn - 1] == '.')
					dn--;
				for (i = 0; i < dn; i++)
					if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-.", d[i]))
						break;
				if (dn == 0 || i < dn || dn >= len || dn > 253)
					continue;
				memcpy(out, d, dn);
				out[dn] = '\0';
				return 0;
			}
		}
	}
	return -1;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

size_t
discovery_cover(const uint32_t *ips, size_t n, struct kb_cidr *out, size_t max)
{
	uint32_t *v, lo, hi;
	size_t i, j, k = 0;
	int p;

	if (n == 0 || (v = malloc(n * sizeof(*v))) == NULL)
		return 0;
	memcpy(v, ips, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_u32);
	for (i = 0; i < n && k < max; i = j) {
		lo = v[i];
		for (j = i; j < n && v[j] >> 16 == lo >> 16; j++)
			;
		hi = v[j - 1];
		for (p = 24; p > 16 && lo >> (32 - p) != hi >> (32 - p); p--)
			;
		memset(&out[k], 0, sizeof(out[k]));
		out[k].addr = lo & (0xffffffffu << (32 - p));
		out[k].prefix = (uint8_t)p;
		k++;
	}
	free(v);
	return k;
}

/* --- values of the watched objects --- */

static const char *
meta_str(const cJSON *obj, const char *field)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(obj, "metadata"), field));
}

static const cJSON *
spec(const cJSON *obj)
{
	return cJSON_GetObjectItemCaseSensitive(obj, "spec");
}

/* The IPv4 CIDRs of a string array. */
static cJSON *
cidr_list(const cJSON *a)
{
	struct kb_cidr c;
	const cJSON *e;
	cJSON *v = cJSON_CreateArray();

	cJSON_ArrayForEach(e, a)
		if (cJSON_IsString(e) && kb_cidr_parse(e->valuestring, &c) == 0)
			cJSON_AddItemToArray(v, cJSON_CreateString(e->valuestring));
	if (cJSON_GetArraySize(v) == 0) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

static cJSON *
svc_value(const cJSON *obj)
{
	return cidr_list(cJSON_GetObjectItemCaseSensitive(spec(obj), "cidrs"));
}

static cJSON *
node_value(const cJSON *obj)
{
	const cJSON *s = spec(obj), *a = cJSON_GetObjectItemCaseSensitive(s, "podCIDRs");
	cJSON *v = cidr_list(a), *one;

	if (v || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(s, "podCIDR")))
		return v;
	one = cJSON_CreateArray();
	cJSON_AddItemToArray(one, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(s, "podCIDR"), 0));
	v = cidr_list(one);
	cJSON_Delete(one);
	return v;
}

static cJSON *
pod_value(const cJSON *obj)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(obj, "status");
	const char *ip = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "podIP"));
	struct in_addr a;

	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec(obj), "hostNetwork")) || !ip ||
	    inet_pton(AF_INET, ip, &a) != 1)
		return NULL;
	return cJSON_CreateString(ip);
}

static cJSON *
ns_value(const cJSON *obj)
{
	(void)obj;
	return cJSON_CreateTrue();
}

/* --- the results --- */

static void add_cidrs(struct kb_cidr *out, size_t *n, const cJSON *items);
static void pods_start(struct discovery *d);
static void pods_stop(struct discovery *d);

static int
have(const struct kb_cidr *v, size_t n, const struct kb_cidr *c)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i].addr == c->addr && v[i].prefix == c->prefix)
			return 1;
	return 0;
}

static void
push(struct kb_cidr *out, size_t *n, const struct kb_cidr *c)
{
	if (*n < DISCOVERY_MAX_SUBNETS && !have(out, *n, c))
		out[(*n)++] = *c;
}

static void
add_cidrs(struct kb_cidr *out, size_t *n, const cJSON *items)
{
	const cJSON *item, *e;
	struct kb_cidr c;

	cJSON_ArrayForEach(item, items)
		cJSON_ArrayForEach(e, item)
			if (cJSON_IsString(e) && kb_cidr_parse(e->valuestring, &c) == 0)
				push(out, n, &c);
}

static void
subnets_changed(struct discovery *d)
{
	struct kb_cidr v[DISCOVERY_MAX_SUBNETS], cover[DISCOVERY_MAX_SUBNETS];
	uint32_t *ips;
	const cJSON *e;
	struct in_addr a;
	size_t n = 0, nips = 0, i, nc;
	char buf[32];

	if (d->svc_from_dryrun ? !d->dry_known : !d->svc.synced)
		return;
	if (!d->nodes.synced)
		return;
	memset(v, 0, sizeof(v));
	if (d->svc_from_dryrun)
		for (i = 0; i < d->ndry; i++)
			push(v, &n, &d->dry[i]);
	else
		add_cidrs(v, &n, d->svc.items);
	if (cJSON_GetArraySize(d->nodes.items) > 0) {
		pods_stop(d);
		add_cidrs(v, &n, d->nodes.items);
	} else {
		/* No node says its pod CIDR: cover the pods' addresses. */
		pods_start(d);
		if (!d->pods.synced)
			return;
		ips = calloc((size_t)cJSON_GetArraySize(d->pods.items) + 1, sizeof(*ips));
		if (!ips)
			return;
		cJSON_ArrayForEach(e, d->pods.items)
			if (cJSON_IsString(e) && inet_pton(AF_INET, e->valuestring, &a) == 1)
				ips[nips++] = ntohl(a.s_addr);
		nc = discovery_cover(ips, nips, cover, DISCOVERY_MAX_SUBNETS);
		free(ips);
		for (i = 0; i < nc; i++)
			push(v, &n, &cover[i]);
	}
	if (d->sent_subnets && n == d->nlast && !memcmp(v, d->last, n * sizeof(v[0])))
		return;
	memcpy(d->last, v, sizeof(v));
	d->nlast = n;
	d->sent_subnets = 1;
	for (i = 0; i < n; i++)
		log_info("discovery: cluster subnet %s", kb_cidr_str(&v[i], buf, sizeof(buf)));
	d->cbs.on_subnets(d->cbs.arg, v, n);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
namespaces_changed(struct discovery *d)
{
	size_t n = 0, i;
	const cJSON *e;
	char **v;

	if (!d->nss.synced)
		return;
	v = calloc(DISCOVERY_MAX_NAMESPACES, sizeof(*v));
	if (!v)
		return;
	cJSON_ArrayForEach(e, d->nss.items) {
		if (n == DISCOVERY_MAX_NAMESPACES) {
			log_warnx("discovery: more than %d namespaces: the rest are not served",
			    DISCOVERY_MAX_NAMESPACES);
			break;
		}
		if ((v[n] = strdup(e->string)) == NULL)
			break;
		n++;
	}
	qsort(v, n, sizeof(*v), cmp_str);
	if (d->sent_ns && n == d->nlast_ns) {
		for (i = 0; i < n && !strcmp(v[i], d->last_ns[i]); i++)
			;
		if (i == n) {
			for (i = 0; i < n; i++)
				free(v[i]);
			free(v);
			return;
		}
	}
	for (i = 0; i < d->nlast_ns; i++)
		free(d->last_ns[i]);
	free(d->last_ns);
	d->last_ns = v;
	d->nlast_ns = n;
	d->sent_ns = 1;
	log_info("discovery: %zu namespaces", n);
	d->cbs.on_namespaces(d->cbs.arg, (const char *const *)v, n);
}

static void
changed(struct set *s)
{
	if (s == &s->d->nss)
		namespaces_changed(s->d);
	else
		subnets_changed(s->d);
}

/* --- watches --- */

static void
set_put(struct set *s, const cJSON *obj)
{
	const char *name = meta_str(obj, "name"), *ns = meta_str(obj, "namespace");
	char key[512];
	cJSON *v;

	if (!name)
		return;
	/* Namespaces are their name: their list is the set's keys. */
	snprintf(key, sizeof(key), "%s%s%s", ns ? ns : "", ns ? "/" : "", name);
	cJSON_DeleteItemFromObjectCaseSensitive(s->items, key);
	if ((v = s->value(obj)) != NULL)
		cJSON_AddItemToObject(s->items, key, v);
}

static void
set_sync(void *arg, cJSON *items)
{
	struct set *s = arg;
	const cJSON *o;

	cJSON_Delete(s->items);
	s->items = cJSON_CreateObject();
	cJSON_ArrayForEach(o, items)
		set_put(s, o);
	s->synced = 1;
	changed(s);
}

static void
set_event(void *arg, enum kb_kube_event_type type, cJSON *obj)
{
	struct set *s = arg;
	const char *name = meta_str(obj, "name"), *ns = meta_str(obj, "namespace");
	char key[512];

	if (!s->items)
		return;
	if (type == KB_KUBE_DELETED) {
		if (!name)
			return;
		snprintf(key, sizeof(key), "%s%s%s", ns ? ns : "", ns ? "/" : "", name);
		cJSON_DeleteItemFromObjectCaseSensitive(s->items, key);
	} else {
		set_put(s, obj);
	}
	changed(s);
}

static void dryrun_start(struct discovery *d);

static void
set_error(void *arg, int status, const char *err)
{
	struct set *s = arg;
	struct discovery *d = s->d;

	/* No ServiceCIDR objects (an older API server) or not allowed to see
	 * them: the dry-run Service says the range. */
	if (s == &d->svc && (status == 404 || status == 403) && !s->synced) {
		log_info("discovery: ServiceCIDRs not available (%d: %s): the service range "
		    "comes from a dry-run Service", status, err ? err : "");
		kb_kube_watch_cancel(s->w);
		s->w = NULL;
		d->svc_from_dryrun = 1;
		dryrun_start(d);
		return;
	}
	/* Nodes not to be read: as if none said its pod CIDR (the pods' cover). */
	if (s == &d->nodes && (status == 404 || status == 403) && !s->synced) {
		log_info("discovery: nodes not available (%d: %s): the pod range is a cover of "
		    "the pods' addresses", status, err ? err : "");
		kb_kube_watch_cancel(s->w);
		s->w = NULL;
		s->items = cJSON_CreateObject();
		s->synced = 1;
		subnets_changed(d);
		return;
	}
	log_warnx("discovery: watching %s: %s; retrying", s->what, err ? err : "failed");
}

static int
set_watch(struct set *s, struct discovery *d, const char *path, const char *what,
    cJSON *(*value)(const cJSON *))
{
	struct kb_kube_watch_cbs cbs = { .on_sync = set_sync, .on_event = set_event,
	    .on_error = set_error, .arg = s };

	s->d = d;
	s->value = value;
	s->what = what;
	s->synced = 0;
	s->w = kb_kube_watch(d->kube, path, &cbs);
	return s->w ? 0 : -1;
}

static void
set_stop(struct set *s)
{
	if (s->w)
		kb_kube_watch_cancel(s->w);
	s->w = NULL;
	cJSON_Delete(s->items);
	s->items = NULL;
	s->synced = 0;
}

static void
pods_start(struct discovery *d)
{
	if (d->pods.w)
		return;
	log_info("discovery: no node has a pod CIDR: covering the pods' addresses");
	if (set_watch(&d->pods, d, "/api/v1/pods?fieldSelector=spec.hostNetwork%3Dfalse", "pods",
	    pod_value) < 0)
		log_warnx("discovery: cannot watch pods");
}

static void
pods_stop(struct discovery *d)
{
	set_stop(&d->pods);
}

/* --- the dry-run Service --- */

static void
dryrun_again(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	dryrun_start(arg);
}

static void
dryrun_done(void *arg, int status, cJSON *body, const char *err)
{
	struct discovery *d = arg;
	struct kb_cidr v[DISCOVERY_MAX_SUBNETS];
	struct timeval tv = { DRYRUN_EVERY_S, 0 };
	size_t n;

	(void)body;
	d->dry_req = NULL;
	if ((n = discovery_parse_range(err, v, DISCOVERY_MAX_SUBNETS)) == 0) {
		log_warnx("discovery: the dry-run Service (clusterIP " PROBE_IP ") told no "
		    "service range: %d %s", status, err ? err : "(accepted)");
		tv.tv_sec = 5;
	} else {
		memcpy(d->dry, v, n * sizeof(v[0]));
		d->ndry = n;
		d->dry_known = 1;
		subnets_changed(d);
	}
	evtimer_add(d->dry_ev, &tv);
}

static void
dryrun_start(struct discovery *d)
{
	char path[300];
	cJSON *o, *meta, *sp, *ports, *p;

	if (d->dry_req)
		return;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "apiVersion", "v1");
	cJSON_AddStringToObject(o, "kind", "Service");
	meta = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(meta, "name", "kbridge-probe-service-range");
	sp = cJSON_AddObjectToObject(o, "spec");
	cJSON_AddStringToObject(sp, "clusterIP", PROBE_IP);
	ports = cJSON_AddArrayToObject(sp, "ports");
	p = cJSON_CreateObject();
	cJSON_AddNumberToObject(p, "port", 80);
	cJSON_AddItemToArray(ports, p);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services?dryRun=All", d->ns);
	d->dry_req = kb_kube_request(d->kube, "POST", path, o, dryrun_done, d);
	cJSON_Delete(o);
	if (!d->dry_req) {
		struct timeval tv = { 5, 0 };
		evtimer_add(d->dry_ev, &tv);
	}
}

struct discovery *
discovery_new(struct event_base *base, struct kb_kube *kube, const char *ns,
    const struct discovery_cbs *cbs)
{
	struct discovery *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->base = base;
	d->kube = kube;
	d->cbs = *cbs;
	if ((d->ns = strdup(ns)) == NULL ||
	    (d->dry_ev = evtimer_new(base, dryrun_again, d)) == NULL ||
	    set_watch(&d->svc, d, "/apis/networking.k8s.io/v1/servicecidrs", "ServiceCIDRs",
	    svc_value) < 0 ||
	    set_watch(&d->nodes, d, "/api/v1/nodes", "nodes", node_value) < 0 ||
	    set_watch(&d->nss, d, "/api/v1/namespaces", "namespaces", ns_value) < 0) {
		discovery_free(d);
		return NULL;
	}
	return d;
}

void
discovery_free(struct discovery *d)
{
	size_t i;

	if (!d)
		return;
	set_stop(&d->svc);
	set_stop(&d->nodes);
	set_stop(&d->pods);
	set_stop(&d->nss);
	if (d->dry_req)
		kb_kube_cancel(d->dry_req);
	if (d->dry_ev)
		event_free(d->dry_ev);
	for (i = 0; i < d->nlast_ns; i++)
		free(d->last_ns[i]);
	free(d->last_ns);
	free(d->ns);
	free(d);
}
