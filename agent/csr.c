/* The manager as the kbridge.dev/developer signer (see csr.h): a watch on
 * the signer's CertificateSigningRequests (field selector
 * spec.signerName), each pending one checked (csr_check) and then approved
 * and signed, or denied with the reason. A request is answered once: one
 * in flight per uid, and every write carries the resourceVersion it was
 * decided on, so a stale event cannot sign a second time (409). */
#include "csr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "identity.h"
#include "kubeapi.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#define CSR_PATH "/apis/certificates.k8s.io/v1/certificatesigningrequests"
#define CSR_REQUEST_MAX (64 * 1024)	/* spec.request, base64 */

struct inflight {
	struct csr_signer *s;
	char uid[64];
	char name[254];
	char user[64];
	long seconds;
	EVP_PKEY *pub;
	struct kb_kube_req *req;
	int used;
};

struct csr_signer {
	struct kb_kube *kube;
	struct kb_kube_watch *w;
	char *ca_crt, *ca_key;
	struct inflight fl[CSR_MAX_INFLIGHT];
};

/* --- the checks --- */

static const char *const allowed_usages[] = { "client auth", "digital signature",
	"key encipherment", NULL };

static int
usage_ok(const char *u)
{
	const char *const *a;

	for (a = allowed_usages; *a; a++)
		if (strcmp(u, *a) == 0)
			return 1;
	return 0;
}

static int
key_ok(EVP_PKEY *k)
{
	char group[64];
	size_t len;

	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_EC:
		return EVP_PKEY_get_group_name(k, group, sizeof(group), &len) == 1 &&
		    (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0);
	case EVP_PKEY_RSA:
		return EVP_PKEY_get_bits(k) >= 2048 && EVP_PKEY_get_bits(k) <= 8192;
	}
	return 0;
}

/* The subject as RFC 2253 text ("CN=bob,O=x"), control characters escaped. */
static void
subject_text(X509_NAME *n, char *buf, size_t len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long got;

	snprintf(buf, len, "(unreadable)");
	if (bio && X509_NAME_print_ex(bio, n, 0, XN_FLAG_RFC2253) >= 0 &&
	    (got = BIO_get_mem_data(bio, &data)) >= 0)
		snprintf(buf, len, "%.*s", (int)(got > 200 ? 200 : got), data);
	if (buf[0] == '\0')
		snprintf(buf, len, "(empty)");
	BIO_free(bio);
}

/* Is the subject exactly one entry, CN=user? */
static int
subject_is(X509_NAME *n, const char *user)
{
	X509_NAME_ENTRY *e;
	unsigned char *cn = NULL;
	int len, same;

	if (X509_NAME_entry_count(n) != 1 || (e = X509_NAME_get_entry(n, 0)) == NULL ||
	    OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != NID_commonName ||
	    (len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(e))) < 0)
		return 0;
	same = (size_t)len == strlen(user) && memcmp(cn, user, len) == 0;
	OPENSSL_free(cn);
	return same;
}

int
csr_check(const char *pem, const char *username, const char *const *usages, size_t n,
    EVP_PKEY **pub, char *why, size_t whylen)
{
	X509_REQ *req = NULL;
	EVP_PKEY *k;
	BIO *bio;
	char subj[256];
	size_t i;
	int client = 0, rc = -1;

	*pub = NULL;
	ERR_clear_error();
	if (!kb_identity_name(username)) {
		snprintf(why, whylen, "user name '%.100s' cannot be a kbridge identity (1-63 "
		    "characters of a-z 0-9 . _ - starting with a letter or digit)", username);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (!usage_ok(usages[i])) {
			snprintf(why, whylen, "usage '%.60s' is not allowed (only client auth, "
			    "digital signature, key encipherment)", usages[i]);
			return -1;
		}
		client |= strcmp(usages[i], "client auth") == 0;
	}
	if (!client) {
		snprintf(why, whylen, "usages lack client auth");
		return -1;
	}
	if ((bio = BIO_new_mem_buf(pem, -1)) != NULL)
		req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (req == NULL) {
		snprintf(why, whylen, "spec.request is not a PEM certificate request");
		goto done;
	}
	if ((k = X509_REQ_get0_pubkey(req)) == NULL || X509_REQ_verify(req, k) != 1) {
		snprintf(why, whylen, "the request's signature does not verify with its key");
		goto done;
	}
	if (!key_ok(k)) {
		snprintf(why, whylen, "the key (%.20s, %d bits) is not accepted: use EC P-256 or "
		    "RSA of 2048 bits or more", OBJ_nid2sn(EVP_PKEY_get_base_id(k)),
		    EVP_PKEY_get_bits(k));
		goto done;
	}
	if (!subject_is(X509_REQ_get_subject_name(req), username)) {
		subject_text(X509_REQ_get_subject_name(req), subj, sizeof(subj));
		snprintf(why, whylen, "subject %s does not match the requesting user %s "
		    "(expected exactly CN=%s)", subj, username, username);
		goto done;
	}
	if (EVP_PKEY_up_ref(k) != 1) {
		snprintf(why, whylen, "out of memory");
		goto done;
	}
	*pub = k;
	rc = 0;
done:
	X509_REQ_free(req);
	ERR_clear_error();
	return rc;
}

