/* The Kubernetes API client: libcurl's multi interface on the libevent
 * loop, list+watch with resourceVersion and bookmarks; callbacks run from
 * the loop only (see kubeapi.h). */
#include "kubeapi.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "log.h"
#include "util.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define TOKEN_REFRESH_MS 60000
#define TOKEN_MAX (64u << 10)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define LIST_PAGE 500
#define RV_MAX 64

struct buf {
	char *data;
	size_t len, cap;
};

struct sockev {
	struct event *ev;
	LIST_ENTRY(sockev) link;
};

enum req_state { RQ_QUEUED, RQ_RUNNING, RQ_DONE };

struct kb_kube_req {
	struct kb_kube *kube;
	TAILQ_ENTRY(kb_kube_req) link; /* queue or running */
	enum req_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	char method[8];
	char *path;
	char *body;
	struct buf resp;
	struct kb_kube_watch *stream; /* a watch request: events, not a body */
	int http_checked, http_ok;    /* stream: was the status 2xx? */
	int retried;                  /* once after a 401 with a new token */
	char err[256];                /* why our write callback stopped */
	char curlerr[CURL_ERROR_SIZE];
	kb_kube_cb cb;
	void *arg;
};

struct kb_kube {
	struct event_base *base;
	CURLM *multi;
	struct event *timer; /* libcurl's timeout */
	struct event *kick;  /* start queued requests */
	char *server;
	char *ca_pem, *cert_pem, *key_pem; /* explicit credentials */
	char *ca_file, *token_file;        /* in-cluster */
	char *token;
	uint64_t token_read_ms;
	int token_refresh_ms;
	TAILQ_HEAD(, kb_kube_req) queue, running;
	int nqueued, inflight;
	TAILQ_HEAD(, kb_kube_watch) watches, pending;
	LIST_HEAD(, sockev) socks;
	int depth, dying;
};

struct kb_kube_watch {
	struct kb_kube *kube;
	TAILQ_ENTRY(kb_kube_watch) link, plink;
	struct kb_kube_watch_cbs cbs;
	char *path, *query;
	char rv[RV_MAX];      /* watch from here; "" lists first */
	char *cont;           /* the next list page */
	cJSON *items;         /* list pages so far */
	struct kb_kube_req *req;
	struct event *retry;
	int backoff_ms;
	struct buf line;      /* a partial event */
	cJSON *pending;       /* events parsed, not yet delivered */
	int on_pending;
	int relist, got_event, failed, errcode;
	unsigned nlists, nwatches; /* requests started (debug logs, tests) */
	char errmsg[256];
	int busy, cancelled;
};

static int list_page = LIST_PAGE; /* tests lower it */

static void req_free(struct kb_kube_req *req);
static int req_start(struct kb_kube_req *req);
static void watch_start(struct kb_kube_watch *w);
static void watch_free(struct kb_kube_watch *w);

