/* agent/discovery.c's pure parts: the service range out of a dry-run
 * Service's error, and the cover of pod addresses. */
#include "../../agent/discovery.c"

#include "ok.h"

static const char *
str(const struct kb_cidr *c)
{
	static char buf[4][32];
	static int i;

	i = (i + 1) % 4;
	return kb_cidr_str(c, buf[i], sizeof(buf[i]));
}

static uint32_t
ip(const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		abort();
	return ntohl(a.s_addr);
}

int
main(void)
{
	struct kb_cidr v[8];
	uint32_t ips[8];
	size_t n;

	/* The API server's text (v1.2x .. v1.35, one range and dual-stack). */
	n = discovery_parse_range("Service \"kbridge-probe-service-range\" is invalid: "
	    "spec.clusterIPs: Invalid value: [\"1.1.1.1\"]: failed to allocate IP 1.1.1.1: the "
	    "provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is "
	    "10.96.0.0/16", v, 8);
	ok(n == 1 && !strcmp(str(&v[0]), "10.96.0.0/16"));
	n = discovery_parse_range("... not in the valid range. The range of valid IPs is "
	    "10.96.0.0/12.", v, 8);
	ok(n == 1 && !strcmp(str(&v[0]), "10.96.0.0/12"));
	n = discovery_parse_range("The range of valid IPs is 10.96.0.0/16 and fd00:10:96::/108",
	    v, 8);
	ok(n == 1 && !strcmp(str(&v[0]), "10.96.0.0/16"));
	n = discovery_parse_range("The range of valid IPs is fd00::/108, 10.0.0.0/24, 10.1.0.0/24",
	    v, 8);
	ok(n == 2 && !strcmp(str(&v[0]), "10.0.0.0/24") && !strcmp(str(&v[1]), "10.1.0.0/24"));
	/* Prose after the range ends it; at most max. */
	n = discovery_parse_range("The range of valid IPs is 10.96.0.0/16 for now", v, 8);
	ok(n == 1);
	n = discovery_parse_range("The range of valid IPs is 10.0.0.0/24, 10.1.0.0/24", v, 1);
	ok(n == 1 && !strcmp(str(&v[0]), "10.0.0.0/24"));
	/* No range: other errors, host bits set, nothing. */
	ok(discovery_parse_range("services is forbidden: User \"x\" cannot create", v, 8) == 0);
	ok(discovery_parse_range("The range of valid IPs is 10.96.0.1/16", v, 8) == 0);
	ok(discovery_parse_range("The range of valid IPs is ", v, 8) == 0);
	ok(discovery_parse_range(NULL, v, 8) == 0);

	/* Cover: one /16 at most /24 wide, grown to hold them all. */
	ips[0] = ip("10.244.0.10");
	ips[1] = ip("10.244.0.11");
	n = discovery_cover(ips, 2, v, 8);
	ok(n == 1 && !strcmp(str(&v[0]), "10.244.0.0/24"));
	ips[2] = ip("10.244.3.7");
	n = discovery_cover(ips, 3, v, 8);
	ok(n == 1 && !strcmp(str(&v[0]), "10.244.0.0/22"));
	ips[3] = ip("10.244.200.1");
	n = discovery_cover(ips, 4, v, 8);
	ok(n == 1 && !strcmp(str(&v[0]), "10.244.0.0/16"));
	/* Another /16 is another range, whatever the order. */
	ips[0] = ip("10.245.1.1");
	n = discovery_cover(ips, 4, v, 8);
	ok(n == 2 && !strcmp(str(&v[0]), "10.244.0.0/16") && !strcmp(str(&v[1]), "10.245.1.0/24"));
	n = discovery_cover(ips, 4, v, 1);
	ok(n == 1);
	ok(discovery_cover(ips, 0, v, 8) == 0);

	/* The cluster domain out of a pod's resolv.conf. */
	{
		char dom[64];

		ok(discovery_domain_from_resolv("nameserver 10.96.0.10\nsearch kbridge.svc.cluster.local "
		    "svc.cluster.local cluster.local\noptions ndots:5\n", dom, sizeof(dom)) == 0 &&
		    !strcmp(dom, "cluster.local"));
		ok(discovery_domain_from_resolv("search\tns.svc.corp.example svc.corp.example.\n", dom,
		    sizeof(dom)) == 0 && !strcmp(dom, "corp.example"));
		ok(discovery_domain_from_resolv("search example.com\nnameserver 1.1.1.1", dom,
		    sizeof(dom)) < 0);
		ok(discovery_domain_from_resolv("searchsvc.x svc.y\n# search svc.z\n", dom,
		    sizeof(dom)) < 0);
		ok(discovery_domain_from_resolv("search svc. svc.BAD svc.ok\n", dom, sizeof(dom)) == 0 &&
		    !strcmp(dom, "ok"));
		ok(discovery_domain_from_resolv("search svc.cluster.local\n", dom, 8) < 0);
		ok(discovery_domain_from_resolv("", dom, sizeof(dom)) < 0);
	}
	return ok_done();
}
