/* Child processes and ports for unit tests that start real peers (a gRPC
 * server, nginx, curl): a free loopback port, and a program started with
 * its output in a file. */
#ifndef KB_TEST_CHILDREN_H
#define KB_TEST_CHILDREN_H

#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

/* A loopback TCP port nothing listens on now. */
static int
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) < 0)
		abort();
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* Start argv with stdout (and stderr) into out; its pid. */
static pid_t
spawn(char *const argv[], const char *out)
{
	pid_t pid = fork();
	int fd;

	if (pid == 0) {
		if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

#endif
