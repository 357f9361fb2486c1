/* Sidecar injection decisions (see webhook.h): Pod JSON in, JSONPatch out.
 * Everything read from the review is checked before it is used; what does
 * not fit gives no patch, never a crash. */
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

#define MAX_PORT_TRIES 100

static const cJSON *
get(const cJSON *o, const char *key)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *
get_str(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(get(o, key));
}

/* A port number field (0 when missing or out of range). */
static int
get_port(const cJSON *o, const char *key)
{
	const cJSON *v = get(o, key);

	if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65535 ||
	    v->valuedouble != (double)(int)v->valuedouble)
		return 0;
	return (int)v->valuedouble;
}

static int
all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* The workload name: the annotation, else the controlling owner's (a
 * ReplicaSet's without its pod-template-hash), else the Pod's own. */
static int
workload_name(const cJSON *meta, char *buf, size_t len, char *warn, size_t warnlen)
{
	const char *ann = get_str(get(meta, "annotations"), KB_WEBHOOK_ANN_WORKLOAD);
	const char *hash = get_str(get(meta, "labels"), "pod-template-hash");
	const char *name = NULL, *kind = NULL;
	const cJSON *o;
	size_t n, h;

	if (ann)
		name = ann;
	cJSON_ArrayForEach(o, get(meta, "ownerReferences")) {
		if (name || !cJSON_IsTrue(get(o, "controller")))
			continue;
		name = get_str(o, "name");
		kind = get_str(o, "kind");
	}
	if (!name)
		name = get_str(meta, "name");
	if (!name || strlen(name) >= len) {
		snprintf(warn, warnlen, "kbridge: no workload name: set annotation %s",
		    KB_WEBHOOK_ANN_WORKLOAD);
		return -1;
	}
	snprintf(buf, len, "%s", name);
	n = strlen(buf);
	if (!ann && kind && strcmp(kind, "ReplicaSet") == 0 && hash && (h = strlen(hash)) > 0 &&
	    n > h + 1 && buf[n - h - 1] == '-' && strcmp(buf + n - h, hash) == 0)
		buf[n - h - 1] = '\0';
	if (!kb_dns_label(buf)) {
		snprintf(warn, warnlen, "kbridge: workload name '%.64s' is not a DNS label: set "
		    "annotation %s", buf, KB_WEBHOOK_ANN_WORKLOAD);
		return -1;
	}
	return 0;
}

/* The app's port: container *ci, port index *pi, number *num. */
struct found {
	int ci, pi, num;
	const cJSON *container;
};

static int
find_port(const cJSON *containers, const char *name, struct found *f)
{
	const cJSON *c, *p;
	int ci = 0, pi;

	cJSON_ArrayForEach(c, containers) {
		pi = 0;
		cJSON_ArrayForEach(p, get(c, "ports")) {
			const char *n = get_str(p, "name"), *proto = get_str(p, "protocol");

			if (n && strcmp(n, name) == 0 && (!proto || strcmp(proto, "TCP") == 0)) {
				*f = (struct found){ ci, pi, get_port(p, "containerPort"), c };
				return f->num ? 0 : -1;
			}
			pi++;
		}
		ci++;
	}
	return -1;
}

static int
port_used(const cJSON *containers, int num, const char *name)
{
	const cJSON *c, *p;

	cJSON_ArrayForEach(c, containers)
		cJSON_ArrayForEach(p, get(c, "ports")) {
			const char *n = get_str(p, "name");

			if ((num && get_port(p, "containerPort") == num) ||
			    (name && n && strcmp(n, name) == 0))
				return 1;
		}
	return 0;
}

static void
op(cJSON *patch, const char *what, const char *path, cJSON *value)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "op", what);
	cJSON_AddStringToObject(o, "path", path);
	if (value)
		cJSON_AddItemToObject(o, "value", value);
	cJSON_AddItemToArray(patch, o);
}

