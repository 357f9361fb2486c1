/* The injection webhook's HTTPS endpoint (see webhook.h for what it
 * decides): POST /mutate-pods, one request per connection, served with the
 * manager's certificate (the API server checks it against the caBundle;
 * no client certificate is asked for). Anything in the cluster can
 * connect, so: WEBHOOK_MAX_CONNS connections at a time, WEBHOOK_MAX_PER_SRC
 * of them from one address (a kb_pool: a new connection beyond either
 * pushes out the oldest that sent nothing yet, so idle connections cannot
 * keep the API server out), a body of at most WEBHOOK_MAX_BODY (413), and
 * WEBHOOK_TIMEOUT_MS per connection from accept to a complete request.
 * With cfg->enroller also POST /enroll (agent/enroll.h): the connection
 * stays in the pool, under the same deadline, until the API answered. */
#ifndef KB_WEBHOOKSRV_H
#define KB_WEBHOOKSRV_H

#include <stddef.h>

#include "webhook.h"

#define WEBHOOK_MAX_CONNS	128
#define WEBHOOK_MAX_PER_SRC	32
#define WEBHOOK_MAX_BODY	(1 << 20)
#define WEBHOOK_TIMEOUT_MS	10000
#define WEBHOOK_PATH		"/mutate-pods"

struct event_base;
struct webhook_srv;

/* Listen on hostport ("0.0.0.0:8444") with cert_pem/key_pem (copied; cfg's
 * strings are copied too). NULL with err. */
struct webhook_srv *webhook_srv_start(struct event_base *base, const char *hostport,
    const char *ca_pem, const char *cert_pem, const char *key_pem,
    const struct webhook_cfg *cfg, char *err, size_t errlen);
/* Closes the listener and every connection. NULL is fine. */
void webhook_srv_free(struct webhook_srv *w);

#endif
