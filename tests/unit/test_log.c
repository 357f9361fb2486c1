/* proto/log.c: lines dated in ISO 8601 (UTC, milliseconds), levels changed
 * at run time, and the in-memory ring the manager hands out for 'kbridge
 * gather-logs': the newest whole lines, bounded, after wrapping too; and
 * the lines about one user, chosen by the tag they were logged with (never
 * by their text), with that user's debug lines when they asked. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "ok.h"

static char got[8192];

/* The ring's newest text, NUL-terminated. */
static const char *
ring(size_t len)
{
	size_t n = log_ring_copy(got, len < sizeof(got) ? len : sizeof(got) - 1);

	got[n] = '\0';
	return got;
}

/* The ring's newest lines tagged user, NUL-terminated. */
static const char *
ring_for(const char *user, size_t len)
{
	size_t n = log_ring_copy_for(user, got, len < sizeof(got) ? len : sizeof(got) - 1);

	got[n] = '\0';
	return got;
}

static int
lines(const char *s)
{
	int n = 0;

	while ((s = strchr(s, '\n')) != NULL)
		s++, n++;
	return n;
}

static int
every_line_dated(const char *s)
{
	regex_t re;
	const char *nl;
	char line[512];
	int good = 1;

	if (regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
	    "test\\[(info|warn|debug)\\] ", REG_EXTENDED | REG_NOSUB) != 0)
		return 0;
	for (; *s; s = nl + 1) {
		if ((nl = strchr(s, '\n')) == NULL)
			return 0;	/* a line cut short */
		snprintf(line, sizeof(line), "%.*s", (int)(nl - s), s);
		good &= regexec(&re, line, 0, NULL, 0) == 0;
	}
	regfree(&re);
	return good;
}

int
main(void)
{
	char big[4000];
	int i;

	/* The lines go to stderr as well: keep them off the test's output. */
	if (!freopen("/dev/null", "w", stderr))
		return 1;
	log_init("test", KB_LOG_INFO);
	ok(ring(100)[0] == '\0');		/* no ring yet */
	ok(log_ring_init(1024) == 0);
	log_info("one %d", 1);
	log_debug("hidden");
	ok(strstr(ring(1024), "test[info] one 1\n") != NULL);
	ok(strstr(got, "hidden") == NULL);
	ok(every_line_dated(got));

	log_set_level(KB_LOG_DEBUG);
	ok(log_level() == KB_LOG_DEBUG && strcmp(log_level_name(log_level()), "debug") == 0);
	log_debug("shown");
	ok(strstr(ring(1024), "test[debug] shown\n") != NULL);
	log_set_level(KB_LOG_INFO);
	ok(strcmp(log_level_name(KB_LOG_INFO), "info") == 0);

	/* A copy smaller than the ring starts at a whole line. */
	log_info("two");
	ring(strlen("0000-00-00T00:00:00.000Z test[info] two\n") + 5);
	ok(strchr(got, '\n') == got + strlen(got) - 1 && every_line_dated(got) &&
	    strstr(got, "test[info] two\n") != NULL);
	ok(strstr(ring(60), "two\n") != NULL && every_line_dated(got));

	/* Wrapped many times: the newest lines, whole, at most the ring. */
	for (i = 0; i < 500; i++)
		log_info("line %03d", i);
	ring(sizeof(got));
	ok(strlen(got) <= 1024);
	ok(strstr(got, "line 499\n") != NULL && strstr(got, "line 400\n") == NULL);
	ok(every_line_dated(got));

	/* A line longer than the ring: cut, then it and the next fit again. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_warnx("%s", big);
	log_info("after");
	ok(strstr(ring(sizeof(got)), "test[info] after\n") != NULL);
	ok(strlen(got) <= 1024);

	/* Tagged lines: a user's copy holds the lines tagged with their name
	 * only. Bob's line quoting " for alice" (another developer's input)
	 * is not alice's; an untagged line naming her is not either. */
	log_info_for("bob", "intercept x: bob asked for a header \"x: for alice\" for alice");
	log_info_for("alice", "session alice from 10.0.0.1:4000: hello");
	log_info("session alice from 10.0.0.2:4001: untagged");
	log_warnx_for("alicex", "session alicex from 10.0.0.3:4002: refused");
	ok(strstr(ring_for("alice", sizeof(got)), "test[info] session alice from 10.0.0.1:4000: "
	    "hello\n") != NULL && lines(got) == 1 && every_line_dated(got));
	ok(strstr(got, "for alice") == NULL && strstr(got, "untagged") == NULL &&
	    strstr(got, "alicex") == NULL);
	ok(strstr(ring_for("bob", sizeof(got)), "for alice\n") != NULL && lines(got) == 1);
	ok(ring_for("alic", sizeof(got))[0] == '\0' && ring_for("", sizeof(got))[0] == '\0' &&
	    ring_for(NULL, sizeof(got))[0] == '\0');
	/* The whole ring (a sidecar's answer) has them all. */
	ring(sizeof(got));
	ok(strstr(got, "for alice\n") && strstr(got, "untagged\n") && strstr(got, "hello\n"));

	/* Debug lines about a user: only at level debug, or when they asked;
	 * asking does not change the level for anyone else's lines. */
	log_debug_for("alice", 0, "alice not asked");
	log_debug_for("alice", 1, "alice asked");
	log_debug("global debug");
	log_debug_for("bob", 0, "bob not asked");
	ok(log_level() == KB_LOG_INFO);
	ok(strstr(ring_for("alice", sizeof(got)), "test[debug] alice asked\n") != NULL &&
	    strstr(got, "not asked") == NULL);
	ok(strstr(ring(sizeof(got)), "global debug") == NULL && strstr(got, "bob not asked") == NULL);

	/* Wrapped by other lines: alice's newest, whole, bounded by len. */
	for (i = 0; i < 300; i++) {
		log_info("other %03d", i);
		if (i % 50 == 49)
			log_info_for("alice", "alice %03d", i);
	}
	ok(strstr(ring_for("alice", sizeof(got)), "alice 299\n") != NULL &&
	    strstr(got, "alice 049") == NULL && strstr(got, "other") == NULL &&
	    every_line_dated(got));
	ring_for("alice", strlen("0000-00-00T00:00:00.000Z test[info] alice 299\n") + 10);
	ok(lines(got) == 1 && strstr(got, "alice 299\n") != NULL && every_line_dated(got));
	return ok_done();
}
