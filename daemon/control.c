/* The daemon's API for the CLI: HTTP/1.1 + JSON on a Unix socket that only
 * its owner (and root) may open. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api.h"
#include "kbridged.h"
#include "listener.h"
#include "log.h"
#include "util.h"

struct relay;

/* The API's state: d->control, made by control_listen. */
struct control {
	struct evhttp *http;
	struct kb_listener *guard;	/* evhttp's listener would spin on EMFILE */
	int fd;				/* -1 once the socket file is gone */
	dev_t sock_dev;			/* the socket file we made, the only one we remove */
	ino_t sock_ino;
	struct relay *relays;		/* CLI requests relayed to the manager */
	struct evhttp_request *waiting[16]; /* POST /v1/connect waiting for the outcome */
	size_t nwaiting;
};

void
control_reply(struct evhttp_request *req, int code, cJSON *body)
{
	struct evbuffer *out = evbuffer_new();
	char *txt = cJSON_PrintUnformatted(body);

	cJSON_Delete(body);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	if (out && txt) {
		evbuffer_add(out, txt, strlen(txt));
		evbuffer_add(out, "\n", 1);
	}
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", out);
	if (out)
		evbuffer_free(out);
	free(txt);
}

void
control_error(struct evhttp_request *req, int code, const char *msg)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddStringToObject(j, "error", msg);
	control_reply(req, code, j);
}

/* A CLI request waiting for the manager's answer. */
struct relay {
	struct relay *next;
	struct control *ctl;
	struct evhttp_request *req; /* NULL once the CLI went away */
	struct evhttp_connection *conn;
	control_relay_fn ok;
	void *ctx;
};

static cJSON *
status_json(struct kbd *d)
{
	cJSON *j = cJSON_CreateObject(), *dm;

	dm = cJSON_AddObjectToObject(j, "daemon");
	cJSON_AddNumberToObject(dm, "pid", getpid());
	cJSON_AddStringToObject(dm, "version", KB_VERSION);
	cJSON_AddStringToObject(dm, "socket", d->socket_path);
	if (d->log_path)
		cJSON_AddStringToObject(dm, "log", d->log_path);
	cJSON_AddStringToObject(dm, "log_level", log_level_name(log_level()));
	tunnel_status_json(d->tunnel, j);
	return j;
}

void
control_connect_done(struct kbd *d, int ok, const char *err)
{
	struct control *c = d->control;
	size_t i;

	for (i = 0; c && i < c->nwaiting; i++) {
		if (ok)
			control_reply(c->waiting[i], 200, status_json(d));
		else
			control_error(c->waiting[i], 502, err);
	}
	if (c)
		c->nwaiting = 0;
}

/* The CLI gave up waiting: forget its request, evhttp frees it. */
static void
waiter_gone(struct evhttp_connection *conn, void *arg)
{
	struct control *c = arg;
	size_t i = 0;

	while (i < c->nwaiting) {
		if (evhttp_request_get_connection(c->waiting[i]) == conn)
			c->waiting[i] = c->waiting[--c->nwaiting];
		else
			i++;
	}
}

static void
wait_for_outcome(struct control *c, struct evhttp_request *req)
{
	if (c->nwaiting == sizeof(c->waiting) / sizeof(c->waiting[0])) {
		control_error(req, 503, "too many connect requests at once");
		return;
	}
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), waiter_gone, c);
	c->waiting[c->nwaiting++] = req;
}

/* The query string of a GET: only "namespace" (a DNS label) on the list
 * endpoints, nothing elsewhere. 0, or -1 with err. */
static int
check_query(struct evhttp_request *req, const char *path, char *err, size_t errlen)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq kv = { 0 };
	struct evkeyval *e;
	int list = !strcmp(path, KB_API_LIST) || !strcmp(path, KB_API_PREVIEW_LIST), rc = 0;

	if (!q || !*q)
		return 0;
	if (evhttp_parse_query_str(q, &kv) < 0) {
		snprintf(err, errlen, "malformed query string");
		return -1;
	}
	TAILQ_FOREACH(e, &kv, next) {
		if (!list || strcmp(e->key, "namespace")) {
			snprintf(err, errlen, "unknown query parameter");
			rc = -1;
			break;
		}
		if (!kb_dns_label(e->value)) {
			snprintf(err, errlen, "namespace must be a DNS label (1-63 lower-case "
			    "letters, digits and '-')");
			rc = -1;
			break;
		}
	}
	evhttp_clear_headers(&kv);
	return rc;
}

