/* agent/podenv.c: a container's environment from its Pod object, with the
 * kubelet's makeEnvironmentVariables (v1.35) as the oracle: each expected
 * value below is what the Go code gives for the same pod (read from
 * pkg/kubelet/kubelet_pods.go, third_party/forked/golang/expansion,
 * pkg/kubelet/envvars and pkg/api/v1/resource). */
#include "../../agent/podenv.c"

#include "ok.h"

/* "name" -> object, for the lookups. */
static cJSON *configmaps, *secrets;

static enum podenv_found
find(void *arg, int secret, const char *name, const cJSON **obj, char *err, size_t errlen)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(secret ? secrets : configmaps, name);

	(void)arg;
	if (!strcmp(name, "forbidden")) {
		snprintf(err, errlen, "secrets \"forbidden\" is forbidden");
		return PODENV_ERROR;
	}
	*obj = o;
	return o ? PODENV_FOUND : PODENV_NOT_FOUND;
}

static cJSON *
resolve(const char *pod_json, const char *services, const char *node, char *err, size_t len)
{
	cJSON *pod = cJSON_Parse(pod_json), *svc = services ? cJSON_Parse(services) : NULL;
	cJSON *nd = node ? cJSON_Parse(node) : NULL, *env;
	struct podenv_src src = { .lookup = find, .services = svc, .node = nd };

	if (!pod) {
		snprintf(err, len, "bad test JSON");
		return NULL;
	}
	err[0] = '\0';
	env = podenv_resolve(pod, "app", &src, err, len);
	cJSON_Delete(pod);
	cJSON_Delete(svc);
	cJSON_Delete(nd);
	return env;
}

static int
is(const cJSON *env, const char *name, const char *want)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, name));

	if (v && !strcmp(v, want))
		return 1;
	printf("# %s: got '%s', want '%s'\n", name, v ? v : "(unset)", want);
	return 0;
}

static int
absent(const cJSON *env, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(env, name) == NULL;
}

#define POD(containers) "{\"metadata\":{\"name\":\"web-7d4b9-x2x\",\"namespace\":\"shop\"," \
	"\"uid\":\"0b5e-11\",\"labels\":{\"app\":\"web\",\"tier\":\"front\"}," \
	"\"annotations\":{\"team\":\"a\"}},\"spec\":{\"nodeName\":\"node-1\"," \
	"\"serviceAccountName\":\"websa\",\"enableServiceLinks\":true,\"containers\":[" \
	containers "]},\"status\":{\"hostIP\":\"172.18.0.2\",\"hostIPs\":[{\"ip\":" \
	"\"172.18.0.2\"},{\"ip\":\"fd00::2\"}],\"podIP\":\"10.244.1.7\",\"podIPs\":" \
	"[{\"ip\":\"10.244.1.7\"},{\"ip\":\"fd00:10::7\"}]}}"

static void
test_values_and_expansion(void)
{
	char err[300];
	cJSON *env = resolve(POD("{\"name\":\"app\",\"env\":["
	    "{\"name\":\"A\",\"value\":\"a\"},"
	    "{\"name\":\"B\",\"value\":\"$(A)-$(C)-$$(A)-$$-$x-$(A\"},"
	    "{\"name\":\"C\",\"value\":\"c\"},"
	    "{\"name\":\"D\",\"value\":\"$(C)$(C)$\"},"
	    "{\"name\":\"E\",\"value\":\"$()$(E)\"},"
	    "{\"name\":\"EMPTY\",\"value\":\"\"},"
	    "{\"name\":\"NOVALUE\"},"
	    "{\"name\":\"A\",\"value\":\"again $(A)\"},"
	    "{\"name\":\"WEIRD.name-1\",\"value\":\"kept\"}]},"
	    "{\"name\":\"other\",\"env\":[{\"name\":\"X\",\"value\":\"no\"}]}"), NULL, NULL, err,
	    sizeof(err));

	ok(env != NULL);
	/* $(C) is not defined yet where B is: it stays as written. */
	ok(is(env, "B", "a-$(C)-$(A)-$-$x-$(A"));
	ok(is(env, "D", "cc$"));
	ok(is(env, "E", "$()$(E)"));
	ok(is(env, "EMPTY", "") && is(env, "NOVALUE", ""));
	/* The later A replaces the first and sees it. */
	ok(is(env, "A", "again a"));
	ok(is(env, "WEIRD.name-1", "kept"));
	ok(absent(env, "X"));
	ok(cJSON_GetArraySize(env) == 8);
	cJSON_Delete(env);
}

