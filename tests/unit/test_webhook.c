/* agent/webhook.c: AdmissionReview in, answer out. A pod with the inject
 * annotation and a named port gets the sidecar (the port's name moves to
 * it, the app's port and its probes take the new name); a numeric port N
 * gets the sidecar passing to N, with the init container kbridge-redirect
 * and nothing renamed; a bad number, an unknown port name, a pod injected
 * already, a pod without the annotation, missing fields and garbage give no
 * patch (and never a crash). */
#include "../../agent/webhook.c"

#include "ok.h"

static const struct webhook_cfg cfg = { .image = "reg.example/kbridge-agent:1",
	.manager = "kbridge-manager.kbridge.svc:8443", .enroll = "kbridge-manager.kbridge.svc:443",
	.ca = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n" };

#define POD_HEAD \
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"," \
	"\"request\":{\"uid\":\"u-1\",\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"}," \
	"\"operation\":\"CREATE\",\"namespace\":\"default\",\"object\":"

/* The answer's response; *patch the decoded JSONPatch (or NULL). */
static cJSON *
review(const char *json, cJSON **patch)
{
	char err[200], *out = webhook_review(&cfg, json, strlen(json), NULL, err, sizeof(err));
	cJSON *ans, *resp;
	const char *p;
	char *dec;
	size_t n;

	*patch = NULL;
	if (!out)
		return NULL;
	ans = cJSON_Parse(out);
	free(out);
	resp = cJSON_DetachItemFromObject(ans, "response");
	cJSON_Delete(ans);
	if ((p = cJSON_GetStringValue(cJSON_GetObjectItem(resp, "patch"))) != NULL &&
	    (dec = kb_b64_decode(p, &n)) != NULL) {
		*patch = cJSON_ParseWithLength(dec, n);
		free(dec);
	}
	return resp;
}

static cJSON *
pod_review(const char *pod, cJSON **patch)
{
	char buf[8192];

	snprintf(buf, sizeof(buf), POD_HEAD "%s}}", pod);
	return review(buf, patch);
}

static const cJSON *
op_at(const cJSON *patch, const char *path)
{
	const cJSON *o;

	cJSON_ArrayForEach(o, patch)
		if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(o, "path")), path) == 0)
			return cJSON_GetObjectItem(o, "value");
	return NULL;
}

static const char *
warning(const cJSON *resp)
{
	const char *w = cJSON_GetStringValue(cJSON_GetArrayItem(
	    cJSON_GetObjectItem(resp, "warnings"), 0));

	return w ? w : "";
}

static int
has_arg(const cJSON *c, const char *arg)
{
	const cJSON *a;

	cJSON_ArrayForEach(a, cJSON_GetObjectItem(c, "args"))
		if (strcmp(a->valuestring, arg) == 0)
			return 1;
	return 0;
}

/* The sidecar enrolls (agent/enroll.h): --enroll, no --profile, the CA in
 * its env, and the pod's projected token for audience kbridge mounted. */
static void
test_enroll_parts(const cJSON *patch, const cJSON *sc)
{
	const cJSON *vols = op_at(patch, "/spec/volumes"), *e, *sat, *m;
	const char *ca = NULL;

	ok(has_arg(sc, "--enroll=kbridge-manager.kbridge.svc:443"));
	ok(!has_arg(sc, "--profile=/var/run/secrets/kbridge.dev/sidecar/profile.json"));
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(sc, "env"))
		if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "name")), "KBRIDGE_CA") == 0)
			ca = cJSON_GetStringValue(cJSON_GetObjectItem(e, "value"));
	ok(ca && strcmp(ca, cfg.ca) == 0);
	ok(cJSON_GetArraySize(vols) == 1);
	ok(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(vols, 0), "name")),
	    "kbridge-token") == 0);
	sat = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(
	    cJSON_GetArrayItem(vols, 0), "projected"), "sources"), 0), "serviceAccountToken");
	ok(sat && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(sat, "audience")),
	    "kbridge") == 0 && cJSON_GetObjectItem(sat, "expirationSeconds")->valueint == 3600 &&
	    strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(sat, "path")), "token") == 0);
	m = cJSON_GetArrayItem(cJSON_GetObjectItem(sc, "volumeMounts"), 0);
	ok(m && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(m, "mountPath")),
	    "/var/run/secrets/kbridge.dev/token") == 0 &&
	    cJSON_IsTrue(cJSON_GetObjectItem(m, "readOnly")));
}