int
control_request(struct evhttp_request *req, int post, cJSON **body)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *txt;
	char err[300];
	size_t i;

	*body = NULL;
	if (evhttp_request_get_command(req) != (post ? EVHTTP_REQ_POST : EVHTTP_REQ_GET)) {
		control_error(req, 405, post ? "use POST" : "use GET");
		return -1;
	}
	if (!path)
		path = "";
	if (!post) {
		if (check_query(req, path, err, sizeof(err)) < 0) {
			control_error(req, 400, err);
			return -1;
		}
		return 0;
	}
	if ((txt = len ? (const char *)evbuffer_pullup(in, len) : "") == NULL) {
		control_error(req, 500, "out of memory");
		return -1;
	}
	if (kb_api_check_raw(txt, len, err, sizeof(err)) < 0) {
		control_error(req, 400, err);
		return -1;
	}
	/* An empty body is an object without members (not NUL-terminated). */
	for (i = 0; i < len && strchr(" \t\r\n", txt[i]); i++)
		;
	if (i < len &&
	    ((*body = cJSON_ParseWithLength(txt, len)) == NULL || !cJSON_IsObject(*body))) {
		cJSON_Delete(*body);
		*body = NULL;
		control_error(req, 400, "request body is not a JSON object");
		return -1;
	}
	if (kb_api_check(path, *body, err, sizeof(err)) < 0) {
		cJSON_Delete(*body);
		*body = NULL;
		control_error(req, 400, err);
		return -1;
	}
	return 0;
}

int
control_relayable(struct kbd *d, struct evhttp_request *req)
{
	enum kbd_state state = tunnel_state(d->tunnel);

	if (state != KBD_CONNECTED) {
		control_error(req, 503, state == KBD_RECONNECTING ?
		    "reconnecting to the manager; try again in a moment" :
		    "not connected (run 'kbridge connect' first)");
		return 0;
	}
	return 1;
}

int
control_string(struct evhttp_request *req, cJSON *msg, const cJSON *body, const char *key,
    const char *dflt, int required)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
	char err[128];

	if (v && !cJSON_IsNull(v) && !cJSON_IsString(v)) {
		snprintf(err, sizeof(err), "%s must be a string", key);
		control_error(req, 400, err);
		return -1;
	}
	if (!cJSON_IsString(v) && !dflt && required) {
		snprintf(err, sizeof(err), "%s is missing", key);
		control_error(req, 400, err);
		return -1;
	}
	if (cJSON_IsString(v) || dflt)
		cJSON_AddStringToObject(msg, key, cJSON_IsString(v) ? v->valuestring : dflt);
	return 0;
}

int
control_number(struct evhttp_request *req, cJSON *msg, const cJSON *body, const char *key,
    long min, long max, int required)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
	char err[128];

	if (!v || cJSON_IsNull(v)) {
		if (!required)
			return 0;
	} else if (cJSON_IsNumber(v) && v->valuedouble >= min && v->valuedouble <= max) {
		cJSON_AddNumberToObject(msg, key, (long)v->valuedouble);
		return 0;
	}
	snprintf(err, sizeof(err), "%s must be %ld-%ld", key, min, max);
	control_error(req, 400, err);
	return -1;
}

void
control_query(struct evhttp_request *req, cJSON *msg, const char *key)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), *v;
	struct evkeyvalq kv = { 0 };

	if (q && evhttp_parse_query_str(q, &kv) == 0 && (v = evhttp_find_header(&kv, key)) != NULL)
		cJSON_AddStringToObject(msg, key, v);
	evhttp_clear_headers(&kv);
}

static void
relay_gone(struct evhttp_connection *conn, void *arg)
{
	struct control *c = arg;
	struct relay *r;

	for (r = c->relays; r; r = r->next) {
		if (r->conn == conn) {
			r->req = NULL;
			r->conn = NULL;
		}
	}
}

