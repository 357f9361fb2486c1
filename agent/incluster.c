/* The in-cluster manager's CA, kept in a Secret (see incluster.h). */
#include "incluster.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "identity.h"
#include "kubeapi.h"
#include "log.h"
#include "util.h"

#define SECRET_TIMEOUT_S 30
#define KEY_CRT "ca.crt"
#define KEY_KEY "ca.key"

struct call {
	int done;
	int status;
	cJSON *body;
	char err[300];
};

static void
call_done(void *arg, int status, cJSON *body, const char *err)
{
	struct call *c = arg;

	/* No loopbreak: call() runs the loop in slices of 100 ms, each ended by
	 * its own loopexit, so none is left pending for the manager's loop. */
	c->done = 1;
	c->status = status;
	c->body = body ? cJSON_Duplicate(body, 1) : NULL;
	snprintf(c->err, sizeof(c->err), "%s", err ? err : "");
}

/* One request, waited for. 0 when answered (c->status), -1 with err. */
static int
call(struct event_base *base, struct kb_kube *kube, const char *method, const char *path,
    const cJSON *body, struct call *c, char *err, size_t errlen)
{
	struct kb_kube_req *req;
	uint64_t waited = 0;

	memset(c, 0, sizeof(*c));
	if ((req = kb_kube_request(kube, method, path, body, call_done, c)) == NULL) {
		snprintf(err, errlen, "%s %s: cannot send the request", method, path);
		return -1;
	}
	while (!c->done && waited < SECRET_TIMEOUT_S * 10) {
		struct timeval tv = { 0, 100000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
		waited++;
	}
	if (!c->done) {
		kb_kube_cancel(req);
		snprintf(err, errlen, "%s %s: no answer in %d s", method, path, SECRET_TIMEOUT_S);
		return -1;
	}
	if (c->status == 0) {
		snprintf(err, errlen, "%s", c->err);
		return -1;
	}
	return 0;
}

int
incluster_request(struct event_base *base, struct kb_kube *kube, const char *method,
    const char *path, const cJSON *body, int *status, cJSON **answer, char *err, size_t errlen)
{
	struct call c;

	*answer = NULL;
	if (call(base, kube, method, path, body, &c, err, errlen) < 0)
		return -1;
	*status = c.status;
	*answer = c.body;
	snprintf(err, errlen, "%s", c.err);
	return 0;
}

/* The CA from a Secret object: 0, or -1 with err. */
static int
from_secret(const cJSON *s, char **crt, char **key, char *err, size_t errlen)
{
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(s, "data");
	const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, KEY_CRT));
	const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, KEY_KEY));
	size_t n;

	*crt = c ? kb_b64_decode(c, &n) : NULL;
	*key = k ? kb_b64_decode(k, &n) : NULL;
	if (*crt && *key)
		return 0;
	free(*crt);
	identity_free_secret(*key);
	*crt = *key = NULL;
	snprintf(err, errlen, "its data lacks %s and %s in base64", KEY_CRT, KEY_KEY);
	return -1;
}

/* apiVersion v1, kind, metadata with name, namespace and our labels. */
static cJSON *
our_object(const char *kind, const char *ns, const char *name)
{
	cJSON *o = cJSON_CreateObject(), *meta, *labels;

	cJSON_AddStringToObject(o, "apiVersion", "v1");
	cJSON_AddStringToObject(o, "kind", kind);
	meta = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(meta, "name", name);
	cJSON_AddStringToObject(meta, "namespace", ns);
	labels = cJSON_AddObjectToObject(meta, "labels");
	cJSON_AddStringToObject(labels, "app.kubernetes.io/name", "kbridge-manager");
	cJSON_AddStringToObject(labels, "app.kubernetes.io/component", "manager");
	cJSON_AddStringToObject(labels, "app.kubernetes.io/part-of", "kbridge");
	cJSON_AddStringToObject(labels, "app.kubernetes.io/managed-by", "kbridge");
	return o;
}

