/* The workstation side of connect: the daemon's link with the cluster
 * routes, the transparent TCP listener, the DNS proxy and the redirect rules.
 * Everything here is undone by net_down(), and by the kernel if we die. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

#include "dns.h"
#include "firewall.h"
#include "kbridged.h"
#include "listener.h"
#include "log.h"
#include "tun.h"

static void
proxy_accept(int fd, struct sockaddr *sa, int salen, void *arg)
{
	struct kbd *d = arg;
	struct sockaddr_in dst;
	socklen_t len = sizeof(dst);

	(void)sa;
	(void)salen;
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) < 0) {
		log_warn("%s: SO_ORIGINAL_DST", __func__);
		close(fd);
		return;
	}
	tunnel_open_stream(d->tunnel, fd, &dst);
}

static int
proxy_listen(struct kbd *d, char *err, size_t errlen)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Accepted connections inherit it: one setsockopt instead of one each. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 4096) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		goto fail;
	d->proxy = kb_listener_new(d->base, "transparent listener", fd, proxy_accept, d);
	if (!d->proxy) {
		fd = -1;	/* closed */
		goto fail;
	}
	d->proxy_port = ntohs(sin.sin_port);
	return 0;
fail:
	snprintf(err, errlen, "transparent listener: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static void
tun_readable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tun_drain(arg);
}

static int
same_subnets(const struct kbd *d, const struct kbd_cluster *c)
{
	return d->napplied == c->nsubnets &&
	    memcmp(d->applied, c->subnets, c->nsubnets * sizeof(c->subnets[0])) == 0;
}

void
net_namespaces(struct kbd *d, const struct kbd_cluster *c)
{
	if (d->dns) {
		dns_set_cluster(d->dns, c->domain, (const char *const *)c->namespaces,
		    c->nnamespaces, c->ns);
		dns_set_subnets(d->dns, c->subnets, c->nsubnets);
	}
}

int
net_up(struct kbd *d, const struct kbd_cluster *c, char *err, size_t errlen)
{
	struct kb_dns_hooks hooks = { .resolve = tunnel_resolve, .resolve_rr = tunnel_resolve_rr,
		.arg = d->tunnel };
	struct kb_fw_config cfg;
	const uint32_t *ups;
	size_t i;

	if (d->tun && same_subnets(d, c)) {
		net_namespaces(d, c);
		return 0;
	}
	net_down(d);
	if (net_check_subnets(d, c->subnets, c->nsubnets, err, errlen) < 0)
		return -1;
	if (proxy_listen(d, err, errlen) < 0)
		goto fail;
	if ((d->dns = dns_new(d->base, &hooks, NULL, 0, err, errlen)) == NULL)
		goto fail;
	net_namespaces(d, c);
	if ((d->tun = tun_open(NULL, d->tun_addr, err, errlen)) == NULL)
		goto fail;
	for (i = 0; i < c->nsubnets; i++)
		if (tun_route_add(d->tun, &c->subnets[i], err, errlen) < 0)
			goto fail;
	d->tun_ev = event_new(d->base, tun_fd(d->tun), EV_READ | EV_PERSIST, tun_readable, d->tun);
	if (!d->tun_ev || event_add(d->tun_ev, NULL) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((d->fw = fw_open(d->instance, err, errlen)) == NULL)
		goto fail;
	memset(&cfg, 0, sizeof(cfg));
	cfg.subnets = c->subnets;
	cfg.nsubnets = c->nsubnets;
	cfg.proxy_port = d->proxy_port;
	cfg.ndns = dns_upstreams(d->dns, &ups);
	cfg.dns_servers = ups;
	cfg.dns_port = dns_port(d->dns);
	if (fw_apply(d->fw, &cfg, err, errlen) < 0)
		goto fail;
	memcpy(d->applied, c->subnets, c->nsubnets * sizeof(c->subnets[0]));
	d->napplied = c->nsubnets;
	log_info("network up: link %s, table %s, %zu subnets, proxy port %u, dns port %u",
	    tun_name(d->tun), fw_table(d->fw), c->nsubnets, d->proxy_port, dns_port(d->dns));
	return 0;
fail:
	net_down(d);
	return -1;
}

static int
cidr_in(const struct kb_cidr *c, const struct kb_cidr *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i].addr == c->addr && v[i].prefix == c->prefix)
			return 1;
	return 0;
}

/* A subnet list the daemon may route, checked before anything changes (the
 * hello's and every update's; fw_apply checks again): not over the link's
 * own address, not loopback or everything, no prefix twice (a second route
 * to it would fail half-way). */
