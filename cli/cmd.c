/* What the command files share besides main.c's option parsing: requests
 * to kbridged, checks of common arguments, printing cluster strings, the
 * one order of -o json|yaml documents (sorted keys and lists). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "client.h"
#include "cmd.h"
#include "util.h"

const char *
shown(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 4 < len; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' :
		    s[i];
	strcpy(buf + i, s[i] ? "..." : "");
	return buf;
}

size_t
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

void
put_in(const char *before, const char *s, const char *after)
{
	if (before)
		fputs(before, stdout);
	put(s);
	if (after)
		fputs(after, stdout);
}

void
put_padded(const char *s, size_t width)
{
	size_t n = put(s);

	while (n++ < width)
		putchar(' ');
}

int
call_ms(const char *method, const char *path, const cJSON *body,
    long timeout_ms, cJSON **resp, char *err, size_t errlen)
{
	const char *e;
	long status;
	int rc;

	rc = kb_api(method, path, body, timeout_ms, &status, resp, err,
	    errlen);
	if (rc == KB_API_DOWN) {
		snprintf(err, errlen, "not connected (run 'kbridge connect' "
		    "first)");
		return KB_API_DOWN;
	}
	e = rc == 0 ? cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(*resp, "error")) : NULL;
	if (status == 404 && (rc == KB_API_ERROR ||
	    (e && strcmp(e, "no such endpoint") == 0))) {
		snprintf(err, errlen, "kbridged does not know %s; it is "
		    "older than this kbridge (restart it: 'kbridge quit', "
		    "then 'kbridge connect')", path);
		rc = KB_API_ERROR;
	} else if (rc == 0 && (status < 200 || status > 299)) {
		kb_api_errmsg(status, *resp, err, errlen);
		rc = KB_API_ERROR;
	} else if (rc == 0 && !cJSON_IsObject(*resp)) {
		snprintf(err, errlen, "kbridged answered with no JSON object");
		rc = KB_API_ERROR;
	}
	if (rc != 0) {
		cJSON_Delete(*resp);
		*resp = NULL;
		return -1;
	}
	return 0;
}

int
call_err(const char *method, const char *path, const cJSON *body,
    cJSON **resp, char *err, size_t errlen)
{
	return call_ms(method, path, body, API_TIMEOUT_MS, resp, err,
	    errlen) == 0 ? 0 : -1;
}

int
call(const char *what, const char *method, const char *path,
    const cJSON *body, cJSON **resp)
{
	char err[1024];

	if (call_err(method, path, body, resp, err, sizeof(err)) == -1) {
		errorx("%s failed: %s", what, err);
		return -1;
	}
	return 0;
}

const char *
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
	if (!kb_dns_label(w)) {
		errorx("%s: invalid workload '%s' (%s)", argv[0],
		    shown(w, buf, sizeof(buf)), strchr(w, '.') ?
		    "give its namespace with -n" :
		    "a name of lower-case letters, digits and '-'");
		return NULL;
	}
	return w;
}

int
namespace_arg(const char *cmd, const char *ns)
{
	char buf[SHOWN_MAX];

	if (ns && !kb_dns_label(ns)) {
		errorx("%s: invalid namespace '%s'", cmd,
		    shown(ns, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

int
port_arg(const char *opt, const char *s, long *port)
{
	char buf[SHOWN_MAX];
	unsigned long n;

	if (kb_parse_num(s, 1, 65535, NULL, &n) < 0) {
		errorx("%s must be a number from 1 to 65535, not '%s'", opt,
		    shown(s, buf, sizeof(buf)));
		return -1;
	}
	*port = (long)n;
	return 0;
}

int
std_opt(int ch, char **argv, const char **ns, enum output *out, int *ret)
{
	*ret = EXIT_USAGE;
	if (ch == 'n' && ns) {
		*ns = optarg;
		return 1;
	}
	if (ch == 'o' && out)
		return parse_output(argv[0], optarg, out) == 0;
	if (ch == 'h') {
		print_usage(argv[0]);
		*ret = 0;
	}
	return 0;
}

int
std_opts_only(int argc, char **argv, const char *shortopts,
    const struct option *longopts, const char **ns, enum output *out,
    int *ret)
{
	int ch;

	while ((ch = next_opt(argc, argv, shortopts, longopts)) != -1)
		if (!std_opt(ch, argv, ns, out, ret))
			return 0;
	*ret = EXIT_USAGE;
	return no_operands(argc, argv) == 0;
}

int
list_cmd(int argc, char **argv, const char *path,
    void (*text)(const cJSON *, const char *, enum output),
    void (*json)(cJSON *))
{
	static const struct option opts[] = {
		LONGOPT_NAMESPACE,
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	enum output out = OUT_TEXT;
	const char *ns = NULL;
	cJSON *resp = NULL;
	char url[128];
	int ret;

	if (!std_opts_only(argc, argv, ":n:o:h", opts, &ns, &out, &ret))
		return ret;
	if (namespace_arg(argv[0], ns) == -1)
		return EXIT_USAGE;
	/* A valid label needs no escaping in a query. */
	snprintf(url, sizeof(url), "%s%s%s", path, ns ? "?namespace=" : "",
	    ns ? ns : "");
	catch_signals();
	if (call(argv[0], "GET", url, NULL, &resp) == -1)
		return 1;
	sort_lists(resp);
	if (out == OUT_JSON) {
		if (json)
			json(resp);
		print_json(resp);
	} else
		text(resp, ns, out);
	cJSON_Delete(resp);
	return 0;
}

