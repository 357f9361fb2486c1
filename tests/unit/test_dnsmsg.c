/* The DNS message module alone (daemon/dnsmsg.c): parsing queries, building
 * answers and errors, matching an upstream's answer, on buffers of their
 * exact size (so that ASan in unit-san sees any read past a message). */
#include "../../daemon/dnsmsg.c"

#include <arpa/nameser.h>
#include <netdb.h>
#include <stdlib.h>

#include "ok.h"

/* A query for name (dotted, no compression) of type qtype, in a buffer of
 * its exact size (caller frees); *len its length. */
static unsigned char *
query(const char *name, uint16_t qtype, uint16_t id, size_t *len)
{
	unsigned char tmp[600], *out;
	size_t off = DNS_HDR, n;
	const char *p = name, *dot;

	memset(tmp, 0, DNS_HDR);
	dns_put16(tmp, id);
	tmp[2] = 0x01;	/* RD */
	dns_put16(tmp + 4, 1);
	while (*p) {
		dot = strchr(p, '.');
		n = dot ? (size_t)(dot - p) : strlen(p);
		tmp[off++] = (unsigned char)n;
		memcpy(tmp + off, p, n);
		off += n;
		p += n + (dot != NULL);
	}
	tmp[off++] = 0;
	dns_put16(tmp + off, qtype);
	dns_put16(tmp + off + 2, DNS_C_IN);
	off += 4;
	out = malloc(off);
	memcpy(out, tmp, off);
	*len = off;
	return out;
}

static void
test_parse(void)
{
	struct dns_question q;
	unsigned char *m, *t;
	size_t len, i;

	m = query("Web.Default.SVC.cluster.local", DNS_T_AAAA, 0x1234, &len);
	ok(dns_parse_query(m, len, &q) == 0);
	ok(q.id == 0x1234 && q.qtype == DNS_T_AAAA && q.qclass == DNS_C_IN && q.qend == len);
	ok(!strcmp(q.name, "web.default.svc.cluster.local"));
	/* Every truncation is dropped (no header) or FORMERR, never read past. */
	for (i = 0; i < len; i++) {
		t = malloc(i ? i : 1);
		memcpy(t, m, i);
		ok(dns_parse_query(t, i, &q) == (i < DNS_HDR ? -1 : DNS_FORMERR));
		free(t);
	}
	/* A response is dropped (no ping-pong); another opcode is NOTIMP; two
	 * questions or none are FORMERR. */
	m[2] |= 0x80;
	ok(dns_parse_query(m, len, &q) == -1);
	m[2] = 0x01 | (2 << 3);
	ok(dns_parse_query(m, len, &q) == DNS_NOTIMP);
	m[2] = 0x01;
	dns_put16(m + 4, 2);
	ok(dns_parse_query(m, len, &q) == DNS_FORMERR);
	dns_put16(m + 4, 0);
	ok(dns_parse_query(m, len, &q) == DNS_FORMERR);
	dns_put16(m + 4, 1);
	/* A compression pointer in the question: FORMERR (answers point at
	 * the question, so it must be plain). */
	m[DNS_HDR] = 0xc0;
	m[DNS_HDR + 1] = 0x0c;
	ok(dns_parse_query(m, len, &q) == DNS_FORMERR);
	free(m);
	/* The root name is a question too. */
	m = query("", DNS_T_A, 1, &len);
	ok(dns_parse_query(m, len, &q) == 0 && q.name[0] == '\0' && q.qend == DNS_HDR + 5);
	free(m);
}

