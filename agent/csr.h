/* The in-cluster manager as the signer kbridge.dev/developer: developers
 * ask for their kbridge certificate with a Kubernetes
 * CertificateSigningRequest; the API server records who asked
 * (spec.username), RBAC decides who may ask, and the manager approves and
 * signs only a request whose subject is exactly CN=<that user>, for a
 * client-auth key it accepts. Anything else is Denied with a one-line
 * reason. The certificate is the one `kbridge-agent issue --name` makes
 * (O=kbridge-user, CN=user, clientAuth), for at most CSR_MAX_SECONDS. */
#ifndef KB_CSR_H
#define KB_CSR_H

#include <stddef.h>

#include <openssl/types.h>

struct kb_kube;

#define CSR_MAX_SECONDS (24 * 3600)	/* lifetime: default and cap */
#define CSR_MAX_AGE_S 3600		/* older pending requests are left alone */
#define CSR_MAX_INFLIGHT 64		/* requests being approved/signed at once */
#define CSR_MAX_PER_SYNC 256		/* requests looked at per (re)list */

struct csr_signer;

/* Watch the signer's requests and answer them, signing with the CA (PEM,
 * copied; the key is wiped when freed). NULL with err. */
struct csr_signer *csr_signer_new(struct kb_kube *kube,
    const char *ca_crt, const char *ca_key, char *err, size_t errlen);
/* Stop (cancels the watch and requests in flight). NULL is fine. */
void csr_signer_free(struct csr_signer *s);

/* The checks, pure: pem is spec.request decoded (a PEM CERTIFICATE REQUEST),
 * username spec.username, usages spec.usages (n of them). The request must
 * verify with its own key, the key be EC P-256 or RSA of 2048-8192 bits,
 * the subject exactly CN=username (one entry), username a kbridge name
 * (identity_valid_name: names such as system:serviceaccount:NS:NAME or
 * alice@example.com are refused, never mapped, so no two users can share
 * one), usages client auth plus at most digital signature and key
 * encipherment. Extensions the request carries are not copied. 0 and *pub
 * (the caller frees it), or -1 with a one-line reason in why. */
int csr_check(const char *pem, const char *username, const char *const *usages, size_t n,
    EVP_PKEY **pub, char *why, size_t whylen);
/* The lifetime for spec.expirationSeconds (<= 0: not given): at most
 * CSR_MAX_SECONDS, at least 600 (the API's own minimum). */
long csr_lifetime(double expiration_seconds);

#endif
