/* libFuzzer target for the daemon's DNS messages (daemon/dnsmsg.c) and DNS
 * proxy (daemon/dns.c). First the message module alone, on buffers of their
 * exact size: the client's datagram is parsed as a query, an answer to it is
 * built from the manager's addresses into a buffer of a size the input
 * picks (and checked: within bounds, the question copied, matching its
 * query, parsed back by c-ares to as many records as it claims), the error
 * answers are built too, and the upstream's answer is matched against the
 * query. Then the whole proxy: the input is what a client sends (one UDP datagram, or a TCP byte stream with its own
 * length prefixes), what the manager answers for a cluster name, and what
 * the upstream resolver answers to a forwarded query. Everything goes through
 * the real sockets and callbacks on 127.0.0.1: the query is parsed and
 * classified, answered from the manager's addresses or forwarded, and the
 * upstream's answer is matched against the query. Any crash, leak or
 * sanitizer report is a bug. Build and run with `make fuzz`.
 *
 * Input: byte 0 flags (below); byte 1: the manager's rcode; bytes 2-3 and
 * 4-5: lengths (little endian) of the client's part and of the manager's
 * part (addresses separated by newlines); then those parts; the rest is the
 * upstream's answer. */
#include "../../daemon/dns.c"
#include "../../daemon/dnsmsg.c"
#include "../../daemon/dnscache.c"
#include "../../daemon/dnsname.c"
#include "../../daemon/resolvconf.c"

#include <fcntl.h>
#include <signal.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define F_TCP		0x01	/* the client uses TCP */
#define F_HOOK_LATER	0x02	/* the manager answers from the loop, not at once */
#define F_HOOK_FAIL	0x04	/* no session: the hook returns -1 */
#define F_UP_ID		0x08	/* the upstream's answer gets the forwarded id and QR */
#define F_UP_QUESTION	0x10	/* ... and the forwarded question */
#define F_TIMERS	0x20	/* every timer fires early (manager late, upstream retries) */
#define F_HOOK_NEVER	0x40	/* the manager only answers at the end of the input */

#define check(cond) do { if (!(cond)) abort(); } while (0)

/* dns.c is linked alone: the firewall is not under test. */
int
fw_mark_socket(int fd)
{
	(void)fd;
	return 0;
}

static struct event_base *fbase;
static struct kb_dns *d;
static int client = -1, up_udp = -1, up_tcp = -1;
static struct sockaddr_in dns_addr;

static uint8_t flags, hook_rcode;
static const char *hook_addrs[16];
static size_t hook_naddrs;
static const uint8_t *up_data;
static size_t up_len;

/* hook_rcode & F_RR_RCODE: the manager answers records (its hello said
 * "dns_records"): each line of its part is "TYPE NAME DATA". */
#define F_RR_RCODE	0x40
static struct dns_rr hook_rrs[16];
static size_t hook_nrrs;
static int hook_rrs_bad;	/* a line tunnel.c would refuse: SERVFAIL */
static char rr_lines[16][1400];

struct later {
	struct later *next;
	dns_done_fn done;
	dns_done_rr_fn done_rr;
	void *ctx;
};

/* The records of the manager's part, checked as tunnel.c checks them. */
static void
parse_rrs(void)
{
	char *sp, *sp2;
	unsigned long t;
	size_t i;

	hook_nrrs = 0;
	hook_rrs_bad = 0;
	for (i = 0; i < hook_naddrs; i++) {
		snprintf(rr_lines[i], sizeof(rr_lines[i]), "%s", hook_addrs[i]);
		if ((sp = strchr(rr_lines[i], ' ')) == NULL ||
		    (sp2 = strchr(sp + 1, ' ')) == NULL) {
			hook_rrs_bad = 1;
			return;
		}
		*sp = *sp2 = '\0';
		t = strtoul(rr_lines[i], NULL, 10);
		if (t < 1 || t > 65535 || !kb_dns_qtype_ok((unsigned)t) ||
		    !kb_dns_name_ok(sp + 1) || strlen(sp2 + 1) > KB_DNS_DATA_MAX) {
			hook_rrs_bad = 1;
			return;
		}
		hook_rrs[hook_nrrs++] = (struct dns_rr){ sp + 1, (uint16_t)t, 300, sp2 + 1 };
	}
}
static struct later *laters;

