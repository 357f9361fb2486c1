/* Sidecar enrollment (see enroll.h): the pure checks of the request, the
 * TokenReview answer and the pod, then the asynchronous chain TokenReview
 * -> GET pod -> sign, driven by the API client (proto/kubeapi.h). */
#include "enroll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "identity.h"
#include "kubeapi.h"
#include "log.h"
#include "tls.h"
#include "util.h"
#include "webhook.h"

#define SA_PREFIX	"system:serviceaccount:"
#define EXTRA_POD_NAME	"authentication.kubernetes.io/pod-name"
#define EXTRA_POD_UID	"authentication.kubernetes.io/pod-uid"

struct enroller {
	struct kb_kube *kube;
	char *ca_crt, *ca_key;
	size_t inflight;
	struct enroll_req *reqs;
};

struct enroll_req {
	struct enroller *e;
	struct enroll_req *next, **prevp;
	struct kb_kube_req *kr;
	EVP_PKEY *pub;
	struct enroll_who who;
	char peer[64];
	enroll_cb cb;
	void *arg;
};

static const cJSON *
get(const cJSON *o, const char *k)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *
get_str(const cJSON *o, const char *k)
{
	const cJSON *v = get(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A string into buf when it fits and is not empty: 0, else -1. */
static int
copy_str(const char *s, char *buf, size_t len)
{
	if (!s || !*s || strlen(s) >= len)
		return -1;
	memcpy(buf, s, strlen(s) + 1);
	return 0;
}

int
enroll_parse_request(const char *body, size_t len, char **token, EVP_PKEY **pub, char *why,
    size_t whylen)
{
	const char *tok, *key;
	cJSON *j = NULL;
	BIO *bio = NULL;
	size_t i;

	*token = NULL;
	*pub = NULL;
	if (len > ENROLL_MAX_BODY) {
		snprintf(why, whylen, "request too large (at most %d bytes)", ENROLL_MAX_BODY);
		return -1;
	}
	if ((j = cJSON_ParseWithLength(body, len)) == NULL || !cJSON_IsObject(j)) {
		snprintf(why, whylen, "the request is not a JSON object");
		goto fail;
	}
	tok = get_str(j, "token");
	key = get_str(j, "key");
	if (!tok || !*tok || strlen(tok) > ENROLL_MAX_TOKEN) {
		snprintf(why, whylen, "the request needs a \"token\" of 1-%d bytes", ENROLL_MAX_TOKEN);
		goto fail;
	}
	for (i = 0; tok[i]; i++)
		if ((unsigned char)tok[i] <= ' ' || (unsigned char)tok[i] >= 127) {
			snprintf(why, whylen, "the token holds a character a token cannot");
			goto fail;
		}
	if (!key || (bio = BIO_new_mem_buf(key, -1)) == NULL ||
	    (*pub = PEM_read_bio_PUBKEY(bio, NULL, kb_tls_no_passphrase, NULL)) == NULL) {
		snprintf(why, whylen, "the request needs a \"key\": a PEM public key");
		goto fail;
	}
	if (!EVP_PKEY_is_a(*pub, "EC") || EVP_PKEY_get_bits(*pub) != 256) {
		snprintf(why, whylen, "the key must be EC P-256");
		goto fail;
	}
	{
		char group[32];
		size_t gl;

		if (!EVP_PKEY_get_utf8_string_param(*pub, "group", group, sizeof(group), &gl) ||
		    strcmp(group, "prime256v1") != 0) {
			snprintf(why, whylen, "the key must be EC P-256");
			goto fail;
		}
	}
	if ((*token = strdup(tok)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	BIO_free(bio);
	cJSON_Delete(j);
	return 0;
fail:
	EVP_PKEY_free(*pub);
	*pub = NULL;
	BIO_free(bio);
	cJSON_Delete(j);
	return -1;
}

cJSON *
enroll_review_request(const char *token)
{
	cJSON *r = cJSON_CreateObject(), *spec;

	cJSON_AddStringToObject(r, "apiVersion", "authentication.k8s.io/v1");
	cJSON_AddStringToObject(r, "kind", "TokenReview");
	spec = cJSON_AddObjectToObject(r, "spec");
	cJSON_AddStringToObject(spec, "token", token);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(spec, "audiences"),
	    cJSON_CreateString(ENROLL_AUDIENCE));
	return r;
}

/* extra[key]: exactly one non-empty string, into buf. */
static int
extra_one(const cJSON *extra, const char *key, char *buf, size_t len)
{
	const cJSON *a = get(extra, key);

	if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 1 ||
	    !cJSON_IsString(cJSON_GetArrayItem(a, 0)))
		return -1;
	return copy_str(cJSON_GetArrayItem(a, 0)->valuestring, buf, len);
}

int
enroll_review_check(const cJSON *review, struct enroll_who *who, char *why, size_t whylen)
{
	const cJSON *st = get(review, "status"), *user = get(st, "user"), *aud, *a;
	const char *name = get_str(user, "username"), *err = get_str(st, "error"), *colon;
	int ours = 0;

	memset(who, 0, sizeof(*who));
	if (!cJSON_IsTrue(get(st, "authenticated"))) {
		snprintf(why, whylen, "the token is not valid for audience %s%s%s", ENROLL_AUDIENCE,
		    err && *err ? ": " : "", err && *err ? err : "");
		return -1;
	}
	/* The API server says which of our audiences the token is for; an
	 * answer without ours would mean it did not check. */
	aud = get(st, "audiences");
	cJSON_ArrayForEach(a, (cJSON_IsArray(aud) ? aud : NULL))
		if (cJSON_IsString(a) && strcmp(a->valuestring, ENROLL_AUDIENCE) == 0)
			ours = 1;
	if (!ours) {
		snprintf(why, whylen, "the token is not for audience %s", ENROLL_AUDIENCE);
		return -1;
	}
	if (!name || strncmp(name, SA_PREFIX, strlen(SA_PREFIX)) != 0 ||
	    (colon = strchr(name + strlen(SA_PREFIX), ':')) == NULL ||
	    (size_t)(colon - name - strlen(SA_PREFIX)) >= sizeof(who->ns) ||
	    copy_str(colon + 1, who->sa, sizeof(who->sa)) < 0) {
		snprintf(why, whylen, "the token is not a ServiceAccount's");
		return -1;
	}
	memcpy(who->ns, name + strlen(SA_PREFIX), (size_t)(colon - name - strlen(SA_PREFIX)));
	if (!kb_dns_label(who->ns)) {
		snprintf(why, whylen, "the token is not a ServiceAccount's");
		return -1;
	}
	if (extra_one(get(user, "extra"), EXTRA_POD_NAME, who->pod, sizeof(who->pod)) < 0 ||
	    extra_one(get(user, "extra"), EXTRA_POD_UID, who->uid, sizeof(who->uid)) < 0) {
		snprintf(why, whylen, "the token is not bound to a pod (use a projected "
		    "serviceAccountToken volume)");
		return -1;
	}
	return 0;
}

/* The pod runs the injected sidecar container. */
static int
has_sidecar(const cJSON *pod)
{
	const cJSON *c;

	cJSON_ArrayForEach(c, get(get(pod, "spec"), "containers")) {
		const char *n = get_str(c, "name");

		if (n && strcmp(n, KB_WEBHOOK_SIDECAR) == 0)
			return 1;
	}
	return 0;
}

int
enroll_pod_check(const cJSON *pod, const struct enroll_who *who, char *workload, size_t wlen,
    char *why, size_t whylen)
{
	const cJSON *meta = get(pod, "metadata");
	const char *ns = get_str(meta, "namespace"), *name = get_str(meta, "name");
	const char *uid = get_str(meta, "uid"), *sa = get_str(get(pod, "spec"), "serviceAccountName");
	const char *inj = get_str(get(meta, "annotations"), KB_WEBHOOK_ANN_INJECTED), *dot;
	char wl[64];

	if (!ns || !name || !uid || strcmp(ns, who->ns) || strcmp(name, who->pod) ||
	    strcmp(uid, who->uid)) {
		snprintf(why, whylen, "pod %s/%s is not the one the token was made for", who->ns,
		    who->pod);
		return -1;
	}
	if (get(meta, "deletionTimestamp") && !cJSON_IsNull(get(meta, "deletionTimestamp"))) {
		snprintf(why, whylen, "pod %s/%s is being deleted", who->ns, who->pod);
		return -1;
	}
	if (!sa || strcmp(sa, who->sa)) {
		snprintf(why, whylen, "pod %s/%s does not run as ServiceAccount %s", who->ns,
		    who->pod, who->sa);
		return -1;
	}
	if (!inj || !has_sidecar(pod)) {
		snprintf(why, whylen, "pod %s/%s has no kbridge sidecar (not injected)", who->ns,
		    who->pod);
		return -1;
	}
	/* NAME.NS, with NS the token's own namespace. */
	if ((dot = strchr(inj, '.')) == NULL || (size_t)(dot - inj) >= sizeof(wl) ||
	    strcmp(dot + 1, who->ns) != 0) {
		snprintf(why, whylen, "pod %s/%s: annotation %s \"%.80s\" is not WORKLOAD.%s",
		    who->ns, who->pod, KB_WEBHOOK_ANN_INJECTED, inj, who->ns);
		return -1;
	}
	memcpy(wl, inj, (size_t)(dot - inj));
	wl[dot - inj] = '\0';
	if (!kb_dns_label(wl) || copy_str(wl, workload, wlen) < 0) {
		snprintf(why, whylen, "pod %s/%s: annotation %s names no valid workload", who->ns,
		    who->pod, KB_WEBHOOK_ANN_INJECTED);
		return -1;
	}
	return 0;
}

/* ---- the asynchronous chain ---- */

static void
req_free(struct enroll_req *r)
{
	if (r->kr)
		kb_kube_cancel(r->kr);
	*r->prevp = r->next;
	if (r->next)
		r->next->prevp = r->prevp;
	r->e->inflight--;
	EVP_PKEY_free(r->pub);
	free(r);
}

/* Answer, then forget r. */
static void
finish(struct enroll_req *r, int status, const char *body)
{
	enroll_cb cb = r->cb;
	void *arg = r->arg;

	r->kr = NULL;
	req_free(r);
	cb(arg, status, body);
}

static void
refuse(struct enroll_req *r, int status, const char *why)
{
	char line[800];

	log_info("enroll: %s: refused: %s", r->peer, why);
	snprintf(line, sizeof(line), "kbridge: enrollment refused: %s\n", why);
	finish(r, status, line);
}

static void
on_pod(void *arg, int status, cJSON *body, const char *err)
{
	struct enroll_req *r = arg;
	char wl[64], why[700], *crt = NULL, *out;
	cJSON *ans;

	r->kr = NULL;
	if (status == 404) {
		snprintf(why, sizeof(why), "pod %s/%s does not exist", r->who.ns, r->who.pod);
		refuse(r, 403, why);
		return;
	}
	if (status < 200 || status > 299 || !body) {
		snprintf(why, sizeof(why), "cannot read pod %s/%s: %s", r->who.ns, r->who.pod,
		    err ? err : "no answer");
		refuse(r, 502, why);
		return;
	}
	if (enroll_pod_check(body, &r->who, wl, sizeof(wl), why, sizeof(why)) < 0) {
		refuse(r, 403, why);
		return;
	}
	if (identity_sidecar_cert(r->e->ca_crt, r->e->ca_key, r->pub, wl, r->who.ns,
	    ENROLL_SECONDS, &crt, why, sizeof(why)) < 0) {
		refuse(r, 500, why);
		return;
	}
	ans = cJSON_CreateObject();
	cJSON_AddStringToObject(ans, "certificate", crt);
	out = cJSON_PrintUnformatted(ans);
	cJSON_Delete(ans);
	free(crt);
	if (!out) {
		refuse(r, 500, "out of memory");
		return;
	}
	log_info("enroll: %s: sidecar certificate for workload %s.%s (pod %s/%s)", r->peer, wl,
	    r->who.ns, r->who.ns, r->who.pod);
	finish(r, 200, out);
	free(out);
}

static void
on_review(void *arg, int status, cJSON *body, const char *err)
{
	struct enroll_req *r = arg;
	char why[700], path[600];

	r->kr = NULL;
	if (status < 200 || status > 299 || !body) {
		snprintf(why, sizeof(why), "cannot review the token: %s", err ? err : "no answer");
		refuse(r, 502, why);
		return;
	}
	if (enroll_review_check(body, &r->who, why, sizeof(why)) < 0) {
		refuse(r, 403, why);
		return;
	}
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", r->who.ns, r->who.pod);
	if (!kb_dns_label(r->who.ns) || strchr(r->who.pod, '/') || strchr(r->who.pod, '?') ||
	    (r->kr = kb_kube_request(r->e->kube, "GET", path, NULL, on_pod, r)) == NULL)
		refuse(r, 503, "cannot ask the API for the pod");
}

/* The address part of "ADDR:PORT" ("[v6]:PORT") is the same. */
static int
same_source(const char *a, const char *b)
{
	const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');
	size_t na = ca ? (size_t)(ca - a) : strlen(a), nb = cb ? (size_t)(cb - b) : strlen(b);

	return na == nb && memcmp(a, b, na) == 0;
}

/* Enrollments in flight from peer's address. */
static size_t
from_source(const struct enroller *e, const char *peer)
{
	const struct enroll_req *r;
	size_t n = 0;

	for (r = e->reqs; r; r = r->next)
		n += same_source(r->peer, peer);
	return n;
}

struct enroll_req *
enroll_start(struct enroller *e, const char *body, size_t len, const char *peer, enroll_cb cb,
    void *arg, int *status, char *why, size_t whylen)
{
	struct enroll_req *r;
	char *token = NULL;
	EVP_PKEY *pub = NULL;
	cJSON *review;

	if (e->inflight >= ENROLL_MAX_INFLIGHT || from_source(e, peer) >= ENROLL_MAX_PER_SRC) {
		*status = 503;
		snprintf(why, whylen, "too many enrollments at once%s; try again",
		    e->inflight >= ENROLL_MAX_INFLIGHT ? "" : " from this address");
		return NULL;
	}
	if (enroll_parse_request(body, len, &token, &pub, why, whylen) < 0) {
		*status = 400;
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL || (review = enroll_review_request(token)) == NULL) {
		*status = 503;
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	r->e = e;
	r->pub = pub;
	r->cb = cb;
	r->arg = arg;
	snprintf(r->peer, sizeof(r->peer), "%s", peer);
	r->kr = kb_kube_request(e->kube, "POST", "/apis/authentication.k8s.io/v1/tokenreviews",
	    review, on_review, r);
	cJSON_Delete(review);
	OPENSSL_cleanse(token, strlen(token));
	free(token);
	token = NULL;
	if (!r->kr) {
		*status = 503;
		snprintf(why, whylen, "cannot ask the API to review the token");
		goto fail;
	}
	r->next = e->reqs;
	if (r->next)
		r->next->prevp = &r->next;
	r->prevp = &e->reqs;
	e->reqs = r;
	e->inflight++;
	return r;
fail:
	if (token) {
		OPENSSL_cleanse(token, strlen(token));
		free(token);
	}
	EVP_PKEY_free(pub);
	free(r);
	return NULL;
}

void
enroll_cancel(struct enroll_req *r)
{
	if (r)
		req_free(r);
}

struct enroller *
enroller_new(struct kb_kube *kube, const char *ca_crt, const char *ca_key, char *err,
    size_t errlen)
{
	struct enroller *e = calloc(1, sizeof(*e));

	if (!e || (e->ca_crt = strdup(ca_crt)) == NULL || (e->ca_key = strdup(ca_key)) == NULL) {
		snprintf(err, errlen, "out of memory");
		enroller_free(e);
		return NULL;
	}
	e->kube = kube;
	return e;
}

void
enroller_free(struct enroller *e)
{
	if (!e)
		return;
	while (e->reqs)
		req_free(e->reqs);
	free(e->ca_crt);
	if (e->ca_key)
		identity_free_secret(e->ca_key);
	free(e);
}
