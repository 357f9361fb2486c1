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
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "dial.h"
#include "kbridged.h"
#include "log.h"
#include "session.h"

#define DELIVER_TIMEOUT_MS 5000

/* Our intercepts: the manager says which one a delivered stream is for. */
struct local_icpt {
	struct local_icpt *next;
	char id[KB_OPEN_REF_MAX + 1];
	char workload[64], ns[64];
	uint16_t port;
};

enum relay_kind { RELAY_INTERCEPT, RELAY_LEAVE, RELAY_LIST };

/* A CLI request waiting for the manager's answer. */
struct relay {
	struct relay *next;
	struct evhttp_request *req; /* NULL once the CLI went away */
	struct evhttp_connection *conn;
	enum relay_kind kind;
	char workload[64], ns[64];
	uint16_t port;
};

struct delivery {
	struct kb_stream *st;
	struct kb_dial *dial;
	uint16_t port;
};

static struct local_icpt *icpts;
static struct relay *relays;

static void
local_forget(const char *workload, const char *ns)
{
	struct local_icpt **pp, *i;

	for (pp = &icpts; (i = *pp) != NULL;) {
		if (!strcmp(i->workload, workload) && !strcmp(i->ns, ns)) {
			*pp = i->next;
			free(i);
		} else {
			pp = &i->next;
		}
	}
}

static void
local_add(const struct relay *r, const char *id)
{
	struct local_icpt *i;

	local_forget(r->workload, r->ns);
	if ((i = calloc(1, sizeof(*i))) == NULL)
		return;
	snprintf(i->id, sizeof(i->id), "%s", id);
	snprintf(i->workload, sizeof(i->workload), "%s", r->workload);
	snprintf(i->ns, sizeof(i->ns), "%s", r->ns);
	i->port = r->port;
	i->next = icpts;
	icpts = i;
}

static void
relay_gone(struct evhttp_connection *conn, void *arg)
{
	struct relay *r;

	(void)arg;
	for (r = relays; r; r = r->next) {
		if (r->conn == conn) {
			r->req = NULL;
			r->conn = NULL;
		}
	}
}

static void
relay_done(void *ctx, const cJSON *res, const char *err)
{
	struct relay **pp, *r = ctx;
	const cJSON *ok = res ? cJSON_GetObjectItemCaseSensitive(res, "ok") : NULL;
	const cJSON *icpt, *id, *status, *error;
	cJSON *body;

	for (pp = &relays; *pp && *pp != r; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = r->next;
	if (cJSON_IsTrue(ok) && r->kind == RELAY_INTERCEPT) {
		icpt = cJSON_GetObjectItemCaseSensitive(res, "intercept");
		id = cJSON_GetObjectItemCaseSensitive(icpt, "id");
		if (cJSON_IsString(id))
			local_add(r, id->valuestring);
	} else if (cJSON_IsTrue(ok) && r->kind == RELAY_LEAVE) {
		local_forget(r->workload, r->ns);
	}
	if (r->req) {
		evhttp_connection_set_closecb(r->conn, NULL, NULL);
		if (!res) {
			control_error(r->req, 502, err);
		} else if (cJSON_IsTrue(ok)) {
			body = cJSON_Duplicate(res, 1);
			cJSON_DeleteItemFromObjectCaseSensitive(body, "type");
			cJSON_DeleteItemFromObjectCaseSensitive(body, "id");
			if (r->kind == RELAY_LEAVE) {
				cJSON_AddStringToObject(body, "workload", r->workload);
				cJSON_AddStringToObject(body, "namespace", r->ns);
			}
			control_reply(r->req, 200, body);
		} else {
			status = cJSON_GetObjectItemCaseSensitive(res, "status");
			error = cJSON_GetObjectItemCaseSensitive(res, "error");
			control_error(r->req, cJSON_IsNumber(status) ? status->valueint : 502,
			    cJSON_IsString(error) ? error->valuestring : "the manager refused");
		}
	}
	free(r);
}

static int
copy_string(cJSON *to, const cJSON *from, const char *key, const char *dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, key);

	if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
		return -1;
	if (cJSON_IsString(v))
		cJSON_AddStringToObject(to, key, v->valuestring);
	else if (dflt)
		cJSON_AddStringToObject(to, key, dflt);
	return 0;
}

