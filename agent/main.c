/* kbridge-agent: the in-cluster side of kbridge. */
#include <stdio.h>
#include <string.h>

#include "identity.h"
#include "manager.h"
#include "podenvapi.h"
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
	    "\n"
	    "Run 'kbridge-agent COMMAND --help' for a command's options.\n");
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
	if (!strcmp(argv[1], "sidecar"))
		return cmd_sidecar(argc - 1, argv + 1);
	fprintf(stderr, "kbridge-agent: unknown command '%s' (try --help)\n", argv[1]);
	return 2;
}
