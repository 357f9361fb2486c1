/* agent/csr.c's checks of a developer's CertificateSigningRequest: only a
 * request signed by its own acceptable key, for exactly CN=<requesting
 * user> (a kbridge name), for client auth, passes; and the certificate
 * signed for it is the developer certificate `issue` makes, with the capped
 * lifetime. */
#include "../../agent/identity.c"
#include "../../agent/csr.c"

#include "ok.h"

static const char *const client[] = { "client auth", "digital signature" };

static EVP_PKEY *
ec(const char *curve)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}

static EVP_PKEY *
rsa(size_t bits)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
}

/* A PEM request for pub with subject entries ("CN", "alice", "O", "x",
 * NULL), signed by signer. */
static char *
request(EVP_PKEY *pub, EVP_PKEY *signer, ...)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	BIO *bio = BIO_new(BIO_s_mem());
	const char *field, *value;
	char *data, *s;
	long len;
	va_list ap;

	va_start(ap, signer);
	while ((field = va_arg(ap, const char *)) != NULL) {
		value = va_arg(ap, const char *);
		X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8, (const unsigned char *)value,
		    -1, -1, 0);
	}
	va_end(ap);
	X509_REQ_set_subject_name(req, n);
	X509_REQ_set_pubkey(req, pub);
	X509_REQ_sign(req, signer, EVP_sha256());
	PEM_write_bio_X509_REQ(bio, req);
	len = BIO_get_mem_data(bio, &data);
	s = strndup(data, (size_t)len);
	BIO_free(bio);
	X509_NAME_free(n);
	X509_REQ_free(req);
	return s;
}

static char why[512];

/* csr_check's verdict: 0 passes (and gives the key back), -1 refused. */
static int
check(const char *pem, const char *user, const char *const *usages, size_t n)
{
	EVP_PKEY *pub = NULL;
	int rc;

	why[0] = '\0';
	rc = csr_check(pem, user, usages, n, &pub, why, sizeof(why));
	if (rc == 0 && pub == NULL)
		return -2;
	if (rc != 0 && pub != NULL)
		return -3;
	EVP_PKEY_free(pub);
	if (rc)
		printf("# %s\n", why);
	return rc;
}

static void
test_checks(void)
{
	EVP_PKEY *k = ec("P-256"), *other = ec("P-256"), *r2048 = rsa(2048), *r1024 = rsa(1024);
	EVP_PKEY *p384 = ec("P-384");
	const char *const server[] = { "client auth", "server auth" };
	const char *const enc[] = { "digital signature", "key encipherment", "client auth" };
	const char *const sign_only[] = { "digital signature" };
	char *pem;

	pem = request(k, k, "CN", "alice", NULL);
	ok(check(pem, "alice", client, 2) == 0);
	ok(check(pem, "alice", client, 1) == 0);
	ok(check(pem, "alice", enc, 3) == 0);
	/* The requesting user is not the subject. */
	ok(check(pem, "bob", client, 2) == -1 &&
	    strstr(why, "subject CN=alice does not match the requesting user bob") != NULL);
	ok(check(pem, "alice", server, 2) == -1 && strstr(why, "usage 'server auth'") != NULL);
	ok(check(pem, "alice", sign_only, 1) == -1 && strstr(why, "lack client auth") != NULL);
	ok(check(pem, "alice", client, 0) == -1);
	/* Names kbridge cannot represent are refused, never mapped. */
	ok(check(pem, "system:serviceaccount:default:alice", client, 2) == -1 &&
	    strstr(why, "cannot be a kbridge identity") != NULL);
	ok(check(pem, "Alice", client, 2) == -1 && check(pem, "alice@example.com", client, 2) == -1);
	ok(check(pem, "", client, 2) == -1);
	free(pem);

	pem = request(k, k, "CN", "bob", NULL);
	ok(check(pem, "alice", client, 2) == -1 &&
	    strstr(why, "subject CN=bob does not match the requesting user alice") != NULL);
	free(pem);
	/* Anything besides the CN: a group (O) could make another role. */
	pem = request(k, k, "O", "system:masters", "CN", "alice", NULL);
	ok(check(pem, "alice", client, 2) == -1 && strstr(why, "CN=alice,O=system:masters") != NULL);
	free(pem);
	pem = request(k, k, "O", KB_ROLE_MANAGER, "CN", "alice", NULL);
	ok(check(pem, "alice", client, 2) == -1);
	free(pem);
	pem = request(k, k, "CN", "alice", "CN", "alice", NULL);
	ok(check(pem, "alice", client, 2) == -1);
	free(pem);
	pem = request(k, k, NULL);
	ok(check(pem, "alice", client, 2) == -1);
	free(pem);
	/* Signed by another key than the one it names. */
	pem = request(k, other, "CN", "alice", NULL);
	ok(check(pem, "alice", client, 2) == -1 && strstr(why, "signature does not verify"));
	free(pem);
	/* Keys. */
	pem = request(r2048, r2048, "CN", "alice", NULL);
	ok(check(pem, "alice", client, 2) == 0);
	free(pem);
	pem = request(r1024, r1024, "CN", "alice", NULL);
	ok(check(pem, "alice", client, 2) == -1 && strstr(why, "1024 bits") != NULL);
	free(pem);
	pem = request(p384, p384, "CN", "alice", NULL);
	ok(check(pem, "alice", client, 2) == -1 && strstr(why, "is not accepted") != NULL);
	free(pem);
	/* Not a request. */
	ok(check("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
	    "alice", client, 2) == -1 && strstr(why, "not a PEM certificate request"));
	ok(check("", "alice", client, 2) == -1);

	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
	EVP_PKEY_free(r2048);
	EVP_PKEY_free(r1024);
	EVP_PKEY_free(p384);
}

