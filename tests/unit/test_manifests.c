/* cli/manifests.c: the objects of `kbridge install` are well-formed and
 * labelled, the manager's pod is locked down (non-root, read-only root,
 * no capabilities, seccomp), the RBAC is least privilege (no wildcard, the
 * manager's Secret and ConfigMap access limited by name, no write on
 * cluster objects), and the YAML writer quotes what plain YAML would
 * misread. */
#include "../../cli/manifests.c"

#include "ok.h"

static cJSON *
find(const cJSON *objs, const char *kind, const char *name)
{
	const cJSON *o;

	cJSON_ArrayForEach(o, objs)
		if (strcmp(cJSON_GetObjectItem(o, "kind")->valuestring, kind) == 0 &&
		    strcmp(meta_str(o, "name"), name) == 0)
			return (cJSON *)o;
	return NULL;
}

static const cJSON *
at(const cJSON *j, const char *path)
{
	char buf[256], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save))
		j = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, atoi(tok)) :
		    cJSON_GetObjectItemCaseSensitive(j, tok);
	return j;
}

static int
is_true(const cJSON *j, const char *path)
{
	return cJSON_IsTrue(at(j, path));
}

static const char *
str_at(const cJSON *j, const char *path)
{
	j = at(j, path);
	return cJSON_IsString(j) ? j->valuestring : "";
}

static int
has_str(const cJSON *arr, const char *s)
{
	const cJSON *v;

	cJSON_ArrayForEach(v, arr)
		if (cJSON_IsString(v) && strcmp(v->valuestring, s) == 0)
			return 1;
	return 0;
}

/* Does any rule of any role name "*" anywhere? */
static int
wildcard(const cJSON *objs)
{
	const cJSON *o, *r, *f, *v;

	cJSON_ArrayForEach(o, objs)
		cJSON_ArrayForEach(r, cJSON_GetObjectItem(o, "rules"))
			cJSON_ArrayForEach(f, r)
				cJSON_ArrayForEach(v, f)
					if (strchr(v->valuestring, '*'))
						return 1;
	return 0;
}

/* The verbs role grants on resource named exactly name (in a rule that
 * lists it in resourceNames), as "get,update" in rule order. */
static void
named_verbs(const cJSON *role, const char *resource, const char *name, char *buf, size_t len)
{
	const cJSON *r, *v;

	buf[0] = '\0';
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(role, "rules"))
		if (has_str(cJSON_GetObjectItem(r, "resources"), resource) &&
		    has_str(cJSON_GetObjectItem(r, "resourceNames"), name))
			cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "verbs"))
				snprintf(buf + strlen(buf), len - strlen(buf), "%s%s",
				    buf[0] ? "," : "", v->valuestring);
}

/* A rule of role granting verb on resource: 1 unlimited, 2 limited to
 * resourceNames, 0 none. */
static int
grants(const cJSON *role, const char *resource, const char *verb)
{
	const cJSON *r;
	int best = 0;

	cJSON_ArrayForEach(r, cJSON_GetObjectItem(role, "rules"))
		if (has_str(cJSON_GetObjectItem(r, "resources"), resource) &&
		    has_str(cJSON_GetObjectItem(r, "verbs"), verb))
			best = cJSON_GetObjectItem(r, "resourceNames") ? (best ? best : 2) : 1;
	return best;
}

/* Does a rule of role grant verb on resource for the CA ConfigMap by name? */
static int
names_ca(const cJSON *role, const char *resource, const char *verb)
{
	const cJSON *r;

	cJSON_ArrayForEach(r, cJSON_GetObjectItem(role, "rules"))
		if (has_str(cJSON_GetObjectItem(r, "resources"), resource) &&
		    has_str(cJSON_GetObjectItem(r, "verbs"), verb) &&
		    has_str(cJSON_GetObjectItem(r, "resourceNames"), KB_CA_CONFIGMAP) &&
		    cJSON_GetArraySize(cJSON_GetObjectItem(r, "resourceNames")) == 1)
			return 1;
	return 0;
}

/* The (first) rule of role about resource. */
static const cJSON *
rule_for(const cJSON *role, const char *resource)
{
	const cJSON *r;

	cJSON_ArrayForEach(r, cJSON_GetObjectItem(role, "rules"))
		if (has_str(cJSON_GetObjectItem(r, "resources"), resource))
			return r;
	return NULL;
}

