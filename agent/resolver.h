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

/* server: "IP" or "IP:PORT" to use instead of the system resolver
 * configuration (/etc/resolv.conf, including its search list and ndots). */
struct kb_resolver *resolver_new(struct event_base *base, const char *server, char *err,
    size_t errlen);
/* Resolve name (qtype 1 = A, 28 = AAAA) with the search list; cb is called
 * exactly once, possibly before this returns. */
void resolver_lookup(struct kb_resolver *r, const char *name, int qtype, resolver_cb cb,
    void *arg);
/* Pending lookups complete with SERVFAIL before this returns. */
void resolver_free(struct kb_resolver *r);

#endif
