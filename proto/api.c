/* Checks of control API requests (proto/API.md), so that the daemon relays
 * to the manager only fields it has read and found well formed. */
#include "api.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "netplan.h"
#include "util.h"
#include "vnat.h"

enum ftype { T_STRING, T_NUMBER, T_BOOL, T_OBJECT, T_HEADERS, T_KUBE, T_CIDRS };
enum fcheck { C_NONE, C_LABEL, C_PATH_PREFIX, C_HOST, C_TOKEN, C_ADDRESS, C_VSUBNET,
    C_LEVEL };

struct field {
	const char *name;
	enum ftype type;
	int required;
	long min, max;		/* T_NUMBER */
	enum fcheck check;	/* T_STRING */
};

#define END { NULL, 0, 0, 0, 0, 0 }

static const struct field connect_fields[] = {
	{ "profile", T_OBJECT, 1, 0, 0, C_NONE },
	{ "namespace", T_STRING, 0, 0, 0, C_LABEL },
	{ "replace", T_BOOL, 0, 0, 0, C_NONE },
	{ "kube", T_KUBE, 0, 0, 0, C_NONE },
	{ "never_proxy", T_CIDRS, 0, 0, 0, C_NONE },
	{ "also_proxy", T_CIDRS, 0, 0, 0, C_NONE },
	{ "virtual_subnet", T_STRING, 0, 0, 0, C_VSUBNET },
	END
};
static const struct field intercept_fields[] = {
	{ "workload", T_STRING, 1, 0, 0, C_LABEL },
	{ "namespace", T_STRING, 0, 0, 0, C_LABEL },
	{ "port", T_NUMBER, 1, 1, 65535, C_NONE },
	{ "headers", T_HEADERS, 0, 0, 0, C_NONE },
	{ "path_prefix", T_STRING, 0, 0, 0, C_PATH_PREFIX },
	{ "address", T_STRING, 0, 0, 0, C_ADDRESS },
	END
};
static const struct field leave_fields[] = {
	{ "workload", T_STRING, 1, 0, 0, C_LABEL },
	{ "namespace", T_STRING, 0, 0, 0, C_LABEL },
	END
};
static const struct field preview_create_fields[] = {
	{ "workload", T_STRING, 1, 0, 0, C_LABEL },
	{ "namespace", T_STRING, 0, 0, 0, C_LABEL },
	{ "ttl", T_NUMBER, 0, 1, KB_API_TTL_MAX, C_NONE },
	{ "service_port", T_NUMBER, 0, 1, 65535, C_NONE },
	{ "host", T_STRING, 0, 0, 0, C_HOST },
	END
};
static const struct field preview_remove_fields[] = {
	{ "token", T_STRING, 1, 0, 0, C_TOKEN },
	END
};
static const struct field loglevel_fields[] = {
	{ "level", T_STRING, 1, 0, 0, C_LEVEL },
	END
};
static const struct field sidecar_log_fields[] = {
	{ "workload", T_STRING, 1, 0, 0, C_LABEL },
	{ "namespace", T_STRING, 1, 0, 0, C_LABEL },
	{ "replica", T_NUMBER, 0, 0, KB_LOGS_REPLICA_MAX, C_NONE },
	END
};
static const struct field no_fields[] = { END };

static const struct {
	const char *path;
	const struct field *fields;
} endpoints[] = {
	{ KB_API_CONNECT, connect_fields },
	{ KB_API_QUIT, no_fields },
	{ KB_API_INTERCEPT, intercept_fields },
	{ KB_API_LEAVE, leave_fields },
	{ KB_API_PREVIEW_CREATE, preview_create_fields },
	{ KB_API_PREVIEW_REMOVE, preview_remove_fields },
	{ KB_API_LOGLEVEL, loglevel_fields },
	{ KB_API_SIDECAR_LOG, sidecar_log_fields },
};

int
kb_api_header_name(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > KB_API_HDR_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!kb_http_tchar(s[i]))
			return 0;
	return 1;
}

/* RFC 9110 field-value without the spaces HTTP strips (such a value could
 * never match): no control character but HTAB, so no CR or LF. */
