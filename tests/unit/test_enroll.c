/* agent/enroll.c's pure checks of a sidecar's enrollment: the request (a
 * bounded token, an EC P-256 public key), the TokenReview answer (our
 * audience, a ServiceAccount, bound to one pod) and the pod (the very one,
 * not being deleted, of that ServiceAccount, injected, annotated with a
 * workload of the token's own namespace); and the sidecar certificate
 * signed for it is bound to exactly that workload. */
#include "../../agent/identity.c"
#include "../../agent/enroll.c"

#include "ok.h"

static char *
pub_pem(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out;
	long n;

	PEM_write_bio_PUBKEY(b, k);
	n = BIO_get_mem_data(b, &data);
	out = strndup(data, (size_t)n);
	BIO_free(b);
	return out;
}

/* A request body for token and key PEM (both JSON-escaped by cJSON). */
static char *
body(const char *token, const char *key)
{
	cJSON *j = cJSON_CreateObject();
	char *out;

	if (token)
		cJSON_AddStringToObject(j, "token", token);
	if (key)
		cJSON_AddStringToObject(j, "key", key);
	out = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return out;
}

static int
parses(const char *b, char *why, size_t len)
{
	char *tok = NULL;
	EVP_PKEY *pub = NULL;
	int rc = enroll_parse_request(b, strlen(b), &tok, &pub, why, len);

	if (rc == 0 && (!tok || !pub))
		rc = -2;
	free(tok);
	EVP_PKEY_free(pub);
	return rc;
}

static void
test_request(void)
{
	EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	char *good = pub_pem(p256), *k384 = pub_pem(p384), *krsa = pub_pem(rsa), *b, why[300];
	char *big = malloc(ENROLL_MAX_TOKEN + 2);

	ok(parses(b = body("eyJhbGciOi.x.y", good), why, sizeof(why)) == 0);
	free(b);
	ok(parses(b = body("eyJhbGciOi.x.y", k384), why, sizeof(why)) == -1 && strstr(why, "P-256"));
	free(b);
	ok(parses(b = body("eyJhbGciOi.x.y", krsa), why, sizeof(why)) == -1 && strstr(why, "P-256"));
	free(b);
	ok(parses(b = body(NULL, good), why, sizeof(why)) == -1 && strstr(why, "token"));
	free(b);
	ok(parses(b = body("", good), why, sizeof(why)) == -1);
	free(b);
	ok(parses(b = body("a b", good), why, sizeof(why)) == -1 && strstr(why, "character"));
	free(b);
	ok(parses(b = body("tok", NULL), why, sizeof(why)) == -1 && strstr(why, "key"));
	free(b);
	ok(parses(b = body("tok", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
	    why, sizeof(why)) == -1);
	free(b);
	memset(big, 'a', ENROLL_MAX_TOKEN + 1);
	big[ENROLL_MAX_TOKEN + 1] = '\0';
	ok(parses(b = body(big, good), why, sizeof(why)) == -1 && strstr(why, "token"));
	free(b);
	big[ENROLL_MAX_TOKEN] = '\0';	/* exactly the cap: fine */
	ok(parses(b = body(big, good), why, sizeof(why)) == 0);
	free(b);
	ok(parses("[1,2]", why, sizeof(why)) == -1 && parses("{", why, sizeof(why)) == -1);
	{
		char *huge = calloc(1, ENROLL_MAX_BODY + 2);
		char *tok = NULL;
		EVP_PKEY *pub = NULL;

		memset(huge, ' ', ENROLL_MAX_BODY + 1);
		ok(enroll_parse_request(huge, ENROLL_MAX_BODY + 1, &tok, &pub, why, sizeof(why)) ==
		    -1 && strstr(why, "too large") && !tok && !pub);
		free(huge);
	}
	free(big);
	free(good);
	free(k384);
	free(krsa);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(rsa);
}

#define REVIEW(auth, aud, user, extra) \
	"{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":" auth ",\"audiences\":" aud \
	",\"user\":{\"username\":\"" user "\",\"extra\":{" extra "}}}}"
#define POD_EXTRA \
	"\"authentication.kubernetes.io/pod-name\":[\"web-7c9-abcde\"]," \
	"\"authentication.kubernetes.io/pod-uid\":[\"11111111-2222\"]"

static int
reviewed(const char *json, struct enroll_who *who, char *why, size_t len)
{
	cJSON *j = cJSON_Parse(json);
	int rc = enroll_review_check(j, who, why, len);

	cJSON_Delete(j);
	return rc;
}

static void
test_review(void)
{
	struct enroll_who who;
	char why[300];
	cJSON *req = enroll_review_request("tok");

	ok(strcmp(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(
	    cJSON_GetObjectItem(req, "spec"), "audiences"), 0)), "kbridge") == 0 &&
	    strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(req, "spec"),
	    "token")), "tok") == 0);
	cJSON_Delete(req);
	ok(reviewed(REVIEW("true", "[\"kbridge\"]", "system:serviceaccount:default:default",
	    POD_EXTRA), &who, why, sizeof(why)) == 0);
	ok(strcmp(who.ns, "default") == 0 && strcmp(who.sa, "default") == 0 &&
	    strcmp(who.pod, "web-7c9-abcde") == 0 && strcmp(who.uid, "11111111-2222") == 0);
	/* not authenticated (another audience, expired, pod gone): the API's reason */
	ok(reviewed("{\"status\":{\"authenticated\":false,\"error\":\"[invalid bearer token, "
	    "token audiences [\\\"other\\\"] is invalid for the target audiences "
	    "[\\\"kbridge\\\"]]\"}}", &who, why, sizeof(why)) == -1 &&
	    strstr(why, "not valid for audience kbridge") && strstr(why, "other"));
	ok(reviewed("{\"status\":{}}", &who, why, sizeof(why)) == -1);
	ok(reviewed("{}", &who, why, sizeof(why)) == -1);
	/* authenticated but not for us: refused all the same */
	ok(reviewed(REVIEW("true", "[\"https://kubernetes.default.svc\"]",
	    "system:serviceaccount:default:default", POD_EXTRA), &who, why, sizeof(why)) == -1 &&
	    strstr(why, "audience"));
	ok(reviewed(REVIEW("true", "null", "system:serviceaccount:default:default", POD_EXTRA),
	    &who, why, sizeof(why)) == -1);
	/* a user's token, a malformed ServiceAccount name */
	ok(reviewed(REVIEW("true", "[\"kbridge\"]", "alice", POD_EXTRA), &who, why,
	    sizeof(why)) == -1 && strstr(why, "ServiceAccount"));
	ok(reviewed(REVIEW("true", "[\"kbridge\"]", "system:serviceaccount:default", POD_EXTRA),
	    &who, why, sizeof(why)) == -1);
	ok(reviewed(REVIEW("true", "[\"kbridge\"]", "system:serviceaccount:Bad_NS:sa", POD_EXTRA),
	    &who, why, sizeof(why)) == -1);
	/* not bound to a pod (a TokenRequest without boundObjectRef, a Secret token) */
	ok(reviewed(REVIEW("true", "[\"kbridge\"]", "system:serviceaccount:default:default", ""),
	    &who, why, sizeof(why)) == -1 && strstr(why, "bound to a pod"));
	ok(reviewed(REVIEW("true", "[\"kbridge\"]", "system:serviceaccount:default:default",
	    "\"authentication.kubernetes.io/pod-name\":[\"a\",\"b\"],"
	    "\"authentication.kubernetes.io/pod-uid\":[\"u\"]"), &who, why, sizeof(why)) == -1);
}

