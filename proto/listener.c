/* Admission of TCP connections; see listener.h. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "util.h"

/* Events counted, and reported at most once per KB_LISTENER_REPORT_S. */
struct ratelog {
	uint64_t last_ms;
	unsigned long n;
	int reported;
};

struct kb_listener {
	struct evconnlistener *lev;
	struct event *resume;
	kb_accept_fn *cb;
	void *arg;
	unsigned long pauses;
	struct ratelog errs, drops;
	char name[48];
	LIST_ENTRY(kb_listener) adopted;	/* when lev is not ours */
	int foreign;
};

/* Their error callback gets the owner's argument: found by lev. */
static LIST_HEAD(, kb_listener) kb_adopted = LIST_HEAD_INITIALIZER(kb_adopted);

struct kb_pool {
	TAILQ_HEAD(, kb_pool_entry) list;	/* oldest first */
	size_t n, max, max_per_src;
	unsigned deadline_ms;
	struct event *timer;
	void (*expel)(struct kb_pool_entry *, enum kb_pool_why);
	int (*quiet)(struct kb_pool_entry *);
	struct ratelog log;
	unsigned long why[3];
	char last_src[INET6_ADDRSTRLEN];
	char name[48];
};

/* Count an event; 1 when it is time to log (then *n says how many). */
static int
ratelog_due(struct ratelog *r, unsigned long *n)
{
	uint64_t now = kb_now_ms();

	r->n++;
	if (r->reported && now - r->last_ms < KB_LISTENER_REPORT_S * 1000)
		return 0;
	*n = r->n;
	r->n = 0;
	r->last_ms = now;
	r->reported = 1;
	return 1;
}

/* --- the listener --- */

static void
lis_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct kb_listener *l = arg;

	(void)lev;
	l->cb(fd, sa, salen, l->arg);
}

static void
lis_resume(evutil_socket_t fd, short what, void *arg)
{
	struct kb_listener *l = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(l->lev);
}

/* libevent retries EINTR, EAGAIN and ECONNABORTED itself; anything else
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM) would fail again at once, so the
 * listening socket stays readable: stop polling it for a while. */
static void
lis_error(struct evconnlistener *lev, void *arg)
{
	struct kb_listener *l = arg;
	struct timeval tv = { 0, KB_LISTENER_PAUSE_MS * 1000 };
	int e = EVUTIL_SOCKET_ERROR();
	unsigned long n;

	evconnlistener_disable(lev);
	evtimer_add(l->resume, &tv);
	l->pauses++;
	if (ratelog_due(&l->errs, &n))
		log_warnx("%s: accept: %s; not accepting for %d ms at a time (%lu failures in "
		    "%d s)", l->name, strerror(e), KB_LISTENER_PAUSE_MS, n, KB_LISTENER_REPORT_S);
}

struct kb_listener *
kb_listener_new(struct event_base *base, const char *name, int fd, kb_accept_fn *cb, void *arg)
{
	struct kb_listener *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		goto fail;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->cb = cb;
	l->arg = arg;
	if ((l->resume = evtimer_new(base, lis_resume, l)) == NULL)
		goto fail;
	l->lev = evconnlistener_new(base, lis_accept, l, LEV_OPT_CLOSE_ON_FREE |
	    LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l->lev == NULL)
		goto fail;
	evconnlistener_set_error_cb(l->lev, lis_error);
	return l;
fail:
	close(fd);
	if (l && l->resume)
		event_free(l->resume);
	free(l);
	errno = ENOMEM;
	return NULL;
}

static void
lis_error_adopted(struct evconnlistener *lev, void *arg)
{
	struct kb_listener *l;

	(void)arg;
	LIST_FOREACH(l, &kb_adopted, adopted)
		if (l->lev == lev) {
			lis_error(lev, l);
			return;
		}
}

struct kb_listener *
kb_listener_adopt(struct event_base *base, const char *name, struct evconnlistener *lev)
{
	struct kb_listener *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	if ((l->resume = evtimer_new(base, lis_resume, l)) == NULL) {
		free(l);
		return NULL;
	}
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->lev = lev;
	l->foreign = 1;
	LIST_INSERT_HEAD(&kb_adopted, l, adopted);
	evconnlistener_set_error_cb(lev, lis_error_adopted);
	return l;
}

struct kb_listener *
kb_listener_bind(struct event_base *base, const char *name, const struct sockaddr *sa,
    int salen, int backlog, kb_accept_fn *cb, void *arg)
{
	int fd, one = 1, e;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, sa, (socklen_t)salen) < 0 || listen(fd, backlog) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	return kb_listener_new(base, name, fd, cb, arg);
}

