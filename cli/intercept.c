/* kbridge intercept, leave and list: the CLI side of the daemon's
 * /v1/intercept, /v1/leave and /v1/list. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "client.h"
#include "cmd.h"
#include "envfile.h"

/* The daemon asks the manager, which may ask a sidecar. */
#define API_TIMEOUT_MS	20000
#define HEADERS_MAX	16
#define HDR_NAME_MAX	256
/* How much of a bad argument an error message repeats. */
#define SHOWN_MAX	80

enum { OPT_PATH_PREFIX = 256 };

/* Copy s for a one-line message: control characters become '?'. */
static const char *
shown(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 4 < len; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' :
		    s[i];
	strcpy(buf + i, s[i] ? "..." : "");
	return buf;
}

/* Print a string that came from the cluster (other users' names and
 * header values) without letting it move the cursor or reprogram the
 * terminal: C0, DEL and the UTF-8 C1 controls become '?'. Returns the
 * number of columns used, close enough for padding. */
static size_t
put(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;

	for (; *p; p++, n++) {
		if (*p < 0x20 || *p == 0x7f)
			putchar('?');
		else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			putchar('?');
			p++;
		} else {
			putchar(*p);
			if ((*p & 0xc0) == 0x80)
				n--;
		}
	}
	return n;
}

static void
put_padded(const char *s, size_t width)
{
	size_t n = put(s);

	while (n++ < width)
		putchar(' ');
}

/* One request; on a 2xx answer with a JSON object 0 and *resp, else -1
 * after a one-line error naming what failed. */
static int
call(const char *what, const char *method, const char *path,
    const cJSON *body, cJSON **resp)
{
	char err[1024];
	long status;
	int rc;

	rc = kb_api(method, path, body, API_TIMEOUT_MS, &status, resp, err,
	    sizeof(err));
	if (rc == KB_API_DOWN) {
		errorx("not connected (run 'kbridge connect' first)");
		return -1;
	}
	if (rc == KB_API_ERROR && status == 404)
		snprintf(err, sizeof(err), "kbridged does not know %s; it is "
		    "older than this kbridge (restart it: 'kbridge quit', "
		    "then 'kbridge connect')", path);
	else if (rc == 0 && (status < 200 || status > 299)) {
		kb_api_errmsg(status, *resp, err, sizeof(err));
		rc = KB_API_ERROR;
	} else if (rc == 0 && !cJSON_IsObject(*resp)) {
		snprintf(err, sizeof(err), "kbridged answered with no JSON "
		    "object");
		rc = KB_API_ERROR;
	}
	if (rc != 0) {
		errorx("%s failed: %s", what, err);
		cJSON_Delete(*resp);
		*resp = NULL;
		return -1;
	}
	return 0;
}

/* The WORKLOAD operand: exactly one, a valid name. NULL after a usage
 * error. */
static const char *
workload_arg(int argc, char **argv)
{
	char buf[SHOWN_MAX];
	const char *w;

	if (optind >= argc) {
		errorx("%s: missing WORKLOAD (see 'kbridge %s --help')",
		    argv[0], argv[0]);
		return NULL;
	}
	w = argv[optind++];
	if (no_operands(argc, argv) == -1)
		return NULL;
	if (!valid_label(w)) {
		errorx("%s: invalid workload '%s' (%s)", argv[0],
		    shown(w, buf, sizeof(buf)), strchr(w, '.') ?
		    "give its namespace with -n" :
		    "a name of lower-case letters, digits and '-'");
		return NULL;
	}
	return w;
}

