/* The control-message table (proto/msg.c): every type round-trips, every
 * rule rejects its bad field with a clear text, unknown types are refused. */
#include "../../proto/msg.c"

#include <cjson/cJSON.h>

#include "ok.h"

/* kb_msg_parse of a message text: its return, type and error text. */
static int
parse(const char *text, enum kb_msg_type *t, char *err, size_t errlen)
{
	cJSON *m = cJSON_Parse(text);
	int rc;

	if (!m)
		abort();
	err[0] = '\0';
	rc = kb_msg_parse(m, t, err, errlen);
	cJSON_Delete(m);
	return rc;
}

/* Is text refused with rc and exactly want as the reason? */
static int
refused(const char *text, int rc, const char *want)
{
	enum kb_msg_type t;
	char err[200];
	int got = parse(text, &t, err, sizeof(err));

	if (got != rc || strcmp(err, want) != 0) {
		printf("# %s: %d \"%s\", wanted %d \"%s\"\n", text, got, err, rc, want);
		return 0;
	}
	return 1;
}

/* The smallest valid message of each type, as its sender builds it. */
static cJSON *
valid(enum kb_msg_type t)
{
	cJSON *m = kb_msg_new(t), *h;

	switch (t) {
	case KB_MSG_RESOLVE:
		cJSON_AddNumberToObject(m, "id", 4294967295.0);
		cJSON_AddStringToObject(m, "name", "web.default");
		cJSON_AddNumberToObject(m, "qtype", 28);
		break;
	case KB_MSG_RESOLVED:
		cJSON_AddNumberToObject(m, "id", 17);
		cJSON_AddNumberToObject(m, "rcode", 0);
		cJSON_AddNumberToObject(m, "ttl", 5);
		cJSON_AddItemToArray(cJSON_AddArrayToObject(m, "addrs"),
		    cJSON_CreateString("10.96.1.1"));
		break;
	case KB_MSG_INTERCEPT:
		cJSON_AddNumberToObject(m, "id", 3);
		cJSON_AddStringToObject(m, "workload", "web");
		cJSON_AddStringToObject(m, "namespace", "default");
		cJSON_AddNumberToObject(m, "port", 8080);
		h = cJSON_CreateObject();
		cJSON_AddStringToObject(h, "name", "x-dev");
		cJSON_AddStringToObject(h, "value", "alice");
		cJSON_AddItemToArray(cJSON_AddArrayToObject(m, "headers"), h);
		cJSON_AddStringToObject(m, "path_prefix", "/api");
		break;
	case KB_MSG_LEAVE:
		cJSON_AddNumberToObject(m, "id", 4);
		cJSON_AddStringToObject(m, "workload", "web");
		cJSON_AddStringToObject(m, "namespace", "default");
		break;
	case KB_MSG_LEAVE_ALL:
	case KB_MSG_PREVIEW_LIST:
	case KB_MSG_LOGS:
	case KB_MSG_RESULT:
		cJSON_AddNumberToObject(m, "id", 9);
		break;
	case KB_MSG_LIST:
		cJSON_AddNumberToObject(m, "id", 0);
		cJSON_AddStringToObject(m, "namespace", "default");
		break;
	case KB_MSG_PREVIEW_CREATE:
		cJSON_AddNumberToObject(m, "id", 6);
		cJSON_AddStringToObject(m, "workload", "web");
		cJSON_AddStringToObject(m, "namespace", "default");
		cJSON_AddNumberToObject(m, "ttl", KB_PREVIEW_TTL_MAX);
		cJSON_AddNullToObject(m, "service_port");
		cJSON_AddStringToObject(m, "host", "shop.example.com");
		break;
	case KB_MSG_PREVIEW_REMOVE:
		cJSON_AddNumberToObject(m, "id", 8);
		cJSON_AddStringToObject(m, "token", "abcdefghijklmnopqrstuvwxyz");
		break;
	case KB_MSG_REPLACED:
		cJSON_AddStringToObject(m, "by", "192.0.2.7:50122");
		break;
	case KB_MSG_INTERCEPTS:
		cJSON_AddArrayToObject(m, "intercepts");
		break;
	case KB_MSG_LOGLEVEL:
		cJSON_AddStringToObject(m, "level", "debug");
		break;
	case KB_MSG_CLUSTER:
		cJSON_AddItemToArray(cJSON_AddArrayToObject(m, "subnets"),
		    cJSON_CreateString("10.96.0.0/16"));
		cJSON_AddItemToArray(cJSON_AddArrayToObject(m, "namespaces"),
		    cJSON_CreateString("default"));
		break;
	default:
		abort();
	}
	return m;
}

