/* proto/kubeapi.c against a REAL kube-apiserver (started by
 * tests/unit/kubeapi-cp.sh, which this test execs when KB_KUBE_SERVER is not
 * set): GET /version; create/get/delete a namespace; a watch sees ADDED and
 * DELETED; a watch whose resourceVersion was compacted away gets 410, lists
 * again and loses nothing; a ServiceAccount token without RBAC gets a 403
 * naming the permission; in-cluster credentials re-read a rewritten token
 * file (on 401, and periodically); callers may cancel and free from
 * callbacks; at most KB_KUBE_MAX_INFLIGHT requests at once. Offline: the
 * watch stream parser (split events, bookmarks, ERROR 410, size limit, bad
 * events), the response limit, and refused configurations. */
#include "../../proto/kubeapi.c"

#include <signal.h>
#include <sys/socket.h>

#include "evloop.h"
#include "ok.h"

static char nsname[64], workns[80], errbuf[256];

/* ---- a recording watch ---- */

struct rec {
	int syncs, events, errors, last_status;
	char names[64][64]; /* the state: last sync plus events */
	int n;
	char last_err[512];
	char ev_log[4096];  /* "ADDED:x DELETED:y " */
	int cancel_on_error;
	struct kb_kube_watch *w;
};

static void
rec_del(struct rec *r, const char *name)
{
	for (int i = 0; i < r->n; i++)
		if (strcmp(r->names[i], name) == 0) {
			memmove(r->names[i], r->names[i + 1], (size_t)(r->n - i - 1) * 64);
			r->n--;
			return;
		}
}

static int
rec_has(const struct rec *r, const char *name)
{
	for (int i = 0; i < r->n; i++)
		if (strcmp(r->names[i], name) == 0)
			return 1;
	return 0;
}

static const char *
obj_name(const cJSON *o)
{
	const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metadata"), "name");

	return cJSON_IsString(n) ? n->valuestring : "";
}

static void
rec_sync(void *arg, cJSON *items)
{
	struct rec *r = arg;
	const cJSON *it;

	r->syncs++;
	r->n = 0;
	cJSON_ArrayForEach(it, items)
		if (r->n < 64)
			snprintf(r->names[r->n++], 64, "%s", obj_name(it));
}

static void
rec_event(void *arg, enum kb_kube_event_type t, cJSON *o)
{
	static const char *tn[] = { "ADDED", "MODIFIED", "DELETED" };
	struct rec *r = arg;
	size_t l = strlen(r->ev_log);

	r->events++;
	snprintf(r->ev_log + l, sizeof(r->ev_log) - l, "%s:%s ", tn[t], obj_name(o));
	rec_del(r, obj_name(o));
	if (t != KB_KUBE_DELETED && r->n < 64)
		snprintf(r->names[r->n++], 64, "%s", obj_name(o));
}

static void
rec_error(void *arg, int status, const char *err)
{
	struct rec *r = arg;

	r->errors++;
	r->last_status = status;
	snprintf(r->last_err, sizeof(r->last_err), "%s", err);
	if (r->cancel_on_error) {
		kb_kube_watch_cancel(r->w);
		r->w = NULL;
	}
}

static struct kb_kube_watch *
rec_watch(struct kb_kube *k, const char *path, struct rec *r)
{
	struct kb_kube_watch_cbs cbs = { rec_sync, rec_event, rec_error, r, 0 };

	memset(r, 0, sizeof(*r));
	return r->w = kb_kube_watch(k, path, &cbs);
}

static int
synced(void *arg)
{
	return ((struct rec *)arg)->syncs > 0;
}

static int
errored(void *arg)
{
	return ((struct rec *)arg)->errors > 0;
}

static const char *want_ev;
static int
saw_event(void *arg)
{
	return strstr(((struct rec *)arg)->ev_log, want_ev) != NULL;
}

/* ---- synchronous requests for the test's own steps ---- */

struct res {
	int done, status;
	cJSON *body;
	char err[512];
};

