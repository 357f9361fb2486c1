/* kbridge preview create, list and remove: the CLI side of the daemon's
 * /v1/preview/... A token on stdout is fine (the URL is the user's own);
 * none goes into an error message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "cmd.h"
#include "msg.h"
#include "util.h"

#define DURATION_MAX	(30L * 24 * 3600)
#define TOKEN_MAX	64
#define TOKEN_LEN	26	/* agent/preview.c: a whole token */
#define TOKEN_CHARS	"abcdefghijklmnopqrstuvwxyz0123456789"

enum { OPT_TTL = 256, OPT_SERVICE_PORT, OPT_HOST };

int
duration_arg(const char *opt, const char *s, long *secs)
{
	static const char units[] = "dhms";
	static const long unit_secs[] = { 86400, 3600, 60, 1 };
	const char *u, *end, *p = s;
	char buf[SHOWN_MAX];
	unsigned long n;
	long total = 0;
	size_t next = 0;

	/* 90 alone, or parts from days down, each unit once: 1h30m, 1d12h. */
	while (*p && kb_parse_num(p, 0, DURATION_MAX, &end, &n) == 0) {
		if (*end == '\0' && p == s) {
			total = (long)n;
			p = end;
			break;
		}
		if (*end == '\0' || (u = strchr(units + next, *end)) == NULL)
			break;
		next = (size_t)(u - units) + 1;
		if (n > (unsigned long)(DURATION_MAX / unit_secs[u - units]))
			break;
		total += (long)n * unit_secs[u - units];
		p = end + 1;
		if (total > DURATION_MAX)
			break;
	}
	if (*s && *p == '\0' && total >= 1 && total <= DURATION_MAX) {
		*secs = total;
		return 0;
	}
	errorx("%s must be a duration from 1s to 30d (90, 90s, 10m, 2h, 1d, 1h30m), "
	    "not '%s'", opt, shown(s, buf, sizeof(buf)));
	return -1;
}

/* "in 1h 5m" (rounded to the minute beyond one), "expired". */
static void
relative(long d, char *buf, size_t len)
{
	long m = (d + 30) / 60;

	if (d <= 0)
		snprintf(buf, len, "expired");
	else if (d < 60)
		snprintf(buf, len, "in %lds", d);
	else if (m < 60)
		snprintf(buf, len, "in %ldm", m);
	else if (m < 24 * 60)
		snprintf(buf, len, m % 60 ? "in %ldh %ldm" : "in %ldh", m / 60,
		    m % 60);
	else
		snprintf(buf, len, m / 60 % 24 ? "in %ldd %ldh" : "in %ldd",
		    m / 60 / 24, m / 60 % 24);
}

/* "never", or "2026-11-28 06:00:00 UTC (in 1h)". */
static const char *
expiry(const cJSON *p, char *buf, size_t len)
{
	char rel[32];
	struct tm tm;
	double e;
	time_t t;

	if (!jnum(p, "expires", &e)) {
		snprintf(buf, len, "never");
		return buf;
	}
	t = (time_t)e;
	relative((long)(t - time(NULL)), rel, sizeof(rel));
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "%.0f", e);
	snprintf(buf + strlen(buf), len - strlen(buf), " (%s)", rel);
	return buf;
}

/* key_at: the epoch number key as ISO 8601 UTC, null if key is not a
 * number (the number stays: scripts read it). */
static void
iso_time(cJSON *p, const char *key)
{
	char name[32], buf[32];
	struct tm tm;
	double e;
	time_t t;

	snprintf(name, sizeof(name), "%s_at", key);
	if (!cJSON_IsObject(p) || cJSON_GetObjectItemCaseSensitive(p, name))
		return;
	t = jnum(p, key, &e) ? (time_t)e : 0;
	if (t > 0 && gmtime_r(&t, &tm) && strftime(buf, sizeof(buf),
	    "%Y-%m-%dT%H:%M:%SZ", &tm))
		cJSON_AddStringToObject(p, name, buf);
	else
		cJSON_AddNullToObject(p, name);
}

void
preview_times(cJSON *resp)
{
	cJSON *p;

	p = cJSON_GetObjectItemCaseSensitive(resp, "preview");
	iso_time(p, "created");
	iso_time(p, "expires");
	cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(resp, "previews")) {
		iso_time(p, "created");
		iso_time(p, "expires");
	}
}

static int
mine(const cJSON *p)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "mine"));
}

