/* kbridge's own requests to the Kubernetes API from the CLI: blocking
 * libcurl with the user's kubeconfig credentials (cli/install.c,
 * cli/identity.c). */
#include "kube.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "cmd.h"
#include "kubeconfig.h"
#include "manifests.h"

/* This process's requests so far (kapi_waited). */
static struct kapi_waited waited;

uint64_t
kapi_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
kapi_waited(struct kapi_waited *w)
{
	*w = waited;
}

struct body {
	char *p;
	size_t len;
};

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	char *q;

	if (b->len + size * n > KAPI_BODY_MAX ||
	    (q = realloc(b->p, b->len + size * n + 1)) == NULL)
		return 0;
	memcpy(q + b->len, p, size * n);
	b->len += size * n;
	q[b->len] = '\0';
	b->p = q;
	return size * n;
}

/* Ctrl-C (catch_signals) aborts the request in flight. */
static int
on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)arg, (void)dt, (void)dn, (void)ut, (void)un;
	return interrupted != 0;
}

/* The API's reason for a failure: a Status object's message, else the HTTP
 * status. */
void
api_error(long status, const cJSON *resp, char *err, size_t errlen)
{
	const char *m = jstr(resp, "message");
	char buf[512];

	if (m)
		snprintf(err, errlen, "%s", shown(m, buf, sizeof(buf)));
	else
		snprintf(err, errlen, "the API server answered HTTP %ld", status);
}

/* The handle set up afresh for a request (the kubeconfig's options, which
 * the credentials may have changed); its connections stay open. */
static CURL *
kapi_handle(struct kapi *k, char *err, size_t errlen)
{
	if (k->c == NULL && (k->c = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return NULL;
	}
	curl_easy_reset(k->c);
	if (kb_kubeconfig_curl(k->kc, k->c, err, errlen) == -1)
		return NULL;
	return k->c;
}

void
kapi_close(struct kapi *k)
{
	curl_easy_cleanup(k->c);
	kb_kubeconfig_free(k->kc);
}

/* One request: 0 with *status and *resp (a JSON object, or NULL when the
 * body is not one), or -1 with err when no answer came. A 401 refreshes
 * the credentials (exec plugin, tokenFile) and tries once more. */
int
kreq(struct kapi *k, const char *method, const char *path, const char *ctype,
    const cJSON *body, long *status, cJSON **resp, char *err, size_t errlen)
{
	struct curl_slist *hdr = NULL;
	struct body b = { 0 };
	char *url = NULL, *req = NULL, ct[96];
	CURLcode cc;
	CURL *c;
	uint64_t t0;
	int tries, rc = -1;

	*resp = NULL;
	if ((url = kb_kubeconfig_url(k->kc, path)) == NULL ||
	    (body && (req = cJSON_PrintUnformatted(body)) == NULL)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (tries = 0; tries < 2; tries++) {
		free(b.p);
		b = (struct body){ 0 };
		curl_slist_free_all(hdr);
		hdr = NULL;
		if ((c = kapi_handle(k, err, errlen)) == NULL)
			goto out;
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)KAPI_TIMEOUT_MS);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(c, CURLOPT_USERAGENT, "kbridge/" KB_MANIFEST_VERSION);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
		hdr = curl_slist_append(hdr, "Accept: application/json");
		if (req) {
			snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
			hdr = curl_slist_append(hdr, ct);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, req);
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(req));
		}
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		t0 = kapi_now_us();
		cc = curl_easy_perform(c);
		waited.requests++;
		waited.us += kapi_now_us() - t0;
		if (cc != CURLE_OK) {
			if (interrupted)
				snprintf(err, errlen, "interrupted; what is reported above was "
				    "done, run it again to finish");
			else
				snprintf(err, errlen, "%s: %s", kb_kubeconfig_server(k->kc),
				    curl_easy_strerror(cc));
			goto out;
		}
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
		if (*status != 401)
			break;
		kb_kubeconfig_refresh(k->kc);
	}
	if (b.p && (*resp = cJSON_Parse(b.p)) != NULL && !cJSON_IsObject(*resp)) {
		cJSON_Delete(*resp);
		*resp = NULL;
	}
	rc = 0;
out:
	/* The handle must not keep pointers to what is freed here. */
	if (k->c)
		curl_easy_reset(k->c);
	curl_slist_free_all(hdr);
	free(b.p);
	free(req);
	free(url);
	return rc;
}

int
kube_access(struct kapi *k, const char *ns, const char *group, const char *resource,
    const char *sub, const char *verb, const char *name, char *err, size_t errlen)
{
	cJSON *rev = cJSON_CreateObject(), *ra = NULL, *resp = NULL;
	long status;
	int rc = -1;

	if (rev && cJSON_AddStringToObject(rev, "apiVersion", "authorization.k8s.io/v1") &&
	    cJSON_AddStringToObject(rev, "kind", "SelfSubjectAccessReview"))
		ra = cJSON_AddObjectToObject(cJSON_AddObjectToObject(rev, "spec"),
		    "resourceAttributes");
	if (ra == NULL || !cJSON_AddStringToObject(ra, "verb", verb) ||
	    !cJSON_AddStringToObject(ra, "group", group) ||
	    !cJSON_AddStringToObject(ra, "resource", resource) ||
	    (sub && !cJSON_AddStringToObject(ra, "subresource", sub)) ||
	    (ns && !cJSON_AddStringToObject(ra, "namespace", ns)) ||
	    (name && !cJSON_AddStringToObject(ra, "name", name))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (kreq(k, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
	    "application/json", rev, &status, &resp, err, errlen) == -1)
		goto out;
	if (status != 201 && status != 200) {
		api_error(status, resp, err, errlen);
		goto out;
	}
	rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(resp, "status"), "allowed"));
out:
	cJSON_Delete(rev);
	cJSON_Delete(resp);
	return rc;
}

int
load_kubeconfig(const char *cmd, const char *file, const char *context, struct kapi *k)
{
	struct kb_kubeconfig_opts o = { .path = file, .context = context,
	    .env = getenv("KUBECONFIG"), .home = getenv("HOME") };
	char err[1024];

	if ((k->kc = kb_kubeconfig_load(&o, err, sizeof(err))) == NULL) {
		errorx("%s: %s", cmd, err);
		return -1;
	}
	return 0;
}

