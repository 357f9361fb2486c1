/* DNS messages for the daemon's proxy: parse a query's header and first
 * question, build an answer (addresses, or just an rcode such as NXDOMAIN
 * or SERVFAIL) to it, and match an upstream's answer to a query. Pure: no
 * I/O, no state, no allocation that outlives a call; the caller owns every
 * buffer. Fuzzed by tests/fuzz/fuzz_dns.c, checked by tests/unit/test_dnsmsg.c. */
#ifndef KB_DNSMSG_H
#define KB_DNSMSG_H

#include <stddef.h>
#include <stdint.h>

#define DNS_HDR			12
#define DNS_MSG_MAX		65535
#define DNS_UDP_ANSWER_MAX	512	/* a UDP answer to a client without EDNS */
#define DNS_EDNS_MAX		1232	/* a UDP answer to one with: at most this */
#define DNS_OPT_LEN		11	/* an OPT record without options */

#define DNS_T_A			1
#define DNS_T_NS		2
#define DNS_T_CNAME		5
#define DNS_T_PTR		12
#define DNS_T_MX		15
#define DNS_T_TXT		16
#define DNS_T_AAAA		28
#define DNS_T_SRV		33
#define DNS_C_IN		1
#define DNS_FORMERR		1
#define DNS_SERVFAIL		2
#define DNS_NXDOMAIN		3
#define DNS_NOTIMP		4
#define DNS_REFUSED		5

/* The first question of a query. */
struct dns_question {
	uint16_t id, qtype, qclass;
	size_t qend;		/* where the question ends: the header and it */
	uint16_t edns;		/* the client's EDNS0 UDP size (OPT), 512..DNS_EDNS_MAX;
				 * 0 without EDNS */
	char name[256];		/* lower case, no final dot */
};

static inline uint16_t
dns_get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void
dns_put16(unsigned char *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

/* Parse buf[len] as a query. 0: a query to handle, q filled; -1: not even
 * a usable header, or a response: drop it; >0: answer with this rcode
 * (FORMERR, NOTIMP) and no question (dns_build_rcode with qend DNS_HDR).
 * The question name must not be compressed, so that it can be copied
 * verbatim and answers can point at it. */
int dns_parse_query(const unsigned char *buf, size_t len, struct dns_question *q);

/* Build into out[outmax] (outmax >= qend) the response to query, whose
 * question ends at qend (DNS_HDR for none): the query's id, opcode and RD,
 * rcode, the question, and for rcode 0 one record of type qtype (A or
 * AAAA) per address in addrs that parses, named by a pointer to the
 * question (0xC00C). Records that do not fit are left out and TC is set.
 * Returns the length. */
size_t dns_build_answer(unsigned char *out, size_t outmax, const unsigned char *query,
    size_t qend, int rcode, int qtype, const char *const *addrs, size_t naddrs, uint32_t ttl);
/* The same with no records: an error (SERVFAIL, NXDOMAIN, REFUSED...), or
 * rcode 0 with an empty answer. */
size_t dns_build_rcode(unsigned char *out, size_t outmax, const unsigned char *query,
    size_t qend, int rcode);

/* A record of the manager's answer (PROTOCOL.md 4.2), fields checked by
 * kb_msg_dns_record: owner without the final dot, type, TTL, data as text:
 * an address (A, AAAA), a name (NS, CNAME, PTR), "PREF NAME" (MX), "PRIO
 * WEIGHT PORT NAME" (SRV), else the data in hex. */
struct dns_rr {
	const char *name;
	uint16_t type;
	uint32_t ttl;
	const char *data;
};
#define DNS_RR_DATA_MAX		1024	/* a record's data, in wire form */

/* Build into out[outmax] the response to query (question ending at qend)
 * with rcode and, for rcode 0, the records rrs[n] in their order. A record
 * owned by asked (the absolute name the manager was asked) is named by a
 * pointer to the question; others by their own names. Records that do not
 * fit are left out and TC is set. If a record's data does not parse as its
 * type says, *bad is set and nothing is built (the caller answers
 * SERVFAIL). Returns the length. */
size_t dns_build_records(unsigned char *out, size_t outmax, const unsigned char *query,
    size_t qend, int rcode, const struct dns_rr *rrs, size_t n, const char *asked, int *bad);

/* The largest UDP answer to a client whose query said edns (0: none),
 * with room for the OPT record dns_add_opt appends. */
size_t dns_udp_max(uint16_t edns);
/* Append to the answer out[len] (room outmax) the OPT record of an EDNS0
 * answer saying our UDP size, when the query had EDNS (edns != 0). The new
 * length (len if edns is 0 or it does not fit). */
size_t dns_add_opt(unsigned char *out, size_t len, size_t outmax, uint16_t edns);

/* Does a[alen] (an upstream's answer) carry the same question as query b,
 * whose question ends at qend? The name compares byte for byte but for
 * case (0x20 mixing), type and class exactly. */
int dns_same_question(const unsigned char *a, size_t alen, const unsigned char *b, size_t qend);

#endif
