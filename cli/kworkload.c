/* Workloads through the Kubernetes API, as the user (cli/kworkload.h).
 *
 * Injection is one JSON merge patch (conditional on the resourceVersion
 * read) that adds KW_ANN_INJECT to spec.template.metadata.annotations and
 * KW_ANN_BY to the workload's own annotations, and KW_ANN_PORT (the
 * Service's targetPort) with KW_ANN_PORT_BY unless the template has its
 * own KW_ANN_PORT for that port; a template that already has KW_ANN_INJECT
 * (the user's, e.g. GitOps) is never touched. Restoring removes exactly
 * the keys the markers name: the API server omits an annotations map left
 * empty, so the spec reads back as it was before. */
#include "kworkload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "manifests.h"

#define POLL_US		500000
#define SEL_MAX		2048
#define PATCH_TRIES	5	/* a workload changed since read: read again */

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
	cJSON_Delete(w->svc);
	w->obj = w->svc = NULL;
	w->svc_port = NULL;
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

int
kw_ours_port(const cJSON *obj)
{
	const char *v = jstr(get(get(obj, "metadata"), "annotations"), KW_ANN_PORT_BY);

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
		if (!kp_selects(sel, o))
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

/* The other namespaces that hold a workload called name, as "shop" or
 * "shop, dev" in buf ("" when none or when listing across namespaces is
 * not allowed: it is only a hint). */
static void
elsewhere(struct kapi *k, const char *name, const char *ns, char *buf, size_t len)
{
	char path[512], err[256], key[80], seen[600];
	const cJSON *o, *m;
	cJSON *resp;
	long status;
	size_t i, off;

	buf[0] = '\0';
	for (i = 0; i < NKINDS; i++) {
		snprintf(path, sizeof(path), "/apis/apps/v1/%s?fieldSelector=metadata.name%%3D%s",
		    kinds[i].plural, name);
		resp = NULL;
		if (kreq(k, "GET", path, NULL, NULL, &status, &resp, err, sizeof(err)) == -1 ||
		    status != 200) {
			cJSON_Delete(resp);
			continue;
		}
		cJSON_ArrayForEach(o, get(resp, "items")) {
			m = get(o, "metadata");
			snprintf(key, sizeof(key), ", %s,", orelse(jstr(m, "namespace"), ""));
			snprintf(seen, sizeof(seen), ", %s,", buf);
			if (!jstr(m, "namespace") || !strcmp(jstr(m, "namespace"), ns) ||
			    (i == 2 && controlled(o)) || strstr(seen, key))
				continue;
			if ((off = strlen(buf)) + strlen(jstr(m, "namespace")) + 3 < len)
				snprintf(buf + off, len - off, "%s%s", off ? ", " : "",
				    jstr(m, "namespace"));
		}
		cJSON_Delete(resp);
	}
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
		elsewhere(k, name, ns, what, sizeof(what));
		if (what[0])
			errorx("%s: no deployment, statefulset, replicaset or service named %s in "
			    "namespace %s, but namespace%s %s ha%s one: add -n %s", cmd, name, ns,
			    strchr(what, ',') ? "s" : "", what, strchr(what, ',') ? "ve" : "s",
			    strchr(what, ',') ? "NS" : what);
		else
			errorx("%s: no deployment, statefulset, replicaset or service named %s in "
			    "namespace %s", cmd, name, ns);
		return -1;
	}
	if ((r = through_service(k, cmd, ns, name, obj, w)) == 0) {
		w->svc = obj;
		snprintf(w->svc_name, sizeof(w->svc_name), "%s", name);
	} else
		cJSON_Delete(obj);
	return r;
}

/* Append ", name" (or "name") to buf. */
static void
add_name(char *buf, size_t len, const char *name)
{
	size_t n = strlen(buf);

	snprintf(buf + n, len - n, "%s%s", n ? ", " : "", name);
}

/* The Service named svc, if it selects w's pod template. */
static int
named_service(struct kapi *k, const char *cmd, struct kworkload *w, const char *svc)
{
	char path[512], what[400];
	cJSON *resp;
	int r;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", w->ns, svc);
	snprintf(what, sizeof(what), "service %s in namespace %s", svc, w->ns);
	if ((r = api_get(k, cmd, path, what, &resp)) == -1)
		return -1;
	if (r == 0) {
		errorx("%s: no service named %s in namespace %s", cmd, svc, w->ns);
		return -1;
	}
	if (!kp_selects(get(get(resp, "spec"), "selector"), w->obj)) {
		errorx("%s: service %s in namespace %s does not select the pod template of %s",
		    cmd, svc, w->ns, w->what);
		cJSON_Delete(resp);
		return -1;
	}
	w->svc = resp;
	snprintf(w->svc_name, sizeof(w->svc_name), "%s", svc);
	return 0;
}