void
kb_listener_free(struct kb_listener *l)
{
	if (l == NULL)
		return;
	if (l->foreign) {
		evconnlistener_set_error_cb(l->lev, NULL);
		LIST_REMOVE(l, adopted);
	} else {
		evconnlistener_free(l->lev);
	}
	event_free(l->resume);
	free(l);
}

void
kb_listener_refused(struct kb_listener *l, const char *why)
{
	unsigned long n;

	if (ratelog_due(&l->drops, &n))
		log_warnx("%s: %s (%lu closed like this in %d s)", l->name, why, n,
		    KB_LISTENER_REPORT_S);
}

unsigned long
kb_listener_pauses(const struct kb_listener *l)
{
	return l->pauses;
}

int
kb_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur == rl.rlim_max)
		return 0;
	rl.rlim_cur = rl.rlim_max;
	return setrlimit(RLIMIT_NOFILE, &rl);
}

/* --- the pool of connections not yet trusted --- */

static void
src_of(const struct sockaddr *sa, uint8_t out[16])
{
	memset(out, 0, 16);
	if (sa && sa->sa_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa && sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

static void
pool_arm(struct kb_pool *p)
{
	struct kb_pool_entry *e = TAILQ_FIRST(&p->list);
	uint64_t now = kb_now_ms(), due;
	struct timeval tv;

	if (e == NULL || p->deadline_ms == 0) {
		evtimer_del(p->timer);
		return;
	}
	due = e->since_ms + p->deadline_ms;
	due = due > now ? due - now : 0;
	tv = kb_ms_tv(due);
	evtimer_add(p->timer, &tv);
}

static void
pool_unlink(struct kb_pool_entry *e)
{
	struct kb_pool *p = e->pool;

	TAILQ_REMOVE(&p->list, e, entry);
	p->n--;
	e->pool = NULL;
}

static void
pool_expel(struct kb_pool *p, struct kb_pool_entry *e, enum kb_pool_why why)
{
	unsigned long n;

	pool_unlink(e);
	p->why[why]++;
	if (why == KB_POOL_SOURCE) {
		if (!memcmp(e->src, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12))
			inet_ntop(AF_INET, e->src + 12, p->last_src, sizeof(p->last_src));
		else
			inet_ntop(AF_INET6, e->src, p->last_src, sizeof(p->last_src));
	}
	if (ratelog_due(&p->log, &n)) {
		log_warnx("%s: %lu closed in %d s: %lu from an address with %zu already (the "
		    "last %s), %lu with %zu waiting in all, %lu after %u ms", p->name, n,
		    KB_LISTENER_REPORT_S, p->why[KB_POOL_SOURCE], p->max_per_src,
		    p->last_src[0] ? p->last_src : "-", p->why[KB_POOL_FULL], p->max,
		    p->why[KB_POOL_DEADLINE], p->deadline_ms);
		memset(p->why, 0, sizeof(p->why));
	}
	p->expel(e, why);
}

static void
pool_timer(evutil_socket_t fd, short what, void *arg)
{
	struct kb_pool *p = arg;
	struct kb_pool_entry *e;
	uint64_t now = kb_now_ms();

	(void)fd;
	(void)what;
	while ((e = TAILQ_FIRST(&p->list)) != NULL && e->since_ms + p->deadline_ms <= now)
		pool_expel(p, e, KB_POOL_DEADLINE);
	pool_arm(p);
}

struct kb_pool *
kb_pool_new(struct event_base *base, const char *name, size_t max, size_t max_per_src,
    unsigned deadline_ms, void (*expel)(struct kb_pool_entry *, enum kb_pool_why),
    int (*quiet)(struct kb_pool_entry *), char *err, size_t errlen)
{
	struct kb_pool *p;

	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->timer = evtimer_new(base, pool_timer, p)) == NULL) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	TAILQ_INIT(&p->list);
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->max = max ? max : 1;
	p->max_per_src = max_per_src ? max_per_src : 1;
	p->deadline_ms = deadline_ms;
	p->expel = expel;
	p->quiet = quiet;
	return p;
}

void
kb_pool_free(struct kb_pool *p)
{
	if (p == NULL)
		return;
	event_free(p->timer);
	free(p);
}

/* The entry to drop among those from src (or all, src NULL): the oldest
 * that sent nothing, else the oldest. */
