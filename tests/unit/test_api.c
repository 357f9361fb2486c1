/* proto/api.c: what the daemon accepts from a caller of its control API
 * before relaying anything to the manager. The CLI refuses most of these
 * itself; a raw request on the socket (curl --unix-socket) does not pass
 * through the CLI, so the daemon must refuse them too. */
#include "../../proto/api.c"

#include "ok.h"

static char err[300];

static int
good(const char *path, const char *json)
{
	cJSON *j = cJSON_Parse(json);
	int rc;

	err[0] = '\0';
	rc = j && kb_api_check(path, j, err, sizeof(err)) == 0;
	if (!rc)
		printf("# %s %s: %s\n", path, json, err);
	cJSON_Delete(j);
	return rc;
}

/* Refused, with an error that names want. */
static int
bad(const char *path, const char *json, const char *want)
{
	cJSON *j = cJSON_Parse(json);
	int rc;

	err[0] = '\0';
	rc = j && kb_api_check(path, j, err, sizeof(err)) == -1 && strstr(err, want) != NULL &&
	    !strchr(err, '\n');
	printf("# %s %s -> %s\n", path, json, err);
	cJSON_Delete(j);
	return rc;
}

static int
raw_bad(const char *txt, size_t len)
{
	return kb_api_check_raw(txt, len, err, sizeof(err)) == -1;
}

