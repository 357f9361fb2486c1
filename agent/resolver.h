/* Cluster name resolution for the manager, with c-ares on the event loop. */
#ifndef KB_RESOLVER_H
#define KB_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct kb_resolver;

/* rcode is a DNS rcode (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN); addrs are text
 * IPv4 (qtype 1) or IPv6 (qtype 28) addresses; ttl in seconds: for a
 * negative answer (NXDOMAIN, or none of the type) the cluster DNS's SOA
 * minimum (RFC 2308), 0 without an SOA (not to be kept). */
typedef void (*resolver_cb)(void *arg, int rcode, const char *const *addrs, size_t naddrs,
    uint32_t ttl);

/* One record of an answer section, as "resolved" carries it (PROTOCOL.md
 * 4.2): owner name without the final dot, type, TTL, data as text. */
struct resolver_rr {
	char name[256];
	uint16_t type;
	uint32_t ttl;
	char data[1025];	/* KB_DNS_DATA_MAX + 1 */
};
/* rcode as above (2 also for an answer malformed or too big: more than
 * KB_DNS_RECORDS_MAX records or 8 KiB of them); rrs the answer section's
 * records of class IN and of a type kb_dns_qtype_ok() takes (others are
 * left out), in the server's order (a CNAME chain first); ttl the smallest
 * of theirs, or for a negative answer as above. */
typedef void (*resolver_rr_cb)(void *arg, int rcode, const struct resolver_rr *rrs, size_t n,
    uint32_t ttl);

/* server: "IP" or "IP:PORT" to use instead of the system resolver
 * configuration (/etc/resolv.conf, including its search list and ndots). */
struct kb_resolver *resolver_new(struct event_base *base, const char *server, char *err,
    size_t errlen);
/* Resolve name (qtype 1 = A, 28 = AAAA) with the search list; cb is called
 * exactly once, possibly before this returns. */
void resolver_lookup(struct kb_resolver *r, const char *name, int qtype, resolver_cb cb,
    void *arg);
/* The same for records of any type kb_dns_qtype_ok() takes (SERVFAIL for
 * another): the answer section as it is, CNAME chain and all. */
void resolver_lookup_rr(struct kb_resolver *r, const char *name, int qtype, resolver_rr_cb cb,
    void *arg);
/* Pending lookups complete with SERVFAIL before this returns. */
void resolver_free(struct kb_resolver *r);

#endif
