/* Preview URLs. The listener serves each browser connection with the HTTP
 * proxy of agent/httpproxy.c: route() finds the preview named by the
 * request (token in the host name, or the cookie the preview link sets),
 * answers here when there is nothing to forward to (404, "not active", the
 * link's redirect), and otherwise sends the request to the workload's
 * service with the intercept's id header. The service address was resolved
 * when the preview was made; the Host header picks nothing. */
#include "preview.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "client.h"
#include "h1h2.h"
#include "httpproxy.h"
#include "intercepts.h"
#include "listener.h"
#include "htab.h"
#include "log.h"
#include "msg.h"
#include "resolver.h"
#include "session.h"
#include "store.h"
#include "util.h"

#define TOKEN_LEN	26	/* base32 of 16 random bytes: 128 bits */
#define TOKEN_SHOWN	6	/* what logs and other users see of a token */
#define MAX_PREVIEWS	1024
#define MAX_PER_OWNER	32
#define ORPHAN_KEEP	3600	/* after a restart: "not active" until its intercept is back */
#define MAX_CONNS	4096	/* when full, the oldest idle one goes for a new one */
static unsigned pv_max_conns = MAX_CONNS;	/* tests lower it */
/* Until its first request head is in, a connection waits in a pool of its
 * own: idle connections hold at most FRESH_MAX descriptors, for at most
 * FIRST_REQUEST_MS, and the newest gets in at the expense of the oldest. */
#define FRESH_MAX	512
#define FRESH_PER_SRC	32
#define FIRST_REQUEST_MS 10000
#define SWEEP_S		30
#define COOKIE		"kbridge-preview"
#define LINK_PATH	"/.kbridge/preview/"
#define LEAVE_PATH	"/.kbridge/leave"

struct preview {
	TAILQ_ENTRY(preview) entry;
	char token[TOKEN_LEN + 1];
	char workload[64], ns[64], owner[64], icpt[40];
	char host[256];		/* Host header for the workload, or "" (the browser's) */
	uint64_t key;		/* the proxy's upstream key */
	struct sockaddr_in svc;	/* the workload's service */
	time_t created, expires; /* expires 0: with the intercept */
	time_t ttl_expires;	/* what the owner asked for (0: none), kept while orphaned */
	enum h1h2_proto proto;	/* what the owner's app answered last (h1h2.h) */
};

static struct {
	struct preview_env env;
	int configured;
	char listen_on[300];
	char scheme[8];		/* "http" or "https" */
	char hostport[256];	/* of the URL base, as given */
	char domain[256];	/* its host, lower case: host names are TOKEN.domain */
	int domain_is_name;	/* not an IP address: the host-name form works */
	struct kb_listener *listener;
	struct kb_pool *fresh;
	struct event *sweep;
	struct hp_proxy *hp;	/* what the connections share */
	LIST_HEAD(, pvconn) conns;
	unsigned nconns;
	uint64_t next_key;
	size_t count;
	TAILQ_HEAD(preview_list, preview) list;
	/* Each request looks its preview up by token, and its connection by
	 * key, whatever the number of previews. */
	struct kb_htab by_token, by_key;
} pv = { .list = TAILQ_HEAD_INITIALIZER(pv.list) };

/* A browser's connection. */
struct pvconn {
	LIST_ENTRY(pvconn) entry;
	struct hp_conn *hc;
	struct kb_pool_entry fresh; /* until the first request */
	char peer[INET6_ADDRSTRLEN]; /* the browser's address, for X-Forwarded-For */
	uint8_t src[16];	/* ... IPv4 mapped into IPv6: its share of h1h2's bodies */
};

/* A preview asked for while the service name resolves. */
struct pending {
	struct client *c;
	double id;
	char workload[64], ns[64], icpt[40], host[256];
	uint16_t port;
	long ttl;
};

static void
shown(const char *token, char *buf, size_t len)
{
	snprintf(buf, len, "%.*s...", TOKEN_SHOWN, token);
}

static int
token_ok(const char *s, size_t n)
{
	size_t i;

	if (n != TOKEN_LEN)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7')))
			return 0;
	return 1;
}

