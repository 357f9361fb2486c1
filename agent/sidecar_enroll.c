/* The sidecar's enrollment request (see sidecar_enroll.h): one blocking
 * HTTPS POST made with OpenSSL, before the event loop starts (and from the
 * renewal thread). */
#include "sidecar_enroll.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/objects.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

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

/* A TCP connection to hostport with send and receive timeouts, or -1. */
static int
dial(const char *host, uint16_t port, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL, *p;
	struct timeval tv = kb_ms_tv(SC_ENROLL_TIMEOUT_MS);
	char ps[8];
	int fd = -1, e;

	snprintf(ps, sizeof(ps), "%u", port);
	if ((e = getaddrinfo(host, ps, &hints, &ai)) != 0) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(e));
		return -1;
	}
	for (p = ai; p; p = p->ai_next) {
		if ((fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, 0)) == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, p->ai_addr, p->ai_addrlen) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
		errno = e;
	}
	if (fd == -1)
		snprintf(err, errlen, "%s:%u: %s", host, port, strerror(errno));
	freeaddrinfo(ai);
	return fd;
}

/* A TLS client checking the server against ca_pem (every certificate in
 * it) and host (a name or an address), or NULL. */
static SSL *
tls_for(int fd, const char *host, const char *ca_pem, SSL_CTX **ctxp)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	BIO *b = BIO_new_mem_buf(ca_pem, -1);
	X509 *x;
	SSL *ssl = NULL;
	int n = 0;
	unsigned char ip[16];

	*ctxp = ctx;
	if (!ctx || !b)
		goto out;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		n += X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) == 1;
		X509_free(x);
	}
	ERR_clear_error();
	if (n == 0 || (ssl = SSL_new(ctx)) == NULL)
		goto out;
	SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	} else {
		SSL_set_tlsext_host_name(ssl, host);
		SSL_set1_host(ssl, host);
	}
	SSL_set_fd(ssl, fd);
out:
	BIO_free(b);
	return ssl;
}

/* The answer of a Connection: close HTTP/1.1 server: status and body (the
 * rest after the head) into a. 0, or -1 with err. */
static int
read_answer(SSL *ssl, struct answer *a, long *status, char *err, size_t errlen)
{
	size_t cap = SC_ENROLL_MAX_ANSWER + 8192, len = 0;
	char *buf = malloc(cap + 1), *end, *te;
	int n;

	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while ((n = SSL_read(ssl, buf + len, (int)(cap - len))) > 0)
		if ((len += (size_t)n) == cap)
			break;
	buf[len] = '\0';
	if (len == cap) {
		a->too_big = 1;
		snprintf(err, errlen, "answer too large");
	} else if (sscanf(buf, "HTTP/1.%*1[01] %3ld", status) != 1 ||
	    (end = strstr(buf, "\r\n\r\n")) == NULL) {
		snprintf(err, errlen, "no HTTP answer");
	} else if ((te = strcasestr(buf, "\r\ntransfer-encoding:")) != NULL && te < end) {
		snprintf(err, errlen, "a chunked answer (not expected)");
	} else {
		a->len = len - (size_t)(end + 4 - buf);
		if ((a->buf = malloc(a->len + 1)) != NULL) {
			memcpy(a->buf, end + 4, a->len);
			a->buf[a->len] = '\0';
			free(buf);
			return 0;
		}
		snprintf(err, errlen, "out of memory");
	}
	free(buf);
	return -1;
}

/* POST body to https://hostport/enroll: 0 with the answer's body in a and
 * *status, or -1 with err. One blocking request with OpenSSL (no HTTP
 * library: the sidecar stays free of libcurl's shared objects), each read
 * and write bounded by SC_ENROLL_TIMEOUT_MS. */
static int
post(const char *hostport, const char *ca_pem, const char *body, struct answer *a,
    long *status, char *err, size_t errlen)
{
	char host[256], head[512], why[300];
	uint16_t port;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	int fd, rc = -1;
	long v;

	*status = 0;
	if (kb_hostport_parse(hostport, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "enroll: bad address %s", hostport);
		return -1;
	}
	if ((fd = dial(host, port, why, sizeof(why))) == -1) {
		snprintf(err, errlen, "enroll at https://%s/enroll: %s", hostport, why);
		return -1;
	}
	if ((ssl = tls_for(fd, host, ca_pem, &ctx)) == NULL) {
		snprintf(err, errlen, "enroll: no usable CA certificate");
		goto out;
	}
	if (SSL_connect(ssl) != 1) {
		v = SSL_get_verify_result(ssl);
		snprintf(err, errlen, "enroll at https://%s/enroll: TLS: %s", hostport,
		    v != X509_V_OK ? X509_verify_cert_error_string(v) : "handshake failed");
		goto out;
	}
	snprintf(head, sizeof(head), "POST /enroll HTTP/1.1\r\nHost: %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n", hostport, strlen(body));
	if (SSL_write(ssl, head, (int)strlen(head)) <= 0 ||
	    SSL_write(ssl, body, (int)strlen(body)) <= 0) {
		snprintf(err, errlen, "enroll at https://%s/enroll: the request was not sent",
		    hostport);
		goto out;
	}
	if (read_answer(ssl, a, status, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "enroll at https://%s/enroll: %s", hostport, why);
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return rc;
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

/* ---- renewal in a thread ----
 *
 * The thread runs sidecar_enroll() only, on the strings it was given
 * (borrowed, read-only while it runs) and into this struct's result
 * fields; the loop reads those only after pthread_join() in renew_done()
 * or sc_renewal_free(). agent/sidecar.h says what the sidecar shares with
 * it and why sendmany's per-thread ring is not involved. */

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
