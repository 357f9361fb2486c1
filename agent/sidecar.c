/* The sidecar: runs in a workload's pod, in front of the app. Every
 * connection goes to the app, except what an intercept claims: whole
 * connections (protocol tcp, or a global intercept) or single HTTP requests
 * that match an intercept's headers or path prefix (protocol http). Those go
 * through the manager to the intercepting developer's workstation. HTTP/2
 * prior knowledge is routed per stream the same way (h2route.h). What is
 * neither (TLS, HTTP/0.9, ...) cannot be routed by header: it goes to the
 * app untouched, whoever intercepts. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "conn.h"
#include "dial.h"
#include "h2route.h"
#include "httpproxy.h"
#include "join.h"
#include "listener.h"
#include "mlink.h"
#include "log.h"
#include "msg.h"
#include "pace.h"
#include "identity.h"
#include "profile.h"
#include "sidecar_enroll.h"
#include "webhook.h"
#include "session.h"
#include "sidecar.h"
#include "tls.h"
#include "util.h"

#define MAX_INTERCEPTS 64
#define CONNECT_TIMEOUT_MS 5000
#define APP_TIMEOUT_MS 5000
#define SC_ENROLL_TRIES 8
#define TEARDOWN_DRAIN_MS 200
#define MAX_PER_ADDRESS 1024	/* --max-per-address: open connections from one address */

extern char **environ;

struct sc_intercept {
	uint64_t key; /* stable while the intercept lives: upstream reuse key */
	char id[KB_OPEN_REF_MAX + 1];
	int global;
	int h1;		/* its local app answered HTTP/2 in HTTP/1 (h2route.h) */
	char *path_prefix;
	size_t nheaders;
	char *hname[KB_MAX_MATCH_HEADERS], *hvalue[KB_MAX_MATCH_HEADERS];
};

struct sidecar {
	struct event_base *base;
	struct hp_proxy *hp;	/* the HTTP connections' shared state */
	struct event *sigs[2];
	struct kb_profile profile;
	SSL_CTX *ctx;
	const char *workload, *ns, *protocol;
	struct sockaddr_storage app;
	socklen_t applen;
	struct kb_listener *listener;
	struct kb_srccap *srccap;	/* NULL: --max-per-address 0 */
	unsigned long max_per_address;
	struct kb_mlink link;
	struct kb_session *sess;
	struct event *retry;
	/* --enroll: the certificate renewed at 2/3 of its lifetime */
	const char *enroll, *token, *ca;
	unsigned long renew_after;	/* --renew-after (0: 2/3 of the lifetime) */
	char bound[2 * 64 + 2];		/* the certificate's workload */
	struct event *renew_timer;
	struct sc_renewal *renewal;
	struct sc_intercept icpts[MAX_INTERCEPTS];
	size_t nicpts;
	uint64_t next_key;
};


/* --- the intercepts of this workload, as the manager says --- */

static void
icpts_clear(struct sidecar *sc)
{
	size_t i, k;

	for (i = 0; i < sc->nicpts; i++) {
		for (k = 0; k < sc->icpts[i].nheaders; k++) {
			free(sc->icpts[i].hname[k]);
			free(sc->icpts[i].hvalue[k]);
		}
		free(sc->icpts[i].path_prefix);
	}
	memset(sc->icpts, 0, sizeof(sc->icpts));
	sc->nicpts = 0;
}

static int
icpts_update(struct sidecar *sc, const cJSON *msg)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(msg, "intercepts"), *e, *h;
	struct sc_intercept old[MAX_INTERCEPTS];
	size_t nold = sc->nicpts, i, k;

	/* kb_msg_parse made sure list is a list. Keys survive an update, so
	 * idle upstreams keep matching. */
	memcpy(old, sc->icpts, sizeof(old));
	memset(sc->icpts, 0, sizeof(sc->icpts));
	sc->nicpts = 0;
	cJSON_ArrayForEach(e, list) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
		const cJSON *gl = cJSON_GetObjectItemCaseSensitive(e, "global");
		const cJSON *pp = cJSON_GetObjectItemCaseSensitive(e, "path_prefix");
		struct sc_intercept *n;

		if (sc->nicpts == MAX_INTERCEPTS || !cJSON_IsString(id) ||
		    strlen(id->valuestring) > KB_OPEN_REF_MAX)
			continue;
		n = &sc->icpts[sc->nicpts++];
		snprintf(n->id, sizeof(n->id), "%s", id->valuestring);
		n->global = cJSON_IsTrue(gl);
		if (cJSON_IsString(pp))
			n->path_prefix = strdup(pp->valuestring);
		cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(e, "headers")) {
			const cJSON *hn = cJSON_GetObjectItemCaseSensitive(h, "name");
			const cJSON *hv = cJSON_GetObjectItemCaseSensitive(h, "value");
			if (n->nheaders < KB_MAX_MATCH_HEADERS && cJSON_IsString(hn) &&
			    cJSON_IsString(hv)) {
				n->hname[n->nheaders] = strdup(hn->valuestring);
				n->hvalue[n->nheaders++] = strdup(hv->valuestring);
			}
		}
		for (i = 0; i < nold; i++)
			if (!strcmp(old[i].id, n->id)) {
				n->key = old[i].key;
				n->h1 = old[i].h1;
			}
		if (!n->key)
			n->key = ++sc->next_key;
	}
	for (i = 0; i < nold; i++) {
		for (k = 0; k < old[i].nheaders; k++) {
			free(old[i].hname[k]);
			free(old[i].hvalue[k]);
		}
		free(old[i].path_prefix);
	}
	log_info("%zu intercept(s) on %s.%s", sc->nicpts, sc->workload, sc->ns);
	return 0;
}

