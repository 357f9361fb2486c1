/* kbridged: shared state of the workstation daemon. One instance per
 * process; the modules below each own a part of it. */
#ifndef KBRIDGED_H
#define KBRIDGED_H

#include "mlink.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "dns.h"
#include "msg.h"
#include "netplan.h"
#include "profile.h"
#include "util.h"

#define KBD_MAX_SUBNETS 64
#define KBD_MAX_NAMESPACES 256

struct event_base;
struct event;
struct evhttp_request;
struct kb_tun;
struct kb_fw;
struct kb_dns;
struct kb_vnat;
struct kb_listener;
struct tunnel;
struct control;
struct local_icpt;
struct cJSON;
struct kb_stream;
struct kb_open;

enum kbd_state { KBD_DISCONNECTED, KBD_CONNECTING, KBD_CONNECTED, KBD_RECONNECTING };

/* What the manager told us about its cluster (its hello, "cluster"
 * messages), and the namespace the user connected to. Owned and written by
 * tunnel.c; net.c reads it while setting up. */
struct kbd_cluster {
	char ns[64];
	char user[64];
	char domain[128];
	struct kb_cidr subnets[KBD_MAX_SUBNETS];
	size_t nsubnets;
	char *namespaces[KBD_MAX_NAMESPACES];
	size_t nnamespaces;
};

/* One instance per process (main.c). Each module owns its part, reached
 * only through that module's functions. */
struct kbd {
	struct event_base *base;
	const char *socket_path;
	const char *instance;
	uint32_t tun_addr;          /* host order */
	int exiting;                /* kbd_quit ran */
	const char *log_path;       /* the log file (absolute), NULL if stderr */
	char instance_id[33];       /* random, per process: the manager tells a
	                             * reconnect from a new daemon by it */

	struct tunnel *tunnel;      /* tunnel.c: the session and its state */
	struct control *control;    /* control.c: the API socket, waiting requests */
	struct local_icpt *icpts;   /* intercept.c: our intercepts */

	/* net.c */
	struct kb_cidr applied[KB_NETPLAN_MAX]; /* ranges routed and redirected */
	size_t napplied;
	struct kb_cidr never[KB_NETPLAN_USER_MAX]; /* the user's --never-proxy */
	size_t nnever;
	struct kb_cidr also[KB_NETPLAN_USER_MAX]; /* the user's --also-proxy */
	size_t nalso;
	struct kb_cidr cluster[KBD_MAX_SUBNETS]; /* the cluster's, for overlaps */
	size_t ncluster;
	int vnat_off;               /* --virtual-subnet off */
	struct kb_cidr vnat_want;   /* --virtual-subnet CIDR; prefix 0: pick one */
	struct kb_vnat *vnat;       /* virtual addresses; NULL: nothing kept local */
	struct kb_tun *tun;
	struct event *tun_ev;
	struct kb_fw *fw;
	struct kb_dns *dns;
	struct kb_listener *proxy;
	uint16_t proxy_port;
};

/* tunnel.c: the session to the manager, the only owner of the connection
 * state (struct tunnel is private to it). */
/* The daemon's tunnel, disconnected; NULL when out of memory. */
struct tunnel *tunnel_new(struct kbd *d);
/* After tunnel_stop: releases the rest. NULL is fine. */
void tunnel_free(struct tunnel *t);
enum kbd_state tunnel_state(const struct tunnel *t);
const char *kbd_state_name(enum kbd_state s);
/* The profile and namespace of the session (being) set up, or NULL. */
const struct kb_profile *tunnel_profile(const struct tunnel *t);
const char *tunnel_namespace(const struct tunnel *t);
/* Does the manager answer "logs" (its hello said so)? */
int tunnel_manager_logs(const struct tunnel *t);
/* Tell the manager our level (kbridge loglevel): at debug, its debug lines
 * about this session too, never its other lines. 1 if told, 0 if not
 * connected or the manager takes no "loglevel" (the hello of the next
 * session carries the level), -1 on failure. */
int tunnel_loglevel(struct tunnel *t, int level);
/* Start connecting with profile p (taken, freed on failure) to namespace ns;
 * kube (checked by kb_api_check, copied; may be NULL) is shown in the
 * status; replace: take over our user's other session. The outcome goes to
 * control_connect_done. 0, or -1 with err (disconnected). */
int tunnel_connect(struct tunnel *t, struct kb_profile *p, const struct cJSON *kube,
    const char *ns, int replace, char *err, size_t errlen);
/* A deliberate stop: no reconnects; waiting connects get why. */
void tunnel_stop(struct tunnel *t, const char *why);
/* Add the session's part of /v1/status to j (state, user, cluster, counters,
 * and the intercepts and network set up for it). */
void tunnel_status_json(const struct tunnel *t, struct cJSON *j);
/* A request to the manager: msg ({"type":..}, taken) gets the next "id" (one
 * counter for every request, lookups too); done gets the "result" message,
 * or NULL and an error when there is no answer. -1 without a session (done
 * is not called then). */
typedef void (*tunnel_done_fn)(void *ctx, const struct cJSON *result, const char *err);
int tunnel_request(struct tunnel *t, struct cJSON *msg, tunnel_done_fn done, void *ctx);
/* End our intercepts on the manager now (quit, not a crash): done gets the
 * result (its "ended" list), or NULL. -1 if the session or the manager
 * cannot (done is not called then). */