static int
active(const cJSON *p)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "active"));
}

static void
put_workload(const cJSON *p)
{
	put(orelse(jstr(p, "workload"), "?"));
	putchar('.');
	put(orelse(jstr(p, "namespace"), "?"));
}

void
print_preview(const cJSON *p)
{
	char buf[96];

	fputs("Preview of ", stdout);
	put_workload(p);
	if (jstr(p, "intercept_id"))
		put_in(" (your intercept, " KB_INTERCEPT_HEADER ": ",
		    jstr(p, "intercept_id"), ")");
	fputs(":\n", stdout);
	if (jstr(p, "url"))
		put_in("  ", jstr(p, "url"), "\n");
	if (jstr(p, "link"))
		put_in("  ", jstr(p, "link"), "   (no wildcard DNS needed)\n");
	if (jstr(p, "host"))
		put_in("  the workload gets the header Host: ", jstr(p, "host"),
		    "\n");
	printf("  expires: %s\n", expiry(p, buf, sizeof(buf)));
	if (!active(p))
		fputs("  not active: your workstation does not serve its "
		    "intercept now\n", stdout);
}

/* A Host header value for --host: a name or address, maybe with :port. */
int
host_arg(const char *opt, const char *s)
{
	if (!kb_api_host(s)) {
		errorx("%s: invalid host (a name or address, optionally with "
		    ":PORT)", opt);
		return -1;
	}
	return 0;
}

cJSON *
preview_create(const char *workload, const char *ns, long ttl,
    long service_port, const char *host, char *err, size_t errlen)
{
	cJSON *body, *resp = NULL;

	if ((body = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(body, "workload", workload) == NULL ||
	    (ns && cJSON_AddStringToObject(body, "namespace", ns) == NULL) ||
	    (host && cJSON_AddStringToObject(body, "host", host) == NULL) ||
	    (ttl && cJSON_AddNumberToObject(body, "ttl", ttl) == NULL) ||
	    (service_port && cJSON_AddNumberToObject(body, "service_port",
	    service_port) == NULL))
		snprintf(err, errlen, "out of memory");
	else
		call_err("POST", KB_API_PREVIEW_CREATE, body, &resp, err,
		    errlen);
	cJSON_Delete(body);
	return resp;
}

static int
preview_cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPT_NAMESPACE,
		{ "ttl", required_argument, NULL, OPT_TTL },
		{ "service-port", required_argument, NULL, OPT_SERVICE_PORT },
		{ "host", required_argument, NULL, OPT_HOST },
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *ns = NULL, *workload, *host = NULL;
	enum output out = OUT_TEXT;
	long ttl = 0, sport = 0;
	cJSON *resp;
	char err[1024];
	int ch, ret;

	while ((ch = next_opt(argc, argv, ":n:o:h", opts)) != -1) {
		if (ch == OPT_TTL) {
			if (duration_arg("--ttl", optarg, &ttl) == -1)
				return EXIT_USAGE;
		} else if (ch == OPT_SERVICE_PORT) {
			if (port_arg("--service-port", optarg, &sport) == -1)
				return EXIT_USAGE;
		} else if (ch == OPT_HOST) {
			if (host_arg("--host", optarg) == -1)
				return EXIT_USAGE;
			host = optarg;
		} else if (!std_opt(ch, argv, &ns, &out, &ret))
			return ret;
	}
	if ((workload = workload_arg(argc, argv)) == NULL ||
	    namespace_arg(argv[0], ns) == -1)
		return EXIT_USAGE;
	catch_signals();
	if ((resp = preview_create(workload, ns, ttl, sport, host, err,
	    sizeof(err))) == NULL) {
		errorx("preview create failed: %s", err);
		return 1;
	}
	preview_times(resp);
	if (out == OUT_JSON)
		print_json(resp);
	else
		print_preview(cJSON_GetObjectItemCaseSensitive(resp,
		    "preview"));
	cJSON_Delete(resp);
	return 0;
}

/* A row of the list: TOKEN, WORKLOAD, OWNER, STATE, EXPIRES, URL; -o wide
 * adds INTERCEPT, HOST, CREATED, LINK. */
#define NCELLS	6
#define NWIDE	10

