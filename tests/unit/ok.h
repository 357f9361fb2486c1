/* Minimal TAP-style assertions for unit tests (in the manner of h2o's t/00unit). */
#ifndef KB_OK_H
#define KB_OK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ok_run, ok_failed, ok_skipped;

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

/* Must every part of every test run? CI=true (everything is installed
 * there) or KB_STRICT=1. */
static inline int
ok_strict(void)
{
	const char *ci = getenv("CI"), *st = getenv("KB_STRICT");

	return (ci != NULL && strcmp(ci, "true") == 0) || (st != NULL && strcmp(st, "1") == 0);
}

/* A part of a test cannot run here, for reason why. That is a failure when
 * strict, and as root unless a tool is missing (root lacks nothing else);
 * otherwise a loud SKIP, on stdout (TAP) and stderr. */
static inline void
skip_at(const char *why, int tool_missing, const char *file, int line)
{
	ok_run++;
	if (ok_strict() || (!tool_missing && geteuid() == 0)) {
		ok_failed++;
		printf("not ok %d - SKIP not allowed here (%s): %s (%s:%d)\n", ok_run,
		    ok_strict() ? "CI=true or KB_STRICT=1" : "running as root", why, file, line);
	} else {
		ok_skipped++;
		printf("ok %d # SKIP %s\n", ok_run, why);
		fprintf(stderr, "SKIP: %s:%d: %s (CI=true or KB_STRICT=1 makes this a failure)\n",
		    file, line, why);
	}
	fflush(stdout);
}

/* A part that cannot run without privileges (needs root, say). */
#define skip_or_fail(why) skip_at((why), 0, __FILE__, __LINE__)
/* A part that needs a program that is not installed. */
#define skip_or_fail_tool(why) skip_at((why), 1, __FILE__, __LINE__)

/* Print the plan and return the exit status for main(). */
static inline int
ok_done(void)
{
	printf("1..%d\n", ok_run);
	if (ok_skipped)
		printf("# SKIP: %d part(s) did not run (see the SKIP lines above)\n", ok_skipped);
	if (ok_run == 0) {
		printf("# no assertions ran\n");
		return 1;
	}
	return ok_failed ? 1 : 0;
}

#endif
