/* The DNS proxy's cache of the manager's answers, kept for their TTL (at
 * most DNS_CACHE_TTL_MAX seconds), and negative answers (NXDOMAIN, or the
 * name without a record of the type) for the TTL the manager gives them,
 * the cluster DNS's SOA minimum (RFC 2308; at most DNS_CACHE_NEG_TTL_MAX). Programs ask the
 * same names over and over, and the round trip through the cluster costs
 * far more than a lookup here. A fixed table of DNS_CACHE_SLOTS entries
 * (a newer answer takes the slot of an older one), allocated on the first
 * answer kept. Pure: the caller gives the time (kb_now_ms()). Checked by
 * tests/unit/test_dns.c. */
#ifndef KB_DNSCACHE_H
#define KB_DNSCACHE_H

#include <stddef.h>
#include <stdint.h>

#define DNS_CACHE_SLOTS		256
#define DNS_CACHE_ADDRS		8	/* answers with more are not kept */
#define DNS_CACHE_ADDR_LEN	46	/* an address as text, with its NUL */
#define DNS_CACHE_NAME_LEN	320
#define DNS_CACHE_TTL_MAX	30
#define DNS_CACHE_NEG_TTL_MAX	30
#define DNS_CACHE_NXDOMAIN	3

struct dns_cache;

/* NULL if out of memory. */
struct dns_cache *dns_cache_new(void);
void dns_cache_free(struct dns_cache *);
/* Forget every answer (a new session or namespace). */
void dns_cache_clear(struct dns_cache *);

/* Keep addrs (text) for name (normalized) and qtype for ttl seconds from
 * now_ms. Ignored: ttl 0, no address, more than DNS_CACHE_ADDRS, a name or
 * address too long. Copies everything. */
void dns_cache_put(struct dns_cache *, const char *name, uint16_t qtype,
    const char *const *addrs, size_t naddrs, uint32_t ttl, uint64_t now_ms);
/* Keep a negative answer for name and qtype for ttl seconds from now_ms:
 * rcode DNS_CACHE_NXDOMAIN, or 0 for a name without records of qtype
 * (NODATA). Ignored: ttl 0, another rcode, a name too long. */
void dns_cache_put_negative(struct dns_cache *, const char *name, uint16_t qtype, int rcode,
    uint32_t ttl, uint64_t now_ms);
/* The live answer for name and qtype: its rcode (0, or DNS_CACHE_NXDOMAIN)
 * with addrs[DNS_CACHE_ADDRS] pointing into the cache (valid until the next
 * put or clear), *naddrs (0 for a negative answer) and the remaining *ttl
 * (seconds, rounded up); -1 if there is none. */
int dns_cache_get(const struct dns_cache *, const char *name, uint16_t qtype, uint64_t now_ms,
    const char **addrs, size_t *naddrs, uint32_t *ttl);
/* Does the cache hold live addresses (A or AAAA) for name? */
int dns_cache_knows(const struct dns_cache *, const char *name, uint64_t now_ms);

#endif
