/* What the command files share with main.c: option parsing, one-line
 * errors, reading the daemon's answers. */
#ifndef KB_CMD_H
#define KB_CMD_H

#include <getopt.h>
#include <signal.h>

#include <cjson/cJSON.h>

#define EXIT_USAGE	2

enum output { OUT_TEXT, OUT_JSON };

/* Set by SIGINT/SIGTERM once catch_signals() ran; aborts kb_api calls. */
extern volatile sig_atomic_t interrupted;

/* "kbridge: " + message + newline on stderr. */
void errorx(const char *, ...) __attribute__((format(printf, 1, 2)));
/* getopt_long with one-line messages: the option, -1 at the end, or 0
 * after reporting a usage error. */
int next_opt(int, char **, const char *, const struct option *);
/* -1 (reported) if operands remain after the options. */
int no_operands(int, char **);
/* "text" or "json"; -1 (reported) otherwise. */
int parse_output(const char *, enum output *);
/* The command's usage text on stdout. */
void print_usage(const char *);
/* Indented JSON on stdout. */
void print_json(const cJSON *);
/* A non-empty string member, else NULL. */
const char *jstr(const cJSON *, const char *);
/* A number member: 1 and *out, else 0. */
int jnum(const cJSON *, const char *, double *);
const char *orelse(const char *, const char *);
/* RFC 1123 label, as Kubernetes requires of namespace and service names. */
int valid_label(const char *);
/* Let Ctrl-C interrupt a request instead of killing us mid-way. */
void catch_signals(void);

/* cli/intercept.c */
int cmd_intercept(int, char **);
int cmd_leave(int, char **);
int cmd_list(int, char **);

#endif
