/* proto/sendmany.c: sends to many sockets in one call, through io_uring and
 * one by one, with the same results: every byte where it belongs (several
 * iovecs per message), short or -EAGAIN on a full socket and never a block,
 * -EPIPE and no SIGPIPE for a closed peer, -EBADF for a bad descriptor
 * without harm to the others, batches larger than the ring.
 *
 * The io_uring half must run: where the kernel refuses io_uring the test
 * fails and says so (the sidecar would still work, one write at a time,
 * but that is not what this test is for). */
#include "../../proto/sendmany.c"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ok.h"

#define NPAIRS (SM_ENTRIES + 36)	/* more than one ring's worth */

static int rd[NPAIRS], wr[NPAIRS];

/* Two pieces per message: "head-<i>|" and "body-<i>". */
static char heads[NPAIRS][24], bodies[NPAIRS][24];
static struct iovec iovs[NPAIRS][2];
static struct msghdr msgs[NPAIRS];

static void
make_msg(int i)
{
	snprintf(heads[i], sizeof(heads[i]), "head-%d|", i);
	snprintf(bodies[i], sizeof(bodies[i]), "body-%d", i);
	iovs[i][0] = (struct iovec){ heads[i], strlen(heads[i]) };
	iovs[i][1] = (struct iovec){ bodies[i], strlen(bodies[i]) };
	memset(&msgs[i], 0, sizeof(msgs[i]));
	msgs[i].msg_iov = iovs[i];
	msgs[i].msg_iovlen = 2;
}

static size_t
msg_len(int i)
{
	return iovs[i][0].iov_len + iovs[i][1].iov_len;
}

/* Sends message i on wr[i] for i in [0, n); 1 if each result and each
 * reader's bytes are right. */
static int
round_trip(int n)
{
	struct kb_send v[NPAIRS];
	char want[40], got[64];
	ssize_t r;
	int i, good = 1;

	for (i = 0; i < n; i++) {
		v[i].fd = wr[i];
		v[i].msg = &msgs[i];
		v[i].res = 12345;
	}
	kb_sendmany(v, (unsigned)n);
	for (i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "%s%s", heads[i], bodies[i]);
		r = recv(rd[i], got, sizeof(got), MSG_DONTWAIT);
		if (v[i].res != (ssize_t)msg_len(i) || r != (ssize_t)strlen(want) ||
		    memcmp(got, want, (size_t)r) != 0) {
			printf("# pair %d: res %zd, read %zd\n", i, v[i].res, r);
			good = 0;
		}
	}
	return good;
}

/* Fills fd's socket until it takes no more (without blocking). */
static void
fill(int fd)
{
	static char junk[65536];

	while (send(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
}

/* The failure cases, for whichever path is current: pair 0's socket full,
 * pair 1's peer closed, a bad descriptor, pair 2 fine. */
static void
failures(const char *path)
{
	struct kb_send v[4];
	int x[2], y[2], z[2];
	char got[64];

	printf("# failures, %s\n", path);
	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, x) == 0);	/* blocking sockets */
	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, y) == 0);
	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, z) == 0);
	fill(x[0]);
	close(y[1]);
	v[0] = (struct kb_send){ .fd = x[0], .msg = &msgs[0] };
	v[1] = (struct kb_send){ .fd = y[0], .msg = &msgs[1] };
	v[2] = (struct kb_send){ .fd = 1000000, .msg = &msgs[2] };
	v[3] = (struct kb_send){ .fd = z[0], .msg = &msgs[3] };
	alarm(10);	/* a send that blocked would hang here */
	kb_sendmany(v, 4);
	alarm(0);
	ok(v[0].res == -EAGAIN || (v[0].res >= 0 && v[0].res < (ssize_t)msg_len(0)));
	ok(v[1].res == -EPIPE);	/* and we are still alive: no SIGPIPE */
	ok(v[2].res == -EBADF);
	ok(v[3].res == (ssize_t)msg_len(3));
	ok(recv(z[1], got, sizeof(got), MSG_DONTWAIT) == (ssize_t)msg_len(3) &&
	    memcmp(got, "head-3|body-3", 13) == 0);
	close(x[0]);
	close(x[1]);
	close(y[0]);
	close(z[0]);
	close(z[1]);
}

int
main(void)
{
	int i, p[2];

	for (i = 0; i < NPAIRS; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) == -1) {
			perror("socketpair");
			return 1;
		}
		rd[i] = p[0];
		wr[i] = p[1];
		make_msg(i);
	}

	/* Through io_uring. */
	ok(kb_sendmany_uring() == -1);	/* nothing decided before the first batch */
	ok(round_trip(8));
	ok(kb_sendmany_uring() == 1);
	if (kb_sendmany_uring() != 1)
		printf("# io_uring is not available here: the batched path was not tested\n");
	ok(round_trip(NPAIRS));		/* several ring submits in one call */
	ok(round_trip(1));		/* one alone: a plain sendmsg */
	failures("io_uring");
	/* The ring can go and come back. */
	kb_sendmany_fini();
	ok(kb_sendmany_uring() == -1);
	ok(round_trip(3));
	ok(kb_sendmany_uring() == 1);

	/* One by one, the same results. */
	kb_sendmany_plain = 1;
	ok(kb_sendmany_uring() == 0);
	ok(round_trip(NPAIRS));
	failures("one by one");

	kb_sendmany_fini();
	for (i = 0; i < NPAIRS; i++) {
		close(rd[i]);
		close(wr[i]);
	}
	return ok_done();
}
