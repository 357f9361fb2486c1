/* agent/webhook.c: AdmissionReview in, answer out. A pod with the inject
 * annotation and a named port gets the sidecar (the port's name moves to
 * it, the app's port and its probes take the new name); a numeric port, an
 * unknown port name, a pod injected already, a pod without the annotation,
 * missing fields and garbage give no patch (and never a crash). */
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

	resp = pod_review("{\"metadata\":{\"name\":\"p\",\"annotations\":{"
	    "\"kbridge.dev/inject\":\"true\",\"kbridge.dev/port\":\"8080\"}},"
	    "\"spec\":{\"containers\":[{\"name\":\"a\",\"ports\":[{\"containerPort\":8080}]}]}}",
	    &patch);
	ok(resp && cJSON_IsTrue(cJSON_GetObjectItem(resp, "allowed")) && !patch);
	ok(strstr(warning(resp), "targetPort 8080 is numeric; name the port in the Service and "
	    "the container (e.g. http)") != NULL);
	cJSON_Delete(resp);

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
	test_unchanged();
	test_result();
	test_garbage();
	return ok_done();
}