static char *
yaml_of(const char *json)
{
	cJSON *docs = cJSON_Parse(json);
	char *buf = NULL, err[128];
	size_t len;
	FILE *f = open_memstream(&buf, &len);

	if (docs == NULL || f == NULL || kb_yaml_write(f, docs, err, sizeof(err)) != 0) {
		cJSON_Delete(docs);
		if (f)
			fclose(f);
		free(buf);
		return strdup("(failed)");
	}
	fclose(f);
	cJSON_Delete(docs);
	return buf;
}

/* Emit {"k": s} and read it back with libyaml's parser: the value must
 * come back as s, and plain (untagged, unquoted) only if a YAML reader
 * would take it for a string. */
static int
round_trip(const char *s)
{
	cJSON *docs = cJSON_CreateArray(), *o = cJSON_CreateObject();
	char *buf = NULL, err[128];
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	yaml_parser_t p;
	yaml_event_t ev;
	int scalars = 0, good = 0, done = 0;

	cJSON_AddStringToObject(o, "k", s);
	cJSON_AddItemToArray(docs, o);
	if (kb_yaml_write(f, docs, err, sizeof(err)) != 0) {
		fclose(f);
		free(buf);
		cJSON_Delete(docs);
		return 0;
	}
	fclose(f);
	cJSON_Delete(docs);
	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (unsigned char *)buf, len);
	while (!done) {
		if (!yaml_parser_parse(&p, &ev))
			break;
		if (ev.type == YAML_SCALAR_EVENT && ++scalars == 2)
			good = ev.data.scalar.tag == NULL &&
			    strlen(s) == ev.data.scalar.length &&
			    memcmp(s, ev.data.scalar.value, ev.data.scalar.length) == 0 &&
			    (ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE || !needs_quotes(s));
		done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (!good || !done)
		printf("# round trip of '%s' failed: %s", s, buf);
	free(buf);
	return good && done;
}

