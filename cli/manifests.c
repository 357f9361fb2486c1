/* The objects of an install, as data. Every rule of the RBAC below is
 * explained in the README (Install: permissions); change both together. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "manifests.h"

static const struct kb_kind kinds[] = {
	{ "Namespace", "v1", "namespaces", 0 },
	{ "ServiceAccount", "v1", "serviceaccounts", 1 },
	{ "Service", "v1", "services", 1 },
	{ "ConfigMap", "v1", "configmaps", 1 },
	{ "Secret", "v1", "secrets", 1 },
	{ "Pod", "v1", "pods", 1 },
	{ "ClusterRole", "rbac.authorization.k8s.io/v1", "clusterroles", 0 },
	{ "ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "clusterrolebindings", 0 },
	{ "Role", "rbac.authorization.k8s.io/v1", "roles", 1 },
	{ "RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings", 1 },
	{ "Deployment", "apps/v1", "deployments", 1 },
	{ "MutatingWebhookConfiguration", "admissionregistration.k8s.io/v1",
	    "mutatingwebhookconfigurations", 0 },
};

/* Builders: any allocation failure sets oom, checked once at the end
 * (cJSON's Add functions accept a NULL parent). */
static int oom;

static cJSON *
chk(cJSON *j)
{
	if (j == NULL)
		oom = 1;
	return j;
}

static cJSON *
add_obj(cJSON *parent, const char *key)
{
	return chk(cJSON_AddObjectToObject(parent, key));
}

static cJSON *
add_arr(cJSON *parent, const char *key)
{
	return chk(cJSON_AddArrayToObject(parent, key));
}

static void
add_str(cJSON *parent, const char *key, const char *val)
{
	chk(cJSON_AddStringToObject(parent, key, val));
}

static void
add_num(cJSON *parent, const char *key, double val)
{
	chk(cJSON_AddNumberToObject(parent, key, val));
}

static void
add_bool(cJSON *parent, const char *key, int val)
{
	chk(cJSON_AddBoolToObject(parent, key, val));
}

static void
push(cJSON *arr, cJSON *item)
{
	if (item == NULL || arr == NULL) {
		cJSON_Delete(item);
		oom = 1;
		return;
	}
	cJSON_AddItemToArray(arr, item);
}

/* A NULL-terminated list of strings as an array member. */
static void
add_strs(cJSON *parent, const char *key, const char *const *v)
{
	cJSON *a = add_arr(parent, key);

	for (; *v; v++)
		push(a, cJSON_CreateString(*v));
}

static void
labels(cJSON *meta, const char *name, const char *component)
{
	cJSON *l = add_obj(meta, "labels");

	if (name)
		add_str(l, "app.kubernetes.io/name", name);
	if (component)
		add_str(l, "app.kubernetes.io/component", component);
	add_str(l, KB_LABEL_PART_OF, "kbridge");
	add_str(l, KB_LABEL_MANAGED_BY, "kbridge");
}

/* apiVersion, kind, metadata {name, namespace (ns non-NULL), labels}; the
 * object goes into list. Returns it (NULL-safe builders go on). */
static cJSON *
object(cJSON *list, const char *api, const char *kind, const char *name, const char *ns,
    const char *component)
{
	cJSON *o = chk(cJSON_CreateObject()), *meta;

	add_str(o, "apiVersion", api);
	add_str(o, "kind", kind);
	meta = add_obj(o, "metadata");
	add_str(meta, "name", name);
	if (ns)
		add_str(meta, "namespace", ns);
	labels(meta, NULL, component);
	push(list, o);
	return o;
}

/* One RBAC rule; resourceNames only when names is non-NULL. */
static void
rule(cJSON *rules, const char *group, const char *const *resources, const char *const *names,
    const char *const *verbs)
{
	cJSON *r = chk(cJSON_CreateObject());
	const char *const groups[] = { group, NULL };

	add_strs(r, "apiGroups", groups);
	add_strs(r, "resources", resources);
	if (names)
		add_strs(r, "resourceNames", names);
	add_strs(r, "verbs", verbs);
	push(rules, r);
}