#define POD(ns, name, uid, sa, ann, extra_meta, containers) \
	"{\"metadata\":{\"namespace\":\"" ns "\",\"name\":\"" name "\",\"uid\":\"" uid "\"," \
	"\"annotations\":{" ann "}" extra_meta "},\"spec\":{\"serviceAccountName\":\"" sa "\"," \
	"\"containers\":" containers "}}"
#define INJ(v) "\"kbridge.dev/injected\":\"" v "\""
#define SIDE "[{\"name\":\"app\"},{\"name\":\"kbridge-sidecar\"}]"

static int
pod_ok(const char *json, char *wl, size_t wlen, char *why, size_t len)
{
	static const struct enroll_who who = { .ns = "default", .sa = "default",
		.pod = "web-7c9-abcde", .uid = "11111111-2222" };
	cJSON *j = cJSON_Parse(json);
	int rc = enroll_pod_check(j, &who, wl, wlen, why, len);

	cJSON_Delete(j);
	return rc;
}

static void
test_pod(void)
{
	char wl[64], why[300];

	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default",
	    INJ("web.default"), "", SIDE), wl, sizeof(wl), why, sizeof(why)) == 0 &&
	    strcmp(wl, "web") == 0);
	/* the workload is the pod's: echo's pod gets echo, whatever it wants */
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default",
	    INJ("echo.default"), "", SIDE), wl, sizeof(wl), why, sizeof(why)) == 0 &&
	    strcmp(wl, "echo") == 0);
	/* a pod of the same name made again (another uid): not the token's */
	ok(pod_ok(POD("default", "web-7c9-abcde", "99999999", "default", INJ("web.default"), "",
	    SIDE), wl, sizeof(wl), why, sizeof(why)) == -1 && strstr(why, "not the one"));
	ok(pod_ok(POD("other", "web-7c9-abcde", "11111111-2222", "default", INJ("web.default"),
	    "", SIDE), wl, sizeof(wl), why, sizeof(why)) == -1);
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default",
	    INJ("web.default"), ",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"", SIDE), wl,
	    sizeof(wl), why, sizeof(why)) == -1 && strstr(why, "deleted"));
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "builder",
	    INJ("web.default"), "", SIDE), wl, sizeof(wl), why, sizeof(why)) == -1 &&
	    strstr(why, "ServiceAccount"));
	/* not injected: no annotation, or no sidecar container */
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default", "", "", SIDE), wl,
	    sizeof(wl), why, sizeof(why)) == -1 && strstr(why, "not injected"));
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default",
	    INJ("web.default"), "", "[{\"name\":\"app\"}]"), wl, sizeof(wl), why,
	    sizeof(why)) == -1 && strstr(why, "not injected"));
	/* an annotation naming another namespace's workload, or none */
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default",
	    INJ("web.kube-system"), "", SIDE), wl, sizeof(wl), why, sizeof(why)) == -1 &&
	    strstr(why, "not WORKLOAD.default"));
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default", INJ("web"), "",
	    SIDE), wl, sizeof(wl), why, sizeof(why)) == -1);
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default",
	    INJ(".default"), "", SIDE), wl, sizeof(wl), why, sizeof(why)) == -1);
	ok(pod_ok(POD("default", "web-7c9-abcde", "11111111-2222", "default",
	    INJ("Web_1.default"), "", SIDE), wl, sizeof(wl), why, sizeof(why)) == -1);
	ok(pod_ok("{}", wl, sizeof(wl), why, sizeof(why)) == -1);
	ok(pod_ok("[]", wl, sizeof(wl), why, sizeof(why)) == -1);
}