/* Probes of the app container that name the old port name the new one. */
static void
rename_probes(cJSON *patch, const struct found *f, const char *from, const char *to)
{
	static const char *const probes[] = { "livenessProbe", "readinessProbe", "startupProbe",
		NULL };
	static const char *const kinds[] = { "httpGet", "tcpSocket", NULL };
	const char *const *p, *const *k;
	char path[160];

	for (p = probes; *p; p++)
		for (k = kinds; *k; k++) {
			const char *v = get_str(get(get(f->container, *p), *k), "port");

			if (!v || strcmp(v, from) != 0)
				continue;
			snprintf(path, sizeof(path), "/spec/containers/%d/%s/%s/port", f->ci, *p, *k);
			op(patch, "replace", path, cJSON_CreateString(to));
		}
}

static cJSON *
strs(const char *const *v, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	size_t i;

	for (i = 0; i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
	return a;
}

/* The pod's name (downward API) and the app container's, which the
 * sidecar's hello names so the manager can read the app's environment from
 * the pod spec (agent/podenv.c). */
static void
add_env(cJSON *c, const char *app, const char *ca)
{
	cJSON *env = cJSON_AddArrayToObject(c, "env"), *e, *ref;

	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "name", "KBRIDGE_POD_NAME");
	ref = cJSON_AddObjectToObject(cJSON_AddObjectToObject(e, "valueFrom"), "fieldRef");
	cJSON_AddStringToObject(ref, "fieldPath", "metadata.name");
	cJSON_AddItemToArray(env, e);
	if (app) {
		e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "name", "KBRIDGE_APP_CONTAINER");
		cJSON_AddStringToObject(e, "value", app);
		cJSON_AddItemToArray(env, e);
	}
	if (ca) {
		e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "name", KB_WEBHOOK_CA_ENV);
		cJSON_AddStringToObject(e, "value", ca);
		cJSON_AddItemToArray(env, e);
	}
}

/* The projected token the sidecar enrolls with (agent/enroll.h): for
 * audience kbridge only, bound to the pod, refreshed by the kubelet. */
static cJSON *
token_volume(void)
{
	cJSON *v = cJSON_CreateObject(), *src, *sat;

	cJSON_AddStringToObject(v, "name", KB_WEBHOOK_TOKEN_VOLUME);
	src = cJSON_AddArrayToObject(cJSON_AddObjectToObject(v, "projected"), "sources");
	sat = cJSON_CreateObject();
	cJSON_AddItemToArray(src, sat);
	sat = cJSON_AddObjectToObject(sat, "serviceAccountToken");
	cJSON_AddStringToObject(sat, "audience", "kbridge");
	cJSON_AddNumberToObject(sat, "expirationSeconds", KB_WEBHOOK_TOKEN_SECONDS);
	cJSON_AddStringToObject(sat, "path", "token");
	return v;
}

static void
token_mount(cJSON *c)
{
	cJSON *m = cJSON_CreateObject();

	cJSON_AddStringToObject(m, "name", KB_WEBHOOK_TOKEN_VOLUME);
	cJSON_AddStringToObject(m, "mountPath", KB_WEBHOOK_TOKEN_DIR);
	cJSON_AddBoolToObject(m, "readOnly", 1);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "volumeMounts"), m);
}

/* port_name NULL: the port has no name (a numeric targetPort's: the
 * redirect sends it here, no name moves). */
