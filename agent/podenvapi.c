/* A running container's environment from the API (see podenvapi.h). */
#include "podenvapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "kubeapi.h"
#include "podenv.h"
#include "util.h"

#define MAX_REQS 64
#define WAIT_S 30

enum what { POD, CONFIGMAP, SECRET, SERVICES, KUBERNETES, NODE };

struct req {
	struct podenv_fetch *f;
	struct kb_kube_req *r;
	enum what what;
	char name[256];
};

struct podenv_fetch {
	struct kb_kube *kube;
	char ns[64], pod[256], container[64];
	podenv_fetch_cb cb;
	void *arg;
	cJSON *podobj, *found, *services, *node;
	struct req reqs[MAX_REQS];
	size_t nreqs, pending;
	char err[600];
};

/* A DNS subdomain (RFC 1123), as object names are. */
static int
subdomain(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-' || s[n - 1] == '.' || s[n - 1] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		    s[i] == '.'))
			return 0;
	return 1;
}

static void got(void *arg, int status, cJSON *body, const char *err);

static int
send_get(struct podenv_fetch *f, enum what what, const char *name)
{
	char path[600];
	struct req *q;

	if (f->nreqs == MAX_REQS) {
		snprintf(f->err, sizeof(f->err), "the container refers to too many objects");
		return -1;
	}
	if (name && !subdomain(name)) {
		snprintf(f->err, sizeof(f->err), "invalid object name '%.100s'", name);
		return -1;
	}
	switch (what) {
	case POD:
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", f->ns, name);
		break;
	case CONFIGMAP:
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", f->ns, name);
		break;
	case SECRET:
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", f->ns, name);
		break;
	case SERVICES:
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services", f->ns);
		break;
	case KUBERNETES:
		snprintf(path, sizeof(path), "/api/v1/namespaces/default/services/kubernetes");
		break;
	case NODE:
		snprintf(path, sizeof(path), "/api/v1/nodes/%s", name);
		break;
	}
	q = &f->reqs[f->nreqs];
	q->f = f;
	q->what = what;
	snprintf(q->name, sizeof(q->name), "%s", name ? name : "");
	if ((q->r = kb_kube_request(f->kube, "GET", path, NULL, got, q)) == NULL) {
		snprintf(f->err, sizeof(f->err), "GET %.500s: cannot send the request", path);
		return -1;
	}
	f->nreqs++;
	f->pending++;
	return 0;
}

static enum podenv_found
fetch_lookup(void *arg, int secret, const char *name, const cJSON **obj, char *err, size_t errlen)
{
	struct podenv_fetch *f = arg;
	char key[300];
	const cJSON *o;

	snprintf(key, sizeof(key), "%s/%s", secret ? "secret" : "configmap", name);
	o = cJSON_GetObjectItemCaseSensitive(f->found, key);
	if (cJSON_IsObject(o)) {
		*obj = o;
		return PODENV_FOUND;
	}
	if (cJSON_IsString(o)) {
		snprintf(err, errlen, "%s", o->valuestring);
		return PODENV_ERROR;
	}
	return PODENV_NOT_FOUND;
}

static void
finish(struct podenv_fetch *f)
{
	struct podenv_src src = { .lookup = fetch_lookup, .arg = f, .services = f->services,
	    .node = f->node };
	cJSON *env = NULL;
	char err[600];

	if (!f->err[0]) {
		env = podenv_resolve(f->podobj, f->container, &src, err, sizeof(err));
		if (!env)
			snprintf(f->err, sizeof(f->err), "%s", err);
	}
	f->cb(f->arg, env, f->podobj, env ? NULL : f->err);
	cJSON_Delete(env);
	f->pending = 0;
	podenv_fetch_cancel(f);
}