int
main(void)
{
	char big[2048];
	int i;

	/* What the CLI sends. */
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"namespace\":\"default\",\"port\":8080,"
	    "\"headers\":[{\"name\":\"x-dev\",\"value\":\"alice\"}],\"path_prefix\":\"/api\"}"));
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":1,\"headers\":[]}"));
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":65535,\"namespace\":null}"));
	ok(good(KB_API_LEAVE, "{\"workload\":\"web\"}"));
	ok(good(KB_API_PREVIEW_CREATE, "{\"workload\":\"web\",\"ttl\":3600,\"service_port\":80,"
	    "\"host\":\"web.example:8080\"}"));
	ok(good(KB_API_PREVIEW_REMOVE, "{\"token\":\"abc123\"}"));
	ok(good(KB_API_CONNECT, "{\"profile\":{},\"namespace\":\"dev\",\"replace\":true}"));
	ok(good(KB_API_QUIT, "{}"));
	ok(kb_api_check(KB_API_QUIT, NULL, err, sizeof(err)) == 0);
	ok(good(KB_API_LOGLEVEL, "{\"level\":\"debug\"}"));
	ok(good(KB_API_LOGLEVEL, "{\"level\":\"info\"}"));
	ok(bad(KB_API_LOGLEVEL, "{\"level\":\"trace\"}", "debug or info"));
	ok(bad(KB_API_LOGLEVEL, "{\"level\":1}", "level"));
	ok(bad(KB_API_LOGLEVEL, "{}", "level"));
	ok(bad(KB_API_LOGLEVEL, "{\"level\":\"info\",\"also\":1}", "unknown field"));
	ok(good(KB_API_SIDECAR_LOG, "{\"workload\":\"web\",\"namespace\":\"default\",\"replica\":3}"));
	ok(bad(KB_API_SIDECAR_LOG, "{\"workload\":\"web\"}", "namespace"));
	ok(bad(KB_API_SIDECAR_LOG, "{\"workload\":\"a/b\",\"namespace\":\"x\"}", "workload"));
	ok(bad(KB_API_SIDECAR_LOG, "{\"workload\":\"w\",\"namespace\":\"x\",\"replica\":64}",
	    "replica"));

	/* Header injection: CR/LF (or any control character) in a value. */
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x-dev\","
	    "\"value\":\"alice\\r\\nx-admin: 1\"}]}", "headers[0].value"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x-dev\","
	    "\"value\":\"a\\nb\"}]}", "CR, LF"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x-dev\","
	    "\"value\":\"a\\u0001b\"}]}", "headers[0].value"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x-dev\","
	    "\"value\":\" alice\"}]}", "headers[0].value"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x-dev\","
	    "\"value\":\"\"}]}", "headers[0].value"));
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x\","
	    "\"value\":\"a\\tb\"}]}"));
	/* Names must be tokens: no colon, space, CR/LF. */
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x-dev:\","
	    "\"value\":\"a\"}]}", "headers[0].name"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x\\r\\ny\","
	    "\"value\":\"a\"}]}", "headers[0].name"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"\","
	    "\"value\":\"a\"}]}", "headers[0].name"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":7,"
	    "\"value\":\"a\"}]}", "headers[0].name"));
	/* Shape of the list and its entries. */
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":{}}", "list"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[\"x: 1\"]}",
	    "headers[0] must be an object"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x\","
	    "\"value\":\"a\",\"extra\":1}]}", "only name and value"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x\","
	    "\"value\":\"a\",\"value\":\"b\\r\\n\"}]}", "once each"));
	/* At most 16 headers. */
	snprintf(big, sizeof(big), "{\"workload\":\"web\",\"port\":80,\"headers\":[");
	for (i = 0; i < KB_API_HEADERS_MAX; i++)
		snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s{\"name\":\"h%d\","
		    "\"value\":\"v\"}", i ? "," : "", i);
	strcat(big, "]}");
	ok(good(KB_API_INTERCEPT, big));
	big[strlen(big) - 2] = '\0';
	strcat(big, ",{\"name\":\"h16\",\"value\":\"v\"}]}");
	ok(bad(KB_API_INTERCEPT, big, "at most 16 headers"));
	/* Value and name lengths. */
	snprintf(big, sizeof(big), "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x\","
	    "\"value\":\"%0*d\"}]}", KB_API_HDR_VALUE_MAX + 1, 0);
	ok(bad(KB_API_INTERCEPT, big, "headers[0].value"));
	snprintf(big, sizeof(big), "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":\"x\","
	    "\"value\":\"%0*d\"}]}", KB_API_HDR_VALUE_MAX, 0);
	ok(good(KB_API_INTERCEPT, big));
	snprintf(big, sizeof(big), "{\"workload\":\"web\",\"port\":80,\"headers\":[{\"name\":"
	    "\"%0*d\",\"value\":\"v\"}]}", KB_API_HDR_NAME_MAX + 1, 0);
	ok(bad(KB_API_INTERCEPT, big, "headers[0].name"));

	/* Ports: integers 1..65535. */
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":0}", "port must be"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":65536}", "port must be"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80.5}", "port must be"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":\"80\"}", "port must be"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":-1}", "port must be"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":1e300}", "port must be"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\"}", "port is missing"));
	/* address: where the daemon delivers; localhost or an IP, nothing
	 * it would have to resolve, nothing that is not one host. */
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"localhost\"}"));
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"::1\"}"));
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"127.0.0.2\"}"));
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"172.17.0.2\"}"));
	ok(good(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"fd00::5\"}"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"0.0.0.0\"}",
	    "address must be localhost or an IPv4 or IPv6 address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"::\"}", "address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"255.255.255.255\"}",
	    "address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"239.1.1.1\"}", "address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"ff02::1\"}", "address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"example.com\"}",
	    "address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"127.0.0.1:80\"}",
	    "address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"[::1]\"}", "address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":\"\"}", "address"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"address\":1}", "address"));
	{
		struct sockaddr_storage ss;
		socklen_t len;

		ok(kb_api_address("localhost", 80, &ss, &len) && ss.ss_family == AF_UNSPEC);
		ok(kb_api_address("::1", 8080, &ss, &len) && ss.ss_family == AF_INET6 &&
		    len == sizeof(struct sockaddr_in6) &&
		    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == 8080);
		ok(kb_api_address("127.0.0.1", 443, &ss, &len) && ss.ss_family == AF_INET &&
		    ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
	}
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":null}", "port is missing"));
	ok(bad(KB_API_PREVIEW_CREATE, "{\"workload\":\"web\",\"service_port\":70000}",
	    "service_port must be"));
	ok(bad(KB_API_PREVIEW_CREATE, "{\"workload\":\"web\",\"ttl\":2592001}", "ttl must be"));

	/* Workload and namespace: DNS-1123 labels. */
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"Web\",\"port\":80}", "workload must be a DNS"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web.default\",\"port\":80}", "workload"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"-web\",\"port\":80}", "workload"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\\r\\n\",\"port\":80}", "workload"));
	ok(bad(KB_API_LEAVE, "{\"workload\":\"web\",\"namespace\":\"a/b\"}", "namespace must"));
	ok(bad(KB_API_LEAVE, "{}", "workload is missing"));
	ok(bad(KB_API_LEAVE, "{\"workload\":[]}", "workload must be a string"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"namespace\":\"A\"}", "namespace must"));
	ok(bad(KB_API_CONNECT, "{\"namespace\":\"a\"}", "profile is missing"));
	ok(bad(KB_API_CONNECT, "{\"profile\":\"x\"}", "profile must be an object"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"replace\":1}", "replace must be true or false"));
	/* kube: what status shows of the kubeconfig, checked member by member */
	ok(good(KB_API_CONNECT, "{\"profile\":{},\"kube\":{\"context\":\"kind-dev@x\","
	    "\"cluster\":\"arn:aws:eks:eu-west-1:1:cluster/dev\",\"server\":\"https://10.0.0.1:6443\","
	    "\"install_namespace\":\"kbridge\",\"via\":\"port-forward\"}}"));
	ok(good(KB_API_CONNECT, "{\"profile\":{},\"kube\":{}}"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"kube\":[]}", "kube must be an object"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"kube\":{\"user\":\"x\"}}", "unknown field \"kube.user\""));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"kube\":{\"context\":\"a\\nb\"}}",
	    "kube.context must be 1-253 printable characters"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"kube\":{\"context\":1}}", "kube.context must be a string"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"kube\":{\"server\":\"http://x\"}}",
	    "kube.server must be an https:// URL of at most 2048 characters"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"kube\":{\"via\":\"ssh\"}}",
	    "kube.via must be port-forward or address"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"kube\":{\"install_namespace\":\"A\"}}",
	    "kube.install_namespace must be a DNS label"));

	/* never_proxy, also_proxy: lists of strict CIDR ranges. */
	ok(good(KB_API_CONNECT, "{\"profile\":{},\"never_proxy\":[\"10.96.5.0/24\"],"
	    "\"also_proxy\":[\"172.20.0.0/16\",\"10.50.0.0/16\"]}"));
	ok(good(KB_API_CONNECT, "{\"profile\":{},\"never_proxy\":[],\"also_proxy\":null}"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"never_proxy\":\"10.0.0.0/8\"}",
	    "never_proxy must be a list of CIDR ranges"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"also_proxy\":[8]}",
	    "also_proxy[0] must be a string"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"also_proxy\":[\"10.1.0.0/16\",\"10.1.2.3/16\"]}",
	    "also_proxy[1]: '10.1.2.3/16' is not a CIDR range"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"also_proxy\":[\"127.0.0.0/8\"]}",
	    "also_proxy[0]: 127.0.0.0/8 overlaps 127.0.0.0/8"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"also_proxy\":[\"0.0.0.0/0\"]}",
	    "every address"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"never_proxy\":[\"10.1.0.0/16\",\"10.1.0.0/16\"]}",
	    "never_proxy lists 10.1.0.0/16 twice"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"never_proxy\":[\"10.1.0.0/16\\r\\nx\"]}",
	    "is not a CIDR range"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"never_proxy\":[\"10.0.0.0/8\"],"
	    "\"never_proxy\":[]}", "given twice"));
	/* virtual_subnet: off, or a range for virtual addresses */
	ok(good(KB_API_CONNECT, "{\"profile\":{},\"virtual_subnet\":\"off\"}"));
	ok(good(KB_API_CONNECT, "{\"profile\":{},\"virtual_subnet\":\"100.100.0.0/16\"}"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"virtual_subnet\":\"100.100.0.1/16\"}",
	    "virtual_subnet must be off or a range"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"virtual_subnet\":\"100.100.0.0/31\"}",
	    "virtual_subnet must be off or a range"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"virtual_subnet\":\"127.0.0.0/16\"}",
	    "virtual_subnet must be off or a range"));
	ok(bad(KB_API_CONNECT, "{\"profile\":{},\"virtual_subnet\":[\"off\"]}",
	    "virtual_subnet"));
	{
		char many[1024];
		size_t off;

		off = (size_t)snprintf(many, sizeof(many), "{\"profile\":{},\"also_proxy\":[");
		for (i = 0; i <= KB_NETPLAN_USER_MAX; i++)
			off += (size_t)snprintf(many + off, sizeof(many) - off, "%s\"10.%d.0.0/16\"",
			    i ? "," : "", i + 1);
		snprintf(many + off, sizeof(many) - off, "]}");
		ok(bad(KB_API_CONNECT, many, "at most 32 ranges"));
	}

	/* Path prefix and host. */
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"path_prefix\":\"api\"}",
	    "path_prefix"));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"path_prefix\":"
	    "\"/a HTTP/1.1\\r\\nx: y\"}", "path_prefix"));
	ok(bad(KB_API_PREVIEW_CREATE, "{\"workload\":\"web\",\"host\":\"a\\r\\nb\"}", "host must"));
	ok(bad(KB_API_PREVIEW_REMOVE, "{\"token\":\"ABC\"}", "token must"));

	/* Unknown and repeated fields are refused, not forwarded. */
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"type\":\"leave-all\"}",
	    "unknown field \"type\""));
	ok(bad(KB_API_INTERCEPT, "{\"workload\":\"web\",\"port\":80,\"resume\":\"x\"}",
	    "unknown field \"resume\""));
	ok(bad(KB_API_QUIT, "{\"now\":true}", "unknown field \"now\""));
	ok(bad(KB_API_LEAVE, "{\"workload\":\"web\",\"workload\":\"Bad\"}", "workload"));
	ok(bad(KB_API_LEAVE, "{\"workload\":\"web\",\"workload\":\"db\"}", "given twice"));
	ok(bad(KB_API_LEAVE, "{\"workload\":\"web\",\"a\\u0001\\r\\nb\":1}",
	    "unknown field \"a???b\""));
	ok(bad(KB_API_LEAVE, "[1]", "not a JSON object"));
	ok(kb_api_check("/v1/nothing", NULL, err, sizeof(err)) == -1);

	/* NUL, raw or escaped, would cut a C string short. */
	ok(raw_bad("{\"workload\":\"web\0x\"}", 19));
	ok(raw_bad("{\"workload\":\"web\\u0000x\"}", 24));
	ok(kb_api_check_raw("{\"workload\":\"web\\\\u0000\"}", 24, err, sizeof(err)) == 0);
	ok(kb_api_check_raw("{\"a\\\"\":\"\\u0001\"}", 15, err, sizeof(err)) == 0);
	ok(kb_api_check_raw("", 0, err, sizeof(err)) == 0);

	/* The shared field checks. */
	ok(kb_api_header_name("x-dev") && !kb_api_header_name("x dev") &&
	    !kb_api_header_name("x:dev"));
	ok(kb_api_header_value("alice") && !kb_api_header_value("a\rb") &&
	    !kb_api_header_value("a\x7f"));
	ok(kb_api_path_prefix("/") && !kb_api_path_prefix("/\xc3\xa9") &&
	    !kb_api_path_prefix(""));
	ok(kb_api_host("[::1]:80") && !kb_api_host("a b"));
	ok(kb_api_token("abc") && !kb_api_token("") && !kb_api_token("a-b"));

	return ok_done();
}
