/* A running container's environment from the API (agent/podenv.c does the
 * kubelet's part): GET the Pod, then at once the ConfigMaps and Secrets its
 * container refers to (each by name: get, never list), the Services of its
 * namespace and default/kubernetes, and its Node when a resourceFieldRef
 * needs it. A Secret the manager may not read (RBAC: `kbridge install
 * --env-secrets` grants it) is an error that says so. */
#ifndef KB_PODENVAPI_H
#define KB_PODENVAPI_H

#include <stddef.h>

struct cJSON;
struct event_base;
struct kb_kube;
struct podenv_fetch;

/* env: NAME -> value (borrowed; duplicate what you keep), or NULL with err
 * (one line). pod: the Pod object (borrowed), or NULL if it could not be
 * read. Called once, never from inside podenv_fetch(). */
typedef void (*podenv_fetch_cb)(void *arg, const struct cJSON *env, const struct cJSON *pod,
    const char *err);

/* Start: container NULL is the pod's first container. The names are
 * copied. NULL when out of memory or given names that are not DNS labels
 * (pod names are subdomains: dots are allowed there). */
struct podenv_fetch *podenv_fetch(struct kb_kube *kube, const char *ns, const char *pod,
    const char *container, podenv_fetch_cb cb, void *arg);
/* Stop; cb is not called. Safe from any kb_kube callback, not from cb. */
void podenv_fetch_cancel(struct podenv_fetch *f);

/* Blocking (runs base, 30 s at most): the environment (the caller frees
 * it), or NULL with err. For the diagnostic `kbridge-agent podenv`. */
struct cJSON *podenv_fetch_wait(struct event_base *base, struct kb_kube *kube, const char *ns,
    const char *pod, const char *container, char *err, size_t errlen);

/* `kbridge-agent podenv NAMESPACE POD [CONTAINER]` (a diagnostic, with
 * the in-cluster credentials): the environment as one JSON object, sorted
 * by name. The exit status. */
int cmd_podenv(int argc, char **argv);

#endif
