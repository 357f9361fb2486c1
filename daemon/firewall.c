/* nftables backend: one table per instance, owned by this process's
 * netlink socket (the libnftables context), replaced atomically. */
#include "firewall.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define FW_INSTANCE_MAX 32

struct kb_fw {
	struct nft_ctx *nft;
	char table[sizeof("kbridge_") + FW_INSTANCE_MAX];
};

enum fw_state { FW_ABSENT, FW_STALE, FW_OWNED };

/* Run one script as one batch (all or nothing). *out, if given, points at
 * the listing until the next run. */
static int
fw_run(struct kb_fw *fw, const char *script, const char **out, char *err, size_t errlen)
{
	const char *e, *o, *p;
	size_t n;
	int rc;

	for (p = script; *p != '\0'; p += n + (p[n] == '\n')) {
		n = strcspn(p, "\n");
		log_debug("nft: %.*s", (int)n, p);
	}
	rc = nft_run_cmd_from_buffer(fw->nft, script);
	/* Fetching the buffers also empties them for the next run. */
	o = nft_ctx_get_output_buffer(fw->nft);
	e = nft_ctx_get_error_buffer(fw->nft);
	if (out != NULL)
		*out = o;
	if (rc == 0)
		return 0;
	if (e == NULL)
		e = "";
	if (strncmp(e, "Error: ", 7) == 0)
		e += 7;
	n = strcspn(e, "\n");
	if (n == 0)
		snprintf(err, errlen, "nft: command failed");
	else
		snprintf(err, errlen, "nft: %.*s", (int)n, e);
	return -1;
}

/* Only a live process's table has flags owner: the kernel deletes such a
 * table when its socket closes. The table's flags are its listing's second
 * line ("\tflags owner"); chains print theirs further down. */
static enum fw_state
fw_table_state(struct kb_fw *fw)
{
	char script[128], err[8];
	const char *out, *p;
	size_t n;

	snprintf(script, sizeof(script), "list table ip %s\n", fw->table);
	if (fw_run(fw, script, &out, err, sizeof(err)) == -1 || out == NULL)
		return FW_ABSENT;
	if ((p = strchr(out, '\n')) == NULL || strncmp(++p, "\tflags ", 7) != 0)
		return FW_STALE;
	n = strcspn(p, "\n");
	return memmem(p, n, "owner", 5) != NULL ? FW_OWNED : FW_STALE;
}

/* libnftables opens its netlink socket without close-on-exec; a child that
 * inherited it would keep our table alive after our death. */
static void
fw_cloexec_netlink(void)
{
	struct dirent *de;
	DIR *d;
	int fd, dom, proto, fl;
	socklen_t len;

	if ((d = opendir("/proc/self/fd")) == NULL) {
		log_warn("firewall: opendir /proc/self/fd");
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		fd = atoi(de->d_name);
		len = sizeof(dom);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) == -1 ||
		    dom != AF_NETLINK)
			continue;
		len = sizeof(proto);
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == -1 ||
		    proto != NETLINK_NETFILTER)
			continue;
		if ((fl = fcntl(fd, F_GETFD)) != -1 && !(fl & FD_CLOEXEC))
			fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	}
	closedir(d);
}

struct kb_fw *
fw_open(const char *instance, char *err, size_t errlen)
{
	struct kb_fw *fw;
	char script[256];
	const char *p;

	if (instance != NULL) {
		if (*instance == '\0' || strlen(instance) > FW_INSTANCE_MAX) {
			snprintf(err, errlen, "firewall: instance name must be 1 to %d characters",
			    FW_INSTANCE_MAX);
			return NULL;
		}
		for (p = instance; *p != '\0'; p++) {
			if (!isalnum((unsigned char)*p) && *p != '_') {
				snprintf(err, errlen, "firewall: instance name may hold only "
				    "letters, digits and '_': %s", instance);
				return NULL;
			}
		}
	}
	if ((fw = calloc(1, sizeof(*fw))) == NULL) {
		snprintf(err, errlen, "firewall: %s", strerror(errno));
		return NULL;
	}
	if (instance != NULL)
		snprintf(fw->table, sizeof(fw->table), "kbridge_%s", instance);
	else
		snprintf(fw->table, sizeof(fw->table), "kbridge");

	if ((fw->nft = nft_ctx_new(NFT_CTX_DEFAULT)) == NULL) {
		snprintf(err, errlen, "firewall: cannot create nftables context");
		goto fail;
	}
	if (nft_ctx_buffer_output(fw->nft) != 0 || nft_ctx_buffer_error(fw->nft) != 0) {
		snprintf(err, errlen, "firewall: cannot buffer nftables output");
		goto fail;
	}
	fw_cloexec_netlink();

	switch (fw_table_state(fw)) {
	case FW_OWNED:
		goto owned;
	case FW_STALE:
		log_info("firewall: removing stale table ip %s", fw->table);
		break;
	case FW_ABSENT:
		break;
	}
	/* "add" first so "delete" cannot fail on a missing table; the new
	 * table is owned by our context's socket from here on. */
	snprintf(script, sizeof(script),
	    "add table ip %s\n"
	    "delete table ip %s\n"
	    "add table ip %s { flags owner; }\n",
	    fw->table, fw->table, fw->table);
	if (fw_run(fw, script, NULL, err, errlen) == -1) {
		if (fw_table_state(fw) == FW_OWNED)
			goto owned;
		goto fail;
	}
	log_info("firewall: table ip %s created", fw->table);
	return fw;
owned:
	snprintf(err, errlen, "another kbridged owns nftables table ip %s "
	    "in this network namespace", fw->table);
fail:
	if (fw->nft != NULL)
		nft_ctx_free(fw->nft);
	free(fw);
	return NULL;
}

