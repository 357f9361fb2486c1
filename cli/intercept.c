/* kbridge intercept, leave and list: the CLI side of the daemon's
 * /v1/intercept, /v1/leave and /v1/list. */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "client.h"
#include "cmd.h"
#include "envfile.h"
#include "kube.h"
#include "kworkload.h"
#include "msg.h"
#include "util.h"

#define HEADERS_MAX	KB_API_HEADERS_MAX
#define HDR_NAME_MAX	KB_API_HDR_NAME_MAX

enum { OPT_PATH_PREFIX = 256, OPT_PREVIEW_URL, OPT_PREVIEW_TTL, OPT_PREVIEW_HOST,
	OPT_ENV_ALL, OPT_WAIT_TIMEOUT, OPT_KUBECONFIG, OPT_CONTEXT, OPT_SERVICE,
	OPT_ENV_JSON, OPT_ENV_SYNTAX, OPT_ADDRESS };

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
	if (vlen > KB_API_HDR_VALUE_MAX) {
		errorx("--http-header %s: the value has %zu characters; at most %d",
		    name, vlen, KB_API_HDR_VALUE_MAX);
		return -1;
	}
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

/* "localhost:8080", "[::1]:8080" */
static void
host_port(char *buf, size_t len, const char *address, long port)
{
	address = address ? address : "localhost";
	snprintf(buf, len, strchr(address, ':') ? "[%s]:%ld" : "%s:%ld", address, port);
}

static void
print_intercept(const cJSON *resp, const char *workload, const char *ns,
    long port, const char *address, const char *envpath, size_t nenv)
{
	const cJSON *ic = cJSON_GetObjectItemCaseSensitive(resp, "intercept");
	const char *proto = jstr(ic, "protocol"), *id = jstr(ic, "id");
	char addr[80];
	double p;

	if (jnum(ic, "port", &p) && p >= 1 && p <= 65535)
		port = (long)p;
	host_port(addr, sizeof(addr), address, port);
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
	const char *kubeconfig, *context, *service, *envjson, *address;
	char **cmd;		/* -- CMD ARGS, NULL-terminated, or NULL */
	enum kb_env_syntax syntax;
	char svcport[16];	/* --port LOCAL:SVCPORT */
	const char *hdrs[HEADERS_MAX];
	size_t nhdr;
	long port, ttl, wait_s;
	int preview, env_all, syntax_set;
	enum output out;
};

/* A Service port's name as the API allows it (1-15 of [a-z0-9-] with a
 * letter, no hyphen first, last or twice in a row) or number. */
static int
svcport_ok(const char *s)
{
	unsigned long num;

	return kb_parse_num(s, 1, 65535, NULL, &num) == 0 || kb_port_name(s);
}

