/* kbridge-agent redirect: what the injected init container kbridge-redirect
 * runs for a Service whose targetPort is a number N (agent/webhook.h). In
 * the current network namespace (the pod's; the init container has
 * NET_ADMIN and nothing else) it loads one nftables table,
 * KB_REDIRECT_TABLE, with a nat prerouting chain: TCP arriving for port N,
 * IPv4 and IPv6, goes to port P, where the sidecar listens. Prerouting
 * sees only what comes from outside the pod, so the sidecar's own
 * connection to 127.0.0.1:N (the output path) still reaches the app. The
 * table is replaced in one batch when it is there already (running twice
 * leaves one), and a failure leaves nothing new. Linked into kbridge-agent
 * only (libnftables), never into kbridge-sidecar. */
#ifndef KB_REDIRECT_H
#define KB_REDIRECT_H

#include <stddef.h>

#define KB_REDIRECT_TABLE	"kbridge-redirect"	/* family inet */

/* The nft script that (re)loads the table for port -> to into buf: 0, or
 * -1 when it does not fit. */
int redirect_script(unsigned port, unsigned to, char *buf, size_t len);

/* kbridge-agent redirect --port N --to P: 0 done, 1 failed (one line on
 * stderr, nothing installed), 2 bad arguments. */
int cmd_redirect(int argc, char **argv);

#endif