static struct sc_intercept *
icpt_by_key(struct sidecar *sc, uint64_t key)
{
	size_t i;

	for (i = 0; i < sc->nicpts; i++)
		if (sc->icpts[i].key == key)
			return &sc->icpts[i];
	return NULL;
}

static const struct sc_intercept *
icpt_global(const struct sidecar *sc)
{
	size_t i;

	for (i = 0; i < sc->nicpts; i++)
		if (sc->icpts[i].global)
			return &sc->icpts[i];
	return NULL;
}

/* The intercept's headers must all match; its path prefix applies too. */
static int
matches(const struct sc_intercept *ic, const struct hp_request *req)
{
	const char *v;
	size_t k;

	if (ic->global)
		return 1;
	for (k = 0; k < ic->nheaders; k++)
		if ((v = hp_header(req, ic->hname[k])) == NULL || strcmp(v, ic->hvalue[k]))
			return 0;
	if (ic->path_prefix && strncmp(req->target, ic->path_prefix, strlen(ic->path_prefix)))
		return 0;
	return 1;
}

/* --- where connections and requests go --- */

/* One client connection from the listener, while it is open: its place
 * among its address's connections (--max-per-address). Owned by whoever
 * holds the connection (the dial to the app, the join, a whole-TCP
 * intercept's stream, the HTTP proxy) and freed when that closes it. */
struct sc_client {
	struct sidecar *sc;
	struct kb_src *src;	/* NULL: no cap */
	int fd;
};

static void
client_free(struct sc_client *cl)
{
	kb_src_release(cl->src);
	free(cl);
}

/* The upstream of an intercepted request (HTTP/1 or an HTTP/2 stream's,
 * h2route.h): a stream to the manager whose ends are the proxy's
 * callbacks (httpproxy.h); a refusal comes back to the proxy with its
 * reason. */
static struct kb_stream *
sc_open_stream(void *arg, uint64_t key, const struct kb_stream_cbs *cbs, void *cbarg,
    char *reason, size_t len)
{
	struct sidecar *sc = ((struct sc_client *)arg)->sc;
	struct kb_open o = { .kind = KB_OPEN_INTERCEPT };
	const struct sc_intercept *ic;
	struct kb_stream *st;

	if ((ic = icpt_by_key(sc, key)) == NULL) {
		snprintf(reason, len, "kbridge: the intercept ended");
		return NULL;
	}
	if (!sc->sess || !kb_session_ready(sc->sess)) {
		snprintf(reason, len, "kbridge: the sidecar has no session to the manager");
		return NULL;
	}
	snprintf(o.ref, sizeof(o.ref), "%s", ic->id);
	if ((st = kb_stream_open_cb(sc->sess, &o, cbs, cbarg)) == NULL)
		snprintf(reason, len, "kbridge: cannot reach the manager");
	return st;
}