static struct kb_pool_entry *
pool_victim(struct kb_pool *p, const uint8_t *src)
{
	struct kb_pool_entry *x, *oldest = NULL;

	TAILQ_FOREACH(x, &p->list, entry) {
		if (src && memcmp(x->src, src, 16) != 0)
			continue;
		if (!oldest)
			oldest = x;
		if (!p->quiet || p->quiet(x))
			return x;
	}
	return oldest;
}

void
kb_pool_add(struct kb_pool *p, struct kb_pool_entry *e, const struct sockaddr *sa, void *owner)
{
	struct kb_pool_entry *x;
	size_t same = 0;

	src_of(sa, e->src);
	e->owner = owner;
	/* Bounded by max, and only new connections pay for the scans. */
	TAILQ_FOREACH(x, &p->list, entry)
		same += memcmp(x->src, e->src, 16) == 0;
	if (same >= p->max_per_src)
		pool_expel(p, pool_victim(p, e->src), KB_POOL_SOURCE);
	else if (p->n >= p->max)
		pool_expel(p, pool_victim(p, NULL), KB_POOL_FULL);
	e->pool = p;
	e->since_ms = kb_now_ms();
	TAILQ_INSERT_TAIL(&p->list, e, entry);
	p->n++;
	if (p->n == 1)
		pool_arm(p);
}

void
kb_pool_remove(struct kb_pool_entry *e)
{
	struct kb_pool *p = e->pool;
	int first;

	if (p == NULL)
		return;
	first = TAILQ_FIRST(&p->list) == e;
	pool_unlink(e);
	if (first)
		pool_arm(p);
}

size_t
kb_pool_count(const struct kb_pool *p)
{
	return p->n;
}

/* --- open connections per source address --- */

#define SRC_BUCKETS 1024

struct kb_src {
	LIST_ENTRY(kb_src) link;
	struct kb_srccap *cap;
	uint8_t src[16];
	size_t n;
};

LIST_HEAD(kb_srclist, kb_src);

struct kb_srccap {
	struct kb_srclist bucket[SRC_BUCKETS];
	size_t max_per_src;
	uint32_t seed;		/* so that a client cannot pick colliding addresses */
};

static struct kb_srclist *
src_bucket(struct kb_srccap *c, const uint8_t src[16])
{
	uint32_t h = 2166136261u ^ c->seed;
	int i;

	for (i = 0; i < 16; i++)
		h = (h ^ src[i]) * 16777619u;
	h ^= h >> 15;
	return &c->bucket[h % SRC_BUCKETS];
}

static struct kb_src *
src_find(const struct kb_srccap *c, const uint8_t src[16])
{
	struct kb_src *s;

	LIST_FOREACH(s, src_bucket((struct kb_srccap *)c, src), link)
		if (!memcmp(s->src, src, 16))
			return s;
	return NULL;
}

struct kb_srccap *
kb_srccap_new(size_t max_per_src)
{
	struct kb_srccap *c;
	char seed[9];
	size_t i;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	for (i = 0; i < SRC_BUCKETS; i++)
		LIST_INIT(&c->bucket[i]);
	c->max_per_src = max_per_src ? max_per_src : 1;
	if (kb_random_hex(seed, 4) == 0)
		c->seed = (uint32_t)strtoul(seed, NULL, 16);
	return c;
}

void
kb_srccap_free(struct kb_srccap *c)
{
	struct kb_src *s;
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < SRC_BUCKETS; i++)
		while ((s = LIST_FIRST(&c->bucket[i])) != NULL) {
			LIST_REMOVE(s, link);
			free(s);
		}
	free(c);
}

struct kb_src *
kb_srccap_take(struct kb_srccap *c, const struct sockaddr *sa)
{
	uint8_t src[16];
	struct kb_src *s;

	src_of(sa, src);
	if ((s = src_find(c, src)) != NULL) {
		if (s->n >= c->max_per_src) {
			errno = EUSERS;
			return NULL;
		}
		s->n++;
		return s;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	s->cap = c;
	memcpy(s->src, src, 16);
	s->n = 1;
	LIST_INSERT_HEAD(src_bucket(c, src), s, link);
	return s;
}

void
kb_src_release(struct kb_src *s)
{
	if (s == NULL || --s->n > 0)
		return;
	LIST_REMOVE(s, link);
	free(s);
}

size_t
kb_srccap_count(const struct kb_srccap *c, const struct sockaddr *sa)
{
	uint8_t src[16];
	const struct kb_src *s;

	src_of(sa, src);
	return (s = src_find(c, src)) != NULL ? s->n : 0;
}
