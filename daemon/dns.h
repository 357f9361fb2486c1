/* The daemon's DNS proxy: answers cluster names through the manager and
 * forwards every other query, unchanged, to the original resolver. */
#ifndef KB_DNS_H
#define KB_DNS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct kb_dns;

/* Completion of a cluster lookup: rcode (0, 2 SERVFAIL, 3 NXDOMAIN), text
 * addresses of the asked type, TTL in seconds. */
typedef void (*dns_done_fn)(void *ctx, int rcode, const char *const *addrs, size_t naddrs,
    uint32_t ttl);

struct dns_rr;

/* Completion of a lookup of records: rcode as above; rrs[n] the answer
 * section's records (checked by kb_msg_dns_record), CNAME chain and all;
 * ttl for a negative answer (0: not to be kept). */
typedef void (*dns_done_rr_fn)(void *ctx, int rcode, const struct dns_rr *rrs, size_t n,
    uint32_t ttl);

struct kb_dns_hooks {
	/* Ask the manager to resolve name: absolute (NAME.NS.svc.DOMAIN for
	 * what the user typed as NAME.NS, see dnsname.h), lower case, without
	 * the final dot, 253 characters at most. qtype 1 or 28. Return 0 and call done
	 * exactly once later, or -1 if there is no session (the proxy answers
	 * SERVFAIL itself). */
	int (*resolve)(void *arg, const char *name, int qtype, dns_done_fn done, void *ctx);
	/* The same for records of any type kb_dns_qtype_ok() takes (PTR,
	 * SRV, TXT... and A, AAAA with their CNAME chain); -2 if the manager
	 * cannot answer records (the proxy then uses resolve). May be NULL. */
	int (*resolve_rr)(void *arg, const char *name, int qtype, dns_done_rr_fn done,
	    void *ctx);
	void *arg;
};

/* Bind UDP and TCP on 127.0.0.1 (port 0 = any free one). Upstream resolvers
 * are read from resolv_conf (NULL: /etc/resolv.conf). */
struct kb_dns *dns_new(struct event_base *base, const struct kb_dns_hooks *hooks,
    const char *resolv_conf, uint16_t port, char *err, size_t errlen);
uint16_t dns_port(const struct kb_dns *d);
/* The upstream resolvers (IPv4, host order) whose traffic must be redirected. */
size_t dns_upstreams(const struct kb_dns *d, const uint32_t **addrs);
/* What counts as a cluster name. namespaces are the cluster's namespaces;
 * connected_ns qualifies single labels. Copies everything. */
void dns_set_cluster(struct kb_dns *d, const char *domain, const char *const *namespaces,
    size_t nnamespaces, const char *connected_ns);
/* The cluster's subnets: a PTR query for one of their addresses is the
 * cluster's (if the manager answers records). Copies them. */
struct kb_cidr;
void dns_set_subnets(struct kb_dns *d, const struct kb_cidr *subnets, size_t n);
/* Answer A records of kept-local cluster addresses with virtual ones, and
 * PTR queries of the virtual range, from v (not taken; NULL: no more). */
struct kb_vnat;
void dns_set_vnat(struct kb_dns *d, struct kb_vnat *v);
void dns_free(struct kb_dns *d);

/* For tests: send upstream queries to this port instead of 53. */
void dns_set_upstream_port(struct kb_dns *d, uint16_t port);

#endif