static int
namespace_arg(const char *cmd, const char *ns)
{
	char buf[SHOWN_MAX];

	if (ns && !valid_label(ns)) {
		errorx("%s: invalid namespace '%s'", cmd,
		    shown(ns, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

/* RFC 9110 tchar. */
static int
tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* --http-header NAME=VALUE onto headers as {"name","value"}; the name in
 * lower case, as the sidecar compares it. -1 after a usage error. */
static int
add_header(cJSON *headers, const char *arg)
{
	char name[HDR_NAME_MAX + 1], buf[SHOWN_MAX];
	const char *eq = strchr(arg, '='), *v;
	cJSON *h;
	size_t i, n, vlen;

	if (eq == NULL || eq == arg) {
		errorx("--http-header must be NAME=VALUE, not '%s'",
		    shown(arg, buf, sizeof(buf)));
		return -1;
	}
	if ((n = (size_t)(eq - arg)) > HDR_NAME_MAX) {
		errorx("--http-header: name longer than %d characters",
		    HDR_NAME_MAX);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (!tchar(arg[i])) {
			snprintf(name, sizeof(name), "%.*s", (int)n, arg);
			errorx("--http-header: '%s' is not a valid header name",
			    shown(name, buf, sizeof(buf)));
			return -1;
		}
		name[i] = arg[i] >= 'A' && arg[i] <= 'Z' ? arg[i] - 'A' + 'a' :
		    arg[i];
	}
	name[n] = '\0';
	v = eq + 1;
	vlen = strlen(v);
	/* Argument strings cannot hold NUL; CR and LF would split a header. */
	if (strpbrk(v, "\r\n")) {
		errorx("header value must not contain CR or LF");
		return -1;
	}
	for (i = 0; i < vlen; i++)
		if (((unsigned char)v[i] < 0x20 && v[i] != '\t') ||
		    v[i] == 0x7f) {
			errorx("header value must not contain control "
			    "characters");
			return -1;
		}
	if (vlen == 0) {
		errorx("--http-header %s: empty value", name);
		return -1;
	}
	/* HTTP strips them, so such a value could never match. */
	if (v[0] == ' ' || v[0] == '\t' || v[vlen - 1] == ' ' ||
	    v[vlen - 1] == '\t') {
		errorx("header value must not start or end with a space or "
		    "tab");
		return -1;
	}
	if ((h = cJSON_CreateObject()) == NULL ||
	    !cJSON_AddItemToArray(headers, h) ||
	    cJSON_AddStringToObject(h, "name", name) == NULL ||
	    cJSON_AddStringToObject(h, "value", v) == NULL) {
		errorx("out of memory");
		exit(1);
	}
	return 0;
}

static int
path_prefix_arg(const char *p)
{
	for (; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			errorx("--http-path-prefix must not contain spaces, "
			    "CR, LF or other control characters");
			return -1;
		}
		if ((unsigned char)*p >= 0x80) {
			errorx("--http-path-prefix must be ASCII "
			    "(percent-encode other characters)");
			return -1;
		}
	}
	return 0;
}

static int
port_arg(const char *s, long *port)
{
	char *end, buf[SHOWN_MAX];

	errno = 0;
	*port = strtol(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno ||
	    *port < 1 || *port > 65535) {
		errorx("--port must be a number from 1 to 65535, not '%s'",
		    shown(s, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

/* Print the match's headers as "a: 1<sep>b: 2"; how many there were. */
static size_t
put_headers(const cJSON *m, const char *sep)
{
	const cJSON *h;
	const char *name, *value;
	size_t n = 0;

	cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(m, "headers")) {
		if ((name = jstr(h, "name")) == NULL)
			continue;
		value = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(h, "value"));
		if (n++)
			fputs(sep, stdout);
		put(name);
		fputs(": ", stdout);
		put(value ? value : "");
	}
	return n;
}

static size_t
count_headers(const cJSON *m)
{
	const cJSON *h;
	size_t n = 0;

	cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(m, "headers"))
		n += jstr(h, "name") != NULL;
	return n;
}

/* Everything of the workload: global, or a TCP workload, or nothing to
 * match on. */
static int
takes_all(const cJSON *ic)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(ic, "match");
	const char *proto = jstr(ic, "protocol");

	return (proto && strcmp(proto, "tcp") == 0) ||
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "global")) ||
	    (count_headers(m) == 0 && jstr(m, "path_prefix") == NULL);
}

/* "requests with header x-dev: alice (and path /api*) go to ADDR" */
static void
put_route(const cJSON *ic, const char *addr)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(ic, "match");
	const char *proto = jstr(ic, "protocol"), *path;
	size_t n;

	if (proto && strcmp(proto, "tcp") == 0) {
		printf("all connections go to %s", addr);
		return;
	}
	if (takes_all(ic)) {
		printf("all traffic goes to %s", addr);
		return;
	}
	path = jstr(m, "path_prefix");
	fputs("requests with ", stdout);
	if ((n = count_headers(m)) > 0) {
		fputs(n == 1 ? "header " : "headers ", stdout);
		put_headers(m, " and ");
		if (path) {
			fputs(" (and path ", stdout);
			put(path);
			fputs("*)", stdout);
		}
	} else {
		fputs("path ", stdout);
		put(path);
		putchar('*');
	}
	printf(" go to %s", addr);
}

