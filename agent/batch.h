/* Write grouping across connections. Writes wait until every event of the
 * loop iteration has been handled, then go out together: the peers (the
 * client, the app) then find several requests or responses per wake-up
 * instead of one, which on a busy machine saves more than the proxy's own
 * work (fewer context switches all round). But no more than BATCH_MAX
 * members wait: with many busy connections a whole iteration's worth would
 * travel as one wave (the app idle while the proxy reads, the proxy idle
 * while the app answers); sent in groups, the app starts on the first group
 * while the proxy reads on. Each group goes out in one system call
 * (sendmany.h). */
#ifndef KB_BATCH_H
#define KB_BATCH_H

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <stddef.h>

#include "sendmany.h"

struct event;
struct event_base;
struct evbuffer;

#define BATCH_MAX	8		/* members whose writes wait at most */
#define BATCH_SOCKS	(2 * BATCH_MAX)	/* sockets per group: two per member */
#define BATCH_IOV	16		/* pieces of a socket's queue per send */

struct batch;

/* What a member (a connection, embedded in its owner's struct) has queued. */
struct batch_member {
	TAILQ_ENTRY(batch_member) link;
	int pending;		/* waiting on the batch: has bytes to write */
};

struct batch_ops {
	/* Put the member's queued writes into the group (batch_add()). */
	void (*collect)(struct batch *b, struct batch_member *m);
	/* A socket of the group was sent to: bytes taken, or -errno. */
	void (*sent)(void *sock, ssize_t res);
	/* The member is off the list after its group went out: move it on. */
	void (*settle)(struct batch_member *m);
};

struct batch {
	const struct batch_ops *ops;
	struct event *ev;	/* the end of a loop iteration */
	TAILQ_HEAD(, batch_member) pending;
	int flushing;		/* in the flush: write at once */
	int npending;		/* members on pending */
	unsigned long groups;	/* groups sent before the end of an iteration */

	/* The group being sent. */
	unsigned n;
	void *sock[BATCH_SOCKS];
	struct msghdr m[BATCH_SOCKS];
	struct iovec iov[BATCH_SOCKS][BATCH_IOV];
	struct kb_send v[BATCH_SOCKS];
};

/* 0, or -1 (out of memory: then nothing waits, every write goes at once). */
int batch_init(struct batch *b, struct event_base *base, const struct batch_ops *ops);
void batch_fini(struct batch *b);

/* batch_defer() for a member not yet waiting. */
int batch_enqueue(struct batch *b, struct batch_member *m);

/* Leave m's writes for the end of this loop iteration: 1, or 0 to write
 * now (in the flush, without the event, or when m filled a group: the
 * others went, m's bytes in the same system call). Inline: it runs after
 * every event. */
static inline int
batch_defer(struct batch *b, struct batch_member *m)
{
	if (b->flushing || b->ev == NULL)
		return 0;
	return m->pending ? 1 : batch_enqueue(b, m);
}
/* From collect(): out's bytes for fd go out with the group; sent() gets sock. */
void batch_add(struct batch *b, int fd, struct evbuffer *out, void *sock);
/* m is freed: off the list. */
void batch_remove(struct batch *b, struct batch_member *m);

/* After the last batch is finished: sendmany's state goes. */
void batch_shutdown(void);

#endif