static int
make_token(char *out)
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	unsigned char r[16];
	unsigned acc = 0, bits = 0;
	size_t i, o = 0;

	if (RAND_bytes(r, sizeof(r)) != 1)
		return -1;
	for (i = 0; i < sizeof(r); i++) {
		acc = (acc << 8) | r[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = b32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	out[o++] = b32[(acc << (5 - bits)) & 31];
	out[o] = '\0';
	OPENSSL_cleanse(r, sizeof(r));
	return o == TOKEN_LEN ? 0 : -1;
}

/* --- kept across restarts of the manager --- */

/* The previews as kept across restarts, each with the id of its
 * intercept: a restarted manager serves them only once that intercept is
 * back (the owner's daemon makes it again, or returns to the one the
 * in-cluster store kept). NULL when out of memory. */
cJSON *
preview_dump(void)
{
	struct preview *p;
	cJSON *a = cJSON_CreateArray(), *o;
	char addr[INET_ADDRSTRLEN];

	if (!a)
		return NULL;
	TAILQ_FOREACH(p, &pv.list, entry) {
		if ((o = cJSON_CreateObject()) == NULL) {
			cJSON_Delete(a);
			return NULL;
		}
		inet_ntop(AF_INET, &p->svc.sin_addr, addr, sizeof(addr));
		cJSON_AddStringToObject(o, "token", p->token);
		cJSON_AddStringToObject(o, "workload", p->workload);
		cJSON_AddStringToObject(o, "namespace", p->ns);
		cJSON_AddStringToObject(o, "owner", p->owner);
		cJSON_AddStringToObject(o, "intercept_id", p->icpt);
		cJSON_AddStringToObject(o, "host", p->host);
		cJSON_AddStringToObject(o, "address", addr);
		cJSON_AddNumberToObject(o, "port", ntohs(p->svc.sin_port));
		cJSON_AddNumberToObject(o, "created", (double)p->created);
		cJSON_AddNumberToObject(o, "expires", (double)p->ttl_expires);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

/* Keep the previews: in the state directory's file (atomically, mode
 * 0600), and in the in-cluster store. -1 with err when the store's Secret
 * could not hold them (the caller undoes its change), else 0. */
static int
save_err(char *err, size_t errlen)
{
	cJSON *a;
	char *txt;

	if (pv.env.store && (a = preview_dump()) != NULL) {
		if ((txt = cJSON_PrintUnformatted(a)) != NULL) {
			if (kb_write_file(pv.env.store, txt, strlen(txt), 0600) < 0)
				log_warn("cannot keep the previews in %s", pv.env.store);
			OPENSSL_cleanse(txt, strlen(txt));
			free(txt);
		}
		cJSON_Delete(a);
	}
	return store_changed(err, errlen);
}

/* After a change that can only shrink them. */
static void
save(void)
{
	char err[300];

	if (save_err(err, sizeof(err)) < 0)
		log_warnx("previews: %s", err);
}

static const char *
jstring(const cJSON *o, const char *key, size_t max)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return s && strlen(s) < max ? s : NULL;
}

static struct preview *find_token(const char *token, size_t n);
static int preview_link(struct preview *p);

/* Previews from before a restart: not active until their owner's daemon
 * makes their intercept again (the same id), gone if that takes over
 * ORPHAN_KEEP. One without an intercept id belongs to no intercept: gone. */
size_t
preview_restore(const cJSON *a)
{
	const char *tok, *wl, *ns, *owner, *host, *addr, *icpt;
	time_t now = time(NULL), orphan = now + ORPHAN_KEEP;
	double port, created, expires;
	struct preview *p;
	const cJSON *o;
	size_t n = 0, dropped = 0;

	cJSON_ArrayForEach(o, a) {
		tok = jstring(o, "token", TOKEN_LEN + 1);
		wl = jstring(o, "workload", 64);
		ns = jstring(o, "namespace", 64);
		owner = jstring(o, "owner", 64);
		host = jstring(o, "host", 256);
		icpt = jstring(o, "intercept_id", sizeof(p->icpt));
		addr = jstring(o, "address", INET_ADDRSTRLEN);
		port = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "port"));
		created = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "created"));
		expires = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "expires"));
		if (tok && !icpt) {
			/* Kept by a manager before previews were bound to their
			 * intercept: whose it was is unknown, so it ends. */
			dropped++;
			continue;
		}
		if (!tok || !token_ok(tok, strlen(tok)) || !wl || !kb_dns_label(wl) || !ns ||
		    !kb_dns_label(ns) || !owner || !owner[0] || !host || !addr || !icpt ||
		    !icpt[0] || find_token(tok, TOKEN_LEN) ||
		    !(port >= 1 && port <= 65535) ||
		    !(expires >= 0) || (expires > 0 && expires <= now) || pv.count >= MAX_PREVIEWS ||
		    (p = calloc(1, sizeof(*p))) == NULL)
			continue;
		if (inet_pton(AF_INET, addr, &p->svc.sin_addr) != 1) {
			free(p);
			continue;
		}
		p->svc.sin_family = AF_INET;
		p->svc.sin_port = htons((uint16_t)port);
		memcpy(p->token, tok, TOKEN_LEN + 1);
		memcpy(p->workload, wl, strlen(wl) + 1);
		memcpy(p->ns, ns, strlen(ns) + 1);
		memcpy(p->owner, owner, strlen(owner) + 1);
		memcpy(p->host, host, strlen(host) + 1);
		memcpy(p->icpt, icpt, strlen(icpt) + 1);
		p->created = created > 0 ? (time_t)created : now;
		p->ttl_expires = (time_t)expires;
		p->expires = p->ttl_expires && p->ttl_expires < orphan ? p->ttl_expires : orphan;
		p->key = ++pv.next_key;
		if (preview_link(p) < 0) {
			free(p);
			continue;
		}
		n++;
	}
	if (n)
		log_info("previews: %zu kept from before the restart, waiting for their intercepts", n);
	if (dropped)
		log_warnx("previews: %zu from before the restart name no intercept: ended", dropped);
	return n;
}

/* The state directory's previews.json (without --in-cluster). */
static void
load(void)
{
	cJSON *a;
	char *txt;

	if (!pv.env.store || (txt = kb_read_file(pv.env.store, 4 << 20, NULL)) == NULL)
		return;
	a = cJSON_Parse(txt);
	OPENSSL_cleanse(txt, strlen(txt));
	free(txt);
	if (!cJSON_IsArray(a))
		log_warnx("%s is not a list of previews: ignored", pv.env.store);
	else
		preview_restore(a);
	cJSON_Delete(a);
}

const char *
preview_icpt_owner(const char *id)
{
	struct preview *p;

	TAILQ_FOREACH(p, &pv.list, entry)
		if (!strcmp(p->icpt, id))
			return p->owner;
	return NULL;
}

