/* Cluster identities: the CA, the manager certificate, client profiles. */
#ifndef KB_IDENTITY_H
#define KB_IDENTITY_H

#include <stddef.h>

#include <openssl/types.h>

/* kbridge-agent init --state-dir DIR --address HOST:PORT [--force] */
int cmd_init(int argc, char **argv);
/* kbridge-agent issue --state-dir DIR --name NAME --out FILE [--sidecar] */
int cmd_issue(int argc, char **argv);

/* A new cluster CA, in memory: PEM certificate and key (the caller frees
 * both; the key with identity_free_secret). 0, or -1 with err. */
int identity_ca_new(char **crt, char **key, char *err, size_t errlen);
/* A manager certificate signed by the CA (PEM), with subjectAltName san
 * ("DNS:a,IP:b"; NULL: none). 0, or -1 with err. */
int identity_manager_cert(const char *ca_crt, const char *ca_key, const char *san, char **crt,
    char **key, char *err, size_t errlen);
/* A developer's certificate (what `issue --name` makes: O=kbridge-user,
 * CN=name, clientAuth) for the public key pub (borrowed; its private key
 * stays with whoever asked), valid seconds from now (back-dated a little
 * for clock skew), signed by the CA (PEM certificate and key). *crt is
 * malloc'd PEM. 0, or -1 with err (also for a name kb_identity_name
 * refuses). */
int identity_user_cert(const char *ca_crt, const char *ca_key, EVP_PKEY *pub, const char *name,
    long seconds, char **crt, char *err, size_t errlen);
/* A sidecar's certificate (what `issue --sidecar` makes: O=kbridge-sidecar,
 * CN and OU "WORKLOAD.NS", the one workload it may speak for) for pub, as
 * identity_user_cert does. 0, or -1 with err (also for a workload or ns
 * that is not a DNS label). */
int identity_sidecar_cert(const char *ca_crt, const char *ca_key, EVP_PKEY *pub,
    const char *workload, const char *ns, long seconds, char **crt, char *err, size_t errlen);
/* Wipe and free a PEM key. */
void identity_free_secret(char *s);

/* Files in the state directory. */
#define KB_STATE_CA_CERT "ca.crt"
#define KB_STATE_CA_KEY "ca.key"
#define KB_STATE_MGR_CERT "manager.crt"
#define KB_STATE_MGR_KEY "manager.key"
#define KB_STATE_CONFIG "config.json" /* {"address":"HOST:PORT"} */

#endif
