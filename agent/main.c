/* kbridge-agent: the in-cluster side of kbridge. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "identity.h"
#include "manager.h"
#include "podenvapi.h"
#include "redirect.h"
#include "sidecar.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: kbridge-agent COMMAND [OPTIONS]\n"
	    "\n"
	    "commands:\n"
	    "  init      create the cluster CA and the manager certificate\n"
	    "  issue     write a client profile for a user or a sidecar\n"
	    "  manager   run the in-cluster manager\n"
	    "  sidecar   run in a workload's pod, in front of its app\n"
	    "  redirect  send a pod's numeric port to its sidecar (init container)\n"
	    "\n"
	    "Run 'kbridge-agent COMMAND --help' for a command's options.\n");
}

/* `kbridge-agent sidecar` runs kbridge-sidecar from the same directory
 * when it is there: the same code without the libraries only the manager
 * needs (libcurl and 28 more shared objects: about 0.7 MB per pod). The
 * directory is this binary's own, never a path from the caller. Returns only
 * if it is not there (the sidecar then runs here). */
static void
exec_lean_sidecar(char **argv)
{
	char self[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0 || (size_t)n + sizeof("kbridge-sidecar") >= sizeof(self))
		return;
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) == NULL)
		return;
	strcpy(slash + 1, "kbridge-sidecar");
	if (access(self, X_OK) == 0)
		execv(self, argv);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc - 1, argv + 1);
	if (!strcmp(argv[1], "issue"))
		return cmd_issue(argc - 1, argv + 1);
	if (!strcmp(argv[1], "manager"))
		return cmd_manager(argc - 1, argv + 1);
	/* A diagnostic, not in the usage: what --env-file gets from a pod. */
	if (!strcmp(argv[1], "podenv"))
		return cmd_podenv(argc - 1, argv + 1);
	if (!strcmp(argv[1], "redirect"))
		return cmd_redirect(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sidecar")) {
		exec_lean_sidecar(argv);
		return cmd_sidecar(argc - 1, argv + 1);
	}
	fprintf(stderr, "kbridge-agent: unknown command '%s' (try --help)\n", argv[1]);
	return 2;
}
