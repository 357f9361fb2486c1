/* The workstation DNS proxy: cluster names go to the manager through the
 * resolve hook, every other query goes unchanged to the original upstream.
 * Here: the requests and their limits, the forwarder (over TCP for a TCP
 * client, else UDP), the UDP and TCP servers. Pure modules beside it: the
 * messages (dnsmsg.c), which names are the cluster's (dnsname.c), the
 * manager's answers kept for their TTL (dnscache.c) and the upstreams from
 * resolv.conf (resolvconf.c). */
#include "dns.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "dnscache.h"
#include "dnsmsg.h"
#include "dnsname.h"
#include "firewall.h"
#include "listener.h"
#include "log.h"
#include "msg.h"
#include "resolvconf.h"
#include "util.h"
#include "vnat.h"

#define DNS_MAX_PENDING		1024
#define DNS_CLIENT_MAX		64	/* per UDP client (address and port) */
#define DNS_CLIENT_BUCKETS	256
#define DNS_FLOOD_LOG_MS	10000	/* at most one warning per this */
#define DNS_UDP_RCVBUF		(4 << 20)	/* a burst of ~10,000 queries */
#define DNS_MAX_TCP		256
#define DNS_TCP_INFLIGHT	32	/* per client; then stop reading it */
#define DNS_TCP_OUTMAX		(128 * 1024)
#define DNS_TCP_IDLE_SEC	10
#define DNS_RETRY_MS		1000	/* next upstream after this */
#define DNS_TRIES		3	/* SERVFAIL after DNS_TRIES * DNS_RETRY_MS */
#define DNS_HOOK_MS		5000	/* SERVFAIL if the manager takes longer */
#define DNS_NAME_MAX		320

enum dns_req_state { RQ_HOOK, RQ_UDP, RQ_TCP };

struct dns_tcp;

/* A UDP client's queries in flight: one source address and port may not
 * hold more than DNS_CLIENT_MAX of the DNS_MAX_PENDING slots.
 *
 * Why address and port, and not the address alone: every program on the
 * workstation asks from 127.0.0.1 (the redirected resolver traffic too), so
 * an address key would put them all in one share, and one flooding program
 * would get every other one REFUSED (e2e/connect's dnsflood.py and
 * test_dns's test_flood check that it does not). What the key can tell
 * apart is a socket. A flooder that rotates its source port (as glibc's
 * resolver does for every query, legitimately) is not told apart from many
 * clients by any key the proxy sees: the global cap, DNS_MAX_PENDING slots
 * each freed within DNS_HOOK_MS or DNS_TRIES * DNS_RETRY_MS, is what bounds
 * it. The records are preallocated, one per slot (a client record is held
 * only while it has a query in flight, so there are never more than slots):
 * a query costs no allocation for its client, and the table is bounded. */
struct dns_client {
	LIST_ENTRY(dns_client) entry;	/* its bucket, or the free list */
	struct sockaddr_in6 ss;		/* big enough for either family */
	socklen_t len;
	unsigned n;
};

struct dns_req {
	struct kb_dns *d;
	TAILQ_ENTRY(dns_req) entry;	/* d->reqs */
	TAILQ_ENTRY(dns_req) centry;	/* tcp->reqs */
	struct dns_tcp *tcp;		/* TCP client, NULL for UDP or once detached */
	struct dns_client *client;	/* UDP client, until freed */
	struct sockaddr_storage peer;	/* UDP client */
	socklen_t peerlen;
	int via_tcp;
	int detached;			/* nobody to answer; only waits for the hook */
	int fallback;			/* not under the cluster domain: NXDOMAIN goes upstream */
	int probe;			/* another type: asked the manager for A to know the name */
	uint16_t hook_qtype;		/* what the manager was asked */
	uint16_t edns;			/* the client's EDNS0 UDP size, 0: none */
	enum dns_req_state state;
	unsigned char *msg;		/* the client's query; id rewritten when forwarded */
	size_t len, qend;
	uint16_t id, up_id;
	unsigned attempt;
	struct event *timer;
	struct bufferevent *up;		/* TCP upstream */
	char key[DNS_NAME_MAX];		/* the name asked of the manager */
};

struct dns_tcp {
	struct kb_dns *d;
	TAILQ_ENTRY(dns_tcp) entry;
	TAILQ_HEAD(, dns_req) reqs;
	struct bufferevent *bev;
	unsigned inflight;
	int busy, eof;
};

struct kb_dns {
	struct event_base *base;
	struct kb_dns_hooks hooks;
	uint16_t port;
	int udp_fd;
	struct event *udp_ev;
	struct kb_listener *tcp_lis;
	int up4_fd, up6_fd;
	struct event *up4_ev, *up6_ev;
	struct dns_upstreams ups;	/* from resolv.conf */
	struct dns_zone zone;		/* what counts as a cluster name */
	TAILQ_HEAD(, dns_req) reqs;
	size_t npending;
	TAILQ_HEAD(, dns_tcp) tcps;
	size_t ntcp;
	LIST_HEAD(, dns_client) clients[DNS_CLIENT_BUCKETS];
	LIST_HEAD(, dns_client) client_free;
	struct dns_client *client_recs;	/* DNS_MAX_PENDING of them */
	uint64_t flood_logged;		/* kb_now_ms() of the last warning */
	unsigned long refused;		/* queries refused since */
	unsigned char buf[DNS_MSG_MAX + 1];
	unsigned char out[DNS_MSG_MAX + 1];
	struct dns_cache *cache;	/* the manager's answers */
	struct kb_vnat *vnat;		/* virtual addresses (not ours), or NULL */
	uint64_t vnat_full_logged;	/* kb_now_ms() of the last warning */
};

