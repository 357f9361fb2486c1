/* An event loop that batches under load: see pace.h. */
#include "pace.h"

#include <errno.h>
#include <time.h>

#include <event2/event.h>

#include "applat.h"
#include "util.h"

#define PACE_WINDOW_NS	(10 * 1000 * 1000)	/* how far back "saturated" looks */

/* Tests replace it. */
static uint64_t (*pace_clock)(clockid_t) = kb_clock_ns;

void
pace_init(struct pace *p, const struct applat *lat)
{
	*p = (struct pace){ .lat = lat, .batch = 8, .pause_us = 100, .busy_pct = 90,
	    .wait_ratio = 5 };
}

/* Whether the thread used more than busy_pct of the last full window. */
static int
pace_saturated(struct pace *p)
{
	uint64_t now = pace_clock(CLOCK_MONOTONIC), cpu, wall;

	if (p->win_start_ns == 0 || now - p->win_start_ns >= PACE_WINDOW_NS) {
		cpu = pace_clock(CLOCK_THREAD_CPUTIME_ID);
		if (p->win_start_ns != 0) {
			wall = now - p->win_start_ns;
			p->saturated = (cpu - p->win_cpu_ns) * 100 > wall * p->busy_pct;
		}
		p->win_start_ns = now;
		p->win_cpu_ns = cpu;
	}
	return p->saturated;
}

int
pace_run(struct pace *p, struct event_base *base)
{
	struct timespec ts;
	uint64_t before;
	int rc;

	for (;;) {
		before = p->lat->events;
		if ((rc = event_base_loop(base, EVLOOP_ONCE)) != 0)
			return rc == 1 ? 0 : -1;	/* 1: no events left */
		if (event_base_got_exit(base) || event_base_got_break(base))
			return 0;
		p->passes++;
		if (p->lat->events - before < p->batch || p->pause_us == 0 ||
		    (p->use_wait && applat_wait_us(p->lat) < p->wait_ratio * p->pause_us) ||
		    pace_saturated(p))
			continue;
		p->pauses++;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)p->pause_us * 1000;
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
}
