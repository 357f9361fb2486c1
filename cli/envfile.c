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

int
kb_env_syntax_arg(const char *s, enum kb_env_syntax *syn)
{
	if (!strcmp(s, "docker"))
		*syn = KB_ENV_DOCKER;
	else if (!strcmp(s, "sh"))
		*syn = KB_ENV_SH;
	else if (!strcmp(s, "json"))
		*syn = KB_ENV_JSON;
	else
		return -1;
	return 0;
}

static const char *const syntax_names[] = { "docker", "sh", "json" };

/* Why key=val cannot be written in syn, or NULL if it can. docker
 * --env-file takes a line's name up to the first '=' (no white space, not
 * starting a '#' comment) and the rest of the line literally; sh needs a
 * name that is an identifier and quotes every value with '...'; JSON holds
 * any string. */
static const char *
inexpressible(enum kb_env_syntax syn, const char *key, const char *val)
{
	size_t n;

	if (*key == '\0' || strchr(key, '='))
		return "not a variable name";
	if (val == NULL)
		return "its value is not a string";
	switch (syn) {
	case KB_ENV_DOCKER:
		if (key[0] == '#' || strpbrk(key, " \t\n\r\v\f"))
			return "docker syntax cannot hold that name (--env-syntax json can)";
		n = strlen(val);
		if (strchr(val, '\n') || (n && val[n - 1] == '\r'))
			return "its value holds a line break, which docker syntax cannot "
			    "(--env-syntax sh or json can)";
		return NULL;
	case KB_ENV_SH:
		if (!valid_name(key))
			return "not a shell variable name (--env-syntax docker or json can "
			    "hold it)";
		return NULL;
	default:
		return NULL;
	}
}

/* One line on stderr naming the variable that could not be written. */
static void
refuse(const char *path, enum kb_env_syntax syn, const char *key, const char *why)
{
	char shown[KEY_SHOWN + 4];
	size_t i;

	for (i = 0; key[i] && i < KEY_SHOWN; i++)
		shown[i] = (unsigned char)key[i] < 0x20 || key[i] == 0x7f ?
		    '?' : key[i];
	strcpy(shown + i, key[i] ? "..." : "");
	fprintf(stderr, "kbridge: error: env %s not written to %s (%s syntax): %s\n",
	    shown[0] ? shown : "''", path, syntax_names[syn], why);
}