/* A pod with volumes gets the token's appended; one that has a volume of
 * that name already is not injected. */
static void
test_volumes(void)
{
	cJSON *resp, *patch;
	const cJSON *v;

	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\"}},\"spec\":{\"volumes\":[{\"name\":\"data\"}],"
	    "\"containers\":[{\"name\":\"app\",\"ports\":[{\"name\":\"http\","
	    "\"containerPort\":80}]}]}}", &patch);
	v = op_at(patch, "/spec/volumes/-");
	ok(v && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(v, "name")), "kbridge-token") == 0);
	ok(op_at(patch, "/spec/volumes") == NULL);
	cJSON_Delete(resp);
	cJSON_Delete(patch);
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\"}},\"spec\":{\"volumes\":[{\"name\":"
	    "\"kbridge-token\"}],\"containers\":[{\"name\":\"app\",\"ports\":[{\"name\":"
	    "\"http\",\"containerPort\":80}]}]}}", &patch);
	ok(patch == NULL && strstr(warning(resp), "kbridge-token") != NULL);
	cJSON_Delete(resp);
	cJSON_Delete(patch);
}

#define OWNED \
	"\"labels\":{\"app\":\"web\",\"pod-template-hash\":\"5d8f7c9b6d\"}," \
	"\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\"," \
	"\"name\":\"web-5d8f7c9b6d\",\"uid\":\"x\",\"controller\":true}]"

static void
test_named(void)
{
	cJSON *resp, *patch;
	const cJSON *sc;

	resp = pod_review("{\"metadata\":{\"generateName\":\"web-5d8f7c9b6d-\","
	    "\"annotations\":{\"kbridge.dev/inject\":\"true\"}," OWNED "},"
	    "\"spec\":{\"containers\":[{\"name\":\"side\",\"image\":\"x\"},{\"name\":\"app\","
	    "\"image\":\"web\",\"ports\":[{\"name\":\"metrics\",\"containerPort\":9090},"
	    "{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"TCP\"}],"
	    "\"readinessProbe\":{\"httpGet\":{\"path\":\"/\",\"port\":\"http\"}},"
	    "\"livenessProbe\":{\"tcpSocket\":{\"port\":\"metrics\"}}}]}}", &patch);
	ok(resp && cJSON_IsTrue(cJSON_GetObjectItem(resp, "allowed")));
	ok(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(resp, "uid")), "u-1") == 0);
	ok(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(resp, "patchType")), "JSONPatch") == 0);
	ok(*warning(resp) == '\0');
	ok(patch != NULL && cJSON_GetArraySize(patch) == 5);	/* with the token volume */
	ok(strcmp(cJSON_GetStringValue(op_at(patch, "/spec/containers/1/ports/1/name")),
	    "kb-app-http") == 0);
	ok(strcmp(cJSON_GetStringValue(op_at(patch,
	    "/spec/containers/1/readinessProbe/httpGet/port")), "kb-app-http") == 0);
	ok(op_at(patch, "/spec/containers/1/livenessProbe/tcpSocket/port") == NULL);
	ok(strcmp(cJSON_GetStringValue(op_at(patch, "/metadata/annotations/kbridge.dev~1injected")),
	    "web.default") == 0);
	sc = op_at(patch, "/spec/containers/-");
	ok(sc && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(sc, "name")),
	    "kbridge-sidecar") == 0);
	ok(sc && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(sc, "image")),
	    "reg.example/kbridge-agent:1") == 0);
	ok(has_arg(sc, "--workload=web") && has_arg(sc, "--namespace=default"));
	ok(has_arg(sc, "--app=127.0.0.1:8080") && has_arg(sc, "--listen=0.0.0.0:9901"));
	ok(has_arg(sc, "--manager=kbridge-manager.kbridge.svc:8443"));
	ok(has_arg(sc, "--protocol=http"));
	test_enroll_parts(patch, sc);
	ok(sc && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(
	    cJSON_GetObjectItem(sc, "ports"), 0), "name")), "http") == 0);
	ok(sc && cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(sc, "securityContext"),
	    "readOnlyRootFilesystem")));
	cJSON_Delete(resp);
	cJSON_Delete(patch);
}

