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
#include "msg.h"
#include "util.h"

#define HEADERS_MAX	KB_API_HEADERS_MAX
#define HDR_NAME_MAX	KB_API_HDR_NAME_MAX

enum { OPT_PATH_PREFIX = 256, OPT_PREVIEW_URL, OPT_PREVIEW_TTL, OPT_PREVIEW_HOST,
	OPT_ENV_ALL };

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
		if (!kb_http_tchar(arg[i])) {
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
		if (path)
			put_in(" (and path ", path, "*)");
	} else {
		put_in("path ", path, "*");
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
		put_in("  intercept id: ", id, NULL);
		if (proto == NULL || strcmp(proto, "tcp") != 0)
			put_in("   (any request carrying "
			    "\"" KB_INTERCEPT_HEADER ": ", id,
			    jstr(cJSON_GetObjectItemCaseSensitive(ic, "match"),
			    "path_prefix") ? "\" is routed to you too, within "
			    "the path prefix)" : "\" is routed to you too)");
		putchar('\n');
	}
	if (envpath) {
		put_in("  environment written to ", envpath, NULL);
		printf(" (%zu variable%s)\n", nenv, nenv == 1 ? "" : "s");
	}
}

/* --preview-url failed after the intercept succeeded: say both. */
static void
preview_failed(const cJSON *resp, const char *workload, const char *ns,
    const char *why)
{
	const cJSON *ic = cJSON_GetObjectItemCaseSensitive(resp, "intercept");
	char buf[SHOWN_MAX];

	fflush(stdout);
	errorx("the intercept of %s.%s is active, but its preview URL failed: "
	    "%s ('kbridge preview create %s%s%s' retries)", workload,
	    shown(orelse(jstr(ic, "namespace"), orelse(ns, "?")), buf,
	    sizeof(buf)), why, workload, ns ? " -n " : "", ns ? ns : "");
}

/* What 'kbridge intercept' was asked for. */
struct intercept_args {
	const char *workload, *ns, *prefix, *envpath, *ttl_arg, *pv_host;
	const char *hdrs[HEADERS_MAX];
	size_t nhdr;
	long port, ttl;
	int preview, env_all;
	enum output out;
};

