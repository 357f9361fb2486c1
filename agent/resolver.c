/* Cluster name resolution for the manager: c-ares driven by libevent. c-ares
 * tells us which sockets to watch (sock_state_cb) and when its next timeout
 * is (ares_timeout); we feed events back with ares_process_fd. */
#include "resolver.h"

#include <sys/queue.h>

#include <arpa/inet.h>

#include <ares.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "msg.h"
#include "util.h"

#define RES_MAX_ADDRS		32
#define RES_DEFAULT_TTL		5
#define RES_TIMEOUT_MS		1000	/* per try; the daemon's clients wait ~5 s in all */
#define RES_TRIES		2
/* Lookups in flight for all sessions together (each session has its own,
 * smaller limit in manager.c); more are answered SERVFAIL at once. */
#define RES_MAX_PENDING		4096

struct res_sock {
	TAILQ_ENTRY(res_sock) entry;
	struct kb_resolver *r;
	ares_socket_t fd;
	struct event *ev;
};

struct kb_resolver {
	struct event_base *base;
	ares_channel channel;
	int channel_ok;
	int closing;
	size_t pending;		/* lookups in flight */
	int full;		/* RES_MAX_PENDING was hit (logged) */
	struct event *timer;
	TAILQ_HEAD(, res_sock) socks;
};

struct res_lookup {
	struct kb_resolver *r;
	resolver_cb cb;
	resolver_rr_cb rrcb;	/* a lookup of records, else of addresses */
	void *arg;
	int qtype;
};

/* What the records of one answer may take in all (names and data), so
 * that "resolved" stays well inside a CONTROL frame (16 KiB). */
#define RES_RR_BUDGET		8192

/* ares_timeout() walks every query in flight (c-ares 1.18): not once per
 * packet, or thousands of lookups cost quadratic time. A query's first
 * timeout is RES_TIMEOUT_MS away and later ones further, so a timer armed
 * at most that far ahead is never late, and while it runs nothing is due
 * before it. */
static void
res_schedule(struct kb_resolver *r)
{
	struct timeval tv, *tvp, max = kb_ms_tv(RES_TIMEOUT_MS);

	if (r->closing)
		return;
	if (r->pending == 0) {
		evtimer_del(r->timer);
		return;
	}
	if (evtimer_pending(r->timer, NULL))
		return;
	if ((tvp = ares_timeout(r->channel, &max, &tv)) != NULL)
		evtimer_add(r->timer, tvp);
}

static void
res_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct res_sock *s = arg;
	struct kb_resolver *r = s->r;

	/* s may be freed by the sock_state_cb during processing. */
	ares_process_fd(r->channel, what & EV_READ ? fd : ARES_SOCKET_BAD,
	    what & EV_WRITE ? fd : ARES_SOCKET_BAD);
	res_schedule(r);
}

static void
res_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kb_resolver *r = arg;

	(void)fd;
	(void)what;
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	res_schedule(r);
}

static void
res_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct kb_resolver *r = data;
	struct res_sock *s;
	short what = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

	TAILQ_FOREACH(s, &r->socks, entry)
		if (s->fd == fd)
			break;
	if (s && s->ev) {
		event_free(s->ev);
		s->ev = NULL;
	}
	if (!what) {
		if (s) {
			TAILQ_REMOVE(&r->socks, s, entry);
			free(s);
		}
		return;
	}
	if (!s) {
		if ((s = calloc(1, sizeof(*s))) == NULL) {
			log_warnx("%s: out of memory", __func__);
			return;
		}
		s->r = r;
		s->fd = fd;
		TAILQ_INSERT_TAIL(&r->socks, s, entry);
	}
	/* Without the event, the query still ends by c-ares' own timeout. */
	if ((s->ev = event_new(r->base, fd, what | EV_PERSIST, res_sock_cb, s)) == NULL ||
	    event_add(s->ev, NULL) < 0)
		log_warnx("%s: cannot watch socket %d", __func__, (int)fd);
}

/* Skip the (possibly compressed) name at *p in abuf[alen]; -1 if it is bad. */
static int
res_skip_name(const unsigned char *abuf, int alen, const unsigned char **p)
{
	char *name;
	long len;

	if (*p >= abuf + alen || ares_expand_name(*p, abuf, alen, &name, &len) != ARES_SUCCESS)
		return -1;
	ares_free_string(name);
	*p += len;
	return 0;
}

static uint32_t
res_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* How long a negative answer may be kept (RFC 2308): the smaller of the
 * authority section's SOA TTL and its MINIMUM; 0 without an SOA, for then
 * it must not be kept at all. */