void
preview_intercept_made(const char *owner, const char *wl, const char *ns, const char *id)
{
	struct preview *p;
	char t[16];
	int n = 0;

	/* Only the intercept a preview was made for: a newer one of the same
	 * owner and workload must not bring back a link believed dead. */
	TAILQ_FOREACH(p, &pv.list, entry) {
		if (strcmp(p->icpt, id) || strcmp(p->owner, owner) || strcmp(p->workload, wl) ||
		    strcmp(p->ns, ns))
			continue;
		p->expires = p->ttl_expires;
		shown(p->token, t, sizeof(t));
		log_info_for(owner, "preview %s of %s on %s.%s serves intercept %s again", t, owner, wl, ns, id);
		n++;
	}
	if (n)
		save();
}

/* Put p (new) on the list and in the indexes: 0, or -1 (out of memory;
 * then it is in none of them). */
static int
preview_link(struct preview *p)
{
	if (kb_htab_put(&pv.by_token, p->token, TOKEN_LEN, p) < 0)
		return -1;
	if (kb_htab_put(&pv.by_key, &p->key, sizeof(p->key), p) < 0) {
		kb_htab_del(&pv.by_token, p->token, TOKEN_LEN);
		return -1;
	}
	TAILQ_INSERT_TAIL(&pv.list, p, entry);
	pv.count++;
	return 0;
}

static void
preview_free(struct preview *p)
{
	kb_htab_del(&pv.by_token, p->token, TOKEN_LEN);
	kb_htab_del(&pv.by_key, &p->key, sizeof(p->key));
	TAILQ_REMOVE(&pv.list, p, entry);
	pv.count--;
	OPENSSL_cleanse(p->token, sizeof(p->token));
	free(p);
}

static int
expired(const struct preview *p, time_t now)
{
	return p->expires != 0 && now >= p->expires;
}

/* The live preview with this token, or NULL; expired ones go here. */
static struct preview *
find_token(const char *token, size_t n)
{
	struct preview *p;
	time_t now = time(NULL);

	if (!token_ok(token, n))
		return NULL;
	/* The index's hash is seeded per process: its timing tells a
	 * guesser nothing of the tokens. */
	if ((p = kb_htab_get(&pv.by_token, token, TOKEN_LEN)) == NULL ||
	    CRYPTO_memcmp(p->token, token, TOKEN_LEN) != 0)
		return NULL;
	if (expired(p, now)) {
		preview_free(p);
		save();
		return NULL;
	}
	return p;
}

static void
sweep(evutil_socket_t fd, short what, void *arg)
{
	struct preview *p, *next;
	time_t now = time(NULL);
	int n = 0;

	(void)fd;
	(void)what;
	(void)arg;
	for (p = TAILQ_FIRST(&pv.list); p; p = next) {
		next = TAILQ_NEXT(p, entry);
		if (expired(p, now)) {
			char t[16];
			shown(p->token, t, sizeof(t));
			log_info_for(p->owner, "preview %s of %s on %s.%s expired", t, p->owner, p->workload, p->ns);
			preview_free(p);
			n++;
		}
	}
	if (n)
		save();
}

int
preview_intercept_ended(const char *id, int released)
{
	struct preview *p, *next;
	char t[16];
	int n = 0;

	/* A preview never outlives its intercept, however that ended. */
	for (p = TAILQ_FIRST(&pv.list); p; p = next) {
		next = TAILQ_NEXT(p, entry);
		if (strcmp(p->icpt, id) != 0)
			continue;
		shown(p->token, t, sizeof(t));
		n++;
		log_info_for(p->owner, "preview %s of %s on %s.%s ended with its intercept%s", t, p->owner,
		    p->workload, p->ns, released ? " (released)" : "");
		preview_free(p);
	}
	if (n)
		save();
	return n;
}

/* --- URLs --- */

static void
url_host(const struct preview *p, char *buf, size_t len)
{
	snprintf(buf, len, "%s://%s.%s/", pv.scheme, p->token, pv.hostport);
}

static void
url_link(const struct preview *p, char *buf, size_t len)
{
	snprintf(buf, len, "%s://%s%s%s", pv.scheme, pv.hostport, LINK_PATH, p->token);
}

int
preview_config(const char *listen_on, const char *url_base, char *err, size_t errlen)
{
	char host[256], base[600], *hp, *slash, *colon;
	uint16_t port;
	struct in_addr a4;
	struct in6_addr a6;
	size_t i;

	if (kb_hostport_parse(listen_on, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "invalid --preview-listen '%.200s' (expected HOST:PORT)",
		    listen_on);
		return -1;
	}
	if (url_base == NULL) {
		if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !*host) {
			snprintf(err, errlen, "--preview-listen %.200s listens on every address: "
			    "give the address teammates use with --preview-url-base URL", listen_on);
			return -1;
		}
		snprintf(base, sizeof(base), "http://%s", listen_on);
	} else {
		snprintf(base, sizeof(base), "%s", url_base);
	}
	if (!strncmp(base, "http://", 7)) {
		snprintf(pv.scheme, sizeof(pv.scheme), "http");
		hp = base + 7;
	} else if (!strncmp(base, "https://", 8)) {
		snprintf(pv.scheme, sizeof(pv.scheme), "https");
		hp = base + 8;
	} else {
		snprintf(err, errlen, "invalid --preview-url-base '%.200s' (expected http://HOST[:PORT] "
		    "or https://HOST[:PORT])", base);
		return -1;
	}
	if ((slash = strchr(hp, '/')) != NULL) {
		if (strcmp(slash, "/") != 0) {
			snprintf(err, errlen, "--preview-url-base '%.200s' must not have a path: "
			    "previews are served at the root of their host", base);
			return -1;
		}
		*slash = '\0';
	}
	for (i = 0; hp[i]; i++)
		hp[i] = (char)(hp[i] >= 'A' && hp[i] <= 'Z' ? hp[i] + 32 : hp[i]);
	if (!*hp || strpbrk(hp, "@?#%\\ \t\r\n") || strlen(hp) >= sizeof(pv.hostport)) {
		snprintf(err, errlen, "invalid host in --preview-url-base '%.200s'", base);
		return -1;
	}
	memcpy(pv.hostport, hp, strlen(hp) + 1);
	memcpy(pv.domain, hp, strlen(hp) + 1);
	if (pv.domain[0] == '[') {
		pv.domain_is_name = 0;
	} else {
		if ((colon = strrchr(pv.domain, ':')) != NULL)
			*colon = '\0';
		pv.domain_is_name = inet_pton(AF_INET, pv.domain, &a4) != 1 &&
		    inet_pton(AF_INET6, pv.domain, &a6) != 1;
	}
	snprintf(pv.listen_on, sizeof(pv.listen_on), "%s", listen_on);
	pv.configured = 1;
	return 0;
}

