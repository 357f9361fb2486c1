/* The DNS proxy's cache of the manager's answers: positive answers only,
 * kept for their TTL, at most DNS_CACHE_TTL_MAX seconds. Programs ask the
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
/* The live answer for name and qtype: 0 with addrs[DNS_CACHE_ADDRS]
 * pointing into the cache (valid until the next put or clear), *naddrs and
 * the remaining *ttl (seconds, rounded up); -1 if there is none. */
int dns_cache_get(const struct dns_cache *, const char *name, uint16_t qtype, uint64_t now_ms,
    const char **addrs, size_t *naddrs, uint32_t *ttl);
/* Does the cache hold live addresses (A or AAAA) for name? */
int dns_cache_knows(const struct dns_cache *, const char *name, uint64_t now_ms);

#endif