void
intercept_http(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq q = { 0 };
	cJSON *body = NULL, *msg = NULL;
	const cJSON *v;
	struct relay *r = NULL;
	enum relay_kind kind;

	if (!path)
		path = "";
	kind = !strcmp(path, "/v1/list") ? RELAY_LIST : !strcmp(path, "/v1/leave") ? RELAY_LEAVE :
	    RELAY_INTERCEPT;
	if (evhttp_request_get_command(req) != (kind == RELAY_LIST ? EVHTTP_REQ_GET : EVHTTP_REQ_POST)) {
		control_error(req, 405, kind == RELAY_LIST ? "use GET" : "use POST");
		return;
	}
	if (d->state != KBD_CONNECTED) {
		control_error(req, 503, d->state == KBD_RECONNECTING ?
		    "reconnecting to the manager; try again in a moment" :
		    "not connected (run 'kbridge connect' first)");
		return;
	}
	if ((msg = cJSON_CreateObject()) == NULL || (r = calloc(1, sizeof(*r))) == NULL)
		goto nomem;
	r->kind = kind;
	if (kind == RELAY_LIST) {
		const char *ns;
		cJSON_AddStringToObject(msg, "type", "list");
		evhttp_parse_query_str(evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)) ?
		    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)) : "", &q);
		if ((ns = evhttp_find_header(&q, "namespace")) != NULL)
			cJSON_AddStringToObject(msg, "namespace", ns);
		evhttp_clear_headers(&q);
	} else {
		if ((body = control_body(req)) == NULL) {
			control_error(req, 400, "request body is not a JSON object");
			goto out;
		}
		cJSON_AddStringToObject(msg, "type", kind == RELAY_LEAVE ? "leave" : "intercept");
		if (copy_string(msg, body, "workload", NULL) < 0 ||
		    copy_string(msg, body, "namespace", d->ns) < 0 ||
		    !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "workload"))) {
			control_error(req, 400, "workload (and namespace) must be strings");
			goto out;
		}
		snprintf(r->workload, sizeof(r->workload), "%s",
		    cJSON_GetObjectItemCaseSensitive(msg, "workload")->valuestring);
		snprintf(r->ns, sizeof(r->ns), "%s",
		    cJSON_GetObjectItemCaseSensitive(msg, "namespace")->valuestring);
		if (kind == RELAY_INTERCEPT) {
			v = cJSON_GetObjectItemCaseSensitive(body, "port");
			if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65535) {
				control_error(req, 400, "port must be 1-65535");
				goto out;
			}
			r->port = (uint16_t)v->valuedouble;
			cJSON_AddNumberToObject(msg, "port", r->port);
			if ((v = cJSON_GetObjectItemCaseSensitive(body, "headers")) != NULL)
				cJSON_AddItemToObject(msg, "headers", cJSON_Duplicate(v, 1));
			if (copy_string(msg, body, "path_prefix", NULL) < 0) {
				control_error(req, 400, "path_prefix must be a string");
				goto out;
			}
		}
	}
	r->req = req;
	r->conn = evhttp_request_get_connection(req);
	if (tunnel_request(d, msg, relay_done, r) < 0) {
		msg = NULL;
		control_error(req, 503, "the session to the manager is not ready");
		goto out;
	}
	msg = NULL;
	evhttp_connection_set_closecb(r->conn, relay_gone, NULL);
	r->next = relays;
	relays = r;
	r = NULL;
	goto out;
nomem:
	control_error(req, 500, "out of memory");
out:
	free(r);
	cJSON_Delete(msg);
	cJSON_Delete(body);
}

/* --- delivering intercepted streams --- */

static void
delivery_closed(struct kb_stream *st, int reason, const char *text, void *arg)
{
	struct delivery *dv = arg;

	(void)st;
	(void)reason;
	(void)text;
	kb_dial_cancel(dv->dial);
	free(dv);
}

static const struct kb_stream_cbs delivery_cbs = { .on_close = delivery_closed };

static void
delivered(int fd, int e, void *arg)
{
	struct delivery *dv = arg;
	struct kb_stream *st = dv->st;
	char text[160];
	uint16_t port = dv->port;

	kb_stream_set_cbs(st, NULL, NULL);
	free(dv);
	if (fd >= 0) {
		kb_stream_accept(st, fd, NULL, NULL);
		return;
	}
	snprintf(text, sizeof(text), "nothing answers on 127.0.0.1:%u on the intercepting "
	    "workstation (%s)", port, strerror(e));
	log_info("intercepted request: %s", text);
	kb_stream_reset(st, kb_dial_reset_reason(e), text);
}

void
intercept_deliver(struct kbd *d, struct kb_stream *st, const struct kb_open *o)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct local_icpt *i;
	struct delivery *dv;

	for (i = icpts; i && strcmp(i->id, o->ref); i = i->next)
		;
	if (!i) {
		kb_stream_reset(st, KB_RST_DENIED, "this workstation no longer has that intercept");
		return;
	}
	if ((dv = calloc(1, sizeof(*dv))) == NULL) {
		kb_stream_reset(st, KB_RST_INTERNAL, "out of memory");
		return;
	}
	dv->st = st;
	dv->port = i->port;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(i->port);
	dv->dial = kb_dial_start(d->base, (struct sockaddr *)&sin, sizeof(sin), DELIVER_TIMEOUT_MS,
	    delivered, dv);
	if (!dv->dial) {
		delivered(-1, errno, dv);
		return;
	}
	kb_stream_set_cbs(st, &delivery_cbs, dv);
}

void
intercept_shutdown(void)
{
	struct local_icpt *i;

	while ((i = icpts) != NULL) {
		icpts = i->next;
		free(i);
	}
}
