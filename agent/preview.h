/* Preview URLs: the manager's preview listener and registry. A preview is
 * a token (128 random bits) bound to one user's intercept; requests that
 * carry it (in the host name, or in a cookie set by the preview link) are
 * sent to the intercepted workload's service with the intercept's id header,
 * so its sidecar routes them to the owner's workstation. */
#ifndef KB_PREVIEW_H
#define KB_PREVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct cJSON;
struct client;
struct event_base;
struct kb_resolver;
struct icpt_reg;

/* What the preview module uses of the manager. */
struct preview_env {
	struct event_base *base;
	struct kb_resolver *resolver;
	const char *domain;	/* cluster domain */
	/* 1 if addr (host order) is inside the cluster subnets. */
	int (*allowed)(void *arg, uint32_t addr);
	void *arg;
	/* Where previews are kept across restarts (mode 0600), or NULL. */
	const char *store;
	struct icpt_reg *icpts;	/* whose intercepts previews serve (borrowed) */
};

/* Check the options: url_base may be NULL (http://LISTEN). 0, or -1 and err. */
int preview_config(const char *listen_on, const char *url_base, char *err, size_t errlen);
/* Start listening (after preview_config); 0, or -1 and err. Without a
 * configured listener, only the requests fail ("serves no previews"). */
int preview_start(const struct preview_env *env, char *err, size_t errlen);
/* A daemon's "preview-create", "preview-list" or "preview-remove", valid by
 * kb_msg_parse: 1 if handled (the result is sent, maybe later), 0 if type
 * is not ours. */
int preview_request(struct client *c, enum kb_msg_type type, const struct cJSON *msg);
/* Intercept id ended, by its owner or released after its workstation went
 * away: its previews end with it. Returns how many it had. */
int preview_intercept_ended(const char *id, int released);
/* owner made intercept id on wl.ns (after a restart of the manager, again
 * under its old id): the previews kept for exactly that intercept serve it
 * again; none of another intercept does. */
void preview_intercept_made(const char *owner, const char *wl, const char *ns, const char *id);
/* The previews as the stores keep them (a list the caller frees; NULL when
 * out of memory), and back: those of a list that are valid, not expired
 * and not known already are added, each waiting for its intercept as
 * after a restart. Returns how many were added. */
struct cJSON *preview_dump(void);
size_t preview_restore(const struct cJSON *list);
/* The owner of the previews of intercept id, or NULL if it has none. */
const char *preview_icpt_owner(const char *id);
void preview_shutdown(void);

#endif
