/* A developer's kbridge identity through a Kubernetes
 * CertificateSigningRequest (see identity.h): who the user is (a
 * SelfSubjectReview), the CA the manager publishes, then the cached
 * certificate or a new EC P-256 key (in memory), a CSR with CN=user, waited
 * for (polled: developers may get their request, not list or watch), and
 * the answer checked and cached in $XDG_CACHE_HOME/kbridge/HASH (mode 0700,
 * files 0600). */
#include "identity.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cmd.h"
#include "kube.h"
#include "kubeconfig.h"
#include "manifests.h"
#include "tls.h"
#include "util.h"

#define CSR_PATH	"/apis/certificates.k8s.io/v1/certificatesigningrequests"
/* The manager usually signs within tens of milliseconds: look again soon,
 * then back off to POLL_MS. */
#define POLL_FIRST_MS	15
#define POLL_MS		100
#define CACHE_FILE_MAX	(64 * 1024)
#define DEFAULT_TIMEOUT_MS 30000
#define JSON_CT		"application/json"

/* kb_csr_slept_us */
static uint64_t slept_us;

uint64_t
kb_csr_slept_us(void)
{
	return slept_us;
}

/* Is the certificate cert (PEM) for key, signed by ca, CN=user, with more
 * than min_left seconds left? Its notAfter into *expires. */
static int
cert_good(const char *cert, const char *key, const char *ca, const char *user, long min_left,
    time_t *expires)
{
	X509 *x = kb_pem_cert(cert), *c = kb_pem_cert(ca);
	EVP_PKEY *k = kb_pem_key(key);
	struct tm tm;
	char cn[128];
	int good = 0;

	if (x && c && k && X509_check_private_key(x, k) == 1 &&
	    X509_check_issued(c, x) == X509_V_OK && X509_verify(x, X509_get0_pubkey(c)) == 1 &&
	    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
	    sizeof(cn)) > 0 && strcmp(cn, user) == 0 &&
	    ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
		*expires = timegm(&tm);
		good = *expires - time(NULL) > min_left;
	}
	X509_free(x);
	X509_free(c);
	EVP_PKEY_free(k);
	ERR_clear_error();
	return good;
}

/* The user's cache directory for this server and user, made 0700:
 * $XDG_CACHE_HOME (absolute) or $HOME/.cache, then kbridge/HASH. */
static char *
cache_dir(const char *server, const char *user, char *err, size_t errlen)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	unsigned char md[EVP_MAX_MD_SIZE];
	char base[PATH_MAX], dir[PATH_MAX + 64], *key = NULL, hex[33];
	unsigned int mdlen, i;
	struct stat st;

	if (xdg && xdg[0] == '/')
		snprintf(base, sizeof(base), "%s/kbridge", xdg);
	else if (home && home[0] == '/')
		snprintf(base, sizeof(base), "%s/.cache/kbridge", home);
	else {
		snprintf(err, errlen, "no cache directory: set XDG_CACHE_HOME or HOME");
		return NULL;
	}
	if (asprintf(&key, "%s\n%s", server, user) < 0 ||
	    EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) != 1) {
		free(key);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	free(key);
	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	snprintf(dir, sizeof(dir), "%s/%s", base, hex);
	/* $XDG_CACHE_HOME or ~/.cache itself may be missing. */
	if (xdg == NULL || xdg[0] != '/') {
		char dot[PATH_MAX];

		snprintf(dot, sizeof(dot), "%s/.cache", home);
		if (mkdir(dot, 0700) < 0 && errno != EEXIST)
			goto fail_dir;
	} else if (mkdir(xdg, 0700) < 0 && errno != EEXIST) {
		goto fail_dir;
	}
	if ((mkdir(base, 0700) < 0 && errno != EEXIST) || (mkdir(dir, 0700) < 0 &&
	    errno != EEXIST))
		goto fail_dir;
	/* Ours and private: a directory someone else made or opened is not used. */
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077)) {
		snprintf(err, errlen, "cache directory %s is not a private directory of yours "
		    "(mode 0700)", dir);
		return NULL;
	}
	return strdup(dir);
