/* Decisions of kbridge intercept from API objects alone (cli/kpick.h).
 *
 * Everything here reads objects the API server returned but checks them
 * anyway: a label selector is built only of characters labels may have
 * (so no value can add a term), port numbers are 1-65535, names are what
 * the API allows for port names. */
#include "kpick.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define CLEAN_MAX	64

static const cJSON *
get(const cJSON *o, const char *key)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *
str(const cJSON *o, const char *key)
{
	const char *s = cJSON_GetStringValue(get(o, key));

	return s && *s ? s : NULL;
}

static const cJSON *
tmpl(const cJSON *obj)
{
	return get(get(obj, "spec"), "template");
}

static void fail(char *, size_t, const char *, ...) __attribute__((format(printf, 3, 4)));

static void
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* s for a message: control characters as '?', at most CLEAN_MAX - 1. */
static const char *
clean(const char *s, char *buf)
{
	size_t i;

	for (i = 0; s[i] && i < CLEAN_MAX - 1; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

/* Append to buf (of len, *n used so far; *n grows past len when it does
 * not fit, which the caller checks). */
static void append(char *, size_t, size_t *, const char *, ...)
    __attribute__((format(printf, 4, 5)));

static void
append(char *buf, size_t len, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*n >= len)
		return;
	va_start(ap, fmt);
	r = vsnprintf(buf + *n, len - *n, fmt, ap);
	va_end(ap);
	*n += r < 0 ? len : (size_t)r;
}

static int
all_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* A label key (key: [A-Za-z0-9._/-], not empty) or value (may be empty). */
static int
label_ok(const char *s, int key)
{
	if (key && *s == '\0')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-' ||
		    (key && *s == '/')))
			return 0;
	return 1;
}

/* A port number (1-65535) or 0. */
static int
port_num(const cJSON *v)
{
	if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65535 ||
	    v->valuedouble != (double)(int)v->valuedouble)
		return 0;
	return (int)v->valuedouble;
}

static int
is_tcp(const cJSON *port)
{
	const char *proto = str(port, "protocol");

	return proto == NULL || strcmp(proto, "TCP") == 0;
}

/* "key in (a,b)" and the like for one matchExpression; -1 and why. */
static int
expression(const cJSON *e, char *buf, size_t len, size_t *n, char *err, size_t errlen)
{
	const char *key = str(e, "key"), *op = str(e, "operator");
	const cJSON *v;
	char b1[CLEAN_MAX];
	int in = 0, nv = 0;

	if (key == NULL || !label_ok(key, 1)) {
		fail(err, errlen, "a matchExpression of spec.selector has no valid key");
		return -1;
	}
	if (op && strcmp(op, "Exists") == 0) {
		append(buf, len, n, "%s", key);
		return 0;
	}
	if (op && strcmp(op, "DoesNotExist") == 0) {
		append(buf, len, n, "!%s", key);
		return 0;
	}
	if (op == NULL || ((in = strcmp(op, "In") == 0) == 0 && strcmp(op, "NotIn") != 0)) {
		fail(err, errlen, "matchExpression %s of spec.selector has operator %s, not In, "
		    "NotIn, Exists or DoesNotExist", key, op ? clean(op, b1) : "(none)");
		return -1;
	}
	append(buf, len, n, "%s %s (", key, in ? "in" : "notin");
	cJSON_ArrayForEach(v, get(e, "values")) {
		if (!cJSON_IsString(v) || !label_ok(v->valuestring, 0)) {
			fail(err, errlen, "matchExpression %s of spec.selector has a value that is "
			    "not a label value", key);
			return -1;
		}
		append(buf, len, n, "%s%s", nv++ ? "," : "", v->valuestring);
	}
	if (nv == 0) {
		fail(err, errlen, "matchExpression %s %s of spec.selector has no values", key, op);
		return -1;
	}
	append(buf, len, n, ")");
	return 0;
}

int
kp_selector(const cJSON *sel, char *buf, size_t len, char *err, size_t errlen)
{
	const cJSON *l, *e;
	size_t n = 0;
	int terms = 0;

	if (len == 0)
		return -1;
	buf[0] = '\0';
	cJSON_ArrayForEach(l, get(sel, "matchLabels")) {
		if (!cJSON_IsString(l) || !label_ok(l->string, 1) ||
		    !label_ok(l->valuestring, 0)) {
			fail(err, errlen, "spec.selector.matchLabels has a key or value that is "
			    "not a label");
			return -1;
		}
		append(buf, len, &n, "%s%s=%s", terms++ ? "," : "", l->string, l->valuestring);
	}
	cJSON_ArrayForEach(e, get(sel, "matchExpressions")) {
		if (terms++)
			append(buf, len, &n, ",");
		if (expression(e, buf, len, &n, err, errlen) == -1)
			return -1;
	}
	if (terms == 0) {
		fail(err, errlen, "spec.selector has neither matchLabels nor matchExpressions");
		return -1;
	}
	if (n >= len) {
		fail(err, errlen, "spec.selector is longer than %zu characters", len - 1);
		return -1;
	}
	return 0;
}

