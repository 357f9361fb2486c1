/* The control-message table: each type's wire name and the fields it must
 * carry, checked once on receipt (as relayd checks its imsgs) so that the
 * handlers behind the switch can trust them. */
#include "msg.h"

#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

enum kind { K_NUM, K_INT, K_STR, K_ARRAY };

#define F_REQ	 0x1 /* must be present */
#define F_NULL	 0x2 /* null counts as absent */
#define F_LABEL	 0x4 /* a string that is a DNS label (kb_dns_label) */

struct field {
	const char *name;
	enum kind kind;
	unsigned flags;
	double min, max;  /* the value (K_INT), the length (K_STR, K_ARRAY) */
	int status;	  /* 0: a protocol error; else the result's status */
	const char *text; /* the error text (a default if NULL) */
	const char *over; /* K_ARRAY: the text for too many elements */
};

#define MAX_FIELDS 6

struct spec {
	const char *name;
	struct field fields[MAX_FIELDS];
	/* What the fields cannot say alone; 0, or with err -1 (a protocol
	 * error) or a status to answer (400). */
	int (*check)(const cJSON *msg, char *err, size_t errlen);
};

/* Every request carries an id that fits a u32. An answer's id is any
 * number: one the daemon never sent is an answer after it gave up, ignored. */
#define ID { "id", K_INT, F_REQ, 0, UINT32_MAX, 0, NULL, NULL }
#define ANSWER_ID { "id", K_NUM, F_REQ, -DBL_MAX, DBL_MAX, 0, NULL, NULL }
#define BAD_NAME "invalid workload or namespace name"
#define NO_NAMES "workload and namespace are required"
#define BAD_TTL "ttl must be 1 second to 30 days"
#define BAD_HOST "host must be a host name or address, with an optional :port"
#define NO_TOKEN "no such preview (unknown, expired or removed)"
#define WORKLOAD { "workload", K_STR, F_REQ | F_LABEL, 1, 63, 400, BAD_NAME, NULL }
#define NAMESPACE { "namespace", K_STR, F_REQ | F_LABEL, 1, 63, 400, BAD_NAME, NULL }
#define NS_FILTER { "namespace", K_STR, F_NULL, 0, 253, 400, "namespace must be a string", NULL }

int
kb_dns_qtype_ok(unsigned t)
{
	switch (t) {
	case 1: case 2: case 5: case 12: case 15: case 28: case 33:
		return 1;	/* A NS CNAME PTR MX AAAA SRV: their names decoded */
	case 0: case 3: case 4: case 6: case 7: case 8: case 9: case 14: case 17: case 18: case 21:
	case 24: case 26: case 30: case 35: case 36: case 38: case 39: case 41:
		return 0;	/* names that may be compressed (RFC 3597 section 4), OPT */
	default:
		/* TXT and every other type, data passed through; not the
		 * meta types (TKEY..ANY, 249-255) nor the reserved ones. */
		return t < 128 || (t >= 256 && t < 65280);
	}
}

int
kb_dns_name_ok(const char *s)
{
	size_t len = strlen(s), label = 0;
	const char *p;

	if (len == 0 || len > 253 || s[0] == '.' || s[len - 1] == '.')
		return 0;
	for (p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '*') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return 1;
}

int
kb_msg_dns_record(const cJSON *rec, struct kb_dns_record *out)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(rec, "name"),
	    *type = cJSON_GetObjectItemCaseSensitive(rec, "type"),
	    *ttl = cJSON_GetObjectItemCaseSensitive(rec, "ttl"),
	    *data = cJSON_GetObjectItemCaseSensitive(rec, "data");

	if (!cJSON_IsObject(rec) || !cJSON_IsString(name) || !kb_dns_name_ok(name->valuestring) ||
	    !cJSON_IsNumber(type) || type->valuedouble < 1 || type->valuedouble > 65535 ||
	    (double)(int)type->valuedouble != type->valuedouble ||
	    !kb_dns_qtype_ok((unsigned)type->valuedouble) ||
	    !cJSON_IsNumber(ttl) || ttl->valuedouble < 0 || ttl->valuedouble > INT32_MAX ||
	    !cJSON_IsString(data) || strlen(data->valuestring) > KB_DNS_DATA_MAX)
		return -1;
	out->name = name->valuestring;
	out->type = (uint16_t)type->valuedouble;
	out->ttl = (uint32_t)ttl->valuedouble;
	out->data = data->valuestring;
	return 0;
}

/* "logs": a sidecar's (workload and namespace) or the manager's (neither). */
static int
logs_check(const cJSON *msg, char *err, size_t errlen)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(msg, "workload");
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(msg, "namespace");
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(msg, "replica");

	if (cJSON_IsString(w) != cJSON_IsString(n) || (cJSON_IsNumber(r) && !cJSON_IsString(w))) {
		snprintf(err, errlen, "logs: workload and namespace go together (and replica "
		    "with them)");
		return 400;
	}
	return 0;
}