static void
test_sources(void)
{
	char err[300];
	cJSON *env;

	configmaps = cJSON_Parse("{\"cfg\":{\"data\":{\"LOG\":\"debug\",\"mode\":\"fast\","
	    "\"1bad\":\"x\",\"a.b\":\"y\",\"SHARED\":\"from-cfg\"},\"binaryData\":{\"BIN\":\"AAE=\"}},"
	    "\"cfg2\":{\"data\":{\"SHARED\":\"from-cfg2\",\"ONLY2\":\"2\"}}}");
	/* db: user=admin, pass=s3cr=t (base64) */
	secrets = cJSON_Parse("{\"db\":{\"data\":{\"user\":\"YWRtaW4=\",\"pass\":\"czNjcj10\"}},"
	    "\"nul\":{\"data\":{\"k\":\"YQBi\"}}}");
	env = resolve(POD("{\"name\":\"app\","
	    "\"envFrom\":[{\"configMapRef\":{\"name\":\"cfg\"}},"
	    "{\"prefix\":\"P_\",\"configMapRef\":{\"name\":\"cfg2\"}},"
	    "{\"configMapRef\":{\"name\":\"cfg2\"}},"
	    "{\"prefix\":\"DB_\",\"secretRef\":{\"name\":\"db\"}},"
	    "{\"configMapRef\":{\"name\":\"gone\",\"optional\":true}},"
	    "{\"secretRef\":{\"name\":\"gone\",\"optional\":true}}],"
	    "\"env\":[{\"name\":\"LOG\",\"value\":\"info ($(LOG))\"},"
	    "{\"name\":\"MODE\",\"valueFrom\":{\"configMapKeyRef\":{\"name\":\"cfg\",\"key\":\"mode\"}}},"
	    "{\"name\":\"PASS\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"db\",\"key\":\"pass\"}}},"
	    "{\"name\":\"URL\",\"value\":\"db://$(DB_user):$(PASS)@$(MY_POD)\"},"
	    "{\"name\":\"MY_POD\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.name\"}}},"
	    "{\"name\":\"OPT1\",\"valueFrom\":{\"configMapKeyRef\":{\"name\":\"cfg\",\"key\":\"nokey\","
	    "\"optional\":true}}},"
	    "{\"name\":\"OPT2\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"gone\",\"key\":\"k\","
	    "\"optional\":true}}},"
	    "{\"name\":\"SHARED\",\"valueFrom\":{\"configMapKeyRef\":{\"name\":\"cfg\",\"key\":\"nokey\","
	    "\"optional\":true}}}]}"), NULL, NULL, err, sizeof(err));
	ok(env != NULL);
	if (!env)
		printf("# %s\n", err);
	/* envFrom: every key (the kubelet skips none since v1.30's relaxed
	 * names), a prefix, and a later source replacing an earlier one. */
	ok(is(env, "1bad", "x") && is(env, "a.b", "y") && is(env, "mode", "fast"));
	ok(is(env, "P_SHARED", "from-cfg2") && is(env, "P_ONLY2", "2"));
	ok(is(env, "SHARED", "from-cfg2") && is(env, "ONLY2", "2"));
	ok(absent(env, "BIN"));
	ok(is(env, "DB_user", "admin") && is(env, "DB_pass", "s3cr=t"));
	/* env replaces envFrom and sees it. */
	ok(is(env, "LOG", "info (debug)"));
	ok(is(env, "MODE", "fast") && is(env, "PASS", "s3cr=t"));
	ok(is(env, "URL", "db://admin:s3cr=t@$(MY_POD)"));
	ok(is(env, "MY_POD", "web-7d4b9-x2x"));
	/* Optional and missing: no variable, and an earlier one stays. */
	ok(absent(env, "OPT1") && absent(env, "OPT2"));
	ok(cJSON_GetArraySize(env) == 14);
	cJSON_Delete(env);

	/* What stops the kubelet from starting the container: one line. */
	env = resolve(POD("{\"name\":\"app\",\"env\":[{\"name\":\"M\",\"valueFrom\":"
	    "{\"configMapKeyRef\":{\"name\":\"cfg\",\"key\":\"nokey\"}}}]}"), NULL, NULL, err,
	    sizeof(err));
	ok(env == NULL && !strcmp(err, "couldn't find key nokey in ConfigMap shop/cfg"));
	env = resolve(POD("{\"name\":\"app\",\"env\":[{\"name\":\"M\",\"valueFrom\":"
	    "{\"secretKeyRef\":{\"name\":\"db\",\"key\":\"nokey\"}}}]}"), NULL, NULL, err,
	    sizeof(err));
	ok(env == NULL && !strcmp(err, "couldn't find key nokey in Secret shop/db"));
	env = resolve(POD("{\"name\":\"app\",\"envFrom\":[{\"configMapRef\":{\"name\":\"gone\"}}]}"),
	    NULL, NULL, err, sizeof(err));
	ok(env == NULL && !strcmp(err, "configmap \"gone\" not found (in namespace shop)"));
	env = resolve(POD("{\"name\":\"app\",\"env\":[{\"name\":\"M\",\"valueFrom\":"
	    "{\"secretKeyRef\":{\"name\":\"gone\",\"key\":\"k\"}}}]}"), NULL, NULL, err,
	    sizeof(err));
	ok(env == NULL && !strcmp(err, "secret \"gone\" not found (in namespace shop)"));
	/* optional covers a missing object or key, not a refusal. */
	env = resolve(POD("{\"name\":\"app\",\"envFrom\":[{\"secretRef\":{\"name\":\"forbidden\","
	    "\"optional\":true}}]}"), NULL, NULL, err, sizeof(err));
	ok(env == NULL && !strcmp(err, "secret shop/forbidden: secrets \"forbidden\" is forbidden"));
	env = resolve(POD("{\"name\":\"app\",\"env\":[{\"name\":\"M\",\"valueFrom\":"
	    "{\"secretKeyRef\":{\"name\":\"nul\",\"key\":\"k\"}}}]}"), NULL, NULL, err,
	    sizeof(err));
	ok(env == NULL && strstr(err, "holds a NUL byte"));
	env = resolve(POD("{\"name\":\"other\"}"), NULL, NULL, err, sizeof(err));
	ok(env == NULL && !strcmp(err, "pod shop/web-7d4b9-x2x has no container app"));
	cJSON_Delete(configmaps);
	cJSON_Delete(secrets);
	configmaps = secrets = NULL;
}