static int
buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n + 1) {
		size_t cap = b->cap ? b->cap : 4096;
		char *nb;
		while (cap - b->len < n + 1)
			cap *= 2;
		if ((nb = realloc(b->data, cap)) == NULL)
			return -1;
		b->data = nb;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static void
buf_reset(struct buf *b)
{
	/* Do not keep a 4 MiB buffer for the small events that follow. */
	if (b->cap > (64u << 10)) {
		free(b->data);
		b->data = NULL;
		b->cap = 0;
	}
	b->len = 0;
}

/* Printable ASCII without spaces: safe in a header and a URL. */
static int
plain_text(const char *s, int allow_space)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 + !allow_space || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/* Text from the server goes into one log line: no control characters. */
static const char *
one_line(char *s)
{
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return s;
}

/* Dispatch depth: objects cancelled inside callbacks are released when the
 * outermost one returns, the client itself included. */
static void
kube_enter(struct kb_kube *k)
{
	k->depth++;
}

static void kube_destroy(struct kb_kube *k);

static void
kube_leave(struct kb_kube *k)
{
	if (--k->depth == 0 && k->dying)
		kube_destroy(k);
}

/* ---- credentials ---- */

/* Re-read the token file; keep the old token if that fails. 1 if it
 * changed. */
static int
token_reread(struct kb_kube *k)
{
	const char *why;
	size_t len;
	char *t;

	k->token_read_ms = kb_now_ms();
	if ((t = kb_read_file(k->token_file, TOKEN_MAX, &len)) == NULL) {
		log_warn("kubeapi: token %s", k->token_file);
		return 0;
	}
	if (kb_token_trim(t, len, &why) < 0) {
		log_warnx("kubeapi: token %s: %s, keeping the old one", k->token_file, why);
		free(t);
		return 0;
	}
	if (k->token && strcmp(k->token, t) == 0) {
		free(t);
		return 0;
	}
	free(k->token);
	k->token = t;
	log_debug("kubeapi: token read from %s", k->token_file);
	return 1;
}

static int
server_ok(const char *s, char *err, size_t errlen)
{
	if (strncmp(s, "https://", 8) != 0 || s[8] == '\0' || s[8] == '/' || !plain_text(s, 0)) {
		snprintf(err, errlen, "kubernetes server \"%.100s\": not an https:// URL", s);
		return 0;
	}
	return 1;
}

/* ---- libcurl on libevent ---- */

static void after_action(struct kb_kube *k);

static void
on_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct kb_kube *k = arg;
	int running, action = 0;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	kube_enter(k);
	curl_multi_socket_action(k->multi, fd, action, &running);
	after_action(k);
	kube_leave(k);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct kb_kube *k = arg;
	int running;

	(void)fd;
	(void)what;
	kube_enter(k);
	curl_multi_socket_action(k->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	after_action(k);
	kube_leave(k);
}

static int
sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct kb_kube *k = userp;
	struct sockev *se = socketp;
	short flags = EV_PERSIST;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (se) {
			event_free(se->ev);
			LIST_REMOVE(se, link);
			free(se);
		}
		return 0;
	}
	if (se == NULL) {
		if ((se = calloc(1, sizeof(*se))) == NULL)
			return -1;
		LIST_INSERT_HEAD(&k->socks, se, link);
		curl_multi_assign(k->multi, s, se);
	} else if (se->ev) {
		event_free(se->ev);
	}
	if (what & CURL_POLL_IN)
		flags |= EV_READ;
	if (what & CURL_POLL_OUT)
		flags |= EV_WRITE;
	if ((se->ev = event_new(k->base, s, flags, on_sock_event, k)) == NULL ||
	    event_add(se->ev, NULL) < 0)
		return -1;
	return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct kb_kube *k = userp;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0)
		return evtimer_del(k->timer);
	tv = kb_ms_tv(timeout_ms);
	return evtimer_add(k->timer, &tv);
}

/* ---- requests ---- */

static size_t stream_feed(struct kb_kube_req *req, const char *p, size_t len);

static size_t
on_write(char *p, size_t size, size_t n, void *arg)
{
	struct kb_kube_req *req = arg;
	size_t len = size * n;

	if (req->stream && !req->http_checked) {
		long code = 0;
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
		req->http_checked = 1;
		req->http_ok = code >= 200 && code < 300;
	}
	if (req->stream && req->http_ok)
		return stream_feed(req, p, len);
	if (req->resp.len + len > KB_KUBE_MAX_RESPONSE) {
		snprintf(req->err, sizeof(req->err), "answer larger than %u MiB",
		    KB_KUBE_MAX_RESPONSE >> 20);
		return 0;
	}
	if (buf_add(&req->resp, p, len) < 0) {
		snprintf(req->err, sizeof(req->err), "out of memory");
		return 0;
	}
	return len;
}

static struct curl_slist *
req_headers(struct kb_kube_req *req)
{
	struct kb_kube *k = req->kube;
	struct curl_slist *h = NULL, *n;
	char auth[TOKEN_MAX + 32];
	const char *lines[] = {
		"Accept: application/json",
		strcmp(req->method, "PATCH") == 0 ? "Content-Type: application/merge-patch+json" :
						    "Content-Type: application/json",
		"User-Agent: kbridge",
		"Expect:",
	};

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if ((n = curl_slist_append(h, lines[i])) == NULL)
			goto fail;
		h = n;
	}
	if (k->token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", k->token);
		n = curl_slist_append(h, auth);
		explicit_bzero(auth, sizeof(auth));
		if (n == NULL)
			goto fail;
		h = n;
	}
	return h;
fail:
	curl_slist_free_all(h);
	return NULL;
}

