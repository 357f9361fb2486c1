/* Every external command the daemon runs goes through here: argv is logged,
 * and tests can replace the runner to assert the exact commands. */
#ifndef KB_EXEC_H
#define KB_EXEC_H

#include <stddef.h>

/* Run argv (argv[0] looked up in PATH), wait, capture stderr's first line
 * into err on failure. Returns the exit status (0 = success) or -1. */
int kb_exec(char *const argv[], char *err, size_t errlen);

/* Replace the runner (NULL restores the real one). For tests. */
typedef int (*kb_exec_fn)(char *const argv[], char *err, size_t errlen);
void kb_exec_set_runner(kb_exec_fn fn);

#endif
