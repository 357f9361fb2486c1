/* Sidecar injection: the mutating admission webhook's decisions, as pure
 * functions of the AdmissionReview (no I/O; agent/webhooksrv.c serves them).
 *
 * A Pod is injected when its annotations carry
 *   kbridge.dev/inject: "true"
 * (put it on a Deployment's pod template: the API server admits the Pods
 * made from it). Optional annotations:
 *   kbridge.dev/workload: NAME   the workload (default: the controlling
 *        owner's name; a ReplicaSet's without its "-POD-TEMPLATE-HASH"
 *        suffix, i.e. the Deployment's; no owner: the Pod's name)
 *   kbridge.dev/port: NAME|N     the Service's targetPort: the container
 *        port it names (default "http"), or its number N (1-65535).
 *   kbridge.dev/protocol: http|tcp  the sidecar's routing (default http).
 * A NAME: the app container's port NAME is renamed ("kb-app-NAME", or "kb-"
 * and its first 12 characters when that is too long), probes of that
 * container that named it follow the new name, and the sidecar container
 * (KB_WEBHOOK_SIDECAR) takes the name NAME on its own port, so the
 * Service's named targetPort reaches the sidecar, which passes to the app.
 * A number N: nothing is renamed; the sidecar declares its port without a
 * name and passes to 127.0.0.1:N, and the init container
 * KB_WEBHOOK_REDIRECT (root, NET_ADMIN only) runs `kbridge-agent redirect`
 * (agent/redirect.h), which redirects TCP arriving for N in the pod's own
 * network namespace to the sidecar's port (refused for a hostNetwork pod:
 * that namespace is the node's). The app container named in the sidecar's
 * env is the one declaring N, else the only one.
 * The Pod gets annotation kbridge.dev/injected: NAME.NAMESPACE. A Pod that
 * has the sidecar or the init container already is left alone
 * (idempotent). Anything else, and any Pod the webhook cannot read, is
 * allowed unchanged, with a warning saying why when it asked for the
 * sidecar. */
#ifndef KB_WEBHOOK_H
#define KB_WEBHOOK_H

#include <stddef.h>

struct cJSON;
struct enroller;

#define KB_WEBHOOK_SIDECAR	"kbridge-sidecar"
#define KB_WEBHOOK_REDIRECT	"kbridge-redirect"
#define KB_WEBHOOK_ANN_INJECT	"kbridge.dev/inject"
#define KB_WEBHOOK_ANN_WORKLOAD	"kbridge.dev/workload"
#define KB_WEBHOOK_ANN_PORT	"kbridge.dev/port"
#define KB_WEBHOOK_ANN_PROTOCOL	"kbridge.dev/protocol"
#define KB_WEBHOOK_ANN_INJECTED	"kbridge.dev/injected"
/* Where the sidecar listens (the next free one if a container uses it). */
#define KB_WEBHOOK_SIDECAR_PORT	9901
/* The injected sidecar's identity: a projected ServiceAccount token for
 * audience kbridge (volume KB_WEBHOOK_TOKEN_VOLUME), traded at the manager
 * for a certificate (agent/enroll.h); the CA in env KB_WEBHOOK_CA_ENV. */
#define KB_WEBHOOK_TOKEN_VOLUME	"kbridge-token"
#define KB_WEBHOOK_TOKEN_DIR	"/var/run/secrets/kbridge.dev/token"
#define KB_WEBHOOK_TOKEN_FILE	KB_WEBHOOK_TOKEN_DIR "/token"
#define KB_WEBHOOK_TOKEN_SECONDS 3600
#define KB_WEBHOOK_CA_ENV	"KBRIDGE_CA"

struct webhook_cfg {
	const char *image;	/* the sidecar's image */
	const char *manager;	/* HOST:PORT the sidecar dials */
	const char *enroll;	/* HOST:PORT of the webhook's Service, where the
				 * sidecar enrolls (agent/enroll.h) */
	const char *ca;		/* the CA (PEM) the sidecar checks the manager with */
	struct enroller *enroller; /* serves /enroll (webhooksrv.c); NULL: 404 */
};

/* The JSONPatch (a cJSON array the caller frees) that injects the sidecar
 * into pod (a Pod object) of namespace ns, or NULL: nothing to do, or a
 * refusal explained in warn (empty otherwise; always NUL-terminated). */
struct cJSON *webhook_mutate(const struct webhook_cfg *cfg, const struct cJSON *pod,
    const char *ns, char *warn, size_t warnlen);

/* What a review decided, for the log. */
struct webhook_result {
	char pod[320];		/* "NS/NAME" (NAME may be a generateName prefix) */
	int pod_create;		/* it was a Pod CREATE */
	int patched;
	char warn[512];
};

/* The answer to an AdmissionReview (len bytes of JSON): a malloc'd
 * AdmissionReview with the response (allowed: true; the patch, base64, if
 * any; a warning if any); res (may be NULL) says what. NULL with err when
 * review is not an AdmissionReview with a request uid (the server answers
 * 400). */
char *webhook_review(const struct webhook_cfg *cfg, const char *review, size_t len,
    struct webhook_result *res, char *err, size_t errlen);

#endif