/* "loglevel": "debug" or "info", as the daemon's own levels. */
static int
loglevel_check(const cJSON *msg, char *err, size_t errlen)
{
	const char *l = cJSON_GetObjectItemCaseSensitive(msg, "level")->valuestring;

	if (strcmp(l, "debug") != 0 && strcmp(l, "info") != 0) {
		snprintf(err, errlen, "loglevel: level must be debug or info");
		return -1;
	}
	return 0;
}

static int
resolve_check(const cJSON *msg, char *err, size_t errlen)
{
	double q = cJSON_GetObjectItemCaseSensitive(msg, "qtype")->valuedouble;

	if (!kb_dns_qtype_ok((unsigned)q)) {
		snprintf(err, errlen, "resolve: qtype %.0f cannot be asked", q);
		return -1;
	}
	return 0;
}

static const struct spec specs[KB_MSG__COUNT] = {
	[KB_MSG_RESOLVE] = { "resolve", {
		ID,
		{ "name", K_STR, F_REQ, 1, 253, 0, NULL, NULL },
		{ "qtype", K_INT, F_REQ, 1, 65535, 0, NULL, NULL },
	}, resolve_check },
	[KB_MSG_RESOLVED] = { "resolved", {
		ANSWER_ID,
		{ "rcode", K_INT, F_REQ, 0, 15, 0, NULL, NULL },
		/* Any number: one a u32 cannot hold means the default. */
		{ "ttl", K_NUM, 0, -DBL_MAX, DBL_MAX, 0, NULL, NULL },
		{ "addrs", K_ARRAY, 0, 0, 1024, 0, NULL, NULL },
		{ "records", K_ARRAY, 0, 0, KB_DNS_RECORDS_MAX, 0, NULL, NULL },
	}, NULL },
	[KB_MSG_INTERCEPT] = { "intercept", {
		ID,
		WORKLOAD,
		NAMESPACE,
		{ "port", K_INT, F_REQ, 1, 65535, 400, "port must be 1-65535", NULL },
		{ "headers", K_ARRAY, F_NULL, 0, KB_MAX_MATCH_HEADERS, 400, "headers must be a list",
		  "too many headers" },
	}, NULL },
	[KB_MSG_LEAVE] = { "leave", {
		ID,
		{ "workload", K_STR, F_REQ, 0, 253, 400, NO_NAMES, NULL },
		{ "namespace", K_STR, F_REQ, 0, 253, 400, NO_NAMES, NULL },
	}, NULL },
	[KB_MSG_LEAVE_ALL] = { "leave-all", { ID }, NULL },
	[KB_MSG_LIST] = { "list", { ID, NS_FILTER }, NULL },
	[KB_MSG_PREVIEW_CREATE] = { "preview-create", {
		ID,
		WORKLOAD,
		NAMESPACE,
		{ "ttl", K_INT, F_NULL, 1, KB_PREVIEW_TTL_MAX, 400, BAD_TTL, NULL },
		{ "service_port", K_INT, F_NULL, 1, 65535, 400, "service_port must be 1-65535",
		  NULL },
		{ "host", K_STR, F_NULL, 1, 255, 400, BAD_HOST, NULL },
	}, NULL },
	[KB_MSG_PREVIEW_LIST] = { "preview-list", { ID, NS_FILTER }, NULL },
	[KB_MSG_PREVIEW_REMOVE] = { "preview-remove", {
		ID,
		{ "token", K_STR, F_REQ, 0, 253, 404, NO_TOKEN, NULL },
	}, NULL },
	[KB_MSG_RESULT] = { "result", { ANSWER_ID }, NULL },
	[KB_MSG_LOGS] = { "logs", {
		ID,
		{ "workload", K_STR, F_NULL | F_LABEL, 1, 63, 400, BAD_NAME, NULL },
		{ "namespace", K_STR, F_NULL | F_LABEL, 1, 63, 400, BAD_NAME, NULL },
		{ "replica", K_INT, F_NULL, 0, KB_LOGS_REPLICA_MAX, 400, "replica must be 0-63",
		  NULL },
	}, logs_check },
	[KB_MSG_LOGLEVEL] = { "loglevel", {
		{ "level", K_STR, F_REQ, 1, 5, 0, NULL, NULL },
	}, loglevel_check },
	[KB_MSG_REPLACED] = { "replaced", {
		{ "by", K_STR, 0, 0, 253, 0, NULL, NULL },
	}, NULL },
	[KB_MSG_INTERCEPTS] = { "intercepts", {
		{ "intercepts", K_ARRAY, F_REQ, 0, 4096, 0, NULL, NULL },
	}, NULL },
	/* The hello's limits (the daemon holds 64 subnets, 256 namespaces). */
	[KB_MSG_CLUSTER] = { "cluster", {
		{ "subnets", K_ARRAY, F_REQ, 0, 64, 0, NULL, NULL },
		{ "namespaces", K_ARRAY, F_REQ, 0, 256, 0, NULL, NULL },
	}, NULL },
};

