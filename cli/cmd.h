/* What the command files share with main.c: option parsing, one-line
 * errors, reading the daemon's answers. */
#ifndef KB_CMD_H
#define KB_CMD_H

#include <getopt.h>
#include <signal.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#define EXIT_USAGE	2
/* The daemon asks the manager, which may ask a sidecar. */
#define API_TIMEOUT_MS	20000
/* How much of a bad argument an error message repeats. */
#define SHOWN_MAX	80

/* -o text, json (yaml too: print_json then writes YAML), wide (text with
 * more columns, only where output_wide_ok was set before the options). */
enum output { OUT_TEXT, OUT_JSON, OUT_WIDE };
extern int output_wide_ok;
/* The {"error": ...} line on stderr, not stdout (intercept -- CMD: stdout
 * is CMD's). */
extern int doc_errors_stderr;

/* Long options most commands share (see std_opt). */
#define LONGOPT_NAMESPACE	{ "namespace", required_argument, NULL, 'n' }
#define LONGOPT_OUTPUT		{ "output", required_argument, NULL, 'o' }
#define LONGOPT_HELP		{ "help", no_argument, NULL, 'h' }
#define LONGOPT_END		{ NULL, 0, NULL, 0 }

/* Set by SIGINT/SIGTERM once catch_signals() ran; aborts kb_api calls. */
extern volatile sig_atomic_t interrupted;

/* "kbridge: " + message + newline on stderr. */
void errorx(const char *, ...) __attribute__((format(printf, 1, 2)));
/* getopt_long with one-line messages: the option, -1 at the end, or 0
 * after reporting a usage error. */
int next_opt(int, char **, const char *, const struct option *);
/* -1 (reported) if operands remain after the options. */
int no_operands(int, char **);
/* -o of command cmd: "text", "json", "yaml" or (with output_wide_ok)
 * "wide"; -1 (reported, naming cmd and what it accepts) otherwise. After
 * json or yaml, a failing command's error is also a JSON line on stdout. */
int parse_output(const char *cmd, const char *arg, enum output *out);
/* -o json|yaml prints one shape: the keys of every object sorted (at
 * every depth), and the arrays "workloads", "intercepts" and "previews"
 * (at any depth) by namespace, name, workload, owner, id, token_prefix
 * (as kubectl sorts by namespace, then name). print_json does both on a
 * copy; list commands call sort_lists for their text too. */
void sort_keys(cJSON *);
void sort_lists(cJSON *);
/* The command's usage text on stdout. */
void print_usage(const char *);
/* Indented JSON on stdout (YAML after -o yaml), sorted (above). */
void print_json(const cJSON *);
/* A non-empty string member, else NULL. */
const char *jstr(const cJSON *, const char *);
/* A number member: 1 and *out, else 0. */
int jnum(const cJSON *, const char *, double *);
const char *orelse(const char *, const char *);
/* Let Ctrl-C interrupt a request instead of killing us mid-way. */
void catch_signals(void);

/* cli/cmd.c */
/* Copy s for a one-line message: control characters become '?'. */
const char *shown(const char *s, char *buf, size_t len);
/* Print a string that came from the cluster (other users' names, header
 * values) without letting it move the cursor or reprogram the terminal:
 * C0, DEL and the UTF-8 C1 controls become '?'. Returns the number of
 * columns used, close enough for padding. */
size_t put(const char *s);
/* before (may be NULL), s through put(), after (may be NULL). */
void put_in(const char *before, const char *s, const char *after);
void put_padded(const char *s, size_t width);
/* One request to kbridged within timeout_ms; on a 2xx answer with a JSON
 * object 0 and *resp (the caller frees), else a one-line reason in err and
 * KB_API_DOWN when kbridged is not running, -1 otherwise. */
int call_ms(const char *method, const char *path, const cJSON *body,
    long timeout_ms, cJSON **resp, char *err, size_t errlen);
/* call_ms within API_TIMEOUT_MS: 0, or -1 (not running either). */
int call_err(const char *method, const char *path, const cJSON *body,
    cJSON **resp, char *err, size_t errlen);
/* call_err, reporting a failure as "WHAT failed: REASON". */
int call(const char *what, const char *method, const char *path,
    const cJSON *body, cJSON **resp);
/* The WORKLOAD operand: exactly one, a valid name. NULL after a usage
 * error. */
const char *workload_arg(int argc, char **argv);
/* -1 after a usage error if ns is given and not a valid name. */
int namespace_arg(const char *cmd, const char *ns);
/* A port number for option opt; -1 after a usage error. */
int port_arg(const char *opt, const char *s, long *port);
/* The options -n NS (unless ns is NULL), -o FMT (unless out is NULL) and
 * -h: 1 if ch was one and is handled, else 0 and the exit code in *ret
 * (0 after -h, else EXIT_USAGE; *ret is EXIT_USAGE after 1 too). */
int std_opt(int ch, char **argv, const char **ns, enum output *out,
    int *ret);
/* The options of a command that has only std_opt's and no operand: 1 to
 * go on, else 0 and the exit code in *ret. */
int std_opts_only(int argc, char **argv, const char *shortopts,
    const struct option *longopts, const char **ns, enum output *out,
    int *ret);
/* A list command: [-n NS] [-o FMT], GET path[?namespace=NS], the answer
 * as JSON (after json(answer) unless NULL) or through text(answer, NS,
 * OUT_TEXT or OUT_WIDE). The exit code. */
int list_cmd(int argc, char **argv, const char *path,
    void (*text)(const cJSON *, const char *, enum output),
    void (*json)(cJSON *));

/* cli/main.c: {"kbridge": VERSION, "kbridged": {"version", "pid"} or null},
 * NULL when out of memory. */
cJSON *version_json(void);

/* cli/logs.c */
int cmd_logs(int, char **);
int cmd_loglevel(int, char **);
int cmd_gather_logs(int, char **);

/* cli/intercept.c */
int cmd_intercept(int, char **);
int cmd_leave(int, char **);
int cmd_list(int, char **);
int cmd_complete(int, char **);

/* cli/install.c */
int cmd_install(int, char **);
int cmd_uninstall(int, char **);

/* cli/preview.c */
int cmd_preview(int, char **);
/* DURATION (90, 90s, 10m, 2h, 1d; 1 s to 30 d) in seconds; -1 after a
 * usage error naming opt. */
int duration_arg(const char *opt, const char *s, long *secs);
/* Ask for a preview of workload (ns NULL: the connected namespace); ttl
 * and service_port 0 when not given. The answer, or NULL and err. */
int host_arg(const char *opt, const char *s);
cJSON *preview_create(const char *workload, const char *ns, long ttl,
    long service_port, const char *host, char *err, size_t errlen);
/* created_at and expires_at (ISO 8601 UTC, or null) next to the epoch
 * numbers of resp's "preview" and "previews" items. */
void preview_times(cJSON *resp);
/* The text lines of a PREVIEW object. */
void print_preview(const cJSON *preview);

#endif
