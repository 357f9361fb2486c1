/* The manager's resolver against a real dnsmasq on loopback, playing the
 * cluster DNS server. */
#include "../../agent/resolver.c"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <arpa/nameser.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "dnsmasq.h"
#include "ok.h"
#include "util.h"

static char tmpdir[64];
static struct event_base *base;

static void
cleanup(void)
{
	if (tmpdir[0]) {
		dnsmasq_stop(tmpdir);
		rmdir(tmpdir);
		tmpdir[0] = '\0';
	}
}

struct result {
	int calls;
	int rcode;
	size_t naddrs;
	char addrs[4][INET6_ADDRSTRLEN];
	uint32_t ttl;
};

static void
result_cb(void *arg, int rcode, const char *const *addrs, size_t naddrs, uint32_t ttl)
{
	struct result *res = arg;
	size_t i;

	res->calls++;
	res->rcode = rcode;
	res->naddrs = naddrs;
	res->ttl = ttl;
	for (i = 0; i < naddrs && i < 4; i++)
		snprintf(res->addrs[i], sizeof(res->addrs[i]), "%s", addrs[i]);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
	event_base_loopbreak(base);
}

/* Run the loop until every result has been called once, or ms pass. */
static void
wait_for(struct result *res, size_t n, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *ev;
	int expired = 0;
	size_t i;

	ev = evtimer_new(base, deadline_cb, &expired);
	evtimer_add(ev, &tv);
	for (;;) {
		for (i = 0; i < n && res[i].calls; i++)
			;
		if (i == n || expired)
			break;
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(ev);
}

static void
test_lookups(uint16_t port)
{
	struct result res[7];
	struct kb_resolver *r;
	char server[64], err[256];

	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	r = resolver_new(base, server, err, sizeof(err));
	ok(r != NULL);
	if (!r) {
		printf("# resolver_new: %s\n", err);
		return;
	}
	memset(res, 0, sizeof(res));
	resolver_lookup(r, "web.default.svc.cluster.local", 1, result_cb, &res[0]);
	resolver_lookup(r, "web.default", 1, result_cb, &res[1]);	/* search list */
	resolver_lookup(r, "missing.default", 1, result_cb, &res[2]);
	resolver_lookup(r, "web.default.svc.cluster.local", 28, result_cb, &res[3]);
	resolver_lookup(r, "api.default", 28, result_cb, &res[4]);
	resolver_lookup(r, "web", 1, result_cb, &res[5]);	/* not in kbridge's namespace */
	resolver_lookup(r, "web.default", 15, result_cb, &res[6]);	/* not supported */
	wait_for(res, 7, 5000);
	ok(res[0].calls == 1 && res[0].rcode == 0 && res[0].naddrs == 2 && res[0].ttl == 30);
	ok(res[0].naddrs == 2 && ((!strcmp(res[0].addrs[0], "10.96.1.1") &&
	    !strcmp(res[0].addrs[1], "10.96.1.2")) || (!strcmp(res[0].addrs[0], "10.96.1.2") &&
	    !strcmp(res[0].addrs[1], "10.96.1.1"))));
	ok(res[1].calls == 1 && res[1].rcode == 0 && res[1].naddrs == 2);
	/* dnsmasq's NXDOMAIN has no SOA: not to be kept */
	ok(res[2].calls == 1 && res[2].rcode == 3 && res[2].naddrs == 0 && res[2].ttl == 0);
	ok(res[3].calls == 1 && res[3].rcode == 0 && res[3].naddrs == 0);
	ok(res[4].calls == 1 && res[4].rcode == 0 && res[4].naddrs == 1 &&
	    !strcmp(res[4].addrs[0], "fd00::1"));
	ok(res[5].calls == 1 && res[5].rcode == 3);
	ok(res[6].calls == 1 && res[6].rcode == 2);
	/* Nothing is called twice. */
	wait_for(res, 0, 200);
	ok(res[0].calls + res[1].calls + res[2].calls + res[3].calls + res[4].calls +
	    res[5].calls + res[6].calls == 7);
	resolver_free(r);
}

struct rr_result {
	int calls;
	int rcode;
	size_t n;
	struct resolver_rr rrs[4];
	uint32_t ttl;
};

static void
rr_cb(void *arg, int rcode, const struct resolver_rr *rrs, size_t n, uint32_t ttl)
{
	struct rr_result *res = arg;
	size_t i;

	res->calls++;
	res->rcode = rcode;
	res->n = n;
	res->ttl = ttl;
	for (i = 0; i < n && i < 4; i++)
		res->rrs[i] = rrs[i];
}

static void
wait_rr(struct rr_result *res, size_t n, int ms)
{
	uint64_t end = kb_now_ms() + (uint64_t)ms;
	size_t i;

	for (;;) {
		for (i = 0; i < n && res[i].calls; i++)
			;
		if (i == n || kb_now_ms() >= end)
			break;
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

/* Records of every kind, as the answer section has them: SRV, TXT (data in
 * hex), PTR, a CNAME chain for A and for CNAME; NXDOMAIN; NODATA; a type
 * that cannot be asked. */
static void
test_records(uint16_t port)
{
	struct rr_result res[9];
	struct kb_resolver *r;
	char server[64], err[256];

	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	if ((r = resolver_new(base, server, err, sizeof(err))) == NULL) {
		ok(0);
		return;
	}
	memset(res, 0, sizeof(res));
	resolver_lookup_rr(r, "_http._tcp.web.default.svc.cluster.local.", 33, rr_cb, &res[0]);
	resolver_lookup_rr(r, "web.default.svc.cluster.local.", 16, rr_cb, &res[1]);
	resolver_lookup_rr(r, "1.1.96.10.in-addr.arpa.", 12, rr_cb, &res[2]);
	resolver_lookup_rr(r, "ext.default.svc.cluster.local.", 1, rr_cb, &res[3]);
	resolver_lookup_rr(r, "ext.default.svc.cluster.local.", 5, rr_cb, &res[4]);
	resolver_lookup_rr(r, "nosuch.default.svc.cluster.local.", 33, rr_cb, &res[5]);
	resolver_lookup_rr(r, "web.default.svc.cluster.local.", 255, rr_cb, &res[6]);
	resolver_lookup_rr(r, "api.default.svc.cluster.local.", 1, rr_cb, &res[7]);
	resolver_lookup_rr(r, "big.default.svc.cluster.local.", 16, rr_cb, &res[8]);
	wait_rr(res, 9, 5000);
	ok(res[0].calls == 1 && res[0].rcode == 0 && res[0].n == 1 && res[0].rrs[0].type == 33 &&
	    !strcmp(res[0].rrs[0].name, "_http._tcp.web.default.svc.cluster.local") &&
	    !strcmp(res[0].rrs[0].data, "10 20 80 web.default.svc.cluster.local"));
	ok(res[1].calls == 1 && res[1].rcode == 0 && res[1].n == 1 && res[1].rrs[0].type == 16 &&
	    !strcmp(res[1].rrs[0].data, "0b68656c6c6f20776f726c64") && res[1].ttl == 30);
	ok(res[2].calls == 1 && res[2].rcode == 0 && res[2].n == 1 && res[2].rrs[0].type == 12 &&
	    !strcmp(res[2].rrs[0].data, "web.default.svc.cluster.local"));
	/* the chain, then web's two addresses */
	ok(res[3].calls == 1 && res[3].rcode == 0 && res[3].n == 3 && res[3].rrs[0].type == 5 &&
	    !strcmp(res[3].rrs[0].name, "ext.default.svc.cluster.local") &&
	    !strcmp(res[3].rrs[0].data, "web.default.svc.cluster.local") &&
	    res[3].rrs[1].type == 1 && !strcmp(res[3].rrs[1].name, "web.default.svc.cluster.local"));
	ok(res[4].calls == 1 && res[4].rcode == 0 && res[4].n == 1 && res[4].rrs[0].type == 5);
	ok(res[5].calls == 1 && res[5].rcode == 3 && res[5].n == 0 && res[5].ttl == 0);
	ok(res[6].calls == 1 && res[6].rcode == 2 && res[6].n == 0);
	ok(res[7].calls == 1 && res[7].rcode == 0 && res[7].n == 0);	/* api: AAAA only */
	/* 1265 bytes of TXT: TC in 1232 bytes of EDNS0, all of it over TCP */
	printf("# big TXT: rcode %d, %zu records\n", res[8].rcode, res[8].n);
	ok(res[8].calls == 1 && res[8].rcode == 0 && res[8].n == 5 &&
	    strlen(res[8].rrs[0].data) == 502);
	resolver_free(r);
}

/* A server that never answers: lookups end by timeout, or by resolver_free. */
static void
test_silent(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct result res[2];
	struct kb_resolver *r;
	char server[64], err[256];
	uint64_t t0;
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	ok(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sin.sin_port));

	r = resolver_new(base, server, err, sizeof(err));
	ok(r != NULL);
	memset(res, 0, sizeof(res));
	t0 = kb_now_ms();
	resolver_lookup(r, "web.default.svc.cluster.local.", 1, result_cb, &res[0]);
	wait_for(res, 1, 8000);
	ok(res[0].calls == 1 && res[0].rcode == 2);
	ok(kb_now_ms() - t0 >= 900 && kb_now_ms() - t0 < 8000);

	resolver_lookup(r, "web.default.svc.cluster.local.", 1, result_cb, &res[1]);
	wait_for(res, 0, 50);
	ok(res[1].calls == 0);
	resolver_free(r);
	ok(res[1].calls == 1 && res[1].rcode == 2);
	close(fd);
}

/* A flood against a server that never answers: at most RES_MAX_PENDING wait,
 * the rest get SERVFAIL at once; those waiting still end by their timeout. */
static void
test_flood(void)
{
	static struct result res[RES_MAX_PENDING + 100];
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct kb_resolver *r;
	char server[64], err[256];
	size_t i, now = 0, servfail = 0;
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	ok(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sin.sin_port));
	r = resolver_new(base, server, err, sizeof(err));
	ok(r != NULL);
	if (!r)
		return;
	memset(res, 0, sizeof(res));
	for (i = 0; i < RES_MAX_PENDING + 100; i++)
		resolver_lookup(r, "web.default.svc.cluster.local.", 1, result_cb, &res[i]);
	for (i = 0; i < RES_MAX_PENDING + 100; i++)
		now += res[i].calls;
	printf("# %zu of %d lookups answered at once\n", now, RES_MAX_PENDING + 100);
	ok(now == 100 && r->pending == RES_MAX_PENDING);
	wait_for(res, RES_MAX_PENDING + 100, 15000);
	for (i = 0; i < RES_MAX_PENDING + 100; i++)
		servfail += res[i].calls == 1 && res[i].rcode == 2;
	ok(servfail == RES_MAX_PENDING + 100 && r->pending == 0);
	/* below the limit again: lookups go to the server */
	memset(res, 0, sizeof(res[0]));
	resolver_lookup(r, "web.default.svc.cluster.local.", 1, result_cb, &res[0]);
	ok(res[0].calls == 0 && r->pending == 1);
	resolver_free(r);
	ok(res[0].calls == 1);
	close(fd);
}

/* The manager's own reading of the cluster DNS's answers (res_records,
 * res_negative_ttl) on answers cut short and with bytes changed, each in a
 * buffer of its exact size (ASan in unit-san sees a read past it): no
 * crash, and never more records than the answer claims. */
static void
test_answer_mutations(void)
{
	/* web.default.svc.cluster.local CNAME x.example, x.example A, an SRV,
	 * a TXT, then an SOA in the authority section */
	static const unsigned char good[] = {
	    0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x03, 0x77, 0x65,
	    0x62, 0x07, 0x64, 0x65, 0x66, 0x61, 0x75, 0x6c, 0x74, 0x03, 0x73, 0x76, 0x63, 0x07, 0x63,
	    0x6c, 0x75, 0x73, 0x74, 0x65, 0x72, 0x05, 0x6c, 0x6f, 0x63, 0x61, 0x6c, 0x00, 0x00, 0x01,
	    0x00, 0x01, 0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x0b, 0x01,
	    0x78, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x00, 0xc0, 0x3b, 0x00, 0x01, 0x00,
	    0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x04, 0x0a, 0x60, 0x01, 0x01, 0xc0, 0x0c, 0x00, 0x21,
	    0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x08, 0x00, 0x01, 0x00, 0x02, 0x00, 0x50, 0xc0,
	    0x3b, 0xc0, 0x0c, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x03, 0x02, 0x68,
	    0x69, 0xc0, 0x1c, 0x00, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x1e, 0x02, 0x6e,
	    0x73, 0xc0, 0x1c, 0x02, 0x68, 0x6d, 0xc0, 0x1c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
	    0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x07,
	};
	struct resolver_rr *rrs = calloc(KB_DNS_RECORDS_MAX, sizeof(*rrs));
	size_t len = sizeof(good), cut, i, bad = 0;
	unsigned char *m;
	unsigned seed = 1;
	int n, k;

	if (!rrs) {
		ok(0);
		return;
	}
	m = malloc(len);
	memcpy(m, good, len);
	n = res_records(m, (int)len, rrs, KB_DNS_RECORDS_MAX);
	ok(n == 4 && rrs[0].type == 5 && !strcmp(rrs[0].data, "x.example") &&
	    !strcmp(rrs[1].name, "x.example") && !strcmp(rrs[1].data, "10.96.1.1") &&
	    !strcmp(rrs[2].data, "1 2 80 x.example") && !strcmp(rrs[3].data, "026869"));
	ok(res_negative_ttl(m, (int)len) == 7);
	free(m);
	/* every shorter answer: malformed, or fewer records */
	for (cut = 0; cut < len; cut++) {
		m = malloc(cut ? cut : 1);
		memcpy(m, good, cut);
		n = res_records(m, (int)cut, rrs, KB_DNS_RECORDS_MAX);
		bad += n > 4;
		(void)res_negative_ttl(m, (int)cut);
		free(m);
	}
	/* 20,000 answers with 1-4 bytes changed */
	for (i = 0; i < 20000; i++) {
		m = malloc(len);
		memcpy(m, good, len);
		for (k = 0; k < 1 + (int)(rand_r(&seed) % 4); k++)
			m[rand_r(&seed) % len] = (unsigned char)rand_r(&seed);
		n = res_records(m, (int)len, rrs, KB_DNS_RECORDS_MAX);
		bad += n > (int)(m[6] << 8 | m[7]) || n > KB_DNS_RECORDS_MAX;
		(void)res_negative_ttl(m, (int)len);
		free(m);
	}
	ok(bad == 0);
	free(rrs);
}

/* A cluster DNS that says no with an SOA in the authority section, as
 * CoreDNS does: the first label of the name says how. "nxT-M": NXDOMAIN,
 * SOA TTL T and MINIMUM M; "ndT-M": the name without records (NODATA);
 * "badsoa": an SOA whose data is too short for its fields. */
static void
soa_server_cb(evutil_socket_t fd, short what, void *arg)
{
	unsigned char q[512], a[600], *p;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	unsigned ttl = 0, min = 0, qend;
	ssize_t n;
	char label[64];
	int rcode = 3, bad = 0;

	(void)what;
	(void)arg;
	if ((n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&ss, &sslen)) < 17 ||
	    q[12] == 0 || q[12] > 63)
		return;
	snprintf(label, sizeof(label), "%.*s", q[12], (char *)q + 13);
	for (qend = 12; qend < (unsigned)n && q[qend]; qend += q[qend] + 1)
		;
	qend += 5;
	if (qend > (unsigned)n)
		return;
	if (!strcmp(label, "badsoa"))
		bad = 1;
	else if (sscanf(label, "nx%u-%u", &ttl, &min) == 2)
		rcode = 3;
	else if (sscanf(label, "nd%u-%u", &ttl, &min) == 2)
		rcode = 0;
	memcpy(a, q, qend);
	a[2] = 0x80 | (q[2] & 0x01);		/* QR, RD as asked */
	a[3] = 0x80 | rcode;			/* RA */
	memset(a + 6, 0, 6);
	a[9] = 1;				/* NSCOUNT */
	p = a + qend;
	memcpy(p, "\xc0\x0c\x00\x06\x00\x01", 6);	/* the question's name, SOA, IN */
	p[6] = ttl >> 24, p[7] = ttl >> 16, p[8] = ttl >> 8, p[9] = ttl;
	p += 10;
	if (bad) {
		memcpy(p, "\x00\x0a\x02ns\x00\x02hm\x00\x00\x00", 12);
		p += 12;
	} else {
		memcpy(p, "\x00\x1c\x02ns\x00\x02hm\x00", 10);	/* 28 bytes */
		memset(p + 10, 0, 16);
		p[26] = min >> 24, p[27] = min >> 16, p[28] = min >> 8, p[29] = min;
		p += 30;
	}
	sendto(fd, a, (size_t)(p - a), 0, (struct sockaddr *)&ss, sslen);
}

