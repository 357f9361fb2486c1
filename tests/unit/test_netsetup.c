/* Network setup: exec runner, TUN link, nftables table. Runs as root in a
 * network namespace of its own (unshare at start), so nothing it does can
 * reach the host's links, routes or rules; the namespace dies with it.
 *
 *   client socket --connect 10.123.4.5:80--> route 10.123.0.0/16 dev kbridge0
 *        --nat output redirect--> 127.0.0.1:proxy (SO_ORIGINAL_DST = 10.123.4.5:80)
 *   marked socket --------------------------> kbridge0 (read from the TUN fd)
 *
 * KB_TEST_DEBUG=1 prints every command and nft script. */
#include "../../daemon/exec.c"
#include "../../daemon/tun.c"
#include "../../daemon/firewall.c"

#include <linux/netfilter_ipv4.h>
#include <netinet/ip.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "ok.h"

#define ADDR(a, b, c, d) (((uint32_t)(a) << 24) | ((b) << 16) | ((c) << 8) | (d))
#define TUN_ADDR ADDR(198, 18, 0, 1)

/* Fake runner: records each command line, fails the one at fake_fail_at. */
static char fake_cmds[16][256];
static int fake_n, fake_fail_at = -1;

static int
fake_exec(char *const argv[], char *err, size_t errlen)
{
	int i = fake_n;

	if (fake_n < 16)
		exec_cmdline(argv, fake_cmds[fake_n++], sizeof(fake_cmds[0]));
	if (i == fake_fail_at) {
		snprintf(err, errlen, "fake failure");
		return 2;
	}
	return 0;
}

static int
run(const char *cmd)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	char err[256];
	int rc;

	if ((rc = kb_exec(argv, err, sizeof(err))) != 0)
		printf("# %s\n", err);
	return rc;
}

static int
links_named(const char *prefix)
{
	struct if_nameindex *ifs, *i;
	int n = 0;

	if ((ifs = if_nameindex()) == NULL)
		return -1;
	for (i = ifs; i->if_index != 0; i++)
		if (strncmp(i->if_name, prefix, strlen(prefix)) == 0)
			n++;
	if_freenameindex(ifs);
	return n;
}

/* Listing through a context of our own, as `nft list ...` would. */
static int
nft_list_has(const char *cmd, const char *what)
{
	struct nft_ctx *c;
	const char *out;
	int has = -1;

	if ((c = nft_ctx_new(NFT_CTX_DEFAULT)) == NULL)
		return -1;
	nft_ctx_buffer_output(c);
	nft_ctx_buffer_error(c);
	if (nft_run_cmd_from_buffer(c, cmd) == 0) {
		out = nft_ctx_get_output_buffer(c);
		has = out != NULL && strstr(out, what) != NULL;
	}
	nft_ctx_free(c);
	return has;
}

