/* kbridge-sidecar: the sidecar alone (what `kbridge-agent sidecar` runs),
 * linked without what only the manager uses (libcurl and the libraries it
 * brings: 28 more shared objects, about 0.7 MB of memory per pod). */
#include <string.h>

#include "sidecar.h"

/* Called as `kbridge-sidecar OPTIONS`, or exec'd by `kbridge-agent
 * sidecar OPTIONS` with its argv (argv[1] is "sidecar" then). */
int
main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "sidecar"))
		return cmd_sidecar(argc - 1, argv + 1);
	argv[0] = "sidecar";
	return cmd_sidecar(argc, argv);
}