/* One element of "records", each field checked. */
static void
test_records(void)
{
	static const struct {
		const char *json;
		int ok;
	} t[] = {
		{ "{\"name\":\"web.default.svc.cluster.local\",\"type\":1,\"ttl\":5,"
		  "\"data\":\"10.96.1.1\"}", 1 },
		{ "{\"name\":\"_http._tcp.web.default.svc.cluster.local\",\"type\":33,"
		  "\"ttl\":0,\"data\":\"0 0 80 web\"}", 1 },
		{ "{\"name\":\"1.1.96.10.in-addr.arpa\",\"type\":12,\"ttl\":2147483647,"
		  "\"data\":\"web\"}", 1 },
		{ "{\"name\":\"*.wild.example\",\"type\":16,\"ttl\":1,\"data\":\"\"}", 1 },
		{ "{\"name\":\"web.\",\"type\":1,\"ttl\":5,\"data\":\"x\"}", 0 },
		{ "{\"name\":\"a..b\",\"type\":1,\"ttl\":5,\"data\":\"x\"}", 0 },
		{ "{\"name\":\"a b\",\"type\":1,\"ttl\":5,\"data\":\"x\"}", 0 },
		{ "{\"name\":\"\",\"type\":1,\"ttl\":5,\"data\":\"x\"}", 0 },
		{ "{\"name\":\"a\",\"type\":6,\"ttl\":5,\"data\":\"x\"}", 0 },
		{ "{\"name\":\"a\",\"type\":1.5,\"ttl\":5,\"data\":\"x\"}", 0 },
		{ "{\"name\":\"a\",\"type\":1,\"ttl\":-1,\"data\":\"x\"}", 0 },
		{ "{\"name\":\"a\",\"type\":1,\"ttl\":2147483648,\"data\":\"x\"}", 0 },
		{ "{\"name\":\"a\",\"type\":1,\"ttl\":5}", 0 },
		{ "{\"name\":\"a\",\"type\":1,\"ttl\":5,\"data\":5}", 0 },
		{ "[1]", 0 },
	};
	struct kb_dns_record r;
	char name[300], json[2200];
	cJSON *j;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		j = cJSON_Parse(t[i].json);
		ok(j && (kb_msg_dns_record(j, &r) == 0) == t[i].ok);
		cJSON_Delete(j);
	}
	/* A label of 64, a name of 254, data over KB_DNS_DATA_MAX. */
	memset(name, 'a', 64);
	name[64] = '\0';
	snprintf(json, sizeof(json), "{\"name\":\"%s\",\"type\":1,\"ttl\":1,\"data\":\"\"}",
	    name);
	ok((j = cJSON_Parse(json)) && kb_msg_dns_record(j, &r) < 0);
	cJSON_Delete(j);
	memset(name, 'a', 254);
	name[63] = name[127] = name[191] = '.';
	name[254] = '\0';
	ok(!kb_dns_name_ok(name) && (name[253] = '\0', kb_dns_name_ok(name)));
	memset(json, 0, sizeof(json));
	snprintf(json, sizeof(json), "{\"name\":\"a\",\"type\":16,\"ttl\":1,\"data\":\"");
	memset(json + strlen(json), '0', KB_DNS_DATA_MAX + 2);
	strcat(json, "\"}");
	ok((j = cJSON_Parse(json)) && kb_msg_dns_record(j, &r) < 0);
	cJSON_Delete(j);
	j = cJSON_Parse("{\"name\":\"Web.Default\",\"type\":33,\"ttl\":7,\"data\":\"1 2 3 x\"}");
	ok(j && kb_msg_dns_record(j, &r) == 0 && !strcmp(r.name, "Web.Default") && r.type == 33 &&
	    r.ttl == 7 && !strcmp(r.data, "1 2 3 x"));
	cJSON_Delete(j);
}