int
main(void)
{
	struct kb_manifest_opts mo = { .ns = "kbtest", .image = "registry.example/kbridge-agent:1.2",
	    .preview_url = "https://preview.example.com" };
	cJSON *objs = kb_manifests(&mo), *plain;
	const cJSON *o, *d, *pod, *c, *sr;
	char *p, *y, buf[200];
	int all = 1, n = 0;

	ok(objs != NULL);
	cJSON_ArrayForEach(o, objs) {
		n++;
		if (kb_manifest_kind(o) == NULL || !kb_manifest_ours(o) ||
		    !cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metadata"),
		    "labels"), KB_LABEL_PART_OF) ||
		    (kb_manifest_kind(o)->namespaced &&
		    strcmp(meta_str(o, "namespace"), "kbtest") != 0) ||
		    (!kb_manifest_kind(o)->namespaced && meta_str(o, "namespace")))
			all = 0;
	}
	ok(n == 11);
	ok(all);
	ok(strcmp(str_at(cJSON_GetArrayItem(objs, 0), "kind"), "Namespace") == 0);
	ok(strcmp(str_at(cJSON_GetArrayItem(objs, n - 2), "kind"), "Deployment") == 0);
	ok(strcmp(str_at(cJSON_GetArrayItem(objs, n - 1), "kind"),
	    "MutatingWebhookConfiguration") == 0);

	p = kb_manifest_path(find(objs, "Deployment", "kbridge-manager"), 1);
	ok(p && strcmp(p, "/apis/apps/v1/namespaces/kbtest/deployments/kbridge-manager") == 0);
	free(p);
	p = kb_manifest_path(find(objs, "Namespace", "kbtest"), 1);
	ok(p && strcmp(p, "/api/v1/namespaces/kbtest") == 0);
	free(p);
	p = kb_manifest_path(find(objs, "ClusterRole", "kbridge-developer"), 0);
	ok(p && strcmp(p, "/apis/rbac.authorization.k8s.io/v1/clusterroles") == 0);
	free(p);
	p = kb_manifest_path(find(objs, "Role", "kbridge-manager"), 1);
	ok(p && strcmp(p, "/apis/rbac.authorization.k8s.io/v1/namespaces/kbtest/roles/"
	    "kbridge-manager") == 0);
	free(p);

	d = find(objs, "Deployment", "kbridge-manager");
	pod = at(d, "spec.template.spec");
	c = at(pod, "containers.0");
	ok(cJSON_GetArraySize(at(pod, "containers")) == 1);
	ok(strcmp(str_at(c, "image"), "registry.example/kbridge-agent:1.2") == 0);
	ok(strcmp(str_at(c, "command.0"), "kbridge-agent") == 0 &&
	    strcmp(str_at(c, "command.1"), "manager") == 0);
	ok(is_true(pod, "securityContext.runAsNonRoot") && is_true(c, "securityContext.runAsNonRoot"));
	ok(at(pod, "securityContext.runAsUser")->valuedouble == KB_RUN_AS);
	ok(is_true(c, "securityContext.readOnlyRootFilesystem"));
	ok(cJSON_IsFalse(at(c, "securityContext.allowPrivilegeEscalation")));
	ok(strcmp(str_at(c, "securityContext.capabilities.drop.0"), "ALL") == 0 &&
	    cJSON_GetArraySize(at(c, "securityContext.capabilities.drop")) == 1 &&
	    at(c, "securityContext.capabilities.add") == NULL);
	ok(strcmp(str_at(pod, "securityContext.seccompProfile.type"), "RuntimeDefault") == 0);
	ok(strcmp(str_at(pod, "serviceAccountName"), KB_MANAGER_NAME) == 0);
	ok(at(pod, "volumes") == NULL && at(pod, "hostNetwork") == NULL);
	ok(at(d, "spec.replicas")->valuedouble == 1);
	sr = at(d, "spec.selector.matchLabels");
	ok(strcmp(cJSON_GetObjectItem(sr, "app.kubernetes.io/name")->valuestring,
	    KB_MANAGER_NAME) == 0);
	ok(strcmp(cJSON_GetObjectItem(at(d, "spec.template.metadata.labels"),
	    "app.kubernetes.io/name")->valuestring, KB_MANAGER_NAME) == 0);
	ok(strcmp(str_at(c, "ports.0.name"), "tls") == 0 &&
	    at(c, "ports.0.containerPort")->valuedouble == 8443);
	ok(strcmp(str_at(c, "ports.1.name"), "webhook") == 0 &&
	    at(c, "ports.1.containerPort")->valuedouble == 8444);
	ok(strcmp(str_at(c, "ports.2.name"), "preview") == 0 &&
	    at(c, "ports.2.containerPort")->valuedouble == 8080);
	o = find(objs, "Service", "kbridge-manager");
	ok(o && strcmp(str_at(o, "spec.type"), "ClusterIP") == 0 &&
	    strcmp(str_at(o, "spec.ports.0.targetPort"), "tls") == 0 &&
	    strcmp(str_at(o, "spec.ports.1.targetPort"), "webhook") == 0 &&
	    at(o, "spec.ports.1.port")->valuedouble == 443 &&
	    strcmp(str_at(o, "spec.ports.2.targetPort"), "preview") == 0);
	ok(strcmp(str_at(c, "args.4"), "--webhook-listen=0.0.0.0:8444") == 0 &&
	    strcmp(str_at(c, "args.5"), "--sidecar-image=registry.example/kbridge-agent:1.2") == 0);

	/* The webhook: never blocks pods, never sees its own namespace. */
	o = find(objs, "MutatingWebhookConfiguration", KB_WEBHOOK_NAME);
	ok(o && meta_str(o, "namespace") == NULL && cJSON_GetArraySize(at(o, "webhooks")) == 1);
	ok(strcmp(str_at(o, "webhooks.0.failurePolicy"), "Ignore") == 0 &&
	    strcmp(str_at(o, "webhooks.0.sideEffects"), "None") == 0 &&
	    strcmp(str_at(o, "webhooks.0.reinvocationPolicy"), "Never") == 0 &&
	    at(o, "webhooks.0.timeoutSeconds")->valuedouble == 5 &&
	    strcmp(str_at(o, "webhooks.0.admissionReviewVersions.0"), "v1") == 0);
	ok(strcmp(str_at(o, "webhooks.0.clientConfig.service.namespace"), "kbtest") == 0 &&
	    strcmp(str_at(o, "webhooks.0.clientConfig.service.name"), KB_MANAGER_NAME) == 0 &&
	    strcmp(str_at(o, "webhooks.0.clientConfig.service.path"), "/mutate-pods") == 0 &&
	    at(o, "webhooks.0.clientConfig.service.port")->valuedouble == 443 &&
	    at(o, "webhooks.0.clientConfig.caBundle") == NULL);
	ok(strcmp(str_at(o, "webhooks.0.rules.0.operations.0"), "CREATE") == 0 &&
	    cJSON_GetArraySize(at(o, "webhooks.0.rules.0.operations")) == 1 &&
	    strcmp(str_at(o, "webhooks.0.rules.0.resources.0"), "pods") == 0 &&
	    cJSON_GetArraySize(at(o, "webhooks.0.rules.0.resources")) == 1);
	ok(strcmp(str_at(o, "webhooks.0.namespaceSelector.matchExpressions.0.key"),
	    "kubernetes.io/metadata.name") == 0 &&
	    strcmp(str_at(o, "webhooks.0.namespaceSelector.matchExpressions.0.operator"),
	    "NotIn") == 0 &&
	    has_str(at(o, "webhooks.0.namespaceSelector.matchExpressions.0.values"), "kbtest"));
	p = kb_manifest_path(o, 1);
	ok(p && strcmp(p, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
	    "kbridge-injector") == 0);
	free(p);

	ok(strcmp(str_at(c, "args.0"), "--in-cluster") == 0);
	ok(strcmp(str_at(c, "args.3"), "--state-secret=kbridge-manager-state") == 0);
	ok(strcmp(str_at(c, "args.6"), "--preview-listen=0.0.0.0:8080") == 0 &&
	    strcmp(str_at(c, "args.7"), "--preview-url-base=https://preview.example.com") == 0);
	/* Without a preview URL: no preview listener, no preview port. */
	mo.preview_url = NULL;
	plain = kb_manifests(&mo);
	c = at(find(plain, "Deployment", KB_MANAGER_NAME), "spec.template.spec.containers.0");
	ok(cJSON_GetArraySize(at(c, "args")) == 6 && cJSON_GetArraySize(at(c, "ports")) == 2);
	ok(cJSON_GetArraySize(at(find(plain, "Service", KB_MANAGER_NAME), "spec.ports")) == 2);
	cJSON_Delete(plain);

	/* Least privilege. */
	ok(!wildcard(objs));
	o = find(objs, "Role", KB_MANAGER_NAME);
	ok(grants(o, "secrets", "create") == 1);
	ok(grants(o, "secrets", "get") == 2 && grants(o, "secrets", "update") == 2);
	ok(grants(o, "secrets", "list") == 0 && grants(o, "secrets", "delete") == 0);
	/* The state holds preview tokens: a Secret, by name. */
	named_verbs(o, "secrets", "kbridge-manager-state", buf, sizeof(buf));
	ok(strcmp(buf, "get,update") == 0);
	named_verbs(o, "secrets", "kbridge-manager-ca", buf, sizeof(buf));
	ok(strcmp(buf, "get,update,patch") == 0);
	ok(grants(o, "configmaps", "get") == 2 && grants(o, "configmaps", "delete") == 0);
	ok(names_ca(o, "configmaps", "update") && grants(o, "configmaps", "update") == 2);
	o = find(objs, "ClusterRole", KB_MANAGER_NAME);
	ok(grants(o, "pods", "list") == 1 && grants(o, "endpointslices", "watch") == 1);
	ok(grants(o, "pods", "create") == 0 && grants(o, "pods", "patch") == 0 &&
	    grants(o, "secrets", "get") == 0);
	/* --env-file: ConfigMaps by name, no list or watch; Secrets only
	 * with --env-secrets (below). */
	ok(grants(o, "configmaps", "get") == 1 && grants(o, "configmaps", "list") == 0 &&
	    grants(o, "configmaps", "watch") == 0 && grants(o, "configmaps", "update") == 0);
	mo.env_secrets = 1;
	plain = kb_manifests(&mo);
	mo.env_secrets = 0;
	o = find(plain, "ClusterRole", KB_MANAGER_NAME);
	ok(grants(o, "secrets", "get") == 1 && grants(o, "configmaps", "get") == 1);
	ok(grants(o, "secrets", "list") == 0 && grants(o, "secrets", "watch") == 0 &&
	    grants(o, "secrets", "update") == 0 && grants(o, "secrets", "delete") == 0);
	ok(!wildcard(plain));
	cJSON_Delete(plain);
	o = find(objs, "ClusterRole", KB_MANAGER_NAME);
	ok(grants(o, "signers", "sign") == 2 && grants(o, "signers", "approve") == 2);
	ok(grants(o, "certificatesigningrequests/approval", "update") == 1 &&
	    grants(o, "certificatesigningrequests/status", "update") == 1);
	ok(grants(o, "certificatesigningrequests", "watch") == 1 &&
	    grants(o, "certificatesigningrequests", "update") == 0);
	ok(names_ca(o, "signers", "sign") == 0);	/* a signer, not the ConfigMap */
	/* sidecar enrollment: TokenReviews, create only, in their own group */
	ok(grants(o, "tokenreviews", "create") == 1 && grants(o, "tokenreviews", "get") == 0 &&
	    strcmp(str_at(rule_for(o, "tokenreviews"), "apiGroups.0"),
	    "authentication.k8s.io") == 0);
	o = find(objs, "ClusterRole", KB_DEVELOPER_NAME);
	ok(grants(o, "tokenreviews", "create") == 0);
	o = find(objs, "ClusterRole", KB_MANAGER_NAME);
	/* the webhook's caBundle: that one object, get and update only */
	named_verbs(o, "mutatingwebhookconfigurations", KB_WEBHOOK_NAME, buf, sizeof(buf));
	ok(strcmp(buf, "get,update") == 0 &&
	    grants(o, "mutatingwebhookconfigurations", "update") == 2 &&
	    grants(o, "mutatingwebhookconfigurations", "list") == 0 &&
	    grants(o, "validatingwebhookconfigurations", "update") == 0);
	ok(has_str(at(rule_for(o, "signers"), "resourceNames"), KB_SIGNER_NAME) &&
	    strcmp(str_at(rule_for(o, "signers"), "apiGroups.0"), "certificates.k8s.io") == 0);
	o = find(objs, "ClusterRole", KB_DEVELOPER_NAME);
	ok(grants(o, "certificatesigningrequests", "create") == 1 &&
	    grants(o, "certificatesigningrequests", "get") == 1);
	ok(grants(o, "certificatesigningrequests", "list") == 0 &&
	    grants(o, "certificatesigningrequests", "watch") == 0 &&
	    grants(o, "certificatesigningrequests/approval", "update") == 0 &&
	    grants(o, "signers", "approve") == 0 && grants(o, "configmaps", "get") == 0);
	ok(grants(o, "pods/portforward", "create") == 0 && grants(o, "secrets", "get") == 0);
	/* intercept patches the pod template, evicts a bare ReplicaSet's
	 * pods; nothing deletes or replaces */
	ok(grants(o, "deployments", "patch") == 1 && grants(o, "statefulsets", "patch") == 1 &&
	    grants(o, "replicasets", "patch") == 1 && grants(o, "deployments", "list") == 1);
	ok(grants(o, "deployments", "delete") == 0 && grants(o, "deployments", "update") == 0 &&
	    grants(o, "deployments", "create") == 0 && grants(o, "pods", "delete") == 0);
	ok(grants(o, "pods/eviction", "create") == 1 && grants(o, "pods/eviction", "get") == 0 &&
	    grants(o, "pods", "patch") == 0);
	o = find(objs, "Role", KB_DEVELOPER_NAME);
	ok(grants(o, "pods/portforward", "create") == 1);
	ok(grants(o, "configmaps", "get") == 2 && names_ca(o, "configmaps", "get") &&
	    grants(o, "configmaps", "list") == 0 && grants(o, "secrets", "get") == 0);
	o = find(objs, "ClusterRoleBinding", KB_MANAGER_NAME);
	ok(strcmp(str_at(o, "subjects.0.namespace"), "kbtest") == 0 &&
	    strcmp(str_at(o, "subjects.0.kind"), "ServiceAccount") == 0);

	/* YAML: strings that would read as another type are quoted. */
	y = yaml_of("[{\"a\":\"8443\",\"b\":8443,\"c\":\"true\",\"d\":false,\"e\":\"no\","
	    "\"f\":\"\",\"g\":\"x: y\",\"h\":[\"-v\",\"ok\"],\"i\":null,\"j\":0.5},{\"k\":\"~\"}]");
	ok(strcmp(y, "---\na: '8443'\nb: 8443\nc: 'true'\nd: false\ne: 'no'\nf: ''\n"
	    "g: 'x: y'\nh:\n- '-v'\n- ok\ni: null\nj: 0.5\n---\nk: '~'\n") == 0);
	if (strncmp(y, "---\na:", 6) != 0 || strstr(y, "k: '~'") == NULL)
		printf("# %s", y);
	free(y);
	y = yaml_of("[]");
	ok(strcmp(y, "") == 0);
	free(y);

	{
		static const char *const tricky[] = { "", " ", "8443", "0x1f", "0o17", "1_000", "1e3",
		    ".5", ".inf", "-.Inf", ".NaN", "2001-12-14", "Yes", "OFF", "Null", "NULL", "~",
		    "<<", "=", "- x", "x: y", "x #y", "#x", "a\nb", "a\tb", " lead", "trail ",
		    "'", "\"", "*alias", "&anchor", "!tag", "%dir", "@x", "`x", "{a}", "[a]",
		    "a,b", "?", "|", ">", "é ü 日本", "\xe2\x80\xa8", "--in-cluster",
		    "$(KB_POD_IP):8443", "app.kubernetes.io/name", NULL };
		const char *const *t;
		int all_ok = 1;

		for (t = tricky; *t; t++)
			all_ok &= round_trip(*t);
		ok(all_ok);
	}

	cJSON_Delete(objs);
	return ok_done();
}