int
kw_service(struct kapi *k, const char *cmd, struct kworkload *w, const char *svc)
{
	char path[512], what[400], names[512] = "";
	const cJSON *o, *found = NULL;
	const char *name;
	cJSON *resp;
	size_t n = 0;
	int r;

	if (w->svc) {
		if (svc && strcmp(svc, w->svc_name) != 0) {
			errorx("%s: %s was named through service %s; --service %s names another",
			    cmd, w->what, w->svc_name, svc);
			return -1;
		}
		return 0;
	}
	if (svc)
		return named_service(k, cmd, w, svc);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services", w->ns);
	snprintf(what, sizeof(what), "services in namespace %s", w->ns);
	if ((r = api_get(k, cmd, path, what, &resp)) != 1) {
		if (r == 0)
			errorx("%s: cannot list %s: not found", cmd, what);
		return -1;
	}
	cJSON_ArrayForEach(o, get(resp, "items")) {
		if ((name = jstr(get(o, "metadata"), "name")) == NULL ||
		    !kp_selects(get(get(o, "spec"), "selector"), w->obj))
			continue;
		found = o;
		n++;
		add_name(names, sizeof(names), name);
	}
	if (n != 1) {
		if (n == 0)
			errorx("%s: no service in namespace %s selects the pod template of %s "
			    "(kbridge takes over the port a Service sends to)", cmd, w->ns, w->what);
		else
			errorx("%s: services %s in namespace %s select the pod template of %s: "
			    "pass --service NAME", cmd, names, w->ns, w->what);
		cJSON_Delete(resp);
		return -1;
	}
	snprintf(w->svc_name, sizeof(w->svc_name), "%s", jstr(get(found, "metadata"), "name"));
	w->svc = cJSON_Duplicate(found, 1);
	cJSON_Delete(resp);
	if (w->svc == NULL) {
		errorx("%s: out of memory", cmd);
		return -1;
	}
	return 0;
}