static cJSON *
sidecar_container(const struct webhook_cfg *cfg, const char *workload, const char *ns,
    const char *port_name, int port, int app_port, const char *protocol, const char *app)
{
	char a[7][300];
	const char *args[7], *const cmd[] = { "kbridge-agent", "sidecar" }, *const drop[] = { "ALL" };
	cJSON *c = cJSON_CreateObject(), *ports, *p, *sc, *res;
	size_t i;

	snprintf(a[0], sizeof(a[0]), "--workload=%s", workload);
	snprintf(a[1], sizeof(a[1]), "--namespace=%s", ns);
	snprintf(a[2], sizeof(a[2]), "--listen=0.0.0.0:%d", port);
	snprintf(a[3], sizeof(a[3]), "--app=127.0.0.1:%d", app_port);
	snprintf(a[4], sizeof(a[4]), "--protocol=%s", protocol);
	snprintf(a[5], sizeof(a[5]), "--manager=%s", cfg->manager);
	snprintf(a[6], sizeof(a[6]), "--enroll=%s", cfg->enroll ? cfg->enroll : cfg->manager);
	for (i = 0; i < 7; i++)
		args[i] = a[i];
	cJSON_AddStringToObject(c, "name", KB_WEBHOOK_SIDECAR);
	cJSON_AddStringToObject(c, "image", cfg->image);
	cJSON_AddStringToObject(c, "imagePullPolicy", "IfNotPresent");
	cJSON_AddItemToObject(c, "command", strs(cmd, 2));
	cJSON_AddItemToObject(c, "args", strs(args, 7));
	add_env(c, app, cfg->ca);
	token_mount(c);
	ports = cJSON_AddArrayToObject(c, "ports");
	p = cJSON_CreateObject();
	if (port_name)
		cJSON_AddStringToObject(p, "name", port_name);
	cJSON_AddNumberToObject(p, "containerPort", port);
	cJSON_AddStringToObject(p, "protocol", "TCP");
	cJSON_AddItemToArray(ports, p);
	res = cJSON_AddObjectToObject(c, "resources");
	cJSON_AddStringToObject(cJSON_AddObjectToObject(res, "requests"), "cpu", "10m");
	cJSON_AddStringToObject(cJSON_GetObjectItem(res, "requests"), "memory", "32Mi");
	cJSON_AddStringToObject(cJSON_AddObjectToObject(res, "limits"), "memory", "256Mi");
	sc = cJSON_AddObjectToObject(c, "securityContext");
	cJSON_AddBoolToObject(sc, "allowPrivilegeEscalation", 0);
	cJSON_AddBoolToObject(sc, "readOnlyRootFilesystem", 1);
	cJSON_AddBoolToObject(sc, "runAsNonRoot", 1);
	cJSON_AddNumberToObject(sc, "runAsUser", 65532);
	cJSON_AddNumberToObject(sc, "runAsGroup", 65532);
	cJSON_AddItemToObject(cJSON_AddObjectToObject(sc, "capabilities"), "drop", strs(drop, 1));
	return c;
}

/* The app port's new name: "kb-app-NAME", or "kb-" and at most 12 of its
 * characters (no hyphen at the end). */
static void
new_port_name(const char *name, char *buf, size_t len)
{
	size_t n;

	if (strlen("kb-app-") + strlen(name) <= KB_PORT_NAME_MAX)
		snprintf(buf, len, "kb-app-%s", name);
	else
		snprintf(buf, len, "kb-%.12s", name);
	while ((n = strlen(buf)) > 0 && buf[n - 1] == '-')
		buf[n - 1] = '\0';
}

/* The init container that redirects a numeric targetPort n to the
 * sidecar's port in the pod's network namespace (kbridge-agent redirect):
 * root with NET_ADMIN only, for as long as it takes to load one table. */