/* --- serving previews --- */

static const char page_404[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n"
    "<body><h1>404 Not Found</h1></body></html>\n";

static const char page_left[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Preview left</title></head>\n"
    "<body><h1>You left the preview</h1><p>This browser no longer carries a kbridge "
    "preview.</p></body></html>\n";

#define NO_STORE "Cache-Control: no-store\r\n"
#define CLEAR_COOKIE "Set-Cookie: " COOKIE "=; Path=/; Max-Age=0; HttpOnly\r\n"

/* The token (lower case, into buf) of a Host TOKEN.domain[:port], or NULL. */
static const char *
host_token(const char *host, char *buf)
{
	size_t i, n, dl = strlen(pv.domain);
	const char *end;

	if (!host || !pv.domain_is_name)
		return NULL;
	if ((end = strchr(host, ':')) == NULL)
		end = host + strlen(host);
	n = (size_t)(end - host);
	if (n != TOKEN_LEN + 1 + dl || host[TOKEN_LEN] != '.' ||
	    strncasecmp(host + TOKEN_LEN + 1, pv.domain, dl) != 0)
		return NULL;
	for (i = 0; i < TOKEN_LEN; i++)
		buf[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] + 32 : host[i]);
	buf[TOKEN_LEN] = '\0';
	return buf;
}

/* The value of our cookie among the Cookie headers, with its length. */
static const char *
cookie_token(const struct hp_request *req, size_t *len)
{
	const char *v, *p;
	size_t i, cl = strlen(COOKIE);

	for (i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, "cookie") != 0)
			continue;
		for (v = req->headers[i].value; *v; v = p) {
			v += strspn(v, " \t;");
			p = v + strcspn(v, ";");
			if ((size_t)(p - v) > cl && !strncmp(v, COOKIE "=", cl + 1)) {
				*len = (size_t)(p - v) - cl - 1;
				while (*len > 0 && (v[cl + 1 + *len - 1] == ' ' ||
				    v[cl + 1 + *len - 1] == '\t'))
					(*len)--;
				return v + cl + 1;
			}
		}
	}
	return NULL;
}

/* Send the Cookie headers on without ours. */
static int
strip_cookie(const struct hp_request *req, struct hp_route *r)
{
	char buf[8192];
	const char *v, *p;
	size_t i, o, n, cl = strlen(COOKIE);

	if (hp_route_drop(r, "cookie") < 0)
		return -1;
	for (i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, "cookie") != 0)
			continue;
		o = 0;
		for (v = req->headers[i].value; *v; v = p) {
			v += strspn(v, " \t;");
			p = v + strcspn(v, ";");
			n = (size_t)(p - v);
			if (n == 0 || (n > cl && !strncmp(v, COOKIE "=", cl + 1)))
				continue;
			if (o + n + 2 >= sizeof(buf))
				return -1;
			if (o > 0) {
				buf[o++] = ';';
				buf[o++] = ' ';
			}
			memcpy(buf + o, v, n);
			o += n;
		}
		buf[o] = '\0';
		if (o > 0 && hp_route_add(r, "Cookie", buf) < 0)
			return -1;
	}
	return 0;
}

static void
not_active(struct hp_route *r, const struct preview *p)
{
	char body[1024];

	snprintf(body, sizeof(body),
	    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Preview not active</title>"
	    "</head>\n<body><h1>This preview is not active</h1>\n<p>The workstation serving this "
	    "kbridge preview of %s.%s is not connected right now%s</p></body></html>\n",
	    p->workload, p->ns,
	    ". It comes back when the developer reconnects; try again in a moment.");
	hp_route_reply(r, 503, "Service Unavailable", NO_STORE "Retry-After: 5\r\n",
	    "text/html; charset=utf-8", body);
}

/* What the workload learns of the browser, as proxies tell it: its address
 * appended to X-Forwarded-For, and the scheme and host it asked for. */
static int
forwarded(const struct pvconn *pc, const struct hp_request *req, struct hp_route *r)
{
	const char *xff = hp_header(req, "x-forwarded-for"), *host = hp_header(req, "host");
	char buf[1024];

	if (!pc->peer[0])
		return 0;
	if (xff && strlen(xff) + strlen(pc->peer) + 3 > sizeof(buf))
		xff = NULL; /* an overlong chain is not passed on */
	snprintf(buf, sizeof(buf), "%s%s%s", xff ? xff : "", xff ? ", " : "", pc->peer);
	if (hp_route_drop(r, "x-forwarded-for") < 0 || hp_route_add(r, "X-Forwarded-For", buf) < 0 ||
	    hp_route_drop(r, "x-forwarded-proto") < 0 ||
	    hp_route_add(r, "X-Forwarded-Proto", pv.scheme) < 0 ||
	    hp_route_drop(r, "x-forwarded-host") < 0 ||
	    (host && hp_route_add(r, "X-Forwarded-Host", host) < 0))
		return -1;
	return 0;
}