/* Set up the easy handle (once) and hand it to the multi handle. */
static int
req_start(struct kb_kube_req *req)
{
	struct kb_kube *k = req->kube;
	struct curl_blob blob;
	char *url = NULL;
	CURL *e = req->easy;
	long timeout_ms;

	if (k->token_file && kb_now_ms() - k->token_read_ms >= (uint64_t)k->token_refresh_ms)
		token_reread(k);
	curl_slist_free_all(req->hdrs);
	if ((req->hdrs = req_headers(req)) == NULL)
		return -1;
	req->resp.len = 0;
	req->http_checked = req->http_ok = 0;
	req->err[0] = req->curlerr[0] = '\0';
	if (e == NULL) {
		if ((e = req->easy = curl_easy_init()) == NULL)
			return -1;
		if (asprintf(&url, "%s%s", k->server, req->path) < 0)
			return -1;
		curl_easy_setopt(e, CURLOPT_URL, url);
		free(url);
		curl_easy_setopt(e, CURLOPT_PRIVATE, req);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
		curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
		curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
		/* A watch ends on the server's timeoutSeconds; this only
		 * catches a connection that died silently. */
		timeout_ms = req->stream ? (req->stream->cbs.timeout_sec + 60) * 1000L : 120000L;
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
		curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->curlerr);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
		if (k->ca_pem) {
			blob = (struct curl_blob){ k->ca_pem, strlen(k->ca_pem), CURL_BLOB_COPY };
			curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
		} else if (k->ca_file) {
			curl_easy_setopt(e, CURLOPT_CAINFO, k->ca_file);
		}
		/* Only the cluster's CA, not the system's directory too. */
		if (k->ca_pem || k->ca_file)
			curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
		if (k->cert_pem && k->key_pem) {
			blob = (struct curl_blob){ k->cert_pem, strlen(k->cert_pem), CURL_BLOB_COPY };
			curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &blob);
			curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
			blob = (struct curl_blob){ k->key_pem, strlen(k->key_pem), CURL_BLOB_COPY };
			curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
			curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
		}
		if (strcmp(req->method, "GET") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
		if (req->body) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(req->body));
		} else if (strcmp(req->method, "POST") == 0) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		}
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->hdrs);
	if (curl_multi_add_handle(k->multi, e) != CURLM_OK)
		return -1;
	req->state = RQ_RUNNING;
	TAILQ_INSERT_TAIL(&k->running, req, link);
	if (!req->stream)
		k->inflight++;
	return 0;
}

static void
req_stop(struct kb_kube_req *req)
{
	struct kb_kube *k = req->kube;

	if (req->state == RQ_QUEUED) {
		TAILQ_REMOVE(&k->queue, req, link);
		k->nqueued--;
	} else if (req->state == RQ_RUNNING) {
		curl_multi_remove_handle(k->multi, req->easy);
		TAILQ_REMOVE(&k->running, req, link);
		if (!req->stream) {
			k->inflight--;
			if (!TAILQ_EMPTY(&k->queue))
				event_active(k->kick, EV_TIMEOUT, 0);
		}
	}
	req->state = RQ_DONE;
}

static void
req_free(struct kb_kube_req *req)
{
	if (req->easy)
		curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->hdrs);
	free(req->resp.data);
	free(req->path);
	free(req->body);
	free(req);
}

/* Finished, failed or refused: tell the caller, then forget it. */
static void
req_finish(struct kb_kube_req *req, CURLcode res)
{
	struct kb_kube *k = req->kube;
	cJSON *body = NULL, *msg;
	const char *err = NULL;
	char ebuf[512];
	long status = 0;

	req_stop(req);
	if (res == CURLE_OK)
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	/* A rotated (in-cluster) token: read it now and try once more. */
	if (res == CURLE_OK && status == 401 && k->token_file && !req->retried &&
	    token_reread(k)) {
		req->retried = 1;
		if (req->stream)
			buf_reset(&req->stream->line);
		log_info("kubeapi: 401 for %s %s, retrying with the new token", req->method,
		    req->path);
		if (req_start(req) == 0)
			return;
	}
	if (res != CURLE_OK) {
		snprintf(ebuf, sizeof(ebuf), "%s %s%s: %s", req->method, k->server, req->path,
		    req->err[0] ? req->err : req->curlerr[0] ? req->curlerr : curl_easy_strerror(res));
		err = ebuf;
	} else {
		if (req->resp.len)
			body = cJSON_ParseWithLength(req->resp.data, req->resp.len);
		msg = cJSON_GetObjectItemCaseSensitive(body, "message");
		if (status < 200 || status > 299) {
			if (cJSON_IsString(msg) && msg->valuestring[0])
				snprintf(ebuf, sizeof(ebuf), "%s", msg->valuestring);
			else
				snprintf(ebuf, sizeof(ebuf), "%s %s%s: HTTP %ld", req->method,
				    k->server, req->path, status);
			err = ebuf;
		} else if (req->resp.len && body == NULL) {
			snprintf(ebuf, sizeof(ebuf), "%s %s%s: the answer is not JSON", req->method,
			    k->server, req->path);
			err = ebuf;
		}
	}
	if (err) {
		err = one_line(ebuf);
		log_debug("kubeapi: %s %s: %ld %s", req->method, req->path, status, err);
	}
	req->cb(req->arg, (int)status, body, err);
	cJSON_Delete(body);
	req_free(req);
}