/* A non-blocking socket connecting to the app, or -1. */
static int
app_socket(const struct sidecar *sc, char *reason, size_t len)
{
	int fd = socket(sc->app.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || (connect(fd, (struct sockaddr *)&sc->app, sc->applen) < 0 &&
	    errno != EINPROGRESS)) {
		snprintf(reason, len, "kbridge: cannot reach the app: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static const struct hp_stream_ops sc_streams = {
	.open = sc_open_stream,
	.input = kb_stream_input,
	.eof = kb_stream_eof,
	.write = kb_stream_write,
	.shutdown = kb_stream_shutdown,
	.set_cbs = kb_stream_set_cbs,
	.reset = kb_stream_reset,
};

static uint64_t
sc_route(void *arg, const struct hp_request *req, struct hp_route *r)
{
	const struct sidecar *sc = ((const struct sc_client *)arg)->sc;
	const char *id = hp_header(req, KB_INTERCEPT_HEADER);
	size_t i;

	(void)r;
	/* A request that names an intercept (a preview link's does) goes to
	 * that one or to the app, whatever other headers it carries: within
	 * the intercept's path prefix, if it has one. */
	if (id) {
		for (i = 0; i < sc->nicpts; i++)
			if (!strcmp(sc->icpts[i].id, id))
				return !sc->icpts[i].path_prefix || !strncmp(req->target,
				    sc->icpts[i].path_prefix, strlen(sc->icpts[i].path_prefix)) ?
				    sc->icpts[i].key : 0;
		return 0;
	}
	for (i = 0; i < sc->nicpts; i++)
		if (matches(&sc->icpts[i], req))
			return sc->icpts[i].key;
	return 0;
}

/* The proxy's open callback: a socket to the app (key 0); intercepts are
 * streams (sc_open_stream()). */
static int
sc_open_upstream(void *arg, uint64_t key, char *reason, size_t len)
{
	struct sidecar *sc = ((struct sc_client *)arg)->sc;

	if (key == 0)
		return app_socket(sc, reason, len);
	snprintf(reason, len, "kbridge: an intercept has no socket");
	return -1;
}

/* h2route's note (or question) that intercept key's local app answers
 * HTTP/2 in HTTP/1 (or, note -1, in HTTP/2 again): kept while the
 * intercept lives. */
static int
sc_h1(void *arg, uint64_t key, int note)
{
	struct sidecar *sc = ((struct sc_client *)arg)->sc;
	struct sc_intercept *ic;

	if ((ic = icpt_by_key(sc, key)) == NULL)
		return 0;
	if (note > 0 && !ic->h1)
		log_info("intercept %s: the local app answers HTTP/2 in HTTP/1: its HTTP/2 "
		    "requests go to it as HTTP/1.1 from now on", ic->id);
	else if (note < 0 && ic->h1)
		log_info("intercept %s: the local app answers HTTP/2 again", ic->id);
	if (note != 0)
		ic->h1 = note > 0;
	return ic->h1;
}

static void
client_joined_done(void *arg)
{
	client_free(arg);
}

static void
client_http_done(void *arg, struct hp_conn *c)
{
	(void)c;
	client_free(arg);
}

static const struct hp_upstreams upstreams = {
	.route = sc_route,
	.open = sc_open_upstream,
	.streams = &sc_streams,
	.done = client_http_done,
	.h2 = h2r_start,	/* HTTP/2 prior knowledge: routed per stream */
	.h2c = h2r_upgrade,	/* and HTTP/1.1 Upgrade: h2c */
	.h1 = sc_h1,
	.pass = 1,	/* TLS and the like: to the app untouched */
};

/* A whole connection intercepted: the client's socket is the stream's;
 * cl goes when it ends. */
static void
tcp_closed(struct kb_stream *st, int reason, const char *text, void *arg)
{
	(void)st;
	if (reason != 0)
		log_info("intercepted connection ended: %s", text && *text ? text : "reset");
	client_free(arg);
}

static const struct kb_stream_cbs tcp_cbs = { .on_close = tcp_closed };

/* Join the client's connection to up; cl goes with the join. */
static void
client_join(struct sc_client *cl, int up)
{
	if (join_start(cl->sc->base, cl->fd, up, client_joined_done, cl) < 0)
		client_free(cl);
}

static void
app_connected(int fd, int e, void *arg)
{
	struct sc_client *cl = arg;

	if (fd < 0) {
		struct linger l = { 1, 0 };
		log_warnx("cannot reach the app: %s", strerror(e));
		setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		close(cl->fd);
		client_free(cl);
		return;
	}
	client_join(cl, fd);
}

/* A place for a connection from sa among its address's, or NULL (then
 * the caller closes it: over --max-per-address, or out of memory). */
static int
client_admit(struct sidecar *sc, struct sockaddr *sa, struct kb_src **src)
{
	char host[NI_MAXHOST], why[NI_MAXHOST + 80];

	*src = NULL;
	if (sc->srccap == NULL || (*src = kb_srccap_take(sc->srccap, sa)) != NULL)
		return 0;
	if (errno == EUSERS) {
		if (getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
		    sizeof(struct sockaddr_in), host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
			snprintf(host, sizeof(host), "?");
		snprintf(why, sizeof(why), "%s has %lu connections open already (--max-per-address): "
		    "closed a new one", host, sc->max_per_address);
	} else
		snprintf(why, sizeof(why), "out of memory: closed a new connection");
	kb_listener_refused(sc->listener, why);
	return -1;
}

static void
accepted(int fd, struct sockaddr *sa, int salen, void *arg)
{
	struct sidecar *sc = arg;
	struct hp_upstreams up = upstreams;
	const struct sc_intercept *ic;
	struct sc_client *cl;
	struct kb_src *src;

	(void)salen;
	if (client_admit(sc, sa, &src) < 0) {
		close(fd);
		return;
	}
	if ((cl = malloc(sizeof(*cl))) == NULL) {
		kb_src_release(src);
		close(fd);
		return;
	}
	*cl = (struct sc_client){ .sc = sc, .src = src, .fd = fd };
	if (!strcmp(sc->protocol, "tcp") && (ic = icpt_global(sc)) != NULL) {
		struct kb_open o = { .kind = KB_OPEN_INTERCEPT };
		int one = 1;

		if (sc->sess && kb_session_ready(sc->sess)) {
			/* What the stream brings is written at once (no Nagle
			 * wait for the caller's delayed ACK), as a join does. */
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			snprintf(o.ref, sizeof(o.ref), "%s", ic->id);
			if (kb_stream_open(sc->sess, &o, fd, &tcp_cbs, cl) == NULL) {
				log_warnx("cannot reach the manager: closed an intercepted "
				    "connection");
				client_free(cl);
			}
			return;
		}
		log_warnx("kbridge: the sidecar has no session to the manager");
	} else if (!strcmp(sc->protocol, "http") && sc->nicpts > 0) {
		up.arg = cl;
		if (!hp_conn_new(sc->hp, fd, &up)) {
			close(fd);
			client_free(cl);
		}
		return;
	}
	/* Nothing intercepted: straight to the app, without parsing. */
	if (!kb_dial_start(sc->base, (struct sockaddr *)&sc->app, sc->applen, APP_TIMEOUT_MS,
	    app_connected, cl)) {
		close(fd);
		client_free(cl);
	}
}

/* --- the session to the manager --- */

static void
lost(struct sidecar *sc, const char *why)
{
	struct timeval tv;
	unsigned ms;

	if (sc->nicpts)
		log_warnx("session to the manager lost (%s): intercepts paused", why);
	else
		log_warnx("no session to the manager: %s", why);
	icpts_clear(sc);
	ms = kb_mlink_backoff(&sc->link);
	tv = kb_ms_tv(ms);
	evtimer_add(sc->retry, &tv);
}

static int
on_hello(struct kb_session *s, const cJSON *h, char *reason, size_t len, void *arg)
{
	struct sidecar *sc = arg;

	(void)s;
	(void)h;
	(void)reason;
	(void)len;
	kb_mlink_backoff_reset(&sc->link);
	log_info("registered %s.%s (%s) with the manager", sc->workload, sc->ns, sc->protocol);
	return 0;
}

/* The manager's "logs" (for a developer who intercepts this workload):
 * our newest lines, control characters but newline and tab as '?'. */
static int
answer_logs(struct kb_session *s, const cJSON *msg)
{
	char buf[KB_LOGS_MAX + 1];
	size_t n = log_ring_copy(buf, KB_LOGS_MAX);
	cJSON *r;

	log_text_clean(buf, n);
	buf[n] = '\0';
	r = kb_msg_result(cJSON_GetObjectItemCaseSensitive(msg, "id")->valuedouble, 1, 0, NULL);
	if (r)
		cJSON_AddStringToObject(r, "log", buf);
	kb_session_send_control(s, r);
	return 0;
}

static int
on_control(struct kb_session *s, const cJSON *msg, const char *type, void *arg)
{
	struct sidecar *sc = arg;
	enum kb_msg_type t;
	char err[200];

	(void)type;
	if (kb_msg_parse(msg, &t, err, sizeof(err)) != 0) {
		log_warnx("the manager: %s", err);
		return -1;
	}
	switch (t) {
	case KB_MSG_INTERCEPTS:
		return icpts_update(sc, msg);
	case KB_MSG_LOGS:
		return answer_logs(s, msg);
	default:
		return -1; /* not one the manager sends a sidecar */
	}
}

static void
on_close(struct kb_session *s, const char *err, void *arg)
{
	struct sidecar *sc = arg;

	kb_session_free(s);
	sc->sess = NULL;
	lost(sc, err ? err : "closed");
}

static const struct kb_session_cbs session_cbs = {
	.on_hello = on_hello,
	.on_control = on_control,
	.on_close = on_close,
};

static int
process_var(const char *name, size_t len)
{
	static const char *const vars[] = { "PATH", "HOME", "HOSTNAME", "PWD", "OLDPWD", "SHLVL",
		"TERM", "USER", "LOGNAME", "SHELL", "_", NULL };
	size_t i;

	for (i = 0; vars[i]; i++)
		if (strlen(vars[i]) == len && !strncmp(vars[i], name, len))
			return 1;
	return 0;
}

static cJSON *
hello_env(void)
{
	cJSON *env = cJSON_CreateObject();
	char **e, *eq;

	/* The workload's environment, minus the sidecar's own settings and
	 * what belongs to the process rather than the workload (a shell that
	 * sources the env file must keep its own PATH and HOME). */
	for (e = environ; e && *e; e++) {
		if (!strncmp(*e, "KBRIDGE_", 8) || (eq = strchr(*e, '=')) == NULL || eq == *e ||
		    process_var(*e, (size_t)(eq - *e)))
			continue;
		*eq = '\0';
		cJSON_AddStringToObject(env, *e, eq + 1);
		*eq = '=';
	}
	return env;
}

/* The link's callbacks: our hello, the session, a failed attempt. */
static cJSON *
link_hello(void *arg)
{
	const struct sidecar *sc = arg;
	cJSON *hello = cJSON_CreateObject();

	cJSON_AddStringToObject(hello, "role", KB_HELLO_ROLE_SIDECAR);
	cJSON_AddStringToObject(hello, "software", KB_SOFTWARE);
	cJSON_AddStringToObject(hello, "workload", sc->workload);
	cJSON_AddStringToObject(hello, "namespace", sc->ns);
	cJSON_AddStringToObject(hello, "protocol", sc->protocol);
	cJSON_AddTrueToObject(hello, "logs");
	cJSON_AddItemToObject(hello, "env", hello_env());
	/* Its pod (downward API) and the app's container, where the pod spec
	 * says so: an in-cluster manager takes the env from the pod spec. */
	if (getenv("KBRIDGE_POD_NAME") && *getenv("KBRIDGE_POD_NAME"))
		cJSON_AddStringToObject(hello, "pod", getenv("KBRIDGE_POD_NAME"));
	if (getenv("KBRIDGE_APP_CONTAINER") && *getenv("KBRIDGE_APP_CONTAINER"))
		cJSON_AddStringToObject(hello, "container", getenv("KBRIDGE_APP_CONTAINER"));
	return hello;
}

static void
link_up(void *arg, struct kb_session *s)
{
	struct sidecar *sc = arg;

	sc->sess = s;
}

static void
link_failed(void *arg, const char *why)
{
	lost(arg, why);
}

static void
retry(evutil_socket_t fd, short what, void *arg)
{
	struct sidecar *sc = arg;

	(void)fd;
	(void)what;
	kb_mlink_dial(&sc->link);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sidecar *sc = arg;

	(void)what;
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopexit(sc->base, NULL);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: kbridge-agent sidecar (--profile FILE | --enroll HOST:PORT [--token FILE])\n"
	    "           --workload NAME --namespace NS\n"
	    "           --listen HOST:PORT --app HOST:PORT [--protocol http|tcp]\n"
	    "           [--manager HOST:PORT] [--batch-wait-us N] [--max-per-address N] [-v]\n"
	    "\n"
	    "Run in a workload's pod, in front of its app: pass every connection to the app\n"
	    "unless an intercept claims it.\n"
	    "\n"
	    "  --profile FILE       a sidecar profile (kbridge-agent issue --sidecar)\n"
	    "  --enroll HOST:PORT   instead: get the certificate from the manager there\n"
	    "                       (its webhook Service) for the pod's token; the CA in\n"
	    "                       $KBRIDGE_CA (what the injection webhook sets up)\n"
	    "  --token FILE         the pod's projected token for audience kbridge\n"
	    "                       (default " KB_WEBHOOK_TOKEN_FILE ")\n"
	    "  --renew-after S      with --enroll: renew the certificate every S seconds\n"
	    "                       (default: at 2/3 of its lifetime)\n"
	    "  --workload NAME      the workload this sidecar serves\n"
	    "  --namespace NS       its namespace\n"
	    "  --listen HOST:PORT   where the service's traffic arrives\n"
	    "  --app HOST:PORT      the app container\n"
	    "  --protocol P         http (route each request; default) or tcp (whole connections)\n"
	    "  --manager HOST:PORT  the manager's address inside the cluster (default: the\n"
	    "                       profile's, which is the workstations' way in)\n"
	    "  --batch-wait-us N    under load (8 or more reads in one pass of the event loop,\n"
	    "                       the app taking 5 x N or longer to answer) wait N\n"
	    "                       microseconds before the next pass, so the app and the\n"
	    "                       callers get more per wake-up: less CPU for all, more\n"
	    "                       requests/s on a busy node (default 100; 0: never wait;\n"
	    "                       at most 10000)\n"
	    "  --max-per-address N  at most N connections open at once from one client\n"
	    "                       address; more are closed at once (default 1024; 0: no\n"
	    "                       limit, for callers all behind one NAT address)\n"
	    "  -v, --verbose        debug logging\n");
}

static int
resolve_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	char host[256], port[8];
	uint16_t p;

	if (kb_hostport_parse(s, host, sizeof(host), &p) < 0)
		return -1;
	snprintf(port, sizeof(port), "%u", p);
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

/* What the command line says. */
struct sc_opts {
	const char *profile, *listen_on, *app, *manager, *enroll, *token, *renew_after;
	struct sockaddr_storage ls;
	socklen_t lslen;
	int pause_set;		/* --batch-wait-us given */
	unsigned pause_us;
	int verbose;
};

/* The options into o (and sc's workload, namespace, protocol, app): -1 to
 * go on, or the exit status (0 after --help, 2 for a bad command line). */
static int
sc_parse(struct sidecar *sc, int argc, char **argv, struct sc_opts *o)
{
	static const struct option opts[] = {
		{ "profile", required_argument, NULL, 'p' },
		{ "enroll", required_argument, NULL, 'E' },
		{ "token", required_argument, NULL, 'T' },
		{ "renew-after", required_argument, NULL, 'R' },
		{ "workload", required_argument, NULL, 'w' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "listen", required_argument, NULL, 'l' },
		{ "app", required_argument, NULL, 'a' },
		{ "protocol", required_argument, NULL, 'P' },
		{ "manager", required_argument, NULL, 'm' },
		{ "batch-wait-us", required_argument, NULL, 'B' },
		{ "max-per-address", required_argument, NULL, 'A' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *batch_wait = NULL, *per_address = NULL;
	int c;

	memset(o, 0, sizeof(*o));
	sc->protocol = "http";
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			o->profile = optarg;
			break;
		case 'E':
			o->enroll = optarg;
			break;
		case 'T':
			o->token = optarg;
			break;
		case 'R':
			o->renew_after = optarg;
			break;
		case 'w':
			sc->workload = optarg;
			break;
		case 'n':
			sc->ns = optarg;
			break;
		case 'l':
			o->listen_on = optarg;
			break;
		case 'a':
			o->app = optarg;
			break;
		case 'P':
			sc->protocol = optarg;
			break;
		case 'm':
			o->manager = optarg;
			break;
		case 'B':
			batch_wait = optarg;
			break;
		case 'A':
			per_address = optarg;
			break;
		case 'v':
			o->verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !o->profile == !o->enroll || !sc->workload || !sc->ns ||
	    !o->listen_on || !o->app) {
		fprintf(stderr, "kbridge-agent: sidecar needs --profile or --enroll (one), --workload, --namespace, --listen and --app (see --help)\n");
		return 2;
	}
	if (o->enroll && !o->manager) {
		fprintf(stderr, "kbridge-agent: --enroll needs --manager\n");
		return 2;
	}
	if (!o->token)
		o->token = KB_WEBHOOK_TOKEN_FILE;
	if (o->renew_after && (!o->enroll ||
	    kb_parse_num(o->renew_after, 1, 86400, NULL, &sc->renew_after) < 0)) {
		fprintf(stderr, "kbridge-agent: --renew-after needs --enroll and 1 to 86400 (seconds)\n");
		return 2;
	}
	if (strcmp(sc->protocol, "http") && strcmp(sc->protocol, "tcp")) {
		fprintf(stderr, "kbridge-agent: --protocol must be http or tcp\n");
		return 2;
	}
	if (batch_wait != NULL) {
		unsigned long us;

		if (kb_parse_num(batch_wait, 0, 10000, NULL, &us) < 0) {
			fprintf(stderr, "kbridge-agent: --batch-wait-us must be 0 to 10000 (microseconds)\n");
			return 2;
		}
		o->pause_set = 1;
		o->pause_us = (unsigned)us;
	}
	sc->max_per_address = MAX_PER_ADDRESS;
	if (per_address != NULL &&
	    kb_parse_num(per_address, 0, 1000000, NULL, &sc->max_per_address) < 0) {
		fprintf(stderr, "kbridge-agent: --max-per-address must be 0 to 1000000 (connections)\n");
		return 2;
	}
	if (resolve_hostport(o->app, &sc->app, &sc->applen) < 0 ||
	    resolve_hostport(o->listen_on, &o->ls, &o->lslen) < 0) {
		fprintf(stderr, "kbridge-agent: --listen and --app must be HOST:PORT\n");
		return 2;
	}
	return -1;
}

/* The next renewal: --renew-after, else at 2/3 of the lifetime left (at
 * least a minute); after a failure, again in a minute. */
static void
renew_schedule(struct sidecar *sc, long long expires, int failed)
{
	long long left = expires - (long long)time(NULL);
	struct timeval tv = { .tv_sec = 60 };

	if (!failed)
		tv.tv_sec = sc->renew_after ? (time_t)sc->renew_after :
		    (time_t)(left * 2 / 3 > 60 ? left * 2 / 3 : 60);
	evtimer_add(sc->renew_timer, &tv);
}

/* A renewal's result: the new certificate and key for the next dials (the
 * session up now keeps its own). */
static void
renewed(void *arg, int rc, struct kb_profile *p, const char *workload, long long expires,
    const char *err)
{
	struct sidecar *sc = arg;
	char why[300];
	SSL_CTX *ctx = NULL;

	if (rc == 0 && strcmp(workload, sc->bound) != 0)
		snprintf(why, sizeof(why), "the renewed certificate is for %s, not %s", workload,
		    sc->bound);
	else if (rc == 0 && (ctx = kb_tls_client_ctx(sc->profile.ca_pem, p->cert_pem, p->key_pem,
	    why, sizeof(why))) != NULL) {
		free(sc->profile.cert_pem);
		kb_free_secret(sc->profile.key_pem);
		sc->profile.cert_pem = p->cert_pem;
		sc->profile.key_pem = p->key_pem;
		p->cert_pem = p->key_pem = NULL;
		SSL_CTX_free(sc->ctx);
		sc->ctx = sc->link.ctx = ctx;
		log_info("renewed the certificate for %s until %lld", workload, expires);
	} else if (rc < 0)
		snprintf(why, sizeof(why), "%s", err);
	kb_profile_free(p);	/* p is the renewal's: freed with it, next */
	sc_renewal_free(sc->renewal);
	sc->renewal = NULL;
	if (!ctx)
		log_warnx("cannot renew the certificate: %s; again in 60 s", why);
	renew_schedule(sc, expires, ctx == NULL);
}

static void
renew(evutil_socket_t fd, short what, void *arg)
{
	struct sidecar *sc = arg;

	(void)fd;
	(void)what;
	if (sc->renewal)
		return;
	if ((sc->renewal = sc_renewal_start(sc->base, sc->enroll, sc->token, sc->ca,
	    sc->profile.manager, renewed, sc)) == NULL) {
		log_warnx("cannot start renewing the certificate; again in 60 s");
		renew_schedule(sc, 0, 1);
	}
}

/* --enroll: the certificate from the manager (sidecar_enroll.h), tried
 * SC_ENROLL_TRIES times with backoff (the manager may be starting). 0, or
 * -1 with err. */
static int
sc_enroll(struct sidecar *sc, const struct sc_opts *o, long long *expires, char *err,
    size_t errlen)
{
	const char *ca = getenv(KB_WEBHOOK_CA_ENV);
	unsigned delay = 1, i;
	char got[2 * 64 + 2], want[2 * 64 + 2];

	if (!ca || !*ca) {
		snprintf(err, errlen, "--enroll needs the CA (PEM) in $%s", KB_WEBHOOK_CA_ENV);
		return -1;
	}
	for (i = 0; i < SC_ENROLL_TRIES; i++) {
		if (sidecar_enroll(o->enroll, o->token, ca, o->manager, &sc->profile, expires, got,
		    sizeof(got), err, errlen) == 0) {
			log_info("enrolled at %s: certificate for %s until %lld", o->enroll, got,
			    *expires);
			snprintf(sc->bound, sizeof(sc->bound), "%s", got);
			sc->enroll = o->enroll;
			sc->token = o->token;
			sc->ca = ca;
			snprintf(want, sizeof(want), "%s.%s", sc->workload, sc->ns);
			if (strcmp(got, want))
				log_warnx("the certificate is for %s, not %s (--workload, --namespace): "
				    "the manager will refuse it", got, want);
			return 0;
		}
		/* A refusal is final; no answer may not be. */
		if (strncmp(err, "enrollment: HTTP 4", 18) == 0)
			return -1;
		log_warnx("%s; again in %u s", err, delay);
		sleep(delay);
		delay = delay * 2 > 30 ? 30 : delay * 2;
	}
	return -1;
}

/* Logging, the profile, TLS, the event loop, the listener, the signals:
 * 0, or -1 with err. */
static int
sc_setup(struct sidecar *sc, const struct sc_opts *o, char *err, size_t errlen)
{
	long long expires = 0;

	log_init("kbridge-sidecar", o->verbose ? KB_LOG_DEBUG : KB_LOG_INFO);
	if (log_ring_init(KB_LOGS_MAX) < 0)
		log_warnx("no memory for the log ring: no log for 'kbridge gather-logs'");
	signal(SIGPIPE, SIG_IGN);
	/* Every connection is a descriptor (two when proxied): 1024 is few. */
	if (kb_raise_nofile() < 0)
		log_warn("cannot raise the limit on open files");
	kb_malloc_tune();
	if (o->enroll) {
		if (sc_enroll(sc, o, &expires, err, errlen) < 0)
			return -1;
	} else if (kb_profile_load(o->profile, &sc->profile, err, errlen) < 0)
		return -1;
	if (strcmp(sc->profile.role, KB_ROLE_SIDECAR) != 0) {
		snprintf(err, errlen, "profile %s is not a sidecar profile (issue it with --sidecar)",
		    o->profile);
		return -1;
	}
	if (o->manager) {
		char host[256];
		uint16_t port;
		if (kb_hostport_parse(o->manager, host, sizeof(host), &port) < 0) {
			snprintf(err, errlen, "invalid --manager '%s' (expected HOST:PORT)", o->manager);
			return -1;
		}
		free(sc->profile.manager);
		sc->profile.manager = strdup(o->manager);
	}
	if ((sc->ctx = kb_tls_client_ctx(sc->profile.ca_pem, sc->profile.cert_pem,
	    sc->profile.key_pem, err, errlen)) == NULL)
		return -1;
	if ((sc->base = kb_event_base_new()) == NULL ||
	    (sc->retry = evtimer_new(sc->base, retry, sc)) == NULL ||
	    (sc->renew_timer = evtimer_new(sc->base, renew, sc)) == NULL) {
		snprintf(err, errlen, "cannot create the event loop");
		return -1;
	}
	if (o->enroll)
		renew_schedule(sc, expires, 0);
	if ((sc->hp = hp_proxy_new(sc->base)) == NULL || (sc->max_per_address &&
	    (sc->srccap = kb_srccap_new(sc->max_per_address)) == NULL)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	sc->listener = kb_listener_bind(sc->base, "sidecar listener", (struct sockaddr *)&o->ls,
	    (int)o->lslen, 1024, accepted, sc);
	if (!sc->listener) {
		snprintf(err, errlen, "cannot listen on %s: %s", o->listen_on, strerror(errno));
		return -1;
	}
	sc->sigs[0] = evsignal_new(sc->base, SIGTERM, on_signal, sc);
	sc->sigs[1] = evsignal_new(sc->base, SIGINT, on_signal, sc);
	evsignal_add(sc->sigs[0], NULL);
	evsignal_add(sc->sigs[1], NULL);
	return 0;
}

/* Dial the manager and serve until a signal ends the loop. */
static void
sc_run(struct sidecar *sc, const struct sc_opts *o)
{
	struct pace pace;

	pace_init(&pace, hp_applat(sc->hp));
	pace.use_wait = 1;
	if (o->pause_set)
		pace.pause_us = o->pause_us;
	log_info("sidecar for %s.%s (%s) on %s, app %s", sc->workload, sc->ns, sc->protocol,
	    o->listen_on, o->app);
	sc->link = (struct kb_mlink){ .base = sc->base, .manager = sc->profile.manager, .ctx = sc->ctx,
	    .timeout_ms = CONNECT_TIMEOUT_MS, .session = &session_cbs, .hello = link_hello,
	    .up = link_up, .failed = link_failed, .arg = sc };
	kb_mlink_dial(&sc->link);
	if (pace_run(&pace, sc->base) == -1)
		log_warnx("event loop failed");
	log_debug("%llu loop passes, %llu paused", (unsigned long long)pace.passes,
	    (unsigned long long)pace.pauses);
}

/* What sc_setup() made, whether it got to the end or not. */
static void
sc_teardown(struct sidecar *sc)
{
	int i;

	for (i = 0; i < 2; i++)
		if (sc->sigs[i])
			event_free(sc->sigs[i]);
	if (sc->sess)
		kb_session_free(sc->sess);
	kb_mlink_cancel(&sc->link);
	icpts_clear(sc);
	kb_listener_free(sc->listener);
	if (sc->retry)
		event_free(sc->retry);
	sc_renewal_free(sc->renewal);
	if (sc->renew_timer)
		event_free(sc->renew_timer);
	hp_proxy_free(sc->hp);
	hp_fini();
	/* The session's connection closes once flushed (kb_session_free): let
	 * it, for at most TEARDOWN_DRAIN_MS. */
	if (sc->base) {
		struct timeval tv = { 0, TEARDOWN_DRAIN_MS * 1000 };

		event_base_loopexit(sc->base, &tv);
		event_base_dispatch(sc->base);
		event_base_free(sc->base);
	}
	/* After the loop: a join ending while it drained gave its place back. */
	kb_srccap_free(sc->srccap);
	SSL_CTX_free(sc->ctx);
	kb_profile_free(&sc->profile);
}

int
cmd_sidecar(int argc, char **argv)
{
	struct sidecar *sc;
	struct sc_opts o;
	char err[300];
	int rc;

	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		fprintf(stderr, "kbridge-agent: out of memory\n");
		return 1;
	}
	if ((rc = sc_parse(sc, argc, argv, &o)) >= 0) {
		free(sc);
		return rc;
	}
	if ((rc = sc_setup(sc, &o, err, sizeof(err))) == 0)
		sc_run(sc, &o);
	else
		fprintf(stderr, "kbridge-agent: %s\n", err);
	sc_teardown(sc);
	free(sc);
	return rc == 0 ? 0 : 1;
}
