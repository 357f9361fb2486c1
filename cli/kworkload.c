/* Workloads through the Kubernetes API, as the user (cli/kworkload.h).
 *
 * Injection is one JSON merge patch that adds KW_ANN_INJECT to
 * spec.template.metadata.annotations and KW_ANN_BY to the workload's own
 * annotations; a template that already has KW_ANN_INJECT (the user's, e.g.
 * GitOps) is never touched. Restoring removes exactly those two keys: the
 * API server omits an annotations map left empty, so the spec reads back as
 * it was before. */
#include "kworkload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "manifests.h"

#define POLL_US		500000

static const struct {
	const char *kind, *plural;
} kinds[] = {
	{ "Deployment", "deployments" },
	{ "StatefulSet", "statefulsets" },
	{ "ReplicaSet", "replicasets" },
};
#define NKINDS	(sizeof(kinds) / sizeof(kinds[0]))

static const cJSON *
get(const cJSON *o, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const cJSON *
tmpl_meta(const cJSON *obj)
{
	return get(get(get(obj, "spec"), "template"), "metadata");
}

void
kw_free(struct kworkload *w)
{
	cJSON_Delete(w->obj);
	w->obj = NULL;
}

int
kw_has_inject(const cJSON *obj)
{
	const char *v = jstr(get(tmpl_meta(obj), "annotations"), KW_ANN_INJECT);

	return v && strcmp(v, "true") == 0;
}

int
kw_ours(const cJSON *obj)
{
	const char *v = jstr(get(get(obj, "metadata"), "annotations"), KW_ANN_BY);

	return v && strcmp(v, "kbridge") == 0;
}

long
kw_replicas(const cJSON *obj, long *ready)
{
	double d;

	*ready = jnum(get(obj, "status"), "readyReplicas", &d) ? (long)d : 0;
	return jnum(get(obj, "spec"), "replicas", &d) ? (long)d : 1;
}

/* A ReplicaSet that a Deployment controls is the Deployment's business. */
static int
controlled(const cJSON *obj)
{
	const cJSON *o;

	cJSON_ArrayForEach(o, get(get(obj, "metadata"), "ownerReferences"))
		if (cJSON_IsTrue(get(o, "controller")))
			return 1;
	return 0;
}

/* GET path: 1 and *resp, 0 on 404, -1 reported. */
static int
api_get(struct kapi *k, const char *cmd, const char *path, const char *what, cJSON **resp)
{
	char err[600];
	long status;

	*resp = NULL;
	if (kreq(k, "GET", path, NULL, NULL, &status, resp, err, sizeof(err)) == -1) {
		errorx("%s: %s", cmd, err);
		return -1;
	}
	if (status == 404) {
		cJSON_Delete(*resp);
		*resp = NULL;
		return 0;
	}
	if (status != 200 || *resp == NULL) {
		api_error(status, *resp, err, sizeof(err));
		errorx("%s: cannot get %s: %s", cmd, what, err);
		cJSON_Delete(*resp);
		*resp = NULL;
		return -1;
	}
	return 1;
}

/* "Deployment" as "deployment" into buf. */
static void
lower_kind(const char *kind, char *buf, size_t len)
{
	size_t i;

	for (i = 0; kind[i] && i + 1 < len; i++)
		buf[i] = (char)(kind[i] >= 'A' && kind[i] <= 'Z' ? kind[i] - 'A' + 'a' : kind[i]);
	buf[i] = '\0';
}

static void
fill(struct kworkload *w, size_t i, const char *ns, const char *name, cJSON *obj)
{
	w->kind = kinds[i].kind;
	w->plural = kinds[i].plural;
	snprintf(w->ns, sizeof(w->ns), "%s", ns);
	snprintf(w->name, sizeof(w->name), "%s", name);
	lower_kind(w->kind, w->what, sizeof(w->what));
	snprintf(w->what + strlen(w->what), sizeof(w->what) - strlen(w->what), "/%s", name);
	w->obj = obj;
}

/* Does the selector (a map) match the template's labels? */
static int
selects(const cJSON *selector, const cJSON *obj)
{
	const cJSON *labels = get(tmpl_meta(obj), "labels"), *s;
	const char *v;

	if (cJSON_GetArraySize(selector) == 0)
		return 0;
	cJSON_ArrayForEach(s, selector)
		if (!cJSON_IsString(s) || (v = jstr(labels, s->string)) == NULL ||
		    strcmp(v, s->valuestring) != 0)
			return 0;
	return 1;
}

static size_t
kind_index(const char *kind)
{
	size_t i;

	for (i = 0; i < NKINDS; i++)
		if (kind && strcmp(kinds[i].kind, kind) == 0)
			return i;
	return 0;
}

/* The one workload that Service svc selects. */
static int
through_service(struct kapi *k, const char *cmd, const char *ns, const char *name,
    const cJSON *svc, struct kworkload *w)
{
	const cJSON *sel = get(get(svc, "spec"), "selector"), *o, *found = NULL;
	cJSON *all;
	char names[512] = "", kind[32];
	size_t n = 0, len;

	if ((all = kw_list(k, cmd, ns)) == NULL)
		return -1;
	cJSON_ArrayForEach(o, all) {
		if (!selects(sel, o))
			continue;
		found = o;
		len = strlen(names);
		lower_kind(jstr(o, "kind"), kind, sizeof(kind));
		snprintf(names + len, sizeof(names) - len, "%s%s/%s", n++ ? ", " : "", kind,
		    jstr(get(o, "metadata"), "name"));
	}
	if (n != 1) {
		if (n == 0)
			errorx("%s: no deployment, statefulset or replicaset named %s in namespace "
			    "%s, and service %s selects none", cmd, name, ns, name);
		else
			errorx("%s: service %s in namespace %s selects several workloads (%s): "
			    "name the one to intercept", cmd, name, ns, names);
		cJSON_Delete(all);
		return -1;
	}
	fill(w, kind_index(jstr(found, "kind")), ns, jstr(get(found, "metadata"), "name"),
	    cJSON_Duplicate(found, 1));
	cJSON_Delete(all);
	return w->obj ? 0 : -1;
}

int
kw_find(struct kapi *k, const char *cmd, const char *ns, const char *name,
    struct kworkload *w)
{
	char path[512], what[400];
	cJSON *obj;
	size_t i;
	int r;

	memset(w, 0, sizeof(*w));
	for (i = 0; i < NKINDS; i++) {
		snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/%s/%s", ns,
		    kinds[i].plural, name);
		snprintf(what, sizeof(what), "%s %s in namespace %s", kinds[i].plural, name, ns);
		if ((r = api_get(k, cmd, path, what, &obj)) == -1)
			return -1;
		if (r == 1) {
			fill(w, i, ns, name, obj);
			return 0;
		}
	}
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", ns, name);
	snprintf(what, sizeof(what), "service %s in namespace %s", name, ns);
	if ((r = api_get(k, cmd, path, what, &obj)) == -1)
		return -1;
	if (r == 0) {
		errorx("%s: no deployment, statefulset, replicaset or service named %s in "
		    "namespace %s", cmd, name, ns);
		return -1;
	}
	r = through_service(k, cmd, ns, name, obj, w);
	cJSON_Delete(obj);
	return r;
}