static uint64_t
pv_route(void *arg, const struct hp_request *req, struct hp_route *r)
{
	const char *host = hp_header(req, "host"), *tok;
	const char *target = req->target;
	struct preview *p = NULL;
	char hdrs[256], t[16], hbuf[TOKEN_LEN + 1];
	size_t n = 0, ll = strlen(LINK_PATH);
	int from_cookie = 0;

	kb_pool_remove(&((struct pvconn *)arg)->fresh);
	if ((tok = host_token(host, hbuf)) != NULL) {
		p = find_token(tok, TOKEN_LEN);
	} else if (!strncmp(target, LINK_PATH, ll)) {
		/* The link: remember the preview in this browser, then show it. */
		n = strcspn(target + ll, "?#/");
		if ((p = find_token(target + ll, n)) == NULL) {
			hp_route_reply(r, 404, "Not Found", NO_STORE, "text/html; charset=utf-8", page_404);
			return 0;
		}
		snprintf(hdrs, sizeof(hdrs), "Location: /\r\n" NO_STORE "Referrer-Policy: no-referrer\r\n"
		    "Set-Cookie: " COOKIE "=%s; Path=/; HttpOnly; SameSite=Lax%s\r\n", p->token,
		    !strcmp(pv.scheme, "https") ? "; Secure" : "");
		hp_route_reply(r, 302, "Found", hdrs, "text/plain", "kbridge: to the preview\n");
		shown(p->token, t, sizeof(t));
		log_debug("preview %s: link opened", t);
		return 0;
	} else if (!strcmp(target, LEAVE_PATH) || !strncmp(target, LEAVE_PATH "?", strlen(LEAVE_PATH) + 1)) {
		hp_route_reply(r, 200, "OK", NO_STORE CLEAR_COOKIE, "text/html; charset=utf-8", page_left);
		return 0;
	} else if ((tok = cookie_token(req, &n)) != NULL) {
		from_cookie = 1;
		p = find_token(tok, n);
	}
	if (p == NULL) {
		hp_route_reply(r, 404, "Not Found", from_cookie ? NO_STORE CLEAR_COOKIE : NO_STORE,
		    "text/html; charset=utf-8", page_404);
		return 0;
	}
	if (icpt_state(pv.env.icpts, p->icpt, p->owner) != 1) {
		not_active(r, p);
		return 0;
	}
	if (hp_route_drop(r, KB_INTERCEPT_HEADER) < 0 ||
	    hp_route_add(r, KB_INTERCEPT_HEADER, p->icpt) < 0 ||
	    (p->host[0] && (hp_route_drop(r, "host") < 0 || hp_route_add(r, "Host", p->host) < 0)) ||
	    forwarded(arg, req, r) < 0 || (from_cookie && strip_cookie(req, r) < 0)) {
		hp_route_reply(r, 431, "Request Header Fields Too Large", NO_STORE, "text/plain",
		    "kbridge: the request's cookies are too large\n");
		return 0;
	}
	return p->key;
}

