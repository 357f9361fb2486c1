/* Admission of TCP connections: a listener that survives running out of
 * descriptors, and a pool that bounds connections not yet trusted.
 *
 * A listener whose accept() fails with EMFILE (or any error libevent does
 * not retry itself) stops accepting for KB_LISTENER_PAUSE_MS and tries
 * again; it logs the first failure and then one line per
 * KB_LISTENER_REPORT_S with a count, instead of one line per loop pass.
 * Connections already accepted are not touched. */
#ifndef KB_LISTENER_H
#define KB_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include <sys/queue.h>
#include <sys/socket.h>

struct event_base;
struct event;
struct evconnlistener;
struct kb_listener;

#define KB_LISTENER_PAUSE_MS	200
#define KB_LISTENER_REPORT_S	10

/* fd is the accepted, non-blocking, close-on-exec socket (the callee's). */
typedef void kb_accept_fn(int fd, struct sockaddr *sa, int salen, void *arg);

/* Serve the bound, listening socket fd (ownership passes, also on
 * failure). name prefixes the log lines ("preview listener"). */
struct kb_listener *kb_listener_new(struct event_base *base, const char *name, int fd,
    kb_accept_fn *cb, void *arg);
/* Bind sa (SO_REUSEADDR), listen with backlog and serve; NULL and errno. */
struct kb_listener *kb_listener_bind(struct event_base *base, const char *name,
    const struct sockaddr *sa, int salen, int backlog, kb_accept_fn *cb, void *arg);
/* Guard a listener whose accept callback is someone else's (evhttp's):
 * only the pausing and logging are ours; lev stays the owner's. */
struct kb_listener *kb_listener_adopt(struct event_base *base, const char *name,
    struct evconnlistener *lev);
void kb_listener_free(struct kb_listener *l);
/* The caller refused a connection it accepted (a limit, out of memory):
 * counted, and logged once per KB_LISTENER_REPORT_S with why. */
void kb_listener_refused(struct kb_listener *l, const char *why);
/* How often accepting was paused so far (tests). */
unsigned long kb_listener_pauses(const struct kb_listener *l);

/* Raise the soft limit on open files to the hard limit (at start: a
 * server needs more than the usual 1024). 0, or -1 and errno. */
int kb_raise_nofile(void);

/* A pool of connections that have not proved themselves yet (a TLS
 * handshake and hello, a first request). Adding never fails: when the
 * source address already has max_per_src entries, one of those goes; when
 * the pool has max entries, one of all goes: the oldest that sent nothing
 * yet, else the oldest. An entry older than deadline_ms goes too. So a
 * flood of idle connections holds at most max descriptors, one address at
 * most max_per_src, and a client that proves itself quickly gets in while
 * the flood lasts (also behind a NAT, or a load balancer that hides
 * addresses, where everyone is one source). */
struct kb_pool;

enum kb_pool_why { KB_POOL_SOURCE, KB_POOL_FULL, KB_POOL_DEADLINE };

struct kb_pool_entry {
	TAILQ_ENTRY(kb_pool_entry) entry;
	struct kb_pool *pool;	/* NULL: not in a pool */
	uint64_t since_ms;
	uint8_t src[16];	/* the address, IPv4 mapped into IPv6 */
	void *owner;
};

/* expel: e was taken out of the pool (why); close its connection. Called
 * from kb_pool_add and from the pool's timer. quiet (may be NULL): whether
 * e's peer has sent nothing yet. */
struct kb_pool *kb_pool_new(struct event_base *base, const char *name, size_t max,
    size_t max_per_src, unsigned deadline_ms,
    void (*expel)(struct kb_pool_entry *e, enum kb_pool_why why),
    int (*quiet)(struct kb_pool_entry *e), char *err, size_t errlen);
/* Every entry must have left before. */
void kb_pool_free(struct kb_pool *p);
/* Add e (for owner, from sa); may expel other entries first. */
void kb_pool_add(struct kb_pool *p, struct kb_pool_entry *e, const struct sockaddr *sa,
    void *owner);
/* Take e out (it proved itself, or is closed); no-op if it is not in. */
void kb_pool_remove(struct kb_pool_entry *e);
size_t kb_pool_count(const struct kb_pool *p);

/* Open connections per source address: at most max_per_src at once from
 * one address (IPv4 mapped into IPv6, as in the pool). A connection takes
 * a place when accepted and releases it when it is closed; over the cap
 * the caller closes the new one at once (and says so with
 * kb_listener_refused). Addresses are kept only while they hold a place,
 * so the table is bounded by the open connections. */
struct kb_srccap;
struct kb_src;

/* NULL when out of memory. max_per_src 0 is taken as 1. */
struct kb_srccap *kb_srccap_new(size_t max_per_src);
/* With places still held: they go too (a kb_src_release after is wrong). */
void kb_srccap_free(struct kb_srccap *c);
/* A place for a connection from sa, or NULL with errno: EUSERS when sa
 * holds max_per_src already, ENOMEM. */
struct kb_src *kb_srccap_take(struct kb_srccap *c, const struct sockaddr *sa);
/* Give the place back; NULL is fine. */
void kb_src_release(struct kb_src *s);
/* How many places sa holds (tests). */
size_t kb_srccap_count(const struct kb_srccap *c, const struct sockaddr *sa);

#endif