#define L(...)	((const char *const[]){ __VA_ARGS__, NULL })
#define READ	L("get", "list", "watch")

static void
binding(cJSON *list, const char *kind, const char *role_kind, const char *name, const char *ns,
    const char *sa_ns)
{
	cJSON *o = object(list, "rbac.authorization.k8s.io/v1", kind, name, ns, "manager");
	cJSON *ref = add_obj(o, "roleRef"), *subj = add_arr(o, "subjects"), *s;

	add_str(ref, "apiGroup", "rbac.authorization.k8s.io");
	add_str(ref, "kind", role_kind);
	add_str(ref, "name", name);
	s = chk(cJSON_CreateObject());
	add_str(s, "kind", "ServiceAccount");
	add_str(s, "name", KB_MANAGER_NAME);
	add_str(s, "namespace", sa_ns);
	push(subj, s);
}

static void
env_field(cJSON *env, const char *name, const char *path)
{
	cJSON *e = chk(cJSON_CreateObject()), *ref;

	add_str(e, "name", name);
	ref = add_obj(add_obj(e, "valueFrom"), "fieldRef");
	add_str(ref, "fieldPath", path);
	push(env, e);
}

/* A container port, or a Service port whose targetPort names the
 * container's port name. */
static void
port(cJSON *ports, const char *name, int num, int service)
{
	cJSON *p = chk(cJSON_CreateObject());

	add_str(p, "name", name);
	if (service) {
		add_num(p, "port", num);
		add_str(p, "targetPort", name);
	} else
		add_num(p, "containerPort", num);
	add_str(p, "protocol", "TCP");
	push(ports, p);
}

static void
deployment(cJSON *list, const struct kb_manifest_opts *mo)
{
	const char *ns = mo->ns;
	cJSON *o = object(list, "apps/v1", "Deployment", KB_MANAGER_NAME, ns, "manager");
	cJSON *spec = add_obj(o, "spec"), *tmpl, *meta, *pod, *sc, *c, *csc, *env, *ports, *res;
	cJSON *args;
	char listen[32], preview[32], webhook[40], *url = NULL, *img = NULL;

	add_num(spec, "replicas", 1);
	add_num(spec, "revisionHistoryLimit", 3);
	/* One manager at a time: its state is in the API, and two would race
	 * on it during a rolling update. */
	add_str(add_obj(spec, "strategy"), "type", "Recreate");
	add_str(add_obj(add_obj(spec, "selector"), "matchLabels"), "app.kubernetes.io/name",
	    KB_MANAGER_NAME);
	tmpl = add_obj(spec, "template");
	meta = add_obj(tmpl, "metadata");
	labels(meta, KB_MANAGER_NAME, "manager");
	pod = add_obj(tmpl, "spec");
	add_str(pod, "serviceAccountName", KB_MANAGER_NAME);
	add_bool(pod, "automountServiceAccountToken", 1);
	add_bool(pod, "enableServiceLinks", 0);
	sc = add_obj(pod, "securityContext");
	add_bool(sc, "runAsNonRoot", 1);
	add_num(sc, "runAsUser", KB_RUN_AS);
	add_num(sc, "runAsGroup", KB_RUN_AS);
	add_str(add_obj(sc, "seccompProfile"), "type", "RuntimeDefault");
	c = chk(cJSON_CreateObject());
	push(add_arr(pod, "containers"), c);
	add_str(c, "name", "manager");
	add_str(c, "image", mo->image);
	add_str(c, "imagePullPolicy", "IfNotPresent");
	add_strs(c, "command", L("kbridge-agent", "manager"));
	snprintf(listen, sizeof(listen), "--listen=0.0.0.0:%d", KB_MANAGER_TLS_PORT);
	snprintf(preview, sizeof(preview), "--preview-listen=0.0.0.0:%d",
	    KB_MANAGER_PREVIEW_PORT);
	add_strs(c, "args", L("--in-cluster", listen, "--ca-secret=" KB_CA_SECRET,
	    "--state-secret=" KB_STATE_SECRET));
	args = cJSON_GetObjectItemCaseSensitive(c, "args");
	/* The injection webhook; injected sidecars run the manager's image. */
	snprintf(webhook, sizeof(webhook), "--webhook-listen=0.0.0.0:%d", KB_MANAGER_WEBHOOK_PORT);
	push(args, cJSON_CreateString(webhook));
	if (asprintf(&img, "--sidecar-image=%s", mo->image) < 0)
		img = NULL;
	push(args, img ? cJSON_CreateString(img) : NULL);
	free(img);
	if (mo->preview_url) {
		push(args, cJSON_CreateString(preview));
		if (asprintf(&url, "--preview-url-base=%s", mo->preview_url) < 0)
			url = NULL;
		push(args, url ? cJSON_CreateString(url) : NULL);
		free(url);
	}
	env = add_arr(c, "env");
	env_field(env, "KB_NAMESPACE", "metadata.namespace");
	env_field(env, "KB_POD_NAME", "metadata.name");
	env_field(env, "KB_POD_IP", "status.podIP");
	ports = add_arr(c, "ports");
	port(ports, "tls", KB_MANAGER_TLS_PORT, 0);
	port(ports, "webhook", KB_MANAGER_WEBHOOK_PORT, 0);
	if (mo->preview_url)
		port(ports, "preview", KB_MANAGER_PREVIEW_PORT, 0);
	res = add_obj(c, "resources");
	add_str(add_obj(res, "requests"), "cpu", "50m");
	add_str(cJSON_GetObjectItemCaseSensitive(res, "requests"), "memory", "64Mi");
	add_str(add_obj(res, "limits"), "memory", "512Mi");
	csc = add_obj(c, "securityContext");
	add_bool(csc, "allowPrivilegeEscalation", 0);
	add_bool(csc, "readOnlyRootFilesystem", 1);
	add_bool(csc, "runAsNonRoot", 1);
	add_strs(add_obj(csc, "capabilities"), "drop", L("ALL"));
}