cJSON *
incluster_secret(const char *ns, const char *name)
{
	cJSON *o = our_object("Secret", ns, name);

	cJSON_AddStringToObject(o, "type", "Opaque");
	if (!cJSON_AddObjectToObject(o, "data")) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *
secret_object(const char *ns, const char *name, const char *crt, const char *key)
{
	cJSON *o = incluster_secret(ns, name), *data = cJSON_GetObjectItemCaseSensitive(o, "data");
	char *c = kb_b64_encode(crt, strlen(crt)), *k = kb_b64_encode(key, strlen(key));

	if (!o || !c || !k || !cJSON_AddStringToObject(data, KEY_CRT, c) ||
	    !cJSON_AddStringToObject(data, KEY_KEY, k)) {
		cJSON_Delete(o);
		o = NULL;
	}
	free(c);
	identity_free_secret(k);
	return o;
}

int
incluster_publish_ca(struct event_base *base, struct kb_kube *kube, const char *ns,
    const char *name, const char *crt, char *err, size_t errlen)
{
	char path[512];
	const char *have;
	struct call c;
	cJSON *obj = NULL, *data;
	int rc = -1;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", ns, name);
	if (call(base, kube, "GET", path, NULL, &c, err, errlen) < 0)
		return -1;
	if (c.status == 200) {
		have = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(c.body, "data"), KEY_CRT));
		if (have && strcmp(have, crt) == 0) {
			cJSON_Delete(c.body);
			return 0;
		}
		/* Ours to replace: only the manager may write it (RBAC). */
		obj = c.body;
		cJSON_DeleteItemFromObjectCaseSensitive(obj, "data");
		cJSON_DeleteItemFromObjectCaseSensitive(obj, "binaryData");
	} else if (c.status == 404) {
		cJSON_Delete(c.body);
		obj = our_object("ConfigMap", ns, name);
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", ns);
	} else {
		snprintf(err, errlen, "cannot read ConfigMap %s/%s: %s", ns, name, c.err);
		cJSON_Delete(c.body);
		return -1;
	}
	if ((data = cJSON_AddObjectToObject(obj, "data")) == NULL ||
	    !cJSON_AddStringToObject(data, KEY_CRT, crt)) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	if (call(base, kube, c.status == 200 ? "PUT" : "POST", path, obj, &c, err, errlen) < 0)
		goto done;
	cJSON_Delete(c.body);
	if (c.status != 200 && c.status != 201) {
		snprintf(err, errlen, "cannot write ConfigMap %s/%s: %s", ns, name, c.err);
		goto done;
	}
	log_info("published the CA certificate in ConfigMap %s/%s", ns, name);
	rc = 0;
done:
	cJSON_Delete(obj);
	return rc;
}

int
incluster_service_ip(struct event_base *base, struct kb_kube *kube, const char *ns,
    const char *name, char *ip, size_t len)
{
	char path[512], err[300];
	const char *v;
	struct in_addr a;
	struct call c;
	int rc = -1;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", ns, name);
	if (call(base, kube, "GET", path, NULL, &c, err, sizeof(err)) < 0)
		return -1;
	v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(c.body, "spec"), "clusterIP"));
	if (c.status == 200 && v && inet_pton(AF_INET, v, &a) == 1 && strlen(v) < len) {
		snprintf(ip, len, "%s", v);
		rc = 0;
	}
	cJSON_Delete(c.body);
	return rc;
}