static void dns_forward_start(struct dns_req *);
static void dns_tcp_kick(struct dns_tcp *);

static void
dns_timer_ms(struct event *ev, unsigned ms)
{
	struct timeval tv = kb_ms_tv(ms);

	evtimer_add(ev, &tv);
}

static void
dns_send(struct kb_dns *d, struct dns_tcp *c, const struct sockaddr *peer, socklen_t peerlen,
    const unsigned char *msg, size_t len)
{
	unsigned char l[2];
	char who[64];

	if (c) {
		dns_put16(l, (uint16_t)len);
		if (evbuffer_add(bufferevent_get_output(c->bev), l, 2) < 0 ||
		    evbuffer_add(bufferevent_get_output(c->bev), msg, len) < 0)
			log_warnx("%s: out of memory", __func__);
		return;
	}
	if (sendto(d->udp_fd, msg, len, 0, peer, peerlen) < 0)
		log_debug("%s: to %s: %s", __func__, kb_sockaddr_str(peer, who, sizeof(who)),
		    strerror(errno));
}

static unsigned
dns_client_hash(const struct sockaddr *sa, socklen_t len)
{
	const unsigned char *p = (const unsigned char *)sa;
	uint32_t h = 2166136261u;
	socklen_t i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % DNS_CLIENT_BUCKETS;
}

/* The record of a UDP peer, taken from the free ones if new; NULL when
 * every slot is in use (or the address is of no family we serve). */
static struct dns_client *
dns_client_get(struct kb_dns *d, const struct sockaddr *sa, socklen_t len)
{
	unsigned h = dns_client_hash(sa, len);
	struct dns_client *cl;

	if (len > sizeof(cl->ss))
		return NULL;
	LIST_FOREACH(cl, &d->clients[h], entry)
		if (cl->len == len && !memcmp(&cl->ss, sa, len))
			return cl;
	if ((cl = LIST_FIRST(&d->client_free)) == NULL)
		return NULL;
	LIST_REMOVE(cl, entry);
	memcpy(&cl->ss, sa, len);
	cl->len = len;
	cl->n = 0;
	LIST_INSERT_HEAD(&d->clients[h], cl, entry);
	return cl;
}

/* A peer with nothing in flight is forgotten: its record is free again. */
static void
dns_client_put(struct kb_dns *d, struct dns_client *cl)
{
	if (cl->n == 0) {
		LIST_REMOVE(cl, entry);
		LIST_INSERT_HEAD(&d->client_free, cl, entry);
	}
}

/* One client is flooding: say so now and then, not per query. */
static void
dns_note_refused(struct kb_dns *d, const struct sockaddr *peer)
{
	uint64_t now = kb_now_ms();
	char who[64];

	d->refused++;
	if (d->flood_logged && now - d->flood_logged < DNS_FLOOD_LOG_MS)
		return;
	log_warnx("DNS: %s has %d queries in flight: refusing more (%lu refused)",
	    kb_sockaddr_str(peer, who, sizeof(who)), DNS_CLIENT_MAX, d->refused);
	d->flood_logged = now;
	d->refused = 0;
}

static struct dns_req *
dns_req_new(struct kb_dns *d, struct dns_tcp *c, struct dns_client *cl,
    const struct sockaddr *peer, socklen_t peerlen, const unsigned char *msg, size_t len,
    size_t qend)
{
	struct dns_req *rq;

	if ((rq = calloc(1, sizeof(*rq))) == NULL)
		return NULL;
	if ((rq->msg = malloc(len)) == NULL)
		goto fail;
	memcpy(rq->msg, msg, len);
	rq->len = len;
	rq->qend = qend;
	rq->id = dns_get16(msg);
	rq->d = d;
	if (c) {
		rq->tcp = c;
		rq->via_tcp = 1;
		TAILQ_INSERT_TAIL(&c->reqs, rq, centry);
		c->inflight++;
	} else {
		memcpy(&rq->peer, peer, peerlen);
		rq->peerlen = peerlen;
		rq->client = cl;
		cl->n++;
	}
	TAILQ_INSERT_TAIL(&d->reqs, rq, entry);
	d->npending++;
	return rq;
fail:
	free(rq);
	return NULL;
}

/* The client no longer wants an answer (it left, or it got SERVFAIL), but
 * the hook's done is still to come. */
static void
dns_req_detach(struct dns_req *rq)
{
	if (rq->tcp) {
		TAILQ_REMOVE(&rq->tcp->reqs, rq, centry);
		rq->tcp->inflight--;
		rq->tcp = NULL;
	}
	rq->detached = 1;
	if (rq->timer)
		evtimer_del(rq->timer);
	if (rq->up) {
		bufferevent_free(rq->up);
		rq->up = NULL;
	}
}

static void
dns_req_free(struct dns_req *rq)
{
	dns_req_detach(rq);
	TAILQ_REMOVE(&rq->d->reqs, rq, entry);
	rq->d->npending--;
	if (rq->client) {
		rq->client->n--;
		dns_client_put(rq->d, rq->client);
		rq->client = NULL;
	}
	if (rq->timer)
		event_free(rq->timer);
	free(rq->msg);
	free(rq);
}

/* Send msg (any id) to the client with its own id, and free the request. */
static void
dns_req_finish(struct dns_req *rq, unsigned char *msg, size_t len)
{
	struct dns_tcp *c = rq->tcp;

	if (!rq->detached) {
		dns_put16(msg, rq->id);
		dns_send(rq->d, c, (struct sockaddr *)&rq->peer, rq->peerlen, msg, len);
	}
	dns_req_free(rq);
	if (c)
		dns_tcp_kick(c);
}