static cJSON *
redirect_container(const struct webhook_cfg *cfg, int n, int port)
{
	const char *const cmd[] = { "kbridge-agent", "redirect" }, *const drop[] = { "ALL" };
	const char *const add[] = { "NET_ADMIN" }, *args[2];
	cJSON *c = cJSON_CreateObject(), *sc, *caps, *res;
	char a[2][32];

	snprintf(a[0], sizeof(a[0]), "--port=%d", n);
	snprintf(a[1], sizeof(a[1]), "--to=%d", port);
	args[0] = a[0];
	args[1] = a[1];
	cJSON_AddStringToObject(c, "name", KB_WEBHOOK_REDIRECT);
	cJSON_AddStringToObject(c, "image", cfg->image);
	cJSON_AddStringToObject(c, "imagePullPolicy", "IfNotPresent");
	cJSON_AddItemToObject(c, "command", strs(cmd, 2));
	cJSON_AddItemToObject(c, "args", strs(args, 2));
	res = cJSON_AddObjectToObject(c, "resources");
	cJSON_AddStringToObject(cJSON_AddObjectToObject(res, "requests"), "cpu", "10m");
	cJSON_AddStringToObject(cJSON_GetObjectItem(res, "requests"), "memory", "16Mi");
	cJSON_AddStringToObject(cJSON_AddObjectToObject(res, "limits"), "memory", "64Mi");
	sc = cJSON_AddObjectToObject(c, "securityContext");
	cJSON_AddBoolToObject(sc, "allowPrivilegeEscalation", 0);
	cJSON_AddBoolToObject(sc, "readOnlyRootFilesystem", 1);
	cJSON_AddBoolToObject(sc, "runAsNonRoot", 0);
	cJSON_AddNumberToObject(sc, "runAsUser", 0);
	caps = cJSON_AddObjectToObject(sc, "capabilities");
	cJSON_AddItemToObject(caps, "drop", strs(drop, 1));
	cJSON_AddItemToObject(caps, "add", strs(add, 1));
	return c;
}

/* A container or init container of that name (names are unique across both). */
static int
has_container(const cJSON *spec, const char *name)
{
	static const char *const lists[] = { "containers", "initContainers", NULL };
	const char *const *l;
	const cJSON *c;

	for (l = lists; *l; l++)
		cJSON_ArrayForEach(c, get(spec, *l)) {
			const char *n = get_str(c, "name");

			if (n && strcmp(n, name) == 0)
				return 1;
		}
	return 0;
}

/* Append item to the pod's list key ("volumes", "initContainers"), making
 * the list when there is none. */
static void
add_to(cJSON *patch, const cJSON *spec, const char *key, cJSON *item)
{
	char path[64];

	if (cJSON_IsArray(get(spec, key))) {
		snprintf(path, sizeof(path), "/spec/%s/-", key);
		op(patch, "add", path, item);
	} else {
		cJSON *a = cJSON_CreateArray();

		cJSON_AddItemToArray(a, item);
		snprintf(path, sizeof(path), "/spec/%s", key);
		op(patch, "add", path, a);
	}
}

/* The app behind a numeric port n: the container that declares it, else
 * the only container, else none (NULL). */
static const char *
app_of_port(const cJSON *containers, int n)
{
	const cJSON *c, *p;

	cJSON_ArrayForEach(c, containers)
		cJSON_ArrayForEach(p, get(c, "ports")) {
			const char *proto = get_str(p, "protocol");

			if (get_port(p, "containerPort") == n && (!proto || strcmp(proto, "TCP") == 0))
				return get_str(c, "name");
		}
	if (cJSON_GetArraySize(containers) == 1)
		return get_str(cJSON_GetArrayItem(containers, 0), "name");
	return NULL;
}

/* The annotation's port: a name (*num 0), or a number 1-65535 in plain
 * decimal (no sign, no leading zero). -1 with warn: neither. */
static int
port_annotation(const char *want, int *num, char *warn, size_t warnlen)
{
	unsigned long v;

	*num = 0;
	if (all_digits(want)) {
		if (want[0] != '0' && kb_parse_num(want, 1, 65535, NULL, &v) == 0) {
			*num = (int)v;
			return 0;
		}
	} else if (kb_port_name(want))
		return 0;
	snprintf(warn, warnlen, "kbridge: annotation %s '%.32s' is not a port name or number "
	    "(1-65535): not injected", KB_WEBHOOK_ANN_PORT, want);
	return -1;
}

