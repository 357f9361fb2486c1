/* A pod port through the Kubernetes API server's port-forward, over
 * WebSocket, with the credentials of a kubeconfig: what `kubectl
 * port-forward` does, for one TCP connection.
 *
 * GET /api/v1/namespaces/NS/pods/POD/portforward?ports=PORT upgraded to
 * WebSocket. Two subprotocols are offered, the API server picks:
 *
 * SPDY/3.1+portforward.k8s.io (KEP-4006, what kubectl 1.30+ asks for): the
 * API server ends the WebSocket itself and relays its binary messages, a
 * byte stream, to the kubelet's SPDY/3.1 port-forward (spdy.h). Per
 * connection an error stream and a data stream (headers streamtype, port,
 * requestid), opened as client-go does; the error stream's text becomes
 * err. SPDY half-closes: the local EOF is a FIN on the data stream, and the
 * pod's answer still comes until the pod's FIN, or until it has been idle
 * for KB_PF_CLOSE_WAIT_MS (a kubelet may never end a half-closed stream).
 * The error stream's text after the local EOF, once the pod has answered,
 * is how the pod's connection ended (a reset): not an error (debug log).
 *
 * v4.channel.k8s.io (the fallback: an API server without the tunnel passes
 * the WebSocket to the kubelet; or KB_PF_V4_ONLY): binary messages
 * whose first byte is the channel (0: data, 1: error, for the one port); the
 * first bytes on each channel from the server are the port (2 bytes, little
 * endian). The RFC 6455 client framing is here (masked frames, continuation,
 * ping/pong, close handshake, size limits, Sec-WebSocket-Accept checked);
 * libcurl makes the TLS connection with the kubeconfig's CA, client
 * certificate and token (CURLOPT_CONNECT_ONLY, non-blocking, on the
 * libevent loop) and carries the bytes (curl_easy_send/curl_easy_recv).
 *
 * v4.channel.k8s.io has no half-close: closing the WebSocket closes the pod's
 * connection both ways. When the local side ends its output (EOF), the data
 * it sent goes first, then a close frame; what the pod sends until the API
 * server's close comes back (at most KB_PF_CLOSE_WAIT_MS) still reaches the
 * local side. A client that half-closes and waits longer than that for an
 * answer loses it (most close both ways: HTTP, TLS, kbridge connect).
 *
 * CLI side only (reads the user's kubeconfig, may run its exec plugin:
 * blocking, bounded by kubeconfig.c's 30 s). */
#ifndef KB_PORTFORWARD_H
#define KB_PORTFORWARD_H

#include <stddef.h>

struct event_base;
struct kb_kubeconfig;
struct kb_pf;

/* Limits. */
#define KB_PF_BUF_MAX (256u << 10)       /* per direction; more stops reading the other side */
#define KB_PF_FRAME_MAX (1u << 20)       /* one frame's payload from the server */
#define KB_PF_ERROR_MAX 512              /* the error channel's text kept */
#define KB_PF_HEADER_MAX (16u << 10)     /* the upgrade answer's header */
#define KB_PF_BODY_MAX (64u << 10)       /* an error answer's body */
#define KB_PF_HANDSHAKE_MS 30000         /* TCP + TLS + upgrade */
#define KB_PF_CLOSE_WAIT_MS 2000         /* for the server's close after ours */

/* The stream ended. upgraded: the WebSocket was established (0: the API
 * server refused or could not be reached; err says why). err: NULL when the
 * stream ended cleanly, else one line: the API's Status message with the
 * HTTP status ("HTTP 403: pods \"web\" is forbidden: ..."), the kubelet's
 * error channel ("error forwarding port 9 to pod ...: connection refused"),
 * or what failed. Called once, from the loop (never inside kb_pf_open); the
 * kb_pf is freed when it returns (do not kb_pf_close it). */
typedef void (*kb_pf_done_cb)(void *arg, int upgraded, const char *err);

/* Start relaying the connected local socket fd (non-blocking is set here)
 * to port of pod ns/pod. fd is owned by the kb_pf from this call on, also
 * when it fails. kc is borrowed: it must outlive the kb_pf (its credentials
 * are read and, on a 401, refreshed once). NULL with one line in err on bad
 * arguments or when nothing could be started (then done is never called). */
struct kb_pf *kb_pf_open(struct event_base *base, struct kb_kubeconfig *kc, const char *ns,
    const char *pod, int port, int fd, kb_pf_done_cb done, void *arg, char *err,
    size_t errlen);
/* Stop now: both sides closed, done is not called. NULL is fine. */
void kb_pf_close(struct kb_pf *pf);

/* The stream is open (the upgrade answered 101) over transport, a fixed
 * string (KB_PF_SPDY or KB_PF_V4); called from the loop with done's arg. */
typedef void (*kb_pf_open_cb)(void *arg, const char *transport);
#define KB_PF_SPDY "SPDY/3.1 over WebSocket (" "SPDY/3.1+portforward.k8s.io" ")"
#define KB_PF_V4 "WebSocket (v4.channel.k8s.io)"
#define KB_PF_V4_ONLY 0x01 /* offer v4.channel.k8s.io only, no SPDY tunnel */
/* Right after kb_pf_open: flags (KB_PF_V4_ONLY) and opened (NULL: none). */
void kb_pf_options(struct kb_pf *pf, int flags, kb_pf_open_cb opened);

/* The pod a Service sends to: its selector's pods that are Running and
 * Ready and not being deleted, the one Ready the latest. Blocking (libcurl,
 * at most 20 s per request). 0 with the pod's name in pod, or -1 with one
 * line in err ("service kbridge/x has no ready pod"). */
int kb_pf_service_pod(struct kb_kubeconfig *kc, const char *ns, const char *service, char *pod,
    size_t podlen, char *err, size_t errlen);

#endif