/* A socket to p's service, connect() in progress: -1 with reason, or fd. */
static int
svc_connect(void *arg, uint64_t key, char *reason, size_t len)
{
	struct preview *p;
	int fd;

	(void)arg;
	if ((p = kb_htab_get(&pv.by_key, &key, sizeof(key))) == NULL) {
		snprintf(reason, len, "kbridge: the preview ended");
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || (connect(fd, (struct sockaddr *)&p->svc, sizeof(p->svc)) < 0 &&
	    errno != EINPROGRESS)) {
		snprintf(reason, len, "kbridge: cannot reach %s.%s: %s", p->workload, p->ns,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static enum h1h2_proto
svc_proto(void *arg, uint64_t key)
{
	struct preview *p = kb_htab_get(&pv.by_key, &key, sizeof(key));

	(void)arg;
	return p ? p->proto : H1H2_UNKNOWN;
}

static void
svc_learnt(void *arg, uint64_t key, enum h1h2_proto proto)
{
	struct preview *p = kb_htab_get(&pv.by_key, &key, sizeof(key));
	char t[16];

	(void)arg;
	if (p == NULL || p->proto == proto)
		return;
	if (proto == H1H2_H2C || p->proto == H1H2_H2C) {
		shown(p->token, t, sizeof(t));
		log_info("preview %s: the owner's app speaks %s: browsers' HTTP/1.1 goes to it "
		    "as %s", t, proto == H1H2_H2C ? "h2c only" : "HTTP/1.1",
		    proto == H1H2_H2C ? "HTTP/2" : "it came");
	}
	p->proto = proto;
}

static const struct h1h2_ops svc_ops = { svc_connect, svc_proto, svc_learnt, NULL };

/* The proxy's upstream for a preview: one end of a socket pair, the other
 * one served by a translator (h1h2.h) that sends the requests to the
 * service as HTTP/1.1 or, for an owner's app that speaks only h2c, HTTP/2. */
static int
pv_open(void *arg, uint64_t key, char *reason, size_t len)
{
	struct pvconn *pc = arg;
	int sv[2];

	if (kb_htab_get(&pv.by_key, &key, sizeof(key)) == NULL) {
		snprintf(reason, len, "kbridge: the preview ended");
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(reason, len, "kbridge: %s", strerror(errno));
		return -1;
	}
	if (h1h2_new(pv.env.base, sv[1], key, pc->src, &svc_ops) < 0) {
		close(sv[0]);
		close(sv[1]);
		snprintf(reason, len, "kbridge: out of memory");
		return -1;
	}
	return sv[0];
}

static void
pv_done(void *arg, struct hp_conn *c)
{
	struct pvconn *pc = arg;

	(void)c;
	kb_pool_remove(&pc->fresh);
	LIST_REMOVE(pc, entry);
	free(pc);
	pv.nconns--;
}

/* Idle since it was accepted: too long, or room for a newer one. */
static void
pv_expel(struct kb_pool_entry *e, enum kb_pool_why why)
{
	struct pvconn *pc = e->owner;

	log_debug("%s: %s: %s", __func__, pc->peer, why == KB_POOL_DEADLINE ?
	    "no request in time" : "room for a newer connection");
	LIST_REMOVE(pc, entry);
	hp_conn_free(pc->hc);
	free(pc);
	pv.nconns--;
}

/* Full: make room by closing the oldest connection that is idle, so that
 * kept-alive connections cannot lock out browsers that send requests. 0,
 * or -1 if none is idle. */
static int
drop_idle(void)
{
	struct pvconn *pc, *last = NULL;

	LIST_FOREACH(pc, &pv.conns, entry)	/* newest first */
		if (hp_conn_idle(pc->hc))
			last = pc;
	if (!last)
		return -1;
	kb_listener_refused(pv.listener, "too many connections: closed an idle one for a new one");
	kb_pool_remove(&last->fresh);
	LIST_REMOVE(last, entry);
	hp_conn_free(last->hc);
	free(last);
	pv.nconns--;
	return 0;
}

static void
pv_accept(int fd, struct sockaddr *sa, int salen, void *arg)
{
	struct hp_upstreams up = { .route = pv_route, .open = pv_open, .done = pv_done };
	struct pvconn *pc;

	(void)salen;
	(void)arg;
	if (pv.nconns >= pv_max_conns && drop_idle() < 0) {
		kb_listener_refused(pv.listener, "too many connections, none of them idle");
		evutil_closesocket(fd);
		return;
	}
	if ((pc = calloc(1, sizeof(*pc))) == NULL) {
		kb_listener_refused(pv.listener, "out of memory");
		evutil_closesocket(fd);
		return;
	}
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, pc->peer, sizeof(pc->peer));
		pc->src[10] = pc->src[11] = 0xff;
		memcpy(pc->src + 12, &((struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, pc->peer,
		    sizeof(pc->peer));
		memcpy(pc->src, &((struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
	evutil_make_socket_nonblocking(fd);
	up.arg = pc;
	if ((pc->hc = hp_conn_new(pv.hp, fd, &up)) == NULL) {
		free(pc);
		evutil_closesocket(fd);
		return;
	}
	LIST_INSERT_HEAD(&pv.conns, pc, entry);
	pv.nconns++;
	kb_pool_add(pv.fresh, &pc->fresh, sa, pc);
}

int
preview_start(const struct preview_env *env, char *err, size_t errlen)
{
	struct evutil_addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	struct timeval tv = { SWEEP_S, 0 };
	char host[256], portstr[8];
	uint16_t port;

	pv.env = *env;
	if (!pv.configured)
		return 0;
	load();
	if (kb_hostport_parse(pv.listen_on, host, sizeof(host), &port) < 0)
		return -1;
	snprintf(portstr, sizeof(portstr), "%u", port);
	if (evutil_getaddrinfo(host, portstr, &hints, &ai) != 0 || !ai) {
		snprintf(err, errlen, "cannot resolve preview listen address %s", host);
		return -1;
	}
	if ((pv.hp = hp_proxy_new(env->base)) == NULL) {
		snprintf(err, errlen, "out of memory");
		evutil_freeaddrinfo(ai);
		return -1;
	}
	if ((pv.fresh = kb_pool_new(env->base, "previews: connections without a request",
	    FRESH_MAX, FRESH_PER_SRC, FIRST_REQUEST_MS, pv_expel, NULL, err, errlen)) == NULL) {
		evutil_freeaddrinfo(ai);
		return -1;
	}
	pv.listener = kb_listener_bind(env->base, "preview listener", ai->ai_addr,
	    (int)ai->ai_addrlen, 1024, pv_accept, NULL);
	evutil_freeaddrinfo(ai);
	if (!pv.listener) {
		snprintf(err, errlen, "cannot listen on %s: %s", pv.listen_on, strerror(errno));
		return -1;
	}
	if ((pv.sweep = event_new(env->base, -1, EV_PERSIST, sweep, NULL)) != NULL)
		event_add(pv.sweep, &tv);
	log_info("previews: listening on %s, served as %s://TOKEN.%s/ and %s://%s%sTOKEN",
	    pv.listen_on, pv.scheme, pv.hostport, pv.scheme, pv.hostport, LINK_PATH);
	return 0;
}

/* --- the daemons' requests --- */

static void
reply(struct client *c, cJSON *r)
{
	if (c->sess)
		kb_session_send_control(c->sess, r);
	else
		cJSON_Delete(r);
}

static cJSON *
preview_json(const struct preview *p, const struct client *c)
{
	cJSON *o = cJSON_CreateObject();
	int mine = !strcmp(p->owner, c->name);
	char buf[600];

	if (mine)
		cJSON_AddStringToObject(o, "token", p->token);
	snprintf(buf, sizeof(buf), "%.*s", TOKEN_SHOWN, p->token);
	cJSON_AddStringToObject(o, "token_prefix", buf);
	cJSON_AddStringToObject(o, "workload", p->workload);
	cJSON_AddStringToObject(o, "namespace", p->ns);
	cJSON_AddStringToObject(o, "owner", p->owner);
	cJSON_AddBoolToObject(o, "mine", mine);
	if (mine)
		cJSON_AddStringToObject(o, "intercept_id", p->icpt);
	cJSON_AddBoolToObject(o, "active", icpt_state(pv.env.icpts, p->icpt, p->owner) == 1);
	if (mine && pv.domain_is_name) {
		url_host(p, buf, sizeof(buf));
		cJSON_AddStringToObject(o, "url", buf);
	} else if (mine) {
		cJSON_AddNullToObject(o, "url");
	}
	if (mine) {
		url_link(p, buf, sizeof(buf));
		cJSON_AddStringToObject(o, "link", buf);
	}
	if (p->host[0])
		cJSON_AddStringToObject(o, "host", p->host);
	else
		cJSON_AddNullToObject(o, "host");
	cJSON_AddNumberToObject(o, "created", (double)p->created);
	if (p->expires)
		cJSON_AddNumberToObject(o, "expires", (double)p->expires);
	else
		cJSON_AddNullToObject(o, "expires");
	return o;
}

/* The service of a preview to create resolved: make the preview, if its
 * intercept and the limits still allow, and answer the request. */
static void
create_resolved(void *arg, int rcode, const char *const *addrs, size_t n, uint32_t ttl)
{
	struct pending *pd = arg;
	struct client *c = pd->c;
	struct preview *p = NULL, *q;
	struct in_addr a;
	char name[300], err[400], id[40], t[16];
	size_t mine = 0;
	int http = 0;
	cJSON *r;

	(void)ttl;
	snprintf(name, sizeof(name), "%s.%s.svc.%s", pd->workload, pd->ns, pv.env.domain);
	if (c->sess == NULL) {
		/* Its workstation went away: nobody would learn the token. */
		r = kb_msg_result(pd->id, 0, 503, "the session ended");
		goto out;
	}
	if (rcode != 0 || n == 0 || inet_pton(AF_INET, addrs[0], &a) != 1) {
		snprintf(err, sizeof(err), "cannot resolve the service %s (%s)", name,
		    rcode == 3 ? "no such name" : rcode ? "DNS failure" : "no IPv4 address");
		r = kb_msg_result(pd->id, 0, 502, err);
		goto out;
	}
	if (!pv.env.allowed(pv.env.arg, ntohl(a.s_addr))) {
		snprintf(err, sizeof(err), "the service %s is at %s, outside the cluster subnets",
		    name, addrs[0]);
		r = kb_msg_result(pd->id, 0, 502, err);
		goto out;
	}
	/* The intercept may have ended while we resolved. */
	if (icpt_owned(pv.env.icpts, c->name, pd->workload, pd->ns, id, sizeof(id), &http) < 0 ||
	    strcmp(id, pd->icpt) != 0) {
		snprintf(err, sizeof(err), "your intercept on %s.%s ended", pd->workload, pd->ns);
		r = kb_msg_result(pd->id, 0, 409, err);
		goto out;
	}
	TAILQ_FOREACH(q, &pv.list, entry)
		mine += !strcmp(q->owner, c->name);
	if (pv.count >= MAX_PREVIEWS || mine >= MAX_PER_OWNER) {
		snprintf(err, sizeof(err), "too many previews (%s); remove some with 'kbridge preview "
		    "remove'", mine >= MAX_PER_OWNER ? "32 per user" : "1024 in the cluster");
		r = kb_msg_result(pd->id, 0, 429, err);
		goto out;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL || make_token(p->token) < 0) {
		free(p);
		r = kb_msg_result(pd->id, 0, 500, "cannot make a token");
		goto out;
	}
	snprintf(p->workload, sizeof(p->workload), "%s", pd->workload);
	snprintf(p->ns, sizeof(p->ns), "%s", pd->ns);
	snprintf(p->owner, sizeof(p->owner), "%s", c->name);
	snprintf(p->icpt, sizeof(p->icpt), "%s", pd->icpt);
	memcpy(p->host, pd->host, sizeof(p->host));
	p->key = ++pv.next_key;
	p->svc.sin_family = AF_INET;
	p->svc.sin_addr = a;
	p->svc.sin_port = htons(pd->port);
	p->created = time(NULL);
	p->expires = p->ttl_expires = pd->ttl > 0 ? p->created + pd->ttl : 0;
	if (preview_link(p) < 0) {
		OPENSSL_cleanse(p->token, sizeof(p->token));
		free(p);
		r = kb_msg_result(pd->id, 0, 500, "out of memory");
		goto out;
	}
	if (save_err(err, sizeof(err)) < 0) {
		preview_free(p);
		r = kb_msg_result(pd->id, 0, 507, err);
		goto out;
	}
	shown(p->token, t, sizeof(t));
	if (pd->ttl > 0)
		snprintf(err, sizeof(err), "for %ld s", pd->ttl);
	else
		snprintf(err, sizeof(err), "while the intercept lasts");
	log_info_for(p->owner, "preview %s: %s previews %s.%s (intercept %s, service %s:%u) %s", t, p->owner,
	    p->workload, p->ns, p->icpt, addrs[0], pd->port, err);
	r = kb_msg_result(pd->id, 1, 0, NULL);
	cJSON_AddItemToObject(r, "preview", preview_json(p, c));
out:
	reply(c, r);
	client_unref(c);
	free(pd);
}

/* A Host header value: a name, an IPv4 address or [IPv6], maybe :port. */
static int
host_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n < 256 && strspn(s, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_") == n;
}

static void
do_create(struct client *c, double id, const cJSON *msg)
{
	const cJSON *wl = cJSON_GetObjectItemCaseSensitive(msg, "workload");
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(msg, "namespace");
	const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(msg, "ttl");
	const cJSON *port = cJSON_GetObjectItemCaseSensitive(msg, "service_port");
	const cJSON *host = cJSON_GetObjectItemCaseSensitive(msg, "host");
	struct pending *pd;
	char err[300], name[300];
	int http = 0;

	if (!pv.listener) {
		reply(c, kb_msg_result(id, 0, 503,
		    "this manager serves no previews (it runs without --preview-listen)"));
		return;
	}
	/* kb_msg_parse checked the names (DNS labels), ttl (1 s to 30 days),
	 * service_port (1-65535) and that host, if any, is a string. */
	if (cJSON_IsString(host) && !host_ok(host->valuestring)) {
		reply(c, kb_msg_result(id, 0, 400,
		    "host must be a host name or address, with an optional :port"));
		return;
	}
	if ((pd = calloc(1, sizeof(*pd))) == NULL) {
		reply(c, kb_msg_result(id, 0, 500, "out of memory"));
		return;
	}
	if (cJSON_IsString(host))
		memcpy(pd->host, host->valuestring, strlen(host->valuestring) + 1);
	if (icpt_owned(pv.env.icpts, c->name, wl->valuestring, ns->valuestring, pd->icpt,
	    sizeof(pd->icpt), &http) < 0) {
		snprintf(err, sizeof(err), "you have no intercept on %s.%s (a preview shows your "
		    "intercept: run 'kbridge intercept %s -n %s ...' first)", wl->valuestring,
		    ns->valuestring, wl->valuestring, ns->valuestring);
		reply(c, kb_msg_result(id, 0, 404, err));
		free(pd);
		return;
	}
	if (!http) {
		snprintf(err, sizeof(err), "%s.%s is a TCP workload: previews need HTTP",
		    wl->valuestring, ns->valuestring);
		reply(c, kb_msg_result(id, 0, 400, err));
		free(pd);
		return;
	}
	pd->c = c;
	pd->id = id;
	snprintf(pd->workload, sizeof(pd->workload), "%s", wl->valuestring);
	snprintf(pd->ns, sizeof(pd->ns), "%s", ns->valuestring);
	pd->port = cJSON_IsNumber(port) ? (uint16_t)port->valuedouble : 80;
	pd->ttl = cJSON_IsNumber(ttl) ? (long)ttl->valuedouble : 0;
	c->refs++;
	snprintf(name, sizeof(name), "%s.%s.svc.%s", pd->workload, pd->ns, pv.env.domain);
	resolver_lookup(pv.env.resolver, name, 1, create_resolved, pd);
}

static void
do_list(struct client *c, double id, const cJSON *msg)
{
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(msg, "namespace");
	struct preview *p, *next;
	time_t now = time(NULL);
	cJSON *r = kb_msg_result(id, 1, 0, NULL), *a;
	int gone = 0;

	a = cJSON_AddArrayToObject(r, "previews");
	for (p = TAILQ_FIRST(&pv.list); p; p = next) {
		next = TAILQ_NEXT(p, entry);
		if (expired(p, now)) {
			preview_free(p);
			gone++;
			continue;
		}
		if (cJSON_IsString(ns) && strcmp(ns->valuestring, p->ns))
			continue;
		cJSON_AddItemToArray(a, preview_json(p, c));
	}
	if (gone)
		save();
	reply(c, r);
}

static void
do_remove(struct client *c, double id, const cJSON *msg)
{
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(msg, "token");
	struct preview *p;
	char err[200], t[16];
	cJSON *r;

	if ((p = find_token(tok->valuestring, strlen(tok->valuestring))) == NULL) {
		reply(c, kb_msg_result(id, 0, 404,
		    "no such preview (unknown, expired or removed)"));
		return;
	}
	if (strcmp(p->owner, c->name) != 0) {
		snprintf(err, sizeof(err), "only its owner (%s) can remove this preview", p->owner);
		reply(c, kb_msg_result(id, 0, 403, err));
		return;
	}
	shown(p->token, t, sizeof(t));
	log_info_for(p->owner, "preview %s of %s on %s.%s removed", t, p->owner, p->workload, p->ns);
	r = kb_msg_result(id, 1, 0, NULL);
	cJSON_AddItemToObject(r, "preview", preview_json(p, c));
	preview_free(p);
	save();
	reply(c, r);
}

int
preview_request(struct client *c, enum kb_msg_type type, const cJSON *msg)
{
	double n = cJSON_GetObjectItemCaseSensitive(msg, "id")->valuedouble;

	switch (type) {
	case KB_MSG_PREVIEW_CREATE:
		do_create(c, n, msg);
		return 1;
	case KB_MSG_PREVIEW_LIST:
		do_list(c, n, msg);
		return 1;
	case KB_MSG_PREVIEW_REMOVE:
		do_remove(c, n, msg);
		return 1;
	default:
		return 0;
	}
}

void
preview_shutdown(void)
{
	struct pvconn *pc;

	while ((pc = LIST_FIRST(&pv.conns)) != NULL) {
		kb_pool_remove(&pc->fresh);
		LIST_REMOVE(pc, entry);
		hp_conn_free(pc->hc);
		free(pc);
	}
	pv.nconns = 0;
	h1h2_free_all();
	hp_proxy_free(pv.hp);
	pv.hp = NULL;
	while (!TAILQ_EMPTY(&pv.list))
		preview_free(TAILQ_FIRST(&pv.list));
	kb_htab_clear(&pv.by_token);
	kb_htab_clear(&pv.by_key);
	kb_listener_free(pv.listener);
	pv.listener = NULL;
	kb_pool_free(pv.fresh);
	pv.fresh = NULL;
	if (pv.sweep) {
		event_free(pv.sweep);
		pv.sweep = NULL;
	}
}