static void
service(cJSON *list, const struct kb_manifest_opts *mo)
{
	cJSON *o = object(list, "v1", "Service", KB_MANAGER_NAME, mo->ns, "manager");
	cJSON *spec = add_obj(o, "spec"), *ports;

	add_str(spec, "type", "ClusterIP");
	add_str(add_obj(spec, "selector"), "app.kubernetes.io/name", KB_MANAGER_NAME);
	ports = add_arr(spec, "ports");
	port(ports, "tls", KB_MANAGER_TLS_PORT, 1);
	/* The API server calls webhooks on the Service's port: 443 as usual. */
	port(ports, "webhook", KB_WEBHOOK_SERVICE_PORT, 1);
	if (mo->preview_url)
		port(ports, "preview", KB_MANAGER_PREVIEW_PORT, 1);
}

/* Sidecar injection (agent/webhook.h): every Pod created outside the
 * install namespace and kube-system goes to the manager, which answers in
 * 5 s or is ignored (failurePolicy Ignore: a manager outage never blocks
 * pods). The caBundle is the manager's to write (its CA is made at its
 * first start). */
static void
webhook_config(cJSON *list, const struct kb_manifest_opts *mo)
{
	cJSON *o = object(list, "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
	    KB_WEBHOOK_NAME, NULL, "manager");
	cJSON *wh = chk(cJSON_CreateObject()), *svc, *rule_, *expr;

	push(add_arr(o, "webhooks"), wh);
	add_str(wh, "name", "inject.kbridge.dev");
	svc = add_obj(add_obj(wh, "clientConfig"), "service");
	add_str(svc, "namespace", mo->ns);
	add_str(svc, "name", KB_MANAGER_NAME);
	add_str(svc, "path", "/mutate-pods");
	add_num(svc, "port", KB_WEBHOOK_SERVICE_PORT);
	rule_ = chk(cJSON_CreateObject());
	push(add_arr(wh, "rules"), rule_);
	add_strs(rule_, "apiGroups", L(""));
	add_strs(rule_, "apiVersions", L("v1"));
	add_strs(rule_, "operations", L("CREATE"));
	add_strs(rule_, "resources", L("pods"));
	add_str(rule_, "scope", "Namespaced");
	expr = chk(cJSON_CreateObject());
	push(add_arr(add_obj(wh, "namespaceSelector"), "matchExpressions"), expr);
	add_str(expr, "key", "kubernetes.io/metadata.name");
	add_str(expr, "operator", "NotIn");
	add_strs(expr, "values", L(mo->ns, "kube-system"));
	add_str(wh, "failurePolicy", "Ignore");
	add_str(wh, "sideEffects", "None");
	add_strs(wh, "admissionReviewVersions", L("v1"));
	add_num(wh, "timeoutSeconds", 5);
	add_str(wh, "reinvocationPolicy", "Never");
	add_str(wh, "matchPolicy", "Equivalent");
}

