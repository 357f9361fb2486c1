/* Intercepts on the workstation: the CLI's intercept, leave and list go to
 * the manager; streams the manager delivers for our intercepts go to the
 * local port the user named. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <event2/http.h>

#include "api.h"
#include "dial.h"
#include "kbridged.h"
#include "log.h"
#include "session.h"

#define DELIVER_TIMEOUT_MS 5000

/* Our intercepts: the manager says which one a delivered stream is for.
 * spec is the request that made it (JSON), to make it again on a manager
 * that restarted and forgot it. */
struct local_icpt {
	struct local_icpt *next;
	char id[KB_OPEN_REF_MAX + 1];
	char workload[64], ns[64];
	uint16_t port;
	char address[64];	/* where the traffic goes: localhost or an IP */
	char *spec;
	struct kbd *d;
	/* Making it again on a restarted manager: the next try, and how many. */
	struct event *retry;
	int tries;
};

enum relay_kind { RELAY_INTERCEPT, RELAY_LEAVE, RELAY_LIST };

/* What an intercept or leave changes here once the manager agrees. */
struct relay_ctx {
	struct kbd *d;
	enum relay_kind kind;
	char workload[64], ns[64];
	uint16_t port;
	char address[64];
	char spec[];		/* intercept: the request, as JSON */
};

static void
local_free(struct local_icpt *i)
{
	if (i->retry)
		event_free(i->retry);
	free(i->spec);
	free(i);
}

static struct local_icpt *
local_find(struct kbd *d, const char *workload, const char *ns)
{
	struct local_icpt *i;

	for (i = d->icpts; i && (strcmp(i->workload, workload) || strcmp(i->ns, ns)); i = i->next)
		;
	return i;
}

static void
local_forget(struct kbd *d, const char *workload, const char *ns)
{
	struct local_icpt **pp, *i;

	for (pp = &d->icpts; (i = *pp) != NULL;) {
		if (!strcmp(i->workload, workload) && !strcmp(i->ns, ns)) {
			*pp = i->next;
			local_free(i);
		} else {
			pp = &i->next;
		}
	}
}

static void
local_add(const struct relay_ctx *r, const char *id)
{
	struct local_icpt *i;

	local_forget(r->d, r->workload, r->ns);
	if ((i = calloc(1, sizeof(*i))) == NULL)
		return;
	snprintf(i->id, sizeof(i->id), "%s", id);
	snprintf(i->workload, sizeof(i->workload), "%s", r->workload);
	snprintf(i->ns, sizeof(i->ns), "%s", r->ns);
	i->port = r->port;
	memcpy(i->address, r->address, sizeof(i->address));
	i->spec = r->spec[0] ? strdup(r->spec) : NULL;
	i->d = r->d;
	i->next = r->d->icpts;
	r->d->icpts = i;
}

cJSON *
intercept_status(const struct kbd *d)
{
	cJSON *a = cJSON_CreateArray(), *o;
	struct local_icpt *i;

	for (i = d->icpts; a && i; i = i->next) {
		if ((o = cJSON_CreateObject()) == NULL)
			break;
		cJSON_AddStringToObject(o, "workload", i->workload);
		cJSON_AddStringToObject(o, "namespace", i->ns);
		cJSON_AddStringToObject(o, "id", i->id);
		cJSON_AddNumberToObject(o, "port", i->port);
		cJSON_AddStringToObject(o, "address", i->address);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

/* --- after a manager restart --- */

#define RESTORE_TRIES 30	/* a second apart: sidecars register again too */

static const struct timeval one_second = { 1, 0 };

/* One request to make an intercept again; the intercept may be left (or
 * the daemon quit) before the answer, so it is found again by name. */
struct restore {
	struct kbd *d;
	char workload[64], ns[64];
};

static void restore_send(struct local_icpt *i);

static void
restore_again(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	restore_send(arg);
}

static void
restored(void *ctx, const cJSON *res, const char *err)
{
	struct restore *rs = ctx;
	struct local_icpt *i = local_find(rs->d, rs->workload, rs->ns);
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(res, "intercept"), "id"));
	const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(res, "error"));
	char workload[sizeof(i->workload)], ns[sizeof(i->ns)];

	free(rs);
	/* Left meanwhile; or no answer: the session went down, and the next
	 * hello makes it again if the manager restarted once more. */
	if (!i || !res)
		return;
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "ok")) && id) {
		snprintf(i->id, sizeof(i->id), "%s", id);
		i->tries = 0;
		log_info("intercept of %s.%s made again on the restarted manager (id %s)",
		    i->workload, i->ns, id);
		return;
	}
	if (++i->tries < RESTORE_TRIES &&
	    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(res, "status")) == 404 &&
	    (i->retry || (i->retry = evtimer_new(i->d->base, restore_again, i)) != NULL)) {
		/* Its sidecar has not registered with the new manager yet. */
		log_debug("intercept of %s.%s: %s; trying again", i->workload, i->ns, why);
		evtimer_add(i->retry, &one_second);
		return;
	}
	log_warnx("intercept of %s.%s is gone: the restarted manager refused it again: %s",
	    i->workload, i->ns, why ? why : err ? err : "no answer");
	/* Copies: local_forget frees i and goes on comparing. */
	memcpy(workload, i->workload, sizeof(workload));
	memcpy(ns, i->ns, sizeof(ns));
	local_forget(i->d, workload, ns);
}