int
incluster_ca(struct event_base *base, struct kb_kube *kube, const char *ns, const char *name,
    char **crt, char **key, char *err, size_t errlen)
{
	char path[512], why[300];
	struct call c;
	cJSON *obj;
	int tries, rc = -1;

	*crt = *key = NULL;
	if (errlen)
		*err = '\0';
	/* Twice at most: another manager may create it between our GET and POST. */
	for (tries = 0; tries < 2 && rc < 0; tries++) {
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets/%s", ns, name);
		if (call(base, kube, "GET", path, NULL, &c, err, errlen) < 0)
			return -1;
		if (c.status == 200) {
			if (from_secret(c.body, crt, key, why, sizeof(why)) < 0)
				snprintf(err, errlen, "Secret %s/%s: %s", ns, name, why);
			else
				rc = 0;
			if (rc == 0)
				log_info("the cluster CA is the one in Secret %s/%s", ns, name);
			cJSON_Delete(c.body);
			if (rc < 0)
				return -1;
			break;
		}
		cJSON_Delete(c.body);
		if (c.status != 404) {
			snprintf(err, errlen, "cannot read Secret %s/%s: %s", ns, name, c.err);
			return -1;
		}
		if (identity_ca_new(crt, key, err, errlen) < 0)
			return -1;
		if ((obj = secret_object(ns, name, *crt, *key)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/secrets", ns);
		rc = call(base, kube, "POST", path, obj, &c, err, errlen);
		cJSON_Delete(obj);
		cJSON_Delete(c.body);
		if (rc < 0)
			goto fail;
		if (c.status == 201 || c.status == 200) {
			log_info("created a cluster CA in Secret %s/%s", ns, name);
			return 0;
		}
		rc = -1;
		if (c.status != 409) {
			snprintf(err, errlen, "cannot create Secret %s/%s: %s", ns, name, c.err);
			goto fail;
		}
		free(*crt);
		identity_free_secret(*key);
		*crt = *key = NULL;
	}
	if (rc < 0 && !*err)
		snprintf(err, errlen, "Secret %s/%s: created and gone again", ns, name);
	return rc;
fail:
	free(*crt);
	identity_free_secret(*key);
	*crt = *key = NULL;
	return -1;
}

int
incluster_webhook_ca(struct event_base *base, struct kb_kube *kube, const char *name,
    const char *ca, char *err, size_t errlen)
{
	char path[512], *b64;
	const cJSON *wh;
	struct call c;
	int n = 0, changed = 0, rc = -1;

	snprintf(path, sizeof(path),
	    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/%s", name);
	if (call(base, kube, "GET", path, NULL, &c, err, errlen) < 0)
		return -1;
	if (c.status != 200) {
		snprintf(err, errlen, "cannot read MutatingWebhookConfiguration %s: %s", name, c.err);
		cJSON_Delete(c.body);
		return -1;
	}
	if ((b64 = kb_b64_encode(ca, strlen(ca))) == NULL) {
		snprintf(err, errlen, "out of memory");
		cJSON_Delete(c.body);
		return -1;
	}
	cJSON_ArrayForEach(wh, cJSON_GetObjectItemCaseSensitive(c.body, "webhooks")) {
		cJSON *cc = cJSON_GetObjectItemCaseSensitive(wh, "clientConfig");
		const char *have = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(cc, "caBundle"));

		n++;
		if (!cJSON_IsObject(cc) || (have && strcmp(have, b64) == 0))
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(cc, "caBundle");
		cJSON_AddStringToObject(cc, "caBundle", b64);
		changed++;
	}
	free(b64);
	if (n == 0) {
		snprintf(err, errlen, "MutatingWebhookConfiguration %s has no webhooks", name);
		cJSON_Delete(c.body);
		return -1;
	}
	if (changed) {
		/* resourceVersion from the GET: a concurrent change fails (409).
		 * managedFields left out: the server keeps them as they are. */
		cJSON *obj = c.body;

		cJSON_DeleteItemFromObjectCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "managedFields");

		if (call(base, kube, "PUT", path, obj, &c, err, errlen) == 0) {
			if (c.status == 200)
				rc = 0;
			else
				snprintf(err, errlen, "cannot update MutatingWebhookConfiguration "
				    "%s: %s", name, c.err);
			cJSON_Delete(c.body);
		}
		cJSON_Delete(obj);
		if (rc == 0)
			log_info("the CA is the caBundle of MutatingWebhookConfiguration %s", name);
		return rc;
	}
	cJSON_Delete(c.body);
	return 0;
}