static void
print_intercept(const cJSON *resp, const char *workload, const char *ns,
    long port, const char *envpath, size_t nenv)
{
	const cJSON *ic = cJSON_GetObjectItemCaseSensitive(resp, "intercept");
	const char *proto = jstr(ic, "protocol"), *id = jstr(ic, "id");
	char addr[32];
	double p;

	if (jnum(ic, "port", &p) && p >= 1 && p <= 65535)
		port = (long)p;
	snprintf(addr, sizeof(addr), "127.0.0.1:%ld", port);
	fputs("Intercepting ", stdout);
	put(orelse(jstr(ic, "workload"), workload));
	putchar('.');
	put(orelse(jstr(ic, "namespace"), orelse(ns, "?")));
	fputs(": ", stdout);
	put_route(ic, addr);
	putchar('\n');
	if (id) {
		fputs("  intercept id: ", stdout);
		put(id);
		if (proto == NULL || strcmp(proto, "tcp") != 0) {
			fputs("   (any request carrying \"x-kbridge-intercept-id"
			    ": ", stdout);
			put(id);
			fputs("\" is routed to you too)", stdout);
		}
		putchar('\n');
	}
	if (envpath) {
		fputs("  environment written to ", stdout);
		put(envpath);
		printf(" (%zu variable%s)\n", nenv, nenv == 1 ? "" : "s");
	}
}

