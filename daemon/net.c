/* The workstation side of connect: the daemon's link with the cluster
 * routes, the transparent TCP listener, the DNS proxy and the redirect rules.
 * Everything here is undone by net_down(), and by the kernel if we die. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
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
#include "netplan.h"
#include "tun.h"
#include "vnat.h"

/* A connection to a virtual address goes to the real cluster address
 * behind it (vnat.h): dst rewritten; -1 if it maps nothing. */
static int
vnat_real(const struct kbd *d, struct sockaddr_in *dst)
{
	uint32_t a = ntohl(dst->sin_addr.s_addr), real;
	char buf[INET_ADDRSTRLEN];

	if (d->vnat == NULL || !kb_cidr_contains(kb_vnat_subnet(d->vnat), a))
		return 0;
	if (kb_vnat_real(d->vnat, a, &real) < 0) {
		log_debug("virtual address %s maps nothing: refused",
		    inet_ntop(AF_INET, &dst->sin_addr, buf, sizeof(buf)));
		return -1;
	}
	dst->sin_addr.s_addr = htonl(real);
	return 0;
}

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
	if (vnat_real(d, &dst) < 0) {
		struct linger l = { 1, 0 };

		/* a virtual address that names nothing: refused at once */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
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
same_plan(const struct kbd *d, const struct kb_cidr *v, size_t n)
{
	return kb_cidr_list_eq(d->applied, d->napplied, v, n);
}

/* The ranges to route and redirect for the cluster subnets v: with the
 * user's also-proxy, less never-proxy (netplan.h), all checked. */
static int
net_plan(struct kbd *d, const struct kb_cidr *v, size_t n, struct kb_cidr *out,
    size_t *nout, char *err, size_t errlen)
{
	int rc;

	if (net_check_subnets(d, v, n, err, errlen) < 0)
		return -1;
	rc = kb_netplan(v, n, d->also, d->nalso, d->never, d->nnever, out, KB_NETPLAN_MAX);
	if (rc < 0) {
		snprintf(err, errlen, "more than %d ranges to proxy once never-proxy ranges "
		    "are cut out; use fewer or wider --never-proxy ranges", KB_NETPLAN_MAX);
		return -1;
	}
	if (net_check_subnets(d, out, (size_t)rc, err, errlen) < 0)
		return -1;
	*nout = (size_t)rc;
	return 0;
}

/* Call fn for every IPv4 unicast route of the workstation to a prefix
 * (not the default route), in every table: its destination and link. */
typedef void (*route_fn)(void *arg, const struct kb_cidr *dst, int oif);

static void
route_msg(const struct nlmsghdr *nh, route_fn fn, void *arg)
{
	const struct rtmsg *rt = NLMSG_DATA(nh);
	const struct rtattr *a;
	const struct rtnexthop *nhp;
	struct kb_cidr dst = { 0, 0 };
	uint32_t addr;
	int len, oif = 0, has_dst = 0;

	if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)) || rt->rtm_family != AF_INET ||
	    rt->rtm_type != RTN_UNICAST || rt->rtm_dst_len == 0 || rt->rtm_dst_len > 32)
		return;
	len = RTM_PAYLOAD(nh);
	for (a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == RTA_DST && RTA_PAYLOAD(a) == 4) {
			memcpy(&addr, RTA_DATA(a), 4);
			dst.addr = ntohl(addr);
			has_dst = 1;
		} else if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) == sizeof(int)) {
			memcpy(&oif, RTA_DATA(a), sizeof(int));
		} else if (a->rta_type == RTA_MULTIPATH && oif == 0 &&
		    RTA_PAYLOAD(a) >= sizeof(*nhp)) {
			nhp = RTA_DATA(a);
			oif = nhp->rtnh_ifindex;
		}
	}
	if (!has_dst)
		return;
	dst.prefix = rt->rtm_dst_len;
	fn(arg, &dst, oif);
}