static void
restore_send(struct local_icpt *i)
{
	struct restore *rs;
	cJSON *msg;

	if ((rs = calloc(1, sizeof(*rs))) == NULL || (msg = cJSON_Parse(i->spec)) == NULL) {
		free(rs);
		log_warnx("cannot make the intercept of %s.%s again: out of memory", i->workload,
		    i->ns);
		return;
	}
	/* The same id: the previews of this intercept (and of no other)
	 * serve it again. */
	cJSON_AddStringToObject(msg, "resume", i->id);
	rs->d = i->d;
	memcpy(rs->workload, i->workload, sizeof(rs->workload));
	memcpy(rs->ns, i->ns, sizeof(rs->ns));
	/* Fails only without a session: the next hello tries again. */
	if (tunnel_request(i->d->tunnel, msg, restored, rs) < 0)
		free(rs);
}

void
intercept_restore(struct kbd *d)
{
	struct local_icpt *i;

	for (i = d->icpts; i; i = i->next) {
		if (!i->spec)
			continue;
		i->tries = 0;
		if (i->retry)
			evtimer_del(i->retry);
		restore_send(i);
	}
}

static void
relayed(void *ctx, const cJSON *res, cJSON *reply)
{
	const struct relay_ctx *r = ctx;
	const char *id;

	if (r->kind == RELAY_INTERCEPT) {
		id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(res, "intercept"), "id"));
		if (id)
			local_add(r, id);
	} else {
		local_forget(r->d, r->workload, r->ns);
		if (reply) {
			cJSON_AddStringToObject(reply, "workload", r->workload);
			cJSON_AddStringToObject(reply, "namespace", r->ns);
		}
	}
}