static void
start_queued(struct kb_kube *k)
{
	struct kb_kube_req *req;

	while (!k->dying && k->inflight < KB_KUBE_MAX_INFLIGHT &&
	    (req = TAILQ_FIRST(&k->queue)) != NULL) {
		TAILQ_REMOVE(&k->queue, req, link);
		k->nqueued--;
		req->state = RQ_DONE;
		if (req_start(req) < 0) {
			snprintf(req->err, sizeof(req->err), "cannot start the request");
			req_finish(req, CURLE_FAILED_INIT);
		}
	}
}

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct kb_kube *k = arg;

	(void)fd;
	(void)what;
	kube_enter(k);
	start_queued(k);
	kube_leave(k);
}

static struct kb_kube_req *
req_new(struct kb_kube *k, const char *method, const char *path, const cJSON *body, kb_kube_cb cb,
    void *arg)
{
	static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE" };
	struct kb_kube_req *req;
	size_t i;

	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (method && strcmp(method, methods[i]) == 0)
			break;
	if (i == sizeof(methods) / sizeof(methods[0]) || !path || path[0] != '/' ||
	    !plain_text(path, 0) || !cb || k->dying) {
		log_warnx("kubeapi: refusing request %.10s %.100s",
		    method && plain_text(method, 0) ? method : "(bad method)",
		    path && plain_text(path, 0) ? path : "(bad path)");
		return NULL;
	}
	if ((req = calloc(1, sizeof(*req))) == NULL)
		return NULL;
	req->kube = k;
	snprintf(req->method, sizeof(req->method), "%s", method);
	req->cb = cb;
	req->arg = arg;
	if ((req->path = strdup(path)) == NULL ||
	    (body && (req->body = cJSON_PrintUnformatted(body)) == NULL)) {
		req_free(req);
		return NULL;
	}
	return req;
}

struct kb_kube_req *
kb_kube_request(struct kb_kube *k, const char *method, const char *path, const cJSON *body,
    kb_kube_cb cb, void *arg)
{
	struct kb_kube_req *req;

	if (k->nqueued >= KB_KUBE_MAX_QUEUED) {
		log_warnx("kubeapi: %d requests wait already, refusing %s %.100s", k->nqueued,
		    method, path);
		return NULL;
	}
	if ((req = req_new(k, method, path, body, cb, arg)) == NULL)
		return NULL;
	req->state = RQ_QUEUED;
	TAILQ_INSERT_TAIL(&k->queue, req, link);
	k->nqueued++;
	event_active(k->kick, EV_TIMEOUT, 0);
	return req;
}

void
kb_kube_cancel(struct kb_kube_req *req)
{
	/* Inside its own callback the request is finished already. */
	if (req == NULL || req->state == RQ_DONE)
		return;
	req_stop(req);
	req_free(req);
}

/* ---- watches ---- */

static int
watch_alive(struct kb_kube_watch *w)
{
	if (!w->cancelled)
		return 1;
	if (w->busy == 0)
		watch_free(w);
	return 0;
}

#define WCALL(w, call)         \
	do {                   \
		(w)->busy++;   \
		call;          \
		(w)->busy--;   \
	} while (0)

static void
watch_error(struct kb_kube_watch *w, int status, const char *err)
{
	log_debug("kubeapi: watch %s: %d %s", w->path, status, err);
	if (w->cbs.on_error)
		WCALL(w, w->cbs.on_error(w->cbs.arg, status, err));
}

static void
watch_retry(struct kb_kube_watch *w)
{
	struct timeval tv = kb_ms_tv(w->backoff_ms);

	evtimer_add(w->retry, &tv);
	w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
}

static const char *const ev_types[] = { "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR" };
#define EV_BOOKMARK 3
#define EV_ERROR 4

static int
event_type(const cJSON *ev)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "type");

	for (int i = 0; cJSON_IsString(t) && i < 5; i++)
		if (strcmp(t->valuestring, ev_types[i]) == 0)
			return i;
	return -1;
}

/* One line of a watch stream: parse and queue it (we are inside libcurl's
 * write callback, where no user code may run). */