int
cmd_intercept(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "namespace", required_argument, NULL, 'n' },
		{ "port", required_argument, NULL, 'p' },
		{ "http-header", required_argument, NULL, 'H' },
		{ "http-path-prefix", required_argument, NULL,
		    OPT_PATH_PREFIX },
		{ "env-file", required_argument, NULL, 'e' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *ns = NULL, *prefix = NULL, *envpath = NULL, *workload;
	const char *hdrs[HEADERS_MAX];
	struct kb_envfile *ef = NULL;
	enum output out = OUT_TEXT;
	cJSON *body = NULL, *headers, *resp = NULL, *env;
	size_t i, nhdr = 0, nenv = 0;
	long port = 0;
	int ch, ret = EXIT_USAGE;

	while ((ch = next_opt(argc, argv, ":n:p:H:e:o:h", opts)) != -1) {
		switch (ch) {
		case 'n':
			ns = optarg;
			break;
		case 'p':
			if (port_arg(optarg, &port) == -1)
				return EXIT_USAGE;
			break;
		case 'H':
			if (nhdr == HEADERS_MAX) {
				errorx("at most %d --http-header options",
				    HEADERS_MAX);
				return EXIT_USAGE;
			}
			hdrs[nhdr++] = optarg;
			break;
		case OPT_PATH_PREFIX:
			prefix = optarg;
			break;
		case 'e':
			envpath = optarg;
			break;
		case 'o':
			if (parse_output(optarg, &out) == -1)
				return EXIT_USAGE;
			break;
		case 'h':
			print_usage(argv[0]);
			return 0;
		default:
			return EXIT_USAGE;
		}
	}
	if ((workload = workload_arg(argc, argv)) == NULL ||
	    namespace_arg(argv[0], ns) == -1)
		return EXIT_USAGE;
	if (port == 0) {
		errorx("intercept: --port LOCAL is required");
		return EXIT_USAGE;
	}
	if (prefix && prefix[0] != '/') {
		errorx("--http-path-prefix must start with '/'");
		return EXIT_USAGE;
	}
	if (prefix && path_prefix_arg(prefix) == -1)
		return EXIT_USAGE;
	if (envpath && envpath[0] == '\0') {
		errorx("--env-file needs a file name");
		return EXIT_USAGE;
	}
	if ((body = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(body, "workload", workload) == NULL ||
	    (ns && cJSON_AddStringToObject(body, "namespace", ns) == NULL) ||
	    cJSON_AddNumberToObject(body, "port", port) == NULL ||
	    (headers = cJSON_AddArrayToObject(body, "headers")) == NULL ||
	    (prefix &&
	    cJSON_AddStringToObject(body, "path_prefix", prefix) == NULL)) {
		errorx("out of memory");
		ret = 1;
		goto done;
	}
	for (i = 0; i < nhdr; i++)
		if (add_header(headers, hdrs[i]) == -1)
			goto done;

	ret = 1;
	if (envpath && (ef = kb_envfile_open(envpath)) == NULL) {
		errorx("cannot write %s: %s", envpath, strerror(errno));
		goto done;
	}
	/* Ctrl-C must not leave the env file's temporary copy behind. */
	catch_signals();
	if (call("intercept", "POST", "/v1/intercept", body, &resp) == -1)
		goto done;
	if (ef) {
		env = cJSON_GetObjectItemCaseSensitive(resp, "env");
		if (!cJSON_IsObject(env)) {
			errorx("kbridged reported no environment; %s has no "
			    "variables", envpath);
			env = NULL;
		}
		if (kb_envfile_commit(ef, env, &nenv) == -1) {
			ef = NULL;
			errorx("cannot write %s: %s (the intercept is active; "
			    "'kbridge leave %s%s%s' ends it)", envpath,
			    strerror(errno), workload, ns ? " -n " : "",
			    ns ? ns : "");
			goto done;
		}
		ef = NULL;
	}
	if (out == OUT_JSON)
		print_json(resp);
	else
		print_intercept(resp, workload, ns, port, envpath, nenv);
	ret = 0;
done:
	kb_envfile_abort(ef);
	cJSON_Delete(resp);
	cJSON_Delete(body);
	return ret;
}

/* The namespace the daemon uses when none is given; NULL if unknown. */
static const char *
connected_namespace(char *buf, size_t len)
{
	const char *ns = NULL;
	char err[256];
	cJSON *resp;
	long status;

	if (kb_api("GET", "/v1/status", NULL, API_TIMEOUT_MS, &status, &resp,
	    err, sizeof(err)) == 0 && status == 200 &&
	    jstr(resp, "namespace")) {
		snprintf(buf, len, "%s", jstr(resp, "namespace"));
		ns = buf;
	}
	cJSON_Delete(resp);
	return ns;
}

int
cmd_leave(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "namespace", required_argument, NULL, 'n' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *ns = NULL, *workload, *shown_ns;
	enum output out = OUT_TEXT;
	cJSON *body = NULL, *resp = NULL;
	char nsbuf[256];
	int ch, ret = 1;

	while ((ch = next_opt(argc, argv, ":n:o:h", opts)) != -1) {
		switch (ch) {
		case 'n':
			ns = optarg;
			break;
		case 'o':
			if (parse_output(optarg, &out) == -1)
				return EXIT_USAGE;
			break;
		case 'h':
			print_usage(argv[0]);
			return 0;
		default:
			return EXIT_USAGE;
		}
	}
	if ((workload = workload_arg(argc, argv)) == NULL ||
	    namespace_arg(argv[0], ns) == -1)
		return EXIT_USAGE;
	if ((body = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(body, "workload", workload) == NULL ||
	    (ns && cJSON_AddStringToObject(body, "namespace", ns) == NULL)) {
		errorx("out of memory");
		goto done;
	}
	catch_signals();
	if (call("leave", "POST", "/v1/leave", body, &resp) == -1)
		goto done;
	if (out == OUT_JSON)
		print_json(resp);
	else {
		shown_ns = jstr(resp, "namespace");
		if (shown_ns == NULL)
			shown_ns = ns ? ns :
			    connected_namespace(nsbuf, sizeof(nsbuf));
		fputs("Left ", stdout);
		put(orelse(jstr(resp, "workload"), workload));
		if (shown_ns) {
			putchar('.');
			put(shown_ns);
		}
		fputs(": its traffic goes to the cluster again\n", stdout);
	}
	ret = 0;
done:
	cJSON_Delete(resp);
	cJSON_Delete(body);
	return ret;
}

/* "alice* (x-dev: alice; id 3f2a...), bob (all; id 9c1e...)" */
static void
put_intercepts(const cJSON *w)
{
	const cJSON *ic, *m;
	size_t n = 0;

	cJSON_ArrayForEach(ic, cJSON_GetObjectItemCaseSensitive(w,
	    "intercepts")) {
		if (n++)
			fputs(", ", stdout);
		put(orelse(jstr(ic, "owner"), "?"));
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ic, "mine")))
			putchar('*');
		fputs(" (", stdout);
		if (takes_all(ic)) {
			fputs("all", stdout);
		} else {
			m = cJSON_GetObjectItemCaseSensitive(ic, "match");
			if (put_headers(m, ", ") && jstr(m, "path_prefix"))
				fputs(", ", stdout);
			if (jstr(m, "path_prefix")) {
				fputs("path ", stdout);
				put(jstr(m, "path_prefix"));
				putchar('*');
			}
		}
		if (jstr(ic, "id")) {
			fputs("; id ", stdout);
			put(jstr(ic, "id"));
		}
		putchar(')');
	}
	if (n == 0)
		putchar('-');
}