void
intercept_http(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	cJSON *body = NULL, *msg = NULL;
	const cJSON *v;
	struct relay_ctx *r = NULL;
	enum relay_kind kind;
	char *spec;

	if (!path)
		path = "";
	kind = !strcmp(path, KB_API_LIST) ? RELAY_LIST : !strcmp(path, KB_API_LEAVE) ? RELAY_LEAVE :
	    RELAY_INTERCEPT;
	/* Every field checked (proto/api.c) before any reaches the manager. */
	if (control_request(req, kind != RELAY_LIST, &body) < 0)
		return;
	if (!control_relayable(d, req))
		goto out;
	if ((msg = kb_msg_new(kind == RELAY_LIST ? KB_MSG_LIST : kind == RELAY_LEAVE ?
	    KB_MSG_LEAVE : KB_MSG_INTERCEPT)) == NULL) {
		control_error(req, 500, "out of memory");
		goto out;
	}
	if (kind == RELAY_LIST) {
		control_query(req, msg, "namespace");
		control_relay(d, req, msg, NULL, NULL);
		return;
	}
	if (control_string(req, msg, body, "workload", NULL, 1) < 0 ||
	    control_string(req, msg, body, "namespace", tunnel_namespace(d->tunnel), 1) < 0 ||
	    (kind == RELAY_INTERCEPT &&
	    (control_number(req, msg, body, "port", 1, 65535, 1) < 0 ||
	    control_string(req, msg, body, "path_prefix", NULL, 0) < 0)))
		goto out;
	/* Checked: a list of {"name", "value"} objects, each well formed. */
	v = cJSON_GetObjectItemCaseSensitive(body, "headers");
	if (kind == RELAY_INTERCEPT && cJSON_IsArray(v))
		cJSON_AddItemToObject(msg, "headers", cJSON_Duplicate(v, 1));
	spec = kind == RELAY_INTERCEPT ? cJSON_PrintUnformatted(msg) : NULL;
	if ((r = calloc(1, sizeof(*r) + (spec ? strlen(spec) : 0) + 1)) == NULL) {
		free(spec);
		control_error(req, 500, "out of memory");
		goto out;
	}
	if (spec)
		memcpy(r->spec, spec, strlen(spec) + 1);
	free(spec);
	r->d = d;
	r->kind = kind;
	snprintf(r->workload, sizeof(r->workload), "%s", cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(msg, "workload")));
	snprintf(r->ns, sizeof(r->ns), "%s", cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(msg, "namespace")));
	if ((v = cJSON_GetObjectItemCaseSensitive(msg, "port")) != NULL)
		r->port = (uint16_t)v->valuedouble;
	/* Checked (kb_api_address); ours, not the manager's. */
	snprintf(r->address, sizeof(r->address), "%s", cJSON_IsString(v =
	    cJSON_GetObjectItemCaseSensitive(body, "address")) ? v->valuestring : "localhost");
	control_relay(d, req, msg, relayed, r);
	msg = NULL;
out:
	cJSON_Delete(msg);
	cJSON_Delete(body);
}

/* --- delivering intercepted streams --- */

/* The local port answered, or did not (say so in text), or the manager
 * reset the stream first (err < 0). arg: where it was dialed, a string to
 * free. */
static void
delivered(void *arg, struct kb_stream *st, int err, char *text, size_t textlen)
{
	char why[160];

	(void)st;
	if (err > 0) {
		snprintf(why, sizeof(why), "%s", text);
		snprintf(text, textlen, "nothing answers on %s on the intercepting "
		    "workstation (%s)", (char *)arg, why);
		log_info("intercepted request: %s", text);
	}
	free(arg);
}

void
intercept_deliver(struct kbd *d, struct kb_stream *st, const struct kb_open *o)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr_storage ss;
	struct local_icpt *i;
	socklen_t len;
	char *where;
	int r;

	for (i = d->icpts; i && strcmp(i->id, o->ref); i = i->next)
		;
	if (!i) {
		kb_stream_reset(st, KB_RST_DENIED, "this workstation no longer has that intercept");
		return;
	}
	if (!kb_api_address(i->address, i->port, &ss, &len) ||
	    asprintf(&where, strchr(i->address, ':') ? "[%s]:%u%s" : "%s:%u%s", i->address,
	    (unsigned)i->port, ss.ss_family == AF_UNSPEC ? " (127.0.0.1 and ::1)" : "") == -1) {
		kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
		return;
	}
	if (ss.ss_family != AF_UNSPEC) {
		r = kb_stream_dial(d->base, st, (struct sockaddr *)&ss, len, DELIVER_TIMEOUT_MS,
		    delivered, where);
	} else {
		/* localhost: Node and Vite listen on ::1 only. */
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = htons(i->port);
		sin6.sin6_addr = in6addr_loopback;
		sin6.sin6_port = htons(i->port);
		r = kb_stream_dial2(d->base, st, (struct sockaddr *)&sin, sizeof(sin),
		    (struct sockaddr *)&sin6, sizeof(sin6), DELIVER_TIMEOUT_MS, delivered, where);
	}
	if (r == -1)
		free(where);
}

void
intercept_shutdown(struct kbd *d)
{
	struct local_icpt *i;

	while ((i = d->icpts) != NULL) {
		d->icpts = i->next;
		local_free(i);
	}
}
