/* kbridge install and uninstall: the objects of cli/manifests.c, applied to
 * (or removed from) the cluster through the API with the user's own
 * kubeconfig credentials. Before changing anything, each command asks the
 * API server (SelfSubjectAccessReview) whether the user may do every step,
 * so a missing permission is one line naming it and nothing half-done. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "cmd.h"
#include "kube.h"
#include "kworkload.h"
#include "kubeconfig.h"
#include "manifests.h"
#include "util.h"

#define IMAGE_MAX		512

enum { OPT_KUBECONFIG = 256, OPT_CONTEXT, OPT_IMAGE, OPT_DRY_RUN, OPT_PREVIEW_URL,
	OPT_ENV_SECRETS, OPT_AGENTS };
enum { FMT_TEXT, FMT_JSON, FMT_YAML };

/* "clusterrole/kbridge-developer", for messages. */
static const char *
what(const cJSON *obj, char *buf, size_t len)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
	const char *kind = jstr(obj, "kind"), *name = jstr(m, "name");
	size_t i;

	snprintf(buf, len, "%s/%s", kind ? kind : "?", name ? name : "?");
	for (i = 0; buf[i] && buf[i] != '/'; i++)
		buf[i] = (char)(buf[i] >= 'A' && buf[i] <= 'Z' ? buf[i] + 32 : buf[i]);
	return buf;
}

static const char *
meta(const cJSON *obj, const char *key)
{
	return jstr(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), key);
}

/* May the user do verb on obj (name: that object, else its kind)? 1 yes,
 * 0 no (reported), -1 error (reported). */
static int
may(struct kapi *k, const char *cmd, const cJSON *obj, const char *verb, int name)
{
	const struct kb_kind *kind = kb_manifest_kind(obj);
	const char *slash = strchr(kind->api_version, '/');
	char group[64], err[600];
	int rc;

	snprintf(group, sizeof(group), "%.*s", slash ? (int)(slash - kind->api_version) : 0,
	    kind->api_version);
	rc = kube_access(k, kind->namespaced ? meta(obj, "namespace") : NULL, group, kind->plural,
	    NULL, verb, name ? meta(obj, "name") : NULL, err, sizeof(err));
	if (rc == -1) {
		errorx("%s: cannot check permissions: %s", cmd, err);
	} else if (rc == 0) {
		snprintf(err, sizeof(err), "%s%s%s%s%s", kind->plural, *group ? "." : "", group,
		    name ? "/" : "", name ? meta(obj, "name") : "");
		if (kind->namespaced)
			errorx("%s: forbidden: you may not %s %s in namespace %s (see the README, "
			    "Install); nothing was changed", cmd, verb, err, meta(obj, "namespace"));
		else
			errorx("%s: forbidden: you may not %s %s (cluster-wide; see the README, "
			    "Install); nothing was changed", cmd, verb, err);
	}
	return rc;
}

/* GET obj: 1 and *cur (the caller frees) if it exists, 0 if not, -1
 * after reporting. */
static int
get(struct kapi *k, const char *cmd, const cJSON *obj, cJSON **cur)
{
	char *path = kb_manifest_path(obj, 1), err[600], w[160];
	cJSON *resp = NULL;
	long status;
	int rc = -1;

	*cur = NULL;
	if (path == NULL) {
		errorx("%s: out of memory", cmd);
		return -1;
	}
	if (kreq(k, "GET", path, NULL, NULL, &status, &resp, err, sizeof(err)) == -1)
		errorx("%s: %s", cmd, err);
	else if (status == 404)
		rc = 0;
	else if (status != 200) {
		api_error(status, resp, err, sizeof(err));
		errorx("%s: cannot read %s: %s", cmd, what(obj, w, sizeof(w)), err);
	} else {
		*cur = resp;
		resp = NULL;
		rc = 1;
	}
	cJSON_Delete(resp);
	free(path);
	return rc;
}

