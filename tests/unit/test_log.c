/* proto/log.c: lines dated in ISO 8601 (UTC, milliseconds), levels changed
 * at run time, and the in-memory ring the manager hands out for 'kbridge
 * gather-logs': the newest whole lines, bounded, after wrapping too. */
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
	return ok_done();
}