cJSON *
kb_manifests(const struct kb_manifest_opts *mo)
{
	const char *ns = mo->ns;
	cJSON *list, *o, *rules;

	oom = 0;
	list = chk(cJSON_CreateArray());

	o = object(list, "v1", "Namespace", ns, NULL, NULL);
	/* Pods here must meet the restricted Pod Security Standard, which the
	 * manager's pod does. */
	add_str(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o,
	    "metadata"), "labels"), "pod-security.kubernetes.io/enforce", "restricted");

	object(list, "v1", "ServiceAccount", KB_MANAGER_NAME, ns, "manager");

	/* The manager, cluster-wide: discovery and signing its developers'
	 * certificate requests (README, Install: permissions). */
	o = object(list, "rbac.authorization.k8s.io/v1", "ClusterRole", KB_MANAGER_NAME, NULL,
	    "manager");
	rules = add_arr(o, "rules");
	rule(rules, "", L("namespaces", "services", "pods", "nodes"), NULL, READ);
	/* --env-file: the ConfigMaps (and, opted in, the Secrets) a workload's
	 * env names, read one by one: get, never list or watch. */
	rule(rules, "", mo->env_secrets ? L("configmaps", "secrets") : L("configmaps"), NULL,
	    L("get"));
	rule(rules, "discovery.k8s.io", L("endpointslices"), NULL, READ);
	/* The service range (discovery; ServiceCIDRs are served since v1.33). */
	rule(rules, "networking.k8s.io", L("servicecidrs"), NULL, READ);
	rule(rules, "certificates.k8s.io", L("certificatesigningrequests"), NULL, READ);
	rule(rules, "certificates.k8s.io",
	    L("certificatesigningrequests/approval", "certificatesigningrequests/status"), NULL,
	    L("update"));
	rule(rules, "certificates.k8s.io", L("signers"), L(KB_SIGNER_NAME),
	    L("approve", "sign"));
	/* Sidecar enrollment (agent/enroll.h): who an injected pod's token is. */
	rule(rules, "authentication.k8s.io", L("tokenreviews"), NULL, L("create"));
	/* The injection webhook's caBundle: its CA, written at every start. */
	rule(rules, "admissionregistration.k8s.io", L("mutatingwebhookconfigurations"),
	    L(KB_WEBHOOK_NAME), L("get", "update"));
	binding(list, "ClusterRoleBinding", "ClusterRole", KB_MANAGER_NAME, NULL, ns);

	/* The manager, in its namespace: its own two Secrets only. create
	 * cannot be limited by name (RBAC sees no name in a create: it is in
	 * the body), the rest is. */
	o = object(list, "rbac.authorization.k8s.io/v1", "Role", KB_MANAGER_NAME, ns, "manager");
	rules = add_arr(o, "rules");
	rule(rules, "", L("secrets", "configmaps"), NULL, L("create"));
	/* Its CA certificate (public part) for developers: made or replaced at
	 * every start. */
	rule(rules, "", L("configmaps"), L(KB_CA_CONFIGMAP), L("get", "update"));
	/* Without ServiceCIDRs the service range is in the error a dry-run
	 * Service with an impossible clusterIP gets (nothing is created). */
	rule(rules, "", L("services"), NULL, L("create"));
	rule(rules, "", L("secrets"), L(KB_CA_SECRET), L("get", "update", "patch"));
	rule(rules, "", L("secrets"), L(KB_STATE_SECRET), L("get", "update"));
	binding(list, "RoleBinding", "Role", KB_MANAGER_NAME, ns, ns);

	/* Developers, cluster-wide (an admin binds it to them with a
	 * ClusterRoleBinding): ask for a kbridge certificate, see the
	 * services and pods they work with. */
	o = object(list, "rbac.authorization.k8s.io/v1", "ClusterRole", KB_DEVELOPER_NAME, NULL,
	    "developer");
	rules = add_arr(o, "rules");
	/* create and get, no list: RBAC cannot limit them to a developer's own
	 * requests (the manager's subject check is what protects), and reading
	 * the others' is not needed. */
	rule(rules, "certificates.k8s.io", L("certificatesigningrequests"), NULL,
	    L("create", "get"));
	rule(rules, "", L("namespaces", "services", "pods"), NULL, READ);
	/* kbridge intercept adds the sidecar's annotation to the workload's
	 * pod template (and uninstall --agents removes it): find, list and
	 * patch the workloads. */
	rule(rules, "apps", L("deployments", "statefulsets", "replicasets"), NULL,
	    L("get", "list", "watch", "patch"));
	/* A bare ReplicaSet (or an OnDelete StatefulSet) replaces no pod when
	 * its template changes: intercept and uninstall --agents evict its
	 * pods one at a time (an eviction honours PodDisruptionBudgets; no
	 * delete). */
	rule(rules, "", L("pods/eviction"), NULL, L("create"));

	/* Developers, in the install namespace only (a RoleBinding): reach the
	 * manager through the API server's port-forward, read its CA. */
	o = object(list, "rbac.authorization.k8s.io/v1", "Role", KB_DEVELOPER_NAME, ns,
	    "developer");
	rules = add_arr(o, "rules");
	rule(rules, "", L("pods/portforward"), NULL, L("create", "get"));
	/* The manager's CA certificate, to check the one they get. */
	rule(rules, "", L("configmaps"), L(KB_CA_CONFIGMAP), L("get"));

	service(list, mo);
	deployment(list, mo);
	webhook_config(list, mo);
	if (oom) {
		cJSON_Delete(list);
		return NULL;
	}
	return list;
}