/* The options into a; 1 to go on, else 0 and the exit code in *ret. */
static int
intercept_opts(int argc, char **argv, struct intercept_args *a, int *ret)
{
	static const struct option opts[] = {
		LONGOPT_NAMESPACE,
		{ "port", required_argument, NULL, 'p' },
		{ "http-header", required_argument, NULL, 'H' },
		{ "http-path-prefix", required_argument, NULL,
		    OPT_PATH_PREFIX },
		{ "env-file", required_argument, NULL, 'e' },
		{ "env-all", no_argument, NULL, OPT_ENV_ALL },
		{ "preview-url", no_argument, NULL, OPT_PREVIEW_URL },
		{ "preview-ttl", required_argument, NULL, OPT_PREVIEW_TTL },
		{ "preview-host", required_argument, NULL, OPT_PREVIEW_HOST },
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	int ch;

	*ret = EXIT_USAGE;
	while ((ch = next_opt(argc, argv, ":n:p:H:e:o:h", opts)) != -1) {
		switch (ch) {
		case 'p':
			if (port_arg("--port", optarg, &a->port) == -1)
				return 0;
			break;
		case 'H':
			if (a->nhdr == HEADERS_MAX) {
				errorx("at most %d --http-header options",
				    HEADERS_MAX);
				return 0;
			}
			a->hdrs[a->nhdr++] = optarg;
			break;
		case OPT_PATH_PREFIX:
			a->prefix = optarg;
			break;
		case 'e':
			a->envpath = optarg;
			break;
		case OPT_ENV_ALL:
			a->env_all = 1;
			break;
		case OPT_PREVIEW_URL:
			a->preview = 1;
			break;
		case OPT_PREVIEW_TTL:
			if (duration_arg("--preview-ttl", optarg, &a->ttl) == -1)
				return 0;
			a->ttl_arg = optarg;
			break;
		case OPT_PREVIEW_HOST:
			if (host_arg("--preview-host", optarg) == -1)
				return 0;
			a->pv_host = optarg;
			break;
		default:
			if (!std_opt(ch, argv, &a->ns, &a->out, ret))
				return 0;
		}
	}
	return 1;
}

/* The operand and what the options need of each other; 0 or -1 after a
 * usage error. */
static int
intercept_check(int argc, char **argv, struct intercept_args *a)
{
	if ((a->workload = workload_arg(argc, argv)) == NULL ||
	    namespace_arg(argv[0], a->ns) == -1)
		return -1;
	if (a->port == 0) {
		errorx("intercept: --port LOCAL is required");
		return -1;
	}
	if (a->prefix && a->prefix[0] != '/') {
		errorx("--http-path-prefix must start with '/'");
		return -1;
	}
	if (a->prefix && path_prefix_arg(a->prefix) == -1)
		return -1;
	if (a->envpath && a->envpath[0] == '\0') {
		errorx("--env-file needs a file name");
		return -1;
	}
	if (a->env_all && !a->envpath) {
		errorx("--env-all needs --env-file");
		return -1;
	}
	if ((a->ttl_arg || a->pv_host) && !a->preview) {
		errorx("%s needs --preview-url", a->ttl_arg ? "--preview-ttl" :
		    "--preview-host");
		return -1;
	}
	return 0;
}

/* The request for /v1/intercept; NULL after a report, the exit code in
 * *ret. */
static cJSON *
intercept_body(const struct intercept_args *a, int *ret)
{
	cJSON *body, *headers;
	size_t i;

	if ((body = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(body, "workload", a->workload) == NULL ||
	    (a->ns && cJSON_AddStringToObject(body, "namespace", a->ns) == NULL) ||
	    cJSON_AddNumberToObject(body, "port", a->port) == NULL ||
	    (headers = cJSON_AddArrayToObject(body, "headers")) == NULL ||
	    (a->prefix &&
	    cJSON_AddStringToObject(body, "path_prefix", a->prefix) == NULL)) {
		errorx("out of memory");
		*ret = 1;
		cJSON_Delete(body);
		return NULL;
	}
	for (i = 0; i < a->nhdr; i++)
		if (add_header(headers, a->hdrs[i]) == -1) {
			*ret = EXIT_USAGE;
			cJSON_Delete(body);
			return NULL;
		}
	return body;
}

/* The workload's environment into the env file opened as ef (consumed);
 * 0, or -1 after a report. */
static int
intercept_env(const struct intercept_args *a, struct kb_envfile *ef,
    const cJSON *resp, size_t *nenv)
{
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(resp, "env");
	const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(resp,
	    "env_error"));

	/* In-cluster the env comes from the pod spec; when it cannot, the
	 * sidecar's own (not the app container's) stands, and we say why. */
	if (why)
		errorx("warning: the environment in %s is the sidecar's, not made from the pod "
		    "spec: %s", a->envpath, why);
	if (!cJSON_IsObject(env)) {
		errorx("kbridged reported no environment; %s has no "
		    "variables", a->envpath);
		env = NULL;
	}
	if (kb_envfile_commit(ef, env, a->env_all, nenv) == -1) {
		errorx("cannot write %s: %s (the intercept is active; "
		    "'kbridge leave %s%s%s' ends it)", a->envpath,
		    strerror(errno), a->workload, a->ns ? " -n " : "",
		    a->ns ? a->ns : "");
		return -1;
	}
	return 0;
}

/* Ask kbridged, write the env file, make the preview URL, print: the exit
 * code. */
static int
intercept_run(const struct intercept_args *a, const cJSON *body)
{
	struct kb_envfile *ef = NULL;
	cJSON *resp = NULL, *pv = NULL;
	char err[1024];
	size_t nenv = 0;
	int ret = 1, written;

	if (a->envpath && (ef = kb_envfile_open(a->envpath)) == NULL) {
		errorx("cannot write %s: %s", a->envpath, strerror(errno));
		return 1;
	}
	/* Ctrl-C must not leave the env file's temporary copy behind. */
	catch_signals();
	if (call("intercept", "POST", KB_API_INTERCEPT, body, &resp) == -1)
		goto done;
	if (ef) {
		written = intercept_env(a, ef, resp, &nenv);
		ef = NULL;
		if (written == -1)
			goto done;
	}
	if (a->preview && (pv = preview_create(a->workload, a->ns, a->ttl, 0,
	    a->pv_host, err, sizeof(err))) != NULL)
		cJSON_AddItemReferenceToObject(resp, "preview",
		    cJSON_GetObjectItemCaseSensitive(pv, "preview"));
	if (a->out == OUT_JSON)
		print_json(resp);
	else {
		print_intercept(resp, a->workload, a->ns, a->port, a->envpath,
		    nenv);
		if (pv)
			print_preview(cJSON_GetObjectItemCaseSensitive(pv,
			    "preview"));
	}
	if (a->preview && !pv) {
		preview_failed(resp, a->workload, a->ns, err);
		goto done;
	}
	ret = 0;
done:
	kb_envfile_abort(ef);
	cJSON_Delete(resp);
	cJSON_Delete(pv);
	return ret;
}

int
cmd_intercept(int argc, char **argv)
{
	struct intercept_args a = { .out = OUT_TEXT };
	cJSON *body;
	int ret;

	if (!intercept_opts(argc, argv, &a, &ret))
		return ret;
	if (intercept_check(argc, argv, &a) == -1)
		return EXIT_USAGE;
	if ((body = intercept_body(&a, &ret)) == NULL)
		return ret;
	ret = intercept_run(&a, body);
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

	if (call_err("GET", KB_API_STATUS, NULL, &resp, err, sizeof(err)) == 0 &&
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
		LONGOPT_NAMESPACE,
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *ns = NULL, *workload, *shown_ns;
	enum output out = OUT_TEXT;
	cJSON *body = NULL, *resp = NULL;
	char nsbuf[256];
	double np;
	int ch, ret;

	while ((ch = next_opt(argc, argv, ":n:o:h", opts)) != -1)
		if (!std_opt(ch, argv, &ns, &out, &ret))
			return ret;
	ret = 1;
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
	if (call("leave", "POST", KB_API_LEAVE, body, &resp) == -1)
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
		fputs(": its traffic goes to the cluster again", stdout);
		if (jnum(resp, "previews_ended", &np) && np >= 1)
			printf("; its %s ended", np == 1 ? "preview URL" :
			    "preview URLs");
		putchar('\n');
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
			if (jstr(m, "path_prefix"))
				put_in("path ", jstr(m, "path_prefix"), "*");
		}
		if (jstr(ic, "id"))
			put_in("; id ", jstr(ic, "id"), NULL);
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
	return list_cmd(argc, argv, KB_API_LIST, print_list);
}