static void
cells(const cJSON *p, char cell[NWIDE][160])
{
	char when[32];
	struct tm tm;
	double c;
	time_t t;

	const char *token = jstr(p, "token");

	if (mine(p) && token)
		snprintf(cell[0], 160, "%s", token);
	else
		snprintf(cell[0], 160, "%s\u2026",
		    orelse(jstr(p, "token_prefix"), "?"));
	snprintf(cell[1], 160, "%s.%s", orelse(jstr(p, "workload"), "?"),
	    orelse(jstr(p, "namespace"), "?"));
	snprintf(cell[2], 160, "%s%s", orelse(jstr(p, "owner"), "?"),
	    mine(p) ? "*" : "");
	snprintf(cell[3], 160, "%s", active(p) ? "active" : "not active");
	expiry(p, cell[4], 160);
	snprintf(cell[5], 160, "%s", mine(p) ? orelse(jstr(p, "url"), "-") :
	    "-");
	snprintf(cell[6], 160, "%s", orelse(jstr(p, "intercept_id"), "-"));
	snprintf(cell[7], 160, "%s", orelse(jstr(p, "host"), "-"));
	t = jnum(p, "created", &c) ? (time_t)c : 0;
	if (t <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(when, sizeof(when), "-");
	snprintf(cell[8], 160, "%s", when);
	snprintf(cell[9], 160, "%s", orelse(jstr(p, "link"), "-"));
}

static void
print_previews(const cJSON *resp, const char *ns, enum output out)
{
	static const char *head[NWIDE] = { "TOKEN", "WORKLOAD", "OWNER",
	    "STATE", "EXPIRES", "URL", "INTERCEPT", "HOST", "CREATED", "LINK" };
	const cJSON *ps = cJSON_GetObjectItemCaseSensitive(resp, "previews");
	const cJSON *p;
	char cell[NWIDE][160];
	size_t w[NWIDE], i, n = out == OUT_WIDE ? NWIDE : NCELLS;

	if (cJSON_GetArraySize(ps) == 0) {
		printf("No previews%s%s\n", ns ? " in namespace " : "",
		    ns ? ns : "");
		return;
	}
	for (i = 0; i < n; i++)
		w[i] = strlen(head[i]) + 2;
	cJSON_ArrayForEach(p, ps) {
		cells(p, cell);
		for (i = 0; i < n; i++)
			if (strlen(cell[i]) + 2 > w[i])
				w[i] = strlen(cell[i]) + 2;
	}
	for (i = 0; i < n; i++)
		printf("%-*s", i + 1 < n ? (int)w[i] : 0, head[i]);
	putchar('\n');
	cJSON_ArrayForEach(p, ps) {
		cells(p, cell);
		for (i = 0; i + 1 < n; i++)
			put_padded(cell[i], w[i]);
		put(cell[i]);
		putchar('\n');
	}
}

static int
preview_cmd_list(int argc, char **argv)
{
	output_wide_ok = 1;
	return list_cmd(argc, argv, KB_API_PREVIEW_LIST, print_previews,
	    preview_times);
}

/* The token in a preview URL: http://TOKEN.DOMAIN[:PORT]/... or
 * BASE/.kbridge/preview/TOKEN[/...]; arg itself when it is no URL. Into
 * buf (truncated to len). */
static void
url_token(const char *arg, char *buf, size_t len)
{
	const char *p, *host;
	size_t n;

	if ((host = strstr(arg, "://")) == NULL) {
		snprintf(buf, len, "%s", arg);
		return;
	}
	host += 3;
	if ((p = strstr(host, "/.kbridge/preview/")) != NULL) {
		p += strlen("/.kbridge/preview/");
		n = strcspn(p, "/?#");
	} else {
		p = host;
		n = strcspn(p, ".:/?#");
	}
	snprintf(buf, len, "%.*s", (int)n, p);
}

/* TOKEN as the user may give it: the token, a preview URL, or the start
 * of one of their tokens as 'preview list' shows it (a trailing "..." or
 * "\u2026" left out). The whole token into buf, or reported (never
 * naming a token): -2 a usage error, -1 otherwise. */
static int
resolve_token(const char *cmd, const char *arg, char *buf, size_t len)
{
	static const char *ell[] = { "\u2026", "..." };
	const cJSON *p, *found = NULL;
	const char *owner = NULL;
	cJSON *resp = NULL;
	size_t i, n, l, mine_n = 0;
	char err[256];

	url_token(arg, buf, len);
	for (i = 0; i < 2; i++)
		if ((n = strlen(buf)) > (l = strlen(ell[i])) && !strcmp(buf + n - l, ell[i]))
			buf[n - l] = '\0';
	/* Not repeated: it may be a real token, pasted with a typo. */
	if (buf[0] == '\0' || strlen(buf) > TOKEN_MAX ||
	    strspn(buf, TOKEN_CHARS) != strlen(buf)) {
		errorx("%s: invalid token (the lower-case letters and digits "
		    "from the preview's URL, or the URL)", cmd);
		return -2;
	}
	if (strlen(buf) >= TOKEN_LEN)
		return 0;
	/* A prefix: the one preview of yours whose token starts so. */
	if (call_err("GET", KB_API_PREVIEW_LIST, NULL, &resp, err, sizeof(err)) == -1) {
		errorx("%s failed: %s", cmd, err);
		return -1;
	}
	n = strlen(buf);
	cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(resp, "previews")) {
		if (mine(p) && jstr(p, "token") && !strncmp(jstr(p, "token"), buf, n)) {
			found = p;
			mine_n++;
		} else if (!mine(p) && jstr(p, "token_prefix") &&
		    !strncmp(jstr(p, "token_prefix"), buf, strlen(jstr(p, "token_prefix")) < n ?
		    strlen(jstr(p, "token_prefix")) : n))
			owner = jstr(p, "owner");
	}
	if (mine_n == 1)
		snprintf(buf, len, "%s", jstr(found, "token"));
	else if (mine_n > 1)
		errorx("%s: %zu of your previews start with that: give more of the token "
		    "(or the URL)", cmd, mine_n);
	else if (owner)
		errorx("%s: that preview is %s's, not yours: only its owner removes it", cmd,
		    shown(owner, err, sizeof(err)));
	else
		errorx("%s: no preview of yours starts with that ('kbridge preview list' "
		    "shows yours)", cmd);
	cJSON_Delete(resp);
	return mine_n == 1 ? 0 : -1;
}

