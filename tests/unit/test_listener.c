/* proto/listener.c: a listener out of descriptors pauses instead of spinning
 * (a handful of accept() attempts and one log line a second, not thousands),
 * and accepts the waiting connections once descriptors are free again;
 * refusals are logged once per interval; the pool of untrusted connections
 * keeps its caps (per address, in all) by closing the oldest, and closes
 * entries past the deadline; the open-files limit is raised to the hard one;
 * the count of open connections per address holds its cap, an address
 * mapped to IPv6 is the same one, and a place given back is free again. */
#include "../../proto/listener.c"

#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/resource.h>

#include "evloop.h"
#include "ok.h"

#define NCLIENTS 5

static FILE *logfile;	/* stderr goes here: the tests count log lines */

static int
log_lines(const char *needle)
{
	char line[1024];
	int n = 0;

	fflush(stderr);
	rewind(logfile);
	while (fgets(line, sizeof(line), logfile))
		if (strstr(line, needle))
			n++;
	return n;
}

static int accepted_fds[NCLIENTS * 2];
static int naccepted;

static void
keep(int fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)sa;
	(void)salen;
	(void)arg;
	if (naccepted < (int)(sizeof(accepted_fds) / sizeof(accepted_fds[0])))
		accepted_fds[naccepted++] = fd;
	else
		close(fd);
}

static int
all_accepted(void *arg)
{
	(void)arg;
	return naccepted == NCLIENTS;
}

/* Out of descriptors for a second with NCLIENTS connections waiting on l
 * (listening at lfd): libevent alone would try accept() on every loop pass,
 * and log each time. Then descriptors come back: all get in. */
static void
starve(struct kb_listener *l, int lfd, const char *logline)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	struct rlimit rl, low;
	int cl[NCLIENTS], fill[256], nfill = 0, i;

	naccepted = 0;
	ok(getsockname(lfd, (struct sockaddr *)&sin, &sl) == 0);
	for (i = 0; i < NCLIENTS; i++)
		cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	getrlimit(RLIMIT_NOFILE, &rl);
	low = rl;
	low.rlim_cur = 128;
	ok(setrlimit(RLIMIT_NOFILE, &low) == 0);
	while (nfill < 256 && (fill[nfill] = dup(0)) >= 0)
		nfill++;
	ok(errno == EMFILE && nfill < 256);
	for (i = 0; i < NCLIENTS; i++)
		connect(cl[i], (struct sockaddr *)&sin, sizeof(sin));

	run_for(1000);
	ok(naccepted == 0);
	ok(kb_listener_pauses(l) >= 1);
	ok(kb_listener_pauses(l) <= 1000 / KB_LISTENER_PAUSE_MS + 2);
	ok(log_lines(logline) == 1);

	while (nfill > 0)
		close(fill[--nfill]);
	ok(run_until(all_accepted, NULL, 3000));
	setrlimit(RLIMIT_NOFILE, &rl);
	for (i = 0; i < NCLIENTS; i++) {
		close(cl[i]);
		close(accepted_fds[i]);
	}
}

static void
test_emfile(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct kb_listener *l;
	int i;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = kb_listener_bind(base, "test listener", (struct sockaddr *)&sin, sizeof(sin), 64, keep,
	    NULL);
	ok(l != NULL);
	starve(l, evconnlistener_get_fd(l->lev), "test listener: accept: Too many open files");

	/* Refusals by the caller: counted, one line per interval. */
	for (i = 0; i < 1000; i++)
		kb_listener_refused(l, "too many");
	ok(log_lines("test listener: too many (1 closed like this in 10 s)") == 1);
	ok(log_lines("test listener:") == 2);
	kb_listener_free(l);
}

static void
keep_lev(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	(void)lev;
	ok(arg == (void *)base);
	keep(fd, sa, salen, NULL);
}

