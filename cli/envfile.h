/* --env-file: a workload's environment as KEY=VALUE lines that a POSIX
 * shell (set -a; . FILE) and docker run --env-file both read alike. */
#ifndef KB_ENVFILE_H
#define KB_ENVFILE_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct kb_envfile;

/* Create FILE's temporary sibling now, so that an unwritable place fails
 * before anything else changes. NULL with errno. */
struct kb_envfile *kb_envfile_open(const char *path);
/* Write env's string members sorted by key, warning on stderr about each
 * one the two readers cannot share, and rename the file into place (mode
 * 0600). Unless all, variables that would take over the developer's own
 * shell (PATH, HOME, LD_*, DYLD_*, SHELL, ...) are left out, and a comment
 * line in the file and a line on stderr name them. Frees ef. 0 with
 * *written set, or -1 with errno. */
int kb_envfile_commit(struct kb_envfile *ef, const cJSON *env, int all,
    size_t *written);
/* Remove the temporary file and free ef (NULL is fine). */
void kb_envfile_abort(struct kb_envfile *ef);

#endif
