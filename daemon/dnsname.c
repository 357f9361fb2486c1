/* Cluster name classification for the DNS proxy (see dnsname.h). Pure: no
 * I/O; allocation only for the zone's own copies. */
#include "dnsname.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
dns_is_namespace(const struct dns_zone *z, const char *s, size_t len)
{
	size_t i;

	if (len == 0 || memchr(s, '.', len))
		return 0;
	for (i = 0; i < z->nnamespaces; i++)
		if (strlen(z->namespaces[i]) == len && !memcmp(z->namespaces[i], s, len))
			return 1;
	return 0;
}

int
dns_zone_in_domain(const struct dns_zone *z, const char *name)
{
	size_t n = strlen(name), dl;

	if (!z->domain)
		return 0;
	dl = strlen(z->domain);
	return n >= dl && !strcmp(name + n - dl, z->domain) && (n == dl || name[n - dl - 1] == '.');
}

/* out = s[len] + suffix, if it is a DNS name's length (253 at most). */
static int
dns_absolute(char *out, size_t outlen, const char *s, size_t len, const char *suffix)
{
	int n = snprintf(out, outlen, "%.*s%s", (int)len, s, suffix);

	return n > 0 && (size_t)n < outlen && n <= DNS_ZONE_NAME_MAX;
}

int
dns_zone_classify(const struct dns_zone *z, const char *name, char *out, size_t outlen,
    int *single)
{
	char suffix[DNS_ZONE_NAME_MAX + 8];
	const char *rest;
	size_t n;

	*single = 0;
	if (!z->domain || name[0] == '\0' || strchr(name, '\\'))
		return 0;
	n = strlen(name);
	if (dns_zone_in_domain(z, name))
		return dns_absolute(out, outlen, name, n, "");
	snprintf(suffix, sizeof(suffix), ".svc.%s", z->domain);
	if ((rest = strchr(name, '.')) == NULL) {
		if (!strcmp(name, "localhost") || !z->connected_ns)
			return 0;
		snprintf(suffix, sizeof(suffix), ".%s.svc.%s", z->connected_ns, z->domain);
		*single = 1;
		return dns_absolute(out, outlen, name, n, suffix);
	}
	rest++;
	/* NAME.NS: the search list's NS.svc.DOMAIN would not have it, the
	 * next one, svc.DOMAIN, does. */
	if (dns_is_namespace(z, rest, strlen(rest)))
		return dns_absolute(out, outlen, name, n, suffix);
	if (n > 4 && !strcmp(name + n - 4, ".svc") && rest < name + n - 4 &&
	    dns_is_namespace(z, rest, (size_t)(name + n - 4 - rest)))
		return dns_absolute(out, outlen, name, n - 4, suffix);
	return 0;
}

/* Lower case, without the final dot; NULL for an empty name. */
static char *
dns_norm(const char *s)
{
	char *n;
	size_t i, len;

	if (!s)
		return NULL;
	len = strlen(s);
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || (n = malloc(len + 1)) == NULL)
		return NULL;
	for (i = 0; i < len; i++)
		n[i] = (char)tolower((unsigned char)s[i]);
	n[len] = '\0';
	return n;
}

int
dns_zone_set_subnets(struct dns_zone *z, const struct kb_cidr *subnets, size_t n)
{
	free(z->subnets);
	z->subnets = NULL;
	z->nsubnets = 0;
	if (n == 0)
		return 0;
	if ((z->subnets = calloc(n, sizeof(*subnets))) == NULL)
		return -1;
	memcpy(z->subnets, subnets, n * sizeof(*subnets));
	z->nsubnets = n;
	return 0;
}

int
dns_zone_reverse(const struct dns_zone *z, const char *name)
{
	static const char suffix[] = "in-addr.arpa";
	uint32_t addr = 0;
	unsigned long v;
	const char *p = name;
	size_t i, len;

	for (i = 0; i < 4; i++) {
		len = strspn(p, "0123456789");
		if (len == 0 || len > 3 || p[len] != '.' || (len > 1 && p[0] == '0'))
			return 0;
		v = strtoul(p, NULL, 10);
		if (v > 255)
			return 0;
		addr |= (uint32_t)v << (8 * i);
		p += len + 1;
	}
	if (strcmp(p, suffix) != 0)
		return 0;
	for (i = 0; i < z->nsubnets; i++)
		if (kb_cidr_contains(&z->subnets[i], addr))
			return 1;
	return 0;
}

void
dns_zone_clear(struct dns_zone *z)
{
	size_t i;

	for (i = 0; i < z->nnamespaces; i++)
		free(z->namespaces[i]);
	free(z->namespaces);
	free(z->domain);
	free(z->connected_ns);
	free(z->subnets);
	z->subnets = NULL;
	z->nsubnets = 0;
	z->namespaces = NULL;
	z->nnamespaces = 0;
	z->domain = z->connected_ns = NULL;
}

int
dns_zone_set(struct dns_zone *z, const char *domain, const char *const *namespaces,
    size_t nnamespaces, const char *connected_ns)
{
	struct kb_cidr *subnets = z->subnets;
	size_t i, nsubnets = z->nsubnets;

	z->subnets = NULL;	/* kept */
	dns_zone_clear(z);
	z->subnets = subnets;
	z->nsubnets = nsubnets;
	if ((z->domain = dns_norm(domain)) == NULL)
		return 0;
	z->connected_ns = dns_norm(connected_ns);
	if (nnamespaces && (z->namespaces = calloc(nnamespaces, sizeof(char *))) == NULL)
		return -1;
	for (i = 0; i < nnamespaces; i++)
		if ((z->namespaces[z->nnamespaces] = dns_norm(namespaces[i])) != NULL)
			z->nnamespaces++;
	return 0;
}