static void
test_build(void)
{
	const char *v4[] = { "10.96.0.1", "not-an-address", "10.96.0.2" };
	const char *v6[] = { "fd00::1" };
	const char *many[100];
	unsigned char *m, out[DNS_MSG_MAX], *exact;
	struct ares_addrttl a[100];
	struct ares_addr6ttl a6[4];
	struct dns_question q;
	size_t len, n, i;
	int na;

	m = query("web.default", DNS_T_A, 0xbeef, &len);
	ok(dns_parse_query(m, len, &q) == 0);
	n = dns_build_answer(out, DNS_UDP_ANSWER_MAX, m, q.qend, 0, DNS_T_A, v4, 3, 30);
	/* The id, QR, RD, the question copied, two records (the bad address
	 * left out), each 16 bytes, named by a pointer to the question. */
	ok(n == len + 2 * 16 && dns_get16(out) == 0xbeef && (out[2] & 0x81) == 0x81);
	ok((out[3] & 0x0f) == 0 && dns_get16(out + 4) == 1 && dns_get16(out + 6) == 2);
	ok(!memcmp(out + DNS_HDR, m + DNS_HDR, len - DNS_HDR) && dns_get16(out + len) == 0xc00c);
	exact = malloc(n);
	memcpy(exact, out, n);
	na = 4;
	ok(ares_parse_a_reply(exact, (int)n, NULL, a, &na) == ARES_SUCCESS && na == 2 &&
	    a[0].ttl == 30 && ntohl(a[1].ipaddr.s_addr) == 0x0a600002u);
	ok(dns_same_question(exact, n, m, q.qend));
	free(exact);
	free(m);

	m = query("db.default", DNS_T_AAAA, 7, &len);
	ok(dns_parse_query(m, len, &q) == 0);
	n = dns_build_answer(out, DNS_UDP_ANSWER_MAX, m, q.qend, 0, DNS_T_AAAA, v6, 1, 5);
	na = 4;
	ok(n == len + 28 && ares_parse_aaaa_reply(out, (int)n, NULL, a6, &na) == ARES_SUCCESS &&
	    na == 1 && a6[0].ttl == 5);
	/* An error has no records, whatever addresses come with it. */
	n = dns_build_answer(out, DNS_UDP_ANSWER_MAX, m, q.qend, DNS_NXDOMAIN, DNS_T_AAAA, v6, 1, 5);
	ok(n == len && (out[3] & 0x0f) == DNS_NXDOMAIN && dns_get16(out + 6) == 0);
	n = dns_build_rcode(out, DNS_UDP_ANSWER_MAX, m, q.qend, DNS_SERVFAIL);
	ok(n == len && (out[3] & 0x0f) == DNS_SERVFAIL && dns_get16(out + 4) == 1);
	/* No question (FORMERR to what could not be parsed): the header alone. */
	n = dns_build_rcode(out, DNS_UDP_ANSWER_MAX, m, DNS_HDR, DNS_FORMERR);
	ok(n == DNS_HDR && dns_get16(out + 4) == 0 && (out[3] & 0x0f) == DNS_FORMERR);
	free(m);

	/* What does not fit in 512 bytes is left out, and TC says so. */
	m = query("big.default", DNS_T_A, 9, &len);
	ok(dns_parse_query(m, len, &q) == 0);
	for (i = 0; i < 100; i++)
		many[i] = "10.0.0.9";
	n = dns_build_answer(out, DNS_UDP_ANSWER_MAX, m, q.qend, 0, DNS_T_A, many, 100, 1);
	ok(n <= DNS_UDP_ANSWER_MAX && (out[2] & 0x02) && dns_get16(out + 6) == (n - len) / 16);
	n = dns_build_answer(out, DNS_MSG_MAX, m, q.qend, 0, DNS_T_A, many, 100, 1);
	na = 100;
	ok(!(out[2] & 0x02) && ares_parse_a_reply(out, (int)n, NULL, a, &na) == ARES_SUCCESS &&
	    na == 100);
	free(m);
}

static void
test_same_question(void)
{
	unsigned char *a, *b;
	size_t alen, blen;

	a = query("WeB.DeFault", DNS_T_A, 1, &alen);
	b = query("web.default", DNS_T_A, 2, &blen);
	ok(dns_same_question(a, alen, b, blen));
	ok(!dns_same_question(a, alen - 1, b, blen));	/* shorter than the question */
	free(a);
	a = query("web.default", DNS_T_AAAA, 1, &alen);
	ok(!dns_same_question(a, alen, b, blen));
	free(a);
	a = query("wec.default", DNS_T_A, 1, &alen);
	ok(!dns_same_question(a, alen, b, blen));
	free(a);
	free(b);
}