static void
test_lifetime(void)
{
	ok(csr_lifetime(0) == CSR_MAX_SECONDS && CSR_MAX_SECONDS == 86400);
	ok(csr_lifetime(-5) == CSR_MAX_SECONDS);
	ok(csr_lifetime(365.0 * 86400) == CSR_MAX_SECONDS);
	ok(csr_lifetime(3600) == 3600);
	ok(csr_lifetime(10) == 600);
}

/* The certificate signed for a request: the developer certificate. */
static void
test_sign(void)
{
	char *ca = NULL, *cakey = NULL, *crt = NULL, *pem, err[256], cn[64], o[64];
	EVP_PKEY *k = ec("P-256"), *pub = NULL;
	X509 *x, *cax;
	BIO *bio;
	int day;
	int sec;

	ok(identity_ca_new(&ca, &cakey, err, sizeof(err)) == 0);
	pem = request(k, k, "CN", "alice", NULL);
	ok(csr_check(pem, "alice", client, 2, &pub, why, sizeof(why)) == 0);
	ok(identity_user_cert(ca, cakey, pub, "alice", 3600, &crt, err, sizeof(err)) == 0);
	bio = BIO_new_mem_buf(crt, -1);
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	bio = BIO_new_mem_buf(ca, -1);
	cax = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ok(x && cax && X509_verify(x, X509_get0_pubkey(cax)) == 1);
	ok(X509_check_private_key(x, k) == 1);
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, o, sizeof(o));
	ok(strcmp(cn, "alice") == 0 && strcmp(o, KB_ROLE_USER) == 0 &&
	    X509_NAME_entry_count(X509_get_subject_name(x)) == 2);
	ok((X509_get_extended_key_usage(x) & (XKU_SSL_CLIENT | XKU_SSL_SERVER)) == XKU_SSL_CLIENT);
	ok(X509_check_ca(x) == 0);
	ok(ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(x)) == 1 && day == 0 &&
	    sec > 3590 && sec <= 3600);
	/* A name kbridge cannot carry is refused here too. */
	free(crt);
	crt = NULL;
	ok(identity_user_cert(ca, cakey, pub, "system:admin", 3600, &crt, err, sizeof(err)) == -1 &&
	    crt == NULL);
	ok(identity_user_cert(ca, "not a key", pub, "alice", 3600, &crt, err, sizeof(err)) == -1);
	X509_free(x);
	X509_free(cax);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(k);
	free(pem);
	free(ca);
	identity_free_secret(cakey);
}

/* What handle() reads off the objects. */
static void
test_objects(void)
{
	char now[32], old[32], json[512];
	time_t t = time(NULL);
	struct tm tm;
	cJSON *o;

	o = cJSON_Parse("{\"status\":{\"conditions\":[{\"type\":\"Approved\",\"status\":"
	    "\"True\",\"reason\":\"x\",\"message\":\"y\",\"lastUpdateTime\":\"z\"},"
	    "{\"type\":\"Failed\",\"status\":\"True\"}]}}");
	ok(has_condition(o, "Approved") && has_condition(o, "Failed") && !has_condition(o, "Denied"));
	cJSON_Delete(o);
	o = cJSON_Parse("{\"status\":{\"conditions\":[{\"status\":\"True\"},7,"
	    "{\"type\":1}]}}");
	ok(!has_condition(o, "Denied") && !has_condition(NULL, "Denied"));
	cJSON_Delete(o);

	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	t -= CSR_MAX_AGE_S + 60;
	strftime(old, sizeof(old), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	snprintf(json, sizeof(json), "{\"metadata\":{\"creationTimestamp\":\"%s\"}}", now);
	o = cJSON_Parse(json);
	ok(!too_old(o));
	cJSON_Delete(o);
	snprintf(json, sizeof(json), "{\"metadata\":{\"creationTimestamp\":\"%s\"}}", old);
	o = cJSON_Parse(json);
	ok(too_old(o));
	cJSON_Delete(o);
	o = cJSON_Parse("{\"metadata\":{\"creationTimestamp\":\"yesterday\"}}");
	ok(too_old(o));
	cJSON_Delete(o);

	o = cJSON_Parse("{\"metadata\":{\"name\":\"x\"}}");
	{
		cJSON *w = with_condition(o, "Denied", "KbridgeDenied", "subject CN=bob ...");

		ok(w && has_condition(w, "Denied") && !has_condition(o, "Denied") &&
		    strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(get(w,
		    "status", "conditions"), 0), "message")), "subject CN=bob ...") == 0);
		cJSON_Delete(w);
	}
	cJSON_Delete(o);
}

int
main(void)
{
	test_objects();
	test_checks();
	test_lifetime();
	test_sign();
	return ok_done();
}
