/* The upstream resolvers of the DNS proxy, read from resolv.conf's
 * nameserver lines. Pure: parses text the caller owns, no I/O. Checked by
 * tests/unit/test_dns.c. */
#ifndef KB_RESOLVCONF_H
#define KB_RESOLVCONF_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#define DNS_MAX_UPSTREAMS	8

struct dns_upstream {
	struct sockaddr_storage ss;	/* port 53 */
	socklen_t len;
};

struct dns_upstreams {
	struct dns_upstream up[DNS_MAX_UPSTREAMS];	/* in the file's order */
	size_t n;
	uint32_t v4[DNS_MAX_UPSTREAMS];	/* the IPv4 ones, host order: to redirect */
	size_t nv4;
};

/* Called with each nameserver whose address does not parse. */
typedef void (*resolv_bad_fn)(void *arg, const char *word);

/* Fill u (zeroed first) from the nameserver lines of text, which is cut up
 * in place. IPv4 and IPv6 (a %zone is dropped); past DNS_MAX_UPSTREAMS the
 * rest are ignored. bad may be NULL. Returns u->n. */
size_t resolv_parse(char *text, struct dns_upstreams *u, resolv_bad_fn bad, void *arg);

/* Point every upstream at port (host order) instead of 53. */
void resolv_set_port(struct dns_upstreams *u, uint16_t port);

#endif