static size_t
column(const cJSON *ws, const char *key, size_t min)
{
	const cJSON *w;
	const char *s;
	size_t width = min;

	cJSON_ArrayForEach(w, ws)
		if ((s = jstr(w, key)) != NULL && strlen(s) + 2 > width)
			width = strlen(s) + 2;
	return width;
}

static void
print_list(const cJSON *resp, const char *ns)
{
	const cJSON *ws = cJSON_GetObjectItemCaseSensitive(resp, "workloads");
	const cJSON *w;
	size_t c1, c2, c3;

	if (cJSON_GetArraySize(ws) == 0) {
		printf("No interceptable workloads%s%s\n",
		    ns ? " in namespace " : "", ns ? ns : "");
		return;
	}
	c1 = column(ws, "name", 16);
	c2 = column(ws, "namespace", 11);
	c3 = column(ws, "protocol", 10);
	printf("%-*s%-*s%-*s%s\n", (int)c1, "WORKLOAD", (int)c2, "NAMESPACE",
	    (int)c3, "PROTOCOL", "INTERCEPTED BY");
	cJSON_ArrayForEach(w, ws) {
		put_padded(orelse(jstr(w, "name"), "?"), c1);
		put_padded(orelse(jstr(w, "namespace"), "?"), c2);
		put_padded(orelse(jstr(w, "protocol"), "?"), c3);
		put_intercepts(w);
		putchar('\n');
	}
}

int
cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "namespace", required_argument, NULL, 'n' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	enum output out = OUT_TEXT;
	const char *ns = NULL;
	cJSON *resp = NULL;
	char path[128];
	int ch;

	while ((ch = next_opt(argc, argv, ":n:o:h", opts)) != -1) {
		switch (ch) {
		case 'n':
			ns = optarg;
			break;
		case 'o':
			if (parse_output(optarg, &out) == -1)
				return EXIT_USAGE;
			break;
		case 'h':
			print_usage(argv[0]);
			return 0;
		default:
			return EXIT_USAGE;
		}
	}
	if (no_operands(argc, argv) == -1 || namespace_arg(argv[0], ns) == -1)
		return EXIT_USAGE;
	/* A valid label needs no escaping in a query. */
	snprintf(path, sizeof(path), "/v1/list%s%s", ns ? "?namespace=" : "",
	    ns ? ns : "");
	catch_signals();
	if (call("list", "GET", path, NULL, &resp) == -1)
		return 1;
	if (out == OUT_JSON)
		print_json(resp);
	else
		print_list(resp, ns);
	cJSON_Delete(resp);
	return 0;
}
