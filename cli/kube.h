/* Blocking requests to the Kubernetes API with the user's kubeconfig (CLI
 * only: it runs the user's exec plugins, so it runs as the user). */
#ifndef KB_CLI_KUBE_H
#define KB_CLI_KUBE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include <curl/curl.h>

#include "kubeconfig.h"

#define KAPI_TIMEOUT_MS		30000
#define KAPI_BODY_MAX		(8 * 1024 * 1024)

/* The options of the commands that name the cluster. */
#define LONGOPTS_KUBE							\
	{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },	\
	{ "context", required_argument, NULL, OPT_CONTEXT },		\
	LONGOPT_NAMESPACE

/* The cluster of one command: its kubeconfig and one libcurl handle for
 * all its requests, so they share one TLS connection. Both are freed by
 * kapi_close. */
struct kapi {
	struct kb_kubeconfig *kc;
	CURL *c;
};

/* What the requests of this process waited for the API server, for
 * kbridge connect's KBRIDGE_TIMING line: how many (a retry after a 401
 * counts) and their wall time in microseconds. */
struct kapi_waited {
	unsigned requests;
	uint64_t us;
};
void kapi_waited(struct kapi_waited *w);
/* A monotonic clock in microseconds (for those timings). */
uint64_t kapi_now_us(void);

/* Free k's handle and kubeconfig. */
void kapi_close(struct kapi *k);

/* One request (body NULL: none; ctype its Content-Type): 0 with *status
 * and *resp (a JSON object the caller frees, or NULL when the body is not
 * one), or -1 with err when no answer came. A 401 refreshes the
 * credentials (exec plugin, tokenFile) and tries once more. Ctrl-C
 * (catch_signals) aborts it. */
int kreq(struct kapi *k, const char *method, const char *path, const char *ctype,
    const cJSON *body, long *status, cJSON **resp, char *err, size_t errlen);
/* The API's reason for a failure: a Status object's message (control
 * characters shown as '?'), else the HTTP status. */
void api_error(long status, const cJSON *resp, char *err, size_t errlen);
/* May the user verb resource[/sub][ name] (in ns; NULL: cluster-wide) of
 * API group ("" for the core group)? A SelfSubjectAccessReview: 1 yes,
 * 0 no, -1 with err when it could not be asked. */
int kube_access(struct kapi *k, const char *ns, const char *group, const char *resource,
    const char *sub, const char *verb, const char *name, char *err, size_t errlen);
/* Load the kubeconfig (file or $KUBECONFIG or ~/.kube/config, context or
 * the current one) into k->kc: 0, or -1 reported as "CMD: reason". */
int load_kubeconfig(const char *cmd, const char *file, const char *context, struct kapi *k);

#endif