cJSON *
kw_list(struct kapi *k, const char *cmd, const char *ns)
{
	cJSON *all = cJSON_CreateArray(), *resp, *items, *o;
	char path[256], what[128], nspart[128] = "";
	size_t i;
	int r;

	if (all == NULL) {
		errorx("%s: out of memory", cmd);
		return NULL;
	}
	if (ns)
		snprintf(nspart, sizeof(nspart), "/namespaces/%s", ns);
	for (i = 0; i < NKINDS; i++) {
		snprintf(path, sizeof(path), "/apis/apps/v1%s/%s", nspart, kinds[i].plural);
		snprintf(what, sizeof(what), "%s%s%s", kinds[i].plural,
		    ns ? " in namespace " : " (all namespaces)", ns ? ns : "");
		if ((r = api_get(k, cmd, path, what, &resp)) != 1) {
			if (r == 0)
				errorx("%s: cannot list %s: not found", cmd, what);
			cJSON_Delete(all);
			return NULL;
		}
		items = cJSON_DetachItemFromObjectCaseSensitive(resp, "items");
		cJSON_Delete(resp);
		while (items && (o = cJSON_DetachItemFromArray(items, 0)) != NULL) {
			if (i == 2 && controlled(o)) {
				cJSON_Delete(o);
				continue;
			}
			cJSON_DeleteItemFromObjectCaseSensitive(o, "kind");
			cJSON_AddStringToObject(o, "kind", kinds[i].kind);
			cJSON_AddItemToArray(all, o);
		}
		cJSON_Delete(items);
	}
	return all;
}