int
kb_api_header_value(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > KB_API_HDR_VALUE_MAX || s[0] == ' ' || s[0] == '\t' ||
	    s[n - 1] == ' ' || s[n - 1] == '\t')
		return 0;
	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
			return 0;
	return 1;
}

/* An absolute path as it appears on a request line: printable ASCII. */
int
kb_api_path_prefix(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > KB_API_PATH_PREFIX_MAX || s[0] != '/')
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

/* A Host header value: a name or address, maybe with :port. */
int
kb_api_host(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= KB_API_HOST_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_") == n;
}

int
kb_api_token(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= KB_API_TOKEN_MAX &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") == n;
}

int
kb_api_address(const char *s, uint16_t port, struct sockaddr_storage *sa, socklen_t *salen)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
	socklen_t len = sizeof(ss);
	uint32_t a;

	if (!strcmp(s, "localhost")) {
		;
	} else if (inet_pton(AF_INET, s, &sin.sin_addr) == 1) {
		a = ntohl(sin.sin_addr.s_addr);
		if (a == INADDR_ANY || a == INADDR_BROADCAST || IN_MULTICAST(a))
			return 0;
		memcpy(&ss, &sin, sizeof(sin));
		len = sizeof(sin);
	} else if (inet_pton(AF_INET6, s, &sin6.sin6_addr) == 1) {
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr) ||
		    IN6_IS_ADDR_MULTICAST(&sin6.sin6_addr))
			return 0;
		memcpy(&ss, &sin6, sizeof(sin6));
		len = sizeof(sin6);
	} else
		return 0;
	if (sa) {
		*sa = ss;
		*salen = len;
	}
	return 1;
}

int
kb_api_check_raw(const char *txt, size_t len, char *err, size_t errlen)
{
	size_t i;
	int in_string = 0;

	if (memchr(txt, '\0', len)) {
		snprintf(err, errlen, "request body contains a NUL byte");
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (txt[i] == '"') {
			in_string = !in_string;
		} else if (in_string && txt[i] == '\\' && i + 1 < len) {
			if (txt[i + 1] == 'u' && i + 5 < len && !strncmp(txt + i + 2, "0000", 4)) {
				snprintf(err, errlen, "request body contains a NUL character "
				    "(\\u0000)");
				return -1;
			}
			i++;	/* the escaped character: \" does not end the string */
		}
	}
	return 0;
}

static const char *
check_string(const struct field *f, const char *s)
{
	struct kb_cidr c;

	switch (f->check) {
	case C_LABEL:
		return kb_dns_label(s) ? NULL :
		    "must be a DNS label (1-63 lower-case letters, digits and '-')";
	case C_PATH_PREFIX:
		return kb_api_path_prefix(s) ? NULL : "must start with / and hold at most 1024 "
		    "printable ASCII characters (no spaces)";
	case C_HOST:
		return kb_api_host(s) ? NULL : "must be a host name or address, with an "
		    "optional :port (at most 255 characters)";
	case C_TOKEN:
		return kb_api_token(s) ? NULL : "must be at most 64 lower-case letters and digits";
	case C_ADDRESS:
		return kb_api_address(s, 0, NULL, NULL) ? NULL : "must be localhost or an IPv4 "
		    "or IPv6 address (not unspecified, multicast or broadcast)";
	case C_VSUBNET:
		return kb_vnat_user_subnet(s, &c, NULL, 0) < 0 ? "must be off or a range "
		    "A.B.C.D/N from /8 to /30 (not loopback, link-local or multicast)" : NULL;
	case C_LEVEL:
		return !strcmp(s, "debug") || !strcmp(s, "info") ? NULL : "must be debug or info";
	case C_NONE:
		break;
	}
	return NULL;
}

