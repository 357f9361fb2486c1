/* A bounded event loop for unit tests: run until a predicate holds or a
 * time limit passes, never longer. */
#ifndef KB_TEST_EVLOOP_H
#define KB_TEST_EVLOOP_H

#include <event2/event.h>

static struct event_base *base;
static int timed_out;

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	timed_out = 1;
}

/* Run the loop until pred(arg) holds or ms have passed; returns pred. */
static int
run_until(int (*pred)(void *), void *arg, int ms)
{
	struct event *t = evtimer_new(base, timeout_cb, NULL);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	timed_out = 0;
	evtimer_add(t, &tv);
	while (!(pred && pred(arg)) && !timed_out)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return pred ? pred(arg) : 1;
}

static void
run_for(int ms)
{
	run_until(NULL, NULL, ms);
}

#endif