static uint32_t
res_negative_ttl(const unsigned char *abuf, int alen)
{
	const unsigned char *p, *end = abuf + alen, *rd;
	unsigned i, qd, an, ns, type, rdlen;
	uint32_t ttl, min;

	if (!abuf || alen < 12)
		return 0;
	qd = (unsigned)(abuf[4] << 8 | abuf[5]);
	an = (unsigned)(abuf[6] << 8 | abuf[7]);
	ns = (unsigned)(abuf[8] << 8 | abuf[9]);
	p = abuf + 12;
	for (i = 0; i < qd; i++) {
		if (res_skip_name(abuf, alen, &p) < 0 || end - p < 4)
			return 0;
		p += 4;		/* QTYPE, QCLASS */
	}
	for (i = 0; i < an + ns; i++) {
		if (res_skip_name(abuf, alen, &p) < 0 || end - p < 10)
			return 0;
		type = (unsigned)(p[0] << 8 | p[1]);
		ttl = res_get32(p + 4);
		rdlen = (unsigned)(p[8] << 8 | p[9]);
		rd = p + 10;
		if ((size_t)(end - rd) < rdlen)
			return 0;
		p = rd + rdlen;
		if (i < an || type != 6)	/* SOA */
			continue;
		/* MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM */
		if (res_skip_name(abuf, alen, &rd) < 0 || res_skip_name(abuf, alen, &rd) < 0 ||
		    rd + 20 > p)
			return 0;
		min = res_get32(rd + 16);
		if (ttl > INT32_MAX)	/* RFC 2181: such a TTL is 0 */
			ttl = 0;
		return ttl < min ? ttl : min;
	}
	return 0;
}

/* The data of the record at rd[rdlen] (in abuf[alen]) as PROTOCOL.md 4.2
 * writes it; -1 if it is malformed or does not fit. */
static int
res_rr_data(const unsigned char *abuf, int alen, const unsigned char *rd, unsigned rdlen,
    unsigned type, char *out, size_t outlen)
{
	const unsigned char *p = rd;
	char *name = NULL;
	unsigned fixed = type == 15 ? 2 : type == 33 ? 6 : 0;
	long len;
	size_t i;
	int n = -1;

	switch (type) {
	case 1:
	case 28:
		if (rdlen != (type == 1 ? 4u : 16u) ||
		    !inet_ntop(type == 1 ? AF_INET : AF_INET6, rd, out, (socklen_t)outlen))
			return -1;
		return 0;
	case 2: case 5: case 12: case 15: case 33:
		if (rdlen < fixed + 1 || ares_expand_name(rd + fixed, abuf, alen, &name, &len) !=
		    ARES_SUCCESS)
			return -1;
		if (fixed + (unsigned long)len == rdlen && kb_dns_name_ok(name)) {
			if (type == 15)
				n = snprintf(out, outlen, "%u %s", p[0] << 8 | p[1], name);
			else if (type == 33)
				n = snprintf(out, outlen, "%u %u %u %s", p[0] << 8 | p[1],
				    p[2] << 8 | p[3], p[4] << 8 | p[5], name);
			else
				n = snprintf(out, outlen, "%s", name);
		}
		ares_free_string(name);
		return n >= 0 && (size_t)n < outlen ? 0 : -1;
	default:
		if (rdlen * 2 >= outlen)
			return -1;
		for (i = 0; i < rdlen; i++)
			snprintf(out + 2 * i, 3, "%02x", rd[i]);
		out[2 * rdlen] = '\0';
		return 0;
	}
}

/* The answer section of abuf[alen] as records: their number, or -1 if the
 * answer is malformed or too big. */
