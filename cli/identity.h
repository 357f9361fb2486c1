/* A developer's kbridge identity from Kubernetes, with no admin step per
 * developer: the user's own kubeconfig credentials ask the API server for
 * a certificate of the signer kbridge.dev/developer (a
 * CertificateSigningRequest), which the in-cluster manager approves and
 * signs for exactly the requesting user (agent/csr.c). CLI only: it runs
 * as the user and keeps the key in the user's own cache directory, never
 * in the root daemon. */
#ifndef KB_CLI_IDENTITY_H
#define KB_CLI_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct kb_kubeconfig;

/* The certificate's remaining lifetime below which a new one is asked for. */
#define KB_IDENTITY_MIN_LEFT_S 600
/* The lifetime asked for (the manager's maximum). */
#define KB_IDENTITY_SECONDS (24 * 3600)

/* What kb_csr_identity_ex returns; every string malloc'd (kb_csr_ident_free
 * wipes the key). */
struct kb_csr_ident {
	char *cert_pem, *key_pem, *ca_pem;
	char *user;		/* the Kubernetes user name, the certificate's CN */
	time_t expires;		/* the certificate's notAfter */
	char *cache_dir;	/* where key.pem and cert.pem are kept */
	char *csr;		/* the CertificateSigningRequest made, NULL if reused */
};

/* The identity of kc's user for the kbridge installed in install_ns: the
 * cached certificate when it is signed by the CA the manager publishes
 * (ConfigMap install_ns/kbridge-manager-ca) and has more than
 * KB_IDENTITY_MIN_LEFT_S left, else a new key and a CSR, waited for at most
 * timeout_ms. The caller frees the strings (*key_pem: wipe it). 0, or -1 with
 * one line in err (e.g. "alice may not create certificatesigningrequests
 * (ask an admin to bind ClusterRole kbridge-developer)", or the manager's
 * reason for a denial). */
int kb_csr_identity(struct kb_kubeconfig *kc, const char *install_ns, int timeout_ms,
    char **cert_pem, char **key_pem, char **ca_pem, char **user, char *err, size_t errlen);
/* The same with the details (expiry, cache directory, CSR name). */
int kb_csr_identity_ex(struct kb_kubeconfig *kc, const char *install_ns, int timeout_ms,
    struct kb_csr_ident *id, char *err, size_t errlen);
void kb_csr_ident_free(struct kb_csr_ident *id);
/* Microseconds this process slept between reads of its CSR, waiting for
 * the manager to sign it (kbridge connect's KBRIDGE_TIMING line). */
uint64_t kb_csr_slept_us(void);

/* kbridge login (diagnostic): obtain or reuse the identity and say whose,
 * until when, and where it is cached. */
int cmd_login(int argc, char **argv);

#endif