/* addr (text) as the client sees it: a kept-local cluster address becomes
 * its virtual one (vnat.h), named name, written to out; any other stays
 * addr. NULL if it needs a virtual address and the table is full. */
static const char *
dns_vnat_addr(struct kb_dns *d, const char *addr, const char *name, char *out, size_t outlen)
{
	struct in_addr in;
	uint32_t virt;

	if (d->vnat == NULL || inet_pton(AF_INET, addr, &in) != 1 ||
	    !kb_vnat_translates(d->vnat, ntohl(in.s_addr)))
		return addr;
	if (kb_vnat_map(d->vnat, ntohl(in.s_addr), name, &virt) < 0) {
		if (!d->vnat_full_logged || kb_now_ms() - d->vnat_full_logged >= DNS_FLOOD_LOG_MS) {
			log_warnx("DNS: all %zu virtual addresses are taken: %s (%s) gets SERVFAIL",
			    kb_vnat_cap(d->vnat), name, addr);
			d->vnat_full_logged = kb_now_ms();
		}
		return NULL;
	}
	in.s_addr = htonl(virt);
	inet_ntop(AF_INET, &in, out, outlen);
	return out;
}

/* Room for n addresses as text, each INET6_ADDRSTRLEN: NULL if out of memory. */
static char *
dns_vnat_bufs(size_t n)
{
	return calloc(n ? n : 1, INET6_ADDRSTRLEN);
}

static void
dns_req_answer(struct dns_req *rq, int rcode, int qtype, const char *const *addrs, size_t naddrs,
    uint32_t ttl)
{
	struct kb_dns *d = rq->d;
	const char **va = NULL;
	char *bufs = NULL;
	size_t n, i;

	if (rcode == 0 && qtype == DNS_T_A && d->vnat && naddrs > 0) {
		if ((va = calloc(naddrs, sizeof(*va))) == NULL ||
		    (bufs = dns_vnat_bufs(naddrs)) == NULL)
			rcode = DNS_SERVFAIL;
		for (i = 0; rcode == 0 && i < naddrs; i++)
			if ((va[i] = dns_vnat_addr(d, addrs[i], rq->key, bufs + i * INET6_ADDRSTRLEN,
			    INET6_ADDRSTRLEN)) == NULL)
				rcode = DNS_SERVFAIL;
		addrs = va;
		if (rcode != 0)
			naddrs = 0;
	}
	dns_put16(rq->msg, rq->id);
	n = dns_build_answer(d->out, rq->via_tcp ? DNS_MSG_MAX - DNS_OPT_LEN :
	    dns_udp_max(rq->edns), rq->msg, rq->qend, rcode, qtype, addrs, naddrs, ttl);
	n = dns_add_opt(d->out, n, DNS_MSG_MAX, rq->edns);
	free(va);
	free(bufs);
	dns_req_finish(rq, d->out, n);
}

/* The records rrs[n] as the client sees them (dns_vnat_addr on every A
 * record) in *out: rrs itself, or *copy (to free with *bufs). -1 if one
 * needs a virtual address that cannot be had. */
static int
dns_vnat_rrs(struct kb_dns *d, const struct dns_rr *rrs, size_t n, const struct dns_rr **out,
    struct dns_rr **copy, char **bufs)
{
	struct dns_rr *c;
	size_t i;

	*out = rrs;
	*copy = NULL;
	*bufs = NULL;
	if (d->vnat == NULL || n == 0)
		return 0;
	if ((c = calloc(n, sizeof(*c))) == NULL || (*bufs = dns_vnat_bufs(n)) == NULL) {
		free(c);
		return -1;
	}
	*copy = c;
	for (i = 0; i < n; i++) {
		c[i] = rrs[i];
		if (rrs[i].type == DNS_T_A && (c[i].data = dns_vnat_addr(d, rrs[i].data,
		    rrs[i].name, *bufs + i * INET6_ADDRSTRLEN, INET6_ADDRSTRLEN)) == NULL)
			return -1;
	}
	*out = c;
	return 0;
}

/* Is qname the reverse name of a kept-local address? Its name is the
 * local network's, not the cluster's. */
static int
dns_vnat_kept_ptr(const struct kb_dns *d, const char *qname)
{
	uint32_t a;

	return d->vnat && kb_vnat_ptr_addr(qname, &a) == 0 && kb_vnat_translates(d->vnat, a);
}

/* A PTR query for an address of the virtual range: the name its mapping
 * was made for, NXDOMAIN if it maps nothing. 0 if answered, -1 if the
 * address is not ours to answer. */
static int
dns_vnat_ptr(struct dns_req *rq, const char *qname)
{
	struct kb_dns *d = rq->d;
	struct dns_rr rr;
	const char *name;
	uint32_t a;
	size_t len;
	int bad;

	if (kb_vnat_ptr_addr(qname, &a) < 0 || !kb_cidr_contains(kb_vnat_subnet(d->vnat), a))
		return -1;
	if ((name = kb_vnat_name(d->vnat, a)) == NULL) {
		dns_req_answer(rq, DNS_NXDOMAIN, 0, NULL, 0, 0);
		return 0;
	}
	rr.name = qname;
	rr.type = DNS_T_PTR;
	rr.ttl = DNS_CACHE_TTL_MAX;
	rr.data = name;
	len = dns_build_records(d->out, rq->via_tcp ? DNS_MSG_MAX - DNS_OPT_LEN :
	    dns_udp_max(rq->edns), rq->msg, rq->qend, 0, &rr, 1, qname, &bad);
	if (bad) {
		dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
		return 0;
	}
	dns_req_finish(rq, d->out, dns_add_opt(d->out, len, DNS_MSG_MAX, rq->edns));
	return 0;
}

/* Answer rq from the cache (a cached NXDOMAIN for a name that may be
 * another's goes upstream, as a fresh one would); 0 if it did. */