const struct kb_kind *
kb_manifest_kinds(size_t *n)
{
	*n = sizeof(kinds) / sizeof(kinds[0]);
	return kinds;
}

const struct kb_kind *
kb_manifest_kind(const cJSON *obj)
{
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(obj, "kind");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, "apiVersion");
	size_t i;

	if (!cJSON_IsString(k) || !cJSON_IsString(a))
		return NULL;
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i].kind, k->valuestring) == 0 &&
		    strcmp(kinds[i].api_version, a->valuestring) == 0)
			return &kinds[i];
	return NULL;
}

static const char *
meta_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(obj, "metadata"), key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

char *
kb_manifest_path(const cJSON *obj, int with_name)
{
	const struct kb_kind *k = kb_manifest_kind(obj);
	const char *name = meta_str(obj, "name"), *ns = meta_str(obj, "namespace");
	char *p;
	int n;

	if (k == NULL || name == NULL || (k->namespaced && ns == NULL))
		return NULL;
	n = asprintf(&p, "/%s%s%s%s/%s%s%s",
	    strchr(k->api_version, '/') ? "apis/" : "api/", k->api_version,
	    k->namespaced ? "/namespaces/" : "", k->namespaced ? ns : "",
	    k->plural, with_name ? "/" : "", with_name ? name : "");
	return n < 0 ? NULL : p;
}

int
kb_manifest_ours(const cJSON *obj)
{
	const cJSON *l = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"),
	    "labels"), KB_LABEL_MANAGED_BY);

	return cJSON_IsString(l) && strcmp(l->valuestring, "kbridge") == 0;
}

/* YAML output. A string that a YAML reader would take for a number, a
 * boolean or null ("8443", "true", "no", "~", "") is single-quoted; the
 * emitter itself quotes what cannot be plain (": ", leading "-", ...). */
