/* Sidecar enrollment: an injected sidecar gets its certificate from the
 * manager with no human step. It POSTs to the webhook listener's /enroll
 * (webhooksrv.c; the manager's certificate, checked by the sidecar against
 * the CA the webhook put in its environment)
 *   {"token":"<projected ServiceAccount token, audience kbridge>",
 *    "key":"<PEM public key, EC P-256>"}
 * and gets {"certificate":"PEM"}: a sidecar certificate for exactly the
 * workload its pod was injected as, or a 403 with a one-line reason.
 *
 * The manager asks the API server who the token is (TokenReview with
 * audiences [kbridge]: a token for another audience, expired, or of a
 * deleted pod is refused), takes the namespace and the pod (name and uid)
 * from the answer, never from the request, reads that pod, and requires:
 * the same uid, not being deleted, run by the token's ServiceAccount, a
 * kbridge-sidecar container, and annotation kbridge.dev/injected
 * "NAME.NS" with NS the token's namespace. The certificate is for NAME.NS.
 *
 * Threat model: whoever can create (or update) pods in NS can already run
 * any code as any workload of NS, and the webhook itself lets such a user
 * choose NAME (kbridge.dev/workload); so the bar is "a sidecar is only
 * ever a workload of its own pod's namespace, the one its pod names", and
 * a token (or a stolen token) of a pod that is not injected, of another
 * namespace, or for another audience gets nothing. The request cannot
 * name a workload at all.
 *
 * Bounds: ENROLL_MAX_BODY per request (the token ENROLL_MAX_TOKEN),
 * ENROLL_MAX_INFLIGHT enrollments at once, ENROLL_MAX_PER_SRC of them from
 * one address (503 beyond: no TokenReview is sent), and the webhook
 * listener's own per-source and total connection caps and deadline; the
 * listener is not the manager's, so enrollment attempts never take an
 * authenticated session's slot. */
#ifndef KB_ENROLL_H
#define KB_ENROLL_H

#include <stddef.h>

#include <openssl/types.h>

struct cJSON;
struct kb_kube;

#define ENROLL_PATH		"/enroll"
#define ENROLL_AUDIENCE		"kbridge"
#define ENROLL_MAX_BODY		(16 << 10)
#define ENROLL_MAX_TOKEN	(8 << 10)
#define ENROLL_MAX_INFLIGHT	16
#define ENROLL_MAX_PER_SRC	4	/* in flight from one address */
#define ENROLL_SECONDS		(24 * 3600)	/* a certificate's lifetime */

/* What the pure checks return. */
struct enroll_who {
	char ns[64];
	char sa[254];
	char pod[254];
	char uid[64];
};

/* The request body: 0 with *token (malloc'd, the caller frees) and *pub
 * (the caller frees), or -1 with why. */
int enroll_parse_request(const char *body, size_t len, char **token, EVP_PKEY **pub,
    char *why, size_t whylen);
/* The TokenReview the manager sends for token (the caller frees it). */
struct cJSON *enroll_review_request(const char *token);
/* A TokenReview's answer: authenticated, for audience kbridge, a
 * ServiceAccount's token bound to a pod. 0 and *who, or -1 with why. */
int enroll_review_check(const struct cJSON *review, struct enroll_who *who, char *why,
    size_t whylen);
/* The pod (as the API returns it) against who: 0 with the workload NAME
 * (the injected annotation's, in who->ns) in workload, or -1 with why. */
int enroll_pod_check(const struct cJSON *pod, const struct enroll_who *who, char *workload,
    size_t wlen, char *why, size_t whylen);

struct enroller;
struct enroll_req;

/* The answer to one enrollment: status 200 with body the JSON answer, or
 * an error status with a one-line text body. Both borrowed for the call. */
typedef void (*enroll_cb)(void *arg, int status, const char *body);

/* Sign with the CA (PEM, copied; the key wiped when freed). NULL with err. */
struct enroller *enroller_new(struct kb_kube *kube, const char *ca_crt, const char *ca_key,
    char *err, size_t errlen);
void enroller_free(struct enroller *e);
/* Start one enrollment for the request body (from peer, for the log). cb
 * runs once, later (never inside this call), unless cancelled. NULL: cb
 * will not run, and *status and why say what to answer at once. */
struct enroll_req *enroll_start(struct enroller *e, const char *body, size_t len,
    const char *peer, enroll_cb cb, void *arg, int *status, char *why, size_t whylen);
/* Forget a request whose cb has not run. */
void enroll_cancel(struct enroll_req *r);

#endif
