/* The daemon's own link: a non-persistent TUN device that carries the routes
 * to the cluster subnets. It vanishes, routes and all, when its descriptor
 * closes, so even a SIGKILLed daemon leaves nothing behind. */
#ifndef KB_TUN_H
#define KB_TUN_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct kb_tun;

/* Create the link (name NULL: "kbridge%d"), give it addr/32 (host order),
 * bring it up. NULL with err on failure (nothing left behind). */
struct kb_tun *tun_open(const char *name, uint32_t addr, char *err, size_t errlen);
/* Route a subnet through the link with the link's address as source. */
int tun_route_add(struct kb_tun *t, const struct kb_cidr *c, char *err, size_t errlen);
/* Remove such a route. */
int tun_route_del(struct kb_tun *t, const struct kb_cidr *c, char *err, size_t errlen);
/* The descriptor to watch for readability; packets that reach the link
 * (anything the redirect does not take, e.g. UDP) are read and dropped. */
int tun_fd(const struct kb_tun *t);
void tun_drain(struct kb_tun *t);
const char *tun_name(const struct kb_tun *t);
/* Close the descriptor: the kernel removes the link and its routes. */
void tun_close(struct kb_tun *t);

#endif