/* The pod is here: ask for what its container refers to. */
static void
got_pod(struct podenv_fetch *f, cJSON *body)
{
	const cJSON *c, *e;
	const char *node;
	cJSON *refs;
	int resources;

	f->podobj = cJSON_Duplicate(body, 1);
	if (!f->container[0]) {
		c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(f->podobj, "spec"), "containers"), 0);
		snprintf(f->container, sizeof(f->container), "%s",
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name")) ?
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name")) : "");
	}
	if (!f->podobj || (refs = podenv_refs(f->podobj, f->container, &resources)) == NULL) {
		snprintf(f->err, sizeof(f->err), "pod %s/%s has no container %s", f->ns, f->pod,
		    f->container);
		return;
	}
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(refs, "configmaps"))
		if (send_get(f, CONFIGMAP, e->valuestring) < 0)
			goto done;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(refs, "secrets"))
		if (send_get(f, SECRET, e->valuestring) < 0)
			goto done;
	if (send_get(f, SERVICES, NULL) < 0 || send_get(f, KUBERNETES, NULL) < 0)
		goto done;
	node = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(f->podobj, "spec"), "nodeName"));
	if (resources && node && *node)
		send_get(f, NODE, node);
done:
	cJSON_Delete(refs);
}

static void
got_ref(struct podenv_fetch *f, struct req *q, int status, cJSON *body, const char *err)
{
	char key[300], why[600];
	cJSON *v;

	snprintf(key, sizeof(key), "%s/%s", q->what == SECRET ? "secret" : "configmap", q->name);
	if (status == 200 && body) {
		v = cJSON_Duplicate(body, 1);
	} else if (status == 404) {
		return;
	} else {
		if (status == 403)
			snprintf(why, sizeof(why), "the manager may not read it (%s%s)",
			    q->what == SECRET ? "kbridge install --env-secrets grants get on Secrets; "
			    : "", err ? err : "forbidden");
		else
			snprintf(why, sizeof(why), "%s", err ? err : "no answer");
		v = cJSON_CreateString(why);
	}
	if (!v || !cJSON_AddItemToObject(f->found, key, v)) {
		cJSON_Delete(v);
		snprintf(f->err, sizeof(f->err), "out of memory");
	}
}

static void
add_service(struct podenv_fetch *f, const cJSON *s)
{
	cJSON *d = cJSON_Duplicate(s, 1);

	if (!d || !cJSON_AddItemToArray(f->services, d)) {
		cJSON_Delete(d);
		snprintf(f->err, sizeof(f->err), "out of memory");
	}
}

static void
got(void *arg, int status, cJSON *body, const char *err)
{
	struct req *q = arg;
	struct podenv_fetch *f = q->f;
	const cJSON *s;

	q->r = NULL;
	f->pending--;
	switch (q->what) {
	case POD:
		if (status == 200 && body)
			got_pod(f, body);
		else
			snprintf(f->err, sizeof(f->err), "cannot read pod %s/%s: %s", f->ns, q->name,
			    err ? err : "no answer");
		break;
	case CONFIGMAP:
	case SECRET:
		got_ref(f, q, status, body, err);
		break;
	case SERVICES:
		if (status != 200) {
			snprintf(f->err, sizeof(f->err), "cannot list the services of %s: %s", f->ns,
			    err ? err : "no answer");
			break;
		}
		cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(body, "items"))
			add_service(f, s);
		break;
	case KUBERNETES:
		/* Absent (404) in a cluster without it; only then. */
		if (status == 200 && body)
			add_service(f, body);
		else if (status != 404)
			snprintf(f->err, sizeof(f->err), "cannot read service default/kubernetes: %s",
			    err ? err : "no answer");
		break;
	case NODE:
		if (status == 200 && body)
			f->node = cJSON_Duplicate(body, 1);
		break;
	}
	if (f->pending == 0 || f->err[0])
		finish(f);
}

struct podenv_fetch *
podenv_fetch(struct kb_kube *kube, const char *ns, const char *pod, const char *container,
    podenv_fetch_cb cb, void *arg)
{
	struct podenv_fetch *f;

	if (!kb_dns_label(ns) || !subdomain(pod) || (container && !kb_dns_label(container)))
		return NULL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->kube = kube;
	f->cb = cb;
	f->arg = arg;
	snprintf(f->ns, sizeof(f->ns), "%s", ns);
	snprintf(f->pod, sizeof(f->pod), "%s", pod);
	snprintf(f->container, sizeof(f->container), "%s", container ? container : "");
	f->found = cJSON_CreateObject();
	f->services = cJSON_CreateArray();
	if (!f->found || !f->services || send_get(f, POD, pod) < 0) {
		podenv_fetch_cancel(f);
		return NULL;
	}
	return f;
}

