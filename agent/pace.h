/* An event loop that batches under load.
 *
 * A proxy that answers each readiness event at once, and then sleeps until
 * the next, keeps its peers (the callers, the app) waking up for one message
 * at a time, and has them wake it up again for the next: on a machine whose
 * CPUs are all busy those wake-ups cost the peers more than the proxy's own
 * work. So after a pass of the loop that handled many events, when the app
 * is slow to answer anyway (requests queue at it: it takes at least five
 * times the pause), the loop sleeps about a tenth of a millisecond before
 * it polls again. Meanwhile nobody has to wake it; the next pass takes and
 * sends on what arrived in between, and every peer gets more per wake-up.
 * The pause costs no CPU and at most a fifth of the time requests already
 * wait. It never happens after a small pass (a lone request never waits),
 * nor while the app answers quickly (then the pause would be most of a
 * request's time and only cost throughput), nor while the proxy's own
 * thread is nearly saturated. README.md's benchmarks section has the
 * measurements. */
#ifndef KB_PACE_H
#define KB_PACE_H

#include <stdint.h>

struct applat;
struct event_base;

struct pace {
	/* Events handled so far (lat->events, which the loop's callbacks
	 * advance), and how long the app takes to answer now. */
	const struct applat *lat;
	int use_wait;		/* 0: how long the app takes is not considered */
	unsigned batch;		/* pause after a pass that handled at least this many */
	unsigned pause_us;	/* how long to pause */
	unsigned busy_pct;	/* no pauses above this CPU use over a window */
	unsigned wait_ratio;	/* no pauses unless wait_us() >= this x pause_us */

	/* statistics, for tests and logs */
	uint64_t passes, pauses;

	/* the current window */
	uint64_t win_start_ns, win_cpu_ns;
	int saturated;
};

/* Defaults: pause 100 us after a pass of 8 or more events when the app takes
 * 0.5 ms or more, not above 90 % CPU. */
void pace_init(struct pace *p, const struct applat *lat);

/* Like event_base_dispatch(base): runs until event_base_loopexit() or
 * event_base_loopbreak(), or until no events are left; 0, or -1 on error. */
int pace_run(struct pace *p, struct event_base *base);

#endif