int tunnel_leave_all(struct tunnel *t, tunnel_done_fn done, void *ctx);
/* The DNS proxy's resolve hooks (arg: the tunnel; see dns.h). */
int tunnel_resolve(void *arg, const char *name, int qtype, dns_done_fn done, void *ctx);
int tunnel_resolve_rr(void *arg, const char *name, int qtype, dns_done_rr_fn done, void *ctx);
void tunnel_open_stream(struct tunnel *t, int fd, const struct sockaddr_in *dst);

/* net.c: link, routes, redirect rules, DNS proxy, transparent listener */
/* Set up (or keep, if the subnets are the same) for the cluster c. */
int net_up(struct kbd *d, const struct kbd_cluster *c, char *err, size_t errlen);
void net_down(struct kbd *d);
/* The cluster's subnets changed during a session: the same link and table
 * get them (new routes, then the table in one batch, then old routes go).
 * On failure nothing changed; before net_up it only checks them (net_up
 * takes the cluster's). 0, or -1 with err. */
int net_subnets(struct kbd *d, const struct kb_cidr *v, size_t n, char *err, size_t errlen);
/* 0 if the daemon may route the subnets v; -1 and why otherwise. */
int net_check_subnets(const struct kbd *d, const struct kb_cidr *v, size_t n, char *err,
    size_t errlen);

/* The user's never-proxy and also-proxy ranges (checked by kb_api_check)
 * for the next net_up: -1 with err if an also-proxy range holds an address
 * of this workstation (it would capture its own traffic). */
int net_user_ranges(struct kbd *d, const struct kb_cidr *never, size_t nnever,
    const struct kb_cidr *also, size_t nalso, char *err, size_t errlen);

/* The user's --virtual-subnet ("off", a CIDR checked by kb_api_check, or
 * NULL: pick a free one when needed) for the next net_up. */
void net_virtual_subnet(struct kbd *d, const char *spec);
/* Is spec what the daemon was set up with? */
int net_same_virtual_subnet(const struct kbd *d, const char *spec);

/* The cluster's namespaces changed: the DNS proxy (if up) takes them. */
void net_namespaces(struct kbd *d, const struct kbd_cluster *c);
/* Add the network's part of /v1/status (link, table, dns, proxied,
 * never_proxy, also_proxy, overlaps) to j. */
void net_status_json(const struct kbd *d, struct cJSON *j);

/* control.c: HTTP+JSON API on the Unix socket; its state is d->control. */
int control_listen(struct kbd *d, uid_t owner, int has_owner, char *err, size_t errlen);
/* Unlink the socket (no new clients); control_free() releases the rest. */
void control_close(struct kbd *d);
void control_free(struct kbd *d);
/* Reply with a JSON body (taken) or {"error": msg}. */
void control_reply(struct evhttp_request *req, int code, struct cJSON *body);
void control_error(struct evhttp_request *req, int code, const char *msg);
/* Check req as proto/API.md says: the method (POST if post, else GET),
 * then a POST's body (*body: the object, or NULL if empty; caller frees)
 * with kb_api_check, or a GET's query. 0, or -1 after answering 405 or 400. */
int control_request(struct evhttp_request *req, int post, struct cJSON **body);
/* Answer the connect requests waiting for the session's outcome. */
void control_connect_done(struct kbd *d, int ok, const char *err);

/* Relaying a CLI request to the manager: */
/* 1 if the session is up; else 0 after answering 503. */
int control_relayable(struct kbd *d, struct evhttp_request *req);
/* Copy body's string member key to msg, dflt when it is absent or null;
 * -1 after answering 400 if it is another type, or missing and required. */
int control_string(struct evhttp_request *req, struct cJSON *msg, const struct cJSON *body,
    const char *key, const char *dflt, int required);
/* Copy body's number member key, in [min, max], to msg as an integer; -1
 * after answering 400 if it is out of range, or missing and required. */
int control_number(struct evhttp_request *req, struct cJSON *msg, const struct cJSON *body,
    const char *key, long min, long max, int required);
/* Copy the query parameter key of req's URI, if given, to msg. */
void control_query(struct evhttp_request *req, struct cJSON *msg, const char *key);
/* Sees an ok result of a relayed request, and the reply to the CLI (NULL if
 * the CLI went away) to add to it. */
typedef void (*control_relay_fn)(void *ctx, const struct cJSON *result, struct cJSON *reply);
/* Send msg (taken) to the manager and answer req with 200 and its result
 * minus "type" and "id", or with its status and error. ok (may be NULL)
 * sees an ok result first; ctx (taken, may be NULL) is freed afterwards. */
void control_relay(struct kbd *d, struct evhttp_request *req, struct cJSON *msg,
    control_relay_fn ok, void *ctx);

/* intercept.c: /v1/intercept, /v1/leave, /v1/list, and delivering
 * intercepted streams to local ports; its state is d->icpts. */
void intercept_http(struct evhttp_request *req, void *arg);
void intercept_deliver(struct kbd *d, struct kb_stream *st, const struct kb_open *o);
void intercept_shutdown(struct kbd *d);
/* Our intercepts for /v1/status: [{"workload", "namespace", "id", "port"}]. */
struct cJSON *intercept_status(const struct kbd *d);
/* The manager restarted (it forgot our intercepts): make them again. */
void intercept_restore(struct kbd *d);

/* preview.c: /v1/preview/create, /v1/preview/list, /v1/preview/remove */
void preview_http(struct evhttp_request *req, void *arg);

/* main.c */
void kbd_quit(struct kbd *d);

#endif