static int
route_dump(route_fn fn, void *arg)
{
	struct {
		struct nlmsghdr nh;
		struct rtmsg rt;
	} req;
	struct timeval tv = { 1, 0 };
	struct nlmsghdr *nh;
	static char buf[32768];
	ssize_t n;
	int fd, ret = -1;

	if ((fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = RTM_GETROUTE;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.rt.rtm_family = AF_INET;
	if (send(fd, &req, sizeof(req), 0) < 0)
		goto done;
	for (;;) {
		if ((n = recv(fd, buf, sizeof(buf), 0)) < 0) {
			if (errno == EINTR)
				continue;
			goto done;
		}
		if (n == 0)
			goto done;
		for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n); nh = NLMSG_NEXT(nh, n)) {
			if (nh->nlmsg_type == NLMSG_DONE) {
				ret = 0;
				goto done;
			}
			if (nh->nlmsg_type == NLMSG_ERROR)
				goto done;
			if (nh->nlmsg_type == RTM_NEWROUTE)
				route_msg(nh, fn, arg);
		}
	}
done:
	close(fd);
	return ret;
}

/* Routes of other links inside a range the user reaches through us. */
struct overlaps {
	const struct kbd *d;
	int tunidx;
	cJSON *list;		/* for status, or NULL to log */
	size_t n;
};

static int
in_never(const struct kbd *d, const struct kb_cidr *c)
{
	size_t i;

	for (i = 0; i < d->nnever; i++)
		if (kb_cidr_covers(&d->never[i], c))
			return 1;
	return 0;
}

static void
overlap_one(struct overlaps *o, const struct kb_cidr *want, const struct kb_cidr *dst,
    int oif)
{
	char w[32], r[32], dev[IF_NAMESIZE];
	int kept;
	cJSON *e;

	if (!kb_cidr_covers(want, dst) || o->n >= KB_NETPLAN_MAX)
		return;
	o->n++;
	if (oif == 0 || if_indextoname((unsigned)oif, dev) == NULL)
		snprintf(dev, sizeof(dev), "?");
	kb_cidr_str(want, w, sizeof(w));
	kb_cidr_str(dst, r, sizeof(r));
	kept = in_never(o->d, dst);
	if (o->list == NULL) {
		log_warnx("%s overlaps %s on %s: %s", w, r, dev, kept ? (o->d->vnat ?
		    "kept local (never-proxy); cluster names there get virtual addresses" :
		    "kept local (never-proxy)") : want->prefix == dst->prefix ?
		    "kbridge's route goes first, the other stays as it is" :
		    "TCP to it goes to the cluster; --never-proxy keeps it local");
		return;
	}
	if ((e = cJSON_CreateObject()) == NULL)
		return;
	cJSON_AddStringToObject(e, "subnet", w);
	cJSON_AddStringToObject(e, "route", r);
	cJSON_AddStringToObject(e, "link", dev);
	cJSON_AddBoolToObject(e, "never_proxy", kept);
	cJSON_AddItemToArray(o->list, e);
}

static void
overlap_route(void *arg, const struct kb_cidr *dst, int oif)
{
	struct overlaps *o = arg;
	size_t i;

	if (oif != 0 && oif == o->tunidx)
		return;
	for (i = 0; i < o->d->ncluster; i++)
		overlap_one(o, &o->d->cluster[i], dst, oif);
	for (i = 0; i < o->d->nalso; i++)
		overlap_one(o, &o->d->also[i], dst, oif);
}

/* The workstation's routes to prefixes inside (or equal to) a cluster or
 * also-proxy range, on another link than ours: logged, or added to list. */
static void
net_overlaps(const struct kbd *d, cJSON *list)
{
	struct overlaps o = { d, 0, list, 0 };

	if (d->tun)
		o.tunidx = (int)if_nametoindex(tun_name(d->tun));
	if (route_dump(overlap_route, &o) < 0)
		log_warn("cannot list the workstation's routes");
}

/* What a virtual range must not overlap (routes of other links, the
 * workstation's addresses, cluster, proxied and user ranges, the link's
 * address), each with what it is for an error. */
#define VNAT_BUSY_MAX	2048
struct vnat_busy {
	struct kb_cidr c[VNAT_BUSY_MAX];
	char what[VNAT_BUSY_MAX][48];
	size_t n;
	int tunidx;
};

static void
busy_add(struct vnat_busy *b, const struct kb_cidr *c, const char *what, const char *dev)
{
	if (b->n >= VNAT_BUSY_MAX)
		return;
	b->c[b->n] = *c;
	snprintf(b->what[b->n], sizeof(b->what[0]), "%s%s", what, dev ? dev : "");
	b->n++;
}

static void
busy_route(void *arg, const struct kb_cidr *dst, int oif)
{
	struct vnat_busy *b = arg;
	char dev[IF_NAMESIZE];

	if (oif != 0 && oif == b->tunidx)
		return;
	if (oif == 0 || if_indextoname((unsigned)oif, dev) == NULL)
		snprintf(dev, sizeof(dev), "?");
	busy_add(b, dst, "a route on ", dev);
}

