/* OpenSSL contexts for TLS 1.3 with mutual authentication against the
 * cluster CA, and reading a peer's role and name from its certificate. */
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

X509 *
kb_pem_cert(const char *pem)
{
	BIO *bio;
	X509 *x;

	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL)
		return NULL;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	return x;
}

EVP_PKEY *
kb_pem_key(const char *pem)
{
	BIO *bio;
	EVP_PKEY *k;

	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL)
		return NULL;
	k = PEM_read_bio_PrivateKey(bio, NULL, kb_tls_no_passphrase, NULL);
	BIO_free(bio);
	return k;
}

/* Copy a memory BIO's contents into a NUL-terminated string. */
static char *
bio_string(BIO *bio)
{
	char *data, *s;
	long n;

	if ((n = BIO_get_mem_data(bio, &data)) <= 0 || (s = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(s, data, n);
	s[n] = '\0';
	return s;
}

char *
kb_cert_pem(X509 *x)
{
	BIO *bio;
	char *s = NULL;

	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return NULL;
	if (PEM_write_bio_X509(bio, x))
		s = bio_string(bio);
	BIO_free(bio);
	return s;
}

char *
kb_key_pem(EVP_PKEY *k)
{
	BIO *bio;
	char *s = NULL;

	/* secmem: the BIO's buffer is wiped when freed. */
	if ((bio = BIO_new(BIO_s_secmem())) == NULL)
		return NULL;
	if (PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL))
		s = bio_string(bio);
	BIO_free(bio);
	return s;
}

void
kb_free_secret(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

/* Copy the single entry nid of a name as UTF-8; a missing, repeated or
 * truncated entry, or one with an embedded NUL, is an error. */
static int
name_entry(const X509_NAME *xn, int nid, char *buf, size_t len)
{
	const X509_NAME_ENTRY *e;
	unsigned char *utf8 = NULL;
	int i, n, rc = -1;

	if ((i = X509_NAME_get_index_by_NID(xn, nid, -1)) < 0 ||
	    X509_NAME_get_index_by_NID(xn, nid, i) >= 0)
		return -1;
	e = X509_NAME_get_entry(xn, i);
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
	if (n < 0)
		return -1;
	if ((size_t)n >= len || memchr(utf8, '\0', n) != NULL)
		goto done;
	memcpy(buf, utf8, n);
	buf[n] = '\0';
	rc = 0;
done:
	OPENSSL_free(utf8);
	return rc;
}

/* The role check is part of verification so that a peer with the wrong role
 * never completes a handshake. */
static int
verify_role(int ok, X509_STORE_CTX *xs, int server)
{
	X509 *x;
	char role[64];

	if (!ok) {
		/* Say why; SSL itself reports only "certificate verify failed". */
		ERR_raise_data(ERR_LIB_USER, 0, "peer certificate: %s",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
		return 0;
	}
	if (X509_STORE_CTX_get_error_depth(xs) != 0)
		return 1;
	if ((x = X509_STORE_CTX_get_current_cert(xs)) == NULL)
		return 0;
	if (name_entry(X509_get_subject_name(x), NID_organizationName, role,
	    sizeof(role)) < 0)
		strcpy(role, "(none)");
	if (server)
		ok = strcmp(role, KB_ROLE_USER) == 0 || strcmp(role, KB_ROLE_SIDECAR) == 0;
	else
		ok = strcmp(role, KB_ROLE_MANAGER) == 0;
	if (ok)
		return 1;
	ERR_raise_data(ERR_LIB_USER, 0, "peer certificate role \"%s\" is not %s", role,
	    server ? KB_ROLE_USER " or " KB_ROLE_SIDECAR : KB_ROLE_MANAGER);
	X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

static int
verify_server_side(int ok, X509_STORE_CTX *xs)
{
	return verify_role(ok, xs, 1);
}

static int
verify_client_side(int ok, X509_STORE_CTX *xs)
{
	return verify_role(ok, xs, 0);
}

/* Never prompt on a terminal for an encrypted key. */
int
kb_tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static SSL_CTX *
make_ctx(int server, const char *ca_pem, const char *cert_pem, const char *key_pem,
    char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;
	BIO *bio = NULL;
	X509 *x = NULL;
	EVP_PKEY *key = NULL;
	X509_STORE *store;
	char e[256];
	int n;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())) == NULL) {
		snprintf(err, errlen, "TLS: %s", kb_tls_errstr(e, sizeof(e)));
		goto fail;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
		snprintf(err, errlen, "TLS: cannot require TLS 1.3: %s", kb_tls_errstr(e, sizeof(e)));
		goto fail;
	}
	/* AES-128-GCM first: as strong as needed here and faster per byte. */
	if (!SSL_CTX_set_ciphersuites(ctx,
	    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256")) {
		snprintf(err, errlen, "TLS: cannot set cipher suites: %s", kb_tls_errstr(e, sizeof(e)));
		goto fail;
	}

	store = SSL_CTX_get_cert_store(ctx);
	if ((bio = BIO_new_mem_buf(ca_pem, -1)) == NULL)
		goto nomem;
	for (n = 0; (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL; n++) {
		if (!X509_STORE_add_cert(store, x)) {
			snprintf(err, errlen, "TLS CA: %s", kb_tls_errstr(e, sizeof(e)));
			goto fail;
		}
		X509_free(x);
	}
	if (n == 0) {
		snprintf(err, errlen, "TLS CA: not a PEM certificate");
		goto fail;
	}
	/* The loop ends on "no start line"; that is not an error. */
	ERR_clear_error();
	BIO_free(bio);

	if ((bio = BIO_new_mem_buf(cert_pem, -1)) == NULL)
		goto nomem;
	if ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
		snprintf(err, errlen, "TLS certificate: not a PEM certificate");
		goto fail;
	}
	if (!SSL_CTX_use_certificate(ctx, x)) {
		snprintf(err, errlen, "TLS certificate: %s", kb_tls_errstr(e, sizeof(e)));
		goto fail;
	}
	X509_free(x);
	/* Any further certificates are intermediates between us and the CA. */
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!SSL_CTX_add0_chain_cert(ctx, x)) {
			snprintf(err, errlen, "TLS certificate chain: %s",
			    kb_tls_errstr(e, sizeof(e)));
			goto fail;
		}
	}
	ERR_clear_error();
	BIO_free(bio);

	if ((bio = BIO_new_mem_buf(key_pem, -1)) == NULL)
		goto nomem;
	if ((key = PEM_read_bio_PrivateKey(bio, NULL, kb_tls_no_passphrase, NULL)) == NULL) {
		snprintf(err, errlen, "TLS key: not an unencrypted PEM private key");
		goto fail;
	}
	if (!SSL_CTX_use_PrivateKey(ctx, key) || !SSL_CTX_check_private_key(ctx)) {
		snprintf(err, errlen, "TLS key does not match the certificate");
		goto fail;
	}
	EVP_PKEY_free(key);
	key = NULL;
	BIO_free(bio);
	bio = NULL;

	if (server) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
		    verify_server_side);
		SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	} else {
		/* No host name check: the manager is reached through port-forwards
		 * and load balancers; the private CA and the role authenticate it. */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_client_side);
		SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	}
	/* Sessions live for hours over one connection: resumption buys nothing
	 * and would skip the certificate checks on reconnect. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Peers hold the CA already: send only our certificate and any
	 * intermediates given with it. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
	return ctx;

nomem:
	snprintf(err, errlen, "TLS: out of memory");
fail:
	X509_free(x);
	EVP_PKEY_free(key);
	BIO_free(bio);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return NULL;
}

SSL_CTX *
kb_tls_server_ctx(const char *ca_pem, const char *cert_pem, const char *key_pem,
    char *err, size_t errlen)
{
	return make_ctx(1, ca_pem, cert_pem, key_pem, err, errlen);
}

SSL_CTX *
kb_tls_client_ctx(const char *ca_pem, const char *cert_pem, const char *key_pem,
    char *err, size_t errlen)
{
	return make_ctx(0, ca_pem, cert_pem, key_pem, err, errlen);
}

int
kb_tls_peer_identity(SSL *ssl, char *name, size_t namelen, char *role, size_t rolelen)
{
	X509 *x;
	const X509_NAME *xn;

	if (SSL_get_verify_result(ssl) != X509_V_OK ||
	    (x = SSL_get0_peer_certificate(ssl)) == NULL)
		return -1;
	xn = X509_get_subject_name(x);
	if (name_entry(xn, NID_commonName, name, namelen) < 0 ||
	    name_entry(xn, NID_organizationName, role, rolelen) < 0)
		return -1;
	return 0;
}

int
kb_tls_peer_workload(SSL *ssl, char *buf, size_t len)
{
	X509 *x;

	buf[0] = '\0';
	if (SSL_get_verify_result(ssl) != X509_V_OK ||
	    (x = SSL_get0_peer_certificate(ssl)) == NULL)
		return -1;
	if (X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_organizationalUnitName,
	    -1) < 0)
		return 0;
	return name_entry(X509_get_subject_name(x), NID_organizationalUnitName, buf, len);
}

const char *
kb_tls_errstr(char *buf, size_t len)
{
	const char *data, *reason, *sep = "";
	unsigned long e;
	size_t off = 0;
	int flags, n;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		if (!(flags & ERR_TXT_STRING))
			data = "";
		reason = ERR_reason_error_string(e);
		if (reason == NULL && *data == '\0')
			reason = "unknown error";
		n = snprintf(buf + off, len - off, "%s%s%s%s", sep, reason ? reason : "",
		    reason && *data ? ": " : "", data);
		/* Keep draining even once full, so no stale error is left behind. */
		if (n > 0)
			off = (size_t)n >= len - off ? len - 1 : off + n;
		sep = "; ";
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "unknown TLS error");
	return buf;
}