static void
relay_done(void *arg, const cJSON *res, const char *err)
{
	struct relay **pp, *r = arg;
	const cJSON *status, *error;
	cJSON *reply = NULL;
	int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "ok"));

	for (pp = r->ctl ? &r->ctl->relays : NULL; pp && *pp && *pp != r; pp = &(*pp)->next)
		;
	if (pp && *pp)
		*pp = r->next;
	if (ok && r->req && (reply = cJSON_Duplicate(res, 1)) != NULL) {
		cJSON_DeleteItemFromObjectCaseSensitive(reply, "type");
		cJSON_DeleteItemFromObjectCaseSensitive(reply, "id");
	}
	if (ok && r->ok)
		r->ok(r->ctx, res, reply);
	if (r->req) {
		evhttp_connection_set_closecb(r->conn, NULL, NULL);
		if (!res) {
			control_error(r->req, 502, err);
		} else if (ok && reply) {
			control_reply(r->req, 200, reply);
			reply = NULL;
		} else if (ok) {
			control_error(r->req, 500, "out of memory");
		} else {
			status = cJSON_GetObjectItemCaseSensitive(res, "status");
			error = cJSON_GetObjectItemCaseSensitive(res, "error");
			control_error(r->req, cJSON_IsNumber(status) && status->valueint >= 400 &&
			    status->valueint <= 599 ? status->valueint : 502,
			    cJSON_IsString(error) ? error->valuestring : "the manager refused");
		}
	}
	cJSON_Delete(reply);
	free(r->ctx);
	free(r);
}

void
control_relay(struct kbd *d, struct evhttp_request *req, cJSON *msg, control_relay_fn ok,
    void *ctx)
{
	struct relay *r;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		cJSON_Delete(msg);
		free(ctx);
		control_error(req, 500, "out of memory");
		return;
	}
	r->ctl = d->control;
	r->req = req;
	r->conn = evhttp_request_get_connection(req);
	r->ok = ok;
	r->ctx = ctx;
	if (tunnel_request(d->tunnel, msg, relay_done, r) < 0) {
		control_error(req, 503, "the session to the manager is not ready");
		free(ctx);
		free(r);
		return;
	}
	evhttp_connection_set_closecb(r->conn, relay_gone, r->ctl);
	r->next = r->ctl->relays;
	r->ctl->relays = r;
}

/* body's never_proxy or also_proxy list (kb_api_check found it well formed). */
static size_t
user_ranges(const cJSON *body, const char *key, struct kb_cidr *v)
{
	const cJSON *e;
	size_t n = 0;

	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(body, key))
		if (n < KB_NETPLAN_USER_MAX && cJSON_IsString(e) &&
		    kb_cidr_parse(e->valuestring, &v[n]) == 0)
			n++;
	return n;
}

static void
handle_connect(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	struct kb_profile p = { 0 };
	const struct kb_profile *have;
	cJSON *body = NULL, *prof, *ns, *kube, *vs;
	char err[300], *txt = NULL;
	const char *want_ns = "default", *vsub;
	struct kb_cidr never[KB_NETPLAN_USER_MAX], also[KB_NETPLAN_USER_MAX];
	size_t nnever, nalso;

	if (control_request(req, 1, &body) < 0)
		return;
	nnever = user_ranges(body, "never_proxy", never);
	nalso = user_ranges(body, "also_proxy", also);
	vs = cJSON_GetObjectItemCaseSensitive(body, "virtual_subnet");
	vsub = cJSON_IsString(vs) ? vs->valuestring : NULL;
	/* control_request checked both: an object, and a DNS label if given. */
	prof = cJSON_GetObjectItemCaseSensitive(body, "profile");
	ns = cJSON_GetObjectItemCaseSensitive(body, "namespace");
	if (cJSON_IsString(ns))
		want_ns = ns->valuestring;
	if (!cJSON_IsObject(prof) || (txt = cJSON_PrintUnformatted(prof)) == NULL) {
		control_error(req, 400, "request lacks the profile object");
		goto out;
	}
	if (kb_profile_parse(txt, &p, err, sizeof(err)) < 0) {
		control_error(req, 400, err);
		goto out;
	}
	if ((have = tunnel_profile(d->tunnel)) != NULL) {
		if (strcmp(p.manager, have->manager) || strcmp(p.name, have->name) ||
		    strcmp(want_ns, tunnel_namespace(d->tunnel))) {
			snprintf(err, sizeof(err),
			    "already connected to %s as %s (namespace %s); run 'kbridge quit' first",
			    have->manager, have->name, tunnel_namespace(d->tunnel));
			control_error(req, 409, err);
		} else if (!kb_cidr_list_eq(never, nnever, d->never, d->nnever) ||
		    !kb_cidr_list_eq(also, nalso, d->also, d->nalso) ||
		    !net_same_virtual_subnet(d, vsub)) {
			control_error(req, 409, "already connected with other never-proxy, "
			    "also-proxy or virtual-subnet ranges; run 'kbridge quit' first");
		} else if (tunnel_state(d->tunnel) == KBD_CONNECTED) {
			control_reply(req, 200, status_json(d));
		} else {
			wait_for_outcome(d->control, req);
		}
		kb_profile_free(&p);
		goto out;
	}
	if (net_user_ranges(d, never, nnever, also, nalso, err, sizeof(err)) < 0) {
		control_error(req, 400, err);
		kb_profile_free(&p);
		goto out;
	}
	net_virtual_subnet(d, vsub);
	wait_for_outcome(d->control, req);
	kube = cJSON_GetObjectItemCaseSensitive(body, "kube");
	if (tunnel_connect(d->tunnel, &p, cJSON_IsObject(kube) ? kube : NULL, want_ns,
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "replace")), err, sizeof(err)) < 0)
		control_connect_done(d, 0, err);
