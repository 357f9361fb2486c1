/* The sides of a session that tests/fuzz/fuzz_control.c drives: each one
 * runs the real handlers of one program (its .c file is included by
 * control_<side>.c) on plain connections whose other ends the fuzzer writes. */
#ifndef KB_FUZZ_CONTROL_H
#define KB_FUZZ_CONTROL_H

struct event_base;

struct fz_side {
	const char *name;
	int npeers;		/* connections per input */
	void (*setup)(struct event_base *base);
	/* Run the side's session on fd (its end of peer i's connection). */
	void (*start)(int i, int fd);
	/* After each message: what the side asks of its peer on its own. */
	void (*poke)(void);
	/* Every session has ended (the fuzzer closed its ends)? */
	int (*ended)(void);
	/* The input is over: free what is left, so the next one starts clean. */
	void (*finish)(void);
};

extern const struct fz_side fz_manager, fz_daemon, fz_sidecar;

/* Run the loop without blocking, a few times. */
void fz_loop(void);

#endif