static void
test_fields(void)
{
	char err[300];
	cJSON *env;

	env = resolve(POD("{\"name\":\"app\",\"env\":["
	    "{\"name\":\"N\",\"valueFrom\":{\"fieldRef\":{\"apiVersion\":\"v1\",\"fieldPath\":\"metadata.name\"}}},"
	    "{\"name\":\"NS\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.namespace\"}}},"
	    "{\"name\":\"UID\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.uid\"}}},"
	    "{\"name\":\"APP\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.labels['app']\"}}},"
	    "{\"name\":\"NOLABEL\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.labels['zz']\"}}},"
	    "{\"name\":\"TEAM\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"metadata.annotations['team']\"}}},"
	    "{\"name\":\"NODE\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"spec.nodeName\"}}},"
	    "{\"name\":\"SA\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"spec.serviceAccountName\"}}},"
	    "{\"name\":\"HIP\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"status.hostIP\"}}},"
	    "{\"name\":\"HIPS\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"status.hostIPs\"}}},"
	    "{\"name\":\"PIP\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"status.podIP\"}}},"
	    "{\"name\":\"PIPS\",\"valueFrom\":{\"fieldRef\":{\"fieldPath\":\"status.podIPs\"}}},"
	    "{\"name\":\"ADDR\",\"value\":\"$(PIP):8080\"}]}"), NULL, NULL, err, sizeof(err));
	ok(env != NULL);
	ok(is(env, "N", "web-7d4b9-x2x") && is(env, "NS", "shop") && is(env, "UID", "0b5e-11"));
	ok(is(env, "APP", "web") && is(env, "NOLABEL", "") && is(env, "TEAM", "a"));
	ok(is(env, "NODE", "node-1") && is(env, "SA", "websa"));
	ok(is(env, "HIP", "172.18.0.2") && is(env, "HIPS", "172.18.0.2,fd00::2"));
	ok(is(env, "PIP", "10.244.1.7") && is(env, "PIPS", "10.244.1.7,fd00:10::7"));
	ok(is(env, "ADDR", "10.244.1.7:8080"));
	cJSON_Delete(env);
	env = resolve(POD("{\"name\":\"app\",\"env\":[{\"name\":\"P\",\"valueFrom\":{\"fieldRef\":"
	    "{\"fieldPath\":\"status.phase\"}}}]}"), NULL, NULL, err, sizeof(err));
	ok(env == NULL && strstr(err, "status.phase"));
	env = resolve(POD("{\"name\":\"app\",\"env\":[{\"name\":\"P\",\"valueFrom\":{\"fieldRef\":"
	    "{\"apiVersion\":\"v2\",\"fieldPath\":\"metadata.name\"}}}]}"), NULL, NULL, err,
	    sizeof(err));
	ok(env == NULL && !strcmp(err, "unsupported pod version: v2"));
}

