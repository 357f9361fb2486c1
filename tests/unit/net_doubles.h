/* Test doubles for daemon/net.c, the daemon's network setup (tun device,
 * routes, nftables, DNS redirection): it changes the host, so the tests and
 * fuzzers of the session (tests/unit/test_tunnel.c, tests/fuzz/
 * daemon_doubles.h) succeed without it. Include
 * after daemon/tunnel.c. */
#ifndef KB_NET_DOUBLES_H
#define KB_NET_DOUBLES_H

#include <stdio.h>
#include <string.h>

#include "../../daemon/kbridged.h"

/* Set to make net_up fail as a missing tun device would. */
static int net_up_fails;

int
net_up(struct kbd *d, const struct kbd_cluster *c, char *err, size_t errlen)
{
	(void)d;
	(void)c;
	if (net_up_fails) {
		snprintf(err, errlen, "no tun device");
		return -1;
	}
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
	(void)d;
	(void)v;
	(void)n;
	(void)err;
	(void)errlen;
	return 0;
}

#endif