static int
res_records(const unsigned char *abuf, int alen, struct resolver_rr *rrs, size_t max)
{
	const unsigned char *p, *end = abuf + alen, *rd;
	unsigned i, qd, an, type, class, rdlen;
	size_t n = 0, budget = RES_RR_BUDGET;
	uint32_t ttl;
	char *name;
	long len;

	if (!abuf || alen < 12)
		return -1;
	qd = (unsigned)(abuf[4] << 8 | abuf[5]);
	an = (unsigned)(abuf[6] << 8 | abuf[7]);
	p = abuf + 12;
	for (i = 0; i < qd; i++) {
		if (res_skip_name(abuf, alen, &p) < 0 || end - p < 4)
			return -1;
		p += 4;
	}
	for (i = 0; i < an; i++) {
		if (p >= end || ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
			return -1;
		p += len;
		if (end - p < 10 || n >= max || !kb_dns_name_ok(name) ||
		    strlen(name) >= sizeof(rrs[n].name)) {
			ares_free_string(name);
			return -1;
		}
		snprintf(rrs[n].name, sizeof(rrs[n].name), "%s", name);
		ares_free_string(name);
		type = (unsigned)(p[0] << 8 | p[1]);
		class = (unsigned)(p[2] << 8 | p[3]);
		ttl = res_get32(p + 4);
		rdlen = (unsigned)(p[8] << 8 | p[9]);
		rd = p + 10;
		if ((size_t)(end - rd) < rdlen)
			return -1;
		p = rd + rdlen;
		/* Another class, or a type whose names we do not decode: left out. */
		if (class != 1 || !kb_dns_qtype_ok(type))
			continue;
		if (res_rr_data(abuf, alen, rd, rdlen, type, rrs[n].data, sizeof(rrs[n].data)) < 0)
			return -1;
		rrs[n].type = (uint16_t)type;
		rrs[n].ttl = ttl > INT32_MAX ? 0 : ttl;
		if ((len = (long)(strlen(rrs[n].name) + strlen(rrs[n].data) + 40)) > (long)budget)
			return -1;
		budget -= (size_t)len;
		n++;
	}
	return (int)n;
}

static void
res_done_rr(struct res_lookup *lk, int status, unsigned char *abuf, int alen)
{
	struct resolver_rr *rrs = NULL;
	uint32_t ttl = UINT32_MAX;
	int i, n = 0, rcode = 2;

	switch (status) {
	case ARES_SUCCESS:
	case ARES_ENODATA:
	case ARES_ENOTFOUND:
		if ((rrs = calloc(KB_DNS_RECORDS_MAX, sizeof(*rrs))) == NULL)
			break;
		if ((n = res_records(abuf, alen, rrs, KB_DNS_RECORDS_MAX)) < 0) {
			log_debug("%s: an answer malformed or too big", __func__);
			n = 0;
			break;
		}
		rcode = status == ARES_ENOTFOUND ? 3 : 0;
		break;
	default:
		log_debug("%s: %s", __func__, ares_strerror(status));
		break;
	}
	for (i = 0; i < n; i++)
		if (rrs[i].ttl < ttl)
			ttl = rrs[i].ttl;
	if (n == 0)
		ttl = rcode == 2 ? RES_DEFAULT_TTL : res_negative_ttl(abuf, alen);
	lk->rrcb(lk->arg, rcode, rrs, (size_t)n, ttl);
	free(rrs);
}

static void
res_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct res_lookup *lk = arg;
	struct ares_addrttl a4[RES_MAX_ADDRS];
	struct ares_addr6ttl a6[RES_MAX_ADDRS];
	char text[RES_MAX_ADDRS][INET6_ADDRSTRLEN];
	const char *addrs[RES_MAX_ADDRS];
	uint32_t ttl = UINT32_MAX, t;
	size_t naddrs = 0;
	int i, n = RES_MAX_ADDRS, rcode = 2, rc;

	(void)timeouts;
	if (lk->rrcb) {
		lk->r->pending--;
		if (lk->r->full && lk->r->pending < RES_MAX_PENDING / 2)
			lk->r->full = 0;
		res_done_rr(lk, status, abuf, alen);
		free(lk);
		return;
	}
	switch (status) {
	case ARES_SUCCESS:
		if (lk->qtype == 28)
			rc = ares_parse_aaaa_reply(abuf, alen, NULL, a6, &n);
		else
			rc = ares_parse_a_reply(abuf, alen, NULL, a4, &n);
		if (rc == ARES_ENODATA) {
			rcode = 0;
			break;
		}
		if (rc != ARES_SUCCESS) {
			log_debug("%s: bad answer: %s", __func__, ares_strerror(rc));
			break;
		}
		rcode = 0;
		for (i = 0; i < n; i++) {
			if (lk->qtype == 28) {
				inet_ntop(AF_INET6, &a6[i].ip6addr, text[i], sizeof(text[i]));
				t = a6[i].ttl < 0 ? 0 : (uint32_t)a6[i].ttl;
			} else {
				inet_ntop(AF_INET, &a4[i].ipaddr, text[i], sizeof(text[i]));
				t = a4[i].ttl < 0 ? 0 : (uint32_t)a4[i].ttl;
			}
			addrs[naddrs++] = text[i];
			if (t < ttl)
				ttl = t;
		}
		break;
	case ARES_ENOTFOUND:
		rcode = 3;
		break;
	case ARES_ENODATA:
		rcode = 0;
		break;
	default:
		log_debug("%s: %s", __func__, ares_strerror(status));
		break;
	}
	if (naddrs == 0)
		ttl = rcode == 0 || rcode == 3 ? res_negative_ttl(abuf, alen) : RES_DEFAULT_TTL;
	lk->r->pending--;
	if (lk->r->full && lk->r->pending < RES_MAX_PENDING / 2)
		lk->r->full = 0;
	lk->cb(lk->arg, rcode, addrs, naddrs, ttl);
	free(lk);
}

