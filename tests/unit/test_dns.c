/* The DNS proxy: classification, answers we build, malformed input,
 * resolv.conf parsing, the cache, and the proxy end to end against a real
 * dnsmasq on loopback. */
#include "../../daemon/dns.c"
#include "../../daemon/dnsmsg.c"
#include "../../daemon/dnscache.c"
#include "../../daemon/dnsname.c"
#include "../../daemon/resolvconf.c"

#include <sys/prctl.h>
#include <sys/wait.h>

#include <arpa/nameser.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>

#include "dnsmasq.h"
#include "ok.h"

/* dns.c is linked alone: the firewall is not under test. */
int
fw_mark_socket(int fd)
{
	(void)fd;
	return 0;
}

static char tmpdir[64];
static struct event_base *base;

static void
cleanup(void)
{
	char path[128];

	if (tmpdir[0]) {
		dnsmasq_stop(tmpdir);
		snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/retry.conf", tmpdir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/none.conf", tmpdir);
		unlink(path);
		rmdir(tmpdir);
		tmpdir[0] = '\0';
	}
}

static size_t
make_query(unsigned char *buf, const char *name, int qtype, uint16_t id)
{
	unsigned char *q;
	int len;

	if (ares_create_query(name, C_IN, qtype, id, 1, &q, &len, 0) != ARES_SUCCESS)
		return 0;
	memcpy(buf, q, (size_t)len);
	ares_free_string(q);
	return (size_t)len;
}

/* The fake manager: answers asynchronously, like a session would. */
struct fake {
	struct fake *next;
	struct event *ev;
	dns_done_fn done;
	void *ctx;
	char name[256];
	int qtype;
	int fired;
};

static struct fake *fakes;
static int hook_calls;
static char last_name[256];

static void
fake_answer(struct fake *f)
{
	const char *web[] = { "10.96.1.1" }, *sync[] = { "10.96.1.2" };

	f->fired = 1;
	if (!strcmp(f->name, "web.default.svc.cluster.local")) {
		if (f->qtype == T_A)
			f->done(f->ctx, 0, web, 1, 30);
		else
			f->done(f->ctx, 0, NULL, 0, 30);
	} else if (!strcmp(f->name, "sync.default.svc.cluster.local")) {
		f->done(f->ctx, 0, sync, 1, 30);
	} else if (!strcmp(f->name, "neg.default.svc.cluster.local")) {
		f->done(f->ctx, 3, NULL, 0, 7);	/* the SOA minimum: keep it 7 s */
	} else {
		f->done(f->ctx, 3, NULL, 0, 0);	/* no SOA: not to be kept */
	}
}

static void
fake_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fake_answer(arg);
}

static int
fake_resolve(void *arg, const char *name, int qtype, dns_done_fn done, void *ctx)
{
	struct timeval tv = { 0, 10 * 1000 };
	struct fake *f;

	(void)arg;
	hook_calls++;
	snprintf(last_name, sizeof(last_name), "%s", name);
	if (!strcmp(name, "fail.default.svc.cluster.local"))
		return -1;
	f = calloc(1, sizeof(*f));
	f->done = done;
	f->ctx = ctx;
	f->qtype = qtype;
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->next = fakes;
	fakes = f;
	if (!strcmp(name, "sync.default.svc.cluster.local")) {
		fake_answer(f);
		return 0;
	}
	if (!strcmp(name, "late.default.svc.cluster.local"))
		tv.tv_usec = 300 * 1000;
	f->ev = evtimer_new(base, fake_timer, f);
	evtimer_add(f->ev, &tv);
	return 0;
}

static void
fakes_free(void)
{
	struct fake *f;

	while ((f = fakes) != NULL) {
		fakes = f->next;
		if (f->ev)
			event_free(f->ev);
		free(f);
	}
}

/* A client socket whose answers arrive through the event loop. */
struct client {
	int fd, tcp;
	struct event *ev;
	unsigned char buf[8192];
	size_t len;
	int nmsg;
};

static void
client_read(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	ssize_t n;

	(void)what;
	n = recv(fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n <= 0)
		return;
	if (!c->tcp) {
		c->len = (size_t)n;
		c->nmsg = 1;
	} else {
		c->len += (size_t)n;
	}
}

static int
client_open(struct client *c, int tcp, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	memset(c, 0, sizeof(*c));
	c->tcp = tcp;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if ((c->fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0)) < 0)
		return -1;
	/* The listener is ours, so connect completes through the backlog. */
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		return -1;
	evutil_make_socket_nonblocking(c->fd);
	c->ev = event_new(base, c->fd, EV_READ | EV_PERSIST, client_read, c);
	return event_add(c->ev, NULL);
}

static void
client_close(struct client *c)
{
	event_free(c->ev);
	close(c->fd);
}

static int
client_send(struct client *c, const unsigned char *msg, size_t len)
{
	unsigned char l[2];

	if (c->tcp) {
		dns_put16(l, (uint16_t)len);
		if (send(c->fd, l, 2, MSG_MORE) != 2)
			return -1;
	}
	return send(c->fd, msg, len, 0) == (ssize_t)len ? 0 : -1;
}

/* TCP: the number of complete messages buffered. */
static int
client_tcp_count(const struct client *c)
{
	size_t off = 0;
	int n = 0;

	while (off + 2 <= c->len && off + 2 + dns_get16(c->buf + off) <= c->len) {
		off += 2 + dns_get16(c->buf + off);
		n++;
	}
	return n;
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
	event_base_loopbreak(base);
}

/* Run the loop for ms, or until the client (if any) has want messages. A timer of
 * our own, not loopexit, whose leftovers would end later runs early. */
static int
client_wait(struct client *c, int want, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *ev;
	int expired = 0;

	ev = evtimer_new(base, deadline_cb, &expired);
	evtimer_add(ev, &tv);
	while (!expired && (!c || (c->tcp ? client_tcp_count(c) : c->nmsg) < want))
		event_base_loop(base, EVLOOP_ONCE);
	event_free(ev);
	return c && (c->tcp ? client_tcp_count(c) : c->nmsg) >= want;
}

static void
run_for(int ms)
{
	client_wait(NULL, 0, ms);
}

/* The TCP message with this id, or NULL. */
static const unsigned char *
tcp_find(const struct client *c, uint16_t id, size_t *len)
{
	size_t off = 0;

	while (off + 2 <= c->len && off + 2 + dns_get16(c->buf + off) <= c->len) {
		if (dns_get16(c->buf + off) >= 2 && dns_get16(c->buf + off + 2) == id) {
			*len = dns_get16(c->buf + off);
			return c->buf + off + 2;
		}
		off += 2 + dns_get16(c->buf + off);
	}
	return NULL;
}

static int
rcode_of(const unsigned char *m)
{
	return m[3] & 0x0f;
}

/* The first A address of an answer as text, or "" */
static const char *
first_a(const unsigned char *m, size_t len, int *ttl)
{
	static char text[INET_ADDRSTRLEN];
	struct ares_addrttl a[8];
	int n = 8;

	text[0] = '\0';
	if (ares_parse_a_reply(m, (int)len, NULL, a, &n) == ARES_SUCCESS && n > 0) {
		inet_ntop(AF_INET, &a[0].ipaddr, text, sizeof(text));
		if (ttl)
			*ttl = a[0].ttl;
	}
	return text;
}

/* One UDP query through the proxy; returns the answer length (0 = none). */
static size_t
udp_ask(uint16_t port, const char *name, int qtype, uint16_t id, unsigned char *out)
{
	struct client c;
	unsigned char q[512];
	size_t qlen = make_query(q, name, qtype, id), n = 0;

	if (client_open(&c, 0, port) < 0 || client_send(&c, q, qlen) < 0)
		return 0;
	if (client_wait(&c, 1, 5000)) {
		memcpy(out, c.buf, c.len);
		n = c.len;
	}
	client_close(&c);
	return n;
}