/* val as one sh word: '...' with each ' as '\''. */
static void
put_sh(FILE *f, const char *val)
{
	fputc('\'', f);
	for (; *val; val++)
		if (*val == '\'')
			fputs("'\\''", f);
		else
			fputc(*val, f);
	fputc('\'', f);
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

/* env's members sorted by key (NULL when there are none, or with errno),
 * the count in *n. Unless all, those that would take over the shell are
 * left out and named on stderr after what, and (in a comment) in f. */
static struct var *
select_vars(const cJSON *env, int all, const char *what, FILE *f, size_t *n)
{
	struct var *vars = NULL;
	const cJSON *v;
	size_t i, j, left = 0;

	*n = 0;
	cJSON_ArrayForEach(v, env)
		(*n)++;
	if (*n == 0)
		return NULL;
	if ((vars = calloc(*n, sizeof(*vars))) == NULL)
		return NULL;
	*n = 0;
	cJSON_ArrayForEach(v, env) {
		vars[*n].key = v->string ? v->string : "";
		vars[*n].val = v;
		vars[*n].idx = *n;
		(*n)++;
	}
	if (*n > 1)
		qsort(vars, *n, sizeof(*vars), by_key);
	/* Said first, in the file and on stderr, so nobody wonders where
	 * the workload's PATH went. */
	for (i = j = 0; i < *n; i++) {
		if (all || !takes_over_shell(vars[i].key)) {
			vars[j++] = vars[i];
			continue;
		}
		if (!left++) {
			if (f)
				fputs("# left out (they would take over your own shell; "
				    "--env-all writes them):", f);
			fprintf(stderr, "kbridge: %s: left out", what);
		}
		if (f)
			fprintf(f, " %s", vars[i].key);
		fprintf(stderr, " %s", vars[i].key);
	}
	if (left) {
		if (f)
			fputc('\n', f);
		fputs(" (they would take over your own shell; --env-all "
		    "writes them)\n", stderr);
	}
	*n = j;
	return vars;
}

/* The variables in JSON: one object, a member each. */
static int
write_json(FILE *f, const struct var *vars, size_t n, size_t *written)
{
	cJSON *o = cJSON_CreateObject();
	char *txt;
	size_t i;

	for (i = 0; o && i < n; i++)
		if (cJSON_AddStringToObject(o, vars[i].key,
		    cJSON_GetStringValue(vars[i].val)) == NULL) {
			cJSON_Delete(o);
			o = NULL;
		}
	if (o == NULL || (txt = cJSON_Print(o)) == NULL) {
		cJSON_Delete(o);
		errno = ENOMEM;
		return -1;
	}
	fprintf(f, "%s\n", txt);
	free(txt);
	cJSON_Delete(o);
	*written = n;
	return 0;
}

int
kb_envfile_commit(struct kb_envfile *ef, const cJSON *env, int all,
    enum kb_env_syntax syn, size_t *written)
{
	struct var *vars = NULL;
	const char *s, *why;
	FILE *f = NULL;
	size_t i, j, n = 0;
	int saved;

	*written = 0;
	if ((f = fdopen(ef->fd, "w")) == NULL)
		goto fail;
	ef->fd = -1;
	errno = 0;
	vars = select_vars(env, all, ef->path, syn == KB_ENV_JSON ? NULL : f, &n);
	if (vars == NULL && errno == ENOMEM)
		goto fail;
	for (i = j = 0; i < n; i++) {
		s = cJSON_GetStringValue(vars[i].val);
		if ((why = inexpressible(syn, vars[i].key, s)) != NULL)
			refuse(ef->path, syn, vars[i].key, why);
		else
			vars[j++] = vars[i];
	}
	n = j;
	if (syn == KB_ENV_JSON) {
		if (write_json(f, vars, n, written) == -1)
			goto fail;
	} else
		for (i = 0; i < n; i++) {
			fprintf(f, "%s=", vars[i].key);
			if (syn == KB_ENV_SH)
				put_sh(f, cJSON_GetStringValue(vars[i].val));
			else
				fputs(cJSON_GetStringValue(vars[i].val), f);
			fputc('\n', f);
			(*written)++;
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

char **
kb_env_merge(char *const *base, const cJSON *env, int all, size_t *set)
{
	struct var *vars;
	char **out, *kv;
	const char *s;
	size_t i, j, k, nb = 0, n = 0, klen;

	*set = 0;
	errno = 0;
	vars = select_vars(env, all, "environment", NULL, &n);
	if (vars == NULL && errno == ENOMEM)
		return NULL;
	while (base && base[nb])
		nb++;
	if ((out = calloc(nb + n + 1, sizeof(*out))) == NULL) {
		free(vars);
		return NULL;
	}
	for (i = 0; i < nb; i++)
		if ((out[i] = strdup(base[i])) == NULL)
			goto fail;
	for (j = 0; j < n; j++) {
		s = cJSON_GetStringValue(vars[j].val);
		if (*vars[j].key == '\0' || strchr(vars[j].key, '=') || s == NULL) {
			fprintf(stderr, "kbridge: error: env %s not set: %s\n",
			    vars[j].key[0] ? vars[j].key : "''", s ? "not a variable name" :
			    "its value is not a string");
			continue;
		}
		if (asprintf(&kv, "%s=%s", vars[j].key, s) == -1)
			goto fail;
		/* The workload's value replaces ours. */
		klen = strlen(vars[j].key) + 1;
		for (k = 0; k < i && strncmp(out[k], kv, klen); k++)
			;
		if (k < i)
			free(out[k]);
		else
			i++;
		out[k] = kv;
		(*set)++;
	}
	free(vars);
	return out;
fail:
	free(vars);
	kb_env_free(out);
	errno = ENOMEM;
	return NULL;
}

void
kb_env_free(char **env)
{
	size_t i;

	for (i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}
