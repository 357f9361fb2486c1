/* --env-file and --env-json: a workload's environment in a file, in the
 * syntax of docker --env-file, of a POSIX shell (set -a; . FILE) or as a
 * JSON object; and the environment of 'kbridge intercept -- CMD'. */
#ifndef KB_ENVFILE_H
#define KB_ENVFILE_H

#include <stddef.h>

#include <cjson/cJSON.h>

enum kb_env_syntax { KB_ENV_DOCKER, KB_ENV_SH, KB_ENV_JSON };

struct kb_envfile;

/* "docker", "sh" or "json" into *syn: 0, or -1. */
int kb_env_syntax_arg(const char *s, enum kb_env_syntax *syn);
/* Create FILE's temporary sibling now, so that an unwritable place fails
 * before anything else changes. NULL with errno. */
struct kb_envfile *kb_envfile_open(const char *path);
/* Write env's string members sorted by key in syntax syn and rename the
 * file into place (mode 0600). docker: KEY=VALUE, the value as is; sh:
 * KEY='VALUE'; json: one object. A variable the syntax cannot hold (a line
 * break in a docker value, a name that is no shell identifier) is left
 * out with an error line on stderr naming it. Unless all, variables that
 * would take over the developer's own shell (PATH, HOME, LD_*, DYLD_*,
 * SHELL, ...) are left out, and a line on stderr (and a comment line in
 * the file but for json) names them. Frees ef. 0 with *written set, or
 * -1 with errno. */
int kb_envfile_commit(struct kb_envfile *ef, const cJSON *env, int all,
    enum kb_env_syntax syn, size_t *written);
/* Remove the temporary file and free ef (NULL is fine). */
void kb_envfile_abort(struct kb_envfile *ef);
/* base (an environ) with env's variables set over it, those that would
 * take over the shell left out unless all (named on stderr, as are
 * variables no environment can hold): a new NULL-terminated array for
 * kb_env_free, the number of env's variables set in *set; NULL with
 * errno. */
char **kb_env_merge(char *const *base, const cJSON *env, int all, size_t *set);
void kb_env_free(char **env);

#endif