/* headers: [{"name": TOKEN, "value": VALUE}, ...], at most KB_API_HEADERS_MAX. */
static int
check_headers(const cJSON *v, char *err, size_t errlen)
{
	const cJSON *h, *m;
	int n = 0;

	if (!cJSON_IsArray(v)) {
		snprintf(err, errlen, "headers must be a list");
		return -1;
	}
	cJSON_ArrayForEach(h, v) {
		const cJSON *name = NULL, *value = NULL;

		if (++n > KB_API_HEADERS_MAX) {
			snprintf(err, errlen, "at most %d headers", KB_API_HEADERS_MAX);
			return -1;
		}
		if (!cJSON_IsObject(h)) {
			snprintf(err, errlen, "headers[%d] must be an object", n - 1);
			return -1;
		}
		cJSON_ArrayForEach(m, h) {
			if (m->string && !strcmp(m->string, "name") && !name) {
				name = m;
			} else if (m->string && !strcmp(m->string, "value") && !value) {
				value = m;
			} else {
				snprintf(err, errlen, "headers[%d] may hold only name and value, "
				    "once each", n - 1);
				return -1;
			}
		}
		if (!cJSON_IsString(name) || !kb_api_header_name(name->valuestring)) {
			snprintf(err, errlen, "headers[%d].name must be an HTTP token of at most "
			    "%d characters", n - 1, KB_API_HDR_NAME_MAX);
			return -1;
		}
		if (!cJSON_IsString(value) || !kb_api_header_value(value->valuestring)) {
			snprintf(err, errlen, "headers[%d].value must be 1-%d characters without "
			    "CR, LF or other control characters, not starting or ending with a "
			    "space or tab", n - 1, KB_API_HDR_VALUE_MAX);
			return -1;
		}
	}
	return 0;
}

/* A member name fit to repeat in an error: printable ASCII, cut short. */
static const char *
shown_name(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 4 < len; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? '?' : s[i];
	if (s[i])
		memcpy(buf + i, "...", 4);
	else
		buf[i] = '\0';
	return buf;
}

/* Printable ASCII (no spaces at either end), 1 to max characters. */
static int
printable(const char *s, size_t max)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > max || s[0] == ' ' || s[n - 1] == ' ')
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

/* kube: what the CLI read from the kubeconfig, shown by status only:
 * {"context", "cluster", "server", "install_namespace", "via"}, all
 * optional strings. */
static int
check_kube(const cJSON *v, char *err, size_t errlen)
{
	const cJSON *m;
	const char *s;
	char buf[40];

	if (!cJSON_IsObject(v)) {
		snprintf(err, errlen, "kube must be an object");
		return -1;
	}
	cJSON_ArrayForEach(m, v) {
		if (!cJSON_IsString(m)) {
			snprintf(err, errlen, "kube.%s must be a string",
			    shown_name(m->string, buf, sizeof(buf)));
			return -1;
		}
		s = m->valuestring;
		if (!strcmp(m->string, "context") || !strcmp(m->string, "cluster")) {
			if (printable(s, KB_API_KUBE_NAME_MAX))
				continue;
			snprintf(err, errlen, "kube.%s must be 1-%d printable characters",
			    m->string, KB_API_KUBE_NAME_MAX);
		} else if (!strcmp(m->string, "server")) {
			if (printable(s, KB_API_KUBE_SERVER_MAX) && !strncmp(s, "https://", 8) &&
			    !strchr(s, ' '))
				continue;
			snprintf(err, errlen, "kube.server must be an https:// URL of at most %d "
			    "characters", KB_API_KUBE_SERVER_MAX);
		} else if (!strcmp(m->string, "install_namespace")) {
			if (kb_dns_label(s))
				continue;
			snprintf(err, errlen, "kube.install_namespace must be a DNS label");
		} else if (!strcmp(m->string, "via")) {
			if (!strcmp(s, "port-forward") || !strcmp(s, "address"))
				continue;
			snprintf(err, errlen, "kube.via must be port-forward or address");
		} else {
			snprintf(err, errlen, "unknown field \"kube.%s\"",
			    shown_name(m->string, buf, sizeof(buf)));
		}
		return -1;
	}
	return 0;
}

/* never_proxy, also_proxy: ["A.B.C.D/N", ...], at most KB_NETPLAN_USER_MAX,
 * each a range kb_netplan_user_cidr accepts, none twice. */
