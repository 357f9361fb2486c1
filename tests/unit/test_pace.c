/* agent/pace.c: the loop pauses after passes that handled many events, not
 * after small ones, not while the app answers quickly, not while the thread
 * is saturated, and ends like event_base_dispatch() does. The thread's CPU clock is replaced by a fake
 * one, so nothing here depends on how busy the machine is. */
#include "../../agent/applat.c"
#include "../../agent/pace.c"

#include <string.h>

#include "ok.h"

/* What the proxy would count: events, and the app's answer times. */
static struct applat lat;

/* The fake clocks: every read of the wall clock advances it by 1 ms; the
 * thread's CPU clock is cpu_pct % of the wall clock (100: saturated). */
static uint64_t fake_wall, cpu_pct;
static uint64_t
fake_clock(clockid_t id)
{
	if (id == CLOCK_MONOTONIC)
		return fake_wall += 1000000;
	return fake_wall / 100 * cpu_pct;
}

/* How long "the app" takes to answer, for use_wait: an average kept fresh
 * by every tick. */
static unsigned app_wait_us;

/* A timer that fires passes times, each adding per_pass to the work
 * counter, then ends the loop with loopexit or loopbreak. */
struct ticker {
	struct event_base *base;
	struct event *ev;
	int passes, per_pass, use_break;
};

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct ticker *t = arg;
	struct timeval zero = { 0, 0 };

	(void)fd;
	(void)what;
	lat.events += t->per_pass;
	lat.avg16 = (uint64_t)app_wait_us * 16;
	lat.last_us = applat_now_us();
	if (--t->passes > 0)
		evtimer_add(t->ev, &zero);
	else if (t->use_break)
		event_base_loopbreak(t->base);
	else
		event_base_loopexit(t->base, NULL);
}

/* Run passes passes of per_pass events; returns the pace for inspection. */
static struct pace
run(int passes, int per_pass, int use_break, unsigned pause_us, int with_wait)
{
	struct ticker t = { .passes = passes, .per_pass = per_pass, .use_break = use_break };
	struct timeval zero = { 0, 0 };
	struct pace p;
	int rc;

	t.base = event_base_new();
	t.ev = evtimer_new(t.base, tick, &t);
	evtimer_add(t.ev, &zero);
	pace_init(&p, &lat);
	p.pause_us = pause_us;
	p.use_wait = with_wait;
	rc = pace_run(&p, t.base);
	ok(rc == 0);
	ok(t.passes == 0);	/* every pass ran, none after the end */
	event_free(t.ev);
	event_base_free(t.base);
	return p;
}

int
main(void)
{
	struct event_base *base;
	struct pace p;

	pace_clock = fake_clock;

	/* defaults */
	pace_init(&p, &lat);
	ok(p.batch == 8 && p.pause_us == 100 && p.busy_pct == 90 && p.wait_ratio == 5);
	ok(p.lat == &lat && p.use_wait == 0);

	/* busy passes (40 events each) on an idle thread: a pause after each
	 * one but the last (the loop ends there) */
	cpu_pct = 0;
	p = run(20, 40, 0, 100, 0);
	ok(p.passes == 19);
	ok(p.pauses == 19);

	/* small passes never pause */
	p = run(20, 7, 0, 100, 0);
	ok(p.pauses == 0);
	p = run(20, 1, 1, 100, 0);
	ok(p.pauses == 0);

	/* exactly the batch size pauses */
	p = run(5, 8, 0, 100, 0);
	ok(p.pauses == 4);

	/* an app that answers within 5 x the pause: no pauses; slower: pauses */
	app_wait_us = 499;
	p = run(20, 40, 0, 100, 1);
	ok(p.pauses == 0);
	app_wait_us = 500;
	p = run(20, 40, 0, 100, 1);
	ok(p.pauses == 19);
	app_wait_us = 0;

	/* pause_us 0 turns pausing off */
	p = run(20, 40, 0, 0, 0);
	ok(p.pauses == 0);

	/* a saturated thread (CPU clock as fast as the wall clock) stops
	 * pausing once a window has shown it; an idle one resumes */
	cpu_pct = 100;
	p = run(40, 40, 0, 100, 0);
	ok(p.passes == 39);
	ok(p.pauses > 0 && p.pauses < 20);
	cpu_pct = 0;
	p = run(40, 40, 1, 100, 0);	/* loopbreak ends it too */
	ok(p.pauses == 39);

	/* nothing to wait for: returns at once, like event_base_dispatch() */
	base = event_base_new();
	pace_init(&p, &lat);
	ok(pace_run(&p, base) == 0);
	ok(p.passes == 0);
	event_base_free(base);

	return ok_done();
}