static int
preview_cmd_remove(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	const cJSON *p;
	const char *arg;
	char token[TOKEN_MAX + 1];
	enum output out = OUT_TEXT;
	cJSON *body, *resp = NULL;
	int ch, ret;

	while ((ch = next_opt(argc, argv, ":o:h", opts)) != -1)
		if (!std_opt(ch, argv, NULL, &out, &ret))
			return ret;
	if (optind >= argc) {
		errorx("%s: missing TOKEN (see 'kbridge %s --help')", argv[0],
		    argv[0]);
		return EXIT_USAGE;
	}
	arg = argv[optind++];
	if (no_operands(argc, argv) == -1)
		return EXIT_USAGE;
	catch_signals();
	if ((ret = resolve_token(argv[0], arg, token, sizeof(token))) < 0)
		return ret == -2 ? EXIT_USAGE : 1;
	if ((body = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(body, "token", token) == NULL) {
		errorx("out of memory");
		cJSON_Delete(body);
		return 1;
	}
	ret = call("preview remove", "POST", KB_API_PREVIEW_REMOVE, body,
	    &resp);
	cJSON_Delete(body);
	if (ret == -1)
		return 1;
	preview_times(resp);
	p = cJSON_GetObjectItemCaseSensitive(resp, "preview");
	if (out == OUT_JSON)
		print_json(resp);
	else {
		fputs("Removed the preview of ", stdout);
		put_workload(p);
		put_in(" (", orelse(jstr(p, "token_prefix"), "?"), "\u2026)\n");
	}
	cJSON_Delete(resp);
	return 0;
}

int
cmd_preview(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int, char **);
	} subs[] = {
		{ "create", preview_cmd_create },
		{ "list", preview_cmd_list },
		{ "remove", preview_cmd_remove },
	};
	static char name[32];
	size_t i;

	if (argc < 2) {
		errorx("preview: missing subcommand create, list or remove "
		    "(see 'kbridge preview --help')");
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		print_usage(argv[0]);
		return 0;
	}
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(argv[1], subs[i].name) == 0) {
			/* Messages and --help then name "preview create". */
			snprintf(name, sizeof(name), "preview %s", argv[1]);
			argv[1] = name;
			return subs[i].run(argc - 1, argv + 1);
		}
	}
	if (argv[1][0] == '-')
		errorx("preview: unknown option %s (see 'kbridge preview "
		    "--help')", argv[1]);
	else
		errorx("preview: unknown subcommand '%s' (see 'kbridge preview "
		    "--help')", argv[1]);
	return EXIT_USAGE;
}
