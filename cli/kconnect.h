/* kbridge connect with a kubeconfig (cli/kconnect.c): the connect
 * request's profile and cluster description, made as the user. */
#ifndef KB_CLI_KCONNECT_H
#define KB_CLI_KCONNECT_H

#include <sys/types.h>

#include <cjson/cJSON.h>

struct kconnect_opts {
	const char *kubeconfig;		/* --kubeconfig, or NULL: $KUBECONFIG, ~/.kube/config */
	const char *context;		/* --context, or NULL: current-context */
	const char *install_ns;		/* where kbridge is installed */
	const char *manager_address;	/* HOST:PORT, or NULL: through the port-forward */
	int timeout_ms;			/* for the certificate */
};

/* The connect body's "profile" and "kube" objects (the caller's), and the
 * forwarder started (*fwd, -1 if none). 0, or -1 after one reported line
 * (nothing is left running then). */
int kconnect_prepare(const struct kconnect_opts *o, cJSON **profile, cJSON **kube, pid_t *fwd);
/* Is the session in status st (kbridged's /v1/status) the one o would
 * make: the same context, API server, install namespace and way to the
 * manager? Then connect has nothing to do. */
int kconnect_same(const struct kconnect_opts *o, const cJSON *st);
/* Stop a forwarder kconnect_prepare started (fwd <= 0: nothing). */
void kconnect_abort(pid_t fwd);

#endif
