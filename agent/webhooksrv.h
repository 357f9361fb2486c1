/* The injection webhook's HTTPS endpoint (see webhook.h for what it
 * decides): POST /mutate-pods, one request per connection, served with the
 * manager's certificate (the API server checks it against the caBundle;
 * no client certificate is asked for). Bounded: WEBHOOK_MAX_CONNS
 * connections at a time (more are closed at once), a body of at most
 * WEBHOOK_MAX_BODY, WEBHOOK_TIMEOUT_MS per connection from accept to the
 * answer sent. */
#ifndef KB_WEBHOOKSRV_H
#define KB_WEBHOOKSRV_H

#include <stddef.h>

#include "webhook.h"

#define WEBHOOK_MAX_CONNS	64
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