static void
test_options(void)
{
	cJSON *resp, *patch;
	const cJSON *sc;

	/* the workload and port annotations; 9901 taken: 9902; a long port name */
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\",\"kbridge.dev/workload\":\"shop\","
	    "\"kbridge.dev/port\":\"web-frontend-01\",\"kbridge.dev/protocol\":\"tcp\"}},"
	    "\"spec\":{\"containers\":[{\"name\":\"app\",\"ports\":[{\"name\":\"x\","
	    "\"containerPort\":9901},{\"name\":\"web-frontend-01\",\"containerPort\":80}]}]}}",
	    &patch);
	sc = op_at(patch, "/spec/containers/-");
	ok(sc && has_arg(sc, "--workload=shop") && has_arg(sc, "--listen=0.0.0.0:9902") &&
	    has_arg(sc, "--app=127.0.0.1:80") && has_arg(sc, "--protocol=tcp"));
	ok(strcmp(cJSON_GetStringValue(op_at(patch, "/spec/containers/0/ports/1/name")),
	    "kb-web-frontend") == 0);
	cJSON_Delete(resp);
	cJSON_Delete(patch);

	/* no owner, no name (generateName only): a warning, no patch */
	resp = pod_review("{\"metadata\":{\"annotations\":{\"kbridge.dev/inject\":\"true\"}},"
	    "\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":[{\"name\":\"http\","
	    "\"containerPort\":80}]}]}}", &patch);
	ok(resp && !patch && strstr(warning(resp), "kbridge.dev/workload"));
	cJSON_Delete(resp);
}

static void
test_refused(void)
{
	cJSON *resp, *patch;

	/* no port of that name */
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\"}},\"spec\":{\"containers\":[{\"name\":\"a\","
	    "\"ports\":[{\"name\":\"web\",\"containerPort\":80}]}]}}", &patch);
	ok(resp && !patch && strstr(warning(resp), "no container has a TCP port named http"));
	cJSON_Delete(resp);

	/* the new name is taken */
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\"}},\"spec\":{\"containers\":[{\"name\":\"a\","
	    "\"ports\":[{\"name\":\"http\",\"containerPort\":80},{\"name\":\"kb-app-http\","
	    "\"containerPort\":81}]}]}}", &patch);
	ok(resp && !patch && strstr(warning(resp), "kb-app-http"));
	cJSON_Delete(resp);

	/* bad annotation values */
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\",\"kbridge.dev/port\":\"HTTP;x\"}},"
	    "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}", &patch);
	ok(resp && !patch && strstr(warning(resp), "not a port name"));
	cJSON_Delete(resp);
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\",\"kbridge.dev/workload\":\"a b\"}},"
	    "\"spec\":{\"containers\":[{\"name\":\"a\"}]}}", &patch);
	ok(resp && !patch && strstr(warning(resp), "not a DNS label"));
	cJSON_Delete(resp);
}

/* A numeric targetPort: the exact patch. The token volume, the init
 * container redirecting 8080 to the sidecar's 9901 (root, NET_ADMIN
 * only), the sidecar passing to 127.0.0.1:8080 with an unnamed port, the
 * annotation; no port or probe renamed. */
static const char numeric_patch[] = "["
    "{\"op\":\"add\",\"path\":\"/spec/volumes\",\"value\":[{\"name\":\"kbridge-token\","
    "\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"audience\":\"kbridge\","
    "\"expirationSeconds\":3600,\"path\":\"token\"}}]}}]},"
    "{\"op\":\"add\",\"path\":\"/spec/initContainers/-\",\"value\":{\"name\":"
    "\"kbridge-redirect\",\"image\":\"reg.example/kbridge-agent:1\",\"imagePullPolicy\":"
    "\"IfNotPresent\",\"command\":[\"kbridge-agent\",\"redirect\"],\"args\":["
    "\"--port=8080\",\"--to=9901\"],\"resources\":{\"requests\":{\"cpu\":\"10m\","
    "\"memory\":\"16Mi\"},\"limits\":{\"memory\":\"64Mi\"}},\"securityContext\":{"
    "\"allowPrivilegeEscalation\":false,\"readOnlyRootFilesystem\":true,\"runAsNonRoot\":"
    "false,\"runAsUser\":0,\"capabilities\":{\"drop\":[\"ALL\"],\"add\":[\"NET_ADMIN\"]}}}},"
    "{\"op\":\"add\",\"path\":\"/spec/containers/-\",\"value\":{\"name\":\"kbridge-sidecar\","
    "\"image\":\"reg.example/kbridge-agent:1\",\"imagePullPolicy\":\"IfNotPresent\","
    "\"command\":[\"kbridge-agent\",\"sidecar\"],\"args\":[\"--workload=p\","
    "\"--namespace=default\",\"--listen=0.0.0.0:9901\",\"--app=127.0.0.1:8080\","
    "\"--protocol=http\",\"--manager=kbridge-manager.kbridge.svc:8443\","
    "\"--enroll=kbridge-manager.kbridge.svc:443\"],\"env\":[{\"name\":\"KBRIDGE_POD_NAME\","
    "\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.name\"}}},{\"name\":"
    "\"KBRIDGE_APP_CONTAINER\",\"value\":\"app\"},{\"name\":\"KBRIDGE_CA\",\"value\":"
    "\"-----BEGIN CERTIFICATE-----\\nCA\\n-----END CERTIFICATE-----\\n\"}],"
    "\"volumeMounts\":[{\"name\":\"kbridge-token\",\"mountPath\":"
    "\"/var/run/secrets/kbridge.dev/token\",\"readOnly\":true}],\"ports\":[{"
    "\"containerPort\":9901,\"protocol\":\"TCP\"}],\"resources\":{\"requests\":{\"cpu\":"
    "\"10m\",\"memory\":\"32Mi\"},\"limits\":{\"memory\":\"256Mi\"}},\"securityContext\":{"
    "\"allowPrivilegeEscalation\":false,\"readOnlyRootFilesystem\":true,\"runAsNonRoot\":"
    "true,\"runAsUser\":65532,\"runAsGroup\":65532,\"capabilities\":{\"drop\":[\"ALL\"]}}}},"
    "{\"op\":\"add\",\"path\":\"/metadata/annotations/kbridge.dev~1injected\",\"value\":"
    "\"p.default\"}]";