out:
	free(txt);
	cJSON_Delete(body);
}

static void
handle_status(struct evhttp_request *req, void *arg)
{
	cJSON *none;

	if (control_request(req, 0, &none) < 0)
		return;
	control_reply(req, 200, status_json(arg));
}

/* GET /v1/manager-log: the manager's recent lines about this session's
 * user, through the session ({"ok": true, "log": TEXT}). */
static void
handle_manager_log(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	cJSON *none, *msg;

	if (control_request(req, 0, &none) < 0)
		return;
	if (!control_relayable(d, req))
		return;
	if (!tunnel_manager_logs(d->tunnel)) {
		control_error(req, 501, "the manager is older than this kbridged: it hands out "
		    "no logs");
		return;
	}
	if ((msg = kb_msg_new(KB_MSG_LOGS)) == NULL) {
		control_error(req, 500, "out of memory");
		return;
	}
	control_relay(d, req, msg, NULL, NULL);
}

/* POST /v1/sidecar-log {"workload", "namespace", "replica"}: that
 * sidecar's newest lines, through the manager, which hands them only to a
 * user who intercepts the workload. */
static void
handle_sidecar_log(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	cJSON *body, *msg;

	if (control_request(req, 1, &body) < 0)
		return;
	if (!control_relayable(d, req))
		goto out;
	if (!tunnel_manager_logs(d->tunnel)) {
		control_error(req, 501, "the manager is older than this kbridged: it hands out "
		    "no logs");
		goto out;
	}
	if ((msg = kb_msg_new(KB_MSG_LOGS)) == NULL) {
		control_error(req, 500, "out of memory");
		goto out;
	}
	/* kb_api_check found them: labels, and replica 0-63 if given. */
	if (control_string(req, msg, body, "workload", NULL, 1) < 0 ||
	    control_string(req, msg, body, "namespace", NULL, 1) < 0 ||
	    control_number(req, msg, body, "replica", 0, KB_LOGS_REPLICA_MAX, 0) < 0) {
		cJSON_Delete(msg);
		goto out;
	}
	control_relay(d, req, msg, NULL, NULL);
out:
	cJSON_Delete(body);
}

/* POST /v1/loglevel {"level": "debug"|"info"}: at once, no restart; the
 * manager's debug lines about this session too ({"manager": true} if it
 * was told). */
