/* The DNS proxy's cache of cluster answers (see dnscache.h): a fixed
 * table hashed by name and type (FNV-1a), one entry a slot. Pure: no I/O,
 * no clock of its own. Negative answers (NXDOMAIN, or no record of the
 * type) take a slot like the others, with no address. */
#include "dnscache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dns_cache_entry {
	uint64_t expires;		/* now_ms of the caller; 0 = empty */
	uint16_t qtype;
	char name[DNS_CACHE_NAME_LEN];
	char addrs[DNS_CACHE_ADDRS][DNS_CACHE_ADDR_LEN];
	size_t naddrs;			/* 0: a negative answer */
	int rcode;			/* 0, or NXDOMAIN for a negative answer */
};

struct dns_cache {
	struct dns_cache_entry *slots;	/* DNS_CACHE_SLOTS, allocated on first put */
};

struct dns_cache *
dns_cache_new(void)
{
	return calloc(1, sizeof(struct dns_cache));
}

void
dns_cache_free(struct dns_cache *c)
{
	if (!c)
		return;
	free(c->slots);
	free(c);
}

void
dns_cache_clear(struct dns_cache *c)
{
	if (c && c->slots)
		memset(c->slots, 0, DNS_CACHE_SLOTS * sizeof(*c->slots));
}

static size_t
dns_cache_hash(const char *name, uint16_t qtype)
{
	uint32_t h = 2166136261u ^ qtype;
	const char *p;

	for (p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % DNS_CACHE_SLOTS;
}

/* The live entry for name and qtype, or NULL. */
static const struct dns_cache_entry *
dns_cache_find(const struct dns_cache *c, const char *name, uint16_t qtype, uint64_t now_ms)
{
	const struct dns_cache_entry *e;

	if (!c || !c->slots)
		return NULL;
	e = &c->slots[dns_cache_hash(name, qtype)];
	if (e->expires <= now_ms || e->qtype != qtype || strcmp(e->name, name) != 0)
		return NULL;
	return e;
}

/* The slot for name and qtype, taken over; NULL if it cannot be. */
static struct dns_cache_entry *
dns_cache_slot(struct dns_cache *c, const char *name, uint16_t qtype)
{
	struct dns_cache_entry *e;

	if (!c || strlen(name) >= sizeof(e->name))
		return NULL;
	if (!c->slots && (c->slots = calloc(DNS_CACHE_SLOTS, sizeof(*c->slots))) == NULL)
		return NULL;
	e = &c->slots[dns_cache_hash(name, qtype)];
	memset(e, 0, sizeof(*e));
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->qtype = qtype;
	return e;
}

static uint64_t
dns_cache_expiry(uint32_t ttl, uint32_t max, uint64_t now_ms)
{
	return now_ms + 1000ull * (ttl < max ? ttl : max);
}

void
dns_cache_put(struct dns_cache *c, const char *name, uint16_t qtype, const char *const *addrs,
    size_t naddrs, uint32_t ttl, uint64_t now_ms)
{
	struct dns_cache_entry *e;
	size_t i;

	if (ttl == 0 || naddrs == 0 || naddrs > DNS_CACHE_ADDRS)
		return;
	for (i = 0; i < naddrs; i++)
		if (strlen(addrs[i]) >= sizeof(e->addrs[i]))
			return;
	if ((e = dns_cache_slot(c, name, qtype)) == NULL)
		return;
	for (i = 0; i < naddrs; i++)
		snprintf(e->addrs[i], sizeof(e->addrs[i]), "%s", addrs[i]);
	e->naddrs = naddrs;
	e->expires = dns_cache_expiry(ttl, DNS_CACHE_TTL_MAX, now_ms);
}

void
dns_cache_put_negative(struct dns_cache *c, const char *name, uint16_t qtype, int rcode,
    uint32_t ttl, uint64_t now_ms)
{
	struct dns_cache_entry *e;

	if (ttl == 0 || (rcode != 0 && rcode != DNS_CACHE_NXDOMAIN) ||
	    (e = dns_cache_slot(c, name, qtype)) == NULL)
		return;
	e->rcode = rcode;
	e->expires = dns_cache_expiry(ttl, DNS_CACHE_NEG_TTL_MAX, now_ms);
}

int
dns_cache_get(const struct dns_cache *c, const char *name, uint16_t qtype, uint64_t now_ms,
    const char **addrs, size_t *naddrs, uint32_t *ttl)
{
	const struct dns_cache_entry *e;
	size_t i;

	if ((e = dns_cache_find(c, name, qtype, now_ms)) == NULL)
		return -1;
	for (i = 0; i < e->naddrs; i++)
		addrs[i] = e->addrs[i];
	*naddrs = e->naddrs;
	*ttl = (uint32_t)((e->expires - now_ms + 999) / 1000);
	return e->rcode;
}

int
dns_cache_knows(const struct dns_cache *c, const char *name, uint64_t now_ms)
{
	const struct dns_cache_entry *a = dns_cache_find(c, name, 1, now_ms),	/* A */
	    *aaaa = dns_cache_find(c, name, 28, now_ms);			/* AAAA */

	return (a && a->naddrs) || (aaaa && aaaa->naddrs);
}