static void
test_classify(void)
{
	const char *ns[] = { "default", "shop", "KBridge" };
	struct {
		const char *name;
		int cluster;
		const char *asked;
		int single;
	} t[] = {
		{ "web.default", 1, "web.default.svc.cluster.local", 0 },
		{ "web.default.svc", 1, "web.default.svc.cluster.local", 0 },
		{ "web.default.svc.cluster.local", 1, "web.default.svc.cluster.local", 0 },
		{ "cart.shop", 1, "cart.shop.svc.cluster.local", 0 },
		{ "x.kbridge.svc", 1, "x.kbridge.svc.cluster.local", 0 },
		{ "_http._tcp.web.default", 0, NULL, 0 },
		{ "_http._tcp.web.default.svc.cluster.local", 1,
		  "_http._tcp.web.default.svc.cluster.local", 0 },
		{ "cluster.local", 1, "cluster.local", 0 },
		{ "anything.cluster.local", 1, "anything.cluster.local", 0 },
		{ "web", 1, "web.default.svc.cluster.local", 1 },
		{ "localhost", 0, NULL, 0 },
		{ "example.com", 0, NULL, 0 },
		{ "web.unknown", 0, NULL, 0 },
		{ "web.unknown.svc", 0, NULL, 0 },
		{ "a.web.default", 0, NULL, 0 },
		{ "web.default.svc.example", 0, NULL, 0 },
		{ "notcluster.local", 0, NULL, 0 },
		{ "default.svc", 0, NULL, 0 },
		{ ".svc", 0, NULL, 0 },
		{ "a\\.b", 0, NULL, 0 },
		{ "", 0, NULL, 0 },
	};
	struct kb_dns *d = calloc(1, sizeof(*d));
	struct dns_question q;
	unsigned char buf[512];
	char out[DNS_NAME_MAX], long_name[300];
	size_t i, len;
	int single, good, c;

	ok(!dns_zone_classify(&d->zone, "web.default", out, sizeof(out), &single));
	dns_set_cluster(d, "Cluster.Local.", ns, 3, "default");
	ok(!dns_zone_classify(&d->zone, "web.default", out, 4, &single));
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		c = dns_zone_classify(&d->zone, t[i].name, out, sizeof(out), &single);
		good = c == t[i].cluster && (!c || (!strcmp(out, t[i].asked) && single == t[i].single));
		if (!good)
			printf("# classify '%s': %d '%s'\n", t[i].name, c, c ? out : "");
		ok(good);
	}

	/* Case and final dot are normalized by the parser. */
	len = make_query(buf, "WEB.Default.SVC.Cluster.Local.", T_A, 7);
	ok(dns_parse_query(buf, len, &q) == 0);
	ok(!strcmp(q.name, "web.default.svc.cluster.local"));
	ok(q.qtype == T_A && q.qclass == C_IN && q.id == 7 && q.qend == len);
	ok(dns_zone_classify(&d->zone, q.name, out, sizeof(out), &single) && !strcmp(out, q.name));
	len = make_query(buf, "Web.", T_AAAA, 8);
	ok(dns_parse_query(buf, len, &q) == 0 && !strcmp(q.name, "web"));
	ok(dns_zone_classify(&d->zone, q.name, out, sizeof(out), &single) && single &&
	    !strcmp(out, "web.default.svc.cluster.local"));
	/* The absolute name must stay a DNS name: 253 characters at most.
	 * A domain of three labels of 63 and one of k: 192 + k characters;
	 * web.default.svc.DOMAIN: 208 + k. */
	for (i = 45; i <= 46; i++) {
		memset(long_name, 'a', 192 + i);
		long_name[63] = long_name[127] = long_name[191] = '.';
		long_name[192 + i] = '\0';
		dns_set_cluster(d, long_name, ns, 3, "default");
		c = dns_zone_classify(&d->zone, "web.default", out, sizeof(out), &single);
		ok(i == 45 ? c && strlen(out) == 253 : !c);
		ok(dns_zone_classify(&d->zone, "web", out, sizeof(out), &single) == (i == 45));
	}

	/* Without a connected namespace single labels stay local. */
	dns_set_cluster(d, "cluster.local", ns, 3, NULL);
	ok(!dns_zone_classify(&d->zone, "web", out, sizeof(out), &single));
	dns_set_cluster(d, NULL, NULL, 0, NULL);
	ok(!dns_zone_classify(&d->zone, "web.default.svc.cluster.local", out, sizeof(out), &single));
	free(d);
}

static void
test_build(void)
{
	const char *v4[] = { "10.96.1.1", "10.96.1.2", "bogus" }, *v6[] = { "fd00::1" };
	const char *many[64];
	struct ares_addrttl a[64];
	struct ares_addr6ttl a6[4];
	struct dns_question q;
	unsigned char query[512], out[DNS_MSG_MAX];
	char text[INET6_ADDRSTRLEN];
	size_t qlen, n;
	int na, i;

	qlen = make_query(query, "Web.Default", T_A, 0x1234);
	ok(dns_parse_query(query, qlen, &q) == 0);
	n = dns_build_answer(out, DNS_UDP_ANSWER_MAX, query, q.qend, 0, T_A, v4, 3, 30);
	ok(dns_get16(out) == 0x1234);
	ok(out[2] == 0x81 && out[3] == 0x80);	/* QR, RD copied, RA, NOERROR */
	ok(dns_get16(out + 4) == 1 && dns_get16(out + 6) == 2 && dns_get16(out + 8) == 0 &&
	    dns_get16(out + 10) == 0);
	ok(!memcmp(out + DNS_HDR, query + DNS_HDR, q.qend - DNS_HDR));
	na = 8;
	ok(ares_parse_a_reply(out, (int)n, NULL, a, &na) == ARES_SUCCESS && na == 2);
	inet_ntop(AF_INET, &a[0].ipaddr, text, sizeof(text));
	ok(!strcmp(text, "10.96.1.1") && a[0].ttl == 30);
	inet_ntop(AF_INET, &a[1].ipaddr, text, sizeof(text));
	ok(!strcmp(text, "10.96.1.2") && a[1].ttl == 30);

	qlen = make_query(query, "web.default", T_AAAA, 0x4321);
	ok(dns_parse_query(query, qlen, &q) == 0);
	n = dns_build_answer(out, DNS_UDP_ANSWER_MAX, query, q.qend, 0, T_AAAA, v6, 1, 7);
	na = 4;
	ok(ares_parse_aaaa_reply(out, (int)n, NULL, a6, &na) == ARES_SUCCESS && na == 1);
	inet_ntop(AF_INET6, &a6[0].ip6addr, text, sizeof(text));
	ok(!strcmp(text, "fd00::1") && a6[0].ttl == 7);

	n = dns_build_answer(out, DNS_UDP_ANSWER_MAX, query, q.qend, DNS_NXDOMAIN, T_AAAA, v6, 1, 7);
	ok(n == q.qend && rcode_of(out) == DNS_NXDOMAIN && dns_get16(out + 6) == 0);
	na = 4;
	ok(ares_parse_aaaa_reply(out, (int)n, NULL, a6, &na) == ARES_ENODATA);

	/* Too many for 512 bytes: what fits, and TC so the client retries over TCP. */
	for (i = 0; i < 64; i++)
		many[i] = "192.0.2.1";
	qlen = make_query(query, "web.default", T_A, 1);
	ok(dns_parse_query(query, qlen, &q) == 0);
	n = dns_build_answer(out, DNS_UDP_ANSWER_MAX, query, q.qend, 0, T_A, many, 64, 1);
	ok(n <= DNS_UDP_ANSWER_MAX && (out[2] & 0x02) && dns_get16(out + 6) > 10 &&
	    dns_get16(out + 6) < 64);
	n = dns_build_answer(out, DNS_MSG_MAX, query, q.qend, 0, T_A, many, 64, 1);
	ok(!(out[2] & 0x02) && dns_get16(out + 6) == 64);
	na = 64;
	ok(ares_parse_a_reply(out, (int)n, NULL, a, &na) == ARES_SUCCESS && na == 64);

	/* Question comparison ignores case but not type. */
	qlen = make_query(out, "WEB.default", T_A, 2);
	ok(dns_same_question(out, qlen, query, q.qend));
	qlen = make_query(out, "web.default", T_AAAA, 2);
	ok(!dns_same_question(out, qlen, query, q.qend));
	qlen = make_query(out, "web.defaulx", T_A, 2);
	ok(!dns_same_question(out, qlen, query, q.qend));
}