static int
dns_cache_answer(struct dns_req *rq, const char *name, uint16_t qtype)
{
	const char *addrs[DNS_CACHE_ADDRS];
	size_t naddrs;
	uint32_t ttl;
	int rcode;

	if ((rcode = dns_cache_get(rq->d->cache, name, qtype, kb_now_ms(), addrs, &naddrs,
	    &ttl)) < 0)
		return -1;
	evtimer_del(rq->timer);
	if (rcode == DNS_NXDOMAIN && rq->fallback)
		dns_forward_start(rq);
	else
		dns_req_answer(rq, rcode, qtype, addrs, naddrs, ttl);
	return 0;
}

static void
dns_hook_done(void *ctx, int rcode, const char *const *addrs, size_t naddrs, uint32_t ttl)
{
	struct dns_req *rq = ctx;

	/* (A manager before records gives negative answers no SOA-based
	 * TTL: they are not kept.) */
	if (rcode == 0)
		dns_cache_put(rq->d->cache, rq->key, rq->hook_qtype, addrs, naddrs, ttl,
		    kb_now_ms());
	if (rq->detached) {
		dns_req_free(rq);
		return;
	}
	evtimer_del(rq->timer);
	if (rcode == DNS_NXDOMAIN && rq->fallback) {
		/* Not the cluster's: a host of the local network, or a name of
		 * the outside world under a TLD that is also a namespace
		 * (example.shop with a namespace "shop"). */
		dns_forward_start(rq);
		return;
	}
	if (rcode != 0 && rcode != DNS_NXDOMAIN)
		rcode = DNS_SERVFAIL;
	if (rq->probe)
		naddrs = 0;	/* the cluster's name, but no record of this type */
	dns_req_answer(rq, rcode, dns_get16(rq->msg + rq->qend - 4), addrs, naddrs, ttl);
}

/* The manager's records for rq (see dns_done_rr_fn). */
static void
dns_hook_done_rr(void *ctx, int rcode, const struct dns_rr *rrs, size_t n, uint32_t ttl)
{
	struct dns_req *rq = ctx;
	struct kb_dns *d = rq->d;
	const char *addrs[DNS_CACHE_ADDRS];
	struct dns_rr *copy = NULL;
	char *bufs = NULL;
	size_t i, na = 0, len;
	int bad;

	/* The cache holds addresses of the name itself: an answer with a
	 * CNAME chain is not kept (asked again, it is asked again). */
	if (rcode == 0 && n > 0 && (rq->hook_qtype == DNS_T_A || rq->hook_qtype == DNS_T_AAAA)) {
		for (i = 0; i < n; i++) {
			if (rrs[i].type != rq->hook_qtype || strcasecmp(rrs[i].name, rq->key) ||
			    na == DNS_CACHE_ADDRS) {
				na = 0;
				break;
			}
			addrs[na++] = rrs[i].data;
		}
		if (na)
			dns_cache_put(d->cache, rq->key, rq->hook_qtype, addrs, na, ttl,
			    kb_now_ms());
	} else if (rcode == DNS_NXDOMAIN || (rcode == 0 && n == 0)) {
		/* for their TTL, the cluster DNS's SOA minimum: a program that
		 * tries a name the cluster lacks over and over asks it once */
		dns_cache_put_negative(d->cache, rq->key, rq->hook_qtype, rcode, ttl, kb_now_ms());
	}
	if (rq->detached) {
		dns_req_free(rq);
		return;
	}
	evtimer_del(rq->timer);
	if (rcode == DNS_NXDOMAIN && rq->fallback) {
		dns_forward_start(rq);	/* not the cluster's, see dns_hook_done */
		return;
	}
	if (rcode != 0 && rcode != DNS_NXDOMAIN)
		rcode = DNS_SERVFAIL;
	if (rcode == 0 && dns_vnat_rrs(d, rrs, n, &rrs, &copy, &bufs) < 0) {
		free(copy);
		free(bufs);
		dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
		return;
	}
	dns_put16(rq->msg, rq->id);
	len = dns_build_records(d->out, rq->via_tcp ? DNS_MSG_MAX - DNS_OPT_LEN :
	    dns_udp_max(rq->edns), rq->msg, rq->qend, rcode, rrs, n, rq->key, &bad);
	free(copy);
	free(bufs);
	if (bad) {
		log_debug("%s: %s: a record's data does not parse", __func__, rq->key);
		dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
		return;
	}
	dns_req_finish(rq, d->out, dns_add_opt(d->out, len, DNS_MSG_MAX, rq->edns));
}

static int
dns_is_upstream(const struct kb_dns *d, const struct sockaddr *sa)
{
	const struct sockaddr_in *a4 = (const void *)sa, *b4;
	const struct sockaddr_in6 *a6 = (const void *)sa, *b6;
	size_t i;

	for (i = 0; i < d->ups.n; i++) {
		if (d->ups.up[i].ss.ss_family != sa->sa_family)
			continue;
		if (sa->sa_family == AF_INET) {
			b4 = (const void *)&d->ups.up[i].ss;
			if (a4->sin_addr.s_addr == b4->sin_addr.s_addr && a4->sin_port == b4->sin_port)
				return 1;
		} else {
			b6 = (const void *)&d->ups.up[i].ss;
			if (!memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) &&
			    a6->sin6_port == b6->sin6_port)
				return 1;
		}
	}
	return 0;
}