static void
hook_answer(dns_done_fn done, void *ctx)
{
	done(ctx, hook_rcode, hook_addrs, hook_naddrs, hook_rcode & 0x80 ? 0 : 300);
}

static void
hook_answer_rr(dns_done_rr_fn done, void *ctx)
{
	if (hook_rrs_bad)
		done(ctx, 2, NULL, 0, 0);
	else
		done(ctx, hook_rcode & 0x0f, hook_rrs, hook_nrrs, hook_rcode & 0x80 ? 0 : 30);
}

static void
later_answer(struct later *l)
{
	if (l->done_rr)
		hook_answer_rr(l->done_rr, l->ctx);
	else
		hook_answer(l->done, l->ctx);
}

static void
hook_later(evutil_socket_t fd, short what, void *arg)
{
	struct later *l, **pp;

	(void)fd;
	(void)what;
	for (pp = &laters; (l = *pp) != NULL; pp = &l->next) {
		if (l == arg) {
			*pp = l->next;
			later_answer(l);
			free(l);
			return;
		}
	}
}

/* The manager, as tunnel.c calls it: answers exactly once, now or later. */
static int
fz_resolve(void *arg, const char *name, int qtype, dns_done_fn done, void *ctx)
{
	struct timeval zero = { 0, 0 };
	struct later *l;

	(void)arg;
	check(name[0] && strlen(name) < DNS_NAME_MAX && (qtype == DNS_T_A || qtype == DNS_T_AAAA));
	if (flags & F_HOOK_FAIL)
		return -1;
	if (!(flags & (F_HOOK_LATER | F_HOOK_NEVER))) {
		hook_answer(done, ctx);
		return 0;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL)
		abort();
	l->done = done;
	l->ctx = ctx;
	l->next = laters;
	laters = l;
	if (!(flags & F_HOOK_NEVER))
		event_base_once(fbase, -1, EV_TIMEOUT, hook_later, l, &zero);
	return 0;
}

/* The same for records; -2 (a manager without them) unless F_RR_RCODE. */
static int
fz_resolve_rr(void *arg, const char *name, int qtype, dns_done_rr_fn done, void *ctx)
{
	struct timeval zero = { 0, 0 };
	struct later *l;

	(void)arg;
	check(name[0] && strlen(name) < DNS_NAME_MAX);
	if (!(hook_rcode & F_RR_RCODE))
		return -2;
	check(kb_dns_qtype_ok((unsigned)qtype));
	if (flags & F_HOOK_FAIL)
		return -1;
	if (!(flags & (F_HOOK_LATER | F_HOOK_NEVER))) {
		hook_answer_rr(done, ctx);
		return 0;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL)
		abort();
	l->done_rr = done;
	l->ctx = ctx;
	l->next = laters;
	laters = l;
	if (!(flags & F_HOOK_NEVER))
		event_base_once(fbase, -1, EV_TIMEOUT, hook_later, l, &zero);
	return 0;
}

static int
udp_socket(struct sockaddr_in *sin)
{
	socklen_t len = sizeof(*sin);
	int fd;

	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)sin, sizeof(*sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)sin, &len) < 0)
		abort();
	return fd;
}