/* PATCH (merge) obj's workload with body: 0 or -1 reported. */
static int
merge_patch(struct kapi *k, const char *cmd, const char *plural, const char *ns,
    const char *name, const cJSON *body)
{
	char path[512], err[600];
	cJSON *resp = NULL;
	long status;

	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/%s/%s", ns, plural, name);
	if (kreq(k, "PATCH", path, "application/merge-patch+json", body, &status, &resp, err,
	    sizeof(err)) == -1) {
		errorx("%s: %s", cmd, err);
		return -1;
	}
	if (status != 200) {
		api_error(status, resp, err, sizeof(err));
		errorx("%s: cannot patch %s/%s in namespace %s: %s%s", cmd, plural, name, ns, err,
		    status == 403 ? " (ask an admin to bind ClusterRole " KB_DEVELOPER_NAME
		    " in this namespace)" : "");
		cJSON_Delete(resp);
		return -1;
	}
	cJSON_Delete(resp);
	return 0;
}

/* {"metadata":{"annotations":{BY:by}},"spec":{"template":{"metadata":
 * {"annotations":{INJECT:inject}}}}}, NULL values being JSON null. */
static cJSON *
patch_body(const char *inject, const char *by)
{
	cJSON *b = cJSON_CreateObject(), *a1, *a2;

	a1 = cJSON_AddObjectToObject(cJSON_AddObjectToObject(b, "metadata"), "annotations");
	a2 = cJSON_AddObjectToObject(cJSON_AddObjectToObject(cJSON_AddObjectToObject(
	    cJSON_AddObjectToObject(b, "spec"), "template"), "metadata"), "annotations");
	if (a1 == NULL || a2 == NULL ||
	    !cJSON_AddItemToObject(a1, KW_ANN_BY, by ? cJSON_CreateString(by) :
	    cJSON_CreateNull()) ||
	    !cJSON_AddItemToObject(a2, KW_ANN_INJECT, inject ? cJSON_CreateString(inject) :
	    cJSON_CreateNull())) {
		cJSON_Delete(b);
		return NULL;
	}
	return b;
}

int
kw_inject(struct kapi *k, const char *cmd, struct kworkload *w)
{
	const char *v = jstr(get(tmpl_meta(w->obj), "annotations"), KW_ANN_INJECT);
	char buf[SHOWN_MAX];
	cJSON *b;
	int r;

	if (v && strcmp(v, "true") == 0)
		return 0;
	if (v) {
		errorx("%s: the pod template of %s sets %s: \"%s\"; set it to \"true\" (or "
		    "remove it) to intercept", cmd, w->what, KW_ANN_INJECT,
		    shown(v, buf, sizeof(buf)));
		return -1;
	}
	if ((b = patch_body("true", "kbridge")) == NULL) {
		errorx("%s: out of memory", cmd);
		return -1;
	}
	r = merge_patch(k, cmd, w->plural, w->ns, w->name, b);
	cJSON_Delete(b);
	return r == -1 ? -1 : 1;
}