static void
res_cb(void *arg, int status, cJSON *body, const char *err)
{
	struct res *r = arg;

	r->done = 1;
	r->status = status;
	r->body = body ? cJSON_Duplicate(body, 1) : NULL;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

static int
res_done(void *arg)
{
	return ((struct res *)arg)->done;
}

/* Send and wait (20 s at most); r->body is the caller's to free. */
static int
call(struct kb_kube *k, const char *method, const char *path, const char *json, struct res *r)
{
	cJSON *b = json ? cJSON_Parse(json) : NULL;

	memset(r, 0, sizeof(*r));
	if (!kb_kube_request(k, method, path, b, res_cb, r))
		r->done = 1;
	cJSON_Delete(b);
	run_until(res_done, r, 20000);
	return r->status;
}

static int
call_status(struct kb_kube *k, const char *method, const char *path, const char *json)
{
	struct res r;

	call(k, method, path, json, &r);
	if (r.status < 200 || r.status > 299)
		printf("# %s %s: %d %s\n", method, path, r.status, r.err);
	cJSON_Delete(r.body);
	return r.status;
}

/* ---- offline ---- */

static struct rec orec;

static void
test_stream_parser(void)
{
	struct kb_kube_creds c = { .server = "https://127.0.0.1:1" };
	struct kb_kube *k = kb_kube_new(base, &c, errbuf, sizeof(errbuf));
	struct kb_kube_watch *w;
	struct kb_kube_req r = { 0 };
	const char *s = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\","
			"\"resourceVersion\":\"5\"}}}\n\n{\"type\":\"BOOKMARK\",\"object\":"
			"{\"metadata\":{\"resourceVersion\":\"7\"}}}\n{\"type\":\"DELETED\","
			"\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"8\"}}}\n{\"ty";
	char *big;
	size_t i;

	ok(k != NULL);
	w = rec_watch(k, "/api/v1/namespaces?labelSelector=x%3Dy", &orec);
	ok(w != NULL && strcmp(w->path, "/api/v1/namespaces") == 0 &&
	    strcmp(w->query, "labelSelector=x%3Dy") == 0);
	r.kube = k;
	r.stream = w;
	/* One byte at a time: events split anywhere. */
	for (i = 0; s[i]; i++)
		if (stream_feed(&r, s + i, 1) != 1)
			break;
	ok(s[i] == '\0');
	ok(cJSON_GetArraySize(w->pending) == 3 && w->on_pending);
	ok(watch_deliver(w) == 1);
	ok(strcmp(orec.ev_log, "ADDED:a DELETED:a ") == 0);
	ok(strcmp(w->rv, "8") == 0);
	ok(w->line.len == 4); /* the start of the next event waits */
	buf_reset(&w->line);

	/* Any split of a stream gives the same events. */
	{
		const char *st = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\","
				 "\"resourceVersion\":\"11\"}}}\n{\"type\":\"MODIFIED\",\"object\":"
				 "{\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"12\"}}}\n";
		size_t len = strlen(st), same = 0;
		srandom(1);
		for (int round = 0; round < 200; round++) {
			size_t off = 0, cut;
			orec.ev_log[0] = '\0';
			while (off < len) {
				cut = 1 + (size_t)random() % (len - off);
				if (stream_feed(&r, st + off, cut) != cut)
					break;
				off += cut;
			}
			watch_deliver(w);
			same += off == len && strcmp(orec.ev_log, "ADDED:x MODIFIED:x ") == 0 &&
			    strcmp(w->rv, "12") == 0 && w->line.len == 0;
		}
		ok(same == 200);
	}

	/* ERROR 410: list again, and ignore what follows. */
	s = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"message\":"
	    "\"too old resource version: 1 (200)\"}}\n{\"type\":\"ADDED\",\"object\":"
	    "{\"metadata\":{\"name\":\"b\"}}}\n";
	ok(stream_feed(&r, s, strlen(s)) == strlen(s));
	ok(watch_deliver(w) == 1 && w->relist == 1 && strstr(orec.ev_log, ":b") == NULL);
	w->relist = 0;
	/* Another ERROR: reported with its message, from the same version. */
	s = "{\"type\":\"ERROR\",\"object\":{\"code\":500,\"message\":\"etcd down\"}}\n";
	ok(stream_feed(&r, s, strlen(s)) == strlen(s));
	ok(watch_deliver(w) == 1 && w->failed && w->errcode == 500 && strstr(w->errmsg, "etcd down"));
	w->failed = 0;

	/* Not JSON, unknown type, no object: the stream stops. */
	s = "{\"type\":\"ADDED\",\"object\":{\n";
	ok(stream_feed(&r, s, strlen(s)) == 0 && strcmp(r.err, "bad watch event") == 0);
	buf_reset(&w->line);
	s = "{\"type\":\"EXPLODED\",\"object\":{}}\n";
	ok(stream_feed(&r, s, strlen(s)) == 0);
	buf_reset(&w->line);
	s = "{\"type\":\"ADDED\",\"object\":3}\n";
	ok(stream_feed(&r, s, strlen(s)) == 0);
	buf_reset(&w->line);

	/* An event of 4 MiB + 1 without a newline is refused (and not
	 * buffered further); 4 MiB is fine. */
	big = malloc(KB_KUBE_MAX_EVENT + 1);
	memset(big, ' ', KB_KUBE_MAX_EVENT + 1);
	r.err[0] = '\0';
	ok(stream_feed(&r, big, KB_KUBE_MAX_EVENT) == KB_KUBE_MAX_EVENT);
	ok(stream_feed(&r, big, 1) == 0 && strstr(r.err, "larger than 4 MiB"));
	ok(w->line.len <= KB_KUBE_MAX_EVENT);
	buf_reset(&w->line);
	ok(w->line.cap == 0); /* a big buffer is not kept */

	/* A plain response is limited to 16 MiB. */
	{
		struct kb_kube_req p = { .kube = k };
		size_t chunk = 1u << 20, n = 0;
		char *mb = calloc(1, chunk);
		while (n < 17 && on_write(mb, 1, chunk, &p) == chunk)
			n++;
		ok(n == 16 && strstr(p.err, "answer larger than 16 MiB"));
		free(p.resp.data);
		free(mb);
	}
	free(big);
	kb_kube_watch_cancel(w);
	kb_kube_free(k);
}

static void
test_refused(void)
{
	struct kb_kube_creds c = { .server = "http://127.0.0.1:1" };
	struct kb_kube_incluster ic = { .dir = "/nonexistent" };
	struct kb_kube *k;

	ok(kb_kube_new(base, &c, errbuf, sizeof(errbuf)) == NULL && strstr(errbuf, "https://"));
	c.server = "https://127.0.0.1:1";
	c.cert_pem = "x";
	ok(kb_kube_new(base, &c, errbuf, sizeof(errbuf)) == NULL && strstr(errbuf, "key"));
	c.cert_pem = NULL;
	c.token = "abc\r\nX-Evil: 1";
	ok(kb_kube_new(base, &c, errbuf, sizeof(errbuf)) == NULL && strstr(errbuf, "token"));
	c.token = NULL;
	unsetenv("KUBERNETES_SERVICE_HOST");
	ok(kb_kube_new_incluster(base, NULL, errbuf, sizeof(errbuf)) == NULL &&
	    strstr(errbuf, "KUBERNETES_SERVICE_HOST"));
	ic.server = "https://127.0.0.1:1";
	ok(kb_kube_new_incluster(base, &ic, errbuf, sizeof(errbuf)) == NULL &&
	    strstr(errbuf, "/nonexistent/ca.crt"));

	k = kb_kube_new(base, &c, errbuf, sizeof(errbuf));
	ok(k != NULL);
	ok(kb_kube_request(k, "GET", "api/v1", NULL, res_cb, NULL) == NULL);
	ok(kb_kube_request(k, "GET", "/api\r\nX: y", NULL, res_cb, NULL) == NULL);
	ok(kb_kube_request(k, "BREW", "/api", NULL, res_cb, NULL) == NULL);
	ok(kb_kube_watch(k, "/api v1", &(struct kb_kube_watch_cbs){ 0 }) == NULL);
	kb_kube_free(k);
}

/* Nothing listens on port 1: status 0 with a line naming the server; the
 * callback is never called from inside kb_kube_request and may free the
 * client (with a watch and more requests pending). */
static int in_request, cb_inside, cb_calls;
static struct kb_kube *freeme;

static void
free_cb(void *arg, int status, cJSON *body, const char *err)
{
	struct res *r = arg;

	cb_calls++;
	cb_inside |= in_request;
	res_cb(r, status, body, err);
	kb_kube_free(freeme);
}

static void
test_unreachable(void)
{
	struct kb_kube_creds c = { .server = "https://127.0.0.1:1" };
	struct res r1, r2;
	struct rec wr;

	freeme = kb_kube_new(base, &c, errbuf, sizeof(errbuf));
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	rec_watch(freeme, "/api/v1/namespaces", &wr);
	in_request = 1;
	kb_kube_request(freeme, "GET", "/version", NULL, free_cb, &r1);
	kb_kube_request(freeme, "GET", "/version", NULL, free_cb, &r2);
	in_request = 0;
	run_until(res_done, &r1, 20000);
	run_for(300);
	ok(r1.done && r1.status == 0 && strstr(r1.err, "https://127.0.0.1:1/version"));
	ok(cb_calls == 1 && !cb_inside); /* freed: no more callbacks */
	ok(wr.errors <= 1);
	cJSON_Delete(r1.body);
}

/* ---- live ---- */

static char *server, *ca_pem, *cert_pem, *key_pem;

static char *
slurp(const char *env)
{
	const char *p = getenv(env);
	char *s = p ? kb_read_file(p, 1 << 20, NULL) : NULL;

	if (!s)
		fprintf(stderr, "cannot read %s (%s)\n", env, p ? p : "unset");
	return s;
}

static void
test_version_namespace(struct kb_kube *k)
{
	struct res r;
	struct rec wr;
	char path[256], body[512];
	const cJSON *v;

	call(k, "GET", "/version", NULL, &r);
	v = cJSON_GetObjectItem(r.body, "gitVersion");
	ok(r.status == 200 && r.err[0] == '\0' && cJSON_IsString(v) &&
	    strncmp(v->valuestring, "v1.", 3) == 0);
	cJSON_Delete(r.body);

	/* The watch lists first: default is there. */
	rec_watch(k, "/api/v1/namespaces", &wr);
	ok(run_until(synced, &wr, 20000) && rec_has(&wr, "default") && wr.syncs == 1);

	snprintf(body, sizeof(body), "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
				     "\"metadata\":{\"name\":\"%s\"}}", nsname);
	ok(call_status(k, "POST", "/api/v1/namespaces", body) == 201);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s", nsname);
	call(k, "GET", path, NULL, &r);
	v = cJSON_GetObjectItem(cJSON_GetObjectItem(r.body, "status"), "phase");
	ok(r.status == 200 && cJSON_IsString(v) && strcmp(v->valuestring, "Active") == 0);
	cJSON_Delete(r.body);
	snprintf(errbuf, sizeof(errbuf), "ADDED:%s ", nsname);
	want_ev = errbuf;
	ok(run_until(saw_event, &wr, 20000) && rec_has(&wr, nsname));

	/* No namespace controller here: after DELETE, empty the finalizers
	 * as it would. */
	ok(call_status(k, "DELETE", path, NULL) == 200);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/finalize", nsname);
	snprintf(body, sizeof(body), "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
				     "\"metadata\":{\"name\":\"%s\"},\"spec\":{\"finalizers\":[]}}",
	    nsname);
	ok(call_status(k, "PUT", path, body) == 200);
	snprintf(errbuf, sizeof(errbuf), "DELETED:%s ", nsname);
	ok(run_until(saw_event, &wr, 20000) && !rec_has(&wr, nsname));
	printf("# namespace events: %s\n", wr.ev_log);

	/* A 404 says what is missing. */
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s", nsname);
	call(k, "GET", path, NULL, &r);
	snprintf(body, sizeof(body), "namespaces \"%s\" not found", nsname);
	ok(r.status == 404 && strcmp(r.err, body) == 0);
	cJSON_Delete(r.body);
	ok(wr.errors == 0 && wr.syncs == 1);
	kb_kube_watch_cancel(wr.w);
}

/* etcd's JSON gateway: compact everything before the current revision, as
 * the apiserver's compactor does every 5 minutes. */
static size_t
grow(char *p, size_t s, size_t n, void *arg)
{
	return buf_add(arg, p, s * n) == 0 ? s * n : 0;
}

static int
etcd_post(const char *path, const char *json, struct buf *out)
{
	char url[256];
	CURL *e = curl_easy_init();
	CURLcode rc;

	snprintf(url, sizeof(url), "%s%s", getenv("KB_ETCD_URL"), path);
	out->len = 0;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, grow);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 20L);
	rc = curl_easy_perform(e);
	curl_easy_cleanup(e);
	return rc == CURLE_OK && out->len ? 0 : -1;
}