/* The certificate: O=kbridge-sidecar, OU and CN the workload, for the
 * asker's key, the lifetime asked for. */
static void
test_cert(void)
{
	char *ca = NULL, *cakey = NULL, *crt = NULL, err[300], buf[200];
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = NULL;
	BIO *b;
	time_t now = time(NULL);

	ok(identity_ca_new(&ca, &cakey, err, sizeof(err)) == 0);
	ok(identity_sidecar_cert(ca, cakey, k, "web", "default", ENROLL_SECONDS, &crt, err,
	    sizeof(err)) == 0 && crt);
	b = BIO_new_mem_buf(crt, -1);
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	ok(x && X509_check_private_key(x, k));
	ok(x && X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationalUnitName,
	    buf, sizeof(buf)) > 0 && strcmp(buf, "web.default") == 0);
	ok(x && X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName,
	    buf, sizeof(buf)) > 0 && strcmp(buf, KB_ROLE_SIDECAR) == 0);
	ok(x && X509_cmp_time(X509_get0_notAfter(x), &(time_t){ now + ENROLL_SECONDS + 60 }) < 0 &&
	    X509_cmp_time(X509_get0_notAfter(x), &(time_t){ now + ENROLL_SECONDS - 60 }) > 0);
	X509_free(x);
	free(crt);
	crt = NULL;
	ok(identity_sidecar_cert(ca, cakey, k, "web", "de.fault", ENROLL_SECONDS, &crt, err,
	    sizeof(err)) == -1 && !crt);
	ok(identity_sidecar_cert(ca, cakey, k, "", "default", ENROLL_SECONDS, &crt, err,
	    sizeof(err)) == -1 && !crt);
	EVP_PKEY_free(k);
	free(ca);
	identity_free_secret(cakey);
}

/* Caps before any work: ENROLL_MAX_INFLIGHT in all, ENROLL_MAX_PER_SRC
 * from one address (the port does not matter); under them, a bad request
 * is a 400 without a TokenReview (no API client here: it would crash). */
static void
test_caps(void)
{
	struct enroller e = { 0 };
	struct enroll_req r[ENROLL_MAX_PER_SRC];
	char why[200];
	int status = 0;
	size_t i;

	ok(same_source("10.0.0.1:5", "10.0.0.1:6") && !same_source("10.0.0.1:5", "10.0.0.11:5"));
	ok(same_source("[fd00::1]:5", "[fd00::1]:6") && !same_source("[fd00::1]:5", "[fd00::2]:5"));
	memset(r, 0, sizeof(r));
	for (i = 0; i < ENROLL_MAX_PER_SRC; i++) {
		snprintf(r[i].peer, sizeof(r[i].peer), "10.0.0.1:%zu", 1000 + i);
		r[i].next = e.reqs;
		e.reqs = &r[i];
		e.inflight++;
	}
	ok(enroll_start(&e, "{}", 2, "10.0.0.1:2000", NULL, NULL, &status, why,
	    sizeof(why)) == NULL && status == 503 && strstr(why, "from this address"));
	status = 0;
	ok(enroll_start(&e, "{}", 2, "10.0.0.2:2000", NULL, NULL, &status, why,
	    sizeof(why)) == NULL && status == 400 && strstr(why, "token"));
	e.inflight = ENROLL_MAX_INFLIGHT;
	ok(enroll_start(&e, "{}", 2, "10.0.0.2:2000", NULL, NULL, &status, why,
	    sizeof(why)) == NULL && status == 503 && strstr(why, "at once;"));
}

int
main(void)
{
	test_request();
	test_review();
	test_pod();
	test_cert();
	test_caps();
	return ok_done();
}