int
kw_restore(struct kapi *k, const char *cmd, const cJSON *obj)
{
	const cJSON *m = get(obj, "metadata");
	const char *kind = jstr(obj, "kind");
	cJSON *b;
	int r;

	if ((b = patch_body(NULL, NULL)) == NULL) {
		errorx("%s: out of memory", cmd);
		return -1;
	}
	r = merge_patch(k, cmd, kinds[kind_index(kind)].plural, jstr(m, "namespace"),
	    jstr(m, "name"), b);
	cJSON_Delete(b);
	return r;
}

/* "app=web,tier=x" of the workload's matchLabels; -1 when it has none. */
static int
label_selector(const cJSON *obj, char *buf, size_t len)
{
	const cJSON *l;
	size_t n = 0;

	buf[0] = '\0';
	cJSON_ArrayForEach(l, get(get(get(obj, "spec"), "selector"), "matchLabels")) {
		if (!cJSON_IsString(l))
			continue;
		n += snprintf(buf + n, n < len ? len - n : 0, "%s%s=%s", n ? "," : "", l->string,
		    l->valuestring);
	}
	return n == 0 || n >= len ? -1 : 0;
}

static int
cond_true(const cJSON *pod, const char *type)
{
	const cJSON *c;
	const char *t, *s;

	cJSON_ArrayForEach(c, get(get(pod, "status"), "conditions"))
		if ((t = jstr(c, "type")) && strcmp(t, type) == 0 &&
		    (s = jstr(c, "status")) && strcmp(s, "True") == 0)
			return 1;
	return 0;
}

static int
sidecar_ready(const cJSON *pod)
{
	const cJSON *c;
	const char *n;

	cJSON_ArrayForEach(c, get(get(pod, "status"), "containerStatuses"))
		if ((n = jstr(c, "name")) && strcmp(n, KW_SIDECAR) == 0)
			return cJSON_IsTrue(get(c, "ready"));
	return 0;
}

/* Count the pods: ready with a ready sidecar, ready without. -1 reported. */
static int
count_pods(struct kapi *k, const char *cmd, const struct kworkload *w, const char *sel,
    long *with, long *without)
{
	char path[1024], what[300];
	const cJSON *p;
	cJSON *resp;
	int r;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s", w->ns, sel);
	snprintf(what, sizeof(what), "the pods of %s", w->what);
	if ((r = api_get(k, cmd, path, what, &resp)) != 1) {
		if (r == 0)
			errorx("%s: cannot list %s: not found", cmd, what);
		return -1;
	}
	*with = *without = 0;
	cJSON_ArrayForEach(p, get(resp, "items")) {
		if (get(get(p, "metadata"), "deletionTimestamp") || !cond_true(p, "Ready"))
			continue;
		if (sidecar_ready(p))
			(*with)++;
		else
			(*without)++;
	}
	cJSON_Delete(resp);
	return 0;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
kw_wait(struct kapi *k, const char *cmd, const struct kworkload *w, long timeout_s)
{
	char sel[700];
	double end = now_s() + timeout_s;
	long want, ready, with, without, shown = -1;

	if (label_selector(w->obj, sel, sizeof(sel)) == -1) {
		errorx("%s: %s has no spec.selector.matchLabels to find its pods", cmd,
		    w->what);
		return -1;
	}
	want = kw_replicas(w->obj, &ready);
	for (;;) {
		if (count_pods(k, cmd, w, sel, &with, &without) == -1)
			return -1;
		if (with != shown) {
			fprintf(stderr, "waiting for %ld replica%s of %s to run the kbridge "
			    "sidecar: %ld/%ld ready\n", want, want == 1 ? "" : "s", w->what, with,
			    want);
			shown = with;
		}
		if (with >= want && without == 0)
			return 0;
		if (interrupted) {
			errorx("%s: interrupted while waiting for the sidecar of %s (the "
			    "annotation stays; run it again to go on)", cmd, w->what);
			return -1;
		}
		if (now_s() >= end) {
			errorx("%s: timed out after %ld s waiting for %s: %ld/%ld ready replicas "
			    "run the kbridge sidecar, %ld do not yet (kubectl get pods -n %s -l %s)",
			    cmd, timeout_s, w->what, with, want, without, w->ns, sel);
			return -1;
		}
		usleep(POLL_US);
	}
}