static long
etcd_compact(void)
{
	struct buf b = { 0 };
	cJSON *j = NULL;
	const cJSON *rev;
	char body[128];
	long r = -1;

	if (etcd_post("/v3/kv/range", "{\"key\":\"YQ==\"}", &b) < 0 ||
	    (j = cJSON_Parse(b.data)) == NULL)
		goto done;
	rev = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "header"), "revision");
	if (!cJSON_IsString(rev))
		goto done;
	snprintf(body, sizeof(body), "{\"revision\":\"%s\",\"physical\":true}", rev->valuestring);
	if (etcd_post("/v3/kv/compaction", body, &b) == 0 && strstr(b.data, "header"))
		r = atol(rev->valuestring);
done:
	cJSON_Delete(j);
	free(b.data);
	return r;
}

static int
two_syncs(void *arg)
{
	return ((struct rec *)arg)->syncs >= 2;
}

/* The watch's connection breaks; meanwhile configmaps change and etcd
 * compacts its history. The watch restarts from its old resourceVersion,
 * gets 410, lists again: the new list has every change. */
static void
test_gone(struct kb_kube *k)
{
	struct rec wr;
	struct kb_kube_watch *w;
	char *ns = workns, path[256], body[512], oldrv[RV_MAX];
	const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\"}}";
	long rev;

	snprintf(workns, sizeof(workns), "%s-cm", nsname);
	snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"%s\"}}", ns);
	ok(call_status(k, "POST", "/api/v1/namespaces", body) == 201);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", ns);
	w = rec_watch(k, path, &wr);
	ok(run_until(synced, &wr, 20000) && wr.n == 0);
	snprintf(body, sizeof(body), cm, "before");
	ok(call_status(k, "POST", path, body) == 201);
	want_ev = "ADDED:before ";
	ok(run_until(saw_event, &wr, 20000));

	/* The stream breaks; the restart waits until we say. */
	ok(w->req != NULL && w->req->stream == w);
	req_stop(w->req);
	req_free(w->req);
	w->req = NULL;
	w->backoff_ms = 3600 * 1000;
	watch_retry(w);
	snprintf(oldrv, sizeof(oldrv), "%s", w->rv);
	snprintf(body, sizeof(body), cm, "during1");
	ok(call_status(k, "POST", path, body) == 201);
	snprintf(body, sizeof(body), cm, "during2");
	ok(call_status(k, "POST", path, body) == 201);
	snprintf(body, sizeof(body), "%s/before", path);
	ok(call_status(k, "DELETE", body, NULL) == 200);
	rev = etcd_compact();
	ok(rev > atol(oldrv));
	printf("# watch at resourceVersion %s, etcd compacted at %ld\n", oldrv, rev);

	event_add(w->retry, &(struct timeval){ 0, 0 });
	ok(run_until(two_syncs, &wr, 20000));
	ok(wr.n == 2 && rec_has(&wr, "during1") && rec_has(&wr, "during2") && !rec_has(&wr, "before"));
	ok(wr.errors == 0); /* 410 is routine, not an error */
	ok(atol(w->rv) >= rev);

	/* And it watches again from the new list. */
	snprintf(body, sizeof(body), cm, "after");
	ok(call_status(k, "POST", path, body) == 201);
	want_ev = "ADDED:after ";
	ok(run_until(saw_event, &wr, 20000) && rec_has(&wr, "after") && wr.syncs == 2);
	printf("# configmap events: %s\n", wr.ev_log);
	kb_kube_watch_cancel(w);
}

