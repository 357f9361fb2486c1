/* Virtual addresses for cluster addresses the workstation keeps local
 * (VNAT). When a cluster range collides with a local network the user
 * keeps (--never-proxy), a cluster name there resolves to an address of a
 * virtual range free on the workstation; kbridge routes that range to
 * itself and maps each virtual address back to the real cluster address
 * before dialing, while the raw addresses keep reaching the local network.
 * Pure: a bounded table, one virtual address per real one (stable for the
 * table's life, never reused), and the range arithmetic around it. Shared
 * by the daemon's DNS proxy (answers, PTR) and its transparent listener.
 * Checked by tests/unit/test_vnat.c. */
#ifndef KB_VNAT_H
#define KB_VNAT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* At most this many virtual addresses in one table. */
#define KB_VNAT_MAX		4096
/* At most this many translated (kept-local cluster) ranges. */
#define KB_VNAT_RANGES		64
/* The name of a mapping: a DNS name without the final dot. */
#define KB_VNAT_NAME_MAX	254
/* Where kbridge looks for a free virtual range: /16 blocks of the shared
 * address space 100.64.0.0/10 (RFC 6598), first free one wins. */
#define KB_VNAT_POOL		0x64400000u
#define KB_VNAT_POOL_PREFIX	10
#define KB_VNAT_AUTO_PREFIX	16

struct kb_vnat;

/* The cluster addresses kept local: every part of a cluster range in[]
 * that lies inside a never[] range, as CIDRs, sorted, no duplicates. At
 * most max; the count, or -1 if more. */
int kb_vnat_kept(const struct kb_cidr *in, size_t nin, const struct kb_cidr *never,
    size_t nnever, struct kb_cidr *out, size_t max);
/* The first /KB_VNAT_AUTO_PREFIX block of the pool that overlaps none of
 * busy[] (routes, addresses, cluster and proxied ranges): 0, or -1 if the
 * pool has none free. */
int kb_vnat_pick(const struct kb_cidr *busy, size_t nbusy, struct kb_cidr *out);

/* A table for the virtual range sub (at least 4 addresses; up to
 * min(KB_VNAT_MAX, size - 2) mappings: not the range's first and last
 * address) translating addresses in kept[nkept]. NULL if out of memory or
 * a bad argument. */
struct kb_vnat *kb_vnat_new(const struct kb_cidr *sub, const struct kb_cidr *kept,
    size_t nkept);
void kb_vnat_free(struct kb_vnat *);
/* Replace the kept ranges (the cluster's subnets changed); mappings made
 * stay. -1 if more than KB_VNAT_RANGES. */
int kb_vnat_set_kept(struct kb_vnat *, const struct kb_cidr *kept, size_t nkept);
const struct kb_cidr *kb_vnat_subnet(const struct kb_vnat *);
const struct kb_cidr *kb_vnat_kept_ranges(const struct kb_vnat *, size_t *n);
/* Is real (host order) an address that is translated? */
int kb_vnat_translates(const struct kb_vnat *, uint32_t real);
/* The virtual address of real, made now if new, named name (the first
 * name stays; NULL or too long: no name). 0, or -1 if real is not
 * translated or the table is full. */
int kb_vnat_map(struct kb_vnat *, uint32_t real, const char *name, uint32_t *virt);
/* The real address behind virt: 0, or -1 if virt maps nothing. */
int kb_vnat_real(const struct kb_vnat *, uint32_t virt, uint32_t *real);
/* The name of virt's mapping, or NULL. */
const char *kb_vnat_name(const struct kb_vnat *, uint32_t virt);
/* Mappings made, and the i-th (in the order made): 0, or -1. */
size_t kb_vnat_count(const struct kb_vnat *);
size_t kb_vnat_cap(const struct kb_vnat *);
int kb_vnat_get(const struct kb_vnat *, size_t i, uint32_t *virt, uint32_t *real,
    const char **name);
/* The user's --virtual-subnet: "off" (1: no translation), or a range
 * kb_netplan_user_cidr takes, /8 to /30, in out (0); -1 with a one-line
 * why otherwise. */
int kb_vnat_user_subnet(const char *s, struct kb_cidr *out, char *err, size_t errlen);
/* Parse a reverse name "D.C.B.A.in-addr.arpa" (lower case, no final dot)
 * into the address A.B.C.D: 0, or -1. */
int kb_vnat_ptr_addr(const char *name, uint32_t *addr);

#endif
