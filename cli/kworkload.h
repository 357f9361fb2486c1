/* The workloads kbridge intercept works on (Deployments, StatefulSets and
 * ReplicaSets not owned by a Deployment), through the Kubernetes API as
 * the user: finding one by name or through its Service, the Service and
 * the port to take over, adding the sidecar's annotations to its pod
 * template and waiting for the rollout, listing them, and removing the
 * annotations again (uninstall --agents). */
#ifndef KB_CLI_KWORKLOAD_H
#define KB_CLI_KWORKLOAD_H

#include <cjson/cJSON.h>

#include "kpick.h"
#include "kube.h"

/* On the pod template: what makes the webhook inject, and the container
 * port its sidecar takes over (agent/webhook.h). */
#define KW_ANN_INJECT		KP_ANN_INJECT
#define KW_ANN_PORT		KP_ANN_PORT
/* On the workload's own metadata: kbridge added KW_ANN_INJECT (value
 * "kbridge"), so uninstall --agents may remove both; and KW_ANN_PORT_BY:
 * kbridge added KW_ANN_PORT too (a template's own is never touched). */
#define KW_ANN_BY		"kbridge.dev/injected-by"
#define KW_ANN_PORT_BY		"kbridge.dev/port-added-by"
#define KW_SIDECAR		"kbridge-sidecar"
#define KW_WAIT_DEFAULT		120

/* One workload: kind ("Deployment"...), its plural resource, and the object
 * as the API returned it (owned; kw_free frees it); once kw_service and
 * kw_port ran, its Service (owned), the Service's port and its targetPort;
 * once kw_inject ran, what it added. */
struct kworkload {
	const char *kind, *plural;
	char name[254], ns[64];
	char what[272];		/* "deployment/NAME", for messages */
	cJSON *obj;
	cJSON *svc;
	char svc_name[254];
	const cJSON *svc_port;
	char target[KP_TARGET_MAX];
	struct kp_plan added;
};
void kw_free(struct kworkload *w);

/* The workload named name in ns, else the one whose pod template the
 * Service name selects (that Service then is w's): 0 and *w, or -1
 * reported as "CMD: reason" (none, or several, named). */
int kw_find(struct kapi *k, const char *cmd, const char *ns, const char *name,
    struct kworkload *w);
/* w's Service: the one kw_find found it through, else the one named svc
 * (NULL: the only one in the namespace that selects w's pod template).
 * 0, or -1 reported (none, or several, named). */
int kw_service(struct kapi *k, const char *cmd, struct kworkload *w, const char *svc);
/* The port of w's Service that svcport names (NULL: the only one) and its
 * targetPort, checked against the pod template: 0, or -1 reported. */
int kw_port(const char *cmd, struct kworkload *w, const char *svcport);
/* The workloads of ns (NULL: all namespaces) as one array of objects, each
 * with its "kind" set; ReplicaSets a Deployment controls are left out.
 * NULL reported as "CMD: reason". */
cJSON *kw_list(struct kapi *k, const char *cmd, const char *ns);
/* Does obj's pod template carry KW_ANN_INJECT "true"? */
int kw_has_inject(const cJSON *obj);
/* Did kbridge add it (KW_ANN_BY)? And KW_ANN_PORT (KW_ANN_PORT_BY)? */
int kw_ours(const cJSON *obj);
int kw_ours_port(const cJSON *obj);
/* Replicas wanted (spec.replicas, default 1) and ready (status). */
long kw_replicas(const cJSON *obj, long *ready);

/* Add KW_ANN_INJECT unless the template has it, and KW_ANN_PORT (w's
 * target) unless it has that too, in one merge patch (what was added in
 * w->added): 1 added, 0 there already, -1 reported (including a template
 * that sets either otherwise). */
int kw_inject(struct kapi *k, const char *cmd, struct kworkload *w);
/* Wait, printing progress on stderr, until every ready pod of w runs a
 * ready sidecar and there are as many as w wants; 0, or -1 reported
 * (timeout_s expired, interrupted, API error). */
int kw_wait(struct kapi *k, const char *cmd, const struct kworkload *w, long timeout_s);
/* Does a change of obj's pod template leave its pods as they are? A bare
 * ReplicaSet (whose controller only replaces pods that go) and a
 * StatefulSet with updateStrategy OnDelete: kw_roll replaces them. */
int kw_needs_roll(const cJSON *obj);
/* Replace the pods obj (a workload with its "kind") controls whose
 * containers do not match sidecar (1: they must run KW_SIDECAR, 0: must
 * not): one at a time, each once all obj's pods are there and ready, by
 * an eviction (which PodDisruptionBudgets may delay), so the controller
 * makes it again from the template; progress on stderr. Only the pods
 * there at the start are evicted. 0 (none left), or -1 reported (a pod
 * made since does not match either, timeout_s expired, interrupted, API
 * error). */
int kw_roll(struct kapi *k, const char *cmd, const cJSON *obj, int sidecar, long timeout_s);
/* Remove what kw_inject added from obj (a kw_list item), as its markers
 * say: 0 or -1 reported. */
int kw_restore(struct kapi *k, const char *cmd, const cJSON *obj);

#endif