int
kw_port(const char *cmd, struct kworkload *w, const char *svcport)
{
	char err[800];

	if ((w->svc_port = kp_service_port(w->svc, w->svc_name, svcport, err,
	    sizeof(err))) == NULL ||
	    kp_target(w->svc_port, w->target, sizeof(w->target), err, sizeof(err)) == -1 ||
	    kp_check_target(w->obj, w->what, w->svc_name, w->svc_port, w->target, err,
	    sizeof(err)) == -1) {
		errorx("%s: %s", cmd, err);
		return -1;
	}
	return 0;
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

/* PATCH (merge) obj's workload with body: 0 or -1 reported, except a
 * conflict (409: changed since read) when conflict is not NULL, which sets
 * it instead. */
static int
merge_patch(struct kapi *k, const char *cmd, const char *plural, const char *ns,
    const char *name, const cJSON *body, int *conflict)
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
	if (status == 409 && conflict) {
		*conflict = 1;
		cJSON_Delete(resp);
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

/* key: v, or null when v is NULL. */
static int
set(cJSON *o, const char *key, const char *v)
{
	return cJSON_AddItemToObject(o, key, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

/* {"metadata":{"resourceVersion":RV,"annotations":{BY:"kbridge",...}},
 * "spec":{"template":{"metadata":{"annotations":{INJECT:"true",
 * PORT:target}}}}} with the keys p names; target NULL: the values null. */
static cJSON *
patch_body(const struct kp_plan *p, const char *target, const cJSON *obj)
{
	const char *rv = jstr(get(obj, "metadata"), "resourceVersion");
	const char *by = target ? "kbridge" : NULL;
	cJSON *b = cJSON_CreateObject(), *m, *a1, *a2;

	m = cJSON_AddObjectToObject(b, "metadata");
	a1 = cJSON_AddObjectToObject(m, "annotations");
	a2 = cJSON_AddObjectToObject(cJSON_AddObjectToObject(cJSON_AddObjectToObject(
	    cJSON_AddObjectToObject(b, "spec"), "template"), "metadata"), "annotations");
	if (a1 == NULL || a2 == NULL || (rv && !set(m, "resourceVersion", rv)) ||
	    (p->inject && (!set(a1, KW_ANN_BY, by) ||
	    !set(a2, KW_ANN_INJECT, target ? "true" : NULL))) ||
	    (p->port && (!set(a1, KW_ANN_PORT_BY, by) || !set(a2, KW_ANN_PORT, target)))) {
		cJSON_Delete(b);
		return NULL;
	}
	return b;
}

/* The workload again into *obj (replacing it), after a conflict. */
static int
reload(struct kapi *k, const char *cmd, const char *plural, const char *ns,
    const char *name, cJSON **obj)
{
	char path[512], what[400];
	cJSON *o;
	int r;

	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/%s/%s", ns, plural, name);
	snprintf(what, sizeof(what), "%s %s in namespace %s", plural, name, ns);
	if ((r = api_get(k, cmd, path, what, &o)) == -1)
		return -1;
	if (r == 0) {
		errorx("%s: %s %s in namespace %s is gone", cmd, plural, name, ns);
		return -1;
	}
	cJSON_Delete(*obj);
	*obj = o;
	return 0;
}

int
kw_inject(struct kapi *k, const char *cmd, struct kworkload *w)
{
	char err[800];
	cJSON *b;
	int r, tries, conflict;

	/* The patch holds the resourceVersion the plan was made from. */
	for (tries = 1;; tries++) {
		if (kp_plan(w->obj, w->what, w->svc_name, w->target, kw_ours_port(w->obj),
		    &w->added, err, sizeof(err)) == -1) {
			errorx("%s: %s", cmd, err);
			return -1;
		}
		if (!w->added.inject)
			return 0;
		if ((b = patch_body(&w->added, w->target, w->obj)) == NULL) {
			errorx("%s: out of memory", cmd);
			return -1;
		}
		conflict = 0;
		r = merge_patch(k, cmd, w->plural, w->ns, w->name, b,
		    tries < PATCH_TRIES ? &conflict : NULL);
		cJSON_Delete(b);
		if (r == 0)
			return 1;
		if (!conflict || reload(k, cmd, w->plural, w->ns, w->name, &w->obj) == -1)
			return -1;
	}
}

int
kw_restore(struct kapi *k, const char *cmd, const cJSON *obj)
{
	const cJSON *m = get(obj, "metadata"), *o = obj;
	const char *plural = kinds[kind_index(jstr(obj, "kind"))].plural;
	const char *ns = jstr(m, "namespace"), *name = jstr(m, "name");
	struct kp_plan p;
	cJSON *b, *cur = NULL;
	int r, tries, conflict;

	/* As kw_inject: conditional on what was read, read again on a conflict
	 * (and then nothing to do if it is no longer marked). */
	for (tries = 1;; tries++) {
		if (!kw_ours(o)) {
			r = 0;
			break;
		}
		p = (struct kp_plan){ 1, kw_ours_port(o) };
		if ((b = patch_body(&p, NULL, o)) == NULL) {
			errorx("%s: out of memory", cmd);
			r = -1;
			break;
		}
		conflict = 0;
		r = merge_patch(k, cmd, plural, ns, name, b, tries < PATCH_TRIES ? &conflict : NULL);
		cJSON_Delete(b);
		if (r == 0 || !conflict)
			break;
		if ((r = reload(k, cmd, plural, ns, name, &cur)) == -1)
			break;
		o = cur;
	}
	cJSON_Delete(cur);
	return r;
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

/* Count the pods that query (a URL-encoded label selector) finds: ready
 * with a ready sidecar, ready without. -1 reported. */
static int
count_pods(struct kapi *k, const char *cmd, const struct kworkload *w, const char *query,
    long *with, long *without)
{
	char path[SEL_MAX * 3 + 256], what[300];
	const cJSON *p;
	cJSON *resp;
	int r;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s", w->ns,
	    query);
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
	char sel[SEL_MAX], query[SEL_MAX * 3], err[400] = "the selector is too long";
	double end = now_s() + timeout_s;
	long want, ready, with, without, shown = -1;
	int quote;

	if (kp_selector(get(get(w->obj, "spec"), "selector"), sel, sizeof(sel), err,
	    sizeof(err)) == -1 || kp_query_escape(sel, query, sizeof(query)) == -1) {
		errorx("%s: cannot find the pods of %s: %s", cmd, w->what, err);
		return -1;
	}
	/* kp_selector lets no quote through: for the shell, "in (a,b)" and "!k" */
	quote = strpbrk(sel, " !()") != NULL;
	want = kw_replicas(w->obj, &ready);
	for (;;) {
		if (count_pods(k, cmd, w, query, &with, &without) == -1)
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
			    "run the kbridge sidecar, %ld do not yet (kubectl get pods -n %s -l "
			    "%s%s%s)", cmd, timeout_s, w->what, with, want, without, w->ns,
			    quote ? "'" : "", sel, quote ? "'" : "");
			return -1;
		}
		usleep(POLL_US);
	}
}

int
kw_needs_roll(const cJSON *obj)
{
	const char *kind = jstr(obj, "kind"), *t;

	if (kind && strcmp(kind, "ReplicaSet") == 0)
		return !controlled(obj);
	if (kind && strcmp(kind, "StatefulSet") == 0)
		return (t = jstr(get(get(obj, "spec"), "updateStrategy"), "type")) &&
		    strcmp(t, "OnDelete") == 0;
	return 0;
}

/* Is pod controlled by the object whose uid this is? */
static int
controlled_by(const cJSON *pod, const char *uid)
{
	const cJSON *o;
	const char *u;

	cJSON_ArrayForEach(o, get(get(pod, "metadata"), "ownerReferences"))
		if (cJSON_IsTrue(get(o, "controller")) && (u = jstr(o, "uid")) &&
		    strcmp(u, uid) == 0)
			return 1;
	return 0;
}

static int
has_sidecar(const cJSON *pod)
{
	const cJSON *c;
	const char *n;

	cJSON_ArrayForEach(c, get(get(pod, "spec"), "containers"))
		if ((n = jstr(c, "name")) && strcmp(n, KW_SIDECAR) == 0)
			return 1;
	return 0;
}

/* What a roll sees of the workload's pods in one listing: of the pods it
 * controls, not being deleted, how many there are and are ready; how many
 * of those the roll started with (orig, uids) are still stale, and one of
 * them; a stale pod made since (its template did not do what was asked). */
struct roll_state {
	long live, ready, stale;
	char victim[254];
	char fresh[254];
};

static int
in_list(const cJSON *uids, const char *uid)
{
	const cJSON *u;

	cJSON_ArrayForEach(u, uids)
		if (cJSON_IsString(u) && strcmp(u->valuestring, uid) == 0)
			return 1;
	return 0;
}

/* first: the stale pods found go into orig. */
static int
roll_state(struct kapi *k, const char *cmd, const char *ns, const char *what,
    const char *query, const char *uid, int sidecar, cJSON *orig, int first,
    struct roll_state *s)
{
	char path[SEL_MAX * 3 + 256], w[320];
	const cJSON *p, *m;
	const char *name, *puid;
	cJSON *resp;
	int r;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s", ns, query);
	snprintf(w, sizeof(w), "the pods of %s", what);
	if ((r = api_get(k, cmd, path, w, &resp)) != 1) {
		if (r == 0)
			errorx("%s: cannot list %s: not found", cmd, w);
		return -1;
	}
	memset(s, 0, sizeof(*s));
	cJSON_ArrayForEach(p, get(resp, "items")) {
		m = get(p, "metadata");
		if (!controlled_by(p, uid) || get(m, "deletionTimestamp") ||
		    (name = jstr(m, "name")) == NULL || (puid = jstr(m, "uid")) == NULL)
			continue;
		s->live++;
		s->ready += cond_true(p, "Ready");
		if (has_sidecar(p) == sidecar)
			continue;
		if (first && !cJSON_AddItemToArray(orig, cJSON_CreateString(puid))) {
			errorx("%s: out of memory", cmd);
			cJSON_Delete(resp);
			return -1;
		}
		if (in_list(orig, puid)) {
			if (s->stale++ == 0)
				snprintf(s->victim, sizeof(s->victim), "%s", name);
		} else if (!s->fresh[0])
			snprintf(s->fresh, sizeof(s->fresh), "%s", name);
	}
	cJSON_Delete(resp);
	return 0;
}

/* POST an Eviction for pod name: 1 done (or gone already), 0 refused for
 * now (429: a PodDisruptionBudget), -1 reported. */
static int
evict(struct kapi *k, const char *cmd, const char *ns, const char *name)
{
	char path[512], err[600];
	cJSON *b = cJSON_CreateObject(), *m, *resp = NULL;
	long status;
	int r;

	if (b == NULL || !set(b, "apiVersion", "policy/v1") || !set(b, "kind", "Eviction") ||
	    (m = cJSON_AddObjectToObject(b, "metadata")) == NULL || !set(m, "name", name) ||
	    !set(m, "namespace", ns)) {
		cJSON_Delete(b);
		errorx("%s: out of memory", cmd);
		return -1;
	}
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s/eviction", ns, name);
	r = kreq(k, "POST", path, "application/json", b, &status, &resp, err, sizeof(err));
	cJSON_Delete(b);
	if (r == -1) {
		errorx("%s: %s", cmd, err);
		return -1;
	}
	if (status == 200 || status == 201 || status == 404 || status == 429) {
		cJSON_Delete(resp);
		return status == 429 ? 0 : 1;
	}
	api_error(status, resp, err, sizeof(err));
	errorx("%s: cannot evict pod %s in namespace %s: %s%s", cmd, name, ns, err,
	    status == 403 ? " (ask an admin to bind ClusterRole " KB_DEVELOPER_NAME
	    " in this namespace)" : "");
	cJSON_Delete(resp);
	return -1;
}

int
kw_roll(struct kapi *k, const char *cmd, const cJSON *obj, int sidecar, long timeout_s)
{
	const cJSON *m = get(obj, "metadata");
	const char *ns = jstr(m, "namespace"), *name = jstr(m, "name"), *uid = jstr(m, "uid");
	char sel[SEL_MAX], query[SEL_MAX * 3], err[400] = "the selector is too long";
	char what[300], kind[32];
	double end = now_s() + timeout_s;
	struct roll_state s;
	long want, ready, done = 0, total = -1;
	cJSON *orig;
	int r, e, held = 0;

	lower_kind(orelse(jstr(obj, "kind"), "workload"), kind, sizeof(kind));
	snprintf(what, sizeof(what), "%s/%s", kind, name ? name : "?");
	if (ns == NULL || name == NULL || uid == NULL) {
		errorx("%s: %s: no namespace, name or uid", cmd, what);
		return -1;
	}
	if (kp_selector(get(get(obj, "spec"), "selector"), sel, sizeof(sel), err,
	    sizeof(err)) == -1 || kp_query_escape(sel, query, sizeof(query)) == -1) {
		errorx("%s: cannot find the pods of %s: %s", cmd, what, err);
		return -1;
	}
	want = kw_replicas(obj, &ready);
	if ((orig = cJSON_CreateArray()) == NULL) {
		errorx("%s: out of memory", cmd);
		return -1;
	}
	/* Only the pods there at the start are evicted: one made since that
	 * is still stale would only be made the same way again. */
	for (r = -1;; usleep(POLL_US)) {
		if (roll_state(k, cmd, ns, what, query, uid, sidecar, orig, total == -1, &s) == -1)
			break;
		if (s.fresh[0]) {
			if (sidecar)
				errorx("%s: pod %s of %s was made again without the sidecar: the "
				    "kbridge webhook did not inject it (is the manager running? "
				    "kubectl get events -n %s)", cmd, s.fresh, what, ns);
			else
				errorx("%s: pod %s of %s was made again with the sidecar: its pod "
				    "template still asks for it", cmd, s.fresh, what);
			break;
		}
		if (s.stale == 0) {
			r = 0;
			break;
		}
		if (total == -1) {
			total = s.stale;
			fprintf(stderr, "%s does not replace its pods when its pod template "
			    "changes: evicting %ld pod%s %s the sidecar, one at a time\n", what,
			    total, total == 1 ? "" : "s", sidecar ? "without" : "with");
		}
		/* the next one once the previous one's replacement is ready */
		if (s.live >= want && s.ready == s.live) {
			if ((e = evict(k, cmd, ns, s.victim)) == -1)
				break;
			if (e == 1) {
				done++;
				fprintf(stderr, "evicted pod %s of %s (%ld/%ld); %s makes it again\n",
				    s.victim, what, done, total < done ? done : total, kind);
				held = 0;
			} else if (!held) {
				fprintf(stderr, "a PodDisruptionBudget holds the eviction of pod %s "
				    "for now: trying again\n", s.victim);
				held = 1;
			}
		}
		if (interrupted) {
			errorx("%s: interrupted while replacing the pods of %s (run it again to go on)",
			    cmd, what);
			break;
		}
		if (now_s() >= end) {
			errorx("%s: timed out after %ld s replacing the pods of %s: %ld of %ld still "
			    "%s the sidecar, %ld/%ld ready (kubectl get pods -n %s -l '%s')", cmd,
			    timeout_s, what, s.stale, s.live, sidecar ? "without" : "with", s.ready,
			    want, ns, sel);
			break;
		}
	}
	cJSON_Delete(orig);
	return r;
}