/* Each watch request ends after timeoutSeconds (1 here); the next one
 * starts from the last resourceVersion, without listing again. The list
 * comes in pages of one object (during1, during2, after). */
static int
three_watches(void *arg)
{
	return ((struct kb_kube_watch *)arg)->nwatches >= 3;
}

static void
test_timeout(struct kb_kube *k)
{
	struct rec wr;
	struct kb_kube_watch_cbs cbs = { rec_sync, rec_event, rec_error, &wr, 1 };
	struct kb_kube_watch *w;
	char path[256], body[256];

	memset(&wr, 0, sizeof(wr));
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", workns);
	list_page = 1;
	w = kb_kube_watch(k, path, &cbs);
	ok(run_until(three_watches, w, 30000) && wr.syncs == 1);
	ok(w->nlists == 3 && wr.n == 3 && rec_has(&wr, "during1") && rec_has(&wr, "during2") &&
	    rec_has(&wr, "after"));
	list_page = LIST_PAGE;
	snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"later\"}}");
	ok(call_status(k, "POST", path, body) == 201);
	want_ev = "ADDED:later ";
	ok(run_until(saw_event, &wr, 20000) && wr.syncs == 1 && wr.errors == 0);

	/* The connection breaks under the watch: an error, then the watch
	 * goes on from where it was (no list). */
	{
		unsigned before = w->nwatches, nsock = 0;
		struct sockev *se;
		/* The client's sockets that libcurl has us watch: the watch's
		 * connection is one (HTTP/2: the only one). */
		LIST_FOREACH(se, &k->socks, link)
			nsock += shutdown(event_get_fd(se->ev), SHUT_RDWR) == 0;
		ok(w->req && nsock >= 1);
		ok(run_until(errored, &wr, 20000) && wr.last_status == 0);
		printf("# broken watch: %s\n", wr.last_err);
		snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"afterdrop\"}}");
		ok(call_status(k, "POST", path, body) == 201);
		want_ev = "ADDED:afterdrop ";
		ok(run_until(saw_event, &wr, 20000) && wr.syncs == 1 && w->nwatches > before);
	}
	kb_kube_watch_cancel(w);
}

