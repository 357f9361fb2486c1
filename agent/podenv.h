/* A container's environment computed from its Pod object the way the
 * kubelet does (pkg/kubelet/kubelet_pods.go, makeEnvironmentVariables, as
 * of v1.35): envFrom in order (ConfigMaps' data, Secrets' data, each key
 * behind the prefix; no key is skipped: the kubelet no longer checks the
 * names), then env in order, each one replacing what was there: value with
 * $(VAR) expanded against what is defined so far and then the service
 * variables ($$ is a literal $, an undefined $(VAR) stays as written), or
 * valueFrom: configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef.
 * Last, the service variables ({SVC}_SERVICE_HOST, docker links...) of the
 * namespace's Services (only if enableServiceLinks) and of
 * default/kubernetes (always), where no variable of that name exists.
 *
 * Pure: no I/O. ConfigMaps and Secrets come from the caller's lookups (a
 * "not found" is the kubelet's, optional or an error; anything else the
 * caller reports is an error). */
#ifndef KB_PODENV_H
#define KB_PODENV_H

#include <stddef.h>

struct cJSON;

enum podenv_found { PODENV_FOUND, PODENV_NOT_FOUND, PODENV_ERROR };

/* Find ConfigMap (secret 0) or Secret (secret 1) name of the pod's
 * namespace: PODENV_FOUND with *obj (borrowed; valid until podenv_resolve
 * returns), PODENV_NOT_FOUND, or PODENV_ERROR with err (one line). */
typedef enum podenv_found (*podenv_lookup)(void *arg, int secret, const char *name,
    const struct cJSON **obj, char *err, size_t errlen);

struct podenv_src {
	podenv_lookup lookup; /* NULL: nothing is found */
	void *arg;
	/* Service objects (an array; each with its metadata.namespace), or
	 * NULL: none. Only the pod's namespace's and default/kubernetes
	 * count; the others are ignored. */
	const struct cJSON *services;
	/* The pod's Node, or NULL: its status.allocatable stands in for a
	 * resourceFieldRef's limit the container does not set (as the
	 * kubelet's defaultPodLimitsForDownwardAPI). */
	const struct cJSON *node;
};

/* The environment of container (in spec.containers or
 * spec.initContainers) of pod: a new object NAME -> value (strings) the
 * caller frees, or NULL with err: one line, what would stop the kubelet
 * from starting the container (e.g. `couldn't find key k in ConfigMap
 * ns/name`, `configmap "name" not found`). */
struct cJSON *podenv_resolve(const struct cJSON *pod, const char *container,
    const struct podenv_src *src, char *err, size_t errlen);

/* The ConfigMaps and Secrets container's environment refers to, for a
 * caller that fetches them first: {"configmaps": [names], "secrets":
 * [names]} (each name once), a new object; and *resources set when a
 * resourceFieldRef needs the node. NULL when out of memory or no such
 * container. */
struct cJSON *podenv_refs(const struct cJSON *pod, const char *container, int *resources);

/* A Kubernetes quantity ("500m", "1.5Gi", "2e3") in units of 10^-9,
 * rounded up: 0, or -1 if not one (negative, or 10^30 units or more). */
int podenv_quantity(const char *s, __int128 *nano);

#endif