static void
handle_loglevel(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	const cJSON *lv;
	cJSON *body, *j;
	int want, mgr;

	if (control_request(req, 1, &body) < 0)
		return;
	lv = cJSON_GetObjectItemCaseSensitive(body, "level");	/* checked: debug or info */
	want = !strcmp(lv->valuestring, "debug") ? KB_LOG_DEBUG : KB_LOG_INFO;
	cJSON_Delete(body);
	if (want != log_level()) {
		log_set_level(KB_LOG_INFO);
		log_info("log level %s (asked through the control socket)", log_level_name(want));
		log_set_level(want);
	}
	/* The manager's debug lines about this session follow ours. */
	if ((mgr = tunnel_loglevel(d->tunnel, want)) < 0)
		log_warnx("cannot tell the manager the log level");
	if ((j = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(j, "level", log_level_name(want)) == NULL ||
	    cJSON_AddBoolToObject(j, "manager", mgr > 0) == NULL) {
		cJSON_Delete(j);
		control_error(req, 500, "out of memory");
		return;
	}
	control_reply(req, 200, j);
}

static void
quit_after_reply(struct evhttp_request *req, void *arg)
{
	(void)req;
	kbd_quit(arg);
}

/* A quit waits (briefly) for the manager to end our intercepts, so the CLI
 * can say what ended. */
#define QUIT_WAIT_MS 3000

struct quit_wait {
	struct kbd *d;
	struct evhttp_request *req;	/* NULL once the CLI went away */
	struct evhttp_connection *conn;
	struct event *timer;
	int answered;
};

static void
quit_now(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	kbd_quit(arg);
}

/* The CLI went away before the answer: quit all the same. */
static void
quit_gone(struct evhttp_connection *conn, void *arg)
{
	struct quit_wait *q = arg;

	(void)conn;
	q->req = NULL;
	q->conn = NULL;
}

static void
quit_answer(struct quit_wait *q, const cJSON *res)
{
	const cJSON *ended = cJSON_GetObjectItemCaseSensitive(res, "ended");
	cJSON *j;

	if (q->answered)
		return;
	q->answered = 1;
	if (!q->req) {
		/* Not from within the session's callback: it is about to go. */
		event_base_once(q->d->base, -1, EV_TIMEOUT, quit_now, q->d, &(struct timeval){ 0, 0 });
		return;
	}
	evhttp_connection_set_closecb(q->conn, NULL, NULL);
	j = cJSON_CreateObject();
	cJSON_AddTrueToObject(j, "ok");
	if (cJSON_IsArray(ended))
		cJSON_AddItemToObject(j, "ended", cJSON_Duplicate(ended, 1));
	else if (res == NULL)
		cJSON_AddStringToObject(j, "warning", "the manager did not confirm that our "
		    "intercepts ended; it releases them after its grace period");
	evhttp_request_set_on_complete_cb(q->req, quit_after_reply, q->d);
	control_reply(q->req, 200, j);
}

static void
quit_left(void *ctx, const cJSON *res, const char *err)
{
	struct quit_wait *q = ctx;

	(void)err;
	quit_answer(q, res);
	event_free(q->timer);
	free(q);
}

static void
quit_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	quit_answer(arg, NULL);
}

static void
handle_quit(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	struct timeval tv = kb_ms_tv(QUIT_WAIT_MS);
	struct quit_wait *q;
	cJSON *j;

	if (control_request(req, 1, &j) < 0)
		return;
	cJSON_Delete(j);	/* {} at most */
	if ((q = calloc(1, sizeof(*q))) != NULL) {
		q->d = d;
		q->req = req;
		q->conn = evhttp_request_get_connection(req);
		if ((q->timer = evtimer_new(d->base, quit_timeout, q)) != NULL &&
		    tunnel_leave_all(d->tunnel, quit_left, q) == 0) {
			evtimer_add(q->timer, &tv);
			evhttp_connection_set_closecb(q->conn, quit_gone, q);
			return;
		}
		if (q->timer)
			event_free(q->timer);
		free(q);
	}
	evhttp_request_set_on_complete_cb(req, quit_after_reply, arg);
	j = cJSON_CreateObject();
	cJSON_AddTrueToObject(j, "ok");
	control_reply(req, 200, j);
}

static void
handle_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	control_error(req, 404, "no such endpoint");
}

/* Is a daemon answering on path? */
static int
socket_alive(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, rc;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	return rc == 0;
}

/* Remove path only if it is the socket this daemon made: whatever else is
 * there now (a file swapped in, another daemon's socket) stays. */
static void
unlink_own_socket(const struct control *c, const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == c->sock_dev &&
	    st.st_ino == c->sock_ino)
		unlink(path);
}

/* The socket at d->socket_path, bound, owned and listening: its descriptor,
 * or -1 with err (*made: the file was made, so it is to be removed). */