static void
test_malformed(void)
{
	struct dns_question q;
	unsigned char query[512], bad[600];
	size_t qlen, i, good;
	int r, crashed = 0;

	qlen = make_query(query, "web.default", T_A, 9);
	for (i = 0; i < qlen; i++) {
		r = dns_parse_query(query, i, &q);
		if (i < DNS_HDR ? r != -1 : r != DNS_FORMERR)
			crashed++;
	}
	ok(crashed == 0);
	memcpy(bad, query, qlen);
	bad[2] |= 0x80;
	ok(dns_parse_query(bad, qlen, &q) == -1);	/* a response */
	memcpy(bad, query, qlen);
	dns_put16(bad + 4, 2);
	ok(dns_parse_query(bad, qlen, &q) == DNS_FORMERR);
	dns_put16(bad + 4, 0);
	ok(dns_parse_query(bad, qlen, &q) == DNS_FORMERR);
	memcpy(bad, query, qlen);
	bad[2] |= 0x10;	/* opcode 2 */
	ok(dns_parse_query(bad, qlen, &q) == DNS_NOTIMP);
	/* A compression pointer in the question. */
	memcpy(bad, query, DNS_HDR);
	bad[DNS_HDR] = 0xc0;
	bad[DNS_HDR + 1] = 0x0c;
	memset(bad + DNS_HDR + 2, 0, 4);
	ok(dns_parse_query(bad, DNS_HDR + 6, &q) == DNS_FORMERR);
	/* A label running past the end, and a name longer than 255. */
	memcpy(bad, query, qlen);
	bad[DNS_HDR] = 63;
	ok(dns_parse_query(bad, qlen, &q) == DNS_FORMERR);
	memcpy(bad, query, DNS_HDR);
	for (i = 0; i < 5; i++) {
		bad[DNS_HDR + i * 60] = 59;
		memset(bad + DNS_HDR + i * 60 + 1, 'a', 59);
	}
	bad[DNS_HDR + 300] = 0;
	memset(bad + DNS_HDR + 301, 0, 4);
	bad[DNS_HDR + 302] = 1;
	bad[DNS_HDR + 304] = 1;
	ok(dns_parse_query(bad, DNS_HDR + 305, &q) == DNS_FORMERR);
	/* Random bytes never crash the parser, and it says one of its four
	 * things: a question (NUL-terminated, lower case, inside the input),
	 * drop, FORMERR or NOTIMP. */
	srand(1);
	for (i = 0, good = 0; i < 20000; i++) {
		size_t j, n = (size_t)(rand() % 80);

		for (j = 0; j < n; j++)
			bad[j] = (unsigned char)rand();
		if (n > 5 && (i & 1)) {
			bad[2] &= 0x07;
			bad[4] = 0;
			bad[5] = 1;
		}
		memset(&q, 0x55, sizeof(q));
		r = dns_parse_query(bad, n, &q);
		if (r == 0 && memchr(q.name, '\0', sizeof(q.name)) != NULL && q.qend <= n &&
		    q.qend >= DNS_HDR + 5 && strpbrk(q.name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == NULL)
			good++;
		else if (r == -1 || r == DNS_FORMERR || r == DNS_NOTIMP)
			good++;
	}
	ok(good == 20000);
}

static void
count_bad(void *arg, const char *word)
{
	ok(!strcmp(word, "bogus"));
	(*(int *)arg)++;
}

static void
test_upstreams_parse(void)
{
	char path[128];
	const char *conf = "# comment\nsearch example.com\nnameserver 10.0.0.1\n"
	    "nameserver\tfe80::1%eth0\n  nameserver 10.0.0.2 \nnameserver bogus\noptions ndots:5\n";
	char text[512], many[1024];
	struct kb_dns *d = calloc(1, sizeof(*d));
	struct dns_upstreams u;
	const struct sockaddr_in *s4 = (const void *)&u.up[0].ss;
	const struct sockaddr_in6 *s6 = (const void *)&u.up[1].ss;
	const uint32_t *addrs;
	size_t i, n;
	int bad = 0;

	/* The pure parser. */
	snprintf(text, sizeof(text), "%s", conf);
	ok(resolv_parse(text, &u, count_bad, &bad) == 3 && bad == 1);
	ok(u.nv4 == 2 && u.v4[0] == 0x0a000001 && u.v4[1] == 0x0a000002);
	ok(s4->sin_family == AF_INET && ntohs(s4->sin_port) == 53 && u.up[0].len == sizeof(*s4));
	ok(s6->sin6_family == AF_INET6 && ntohs(s6->sin6_port) == 53 && u.up[1].len == sizeof(*s6));
	ok(u.up[2].ss.ss_family == AF_INET);
	resolv_set_port(&u, 5353);
	ok(ntohs(s4->sin_port) == 5353 && ntohs(s6->sin6_port) == 5353);
	/* At most DNS_MAX_UPSTREAMS; nothing at all is no error. */
	for (i = 0, n = 0; i < DNS_MAX_UPSTREAMS + 3; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "nameserver 10.1.0.%zu\n", i + 1);
	ok(resolv_parse(many, &u, NULL, NULL) == DNS_MAX_UPSTREAMS && u.nv4 == DNS_MAX_UPSTREAMS &&
	    u.v4[DNS_MAX_UPSTREAMS - 1] == 0x0a010000 + DNS_MAX_UPSTREAMS);
	snprintf(text, sizeof(text), "nameserver\n\nnameservers 10.0.0.9\n");
	ok(resolv_parse(text, &u, NULL, NULL) == 0 && u.nv4 == 0);

	/* Through the proxy's file reader. */
	snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
	ok(kb_write_file(path, conf, strlen(conf), 0644) == 0);
	dns_read_upstreams(d, path);
	n = dns_upstreams(d, &addrs);
	ok(d->ups.n == 3);
	ok(n == 2 && addrs[0] == 0x0a000001 && addrs[1] == 0x0a000002);
	ok(d->ups.up[1].ss.ss_family == AF_INET6);
	free(d);
}

static void
test_cache(void)
{
	static const char *const two[] = { "10.96.1.1", "10.96.1.2" };
	static const char *const nine[] = { "1", "2", "3", "4", "5", "6", "7", "8", "9" };
	char longaddr[DNS_CACHE_ADDR_LEN + 1];
	struct dns_cache *c = dns_cache_new();
	const char *addrs[DNS_CACHE_ADDRS];
	size_t naddrs = 0;
	uint32_t ttl = 0;

	ok(c != NULL);
	/* Empty: nothing known, nothing allocated yet. */
	ok(dns_cache_get(c, "web.default", DNS_T_A, 1000, addrs, &naddrs, &ttl) < 0);
	ok(!dns_cache_knows(c, "web.default", 1000));
	dns_cache_clear(c);

	dns_cache_put(c, "web.default", DNS_T_A, two, 2, 10, 1000);
	ok(dns_cache_get(c, "web.default", DNS_T_A, 1000, addrs, &naddrs, &ttl) == 0 &&
	    naddrs == 2 && !strcmp(addrs[0], "10.96.1.1") && !strcmp(addrs[1], "10.96.1.2") &&
	    ttl == 10);
	/* The remaining TTL, rounded up; gone once it is over. */
	ok(dns_cache_get(c, "web.default", DNS_T_A, 5500, addrs, &naddrs, &ttl) == 0 && ttl == 6);
	ok(dns_cache_get(c, "web.default", DNS_T_A, 11000, addrs, &naddrs, &ttl) < 0);
	ok(dns_cache_knows(c, "web.default", 10999) && !dns_cache_knows(c, "web.default", 11000));
	/* Another type or name is not this answer. */
	ok(dns_cache_get(c, "web.default", DNS_T_AAAA, 1000, addrs, &naddrs, &ttl) < 0);
	ok(dns_cache_get(c, "web.other", DNS_T_A, 1000, addrs, &naddrs, &ttl) < 0);
	ok(!dns_cache_knows(c, "web", 1000));
	/* An AAAA answer makes the name known too. */
	dns_cache_put(c, "v6.default", DNS_T_AAAA, (const char *const[]){ "fd00::1" }, 1, 5, 0);
	ok(dns_cache_knows(c, "v6.default", 0));

	/* At most DNS_CACHE_TTL_MAX seconds. */
	dns_cache_put(c, "long.default", DNS_T_A, two, 1, 3600, 0);
	ok(dns_cache_get(c, "long.default", DNS_T_A, 0, addrs, &naddrs, &ttl) == 0 &&
	    ttl == DNS_CACHE_TTL_MAX && naddrs == 1);

	/* Not kept: TTL 0, no address, too many, an address too long. */
	dns_cache_put(c, "a.default", DNS_T_A, two, 2, 0, 0);
	dns_cache_put(c, "b.default", DNS_T_A, two, 0, 10, 0);
	dns_cache_put(c, "c.default", DNS_T_A, nine, 9, 10, 0);
	memset(longaddr, '1', sizeof(longaddr) - 1);
	longaddr[sizeof(longaddr) - 1] = '\0';
	dns_cache_put(c, "d.default", DNS_T_A, (const char *const[]){ longaddr }, 1, 10, 0);
	ok(!dns_cache_knows(c, "a.default", 0) && !dns_cache_knows(c, "b.default", 0) &&
	    !dns_cache_knows(c, "c.default", 0) && !dns_cache_knows(c, "d.default", 0));

	/* Negative answers: kept for their TTL, no address, never "known". */
	dns_cache_put_negative(c, "nx.default", DNS_T_A, DNS_NXDOMAIN, 7, 1000);
	ok(dns_cache_get(c, "nx.default", DNS_T_A, 1000, addrs, &naddrs, &ttl) == DNS_NXDOMAIN &&
	    naddrs == 0 && ttl == 7);
	ok(dns_cache_get(c, "nx.default", DNS_T_A, 7999, addrs, &naddrs, &ttl) == DNS_NXDOMAIN &&
	    ttl == 1);
	ok(dns_cache_get(c, "nx.default", DNS_T_A, 8000, addrs, &naddrs, &ttl) < 0);
	ok(dns_cache_get(c, "nx.default", DNS_T_AAAA, 1000, addrs, &naddrs, &ttl) < 0);
	ok(!dns_cache_knows(c, "nx.default", 1000));
	dns_cache_put_negative(c, "nodata.default", DNS_T_AAAA, 0, 5, 0);
	ok(dns_cache_get(c, "nodata.default", DNS_T_AAAA, 0, addrs, &naddrs, &ttl) == 0 &&
	    naddrs == 0 && ttl == 5 && !dns_cache_knows(c, "nodata.default", 0));
	/* At most DNS_CACHE_NEG_TTL_MAX; not kept: TTL 0 (no SOA), SERVFAIL. */
	dns_cache_put_negative(c, "nx.default", DNS_T_A, DNS_NXDOMAIN, 86400, 0);
	ok(dns_cache_get(c, "nx.default", DNS_T_A, 0, addrs, &naddrs, &ttl) == DNS_NXDOMAIN &&
	    ttl == DNS_CACHE_NEG_TTL_MAX);
	dns_cache_put_negative(c, "e.default", DNS_T_A, DNS_NXDOMAIN, 0, 0);
	dns_cache_put_negative(c, "f.default", DNS_T_A, DNS_SERVFAIL, 10, 0);
	ok(dns_cache_get(c, "e.default", DNS_T_A, 0, addrs, &naddrs, &ttl) < 0 &&
	    dns_cache_get(c, "f.default", DNS_T_A, 0, addrs, &naddrs, &ttl) < 0);
	/* The name appears: its addresses replace the negative answer. */
	dns_cache_put(c, "nx.default", DNS_T_A, two, 1, 10, 1000);
	ok(dns_cache_get(c, "nx.default", DNS_T_A, 1000, addrs, &naddrs, &ttl) == 0 &&
	    naddrs == 1 && dns_cache_knows(c, "nx.default", 1000));

	/* Clear forgets everything. */
	dns_cache_clear(c);
	ok(!dns_cache_knows(c, "long.default", 0) && !dns_cache_knows(c, "v6.default", 0));
	dns_cache_free(c);
	dns_cache_free(NULL);
}

/* Nothing holds 127.0.0.1:port, UDP or a TCP listener. */
static int
port_free(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0), one = 1, res;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* (SO_REUSEADDR: a connection in TIME_WAIT is no listener) */
	setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	res = port != 0 && bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0 && listen(t, 1) == 0;
	close(u);
	close(t);
	return res;
}