static void
test_resources(void)
{
	char err[300];
	cJSON *env;
	__int128 n;

	ok(podenv_quantity("500m", &n) == 0 && n == 500000000);
	ok(podenv_quantity("1.5Gi", &n) == 0 && n == (__int128)1610612736 * 1000000000);
	ok(podenv_quantity("2e3", &n) == 0 && n == (__int128)2000 * 1000000000);
	ok(podenv_quantity("1E", &n) == 0 && n == (__int128)1000000000000000000LL * 1000000000);
	ok(podenv_quantity("0.1", &n) == 0 && n == 100000000);
	ok(podenv_quantity("1n", &n) == 0 && n == 1);
	ok(podenv_quantity("0.5n", &n) == 0 && n == 1);
	ok(podenv_quantity("12Mx", &n) < 0 && podenv_quantity("", &n) < 0 &&
	    podenv_quantity("-1", &n) < 0 && podenv_quantity("Mi", &n) < 0);

	env = resolve(POD("{\"name\":\"app\",\"resources\":{\"limits\":{\"cpu\":\"1500m\","
	    "\"memory\":\"129M\"},\"requests\":{\"cpu\":\"250m\",\"memory\":\"64Mi\"}},\"env\":["
	    "{\"name\":\"LCPU\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":\"limits.cpu\"}}},"
	    "{\"name\":\"LCPU_M\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":\"limits.cpu\",\"divisor\":\"1m\"}}},"
	    "{\"name\":\"RCPU\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":\"requests.cpu\"}}},"
	    "{\"name\":\"LMEM\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":\"limits.memory\"}}},"
	    "{\"name\":\"LMEM_MI\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":\"limits.memory\",\"divisor\":\"1Mi\"}}},"
	    "{\"name\":\"RMEM_MI\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":\"requests.memory\",\"divisor\":\"1Mi\"}}},"
	    "{\"name\":\"LEPH\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":\"limits.ephemeral-storage\",\"divisor\":\"1Gi\"}}},"
	    "{\"name\":\"REPH\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":\"requests.ephemeral-storage\"}}}]}"),
	    NULL, "{\"status\":{\"allocatable\":{\"cpu\":\"4\",\"memory\":\"8Gi\","
	    "\"ephemeral-storage\":\"100Gi\"}}}", err, sizeof(err));
	ok(env != NULL);
	if (!env)
		printf("# %s\n", err);
	/* ceil(1500 / 1000), 1500, ceil(250 / 1000). */
	ok(is(env, "LCPU", "2") && is(env, "LCPU_M", "1500") && is(env, "RCPU", "1"));
	/* 129000000, ceil(129000000 / 1048576) = 124, 64. */
	ok(is(env, "LMEM", "129000000") && is(env, "LMEM_MI", "124") && is(env, "RMEM_MI", "64"));
	/* No limit: the node's allocatable; no request: 0. */
	ok(is(env, "LEPH", "100") && is(env, "REPH", "0"));
	cJSON_Delete(env);
	env = resolve(POD("{\"name\":\"app\",\"env\":[{\"name\":\"L\",\"valueFrom\":"
	    "{\"resourceFieldRef\":{\"resource\":\"limits.memory\"}}}]}"), NULL, NULL, err,
	    sizeof(err));
	ok(env == NULL && strstr(err, "allocatable memory is not known"));
	env = resolve(POD("{\"name\":\"app\",\"env\":[{\"name\":\"L\",\"valueFrom\":"
	    "{\"resourceFieldRef\":{\"resource\":\"limits.gpu\"}}}]}"), NULL, NULL, err,
	    sizeof(err));
	ok(env == NULL && strstr(err, "unsupported container resource: limits.gpu"));
}

