/* Which IPv4 ranges the workstation sends through kbridge: the cluster's
 * subnets and the user's also-proxy ranges, less the never-proxy ones.
 * Pure functions on struct kb_cidr lists, shared by the CLI (checking
 * --never-proxy/--also-proxy) and the daemon (routes and redirect rules). */
#ifndef KB_NETPLAN_H
#define KB_NETPLAN_H

#include <stddef.h>

#include "util.h"

/* At most this many --never-proxy or --also-proxy ranges each. */
#define KB_NETPLAN_USER_MAX	32
/* At most this many proxied ranges (routes) after subtracting never-proxy. */
#define KB_NETPLAN_MAX		256

/* Do the two ranges share an address? (One then contains the other.) */
/* qsort order of struct kb_cidr: by address, then prefix length. */
int kb_cidr_cmp(const void *a, const void *b);
int kb_cidr_overlap(const struct kb_cidr *a, const struct kb_cidr *b);
/* Does a contain all of b? */
int kb_cidr_covers(const struct kb_cidr *a, const struct kb_cidr *b);
/* Are the lists the same, in the same order? (Not memcmp: struct padding.) */
int kb_cidr_list_eq(const struct kb_cidr *a, size_t na, const struct kb_cidr *b, size_t nb);
/* A range kbridge may take from the user: "A.B.C.D/N" exactly (no host
 * bits, /1 to /32), not loopback, link-local, multicast or above, nor
 * 0.0.0.0/8. 0, or -1 with a one-line why (naming s). */
int kb_netplan_user_cidr(const char *s, struct kb_cidr *out, char *err, size_t errlen);
/* The proxied ranges: every range of in[0..nin) and also[0..nalso), with
 * duplicates and ranges inside others dropped, less every never[] range
 * (a range partly covered is split into the CIDRs around the hole), sorted
 * by address. Writes at most max to out; the count, or -1 if more. */
int kb_netplan(const struct kb_cidr *in, size_t nin, const struct kb_cidr *also,
    size_t nalso, const struct kb_cidr *never, size_t nnever, struct kb_cidr *out,
    size_t max);

#endif