static int
needs_quotes(const char *s)
{
	/* YAML 1.1 (go-yaml, so kubectl) and 1.2 booleans and null, and the
	 * merge and value keys. */
	static const char *const special[] = { "y", "n", "yes", "no", "true", "false", "on",
	    "off", "null", "~", "<<", "=", NULL };
	const char *const *w;

	if (*s == '\0' || strchr("0123456789+-.", *s))
		return 1;
	for (w = special; *w; w++)
		if (strcasecmp(s, *w) == 0)
			return 1;
	return 0;
}

static int
emit(yaml_emitter_t *e, yaml_event_t *ev)
{
	return yaml_emitter_emit(e, ev) ? 0 : -1;
}

static int
scalar(yaml_emitter_t *e, const char *s, int is_string)
{
	yaml_event_t ev;
	int quote = is_string && needs_quotes(s);

	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s),
	    !quote, is_string, quote ? YAML_SINGLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE))
		return -1;
	return emit(e, &ev);
}

static int
node(yaml_emitter_t *e, const cJSON *j)
{
	yaml_event_t ev;
	const cJSON *c;
	char num[64];

	if (cJSON_IsObject(j)) {
		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
		    YAML_BLOCK_MAPPING_STYLE) || emit(e, &ev) == -1)
			return -1;
		cJSON_ArrayForEach(c, j)
			if (scalar(e, c->string, 1) == -1 || node(e, c) == -1)
				return -1;
		return yaml_mapping_end_event_initialize(&ev) ? emit(e, &ev) : -1;
	}
	if (cJSON_IsArray(j)) {
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
		    YAML_BLOCK_SEQUENCE_STYLE) || emit(e, &ev) == -1)
			return -1;
		cJSON_ArrayForEach(c, j)
			if (node(e, c) == -1)
				return -1;
		return yaml_sequence_end_event_initialize(&ev) ? emit(e, &ev) : -1;
	}
	if (cJSON_IsString(j))
		return scalar(e, j->valuestring, 1);
	if (cJSON_IsBool(j))
		return scalar(e, cJSON_IsTrue(j) ? "true" : "false", 0);
	if (cJSON_IsNumber(j)) {
		if (j->valuedouble == (double)(long long)j->valuedouble)
			snprintf(num, sizeof(num), "%lld", (long long)j->valuedouble);
		else
			snprintf(num, sizeof(num), "%.17g", j->valuedouble);
		return scalar(e, num, 0);
	}
	return scalar(e, "null", 0);
}

static int
write_cb(void *data, unsigned char *buf, size_t len)
{
	return fwrite(buf, 1, len, data) == len;
}

/* The documents: docs's items, or with one the single document docs. */
static int
yaml_write(FILE *f, const cJSON *docs, int one, char *err, size_t errlen)
{
	yaml_emitter_t e;
	yaml_event_t ev;
	const cJSON *d;
	int rc = -1;

	if (!yaml_emitter_initialize(&e)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	yaml_emitter_set_output(&e, write_cb, f);
	yaml_emitter_set_unicode(&e, 1);
	yaml_emitter_set_width(&e, 100);
	if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) || emit(&e, &ev) == -1)
		goto out;
	for (d = one ? docs : docs ? docs->child : NULL; d; d = one ? NULL : d->next) {
		if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 0) ||
		    emit(&e, &ev) == -1 || node(&e, d) == -1 ||
		    !yaml_document_end_event_initialize(&ev, 1) || emit(&e, &ev) == -1)
			goto out;
	}
	if (!yaml_stream_end_event_initialize(&ev) || emit(&e, &ev) == -1 ||
	    !yaml_emitter_flush(&e))
		goto out;
	rc = 0;
out:
	if (rc == -1)
		snprintf(err, errlen, "cannot write YAML: %s",
		    e.problem ? e.problem : "write error");
	yaml_emitter_delete(&e);
	return rc;
}

int
kb_yaml_write(FILE *f, const cJSON *docs, char *err, size_t errlen)
{
	return yaml_write(f, docs, 0, err, errlen);
}

int
kb_yaml_write_doc(FILE *f, const cJSON *doc, char *err, size_t errlen)
{
	return yaml_write(f, doc, 1, err, errlen);
}
