/* Asynchronous Kubernetes API client: libcurl multi driven by the libevent
 * loop, JSON in and out (cJSON). Talks to the API as client-go does, not
 * more: plain requests, and list+watch (from the list's resourceVersion, with
 * bookmarks, re-list on 410 Gone). This module owns the HTTP client and the
 * credentials; callers see typed callbacks.
 *
 * Callback rule: callbacks never run inside kb_kube_* calls nor inside
 * libcurl's own callbacks, so from any callback it is safe to start
 * requests, cancel any request or watch (also the one calling), and free the
 * client. After a cancel the object's callbacks are not called again; memory
 * is released when the outermost callback returns. TLS verification is
 * always on; only https:// servers are accepted. */
#ifndef KB_KUBEAPI_H
#define KB_KUBEAPI_H

#include <stddef.h>

struct event_base;
struct cJSON;
struct kb_kube;
struct kb_kube_req;
struct kb_kube_watch;

/* Limits (bytes, counts). */
#define KB_KUBE_MAX_RESPONSE (16u << 20) /* a plain response body */
#define KB_KUBE_MAX_EVENT (4u << 20)     /* one watch event (one line) */
#define KB_KUBE_MAX_INFLIGHT 32          /* plain requests at once; more wait */
#define KB_KUBE_MAX_QUEUED 4096          /* waiting requests; more fail */

/* In-cluster credentials. Every field may be NULL/0 for the default. */
struct kb_kube_incluster {
	const char *dir;      /* /var/run/secrets/kubernetes.io/serviceaccount */
	const char *server;   /* https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT */
	int token_refresh_ms; /* re-read the token file this often (60000); also on 401 */
};

/* Explicit credentials, in memory (nothing is written to disk). Strings are
 * copied. ca_pem NULL: the system's trust store. Either cert_pem+key_pem or
 * token (or neither: anonymous). */
struct kb_kube_creds {
	const char *server; /* https://host:port */
	const char *ca_pem;
	const char *cert_pem;
	const char *key_pem;
	const char *token;
};

/* A plain request's answer. status: the HTTP status, or 0 if there was no
 * answer (transport error, size limit, cancelled client). body: the parsed
 * JSON answer or NULL (not JSON, or no answer); borrowed, valid until cb
 * returns (detach or duplicate what you keep). err: NULL for a 2xx answer
 * that is JSON or empty, else one line: the API Status' message (e.g.
 * `namespaces is forbidden: User "bob" cannot list resource "namespaces"
 * ...`), or what failed ("GET https://...: Connection refused"). */
typedef void (*kb_kube_cb)(void *arg, int status, struct cJSON *body, const char *err);

/* In-cluster client: server from the environment (or ic->server), CA and
 * token files from ic->dir. NULL with a one-line err. */
struct kb_kube *kb_kube_new_incluster(struct event_base *base, const struct kb_kube_incluster *ic,
    char *err, size_t errlen);
/* Client with explicit credentials. NULL with a one-line err. */
struct kb_kube *kb_kube_new(struct event_base *base, const struct kb_kube_creds *creds, char *err,
    size_t errlen);
/* Cancel every request and watch (their callbacks are not called) and free
 * the client. Safe from callbacks (see above). */
void kb_kube_free(struct kb_kube *kube);

/* Send method ("GET", "POST", "PUT", "PATCH" as a JSON merge patch,
 * "DELETE") to path ("/api/v1/namespaces", may carry a ?query) with body
 * (NULL: none; serialized now, not kept). cb is called exactly once, later,
 * unless the request is cancelled first. NULL when out of memory, given bad
 * arguments, or KB_KUBE_MAX_QUEUED requests wait already (then cb is never
 * called). A 401 with in-cluster credentials re-reads the token file and, if
 * the token changed, sends the request once more. */
struct kb_kube_req *kb_kube_request(struct kb_kube *kube, const char *method, const char *path,
    const struct cJSON *body, kb_kube_cb cb, void *arg);
/* Forget a request whose cb has not run yet: cb is not called. */
void kb_kube_cancel(struct kb_kube_req *req);

enum kb_kube_event_type { KB_KUBE_ADDED, KB_KUBE_MODIFIED, KB_KUBE_DELETED };

struct kb_kube_watch_cbs {
	/* A list completed (first, and again after 410 Gone): items is the
	 * complete array of objects now (borrowed); replace your state with it.
	 * Events that follow are relative to it. */
	void (*on_sync)(void *arg, struct cJSON *items);
	/* One change after the last sync; object borrowed. */
	void (*on_event)(void *arg, enum kb_kube_event_type type, struct cJSON *object);
	/* A list or watch failed (status 0: no answer); the watch retries by
	 * itself with backoff (100 ms .. 5 s) until cancelled. May be NULL. */
	void (*on_error)(void *arg, int status, const char *err);
	void *arg;
	/* Server-side end of each watch request (timeoutSeconds); it is
	 * restarted from the last resourceVersion. 0: random 300..600. */
	int timeout_sec;
};

/* List path (a collection, e.g. "/api/v1/namespaces"; may carry a
 * ?labelSelector=...), then watch it for good. cbs is copied. NULL only
 * when out of memory or given bad arguments. */
struct kb_kube_watch *kb_kube_watch(struct kb_kube *kube, const char *path,
    const struct kb_kube_watch_cbs *cbs);
/* Stop a watch: no more callbacks. Safe from callbacks (see above). */
void kb_kube_watch_cancel(struct kb_kube_watch *w);

#endif