static int
stream_line(struct kb_kube_req *req, struct kb_kube_watch *w)
{
	cJSON *ev;
	const char *p = w->line.data;

	while (p < w->line.data + w->line.len && isspace((unsigned char)*p))
		p++;
	if (p == w->line.data + w->line.len)
		return 0;
	ev = cJSON_ParseWithLength(w->line.data, w->line.len);
	if (ev == NULL || event_type(ev) < 0 ||
	    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ev, "object"))) {
		cJSON_Delete(ev);
		snprintf(req->err, sizeof(req->err), "bad watch event");
		return -1;
	}
	if (w->pending == NULL && (w->pending = cJSON_CreateArray()) == NULL) {
		cJSON_Delete(ev);
		snprintf(req->err, sizeof(req->err), "out of memory");
		return -1;
	}
	cJSON_AddItemToArray(w->pending, ev);
	if (!w->on_pending) {
		w->on_pending = 1;
		TAILQ_INSERT_TAIL(&w->kube->pending, w, plink);
	}
	return 0;
}

/* Newline-delimited JSON events, each at most KB_KUBE_MAX_EVENT bytes. */
static size_t
stream_feed(struct kb_kube_req *req, const char *p, size_t len)
{
	struct kb_kube_watch *w = req->stream;
	size_t total = len;

	while (len) {
		const char *nl = memchr(p, '\n', len);
		size_t take = nl ? (size_t)(nl - p) : len;

		if (w->line.len + take > KB_KUBE_MAX_EVENT) {
			snprintf(req->err, sizeof(req->err), "watch event larger than %u MiB",
			    KB_KUBE_MAX_EVENT >> 20);
			return 0;
		}
		if (buf_add(&w->line, p, take) < 0) {
			snprintf(req->err, sizeof(req->err), "out of memory");
			return 0;
		}
		if (nl == NULL)
			break;
		if (stream_line(req, w) < 0)
			return 0;
		buf_reset(&w->line);
		p = nl + 1;
		len -= take + 1;
	}
	return total;
}

static void
set_rv(struct kb_kube_watch *w, const cJSON *obj)
{
	const cJSON *rv = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "resourceVersion");

	if (cJSON_IsString(rv) && rv->valuestring[0] && strlen(rv->valuestring) < RV_MAX)
		strcpy(w->rv, rv->valuestring);
}

/* Hand queued events to the caller. 0 if the watch is gone. */
static int
watch_deliver(struct kb_kube_watch *w)
{
	cJSON *ev, *obj, *c, *m;
	int t;

	if (w->on_pending) {
		TAILQ_REMOVE(&w->kube->pending, w, plink);
		w->on_pending = 0;
	}
	while (w->pending && (ev = cJSON_DetachItemFromArray(w->pending, 0)) != NULL) {
		t = event_type(ev);
		obj = cJSON_GetObjectItemCaseSensitive(ev, "object");
		if (w->relist || w->failed) {
			/* The server ends the stream after an ERROR. */
		} else if (t == EV_ERROR) {
			c = cJSON_GetObjectItemCaseSensitive(obj, "code");
			m = cJSON_GetObjectItemCaseSensitive(obj, "message");
			if (cJSON_IsNumber(c) && c->valueint == 410) {
				w->relist = 1;
			} else {
				w->failed = 1;
				w->errcode = cJSON_IsNumber(c) ? c->valueint : 0;
				snprintf(w->errmsg, sizeof(w->errmsg), "watch %s: %s", w->path,
				    cJSON_IsString(m) ? m->valuestring : "ERROR event");
				one_line(w->errmsg);
			}
		} else {
			set_rv(w, obj);
			w->got_event = 1;
			if (t != EV_BOOKMARK && w->cbs.on_event)
				WCALL(w, w->cbs.on_event(w->cbs.arg, (enum kb_kube_event_type)t, obj));
		}
		cJSON_Delete(ev);
		if (!watch_alive(w))
			return 0;
	}
	return 1;
}

static void
deliver_pending(struct kb_kube *k)
{
	struct kb_kube_watch *w;

	while (!k->dying && (w = TAILQ_FIRST(&k->pending)) != NULL)
		watch_deliver(w);
}

