/* The manager's intercept registry: the workloads that run a sidecar, the
 * intercepts on them, and the bridging of intercepted streams from a
 * sidecar to the owner's workstation.
 *
 * State: all of it is in one struct icpt_reg (opaque), made by icpt_new
 * and freed by icpt_free, owned by the manager's context and given as the
 * first argument of every call; its workloads point back to it, so its
 * timers and API callbacks reach it through their arg. The module has no
 * file-scope state. The event base and API client are borrowed. */
#ifndef KB_INTERCEPTS_H
#define KB_INTERCEPTS_H

#include <stddef.h>

#include "msg.h"

struct cJSON;
struct client;
struct event_base;
struct kb_stream;
struct kb_kube;
struct icpt_reg;

/* An empty registry on base; grace_ms: the grace period before a
 * disconnected owner's intercepts are released. NULL when out of memory. */
struct icpt_reg *icpt_new(struct event_base *base, unsigned grace_ms);
/* In-cluster: the API client (borrowed; NULL: none) with which a
 * workload's environment comes from the spec of the pod its sidecar names
 * in its hello ("pod", "container"), as the kubelet makes it, instead of
 * the sidecar's own environment. */
void icpt_set_kube(struct icpt_reg *r, struct kb_kube *kube);
/* A sidecar's hello: register it for its workload. 0, or -1 with reason. */
int icpt_sidecar_hello(struct icpt_reg *r, struct client *c, const struct cJSON *hello,
    char *reason, size_t len);
/* A daemon's session is up: its user's intercepts in grace come back to it. */
void icpt_owner_hello(struct icpt_reg *r, struct client *c);
/* End c's intercepts and their previews now (why: for the log); the list
 * of what ended: [{"workload", "namespace", "id", "previews_ended"}]. */
struct cJSON *icpt_end_all(struct icpt_reg *r, struct client *c, const char *why);
/* The same daemon came back on a new session before the old one was seen
 * to end: its intercepts follow it. */
void icpt_move(struct icpt_reg *r, struct client *from, struct client *to);
/* The sidecar got our hello: send it the intercepts of its workload. */
void icpt_sidecar_ready(struct icpt_reg *r, struct client *c);
/* A session ended: a sidecar leaves its workload, an owner's intercepts
 * enter the grace period. */
void icpt_client_gone(struct icpt_reg *r, struct client *c);
/* A daemon's "intercept", "leave", "leave-all" or "list" request, valid by
 * kb_msg_parse; returns the "result" message to send back (NULL if out of
 * memory or type is none of these). */
struct cJSON *icpt_request(struct icpt_reg *r, struct client *c, enum kb_msg_type type,
    const struct cJSON *msg);
/* A sidecar opened a stream for intercept ref: carry it to the owner. */
void icpt_route_stream(struct icpt_reg *r, struct client *sidecar, struct kb_stream *st,
    const char *ref);
/* The id of owner's intercept on workload wl in namespace ns, and whether
 * the workload speaks HTTP: 0, or -1 if owner has none there. */
int icpt_owned(struct icpt_reg *r, const char *owner, const char *wl, const char *ns, char *id,
    size_t idlen, int *http);
/* The k-th sidecar session of workload wl in ns and how many there are
 * (*n); NULL if k is not below *n. */
struct client *icpt_sidecar(struct icpt_reg *r, const char *wl, const char *ns, size_t k,
    size_t *n);
/* 1: owner's intercept id is served (its workstation is connected); 0: it
 * exists but its workstation is away (grace period); -1: owner has no
 * intercept of that id. */
int icpt_state(struct icpt_reg *r, const char *id, const char *owner);
/* The intercepts as the in-cluster store keeps them (a list the caller
 * frees; NULL when out of memory): id, owner, instance, workload,
 * namespace, protocol, port, match. And back, at start: each valid one
 * waits for its owner's workstation (its grace period, at least 60 s),
 * which resumes it by reconnecting or by "resume" with its id (only its
 * owner may). Returns how many were added. */
struct cJSON *icpt_dump(struct icpt_reg *r);
size_t icpt_restore(struct icpt_reg *r, const struct cJSON *list);
/* Ends every intercept (no previews are told, nothing is stored) and
 * frees r; NULL: nothing. */
void icpt_free(struct icpt_reg *r);

#endif