static void
test_proxy(uint16_t upport)
{
	const char *ns[] = { "default", "shop" };
	struct kb_dns_hooks hooks = { .resolve = fake_resolve };
	unsigned char q[512], a[4096];
	const unsigned char *m;
	struct client c;
	struct kb_dns *d, *d2;
	char path[128], err[256];
	const uint32_t *addrs;
	size_t n, qlen;
	uint64_t t0;
	uint16_t port;
	int ttl = 0;

	snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
	ok(kb_write_file(path, "nameserver 127.0.0.1\n", 21, 0644) == 0);
	d = dns_new(base, &hooks, path, 0, err, sizeof(err));
	ok(d != NULL);
	if (!d) {
		printf("# dns_new: %s\n", err);
		return;
	}
	dns_set_upstream_port(d, upport);
	ok(dns_port(d) != 0);
	ok(dns_upstreams(d, &addrs) == 1 && addrs[0] == 0x7f000001);

	/* Before the cluster is known, nothing goes to the manager. */
	n = udp_ask(dns_port(d), "web.default", T_A, 0x0101, a);
	ok(n > 0 && dns_get16(a) == 0x0101 && hook_calls == 0);

	dns_set_cluster(d, "cluster.local", ns, 2, "default");

	n = udp_ask(dns_port(d), "web.default", T_A, 0x1111, a);
	ok(n > 0 && dns_get16(a) == 0x1111 && rcode_of(a) == 0);
	ok(!strcmp(first_a(a, n, &ttl), "10.96.1.1") && ttl == 30);
	/* NAME.NS is asked as the absolute name: one query in the cluster. */
	ok(hook_calls == 1 && !strcmp(last_name, "web.default.svc.cluster.local"));
	/* Asked again: answered from the cache, with the remaining TTL. */
	n = udp_ask(dns_port(d), "web.default", T_A, 0x1113, a);
	ok(n > 0 && dns_get16(a) == 0x1113 && rcode_of(a) == 0 && hook_calls == 1);
	ok(!strcmp(first_a(a, n, &ttl), "10.96.1.1") && ttl >= 1 && ttl <= 30);

	/* The same name typed in full: the same answer, from the cache. */
	n = udp_ask(dns_port(d), "WEB.Default.svc.Cluster.Local.", T_A, 0x1112, a);
	ok(n > 0 && hook_calls == 1);
	ok(!strcmp(first_a(a, n, NULL), "10.96.1.1"));
	qlen = make_query(q, "WEB.Default.svc.Cluster.Local.", T_A, 0x1112);
	ok(n >= qlen && !memcmp(a + DNS_HDR, q + DNS_HDR, qlen - DNS_HDR));

	n = udp_ask(dns_port(d), "outside.test", T_A, 0x2222, a);
	ok(n > 0 && dns_get16(a) == 0x2222 && !strcmp(first_a(a, n, NULL), "192.0.2.7"));
	n = udp_ask(dns_port(d), "nope.test", T_A, 0x2223, a);
	ok(n > 0 && dns_get16(a) == 0x2223 && rcode_of(a) == DNS_NXDOMAIN);

	n = udp_ask(dns_port(d), "web.default", T_AAAA, 0x3333, a);
	ok(n > 0 && rcode_of(a) == 0 && dns_get16(a + 6) == 0);
	hook_calls = 0;
	n = udp_ask(dns_port(d), "web.default", T_MX, 0x3334, a);
	ok(n > 0 && rcode_of(a) == 0 && dns_get16(a + 6) == 0 && hook_calls == 0);

	/* "web" means web.default, which the cache already knows. */
	hook_calls = 0;
	n = udp_ask(dns_port(d), "web", T_A, 0x4444, a);
	ok(n > 0 && hook_calls == 0 && !strcmp(first_a(a, n, NULL), "10.96.1.1"));
	/* A new cluster (or namespace) empties the cache. */
	dns_set_cluster(d, "cluster.local", ns, 2, "default");
	n = udp_ask(dns_port(d), "web", T_A, 0x4446, a);
	ok(n > 0 && hook_calls == 1 && !strcmp(last_name, "web.default.svc.cluster.local") &&
	    !strcmp(first_a(a, n, NULL), "10.96.1.1"));
	/* Single label the manager does not know: the local network answers. */
	n = udp_ask(dns_port(d), "plainhost", T_A, 0x4445, a);
	ok(n > 0 && !strcmp(last_name, "plainhost.default.svc.cluster.local") && dns_get16(a) == 0x4445 &&
	    !strcmp(first_a(a, n, NULL), "192.0.2.9"));
	n = udp_ask(dns_port(d), "missing.default", T_A, 0x5555, a);
	ok(n > 0 && rcode_of(a) == DNS_NXDOMAIN);
	/* A manager before records: negative answers are not kept, whatever
	 * their TTL (it was no SOA minimum). */
	hook_calls = 0;
	n = udp_ask(dns_port(d), "neg.default.svc.cluster.local", T_A, 0x5560, a);
	ok(n > 0 && rcode_of(a) == DNS_NXDOMAIN && hook_calls == 1);
	n = udp_ask(dns_port(d), "neg.default.svc.cluster.local", T_A, 0x5561, a);
	ok(n > 0 && dns_get16(a) == 0x5561 && rcode_of(a) == DNS_NXDOMAIN && hook_calls == 2);
	n = udp_ask(dns_port(d), "fail.default", T_A, 0x5556, a);
	ok(n > 0 && dns_get16(a) == 0x5556 && rcode_of(a) == DNS_SERVFAIL);
	n = udp_ask(dns_port(d), "sync.default", T_A, 0x5557, a);
	ok(n > 0 && dns_get16(a) == 0x5557 && !strcmp(first_a(a, n, NULL), "10.96.1.2"));

	/* Garbage gets no answer, an unreadable question gets FORMERR, and the
	 * proxy keeps working. */
	ok(client_open(&c, 0, dns_port(d)) == 0);
	ok(client_send(&c, (const unsigned char *)"\x01\x02\x03", 3) == 0);
	qlen = make_query(q, "web.default", T_A, 0x6666);
	dns_put16(q + 4, 0);
	ok(client_send(&c, q, DNS_HDR) == 0);
	ok(client_wait(&c, 1, 2000) && dns_get16(c.buf) == 0x6666 && rcode_of(c.buf) == DNS_FORMERR);
	client_close(&c);
	n = udp_ask(dns_port(d), "web.default", T_A, 0x6667, a);
	ok(n > 0 && dns_get16(a) == 0x6667 && rcode_of(a) == 0);

	/* Several queries on one TCP connection, answered out of order. */
	ok(client_open(&c, 1, dns_port(d)) == 0);
	qlen = make_query(q, "web.default", T_A, 0x7001);
	ok(client_send(&c, q, qlen) == 0);
	qlen = make_query(q, "outside.test", T_A, 0x7002);
	ok(client_send(&c, q, qlen) == 0);
	qlen = make_query(q, "nope.test", T_A, 0x7003);
	ok(client_send(&c, q, qlen) == 0);
	ok(client_wait(&c, 3, 5000));
	ok((m = tcp_find(&c, 0x7001, &n)) && !strcmp(first_a(m, n, NULL), "10.96.1.1"));
	ok((m = tcp_find(&c, 0x7002, &n)) && !strcmp(first_a(m, n, NULL), "192.0.2.7"));
	ok((m = tcp_find(&c, 0x7003, &n)) && rcode_of(m) == DNS_NXDOMAIN);
	client_close(&c);

	/* A client that half-closes after its query still gets the answer. */
	ok(client_open(&c, 1, dns_port(d)) == 0);
	qlen = make_query(q, "late.default", T_A, 0x7101);
	ok(client_send(&c, q, qlen) == 0);
	shutdown(c.fd, SHUT_WR);
	ok(client_wait(&c, 1, 2000) && (m = tcp_find(&c, 0x7101, &n)) &&
	    rcode_of(m) == DNS_NXDOMAIN);
	client_close(&c);
	run_for(50);
	ok(d->npending == 0 && d->ntcp == 0);

	/* The client resets before the manager answers: done comes later. */
	ok(client_open(&c, 1, dns_port(d)) == 0);
	qlen = make_query(q, "late.default", T_A, 0x7102);
	ok(client_send(&c, q, qlen) == 0);
	run_for(50);
	ok(d->npending == 1 && d->ntcp == 1);
	setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &(struct linger){ 1, 0 }, sizeof(struct linger));
	client_close(&c);
	run_for(50);
	ok(d->npending == 1 && d->ntcp == 0);
	run_for(400);
	ok(d->npending == 0);

	/* The first upstream is dead: the second answers after a second. */
	snprintf(path, sizeof(path), "%s/retry.conf", tmpdir);
	ok(kb_write_file(path, "nameserver 127.0.0.2\nnameserver 127.0.0.1\n", 42, 0644) == 0);
	d2 = dns_new(base, &hooks, path, 0, err, sizeof(err));
	ok(d2 != NULL);
	if (d2) {
		dns_set_upstream_port(d2, upport);
		t0 = kb_now_ms();
		n = udp_ask(dns_port(d2), "outside.test", T_A, 0x8001, a);
		ok(n > 0 && dns_get16(a) == 0x8001 && !strcmp(first_a(a, n, NULL), "192.0.2.7"));
		ok(kb_now_ms() - t0 >= 900);
		dns_free(d2);
	}

	/* No upstream at all: SERVFAIL for outside names, cluster still works. */
	snprintf(path, sizeof(path), "%s/none.conf", tmpdir);
	ok(kb_write_file(path, "search example.com\n", 19, 0644) == 0);
	d2 = dns_new(base, &hooks, path, 0, err, sizeof(err));
	ok(d2 != NULL);
	if (d2) {
		dns_set_cluster(d2, "cluster.local", ns, 2, "default");
		n = udp_ask(dns_port(d2), "outside.test", T_A, 0x8101, a);
		ok(n > 0 && rcode_of(a) == DNS_SERVFAIL);
		n = udp_ask(dns_port(d2), "web.default", T_A, 0x8102, a);
		ok(n > 0 && !strcmp(first_a(a, n, NULL), "10.96.1.1"));
		dns_free(d2);
	}

	/* dns_free with a query waiting for the manager. */
	ok(client_open(&c, 0, dns_port(d)) == 0);
	qlen = make_query(q, "late.default", T_A, 0x9001);
	ok(client_send(&c, q, qlen) == 0);
	run_for(50);
	ok(d->npending == 1);
	client_close(&c);
	fakes_free();	/* the owner's promise: no done after dns_free */
	port = dns_port(d);
	ok(!port_free(port));
	dns_free(d);
	/* Its sockets are closed: the UDP port and the TCP listener are free. */
	ok(port_free(port));
}

