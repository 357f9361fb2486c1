/* The env file of 'kbridge intercept --env-file' (cli/envfile.c): what a
 * sidecar reports as the workload's environment must not take over the
 * developer's own shell (PATH, HOME, LD_*, DYLD_*, SHELL, ...) unless
 * --env-all asks for it, and the file says what it left out. */
#include "../../cli/envfile.c"

#include <limits.h>

#include "ok.h"

static char dir[] = "/tmp/kb-test-envfile.XXXXXX";

/* Write env (JSON text) to FILE with all as given; the file's text. */
static char *
write_env(const char *json, int all, size_t *written)
{
	char path[PATH_MAX], *txt = NULL;
	struct kb_envfile *ef;
	cJSON *env = cJSON_Parse(json);
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/env", dir);
	if (env == NULL || (ef = kb_envfile_open(path)) == NULL ||
	    kb_envfile_commit(ef, env, all, written) < 0 || (f = fopen(path, "r")) == NULL) {
		cJSON_Delete(env);
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	if ((txt = calloc(1, n + 1)) != NULL && fread(txt, 1, n, f) != (size_t)n) {
		free(txt);
		txt = NULL;
	}
	fclose(f);
	cJSON_Delete(env);
	return txt;
}

static int
has_line(const char *txt, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = txt; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0'))
			return 1;
	return 0;
}

int
main(void)
{
	/* What a sidecar (honest or not) may report for web. */
	const char *env = "{\"SERVICE_NAME\":\"web\",\"PATH\":\"/tmp/evil\","
	    "\"LD_PRELOAD\":\"/tmp/evil.so\",\"HOME\":\"/tmp\",\"SHELL\":\"/tmp/sh\","
	    "\"DYLD_INSERT_LIBRARIES\":\"/tmp/e.dylib\",\"LD_LIBRARY_PATH\":\"/opt/web/lib\","
	    "\"BASH_ENV\":\"/tmp/rc\",\"LOG_LEVEL\":\"info\",\"PATHNAME\":\"ok\"}";
	size_t n;
	char *txt;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}

	txt = write_env(env, 0, &n);
	ok(txt != NULL);
	printf("# default:\n%s", txt ? txt : "");
	ok(n == 3);
	ok(has_line(txt, "SERVICE_NAME=web") && has_line(txt, "LOG_LEVEL=info") &&
	    has_line(txt, "PATHNAME=ok"));
	ok(!strstr(txt, "PATH=/tmp/evil") && !strstr(txt, "LD_PRELOAD=") && !strstr(txt, "HOME=") &&
	    !strstr(txt, "SHELL=") && !strstr(txt, "DYLD_INSERT_LIBRARIES=") &&
	    !strstr(txt, "LD_LIBRARY_PATH=") && !strstr(txt, "BASH_ENV="));
	/* The file says what it left out, in a line both readers skip. */
	ok(has_line(txt, "# left out (they would take over your own shell; --env-all writes "
	    "them): BASH_ENV DYLD_INSERT_LIBRARIES HOME LD_LIBRARY_PATH LD_PRELOAD PATH SHELL"));
	free(txt);

	txt = write_env(env, 1, &n);
	ok(txt != NULL);
	ok(n == 10);
	ok(has_line(txt, "PATH=/tmp/evil") && has_line(txt, "LD_PRELOAD=/tmp/evil.so") &&
	    has_line(txt, "HOME=/tmp") && has_line(txt, "DYLD_INSERT_LIBRARIES=/tmp/e.dylib"));
	ok(strstr(txt, "left out") == NULL);
	free(txt);

	/* Nothing to leave out: no note. */
	txt = write_env("{\"A\":\"1\"}", 0, &n);
	ok(txt && n == 1 && strcmp(txt, "A=1\n") == 0);
	free(txt);

	{
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/env", dir);
		unlink(path);
		rmdir(dir);
	}
	return ok_done();
}