void
podenv_fetch_cancel(struct podenv_fetch *f)
{
	size_t i;

	if (!f)
		return;
	for (i = 0; i < f->nreqs; i++)
		if (f->reqs[i].r)
			kb_kube_cancel(f->reqs[i].r);
	cJSON_Delete(f->podobj);
	cJSON_Delete(f->found);
	cJSON_Delete(f->services);
	cJSON_Delete(f->node);
	free(f);
}

struct wait {
	int done;
	cJSON *env;
	char err[600];
};

static void
waited(void *arg, const cJSON *env, const cJSON *pod, const char *err)
{
	struct wait *w = arg;

	(void)pod;
	w->done = 1;
	w->env = env ? cJSON_Duplicate(env, 1) : NULL;
	snprintf(w->err, sizeof(w->err), "%s", err ? err : (w->env ? "" : "out of memory"));
}

cJSON *
podenv_fetch_wait(struct event_base *base, struct kb_kube *kube, const char *ns, const char *pod,
    const char *container, char *err, size_t errlen)
{
	struct wait w = { 0 };
	struct podenv_fetch *f;
	int slices;

	if ((f = podenv_fetch(kube, ns, pod, container, waited, &w)) == NULL) {
		snprintf(err, errlen, "invalid names or out of memory");
		return NULL;
	}
	for (slices = 0; !w.done && slices < WAIT_S * 10; slices++) {
		struct timeval tv = { 0, 100000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	if (!w.done) {
		podenv_fetch_cancel(f);
		snprintf(err, errlen, "no answer from the API in %d s", WAIT_S);
		return NULL;
	}
	if (!w.env)
		snprintf(err, errlen, "%s", w.err);
	return w.env;
}

static int
cmp_key(const void *a, const void *b)
{
	return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* env's members sorted by name, as one JSON object on stdout. */
static int
print_sorted(const cJSON *env)
{
	int n = cJSON_GetArraySize(env), i = 0;
	const cJSON **v = calloc(n ? (size_t)n : 1, sizeof(*v)), *e;
	cJSON *out = cJSON_CreateObject();
	char *txt;

	if (!v || !out) {
		free(v);
		cJSON_Delete(out);
		return -1;
	}
	cJSON_ArrayForEach(e, env)
		v[i++] = e;
	qsort(v, (size_t)n, sizeof(*v), cmp_key);
	for (i = 0; i < n; i++)
		cJSON_AddStringToObject(out, v[i]->string, v[i]->valuestring);
	txt = cJSON_PrintUnformatted(out);
	if (txt)
		printf("%s\n", txt);
	free(txt);
	free(v);
	cJSON_Delete(out);
	return txt ? 0 : -1;
}

int
cmd_podenv(int argc, char **argv)
{
	struct kb_kube_incluster ic = { .dir = getenv("KB_SERVICEACCOUNT_DIR") };
	struct event_base *base;
	struct kb_kube *kube;
	char err[600];
	cJSON *env = NULL;
	int rc = 1;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: kbridge-agent podenv NAMESPACE POD [CONTAINER]\n"
		    "The container's environment as the kubelet makes it from the pod spec (its\n"
		    "ConfigMaps, Secrets, fields and the namespace's services), read from the API\n"
		    "with the in-cluster service account: one JSON object, sorted by name.\n");
		return 0;
	}
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: kbridge-agent podenv NAMESPACE POD [CONTAINER]\n");
		return 2;
	}
	if (ic.dir && !*ic.dir)
		ic.dir = NULL;
	if ((base = event_base_new()) == NULL) {
		fprintf(stderr, "kbridge-agent podenv: out of memory\n");
		return 1;
	}
	if ((kube = kb_kube_new_incluster(base, &ic, err, sizeof(err))) == NULL) {
		fprintf(stderr, "kbridge-agent podenv: %s\n", err);
		event_base_free(base);
		return 1;
	}
	env = podenv_fetch_wait(base, kube, argv[1], argv[2], argc == 4 ? argv[3] : NULL, err,
	    sizeof(err));
	if (env == NULL)
		fprintf(stderr, "kbridge-agent podenv: %s/%s: %s\n", argv[1], argv[2], err);
	else if (print_sorted(env) == 0)
		rc = 0;
	cJSON_Delete(env);
	kb_kube_free(kube);
	event_base_free(base);
	return rc;
}