/* A second fake manager for the tests below: cart.shop and web.default
 * exist, names starting with "hold-" are never answered until released,
 * everything else is NXDOMAIN. Answers come from the loop, like a session's. */
struct held {
	struct held *next;
	struct event *ev;
	dns_done_fn done;
	void *ctx;
	char name[256];
	int qtype;
};

static struct held *helds;
static int held_calls;

static void
held_answer(evutil_socket_t fd, short what, void *arg)
{
	const char *cart[] = { "10.96.2.2" }, *web[] = { "10.96.1.1" };
	struct held *h = arg;

	(void)fd;
	(void)what;
	if (!strcmp(h->name, "cart.shop.svc.cluster.local"))
		h->done(h->ctx, 0, cart, h->qtype == T_A, 5);
	else if (!strcmp(h->name, "web.default.svc.cluster.local"))
		h->done(h->ctx, 0, web, h->qtype == T_A, 5);
	else
		h->done(h->ctx, 3, NULL, 0, 0);
	h->done = NULL;
}

static int
held_resolve(void *arg, const char *name, int qtype, dns_done_fn done, void *ctx)
{
	struct timeval tv = { 0, 1000 };
	struct held *h;

	(void)arg;
	held_calls++;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -1;
	h->done = done;
	h->ctx = ctx;
	h->qtype = qtype;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->next = helds;
	helds = h;
	h->ev = evtimer_new(base, held_answer, h);
	if (strncmp(name, "hold-", 5) != 0)
		evtimer_add(h->ev, &tv);
	return 0;
}

/* Answer every held lookup (SERVFAIL: the manager went away), then forget
 * them all. */
static void
helds_release(void)
{
	struct held *h;

	for (h = helds; h; h = h->next)
		if (h->done && !evtimer_pending(h->ev, NULL)) {
			h->done(h->ctx, 2, NULL, 0, 0);
			h->done = NULL;
		}
	run_for(20);
	while ((h = helds) != NULL) {
		helds = h->next;
		event_free(h->ev);
		free(h);
	}
}

/* A manager that answers records (its hello said "dns_records"), at once. */
static int rr_calls;
static char rr_last[256];