const char *
kb_msg_name(enum kb_msg_type type)
{
	return (unsigned)type < KB_MSG__COUNT ? specs[type].name : NULL;
}

int
kb_msg_lookup(const char *name, enum kb_msg_type *type)
{
	unsigned t;

	for (t = 0; t < KB_MSG__COUNT; t++) {
		if (!strcmp(specs[t].name, name)) {
			*type = (enum kb_msg_type)t;
			return 0;
		}
	}
	return -1;
}

/* One field of msg against f: 0 or -1 with err. */
static int
check_field(const struct spec *sp, const struct field *f, const cJSON *msg, char *err,
    size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, f->name);
	double n = 0;	/* the value, or the length */
	int ok = 0;

	if (!v || ((f->flags & F_NULL) && cJSON_IsNull(v))) {
		if (!(f->flags & F_REQ))
			return 0;
	} else if ((f->kind == K_NUM || f->kind == K_INT) && cJSON_IsNumber(v)) {
		n = v->valuedouble;
		ok = 1;
	} else if (f->kind == K_STR && cJSON_IsString(v)) {
		n = (double)strlen(v->valuestring);
		ok = !(f->flags & F_LABEL) || kb_dns_label(v->valuestring);
	} else if (f->kind == K_ARRAY && cJSON_IsArray(v)) {
		n = cJSON_GetArraySize(v);
		ok = 1;
	}
	if (ok && n > f->max && f->over) {
		snprintf(err, errlen, "%s", f->over);
		return -1;
	}
	ok = ok && n >= f->min && n <= f->max;
	/* In range, so the conversion is defined: a whole number? */
	ok = ok && (f->kind != K_INT || (double)(int64_t)n == n);
	if (ok)
		return 0;
	if (f->text)
		snprintf(err, errlen, "%s", f->text);
	else if (f->kind == K_NUM)
		snprintf(err, errlen, "%s: \"%s\" must be a number", sp->name, f->name);
	else if (f->kind == K_INT)
		snprintf(err, errlen, "%s: \"%s\" must be an integer %.0f-%.0f", sp->name, f->name,
		    f->min, f->max);
	else
		snprintf(err, errlen, "%s: \"%s\" must be a %s of %.0f-%.0f %s", sp->name, f->name,
		    f->kind == K_STR ? "string" : "list", f->min, f->max,
		    f->kind == K_STR ? "characters" : "elements");
	return -1;
}

int
kb_msg_parse(const cJSON *msg, enum kb_msg_type *type, char *err, size_t errlen)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(msg, "type");
	const struct spec *sp;
	size_t i;
	int rc;

	if (!cJSON_IsObject(msg) || !cJSON_IsString(t)) {
		snprintf(err, errlen, "a control message without a \"type\" string");
		return -1;
	}
	if (kb_msg_lookup(t->valuestring, type) < 0) {
		snprintf(err, errlen, "unknown control message type \"%.40s\"", t->valuestring);
		return -1;
	}
	sp = &specs[*type];
	for (i = 0; i < MAX_FIELDS && sp->fields[i].name; i++)
		if (check_field(sp, &sp->fields[i], msg, err, errlen) < 0)
			return sp->fields[i].status ? sp->fields[i].status : -1;
	/* -1: a protocol error; a status (400): a request to answer. */
	if (sp->check && (rc = sp->check(msg, err, errlen)) != 0)
		return rc;
	return 0;
}

cJSON *
kb_msg_new(enum kb_msg_type type)
{
	cJSON *m;

	if ((unsigned)type >= KB_MSG__COUNT || (m = cJSON_CreateObject()) == NULL)
		return NULL;
	if (!cJSON_AddStringToObject(m, "type", specs[type].name)) {
		cJSON_Delete(m);
		return NULL;
	}
	return m;
}

cJSON *
kb_msg_result(double id, int ok, int status, const char *error)
{
	cJSON *r = kb_msg_new(KB_MSG_RESULT);

	if (!r)
		return NULL;
	cJSON_AddNumberToObject(r, "id", id);
	cJSON_AddBoolToObject(r, "ok", ok);
	if (!ok) {
		cJSON_AddNumberToObject(r, "status", status);
		cJSON_AddStringToObject(r, "error", error);
	}
	return r;
}