long
csr_lifetime(double expiration_seconds)
{
	if (expiration_seconds <= 0 || expiration_seconds > CSR_MAX_SECONDS)
		return CSR_MAX_SECONDS;
	if (expiration_seconds < 600)
		return 600;
	return (long)expiration_seconds;
}

/* --- the objects --- */

static const cJSON *
get(const cJSON *o, const char *a, const char *b)
{
	o = cJSON_GetObjectItemCaseSensitive(o, a);
	return b ? cJSON_GetObjectItemCaseSensitive(o, b) : o;
}

static const char *
str(const cJSON *o, const char *a, const char *b)
{
	return cJSON_GetStringValue(get(o, a, b));
}

/* Has the request a condition of this type? */
static int
has_condition(const cJSON *obj, const char *type)
{
	const cJSON *c, *t;

	cJSON_ArrayForEach(c, get(obj, "status", "conditions"))
		if (cJSON_IsString(t = cJSON_GetObjectItemCaseSensitive(c, "type")) &&
		    strcmp(t->valuestring, type) == 0)
			return 1;
	return 0;
}

/* Created more than CSR_MAX_AGE_S ago (or no readable time)? */
static int
too_old(const cJSON *obj)
{
	const char *ts = str(obj, "metadata", "creationTimestamp");
	struct tm tm = { 0 };
	const char *end;
	time_t t;

	if (ts == NULL || (end = strptime(ts, "%Y-%m-%dT%H:%M:%SZ", &tm)) == NULL || *end ||
	    (t = timegm(&tm)) == (time_t)-1)
		return 1;
	return time(NULL) - t > CSR_MAX_AGE_S;
}

static struct inflight *
find_inflight(struct csr_signer *s, const char *uid)
{
	size_t i;

	for (i = 0; i < CSR_MAX_INFLIGHT; i++)
		if (s->fl[i].used && strcmp(s->fl[i].uid, uid) == 0)
			return &s->fl[i];
	return NULL;
}

static void
inflight_done(struct inflight *f)
{
	EVP_PKEY_free(f->pub);
	memset(f, 0, sizeof(*f));
}