static void
busy_list(struct vnat_busy *b, const struct kb_cidr *v, size_t n, const char *what)
{
	size_t i;

	for (i = 0; i < n; i++)
		busy_add(b, &v[i], what, NULL);
}

static int
vnat_busy(const struct kbd *d, const struct kb_cidr *v, size_t n, const struct kb_cidr *plan,
    size_t nplan, struct vnat_busy *b, char *err, size_t errlen)
{
	struct ifaddrs *ifa, *i;
	struct kb_cidr c;

	b->n = 0;
	b->tunidx = d->tun ? (int)if_nametoindex(tun_name(d->tun)) : 0;
	if (route_dump(busy_route, b) < 0) {
		snprintf(err, errlen, "cannot list the workstation's routes for a virtual subnet");
		return -1;
	}
	if (getifaddrs(&ifa) < 0) {
		snprintf(err, errlen, "cannot list this workstation's addresses: %s",
		    strerror(errno));
		return -1;
	}
	for (i = ifa; i != NULL; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
			continue;
		c.addr = ntohl(((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
		c.prefix = 32;
		busy_add(b, &c, "an address of ", i->ifa_name);
	}
	freeifaddrs(ifa);
	c.addr = d->tun_addr;
	c.prefix = 32;
	busy_add(b, &c, "kbridge's link address", NULL);
	busy_list(b, v, n, "a cluster subnet");
	busy_list(b, plan, nplan, "a proxied range");
	busy_list(b, d->never, d->nnever, "a never-proxy range");
	busy_list(b, d->also, d->nalso, "an also-proxy range");
	return 0;
}

/* The virtual range for the cluster subnets v (proxied as plan): *sub,
 * prefix 0 if none is needed, and the kept-local ranges it translates.
 * The one in use stays; else the user's, checked, or the first free block
 * of the pool. 0, or -1 with err. */
static int
vnat_subnet(const struct kbd *d, const struct kb_cidr *v, size_t n, const struct kb_cidr *plan,
    size_t nplan, struct kb_cidr *kept, size_t *nkept, struct kb_cidr *sub, char *err,
    size_t errlen)
{
	struct vnat_busy *b;
	char w[32], o[32];
	size_t i;
	int rc;

	sub->addr = 0;
	sub->prefix = 0;
	*nkept = 0;
	if (d->vnat_off)
		return 0;
	if ((rc = kb_vnat_kept(v, n, d->never, d->nnever, kept, KB_VNAT_RANGES)) < 0) {
		snprintf(err, errlen, "more than %d cluster ranges kept local for virtual "
		    "addresses; use wider --never-proxy ranges or --virtual-subnet off",
		    KB_VNAT_RANGES);
		return -1;
	}
	if ((*nkept = (size_t)rc) == 0)
		return 0;
	if (d->vnat) {
		*sub = *kb_vnat_subnet(d->vnat);
		return 0;
	}
	if ((b = malloc(sizeof(*b))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (vnat_busy(d, v, n, plan, nplan, b, err, errlen) < 0) {
		free(b);
		return -1;
	}
	rc = 0;
	if (d->vnat_want.prefix == 0) {
		if ((rc = kb_vnat_pick(b->c, b->n, sub)) < 0)
			snprintf(err, errlen, "no free /%d in %s/%d for virtual addresses; "
			    "choose one with --virtual-subnet", KB_VNAT_AUTO_PREFIX,
			    kb_cidr_str(&(struct kb_cidr){ KB_VNAT_POOL, 32 }, w, sizeof(w)),
			    KB_VNAT_POOL_PREFIX);
	} else {
		*sub = d->vnat_want;
		for (i = 0; i < b->n && rc == 0; i++) {
			if (b->c[i].prefix == 0 || !kb_cidr_overlap(sub, &b->c[i]))
				continue;
			snprintf(err, errlen, "virtual subnet %s overlaps %s (%s)",
			    kb_cidr_str(sub, w, sizeof(w)), kb_cidr_str(&b->c[i], o, sizeof(o)),
			    b->what[i]);
			rc = -1;
		}
	}
	free(b);
	return rc;
}

void
net_virtual_subnet(struct kbd *d, const char *spec)
{
	struct kb_cidr c = { 0, 0 };

	d->vnat_off = spec != NULL && kb_vnat_user_subnet(spec, &c, NULL, 0) == 1;
	d->vnat_want = spec != NULL && !d->vnat_off ? c : (struct kb_cidr){ 0, 0 };
}

int
net_same_virtual_subnet(const struct kbd *d, const char *spec)
{
	struct kb_cidr c = { 0, 0 };
	int off = spec != NULL && kb_vnat_user_subnet(spec, &c, NULL, 0) == 1;

	if (spec == NULL || off)
		c.addr = c.prefix = 0;
	return off == d->vnat_off && c.addr == d->vnat_want.addr &&
	    c.prefix == d->vnat_want.prefix;
}

int
net_user_ranges(struct kbd *d, const struct kb_cidr *never, size_t nnever,
    const struct kb_cidr *also, size_t nalso, char *err, size_t errlen)
{
	struct ifaddrs *ifa, *i;
	const struct sockaddr_in *sin;
	char buf[32], ip[INET_ADDRSTRLEN];
	uint32_t a;
	size_t k;

	if (nnever > KB_NETPLAN_USER_MAX || nalso > KB_NETPLAN_USER_MAX) {
		snprintf(err, errlen, "at most %d never-proxy and also-proxy ranges",
		    KB_NETPLAN_USER_MAX);
		return -1;
	}
	if (nalso > 0 && getifaddrs(&ifa) < 0) {
		snprintf(err, errlen, "cannot list this workstation's addresses: %s",
		    strerror(errno));
		return -1;
	}
	for (k = 0; k < nalso; k++) {
		for (i = ifa; i != NULL; i = i->ifa_next) {
			if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET)
				continue;
			sin = (const struct sockaddr_in *)i->ifa_addr;
			a = ntohl(sin->sin_addr.s_addr);
			if (a == d->tun_addr || !kb_cidr_contains(&also[k], a))
				continue;
			inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
			snprintf(err, errlen, "also-proxy %s holds %s, an address of %s: it would "
			    "capture this workstation's own traffic",
			    kb_cidr_str(&also[k], buf, sizeof(buf)), ip, i->ifa_name);
			freeifaddrs(ifa);
			return -1;
		}
	}
	if (nalso > 0)
		freeifaddrs(ifa);
	memcpy(d->never, never, nnever * sizeof(never[0]));
	d->nnever = nnever;
	memcpy(d->also, also, nalso * sizeof(also[0]));
	d->nalso = nalso;
	return 0;
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

/* The virtual range sub (if any) joins the proxied ranges plan. */
static int
vnat_plan(const struct kb_cidr *sub, struct kb_cidr *plan, size_t *nplan, char *err,
    size_t errlen)
{
	if (sub->prefix == 0)
		return 0;
	if (*nplan >= KB_NETPLAN_MAX) {
		snprintf(err, errlen, "more than %d ranges to proxy with the virtual subnet",
		    KB_NETPLAN_MAX);
		return -1;
	}
	plan[(*nplan)++] = *sub;
	return 0;
}

static void
vnat_log(const struct kbd *d)
{
	const struct kb_cidr *k;
	char w[32], r[32];
	size_t i, n;

	if (d->vnat == NULL)
		return;
	k = kb_vnat_kept_ranges(d->vnat, &n);
	for (i = 0; i < n; i++)
		log_info("cluster names in %s (kept local) resolve to virtual addresses in %s",
		    kb_cidr_str(&k[i], r, sizeof(r)),
		    kb_cidr_str(kb_vnat_subnet(d->vnat), w, sizeof(w)));
}

int
net_up(struct kbd *d, const struct kbd_cluster *c, char *err, size_t errlen)
{
	struct kb_dns_hooks hooks = { .resolve = tunnel_resolve, .resolve_rr = tunnel_resolve_rr,
		.arg = d->tunnel };
	struct kb_cidr plan[KB_NETPLAN_MAX];	/* 2 KiB; fw_apply copies it */
	struct kb_cidr kept[KB_VNAT_RANGES], vsub;
	struct kb_fw_config cfg;
	const uint32_t *ups;
	size_t i, nplan, nkept;

	if (net_plan(d, c->subnets, c->nsubnets, plan, &nplan, err, errlen) < 0 ||
	    vnat_subnet(d, c->subnets, c->nsubnets, plan, nplan, kept, &nkept, &vsub, err,
	    errlen) < 0 || vnat_plan(&vsub, plan, &nplan, err, errlen) < 0) {
		net_down(d);
		return -1;
	}
	memcpy(d->cluster, c->subnets, c->nsubnets * sizeof(c->subnets[0]));
	d->ncluster = c->nsubnets;
	if (d->tun && same_plan(d, plan, nplan)) {
		if (d->vnat)
			kb_vnat_set_kept(d->vnat, kept, nkept);
		net_namespaces(d, c);
		return 0;
	}
	net_down(d);
	if (proxy_listen(d, err, errlen) < 0)
		goto fail;
	if ((d->dns = dns_new(d->base, &hooks, NULL, 0, err, errlen)) == NULL)
		goto fail;
	net_namespaces(d, c);
	if (vsub.prefix != 0 && (d->vnat = kb_vnat_new(&vsub, kept, nkept)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((d->tun = tun_open(NULL, d->tun_addr, err, errlen)) == NULL)
		goto fail;
	for (i = 0; i < nplan; i++)
		if (tun_route_add(d->tun, &plan[i], err, errlen) < 0)
			goto fail;
	d->tun_ev = event_new(d->base, tun_fd(d->tun), EV_READ | EV_PERSIST, tun_readable, d->tun);
	if (!d->tun_ev || event_add(d->tun_ev, NULL) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((d->fw = fw_open(d->instance, err, errlen)) == NULL)
		goto fail;
	memset(&cfg, 0, sizeof(cfg));
	cfg.subnets = plan;
	cfg.nsubnets = nplan;
	cfg.proxy_port = d->proxy_port;
	cfg.ndns = dns_upstreams(d->dns, &ups);
	cfg.dns_servers = ups;
	cfg.dns_port = dns_port(d->dns);
	if (fw_apply(d->fw, &cfg, err, errlen) < 0)
		goto fail;
	memcpy(d->applied, plan, nplan * sizeof(plan[0]));
	d->napplied = nplan;
	dns_set_vnat(d->dns, d->vnat);
	log_info("network up: link %s, table %s, %zu subnets (%zu ranges proxied), "
	    "proxy port %u, dns port %u", tun_name(d->tun), fw_table(d->fw), c->nsubnets,
	    nplan, d->proxy_port, dns_port(d->dns));
	vnat_log(d);
	net_overlaps(d, NULL);
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
	static struct kb_cidr added[KB_NETPLAN_MAX], plan[KB_NETPLAN_MAX];
	struct kb_cidr kept[KB_VNAT_RANGES], vsub;
	struct kb_vnat *made = NULL;
	struct kb_fw_config cfg;
	const uint32_t *ups;
	char e2[256], buf[32];
	size_t i, nadded = 0, nplan, nkept;

	if (n > KBD_MAX_SUBNETS) {
		snprintf(err, errlen, "too many subnets");
		return -1;
	}
	if (net_plan(d, v, n, plan, &nplan, err, errlen) < 0)
		return -1;
	if (!d->tun || !d->fw) {
		/* Not set up (yet): net_up takes the cluster's. */
		return 0;
	}
	if (vnat_subnet(d, v, n, plan, nplan, kept, &nkept, &vsub, err, errlen) < 0 ||
	    vnat_plan(&vsub, plan, &nplan, err, errlen) < 0)
		return -1;
	if (vsub.prefix != 0 && d->vnat == NULL) {
		if ((made = kb_vnat_new(&vsub, kept, nkept)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	for (i = 0; i < nplan; i++) {
		if (cidr_in(&plan[i], d->applied, d->napplied))
			continue;
		if (tun_route_add(d->tun, &plan[i], err, errlen) < 0)
			goto undo;
		added[nadded++] = plan[i];
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.subnets = plan;
	cfg.nsubnets = nplan;
	cfg.proxy_port = d->proxy_port;
	cfg.ndns = dns_upstreams(d->dns, &ups);
	cfg.dns_servers = ups;
	cfg.dns_port = dns_port(d->dns);
	/* One batch: the kernel keeps the old table if it fails. */
	if (fw_apply(d->fw, &cfg, err, errlen) < 0)
		goto undo;
	for (i = 0; i < d->napplied; i++)
		if (!cidr_in(&d->applied[i], plan, nplan) &&
		    tun_route_del(d->tun, &d->applied[i], e2, sizeof(e2)) < 0)
			log_warnx("cannot remove the route to %s (nothing is redirected there "
			    "any more; it goes when the link does): %s",
			    kb_cidr_str(&d->applied[i], buf, sizeof(buf)), e2);
	memcpy(d->applied, plan, nplan * sizeof(plan[0]));
	d->napplied = nplan;
	memcpy(d->cluster, v, n * sizeof(v[0]));
	d->ncluster = n;
	if (made) {
		d->vnat = made;
		dns_set_vnat(d->dns, d->vnat);
		vnat_log(d);
	} else if (vsub.prefix != 0) {
		kb_vnat_set_kept(d->vnat, kept, nkept);
	} else if (d->vnat) {
		/* nothing kept local any more: its range is gone from the plan */
		dns_set_vnat(d->dns, NULL);
		kb_vnat_free(d->vnat);
		d->vnat = NULL;
	}
	net_overlaps(d, NULL);
	return 0;
undo:
	for (i = 0; i < nadded; i++)
		if (tun_route_del(d->tun, &added[i], e2, sizeof(e2)) < 0)
			log_warnx("cannot remove the route to %s: %s",
			    kb_cidr_str(&added[i], buf, sizeof(buf)), e2);
	kb_vnat_free(made);
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
	kb_vnat_free(d->vnat);
	d->vnat = NULL;
	if (d->proxy) {
		kb_listener_free(d->proxy);
		d->proxy = NULL;
		d->proxy_port = 0;
	}
}

static void
cidr_list(cJSON *j, const char *key, const struct kb_cidr *v, size_t n)
{
	char buf[32];
	cJSON *a;
	size_t i;

	if ((a = cJSON_AddArrayToObject(j, key)) == NULL)
		return;
	for (i = 0; i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(kb_cidr_str(&v[i], buf, sizeof(buf))));
}

/* At most this many mappings in the status. */
#define VNAT_STATUS_MAX	256

static void
vnat_status(const struct kbd *d, cJSON *j)
{
	const struct kb_cidr *k;
	const char *name;
	char buf[32];
	uint32_t virt, real;
	cJSON *o, *a, *e;
	size_t i, n;

	if ((o = cJSON_AddObjectToObject(j, "vnat")) == NULL)
		return;
	if (d->vnat_off) {
		cJSON_AddBoolToObject(o, "off", 1);
		return;
	}
	if (d->vnat == NULL)
		return;
	cJSON_AddStringToObject(o, "subnet", kb_cidr_str(kb_vnat_subnet(d->vnat), buf,
	    sizeof(buf)));
	k = kb_vnat_kept_ranges(d->vnat, &n);
	cidr_list(o, "translated", k, n);
	cJSON_AddNumberToObject(o, "used", (double)kb_vnat_count(d->vnat));
	cJSON_AddNumberToObject(o, "cap", (double)kb_vnat_cap(d->vnat));
	if ((a = cJSON_AddArrayToObject(o, "map")) == NULL)
		return;
	for (i = 0; i < VNAT_STATUS_MAX && kb_vnat_get(d->vnat, i, &virt, &real, &name) == 0;
	    i++) {
		if ((e = cJSON_CreateObject()) == NULL)
			return;
		snprintf(buf, sizeof(buf), "%u.%u.%u.%u", virt >> 24, (virt >> 16) & 255,
		    (virt >> 8) & 255, virt & 255);
		cJSON_AddStringToObject(e, "virtual", buf);
		snprintf(buf, sizeof(buf), "%u.%u.%u.%u", real >> 24, (real >> 16) & 255,
		    (real >> 8) & 255, real & 255);
		cJSON_AddStringToObject(e, "real", buf);
		if (name)
			cJSON_AddStringToObject(e, "name", name);
		cJSON_AddItemToArray(a, e);
	}
}

void
net_status_json(const struct kbd *d, cJSON *j)
{
	const uint32_t *ups;
	cJSON *dns, *a;
	char buf[16];
	size_t i, n;

	cidr_list(j, "never_proxy", d->never, d->nnever);
	cidr_list(j, "also_proxy", d->also, d->nalso);
	if (d->tun) {
		cJSON_AddStringToObject(j, "link", tun_name(d->tun));
		cidr_list(j, "proxied", d->applied, d->napplied);
		if ((a = cJSON_AddArrayToObject(j, "overlaps")) != NULL)
			net_overlaps(d, a);
		if (d->vnat || d->vnat_off)
			vnat_status(d, j);
	}
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
