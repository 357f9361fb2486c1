/* TLS 1.3 with mutual certificate authentication against one cluster CA. */
#ifndef KB_TLS_H
#define KB_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

/* Certificate roles, carried in the subject's O (organization) field. */
#define KB_ROLE_MANAGER "kbridge-manager"
#define KB_ROLE_USER "kbridge-user"
#define KB_ROLE_SIDECAR "kbridge-sidecar"
/* The CertificateSigningRequest signer whose requests the in-cluster
 * manager approves and signs as KB_ROLE_USER certificates. */
#define KB_SIGNER_DEVELOPER "kbridge.dev/developer"

/* Server (manager) context: TLS 1.3 only, client certificate required and
 * verified against ca_pem (purpose: TLS client). NULL with err on failure. */
SSL_CTX *kb_tls_server_ctx(const char *ca_pem, const char *cert_pem, const char *key_pem,
    char *err, size_t errlen);
/* Client (daemon/sidecar) context: TLS 1.3 only, server certificate verified
 * against ca_pem (purpose: TLS server). NULL with err on failure. */
SSL_CTX *kb_tls_client_ctx(const char *ca_pem, const char *cert_pem, const char *key_pem,
    char *err, size_t errlen);
/* After a verified handshake: the peer certificate's CN and O. 0 or -1. */
int kb_tls_peer_identity(SSL *ssl, char *name, size_t namelen, char *role, size_t rolelen);
/* After a verified handshake: the workload a sidecar certificate is bound
 * to ("NAME.NAMESPACE", the subject's OU), or "" when it has none. 0, or -1
 * (no verified certificate, or a repeated or unreadable OU). */
int kb_tls_peer_workload(SSL *ssl, char *buf, size_t len);
/* A PEM passphrase callback that refuses: an encrypted key fails instead
 * of prompting on the terminal. */
int kb_tls_no_passphrase(char *buf, int size, int rwflag, void *u);
/* PEM in memory (NUL-terminated) to OpenSSL objects and back; NULL on
 * failure, the caller frees. A key must be unencrypted (never prompts). */
X509 *kb_pem_cert(const char *pem);		/* the first certificate */
EVP_PKEY *kb_pem_key(const char *pem);
char *kb_cert_pem(X509 *x);
/* Through memory that is wiped when freed; free it with kb_free_secret. */
char *kb_key_pem(EVP_PKEY *k);
/* Wipe and free a NUL-terminated secret (a key's PEM); NULL is fine. */
void kb_free_secret(char *s);
/* Drain OpenSSL's error queue into one readable line in buf (returns buf). */
const char *kb_tls_errstr(char *buf, size_t len);

#endif
