/* The manager's previews and intercepts in a Secret (see store.h): the
 * document's codec, the blocking read at start, and the coalesced writes. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "incluster.h"
#include "intercepts.h"
#include "kubeapi.h"
#include "log.h"
#include "preview.h"
#include "util.h"

#define DEBOUNCE_MS 100
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

static struct {
	int on;
	struct event_base *base;
	struct kb_kube *kube;
	struct icpt_reg *icpts;	/* the manager's, borrowed */
	char ns[64], name[254];
	char rv[64];		/* the Secret's resourceVersion we last saw */
	int exists;		/* the Secret exists (PUT) or not (POST) */
	char *pending;		/* the latest state not yet sent, or NULL */
	char *sending;		/* the state of the request in flight */
	struct kb_kube_req *req;
	struct event *timer;
	unsigned retry_ms;
	int failing;		/* logged the current streak of failures */
} sto;

static void
text_free(char *t)
{
	if (t) {
		OPENSSL_cleanse(t, strlen(t));
		free(t);
	}
}

char *
store_encode(const cJSON *previews, const cJSON *intercepts, size_t max, char *err,
    size_t errlen)
{
	cJSON *doc = cJSON_CreateObject();
	char *txt = NULL;
	size_t n;

	if (!doc || !cJSON_AddNumberToObject(doc, "version", STORE_VERSION) ||
	    !cJSON_AddItemToObject(doc, "previews", cJSON_Duplicate(previews, 1)) ||
	    !cJSON_AddItemToObject(doc, "intercepts", cJSON_Duplicate(intercepts, 1)) ||
	    (txt = cJSON_PrintUnformatted(doc)) == NULL) {
		snprintf(err, errlen, "out of memory");
		cJSON_Delete(doc);
		return NULL;
	}
	cJSON_Delete(doc);
	if ((n = strlen(txt)) > max) {
		snprintf(err, errlen, "the manager's state would take %zu bytes, more than its "
		    "Secret holds (%zu): end some intercepts or previews first", n, max);
		text_free(txt);
		return NULL;
	}
	return txt;
}

cJSON *
store_decode(const char *text, size_t len, size_t max, char *err, size_t errlen)
{
	cJSON *doc;
	const cJSON *v;

	if (len > max) {
		snprintf(err, errlen, "%zu bytes, more than %zu", len, max);
		return NULL;
	}
	if ((doc = cJSON_ParseWithLength(text, len)) == NULL) {
		snprintf(err, errlen, "not JSON");
		return NULL;
	}
	v = cJSON_GetObjectItemCaseSensitive(doc, "version");
	if (!cJSON_IsNumber(v) || v->valuedouble != STORE_VERSION) {
		snprintf(err, errlen, "not version %d of the state", STORE_VERSION);
	} else if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "previews")) ||
	    !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "intercepts"))) {
		snprintf(err, errlen, "no lists of previews and intercepts");
	} else {
		return doc;
	}
	cJSON_Delete(doc);
	return NULL;
}

/* --- reading at start --- */

static void on_timer(evutil_socket_t fd, short what, void *arg);

static void
path_of(char *buf, size_t len, int item)
{
	if (item)
		snprintf(buf, len, "/api/v1/namespaces/%s/secrets/%s", sto.ns, sto.name);
	else
		snprintf(buf, len, "/api/v1/namespaces/%s/secrets", sto.ns);
}

static void
take_rv(const cJSON *secret)
{
	const char *rv = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(secret, "metadata"), "resourceVersion"));

	snprintf(sto.rv, sizeof(sto.rv), "%s", rv && strlen(rv) < sizeof(sto.rv) ? rv : "");
}

/* The state in a Secret object, given to the modules. */
static void
restore(const cJSON *secret)
{
	const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(secret, "data"), STORE_KEY));
	char *txt = NULL, why[200];
	size_t len = 0, np, ni;
	cJSON *doc = NULL;

	if (!b64) {
		log_warnx("Secret %s/%s has no %s: starting with no previews or intercepts",
		    sto.ns, sto.name, STORE_KEY);
		return;
	}
	if (strlen(b64) > STORE_MAX / 3 * 4 + 4) {
		snprintf(why, sizeof(why), "more than %u bytes", STORE_MAX);
	} else if ((txt = kb_b64_decode(b64, &len)) == NULL) {
		snprintf(why, sizeof(why), "not base64");
	} else if ((doc = store_decode(txt, len, STORE_MAX, why, sizeof(why))) != NULL) {
		ni = icpt_restore(sto.icpts, cJSON_GetObjectItemCaseSensitive(doc, "intercepts"));
		np = preview_restore(cJSON_GetObjectItemCaseSensitive(doc, "previews"));
		log_info("state from Secret %s/%s: %zu intercepts and %zu previews, waiting for "
		    "their workstations", sto.ns, sto.name, ni, np);
	}
	if (!doc)
		log_warnx("Secret %s/%s: its %s is unreadable (%s): starting with no previews or "
		    "intercepts; the next change replaces it", sto.ns, sto.name, STORE_KEY, why);
	if (txt) {
		OPENSSL_cleanse(txt, len);
		free(txt);
	}
	cJSON_Delete(doc);
}

