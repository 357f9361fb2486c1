/* A container's environment from its Pod object, as the kubelet makes it
 * (see podenv.h; the Go functions named below are the kubelet's). */
#include "podenv.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

#define MAX_SERVICES 4096

static const cJSON *
get(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const char *
str(const cJSON *o, const char *k)
{
	return cJSON_GetStringValue(get(o, k));
}

static int
optional(const cJSON *ref)
{
	return cJSON_IsTrue(get(ref, "optional"));
}

static void
seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* Set name to value (a copy) in env, replacing what was there. */
static int
put(cJSON *env, const char *name, const char *value)
{
	cJSON *v = cJSON_CreateString(value);

	if (v == NULL)
		return -1;
	if (get(env, name))
		return cJSON_ReplaceItemInObjectCaseSensitive(env, name, v) ? 0 : -1;
	if (!cJSON_AddItemToObject(env, name, v)) {
		cJSON_Delete(v);
		return -1;
	}
	return 0;
}

/* A growing string. */
struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void
add(struct buf *b, const char *s, size_t n)
{
	char *p;

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;

		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* expansion.Expand with MappingFuncFor(env, svc): "$(NAME)" is NAME's value
 * in env, else in svc, else stays "$(NAME)"; "$$" is "$"; "$(" without a
 * ")" and a "$" before anything else stay as they are. NULL: no memory. */
static char *
expand(const char *in, const cJSON *env, const cJSON *svc)
{
	struct buf b = { 0 };
	const char *p = in, *close, *v;
	char *name;

	add(&b, "", 0);
	while (*p) {
		if (p[0] != '$' || p[1] == '\0') {
			add(&b, p, 1);
			p++;
			continue;
		}
		if (p[1] == '$') {
			add(&b, "$", 1);
			p += 2;
		} else if (p[1] == '(' && (close = strchr(p + 2, ')')) != NULL) {
			if ((name = strndup(p + 2, (size_t)(close - p - 2))) == NULL) {
				free(b.p);
				return NULL;
			}
			if ((v = str(env, name)) == NULL)
				v = str(svc, name);
			if (v)
				add(&b, v, strlen(v));
			else
				add(&b, p, (size_t)(close - p + 1));
			free(name);
			p = close + 1;
		} else {
			/* "$(" unclosed, or "$x": both bytes as they are. */
			add(&b, p, 2);
			p += 2;
		}
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* envvars.makeEnvVariableName: upper case, '-' to '_'. */
static void
env_name(char *out, size_t len, const char *svc, const char *suffix)
{
	size_t i;

	snprintf(out, len, "%s%s", svc, suffix);
	for (i = 0; out[i] && i < strlen(svc); i++)
		out[i] = out[i] == '-' ? '_' : (char)toupper((unsigned char)out[i]);
}

static void
upper(char *s)
{
	for (; *s; s++)
		*s = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
}

/* envvars.FromServices for one Service (its clusterIP set): into m. */
static int
service_vars(cJSON *m, const cJSON *s)
{
	const char *name = str(get(s, "metadata"), "name");
	const cJSON *spec = get(s, "spec"), *ports = get(spec, "ports"), *sp;
	const char *ip = str(spec, "clusterIP"), *proto, *pname;
	char n[512], v[512], hostport[300], lower[16], up[16], pn[256];
	int i = 0, port, rc = 0;
	size_t k;

	if (!name || cJSON_GetArraySize(ports) < 1)
		return 0;
	env_name(n, sizeof(n), name, "_SERVICE_HOST");
	rc |= put(m, n, ip);
	env_name(n, sizeof(n), name, "_SERVICE_PORT");
	snprintf(v, sizeof(v), "%d", (int)cJSON_GetNumberValue(get(cJSON_GetArrayItem(ports, 0),
	    "port")));
	rc |= put(m, n, v);
	cJSON_ArrayForEach(sp, ports) {
		if ((pname = str(sp, "name")) == NULL || !*pname)
			continue;
		snprintf(pn, sizeof(pn), "_SERVICE_PORT_%s", pname);
		upper(pn);
		env_name(n, sizeof(n), name, pn);
		snprintf(v, sizeof(v), "%d", (int)cJSON_GetNumberValue(get(sp, "port")));
		rc |= put(m, n, v);
	}
	/* makeLinkVariables: the docker links. */
	cJSON_ArrayForEach(sp, ports) {
		proto = str(sp, "protocol");
		if (!proto || !*proto)
			proto = "TCP";
		snprintf(up, sizeof(up), "%s", proto);
		snprintf(lower, sizeof(lower), "%s", proto);
		for (k = 0; up[k]; k++) {
			up[k] = (char)toupper((unsigned char)up[k]);
			lower[k] = (char)tolower((unsigned char)lower[k]);
		}
		port = (int)cJSON_GetNumberValue(get(sp, "port"));
		snprintf(hostport, sizeof(hostport), strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip,
		    port);
		snprintf(v, sizeof(v), "%s://%s", lower, hostport);
		if (i++ == 0) {
			env_name(n, sizeof(n), name, "_PORT");
			rc |= put(m, n, v);
		}
		snprintf(pn, sizeof(pn), "_PORT_%d_%s", port, up);
		env_name(n, sizeof(n), name, pn);
		rc |= put(m, n, v);
		snprintf(pn, sizeof(pn), "_PORT_%d_%s_PROTO", port, up);
		env_name(n, sizeof(n), name, pn);
		rc |= put(m, n, lower);
		snprintf(pn, sizeof(pn), "_PORT_%d_%s_PORT", port, up);
		env_name(n, sizeof(n), name, pn);
		snprintf(v, sizeof(v), "%d", port);
		rc |= put(m, n, v);
		snprintf(pn, sizeof(pn), "_PORT_%d_%s_ADDR", port, up);
		env_name(n, sizeof(n), name, pn);
		rc |= put(m, n, ip);
	}
	return rc;
}

/* getServiceEnvVarMap: default/kubernetes always, the pod's namespace's
 * Services if links; only those with a clusterIP (not "None"). */
static cJSON *
service_env(const char *ns, int links, const cJSON *services)
{
	const cJSON *pick[MAX_SERVICES], *s;
	const char *sns, *name, *ip;
	size_t n = 0, k;
	cJSON *m = cJSON_CreateObject();

	cJSON_ArrayForEach(s, services) {
		sns = str(get(s, "metadata"), "namespace");
		name = str(get(s, "metadata"), "name");
		ip = str(get(s, "spec"), "clusterIP");
		if (!sns || !name || !ip || !*ip || !strcmp(ip, "None"))
			continue;
		if (!strcmp(sns, "default") && !strcmp(name, "kubernetes")) {
			for (k = 0; k < n; k++)
				if (!strcmp(str(get(pick[k], "metadata"), "name"), name))
					break;
			if (k == n && n < MAX_SERVICES)
				pick[n++] = s;
		} else if (!strcmp(sns, ns) && links) {
			for (k = 0; k < n; k++)
				if (!strcmp(str(get(pick[k], "metadata"), "name"), name))
					break;
			if (k < n)
				pick[k] = s;
			else if (n < MAX_SERVICES)
				pick[n++] = s;
		}
	}
	for (k = 0; m && k < n; k++)
		if (service_vars(m, pick[k]) < 0) {
			cJSON_Delete(m);
			return NULL;
		}
	return m;
}

/* "a,b" of the "ip" members of list, or else single. */
static char *
ips(const cJSON *status, const char *list, const char *single, int first_only)
{
	const cJSON *a = get(status, list), *e;
	struct buf b = { 0 };
	const char *ip;

	add(&b, "", 0);
	cJSON_ArrayForEach(e, a) {
		if ((ip = str(e, "ip")) == NULL)
			continue;
		if (b.len)
			add(&b, ",", 1);
		add(&b, ip, strlen(ip));
		if (first_only)
			break;
	}
	if (b.len == 0 && (ip = str(status, single)) != NULL)
		add(&b, ip, strlen(ip));
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* podFieldSelectorRuntimeValue: a copy, or NULL with err. */
static char *
field_value(const cJSON *pod, const cJSON *ref, char *err, size_t errlen)
{
	const char *path = str(ref, "fieldPath"), *ver = str(ref, "apiVersion"), *v = NULL;
	const cJSON *meta = get(pod, "metadata"), *spec = get(pod, "spec");
	const cJSON *status = get(pod, "status");
	char base[64], key[320], *out;
	size_t n;

	if (ver && *ver && strcmp(ver, "v1")) {
		seterr(err, errlen, "unsupported pod version: %s", ver);
		return NULL;
	}
	if (!path) {
		seterr(err, errlen, "a fieldRef without fieldPath");
		return NULL;
	}
	/* SplitMaybeSubscriptedPath: NAME['KEY'] */
	n = strlen(path);
	if (n > 2 && !strcmp(path + n - 2, "']") && strstr(path, "['") &&
	    strstr(path, "['") != path && (size_t)(strstr(path, "['") - path) < sizeof(base) &&
	    n < sizeof(key)) {
		const char *open = strstr(path, "['");

		snprintf(base, sizeof(base), "%.*s", (int)(open - path), path);
		snprintf(key, sizeof(key), "%.*s", (int)(path + n - 2 - (open + 2)), open + 2);
		if (!strcmp(base, "metadata.labels") || !strcmp(base, "metadata.annotations")) {
			v = str(get(meta, base + strlen("metadata.")), key);
			return strdup(v ? v : "");
		}
		seterr(err, errlen, "field label not supported: %s", base);
		return NULL;
	}
	if (!strcmp(path, "metadata.name"))
		v = str(meta, "name");
	else if (!strcmp(path, "metadata.namespace"))
		v = str(meta, "namespace");
	else if (!strcmp(path, "metadata.uid"))
		v = str(meta, "uid");
	else if (!strcmp(path, "spec.nodeName"))
		v = str(spec, "nodeName");
	else if (!strcmp(path, "spec.serviceAccountName"))
		v = str(spec, "serviceAccountName");
	else if (!strcmp(path, "status.podIP") || !strcmp(path, "status.podIPs"))
		return ips(status, "podIPs", "podIP", !strcmp(path, "status.podIP"));
	else if (!strcmp(path, "status.hostIP") || !strcmp(path, "status.hostIPs")) {
		/* The kubelet's own node addresses: what it reports as these. */
		if ((out = ips(status, "hostIPs", "hostIP", !strcmp(path, "status.hostIP"))) &&
		    !*out) {
			free(out);
			seterr(err, errlen, "the pod's host IP is not known (not scheduled?)");
			return NULL;
		}
		return out;
	} else {
		seterr(err, errlen, "fieldPath %s is not supported in an environment variable",
		    path);
		return NULL;
	}
	return strdup(v ? v : "");
}

int
podenv_quantity(const char *s, __int128 *nano)
{
	static const struct { const char *sfx; int exp10, exp2; } sfx[] = {
		{ "Ki", 0, 10 }, { "Mi", 0, 20 }, { "Gi", 0, 30 }, { "Ti", 0, 40 },
		{ "Pi", 0, 50 }, { "Ei", 0, 60 }, { "n", -9, 0 }, { "u", -6, 0 },
		{ "m", -3, 0 }, { "", 0, 0 }, { "k", 3, 0 }, { "M", 6, 0 }, { "G", 9, 0 },
		{ "T", 12, 0 }, { "P", 15, 0 }, { "E", 18, 0 },
	};
	__int128 m = 0, lim = 1;
	int digits = 0, frac = 0, exp10 = 0, exp2 = 0, e, k, found = 0;
	const char *p = s;
	char *end;
	long x;
	size_t i;

	for (k = 0; k < 30; k++)
		lim *= 10;
	if (*p == '+')
		p++;
	for (; isdigit((unsigned char)*p); p++, digits++)
		m = m * 10 + (*p - '0');
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++, digits++, frac++)
			m = m * 10 + (*p - '0');
	if (digits == 0 || digits > 28)
		return -1;
	if ((*p == 'e' || *p == 'E') && (isdigit((unsigned char)p[1]) || p[1] == '-' ||
	    p[1] == '+')) {
		x = strtol(p + 1, &end, 10);
		if (*end || end == p + 1 || x < -40 || x > 40)
			return -1;
		exp10 = (int)x;
		found = 1;
	}
	for (i = 0; !found && i < sizeof(sfx) / sizeof(sfx[0]); i++)
		if (!strcmp(p, sfx[i].sfx)) {
			exp10 = sfx[i].exp10;
			exp2 = sfx[i].exp2;
			found = 1;
		}
	if (!found)
		return -1;
	e = 9 + exp10 - frac;
	for (; e > 0; e--)
		if ((m *= 10) >= lim)
			return -1;
	for (k = 0; k < exp2; k++)
		if ((m *= 2) >= lim)
			return -1;
	for (; e < 0; e++)
		m = m / 10 + (m % 10 != 0);
	*nano = m;
	return 0;
}

static __int128
ceil_div(__int128 a, __int128 b)
{
	return a / b + (a % b != 0);
}

static const cJSON *
find_container(const cJSON *pod, const char *name)
{
	static const char *const lists[] = { "containers", "initContainers" };
	const cJSON *c;
	size_t i;

	for (i = 0; i < 2; i++)
		cJSON_ArrayForEach(c, get(get(pod, "spec"), lists[i])) {
			const char *n = str(c, "name");

			if (n && !strcmp(n, name))
				return c;
		}
	return NULL;
}

/* containerResourceRuntimeValue (ExtractContainerResourceValue with the
 * limits defaulted to the node's allocatable): a copy, or NULL with err. */
static char *
resource_value(const cJSON *pod, const cJSON *c, const cJSON *ref, const cJSON *node,
    char *err, size_t errlen)
{
	const char *res = str(ref, "resource"), *cn = str(ref, "containerName");
	const char *div = str(ref, "divisor"), *q, *dot, *rname;
	__int128 v = 0, d, r;
	char out[64], kind[16];
	int cpu;

	if (cn && *cn && (c = find_container(pod, cn)) == NULL) {
		seterr(err, errlen, "resourceFieldRef: no container %s in the pod", cn);
		return NULL;
	}
	if (!res || (dot = strchr(res, '.')) == NULL || (size_t)(dot - res) >= sizeof(kind)) {
		seterr(err, errlen, "resourceFieldRef: unsupported container resource: %s",
		    res ? res : "(none)");
		return NULL;
	}
	snprintf(kind, sizeof(kind), "%.*s", (int)(dot - res), res);
	rname = dot + 1;
	cpu = !strcmp(rname, "cpu");
	if ((strcmp(kind, "limits") && strcmp(kind, "requests")) || (!cpu &&
	    strcmp(rname, "memory") && strcmp(rname, "ephemeral-storage") &&
	    strncmp(rname, "hugepages-", 10))) {
		seterr(err, errlen, "resourceFieldRef: unsupported container resource: %s", res);
		return NULL;
	}
	q = str(get(get(c, "resources"), kind), rname);
	if (!q && !strcmp(kind, "limits") && strncmp(rname, "hugepages-", 10)) {
		/* defaultPodLimitsForDownwardAPI: the node's allocatable. */
		q = str(get(get(node, "status"), "allocatable"), rname);
		if (!q) {
			seterr(err, errlen, "resourceFieldRef %s: the container sets no such limit "
			    "and the node's allocatable %s is not known", res, rname);
			return NULL;
		}
	}
	if (q && podenv_quantity(q, &v) < 0) {
		seterr(err, errlen, "resourceFieldRef %s: bad quantity %s", res, q);
		return NULL;
	}
	if (podenv_quantity(div && *div ? div : "1", &d) < 0) {
		seterr(err, errlen, "resourceFieldRef %s: bad divisor %s", res, div);
		return NULL;
	}
	/* CPU: milli-units over the divisor's, else whole units; rounded up. */
	if (cpu) {
		v = ceil_div(v, 1000000);
		d = ceil_div(d, 1000000);
	} else {
		v = ceil_div(v, 1000000000);
		d = ceil_div(d, 1000000000);
	}
	if (d <= 0) {
		seterr(err, errlen, "resourceFieldRef %s: divisor %s is too small", res, div);
		return NULL;
	}
	r = ceil_div(v, d);
	snprintf(out, sizeof(out), "%lld", (long long)r);
	return strdup(out);
}

static enum podenv_found
lookup(const struct podenv_src *src, int secret, const char *name, const cJSON **obj,
    char *err, size_t errlen)
{
	*obj = NULL;
	if (!src || !src->lookup)
		return PODENV_NOT_FOUND;
	return src->lookup(src->arg, secret, name, obj, err, errlen);
}

/* The object for ref, or NULL: *skip when optional and not found, else
 * err. */
static const cJSON *
source(const struct podenv_src *src, int secret, const char *ns, const cJSON *ref, int *skip,
    char *err, size_t errlen)
{
	const char *name = str(ref, "name");
	const cJSON *obj;
	char why[300];

	*skip = 0;
	if (!name) {
		seterr(err, errlen, "a %s reference without a name", secret ? "secret" :
		    "configMap");
		return NULL;
	}
	switch (lookup(src, secret, name, &obj, why, sizeof(why))) {
	case PODENV_FOUND:
		return obj;
	case PODENV_NOT_FOUND:
		if (optional(ref)) {
			*skip = 1;
			return NULL;
		}
		seterr(err, errlen, "%s \"%s\" not found (in namespace %s)",
		    secret ? "secret" : "configmap", name, ns);
		return NULL;
	default:
		seterr(err, errlen, "%s %s/%s: %s", secret ? "secret" : "configmap", ns, name,
		    why);
		return NULL;
	}
}

/* A Secret's data value, decoded: a copy, or NULL with err. */
static char *
secret_value(const char *b64, const char *key, const char *ns, const char *name, char *err,
    size_t errlen)
{
	size_t n;
	char *v = kb_b64_decode(b64, &n);

	if (v == NULL) {
		seterr(err, errlen, "key %s in Secret %s/%s is not base64", key, ns, name);
		return NULL;
	}
	if (strlen(v) != n) {
		free(v);
		seterr(err, errlen, "key %s in Secret %s/%s holds a NUL byte, which no "
		    "environment variable can", key, ns, name);
		return NULL;
	}
	return v;
}

/* The envFrom entries into env: 0, or -1 with err. */
static int
env_from(cJSON *env, const cJSON *c, const char *ns, const struct podenv_src *src, char *err,
    size_t errlen)
{
	const cJSON *ef, *ref, *obj, *kv;
	const char *prefix;
	char name[1024], *v;
	int secret, skip;

	cJSON_ArrayForEach(ef, get(c, "envFrom")) {
		secret = get(ef, "secretRef") != NULL && get(ef, "configMapRef") == NULL;
		ref = get(ef, secret ? "secretRef" : "configMapRef");
		if (!ref)
			continue;
		if ((obj = source(src, secret, ns, ref, &skip, err, errlen)) == NULL) {
			if (skip)
				continue;
			return -1;
		}
		prefix = str(ef, "prefix");
		cJSON_ArrayForEach(kv, get(obj, "data")) {
			if (!cJSON_IsString(kv))
				continue;
			snprintf(name, sizeof(name), "%s%s", prefix ? prefix : "", kv->string);
			v = secret ? secret_value(kv->valuestring, kv->string, ns,
			    str(ref, "name"), err, errlen) : strdup(kv->valuestring);
			if (v == NULL) {
				if (!secret)
					seterr(err, errlen, "out of memory");
				return -1;
			}
			if (put(env, name, v) < 0) {
				free(v);
				seterr(err, errlen, "out of memory");
				return -1;
			}
			free(v);
		}
	}
	return 0;
}

/* One valueFrom: *out a copy, or NULL with *skip (optional and missing);
 * 0, or -1 with err. */
static int
value_from(const cJSON *pod, const cJSON *c, const cJSON *vf, const char *ns,
    const struct podenv_src *src, char **out, int *skip, char *err, size_t errlen)
{
	const cJSON *ref, *obj, *kv;
	const char *key;
	int secret;

	*out = NULL;
	*skip = 0;
	if ((ref = get(vf, "fieldRef")) != NULL)
		return (*out = field_value(pod, ref, err, errlen)) ? 0 : -1;
	if ((ref = get(vf, "resourceFieldRef")) != NULL)
		return (*out = resource_value(pod, c, ref, src ? src->node : NULL, err,
		    errlen)) ? 0 : -1;
	secret = get(vf, "secretKeyRef") != NULL && get(vf, "configMapKeyRef") == NULL;
	if ((ref = get(vf, secret ? "secretKeyRef" : "configMapKeyRef")) == NULL) {
		/* fileKeyRef (the EnvFiles gate) reads the pod's volumes. */
		seterr(err, errlen, "a valueFrom that is not supported here (only configMapKeyRef, "
		    "secretKeyRef, fieldRef, resourceFieldRef)");
		return -1;
	}
	if ((obj = source(src, secret, ns, ref, skip, err, errlen)) == NULL)
		return *skip ? 0 : -1;
	key = str(ref, "key");
	kv = key ? get(get(obj, "data"), key) : NULL;
	if (!cJSON_IsString(kv)) {
		if (optional(ref)) {
			*skip = 1;
			return 0;
		}
		seterr(err, errlen, "couldn't find key %s in %s %s/%s", key ? key : "(none)",
		    secret ? "Secret" : "ConfigMap", ns, str(ref, "name"));
		return -1;
	}
	*out = secret ? secret_value(kv->valuestring, key, ns, str(ref, "name"), err, errlen) :
	    strdup(kv->valuestring);
	if (*out == NULL && !secret)
		seterr(err, errlen, "out of memory");
	return *out ? 0 : -1;
}

/* The env entries into env, in order: 0, or -1 with err. */
static int
env_list(cJSON *env, const cJSON *svc, const cJSON *pod, const cJSON *c, const char *ns,
    const struct podenv_src *src, char *err, size_t errlen)
{
	const cJSON *e, *vf;
	const char *name, *value;
	char *v;
	int skip;

	cJSON_ArrayForEach(e, get(c, "env")) {
		if ((name = str(e, "name")) == NULL || !*name) {
			seterr(err, errlen, "an env entry without a name");
			return -1;
		}
		value = str(e, "value");
		vf = get(e, "valueFrom");
		if (value && *value) {
			v = expand(value, env, svc);
		} else if (vf) {
			if (value_from(pod, c, vf, ns, src, &v, &skip, err, errlen) < 0)
				return -1;
			if (skip)
				continue;
		} else {
			v = strdup("");
		}
		if (v == NULL || put(env, name, v) < 0) {
			free(v);
			seterr(err, errlen, "out of memory");
			return -1;
		}
		free(v);
	}
	return 0;
}

cJSON *
podenv_resolve(const cJSON *pod, const char *container, const struct podenv_src *src,
    char *err, size_t errlen)
{
	const char *ns = str(get(pod, "metadata"), "namespace");
	const cJSON *c, *links = get(get(pod, "spec"), "enableServiceLinks"), *s;
	cJSON *env = NULL, *svc = NULL;

	if (!ns || !*ns) {
		seterr(err, errlen, "the pod object has no metadata.namespace");
		return NULL;
	}
	if ((c = find_container(pod, container)) == NULL) {
		seterr(err, errlen, "pod %s/%s has no container %s", ns,
		    str(get(pod, "metadata"), "name") ? str(get(pod, "metadata"), "name") : "?",
		    container);
		return NULL;
	}
	/* The API server defaults enableServiceLinks to true. */
	if ((svc = service_env(ns, links == NULL || cJSON_IsTrue(links),
	    src ? src->services : NULL)) == NULL || (env = cJSON_CreateObject()) == NULL) {
		seterr(err, errlen, "out of memory");
		goto fail;
	}
	if (env_from(env, c, ns, src, err, errlen) < 0 ||
	    env_list(env, svc, pod, c, ns, src, err, errlen) < 0)
		goto fail;
	cJSON_ArrayForEach(s, svc)
		if (!get(env, s->string) && put(env, s->string, s->valuestring) < 0) {
			seterr(err, errlen, "out of memory");
			goto fail;
		}
	cJSON_Delete(svc);
	return env;
fail:
	cJSON_Delete(svc);
	cJSON_Delete(env);
	return NULL;
}

/* name into the array (once). */
static void
add_name(cJSON *arr, const char *name)
{
	const cJSON *e;

	if (!name)
		return;
	cJSON_ArrayForEach(e, arr)
		if (!strcmp(e->valuestring, name))
			return;
	cJSON_AddItemToArray(arr, cJSON_CreateString(name));
}

cJSON *
podenv_refs(const cJSON *pod, const char *container, int *resources)
{
	const cJSON *c = find_container(pod, container), *e, *vf;
	cJSON *r = cJSON_CreateObject(), *cms, *secs;

	*resources = 0;
	cms = cJSON_AddArrayToObject(r, "configmaps");
	secs = cJSON_AddArrayToObject(r, "secrets");
	if (!c || !cms || !secs) {
		cJSON_Delete(r);
		return NULL;
	}
	cJSON_ArrayForEach(e, get(c, "envFrom")) {
		add_name(cms, str(get(e, "configMapRef"), "name"));
		add_name(secs, str(get(e, "secretRef"), "name"));
	}
	cJSON_ArrayForEach(e, get(c, "env")) {
		vf = get(e, "valueFrom");
		add_name(cms, str(get(vf, "configMapKeyRef"), "name"));
		add_name(secs, str(get(vf, "secretKeyRef"), "name"));
		if (get(vf, "resourceFieldRef"))
			*resources = 1;
	}
	return r;
}