/* The client freed from on_sync, with another watch and requests going:
 * nothing is called after that. */
static struct kb_kube *freed_in_sync;
static int freed, late_calls;

static void
free_sync(void *arg, cJSON *items)
{
	(void)arg;
	(void)items;
	late_calls += freed;
	if (!freed)
		kb_kube_free(freed_in_sync);
	freed = 1;
}

static void
late_cb(void *arg, int status, cJSON *body, const char *err)
{
	(void)arg;
	(void)status;
	(void)body;
	(void)err;
	late_calls += freed;
}

static int
freed_set(void *arg)
{
	(void)arg;
	return freed;
}

static void
test_free_in_sync(void)
{
	struct kb_kube_creds c = { server, ca_pem, cert_pem, key_pem, NULL };
	struct kb_kube_watch_cbs cbs = { free_sync, NULL, NULL, NULL, 0 };

	freed_in_sync = kb_kube_new(base, &c, errbuf, sizeof(errbuf));
	ok(freed_in_sync != NULL);
	kb_kube_watch(freed_in_sync, "/api/v1/namespaces", &cbs);
	kb_kube_watch(freed_in_sync, "/api/v1/namespaces", &cbs);
	for (int i = 0; i < 3; i++)
		kb_kube_request(freed_in_sync, "GET", "/api/v1/namespaces", NULL, late_cb, NULL);
	ok(run_until(freed_set, NULL, 20000));
	run_for(500);
	ok(late_calls == 0);
}

