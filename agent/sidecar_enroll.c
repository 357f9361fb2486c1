/* The sidecar's enrollment request (see sidecar_enroll.h), with libcurl's
 * easy interface: it runs once before the event loop starts. */
#include "sidecar_enroll.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <curl/curl.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "profile.h"
#include "tls.h"
#include "util.h"

#include <unistd.h>

#define TOKEN_MAX (8 << 10)

struct answer {
	char *buf;
	size_t len;
	int too_big;
};

static size_t
on_data(char *ptr, size_t size, size_t n, void *arg)
{
	struct answer *a = arg;
	char *nb;

	n *= size;
	if (a->len + n > SC_ENROLL_MAX_ANSWER) {
		a->too_big = 1;
		return 0;
	}
	if ((nb = realloc(a->buf, a->len + n + 1)) == NULL)
		return 0;
	a->buf = nb;
	memcpy(a->buf + a->len, ptr, n);
	a->len += n;
	a->buf[a->len] = '\0';
	return n;
}

/* PEM text of k's private or public half (malloc'd), or NULL. */
static char *
pem_of(EVP_PKEY *k, int private)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (b && (private ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) :
	    PEM_write_bio_PUBKEY(b, k)) && (n = BIO_get_mem_data(b, &data)) > 0 &&
	    (out = malloc((size_t)n + 1)) != NULL) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
	}
	BIO_free(b);
	return out;
}

/* The request body, or NULL. */
static char *
request_body(const char *token_file, EVP_PKEY *k, char *err, size_t errlen)
{
	size_t n;
	char *tok = kb_read_file(token_file, TOKEN_MAX, &n), *pub = pem_of(k, 0), *out = NULL;
	cJSON *j = cJSON_CreateObject();

	if (!tok)
		snprintf(err, errlen, "cannot read the token %s", token_file);
	else {
		while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r'))
			tok[--n] = '\0';
		if (pub && j && cJSON_AddStringToObject(j, "token", tok) &&
		    cJSON_AddStringToObject(j, "key", pub))
			out = cJSON_PrintUnformatted(j);
		if (!out)
			snprintf(err, errlen, "out of memory");
		OPENSSL_cleanse(tok, n);
	}
	cJSON_Delete(j);	/* holds a copy of the token: short-lived */
	free(tok);
	free(pub);
	return out;
}

/* POST body to https://hostport/enroll: 0 with the answer's body in a and
 * *status, or -1 with err. */
static int
post(const char *hostport, const char *ca_pem, const char *body, struct answer *a,
    long *status, char *err, size_t errlen)
{
	struct curl_blob blob = { .data = (void *)ca_pem, .len = strlen(ca_pem),
	    .flags = CURL_BLOB_COPY };
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	char url[400];
	CURL *c = curl_easy_init();
	CURLcode rc = CURLE_OUT_OF_MEMORY;

	snprintf(url, sizeof(url), "https://%s/enroll", hostport);
	if (c && h) {
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
		curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)SC_ENROLL_TIMEOUT_MS);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
		rc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	}
	if (rc != CURLE_OK)
		snprintf(err, errlen, "enroll at %s: %s", url, a->too_big ? "answer too large" :
		    curl_easy_strerror(rc));
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return rc == CURLE_OK ? 0 : -1;
}

/* The certificate's notAfter and its workload (OU) into wl, or -1 when
 * crt is not a certificate for k bound to a workload. */
static long long
cert_expiry(const char *crt, EVP_PKEY *k, char *wl, size_t wlen)
{
	BIO *b = BIO_new_mem_buf(crt, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	struct tm tm;
	long long t = -1;

	if (x && X509_check_private_key(x, k) && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) &&
	    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationalUnitName, wl,
	    (int)wlen) > 0)
		t = (long long)timegm(&tm);
	X509_free(x);
	BIO_free(b);
	return t;
}