fail_dir:
	snprintf(err, errlen, "cannot create cache directory %s: %s", dir, strerror(errno));
	return NULL;
}

static char *
read_cached(const char *dir, const char *file)
{
	char path[PATH_MAX + 128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077))
		return NULL;
	return kb_read_file(path, CACHE_FILE_MAX, NULL);
}

static int
write_cached(const char *dir, const char *file, const char *data, char *err, size_t errlen)
{
	char path[PATH_MAX + 128];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (kb_write_file(path, data, strlen(data), 0600) == 0)
		return 0;
	snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
	return -1;
}

/* The user name the API server knows kc's credentials as. */
static char *
whoami(struct kapi *k, char *err, size_t errlen)
{
	cJSON *body = cJSON_Parse("{\"apiVersion\":\"authentication.k8s.io/v1\","
	    "\"kind\":\"SelfSubjectReview\"}"), *resp = NULL;
	const cJSON *ui;
	char *user = NULL, why[512];
	long status;

	if (body == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (kreq(k, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", JSON_CT, body,
	    &status, &resp, err, errlen) == 0) {
		ui = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp,
		    "status"), "userInfo");
		if (status / 100 == 2 && jstr(ui, "username"))
			user = strdup(jstr(ui, "username"));
		else {
			api_error(status, resp, why, sizeof(why));
			snprintf(err, errlen, "cannot learn who you are (SelfSubjectReview): %s",
			    why);
		}
	}
	cJSON_Delete(body);
	cJSON_Delete(resp);
	return user;
}

/* The CA certificate the manager publishes in install_ns. */
static char *
fetch_ca(struct kapi *k, const char *ns, const char *user, char *err, size_t errlen)
{
	char path[256], why[512], *ca = NULL;
	const char *v;
	cJSON *resp = NULL;
	X509 *x;
	long status;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", ns, KB_CA_CONFIGMAP);
	if (kreq(k, "GET", path, NULL, NULL, &status, &resp, err, errlen) < 0)
		return NULL;
	v = jstr(cJSON_GetObjectItemCaseSensitive(resp, "data"), "ca.crt");
	if (status == 200 && v && (x = kb_pem_cert(v)) != NULL) {
		X509_free(x);
		ca = strdup(v);
	} else if (status == 200) {
		snprintf(err, errlen, "ConfigMap %s/%s holds no PEM ca.crt", ns, KB_CA_CONFIGMAP);
	} else if (status == 403) {
		snprintf(err, errlen, "%s may not read ConfigMap %s/%s (ask an admin to bind Role "
		    "%s in namespace %s and ClusterRole %s)", user, ns, KB_CA_CONFIGMAP,
		    KB_DEVELOPER_NAME, ns, KB_DEVELOPER_NAME);
	} else if (status == 404) {
		snprintf(err, errlen, "no ConfigMap %s/%s: is kbridge installed in namespace %s "
		    "and its manager running?", ns, KB_CA_CONFIGMAP, ns);
	} else {
		api_error(status, resp, why, sizeof(why));
		snprintf(err, errlen, "cannot read ConfigMap %s/%s: %s", ns, KB_CA_CONFIGMAP, why);
	}
	cJSON_Delete(resp);
	ERR_clear_error();
	return ca;
}

/* A PEM certificate request for key with subject CN=user. */
static char *
make_request(EVP_PKEY *key, const char *user)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	BIO *bio = NULL;
	char *data, *s = NULL;
	long len;

	if (req && n && X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)user, -1, -1, 0) && X509_REQ_set_subject_name(req, n) &&
	    X509_REQ_set_pubkey(req, key) && X509_REQ_sign(req, key, EVP_sha256()) > 0 &&
	    (bio = BIO_new(BIO_s_mem())) && PEM_write_bio_X509_REQ(bio, req) &&
	    (len = BIO_get_mem_data(bio, &data)) > 0 && (s = malloc(len + 1)) != NULL) {
		memcpy(s, data, len);
		s[len] = '\0';
	}
	BIO_free(bio);
	X509_NAME_free(n);
	X509_REQ_free(req);
	return s;
}

