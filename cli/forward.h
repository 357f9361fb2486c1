/* A local listening socket forwarded to a Service's pod through the API
 * server's port-forward (cli/forward.c, proto/portforward.h), on the
 * caller's libevent loop: each accepted connection looks the Service's
 * ready pod up again (blocking, bounded: kb_pf_service_pod) and gets its
 * own WebSocket stream. Errors of a stream are reported with errorx(). */
#ifndef KB_FORWARD_H
#define KB_FORWARD_H

#include <stddef.h>

struct event_base;
struct sockaddr_in;
struct kb_kubeconfig;
struct kb_forward;

#define KB_FORWARD_MAX_STREAMS 64 /* at once; more connections are closed */

/* Accept on listen_fd (a listening socket; owned from this call on, also
 * on failure) and forward to port of the Service ns/service's pod. kc is
 * borrowed and must outlive the forwarder. NULL with err. */
struct kb_forward *kb_forward_start(struct event_base *base, struct kb_kubeconfig *kc,
    const char *ns, const char *service, int port, int listen_fd, char *err, size_t errlen);
/* Streams open now. */
int kb_forward_streams(const struct kb_forward *f);
/* Has a stream been accepted (kbridged has used us)? */
int kb_forward_served(const struct kb_forward *f);
/* Close the listener and every stream. NULL is fine. */
void kb_forward_stop(struct kb_forward *f);

/* A listening TCP socket (close-on-exec) on 127.0.0.1:port, 0 for any free
 * port; bound gets the address it has. The fd, or -1 with errno. */
int kb_forward_listen(int port, struct sockaddr_in *bound);

#endif
