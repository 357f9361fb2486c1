/* The preview listener (agent/preview.c) through the real HTTP proxy on
 * loopback: tokens in host names and cookies, the link's redirect and
 * cookie, leaving, 404s that reveal nothing, the not-active page, expiry,
 * removal, and what reaches the service.
 *
 * Test doubles, because the manager's other parts are not here (the
 * end-to-end test tests/e2e/preview.sh runs the real ones): the intercept
 * registry (icpt_owned/icpt_state answer from variables), the cluster DNS
 * (resolver_lookup answers 127.0.0.1, where an evhttp server plays the
 * workload's service and echoes the request head it got) and the session
 * to the daemon (kb_session_send_control keeps the last answer). */
#include "../../agent/applat.c"
#include "../../agent/batch.c"
#include "../../agent/httpproxy.c"
#include "../../agent/h1h2.c"
#include "../../agent/preview.c"

#include <sys/stat.h>

#include <ctype.h>
#include <signal.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "evloop.h"
#include "ok.h"
#include "preview_doubles.h"

/* --- doubles --- */

static char asked[300];

void
resolver_lookup(struct kb_resolver *r, const char *name, int qtype, resolver_cb cb, void *arg)
{
	const char *addrs[] = { "127.0.0.1" };

	(void)r;
	(void)qtype;
	snprintf(asked, sizeof(asked), "%s", name);
	cb(arg, 0, addrs, 1, 5);
}

static cJSON *answer;

int
kb_session_send_control(struct kb_session *s, cJSON *msg)
{
	(void)s;
	cJSON_Delete(answer);
	answer = msg;
	return 0;
}

static int
answer_status(void)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(answer, "status");

	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "ok")))
		return 200;
	return cJSON_IsNumber(st) ? st->valueint : -1;
}

static const char *
answer_error(void)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(answer, "error");

	return cJSON_IsString(e) ? e->valuestring : "";
}

static int
allow_all(void *arg, uint32_t a)
{
	(void)arg;
	return a == INADDR_LOOPBACK;
}

/* --- the service: echoes the request line and headers --- */

static void
service(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyval *h;

	(void)arg;
	evbuffer_add_printf(b, "service: %s\n", evhttp_request_get_uri(req));
	TAILQ_FOREACH(h, evhttp_request_get_input_headers(req), next)
		evbuffer_add_printf(b, "%s: %s\n", h->key, h->value);
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* --- a client: one request, one response --- */

struct resp {
	int fd;
	char buf[16384];
	size_t len;
	int status;
	const char *body;
};

static int
resp_done(void *arg)
{
	struct resp *r = arg;
	const char *end, *cl;
	ssize_t n;

	while (r->len < sizeof(r->buf) - 1 &&
	    (n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len, 0)) > 0)
		r->len += n;
	r->buf[r->len] = '\0';
	if ((end = strstr(r->buf, "\r\n\r\n")) == NULL)
		return 0;
	r->body = end + 4;
	if ((cl = strcasestr(r->buf, "\r\nContent-Length:")) == NULL || cl > end)
		return 0;
	return r->len >= (size_t)(end + 4 - r->buf) + strtoul(cl + 17, NULL, 10);
}

static uint16_t pv_port;

/* Send req (the whole request text); fills r. Returns the status or -1. */
static int
request(struct resp *r, const char *req)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	memset(r, 0, sizeof(*r));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(pv_port);
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(r->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    send(r->fd, req, strlen(req), 0) != (ssize_t)strlen(req)) {
		close(r->fd);
		return -1;
	}
	evutil_make_socket_nonblocking(r->fd);
	run_until(resp_done, r, 5000);
	close(r->fd);
	if (sscanf(r->buf, "HTTP/1.1 %d", &r->status) != 1)
		return -1;
	return r->status;
}

/* A connection that sends nothing (blocking connect: it is accepted
 * later, by the loop). */
static int
connect_to(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	return fd;
}

static int
nconns_is(void *arg)
{
	return pv.nconns == (unsigned)(uintptr_t)arg;
}

static int
get(struct resp *r, const char *host, const char *target, const char *extra)
{
	char req[2048];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n",
	    target, host, extra ? extra : "");
	return request(r, req);
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (; (hay = strcasestr(hay, needle)) != NULL; hay++)
		n++;
	return n;
}