struct kb_resolver *
resolver_new(struct event_base *base, const char *server, char *err, size_t errlen)
{
	struct kb_resolver *r;
	struct ares_options opts;
	int rc;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->base = base;
	TAILQ_INIT(&r->socks);
	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		free(r);
		return NULL;
	}
	if ((r->timer = evtimer_new(base, res_timer_cb, r)) == NULL) {
		snprintf(err, errlen, "cannot create the resolver timer");
		goto fail;
	}
	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = res_sock_state;
	opts.sock_state_cb_data = r;
	opts.timeout = RES_TIMEOUT_MS;
	opts.tries = RES_TRIES;
	/* An answer is final, SERVFAIL and REFUSED too: one lookup costs the
	 * cluster's DNS one query, not one per try (the daemon's client asks
	 * again if it wants to). Only silence is tried again. */
	opts.flags = ARES_FLAG_NOCHECKRESP;
	/* EDNS0 with 1232 bytes (the DNS flag day's size): big answers (SRV
	 * of a headless service, TXT) in one datagram; one bigger comes with
	 * TC, and c-ares asks again over TCP. */
	opts.flags |= ARES_FLAG_EDNS;
	opts.ednspsz = 1232;
	rc = ares_init_options(&r->channel, &opts, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
	    ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		goto fail;
	}
	r->channel_ok = 1;
	if (server && (rc = ares_set_servers_ports_csv(r->channel, server)) != ARES_SUCCESS) {
		snprintf(err, errlen, "DNS server '%s': %s", server, ares_strerror(rc));
		goto fail;
	}
	return r;
fail:
	resolver_free(r);
	return NULL;
}

static void
res_lookup(struct kb_resolver *r, const char *name, int qtype, resolver_cb cb,
    resolver_rr_cb rrcb, void *arg)
{
	struct res_lookup *lk;

	/* ares_destroy must not see new queries while it completes the old ones. */
	if (r->closing || (rrcb ? !kb_dns_qtype_ok((unsigned)qtype) :
	    qtype != 1 && qtype != 28) || (lk = calloc(1, sizeof(*lk))) == NULL) {
		if (rrcb)
			rrcb(arg, 2, NULL, 0, RES_DEFAULT_TTL);
		else
			cb(arg, 2, NULL, 0, RES_DEFAULT_TTL);
		return;
	}
	if (r->pending >= RES_MAX_PENDING) {
		if (!r->full)
			log_warnx("resolver: %d lookups in flight, answering SERVFAIL to more",
			    RES_MAX_PENDING);
		r->full = 1;
		free(lk);
		if (rrcb)
			rrcb(arg, 2, NULL, 0, RES_DEFAULT_TTL);
		else
			cb(arg, 2, NULL, 0, RES_DEFAULT_TTL);
		return;
	}
	r->pending++;
	lk->r = r;
	lk->cb = cb;
	lk->rrcb = rrcb;
	lk->arg = arg;
	lk->qtype = qtype;
	/* ares_search applies the search list and ndots to a relative name;
	 * an absolute one (a final dot, as the daemon sends cluster names) is
	 * asked as it is, one query. */
	ares_search(r->channel, name, 1, qtype, res_done, lk);
	res_schedule(r);
}

void
resolver_lookup(struct kb_resolver *r, const char *name, int qtype, resolver_cb cb, void *arg)
{
	res_lookup(r, name, qtype, cb, NULL, arg);
}

void
resolver_lookup_rr(struct kb_resolver *r, const char *name, int qtype, resolver_rr_cb cb,
    void *arg)
{
	res_lookup(r, name, qtype, NULL, cb, arg);
}

/* Must not be called from a lookup's callback (c-ares forbids destroying a
 * channel from inside its own processing). */
void
resolver_free(struct kb_resolver *r)
{
	struct res_sock *s;

	if (!r)
		return;
	r->closing = 1;
	if (r->channel_ok)
		ares_destroy(r->channel);
	while ((s = TAILQ_FIRST(&r->socks)) != NULL) {
		TAILQ_REMOVE(&r->socks, s, entry);
		if (s->ev)
			event_free(s->ev);
		free(s);
	}
	if (r->timer)
		event_free(r->timer);
	ares_library_cleanup();
	free(r);
}