static void
dns_up_tcp_read(struct bufferevent *bev, void *arg)
{
	struct dns_req *rq = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	unsigned char l[2], *msg;
	size_t len;

	if (evbuffer_copyout(in, l, 2) < 2)
		return;
	len = dns_get16(l);
	if (evbuffer_get_length(in) < 2 + len)
		return;
	msg = evbuffer_pullup(in, 2 + len) + 2;
	if (len < DNS_HDR || dns_get16(msg) != rq->up_id || !dns_same_question(msg, len, rq->msg, rq->qend)) {
		log_debug("%s: unexpected answer, waiting for the next try", __func__);
		bufferevent_free(rq->up);
		rq->up = NULL;
		return;
	}
	memcpy(rq->d->out, msg, len);
	dns_req_finish(rq, rq->d->out, len);
}

static void
dns_up_tcp_event(struct bufferevent *bev, short what, void *arg)
{
	struct dns_req *rq = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		return;
	log_debug("%s: upstream %s (try %u)", __func__,
	    what & BEV_EVENT_EOF ? "closed" : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()),
	    rq->attempt + 1);
	/* The retry timer moves on to the next upstream. */
	bufferevent_free(rq->up);
	rq->up = NULL;
}

static void
dns_forward_send(struct dns_req *rq)
{
	struct kb_dns *d = rq->d;
	const struct dns_upstream *u = &d->ups.up[rq->attempt % d->ups.n];
	unsigned char l[2];
	char who[64];
	int fd = -1;

	if (rq->state == RQ_UDP) {
		fd = u->ss.ss_family == AF_INET ? d->up4_fd : d->up6_fd;
		if (sendto(fd, rq->msg, rq->len, 0, (const struct sockaddr *)&u->ss, u->len) < 0)
			log_debug("%s: to %s: %s", __func__,
			    kb_sockaddr_str((const struct sockaddr *)&u->ss, who, sizeof(who)),
			    strerror(errno));
		return;
	}
	if (rq->up) {
		bufferevent_free(rq->up);
		rq->up = NULL;
	}
	fd = socket(u->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("%s: socket", __func__);
		goto fail;
	}
	if (fw_mark_socket(fd) < 0) {
		log_warn("%s: mark upstream socket", __func__);
		goto fail;
	}
	if ((rq->up = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		goto fail;
	fd = -1;
	bufferevent_setcb(rq->up, dns_up_tcp_read, NULL, dns_up_tcp_event, rq);
	bufferevent_setwatermark(rq->up, EV_READ, 0, 2 + DNS_MSG_MAX);
	dns_put16(l, (uint16_t)rq->len);
	if (bufferevent_write(rq->up, l, 2) < 0 || bufferevent_write(rq->up, rq->msg, rq->len) < 0 ||
	    bufferevent_enable(rq->up, EV_READ | EV_WRITE) < 0 ||
	    bufferevent_socket_connect(rq->up, (const struct sockaddr *)&u->ss, (int)u->len) < 0) {
		log_warnx("%s: cannot start the upstream connection", __func__);
		bufferevent_free(rq->up);
		rq->up = NULL;
	}
	return;
fail:
	if (fd >= 0)
		close(fd);
}

static int
dns_id_in_use(const struct kb_dns *d, uint16_t id)
{
	const struct dns_req *rq;

	TAILQ_FOREACH(rq, &d->reqs, entry)
		if (rq->state == RQ_UDP && rq->up_id == id)
			return 1;
	return 0;
}

/* Forward the client's query unchanged but for its id, which is fresh and
 * random so off-path answers are hard to forge. */
static void
dns_forward_start(struct dns_req *rq)
{
	struct kb_dns *d = rq->d;
	int i;

	if (d->ups.n == 0) {
		dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
		return;
	}
	for (i = 0; i < 16; i++) {
		evutil_secure_rng_get_bytes(&rq->up_id, sizeof(rq->up_id));
		if (!dns_id_in_use(d, rq->up_id))
			break;
	}
	rq->state = rq->via_tcp ? RQ_TCP : RQ_UDP;
	rq->attempt = 0;
	dns_put16(rq->msg, rq->up_id);
	dns_forward_send(rq);
	dns_timer_ms(rq->timer, DNS_RETRY_MS);
}

static void
dns_req_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dns_req *rq = arg;
	struct dns_tcp *c = rq->tcp;

	(void)fd;
	(void)what;
	if (rq->state == RQ_HOOK) {
		/* Answer now, but keep rq: the hook's done is still to come. */
		log_debug("%s: manager did not answer in time", __func__);
		dns_put16(rq->msg, rq->id);
		dns_send(rq->d, c, (struct sockaddr *)&rq->peer, rq->peerlen, rq->d->out,
		    dns_build_rcode(rq->d->out, DNS_MSG_MAX, rq->msg, rq->qend, DNS_SERVFAIL));
		dns_req_detach(rq);
		if (c)
			dns_tcp_kick(c);
		return;
	}
	if (++rq->attempt >= DNS_TRIES) {
		log_debug("%s: no answer from upstream", __func__);
		dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
		return;
	}
	dns_forward_send(rq);
	dns_timer_ms(rq->timer, DNS_RETRY_MS);
}

/* Handle one query from a TCP client c or a UDP peer. */
static void
dns_handle(struct kb_dns *d, struct dns_tcp *c, const struct sockaddr *peer, socklen_t peerlen,
    const unsigned char *msg, size_t len)
{
	struct dns_question q;
	struct dns_client *cl = NULL;
	struct dns_req *rq;
	char name[DNS_NAME_MAX];
	int r, single, cluster, reverse = 0;

	if ((r = dns_parse_query(msg, len, &q)) < 0)
		return;
	if (r > 0) {
		log_debug("%s: bad query, rcode %d", __func__, r);
		dns_send(d, c, peer, peerlen, d->out,
		    dns_build_rcode(d->out, DNS_MSG_MAX, msg, DNS_HDR, r));
		return;
	}
	/* A TCP client stops being read at DNS_TCP_INFLIGHT; a UDP one that
	 * holds its share of the slots is refused, so that it cannot take
	 * them all from everyone else. */
	if (!c && (cl = dns_client_get(d, peer, peerlen)) != NULL && cl->n >= DNS_CLIENT_MAX) {
		dns_note_refused(d, peer);
		dns_send(d, c, peer, peerlen, d->out,
		    dns_build_rcode(d->out, DNS_MSG_MAX, msg, q.qend, DNS_REFUSED));
		return;
	}
	if (d->npending >= DNS_MAX_PENDING || (!c && !cl) ||
	    (rq = dns_req_new(d, c, cl, peer, peerlen, msg, len, q.qend)) == NULL) {
		if (cl)
			dns_client_put(d, cl);
		log_debug("%s: too many queries in flight", __func__);
		dns_send(d, c, peer, peerlen, d->out,
		    dns_build_rcode(d->out, DNS_MSG_MAX, msg, q.qend, DNS_SERVFAIL));
		return;
	}
	rq->edns = q.edns;
	if ((rq->timer = evtimer_new(d->base, dns_req_timer, rq)) == NULL) {
		dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
		return;
	}
	/* The name behind a virtual address is ours alone to give. */
	if (d->vnat && q.qclass == DNS_C_IN && q.qtype == DNS_T_PTR && dns_vnat_ptr(rq, q.name) == 0)
		return;
	cluster = q.qclass == DNS_C_IN && dns_zone_classify(&d->zone, q.name, name, sizeof(name), &single);
	/* Other types for a single label are most likely about a local host. */
	if (cluster && single && q.qtype != DNS_T_A && q.qtype != DNS_T_AAAA)
		cluster = 0;
	/* The name of a cluster address (PTR), for a manager that answers it */
	if (!cluster && q.qclass == DNS_C_IN && q.qtype == DNS_T_PTR && d->hooks.resolve_rr &&
	    dns_zone_reverse(&d->zone, q.name) && !dns_vnat_kept_ptr(d, q.name)) {
		snprintf(name, sizeof(name), "%s", q.name);
		cluster = reverse = 1;
	}
	log_debug("%s: %s type %u: %s", __func__, q.name, q.qtype, cluster ? name : "upstream");
	if (!cluster) {
		dns_forward_start(rq);
		return;
	}
	rq->fallback = !reverse && (single || !dns_zone_in_domain(&d->zone, q.name));
	rq->hook_qtype = q.qtype;
	rq->state = RQ_HOOK;
	if (!d->hooks.resolve) {
		dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
		return;
	}
	snprintf(rq->key, sizeof(rq->key), "%s", name);
	if (dns_cache_answer(rq, name, q.qtype) == 0)
		return;
	dns_timer_ms(rq->timer, DNS_HOOK_MS);
	if (d->hooks.resolve_rr && kb_dns_qtype_ok(q.qtype)) {
		/* On success done may already have run and freed rq. */
		if ((r = d->hooks.resolve_rr(d->hooks.arg, name, q.qtype, dns_hook_done_rr,
		    rq)) == 0)
			return;
		if (r == -1) {
			dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
			return;
		}
		if (reverse) {	/* a manager before records: as before, upstream */
			dns_forward_start(rq);
			return;
		}
	}
	if (q.qtype != DNS_T_A && q.qtype != DNS_T_AAAA) {
		/* A manager before records answers addresses only. Under the
		 * cluster domain, or for a name the cluster is known to have,
		 * no record of another type is the answer; else the cluster's
		 * A answer tells whose name it is. */
		if (!rq->fallback || dns_cache_knows(d->cache, name, kb_now_ms())) {
			evtimer_del(rq->timer);
			dns_req_answer(rq, 0, q.qtype, NULL, 0, 0);
			return;
		}
		rq->probe = 1;
		rq->hook_qtype = DNS_T_A;
	}
	/* On success done may already have run and freed rq. */
	if (d->hooks.resolve(d->hooks.arg, name, rq->hook_qtype, dns_hook_done, rq) < 0)
		dns_req_answer(rq, DNS_SERVFAIL, 0, NULL, 0, 0);
}

/* Receive the next datagram on fd into d->buf: its length, or -1 when
 * there is none (or an error, logged). */
static ssize_t
dns_recv(struct kb_dns *d, int fd, struct sockaddr_storage *ss, socklen_t *sslen)
{
	ssize_t n;

	*sslen = sizeof(*ss);
	n = recvfrom(fd, d->buf, sizeof(d->buf), 0, (struct sockaddr *)ss, sslen);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		log_warn("%s: recvfrom", __func__);
	return n;
}

static void
dns_udp_read(evutil_socket_t fd, short what, void *arg)
{
	struct kb_dns *d = arg;
	struct sockaddr_storage ss;
	socklen_t sslen;
	ssize_t n;
	int i;

	(void)what;
	for (i = 0; i < 64 && (n = dns_recv(d, fd, &ss, &sslen)) >= 0; i++)
		dns_handle(d, NULL, (struct sockaddr *)&ss, sslen, d->buf, (size_t)n);
}

static void
dns_up_udp_read(evutil_socket_t fd, short what, void *arg)
{
	struct kb_dns *d = arg;
	struct sockaddr_storage ss;
	struct dns_req *rq;
	socklen_t sslen;
	ssize_t n;
	uint16_t id;
	int i;

	(void)what;
	for (i = 0; i < 64 && (n = dns_recv(d, fd, &ss, &sslen)) >= 0; i++) {
		if (n < DNS_HDR || !(d->buf[2] & 0x80) || !dns_is_upstream(d, (struct sockaddr *)&ss))
			continue;
		id = dns_get16(d->buf);
		TAILQ_FOREACH(rq, &d->reqs, entry)
			if (rq->state == RQ_UDP && rq->up_id == id &&
			    dns_same_question(d->buf, (size_t)n, rq->msg, rq->qend))
				break;
		if (!rq) {
			log_debug("%s: stray answer id %u", __func__, id);
			continue;
		}
		dns_req_finish(rq, d->buf, (size_t)n);
	}
}

static void
dns_tcp_free(struct dns_tcp *c)
{
	struct kb_dns *d = c->d;
	struct dns_req *rq;

	while ((rq = TAILQ_FIRST(&c->reqs)) != NULL) {
		if (rq->state == RQ_HOOK)
			dns_req_detach(rq);
		else
			dns_req_free(rq);
	}
	bufferevent_free(c->bev);
	TAILQ_REMOVE(&d->tcps, c, entry);
	d->ntcp--;
	free(c);
}

/* Handle the complete queries buffered from c while it has room, then
 * decide whether to read more or to close. */
static void
dns_tcp_kick(struct dns_tcp *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct kb_dns *d = c->d;
	unsigned char l[2];
	size_t len;
	int room;

	if (c->busy)
		return;
	c->busy = 1;
	while ((room = c->inflight < DNS_TCP_INFLIGHT && evbuffer_get_length(out) < DNS_TCP_OUTMAX)) {
		if (evbuffer_copyout(in, l, 2) < 2)
			break;
		len = dns_get16(l);
		if (len == 0) {
			c->eof = 1;
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		}
		if (evbuffer_get_length(in) < 2 + len)
			break;
		evbuffer_drain(in, 2);
		evbuffer_remove(in, d->buf, len);
		dns_handle(d, c, NULL, 0, d->buf, len);
	}
	c->busy = 0;
	if (c->eof) {
		if (c->inflight == 0 && evbuffer_get_length(out) == 0)
			dns_tcp_free(c);
		else
			bufferevent_disable(c->bev, EV_READ);
		return;
	}
	if (room)
		bufferevent_enable(c->bev, EV_READ);
	else
		bufferevent_disable(c->bev, EV_READ);
}

static void
dns_tcp_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	dns_tcp_kick(arg);
}