/* obj with a condition added: a copy the caller frees. */
static cJSON *
with_condition(const cJSON *obj, const char *type, const char *reason, const char *message)
{
	cJSON *o = cJSON_Duplicate(obj, 1), *st, *conds, *c;

	if (o == NULL)
		return NULL;
	if ((st = cJSON_GetObjectItemCaseSensitive(o, "status")) == NULL)
		st = cJSON_AddObjectToObject(o, "status");
	if ((conds = cJSON_GetObjectItemCaseSensitive(st, "conditions")) == NULL)
		conds = cJSON_AddArrayToObject(st, "conditions");
	if ((c = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(conds, c) ||
	    !cJSON_AddStringToObject(c, "type", type) ||
	    !cJSON_AddStringToObject(c, "status", "True") ||
	    !cJSON_AddStringToObject(c, "reason", reason) ||
	    !cJSON_AddStringToObject(c, "message", message)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static void
denied(void *arg, int status, cJSON *body, const char *err)
{
	struct inflight *f = arg;

	(void)body;
	if (status == 200)
		log_info_for(f->user, "csr %s of %s: denied", f->name, f->user);
	else
		log_warnx("csr %s: cannot deny it: %s", f->name, err ? err : "no answer");
	inflight_done(f);
}

static void
signed_cb(void *arg, int status, cJSON *body, const char *err)
{
	struct inflight *f = arg;

	(void)body;
	if (status == 200)
		log_info_for(f->user, "csr %s: signed a certificate for %s (%ld s)", f->name,
		    f->user, f->seconds);
	else
		log_warnx("csr %s: cannot store the certificate: %s", f->name,
		    err ? err : "no answer");
	inflight_done(f);
}

/* Sign the approved request obj (the object as last read: its
 * resourceVersion guards against signing twice). */
static void
sign(struct inflight *f, const cJSON *obj)
{
	char path[512], err[300], *crt = NULL, *b64 = NULL;
	cJSON *o = NULL, *st;

	if (identity_user_cert(f->s->ca_crt, f->s->ca_key, f->pub, f->user, f->seconds, &crt,
	    err, sizeof(err)) < 0) {
		log_warnx("csr %s: cannot sign it: %s", f->name, err);
		goto fail;
	}
	if ((b64 = kb_b64_encode(crt, strlen(crt))) == NULL || (o = cJSON_Duplicate(obj, 1)) == NULL)
		goto oom;
	if ((st = cJSON_GetObjectItemCaseSensitive(o, "status")) == NULL &&
	    (st = cJSON_AddObjectToObject(o, "status")) == NULL)
		goto oom;
	cJSON_DeleteItemFromObjectCaseSensitive(st, "certificate");
	if (!cJSON_AddStringToObject(st, "certificate", b64))
		goto oom;
	snprintf(path, sizeof(path), "%s/%s/status", CSR_PATH, f->name);
	if ((f->req = kb_kube_request(f->s->kube, "PUT", path, o, signed_cb, f)) == NULL)
		goto oom;
	cJSON_Delete(o);
	free(b64);
	free(crt);
	return;
oom:
	log_warnx("csr %s: out of memory", f->name);
fail:
	cJSON_Delete(o);
	free(b64);
	free(crt);
	inflight_done(f);
}

static void
approved(void *arg, int status, cJSON *body, const char *err)
{
	struct inflight *f = arg;

	f->req = NULL;
	if (status != 200 || body == NULL) {
		log_warnx("csr %s: cannot approve it: %s", f->name, err ? err : "no answer");
		inflight_done(f);
		return;
	}
	sign(f, body);
}

/* Look at one request: answer it if it is pending and ours. */
static void
handle(struct csr_signer *s, const cJSON *obj)
{
	const char *name = str(obj, "metadata", "name"), *uid = str(obj, "metadata", "uid");
	const char *user = str(obj, "spec", "username"), *req64 = str(obj, "spec", "request");
	const char *signer = str(obj, "spec", "signerName");
	const char *usages[8];
	const cJSON *u, *exp = get(obj, "spec", "expirationSeconds");
	char why[512], path[512], *pem = NULL;
	struct inflight *f = NULL;
	cJSON *o = NULL;
	size_t i, n = 0, len;
	int is_approved = has_condition(obj, "Approved");

	if (!name || !uid || !signer || strcmp(signer, KB_SIGNER_DEVELOPER) != 0 ||
	    has_condition(obj, "Denied") || has_condition(obj, "Failed") ||
	    (str(obj, "status", "certificate") && *str(obj, "status", "certificate")) ||
	    find_inflight(s, uid) || strlen(uid) >= sizeof(f->uid) ||
	    strlen(name) >= sizeof(f->name))
		return;
	if (too_old(obj)) {
		log_debug("csr %s: pending for more than %d s, left alone", name, CSR_MAX_AGE_S);
		return;
	}
	for (i = 0; i < CSR_MAX_INFLIGHT && !f; i++)
		if (!s->fl[i].used)
			f = &s->fl[i];
	if (f == NULL) {
		log_warnx("csr %s: %d requests in flight already; it waits for the next list",
		    name, CSR_MAX_INFLIGHT);
		return;
	}
	f->used = 1;
	f->s = s;
	snprintf(f->uid, sizeof(f->uid), "%s", uid);
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->user, sizeof(f->user), "%.63s", user ? user : "");

	cJSON_ArrayForEach(u, get(obj, "spec", "usages")) {
		if (n == sizeof(usages) / sizeof(usages[0]) || !cJSON_IsString(u)) {
			snprintf(why, sizeof(why), "spec.usages: at most %zu strings",
			    sizeof(usages) / sizeof(usages[0]));
			goto deny;
		}
		usages[n++] = u->valuestring;
	}
	if (user == NULL || req64 == NULL || strlen(req64) > CSR_REQUEST_MAX ||
	    (pem = kb_b64_decode(req64, &len)) == NULL || strlen(pem) != len) {
		snprintf(why, sizeof(why), "spec.request is not a base64 PEM certificate request");
		goto deny;
	}
	if (csr_check(pem, user, usages, n, &f->pub, why, sizeof(why)) < 0)
		goto deny;
	free(pem);
	f->seconds = csr_lifetime(cJSON_IsNumber(exp) ? exp->valuedouble : 0);
	if (is_approved) {
		sign(f, obj);
		return;
	}
	snprintf(why, sizeof(why), "kbridge identity for %s", user);
	snprintf(path, sizeof(path), "%s/%s/approval", CSR_PATH, name);
	if ((o = with_condition(obj, "Approved", "KbridgeApproved", why)) == NULL ||
	    (f->req = kb_kube_request(s->kube, "PUT", path, o, approved, f)) == NULL) {
		log_warnx("csr %s: out of memory", name);
		inflight_done(f);
	}
	cJSON_Delete(o);
	return;
deny:
	free(pem);
	if (is_approved) {
		/* Approved by someone else: still not ours to sign. */
		log_warnx_for(f->user, "csr %s of %s: approved, but not signed: %s", name,
		    f->user, why);
		inflight_done(f);
		return;
	}
	log_info_for(f->user, "csr %s of %s: denying: %s", name, f->user, why);
	snprintf(path, sizeof(path), "%s/%s/approval", CSR_PATH, name);
	if ((o = with_condition(obj, "Denied", "KbridgeDenied", why)) == NULL ||
	    (f->req = kb_kube_request(s->kube, "PUT", path, o, denied, f)) == NULL) {
		log_warnx("csr %s: out of memory", name);
		inflight_done(f);
	}
	cJSON_Delete(o);
}

static void
on_sync(void *arg, cJSON *items)
{
	const cJSON *it;
	int n = 0;

	cJSON_ArrayForEach(it, items)
		if (n++ < CSR_MAX_PER_SYNC)
			handle(arg, it);
	if (n > CSR_MAX_PER_SYNC)
		log_warnx("csr: %d requests listed, looked at the first %d", n, CSR_MAX_PER_SYNC);
}

static void
on_event(void *arg, enum kb_kube_event_type type, cJSON *obj)
{
	if (type != KB_KUBE_DELETED)
		handle(arg, obj);
}

static void
on_error(void *arg, int status, const char *err)
{
	(void)arg;
	log_warnx("csr: watching certificate signing requests: %s (HTTP %d); retrying",
	    err ? err : "no answer", status);
}

struct csr_signer *
csr_signer_new(struct kb_kube *kube, const char *ca_crt,
    const char *ca_key, char *err, size_t errlen)
{
	const struct kb_kube_watch_cbs cbs = { .on_sync = on_sync, .on_event = on_event,
	    .on_error = on_error };
	struct kb_kube_watch_cbs c = cbs;
	struct csr_signer *s;

	if ((s = calloc(1, sizeof(*s))) == NULL || (s->ca_crt = strdup(ca_crt)) == NULL ||
	    (s->ca_key = strdup(ca_key)) == NULL)
		goto oom;
	s->kube = kube;
	c.arg = s;
	/* The API server filters by signer (a field selector CSRs support);
	 * KB_SIGNER_DEVELOPER, escaped. handle() checks it again. */
	if ((s->w = kb_kube_watch(kube, CSR_PATH "?fieldSelector=spec.signerName%3D"
	    "kbridge.dev%2Fdeveloper", &c)) == NULL)
		goto oom;
	log_info("csr: signing requests for %s (client certificates of at most %d s)",
	    KB_SIGNER_DEVELOPER, CSR_MAX_SECONDS);
	return s;
oom:
	snprintf(err, errlen, "out of memory");
	csr_signer_free(s);
	return NULL;
}

void
csr_signer_free(struct csr_signer *s)
{
	size_t i;

	if (s == NULL)
		return;
	if (s->w)
		kb_kube_watch_cancel(s->w);
	for (i = 0; i < CSR_MAX_INFLIGHT; i++)
		if (s->fl[i].used) {
			if (s->fl[i].req)
				kb_kube_cancel(s->fl[i].req);
			inflight_done(&s->fl[i]);
		}
	free(s->ca_crt);
	identity_free_secret(s->ca_key);
	free(s);
}
