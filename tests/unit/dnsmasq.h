/* A real dnsmasq on 127.0.0.1 for the DNS tests: a free port, start it with
 * extra options and wait until it answers, stop it. */
#ifndef KB_TEST_DNSMASQ_H
#define KB_TEST_DNSMASQ_H

#include <arpa/inet.h>
#include <ares.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t dnsmasq_pid = -1;
/* Where dnsmasq logs (with --log-queries: every query it gets). */
static const char *dnsmasq_log = "/dev/null";

/* A port free for both UDP and TCP on 127.0.0.1. */
static uint16_t
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int u, t, i;
	uint16_t port = 0;

	for (i = 0; i < 32 && !port; i++) {
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = 0;
		u = socket(AF_INET, SOCK_DGRAM, 0);
		t = socket(AF_INET, SOCK_STREAM, 0);
		if (bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		    getsockname(u, (struct sockaddr *)&sin, &len) == 0 &&
		    bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			port = ntohs(sin.sin_port);
		close(u);
		close(t);
	}
	return port;
}

/* Start dnsmasq on 127.0.0.1:port (pid file in dir) with the extra options
 * (at most 16), and wait until it answers a query for probe (an A record it
 * knows). It dies with the test. 0 or -1. */
static int
dnsmasq_start(uint16_t port, const char *dir, const char *const *extra, const char *probe)
{
	char portarg[32], pidarg[128], logarg[160];
	char *argv[32] = { "/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
		portarg, pidarg, "--user=root", logarg, "--local-ttl=30" };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	unsigned char *q, r[512];
	struct pollfd pfd;
	int fd, i, n = 12, null, qlen;

	for (i = 0; extra[i] && i < 16; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	snprintf(portarg, sizeof(portarg), "--port=%u", port);
	snprintf(logarg, sizeof(logarg), "--log-facility=%s", dnsmasq_log);
	snprintf(pidarg, sizeof(pidarg), "--pid-file=%s/dnsmasq.pid", dir);
	if ((dnsmasq_pid = fork()) < 0)
		return -1;
	if (dnsmasq_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if ((null = open("/dev/null", O_RDWR)) >= 0)
			dup2(null, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if (ares_create_query(probe, C_IN, T_A, 1, 1, &q, &qlen, 0) != ARES_SUCCESS)
		return -1;
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	for (i = 0; i < 50; i++) {
		sendto(fd, q, (size_t)qlen, 0, (struct sockaddr *)&sin, sizeof(sin));
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 100) == 1 && recv(fd, r, sizeof(r), 0) > 0)
			break;
	}
	ares_free_string(q);
	close(fd);
	return i < 50 ? 0 : -1;
}

static void
dnsmasq_stop(const char *dir)
{
	char path[128];

	if (dnsmasq_pid > 0) {
		kill(dnsmasq_pid, SIGTERM);
		waitpid(dnsmasq_pid, NULL, 0);
		dnsmasq_pid = -1;
	}
	snprintf(path, sizeof(path), "%s/dnsmasq.pid", dir);
	unlink(path);
}

#endif
