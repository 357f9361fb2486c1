/* Minimal TAP-style assertions for unit tests (in the manner of h2o's t/00unit). */
#ifndef KB_OK_H
#define KB_OK_H

#include <stdio.h>
#include <stdlib.h>

static int ok_run, ok_failed;

#define ok(cond) ok_at((cond), #cond, __FILE__, __LINE__)

static inline void
ok_at(int cond, const char *what, const char *file, int line)
{
	ok_run++;
	if (cond) {
		printf("ok %d - %s\n", ok_run, what);
	} else {
		ok_failed++;
		printf("not ok %d - %s (%s:%d)\n", ok_run, what, file, line);
	}
	fflush(stdout);
}

/* Print the plan and return the exit status for main(). */
static inline int
ok_done(void)
{
	printf("1..%d\n", ok_run);
	if (ok_run == 0) {
		printf("# no assertions ran\n");
		return 1;
	}
	return ok_failed ? 1 : 0;
}

#endif