static void
after_action(struct kb_kube *k)
{
	CURLMsg *msg;
	CURL *e;
	CURLcode res;
	struct kb_kube_req *req;
	int left;

	deliver_pending(k);
	while (!k->dying && (msg = curl_multi_info_read(k->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		e = msg->easy_handle;
		res = msg->data.result;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&req);
		req_finish(req, res);
	}
}

static void
watch_done(void *arg, int status, cJSON *body, const char *err)
{
	struct kb_kube_watch *w = arg;

	(void)body;
	w->req = NULL;
	buf_reset(&w->line); /* a cut line is no event */
	if (!watch_deliver(w))
		return;
	if (w->got_event || (!err && !w->failed && !w->relist))
		w->backoff_ms = BACKOFF_MIN_MS;
	if (w->relist || status == 410) {
		log_info("kubeapi: watch %s: resourceVersion %s is too old (%s), listing again",
		    w->path, w->rv, w->relist ? "ERROR event 410" : "HTTP 410");
		w->rv[0] = '\0';
	} else if (w->failed) {
		watch_error(w, w->errcode, w->errmsg);
	} else if (err) {
		watch_error(w, status, err);
	}
	if (watch_alive(w))
		watch_retry(w);
}

static void
list_done(void *arg, int status, cJSON *body, const char *err)
{
	struct kb_kube_watch *w = arg;
	cJSON *items = cJSON_GetObjectItemCaseSensitive(body, "items"), *it;
	cJSON *md = cJSON_GetObjectItemCaseSensitive(body, "metadata");
	cJSON *cont = cJSON_GetObjectItemCaseSensitive(md, "continue");
	cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");

	w->req = NULL;
	free(w->cont);
	w->cont = NULL;
	if (!err && !(cJSON_IsArray(items) || cJSON_IsNull(items)))
		err = "a list without items";
	if (!err && !(cJSON_IsString(cont) && cont->valuestring[0]) &&
	    !(cJSON_IsString(rv) && rv->valuestring[0] && strlen(rv->valuestring) < RV_MAX))
		err = "a list without resourceVersion";
	if (err) {
		cJSON_Delete(w->items);
		w->items = NULL;
		/* 410 here is an expired continue token: list from the start. */
		if (status != 410)
			watch_error(w, status, err);
		if (watch_alive(w))
			watch_retry(w);
		return;
	}
	if (w->items == NULL && cJSON_IsArray(items))
		w->items = cJSON_DetachItemViaPointer(body, items);
	else if (w->items == NULL && (w->items = cJSON_CreateArray()) == NULL)
		goto oom;
	else
		while (cJSON_IsArray(items) && (it = cJSON_DetachItemFromArray(items, 0)) != NULL)
			cJSON_AddItemToArray(w->items, it);
	if (cJSON_IsString(cont) && cont->valuestring[0]) {
		if ((w->cont = strdup(cont->valuestring)) == NULL)
			goto oom;
		watch_start(w);
		return;
	}
	strcpy(w->rv, rv->valuestring);
	w->backoff_ms = BACKOFF_MIN_MS;
	items = w->items;
	w->items = NULL;
	if (w->cbs.on_sync)
		WCALL(w, w->cbs.on_sync(w->cbs.arg, items));
	cJSON_Delete(items);
	if (watch_alive(w))
		watch_start(w);
	return;
oom:
	cJSON_Delete(w->items);
	w->items = NULL;
	watch_retry(w);
}

/* List (a page) or watch, as the state says. */
static void
watch_start(struct kb_kube_watch *w)
{
	struct kb_kube *k = w->kube;
	char *path = NULL, *v = NULL;
	const char *q = w->query, *amp = w->query[0] ? "&" : "";
	int list = w->rv[0] == '\0', n = -1;

	w->relist = w->failed = w->got_event = 0;
	buf_reset(&w->line);
	if (list && w->cont)
		v = curl_easy_escape(NULL, w->cont, 0);
	else if (!list)
		v = curl_easy_escape(NULL, w->rv, 0);
	if (list && (v || !w->cont))
		n = asprintf(&path, "%s?%s%slimit=%d%s%s", w->path, q, amp, list_page,
		    v ? "&continue=" : "", v ? v : "");
	else if (v)
		n = asprintf(&path,
		    "%s?%s%swatch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d",
		    w->path, q, amp, v, w->cbs.timeout_sec);
	curl_free(v);
	if (n < 0)
		goto fail;
	w->req = req_new(k, "GET", path, NULL, list ? list_done : watch_done, w);
	free(path);
	if (w->req == NULL)
		goto fail;
	if (list) {
		w->nlists++;
		/* Lists wait their turn with the other plain requests. */
		w->req->state = RQ_QUEUED;
		TAILQ_INSERT_TAIL(&k->queue, w->req, link);
		k->nqueued++;
		event_active(k->kick, EV_TIMEOUT, 0);
		return;
	}
	w->req->stream = w;
	if (req_start(w->req) == 0) {
		w->nwatches++;
		log_debug("kubeapi: watch %s from %s (%u)", w->path, w->rv, w->nwatches);
		return;
	}
	req_stop(w->req);
	req_free(w->req);
	w->req = NULL;
fail:
	log_warnx("kubeapi: watch %s: cannot start, retrying", w->path);
	watch_retry(w);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct kb_kube_watch *w = arg;
	struct kb_kube *k = w->kube;

	(void)fd;
	(void)what;
	kube_enter(k);
	watch_start(w);
	kube_leave(k);
}

struct kb_kube_watch *
kb_kube_watch(struct kb_kube *k, const char *path, const struct kb_kube_watch_cbs *cbs)
{
	struct kb_kube_watch *w;
	struct timeval now = { 0, 0 };
	const char *q;

	if (!path || path[0] != '/' || !plain_text(path, 0) || !cbs || k->dying) {
		log_warnx("kubeapi: refusing to watch %.100s",
		    path && plain_text(path, 0) ? path : "(bad path)");
		return NULL;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->kube = k;
	w->cbs = *cbs;
	if (w->cbs.timeout_sec <= 0)
		w->cbs.timeout_sec = 300 + (int)((kb_now_ms() ^ (uint64_t)getpid()) % 300);
	w->backoff_ms = BACKOFF_MIN_MS;
	q = strchr(path, '?');
	if ((w->path = strndup(path, q ? (size_t)(q - path) : strlen(path))) == NULL ||
	    (w->query = strdup(q ? q + 1 : "")) == NULL ||
	    (w->retry = evtimer_new(k->base, on_retry, w)) == NULL) {
		free(w->path);
		free(w->query);
		free(w);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&k->watches, w, link);
	evtimer_add(w->retry, &now);
	return w;
}

static void
watch_free(struct kb_kube_watch *w)
{
	TAILQ_REMOVE(&w->kube->watches, w, link);
	if (w->on_pending)
		TAILQ_REMOVE(&w->kube->pending, w, plink);
	event_free(w->retry);
	cJSON_Delete(w->pending);
	cJSON_Delete(w->items);
	free(w->line.data);
	free(w->cont);
	free(w->path);
	free(w->query);
	free(w);
}

void
kb_kube_watch_cancel(struct kb_kube_watch *w)
{
	if (w == NULL || w->cancelled)
		return;
	w->cancelled = 1;
	if (w->req) {
		kb_kube_cancel(w->req);
		w->req = NULL;
	}
	evtimer_del(w->retry);
	watch_alive(w);
}

/* ---- the client ---- */

static struct kb_kube *
kube_alloc(struct event_base *base, const char *server, char *err, size_t errlen)
{
	static int curl_ready;
	struct kb_kube *k;
	size_t n;

	if (!server_ok(server, err, errlen))
		return NULL;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(err, errlen, "libcurl: cannot initialize");
			return NULL;
		}
		curl_ready = 1;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL)
		goto oom;
	k->base = base;
	TAILQ_INIT(&k->queue);
	TAILQ_INIT(&k->running);
	TAILQ_INIT(&k->watches);
	TAILQ_INIT(&k->pending);
	LIST_INIT(&k->socks);
	if ((k->server = strdup(server)) == NULL)
		goto oom;
	for (n = strlen(k->server); n > 8 && k->server[n - 1] == '/'; n--)
		k->server[n - 1] = '\0';
	if ((k->multi = curl_multi_init()) == NULL ||
	    (k->timer = evtimer_new(base, on_timer, k)) == NULL ||
	    (k->kick = event_new(base, -1, 0, on_kick, k)) == NULL)
		goto oom;
	curl_multi_setopt(k->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(k->multi, CURLMOPT_SOCKETDATA, k);
	curl_multi_setopt(k->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(k->multi, CURLMOPT_TIMERDATA, k);
	return k;
oom:
	snprintf(err, errlen, "out of memory");
	if (k)
		kube_destroy(k);
	return NULL;
}

struct kb_kube *
kb_kube_new(struct event_base *base, const struct kb_kube_creds *c, char *err, size_t errlen)
{
	struct kb_kube *k;

	if (c->server == NULL) {
		snprintf(err, errlen, "no kubernetes server");
		return NULL;
	}
	if (!c->cert_pem != !c->key_pem) {
		snprintf(err, errlen, "a client certificate needs its key, and a key its certificate");
		return NULL;
	}
	if (c->token && (!c->token[0] || !plain_text(c->token, 0))) {
		snprintf(err, errlen, "the bearer token is empty or not printable ASCII");
		return NULL;
	}
	if ((k = kube_alloc(base, c->server, err, errlen)) == NULL)
		return NULL;
	if ((c->ca_pem && (k->ca_pem = strdup(c->ca_pem)) == NULL) ||
	    (c->cert_pem && (k->cert_pem = strdup(c->cert_pem)) == NULL) ||
	    (c->key_pem && (k->key_pem = strdup(c->key_pem)) == NULL) ||
	    (c->token && (k->token = strdup(c->token)) == NULL)) {
		snprintf(err, errlen, "out of memory");
		kube_destroy(k);
		return NULL;
	}
	return k;
}

struct kb_kube *
kb_kube_new_incluster(struct event_base *base, const struct kb_kube_incluster *ic, char *err,
    size_t errlen)
{
	const char *dir = ic && ic->dir ? ic->dir : SA_DIR;
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char *server = NULL, *ca = NULL, *tok = NULL, *pem;
	struct kb_kube *k = NULL;

	if (ic && ic->server) {
		server = strdup(ic->server);
	} else if (!host || !*host || !port || !*port) {
		snprintf(err, errlen, "not in a cluster: KUBERNETES_SERVICE_HOST and "
				      "KUBERNETES_SERVICE_PORT are not set");
		return NULL;
	} else if (asprintf(&server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		       port) < 0) {
		server = NULL;
	}
	/* A failed asprintf leaves its pointer undefined. */
	if (server != NULL && asprintf(&ca, "%s/ca.crt", dir) < 0)
		ca = NULL;
	if (ca != NULL && asprintf(&tok, "%s/token", dir) < 0)
		tok = NULL;
	if (tok == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	/* The CA must be there now; libcurl reads it again per connection. */
	if ((pem = kb_read_file(ca, 1u << 20, NULL)) == NULL) {
		snprintf(err, errlen, "%s: %s", ca, strerror(errno));
		goto done;
	}
	free(pem);
	if ((k = kube_alloc(base, server, err, errlen)) == NULL)
		goto done;
	k->ca_file = ca;
	k->token_file = tok;
	ca = tok = NULL;
	k->token_refresh_ms = ic && ic->token_refresh_ms > 0 ? ic->token_refresh_ms : TOKEN_REFRESH_MS;
	token_reread(k);
	if (k->token == NULL) {
		snprintf(err, errlen, "%s: no usable token", k->token_file);
		kube_destroy(k);
		k = NULL;
	}
done:
	free(server);
	free(ca);
	free(tok);
	return k;
}

static void
kube_destroy(struct kb_kube *k)
{
	struct kb_kube_req *req;
	struct kb_kube_watch *w;
	struct sockev *se;

	/* Depth 0: no callback runs, nothing is busy. */
	while ((w = TAILQ_FIRST(&k->watches)) != NULL) {
		if (w->req)
			kb_kube_cancel(w->req);
		watch_free(w);
	}
	while ((req = TAILQ_FIRST(&k->queue)) != NULL)
		kb_kube_cancel(req);
	while ((req = TAILQ_FIRST(&k->running)) != NULL)
		kb_kube_cancel(req);
	if (k->multi)
		curl_multi_cleanup(k->multi);
	while ((se = LIST_FIRST(&k->socks)) != NULL) {
		LIST_REMOVE(se, link);
		if (se->ev)
			event_free(se->ev);
		free(se);
	}
	if (k->timer)
		event_free(k->timer);
	if (k->kick)
		event_free(k->kick);
	free(k->server);
	free(k->ca_pem);
	free(k->cert_pem);
	if (k->key_pem)
		explicit_bzero(k->key_pem, strlen(k->key_pem));
	free(k->key_pem);
	if (k->token)
		explicit_bzero(k->token, strlen(k->token));
	free(k->token);
	free(k->ca_file);
	free(k->token_file);
	free(k);
}

void
kb_kube_free(struct kb_kube *k)
{
	struct kb_kube_watch *w;
	struct kb_kube_req *req;

	if (k == NULL || k->dying)
		return;
	if (k->depth == 0) {
		kube_destroy(k);
		return;
	}
	/* Inside a callback: stop everything now, free on the way out. */
	k->dying = 1;
	/* A busy watch stays listed until its callback returns. */
	w = TAILQ_FIRST(&k->watches);
	while (w != NULL) {
		struct kb_kube_watch *next = TAILQ_NEXT(w, link);
		kb_kube_watch_cancel(w);
		w = next;
	}
	while ((req = TAILQ_FIRST(&k->queue)) != NULL)
		kb_kube_cancel(req);
	while ((req = TAILQ_FIRST(&k->running)) != NULL)
		kb_kube_cancel(req);
	evtimer_del(k->timer);
	event_del(k->kick);
}
