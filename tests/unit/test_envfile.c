/* The env file of 'kbridge intercept --env-file' (cli/envfile.c): what a
 * sidecar reports as the workload's environment must not take over the
 * developer's own shell (PATH, HOME, LD_*, DYLD_*, SHELL, ...) unless
 * --env-all asks for it, and the file says what it left out. */
#include "../../cli/envfile.c"

#include <fcntl.h>
#include <limits.h>

#include "ok.h"

static char dir[] = "/tmp/kb-test-envfile.XXXXXX";

static char *slurp(const char *path);

/* Write env (JSON text) to FILE with all and syntax as given; the file's
 * text. What was said on stderr in errtxt (unless NULL). */
static char *
write_syn(const char *json, int all, enum kb_env_syntax syn, size_t *written, char **errtxt)
{
	char path[PATH_MAX], epath[PATH_MAX];
	struct kb_envfile *ef;
	cJSON *env = cJSON_Parse(json);
	int saved, fd, r = -1;

	snprintf(path, sizeof(path), "%s/env", dir);
	snprintf(epath, sizeof(epath), "%s/err", dir);
	fflush(stderr);
	saved = dup(2);
	if ((fd = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600)) != -1) {
		dup2(fd, 2);
		close(fd);
	}
	if (env && (ef = kb_envfile_open(path)) != NULL)
		r = kb_envfile_commit(ef, env, all, syn, written);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	cJSON_Delete(env);
	if (errtxt)
		*errtxt = slurp(epath);
	return r == 0 ? slurp(path) : NULL;
}

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
	    kb_envfile_commit(ef, env, all, KB_ENV_DOCKER, written) < 0 || (f = fopen(path, "r")) == NULL) {
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

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *txt = NULL;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	if ((txt = calloc(1, n + 1)) != NULL && fread(txt, 1, n, f) != (size_t)n) {
		free(txt);
		txt = NULL;
	}
	fclose(f);
	return txt;
}

/* What sh reads for NAME after 'set -a; . FILE', or NULL. */
static char *
sh_reads(const char *name)
{
	char cmd[PATH_MAX + 128], out[PATH_MAX];

	snprintf(cmd, sizeof(cmd), "sh -c 'set -a; . %s/env; printf %%s \"$%s\"' >%s/out",
	    dir, name, dir);
	if (system(cmd) != 0)
		return NULL;
	snprintf(out, sizeof(out), "%s/out", dir);
	return slurp(out);
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

static int
jeq(const cJSON *o, const char *k, const char *want)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));

	return v && !strcmp(v, want);
}

/* --env-syntax: docker takes the rest of the line as is, sh quotes with
 * '...', JSON holds anything; what a syntax cannot hold is an error line
 * naming the variable, never a silent drop. */
static void
syntaxes(void)
{
	const char *env = "{\"GREETING\":\"hello world\",\"Q\":\"it's $HOME `id` \\\"x\\\" *\","
	    "\"ML\":\"a\\nb\",\"my.var\":\"1\",\"PATH\":\"/evil\"}";
	char *txt, *err, *v;
	cJSON *o = NULL;
	size_t n;

	txt = write_syn(env, 0, KB_ENV_DOCKER, &n, &err);
	printf("# docker:\n%s# stderr:\n%s", txt ? txt : "", err ? err : "");
	ok(txt && n == 3);
	ok(has_line(txt, "GREETING=hello world") && has_line(txt, "my.var=1") &&
	    has_line(txt, "Q=it's $HOME `id` \"x\" *"));
	ok(!strstr(txt, "ML=") && err && strstr(err, "error: env ML not written") &&
	    strstr(err, "line break"));
	ok(err && strstr(err, "left out PATH"));
	free(txt);
	free(err);

	txt = write_syn(env, 0, KB_ENV_SH, &n, &err);
	printf("# sh:\n%s# stderr:\n%s", txt ? txt : "", err ? err : "");
	ok(txt && n == 3);
	ok(has_line(txt, "GREETING='hello world'") && has_line(txt, "ML='a"));
	ok(err && strstr(err, "error: env my.var not written") && strstr(err, "shell variable"));
	ok((v = sh_reads("GREETING")) && !strcmp(v, "hello world"));
	free(v);
	ok((v = sh_reads("Q")) && !strcmp(v, "it's $HOME `id` \"x\" *"));
	free(v);
	ok((v = sh_reads("ML")) && !strcmp(v, "a\nb"));
	free(v);
	free(txt);
	free(err);

	txt = write_syn(env, 1, KB_ENV_JSON, &n, &err);
	ok(txt && n == 5 && (o = cJSON_Parse(txt)) != NULL);
	ok(jeq(o, "ML", "a\nb") && jeq(o, "GREETING", "hello world") && jeq(o, "PATH", "/evil"));
	ok(err && err[0] == '\0');
	cJSON_Delete(o);
	free(txt);
	free(err);
}

/* The environment of -- CMD: ours with the workload's over it. */
static void
merge(void)
{
	char *base[] = { "PATH=/usr/bin", "A=mine", "B=keep", NULL }, **e;
	cJSON *env = cJSON_Parse("{\"A\":\"theirs\",\"C\":\"new\",\"PATH\":\"/evil\"}");
	size_t n, i, na = 0;

	e = kb_env_merge(base, env, 0, &n);
	ok(e && n == 2);
	for (i = 0; e && e[i]; i++)
		na += !strncmp(e[i], "A=", 2);
	ok(e && i == 4 && na == 1 && !strcmp(e[0], "PATH=/usr/bin") && !strcmp(e[1], "A=theirs") &&
	    !strcmp(e[2], "B=keep") && !strcmp(e[3], "C=new"));
	kb_env_free(e);
	e = kb_env_merge(base, env, 1, &n);
	ok(e && n == 3 && !strcmp(e[0], "PATH=/evil"));
	kb_env_free(e);
	cJSON_Delete(env);
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

	syntaxes();
	merge();
	{
		char path[PATH_MAX];
		const char *f[] = { "env", "err", "out" };
		size_t i;

		for (i = 0; i < 3; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, f[i]);
			unlink(path);
		}
		rmdir(dir);
	}
	return ok_done();
}
