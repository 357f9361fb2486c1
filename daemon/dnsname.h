/* Which names the DNS proxy sends to the manager: the cluster domain and
 * what is under it, NAME.NAMESPACE[.svc] for the cluster's namespaces, and
 * single labels (qualified with the connected namespace), each made the
 * absolute name under the domain. Pure: no I/O;
 * the zone owns copies of what it was given. Checked by
 * tests/unit/test_dns.c (test_classify), fuzzed by tests/fuzz/fuzz_dns.c. */
#ifndef KB_DNSNAME_H
#define KB_DNSNAME_H

#include <stddef.h>

#include "util.h"	/* struct kb_cidr */

#define DNS_ZONE_NAME_MAX	253	/* a name in presentation form, no final dot */

/* Names normalized: lower case, no final dot. All NULL/0: no cluster
 * known, nothing is a cluster name. */
struct dns_zone {
	char *domain;
	char **namespaces;
	size_t nnamespaces;
	char *connected_ns;	/* NULL: single labels stay local */
	struct kb_cidr *subnets;	/* whose addresses' names (PTR) are the cluster's */
	size_t nsubnets;
};

/* Replace z's contents with normalized copies. A NULL or empty domain
 * leaves z empty. -1 if out of memory (z then knows the domain and the
 * connected namespace but no namespace), else 0. */
int dns_zone_set(struct dns_zone *z, const char *domain, const char *const *namespaces,
    size_t nnamespaces, const char *connected_ns);
/* Replace z's subnets with a copy of subnets[n]; -1 if out of memory
 * (then z has none). dns_zone_set keeps them, dns_zone_clear frees them. */
int dns_zone_set_subnets(struct dns_zone *z, const struct kb_cidr *subnets, size_t n);
/* Is name (normalized) D.C.B.A.in-addr.arpa for an address A.B.C.D in one
 * of z's subnets? */
int dns_zone_reverse(const struct dns_zone *z, const char *name);
/* Free z's contents; z is empty after. */
void dns_zone_clear(struct dns_zone *z);
/* Is name (normalized) the cluster domain or under it? */
int dns_zone_in_domain(const struct dns_zone *z, const char *name);
/* Is name (normalized) a cluster name? If so, out gets what to ask the
 * manager: the absolute name the cluster's search list would have found
 * (NAME.NS[.svc] and NAME, qualified with the connected namespace, become
 * NAME.NS.svc.DOMAIN), so that the manager asks the cluster's DNS one
 * query and not one per search domain; *single tells a qualified single
 * label. 0 also when it does not fit in out or is over 253 characters. */
int dns_zone_classify(const struct dns_zone *z, const char *name, char *out, size_t outlen,
    int *single);

#endif
