/* sendmsg() on several sockets in one system call (io_uring).
 *
 * Why: on Linux a socket write that wakes its reader marks the wakeup as
 * "synchronous" (the waker is expected to sleep soon), and the scheduler
 * may move the reader to the writer's CPU and let it run as soon as the
 * write returns. A proxy that answers many connections of one client with
 * one write each therefore hands its CPU to that client once per answer:
 * the client takes one response, sends one request and sleeps, and the
 * proxy goes on to the next answer. With all the writes in one system call
 * the client is woken once and finds every answer there (README.md's
 * benchmarks section has the measurements, from scripts/bench intercept).
 *
 * Where io_uring is not available (old kernels, seccomp filters that
 * refuse it, kernel.io_uring_disabled), the sends are made one by one with
 * sendmsg(); the results are the same. Each send is non-blocking
 * (MSG_DONTWAIT) and raises no SIGPIPE (MSG_NOSIGNAL). One ring per
 * thread, made on first use. */
#ifndef KB_SENDMANY_H
#define KB_SENDMANY_H

#include <sys/types.h>

struct msghdr;

struct kb_send {
	int fd;
	const struct msghdr *msg;
	ssize_t res;	/* out: bytes sent (maybe fewer than asked), or -errno */
};

/* Send each v[i].msg on v[i].fd; every v[i].res is set. */
void kb_sendmany(struct kb_send *v, unsigned n);

/* Whether this thread sends through io_uring: 1, 0 (one by one), or -1
 * (not decided yet: no batch sent so far). */
int kb_sendmany_uring(void);

/* This thread's ring goes (the next batch makes a new one). */
void kb_sendmany_fini(void);

/* Tests: nonzero makes this thread send one by one from now on. */
extern __thread int kb_sendmany_plain;

#endif