int
kp_query_escape(const char *s, char *buf, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	unsigned char c;

	for (; *s; s++) {
		c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == '~' || c == '-') {
			if (n + 1 >= len)
				return -1;
			buf[n++] = (char)c;
		} else {
			if (n + 3 >= len)
				return -1;
			buf[n++] = '%';
			buf[n++] = hex[c >> 4];
			buf[n++] = hex[c & 15];
		}
	}
	if (n >= len)
		return -1;
	buf[n] = '\0';
	return 0;
}

int
kp_selects(const cJSON *selector, const cJSON *obj)
{
	const cJSON *labels = get(get(tmpl(obj), "metadata"), "labels"), *s;
	const char *v;

	if (!cJSON_IsObject(selector) || cJSON_GetArraySize(selector) == 0)
		return 0;
	cJSON_ArrayForEach(s, selector)
		if (!cJSON_IsString(s) ||
		    (v = cJSON_GetStringValue(get(labels, s->string))) == NULL ||
		    strcmp(v, s->valuestring) != 0)
			return 0;
	return 1;
}

const cJSON *
kp_service_port(const cJSON *svc, const char *svcname, const char *want, char *err,
    size_t errlen)
{
	const cJSON *p, *found = NULL;
	const char *name;
	char list[512], b1[CLEAN_MAX];
	size_t n = 0;
	int count = 0, num, wantnum;

	wantnum = want && all_digits(want) && strlen(want) <= 5 ? atoi(want) : 0;
	list[0] = '\0';
	cJSON_ArrayForEach(p, get(get(svc, "spec"), "ports")) {
		name = str(p, "name");
		if ((num = port_num(get(p, "port"))) == 0 || !is_tcp(p))
			continue;
		if (name && !kb_port_name(name))
			name = NULL;
		append(list, sizeof(list), &n, "%s%d%s%s%s", count++ ? ", " : "", num,
		    name ? " (" : "", name ? name : "", name ? ")" : "");
		if (found == NULL && (want == NULL || num == wantnum ||
		    (name && strcmp(name, want) == 0)))
			found = p;
	}
	if (n >= sizeof(list))
		snprintf(list + sizeof(list) - 5, 5, "...");
	if (count == 0) {
		fail(err, errlen, "service %s has no TCP port", svcname);
		return NULL;
	}
	if (want == NULL && count > 1) {
		fail(err, errlen, "service %s has several ports, %s: pass --port LOCAL:PORT, PORT "
		    "the name or number of one", svcname, list);
		return NULL;
	}
	if (found == NULL)
		fail(err, errlen, "service %s has no TCP port named or numbered %s (it has %s)",
		    svcname, clean(want, b1), list);
	return found;
}

int
kp_target(const cJSON *port, char *buf, size_t len, char *err, size_t errlen)
{
	const cJSON *t = get(port, "targetPort");
	char b1[CLEAN_MAX];
	int num;

	if (cJSON_IsString(t)) {
		if (!kb_port_name(t->valuestring) || strlen(t->valuestring) >= len) {
			fail(err, errlen, "targetPort '%s' of service port %d is not a port name",
			    clean(t->valuestring, b1), port_num(get(port, "port")));
			return -1;
		}
		snprintf(buf, len, "%s", t->valuestring);
		return 0;
	}
	if ((num = port_num(t == NULL ? get(port, "port") : t)) == 0) {
		fail(err, errlen, "service port %d has no valid targetPort",
		    port_num(get(port, "port")));
		return -1;
	}
	snprintf(buf, len, "%d", num);
	return 0;
}

/* The number of the TCP container port of obj's template named name. */
static int
named_port(const cJSON *obj, const char *name)
{
	const cJSON *c, *p;
	const char *n;

	cJSON_ArrayForEach(c, get(get(tmpl(obj), "spec"), "containers"))
		cJSON_ArrayForEach(p, get(c, "ports"))
			if ((n = str(p, "name")) && strcmp(n, name) == 0 && is_tcp(p))
				return port_num(get(p, "containerPort"));
	return 0;
}

int
kp_check_target(const cJSON *obj, const char *what, const char *svcname,
    const cJSON *port, const char *target, char *err, size_t errlen)
{
	const cJSON *c, *p;
	const char *n;
	char list[256];
	size_t len = 0;

	if (all_digits(target) || named_port(obj, target))
		return 0;
	list[0] = '\0';
	cJSON_ArrayForEach(c, get(get(tmpl(obj), "spec"), "containers"))
		cJSON_ArrayForEach(p, get(c, "ports"))
			if ((n = str(p, "name")) && is_tcp(p) && kb_port_name(n))
				append(list, sizeof(list), &len, "%s%s", len ? ", " : "", n);
	if (len >= sizeof(list))
		snprintf(list + sizeof(list) - 5, 5, "...");
	fail(err, errlen, "service %s port %d targets port %s, but no container of %s has a "
	    "TCP port named %s (%s%s)", svcname, port_num(get(port, "port")), target, what,
	    target, len ? "named TCP ports: " : "it has no named TCP port", list);
	return -1;
}