/* The answer into p: 0, or -1 with err. */
static int
take_answer(const struct answer *a, long status, EVP_PKEY *k, const char *ca_pem,
    const char *manager, struct kb_profile *p, long long *expires, char *wl, size_t wlen,
    char *err, size_t errlen)
{
	cJSON *j = NULL;
	const char *crt;
	char *line;
	int rc = -1;

	if (status != 200) {
		line = a->buf ? a->buf : "";
		line[strcspn(line, "\r\n")] = '\0';
		snprintf(err, errlen, "enrollment: HTTP %ld: %.300s", status, *line ? line :
		    "no reason given");
		return -1;
	}
	if (!a->buf || (j = cJSON_Parse(a->buf)) == NULL ||
	    (crt = cJSON_GetStringValue(cJSON_GetObjectItem(j, "certificate"))) == NULL ||
	    (*expires = cert_expiry(crt, k, wl, wlen)) < 0) {
		snprintf(err, errlen, "enrollment: the answer holds no certificate for our key");
		goto done;
	}
	memset(p, 0, sizeof(*p));
	p->manager = strdup(manager);
	p->role = strdup(KB_ROLE_SIDECAR);
	p->name = strdup(wl);
	p->ca_pem = strdup(ca_pem);
	p->cert_pem = strdup(crt);
	p->key_pem = pem_of(k, 1);
	if (!p->manager || !p->role || !p->name || !p->ca_pem || !p->cert_pem || !p->key_pem) {
		kb_profile_free(p);
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	rc = 0;
done:
	cJSON_Delete(j);
	return rc;
}

int
sidecar_enroll(const char *hostport, const char *token_file, const char *ca_pem,
    const char *manager, struct kb_profile *p, long long *expires, char *workload, size_t wlen,
    char *err, size_t errlen)
{
	struct answer a = { 0 };
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	char *body = NULL;
	long status = 0;
	int rc = -1;

	memset(p, 0, sizeof(*p));
	if (!k)
		snprintf(err, errlen, "cannot generate a key");
	else if ((body = request_body(token_file, k, err, errlen)) != NULL &&
	    post(hostport, ca_pem, body, &a, &status, err, errlen) == 0)
		rc = take_answer(&a, status, k, ca_pem, manager, p, expires, workload, wlen, err,
		    errlen);
	if (body) {
		OPENSSL_cleanse(body, strlen(body));
		free(body);
	}
	free(a.buf);
	EVP_PKEY_free(k);
	return rc;
}

/* ---- renewal in a thread ---- */

struct sc_renewal {
	const char *hostport, *token_file, *ca_pem, *manager;
	pthread_t th;
	int started;
	int fds[2];		/* the thread writes a byte to fds[1] when done */
	struct event *ev;
	sc_renewed_cb done;
	void *arg;
	/* the thread's result, read after it wrote the byte */
	int rc;
	struct kb_profile p;
	long long expires;
	char workload[130];
	char err[400];
};

static void *
renew_thread(void *arg)
{
	struct sc_renewal *r = arg;
	char one = 1;

	r->rc = sidecar_enroll(r->hostport, r->token_file, r->ca_pem, r->manager, &r->p,
	    &r->expires, r->workload, sizeof(r->workload), r->err, sizeof(r->err));
	while (write(r->fds[1], &one, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

static void
renew_done(evutil_socket_t fd, short what, void *arg)
{
	struct sc_renewal *r = arg;
	char b;

	(void)what;
	if (read(fd, &b, 1) != 1)
		return;
	pthread_join(r->th, NULL);
	r->started = 0;
	r->done(r->arg, r->rc, &r->p, r->workload, r->expires, r->err);
}

struct sc_renewal *
sc_renewal_start(struct event_base *base, const char *hostport, const char *token_file,
    const char *ca_pem, const char *manager, sc_renewed_cb done, void *arg)
{
	struct sc_renewal *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->fds[0] = r->fds[1] = -1;
	r->hostport = hostport;
	r->token_file = token_file;
	r->ca_pem = ca_pem;
	r->manager = manager;
	r->done = done;
	r->arg = arg;
	if (pipe2(r->fds, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    (r->ev = event_new(base, r->fds[0], EV_READ, renew_done, r)) == NULL ||
	    event_add(r->ev, NULL) < 0 || pthread_create(&r->th, NULL, renew_thread, r) != 0) {
		sc_renewal_free(r);
		return NULL;
	}
	r->started = 1;
	return r;
}

void
sc_renewal_free(struct sc_renewal *r)
{
	if (!r)
		return;
	if (r->started) {
		pthread_join(r->th, NULL);
		kb_profile_free(&r->p);
	}
	if (r->ev)
		event_free(r->ev);
	if (r->fds[0] >= 0)
		close(r->fds[0]);
	if (r->fds[1] >= 0)
		close(r->fds[1]);
	free(r);
}