/* A token for a new ServiceAccount ns/name (admin's TokenRequest). */
static char *
sa_token(struct kb_kube *k, const char *ns, const char *name)
{
	struct res r;
	char path[256], body[256];
	const cJSON *t;
	char *tok = NULL;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/serviceaccounts", ns);
	snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"%s\"}}", name);
	if (call_status(k, "POST", path, body) != 201)
		return NULL;
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/serviceaccounts/%s/token", ns, name);
	call(k, "POST", path,
	    "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\","
	    "\"spec\":{\"expirationSeconds\":3600}}",
	    &r);
	t = cJSON_GetObjectItem(cJSON_GetObjectItem(r.body, "status"), "token");
	if (r.status == 201 && cJSON_IsString(t))
		tok = strdup(t->valuestring);
	cJSON_Delete(r.body);
	return tok;
}

static void
test_forbidden(struct kb_kube *admin)
{
	struct kb_kube_creds c = { .server = server, .ca_pem = ca_pem };
	struct kb_kube *k;
	struct res r;
	struct rec wr;
	char want[256];

	c.token = sa_token(admin, workns, "nobody");
	ok(c.token != NULL);
	if (!c.token)
		return;
	k = kb_kube_new(base, &c, errbuf, sizeof(errbuf));
	ok(k != NULL);
	call(k, "GET", "/api/v1/namespaces", NULL, &r);
	snprintf(want, sizeof(want),
	    "namespaces is forbidden: User \"system:serviceaccount:%s:nobody\" cannot list "
	    "resource \"namespaces\" in API group \"\" at the cluster scope",
	    workns);
	printf("# 403: %s\n", r.err);
	ok(r.status == 403 && strcmp(r.err, want) == 0);
	cJSON_Delete(r.body);

	/* The watch reports the same line, and may be cancelled right there. */
	rec_watch(k, "/api/v1/namespaces", &wr);
	wr.cancel_on_error = 1;
	ok(run_until(errored, &wr, 20000) && wr.last_status == 403 && strcmp(wr.last_err, want) == 0);
	run_for(300);
	ok(wr.errors == 1 && wr.syncs == 0 && wr.w == NULL);
	kb_kube_free(k);
	free((char *)c.token);
}