static void
setup(void)
{
	char resolv[] = "/tmp/fuzz_dns.XXXXXX", err[200];
	struct sockaddr_in sin = { 0 };
	int fd, one = 1, tries;

	log_init("fuzz_dns", KB_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	fbase = event_base_new();
	if ((fd = mkstemp(resolv)) < 0 || write(fd, "nameserver 127.0.0.1\n", 21) != 21)
		abort();
	close(fd);
	d = dns_new(fbase, &(struct kb_dns_hooks){ .resolve = fz_resolve,
	    .resolve_rr = fz_resolve_rr }, resolv, 0, err, sizeof(err));
	unlink(resolv);
	if (!d)
		abort();
	dns_addr.sin_family = AF_INET;
	dns_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	dns_addr.sin_port = htons(dns_port(d));
	client = udp_socket(&(struct sockaddr_in){ 0 });
	/* The upstream: UDP and TCP on one loopback port. */
	for (tries = 0; up_tcp < 0 && tries < 16; tries++) {
		if (up_udp >= 0)
			close(up_udp);
		up_udp = udp_socket(&sin);
		if ((up_tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
			abort();
		setsockopt(up_tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(up_tcp, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(up_tcp, 64) < 0) {
			close(up_tcp);
			up_tcp = -1;
		}
	}
	if (up_tcp < 0)
		abort();
	dns_set_upstream_port(d, ntohs(sin.sin_port));
}

/* The upstream answers what was forwarded to it with the input's bytes. */
static size_t
answer(unsigned char *q, size_t qlen, unsigned char *a)
{
	size_t n = up_len < DNS_MSG_MAX ? up_len : DNS_MSG_MAX, qend;

	memcpy(a, up_data, n);
	if ((flags & (F_UP_ID | F_UP_QUESTION)) && n >= DNS_HDR && qlen >= DNS_HDR) {
		memcpy(a, q, 2);
		a[2] |= 0x80;
	}
	if ((flags & F_UP_QUESTION) && qlen > DNS_HDR) {
		/* The forwarded query is the client's, whose question parsed. */
		for (qend = DNS_HDR; qend < qlen && q[qend]; qend += 1 + q[qend])
			;
		qend = qend + 5 <= qlen ? qend + 5 : qlen;
		if (n < qend) {
			memset(a + n, 0, qend - n);
			n = qend;
		}
		memcpy(a + 4, q + 4, 2);
		memcpy(a + DNS_HDR, q + DNS_HDR, qend - DNS_HDR);
	}
	return n;
}

/* A TCP connection from the proxy to the upstream. */
struct upconn {
	int fd;
	size_t got;
	unsigned char q[2 + DNS_MSG_MAX];
};
static struct upconn upconns[4] = { { .fd = -1 }, { .fd = -1 }, { .fd = -1 }, { .fd = -1 } };

static void
upconn_close(struct upconn *u)
{
	close(u->fd);
	u->fd = -1;
	u->got = 0;
}

static void
upstream(int last)
{
	static unsigned char q[DNS_MSG_MAX + 2], a[DNS_MSG_MAX + 2];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct upconn *u;
	ssize_t n;
	size_t i, len;
	int fd;

	while ((n = recvfrom(up_udp, q, sizeof(q), 0, (struct sockaddr *)&ss, &sl)) >= 0) {
		len = answer(q, (size_t)n, a);
		sendto(up_udp, a, len, 0, (struct sockaddr *)&ss, sl);
		sl = sizeof(ss);
	}
	while ((fd = accept4(up_tcp, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		for (i = 0; i < 4 && upconns[i].fd >= 0; i++)
			;
		if (i == 4) {
			close(fd);
			continue;
		}
		upconns[i].fd = fd;
	}
	for (i = 0; i < 4; i++) {
		u = &upconns[i];
		if (u->fd < 0)
			continue;
		n = -1;
		while (u->got < sizeof(u->q) &&
		    (n = read(u->fd, u->q + u->got, sizeof(u->q) - u->got)) > 0)
			u->got += (size_t)n;
		if (u->got >= 2 && u->got >= 2 + dns_get16(u->q)) {
			len = answer(u->q + 2, u->got - 2, a + 2);
			dns_put16(a, (uint16_t)len);
			if (write(u->fd, a, 2 + len) < 0)
				(void)0;
			upconn_close(u);
		} else if (last || n == 0) {
			upconn_close(u);
		}
	}
}

static void
fire_timers(void)
{
	struct dns_req *rq;

	TAILQ_FOREACH(rq, &d->reqs, entry)
		if (rq->timer && evtimer_pending(rq->timer, NULL))
			event_active(rq->timer, EV_TIMEOUT, 0);
}

static void
drain(int fd)
{
	unsigned char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* An answer to query q from the manager's addresses, into a buffer of
 * exactly the size the input picks (the question and up to 120 bytes more,
 * or a UDP answer's 512). */
static void
fz_build(const unsigned char *query, const struct dns_question *q)
{
	struct ares_addrttl a[16];
	struct ares_addr6ttl a6[16];
	int rcode = hook_rcode & 0x0f, na = 16, qtype = q->qtype;
	size_t outmax = flags & 0x80 ? DNS_UDP_ANSWER_MAX : q->qend + (size_t)(hook_rcode >> 4) * 8;
	size_t n, an;
	unsigned char *out;

	if (outmax < q->qend)
		outmax = q->qend;
	if ((out = malloc(outmax)) == NULL)
		return;
	n = dns_build_answer(out, outmax, query, q->qend, rcode, qtype, hook_addrs, hook_naddrs,
	    300);
	an = dns_get16(out + 6);
	check(n >= q->qend && n <= outmax && (out[2] & 0x80) && (out[3] & 0x0f) == rcode);
	check(dns_get16(out) == q->id && dns_get16(out + 4) == 1 && (rcode == 0 || an == 0));
	check(an <= hook_naddrs && n == q->qend + an * (qtype == DNS_T_AAAA ? 28 : 16));
	check(!memcmp(out + DNS_HDR, query + DNS_HDR, q->qend - DNS_HDR));
	check(dns_same_question(out, n, query, q->qend));
	if (an && q->qclass == DNS_C_IN && qtype == DNS_T_A)
		check(ares_parse_a_reply(out, (int)n, NULL, a, &na) == ARES_SUCCESS &&
		    (size_t)na == an);
	if (an && q->qclass == DNS_C_IN && qtype == DNS_T_AAAA)
		check(ares_parse_aaaa_reply(out, (int)n, NULL, a6, &na) == ARES_SUCCESS &&
		    (size_t)na == an);
	free(out);
}

/* An answer built from the manager's records, into a buffer the input
 * sizes: within bounds, the question copied, no more records than given,
 * and c-ares reads it. */
static void
fz_build_records(const unsigned char *query, const struct dns_question *q)
{
	int rcode = hook_rcode & 0x0f, bad;
	size_t outmax = q->qend + (size_t)(hook_rcode >> 4) * 64, n;
	unsigned char *out;
	struct hostent *he = NULL;

	if (hook_rrs_bad || (out = malloc(outmax)) == NULL)
		return;
	n = dns_build_records(out, outmax, query, q->qend, rcode, hook_rrs, hook_nrrs, q->name,
	    &bad);
	if (!bad) {
		check(n >= q->qend && n <= outmax && (out[3] & 0x0f) == rcode);
		check(dns_get16(out + 6) <= hook_nrrs && dns_same_question(out, n, query, q->qend));
		if (q->qclass == DNS_C_IN && q->qtype == DNS_T_A &&
		    ares_parse_a_reply(out, (int)n, &he, NULL, NULL) == ARES_SUCCESS)
			ares_free_hostent(he);
	} else {
		check(n == 0);
	}
	free(out);
}

/* The answer to a query that could not be parsed: the header alone. */
static void
fz_build_error(const unsigned char *query, size_t len, int rcode)
{
	unsigned char out[DNS_HDR];

	check(len >= DNS_HDR && (rcode == DNS_FORMERR || rcode == DNS_NOTIMP));
	check(dns_build_rcode(out, sizeof(out), query, DNS_HDR, rcode) == DNS_HDR);
	check(dns_get16(out + 4) == 0 && dns_get16(out + 6) == 0 && (out[3] & 0x0f) == rcode);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nss[] = { "default", "kube-system" };
	static char text[4096];
	size_t qlen, hlen, off = 0, i;
	struct dns_req *rq;
	struct dns_tcp *c;
	struct dns_question dq;
	char name[DNS_NAME_MAX];
	unsigned char *copy, *ans;
	struct later *l;
	int sv[2] = { -1, -1 }, round, single, r;
	char *p, *save;
	ssize_t n;

	if (!d)
		setup();
	if (size < 6)
		return 0;
	flags = data[0];
	hook_rcode = data[1];
	qlen = (size_t)data[2] | (size_t)data[3] << 8;
	hlen = (size_t)data[4] | (size_t)data[5] << 8;
	data += 6;
	size -= 6;
	if (qlen > size)
		qlen = size;
	if (hlen > size - qlen || hlen >= sizeof(text))
		hlen = size - qlen < sizeof(text) - 1 ? size - qlen : sizeof(text) - 1;
	memcpy(text, data + qlen, hlen);
	text[hlen] = '\0';
	hook_naddrs = 0;
	for (p = strtok_r(text, "\n", &save); p && hook_naddrs < 16; p = strtok_r(NULL, "\n", &save))
		hook_addrs[hook_naddrs++] = p;
	parse_rrs();
	up_data = data + qlen + hlen;
	up_len = size - qlen - hlen;
	/* A fresh cluster and cache for each input. */
	dns_set_cluster(d, (flags & 0x80) ? "cluster.local." : "cluster.local", nss, 2, "default");
	/* The parser and the classifier alone, on a buffer of the query's exact
	 * size: the proxy reads into a 64 KiB buffer, where ASan would miss a
	 * read past the end of the message. */
	if (!(flags & F_TCP) && (copy = malloc(qlen ? qlen : 1)) != NULL) {
		memcpy(copy, data, qlen);
		if ((r = dns_parse_query(copy, qlen, &dq)) > 0)
			fz_build_error(copy, qlen, r);
		if (r == 0) {
			check(strlen(dq.name) < sizeof(dq.name) && dq.qend <= qlen);
			check(dq.qend >= DNS_HDR + 5 && dns_same_question(copy, qlen, copy, dq.qend));
			fz_build(copy, &dq);
			fz_build_records(copy, &dq);
			if (dns_zone_classify(&d->zone, dq.name, name, sizeof(name), &single))
				check(strlen(name) < sizeof(name) && name[0]);
			/* And how an upstream's answer is matched to it. */
			if (up_len >= DNS_HDR && (ans = malloc(up_len)) != NULL) {
				memcpy(ans, up_data, up_len);
				(void)dns_same_question(ans, up_len, copy, dq.qend);
				free(ans);
			}
		}
		free(copy);
	}

	if (flags & F_TCP) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
			abort();
		dns_tcp_accept(sv[1], NULL, 0, d);
	} else if (qlen <= DNS_MSG_MAX) {
		sendto(client, data, qlen, 0, (struct sockaddr *)&dns_addr, sizeof(dns_addr));
	}
	for (round = 0; round < 8; round++) {
		if (sv[0] >= 0 && off < qlen) {
			if ((n = write(sv[0], data + off, qlen - off)) > 0)
				off += (size_t)n;
			if (off == qlen)
				shutdown(sv[0], SHUT_WR);
		}
		event_base_loop(fbase, EVLOOP_NONBLOCK);
		upstream(0);
		event_base_loop(fbase, EVLOOP_NONBLOCK);
		if (sv[0] >= 0)
			drain(sv[0]);
		drain(client);
		if ((flags & F_TIMERS) && round >= 2)
			fire_timers();
	}
	/* The manager's late answers, then whatever is left, as dns_free does. */
	while ((l = laters) != NULL) {
		laters = l->next;
		later_answer(l);
		free(l);
	}
	event_base_loop(fbase, EVLOOP_NONBLOCK);
	while ((rq = TAILQ_FIRST(&d->reqs)) != NULL)
		dns_req_free(rq);
	while ((c = TAILQ_FIRST(&d->tcps)) != NULL)
		dns_tcp_free(c);
	check(d->npending == 0 && d->ntcp == 0);
	/* Stale one-shot events (a hook_later whose request is gone) must not
	 * outlive the input. */
	event_base_loop(fbase, EVLOOP_NONBLOCK);
	drain(client);
	upstream(1);
	if (sv[0] >= 0)
		close(sv[0]);
	for (i = 0; i < hook_naddrs; i++)
		hook_addrs[i] = NULL;
	return 0;
}