/* Negative answers carry the TTL they may be kept for: the smaller of the
 * SOA's TTL and MINIMUM (RFC 2308), 0 when the SOA cannot be read. */
static void
test_negative_ttl(void)
{
	static const struct {
		const char *name;
		int rcode;
		uint32_t ttl;
	} t[] = {
		{ "nx60-7.default.svc.cluster.local.", 3, 7 },
		{ "nx3-20.default.svc.cluster.local.", 3, 3 },
		{ "nd30-30.default.svc.cluster.local.", 0, 30 },
		{ "nx4294967295-9.default.svc.cluster.local.", 3, 0 },
		{ "badsoa.default.svc.cluster.local.", 3, 0 },
	};
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct result res[5];
	struct kb_resolver *r;
	struct event *ev;
	char server[64], err[256];
	size_t i;
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	ok(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	ev = event_new(base, fd, EV_READ | EV_PERSIST, soa_server_cb, NULL);
	event_add(ev, NULL);
	snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sin.sin_port));
	r = resolver_new(base, server, err, sizeof(err));
	ok(r != NULL);
	if (r) {
		memset(res, 0, sizeof(res));
		for (i = 0; i < 5; i++)
			resolver_lookup(r, t[i].name, 1, result_cb, &res[i]);
		wait_for(res, 5, 5000);
		for (i = 0; i < 5; i++) {
			if (res[i].rcode != t[i].rcode || res[i].ttl != t[i].ttl)
				printf("# %s: rcode %d ttl %u\n", t[i].name, res[i].rcode,
				    res[i].ttl);
			ok(res[i].calls == 1 && res[i].rcode == t[i].rcode &&
			    res[i].naddrs == 0 && res[i].ttl == t[i].ttl);
		}
		resolver_free(r);
	}
	event_free(ev);
	close(fd);
}

