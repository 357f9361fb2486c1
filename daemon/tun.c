/* The daemon's TUN link: the kernel deletes it, routes and all, when the
 * descriptor closes, so the daemon never has to undo it. */
#include "tun.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "exec.h"
#include "log.h"

/* Packets read per tun_drain call, so a flood cannot starve the event loop. */
#define TUN_DRAIN_MAX 256

struct kb_tun {
	int fd;
	uint32_t addr;
	char name[IFNAMSIZ];
	char addrstr[INET_ADDRSTRLEN];
};

struct kb_tun *
tun_open(const char *name, uint32_t addr, char *err, size_t errlen)
{
	struct kb_tun *t;
	struct ifreq ifr;
	struct in_addr in;
	char cidr[INET_ADDRSTRLEN + 3];

	if (name == NULL)
		name = "kbridge%d";
	if (strlen(name) >= IFNAMSIZ) {
		snprintf(err, errlen, "tun: link name too long: %s", name);
		return NULL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errlen, "tun: %s", strerror(errno));
		return NULL;
	}
	t->fd = -1;
	t->addr = addr;
	in.s_addr = htonl(addr);
	inet_ntop(AF_INET, &in, t->addrstr, sizeof(t->addrstr));
	snprintf(cidr, sizeof(cidr), "%s/32", t->addrstr);

	if ((t->fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK)) == -1) {
		snprintf(err, errlen, "tun: open /dev/net/tun: %s", strerror(errno));
		goto fail;
	}
	/* Not TUNSETPERSIST: the link must die with the descriptor. */
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(t->fd, TUNSETIFF, &ifr) == -1) {
		snprintf(err, errlen, "tun: create link %s: %s", name, strerror(errno));
		goto fail;
	}
	memcpy(t->name, ifr.ifr_name, IFNAMSIZ - 1);

	{
		char *addcmd[] = { "ip", "addr", "add", cidr, "dev", t->name, NULL };
		/* No packet crosses the link (the redirect takes them first), but
		 * its MTU sets the MSS of redirected connections: loopback-sized
		 * segments instead of 1460-byte ones. */
		char *upcmd[] = { "ip", "link", "set", "dev", t->name, "mtu", "65535", "up", NULL };

		if (kb_exec(addcmd, err, errlen) != 0 || kb_exec(upcmd, err, errlen) != 0)
			goto fail;
	}
	log_info("tun: link %s up with address %s", t->name, t->addrstr);
	return t;
fail:
	if (t->fd != -1)
		close(t->fd);
	free(t);
	return NULL;
}

int
tun_route_add(struct kb_tun *t, const struct kb_cidr *c, char *err, size_t errlen)
{
	char dst[32];

	if (c->prefix == 0 || c->prefix > 32) {
		snprintf(err, errlen, "tun: refusing route with prefix /%u", c->prefix);
		return -1;
	}
	kb_cidr_str(c, dst, sizeof(dst));
	{
		/* "prepend", not "replace": a route to the same prefix (a VPN,
		 * a docker bridge, a LAN) is the user's and stays untouched;
		 * ours goes before it (the kernel uses the first), and the
		 * kernel removes ours with the link. Not "add": it refuses a
		 * second route to one prefix. */
		char *cmd[] = { "ip", "route", "prepend", dst, "dev", t->name,
		    "src", t->addrstr, NULL };

		if (kb_exec(cmd, err, errlen) != 0)
			return -1;
	}
	log_debug("tun: route %s via %s", dst, t->name);
	return 0;
}

int
tun_route_del(struct kb_tun *t, const struct kb_cidr *c, char *err, size_t errlen)
{
	char dst[32];
	char *cmd[] = { "ip", "route", "del", dst, "dev", t->name, NULL };

	kb_cidr_str(c, dst, sizeof(dst));
	if (kb_exec(cmd, err, errlen) != 0)
		return -1;
	log_debug("tun: route %s via %s removed", dst, t->name);
	return 0;
}

int
tun_fd(const struct kb_tun *t)
{
	return t->fd;
}

void
tun_drain(struct kb_tun *t)
{
	char buf[65536];
	ssize_t n;
	int i;

	for (i = 0; i < TUN_DRAIN_MAX; i++) {
		n = read(t->fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
	}
}

const char *
tun_name(const struct kb_tun *t)
{
	return t->name;
}

void
tun_close(struct kb_tun *t)
{
	if (t == NULL)
		return;
	close(t->fd);
	log_debug("tun: link %s closed", t->name);
	free(t);
}