/* A pod with port annotation N (a string), these containers and init
 * containers (JSON arrays or empty) and more spec fields; the patch. */
static cJSON *
numeric_review(const char *n, const char *containers, const char *init, const char *more,
    cJSON **patch)
{
	char *buf;
	cJSON *resp;

	if (asprintf(&buf, "{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\",\"kbridge.dev/port\":\"%s\"}},\"spec\":{%s%s%s%s"
	    "\"containers\":%s}}", n, init ? "\"initContainers\":" : "", init ? init : "",
	    init ? "," : "", more ? more : "", containers) < 0)
		abort();
	resp = pod_review(buf, patch);
	free(buf);
	return resp;
}

static const cJSON *
redirect_at(const cJSON *patch)
{
	const cJSON *c = op_at(patch, "/spec/initContainers/-");

	return c ? c : cJSON_GetArrayItem(op_at(patch, "/spec/initContainers"), 0);
}

static void
test_numeric(void)
{
	cJSON *resp, *patch, *want = cJSON_Parse(numeric_patch);
	const cJSON *sc, *rc, *e;
	int app_env;

	ok(want != NULL);
	resp = numeric_review("8080", "[{\"name\":\"log\",\"image\":\"x\"},{\"name\":\"app\","
	    "\"image\":\"web\",\"ports\":[{\"containerPort\":8080}],\"readinessProbe\":{"
	    "\"httpGet\":{\"path\":\"/\",\"port\":8080}}}]", "[{\"name\":\"setup\"}]", NULL,
	    &patch);
	ok(resp && cJSON_IsTrue(cJSON_GetObjectItem(resp, "allowed")) && !*warning(resp));
	ok(patch && cJSON_Compare(patch, want, 1));
	if (patch && !cJSON_Compare(patch, want, 1)) {
		char *t = cJSON_Print(patch);

		fprintf(stderr, "got %s\n", t);
		free(t);
	}
	cJSON_Delete(resp);
	cJSON_Delete(patch);
	cJSON_Delete(want);

	/* no init containers yet: the list is made; the only container is the app */
	resp = numeric_review("80", "[{\"name\":\"web\"}]", NULL, NULL, &patch);
	rc = redirect_at(patch);
	ok(op_at(patch, "/spec/initContainers") != NULL && rc &&
	    strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(rc, "name")), "kbridge-redirect") == 0);
	ok(has_arg(rc, "--port=80") && has_arg(rc, "--to=9901"));
	sc = op_at(patch, "/spec/containers/-");
	ok(has_arg(sc, "--app=127.0.0.1:80") && has_arg(sc, "--listen=0.0.0.0:9901"));
	app_env = 0;
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(sc, "env"))
		if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "name")),
		    "KBRIDGE_APP_CONTAINER") == 0)
			app_env = strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "value")),
			    "web") == 0;
	ok(app_env);
	ok(cJSON_GetArraySize(patch) == 4);
	cJSON_Delete(resp);
	cJSON_Delete(patch);

	/* two containers, neither declaring N: no app container named */
	resp = numeric_review("80", "[{\"name\":\"a\"},{\"name\":\"b\"}]", NULL, NULL, &patch);
	sc = op_at(patch, "/spec/containers/-");
	app_env = 0;
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(sc, "env"))
		app_env |= strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "name")),
		    "KBRIDGE_APP_CONTAINER") == 0;
	ok(sc && !app_env);
	cJSON_Delete(resp);
	cJSON_Delete(patch);

	/* N is the sidecar's port (declared or not): the sidecar takes the next */
	resp = numeric_review("9901", "[{\"name\":\"app\",\"ports\":[{\"containerPort\":9901}]}]",
	    NULL, NULL, &patch);
	sc = op_at(patch, "/spec/containers/-");
	rc = redirect_at(patch);
	ok(has_arg(sc, "--listen=0.0.0.0:9902") && has_arg(sc, "--app=127.0.0.1:9901"));
	ok(has_arg(rc, "--port=9901") && has_arg(rc, "--to=9902"));
	ok(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(sc, "ports"), 0),
	    "containerPort")->valueint == 9902);
	cJSON_Delete(resp);
	cJSON_Delete(patch);
	resp = numeric_review("9901", "[{\"name\":\"app\"},{\"name\":\"m\",\"ports\":[{"
	    "\"containerPort\":9902}]}]", NULL, NULL, &patch);
	ok(has_arg(redirect_at(patch), "--to=9903") &&
	    has_arg(op_at(patch, "/spec/containers/-"), "--listen=0.0.0.0:9903"));
	cJSON_Delete(resp);
	cJSON_Delete(patch);
}

