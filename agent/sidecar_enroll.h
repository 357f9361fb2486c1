/* The sidecar's side of enrollment (agent/enroll.h): a new key in memory,
 * the pod's projected token, one HTTPS POST to the manager's /enroll (the
 * manager's certificate checked against the CA and the host name), and a
 * sidecar profile out of the answer. Blocking; bounded in time and size. */
#ifndef KB_SIDECAR_ENROLL_H
#define KB_SIDECAR_ENROLL_H

#include <stddef.h>

struct kb_profile;

#define SC_ENROLL_TIMEOUT_MS	15000
#define SC_ENROLL_MAX_ANSWER	(64 << 10)

/* Enroll at hostport ("kbridge-manager.NS.svc:443") with the token in
 * token_file, checking the server with ca_pem; p (filled; the caller
 * kb_profile_free()s it) then holds manager (copied from manager), name
 * (the workload) and role sidecar, the CA, the certificate and the new
 * key; workload the certificate's workload (NAME.NS: the manager's choice,
 * from the pod); *expires its notAfter (seconds since the epoch). 0, or -1
 * with err (the manager's refusal when it refused). */
int sidecar_enroll(const char *hostport, const char *token_file, const char *ca_pem,
    const char *manager, struct kb_profile *p, long long *expires, char *workload, size_t wlen,
    char *err, size_t errlen);

/* Renewal, off the event loop: sidecar_enroll() in a thread of its own
 * (the data path never waits on it), done() called from base's loop with
 * its result: rc 0 and p (the callee takes its fields; kb_profile_free)
 * with workload and expires, or rc -1 and err. One at a time. */
struct event_base;
struct sc_renewal;
typedef void (*sc_renewed_cb)(void *arg, int rc, struct kb_profile *p, const char *workload,
    long long expires, const char *err);
/* The strings are borrowed and must outlive the renewal. NULL when out of
 * memory (or no thread): done() is not called. */
struct sc_renewal *sc_renewal_start(struct event_base *base, const char *hostport,
    const char *token_file, const char *ca_pem, const char *manager, sc_renewed_cb done,
    void *arg);
/* Waits for the thread (at most SC_ENROLL_TIMEOUT_MS) and frees; done()
 * is not called. NULL is fine. */
void sc_renewal_free(struct sc_renewal *r);

#endif
