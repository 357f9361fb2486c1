/* All the daemon's packet rules live in one nftables table per instance,
 * created with "flags owner" through a netlink socket this process holds, so
 * the kernel deletes the table when the process dies, even by SIGKILL. */
#ifndef KB_FIREWALL_H
#define KB_FIREWALL_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Packets from the daemon's own sockets carry this mark and are never redirected. */
#define KB_FW_MARK 0x6b62u

struct kb_fw;

struct kb_fw_config {
	const struct kb_cidr *subnets; /* TCP to these goes to proxy_port */
	size_t nsubnets;
	uint16_t proxy_port;           /* on 127.0.0.1 */
	const uint32_t *dns_servers;   /* IPv4, host order: DNS to these goes to dns_port */
	size_t ndns;
	uint16_t dns_port;             /* UDP and TCP on 127.0.0.1 */
};

/* Open the nftables context for table "kbridge" (or "kbridge_<instance>")
 * and delete a stale copy of the table left by an older run. Fails with a
 * clear err if another live daemon owns the table. */
struct kb_fw *fw_open(const char *instance, char *err, size_t errlen);
/* Install the rules atomically, replacing any earlier set. On failure the
 * previous rules stay as they were. */
int fw_apply(struct kb_fw *fw, const struct kb_fw_config *cfg, char *err, size_t errlen);
const char *fw_table(const struct kb_fw *fw);
/* Delete the table and close the context. */
void fw_close(struct kb_fw *fw);

/* Mark a socket so the rules skip it (SO_MARK; needs CAP_NET_ADMIN). */
int fw_mark_socket(int fd);

#endif