/* The CertificateSigningRequest object for request (PEM). */
static cJSON *
csr_object(const char *user, const char *request)
{
	cJSON *o = cJSON_CreateObject(), *meta, *spec, *usages;
	char gen[96], *b64 = kb_b64_encode(request, strlen(request)), *p;

	/* An object name: '_' (allowed in kbridge names) is not. */
	snprintf(gen, sizeof(gen), "kbridge-%s-", user);
	for (p = gen; *p; p++)
		if (*p == '_')
			*p = '-';
	cJSON_AddStringToObject(o, "apiVersion", "certificates.k8s.io/v1");
	cJSON_AddStringToObject(o, "kind", "CertificateSigningRequest");
	meta = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(meta, "generateName", gen);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(meta, "labels"), KB_LABEL_PART_OF,
	    "kbridge");
	spec = cJSON_AddObjectToObject(o, "spec");
	cJSON_AddStringToObject(spec, "signerName", KB_SIGNER_NAME);
	cJSON_AddNumberToObject(spec, "expirationSeconds", KB_IDENTITY_SECONDS);
	usages = cJSON_AddArrayToObject(spec, "usages");
	cJSON_AddItemToArray(usages, cJSON_CreateString("client auth"));
	cJSON_AddItemToArray(usages, cJSON_CreateString("digital signature"));
	if (b64 == NULL || !cJSON_AddStringToObject(spec, "request", b64) ||
	    cJSON_GetArraySize(usages) != 2) {
		cJSON_Delete(o);
		o = NULL;
	}
	free(b64);
	return o;
}

/* The condition of type (Denied, Failed) of a CSR, its message into why. */
static int
condition(const cJSON *csr, const char *type, char *why, size_t len)
{
	const cJSON *c;
	char buf[400];

	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
	    csr, "status"), "conditions"))
		if (jstr(c, "type") && strcmp(jstr(c, "type"), type) == 0) {
			snprintf(why, len, "%s", shown(orelse(jstr(c, "message"),
			    orelse(jstr(c, "reason"), "no reason given")), buf, sizeof(buf)));
			return 1;
		}
	return 0;
}

/* A CSR name the API server made from our generateName: safe in a path. */
static int
name_ok(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-");

	return n > 0 && n <= 253 && s[n] == '\0' && s[0] != '.' && !strstr(s, "..");
}