/* evhttp's listener: its callback and argument stay, the guard is ours. */
static void
test_adopt(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct evconnlistener *lev;
	struct kb_listener *l;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lev = evconnlistener_new_bind(base, keep_lev, base, LEV_OPT_CLOSE_ON_FREE, 64,
	    (struct sockaddr *)&sin, sizeof(sin));
	l = kb_listener_adopt(base, "adopted", lev);
	ok(lev != NULL && l != NULL);
	starve(l, evconnlistener_get_fd(lev), "adopted: accept: Too many open files");
	kb_listener_free(l);
	evconnlistener_free(lev);
}

static struct kb_pool_entry *expelled[16];
static enum kb_pool_why expelled_why[16];
static int nexpelled;

static void
expel(struct kb_pool_entry *e, enum kb_pool_why why)
{
	ok(e->pool == NULL);
	expelled_why[nexpelled] = why;
	expelled[nexpelled++] = e;
}

static struct sockaddr_in
addr(const char *ip)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	inet_pton(AF_INET, ip, &sin.sin_addr);
	return sin;
}

static int
expelled_two(void *arg)
{
	(void)arg;
	return nexpelled == 2;
}

static void
test_pool(void)
{
	struct kb_pool_entry e[8];
	struct sockaddr_in a = addr("192.0.2.1"), b = addr("192.0.2.2"), c = addr("192.0.2.3");
	struct kb_pool *p;
	char err[64];

	memset(e, 0, sizeof(e));
	p = kb_pool_new(base, "test pool", 4, 2, 0, expel, NULL, err, sizeof(err));
	ok(p != NULL);
	kb_pool_add(p, &e[0], (struct sockaddr *)&a, &e[0]);
	kb_pool_add(p, &e[1], (struct sockaddr *)&b, &e[1]);
	kb_pool_add(p, &e[2], (struct sockaddr *)&a, &e[2]);
	ok(kb_pool_count(p) == 3 && nexpelled == 0);
	/* A third from a: a's oldest goes, b's stays. */
	kb_pool_add(p, &e[3], (struct sockaddr *)&a, &e[3]);
	ok(nexpelled == 1 && expelled[0] == &e[0] && expelled_why[0] == KB_POOL_SOURCE);
	ok(kb_pool_count(p) == 3 && e[1].pool == p);
	/* Full (4): the oldest of all (b's) goes for a new address. */
	kb_pool_add(p, &e[4], (struct sockaddr *)&c, &e[4]);
	kb_pool_add(p, &e[5], (struct sockaddr *)&c, &e[5]);
	ok(nexpelled == 2 && expelled[1] == &e[1] && expelled_why[1] == KB_POOL_FULL);
	ok(kb_pool_count(p) == 4);
	/* Proving itself takes an entry out for good. */
	kb_pool_remove(&e[2]);
	kb_pool_remove(&e[2]);
	ok(kb_pool_count(p) == 3 && e[2].pool == NULL);
	kb_pool_remove(&e[3]);
	kb_pool_remove(&e[4]);
	kb_pool_remove(&e[5]);
	ok(kb_pool_count(p) == 0);
	ok(log_lines("test pool: 1 closed in 10 s: 1 from an address with 2 already (the last "
	    "192.0.2.1)") == 1);
	kb_pool_free(p);

	/* The deadline: the two late ones go, the one taken out does not. */
	nexpelled = 0;
	memset(e, 0, sizeof(e));
	p = kb_pool_new(base, "test pool 2", 8, 8, 100, expel, NULL, err, sizeof(err));
	kb_pool_add(p, &e[0], (struct sockaddr *)&a, &e[0]);
	kb_pool_add(p, &e[1], (struct sockaddr *)&b, &e[1]);
	kb_pool_add(p, &e[2], (struct sockaddr *)&c, &e[2]);
	kb_pool_remove(&e[0]);
	ok(run_until(expelled_two, NULL, 3000));
	ok(expelled[0] == &e[1] && expelled[1] == &e[2] && expelled_why[0] == KB_POOL_DEADLINE);
	ok(kb_pool_count(p) == 0);
	run_for(200);
	ok(nexpelled == 2);
	kb_pool_free(p);
}

