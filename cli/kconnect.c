/* kbridge connect with a kubeconfig: everything the connect request needs,
 * made here as the user (the root daemon never reads a kubeconfig nor runs
 * an exec plugin):
 *   1. the user's kbridge identity through a CertificateSigningRequest
 *      (cli/identity.c), which also says who the user is;
 *   2. unless --manager-address names the manager, the permission to
 *      port-forward to it (one line naming what is missing), and a
 *      forwarder: `kbridge port-forward` started in the background as the
 *      user, on a loopback port this process bound, relaying each
 *      connection of kbridged through the API server's port-forward to the
 *      manager pod that is ready then (so a replaced pod is found again);
 *      it ends by itself once kbridged no longer uses it;
 *   3. the profile (manager address, name, CA, certificate, key) and what
 *      kbridge status shows of the cluster (context, cluster, server). */
#include "kconnect.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cmd.h"
#include "forward.h"
#include "identity.h"
#include "kube.h"
#include "kubeconfig.h"
#include "manifests.h"
#include "tls.h"

#define MISSING_HINT "ask an admin to bind ClusterRole " KB_DEVELOPER_NAME

/* What the forwarder needs and the daemon's connect uses: in this order. */
static const struct {
	const char *verb, *resource, *sub;
} fwd_needs[] = {
	{ "get", "pods", "portforward" },	/* what a WebSocket upgrade is */
	{ "create", "pods", "portforward" },	/* and what older servers ask */
	{ "get", "services", NULL },
	{ "list", "pods", NULL },
};

/* May the user do all the forwarder needs in ns? 0, or -1 reported as one
 * line naming the first permission missing. */
static int
may_forward(struct kapi *k, const char *user, const char *ns)
{
	char err[600], what[64];
	size_t i;
	int r;

	for (i = 0; i < sizeof(fwd_needs) / sizeof(fwd_needs[0]); i++) {
		r = kube_access(k, ns, "", fwd_needs[i].resource, fwd_needs[i].sub,
		    fwd_needs[i].verb, NULL, err, sizeof(err));
		if (r == 1)
			continue;
		if (r == -1) {
			errorx("connect: cannot check permissions: %s", err);
			return -1;
		}
		snprintf(what, sizeof(what), "%s%s%s", fwd_needs[i].resource,
		    fwd_needs[i].sub ? "/" : "", fwd_needs[i].sub ? fwd_needs[i].sub : "");
		errorx("connect: %s may not %s %s in namespace %s (%s)", user, fwd_needs[i].verb,
		    what, ns, MISSING_HINT);
		return -1;
	}
	return 0;
}

/* A listening TCP socket on 127.0.0.1, any port: the fd and *port, or -1
 * (reported). */
static int
loopback_listener(int *port)
{
	struct sockaddr_in sin;
	int fd;

	if ((fd = kb_forward_listen(0, &sin)) == -1) {
		errorx("connect: cannot listen on 127.0.0.1: %s", strerror(errno));
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

/* Start `kbridge port-forward` in the background on lfd, its output in
 * logpath: its pid, or -1 (reported). Its kubeconfig is the one this
 * command read (the same --kubeconfig, or the same environment) and its
 * context is pinned to the one resolved here. */
static pid_t
spawn_forwarder(const struct kconnect_opts *o, const char *context, int lfd,
    const char *logpath)
{
	char port[16];
	const char *argv[20];
	int n = 0, fd;
	pid_t pid;

	snprintf(port, sizeof(port), "0:%d", KB_MANAGER_TLS_PORT);
	argv[n++] = "kbridge";
	argv[n++] = "port-forward";
	argv[n++] = "--listen-fd=3";
	argv[n++] = "--exit-with-daemon";
	if (o->kubeconfig) {
		argv[n++] = "--kubeconfig";
		argv[n++] = o->kubeconfig;
	}
	argv[n++] = "--context";
	argv[n++] = context;
	argv[n++] = "--namespace";
	argv[n++] = o->install_ns;
	argv[n++] = "--";
	argv[n++] = KB_MANAGER_NAME;
	argv[n++] = port;
	argv[n] = NULL;

	if ((pid = fork()) == -1) {
		errorx("connect: cannot start the port-forward: %s", strerror(errno));
		return -1;
	}
	if (pid > 0)
		return pid;
	/* The child: its own session, so the terminal's Ctrl-C does not end
	 * it; output to its log; the listener as fd 3. */
	setsid();
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) != -1)
		dup2(fd, 0);
	/* A new log for each session: it cannot grow across them. */
	if ((fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600)) != -1) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	/* dup2 onto itself would keep close-on-exec */
	if (lfd == 3 ? fcntl(lfd, F_SETFD, 0) == -1 : dup2(lfd, 3) == -1)
		_exit(127);
	/* Our own binary by its name (so ps and ss say kbridge); /proc/self/exe
	 * if it is gone. */
	{
		char self[4096];
		ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (len > 0) {
			self[len] = '\0';
			execv(self, (char *const *)argv);
		}
	}
	execv("/proc/self/exe", (char *const *)argv);
	fprintf(stderr, "kbridge: cannot run the port-forward: %s\n", strerror(errno));
	_exit(127);
}