static int
bind_socket(struct kbd *d, struct control *c, uid_t owner, int has_owner, int *made,
    char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd = -1;

	if (strlen(d->socket_path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "socket path %s is too long", d->socket_path);
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", d->socket_path);
	if (socket_alive(d->socket_path)) {
		snprintf(err, errlen, "another kbridged is already serving %s", d->socket_path);
		return -1;
	}
	/* A stale socket, from a daemon that was killed, may go; anything
	 * else at that path is not ours to delete. */
	if (lstat(d->socket_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket; not replacing it",
			    d->socket_path);
			return -1;
		}
		if (unlink(d->socket_path) < 0)
			goto fail;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		goto fail;
	/* Mode 0600 from the start: nobody else may connect before the chown. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		goto fail;
	}
	umask(old);
	if (lstat(d->socket_path, &st) < 0)
		goto fail;
	if (!S_ISSOCK(st.st_mode)) {
		errno = EEXIST;
		goto fail;
	}
	c->sock_dev = st.st_dev;
	c->sock_ino = st.st_ino;
	*made = 1;
	/* Never through a symlink swapped in since the bind. */
	if ((has_owner && fchownat(AT_FDCWD, d->socket_path, owner, (gid_t)-1,
	    AT_SYMLINK_NOFOLLOW) < 0) || listen(fd, 64) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "cannot listen on %s: %s", d->socket_path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static struct evhttp *
new_http(struct kbd *d)
{
	struct evhttp *http;

	if ((http = evhttp_new(d->base)) == NULL)
		return NULL;
	evhttp_set_max_body_size(http, KB_API_BODY_MAX);
	evhttp_set_timeout(http, 30);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_cb(http, KB_API_STATUS, handle_status, d);
	evhttp_set_cb(http, KB_API_CONNECT, handle_connect, d);
	evhttp_set_cb(http, KB_API_QUIT, handle_quit, d);
	evhttp_set_cb(http, KB_API_INTERCEPT, intercept_http, d);
	evhttp_set_cb(http, KB_API_LEAVE, intercept_http, d);
	evhttp_set_cb(http, KB_API_LIST, intercept_http, d);
	evhttp_set_cb(http, KB_API_PREVIEW_CREATE, preview_http, d);
	evhttp_set_cb(http, KB_API_PREVIEW_LIST, preview_http, d);
	evhttp_set_cb(http, KB_API_PREVIEW_REMOVE, preview_http, d);
	evhttp_set_cb(http, KB_API_LOGLEVEL, handle_loglevel, d);
	evhttp_set_cb(http, KB_API_MANAGER_LOG, handle_manager_log, d);
	evhttp_set_cb(http, KB_API_SIDECAR_LOG, handle_sidecar_log, d);
	evhttp_set_gencb(http, handle_other, d);
	return http;
}

int
control_listen(struct kbd *d, uid_t owner, int has_owner, char *err, size_t errlen)
{
	struct evhttp_bound_socket *bs;
	struct control *c;
	int fd, made = 0;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->fd = -1;
	if ((fd = bind_socket(d, c, owner, has_owner, &made, err, errlen)) < 0)
		goto fail;
	if ((c->http = new_http(d)) == NULL ||
	    (bs = evhttp_accept_socket_with_handle(c->http, fd)) == NULL) {
		snprintf(err, errlen, "cannot listen on %s: %s", d->socket_path, strerror(errno));
		close(fd);
		goto fail;
	}
	if ((c->guard = kb_listener_adopt(d->base, "control socket",
	    evhttp_bound_socket_get_listener(bs))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;	/* evhttp_free closes fd */
	}
	c->fd = fd;
	d->control = c;
	return 0;
fail:
	if (c->http)
		evhttp_free(c->http);
	if (made)
		unlink_own_socket(c, d->socket_path);
	free(c);
	return -1;
}

void
control_close(struct kbd *d)
{
	struct control *c = d->control;

	if (c && c->fd >= 0) {
		unlink_own_socket(c, d->socket_path);
		c->fd = -1;
	}
}

void
control_free(struct kbd *d)
{
	struct control *c = d->control;
	struct relay *r;

	if (!c)
		return;
	kb_listener_free(c->guard);
	if (c->http)
		evhttp_free(c->http);
	/* evhttp_free dropped the requests; their relays wait for no one. */
	for (r = c->relays; r; r = r->next) {
		r->ctl = NULL;
		r->req = NULL;
		r->conn = NULL;
	}
	d->control = NULL;
	free(c);
}