cJSON *
webhook_mutate(const struct webhook_cfg *cfg, const cJSON *pod, const char *ns, char *warn,
    size_t warnlen)
{
	const cJSON *meta = get(pod, "metadata"), *ann = get(meta, "annotations");
	const cJSON *spec = get(pod, "spec"), *containers = get(spec, "containers"), *c;
	const char *inject = get_str(ann, KB_WEBHOOK_ANN_INJECT);
	const char *want = get_str(ann, KB_WEBHOOK_ANN_PORT);
	const char *proto = get_str(ann, KB_WEBHOOK_ANN_PROTOCOL);
	char workload[254], renamed[KB_PORT_NAME_MAX + 1], path[160], value[300];
	struct found f;
	cJSON *patch;
	int num, port, tries;

	if (warnlen)
		*warn = '\0';
	if (!inject || strcmp(inject, "true") != 0)
		return NULL;
	if (!cJSON_IsArray(containers) || cJSON_GetArraySize(containers) == 0) {
		snprintf(warn, warnlen, "kbridge: the pod has no containers: not injected");
		return NULL;
	}
	if (has_container(spec, KB_WEBHOOK_SIDECAR) || has_container(spec, KB_WEBHOOK_REDIRECT))
		return NULL;	/* injected already */
	if (!ns || !kb_dns_label(ns)) {
		snprintf(warn, warnlen, "kbridge: no valid namespace in the request: not injected");
		return NULL;
	}
	if (workload_name(meta, workload, sizeof(workload), warn, warnlen) < 0)
		return NULL;
	if (!want)
		want = "http";
	if (port_annotation(want, &num, warn, warnlen) < 0)
		return NULL;
	if (!proto)
		proto = "http";
	if (strcmp(proto, "http") != 0 && strcmp(proto, "tcp") != 0) {
		snprintf(warn, warnlen, "kbridge: annotation %s must be http or tcp: not injected",
		    KB_WEBHOOK_ANN_PROTOCOL);
		return NULL;
	}
	if (num) {
		/* The redirect would be the node's own with the host's network. */
		if (cJSON_IsTrue(get(spec, "hostNetwork"))) {
			snprintf(warn, warnlen, "kbridge: targetPort %d is numeric and the pod uses "
			    "the host's network, where kbridge redirects nothing; name the port in "
			    "the Service and the container and set annotation %s to that name: not "
			    "injected", num, KB_WEBHOOK_ANN_PORT);
			return NULL;
		}
		f = (struct found){ -1, -1, num, NULL };
	} else if (find_port(containers, want, &f) < 0) {
		snprintf(warn, warnlen, "kbridge: no container has a TCP port named %s (the "
		    "Service's targetPort); name it so kbridge can take it over: not injected",
		    want);
		return NULL;
	} else {
		new_port_name(want, renamed, sizeof(renamed));
		if (port_used(containers, 0, renamed)) {
			snprintf(warn, warnlen, "kbridge: a container port is named %s already: not "
			    "injected", renamed);
			return NULL;
		}
	}
	for (port = KB_WEBHOOK_SIDECAR_PORT, tries = 0;
	    (port == num || port_used(containers, port, NULL)) && tries < MAX_PORT_TRIES;
	    port++, tries++)
		;
	if (tries == MAX_PORT_TRIES) {
		snprintf(warn, warnlen, "kbridge: no free port for the sidecar: not injected");
		return NULL;
	}
	cJSON_ArrayForEach(c, get(spec, "volumes")) {
		const char *n = get_str(c, "name");

		if (n && strcmp(n, KB_WEBHOOK_TOKEN_VOLUME) == 0) {
			snprintf(warn, warnlen, "kbridge: a volume is named %s already: not injected",
			    KB_WEBHOOK_TOKEN_VOLUME);
			return NULL;
		}
	}
	if ((patch = cJSON_CreateArray()) == NULL)
		return NULL;
	if (!num) {
		snprintf(path, sizeof(path), "/spec/containers/%d/ports/%d/name", f.ci, f.pi);
		op(patch, "replace", path, cJSON_CreateString(renamed));
		rename_probes(patch, &f, want, renamed);
	}
	add_to(patch, spec, "volumes", token_volume());
	if (num)
		add_to(patch, spec, "initContainers", redirect_container(cfg, num, port));
	op(patch, "add", "/spec/containers/-", sidecar_container(cfg, workload, ns,
	    num ? NULL : want, port, f.num, proto, num ? app_of_port(containers, num) :
	    get_str(f.container, "name")));
	snprintf(value, sizeof(value), "%s.%s", workload, ns);
	op(patch, "add", "/metadata/annotations/kbridge.dev~1injected", cJSON_CreateString(value));
	return patch;
}