static int
add_str(cJSON *o, const char *name, const char *v)
{
	return v == NULL || cJSON_AddStringToObject(o, name, v) != NULL;
}

/* The context's never-proxy and also-proxy ranges and virtual subnet, as a profile file
 * would carry them (cmd_connect checks them with the command line's). */
static int
add_ranges(cJSON *profile, const struct kb_kubeconfig *kc)
{
	static const char *keys[2] = { "never_proxy", "also_proxy" };
	const char *const *v;
	cJSON *a;
	size_t i, n;
	int also;

	for (also = 0; also < 2; also++) {
		if ((n = kb_kubeconfig_ranges(kc, also, &v)) == 0)
			continue;
		if ((a = cJSON_AddArrayToObject(profile, keys[also])) == NULL)
			return 0;
		for (i = 0; i < n; i++)
			if (!cJSON_AddItemToArray(a, cJSON_CreateString(v[i])))
				return 0;
	}
	return add_str(profile, "virtual_subnet", kb_kubeconfig_virtual_subnet(kc));
}

int
kconnect_prepare(const struct kconnect_opts *o, cJSON **profile, cJSON **kube, pid_t *fwd)
{
	struct kb_csr_ident id = { 0 };
	struct kapi k = { 0 };
	char err[1024], addr[300], logpath[4096];
	const char *context;
	int lfd = -1, port, rc = -1;

	*profile = *kube = NULL;
	*fwd = -1;
	if (load_kubeconfig("connect", o->kubeconfig, o->context, &k) == -1)
		return -1;
	context = kb_kubeconfig_context(k.kc);
	if (kb_kubeconfig_auth(k.kc, err, sizeof(err)) == -1) {
		errorx("connect: %s", err);
		goto out;
	}
	if (kb_csr_identity_ex(k.kc, o->install_ns, o->timeout_ms, &id, err, sizeof(err)) == -1) {
		errorx("connect: %s", err);
		goto out;
	}
	if (o->manager_address) {
		snprintf(addr, sizeof(addr), "%s", o->manager_address);
	} else {
		if (may_forward(&k, id.user, o->install_ns) == -1 ||
		    (lfd = loopback_listener(&port)) == -1)
			goto out;
		snprintf(logpath, sizeof(logpath), "%s/port-forward.log", id.cache_dir);
		if ((*fwd = spawn_forwarder(o, context, lfd, logpath)) == -1)
			goto out;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	}
	if ((*profile = cJSON_CreateObject()) == NULL || (*kube = cJSON_CreateObject()) == NULL ||
	    !add_str(*profile, "manager", addr) || !add_str(*profile, "name", id.user) ||
	    !add_str(*profile, "role", KB_ROLE_USER) || !add_str(*profile, "ca", id.ca_pem) ||
	    !add_str(*profile, "cert", id.cert_pem) || !add_str(*profile, "key", id.key_pem) ||
	    !add_str(*kube, "context", context) ||
	    !add_str(*kube, "cluster", kb_kubeconfig_cluster(k.kc)) ||
	    !add_str(*kube, "server", kb_kubeconfig_server(k.kc)) ||
	    !add_str(*kube, "install_namespace", o->install_ns) ||
	    !add_str(*kube, "via", o->manager_address ? "address" : "port-forward") ||
	    !add_ranges(*profile, k.kc)) {
		errorx("out of memory");
		goto out;
	}
	rc = 0;
out:
	if (lfd != -1)
		close(lfd);
	if (rc == -1) {
		kconnect_abort(*fwd);
		*fwd = -1;
		cJSON_Delete(*profile);
		cJSON_Delete(*kube);
		*profile = *kube = NULL;
	}
	kb_csr_ident_free(&id);
	kapi_close(&k);
	return rc;
}

void
kconnect_abort(pid_t fwd)
{
	if (fwd > 0) {
		kill(fwd, SIGTERM);
		waitpid(fwd, NULL, 0);
	}
}

int
kconnect_same(const struct kconnect_opts *o, const cJSON *st)
{
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(st, "kube");
	struct kapi kc = { 0 };
	const char *via = jstr(k, "via"), *ns = jstr(k, "install_namespace");
	int same;

	if (k == NULL || via == NULL || ns == NULL || strcmp(ns, o->install_ns) ||
	    strcmp(via, o->manager_address ? "address" : "port-forward") ||
	    (o->manager_address && strcmp(orelse(jstr(st, "manager"), ""), o->manager_address)))
		return 0;
	/* Quietly: a kubeconfig that does not load is reported by prepare. */
	{
		struct kb_kubeconfig_opts ko = { .path = o->kubeconfig, .context = o->context,
		    .env = getenv("KUBECONFIG"), .home = getenv("HOME") };
		char err[512];

		if ((kc.kc = kb_kubeconfig_load(&ko, err, sizeof(err))) == NULL)
			return 0;
	}
	same = !strcmp(orelse(jstr(k, "context"), ""), kb_kubeconfig_context(kc.kc)) &&
	    !strcmp(orelse(jstr(k, "server"), ""), kb_kubeconfig_server(kc.kc));
	kapi_close(&kc);
	return same;
}