static int
kbridge_tables(void)
{
	return nft_list_has("list tables\n", "table ip kbridge");
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll until neither link nor table is left; 1 if clean within ms. */
static int
wait_clean(int ms)
{
	long start = now_ms();

	for (;;) {
		if (links_named("kbridge") == 0 && kbridge_tables() == 0) {
			printf("# clean after %ld ms\n", now_ms() - start);
			return 1;
		}
		if (now_ms() - start > ms)
			return 0;
		usleep(10000);
	}
}

static int
readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void
sin_set(struct sockaddr_in *sin, uint32_t addr, uint16_t port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(addr);
	sin->sin_port = htons(port);
}

/* Bind a socket on 127.0.0.1 (port 0: any) and return its port in *port. */
static int
local_socket(int type, uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	if ((fd = socket(AF_INET, type | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sin_set(&sin, ADDR(127, 0, 0, 1), *port);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    (type == SOCK_STREAM && listen(fd, 16) == -1) ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
		close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

static int
client(int type, uint32_t addr, uint16_t port, int marked)
{
	struct sockaddr_in sin;
	int fd;

	if ((fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (marked && fw_mark_socket(fd) == -1) {
		close(fd);
		return -1;
	}
	sin_set(&sin, addr, port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 && errno != EINPROGRESS) {
		printf("# connect: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Does a TCP connect to addr:port land on listener lfd with that original
 * destination? */
static int
tcp_redirected(int lfd, uint32_t addr, uint16_t port)
{
	struct sockaddr_in orig;
	socklen_t len = sizeof(orig);
	int cfd, afd = -1, hit = 0;

	if ((cfd = client(SOCK_STREAM, addr, port, 0)) == -1)
		return 0;
	if (!readable(lfd, 2000) || (afd = accept(lfd, NULL, NULL)) == -1)
		goto done;
	if (getsockopt(afd, SOL_IP, SO_ORIGINAL_DST, &orig, &len) == -1)
		goto done;
	hit = ntohl(orig.sin_addr.s_addr) == addr && ntohs(orig.sin_port) == port;
done:
	if (afd != -1)
		close(afd);
	close(cfd);
	return hit;
}

/* Does a datagram to addr:port arrive on ufd? */
static int
udp_redirected(int ufd, uint32_t addr, uint16_t port, int marked, int ms)
{
	char buf[16];
	int cfd, hit = 0;

	if ((cfd = client(SOCK_DGRAM, addr, port, marked)) == -1)
		return 0;
	if (send(cfd, "query", 5, 0) == 5 && readable(ufd, ms))
		hit = recv(ufd, buf, sizeof(buf), 0) == 5 && memcmp(buf, "query", 5) == 0;
	close(cfd);
	return hit;
}

/* Read the TUN until a TCP SYN to addr shows up (other traffic, e.g. IPv6
 * router solicitations, is skipped). */
static int
tun_saw_syn(struct kb_tun *t, uint32_t addr)
{
	unsigned char pkt[2048];
	struct iphdr *ip = (struct iphdr *)pkt;
	ssize_t n;
	int i;

	for (i = 0; i < 32 && readable(tun_fd(t), 2000); i++) {
		if ((n = read(tun_fd(t), pkt, sizeof(pkt))) < (ssize_t)sizeof(*ip))
			continue;
		if (ip->version == 4 && ip->protocol == IPPROTO_TCP &&
		    ntohl(ip->daddr) == addr)
			return 1;
	}
	return 0;
}

/* Count netfilter netlink descriptors a child would inherit. */
static int
inheritable_nfnl(void)
{
	struct dirent *de;
	DIR *d;
	int fd, v, n = 0;
	socklen_t len;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		fd = atoi(de->d_name);
		len = sizeof(v);
		if (de->d_name[0] == '.' ||
		    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) == -1 ||
		    v != NETLINK_NETFILTER)
			continue;
		len = sizeof(v);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) == 0 && v == AF_NETLINK &&
		    !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
			n++;
	}
	closedir(d);
	return n;
}

static const struct kb_cidr test_subnets[] = {
	{ ADDR(10, 123, 0, 0), 16 },
	{ ADDR(10, 96, 0, 0), 12 },
};
static const uint32_t test_dns[] = { ADDR(10, 123, 0, 10), ADDR(127, 0, 0, 53) };

/* Child: set everything up, tell the parent, then exit or wait for SIGKILL. */
static void
setup_child(int ready, int go)
{
	struct kb_fw_config cfg = { test_subnets, 2, 1000, test_dns, 2, 1053 };
	struct kb_cidr c = test_subnets[0];
	struct kb_tun *t;
	struct kb_fw *fw;
	char err[256], b;

	if ((t = tun_open(NULL, TUN_ADDR, err, sizeof(err))) == NULL ||
	    tun_route_add(t, &c, err, sizeof(err)) == -1 ||
	    (fw = fw_open(NULL, err, sizeof(err))) == NULL ||
	    fw_apply(fw, &cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "child: %s\n", err);
		_exit(1);
	}
	if (write(ready, "r", 1) != 1)
		_exit(1);
	if (go == -1)
		for (;;)
			pause();
	if (read(go, &b, 1) != 1)
		_exit(1);
	_exit(0);	/* no fw_close, no tun_close: the kernel must clean up */
}

static void
test_exec(void)
{
	char *t[] = { "true", NULL };
	char *f[] = { "sh", "-c", "echo first line >&2; echo second >&2; exit 3", NULL };
	char *missing[] = { "kbtfw-no-such-command", NULL };
	char *empty[] = { NULL };
	char err[256], cmd[128];
	int fd;

	ok(kb_exec(t, err, sizeof(err)) == 0);
	ok(kb_exec(f, err, sizeof(err)) == 3);
	ok(strlen(err) > 12 && strcmp(err + strlen(err) - 12, ": first line") == 0);
	ok(kb_exec(missing, err, sizeof(err)) == -1);
	ok(strstr(err, "kbtfw-no-such-command") != NULL);
	ok(kb_exec(empty, err, sizeof(err)) == -1);
	/* A descriptor without close-on-exec must still not reach the child. */
	fd = dup(0);
	snprintf(cmd, sizeof(cmd), "test ! -e /proc/$$/fd/%d", fd);
	ok(run(cmd) == 0);
	close(fd);
}

static void
test_runner_swap(void)
{
	struct kb_cidr c = { ADDR(10, 123, 0, 0), 16 }, zero = { 0, 0 };
	struct kb_tun *t;
	char err[256], want[256];

	kb_exec_set_runner(fake_exec);
	fake_n = 0;
	fake_fail_at = -1;
	t = tun_open(NULL, TUN_ADDR, err, sizeof(err));
	ok(t != NULL);
	if (t == NULL)
		goto done;
	ok(strcmp(tun_name(t), "kbridge0") == 0);
	ok(fake_n == 2);
	ok(strcmp(fake_cmds[0], "ip addr add 198.18.0.1/32 dev kbridge0") == 0);
	ok(strcmp(fake_cmds[1], "ip link set dev kbridge0 mtu 65535 up") == 0);
	ok(tun_route_add(t, &c, err, sizeof(err)) == 0);
	ok(fake_n == 3);
	snprintf(want, sizeof(want), "ip route prepend 10.123.0.0/16 dev %s src 198.18.0.1",
	    tun_name(t));
	ok(strcmp(fake_cmds[2], want) == 0);
	ok(tun_route_add(t, &zero, err, sizeof(err)) == -1 && fake_n == 3);
	tun_close(t);

	/* A failing command leaves no link behind. */
	fake_n = 0;
	fake_fail_at = 1;
	ok(tun_open(NULL, TUN_ADDR, err, sizeof(err)) == NULL);
	ok(strcmp(err, "fake failure") == 0);
	ok(links_named("kbridge") == 0);
	ok(tun_open("kbtfw-much-too-long-name", TUN_ADDR, err, sizeof(err)) == NULL);
done:
	kb_exec_set_runner(NULL);
}

static void
test_redirect(void)
{
	struct kb_fw_config cfg = { test_subnets, 2, 0, test_dns, 2, 0 };
	struct kb_fw_config bad, dnsonly;
	struct kb_cidr lo = { ADDR(127, 0, 0, 0), 8 }, hostbits = { ADDR(10, 1, 2, 3), 16 };
	struct kb_tun *t;
	struct kb_fw *fw, *fw2;
	uint16_t pport = 0, dport = 0;
	int lfd, ufd, dtfd, fd, status;
	char err[256];
	pid_t pid;

	t = tun_open(NULL, TUN_ADDR, err, sizeof(err));
	ok(t != NULL);
	if (t == NULL) {
		printf("# %s\n", err);
		return;
	}
	ok(tun_route_add(t, &test_subnets[0], err, sizeof(err)) == 0);
	ok(tun_route_add(t, &test_subnets[1], err, sizeof(err)) == 0);
	fw = fw_open(NULL, err, sizeof(err));
	ok(fw != NULL);
	if (fw == NULL) {
		printf("# %s\n", err);
		tun_close(t);
		return;
	}
	ok(strcmp(fw_table(fw), "kbridge") == 0);
	ok(inheritable_nfnl() == 0);

	lfd = local_socket(SOCK_STREAM, &pport);
	ufd = local_socket(SOCK_DGRAM, &dport);
	dtfd = local_socket(SOCK_STREAM, &dport);
	ok(lfd != -1 && ufd != -1 && dtfd != -1);
	cfg.proxy_port = pport;
	cfg.dns_port = dport;
	ok(fw_apply(fw, &cfg, err, sizeof(err)) == 0);
	ok(nft_list_has("list table ip kbridge\n", "flags owner") == 1);

	ok(tcp_redirected(lfd, ADDR(10, 123, 4, 5), 80));
	ok(tcp_redirected(lfd, ADDR(10, 100, 0, 1), 8080));
	ok(udp_redirected(ufd, ADDR(10, 123, 0, 10), 53, 0, 2000));
	ok(udp_redirected(ufd, ADDR(127, 0, 0, 53), 53, 0, 2000));
	ok(tcp_redirected(dtfd, ADDR(127, 0, 0, 53), 53));

	/* Marked sockets pass untouched: the SYN goes out the TUN link. */
	tun_drain(t);
	fd = client(SOCK_STREAM, ADDR(10, 123, 4, 5), 80, 1);
	ok(fd != -1);
	ok(tun_saw_syn(t, ADDR(10, 123, 4, 5)));
	ok(!readable(lfd, 200));
	close(fd);
	ok(!udp_redirected(ufd, ADDR(127, 0, 0, 53), 53, 1, 300));
	tun_drain(t);
	ok(!readable(tun_fd(t), 0));

	/* (c) a second owner, from another process or another context, is refused. */
	if ((pid = fork()) == 0) {
		fw2 = fw_open(NULL, err, sizeof(err));
		_exit(fw2 == NULL && strcmp(err, "another kbridged owns nftables "
		    "table ip kbridge in this network namespace") == 0 ? 0 : 1);
	}
	ok(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0);
	ok(fw_open(NULL, err, sizeof(err)) == NULL);
	ok(strcmp(err, "another kbridged owns nftables table ip kbridge "
	    "in this network namespace") == 0);
	fw2 = fw_open("dev_2", err, sizeof(err));
	ok(fw2 != NULL && strcmp(fw_table(fw2), "kbridge_dev_2") == 0);
	fw_close(fw2);
	ok(fw_open("bad-name", err, sizeof(err)) == NULL);

	/* (d) bad input fails and leaves the previous rules in place. */
	bad = cfg;
	bad.proxy_port = 0;
	ok(fw_apply(fw, &bad, err, sizeof(err)) == -1 && err[0] != '\0');
	bad = cfg;
	bad.dns_port = 0;
	ok(fw_apply(fw, &bad, err, sizeof(err)) == -1);
	bad = cfg;
	bad.subnets = &lo;
	bad.nsubnets = 1;
	ok(fw_apply(fw, &bad, err, sizeof(err)) == -1);
	bad.subnets = &hostbits;
	ok(fw_apply(fw, &bad, err, sizeof(err)) == -1);
	/* A batch the kernel rejects halfway (after "delete table") is undone whole. */
	ok(fw_run(fw, "delete table ip kbridge\n"
	    "table ip kbridge {\n flags owner\n chain output {\n"
	    "  type nat hook output priority -100;\n  jump kbtfw_missing\n }\n}\n",
	    NULL, err, sizeof(err)) == -1);
	printf("# rejected batch: %s\n", err);
	ok(tcp_redirected(lfd, ADDR(10, 123, 4, 5), 80));
	ok(udp_redirected(ufd, ADDR(10, 123, 0, 10), 53, 0, 2000));

	/* Re-applying replaces the rules and keeps the table ours. */
	dnsonly = cfg;
	dnsonly.nsubnets = 0;
	ok(fw_apply(fw, &dnsonly, err, sizeof(err)) == 0);
	ok(nft_list_has("list table ip kbridge\n", "flags owner") == 1);
	ok(nft_list_has("list table ip kbridge\n", "l4proto tcp") == 0);
	tun_drain(t);
	fd = client(SOCK_STREAM, ADDR(10, 123, 4, 5), 80, 0);
	ok(tun_saw_syn(t, ADDR(10, 123, 4, 5)));
	close(fd);
	ok(udp_redirected(ufd, ADDR(10, 123, 0, 10), 53, 0, 2000));
	ok(fw_apply(fw, &cfg, err, sizeof(err)) == 0);
	ok(tcp_redirected(lfd, ADDR(10, 123, 4, 5), 80));
	ok(fw_open(NULL, err, sizeof(err)) == NULL);

	/* (b) explicit close leaves nothing. */
	close(lfd);
	close(ufd);
	close(dtfd);
	fw_close(fw);
	tun_close(t);
	ok(wait_clean(2000));
}

static void
test_stale(void)
{
	struct nft_ctx *c;
	struct kb_fw *fw;
	char err[256];

	/* A leftover without owner, as an older run or a user might leave. */
	if ((c = nft_ctx_new(NFT_CTX_DEFAULT)) != NULL) {
		nft_ctx_buffer_output(c);
		nft_ctx_buffer_error(c);
		ok(nft_run_cmd_from_buffer(c, "table ip kbridge {\n chain kbtfw_stale {\n }\n}\n") == 0);
		nft_ctx_free(c);
	}
	ok(nft_list_has("list table ip kbridge\n", "kbtfw_stale") == 1);
	fw = fw_open(NULL, err, sizeof(err));
	ok(fw != NULL);
	ok(nft_list_has("list table ip kbridge\n", "kbtfw_stale") == 0);
	ok(nft_list_has("list table ip kbridge\n", "flags owner") == 1);
	fw_close(fw);
	ok(wait_clean(2000));
}

/* (b) process exit and SIGKILL leave nothing, with no cleanup code run. */
static void
test_death(int bykill)
{
	int ready[2], go[2], status;
	pid_t pid;
	char b;

	if (pipe(ready) == -1 || pipe(go) == -1) {
		ok(0);
		return;
	}
	if ((pid = fork()) == 0) {
		close(ready[0]);
		close(go[1]);
		setup_child(ready[1], bykill ? -1 : go[0]);
	}
	close(ready[1]);
	close(go[0]);
	ok(pid > 0 && read(ready[0], &b, 1) == 1);
	ok(links_named("kbridge") == 1 && kbridge_tables() == 1);
	if (bykill)
		kill(pid, SIGKILL);
	else
		ok(write(go[1], "g", 1) == 1);
	ok(waitpid(pid, &status, 0) == pid);
	ok(bykill ? WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL :
	    WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ok(wait_clean(2000));
	close(ready[0]);
	close(go[1]);
}

int
main(void)
{
	char why[160];

	log_init("test_netsetup", getenv("KB_TEST_DEBUG") ? KB_LOG_DEBUG : KB_LOG_WARN);
	/* The exec runner needs no privileges. */
	test_exec();
	if (run("command -v ip >/dev/null && command -v nft >/dev/null") != 0) {
		skip_or_fail_tool("ip or nft missing: the TUN and firewall tests did not run");
		return ok_done();
	}
	if (unshare(CLONE_NEWNET) == -1) {
		snprintf(why, sizeof(why), "unshare(CLONE_NEWNET): %s (needs root): "
		    "the TUN and firewall tests did not run", strerror(errno));
		skip_or_fail(why);
		return ok_done();
	}
	if (run("ip link set lo up") != 0) {
		printf("Bail out! cannot bring lo up\n");
		return 1;
	}
	test_runner_swap();
	test_redirect();
	test_stale();
	test_death(0);
	test_death(1);
	/* The same check with the tools a user would run. */
	ok(run("! nft list tables | grep -q kbridge && ! ip -o link | grep -q kbridge") == 0);
	return ok_done();
}