static int
fake_resolve_rr(void *arg, const char *name, int qtype, dns_done_rr_fn done, void *ctx)
{
	static const struct dns_rr srv[] = {
		{ "_http._tcp.web.default.svc.cluster.local", DNS_T_SRV, 5,
		  "0 0 80 web.default.svc.cluster.local" },
	}, chain[] = {
		{ "ext.default.svc.cluster.local", DNS_T_CNAME, 5, "web.default.svc.cluster.local" },
		{ "web.default.svc.cluster.local", DNS_T_A, 5, "10.96.1.1" },
	}, web[] = {
		{ "web.default.svc.cluster.local", DNS_T_A, 5, "10.96.1.1" },
	}, txt[] = {
		{ "web.default.svc.cluster.local", DNS_T_TXT, 5, "026869" },
	}, ptr[] = {
		{ "1.1.96.10.in-addr.arpa", DNS_T_PTR, 5, "web.default.svc.cluster.local" },
	}, bad[] = {
		{ "bad.default.svc.cluster.local", DNS_T_A, 5, "not an address" },
	};

	static struct dns_rr many[32];
	static char addr[32][16];
	size_t i;

	(void)arg;
	rr_calls++;
	snprintf(rr_last, sizeof(rr_last), "%s/%d", name, qtype);
	if (!strcmp(name, "many.default.svc.cluster.local")) {
		for (i = 0; i < 32; i++) {
			snprintf(addr[i], sizeof(addr[i]), "10.96.3.%zu", i + 1);
			many[i] = (struct dns_rr){ name, DNS_T_A, 5, addr[i] };
		}
		done(ctx, 0, many, 32, 5);
		return 0;
	}
	if (!strcmp(name, "old.default.svc.cluster.local"))
		return -2;	/* as a manager without records */
	if (qtype == DNS_T_SRV && !strcmp(name, "_http._tcp.web.default.svc.cluster.local"))
		done(ctx, 0, srv, 1, 5);
	else if (qtype == DNS_T_A && !strcmp(name, "ext.default.svc.cluster.local"))
		done(ctx, 0, chain, 2, 5);
	else if (qtype == DNS_T_A && !strcmp(name, "web.default.svc.cluster.local"))
		done(ctx, 0, web, 1, 5);
	else if (qtype == DNS_T_TXT && !strcmp(name, "web.default.svc.cluster.local"))
		done(ctx, 0, txt, 1, 5);
	else if (qtype == DNS_T_PTR && !strcmp(name, "1.1.96.10.in-addr.arpa"))
		done(ctx, 0, ptr, 1, 5);
	else if (!strcmp(name, "bad.default.svc.cluster.local"))
		done(ctx, 0, bad, 1, 5);
	else if (!strcmp(name, "web.default.svc.cluster.local"))
		done(ctx, 0, NULL, 0, 0);	/* NODATA, no SOA */
	else
		done(ctx, 3, NULL, 0, 9);	/* NXDOMAIN, SOA minimum 9 */
	return 0;
}

/* many.default with an OPT record saying 4096: every address in one UDP
 * answer of at most our 1232 bytes, with an OPT record of its own. */
static int
test_edns(uint16_t port)
{
	struct client c;
	unsigned char q[512];
	size_t qlen = make_query(q, "many.default", T_A, 0x7111);
	int good;

	memcpy(q + qlen, "\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00", 11);
	dns_put16(q + 10, 1);
	if (client_open(&c, 0, port) < 0 || client_send(&c, q, qlen + 11) < 0)
		return 0;
	good = client_wait(&c, 1, 5000) && c.len <= DNS_EDNS_MAX && !(c.buf[2] & 0x02) &&
	    dns_get16(c.buf + 6) == 32 && dns_get16(c.buf + 10) == 1 &&
	    c.buf[c.len - 11] == 0 && dns_get16(c.buf + c.len - 10) == 41 &&
	    dns_get16(c.buf + c.len - 8) == DNS_EDNS_MAX;
	if (!good)
		printf("# EDNS answer: %zu bytes, flags %02x, %u records, %u additional\n", c.len,
		    c.buf[2], dns_get16(c.buf + 6), dns_get16(c.buf + 10));
	client_close(&c);
	return good;
}

/* Cluster names of every type through a manager that answers records. */
static void
test_records_proxy(uint16_t upport)
{
	const char *ns[] = { "default", "shop" };
	struct kb_dns_hooks hooks = { .resolve = fake_resolve, .resolve_rr = fake_resolve_rr };
	struct kb_cidr subnets[] = { { 0x0a600000, 16 } };
	struct ares_srv_reply *sr = NULL;
	struct ares_txt_reply *tr = NULL;
	struct hostent *he = NULL;
	struct ares_addrttl at[4];
	unsigned char a[4096], q[512];
	const unsigned char *m;
	struct client c;
	struct kb_dns *d;
	char path[128], err[256];
	size_t n, qlen;
	int na = 4;

	snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
	if ((d = dns_new(base, &hooks, path, 0, err, sizeof(err))) == NULL) {
		ok(0);
		return;
	}
	dns_set_upstream_port(d, upport);
	dns_set_cluster(d, "cluster.local", ns, 2, "default");
	dns_set_subnets(d, subnets, 1);
	hook_calls = rr_calls = 0;

	n = udp_ask(dns_port(d), "_http._tcp.web.default.svc.cluster.local", T_SRV, 0x7101, a);
	ok(n > 0 && dns_get16(a) == 0x7101 && ares_parse_srv_reply(a, (int)n, &sr) ==
	    ARES_SUCCESS && sr && sr->port == 80 && !strcmp(sr->host,
	    "web.default.svc.cluster.local"));
	ares_free_data(sr);
	/* NAME.NS asked for TXT: the cluster's record, named as asked */
	n = udp_ask(dns_port(d), "web.default", T_TXT, 0x7102, a);
	ok(n > 0 && !strcmp(rr_last, "web.default.svc.cluster.local/16") &&
	    ares_parse_txt_reply(a, (int)n, &tr) == ARES_SUCCESS && tr && tr->length == 2 &&
	    !memcmp(tr->txt, "hi", 2));
	ares_free_data(tr);
	/* An ExternalName service: the chain, the alias named as asked */
	n = udp_ask(dns_port(d), "ext.default", T_A, 0x7103, a);
	ok(n > 0 && dns_get16(a + 6) == 2 && ares_parse_a_reply(a, (int)n, &he, at, &na) ==
	    ARES_SUCCESS && na == 1 && he && !strcmp(he->h_name, "web.default.svc.cluster.local") &&
	    he->h_aliases[0] && !strcmp(he->h_aliases[0], "ext.default"));
	if (he)
		ares_free_hostent(he);
	/* ... and not kept: the cache holds a name's own addresses */
	rr_calls = 0;
	n = udp_ask(dns_port(d), "ext.default", T_A, 0x7104, a);
	ok(n > 0 && rr_calls == 1 && dns_get16(a + 6) == 2);
	n = udp_ask(dns_port(d), "web", T_A, 0x7105, a);
	n = udp_ask(dns_port(d), "web.default", T_A, 0x7106, a);
	ok(n > 0 && rr_calls == 2 && !strcmp(first_a(a, n, NULL), "10.96.1.1"));
	/* The name of a cluster address; another address's goes upstream */
	he = NULL;
	n = udp_ask(dns_port(d), "1.1.96.10.in-addr.arpa", T_PTR, 0x7107, a);
	ok(n > 0 && ares_parse_ptr_reply(a, (int)n, "\x0a\x60\x01\x01", 4, AF_INET, &he) ==
	    ARES_SUCCESS && he && !strcmp(he->h_name, "web.default.svc.cluster.local"));
	if (he)
		ares_free_hostent(he);
	rr_calls = 0;
	n = udp_ask(dns_port(d), "1.1.97.10.in-addr.arpa", T_PTR, 0x7108, a);
	ok(n > 0 && dns_get16(a) == 0x7108 && rr_calls == 0);
	/* A record whose data does not parse: SERVFAIL, nothing made up */
	n = udp_ask(dns_port(d), "bad.default.svc.cluster.local", T_A, 0x7109, a);
	ok(n > 0 && rcode_of(a) == DNS_SERVFAIL && dns_get16(a + 6) == 0);
	/* NXDOMAIN with an SOA minimum: kept, for SRV as for A */
	rr_calls = 0;
	n = udp_ask(dns_port(d), "_x._tcp.nosuch.default.svc.cluster.local", T_SRV, 0x710a, a);
	n = udp_ask(dns_port(d), "_x._tcp.nosuch.default.svc.cluster.local", T_SRV, 0x710b, a);
	ok(n > 0 && dns_get16(a) == 0x710b && rcode_of(a) == DNS_NXDOMAIN && rr_calls == 1);
	/* NAME.NS the cluster lacks: kept too, and still the outside
	 * resolver's to answer (its NXDOMAIN here) */
	n = udp_ask(dns_port(d), "nosuch.default", T_A, 0x7120, a);
	n = udp_ask(dns_port(d), "nosuch.default", T_A, 0x7121, a);
	ok(n > 0 && dns_get16(a) == 0x7121 && rcode_of(a) == DNS_NXDOMAIN && rr_calls == 2);
	/* NODATA without an SOA: not kept */
	n = udp_ask(dns_port(d), "web.default.svc.cluster.local", T_MX, 0x710c, a);
	n = udp_ask(dns_port(d), "web.default.svc.cluster.local", T_MX, 0x710d, a);
	ok(n > 0 && rcode_of(a) == 0 && dns_get16(a + 6) == 0 && rr_calls == 4);
	/* 32 addresses: over UDP without EDNS, what fits in 512 bytes and TC;
	 * with EDNS0 (the client's 4096, ours 1232) all, and an OPT record;
	 * over TCP all. */
	n = udp_ask(dns_port(d), "many.default", T_A, 0x7110, a);
	ok(n > 0 && n <= 512 && (a[2] & 0x02) && dns_get16(a + 6) < 32 &&
	    dns_get16(a + 10) == 0);
	ok(test_edns(dns_port(d)));
	ok(client_open(&c, 1, dns_port(d)) == 0);
	qlen = make_query(q, "many.default", T_A, 0x7112);
	ok(client_send(&c, q, qlen) == 0 && client_wait(&c, 1, 2000) &&
	    (m = tcp_find(&c, 0x7112, &n)) != NULL && !(m[2] & 0x02) && dns_get16(m + 6) == 32);
	client_close(&c);

	/* A manager without records: addresses through resolve, as before */
	hook_calls = 0;
	n = udp_ask(dns_port(d), "old.default.svc.cluster.local", T_A, 0x710e, a);
	ok(n > 0 && hook_calls == 1 && !strcmp(last_name, "old.default.svc.cluster.local"));
	ok(hook_calls + rr_calls > 0 && d->npending == 0);
	dns_free(d);
}