static struct preview *
create(struct client *c, const char *workload, double ttl, uint16_t port)
{
	cJSON *m = cJSON_CreateObject();
	struct preview *last;

	cJSON_AddNumberToObject(m, "id", 1);
	cJSON_AddStringToObject(m, "workload", workload);
	cJSON_AddStringToObject(m, "namespace", "default");
	cJSON_AddNumberToObject(m, "service_port", port);
	if (ttl > 0)
		cJSON_AddNumberToObject(m, "ttl", ttl);
	ok(preview_request(c, KB_MSG_PREVIEW_CREATE, m) == 1);
	cJSON_Delete(m);
	last = TAILQ_LAST(&pv.list, preview_list);
	return last;
}

static int
removed(struct client *c, const char *token)
{
	cJSON *m = cJSON_CreateObject();
	size_t before = pv.count;

	cJSON_AddNumberToObject(m, "id", 2);
	cJSON_AddStringToObject(m, "token", token);
	ok(preview_request(c, KB_MSG_PREVIEW_REMOVE, m) == 1);
	cJSON_Delete(m);
	return pv.count == before - 1;
}

int
main(void)
{
	struct client alice = { .refs = 1 }, bob = { .refs = 1 };
	struct preview_env env = { .domain = "cluster.local", .allowed = allow_all };
	struct evhttp *http;
	struct evhttp_bound_socket *hs;
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	struct preview *p, *q;
	struct resp r;
	char err[300], listen_on[32], host[128], target[128], extra[256], tok[TOKEN_LEN + 1];
	uint16_t svc_port;
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	log_init("test_preview", getenv("KB_DEBUG") ? KB_LOG_DEBUG : KB_LOG_WARN);
	snprintf(alice.name, sizeof(alice.name), "alice");
	snprintf(bob.name, sizeof(bob.name), "bob");
	alice.sess = bob.sess = (struct kb_session *)&alice; /* not used but by the double */
	base = event_base_new();
	http = evhttp_new(base);
	hs = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	ok(hs != NULL);
	evhttp_set_gencb(http, service, NULL);
	getsockname(evhttp_bound_socket_get_fd(hs), (struct sockaddr *)&sin, &sl);
	svc_port = ntohs(sin.sin_port);

	/* A free port for the listener. */
	{
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bind(fd, (struct sockaddr *)&sin, sizeof(sin));
		getsockname(fd, (struct sockaddr *)&sin, &sl);
		pv_port = ntohs(sin.sin_port);
		close(fd);
		snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%u", pv_port);
	}

	/* Options. */
	ok(preview_config("0.0.0.0:8080", NULL, err, sizeof(err)) == -1 && strstr(err, "--preview-url-base"));
	ok(preview_config(listen_on, "ftp://x", err, sizeof(err)) == -1);
	ok(preview_config(listen_on, "http://x.test/sub", err, sizeof(err)) == -1);
	ok(preview_config(listen_on, "http://10.0.0.1:8080", err, sizeof(err)) == 0 && !pv.domain_is_name);
	ok(preview_config(listen_on, "http://Preview.Test:8080/", err, sizeof(err)) == 0);
	ok(pv.domain_is_name && !strcmp(pv.domain, "preview.test") && !strcmp(pv.hostport, "preview.test:8080"));

	env.base = base;
	ok(preview_start(&env, err, sizeof(err)) == 0);

	/* Tokens: 26 of [a-z2-7], all different. */
	for (i = 0; i < 200; i++) {
		char a[TOKEN_LEN + 1], b[TOKEN_LEN + 1];
		if (make_token(a) < 0 || make_token(b) < 0 || !token_ok(a, strlen(a)) ||
		    !strcmp(a, b))
			break;
	}
	ok(i == 200);

	/* Made for the caller's intercept, addressed at the workload's service. */
	owned = 0;
	ok(create(&alice, "web", 0, svc_port) == NULL && pv.count == 0);
	ok(answer_status() == 404 && strstr(answer_error(), "no intercept on web.default"));
	owned = 1;
	p = create(&alice, "web", 0, svc_port);
	ok(p != NULL && pv.count == 1 && !strcmp(p->owner, "alice") && p->expires == 0);
	ok(answer_status() == 200);
	{
		const cJSON *o = cJSON_GetObjectItemCaseSensitive(answer, "preview");
		char want[200];
		snprintf(want, sizeof(want), "http://%s.preview.test:8080/", p->token);
		ok(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "url")), want));
		snprintf(want, sizeof(want), "http://preview.test:8080/.kbridge/preview/%s", p->token);
		ok(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "link")), want));
	}
	ok(!strcmp(asked, "web.default.svc.cluster.local"));
	ok(alice.refs == 1);
	snprintf(tok, sizeof(tok), "%s", p->token);

	/* Host-name form, upper case too; the client's own id header is dropped. */
	snprintf(host, sizeof(host), "%s.preview.test:8080", tok);
	ok(get(&r, host, "/a?b=1", "X-Kbridge-Intercept-Id: bogus\r\n") == 200);
	ok(strstr(r.body, "service: /a?b=1\n") != NULL);
	ok(count(r.body, "x-kbridge-intercept-id: icpt1\n") == 1 && strstr(r.body, "bogus") == NULL);
	ok(strstr(r.body, "\nX-Forwarded-For: 127.0.0.1\n") && strstr(r.body, "\nX-Forwarded-Proto: http\n"));
	snprintf(extra, sizeof(extra), "\nX-Forwarded-Host: %s\n", host);
	ok(strstr(r.body, extra) != NULL);
	ok(get(&r, host, "/", "X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Proto: gopher\r\n") == 200);
	ok(count(r.body, "X-Forwarded-For:") == 1 && strstr(r.body, "\nX-Forwarded-For: 10.1.1.1, 127.0.0.1\n"));
	ok(count(r.body, "X-Forwarded-Proto:") == 1 && strstr(r.body, "gopher") == NULL);
	for (i = 0; i < TOKEN_LEN; i++)
		host[i] = (char)toupper((unsigned char)host[i]);
	ok(get(&r, host, "/", NULL) == 200 && strstr(r.body, "service: /\n"));

	/* The link: a cookie for this host, and back to /. */
	snprintf(target, sizeof(target), "/.kbridge/preview/%s?from=chat", tok);
	ok(get(&r, "preview.test:8080", target, NULL) == 302);
	ok(strstr(r.buf, "\r\nLocation: /\r\n") != NULL);
	snprintf(extra, sizeof(extra), "\r\nSet-Cookie: kbridge-preview=%s; Path=/; HttpOnly; SameSite=Lax\r\n", tok);
	ok(strstr(r.buf, extra) != NULL);

	/* The cookie carries the preview; the service never sees it. */
	snprintf(extra, sizeof(extra), "Cookie: a=1; kbridge-preview=%s; b=2\r\n", tok);
	ok(get(&r, "preview.test:8080", "/api/hello", extra) == 200);
	ok(strstr(r.body, "service: /api/hello\n") && strstr(r.body, "Cookie: a=1; b=2\n"));
	ok(strstr(r.body, tok) == NULL && strstr(r.body, "kbridge-preview") == NULL);
	snprintf(extra, sizeof(extra), "Cookie: kbridge-preview=%s\r\n", tok);
	ok(get(&r, "preview.test:8080", "/", extra) == 200 && count(r.body, "cookie:") == 0);

	/* 404 for no token and unknown tokens, in every form; nothing revealed. */
	ok(get(&r, "preview.test:8080", "/", NULL) == 404);
	ok(strstr(r.body, "web") == NULL && strstr(r.body, "alice") == NULL);
	ok(get(&r, "web.default", "/", NULL) == 404);
	ok(get(&r, "aaaaaaaaaaaaaaaaaaaaaaaaaa.preview.test:8080", "/", NULL) == 404);
	ok(get(&r, "preview.test:8080", "/.kbridge/preview/aaaaaaaaaaaaaaaaaaaaaaaaaa", NULL) == 404);
	ok(strstr(r.buf, "Set-Cookie: kbridge-preview=a") == NULL);
	ok(get(&r, "preview.test:8080", "/", "Cookie: kbridge-preview=aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n") == 404);
	ok(strstr(r.buf, "Max-Age=0") != NULL);
	snprintf(host, sizeof(host), "%s.other.test", tok);
	ok(get(&r, host, "/", NULL) == 404);

	/* Leaving clears the cookie. */
	ok(get(&r, "preview.test:8080", "/.kbridge/leave", NULL) == 200);
	ok(strstr(r.buf, "Set-Cookie: kbridge-preview=; Path=/; Max-Age=0; HttpOnly\r\n") != NULL);

	/* The workstation away: "not active", at once. */
	snprintf(host, sizeof(host), "%s.preview.test:8080", tok);
	state = 0;
	ok(get(&r, host, "/", NULL) == 503 && strstr(r.body, "This preview is not active"));
	state = 1;
	ok(get(&r, host, "/", NULL) == 200);

	/* Released intercept (its workstation did not come back): a preview
	 * never outlives its intercept, so it is gone, not "not active". */
	ok(preview_intercept_ended("icpt1", 1) == 1);
	ok(pv.count == 0 && get(&r, host, "/", NULL) == 404);

	/* A preview may set the Host header the workload gets. */
	{
		cJSON *m = cJSON_CreateObject();
		cJSON_AddNumberToObject(m, "id", 4);
		cJSON_AddStringToObject(m, "workload", "web");
		cJSON_AddStringToObject(m, "namespace", "default");
		cJSON_AddNumberToObject(m, "service_port", svc_port);
		cJSON_AddStringToObject(m, "host", "bad host");
		ok(preview_request(&alice, KB_MSG_PREVIEW_CREATE, m) == 1 && answer_status() == 400);
		cJSON_ReplaceItemInObject(m, "host", cJSON_CreateString("shop.example.test:8443"));
		ok(preview_request(&alice, KB_MSG_PREVIEW_CREATE, m) == 1 && answer_status() == 200);
		cJSON_Delete(m);
		p = TAILQ_LAST(&pv.list, preview_list);
		snprintf(host, sizeof(host), "%s.preview.test:8080", p->token);
		ok(get(&r, host, "/h", NULL) == 200);
		ok(count(r.body, "\nHost: ") == 1 && strstr(r.body, "\nHost: shop.example.test:8443\n"));
		preview_free(p);
	}

	/* Expiry. */
	p = create(&alice, "web", 60, svc_port);
	ok(p != NULL && p->expires >= time(NULL) + 59);
	p->expires = time(NULL) - 1;
	snprintf(host, sizeof(host), "%s.preview.test:8080", p->token);
	ok(get(&r, host, "/", NULL) == 404 && pv.count == 0);

	/* Only the owner removes. */
	p = create(&alice, "web", 0, svc_port);
	q = create(&alice, "web", 0, svc_port);
	ok(p && q && strcmp(p->token, q->token) && pv.count == 2);
	snprintf(tok, sizeof(tok), "%s", p->token);
	/* Others see that a preview exists, not its token or URLs. */
	{
		cJSON *m = cJSON_CreateObject();
		const cJSON *o;
		char *txt;
		cJSON_AddNumberToObject(m, "id", 3);
		ok(preview_request(&bob, KB_MSG_PREVIEW_LIST, m) == 1);
		cJSON_Delete(m);
		o = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(answer, "previews"), 0);
		ok(o && !cJSON_GetObjectItemCaseSensitive(o, "token") &&
		    !cJSON_GetObjectItemCaseSensitive(o, "url") && !cJSON_GetObjectItemCaseSensitive(o, "link"));
		ok(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(answer, "previews")) == 2);
		txt = cJSON_PrintUnformatted(answer);
		ok(txt && strstr(txt, tok) == NULL);
		free(txt);
	}
	ok(!removed(&bob, tok));
	ok(answer_status() == 403 && strstr(answer_error(), "alice"));
	ok(removed(&alice, tok));
	snprintf(host, sizeof(host), "%s.preview.test:8080", tok);
	ok(get(&r, host, "/", NULL) == 404);
	ok(!removed(&alice, tok));

	/* A user's previews are bounded. */
	for (i = 0; i < MAX_PER_OWNER + 2; i++)
		create(&alice, "web", 0, svc_port);
	ok(pv.count == MAX_PER_OWNER && answer_status() == 429);

	/* A workstation gone before the name resolved gets no preview. */
	preview_intercept_ended("icpt1", 0);
	alice.sess = NULL;
	ok(create(&alice, "web", 0, svc_port) == NULL && pv.count == 0);
	ok(alice.refs == 1);
	alice.sess = bob.sess;

	/* Kept across a restart of the manager: not active until the owner's
	 * intercept is made again under its id, then the same URL serves it;
	 * a newer intercept of the same owner and workload does not. */
	{
		char store[] = "/tmp/kbpreviewXXXXXX", *txt;
		struct stat stt;
		int fd = mkstemp(store);

		close(fd);
		unlink(store);
		preview_shutdown();
		env.store = store;
		ok(preview_start(&env, err, sizeof(err)) == 0);
		p = create(&alice, "web", 0, svc_port);
		q = create(&alice, "web", 60, svc_port);
		ok(p && q && pv.count == 2);
		snprintf(tok, sizeof(tok), "%s", p->token);
		ok(stat(store, &stt) == 0 && (stt.st_mode & 0777) == 0600);
		txt = kb_read_file(store, 1 << 20, NULL);
		ok(txt && strstr(txt, tok) && strstr(txt, "\"intercept_id\":\"icpt1\""));
		free(txt);
		preview_shutdown();
		ok(pv.count == 0);
		/* The restarted registry has none of the old intercepts. */
		icpt_id = "none";
		ok(preview_start(&env, err, sizeof(err)) == 0);
		ok(pv.count == 2);
		snprintf(host, sizeof(host), "%s.preview.test:8080", tok);
		ok(get(&r, host, "/", NULL) == 503 && strstr(r.body, "This preview is not active"));
		/* alice quit before the restart and later made a new intercept. */
		icpt_id = "icpt2";
		preview_intercept_made("alice", "web", "default", "icpt2");
		ok(get(&r, host, "/", NULL) == 503 && strstr(r.body, "This preview is not active"));
		icpt_id = "icpt1";
		preview_intercept_made("alice", "web", "default", "icpt1");
		ok(get(&r, host, "/", NULL) == 200 && strstr(r.body, "x-kbridge-intercept-id: icpt1\n"));
		q = TAILQ_LAST(&pv.list, preview_list);
		ok(q->expires >= time(NULL) + 58 && q->expires <= time(NULL) + 60);
		/* A store of before previews named their intercept: whose they
		 * were is unknown, so they end; the same entry with its
		 * intercept's id is kept. */
		{
			const char *fmt = "[{\"token\":\"abcdefghijklmnopqrstuvwxyz\",\"workload\":"
			    "\"web\",\"namespace\":\"default\",\"owner\":\"alice\",\"host\":\"\","
			    "\"address\":\"127.0.0.1\",\"port\":80,\"created\":1,\"expires\":0%s}]";
			char st[512];

			preview_shutdown();
			snprintf(st, sizeof(st), fmt, "");
			kb_write_file(store, st, strlen(st), 0600);
			ok(preview_start(&env, err, sizeof(err)) == 0 && pv.count == 0);
			preview_shutdown();
			snprintf(st, sizeof(st), fmt, ",\"intercept_id\":\"icpt1\"");
			kb_write_file(store, st, strlen(st), 0600);
			ok(preview_start(&env, err, sizeof(err)) == 0 && pv.count == 1);
		}
		/* A store that is not ours to read is ignored, loudly. */
		kb_write_file(store, "{\"not\": \"a list\"}", 18, 0600);
		preview_shutdown();
		ok(preview_start(&env, err, sizeof(err)) == 0 && pv.count == 0);
		unlink(store);
	}

	/* Admission: idle connections from one address hold FRESH_PER_SRC
	 * slots, the newest in; when all slots are taken, the oldest idle one
	 * (between requests) goes; requests are answered throughout. */
	{
		const char *ka = "GET / HTTP/1.1\r\nHost: x.test\r\n\r\n";
		int idle[FRESH_PER_SRC + 8], kept[4], gone = 0;
		char buf[512];
		ssize_t n;

		for (i = 0; i < FRESH_PER_SRC + 8; i++)
			idle[i] = connect_to(pv_port);
		run_until(nconns_is, (void *)(uintptr_t)FRESH_PER_SRC, 2000);
		run_for(50);
		ok(pv.nconns == FRESH_PER_SRC && kb_pool_count(pv.fresh) == FRESH_PER_SRC);
		for (i = 0; i < 8; i++)
			gone += recv(idle[i], buf, sizeof(buf), MSG_DONTWAIT) == 0;
		ok(gone == 8);
		ok(get(&r, "nosuch.test", "/", NULL) == 404);
		for (i = 0; i < FRESH_PER_SRC + 8; i++)
			close(idle[i]);
		ok(run_until(nconns_is, (void *)(uintptr_t)0, 2000));

		pv_max_conns = 4;
		for (i = 0; i < 4; i++) {
			kept[i] = connect_to(pv_port);
			send(kept[i], ka, strlen(ka), 0);
		}
		ok(run_until(nconns_is, (void *)(uintptr_t)4, 2000));
		run_for(100);	/* the 404s go out; the connections stay, idle */
		ok(kb_pool_count(pv.fresh) == 0);
		ok(get(&r, "nosuch.test", "/", NULL) == 404);
		ok(pv.nconns <= 4);
		for (i = 0, gone = 0; i < 4; i++) {
			while ((n = recv(kept[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
				;
			gone += n == 0;
			close(kept[i]);
		}
		ok(gone == 1);	/* the oldest idle one made room */
		pv_max_conns = MAX_CONNS;
		ok(run_until(nconns_is, (void *)(uintptr_t)0, 2000));
	}

	preview_shutdown();
	ok(pv.count == 0);
	cJSON_Delete(answer);
	run_for(10);
	evhttp_free(http);
	hp_fini();
	event_base_free(base);
	return ok_done();
}
