/* sendmsg() on several sockets in one system call: see sendmany.h. */
#include "sendmany.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <liburing.h>

#include "log.h"

#define SM_ENTRIES	64	/* ring size; larger batches go in several submits */
#define SM_UNSENT	((ssize_t)-1000000)	/* no result yet (not an errno) */

static __thread struct io_uring sm_ring;
static __thread int sm_state = -1;	/* -1 not tried, 0 one by one, 1 ring */
__thread int kb_sendmany_plain;

static void
sm_one(struct kb_send *s)
{
	ssize_t n;

	while ((n = sendmsg(s->fd, s->msg, MSG_NOSIGNAL | MSG_DONTWAIT)) == -1 && errno == EINTR)
		;
	s->res = n == -1 ? -errno : n;
}

static int
sm_ring_init(void)
{
	int rc;

	if (sm_state != -1)
		return sm_state;
	/* One thread submits; completions need no interrupt of the thread. */
	rc = io_uring_queue_init(SM_ENTRIES, &sm_ring,
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN);
	if (rc == -EINVAL)
		rc = io_uring_queue_init(SM_ENTRIES, &sm_ring, 0);
	if (rc < 0) {
		log_info("io_uring not available (%s): writes go out one system call each",
		    strerror(-rc));
		sm_state = 0;
	} else
		sm_state = 1;
	return sm_state;
}

/* Up to SM_ENTRIES sends through the ring; 0, or -1 when the ring failed
 * (the sends without a result are then left for sm_one). */
static int
sm_ring_send(struct kb_send *v, unsigned n)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	unsigned i, head, got, seen = 0;
	int rc;

	for (i = 0; i < n; i++) {
		sqe = io_uring_get_sqe(&sm_ring);	/* cannot fail: n <= SM_ENTRIES, ring empty */
		io_uring_prep_sendmsg(sqe, v[i].fd, v[i].msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		io_uring_sqe_set_data64(sqe, i);
	}
	/* MSG_DONTWAIT: each send completes during the submit (sent, or
	 * -EAGAIN), none is left waiting for the socket. */
	rc = io_uring_submit_and_wait(&sm_ring, n);
	for (;;) {
		got = 0;
		io_uring_for_each_cqe(&sm_ring, head, cqe) {
			if (cqe->user_data < n)
				v[cqe->user_data].res = cqe->res;
			got++;
		}
		io_uring_cq_advance(&sm_ring, got);
		if ((seen += got) == n)
			return 0;
		if (rc != -EINTR)
			break;
		/* A signal interrupted the call: submit what may be left and
		 * collect the results (this cannot block: see above). */
		rc = io_uring_submit_and_wait(&sm_ring, n - seen);
	}
	/* Not expected: drop the ring (which cancels anything in flight) and
	 * send one by one from now on. */
	log_warnx("io_uring send: %s (%u of %u done): writes go out one system call each",
	    rc < 0 ? strerror(-rc) : "incomplete", seen, n);
	io_uring_queue_exit(&sm_ring);
	sm_state = 0;
	return -1;
}

void
kb_sendmany(struct kb_send *v, unsigned n)
{
	unsigned i, k;

	for (i = 0; i < n; i++)
		v[i].res = SM_UNSENT;
	if (n > 1 && !kb_sendmany_plain && sm_ring_init() == 1)
		for (i = 0; i < n; i += k) {
			k = n - i < SM_ENTRIES ? n - i : SM_ENTRIES;
			if (sm_ring_send(v + i, k) == -1)
				break;
		}
	for (i = 0; i < n; i++)
		if (v[i].res == SM_UNSENT)
			sm_one(&v[i]);
}

int
kb_sendmany_uring(void)
{
	return kb_sendmany_plain ? 0 : sm_state;
}

void
kb_sendmany_fini(void)
{
	if (sm_state == 1)
		io_uring_queue_exit(&sm_ring);
	sm_state = -1;
}