int
net_check_subnets(const struct kbd *d, const struct kb_cidr *v, size_t n, char *err,
    size_t errlen)
{
	char buf[32];
	size_t i;

	for (i = 0; i < n; i++) {
		if (kb_cidr_contains(&v[i], d->tun_addr)) {
			snprintf(err, errlen, "the link address collides with cluster subnet %s",
			    kb_cidr_str(&v[i], buf, sizeof(buf)));
			return -1;
		}
		if (v[i].prefix == 0 || kb_cidr_contains(&v[i], 0x7f000001u) ||
		    (v[i].addr >> 24) == 127) {
			snprintf(err, errlen, "subnet %s is not a cluster subnet",
			    kb_cidr_str(&v[i], buf, sizeof(buf)));
			return -1;
		}
		if (cidr_in(&v[i], v, i)) {
			snprintf(err, errlen, "subnet %s is listed twice",
			    kb_cidr_str(&v[i], buf, sizeof(buf)));
			return -1;
		}
	}
	return 0;
}

int
net_subnets(struct kbd *d, const struct kb_cidr *v, size_t n, char *err, size_t errlen)
{
	struct kb_cidr added[KBD_MAX_SUBNETS];
	struct kb_fw_config cfg;
	const uint32_t *ups;
	char e2[256], buf[32];
	size_t i, nadded = 0;

	if (n > KBD_MAX_SUBNETS) {
		snprintf(err, errlen, "too many subnets");
		return -1;
	}
	if (net_check_subnets(d, v, n, err, errlen) < 0)
		return -1;
	if (!d->tun || !d->fw) {
		/* Not set up (yet): net_up takes the cluster's. */
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (cidr_in(&v[i], d->applied, d->napplied))
			continue;
		if (tun_route_add(d->tun, &v[i], err, errlen) < 0)
			goto undo;
		added[nadded++] = v[i];
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.subnets = v;
	cfg.nsubnets = n;
	cfg.proxy_port = d->proxy_port;
	cfg.ndns = dns_upstreams(d->dns, &ups);
	cfg.dns_servers = ups;
	cfg.dns_port = dns_port(d->dns);
	/* One batch: the kernel keeps the old table if it fails. */
	if (fw_apply(d->fw, &cfg, err, errlen) < 0)
		goto undo;
	for (i = 0; i < d->napplied; i++)
		if (!cidr_in(&d->applied[i], v, n) &&
		    tun_route_del(d->tun, &d->applied[i], e2, sizeof(e2)) < 0)
			log_warnx("cannot remove the route to %s (nothing is redirected there "
			    "any more; it goes when the link does): %s",
			    kb_cidr_str(&d->applied[i], buf, sizeof(buf)), e2);
	memcpy(d->applied, v, n * sizeof(v[0]));
	d->napplied = n;
	return 0;
undo:
	for (i = 0; i < nadded; i++)
		if (tun_route_del(d->tun, &added[i], e2, sizeof(e2)) < 0)
			log_warnx("cannot remove the route to %s: %s",
			    kb_cidr_str(&added[i], buf, sizeof(buf)), e2);
	return -1;
}

void
net_down(struct kbd *d)
{
	/* Rules first: from here on nothing is redirected to us. */
	if (d->fw) {
		fw_close(d->fw);
		d->fw = NULL;
	}
	if (d->tun_ev) {
		event_free(d->tun_ev);
		d->tun_ev = NULL;
	}
	if (d->tun) {
		tun_close(d->tun);
		d->tun = NULL;
	}
	if (d->dns) {
		dns_free(d->dns);
		d->dns = NULL;
	}
	if (d->proxy) {
		kb_listener_free(d->proxy);
		d->proxy = NULL;
		d->proxy_port = 0;
	}
}

void
net_status_json(const struct kbd *d, cJSON *j)
{
	const uint32_t *ups;
	cJSON *dns, *a;
	char buf[16];
	size_t i, n;

	if (d->tun)
		cJSON_AddStringToObject(j, "link", tun_name(d->tun));
	if (d->fw)
		cJSON_AddStringToObject(j, "table", fw_table(d->fw));
	if (!d->dns)
		return;
	n = dns_upstreams(d->dns, &ups);
	dns = cJSON_AddObjectToObject(j, "dns");
	cJSON_AddNumberToObject(dns, "port", dns_port(d->dns));
	a = cJSON_AddArrayToObject(dns, "upstreams");
	for (i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%u.%u.%u.%u", ups[i] >> 24, (ups[i] >> 16) & 255,
		    (ups[i] >> 8) & 255, ups[i] & 255);
		cJSON_AddItemToArray(a, cJSON_CreateString(buf));
	}
}
