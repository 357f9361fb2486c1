/* The in-cluster manager's state in the API: its previews (bearer tokens,
 * so a Secret, not a ConfigMap) and intercepts, kept in one key of one
 * Secret of the pod's namespace, so that a manager pod deleted and started
 * elsewhere serves them again. Read once at start (before listening);
 * written after each change, coalesced (one request in flight, the latest
 * state 100 ms after a change), with the Secret's resourceVersion: this
 * manager is its only writer, so a conflict re-reads it and writes ours.
 *
 * Without store_open (the --state-dir manager) every call is a no-op. */
#ifndef KB_STORE_H
#define KB_STORE_H

#include <stddef.h>

struct cJSON;
struct event_base;
struct kb_kube;
struct icpt_reg;

/* The Secret's data key, and the most the state may take: a Secret holds
 * at most 1 MiB of data; what would not fit is refused. */
#define STORE_KEY "state.json"
#define STORE_MAX ((1u << 20) - 4096)
#define STORE_VERSION 1

/* The document {"version": 1, "previews": [...], "intercepts": [...]} as
 * JSON text (malloc'd; the caller cleanses and frees it: it holds tokens),
 * or NULL with err when it would exceed max bytes or out of memory. */
char *store_encode(const struct cJSON *previews, const struct cJSON *intercepts, size_t max,
    char *err, size_t errlen);
/* The document back from len bytes of text: NULL with a one-line err when
 * it is longer than max, not JSON, of another version, or lacks the two
 * lists. The caller frees it. */
struct cJSON *store_decode(const char *text, size_t len, size_t max, char *err, size_t errlen);

/* Blocks (runs base, 30 s at most): reads Secret ns/name and gives its
 * previews and intercepts to preview_restore and icpt_restore; none yet
 * (404) is an empty state; an unreadable one is logged and replaced at the
 * first change. From then on store_changed writes it. 0, or -1 with err
 * (no answer, forbidden). kube and icpts (whose intercepts are kept)
 * stay the caller's. */
int store_open(struct event_base *base, struct kb_kube *kube, struct icpt_reg *icpts,
    const char *ns, const char *name, char *err, size_t errlen);
/* The previews or intercepts changed: write them soon. -1 with a one-line
 * err when the state would not fit (then nothing is written and the caller
 * undoes its change); 0 otherwise. */
int store_changed(char *err, size_t errlen);
/* Stop: the request in flight is cancelled, a change not yet written is
 * logged as lost. */
void store_close(void);

#endif