static void
report(cJSON *done, enum output out, const cJSON *obj, const char *action, const char *note)
{
	char w[160];
	cJSON *r;

	what(obj, w, sizeof(w));
	if (out == OUT_JSON) {
		r = cJSON_CreateObject();
		cJSON_AddStringToObject(r, "object", w);
		if (meta(obj, "namespace"))
			cJSON_AddStringToObject(r, "namespace", meta(obj, "namespace"));
		cJSON_AddStringToObject(r, "action", action);
		if (note)
			cJSON_AddStringToObject(r, "note", note);
		cJSON_AddItemToArray(done, r);
		return;
	}
	printf("%s %s%s%s\n", w, action, note ? " " : "", note ? note : "");
	fflush(stdout);
}

static int
image_arg(const char *s)
{
	char buf[SHOWN_MAX];
	const char *p;

	for (p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			break;
	if (*s == '\0' || *p || strlen(s) > IMAGE_MAX) {
		errorx("install: invalid --image '%s' (a container image reference)",
		    shown(s, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

/* http[s]://HOST[:PORT], as the manager's --preview-url-base takes it. */
static int
preview_url_arg(const char *s)
{
	char buf[SHOWN_MAX];
	const char *p, *host;

	host = strncmp(s, "http://", 7) == 0 ? s + 7 : strncmp(s, "https://", 8) == 0 ? s + 8 :
	    NULL;
	for (p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			break;
	if (host == NULL || *host == '\0' || *host == ':' || *p || strpbrk(host, "/?#@") ||
	    strlen(s) > 255) {
		errorx("install: invalid --preview-url-base '%s' (expected http[s]://HOST[:PORT])",
		    shown(s, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

/* Shared options: 1 handled, 0 not ours, -1 usage error (reported). */
static int
kube_opt(const char *cmd, int ch, const char **file, const char **context, const char **ns)
{
	switch (ch) {
	case OPT_KUBECONFIG:
		*file = optarg;
		return 1;
	case OPT_CONTEXT:
		*context = optarg;
		return 1;
	case 'n':
		*ns = optarg;
		return namespace_arg(cmd, optarg) == -1 ? -1 : 1;
	}
	return 0;
}

static int
dry_run(const cJSON *objs, int fmt)
{
	cJSON *list;
	char err[256];

	if (fmt == FMT_JSON) {
		list = cJSON_CreateObject();
		cJSON_AddStringToObject(list, "apiVersion", "v1");
		cJSON_AddStringToObject(list, "kind", "List");
		cJSON_AddItemToObject(list, "items", cJSON_Duplicate(objs, 1));
		print_json(list);
		cJSON_Delete(list);
		return 0;
	}
	/* Keys sorted as print_json sorts them; the objects in apply order. */
	if ((list = cJSON_Duplicate(objs, 1)) == NULL) {
		errorx("install: out of memory");
		return 1;
	}
	sort_keys(list);
	if (kb_yaml_write(stdout, list, err, sizeof(err)) == -1 || fflush(stdout) != 0) {
		errorx("install: %s", err);
		cJSON_Delete(list);
		return 1;
	}
	cJSON_Delete(list);
	return 0;
}

/* Apply obj (server-side apply, field manager kbridge, taking over fields
 * others set) and report created, configured or unchanged. */
static int
apply(struct kapi *k, const cJSON *obj, cJSON *done, enum output out)
{
	char *path = kb_manifest_path(obj, 1), *full = NULL, err[600], w[160];
	cJSON *cur = NULL, *resp = NULL;
	const char *before, *after;
	long status;
	int rc = -1, have;

	if ((have = get(k, "install", obj, &cur)) == -1)
		goto out;
	if (have && meta(cur, "deletionTimestamp")) {
		errorx("install: %s is being deleted; run install again once it is gone",
		    what(obj, w, sizeof(w)));
		goto out;
	}
	/* A namespace that was there before is not ours to label, nor to
	 * delete at uninstall. */
	if (have && kb_manifest_kind(obj)->namespaced == 0 &&
	    strcmp(jstr(obj, "kind"), "Namespace") == 0 && !kb_manifest_ours(cur)) {
		report(done, out, obj, "exists", "(not made by kbridge, left as it is)");
		rc = 0;
		goto out;
	}
	if (path == NULL || asprintf(&full, "%s?fieldManager=kbridge&force=true", path) < 0) {
		full = NULL;
		errorx("install: out of memory");
		goto out;
	}
	if (kreq(k, "PATCH", full, "application/apply-patch+yaml", obj, &status, &resp, err,
	    sizeof(err)) == -1) {
		errorx("install: %s", err);
		goto out;
	}
	if (status != 200 && status != 201) {
		api_error(status, resp, err, sizeof(err));
		errorx("install: cannot apply %s: %s", what(obj, w, sizeof(w)), err);
		goto out;
	}
	before = meta(cur, "resourceVersion");
	after = meta(resp, "resourceVersion");
	report(done, out, obj, !have ? "created" : before && after && strcmp(before, after) == 0 ?
	    "unchanged" : "configured", NULL);
	rc = 0;
out:
	cJSON_Delete(cur);
	cJSON_Delete(resp);
	free(full);
	free(path);
	return rc;
}

int
cmd_install(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPTS_KUBE,
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "preview-url-base", required_argument, NULL, OPT_PREVIEW_URL },
		{ "env-secrets", no_argument, NULL, OPT_ENV_SECRETS },
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *file = NULL, *context = NULL, *ns = KB_INSTALL_NS_DEFAULT;
	const char *image = KB_IMAGE_DEFAULT, *fmt_arg = NULL, *preview = NULL;
	struct kb_manifest_opts mo;
	struct kapi k = { 0 };
	cJSON *objs = NULL, *done = NULL, *o, *cur;
	enum output out = OUT_TEXT;
	int ch, r, skip, dry = 0, fmt = FMT_TEXT, ret = 1, env_secrets = 0;

	while ((ch = next_opt(argc, argv, ":n:o:h", opts)) != -1) {
		if ((r = kube_opt(argv[0], ch, &file, &context, &ns)) == -1)
			return EXIT_USAGE;
		if (r)
			continue;
		switch (ch) {
		case OPT_IMAGE:
			if (image_arg(optarg) == -1)
				return EXIT_USAGE;
			image = optarg;
			break;
		case OPT_DRY_RUN:
			dry = 1;
			break;
		case OPT_PREVIEW_URL:
			if (preview_url_arg(optarg) == -1)
				return EXIT_USAGE;
			preview = optarg;
			break;
		case OPT_ENV_SECRETS:
			env_secrets = 1;
			break;
		case 'o':	/* text, json or yaml: not std_opt's */
			fmt_arg = optarg;
			break;
		default:
			if (!std_opt(ch, argv, NULL, NULL, &ret))
				return ret;
		}
	}
	if (no_operands(argc, argv) == -1)
		return EXIT_USAGE;
	/* After the other options: a usage error above stays text. */
	if (fmt_arg && parse_output(argv[0], fmt_arg, &out) == -1)
		return EXIT_USAGE;
	if (out == OUT_JSON)
		fmt = strcmp(fmt_arg, "yaml") == 0 ? FMT_YAML : FMT_JSON;
	mo = (struct kb_manifest_opts){ .ns = ns, .image = image, .preview_url = preview,
	    .env_secrets = env_secrets };
	if ((objs = kb_manifests(&mo)) == NULL) {
		errorx("install: out of memory");
		return 1;
	}
	if (dry) {
		ret = dry_run(objs, fmt == FMT_TEXT ? FMT_YAML : fmt);
		cJSON_Delete(objs);
		return ret;
	}
	catch_signals();
	if (load_kubeconfig("install", file, context, &k) == -1)
		goto out;
	/* Every permission first, so that a refusal changes nothing: apply
	 * needs patch, and create when the object is not there yet. */
	cJSON_ArrayForEach(o, objs) {
		if (may(&k, "install", o, "get", 1) != 1 || (r = get(&k, "install", o, &cur)) == -1)
			goto out;
		skip = r == 1 && strcmp(jstr(o, "kind"), "Namespace") == 0 && !kb_manifest_ours(cur);
		cJSON_Delete(cur);
		if (!skip && ((r == 0 && may(&k, "install", o, "create", 0) != 1) ||
		    may(&k, "install", o, "patch", 1) != 1))
			goto out;
	}
	done = cJSON_CreateArray();
	cJSON_ArrayForEach(o, objs)
		if (apply(&k, o, done, out) == -1)
			goto out;
	if (out == OUT_JSON)
		print_json(done);
	ret = 0;
out:
	cJSON_Delete(done);
	cJSON_Delete(objs);
	kapi_close(&k);
	return ret;
}

/* Made by Kubernetes, or by kbridge without its label: not a reason to
 * keep the namespace. */
static int
expected_there(const char *resource, const cJSON *it)
{
	const char *name = meta(it, "name");
	const cJSON *owners = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(it, "metadata"), "ownerReferences");

	/* Owned objects go with their owner (an EndpointSlice with its
	 * Service, a Pod with its ReplicaSet), which is checked itself. */
	if (kb_manifest_ours(it) || name == NULL || cJSON_GetArraySize(owners) > 0)
		return 1;
	return (strcmp(resource, "configmaps") == 0 && strcmp(name, "kube-root-ca.crt") == 0) ||
	    (strcmp(resource, "serviceaccounts") == 0 && strcmp(name, "default") == 0) ||
	    (strcmp(resource, "endpoints") == 0 && strcmp(name, KB_MANAGER_NAME) == 0);
}

/* The first object of resource under prefix ("/apis/apps/v1") in ns that
 * kbridge did not make: 1 and "resource/name" in buf; 0 if none; -1 after
 * reporting. */
static int
foreign_in(struct kapi *k, const char *prefix, const char *resource, const char *kind,
    const char *ns, char *buf, size_t len)
{
	char path[512], err[600];
	size_t i;
	const cJSON *it;
	cJSON *resp;
	long status;

	snprintf(path, sizeof(path), "%s/namespaces/%s/%s", prefix, ns, resource);
	if (kreq(k, "GET", path, NULL, NULL, &status, &resp, err, sizeof(err)) == -1) {
		errorx("uninstall: %s", err);
		return -1;
	}
	/* An API that is gone or unavailable holds nothing we can see (its
	 * objects would keep a namespace Terminating, not vanish). */
	if (status == 404 || status == 405 || status == 503) {
		cJSON_Delete(resp);
		return 0;
	}
	if (status != 200) {
		api_error(status, resp, err, sizeof(err));
		cJSON_Delete(resp);
		errorx("uninstall: cannot list %s in namespace %s: %s; nothing was changed",
		    resource, ns, err);
		return -1;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(resp, "items")) {
		if (expected_there(resource, it))
			continue;
		/* "configmap/keepme", as kubectl names it */
		snprintf(buf, len, "%s/%s", kind, meta(it, "name"));
		for (i = 0; buf[i] && buf[i] != '/'; i++)
			buf[i] = (char)(buf[i] >= 'A' && buf[i] <= 'Z' ? buf[i] + 32 : buf[i]);
		cJSON_Delete(resp);
		return 1;
	}
	cJSON_Delete(resp);
	return 0;
}

/* Events (core, events.k8s.io) record what happened to objects and never
 * keep a namespace: not worth listing. */
static int
events(const char *prefix, const char *resource)
{
	return strcmp(resource, "events") == 0 && (strcmp(prefix, "/api/v1") == 0 ||
	    strncmp(prefix, "/apis/events.k8s.io/", 20) == 0);
}

/* Every namespaced, listable resource of one group version (discovery). */
static int
foreign_gv(struct kapi *k, const char *prefix, const char *ns, char *buf, size_t len)
{
	const cJSON *r, *v;
	cJSON *resp;
	const char *name;
	char err[600];
	long status;
	int rc = 0, listable;

	if (kreq(k, "GET", prefix, NULL, NULL, &status, &resp, err, sizeof(err)) == -1) {
		errorx("uninstall: %s", err);
		return -1;
	}
	if (status != 200) {
		cJSON_Delete(resp);
		return 0;
	}
	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(resp, "resources")) {
		name = jstr(r, "name");
		listable = 0;
		cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(r, "verbs"))
			listable |= cJSON_IsString(v) && strcmp(v->valuestring, "list") == 0;
		if (name == NULL || strchr(name, '/') || !listable || jstr(r, "kind") == NULL ||
		    !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "namespaced")) ||
		    events(prefix, name))
			continue;
		if ((rc = foreign_in(k, prefix, name, jstr(r, "kind"), ns, buf, len)) != 0)
			break;
	}
	cJSON_Delete(resp);
	return rc;
}

/* An object in the namespace that kbridge did not make (nor Kubernetes in
 * every namespace), of any kind the API server serves (discovery: built-in
 * and custom resources): its "resource/name" in buf, 1; 0 if none; -1
 * after reporting. */
static int
foreign(struct kapi *k, const char *ns, char *buf, size_t len)
{
	const cJSON *g;
	cJSON *resp;
	const char *gv;
	char prefix[300], err[600];
	long status;
	int rc;

	if ((rc = foreign_gv(k, "/api/v1", ns, buf, len)) != 0)
		return rc;
	if (kreq(k, "GET", "/apis", NULL, NULL, &status, &resp, err, sizeof(err)) == -1) {
		errorx("uninstall: %s", err);
		return -1;
	}
	if (status != 200) {
		api_error(status, resp, err, sizeof(err));
		cJSON_Delete(resp);
		errorx("uninstall: cannot list the API groups: %s; nothing was changed", err);
		return -1;
	}
	cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(resp, "groups")) {
		gv = jstr(cJSON_GetObjectItemCaseSensitive(g, "preferredVersion"), "groupVersion");
		if (gv == NULL || strlen(gv) > 200)
			continue;
		snprintf(prefix, sizeof(prefix), "/apis/%s", gv);
		if ((rc = foreign_gv(k, prefix, ns, buf, len)) != 0)
			break;
	}
	cJSON_Delete(resp);
	return rc;
}

/* An object known by kind and name only (ns NULL: cluster-scoped). */
static cJSON *
stub(const char *api_version, const char *kind, const char *name, const char *ns)
{
	cJSON *o = cJSON_CreateObject(), *m;

	cJSON_AddStringToObject(o, "apiVersion", api_version);
	cJSON_AddStringToObject(o, "kind", kind);
	m = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(m, "name", name);
	if (ns)
		cJSON_AddStringToObject(m, "namespace", ns);
	return o;
}

static int
listed(const cJSON *objs, const char *kind, const char *name)
{
	const cJSON *o;

	cJSON_ArrayForEach(o, objs)
		if (strcmp(jstr(o, "kind"), kind) == 0 && meta(o, "name") &&
		    strcmp(meta(o, "name"), name) == 0)
			return 1;
	return 0;
}

/* Objects of install's kinds labelled as kbridge's that objs does not name
 * (made by another version of install, or by the manager), appended to
 * objs: uninstall removes them too. Pods are left to their ReplicaSet's
 * garbage collection. 0, or -1 after reporting. */
static int
labelled_too(struct kapi *k, cJSON *objs, const char *ns)
{
	const struct kb_kind *kinds;
	const cJSON *it;
	cJSON *resp;
	char path[300], err[600];
	const char *name;
	long status;
	size_t i, n;

	kinds = kb_manifest_kinds(&n);
	for (i = 0; i < n; i++) {
		if (strcmp(kinds[i].kind, "Namespace") == 0 || strcmp(kinds[i].kind, "Pod") == 0)
			continue;
		snprintf(path, sizeof(path), "/%s%s%s%s/%s?labelSelector=%s%%3Dkbridge",
		    strchr(kinds[i].api_version, '/') ? "apis/" : "api/", kinds[i].api_version,
		    kinds[i].namespaced ? "/namespaces/" : "", kinds[i].namespaced ? ns : "",
		    kinds[i].plural, "app.kubernetes.io%2Fmanaged-by");
		if (kreq(k, "GET", path, NULL, NULL, &status, &resp, err, sizeof(err)) == -1) {
			errorx("uninstall: %s", err);
			return -1;
		}
		if (status != 200) {
			api_error(status, resp, err, sizeof(err));
			cJSON_Delete(resp);
			errorx("uninstall: cannot list %s: %s; nothing was changed", kinds[i].plural,
			    err);
			return -1;
		}
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(resp, "items"))
			if ((name = meta(it, "name")) && !listed(objs, kinds[i].kind, name))
				cJSON_AddItemToArray(objs, stub(kinds[i].api_version, kinds[i].kind,
				    name, kinds[i].namespaced ? ns : NULL));
		cJSON_Delete(resp);
	}
	return 0;
}

/* uninstall --agents: the annotations kbridge intercept added (its markers
 * say which) removed from every workload of ns (NULL: all namespaces) that
 * has them; the exit code. */
static int
uninstall_agents(const char *file, const char *context, const char *ns, int all,
    enum output out)
{
	struct kapi k = { 0 };
	cJSON *items = NULL, *done = cJSON_CreateArray(), *r, *a;
	const cJSON *o, *m;
	const char *kind;
	char lower[32];
	size_t i;
	int ret = 1, n = 0, port;

	catch_signals();
	if (done == NULL || load_kubeconfig("uninstall", file, context, &k) == -1)
		goto out;
	if (!all && !ns)
		ns = kb_kubeconfig_namespace(k.kc);
	if ((items = kw_list(&k, "uninstall", all ? NULL : ns)) == NULL)
		goto out;
	cJSON_ArrayForEach(o, items) {
		if (!kw_ours(o))
			continue;
		port = kw_ours_port(o);
		if (kw_restore(&k, "uninstall", o) == -1)
			goto out;
		m = cJSON_GetObjectItemCaseSensitive(o, "metadata");
		kind = jstr(o, "kind");
		for (i = 0; kind[i] && i < sizeof(lower) - 1; i++)
			lower[i] = (char)(kind[i] | 0x20);
		lower[i] = '\0';
		n++;
		if (out == OUT_JSON) {
			r = cJSON_CreateObject();
			cJSON_AddStringToObject(r, "kind", kind);
			cJSON_AddStringToObject(r, "name", jstr(m, "name"));
			cJSON_AddStringToObject(r, "namespace", jstr(m, "namespace"));
			cJSON_AddStringToObject(r, "action", "restored");
			a = cJSON_AddArrayToObject(r, "removed");
			cJSON_AddItemToArray(a, cJSON_CreateString(KW_ANN_INJECT));
			if (port)
				cJSON_AddItemToArray(a, cJSON_CreateString(KW_ANN_PORT));
			cJSON_AddItemToArray(done, r);
		} else {
			printf("%s/%s in namespace %s: sidecar removed (annotation%s %s%s%s), its "
			    "pod template restored\n", lower, jstr(m, "name"), jstr(m, "namespace"),
			    port ? "s" : "", KW_ANN_INJECT, port ? ", " : "", port ? KW_ANN_PORT : "");
			fflush(stdout);
		}
		/* its pods keep the sidecar until they are replaced */
		if (kw_needs_roll(o) && kw_roll(&k, "uninstall", o, 0, KW_WAIT_DEFAULT) == -1)
			goto out;
	}
	if (out == OUT_JSON)
		print_json(done);
	else if (n == 0)
		printf("nothing to do: no workload %s%s has a sidecar kbridge added\n",
		    all ? "in any namespace" : "in namespace ", all ? "" : ns);
	ret = 0;
out:
	cJSON_Delete(items);
	cJSON_Delete(done);
	kapi_close(&k);
	return ret;
}

int
cmd_uninstall(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPTS_KUBE,
		{ "agents", no_argument, NULL, OPT_AGENTS },
		{ "all-namespaces", no_argument, NULL, 'A' },
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *file = NULL, *context = NULL, *ns = KB_INSTALL_NS_DEFAULT;
	struct kb_manifest_opts mo;
	struct kapi k = { 0 };
	cJSON *objs = NULL, *del = NULL, *done = NULL, *o, *cur, *resp;
	enum output out = OUT_TEXT;
	char *path, err[600], w[160], other[200];
	long status;
	int ch, r, n, acted = 0, keep_ns = 0, ret = 1, agents = 0, all = 0, ns_given = 0;

	while ((ch = next_opt(argc, argv, ":n:o:Ah", opts)) != -1) {
		if (ch == OPT_AGENTS || ch == 'A') {
			*(ch == 'A' ? &all : &agents) = 1;
			continue;
		}
		ns_given |= ch == 'n';
		if ((r = kube_opt(argv[0], ch, &file, &context, &ns)) == -1)
			return EXIT_USAGE;
		if (r == 0 && !std_opt(ch, argv, NULL, &out, &ret))
			return ret;
	}
	if (no_operands(argc, argv) == -1)
		return EXIT_USAGE;
	if (all && (!agents || ns_given)) {
		errorx("uninstall: %s", agents ? "-A and -n exclude each other" :
		    "-A goes with --agents");
		return EXIT_USAGE;
	}
	if (agents)
		return uninstall_agents(file, context, ns_given ? ns : NULL, all, out);
	ret = 1;
	/* Every object install can make (with a preview port or not, the
	 * names are the same). */
	mo = (struct kb_manifest_opts){ .ns = ns, .image = KB_IMAGE_DEFAULT };
	if ((objs = kb_manifests(&mo)) == NULL)
		goto oom;
	/* The manager's own state, which it labels as kbridge's. */
	cJSON_AddItemToArray(objs, stub("v1", "Secret", KB_CA_SECRET, ns));
	cJSON_AddItemToArray(objs, stub("v1", "Secret", KB_STATE_SECRET, ns));
	cJSON_AddItemToArray(objs, stub("v1", "ConfigMap", KB_CA_CONFIGMAP, ns));
	catch_signals();
	if (load_kubeconfig("uninstall", file, context, &k) == -1 ||
	    labelled_too(&k, objs, ns) == -1)
		goto out;
	/* What is there and ours, the namespace last. */
	del = cJSON_CreateArray();
	done = cJSON_CreateArray();
	for (n = cJSON_GetArraySize(objs) - 1; n >= 0; n--) {
		o = cJSON_GetArrayItem(objs, n);
		if (may(&k, "uninstall", o, "get", 1) != 1 ||
		    (r = get(&k, "uninstall", o, &cur)) == -1)
			goto out;
		if (r == 0 || meta(cur, "deletionTimestamp")) {
			cJSON_Delete(cur);
			continue;
		}
		if (!kb_manifest_ours(cur)) {
			/* Reported only where it matters to the user. */
			if (strcmp(jstr(o, "kind"), "Namespace") != 0 &&
			    strcmp(jstr(o, "kind"), "Secret") != 0 &&
			    strcmp(jstr(o, "kind"), "ConfigMap") != 0)
				report(done, out, o, "kept", "(not made by kbridge)");
			cJSON_Delete(cur);
			continue;
		}
		cJSON_Delete(cur);
		if (may(&k, "uninstall", o, "delete", 1) != 1)
			goto out;
		cJSON_AddItemReferenceToArray(del, o);
	}
	/* Whether the namespace goes, before deleting anything: a refusal to
	 * list what it holds then changes nothing. */
	o = cJSON_GetArrayItem(del, cJSON_GetArraySize(del) - 1);
	if (o && strcmp(jstr(o, "kind"), "Namespace") == 0 &&
	    (keep_ns = foreign(&k, ns, other, sizeof(other))) == -1)
		goto out;
	cJSON_ArrayForEach(o, del) {
		if (strcmp(jstr(o, "kind"), "Namespace") == 0 && keep_ns) {
			snprintf(err, sizeof(err), "(it holds %s, which kbridge did not make)", other);
			report(done, out, o, "kept", err);
			continue;
		}
		if ((path = kb_manifest_path(o, 1)) == NULL)
			goto oom;
		r = kreq(&k, "DELETE", path, NULL, NULL, &status, &resp, err, sizeof(err));
		free(path);
		if (r == -1) {
			errorx("uninstall: %s", err);
			goto out;
		}
		if (status != 200 && status != 202 && status != 404) {
			api_error(status, resp, err, sizeof(err));
			cJSON_Delete(resp);
			errorx("uninstall: cannot delete %s: %s", what(o, w, sizeof(w)), err);
			goto out;
		}
		cJSON_Delete(resp);
		report(done, out, o, "deleted", NULL);
		acted = 1;
	}
	if (out == OUT_JSON)
		print_json(done);
	else if (!acted)
		printf("nothing to do: kbridge is not installed in namespace %s\n", ns);
	ret = 0;
	goto out;
oom:
	errorx("uninstall: out of memory");
out:
	cJSON_Delete(del);
	cJSON_Delete(done);
	cJSON_Delete(objs);
	kapi_close(&k);
	return ret;
}