static int
write_token(const char *dir, const char *tok)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/token", dir);
	/* The kubelet swaps the file (atomic rename) and adds no newline;
	 * we add one, which must not matter. */
	char *t;
	if (asprintf(&t, "%s\n", tok) < 0)
		return -1;
	int rc = kb_write_file(p, t, strlen(t), 0600);
	free(t);
	return rc;
}

static int
poll_err(struct kb_kube *k, const char *path, int status, const char *needle)
{
	struct res r;

	for (int i = 0; i < 100; i++) {
		call(k, "GET", path, NULL, &r);
		cJSON_Delete(r.body);
		if (r.status == status && (!needle || strstr(r.err, needle)))
			return 1;
		run_for(300);
	}
	printf("# last: %d %s\n", r.status, r.err);
	return 0;
}

static void
test_incluster(struct kb_kube *admin)
{
	char dir[] = "/tmp/kb-kubeapi-sa.XXXXXX", p[512], path[256], body[512], want[128];
	char *ta, *tb, *tc, *port;
	struct kb_kube_incluster ic = { .dir = dir, .token_refresh_ms = 3600 * 1000 };
	struct kb_kube *k;

	ta = sa_token(admin, workns, "a");
	tb = sa_token(admin, workns, "b");
	tc = sa_token(admin, workns, "c");
	ok(ta && tb && tc && mkdtemp(dir));
	/* Not ClusterRole view: without a controller-manager nobody
	 * aggregates its rules. */
	snprintf(path, sizeof(path), "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/roles",
	    workns);
	ok(call_status(admin, "POST", path,
	       "{\"metadata\":{\"name\":\"cm-reader\"},\"rules\":[{\"apiGroups\":[\"\"],"
	       "\"resources\":[\"configmaps\"],\"verbs\":[\"get\",\"list\",\"watch\"]}]}") == 201);
	snprintf(path, sizeof(path), "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/rolebindings",
	    workns);
	snprintf(body, sizeof(body),
	    "{\"metadata\":{\"name\":\"b-reads\"},\"roleRef\":{\"apiGroup\":"
	    "\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":\"cm-reader\"},"
	    "\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"b\",\"namespace\":\"%s\"}]}",
	    workns);
	ok(call_status(admin, "POST", path, body) == 201);
	snprintf(p, sizeof(p), "%s/ca.crt", dir);
	ok(kb_write_file(p, ca_pem, strlen(ca_pem), 0644) == 0);
	ok(write_token(dir, ta) == 0);

	/* The server from KUBERNETES_SERVICE_HOST/PORT. */
	port = strrchr(server, ':') + 1;
	setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", port, 1);
	k = kb_kube_new_incluster(base, &ic, errbuf, sizeof(errbuf));
	ok(k != NULL);
	if (!k)
		goto done;
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", workns);
	snprintf(want, sizeof(want), "system:serviceaccount:%s:a\"", workns);
	ok(poll_err(k, path, 403, want));

	/* The token file now holds b's token and a's token dies with a: the
	 * 401 makes the client read the file again (long before its
	 * hour) and retry. The apiserver may accept a's token for a few
	 * seconds more (its token cache). */
	ok(write_token(dir, tb) == 0);
	snprintf(p, sizeof(p), "/api/v1/namespaces/%s/serviceaccounts/a", workns);
	ok(call_status(admin, "DELETE", p, NULL) == 200);
	ok(poll_err(k, path, 200, NULL));
	ok(strcmp(k->token, tb) == 0);

	/* Periodic re-read: c's token (no RBAC) replaces b's in the file. */
	k->token_refresh_ms = 200;
	ok(write_token(dir, tc) == 0);
	snprintf(want, sizeof(want), "system:serviceaccount:%s:c\"", workns);
	ok(poll_err(k, path, 403, want));

	/* An unreadable file keeps the token we have. */
	snprintf(p, sizeof(p), "%s/token", dir);
	unlink(p);
	ok(poll_err(k, path, 403, want));
	kb_kube_free(k);
done:
	snprintf(p, sizeof(p), "%s/token", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/ca.crt", dir);
	unlink(p);
	rmdir(dir);
	free(ta);
	free(tb);
	free(tc);
}

/* 80 requests at once: answered, never more than 32 on the wire. */
static int max_inflight, answered;
static struct kb_kube *counted;

static void
count_cb(void *arg, int status, cJSON *body, const char *err)
{
	(void)arg;
	(void)body;
	(void)err;
	if (counted->inflight + 1 > max_inflight)
		max_inflight = counted->inflight + 1;
	answered += status == 200;
}

static int
all_answered(void *arg)
{
	(void)arg;
	return answered == 70;
}

/* 10 of them cancelled while they wait: their callbacks never run. */
static void
test_inflight(struct kb_kube *k)
{
	struct kb_kube_req *reqs[80];

	counted = k;
	for (int i = 0; i < 80; i++)
		reqs[i] = kb_kube_request(k, "GET", "/api/v1/namespaces/default", NULL, count_cb, NULL);
	ok(k->nqueued == 80);
	for (int i = 70; i < 80; i++)
		kb_kube_cancel(reqs[i]);
	ok(k->nqueued == 70);
	ok(run_until(all_answered, NULL, 60000));
	run_for(300);
	ok(answered == 70);
	printf("# at most %d requests in flight\n", max_inflight);
	ok(max_inflight > 1 && max_inflight <= KB_KUBE_MAX_INFLIGHT);
}

static void
live(void)
{
	struct kb_kube_creds c;
	struct kb_kube *k;

	server = getenv("KB_KUBE_SERVER");
	ca_pem = slurp("KB_KUBE_CA");
	cert_pem = slurp("KB_KUBE_CERT");
	key_pem = slurp("KB_KUBE_KEY");
	ok(ca_pem && cert_pem && key_pem && getenv("KB_ETCD_URL"));
	if (!ca_pem || !cert_pem || !key_pem)
		return;
	c = (struct kb_kube_creds){ server, ca_pem, cert_pem, key_pem, NULL };
	k = kb_kube_new(base, &c, errbuf, sizeof(errbuf));
	ok(k != NULL);
	if (!k)
		return;
	test_version_namespace(k);
	test_gone(k);
	test_timeout(k);
	test_free_in_sync();
	test_forbidden(k);
	test_incluster(k);
	test_inflight(k);
	kb_kube_free(k);

	/* Wrong CA: verification fails, nothing is sent. */
	{
		struct kb_kube_creds bad = { server, NULL, cert_pem, key_pem, NULL };
		struct res r;
		k = kb_kube_new(base, &bad, errbuf, sizeof(errbuf));
		call(k, "GET", "/version", NULL, &r);
		printf("# system CAs: %s\n", r.err);
		ok(r.status == 0 && r.err[0]);
		kb_kube_free(k);
	}
	free(ca_pem);
	free(cert_pem);
	free(key_pem);
}

int
main(int argc, char **argv)
{
	const char *top = getenv("KB_TOP") ? getenv("KB_TOP") : ".";
	char self[4096], launcher[4096];
	ssize_t n;

	(void)argc;
	/* No server given: run this test again under one. */
	if (!getenv("KB_KUBE_SERVER") && !getenv("KB_KUBE_UNAVAILABLE")) {
		snprintf(launcher, sizeof(launcher), "%s/tests/unit/kubeapi-cp.sh", top);
		if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
			self[n] = '\0';
			execl(launcher, launcher, self, (char *)NULL);
		}
		fprintf(stderr, "%s: %s: %s\n", argv[0], launcher, strerror(errno));
		setenv("KB_KUBE_UNAVAILABLE", "cannot run tests/unit/kubeapi-cp.sh (set KB_TOP)", 1);
	}
	log_init("test_kubeapi", getenv("KB_DEBUG") ? KB_LOG_DEBUG : KB_LOG_INFO);
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	snprintf(nsname, sizeof(nsname), "kbt-%d", (int)getpid());

	test_stream_parser();
	test_refused();
	test_unreachable();
	if (getenv("KB_KUBE_SERVER"))
		live();
	else
		skip_or_fail_tool(getenv("KB_KUBE_UNAVAILABLE"));
	event_base_free(base);
	return ok_done();
}