/* The container port v (a name or a number) means in obj's template. */
static int
resolve(const cJSON *obj, const char *v)
{
	if (all_digits(v))
		return strlen(v) <= 5 && atoi(v) <= 65535 ? atoi(v) : 0;
	return named_port(obj, v);
}

static int
same_port(const cJSON *obj, const char *a, const char *b)
{
	int n;

	return strcmp(a, b) == 0 || ((n = resolve(obj, a)) != 0 && n == resolve(obj, b));
}

/* A StatefulSet's rolling-update partition (0 when unset or not one). */
static long long
partition(const cJSON *obj)
{
	const char *kind = cJSON_GetStringValue(get(obj, "kind"));
	const cJSON *n = get(get(get(get(obj, "spec"), "updateStrategy"), "rollingUpdate"),
	    "partition");

	if (kind == NULL || strcmp(kind, "StatefulSet") != 0 || !cJSON_IsNumber(n))
		return 0;
	return n->valuedouble > 0 ? (long long)n->valuedouble : 0;
}

int
kp_plan(const cJSON *obj, const char *what, const char *svcname, const char *target,
    int port_ours, struct kp_plan *p, char *err, size_t errlen)
{
	const cJSON *ann = get(get(tmpl(obj), "metadata"), "annotations");
	const char *inject = cJSON_GetStringValue(get(ann, KP_ANN_INJECT));
	const char *port = cJSON_GetStringValue(get(ann, KP_ANN_PORT));
	char b1[CLEAN_MAX];

	p->inject = p->port = 0;
	if (partition(obj) > 0) {
		/* Pods below the partition keep the old revision, recreated or not:
		 * they would never get the sidecar and the wait could only time out. */
		fail(err, errlen, "%s has spec.updateStrategy.rollingUpdate.partition %lld: its "
		    "pods below ordinal %lld keep the old pod template and would never run the "
		    "kbridge sidecar; set the partition to 0 to intercept it", what,
		    partition(obj), partition(obj));
		return -1;
	}
	if (inject && strcmp(inject, "true") != 0) {
		fail(err, errlen, "the pod template of %s sets %s: \"%s\"; set it to \"true\" (or "
		    "remove it) to intercept", what, KP_ANN_INJECT, clean(inject, b1));
		return -1;
	}
	if (port && !same_port(obj, port, target)) {
		fail(err, errlen, "the pod template of %s has %s: \"%s\"%s, but service %s targets "
		    "port %s: %s", what, KP_ANN_PORT, clean(port, b1),
		    port_ours ? " (from an earlier intercept)" : "", svcname, target, port_ours ?
		    "'kbridge uninstall --agents' removes it" : "change or remove that annotation");
		return -1;
	}
	if (!port && inject && !same_port(obj, KP_PORT_DEFAULT, target)) {
		fail(err, errlen, "the pod template of %s has %s: \"true\" without %s, so the "
		    "sidecar takes port %s, but service %s targets port %s: set %s: \"%s\" there",
		    what, KP_ANN_INJECT, KP_ANN_PORT, KP_PORT_DEFAULT, svcname, target,
		    KP_ANN_PORT, target);
		return -1;
	}
	p->inject = inject == NULL;
	p->port = inject == NULL && port == NULL;
	return 0;
}

cJSON *
kp_result(const char *kind, const char *name, const char *ns, const char *svcname,
    const cJSON *port, const char *target, long replicas, const struct kp_plan *added)
{
	cJSON *r = cJSON_CreateObject(), *a;

	if (r == NULL || !cJSON_AddStringToObject(r, "kind", kind) ||
	    !cJSON_AddStringToObject(r, "name", name) ||
	    !cJSON_AddStringToObject(r, "namespace", ns) ||
	    !cJSON_AddStringToObject(r, "service", svcname) ||
	    !cJSON_AddNumberToObject(r, "service_port", port_num(get(port, "port"))) ||
	    !cJSON_AddStringToObject(r, "target_port", target) ||
	    !cJSON_AddNumberToObject(r, "replicas", (double)replicas) ||
	    (a = cJSON_AddArrayToObject(r, "added")) == NULL ||
	    (added->inject && !cJSON_AddItemToArray(a, cJSON_CreateString(KP_ANN_INJECT))) ||
	    (added->port && !cJSON_AddItemToArray(a, cJSON_CreateString(KP_ANN_PORT)))) {
		cJSON_Delete(r);
		return NULL;
	}
	return r;
}