/* Lines of the query log at path that name a query ("query[A] NAME from"). */
static int
log_queries(const char *path, char *last, size_t lastlen)
{
	char line[512], *p, *e;
	FILE *f;
	int n = 0;

	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if ((p = strstr(line, "query[")) != NULL && (p = strchr(p, ' ')) != NULL) {
			n++;
			if ((e = strchr(++p, ' ')) != NULL)
				*e = '\0';
			snprintf(last, lastlen, "%s", p);
		}
	fclose(f);
	return n;
}

/* A cluster DNS server that answers REFUSED for names it does not have
 * (dnsmasq with no upstream and no local zone): the search list's first
 * expansion ends a search with an error, while an absolute name (with its
 * final dot, as the daemon sends every cluster name) costs one query and
 * finds the name. */
static void
test_refused(void)
{
	char server[64], err[256], logpath[128], last[256] = "";
	const char *opts[] = { "--host-record=web.default.svc.cluster.local,10.96.1.1",
		"--log-queries", NULL };
	struct result res[3];
	struct kb_resolver *r;
	uint16_t port = free_port();
	int before;

	snprintf(logpath, sizeof(logpath), "%s/queries.log", tmpdir);
	dnsmasq_log = logpath;
	ok(port != 0 && dnsmasq_start(port, tmpdir, opts, "web.default.svc.cluster.local") == 0);
	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	if ((r = resolver_new(base, server, err, sizeof(err))) == NULL) {
		ok(0);
		return;
	}
	memset(res, 0, sizeof(res));
	before = log_queries(logpath, last, sizeof(last));
	ok(before >= 1);	/* dnsmasq_start's probe */
	resolver_lookup(r, "web.default.svc.cluster.local.", 1, result_cb, &res[0]);
	wait_for(res, 1, 5000);
	ok(res[0].calls == 1 && res[0].rcode == 0 && res[0].naddrs == 1 &&
	    !strcmp(res[0].addrs[0], "10.96.1.1"));
	ok(log_queries(logpath, last, sizeof(last)) == before + 1 &&
	    !strcmp(last, "web.default.svc.cluster.local"));
	resolver_lookup(r, "nosuch.default.svc.cluster.local.", 1, result_cb, &res[1]);
	wait_for(res + 1, 1, 5000);
	ok(res[1].calls == 1 && res[1].rcode == 2);
	ok(log_queries(logpath, last, sizeof(last)) == before + 2);
	/* What the search list costs there: the first expansion is refused. */
	resolver_lookup(r, "web.default.svc.cluster.local", 1, result_cb, &res[2]);
	wait_for(res + 2, 1, 5000);
	ok(res[2].calls == 1 && res[2].rcode == 2);
	ok(log_queries(logpath, last, sizeof(last)) == before + 3 &&
	    !strcmp(last, "web.default.svc.cluster.local.kbridge.svc.cluster.local"));
	resolver_free(r);
	dnsmasq_stop(tmpdir);
	dnsmasq_log = "/dev/null";
	unlink(logpath);
}

