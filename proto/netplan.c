/* The proxied ranges: cluster subnets plus also-proxy, less never-proxy
 * (see netplan.h). CIDRs either nest or are disjoint, which keeps every
 * step here a comparison of prefixes. */
#include "netplan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t
mask_of(uint8_t prefix)
{
	return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

int
kb_cidr_covers(const struct kb_cidr *a, const struct kb_cidr *b)
{
	return a->prefix <= b->prefix && (b->addr & mask_of(a->prefix)) == a->addr;
}

int
kb_cidr_overlap(const struct kb_cidr *a, const struct kb_cidr *b)
{
	return kb_cidr_covers(a, b) || kb_cidr_covers(b, a);
}

int
kb_cidr_list_eq(const struct kb_cidr *a, size_t na, const struct kb_cidr *b, size_t nb)
{
	size_t i;

	if (na != nb)
		return 0;
	for (i = 0; i < na; i++)
		if (a[i].addr != b[i].addr || a[i].prefix != b[i].prefix)
			return 0;
	return 1;
}

/* s fit to repeat in a one-line error: printable ASCII, cut short. */
static const char *
shown(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 4 < len; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? '?' : s[i];
	if (s[i] != '\0')
		memcpy(buf + i, "...", 4);
	else
		buf[i] = '\0';
	return buf;
}

int
kb_netplan_user_cidr(const char *s, struct kb_cidr *out, char *err, size_t errlen)
{
	static const struct kb_cidr bad[] = {
		{ 0x00000000u, 8 },	/* "this network" */
		{ 0x7f000000u, 8 },	/* loopback */
		{ 0xa9fe0000u, 16 },	/* link-local */
		{ 0xe0000000u, 3 },	/* multicast, reserved, broadcast */
	};
	struct kb_cidr c;
	char buf[48];
	size_t i;

	if (kb_cidr_parse(s, &c) < 0) {
		snprintf(err, errlen, "'%s' is not a CIDR range A.B.C.D/N "
		    "(with no host bits set)", shown(s, buf, sizeof(buf)));
		return -1;
	}
	if (c.prefix == 0) {
		snprintf(err, errlen, "%s is every address, not a range", s);
		return -1;
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (kb_cidr_overlap(&c, &bad[i])) {
			snprintf(err, errlen, "%s overlaps %s, which kbridge never proxies",
			    s, kb_cidr_str(&bad[i], buf, sizeof(buf)));
			return -1;
		}
	}
	*out = c;
	return 0;
}

int
kb_cidr_cmp(const void *a, const void *b)
{
	const struct kb_cidr *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return (int)x->prefix - (int)y->prefix;
}

/* Append c to out unless full: 0, or -1. */
static int
push(struct kb_cidr *out, size_t *n, size_t max, struct kb_cidr c)
{
	if (*n >= max)
		return -1;
	out[(*n)++] = c;
	return 0;
}

/* Append r less every never[] range to out. */
static int
subtract(struct kb_cidr r, const struct kb_cidr *never, size_t nnever, struct kb_cidr *out,
    size_t *n, size_t max)
{
	struct kb_cidr lo, hi;
	size_t i;

	for (i = 0; i < nnever; i++) {
		if (kb_cidr_covers(&never[i], &r))
			return 0;
		if (kb_cidr_covers(&r, &never[i]))
			break;
	}
	if (i == nnever)
		return push(out, n, max, r);
	/* A hole inside r: split r in two halves and go on with each. */
	lo.prefix = hi.prefix = r.prefix + 1;
	lo.addr = r.addr;
	hi.addr = r.addr | (1u << (31 - r.prefix));
	if (subtract(lo, never, nnever, out, n, max) < 0)
		return -1;
	return subtract(hi, never, nnever, out, n, max);
}

int
kb_netplan(const struct kb_cidr *in, size_t nin, const struct kb_cidr *also, size_t nalso,
    const struct kb_cidr *never, size_t nnever, struct kb_cidr *out, size_t max)
{
	struct kb_cidr *all;
	size_t i, j, nall = nin + nalso, n = 0;
	int rc = 0;

	if (nall == 0)
		return 0;
	if ((all = calloc(nall, sizeof(*all))) == NULL)
		return -1;
	for (i = 0; i < nin; i++)
		all[i] = in[i];
	for (i = 0; i < nalso; i++)
		all[nin + i] = also[i];
	/* Sorted by address, then prefix: a range comes before those inside it. */
	qsort(all, nall, sizeof(*all), kb_cidr_cmp);
	for (i = 0; i < nall && rc == 0; i++) {
		for (j = 0; j < i; j++)
			if (kb_cidr_covers(&all[j], &all[i]))
				break;
		if (j < i)
			continue;
		rc = subtract(all[i], never, nnever, out, &n, max);
	}
	free(all);
	return rc < 0 ? -1 : (int)n;
}
