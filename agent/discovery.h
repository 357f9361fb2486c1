/* What the in-cluster manager learns from the API and keeps current: the
 * cluster subnets (the service CIDRs and the pod CIDRs) and the namespaces.
 * The service CIDRs come from ServiceCIDR objects where the API serves them
 * (and the manager may read them), else from the error a dry-run Service
 * with an impossible clusterIP gets; the pod CIDRs from the nodes'
 * spec.podCIDRs, else a cover of the pods' IPs. Everything is watched; the
 * callbacks run with the complete new list whenever it changes. */
#ifndef KB_DISCOVERY_H
#define KB_DISCOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct event_base;
struct kb_kube;
struct discovery;

#define DISCOVERY_MAX_SUBNETS 64
#define DISCOVERY_MAX_NAMESPACES 256

struct discovery_cbs {
	/* Service CIDRs then pod CIDRs, no duplicates; borrowed. Called once
	 * both are known, then on every change. */
	void (*on_subnets)(void *arg, const struct kb_cidr *subnets, size_t n);
	/* Namespace names, sorted; borrowed. Called once listed, then on
	 * every change. */
	void (*on_namespaces)(void *arg, const char *const *names, size_t n);
	void *arg;
};

/* Start discovering with kube (borrowed; it must outlive the discovery).
 * ns: the manager's namespace (the dry-run Service is made there). cbs is
 * copied. NULL when out of memory. */
struct discovery *discovery_new(struct event_base *base, struct kb_kube *kube, const char *ns,
    const struct discovery_cbs *cbs);
void discovery_free(struct discovery *d);

/* The IPv4 ranges in an API error "... The range of valid IPs is
 * 10.96.0.0/16" (also "A and B", "A, B"): up to max into out. Returns how
 * many, 0 if the message has none. */
size_t discovery_parse_range(const char *msg, struct kb_cidr *out, size_t max);
/* A cover of the addresses ips (host order, any order): per /16 that holds
 * any, the smallest prefix of at most /24 holding all of that /16's
 * addresses. Up to max into out, ascending. Returns how many. */
size_t discovery_cover(const uint32_t *ips, size_t n, struct kb_cidr *out, size_t max);

/* The cluster domain a pod's resolv.conf implies: its search list holds
 * "svc.DOMAIN" (kubelet writes "NS.svc.DOMAIN svc.DOMAIN DOMAIN"). 0 with
 * DOMAIN in out, or -1 if there is none (or it does not fit). */
int discovery_domain_from_resolv(const char *resolv, char *out, size_t len);

#endif
