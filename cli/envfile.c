/* --env-file: written to a temporary file beside the target and renamed
 * into place, so a reader never sees half a file. */
#include "envfile.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENV_MODE	0600
#define KEY_SHOWN	64

struct kb_envfile {
	char *path;
	char *tmp;
	int fd;
};

struct var {
	const char *key;
	const cJSON *val;
	size_t idx;
};

struct kb_envfile *
kb_envfile_open(const char *path)
{
	struct kb_envfile *ef;
	const char *base;
	struct stat st;
	int saved;

	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (*base == '\0' || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
		errno = EISDIR;
		return NULL;
	}
	if ((ef = calloc(1, sizeof(*ef))) == NULL)
		return NULL;
	ef->fd = -1;
	/* A sibling, so that rename() replaces the file in one step. */
	if ((ef->path = strdup(path)) == NULL ||
	    asprintf(&ef->tmp, "%.*s.%s.XXXXXX", (int)(base - path), path,
	    base) == -1) {
		ef->tmp = NULL;
		goto fail;
	}
	/* mkstemp: O_EXCL, so a planted file or link is never followed. */
	if ((ef->fd = mkstemp(ef->tmp)) == -1) {
		free(ef->tmp);
		ef->tmp = NULL;
		goto fail;
	}
	if (fchmod(ef->fd, ENV_MODE) == -1)
		goto fail;
	return ef;
fail:
	saved = errno;
	kb_envfile_abort(ef);
	errno = saved;
	return NULL;
}

void
kb_envfile_abort(struct kb_envfile *ef)
{
	if (ef == NULL)
		return;
	if (ef->fd != -1)
		close(ef->fd);
	if (ef->tmp)
		unlink(ef->tmp);
	free(ef->tmp);
	free(ef->path);
	free(ef);
}

static int
valid_name(const char *s)
{
	size_t i;

	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') ||
	    s[0] == '_'))
		return 0;
	for (i = 1; s[i]; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/* docker --env-file takes the value verbatim, a shell would interpret
 * quotes, $, `, \, spaces, globs and ~: only values neither changes can
 * be written. */
static int
needs_quoting(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || strchr("_./:@%+,=-", *s)))
			return 1;
	return 0;
}

static void
skip(const char *key, const char *why)
{
	char shown[KEY_SHOWN + 4];
	size_t i;

	for (i = 0; key[i] && i < KEY_SHOWN; i++)
		shown[i] = (unsigned char)key[i] < 0x20 || key[i] == 0x7f ?
		    '?' : key[i];
	strcpy(shown + i, key[i] ? "..." : "");
	fprintf(stderr, "kbridge: env %s not written: %s\n",
	    shown[0] ? shown : "''", why);
}

/* Variables that would take over the developer's own shell or the
 * programs it starts (the loader, the shell's startup, where commands and
 * home are) rather than configure the app: left out unless asked for. */
static int
takes_over_shell(const char *k)
{
	static const char *const names[] = { "PATH", "HOME", "SHELL", "USER", "LOGNAME",
		"PWD", "OLDPWD", "SHLVL", "TERM", "TMPDIR", "IFS", "ENV", "BASH_ENV", "CDPATH",
		"PS1", "PS2", "PS4", "PROMPT_COMMAND", "HISTFILE", "GLIBC_TUNABLES", "GCONV_PATH",
		"HOSTALIASES", "LOCPATH", "NLSPATH", "RESOLV_HOST_CONF", "SSH_AUTH_SOCK",
		"DISPLAY", "XDG_RUNTIME_DIR", "ZDOTDIR", "EDITOR", "VISUAL", "PAGER", NULL };
	static const char *const prefixes[] = { "LD_", "DYLD_", "BASH_FUNC_", "MALLOC_",
		NULL };
	size_t i;

	for (i = 0; names[i]; i++)
		if (!strcmp(k, names[i]))
			return 1;
	for (i = 0; prefixes[i]; i++)
		if (!strncmp(k, prefixes[i], strlen(prefixes[i])))
			return 1;
	return 0;
}

static int
by_key(const void *a, const void *b)
{
	const struct var *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int
kb_envfile_commit(struct kb_envfile *ef, const cJSON *env, int all,
    size_t *written)
{
	struct var *vars = NULL;
	const cJSON *v;
	const char *s;
	FILE *f = NULL;
	size_t i, n = 0, left = 0;
	int saved;

	*written = 0;
	cJSON_ArrayForEach(v, env)
		n++;
	if (n && (vars = calloc(n, sizeof(*vars))) == NULL)
		goto fail;
	n = 0;
	cJSON_ArrayForEach(v, env) {
		vars[n].key = v->string ? v->string : "";
		vars[n].val = v;
		vars[n].idx = n;
		n++;
	}
	if (n > 1)
		qsort(vars, n, sizeof(*vars), by_key);

	if ((f = fdopen(ef->fd, "w")) == NULL)
		goto fail;
	ef->fd = -1;
	/* Said first, in the file and on stderr, so nobody wonders where
	 * the workload's PATH went. */
	for (i = 0; !all && i < n; i++) {
		if (!valid_name(vars[i].key) || !takes_over_shell(vars[i].key))
			continue;
		if (!left++) {
			fputs("# left out (they would take over your own shell; "
			    "--env-all writes them):", f);
			fputs("kbridge: env file: left out", stderr);
		}
		fprintf(f, " %s", vars[i].key);
		fprintf(stderr, " %s", vars[i].key);
	}
	if (left) {
		fputc('\n', f);
		fputs(" (they would take over your own shell; --env-all "
		    "writes them)\n", stderr);
	}
	for (i = 0; i < n; i++) {
		s = cJSON_GetStringValue(vars[i].val);
		if (valid_name(vars[i].key) && !all &&
		    takes_over_shell(vars[i].key))
			continue;
		if (!valid_name(vars[i].key))
			skip(vars[i].key, "not a valid variable name");
		else if (s == NULL)
			skip(vars[i].key, "its value is not a string");
		else if (strchr(s, '\n'))
			skip(vars[i].key, "its value contains a newline");
		else if (needs_quoting(s))
			skip(vars[i].key, "its value needs quoting, which "
			    "docker --env-file cannot read");
		else {
			fprintf(f, "%s=%s\n", vars[i].key, s);
			(*written)++;
		}
	}
	if (fflush(f) == EOF || fsync(fileno(f)) == -1)
		goto fail;
	if (fclose(f) == EOF) {
		f = NULL;
		goto fail;
	}
	f = NULL;
	if (rename(ef->tmp, ef->path) == -1)
		goto fail;
	free(ef->tmp);
	ef->tmp = NULL;
	free(vars);
	kb_envfile_abort(ef);
	return 0;
fail:
	saved = errno;
	if (f)
		fclose(f);
	free(vars);
	kb_envfile_abort(ef);
	errno = saved;
	return -1;
}