/* --port LOCAL[:SVCPORT]; -1 after a usage error. */
static int
local_port_arg(const char *arg, struct intercept_args *a)
{
	const char *colon = strchr(arg, ':');
	char local[16], buf[SHOWN_MAX];

	a->svcport[0] = '\0';
	if (colon == NULL)
		return port_arg("--port", arg, &a->port);
	if ((size_t)(colon - arg) >= sizeof(local) || !svcport_ok(colon + 1)) {
		errorx("--port must be LOCAL or LOCAL:SVCPORT (SVCPORT the name or number of a "
		    "Service port), not '%s'", shown(arg, buf, sizeof(buf)));
		return -1;
	}
	snprintf(local, sizeof(local), "%.*s", (int)(colon - arg), arg);
	snprintf(a->svcport, sizeof(a->svcport), "%s", colon + 1);
	return port_arg("--port", local, &a->port);
}

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
		{ "env-json", required_argument, NULL, OPT_ENV_JSON },
		{ "env-syntax", required_argument, NULL, OPT_ENV_SYNTAX },
		{ "preview-url", no_argument, NULL, OPT_PREVIEW_URL },
		{ "preview-ttl", required_argument, NULL, OPT_PREVIEW_TTL },
		{ "preview-host", required_argument, NULL, OPT_PREVIEW_HOST },
		{ "wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT },
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "service", required_argument, NULL, OPT_SERVICE },
		{ "address", required_argument, NULL, OPT_ADDRESS },
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	char buf[SHOWN_MAX];
	int ch;

	*ret = EXIT_USAGE;
	while ((ch = next_opt(argc, argv, ":n:p:H:e:o:h", opts)) != -1) {
		switch (ch) {
		case 'p':
			if (local_port_arg(optarg, a) == -1)
				return 0;
			break;
		case OPT_SERVICE:
			a->service = optarg;
			break;
		case OPT_ADDRESS:
			if (!kb_api_address(optarg, 0, NULL, NULL)) {
				errorx("--address must be localhost or an IPv4 or IPv6 address, "
				    "not '%s'", shown(optarg, buf, sizeof(buf)));
				return 0;
			}
			a->address = optarg;
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
		case OPT_ENV_JSON:
			a->envjson = optarg;
			break;
		case OPT_ENV_SYNTAX:
			if (kb_env_syntax_arg(optarg, &a->syntax) == -1) {
				errorx("--env-syntax must be docker, sh or json");
				return 0;
			}
			a->syntax_set = 1;
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
		case OPT_WAIT_TIMEOUT:
			if (duration_arg("--wait-timeout", optarg, &a->wait_s) == -1)
				return 0;
			break;
		case OPT_KUBECONFIG:
			a->kubeconfig = optarg;
			break;
		case OPT_CONTEXT:
			a->context = optarg;
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
	if (a->service && !kb_dns_label(a->service)) {
		errorx("intercept: --service needs a Service's name (lower-case letters, digits "
		    "and '-')");
		return -1;
	}
	if (a->prefix && a->prefix[0] != '/') {
		errorx("--http-path-prefix must start with '/'");
		return -1;
	}
	if (a->prefix && path_prefix_arg(a->prefix) == -1)
		return -1;
	if ((a->envpath && a->envpath[0] == '\0') || (a->envjson && a->envjson[0] == '\0')) {
		errorx("%s needs a file name", a->envjson && !a->envjson[0] ? "--env-json" :
		    "--env-file");
		return -1;
	}
	if (a->env_all && !a->envpath && !a->envjson && !a->cmd) {
		errorx("--env-all needs --env-file, --env-json or -- CMD");
		return -1;
	}
	if (a->syntax_set && !a->envpath) {
		errorx("--env-syntax needs --env-file");
		return -1;
	}
	if (a->cmd && a->cmd[0] == NULL) {
		errorx("intercept: -- needs a command to run");
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
	    (a->address && cJSON_AddStringToObject(body, "address", a->address) == NULL) ||
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

/* The workload's environment in resp (NULL if none), after saying why
 * it is the sidecar's own, or missing, when it is. */
static const cJSON *
workload_env(const struct intercept_args *a, const cJSON *resp)
{
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(resp, "env");
	const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(resp,
	    "env_error"));

	/* In-cluster the env comes from the pod spec; when it cannot, the
	 * sidecar's own (not the app container's) stands, and we say why. */
	if (why)
		errorx("warning: the environment%s%s is the sidecar's, not made from the pod "
		    "spec: %s", a->envpath ? " in " : "", a->envpath ? a->envpath : "", why);
	if (!cJSON_IsObject(env)) {
		errorx("kbridged reported no environment: the workload's variables are "
		    "missing");
		return NULL;
	}
	return env;
}

/* env into path, opened as ef (consumed), in syntax syn; 0, or -1 after a
 * report. */
static int
write_env(const struct intercept_args *a, struct kb_envfile *ef, const char *path,
    enum kb_env_syntax syn, const cJSON *env, size_t *nenv)
{
	if (kb_envfile_commit(ef, env, a->env_all, syn, nenv) == -1) {
		errorx("cannot write %s: %s (the intercept is active; "
		    "'kbridge leave %s%s%s' ends it)", path,
		    strerror(errno), a->workload, a->ns ? " -n " : "",
		    a->ns ? a->ns : "");
		return -1;
	}
	return 0;
}

/* The intercept made by body ends: 0, or -1 reported. */
static int
leave_workload(const cJSON *body)
{
	const char *ns = jstr(body, "namespace");
	cJSON *req, *resp = NULL;
	int r = -1;

	interrupted = 0;
	if ((req = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(req, "workload", jstr(body, "workload")) == NULL ||
	    (ns && cJSON_AddStringToObject(req, "namespace", ns) == NULL))
		errorx("leave: out of memory");
	else
		r = call("leave", "POST", KB_API_LEAVE, req, &resp);
	cJSON_Delete(req);
	cJSON_Delete(resp);
	return r;
}

static volatile pid_t child;

/* SIGINT, SIGTERM, SIGHUP while CMD runs: CMD gets it, kbridge waits for
 * CMD and then leaves. A terminal's Ctrl-C (sent by the kernel) reached
 * CMD already, as it is in our process group. */
static void
forward_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (child > 0 && (si == NULL || si->si_code <= 0))
		kill(child, sig);
}

/* Run -- CMD with the workload's environment over ours; its exit status
 * (128 + the signal that killed it), or -1 reported. */
static int
run_cmd(const struct intercept_args *a, const cJSON *env)
{
	extern char **environ;
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct sigaction sa;
	sigset_t block, saved;
	char **envp;
	size_t i, n;
	pid_t pid;
	int status;

	if ((envp = kb_env_merge(environ, env, a->env_all, &n)) == NULL) {
		errorx("cannot make the environment of %s: %s", a->cmd[0], strerror(errno));
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = forward_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaddset(&block, sigs[i]);
		sigaction(sigs[i], &sa, NULL);
	}
	sigprocmask(SIG_BLOCK, &block, &saved);
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1) {
		sigprocmask(SIG_SETMASK, &saved, NULL);
		kb_env_free(envp);
		errorx("cannot run %s: %s", a->cmd[0], strerror(errno));
		return -1;
	}
	if (pid == 0) {
		for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		sigprocmask(SIG_SETMASK, &saved, NULL);
		/* Found through our PATH, not the workload's. */
		execvpe(a->cmd[0], a->cmd, envp);
		errorx("cannot run %s: %s", a->cmd[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	child = pid;
	sigprocmask(SIG_SETMASK, &saved, NULL);
	kb_env_free(envp);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR) {
			errorx("waiting for %s: %s", a->cmd[0], strerror(errno));
			child = 0;
			return -1;
		}
	child = 0;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* With -- CMD, stdout is CMD's: what intercept says goes to stderr. The
 * saved stdout for stdout_back, or -1. */
static int
stdout_to_stderr(const struct intercept_args *a)
{
	int fd;

	if (!a->cmd)
		return -1;
	fflush(stdout);
	if ((fd = dup(STDOUT_FILENO)) != -1)
		dup2(STDERR_FILENO, STDOUT_FILENO);
	return fd;
}

static void
stdout_back(int fd)
{
	fflush(stdout);
	if (fd == -1)
		return;
	dup2(fd, STDOUT_FILENO);
	close(fd);
}

static void
print_run(const struct intercept_args *a, const cJSON *resp, const cJSON *pv,
    size_t nenv, size_t njson)
{
	int fd = stdout_to_stderr(a);

	if (a->out == OUT_JSON)
		print_json(resp);
	else {
		print_intercept(resp, a->workload, a->ns, a->port, a->address, a->envpath,
		    nenv);
		if (a->envjson) {
			put_in("  environment written to ", a->envjson, NULL);
			printf(" (%zu variable%s, JSON)\n", njson, njson == 1 ? "" : "s");
		}
		if (pv)
			print_preview(cJSON_GetObjectItemCaseSensitive(pv,
			    "preview"));
		if (a->cmd)
			put_in("  running ", a->cmd[0], " with the workload's environment; "
			    "the intercept ends when it does\n");
	}
	stdout_back(fd);
}

/* Does something accept connections on sa? 0 only if refused (or
 * unreachable) at once; 1 when it does or cannot tell within a second. */
static int
listens(const struct sockaddr *sa, socklen_t len)
{
	struct pollfd p;
	socklen_t elen = sizeof(int);
	int fd, err = 0, r = 1;

	/* No IPv6 here: nothing can listen on ::1. */
	if ((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return errno != EAFNOSUPPORT;
	if (connect(fd, sa, len) == -1) {
		if (errno != EINPROGRESS)
			r = 0;
		else {
			p.fd = fd;
			p.events = POLLOUT;
			if (poll(&p, 1, 1000) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err != 0)
				r = 0;
		}
	}
	close(fd);
	return r;
}

/* One line on stderr when nothing listens where the traffic goes: not an
 * error, the app may start later. */
static void
warn_not_listening(const struct intercept_args *a)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(a->port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(a->port),
	    .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_storage ss;
	socklen_t len;
	char where[80];

	if (!kb_api_address(a->address ? a->address : "localhost", (uint16_t)a->port, &ss, &len))
		return;
	if (ss.ss_family != AF_UNSPEC ? listens((struct sockaddr *)&ss, len) :
	    listens((struct sockaddr *)&sin, sizeof(sin)) ||
	    listens((struct sockaddr *)&sin6, sizeof(sin6)))
		return;
	host_port(where, sizeof(where), a->address, a->port);
	fflush(stdout);
	errorx("warning: nothing listens on %s%s yet: intercepted traffic fails until "
	    "something does", where, ss.ss_family == AF_UNSPEC ? " (127.0.0.1 or ::1)" : "");
}

/* Ask kbridged, write the env files, make the preview URL, print, run
 * CMD and leave: the exit code. kube: what was done in Kubernetes (for
 * --output json) or NULL. */
static int
intercept_run(const struct intercept_args *a, const cJSON *body, const cJSON *kube)
{
	struct kb_envfile *ef = NULL, *ej = NULL;
	const cJSON *env;
	cJSON *resp = NULL, *pv = NULL;
	char err[1024];
	size_t nenv = 0, njson = 0;
	int ret = 1, written, made = 0;

	if (a->envpath && (ef = kb_envfile_open(a->envpath)) == NULL) {
		errorx("cannot write %s: %s", a->envpath, strerror(errno));
		return 1;
	}
	if (a->envjson && (ej = kb_envfile_open(a->envjson)) == NULL) {
		errorx("cannot write %s: %s", a->envjson, strerror(errno));
		kb_envfile_abort(ef);
		return 1;
	}
	/* Ctrl-C must not leave the env file's temporary copy behind. */
	catch_signals();
	if (call("intercept", "POST", KB_API_INTERCEPT, body, &resp) == -1)
		goto done;
	made = 1;
	env = ef || ej || a->cmd ? workload_env(a, resp) : NULL;
	if (ef) {
		written = write_env(a, ef, a->envpath, a->syntax, env, &nenv);
		ef = NULL;
		if (written == -1)
			goto done;
	}
	if (ej) {
		written = write_env(a, ej, a->envjson, KB_ENV_JSON, env, &njson);
		ej = NULL;
		if (written == -1)
			goto done;
	}
	if (a->preview && (pv = preview_create(a->workload, a->ns, a->ttl, 0,
	    a->pv_host, err, sizeof(err))) != NULL) {
		preview_times(pv);
		cJSON_AddItemReferenceToObject(resp, "preview",
		    cJSON_GetObjectItemCaseSensitive(pv, "preview"));
	}
	if (kube)
		cJSON_AddItemReferenceToObject(resp, "kube", (cJSON *)kube);
	print_run(a, resp, pv, nenv, njson);
	/* With -- CMD, CMD is usually what will listen. */
	if (!a->cmd)
		warn_not_listening(a);
	if (a->preview && !pv) {
		preview_failed(resp, a->workload, a->ns, err);
		goto done;
	}
	ret = a->cmd ? run_cmd(a, env) : 0;
	if (ret == -1)
		ret = 1;
done:
	/* With -- CMD the intercept lasts as long as CMD runs, or not at all. */
	if (a->cmd && made && leave_workload(body) == -1 && ret == 0)
		ret = 1;
	kb_envfile_abort(ef);
	kb_envfile_abort(ej);
	cJSON_Delete(resp);
	cJSON_Delete(pv);
	return ret;
}

/* The daemon's status, when connected through a kubeconfig: its kube
 * object's context and the connected namespace; NULL otherwise. */
static cJSON *
kube_status(const char **context, const char **ns)
{
	cJSON *st = NULL;
	char err[256];

	if (call_err("GET", KB_API_STATUS, NULL, &st, err, sizeof(err)) == -1 ||
	    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(st, "kube"))) {
		cJSON_Delete(st);
		return NULL;
	}
	*context = jstr(cJSON_GetObjectItemCaseSensitive(st, "kube"), "context");
	*ns = jstr(st, "namespace");
	return st;
}

/* What kw_inject added, on stderr. */
static void
say_added(const struct kworkload *w)
{
	if (w->added.port)
		fprintf(stderr, "added annotations %s: \"true\", %s: \"%s\" to the pod template "
		    "of %s (kbridge uninstall --agents removes them)\n", KW_ANN_INJECT,
		    KW_ANN_PORT, w->target, w->what);
	else
		fprintf(stderr, "added annotation %s: \"true\" to the pod template of %s "
		    "(kbridge uninstall --agents removes it)\n", KW_ANN_INJECT, w->what);
}

/* Connected through a kubeconfig: find the workload (its name goes into
 * body), its Service and the port to take over, give it the sidecar
 * unless it has it, wait for the rollout. 0 and in *kube what was done
 * (NULL when not connected that way), or -1 reported. */
static int
intercept_prepare(const struct intercept_args *a, cJSON *body, cJSON **kube)
{
	const char *context = NULL, *ns = NULL, *svcport = a->svcport[0] ? a->svcport : NULL;
	struct kworkload w = { 0 };
	struct kapi k = { 0 };
	long ready;
	cJSON *st;
	int r = -1, added;

	*kube = NULL;
	if ((st = kube_status(&context, &ns)) == NULL) {
		if (a->service || svcport) {
			errorx("intercept: %s needs a connection through a kubeconfig (kbridge "
			    "connect --kubeconfig)", a->service ? "--service" : "--port LOCAL:SVCPORT");
			return -1;
		}
		return 0;
	}
	catch_signals();
	if (load_kubeconfig("intercept", a->kubeconfig, orelse(a->context, context), &k) == -1)
		goto out;
	ns = orelse(a->ns, orelse(ns, kb_kubeconfig_namespace(k.kc)));
	if (kw_find(&k, "intercept", ns, a->workload, &w) == -1 ||
	    kw_service(&k, "intercept", &w, a->service) == -1 ||
	    kw_port("intercept", &w, svcport) == -1 ||
	    (added = kw_inject(&k, "intercept", &w)) == -1)
		goto out;
	if (strcmp(w.name, a->workload) != 0)
		fprintf(stderr, "service %s selects %s: intercepting it\n", a->workload, w.what);
	if (added)
		say_added(&w);
	/* a bare ReplicaSet (or an OnDelete StatefulSet) keeps its pods */
	if (kw_needs_roll(w.obj) && kw_roll(&k, "intercept", w.obj, 1,
	    a->wait_s ? a->wait_s : KW_WAIT_DEFAULT) == -1)
		goto out;
	if (kw_wait(&k, "intercept", &w, a->wait_s ? a->wait_s : KW_WAIT_DEFAULT) == -1)
		goto out;
	if ((*kube = kp_result(w.kind, w.name, w.ns, w.svc_name, w.svc_port, w.target,
	    kw_replicas(w.obj, &ready), &w.added)) == NULL ||
	    cJSON_ReplaceItemInObjectCaseSensitive(body, "workload",
	    cJSON_CreateString(w.name)) == 0 ||
	    (!a->ns && cJSON_AddStringToObject(body, "namespace", ns) == NULL)) {
		errorx("intercept: out of memory");
		goto out;
	}
	r = 0;
out:
	if (r == -1) {
		cJSON_Delete(*kube);
		*kube = NULL;
	}
	kw_free(&w);
	kapi_close(&k);
	cJSON_Delete(st);
	return r;
}

int
cmd_intercept(int argc, char **argv)
{
	struct intercept_args a = { .out = OUT_TEXT };
	cJSON *body, *kube;
	int i, ret;

	/* -- CMD ARGS: the command; the options and WORKLOAD before it. */
	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--")) {
			a.cmd = argv + i + 1;
			doc_errors_stderr = 1;
			argv[i] = NULL;
			argc = i;
			break;
		}
	if (!intercept_opts(argc, argv, &a, &ret))
		return ret;
	if (intercept_check(argc, argv, &a) == -1)
		return EXIT_USAGE;
	if ((body = intercept_body(&a, &ret)) == NULL)
		return ret;
	if (intercept_prepare(&a, body, &kube) == -1) {
		cJSON_Delete(body);
		return 1;
	}
	ret = intercept_run(&a, body, kube);
	cJSON_Delete(kube);
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

/* "x-dev: alice, path /api*", or "all". */
static void
put_match(const cJSON *ic)
{
	const cJSON *m;

	if (takes_all(ic)) {
		fputs("all", stdout);
		return;
	}
	m = cJSON_GetObjectItemCaseSensitive(ic, "match");
	if (put_headers(m, ", ") && jstr(m, "path_prefix"))
		fputs(", ", stdout);
	if (jstr(m, "path_prefix"))
		put_in("path ", jstr(m, "path_prefix"), "*");
}

/* "alice* (x-dev: alice; id 3f2a...), bob (all; id 9c1e...)" */
static void
put_intercepts(const cJSON *w)
{
	const cJSON *ic;
	size_t n = 0;

	cJSON_ArrayForEach(ic, cJSON_GetObjectItemCaseSensitive(w,
	    "intercepts")) {
		if (n++)
			fputs(", ", stdout);
		put(orelse(jstr(ic, "owner"), "?"));
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ic, "mine")))
			putchar('*');
		fputs(" (", stdout);
		put_match(ic);
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

/* The width of the intercepts' key column: at least min. */
static size_t
icolumn(const cJSON *ws, const char *key, size_t min)
{
	const cJSON *w;
	size_t width = min, c;

	cJSON_ArrayForEach(w, ws)
		if ((c = column(cJSON_GetObjectItemCaseSensitive(w, "intercepts"), key,
		    min)) > width)
			width = c;
	return width;
}

/* -o wide: the OWNER, ID and MATCH cells of intercept ic (NULL: none). */
static void
put_intercept_cells(const cJSON *ic, size_t cown, size_t cid)
{
	char owner[160];

	if (ic == NULL) {
		put_padded("-", cown);
		put_padded("-", cid);
		putchar('-');
		return;
	}
	snprintf(owner, sizeof(owner), "%s%s", orelse(jstr(ic, "owner"), "?"),
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ic, "mine")) ? "*" : "");
	put_padded(owner, cown);
	put_padded(orelse(jstr(ic, "id"), "-"), cid);
	put_match(ic);
}

/* -o wide: one row per intercept (one with '-' cells for none), the
 * workload's cells through lead, then OWNER, ID, MATCH. */
static void
print_wide_rows(const cJSON *ws, void (*lead)(const cJSON *, const size_t *),
    const size_t *c)
{
	const cJSON *w, *ic;
	size_t cown = icolumn(ws, "owner", 8) + 1, cid = icolumn(ws, "id", 6);

	printf("%-*s%-*s%s\n", (int)cown, "OWNER", (int)cid, "ID", "MATCH");
	cJSON_ArrayForEach(w, ws) {
		ic = cJSON_GetObjectItemCaseSensitive(w, "intercepts");
		ic = ic ? ic->child : NULL;
		do {
			lead(w, c);
			put_intercept_cells(ic, cown, cid);
			putchar('\n');
		} while (ic && (ic = ic->next) != NULL);
	}
}

static void
list_lead(const cJSON *w, const size_t *c)
{
	double n;
	char rbuf[32];

	put_padded(orelse(jstr(w, "name"), "?"), c[0]);
	put_padded(orelse(jstr(w, "namespace"), "?"), c[1]);
	put_padded(orelse(jstr(w, "protocol"), "?"), c[2]);
	snprintf(rbuf, sizeof(rbuf), "%.0f", jnum(w, "replicas", &n) ? n : 0);
	printf("%-10s", rbuf);
}

static void
print_list(const cJSON *resp, const char *ns, enum output out)
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
	if (out == OUT_WIDE) {
		printf("%-*s%-*s%-*s%-10s", (int)c1, "WORKLOAD", (int)c2, "NAMESPACE",
		    (int)c3, "PROTOCOL", "SIDECARS");
		print_wide_rows(ws, list_lead, (size_t[]){ c1, c2, c3 });
		return;
	}
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

/* The daemon's intercepts of workload name in ns (from its /v1/list
 * answers in lists, one per namespace, fetched as needed): an array
 * reference, or NULL. */
static const cJSON *
daemon_intercepts(cJSON *lists, const char *ns, const char *name)
{
	const cJSON *l, *w;
	cJSON *resp = NULL;
	char url[128], err[256];

	if ((l = cJSON_GetObjectItemCaseSensitive(lists, ns)) == NULL) {
		snprintf(url, sizeof(url), "%s?namespace=%s", KB_API_LIST, ns);
		if (call_err("GET", url, NULL, &resp, err, sizeof(err)) == -1)
			resp = cJSON_CreateObject();
		cJSON_AddItemToObject(lists, ns, resp);
		l = resp;
	}
	cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(l, "workloads"))
		if (jstr(w, "name") && strcmp(jstr(w, "name"), name) == 0)
			return cJSON_GetObjectItemCaseSensitive(w, "intercepts");
	return NULL;
}

/* The API's workloads as the list's JSON: name, namespace, kind,
 * replicas, ready, sidecar, intercepts. */
static cJSON *
kube_workloads(const cJSON *items)
{
	cJSON *out = cJSON_CreateObject(), *ws, *w, *lists = cJSON_CreateObject();
	const cJSON *o, *m, *ics;
	long want, ready;

	ws = cJSON_AddArrayToObject(out, "workloads");
	cJSON_ArrayForEach(o, items) {
		m = cJSON_GetObjectItemCaseSensitive(o, "metadata");
		if (!jstr(m, "name") || !jstr(m, "namespace"))
			continue;
		want = kw_replicas(o, &ready);
		w = cJSON_CreateObject();
		cJSON_AddStringToObject(w, "name", jstr(m, "name"));
		cJSON_AddStringToObject(w, "namespace", jstr(m, "namespace"));
		cJSON_AddStringToObject(w, "kind", jstr(o, "kind"));
		cJSON_AddNumberToObject(w, "replicas", want);
		cJSON_AddNumberToObject(w, "ready", ready);
		cJSON_AddBoolToObject(w, "sidecar", kw_has_inject(o));
		ics = daemon_intercepts(lists, jstr(m, "namespace"), jstr(m, "name"));
		cJSON_AddItemToObject(w, "intercepts", ics ? cJSON_Duplicate(ics, 1) :
		    cJSON_CreateArray());
		cJSON_AddItemToArray(ws, w);
	}
	cJSON_Delete(lists);
	return out;
}

static void
kube_list_lead(const cJSON *w, const size_t *c)
{
	double want, ready;
	char rbuf[48];

	put_padded(orelse(jstr(w, "namespace"), "?"), c[0]);
	put_padded(orelse(jstr(w, "name"), "?"), c[1]);
	put_padded(orelse(jstr(w, "kind"), "?"), c[2]);
	if (!jnum(w, "replicas", &want))
		want = 0;
	if (!jnum(w, "ready", &ready))
		ready = 0;
	snprintf(rbuf, sizeof(rbuf), "%.0f/%.0f", ready, want);
	printf("%-8s%-9s", rbuf, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w,
	    "sidecar")) ? "yes" : "no");
}