/* EDNS0: the client's UDP size from its OPT record, clamped; our OPT. */
static void
test_edns(void)
{
	unsigned char *q, buf[600], out[600];
	struct dns_question dq;
	size_t qlen, n;

	q = query("web.default", DNS_T_A, 1, &qlen);
	memcpy(buf, q, qlen);
	ok(dns_parse_query(buf, qlen, &dq) == 0 && dq.edns == 0);
	memcpy(buf + qlen, "\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00", 11);
	dns_put16(buf + 10, 1);
	ok(dns_parse_query(buf, qlen + 11, &dq) == 0 && dq.edns == 1232 && dq.qend == qlen);
	dns_put16(buf + qlen + 3, 65535);
	ok(dns_parse_query(buf, qlen + 11, &dq) == 0 && dq.edns == DNS_EDNS_MAX);
	dns_put16(buf + qlen + 3, 100);
	ok(dns_parse_query(buf, qlen + 11, &dq) == 0 && dq.edns == DNS_UDP_ANSWER_MAX);
	/* not an OPT record, or cut short: no EDNS */
	dns_put16(buf + qlen + 1, 1);
	ok(dns_parse_query(buf, qlen + 11, &dq) == 0 && dq.edns == 0);
	dns_put16(buf + qlen + 1, 41);
	ok(dns_parse_query(buf, qlen + 10, &dq) == 0 && dq.edns == 0);
	ok(dns_udp_max(0) == 512 && dns_udp_max(1232) == 1232 - DNS_OPT_LEN);
	/* our OPT: appended, counted, 1232; not without EDNS or room */
	n = dns_build_rcode(out, sizeof(out), buf, qlen, DNS_NXDOMAIN);
	ok(dns_add_opt(out, n, sizeof(out), 0) == n);
	ok(dns_add_opt(out, n, n + 10, 1232) == n);
	ok(dns_add_opt(out, n, sizeof(out), 4096) == n + 11 && dns_get16(out + 10) == 1 &&
	    out[n] == 0 && dns_get16(out + n + 1) == 41 && dns_get16(out + n + 3) == 1232);
	free(q);
}

