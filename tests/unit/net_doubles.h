/* Test doubles for daemon/net.c, the daemon's network setup (tun device,
 * routes, nftables, DNS redirection): it changes the host, so the tests and
 * fuzzers of the session (tests/unit/test_tunnel.c, tests/fuzz/
 * daemon_doubles.h) succeed without it and only keep the subnets. Include
 * after daemon/tunnel.c. */
#ifndef KB_NET_DOUBLES_H
#define KB_NET_DOUBLES_H

#include <string.h>

#include "../../daemon/kbridged.h"

int
net_up(struct kbd *d, char *err, size_t errlen)
{
	(void)d;
	(void)err;
	(void)errlen;
	return 0;
}

void
net_down(struct kbd *d)
{
	(void)d;
}

int
net_subnets(struct kbd *d, const struct kb_cidr *v, size_t n, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	memcpy(d->subnets, v, n * sizeof(v[0]));
	d->nsubnets = n;
	return 0;
}

#endif
