/* The in-cluster manager's identity: the cluster CA lives in a Secret of the
 * manager's namespace, made at the first start and reused after (so issued
 * profiles stay valid across restarts); the manager certificate is made
 * afresh at every start for the pod's current names and address. */
#ifndef KB_INCLUSTER_H
#define KB_INCLUSTER_H

#include <stddef.h>

struct cJSON;
struct event_base;
struct kb_kube;

/* Blocks (runs base) until done: the CA (PEM) from Secret ns/name, created
 * (labelled app.kubernetes.io/managed-by=kbridge) if it does not exist.
 * The caller frees *crt and *key (identity_free_secret). 0, or -1 with err. */
int incluster_ca(struct event_base *base, struct kb_kube *kube, const char *ns, const char *name,
    char **crt, char **key, char *err, size_t errlen);

/* Blocks until done: the CA certificate crt (public part only) in
 * ConfigMap ns/name (key ca.crt), created or updated if it differs, for
 * developers to check their certificates with. 0, or -1 with err. */
int incluster_publish_ca(struct event_base *base, struct kb_kube *kube, const char *ns,
    const char *name, const char *crt, char *err, size_t errlen);

/* The clusterIP (IPv4) of Service ns/name into ip (16 bytes), waited for.
 * 0, or -1 (no such Service, no IPv4 address, no answer). */
int incluster_service_ip(struct event_base *base, struct kb_kube *kube, const char *ns,
    const char *name, char *ip, size_t len);

/* One request to the API, waited for (runs base, 30 s at most): 0 when
 * answered (*status; *answer the JSON answer or NULL, the caller's to free;
 * err the API's message when not 2xx), or -1 with err (no answer). */
int incluster_request(struct event_base *base, struct kb_kube *kube, const char *method,
    const char *path, const struct cJSON *body, int *status, struct cJSON **answer, char *err,
    size_t errlen);

/* Blocks until done: ca (PEM) as the caBundle of every webhook of the
 * MutatingWebhookConfiguration name (made by `kbridge install`; the CA is
 * only known once the manager made it), updated if it differs. 0, or -1
 * with err (no such object, no permission, no answer). */
int incluster_webhook_ca(struct event_base *base, struct kb_kube *kube, const char *name,
    const char *ca, char *err, size_t errlen);

/* A Secret ns/name labelled as the manager's, with an empty "data" object
 * to fill; the caller owns it. NULL when out of memory. */
struct cJSON *incluster_secret(const char *ns, const char *name);

#endif