int
main(void)
{
	enum kb_msg_type t, back;
	char err[200], *text, big[300];
	unsigned i, j;
	cJSON *m, *r;
	int rc;

	/* The table: every type has a name, its own, found again. */
	for (i = 0; i < KB_MSG__COUNT; i++) {
		t = (enum kb_msg_type)i;
		ok(kb_msg_name(t) != NULL && kb_msg_lookup(kb_msg_name(t), &back) == 0 && back == t);
		for (j = 0; j < i; j++)
			ok(strcmp(kb_msg_name(t), kb_msg_name((enum kb_msg_type)j)) != 0);
	}
	ok(kb_msg_name(KB_MSG__COUNT) == NULL && kb_msg_new(KB_MSG__COUNT) == NULL);
	ok(kb_msg_lookup("frobnicate", &back) < 0);

	/* Every type round-trips: built, sent as text, parsed, valid. */
	for (i = 0; i < KB_MSG__COUNT; i++) {
		t = (enum kb_msg_type)i;
		m = valid(t);
		text = cJSON_PrintUnformatted(m);
		cJSON_Delete(m);
		ok(strncmp(text, "{\"type\":\"", 9) == 0 &&
		    strncmp(text + 9, kb_msg_name(t), strlen(kb_msg_name(t))) == 0);
		back = KB_MSG__COUNT;
		rc = parse(text, &back, err, sizeof(err));
		ok(rc == 0 && back == t);
		if (rc)
			printf("# %s: %s\n", text, err);
		free(text);
	}

	/* The same wire text as the handlers' results always had. */
	r = kb_msg_result(3, 0, 409, "taken");
	text = cJSON_PrintUnformatted(r);
	ok(!strcmp(text, "{\"type\":\"result\",\"id\":3,\"ok\":false,\"status\":409,"
	    "\"error\":\"taken\"}"));
	free(text);
	cJSON_Delete(r);
	r = kb_msg_result(4, 1, 0, NULL);
	text = cJSON_PrintUnformatted(r);
	ok(!strcmp(text, "{\"type\":\"result\",\"id\":4,\"ok\":true}"));
	free(text);
	cJSON_Delete(r);

	/* No type, or one nobody defined: a protocol error. */
	ok(refused("{\"id\":1}", -1, "a control message without a \"type\" string"));
	ok(refused("{\"type\":5}", -1, "a control message without a \"type\" string"));
	ok(refused("{\"type\":\"frobnicate\",\"id\":1}", -1,
	    "unknown control message type \"frobnicate\""));
	ok(refused("{\"type\":\"Resolve\",\"id\":1}", -1,
	    "unknown control message type \"Resolve\""));

	/* resolve: id a u32, the name 1-253 characters, qtype A or AAAA. */
	ok(refused("{\"type\":\"resolve\",\"name\":\"a\",\"qtype\":1}", -1,
	    "resolve: \"id\" must be an integer 0-4294967295"));
	ok(refused("{\"type\":\"resolve\",\"id\":4294967296,\"name\":\"a\",\"qtype\":1}", -1,
	    "resolve: \"id\" must be an integer 0-4294967295"));
	ok(refused("{\"type\":\"resolve\",\"id\":-1,\"name\":\"a\",\"qtype\":1}", -1,
	    "resolve: \"id\" must be an integer 0-4294967295"));
	ok(refused("{\"type\":\"resolve\",\"id\":1.5,\"name\":\"a\",\"qtype\":1}", -1,
	    "resolve: \"id\" must be an integer 0-4294967295"));
	ok(refused("{\"type\":\"resolve\",\"id\":\"1\",\"name\":\"a\",\"qtype\":1}", -1,
	    "resolve: \"id\" must be an integer 0-4294967295"));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"\",\"qtype\":1}", -1,
	    "resolve: \"name\" must be a string of 1-253 characters"));
	memset(big, 'a', 254);
	big[254] = '\0';
	m = valid(KB_MSG_RESOLVE);
	cJSON_ReplaceItemInObject(m, "name", cJSON_CreateString(big));
	ok(kb_msg_parse(m, &t, err, sizeof(err)) == -1 &&
	    !strcmp(err, "resolve: \"name\" must be a string of 1-253 characters"));
	cJSON_Delete(m);
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":[\"a\"],\"qtype\":1}", -1,
	    "resolve: \"name\" must be a string of 1-253 characters"));
	/* Types with names the manager decodes, and types whose data holds
	 * no compressible name; not SOA, OPT, the meta types. */
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":5}", 0, ""));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":33}", 0, ""));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":16}", 0, ""));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":257}", 0, ""));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":6}", -1,
	    "resolve: qtype 6 cannot be asked"));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":41}", -1,
	    "resolve: qtype 41 cannot be asked"));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":255}", -1,
	    "resolve: qtype 255 cannot be asked"));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":35}", -1,
	    "resolve: qtype 35 cannot be asked"));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":1.5}", -1,
	    "resolve: \"qtype\" must be an integer 1-65535"));
	ok(refused("{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":65536}", -1,
	    "resolve: \"qtype\" must be an integer 1-65535"));

	/* resolved: records, a list of at most KB_DNS_RECORDS_MAX. */
	ok(refused("{\"type\":\"resolved\",\"id\":1,\"rcode\":0,\"records\":{}}", -1,
	    "resolved: \"records\" must be a list of 0-32 elements"));
	test_records();

	/* resolved: any numeric id (an unknown one is ignored), rcode 0-15. */
	ok(refused("{\"type\":\"resolved\",\"id\":1e300,\"rcode\":0}", 0, ""));
	ok(refused("{\"type\":\"resolved\",\"id\":\"1\",\"rcode\":0}", -1,
	    "resolved: \"id\" must be a number"));
	ok(refused("{\"type\":\"resolved\",\"id\":1,\"rcode\":16}", -1,
	    "resolved: \"rcode\" must be an integer 0-15"));
	ok(refused("{\"type\":\"resolved\",\"id\":1}", -1,
	    "resolved: \"rcode\" must be an integer 0-15"));
	ok(refused("{\"type\":\"resolved\",\"id\":1,\"rcode\":0,\"ttl\":\"5\"}", -1,
	    "resolved: \"ttl\" must be a number"));
	ok(refused("{\"type\":\"resolved\",\"id\":1,\"rcode\":0,\"addrs\":\"10.0.0.1\"}", -1,
	    "resolved: \"addrs\" must be a list of 0-1024 elements"));

	/* intercept: invalid fields are answered (400), with the old texts. */
	ok(refused("{\"type\":\"intercept\",\"workload\":\"web\",\"namespace\":\"default\","
	    "\"port\":80}", -1, "intercept: \"id\" must be an integer 0-4294967295"));
	ok(refused("{\"type\":\"intercept\",\"id\":1,\"workload\":\"Web\",\"namespace\":\"default\","
	    "\"port\":80}", 400, "invalid workload or namespace name"));
	ok(refused("{\"type\":\"intercept\",\"id\":1,\"workload\":\"web\",\"port\":80}", 400,
	    "invalid workload or namespace name"));
	ok(refused("{\"type\":\"intercept\",\"id\":1,\"workload\":\"web\",\"namespace\":\"default\","
	    "\"port\":0}", 400, "port must be 1-65535"));
	ok(refused("{\"type\":\"intercept\",\"id\":1,\"workload\":\"web\",\"namespace\":\"default\","
	    "\"port\":\"80\"}", 400, "port must be 1-65535"));
	ok(refused("{\"type\":\"intercept\",\"id\":1,\"workload\":\"web\",\"namespace\":\"default\","
	    "\"port\":65536}", 400, "port must be 1-65535"));
	ok(refused("{\"type\":\"intercept\",\"id\":1,\"workload\":\"web\",\"namespace\":\"default\","
	    "\"port\":80,\"headers\":{}}", 400, "headers must be a list"));
	ok(refused("{\"type\":\"intercept\",\"id\":1,\"workload\":\"web\",\"namespace\":\"default\","
	    "\"port\":80,\"headers\":null}", 0, ""));
	m = valid(KB_MSG_INTERCEPT);
	for (i = 1; i <= KB_MAX_MATCH_HEADERS; i++) {
		r = cJSON_GetObjectItemCaseSensitive(m, "headers");
		ok(kb_msg_parse(m, &t, err, sizeof(err)) == 0 && cJSON_GetArraySize(r) == (int)i);
		cJSON_AddItemToArray(r, cJSON_Duplicate(cJSON_GetArrayItem(r, 0), 1));
	}
	ok(kb_msg_parse(m, &t, err, sizeof(err)) == 400 && !strcmp(err, "too many headers"));
	cJSON_Delete(m);

	ok(refused("{\"type\":\"leave\",\"id\":1,\"workload\":\"web\"}", 400,
	    "workload and namespace are required"));
	ok(refused("{\"type\":\"leave-all\"}", -1,
	    "leave-all: \"id\" must be an integer 0-4294967295"));
	/* "logs": the manager's, or a sidecar's (workload and namespace). */
	ok(refused("{\"type\":\"logs\",\"id\":1,\"workload\":\"web\",\"namespace\":\"default\","
	    "\"replica\":63}", 0, ""));
	ok(refused("{\"type\":\"logs\",\"id\":1,\"workload\":\"web\"}", 400,
	    "logs: workload and namespace go together (and replica with them)"));
	ok(refused("{\"type\":\"logs\",\"id\":1,\"replica\":0}", 400,
	    "logs: workload and namespace go together (and replica with them)"));
	ok(refused("{\"type\":\"logs\",\"id\":1,\"workload\":\"web\",\"namespace\":\"default\","
	    "\"replica\":64}", 400, "replica must be 0-63"));
	ok(refused("{\"type\":\"logs\",\"id\":1,\"workload\":\"../x\",\"namespace\":\"default\"}",
	    400, "invalid workload or namespace name"));
	ok(refused("{\"type\":\"logs\"}", -1, "logs: \"id\" must be an integer 0-4294967295"));
	/* "loglevel": debug or info, nothing else. */
	ok(refused("{\"type\":\"loglevel\",\"level\":\"info\"}", 0, ""));
	ok(refused("{\"type\":\"loglevel\",\"level\":\"trace\"}", -1,
	    "loglevel: level must be debug or info"));
	ok(refused("{\"type\":\"loglevel\"}", -1, "loglevel: \"level\" must be a string "
	    "of 1-5 characters"));
	ok(refused("{\"type\":\"list\",\"id\":1,\"namespace\":7}", 400,
	    "namespace must be a string"));
	ok(refused("{\"type\":\"list\",\"id\":1}", 0, ""));

	/* preview-create: the optional fields, null or in range. */
	ok(refused("{\"type\":\"preview-create\",\"id\":1,\"workload\":\"web\","
	    "\"namespace\":\"default\",\"ttl\":0}", 400, "ttl must be 1 second to 30 days"));
	ok(refused("{\"type\":\"preview-create\",\"id\":1,\"workload\":\"web\","
	    "\"namespace\":\"default\",\"ttl\":2592001}", 400, "ttl must be 1 second to 30 days"));
	ok(refused("{\"type\":\"preview-create\",\"id\":1,\"workload\":\"web\","
	    "\"namespace\":\"default\",\"ttl\":null,\"service_port\":70000}", 400,
	    "service_port must be 1-65535"));
	ok(refused("{\"type\":\"preview-create\",\"id\":1,\"workload\":\"web\","
	    "\"namespace\":\"default\",\"host\":5}", 400,
	    "host must be a host name or address, with an optional :port"));
	ok(refused("{\"type\":\"preview-create\",\"id\":1,\"workload\":\"web\","
	    "\"namespace\":\"-x\"}", 400, "invalid workload or namespace name"));
	ok(refused("{\"type\":\"preview-list\",\"id\":1,\"namespace\":[]}", 400,
	    "namespace must be a string"));
	ok(refused("{\"type\":\"preview-remove\",\"id\":1}", 404,
	    "no such preview (unknown, expired or removed)"));

	/* The manager's other messages. */
	ok(refused("{\"type\":\"result\",\"ok\":true}", -1, "result: \"id\" must be a number"));
	ok(refused("{\"type\":\"replaced\",\"by\":5}", -1,
	    "replaced: \"by\" must be a string of 0-253 characters"));
	ok(refused("{\"type\":\"replaced\"}", 0, ""));
	ok(refused("{\"type\":\"intercepts\"}", -1,
	    "intercepts: \"intercepts\" must be a list of 0-4096 elements"));
	ok(refused("{\"type\":\"intercepts\",\"intercepts\":{}}", -1,
	    "intercepts: \"intercepts\" must be a list of 0-4096 elements"));
	ok(refused("{\"type\":\"cluster\",\"subnets\":[]}", -1,
	    "cluster: \"namespaces\" must be a list of 0-256 elements"));
	ok(refused("{\"type\":\"cluster\",\"subnets\":\"10.0.0.0/8\",\"namespaces\":[]}", -1,
	    "cluster: \"subnets\" must be a list of 0-64 elements"));
	{
		char many[1200];
		size_t off = (size_t)snprintf(many, sizeof(many),
		    "{\"type\":\"cluster\",\"namespaces\":[],\"subnets\":[");
		for (i = 0; i < 65; i++)
			off += (size_t)snprintf(many + off, sizeof(many) - off, "%s\"10.%u.0.0/16\"",
			    i ? "," : "", i);
		snprintf(many + off, sizeof(many) - off, "]}");
		ok(refused(many, -1, "cluster: \"subnets\" must be a list of 0-64 elements"));
	}
	return ok_done();
}