static int talked[8];

static int
quiet(struct kb_pool_entry *e)
{
	return !*(int *)e->owner;
}

/* Behind a NAT every client is one source: the ones that sent nothing go
 * first, so a client in the middle of its handshake stays. */
static void
test_pool_quiet(void)
{
	struct kb_pool_entry e[8];
	struct sockaddr_in a = addr("192.0.2.1");
	struct kb_pool *p;
	char err[64];
	int i;

	memset(e, 0, sizeof(e));
	nexpelled = 0;
	p = kb_pool_new(base, "test pool 3", 3, 3, 0, expel, quiet, err, sizeof(err));
	talked[0] = 1;	/* the oldest, but busy */
	for (i = 0; i < 3; i++)
		kb_pool_add(p, &e[i], (struct sockaddr *)&a, &talked[i]);
	kb_pool_add(p, &e[3], (struct sockaddr *)&a, &talked[3]);
	ok(nexpelled == 1 && expelled[0] == &e[1]);
	talked[2] = talked[3] = 1;
	kb_pool_add(p, &e[4], (struct sockaddr *)&a, &talked[4]);
	ok(nexpelled == 2 && expelled[1] == &e[0]);	/* all busy: the oldest */
	ok(e[2].pool == p && e[3].pool == p && e[4].pool == p);
	for (i = 2; i < 5; i++)
		kb_pool_remove(&e[i]);
	kb_pool_free(p);
}

static void
test_nofile(void)
{
	struct rlimit rl, low;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max > 256) {
		low = rl;
		low.rlim_cur = 256;
		ok(setrlimit(RLIMIT_NOFILE, &low) == 0);
	}
	ok(kb_raise_nofile() == 0);
	getrlimit(RLIMIT_NOFILE, &low);
	ok(low.rlim_cur == rl.rlim_max);
}

/* At most 3 open from one address; others unaffected; a released place
 * is taken again; an address without places is forgotten. */
static void
test_srccap(void)
{
	struct sockaddr_in a = addr("192.0.2.1"), b = addr("192.0.2.2");
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
	struct kb_src *s[8];
	struct kb_srccap *c = kb_srccap_new(3);
	int i;

	ok(c != NULL);
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &a6.sin6_addr);
	for (i = 0; i < 3; i++)
		ok((s[i] = kb_srccap_take(c, (struct sockaddr *)&a)) != NULL);
	errno = 0;
	ok(kb_srccap_take(c, (struct sockaddr *)&a) == NULL && errno == EUSERS);
	ok(kb_srccap_take(c, (struct sockaddr *)&a6) == NULL && errno == EUSERS);
	ok(kb_srccap_count(c, (struct sockaddr *)&a) == 3);
	ok((s[3] = kb_srccap_take(c, (struct sockaddr *)&b)) != NULL);
	ok(kb_srccap_count(c, (struct sockaddr *)&b) == 1);
	kb_src_release(s[1]);
	ok(kb_srccap_count(c, (struct sockaddr *)&a) == 2);
	ok((s[1] = kb_srccap_take(c, (struct sockaddr *)&a6)) != NULL);
	ok(kb_srccap_take(c, (struct sockaddr *)&a) == NULL);
	for (i = 0; i < 4; i++)
		kb_src_release(s[i]);
	kb_src_release(NULL);
	ok(kb_srccap_count(c, (struct sockaddr *)&a) == 0);
	ok(kb_srccap_count(c, (struct sockaddr *)&b) == 0);
	/* Places still held when it goes: freed with it (ASan: no leak). */
	ok(kb_srccap_take(c, (struct sockaddr *)&b) != NULL);
	kb_srccap_free(c);
}

int
main(void)
{
	logfile = tmpfile();
	if (!logfile || dup2(fileno(logfile), 2) < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	test_emfile();
	test_adopt();
	test_pool();
	test_pool_quiet();
	test_srccap();
	test_nofile();
	event_base_free(base);
	return ok_done();
}
