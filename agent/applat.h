/* The app's latency as the sidecar's proxy sees it, for pace.h: how many
 * readiness events the proxy handled, and how long the upstream of key 0
 * (the app; others, such as intercepts, are far away rather than busy)
 * takes to answer a request, as a moving average over the last few dozen
 * responses (1/16 per response). */
#ifndef KB_APPLAT_H
#define KB_APPLAT_H

#include <stdint.h>

#define APPLAT_STALE_US (100 * 1000)	/* an average older than this says nothing */

struct applat {
	uint64_t events;	/* readiness events handled */
	uint64_t avg16;		/* x 16, so small times do not round away */
	uint64_t last_us;	/* when the app last answered */
};

/* Now in microseconds. Not the loop's cached time: libevent reads a coarse
 * clock (milliseconds) for it. */
uint64_t applat_now_us(void);

/* A response of the app to a request sent at sent_us (applat_now_us()). */
void applat_note(struct applat *a, uint64_t sent_us);

/* The average answer time (us); 0 when the app has not answered for
 * APPLAT_STALE_US. */
unsigned applat_wait_us(const struct applat *a);

#endif