static void
print_kube_list(const cJSON *resp, const char *ns, enum output out)
{
	const cJSON *ws = cJSON_GetObjectItemCaseSensitive(resp, "workloads"), *w;
	size_t c1, c2, c3;
	double want, ready;
	char rbuf[48];

	if (cJSON_GetArraySize(ws) == 0) {
		printf("No deployments, statefulsets or replicasets%s%s\n",
		    ns ? " in namespace " : "", ns ? ns : "");
		return;
	}
	c1 = column(ws, "namespace", 11);
	c2 = column(ws, "name", 10);
	c3 = column(ws, "kind", 6);
	if (out == OUT_WIDE) {
		printf("%-*s%-*s%-*s%-8s%-9s", (int)c1, "NAMESPACE", (int)c2, "WORKLOAD",
		    (int)c3, "KIND", "READY", "SIDECAR");
		print_wide_rows(ws, kube_list_lead, (size_t[]){ c1, c2, c3 });
		return;
	}
	printf("%-*s%-*s%-*s%-8s%-9s%s\n", (int)c1, "NAMESPACE", (int)c2, "WORKLOAD", (int)c3,
	    "KIND", "READY", "SIDECAR", "INTERCEPTED BY");
	cJSON_ArrayForEach(w, ws) {
		put_padded(orelse(jstr(w, "namespace"), "?"), c1);
		put_padded(orelse(jstr(w, "name"), "?"), c2);
		put_padded(orelse(jstr(w, "kind"), "?"), c3);
		jnum(w, "replicas", &want);
		jnum(w, "ready", &ready);
		snprintf(rbuf, sizeof(rbuf), "%.0f/%.0f", ready, want);
		printf("%-8s%-9s", rbuf, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w,
		    "sidecar")) ? "yes" : "no");
		put_intercepts(w);
		putchar('\n');
	}
}