/* Sort the children of j (an object or array) by cmp, stably (ties keep
 * their order), relinking cJSON's list: the head's prev is the tail. */
struct kb_ord {
	cJSON	*item;
	size_t	 at;
};

static int
by_key(const void *a, const void *b)
{
	const struct kb_ord *x = a, *y = b;
	int c = strcmp(x->item->string ? x->item->string : "",
	    y->item->string ? y->item->string : "");

	return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* The members kubectl-like lists are sorted by, in this order. */
static const char *const list_keys[] = {
	"namespace", "name", "workload", "owner", "id", "token_prefix"
};

static int
by_fields(const void *a, const void *b)
{
	const struct kb_ord *x = a, *y = b;
	size_t i;
	int c;

	for (i = 0; i < sizeof(list_keys) / sizeof(list_keys[0]); i++)
		if ((c = strcmp(orelse(jstr(x->item, list_keys[i]), ""),
		    orelse(jstr(y->item, list_keys[i]), ""))) != 0)
			return c;
	return (x->at > y->at) - (x->at < y->at);
}

static void
sort_children(cJSON *j, int (*cmp)(const void *, const void *))
{
	struct kb_ord *v;
	cJSON *c;
	size_t n = 0, i;

	for (c = j->child; c; c = c->next)
		n++;
	if (n < 2 || (v = calloc(n, sizeof(*v))) == NULL)
		return;
	for (c = j->child, i = 0; c; c = c->next, i++)
		v[i] = (struct kb_ord){ c, i };
	qsort(v, n, sizeof(*v), cmp);
	for (i = 0; i < n; i++) {
		v[i].item->next = i + 1 < n ? v[i + 1].item : NULL;
		v[i].item->prev = v[i ? i - 1 : n - 1].item;
	}
	j->child = v[0].item;
	free(v);
}

void
sort_lists(cJSON *j)
{
	cJSON *c;

	cJSON_ArrayForEach(c, j) {
		if (cJSON_IsArray(c) && c->string &&
		    (strcmp(c->string, "workloads") == 0 ||
		    strcmp(c->string, "intercepts") == 0 ||
		    strcmp(c->string, "previews") == 0))
			sort_children(c, by_fields);
		sort_lists(c);
	}
}

void
sort_keys(cJSON *j)
{
	cJSON *c;

	if (cJSON_IsObject(j))
		sort_children(j, by_key);
	cJSON_ArrayForEach(c, j)
		sort_keys(c);
}