#define X50 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define BIG_TXT "--txt-record=big.default.svc.cluster.local," X50 X50 X50 X50 X50

int
main(void)
{
	struct kb_resolver *r;
	char err[256];
	uint16_t port;

	log_init("test_resolver", getenv("KB_DEBUG") ? KB_LOG_DEBUG : KB_LOG_WARN);
	/* The cluster's search list, as the playground's resolv.conf has it;
	 * c-ares reads these before /etc/resolv.conf. */
	setenv("LOCALDOMAIN", "kbridge.svc.cluster.local svc.cluster.local cluster.local", 1);
	setenv("RES_OPTIONS", "ndots:5", 1);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kbtdns%ld.XXXXXX", (long)getpid());
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	base = event_base_new();

	r = resolver_new(base, "not an address", err, sizeof(err));
	ok(r == NULL && err[0] != '\0');
	r = resolver_new(base, NULL, err, sizeof(err));
	ok(r != NULL);
	resolver_free(r);

	port = free_port();
	ok(port != 0);
	if (access("/usr/sbin/dnsmasq", X_OK) < 0) {
		skip_or_fail_tool("/usr/sbin/dnsmasq missing: the lookups did not run");
	} else {
		static const char *const cluster[] = {
			"--host-record=web.default.svc.cluster.local,10.96.1.1",
			"--host-record=web.default.svc.cluster.local,10.96.1.2",
			"--host-record=api.default.svc.cluster.local,fd00::1",
			"--local=/cluster.local/", "--local=/#/",
			"--srv-host=_http._tcp.web.default.svc.cluster.local,"
			"web.default.svc.cluster.local,80,10,20",
			"--txt-record=web.default.svc.cluster.local,hello world",
			"--cname=ext.default.svc.cluster.local,web.default.svc.cluster.local",
			"--ptr-record=1.1.96.10.in-addr.arpa,web.default.svc.cluster.local",
			/* 5 TXT records of 250 bytes: more than 1232, TC over UDP */
			BIG_TXT, BIG_TXT, BIG_TXT, BIG_TXT, BIG_TXT,
			NULL };
		ok(dnsmasq_start(port, tmpdir, cluster, "web.default.svc.cluster.local") == 0);
		test_lookups(port);
		test_records(port);
		dnsmasq_stop(tmpdir);
		test_refused();
	}
	test_negative_ttl();
	test_answer_mutations();
	test_silent();
	test_flood();
	event_base_free(base);
	cleanup();
	return ok_done();
}