#define SVCS "[{\"metadata\":{\"name\":\"kubernetes\",\"namespace\":\"default\"},\"spec\":" \
	"{\"clusterIP\":\"10.96.0.1\",\"ports\":[{\"name\":\"https\",\"port\":443," \
	"\"protocol\":\"TCP\"}]}}," \
	"{\"metadata\":{\"name\":\"my-db\",\"namespace\":\"shop\"},\"spec\":" \
	"{\"clusterIP\":\"10.96.3.4\",\"ports\":[{\"port\":5432},{\"name\":\"dns-udp\"," \
	"\"port\":53,\"protocol\":\"UDP\"}]}}," \
	"{\"metadata\":{\"name\":\"headless\",\"namespace\":\"shop\"},\"spec\":" \
	"{\"clusterIP\":\"None\",\"ports\":[{\"port\":80}]}}," \
	"{\"metadata\":{\"name\":\"elsewhere\",\"namespace\":\"other\"},\"spec\":" \
	"{\"clusterIP\":\"10.96.9.9\",\"ports\":[{\"port\":80}]}}," \
	"{\"metadata\":{\"name\":\"v6\",\"namespace\":\"shop\"},\"spec\":" \
	"{\"clusterIP\":\"fd00::10\",\"ports\":[{\"port\":80}]}}]"