int
store_open(struct event_base *base, struct kb_kube *kube, struct icpt_reg *icpts,
    const char *ns, const char *name, char *err, size_t errlen)
{
	char path[512], why[300];
	cJSON *body;
	int status;

	if (strlen(ns) >= sizeof(sto.ns) || strlen(name) >= sizeof(sto.name)) {
		snprintf(err, errlen, "state Secret name too long");
		return -1;
	}
	sto.base = base;
	sto.kube = kube;
	sto.icpts = icpts;
	snprintf(sto.ns, sizeof(sto.ns), "%s", ns);
	snprintf(sto.name, sizeof(sto.name), "%s", name);
	path_of(path, sizeof(path), 1);
	if (incluster_request(base, kube, "GET", path, NULL, &status, &body, why,
	    sizeof(why)) < 0) {
		snprintf(err, errlen, "cannot read Secret %s/%s: %s", ns, name, why);
		return -1;
	}
	if (status == 200) {
		sto.exists = 1;
		take_rv(body);
		restore(body);
	} else if (status == 404) {
		log_info("no Secret %s/%s yet: made at the first intercept or preview", ns, name);
	} else {
		snprintf(err, errlen, "cannot read Secret %s/%s: %s", ns, name, why);
		cJSON_Delete(body);
		return -1;
	}
	cJSON_Delete(body);
	if ((sto.timer = evtimer_new(base, on_timer, NULL)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	sto.on = 1;
	return 0;
}

/* --- writing --- */

static void send_state(void);
static void put_done(void *arg, int status, cJSON *body, const char *err);

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (sto.req)
		return;
	if (!sto.sending) {
		sto.sending = sto.pending;
		sto.pending = NULL;
	}
	if (sto.sending)
		send_state();
}

static void
later(unsigned ms)
{
	struct timeval tv = kb_ms_tv(ms);

	evtimer_add(sto.timer, &tv);
}

/* A failed write: again later (1 s doubling to 30 s), with the newest
 * state if one came meanwhile. */
static void
retry(int status, const char *err)
{
	if (!sto.failing)
		log_warnx("cannot write Secret %s/%s (%d: %s): trying again", sto.ns, sto.name,
		    status, err && *err ? err : "no answer");
	sto.failing = 1;
	if (sto.pending) {
		text_free(sto.sending);
		sto.sending = NULL;
	}
	sto.retry_ms = sto.retry_ms ? sto.retry_ms * 2 : RETRY_MIN_MS;
	if (sto.retry_ms > RETRY_MAX_MS)
		sto.retry_ms = RETRY_MAX_MS;
	later(sto.retry_ms);
}

static void
reread_done(void *arg, int status, cJSON *body, const char *err)
{
	(void)arg;
	sto.req = NULL;
	if (status == 200) {
		sto.exists = 1;
		take_rv(body);
	} else if (status == 404) {
		sto.exists = 0;
	} else {
		retry(status, err);
		return;
	}
	/* This manager is the Secret's only writer: ours wins. */
	send_state();
}

static void
send_state(void)
{
	cJSON *o = incluster_secret(sto.ns, sto.name);
	char *b64 = kb_b64_encode(sto.sending, strlen(sto.sending)), path[512];

	if (!o || !b64 || !cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(o, "data"),
	    STORE_KEY, b64) || (sto.exists && sto.rv[0] && !cJSON_AddStringToObject(
	    cJSON_GetObjectItemCaseSensitive(o, "metadata"), "resourceVersion", sto.rv))) {
		cJSON_Delete(o);
		text_free(b64);
		retry(0, "out of memory");
		return;
	}
	path_of(path, sizeof(path), sto.exists);
	sto.req = kb_kube_request(sto.kube, sto.exists ? "PUT" : "POST", path, o, put_done, NULL);
	/* The request serialized its own copy. */
	cJSON_Delete(o);
	text_free(b64);
	if (!sto.req)
		retry(0, "cannot send the request");
}

static void
put_done(void *arg, int status, cJSON *body, const char *err)
{
	char path[512];

	(void)arg;
	sto.req = NULL;
	if (status == 200 || status == 201) {
		sto.exists = 1;
		take_rv(body);
		text_free(sto.sending);
		sto.sending = NULL;
		if (sto.failing)
			log_info("Secret %s/%s written again", sto.ns, sto.name);
		sto.failing = 0;
		sto.retry_ms = 0;
		if (sto.pending)
			later(DEBOUNCE_MS);
		return;
	}
	if (status == 409 || (status == 404 && sto.exists)) {
		/* Changed (or deleted, or made) by someone else since we read it. */
		log_warnx("Secret %s/%s was changed by someone else: writing ours over it",
		    sto.ns, sto.name);
		path_of(path, sizeof(path), 1);
		if ((sto.req = kb_kube_request(sto.kube, "GET", path, NULL, reread_done, NULL)) != NULL)
			return;
	}
	retry(status, err);
}

int
store_changed(char *err, size_t errlen)
{
	cJSON *p, *i;
	char *txt;

	if (!sto.on)
		return 0;
	p = preview_dump();
	i = icpt_dump(sto.icpts);
	txt = p && i ? store_encode(p, i, STORE_MAX, err, errlen) : NULL;
	if (!p || !i)
		snprintf(err, errlen, "out of memory");
	cJSON_Delete(p);
	cJSON_Delete(i);
	if (!txt)
		return -1;
	text_free(sto.pending);
	sto.pending = txt;
	if (!sto.req && !evtimer_pending(sto.timer, NULL))
		later(DEBOUNCE_MS);
	return 0;
}

void
store_close(void)
{
	if (!sto.on)
		return;
	sto.on = 0;
	if (sto.pending || sto.sending)
		log_warnx("the last change of the previews or intercepts was not written to "
		    "Secret %s/%s", sto.ns, sto.name);
	if (sto.req)
		kb_kube_cancel(sto.req);
	sto.req = NULL;
	event_free(sto.timer);
	sto.timer = NULL;
	text_free(sto.pending);
	text_free(sto.sending);
	sto.pending = sto.sending = NULL;
}