static int
fw_check(const struct kb_fw_config *cfg, char *err, size_t errlen)
{
	const struct kb_cidr lo = { 0x7f000000u, 8 };
	const struct kb_cidr *c;
	char buf[32];
	size_t i;

	if (cfg->nsubnets > 0 && (cfg->subnets == NULL || cfg->proxy_port == 0)) {
		snprintf(err, errlen, "firewall: subnets given without a proxy port");
		return -1;
	}
	if (cfg->ndns > 0 && (cfg->dns_servers == NULL || cfg->dns_port == 0)) {
		snprintf(err, errlen, "firewall: DNS servers given without a DNS port");
		return -1;
	}
	for (i = 0; i < cfg->nsubnets; i++) {
		c = &cfg->subnets[i];
		if (c->prefix == 0 || c->prefix > 32 ||
		    (c->addr & ~(0xffffffffu << (32 - c->prefix))) != 0) {
			snprintf(err, errlen, "firewall: bad subnet %s",
			    kb_cidr_str(c, buf, sizeof(buf)));
			return -1;
		}
		/* Redirecting loopback would capture the proxy's own listeners. */
		if (kb_cidr_contains(c, lo.addr) || kb_cidr_contains(&lo, c->addr)) {
			snprintf(err, errlen, "firewall: subnet %s overlaps loopback",
			    kb_cidr_str(c, buf, sizeof(buf)));
			return -1;
		}
	}
	for (i = 0; i < cfg->ndns; i++) {
		if (cfg->dns_servers[i] == 0) {
			snprintf(err, errlen, "firewall: bad DNS server 0.0.0.0");
			return -1;
		}
	}
	return 0;
}

static void
fw_print_subnets(FILE *f, const struct kb_cidr *c, size_t n)
{
	char buf[32];
	size_t i;

	for (i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? ", " : "{ ", kb_cidr_str(&c[i], buf, sizeof(buf)));
	fputs(" }", f);
}

static void
fw_print_addrs(FILE *f, const uint32_t *a, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		fprintf(f, "%s%u.%u.%u.%u", i ? ", " : "{ ", a[i] >> 24,
		    (a[i] >> 16) & 0xff, (a[i] >> 8) & 0xff, a[i] & 0xff);
	fputs(" }", f);
}

int
fw_apply(struct kb_fw *fw, const struct kb_fw_config *cfg, char *err, size_t errlen)
{
	char *script = NULL;
	size_t len = 0;
	FILE *f;
	int ret = -1;

	if (fw_check(cfg, err, errlen) == -1)
		return -1;
	if ((f = open_memstream(&script, &len)) == NULL) {
		snprintf(err, errlen, "firewall: %s", strerror(errno));
		return -1;
	}
	/* Replace the whole table in one batch: on any error the kernel
	 * keeps the previous rules, and ownership stays with our socket. */
	fprintf(f, "add table ip %s { flags owner; }\n"
	    "delete table ip %s\n"
	    "table ip %s {\n"
	    "\tflags owner\n"
	    "\tchain output {\n"
	    "\t\ttype nat hook output priority -100; policy accept;\n"
	    "\t\tmeta mark 0x%x return\n",
	    fw->table, fw->table, fw->table, KB_FW_MARK);
	if (cfg->nsubnets > 0) {
		/* The workstation's own addresses stay its own, even inside a
		 * cluster range (a LAN or bridge address there). */
		fputs("\t\tip daddr ", f);
		fw_print_subnets(f, cfg->subnets, cfg->nsubnets);
		fputs(" fib daddr type local return\n", f);
		fputs("\t\tip daddr ", f);
		fw_print_subnets(f, cfg->subnets, cfg->nsubnets);
		fprintf(f, " meta l4proto tcp redirect to :%u\n", cfg->proxy_port);
	}
	if (cfg->ndns > 0) {
		fputs("\t\tip daddr ", f);
		fw_print_addrs(f, cfg->dns_servers, cfg->ndns);
		fprintf(f, " udp dport 53 redirect to :%u\n", cfg->dns_port);
		fputs("\t\tip daddr ", f);
		fw_print_addrs(f, cfg->dns_servers, cfg->ndns);
		fprintf(f, " tcp dport 53 redirect to :%u\n", cfg->dns_port);
	}
	fputs("\t}\n}\n", f);
	if (fclose(f) != 0) {
		snprintf(err, errlen, "firewall: %s", strerror(errno));
		goto done;
	}
	if (fw_run(fw, script, NULL, err, errlen) == -1)
		goto done;
	log_info("firewall: table ip %s: %zu subnet(s) to port %u, %zu DNS server(s) to port %u",
	    fw->table, cfg->nsubnets, cfg->proxy_port, cfg->ndns, cfg->dns_port);
	ret = 0;
done:
	free(script);
	return ret;
}

const char *
fw_table(const struct kb_fw *fw)
{
	return fw->table;
}

void
fw_close(struct kb_fw *fw)
{
	char script[128], err[256];

	if (fw == NULL)
		return;
	snprintf(script, sizeof(script), "delete table ip %s\n", fw->table);
	if (fw_run(fw, script, NULL, err, sizeof(err)) == -1)
		log_warnx("firewall: %s (the kernel drops the table with our socket)", err);
	else
		log_info("firewall: table ip %s deleted", fw->table);
	/* Closing the socket removes an owned table even if delete failed. */
	nft_ctx_free(fw->nft);
	free(fw);
}

int
fw_mark_socket(int fd)
{
	unsigned int mark = KB_FW_MARK;

	return setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
}