/* Answers built from the manager's records, parsed back by c-ares. */
static void
test_records(void)
{
	static const struct dns_rr chain[] = {
		{ "ext.default.svc.cluster.local", DNS_T_CNAME, 5, "web.default.svc.cluster.local" },
		{ "web.default.svc.cluster.local", DNS_T_A, 7, "10.96.1.1" },
	}, srv[] = {
		{ "_http._tcp.web.default.svc.cluster.local", DNS_T_SRV, 5,
		  "10 20 80 web.default.svc.cluster.local" },
	}, txt[] = {
		{ "web.default.svc.cluster.local", DNS_T_TXT, 5, "0b68656c6c6f20776f726c64" },
	}, ptr[] = {
		{ "1.1.96.10.in-addr.arpa", DNS_T_PTR, 5, "web.default.svc.cluster.local" },
	}, mx[] = {
		{ "web.default.svc.cluster.local", DNS_T_MX, 5, "10 mail.example" },
	};
	static const struct dns_rr bad[][1] = {
		{ { "a.b", DNS_T_A, 5, "10.96.1" } },
		{ { "a.b", DNS_T_AAAA, 5, "10.96.1.1" } },
		{ { "a.b", DNS_T_SRV, 5, "10 20 web" } },
		{ { "a.b", DNS_T_SRV, 5, "10 20 65536 web" } },
		{ { "a.b", DNS_T_SRV, 5, "10 20 80 bad name" } },
		{ { "a.b", DNS_T_MX, 5, "10" } },
		{ { "a.b", DNS_T_CNAME, 5, "" } },
		{ { "a.b", DNS_T_PTR, 5, "a..b" } },
		{ { "a.b", DNS_T_TXT, 5, "0b6" } },
		{ { "a.b", DNS_T_TXT, 5, "zz" } },
		{ { "a..b", DNS_T_A, 5, "10.96.1.1" } },
	};
	unsigned char *q, out[DNS_MSG_MAX];
	struct ares_addrttl a[4];
	struct ares_srv_reply *sr = NULL;
	struct ares_txt_reply *tr = NULL;
	struct ares_mx_reply *mr = NULL;
	struct hostent *he = NULL;
	size_t qlen, n, i;
	int na = 4, isbad;

	/* A CNAME chain (an ExternalName service): the asked name (the
	 * question's, by pointer) is the alias, the target has the address. */
	q = query("ext.default", DNS_T_A, 0x1234, &qlen);
	n = dns_build_records(out, sizeof(out), q, qlen, 0, chain, 2,
	    "ext.default.svc.cluster.local", &isbad);
	ok(!isbad && n > qlen && dns_get16(out) == 0x1234 && dns_get16(out + 6) == 2);
	ok(out[qlen] == 0xc0 && out[qlen + 1] == 0x0c && dns_get16(out + qlen + 2) == DNS_T_CNAME);
	i = (size_t)ares_parse_a_reply(out, (int)n, &he, a, &na);
	ok(i == ARES_SUCCESS && na == 1 &&
	    a[0].ttl == 5 /* c-ares: the chain's smallest */ && a[0].ipaddr.s_addr == htonl(0x0a600101) &&
	    !strcmp(he->h_name, "web.default.svc.cluster.local") && he->h_aliases[0] &&
	    !strcmp(he->h_aliases[0], "ext.default"));
	if (he)
		ares_free_hostent(he);
	free(q);

	q = query("_http._tcp.web.default.svc.cluster.local", DNS_T_SRV, 1, &qlen);
	n = dns_build_records(out, sizeof(out), q, qlen, 0, srv, 1,
	    "_http._tcp.web.default.svc.cluster.local", &isbad);
	ok(!isbad && ares_parse_srv_reply(out, (int)n, &sr) == ARES_SUCCESS && sr &&
	    sr->priority == 10 && sr->weight == 20 && sr->port == 80 &&
	    !strcmp(sr->host, "web.default.svc.cluster.local") && !sr->next);
	ares_free_data(sr);
	free(q);

	q = query("web.default", DNS_T_TXT, 2, &qlen);
	n = dns_build_records(out, sizeof(out), q, qlen, 0, txt, 1,
	    "web.default.svc.cluster.local", &isbad);
	ok(!isbad && ares_parse_txt_reply(out, (int)n, &tr) == ARES_SUCCESS && tr &&
	    tr->length == 11 && !memcmp(tr->txt, "hello world", 11));
	ares_free_data(tr);
	free(q);

	q = query("1.1.96.10.in-addr.arpa", DNS_T_PTR, 3, &qlen);
	n = dns_build_records(out, sizeof(out), q, qlen, 0, ptr, 1, "1.1.96.10.in-addr.arpa",
	    &isbad);
	he = NULL;
	ok(!isbad && ares_parse_ptr_reply(out, (int)n, "\x0a\x60\x01\x01", 4, AF_INET, &he) ==
	    ARES_SUCCESS && he && !strcmp(he->h_name, "web.default.svc.cluster.local"));
	if (he)
		ares_free_hostent(he);
	free(q);

	q = query("web.default", DNS_T_MX, 4, &qlen);
	n = dns_build_records(out, sizeof(out), q, qlen, 0, mx, 1,
	    "web.default.svc.cluster.local", &isbad);
	ok(!isbad && ares_parse_mx_reply(out, (int)n, &mr) == ARES_SUCCESS && mr &&
	    mr->priority == 10 && !strcmp(mr->host, "mail.example"));
	ares_free_data(mr);

	/* Data that does not parse as its type says: nothing is built. */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = dns_build_records(out, sizeof(out), q, qlen, 0, bad[i], 1, "a.b", &isbad);
		if (!isbad)
			printf("# bad record %zu was built\n", i);
		ok(isbad && n == 0);
	}
	/* NXDOMAIN: no record; records that do not fit: left out, TC. */
	n = dns_build_records(out, sizeof(out), q, qlen, DNS_NXDOMAIN, chain, 2, "x", &isbad);
	ok(!isbad && n == qlen && (out[3] & 0x0f) == DNS_NXDOMAIN && dns_get16(out + 6) == 0);
	n = dns_build_records(out, qlen + 40, q, qlen, 0, chain, 2, "x", &isbad);
	ok(!isbad && n <= qlen + 40 && dns_get16(out + 6) == 0 && (out[2] & 0x02));
	free(q);
}

int
main(void)
{
	test_parse();
	test_build();
	test_same_question();
	test_records();
	test_edns();
	return ok_done();
}