/* VNAT: A answers in a kept-local range carry virtual addresses (records
 * and address hooks, cached or not), PTR of the virtual range is answered
 * here, PTR of a kept-local address is not the cluster's, and a full table
 * gives SERVFAIL, never the real address. */
static void
test_vnat_proxy(uint16_t upport)
{
	const char *ns[] = { "default", "shop" };
	struct kb_dns_hooks hooks = { .resolve = fake_resolve, .resolve_rr = fake_resolve_rr },
	    old = { .resolve = fake_resolve };
	struct kb_cidr subnets[] = { { 0x0a600000, 16 } }, kept = { 0x0a600100, 24 },
	    sub = { 0x64400000, 16 }, tiny = { 0xc6120000, 30 };
	struct hostent *he = NULL;
	struct kb_vnat *v, *t;
	struct kb_dns *d;
	unsigned char a[4096];
	char path[128], err[256];
	uint32_t virt;
	size_t n;

	snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
	v = kb_vnat_new(&sub, &kept, 1);
	if (!v || (d = dns_new(base, &hooks, path, 0, err, sizeof(err))) == NULL) {
		ok(0);
		kb_vnat_free(v);
		return;
	}
	dns_set_upstream_port(d, upport);
	dns_set_cluster(d, "cluster.local", ns, 2, "default");
	dns_set_subnets(d, subnets, 1);
	dns_set_vnat(d, v);
	n = udp_ask(dns_port(d), "web.default", T_A, 0x7401, a);
	ok(n > 0 && rcode_of(a) == 0 && !strcmp(first_a(a, n, NULL), "100.64.0.1"));
	/* cached (the real address), answered virtual again */
	rr_calls = 0;
	n = udp_ask(dns_port(d), "web.default", T_A, 0x7402, a);
	ok(n > 0 && rr_calls == 0 && !strcmp(first_a(a, n, NULL), "100.64.0.1"));
	/* a CNAME chain: the A record at its end, the same virtual address */
	n = udp_ask(dns_port(d), "ext.default", T_A, 0x7403, a);
	ok(n > 0 && dns_get16(a + 6) == 2 && !strcmp(first_a(a, n, NULL), "100.64.0.1"));
	/* addresses outside the kept range stay real */
	n = udp_ask(dns_port(d), "many.default", T_A, 0x7404, a);
	ok(n > 0 && !strcmp(first_a(a, n, NULL), "10.96.3.1"));
	ok(kb_vnat_count(v) == 1);
	/* PTR of the virtual address: the name, without asking the manager */
	rr_calls = 0;
	n = udp_ask(dns_port(d), "1.0.64.100.in-addr.arpa", T_PTR, 0x7405, a);
	ok(n > 0 && rr_calls == 0 && ares_parse_ptr_reply(a, (int)n, "\x64\x40\x00\x01", 4,
	    AF_INET, &he) == ARES_SUCCESS && he && !strcmp(he->h_name,
	    "web.default.svc.cluster.local"));
	if (he)
		ares_free_hostent(he);
	n = udp_ask(dns_port(d), "9.0.64.100.in-addr.arpa", T_PTR, 0x7406, a);
	ok(n > 0 && rr_calls == 0 && rcode_of(a) == DNS_NXDOMAIN);
	/* PTR of a kept-local address: the local network's (upstream), not the cluster's */
	n = udp_ask(dns_port(d), "1.1.96.10.in-addr.arpa", T_PTR, 0x7407, a);
	ok(n > 0 && dns_get16(a) == 0x7407 && rr_calls == 0);
	dns_set_vnat(d, NULL);
	n = udp_ask(dns_port(d), "web.default", T_A, 0x7408, a);
	ok(n > 0 && !strcmp(first_a(a, n, NULL), "10.96.1.1"));
	dns_free(d);

	/* A manager without records (the address hook); a full table */
	t = kb_vnat_new(&tiny, &kept, 1);
	if (!t || (d = dns_new(base, &old, path, 0, err, sizeof(err))) == NULL) {
		ok(0);
		kb_vnat_free(v);
		kb_vnat_free(t);
		return;
	}
	dns_set_upstream_port(d, upport);
	dns_set_cluster(d, "cluster.local", ns, 2, "default");
	dns_set_vnat(d, t);
	n = udp_ask(dns_port(d), "web.default", T_A, 0x7409, a);
	ok(n > 0 && !strcmp(first_a(a, n, NULL), "198.18.0.1"));
	ok(kb_vnat_map(t, 0x0a600105, NULL, &virt) == 0 && virt == 0xc6120002);
	n = udp_ask(dns_port(d), "sync.default", T_A, 0x740a, a);
	ok(n > 0 && rcode_of(a) == DNS_SERVFAIL && dns_get16(a + 6) == 0);
	n = udp_ask(dns_port(d), "web.default", T_A, 0x740b, a);
	ok(n > 0 && !strcmp(first_a(a, n, NULL), "198.18.0.1"));
	ok(d->npending == 0);
	dns_free(d);
	kb_vnat_free(t);
	kb_vnat_free(v);
}

/* A name NAME.NS that the cluster does not have is the outside world's:
 * with a namespace "shop", example.shop still resolves as it does without
 * kbridge, while cart.shop is the cluster's. */