static void
dns_tcp_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	dns_tcp_kick(arg);
}

static void
dns_tcp_event(struct bufferevent *bev, short what, void *arg)
{
	struct dns_tcp *c = arg;

	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && c->inflight > 0) {
		/* Not idle: still waiting for our own answers. */
		bufferevent_enable(bev, EV_READ);
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
		/* The client may half-close after its last query. */
		c->eof = 1;
		dns_tcp_kick(c);
		return;
	}
	dns_tcp_free(c);
}

static void
dns_tcp_accept(int fd, struct sockaddr *sa, int salen, void *arg)
{
	struct kb_dns *d = arg;
	struct timeval idle = { DNS_TCP_IDLE_SEC, 0 };
	struct dns_tcp *c;

	(void)sa;
	(void)salen;
	if (d->ntcp >= DNS_MAX_TCP) {
		kb_listener_refused(d->tcp_lis, "too many TCP clients");
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	if ((c->bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->d = d;
	TAILQ_INIT(&c->reqs);
	TAILQ_INSERT_TAIL(&d->tcps, c, entry);
	d->ntcp++;
	bufferevent_setcb(c->bev, dns_tcp_read, dns_tcp_write, dns_tcp_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, 2 + DNS_MSG_MAX);
	bufferevent_set_timeouts(c->bev, &idle, &idle);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
dns_bad_upstream(void *arg, const char *word)
{
	log_warnx("dns_read_upstreams: %s: ignoring nameserver '%s'", (const char *)arg, word);
}

/* The nameserver lines of resolv.conf; IPv6 ones are used but not
 * reported for redirection. */
static void
dns_read_upstreams(struct kb_dns *d, const char *path)
{
	char *text;

	if ((text = kb_read_file(path, 1 << 20, NULL)) == NULL) {
		log_warn("%s: %s", __func__, path);
		return;
	}
	resolv_parse(text, &d->ups, dns_bad_upstream, (void *)path);
	free(text);
}

/* A marked UDP socket towards the upstreams, so our own redirect skips it. */
static int
dns_up_socket(struct kb_dns *d, int family, struct event **evp, char *err, size_t errlen)
{
	int fd;

	if ((fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "upstream socket: %s", strerror(errno));
		return -1;
	}
	if (fw_mark_socket(fd) < 0) {
		snprintf(err, errlen, "mark upstream socket: %s", strerror(errno));
		goto fail;
	}
	if ((*evp = event_new(d->base, fd, EV_READ | EV_PERSIST, dns_up_udp_read, d)) == NULL ||
	    event_add(*evp, NULL) < 0) {
		snprintf(err, errlen, "upstream socket: cannot watch it");
		goto fail;
	}
	return fd;
fail:
	if (*evp) {
		event_free(*evp);
		*evp = NULL;
	}
	close(fd);
	return -1;
}

/* The default buffer (~200 small datagrams) overflows in 10 ms of a
 * 20,000/s flood: a moment without CPU and queries of other clients are
 * lost with the flood's, and their resolvers wait seconds to ask again. */
static void
dns_udp_rcvbuf(int fd)
{
	int n = DNS_UDP_RCVBUF;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &n, sizeof(n)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof(n)) < 0)
		log_debug("%s: %s", __func__, strerror(errno));
}

/* UDP then TCP on the same port; with port 0 retry if TCP finds it taken. */
static int
dns_listen(struct kb_dns *d, uint16_t port, char *err, size_t errlen)
{
	struct sockaddr_in sin;
	socklen_t len;
	int tries;

	for (tries = 0; tries < 16; tries++) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = htons(port);
		d->udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (d->udp_fd < 0) {
			snprintf(err, errlen, "socket: %s", strerror(errno));
			return -1;
		}
		if (bind(d->udp_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
			snprintf(err, errlen, "bind udp 127.0.0.1:%u: %s", port, strerror(errno));
			goto fail;
		}
		dns_udp_rcvbuf(d->udp_fd);
		len = sizeof(sin);
		if (getsockname(d->udp_fd, (struct sockaddr *)&sin, &len) < 0) {
			snprintf(err, errlen, "getsockname: %s", strerror(errno));
			goto fail;
		}
		d->tcp_lis = kb_listener_bind(d->base, "DNS-over-TCP listener",
		    (struct sockaddr *)&sin, sizeof(sin), 64, dns_tcp_accept, d);
		if (d->tcp_lis) {
			d->port = ntohs(sin.sin_port);
			return 0;
		}
		snprintf(err, errlen, "bind tcp 127.0.0.1:%u: %s", ntohs(sin.sin_port),
		    strerror(errno));
		if (port != 0)
			goto fail;
		close(d->udp_fd);
		d->udp_fd = -1;
	}
	return -1;
fail:
	close(d->udp_fd);
	d->udp_fd = -1;
	return -1;
}

struct kb_dns *
dns_new(struct event_base *base, const struct kb_dns_hooks *hooks, const char *resolv_conf,
    uint16_t port, char *err, size_t errlen)
{
	struct kb_dns *d;
	size_t i;
	int v6 = 0;

	if ((d = calloc(1, sizeof(*d))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->base = base;
	if (hooks)
		d->hooks = *hooks;
	d->udp_fd = d->up4_fd = d->up6_fd = -1;
	TAILQ_INIT(&d->reqs);
	TAILQ_INIT(&d->tcps);
	LIST_INIT(&d->client_free);
	if ((d->client_recs = calloc(DNS_MAX_PENDING, sizeof(*d->client_recs))) == NULL ||
	    (d->cache = dns_cache_new()) == NULL) {
		free(d->client_recs);
		free(d);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (i = 0; i < DNS_MAX_PENDING; i++)
		LIST_INSERT_HEAD(&d->client_free, &d->client_recs[i], entry);
	dns_read_upstreams(d, resolv_conf ? resolv_conf : "/etc/resolv.conf");
	if (d->ups.n == 0)
		log_warnx("%s: no upstream nameserver: only cluster names will resolve", __func__);
	for (i = 0; i < d->ups.n; i++)
		v6 |= d->ups.up[i].ss.ss_family == AF_INET6;
	if (d->ups.nv4 && (d->up4_fd = dns_up_socket(d, AF_INET, &d->up4_ev, err, errlen)) < 0)
		goto fail;
	if (v6 && (d->up6_fd = dns_up_socket(d, AF_INET6, &d->up6_ev, err, errlen)) < 0)
		goto fail;
	if (dns_listen(d, port, err, errlen) < 0)
		goto fail;
	if ((d->udp_ev = event_new(base, d->udp_fd, EV_READ | EV_PERSIST, dns_udp_read, d)) == NULL ||
	    event_add(d->udp_ev, NULL) < 0) {
		snprintf(err, errlen, "cannot watch the UDP socket");
		goto fail;
	}
	log_debug("%s: listening on 127.0.0.1:%u, %zu upstreams", __func__, d->port, d->ups.n);
	return d;
fail:
	dns_free(d);
	return NULL;
}

uint16_t
dns_port(const struct kb_dns *d)
{
	return d->port;
}

size_t
dns_upstreams(const struct kb_dns *d, const uint32_t **addrs)
{
	*addrs = d->ups.v4;
	return d->ups.nv4;
}

void
dns_set_upstream_port(struct kb_dns *d, uint16_t port)
{
	resolv_set_port(&d->ups, port);
}

void
dns_set_cluster(struct kb_dns *d, const char *domain, const char *const *namespaces,
    size_t nnamespaces, const char *connected_ns)
{
	/* A new session or namespace: forget what the old one said. */
	dns_cache_clear(d->cache);
	if (dns_zone_set(&d->zone, domain, namespaces, nnamespaces, connected_ns) < 0)
		log_warnx("%s: out of memory", __func__);
}

void
dns_set_subnets(struct kb_dns *d, const struct kb_cidr *subnets, size_t n)
{
	dns_zone_set_subnets(&d->zone, subnets, n);
	dns_cache_clear(d->cache);
}

void
dns_set_vnat(struct kb_dns *d, struct kb_vnat *v)
{
	d->vnat = v;
	dns_cache_clear(d->cache);
}

void
dns_free(struct kb_dns *d)
{
	struct dns_req *rq;
	struct dns_tcp *c;

	if (!d)
		return;
	/* The owner guarantees no hook completes after this. */
	while ((rq = TAILQ_FIRST(&d->reqs)) != NULL)
		dns_req_free(rq);
	while ((c = TAILQ_FIRST(&d->tcps)) != NULL)
		dns_tcp_free(c);
	if (d->tcp_lis)
		kb_listener_free(d->tcp_lis);
	if (d->udp_ev)
		event_free(d->udp_ev);
	if (d->up4_ev)
		event_free(d->up4_ev);
	if (d->up6_ev)
		event_free(d->up6_ev);
	if (d->udp_fd >= 0)
		close(d->udp_fd);
	if (d->up4_fd >= 0)
		close(d->up4_fd);
	if (d->up6_fd >= 0)
		close(d->up6_fd);
	dns_zone_clear(&d->zone);
	dns_cache_free(d->cache);
	free(d->client_recs);
	free(d);
}