/* Create the CSR and wait for its certificate (PEM). */
static char *
request_cert(struct kapi *k, const char *user, const char *request, int timeout_ms,
    char **name, char *err, size_t errlen)
{
	cJSON *obj = csr_object(user, request), *resp = NULL;
	char path[512], why[512], *cert = NULL, buf[SHOWN_MAX];
	const char *v;
	uint64_t until = kb_now_ms() + (uint64_t)timeout_ms;
	size_t len;
	int wait_ms = POLL_FIRST_MS;
	long status;

	*name = NULL;
	if (obj == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (kreq(k, "POST", CSR_PATH, JSON_CT, obj, &status, &resp, err, errlen) < 0)
		goto out;
	if (status == 403) {
		snprintf(err, errlen, "%s may not create certificatesigningrequests (ask an admin "
		    "to bind ClusterRole %s)", shown(user, buf, sizeof(buf)), KB_DEVELOPER_NAME);
		goto out;
	}
	v = jstr(cJSON_GetObjectItemCaseSensitive(resp, "metadata"), "name");
	if (status != 201 || v == NULL || !name_ok(v)) {
		api_error(status, resp, why, sizeof(why));
		snprintf(err, errlen, "cannot create a certificate signing request: %s", why);
		goto out;
	}
	*name = strdup(v);
	snprintf(path, sizeof(path), "%s/%s", CSR_PATH, v);
	for (;;) {
		cJSON_Delete(resp);
		resp = NULL;
		if (kreq(k, "GET", path, NULL, NULL, &status, &resp, err, errlen) < 0)
			goto out;
		if (status != 200) {
			api_error(status, resp, why, sizeof(why));
			snprintf(err, errlen, "cannot read certificate signing request %s: %s",
			    *name, why);
			goto out;
		}
		if (condition(resp, "Denied", why, sizeof(why)) ||
		    condition(resp, "Failed", why, sizeof(why))) {
			snprintf(err, errlen, "certificate signing request %s was %s: %s", *name,
			    condition(resp, "Denied", buf, sizeof(buf)) ? "denied" : "failed", why);
			goto out;
		}
		if ((v = jstr(cJSON_GetObjectItemCaseSensitive(resp, "status"), "certificate"))) {
			if ((cert = kb_b64_decode(v, &len)) == NULL || strlen(cert) != len) {
				free(cert);
				cert = NULL;
				snprintf(err, errlen, "certificate signing request %s: the "
				    "certificate is not base64 PEM", *name);
			}
			goto out;
		}
		if (kb_now_ms() >= until || interrupted) {
			snprintf(err, errlen, "no certificate for request %s after %d s (is the "
			    "kbridge manager running?)", *name, timeout_ms / 1000);
			goto out;
		}
		{
			uint64_t t0 = kapi_now_us();

			usleep((unsigned)wait_ms * 1000);
			wait_ms = wait_ms * 2 > POLL_MS ? POLL_MS : wait_ms * 2;
			slept_us += kapi_now_us() - t0;
		}
	}
out:
	cJSON_Delete(obj);
	cJSON_Delete(resp);
	return cert;
}

void
kb_csr_ident_free(struct kb_csr_ident *id)
{
	free(id->cert_pem);
	kb_free_secret(id->key_pem);
	free(id->ca_pem);
	free(id->user);
	free(id->cache_dir);
	free(id->csr);
	memset(id, 0, sizeof(*id));
}

/* A new key, its certificate through a CSR, checked and cached. */
static int
fresh(struct kapi *k, struct kb_csr_ident *id, int timeout_ms, char *err, size_t errlen)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	char *request = NULL;
	int rc = -1;

	if (key == NULL || (id->key_pem = kb_key_pem(key)) == NULL ||
	    (request = make_request(key, id->user)) == NULL) {
		snprintf(err, errlen, "cannot make a key and certificate request");
		goto out;
	}
	if ((id->cert_pem = request_cert(k, id->user, request, timeout_ms, &id->csr, err,
	    errlen)) == NULL)
		goto out;
	if (!cert_good(id->cert_pem, id->key_pem, id->ca_pem, id->user, 0, &id->expires)) {
		snprintf(err, errlen, "the certificate of request %s is not for your key and "
		    "name, signed by the manager's CA", id->csr);
		goto out;
	}
	/* The key first: a certificate without its key is of no use. */
	if (write_cached(id->cache_dir, "key.pem", id->key_pem, err, errlen) < 0 ||
	    write_cached(id->cache_dir, "cert.pem", id->cert_pem, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	EVP_PKEY_free(key);
	free(request);
	ERR_clear_error();
	return rc;
}

int
kb_csr_identity_ex(struct kb_kubeconfig *kc, const char *install_ns, int timeout_ms,
    struct kb_csr_ident *id, char *err, size_t errlen)
{
	struct kapi k = { .kc = kc };
	char buf[SHOWN_MAX];

	memset(id, 0, sizeof(*id));
	if (timeout_ms <= 0)
		timeout_ms = DEFAULT_TIMEOUT_MS;
	if ((id->user = whoami(&k, err, errlen)) == NULL)
		goto fail;
	if (!kb_identity_name(id->user)) {
		snprintf(err, errlen, "you are '%s' to Kubernetes, which cannot be a kbridge "
		    "identity (1-%d characters of a-z 0-9 . _ - starting with a letter or digit)",
		    shown(id->user, buf, sizeof(buf)), KB_IDENTITY_NAME_MAX);
		goto fail;
	}
	if ((id->ca_pem = fetch_ca(&k, install_ns, id->user, err, errlen)) == NULL ||
	    (id->cache_dir = cache_dir(kb_kubeconfig_server(kc), id->user, err, errlen)) == NULL)
		goto fail;
	id->cert_pem = read_cached(id->cache_dir, "cert.pem");
	id->key_pem = read_cached(id->cache_dir, "key.pem");
	if (id->cert_pem && id->key_pem && cert_good(id->cert_pem, id->key_pem, id->ca_pem,
	    id->user, KB_IDENTITY_MIN_LEFT_S, &id->expires))
		goto done;
	free(id->cert_pem);
	kb_free_secret(id->key_pem);
	id->cert_pem = id->key_pem = NULL;
	if (fresh(&k, id, timeout_ms, err, errlen) == 0)
		goto done;
fail:
	kb_csr_ident_free(id);
	curl_easy_cleanup(k.c);	/* kc is the caller's */
	return -1;
done:
	curl_easy_cleanup(k.c);
	return 0;
}

int
kb_csr_identity(struct kb_kubeconfig *kc, const char *install_ns, int timeout_ms,
    char **cert_pem, char **key_pem, char **ca_pem, char **user, char *err, size_t errlen)
{
	struct kb_csr_ident id;

	if (kb_csr_identity_ex(kc, install_ns, timeout_ms, &id, err, errlen) < 0)
		return -1;
	*cert_pem = id.cert_pem;
	*key_pem = id.key_pem;
	*ca_pem = id.ca_pem;
	*user = id.user;
	id.cert_pem = id.key_pem = id.ca_pem = id.user = NULL;
	kb_csr_ident_free(&id);
	return 0;
}

/* --- kbridge login --- */

enum { OPT_KUBECONFIG = 256, OPT_CONTEXT, OPT_TIMEOUT };

static void
login_print(const struct kb_csr_ident *id, enum output out)
{
	char when[64];
	struct tm tm;
	cJSON *j;

	gmtime_r(&id->expires, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (out == OUT_TEXT) {
		printf("user %s: certificate valid until %s (%s), in %s\n", id->user, when,
		    id->csr ? "new" : "cached", id->cache_dir);
		return;
	}
	j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "user", id->user);
	cJSON_AddStringToObject(j, "expires", when);
	cJSON_AddStringToObject(j, "cache", id->cache_dir);
	cJSON_AddBoolToObject(j, "reused", id->csr == NULL);
	if (id->csr)
		cJSON_AddStringToObject(j, "csr", id->csr);
	print_json(j);
	cJSON_Delete(j);
}

int
cmd_login(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		LONGOPT_NAMESPACE,
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *file = NULL, *context = NULL, *ns = KB_INSTALL_NS_DEFAULT;
	enum output out = OUT_TEXT;
	struct kapi k = { 0 };
	struct kb_csr_ident id;
	unsigned long secs = DEFAULT_TIMEOUT_MS / 1000;
	char err[1024], buf[SHOWN_MAX];
	int ch, ret;

	while ((ch = next_opt(argc, argv, ":n:o:h", opts)) != -1) {
		if (ch == OPT_KUBECONFIG)
			file = optarg;
		else if (ch == OPT_CONTEXT)
			context = optarg;
		else if (ch == OPT_TIMEOUT) {
			if (kb_parse_num(optarg, 1, 600, NULL, &secs) < 0) {
				errorx("login: --timeout must be 1 to 600 seconds, not '%s'",
				    shown(optarg, buf, sizeof(buf)));
				return EXIT_USAGE;
			}
		} else if (!std_opt(ch, argv, &ns, &out, &ret))
			return ret;
	}
	if (no_operands(argc, argv) == -1 || namespace_arg(argv[0], ns) == -1)
		return EXIT_USAGE;
	if (load_kubeconfig("login", file, context, &k) < 0)
		return 1;
	catch_signals();
	if (kb_csr_identity_ex(k.kc, ns, (int)secs * 1000, &id, err, sizeof(err)) < 0) {
		errorx("%s", err);
		kb_kubeconfig_free(k.kc);
		return 1;
	}
	login_print(&id, out);
	kb_csr_ident_free(&id);
	kb_kubeconfig_free(k.kc);
	return 0;
}
