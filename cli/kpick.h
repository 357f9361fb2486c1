/* What kbridge intercept decides from API objects alone (no requests):
 * the label selector that finds a workload's pods, which Services select
 * its pod template, the Service port to take over and its targetPort, and
 * what the pod template must get for the sidecar to take that port.
 * Errors are one line in err (without the "kbridge: CMD: " prefix). */
#ifndef KB_CLI_KPICK_H
#define KB_CLI_KPICK_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* On the pod template: what makes the webhook inject (agent/webhook.h). */
#define KP_ANN_INJECT		"kbridge.dev/inject"
/* On the pod template: which container port the sidecar takes over
 * (agent/webhook.h; absent: KP_PORT_DEFAULT). */
#define KP_ANN_PORT		"kbridge.dev/port"
#define KP_PORT_DEFAULT		"http"
/* The longest targetPort: a port name (15) or a number (5). */
#define KP_TARGET_MAX		16

/* A workload's spec.selector (matchLabels, and matchExpressions with In,
 * NotIn, Exists, DoesNotExist) as kubectl -l takes it ("app=web,tier in
 * (a,b),!canary"): 0, or -1 and why. */
int kp_selector(const cJSON *selector, char *buf, size_t len, char *err, size_t errlen);
/* s with everything but [A-Za-z0-9._~-] percent-encoded, for a URL query:
 * 0, or -1 when it does not fit. */
int kp_query_escape(const char *s, char *buf, size_t len);
/* Does a Service's selector (a map, not empty) match the labels of the
 * pod template of workload obj? */
int kp_selects(const cJSON *selector, const cJSON *obj);

/* The TCP port of Service svc (named svcname) that want names (its name
 * or number; NULL: the only one): the port object, or NULL and why. */
const cJSON *kp_service_port(const cJSON *svc, const char *svcname, const char *want,
    char *err, size_t errlen);
/* That port's targetPort as kbridge.dev/port takes it: its name, or its
 * number as a string (absent: the port's number). 0, or -1 and why. */
int kp_target(const cJSON *port, char *buf, size_t len, char *err, size_t errlen);
/* A named target must name a TCP container port of obj's pod template
 * (what: "deployment/web", for the message): 0, or -1 and which names
 * exist. A numeric target passes. */
int kp_check_target(const cJSON *obj, const char *what, const char *svcname,
    const cJSON *port, const char *target, char *err, size_t errlen);

/* What the pod template needs: the inject annotation, the port one. */
struct kp_plan {
	int inject, port;
};
/* From obj's template annotations and the target (port_ours: kbridge
 * added the template's kbridge.dev/port): 0 and *p, or -1 and why (the
 * template takes another port, or sets kbridge.dev/inject otherwise). */
int kp_plan(const cJSON *obj, const char *what, const char *svcname, const char *target,
    int port_ours, struct kp_plan *p, char *err, size_t errlen);

/* What kbridge intercept did in Kubernetes, for --output json: {"kind",
 * "name", "namespace", "service", "service_port" (number), "target_port"
 * (its name or number as a string), "replicas", "added": the template's
 * annotations it added}. NULL when out of memory. */
cJSON *kp_result(const char *kind, const char *name, const char *ns, const char *svcname,
    const cJSON *port, const char *target, long replicas, const struct kp_plan *added);

#endif