/* kbridge list when connected through a kubeconfig: the exit code. */
static int
kube_list(const char *file, const char *context, const char *ns, int all, enum output out)
{
	struct kapi k = { 0 };
	cJSON *items = NULL, *resp = NULL;
	int ret = 1;

	if (load_kubeconfig("list", file, context, &k) == -1)
		goto out;
	if (!all && !ns)
		ns = kb_kubeconfig_namespace(k.kc);
	if ((items = kw_list(&k, "list", all ? NULL : ns)) == NULL)
		goto out;
	if ((resp = kube_workloads(items)) == NULL) {
		errorx("list: out of memory");
		goto out;
	}
	sort_lists(resp);
	if (out == OUT_JSON)
		print_json(resp);
	else
		print_kube_list(resp, all ? NULL : ns, out);
	ret = 0;
out:
	cJSON_Delete(items);
	cJSON_Delete(resp);
	kapi_close(&k);
	return ret;
}

int
cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPT_NAMESPACE,
		{ "all-namespaces", no_argument, NULL, 'A' },
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *ns = NULL, *file = NULL, *context = NULL, *kctx = NULL, *kns = NULL;
	enum output out = OUT_TEXT;
	cJSON *st, *resp = NULL;
	char url[128];
	int ch, ret, all = 0;

	output_wide_ok = 1;
	while ((ch = next_opt(argc, argv, ":n:o:Ah", opts)) != -1) {
		if (ch == 'A')
			all = 1;
		else if (ch == OPT_KUBECONFIG)
			file = optarg;
		else if (ch == OPT_CONTEXT)
			context = optarg;
		else if (!std_opt(ch, argv, &ns, &out, &ret))
			return ret;
	}
	if (no_operands(argc, argv) == -1 || namespace_arg(argv[0], ns) == -1)
		return EXIT_USAGE;
	if (all && ns) {
		errorx("list: -A and -n exclude each other");
		return EXIT_USAGE;
	}
	catch_signals();
	/* From the API when connected through a kubeconfig or given one (the
	 * intercepts are then those kbridged knows, if it runs). */
	if ((st = kube_status(&kctx, &kns)) != NULL || file || context) {
		ret = kube_list(file, orelse(context, kctx), orelse(ns, kns), all, out);
		cJSON_Delete(st);
		return ret;
	}
	if (all) {
		errorx("list: -A needs a connection through a kubeconfig (kbridge connect "
		    "--kubeconfig) or --kubeconfig");
		return EXIT_USAGE;
	}
	/* A valid label needs no escaping in a query. */
	snprintf(url, sizeof(url), "%s%s%s", KB_API_LIST, ns ? "?namespace=" : "",
	    ns ? ns : "");
	if (call("list", "GET", url, NULL, &resp) == -1)
		return 1;
	sort_lists(resp);
	if (out == OUT_JSON)
		print_json(resp);
	else
		print_list(resp, ns, out);
	cJSON_Delete(resp);
	return 0;
}

