/* What kbridge intercept decides from API objects (cli/kpick.c): the label
 * selector of a workload's pods (matchLabels and matchExpressions, URL
 * encoded), the Services that select a pod template, the Service port and
 * its targetPort, and what the pod template must get. */
#include "../../cli/kpick.c"

#include "ok.h"

static char err[1024];

static cJSON *
J(const char *txt)
{
	cJSON *j = cJSON_Parse(txt);

	if (j == NULL) {
		printf("bad JSON in the test: %s\n", txt);
		exit(1);
	}
	return j;
}

/* kp_selector of the selector txt: its result, or "ERR: why". */
static const char *
sel(const char *txt, size_t len)
{
	static char buf[4096];
	cJSON *s = J(txt);
	int r;

	err[0] = '\0';
	r = kp_selector(s, buf, len, err, sizeof(err));
	cJSON_Delete(s);
	if (r == -1) {
		snprintf(buf, sizeof(buf), "ERR: %s", err);
		return buf;
	}
	return buf;
}

static void
test_selector(void)
{
	char buf[256];

	ok(strcmp(sel("{\"matchLabels\":{\"app\":\"web\"}}", 256), "app=web") == 0);
	ok(strcmp(sel("{\"matchLabels\":{\"app\":\"web\",\"example.com/tier\":\"\"}}", 256),
	    "app=web,example.com/tier=") == 0);
	ok(strcmp(sel("{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":["
	    "{\"key\":\"tier\",\"operator\":\"In\",\"values\":[\"a\",\"b\"]},"
	    "{\"key\":\"track\",\"operator\":\"NotIn\",\"values\":[\"canary\"]},"
	    "{\"key\":\"app\",\"operator\":\"Exists\"},"
	    "{\"key\":\"gone\",\"operator\":\"DoesNotExist\",\"values\":[]}]}", 256),
	    "app=web,tier in (a,b),track notin (canary),app,!gone") == 0);
	/* expressions alone */
	ok(strcmp(sel("{\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"In\","
	    "\"values\":[\"web\"]}]}", 256), "app in (web)") == 0);
	ok(strcmp(sel("{}", 256), "ERR: spec.selector has neither matchLabels nor "
	    "matchExpressions") == 0);
	ok(strcmp(sel("null", 256), "ERR: spec.selector has neither matchLabels nor "
	    "matchExpressions") == 0);
	ok(strcmp(sel("{\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"Gt\","
	    "\"values\":[\"1\"]}]}", 256), "ERR: matchExpression app of spec.selector has "
	    "operator Gt, not In, NotIn, Exists or DoesNotExist") == 0);
	ok(strcmp(sel("{\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"In\","
	    "\"values\":[]}]}", 256), "ERR: matchExpression app In of spec.selector has no "
	    "values") == 0);
	/* nothing that could add a term or a query parameter gets through */
	ok(strncmp(sel("{\"matchExpressions\":[{\"key\":\"app\",\"operator\":\"In\","
	    "\"values\":[\"a,b\"]}]}", 256), "ERR: ", 5) == 0);
	ok(strncmp(sel("{\"matchLabels\":{\"app\":\"x&watch=1\"}}", 256), "ERR: ", 5) == 0);
	ok(strncmp(sel("{\"matchLabels\":{\"a b\":\"x\"}}", 256), "ERR: ", 5) == 0);
	ok(strncmp(sel("{\"matchLabels\":{\"app\":1}}", 256), "ERR: ", 5) == 0);
	ok(strncmp(sel("{\"matchExpressions\":[{\"operator\":\"Exists\"}]}", 256), "ERR: ",
	    5) == 0);
	/* too long for the buffer: an error, never a cut selector */
	ok(strcmp(sel("{\"matchLabels\":{\"app\":\"web\",\"tier\":\"front\"}}", 12),
	    "ERR: spec.selector is longer than 11 characters") == 0);
	ok(strcmp(sel("{\"matchLabels\":{\"app\":\"web\",\"tier\":\"front\"}}", 19),
	    "app=web,tier=front") == 0);

	ok(kp_query_escape("app=web,tier in (a,b),!gone,example.com/x~y_z-1", buf,
	    sizeof(buf)) == 0);
	ok(strcmp(buf, "app%3Dweb%2Ctier%20in%20%28a%2Cb%29%2C%21gone%2Cexample.com%2Fx~y_z-1")
	    == 0);
	ok(kp_query_escape("a=b", buf, 5) == -1);
	ok(kp_query_escape("a=b", buf, 4) == -1);
	ok(kp_query_escape("a=b", buf, 6) == 0 && strcmp(buf, "a%3Db") == 0);
}

static void
test_selects(void)
{
	cJSON *w = J("{\"spec\":{\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\","
	    "\"tier\":\"front\"}}}}}");
	cJSON *s1 = J("{\"app\":\"web\"}"), *s2 = J("{\"app\":\"web\",\"tier\":\"front\"}");
	cJSON *s3 = J("{\"app\":\"web\",\"tier\":\"back\"}"), *s4 = J("{}");
	cJSON *s5 = J("{\"app\":1}"), *s6 = J("{\"other\":\"web\"}");

	ok(kp_selects(s1, w) == 1);
	ok(kp_selects(s2, w) == 1);
	ok(kp_selects(s3, w) == 0);
	ok(kp_selects(s4, w) == 0);	/* selects nothing, as the API has it */
	ok(kp_selects(NULL, w) == 0);
	ok(kp_selects(s5, w) == 0);
	ok(kp_selects(s6, w) == 0);
	cJSON_Delete(w);
	cJSON_Delete(s1);
	cJSON_Delete(s2);
	cJSON_Delete(s3);
	cJSON_Delete(s4);
	cJSON_Delete(s5);
	cJSON_Delete(s6);
}

/* The port that want picks of service txt: "PORT TARGET", or "ERR: why". */
static const char *
pick(const char *txt, const char *want)
{
	static char buf[1100];
	char target[KP_TARGET_MAX];
	const cJSON *p;
	cJSON *svc = J(txt);

	err[0] = '\0';
	if ((p = kp_service_port(svc, "web", want, err, sizeof(err))) == NULL ||
	    kp_target(p, target, sizeof(target), err, sizeof(err)) == -1)
		snprintf(buf, sizeof(buf), "ERR: %s", err);
	else
		snprintf(buf, sizeof(buf), "%d %s", port_num(get(p, "port")), target);
	cJSON_Delete(svc);
	return buf;
}

#define MULTI "{\"spec\":{\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":\"web\"}," \
	"{\"name\":\"admin\",\"port\":9000,\"targetPort\":9001,\"protocol\":\"TCP\"}," \
	"{\"name\":\"dns\",\"port\":53,\"protocol\":\"UDP\"}," \
	"{\"name\":\"raw\",\"port\":7000}]}}"

static void
test_ports(void)
{
	ok(strcmp(pick("{\"spec\":{\"ports\":[{\"port\":80,\"targetPort\":\"web\"}]}}", NULL),
	    "80 web") == 0);
	ok(strcmp(pick("{\"spec\":{\"ports\":[{\"port\":80,\"targetPort\":8080}]}}", NULL),
	    "80 8080") == 0);
	/* targetPort absent: the port's own number */
	ok(strcmp(pick("{\"spec\":{\"ports\":[{\"port\":80}]}}", NULL), "80 80") == 0);
	/* a UDP port is not a choice */
	ok(strcmp(pick("{\"spec\":{\"ports\":[{\"port\":53,\"protocol\":\"UDP\"},{\"name\":"
	    "\"http\",\"port\":80,\"targetPort\":\"http\"}]}}", NULL), "80 http") == 0);
	ok(strcmp(pick("{\"spec\":{\"ports\":[{\"port\":53,\"protocol\":\"UDP\"}]}}", NULL),
	    "ERR: service web has no TCP port") == 0);
	ok(strcmp(pick("{\"spec\":{}}", NULL), "ERR: service web has no TCP port") == 0);
	ok(strcmp(pick(MULTI, NULL), "ERR: service web has several ports, 80 (http), "
	    "9000 (admin), 7000 (raw): pass --port LOCAL:PORT, PORT the name or number of "
	    "one") == 0);
	ok(strcmp(pick(MULTI, "http"), "80 web") == 0);
	ok(strcmp(pick(MULTI, "80"), "80 web") == 0);
	ok(strcmp(pick(MULTI, "admin"), "9000 9001") == 0);
	ok(strcmp(pick(MULTI, "9000"), "9000 9001") == 0);
	ok(strcmp(pick(MULTI, "raw"), "7000 7000") == 0);
	/* the targetPort's number is not the Service port's */
	ok(strcmp(pick(MULTI, "9001"), "ERR: service web has no TCP port named or numbered "
	    "9001 (it has 80 (http), 9000 (admin), 7000 (raw))") == 0);
	ok(strncmp(pick(MULTI, "dns"), "ERR: service web has no TCP port named or numbered "
	    "dns ", 55) == 0);
	ok(strcmp(pick("{\"spec\":{\"ports\":[{\"port\":80,\"targetPort\":\"Bad_Name\"}]}}",
	    NULL), "ERR: targetPort 'Bad_Name' of service port 80 is not a port name") == 0);
	ok(strcmp(pick("{\"spec\":{\"ports\":[{\"port\":80,\"targetPort\":70000}]}}", NULL),
	    "ERR: service port 80 has no valid targetPort") == 0);
}

#define TEMPLATE(ann) "{\"spec\":{\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}" \
	ann "},\"spec\":{\"containers\":[{\"name\":\"app\",\"ports\":[" \
	"{\"name\":\"http\",\"containerPort\":8080},{\"name\":\"web\",\"containerPort\":8081}," \
	"{\"name\":\"dns\",\"containerPort\":53,\"protocol\":\"UDP\"}]}," \
	"{\"name\":\"side\",\"ports\":[{\"name\":\"metrics\",\"containerPort\":9090," \
	"\"protocol\":\"TCP\"},{\"containerPort\":9999}]}]}}}}"

static int
check(const char *target)
{
	cJSON *w = J(TEMPLATE("")), *port = J("{\"port\":80}");
	int r;

	err[0] = '\0';
	r = kp_check_target(w, "deployment/web", "web-svc", port, target, err, sizeof(err));
	cJSON_Delete(w);
	cJSON_Delete(port);
	return r;
}

static void
test_check_target(void)
{
	cJSON *w = J("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"a\"}]}}}}");
	cJSON *port = J("{\"port\":80}");

	ok(check("http") == 0);
	ok(check("web") == 0);
	ok(check("metrics") == 0);
	ok(check("8080") == 0);	/* numbers are not checked here */
	ok(check("dns") == -1);	/* UDP */
	ok(strcmp(err, "service web-svc port 80 targets port dns, but no container of "
	    "deployment/web has a TCP port named dns (named TCP ports: http, web, metrics)") == 0);
	ok(check("nosuch") == -1);
	ok(kp_check_target(w, "deployment/a", "a", port, "http", err, sizeof(err)) == -1);
	ok(strcmp(err, "service a port 80 targets port http, but no container of "
	    "deployment/a has a TCP port named http (it has no named TCP port)") == 0);
	cJSON_Delete(w);
	cJSON_Delete(port);
}

/* kp_plan on a template with annotations ann: "IP" (inject, port), "I",
 * "-", or "ERR: why". */
static const char *
plan(const char *ann, const char *target, int ours)
{
	static char buf[1100];
	struct kp_plan p;
	cJSON *w = J(ann);

	err[0] = '\0';
	if (kp_plan(w, "deployment/web", "web-svc", target, ours, &p, err, sizeof(err)) == -1)
		snprintf(buf, sizeof(buf), "ERR: %s", err);
	else
		snprintf(buf, sizeof(buf), "%s%s%s", p.inject ? "I" : "", p.port ? "P" : "",
		    p.inject || p.port ? "" : "-");
	cJSON_Delete(w);
	return buf;
}

#define ANN(x) TEMPLATE(",\"annotations\":{" x "}")

static void
test_plan(void)
{
	ok(strcmp(plan(TEMPLATE(""), "web", 0), "IP") == 0);
	ok(strcmp(plan(TEMPLATE(""), "http", 0), "IP") == 0);
	ok(strcmp(plan(ANN("\"other\":\"x\""), "8080", 0), "IP") == 0);
	/* the user's own port annotation, for that port: only inject */
	ok(strcmp(plan(ANN("\"kbridge.dev/port\":\"web\""), "web", 0), "I") == 0);
	/* ... naming the same container port by number */
	ok(strcmp(plan(ANN("\"kbridge.dev/port\":\"8081\""), "web", 0), "I") == 0);
	ok(strcmp(plan(ANN("\"kbridge.dev/port\":\"web\""), "8081", 0), "I") == 0);
	/* ... another port: said, not changed */
	ok(strcmp(plan(ANN("\"kbridge.dev/port\":\"http\""), "web", 0), "ERR: the pod template "
	    "of deployment/web has kbridge.dev/port: \"http\", but service web-svc targets port "
	    "web: change or remove that annotation") == 0);
	ok(strcmp(plan(ANN("\"kbridge.dev/inject\":\"true\",\"kbridge.dev/port\":\"http\""),
	    "web", 1), "ERR: the pod template of deployment/web has kbridge.dev/port: \"http\" "
	    "(from an earlier intercept), but service web-svc targets port web: 'kbridge "
	    "uninstall --agents' removes it") == 0);
	ok(strcmp(plan(ANN("\"kbridge.dev/inject\":\"true\",\"kbridge.dev/port\":\"web\""),
	    "web", 1), "-") == 0);
	/* injected without a port annotation: the sidecar takes http */
	ok(strcmp(plan(ANN("\"kbridge.dev/inject\":\"true\""), "http", 0), "-") == 0);
	ok(strcmp(plan(ANN("\"kbridge.dev/inject\":\"true\""), "8080", 0), "-") == 0);
	ok(strcmp(plan(ANN("\"kbridge.dev/inject\":\"true\""), "web", 0), "ERR: the pod "
	    "template of deployment/web has kbridge.dev/inject: \"true\" without "
	    "kbridge.dev/port, so the sidecar takes port http, but service web-svc targets "
	    "port web: set kbridge.dev/port: \"web\" there") == 0);
	/* a StatefulSet whose partition keeps pods on the old template */
	ok(strcmp(plan("{\"kind\":\"StatefulSet\",\"spec\":{\"updateStrategy\":{\"type\":"
	    "\"RollingUpdate\",\"rollingUpdate\":{\"partition\":2}}}}", "http", 0), "ERR: "
	    "deployment/web has spec.updateStrategy.rollingUpdate.partition 2: its pods below "
	    "ordinal 2 keep the old pod template and would never run the kbridge sidecar; set "
	    "the partition to 0 to intercept it") == 0);
	ok(strcmp(plan("{\"kind\":\"StatefulSet\",\"spec\":{\"updateStrategy\":{"
	    "\"rollingUpdate\":{\"partition\":0}}}}", "http", 0), "IP") == 0);
	ok(strcmp(plan("{\"kind\":\"Deployment\",\"spec\":{\"updateStrategy\":{"
	    "\"rollingUpdate\":{\"partition\":3}}}}", "http", 0), "IP") == 0);
	ok(strcmp(plan(ANN("\"kbridge.dev/inject\":\"no\\n\""), "http", 0), "ERR: the pod "
	    "template of deployment/web sets kbridge.dev/inject: \"no?\"; set it to \"true\" "
	    "(or remove it) to intercept") == 0);
}

static void
test_result(void)
{
	struct kp_plan p = { 1, 1 }, none = { 0, 0 };
	cJSON *port = J("{\"name\":\"http\",\"port\":80,\"targetPort\":\"web\"}"), *r;
	char *txt;

	r = kp_result("Deployment", "web", "default", "web-svc", port, "web", 2, &p);
	txt = cJSON_PrintUnformatted(r);
	ok(txt && strcmp(txt, "{\"kind\":\"Deployment\",\"name\":\"web\",\"namespace\":"
	    "\"default\",\"service\":\"web-svc\",\"service_port\":80,\"target_port\":\"web\","
	    "\"replicas\":2,\"added\":[\"kbridge.dev/inject\",\"kbridge.dev/port\"]}") == 0);
	free(txt);
	cJSON_Delete(r);
	r = kp_result("StatefulSet", "db", "x", "db", port, "5432", 1, &none);
	txt = cJSON_PrintUnformatted(r);
	ok(txt && strstr(txt, "\"target_port\":\"5432\",\"replicas\":1,\"added\":[]}") != NULL);
	free(txt);
	cJSON_Delete(r);
	cJSON_Delete(port);
}

int
main(void)
{
	test_selector();
	test_selects();
	test_ports();
	test_check_target();
	test_plan();
	test_result();
	return ok_done();
}