static int
check_cidrs(const char *name, const cJSON *v, char *err, size_t errlen)
{
	struct kb_cidr seen[KB_NETPLAN_USER_MAX], c;
	const cJSON *e;
	char why[160];
	size_t i, n = 0;

	if (!cJSON_IsArray(v)) {
		snprintf(err, errlen, "%s must be a list of CIDR ranges", name);
		return -1;
	}
	cJSON_ArrayForEach(e, v) {
		if (n >= KB_NETPLAN_USER_MAX) {
			snprintf(err, errlen, "%s: at most %d ranges", name, KB_NETPLAN_USER_MAX);
			return -1;
		}
		if (!cJSON_IsString(e)) {
			snprintf(err, errlen, "%s[%zu] must be a string", name, n);
			return -1;
		}
		if (kb_netplan_user_cidr(e->valuestring, &c, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s[%zu]: %s", name, n, why);
			return -1;
		}
		for (i = 0; i < n; i++)
			if (seen[i].addr == c.addr && seen[i].prefix == c.prefix) {
				snprintf(err, errlen, "%s lists %s twice", name, e->valuestring);
				return -1;
			}
		seen[n++] = c;
	}
	return 0;
}

static int
check_field(const struct field *f, const cJSON *v, char *err, size_t errlen)
{
	const char *why;
	double x;

	if (cJSON_IsNull(v)) {
		if (!f->required)
			return 0;
		snprintf(err, errlen, "%s is missing", f->name);
		return -1;
	}
	switch (f->type) {
	case T_STRING:
		if (!cJSON_IsString(v)) {
			snprintf(err, errlen, "%s must be a string", f->name);
			return -1;
		}
		if ((why = check_string(f, v->valuestring)) != NULL) {
			snprintf(err, errlen, "%s %s", f->name, why);
			return -1;
		}
		return 0;
	case T_NUMBER:
		x = v->valuedouble;
		/* In range first (NaN is not), then whole. */
		if (!cJSON_IsNumber(v) || !(x >= f->min && x <= f->max) || x != (double)(long)x) {
			snprintf(err, errlen, "%s must be an integer from %ld to %ld", f->name,
			    f->min, f->max);
			return -1;
		}
		return 0;
	case T_BOOL:
		if (!cJSON_IsBool(v)) {
			snprintf(err, errlen, "%s must be true or false", f->name);
			return -1;
		}
		return 0;
	case T_OBJECT:
		if (!cJSON_IsObject(v)) {
			snprintf(err, errlen, "%s must be an object", f->name);
			return -1;
		}
		return 0;
	case T_HEADERS:
		return check_headers(v, err, errlen);
	case T_KUBE:
		return check_kube(v, err, errlen);
	case T_CIDRS:
		return check_cidrs(f->name, v, err, errlen);
	}
	return 0;
}


int
kb_api_check(const char *path, const cJSON *body, char *err, size_t errlen)
{
	const struct field *fields = NULL, *f;
	const cJSON *m, *p;
	char buf[40];
	size_t i;

	for (i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++)
		if (!strcmp(path, endpoints[i].path))
			fields = endpoints[i].fields;
	if (!fields) {
		snprintf(err, errlen, "no such endpoint");
		return -1;
	}
	/* No body (NULL) is an object without members. */
	if (body && !cJSON_IsObject(body)) {
		snprintf(err, errlen, "request body is not a JSON object");
		return -1;
	}
	/* Every member known and given once: cJSON would find only the first
	 * of two, and the manager must never see what was not checked. */
	for (m = body ? body->child : NULL; m; m = m->next) {
		for (f = fields; f->name && strcmp(f->name, m->string); f++)
			;
		if (!f->name) {
			snprintf(err, errlen, "unknown field \"%s\"",
			    shown_name(m->string, buf, sizeof(buf)));
			return -1;
		}
		for (p = body->child; p != m; p = p->next)
			if (!strcmp(p->string, m->string)) {
				snprintf(err, errlen, "%s is given twice", f->name);
				return -1;
			}
		if (check_field(f, m, err, errlen) < 0)
			return -1;
	}
	for (f = fields; f->name; f++) {
		if (f->required && (!body || !cJSON_GetObjectItemCaseSensitive(body, f->name))) {
			snprintf(err, errlen, "%s is missing", f->name);
			return -1;
		}
	}
	return 0;
}
