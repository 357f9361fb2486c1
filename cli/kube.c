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
	struct kb_kube_request r = { .method = method, .path = path, .ctype = ctype,
	    .user_agent = "kbridge/" KB_MANIFEST_VERSION, .timeout_ms = KAPI_TIMEOUT_MS,
	    .max_body = KAPI_BODY_MAX, .progress = on_progress };
	char *req = NULL, *out = NULL;
	size_t outlen;
	uint64_t t0;
	int rc = -1;

	*resp = NULL;
	if (body && (r.body = req = cJSON_PrintUnformatted(body)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (k->c == NULL && (k->c = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "cannot initialise libcurl");
		goto out;
	}
	t0 = kapi_now_us();
	rc = kb_kubeconfig_request(k->kc, k->c, &r, status, &out, &outlen, err, errlen);
	waited.requests++;
	waited.us += kapi_now_us() - t0;
	if (rc == -1) {
		if (interrupted)
			snprintf(err, errlen, "interrupted; what is reported above was "
			    "done, run it again to finish");
		goto out;
	}
	if (out && (*resp = cJSON_Parse(out)) != NULL && !cJSON_IsObject(*resp)) {
		cJSON_Delete(*resp);
		*resp = NULL;
	}
	rc = 0;
out:
	free(out);
	free(req);
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