static void
test_numeric_refused(void)
{
	static const char *const bad[] = { "0", "65536", "08080", "00", "99999999999999999999",
		"-1", "+80", " 80", "80 ", "8080.0", "8080/TCP", NULL };
	const char *const *b;
	cJSON *resp, *patch;
	int refused = 0, n = 0;

	for (b = bad; *b; b++, n++) {
		resp = numeric_review(*b, "[{\"name\":\"app\",\"ports\":[{\"containerPort\":80}]}]",
		    NULL, NULL, &patch);
		if (resp && cJSON_IsTrue(cJSON_GetObjectItem(resp, "allowed")) && !patch &&
		    strstr(warning(resp), "is not a port name or number (1-65535): not injected"))
			refused++;
		else
			fprintf(stderr, "'%s' not refused: %s\n", *b, resp ? warning(resp) : "?");
		cJSON_Delete(resp);
		cJSON_Delete(patch);
	}
	ok(refused == n);
	/* the largest and the smallest are ports */
	resp = numeric_review("65535", "[{\"name\":\"app\"}]", NULL, NULL, &patch);
	ok(patch && has_arg(redirect_at(patch), "--port=65535"));
	cJSON_Delete(resp);
	cJSON_Delete(patch);
	resp = numeric_review("1", "[{\"name\":\"app\"}]", NULL, NULL, &patch);
	ok(patch && has_arg(redirect_at(patch), "--port=1"));
	cJSON_Delete(resp);
	cJSON_Delete(patch);

	/* the host's network: no redirect in the node's namespace */
	resp = numeric_review("8080", "[{\"name\":\"app\"}]", NULL, "\"hostNetwork\":true,",
	    &patch);
	ok(resp && !patch && strstr(warning(resp), "uses the host's network"));
	cJSON_Delete(resp);

	/* the init container there already (or a container of its name): left alone */
	resp = numeric_review("8080", "[{\"name\":\"app\"}]", "[{\"name\":\"kbridge-redirect\"}]",
	    NULL, &patch);
	ok(resp && !patch && !*warning(resp));
	cJSON_Delete(resp);
	resp = numeric_review("8080", "[{\"name\":\"app\"},{\"name\":\"kbridge-redirect\"}]",
	    NULL, NULL, &patch);
	ok(resp && !patch && !*warning(resp));
	cJSON_Delete(resp);
	resp = numeric_review("8080", "[{\"name\":\"app\"}]", "[{\"name\":\"kbridge-sidecar\"}]",
	    NULL, &patch);
	ok(resp && !patch && !*warning(resp));
	cJSON_Delete(resp);
}