static char *
answer(const char *uid, const cJSON *patch, const char *warn)
{
	cJSON *r = cJSON_CreateObject(), *resp;
	char *txt = NULL, *b64 = NULL, *out;

	cJSON_AddStringToObject(r, "apiVersion", "admission.k8s.io/v1");
	cJSON_AddStringToObject(r, "kind", "AdmissionReview");
	resp = cJSON_AddObjectToObject(r, "response");
	cJSON_AddStringToObject(resp, "uid", uid);
	cJSON_AddBoolToObject(resp, "allowed", 1);
	if (patch && (txt = cJSON_PrintUnformatted(patch)) != NULL &&
	    (b64 = kb_b64_encode(txt, strlen(txt))) != NULL) {
		cJSON_AddStringToObject(resp, "patchType", "JSONPatch");
		cJSON_AddStringToObject(resp, "patch", b64);
	}
	if (warn && *warn)
		cJSON_AddItemToArray(cJSON_AddArrayToObject(resp, "warnings"),
		    cJSON_CreateString(warn));
	out = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	free(txt);
	free(b64);
	return out;
}

char *
webhook_review(const struct webhook_cfg *cfg, const char *review, size_t len,
    struct webhook_result *res, char *err, size_t errlen)
{
	struct webhook_result none;
	cJSON *rv = cJSON_ParseWithLength(review, len), *patch = NULL;
	const cJSON *req = get(rv, "request");
	const char *uid = get_str(req, "uid"), *ns = get_str(req, "namespace");
	const char *kind = get_str(get(req, "kind"), "kind");
	const char *op_ = get_str(req, "operation");
	const cJSON *pod = get(req, "object");
	const char *name;
	char *out;

	if (!rv || !uid || !*uid || strlen(uid) > 128 ||
	    strcmp(get_str(rv, "kind") ? get_str(rv, "kind") : "", "AdmissionReview") != 0) {
		snprintf(err, errlen, "not an AdmissionReview with a request uid");
		cJSON_Delete(rv);
		return NULL;
	}
	if (!res)
		res = &none;
	memset(res, 0, sizeof(*res));
	if (kind && strcmp(kind, "Pod") == 0 && op_ && strcmp(op_, "CREATE") == 0 &&
	    !get_str(req, "subResource")) {
		if (!ns)
			ns = get_str(get(pod, "metadata"), "namespace");
		if (!(name = get_str(get(pod, "metadata"), "name")) &&
		    !(name = get_str(get(pod, "metadata"), "generateName")))
			name = "";
		snprintf(res->pod, sizeof(res->pod), "%.63s/%.253s", ns ? ns : "", name);
		res->pod_create = 1;
		patch = webhook_mutate(cfg, pod, ns, res->warn, sizeof(res->warn));
		res->patched = patch != NULL;
	}
	if ((out = answer(uid, patch, res->warn)) == NULL)
		snprintf(err, errlen, "out of memory");
	cJSON_Delete(patch);
	cJSON_Delete(rv);
	return out;
}