static void
test_ns_fallback(uint16_t upport)
{
	const char *ns[] = { "default", "shop" };
	struct kb_dns_hooks hooks = { .resolve = held_resolve };
	unsigned char q[512], a[4096];
	const unsigned char *m;
	struct ares_txt_reply *txt = NULL;
	struct client c;
	struct kb_dns *d;
	char path[128], err[256];
	size_t n, qlen;

	snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
	ok(kb_write_file(path, "nameserver 127.0.0.1\n", 21, 0644) == 0);
	d = dns_new(base, &hooks, path, 0, err, sizeof(err));
	ok(d != NULL);
	if (!d) {
		printf("# dns_new: %s\n", err);
		return;
	}
	dns_set_upstream_port(d, upport);
	dns_set_cluster(d, "cluster.local", ns, 2, "default");

	held_calls = 0;
	n = udp_ask(dns_port(d), "cart.shop", T_A, 0xa001, a);
	ok(n > 0 && rcode_of(a) == 0 && !strcmp(first_a(a, n, NULL), "10.96.2.2"));
	ok(held_calls == 1);
	n = udp_ask(dns_port(d), "example.shop", T_A, 0xa002, a);
	ok(n > 0 && dns_get16(a) == 0xa002 && rcode_of(a) == 0 &&
	    !strcmp(first_a(a, n, NULL), "192.0.2.8"));
	ok(held_calls == 2);
	n = udp_ask(dns_port(d), "Example.Shop.", T_A, 0xa003, a);
	ok(n > 0 && dns_get16(a) == 0xa003 && !strcmp(first_a(a, n, NULL), "192.0.2.8"));
	/* Other types: the outside world's record for its name, an empty
	 * answer for the cluster's. */
	n = udp_ask(dns_port(d), "example.shop", T_TXT, 0xa004, a);
	ok(n > 0 && dns_get16(a) == 0xa004 && rcode_of(a) == 0 &&
	    ares_parse_txt_reply(a, (int)n, &txt) == ARES_SUCCESS && txt &&
	    txt->length == 7 && !memcmp(txt->txt, "outside", 7));
	if (txt)
		ares_free_data(txt);
	n = udp_ask(dns_port(d), "cart.shop", T_TXT, 0xa005, a);
	ok(n > 0 && dns_get16(a) == 0xa005 && rcode_of(a) == 0 && dns_get16(a + 6) == 0);
	/* NAME.NS.svc too (the outside world has no such name either); but
	 * under the cluster domain the cluster's NXDOMAIN stands (the outside
	 * world, without an upstream here, would have refused). */
	n = udp_ask(dns_port(d), "nosuch.default.svc", T_A, 0xa006, a);
	ok(n > 0 && dns_get16(a) == 0xa006 && rcode_of(a) == DNS_NXDOMAIN);
	held_calls = 0;
	n = udp_ask(dns_port(d), "example.shop.svc.cluster.local", T_A, 0xa007, a);
	ok(n > 0 && dns_get16(a) == 0xa007 && rcode_of(a) == DNS_NXDOMAIN && held_calls == 1);
	/* Over TCP the same. */
	ok(client_open(&c, 1, dns_port(d)) == 0);
	qlen = make_query(q, "example.shop", T_A, 0xa101);
	ok(client_send(&c, q, qlen) == 0);
	qlen = make_query(q, "cart.shop", T_A, 0xa102);
	ok(client_send(&c, q, qlen) == 0);
	ok(client_wait(&c, 2, 5000));
	ok((m = tcp_find(&c, 0xa101, &n)) && !strcmp(first_a(m, n, NULL), "192.0.2.8"));
	ok((m = tcp_find(&c, 0xa102, &n)) && !strcmp(first_a(m, n, NULL), "10.96.2.2"));
	client_close(&c);
	run_for(20);
	ok(d->npending == 0);
	helds_release();
	dns_free(d);
}

/* One local client floods the proxy with queries the manager is slow to
 * answer (or never does). It gets its share of the slots and REFUSED for
 * the rest; other clients' queries are all answered as usual meanwhile. */
static void
test_flood(uint16_t upport)
{
	const char *ns[] = { "default", "shop" };
	struct kb_dns_hooks hooks = { .resolve = held_resolve };
	unsigned char q[512];
	struct client flood, c[20];
	struct kb_dns *d;
	char path[128], err[256], name[64];
	size_t qlen, i;
	int sent = 0, answered = 0, good = 0, refused = 0, nflood = 3000, rcv = 0;
	socklen_t rcvlen = sizeof(rcv);
	ssize_t r;

	snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
	ok(kb_write_file(path, "nameserver 127.0.0.1\n", 21, 0644) == 0);
	d = dns_new(base, &hooks, path, 0, err, sizeof(err));
	ok(d != NULL);
	if (!d) {
		printf("# dns_new: %s\n", err);
		return;
	}
	dns_set_upstream_port(d, upport);
	dns_set_cluster(d, "cluster.local", ns, 2, "default");
	/* The proxy's socket holds a burst of thousands: a moment without
	 * CPU does not lose other clients' queries with the flood's. */
	ok(getsockopt(d->udp_fd, SOL_SOCKET, SO_RCVBUF, &rcv, &rcvlen) == 0 && rcv >= 4 << 20);

	ok(client_open(&flood, 0, dns_port(d)) == 0);
	event_del(flood.ev);	/* it does not read its answers */
	for (i = 0; i < (size_t)nflood; i++) {
		snprintf(name, sizeof(name), "hold-%zu.default", i);
		qlen = make_query(q, name, T_A, (uint16_t)i);
		if (send(flood.fd, q, qlen, 0) == (ssize_t)qlen)
			sent++;
		if (i % 500 == 499)
			run_for(1);
	}
	ok(sent == nflood);
	run_for(50);
	printf("# flood: %d queries sent, %zu in flight\n", sent, d->npending);
	ok(d->npending <= DNS_CLIENT_MAX);

	/* Others, from their own sockets, during the flood. */
	for (i = 0; i < 20; i++) {
		ok(client_open(&c[i], 0, dns_port(d)) == 0);
		qlen = make_query(q, i % 2 ? "web.default" : "outside.test", T_A, (uint16_t)(0xb000 + i));
		ok(client_send(&c[i], q, qlen) == 0);
	}
	for (i = 0; i < 20; i++) {
		if (!client_wait(&c[i], 1, 5000))
			continue;
		answered++;
		if (dns_get16(c[i].buf) == 0xb000 + i && rcode_of(c[i].buf) == 0 &&
		    !strcmp(first_a(c[i].buf, c[i].len, NULL), i % 2 ? "10.96.1.1" : "192.0.2.7"))
			good++;
	}
	printf("# during the flood: %d of 20 other queries answered, %d correctly\n", answered, good);
	ok(answered == 20 && good == 20);
	for (i = 0; i < 20; i++)
		client_close(&c[i]);

	/* The flooder got REFUSED for what it asked beyond its share. */
	evutil_make_socket_nonblocking(flood.fd);
	while ((r = recv(flood.fd, q, sizeof(q), 0)) > 0)
		refused += r >= DNS_HDR && rcode_of(q) == DNS_REFUSED;
	printf("# the flooder got %d REFUSED\n", refused);
	ok(refused > 0);
	client_close(&flood);

	/* Its share comes back once the manager answers. */
	helds_release();
	run_for(50);
	ok(d->npending == 0);
	for (i = 0; i < DNS_CLIENT_BUCKETS; i++)
		if (!LIST_EMPTY(&d->clients[i]))
			break;
	ok(i == DNS_CLIENT_BUCKETS);
	/* Every client record is free again: the table is preallocated and
	 * bounded, nothing was allocated per query or per client. */
	{
		struct dns_client *cl;
		size_t nfree = 0;

		LIST_FOREACH(cl, &d->client_free, entry)
			nfree++;
		ok(nfree == DNS_MAX_PENDING);
	}
	dns_free(d);
}

int
main(void)
{
	uint16_t port;

	log_init("test_dns", getenv("KB_DEBUG") ? KB_LOG_DEBUG : KB_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kbtdns%ld.XXXXXX", (long)getpid());
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	base = event_base_new();

	test_classify();
	test_build();
	test_malformed();
	test_upstreams_parse();
	test_cache();

	port = free_port();
	ok(port != 0);
	if (access("/usr/sbin/dnsmasq", X_OK) < 0) {
		skip_or_fail_tool("/usr/sbin/dnsmasq missing: the live proxy tests did not run");
	} else {
		/* The outside world: it knows example.shop (a namespace "shop"
		 * must not hide it) and nothing under "default". */
		static const char *const outside[] = { "--address=/outside.test/192.0.2.7",
			"--address=/plainhost/192.0.2.9", "--local=/test/", "--local=/default/",
			"--local=/svc/", "--address=/example.shop/192.0.2.8",
			"--txt-record=example.shop,outside",
			NULL };
		ok(dnsmasq_start(port, tmpdir, outside, "outside.test") == 0);
		test_proxy(port);
		test_records_proxy(port);
		test_vnat_proxy(port);
		test_ns_fallback(port);
		test_flood(port);
	}
	fakes_free();
	event_base_free(base);
	cleanup();
	return ok_done();
}