static void
test_unchanged(void)
{
	cJSON *resp, *patch;

	/* injected already: no second sidecar, no warning */
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\"}},\"spec\":{\"containers\":[{\"name\":\"a\","
	    "\"ports\":[{\"name\":\"kb-app-http\",\"containerPort\":80}]},"
	    "{\"name\":\"kbridge-sidecar\",\"ports\":[{\"name\":\"http\","
	    "\"containerPort\":9901}]}]}}", &patch);
	ok(resp && cJSON_IsTrue(cJSON_GetObjectItem(resp, "allowed")) && !patch &&
	    !*warning(resp));
	cJSON_Delete(resp);

	/* no annotation, "false", a non-string */
	resp = pod_review("{\"metadata\":{\"name\":\"p\"},\"spec\":{\"containers\":[{\"name\":"
	    "\"a\",\"ports\":[{\"name\":\"http\",\"containerPort\":80}]}]}}", &patch);
	ok(resp && !patch && !*warning(resp) && !cJSON_GetObjectItem(resp, "patchType"));
	cJSON_Delete(resp);
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{\"kbridge.dev/inject\":"
	    "\"false\"}},\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":[{\"name\":\"http\","
	    "\"containerPort\":80}]}]}}", &patch);
	ok(resp && !patch);
	cJSON_Delete(resp);
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{\"kbridge.dev/inject\":"
	    "true}},\"spec\":{\"containers\":[]}}", &patch);
	ok(resp && !patch);
	cJSON_Delete(resp);

	/* missing and wrong-typed fields */
	resp = pod_review("{\"metadata\":{\"annotations\":{\"kbridge.dev/inject\":\"true\"}}}",
	    &patch);
	ok(resp && !patch && strstr(warning(resp), "no containers"));
	cJSON_Delete(resp);
	resp = pod_review("{\"metadata\":7,\"spec\":{\"containers\":{\"a\":1}}}", &patch);
	ok(resp && !patch);
	cJSON_Delete(resp);
	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{\"kbridge.dev/inject\":"
	    "\"true\"}},\"spec\":{\"containers\":[7,{\"name\":3,\"ports\":[null,{\"name\":"
	    "\"http\",\"containerPort\":\"80\"}]}]}}", &patch);
	ok(resp && !patch);
	cJSON_Delete(resp);
	resp = pod_review("null", &patch);
	ok(resp && !patch);
	cJSON_Delete(resp);

	/* not a Pod CREATE: allowed unchanged */
	resp = review("{\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"operation\":"
	    "\"UPDATE\",\"kind\":{\"kind\":\"Pod\"},\"namespace\":\"default\",\"object\":{"
	    "\"metadata\":{\"name\":\"p\",\"annotations\":{\"kbridge.dev/inject\":\"true\"}},"
	    "\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":[{\"name\":\"http\","
	    "\"containerPort\":80}]}]}}}}", &patch);
	ok(resp && !patch);
	cJSON_Delete(resp);
}

static void
test_result(void)
{
	const char *j = POD_HEAD "{\"metadata\":{\"generateName\":\"web-5d8f7c9b6d-\","
	    "\"annotations\":{\"kbridge.dev/inject\":\"true\"}," OWNED "},\"spec\":{"
	    "\"containers\":[{\"name\":\"app\",\"ports\":[{\"name\":\"http\","
	    "\"containerPort\":80}]}]}}}}";
	struct webhook_result res;
	char err[100], *out = webhook_review(&cfg, j, strlen(j), &res, err, sizeof(err));

	ok(out && res.pod_create && res.patched && !res.warn[0] &&
	    strcmp(res.pod, "default/web-5d8f7c9b6d-") == 0);
	free(out);
}

static void
test_garbage(void)
{
	static const char *const bad[] = { "", "{", "[]", "null", "{\"kind\":\"AdmissionReview\"}",
		"{\"kind\":\"AdmissionReview\",\"request\":{}}",
		"{\"kind\":\"AdmissionReview\",\"request\":{\"uid\":5}}",
		"{\"kind\":\"Other\",\"request\":{\"uid\":\"u\"}}", "\xff\xfe\x00", NULL };
	const char *const *b;
	cJSON *patch;
	int refused = 0, n = 0;

	for (b = bad; *b; b++, n++)
		if (review(*b, &patch) == NULL)
			refused++;
	ok(refused == n);
}

int
main(void)
{
	test_named();
	test_options();
	test_volumes();
	test_refused();
	test_numeric();
	test_numeric_refused();
	test_unchanged();
	test_result();
	test_garbage();
	return ok_done();
}