static void
test_services(void)
{
	char err[300], pod[2048];
	cJSON *env;

	env = resolve(POD("{\"name\":\"app\",\"env\":["
	    "{\"name\":\"DB\",\"value\":\"$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT)\"},"
	    "{\"name\":\"MY_DB_PORT\",\"value\":\"mine\"}]}"), SVCS, NULL, err, sizeof(err));
	ok(env != NULL);
	ok(is(env, "KUBERNETES_SERVICE_HOST", "10.96.0.1") &&
	    is(env, "KUBERNETES_SERVICE_PORT", "443") &&
	    is(env, "KUBERNETES_SERVICE_PORT_HTTPS", "443") &&
	    is(env, "KUBERNETES_PORT", "tcp://10.96.0.1:443") &&
	    is(env, "KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443") &&
	    is(env, "KUBERNETES_PORT_443_TCP_PROTO", "tcp") &&
	    is(env, "KUBERNETES_PORT_443_TCP_PORT", "443") &&
	    is(env, "KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"));
	ok(is(env, "MY_DB_SERVICE_HOST", "10.96.3.4") && is(env, "MY_DB_SERVICE_PORT", "5432") &&
	    is(env, "MY_DB_SERVICE_PORT_DNS_UDP", "53") &&
	    is(env, "MY_DB_PORT_5432_TCP", "tcp://10.96.3.4:5432") &&
	    is(env, "MY_DB_PORT_53_UDP", "udp://10.96.3.4:53") &&
	    is(env, "MY_DB_PORT_53_UDP_PROTO", "udp"));
	ok(is(env, "V6_PORT", "tcp://[fd00::10]:80") && is(env, "V6_PORT_80_TCP_ADDR", "fd00::10"));
	/* Service variables are seen by $(...), and the container's own win. */
	ok(is(env, "DB", "10.96.3.4:5432") && is(env, "MY_DB_PORT", "mine"));
	ok(absent(env, "HEADLESS_SERVICE_HOST") && absent(env, "ELSEWHERE_SERVICE_HOST"));
	/* 8 for kubernetes, 12 for my-db (MY_DB_PORT the container's), 7 for v6, DB. */
	ok(cJSON_GetArraySize(env) == 8 + 12 + 7 + 1);
	cJSON_Delete(env);

	/* enableServiceLinks false: default/kubernetes only. */
	snprintf(pod, sizeof(pod), "%s", POD("{\"name\":\"app\"}"));
	memcpy(strstr(pod, "\"enableServiceLinks\":true"), "\"enableServiceLinks\":0   ", 25);
	ok(strstr(pod, "\"enableServiceLinks\":0   ") != NULL);
	env = resolve(pod, SVCS, NULL, err, sizeof(err));
	ok(env != NULL && cJSON_GetArraySize(env) == 8 && is(env, "KUBERNETES_SERVICE_HOST",
	    "10.96.0.1"));
	cJSON_Delete(env);
}

static void
test_refs(void)
{
	cJSON *pod = cJSON_Parse(POD("{\"name\":\"app\",\"envFrom\":[{\"configMapRef\":{\"name\":"
	    "\"a\"}},{\"secretRef\":{\"name\":\"s\"}}],\"env\":[{\"name\":\"X\",\"valueFrom\":"
	    "{\"configMapKeyRef\":{\"name\":\"a\",\"key\":\"k\"}}},{\"name\":\"Y\",\"valueFrom\":"
	    "{\"configMapKeyRef\":{\"name\":\"b\",\"key\":\"k\"}}},{\"name\":\"Z\",\"valueFrom\":"
	    "{\"secretKeyRef\":{\"name\":\"t\",\"key\":\"k\"}}}]}"));
	cJSON *r;
	char *txt;
	int res = 1;

	r = podenv_refs(pod, "app", &res);
	txt = r ? cJSON_PrintUnformatted(r) : NULL;
	ok(txt && !strcmp(txt, "{\"configmaps\":[\"a\",\"b\"],\"secrets\":[\"s\",\"t\"]}"));
	ok(res == 0);
	ok(podenv_refs(pod, "nope", &res) == NULL);
	free(txt);
	cJSON_Delete(r);
	cJSON_Delete(pod);
}

int
main(void)
{
	test_values_and_expansion();
	test_sources();
	test_fields();
	test_resources();
	test_services();
	test_refs();
	printf("1..%d\n", ok_run);
	return ok_failed ? 1 : 0;
}