/* A name from the cluster, printed for a shell only if it is plainly a
 * Kubernetes name (no quote, space or glob a shell would act on). */
static void
put_name(const char *s)
{
	if (s && *s && strlen(s) < 254 &&
	    s[strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-")] == '\0')
		printf("%s\n", s);
}

/* The workloads of ns (NULL: the connected one) one a line: from the API
 * when connected through a kubeconfig, else from kbridged. */
static int
complete_workloads(const char *ns)
{
	const char *kctx = NULL, *kns = NULL;
	const cJSON *o;
	struct kapi k = { 0 };
	cJSON *st, *items = NULL, *resp = NULL;
	char url[128], err[256], nsbuf[256];
	int ret = 1;

	if ((st = kube_status(&kctx, &kns)) != NULL) {
		if (load_kubeconfig("complete", NULL, kctx, &k) == 0 &&
		    (items = kw_list(&k, "complete", orelse(ns, orelse(kns,
		    kb_kubeconfig_namespace(k.kc))))) != NULL) {
			cJSON_ArrayForEach(o, items)
				put_name(jstr(cJSON_GetObjectItemCaseSensitive(o, "metadata"),
				    "name"));
			ret = 0;
		}
		cJSON_Delete(items);
		kapi_close(&k);
		cJSON_Delete(st);
		return ret;
	}
	/* Without -n, those of the namespace given to connect. */
	if (ns == NULL && (ns = connected_namespace(nsbuf, sizeof(nsbuf))) == NULL)
		return 1;
	snprintf(url, sizeof(url), "%s?namespace=%s", KB_API_LIST, ns);
	if (call_err("GET", url, NULL, &resp, err, sizeof(err)) == -1)
		return 1;
	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(resp, "workloads"))
		put_name(jstr(o, "name"));
	cJSON_Delete(resp);
	return 0;
}

/* kbridge __complete namespaces | workloads [NS]: what the shell
 * completions offer, one name a line (the connected session's namespaces,
 * the workloads of NS); exit 1 and nothing when kbridged cannot tell. */
int
cmd_complete(int argc, char **argv)
{
	const cJSON *v;
	cJSON *st = NULL;
	char err[256];

	/* Completion stays quiet: the shell shows no message. */
	if (freopen("/dev/null", "w", stderr) == NULL)
		return 1;
	if (argc == 2 && strcmp(argv[1], "namespaces") == 0) {
		if (call_err("GET", KB_API_STATUS, NULL, &st, err, sizeof(err)) == -1)
			return 1;
		cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(st, "namespaces"))
			put_name(cJSON_IsString(v) ? v->valuestring : NULL);
		cJSON_Delete(st);
		return 0;
	}
	if ((argc == 2 || argc == 3) && strcmp(argv[1], "workloads") == 0 &&
	    (argc == 2 || kb_dns_label(argv[2])))
		return complete_workloads(argc == 3 ? argv[2] : NULL);
	return EXIT_USAGE;
}
