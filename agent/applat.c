/* The app's latency for pace.h: see applat.h. */
#include "applat.h"

#include <time.h>

#include "util.h"

uint64_t
applat_now_us(void)
{
	return kb_clock_ns(CLOCK_MONOTONIC) / 1000;
}

void
applat_note(struct applat *a, uint64_t sent_us)
{
	uint64_t now = applat_now_us(), us = now - sent_us;

	if (us > 60u * 1000000u)
		return;	/* a long poll says nothing about load */
	a->avg16 += us - a->avg16 / 16;
	a->last_us = now;
}

unsigned
applat_wait_us(const struct applat *a)
{
	if (applat_now_us() - a->last_us > APPLAT_STALE_US)
		return 0;	/* no answer from the app lately: nothing queues there */
	return (unsigned)(a->avg16 / 16);
}
