/* kbridge port-forward (hidden): a local TCP port to a Service's pod
 * through the API server's port-forward (proto/portforward.h), as the
 * kubeconfig's user. Each accepted connection looks the pod up again (the
 * manager's pod may have been replaced) and gets its own WebSocket stream;
 * at most KB_FORWARD_MAX_STREAMS at once, more are closed at once.
 *
 * The transport (SPDY tunnelled in the WebSocket when the API server takes
 * it, else v4.channel.k8s.io; KBRIDGE_PF_PROTOCOL=v4 offers only the
 * latter) is logged on stderr once, and again when it changes. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "api.h"
#include "client.h"
#include "cmd.h"
#include "forward.h"
#include "kubeconfig.h"
#include "portforward.h"
#include "util.h"

#define FWD_NS_DEFAULT "kbridge"

enum { OPT_KUBECONFIG = 256, OPT_CONTEXT, OPT_LISTEN_FD, OPT_EXIT_WITH_DAEMON };

/* --exit-with-daemon: with no stream for IDLE_CHECK_MS, ask kbridged. */
#define IDLE_CHECK_MS	3000
#define DAEMON_PROBE_MS	1000

struct stream {
	struct kb_pf *pf;
	struct kb_forward *f;
	LIST_ENTRY(stream) link;
};

struct kb_forward {
	struct event_base *base;
	struct kb_kubeconfig *kc;
	char *ns, *service;
	int port;
	int streams;
	int served;		/* a stream was accepted once */
	int pf_flags;            /* KB_PF_V4_ONLY */
	const char *transport;   /* the last one logged (KB_PF_SPDY, KB_PF_V4) */
	LIST_HEAD(, stream) open;
	struct evconnlistener *lis;
};

static void
on_stream_done(void *arg, int upgraded, const char *err)
{
	struct stream *s = arg;
	struct kb_forward *f = s->f;

	(void)upgraded;
	LIST_REMOVE(s, link);
	f->streams--;
	if (err)
		errorx("port-forward: %s/%s:%d: %s", f->ns, f->service, f->port, err);
	free(s);
}

static void
on_stream_open(void *arg, const char *transport)
{
	struct stream *s = arg;
	struct kb_forward *f = s->f;

	if (f->transport == transport)
		return;
	f->transport = transport;
	errorx("port-forward: %s/%s:%d: transport %s%s", f->ns, f->service, f->port, transport,
	    (f->pf_flags & KB_PF_V4_ONLY) ? " (KBRIDGE_PF_PROTOCOL=v4)" : "");
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen,
    void *arg)
{
	struct kb_forward *f = arg;
	char pod[256], err[600];
	struct stream *s;

	(void)lis;
	(void)sa;
	(void)salen;
	if (f->streams >= KB_FORWARD_MAX_STREAMS) {
		errorx("port-forward: %d streams open already, connection refused",
		    KB_FORWARD_MAX_STREAMS);
		close(fd);
		return;
	}
	/* blocking, bounded: the pod may have changed since the last one */
	if (kb_pf_service_pod(f->kc, f->ns, f->service, pod, sizeof(pod), err,
	    sizeof(err)) < 0) {
		errorx("port-forward: %s/%s:%d: %s", f->ns, f->service, f->port, err);
		close(fd);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		errorx("port-forward: out of memory");
		close(fd);
		return;
	}
	s->f = f;
	if ((s->pf = kb_pf_open(f->base, f->kc, f->ns, pod, f->port, fd, on_stream_done, s, err,
	    sizeof(err))) == NULL) {
		errorx("port-forward: %s", err);
		free(s);
		return;
	}
	kb_pf_options(s->pf, f->pf_flags, on_stream_open);
	LIST_INSERT_HEAD(&f->open, s, link);
	f->streams++;
	f->served = 1;
}

struct kb_forward *
kb_forward_start(struct event_base *base, struct kb_kubeconfig *kc, const char *ns,
    const char *service, int port, int listen_fd, char *err, size_t errlen)
{
	struct kb_forward *f;
	const char *e;

	if ((f = calloc(1, sizeof(*f))) == NULL || (f->ns = strdup(ns)) == NULL ||
	    (f->service = strdup(service)) == NULL) {
		snprintf(err, errlen, "out of memory");
		close(listen_fd);
		kb_forward_stop(f);
		return NULL;
	}
	f->base = base;
	f->kc = kc;
	f->port = port;
	if ((e = getenv("KBRIDGE_PF_PROTOCOL")) != NULL && strcmp(e, "v4") == 0)
		f->pf_flags |= KB_PF_V4_ONLY;
	else if (e != NULL && *e != '\0' && strcmp(e, "auto") != 0) {
		snprintf(err, errlen, "KBRIDGE_PF_PROTOCOL: '%.32s' is not v4 or auto", e);
		close(listen_fd);
		kb_forward_stop(f);
		return NULL;
	}
	LIST_INIT(&f->open);
	evutil_make_socket_nonblocking(listen_fd);
	if ((f->lis = evconnlistener_new(base, on_accept, f, LEV_OPT_CLOSE_ON_FREE, -1,
	    listen_fd)) == NULL) {
		snprintf(err, errlen, "cannot listen");
		close(listen_fd);
		kb_forward_stop(f);
		return NULL;
	}
	return f;
}

int
kb_forward_streams(const struct kb_forward *f)
{
	return f->streams;
}

int
kb_forward_served(const struct kb_forward *f)
{
	return f->served;
}

void
kb_forward_stop(struct kb_forward *f)
{
	struct stream *s;

	if (f == NULL)
		return;
	while ((s = LIST_FIRST(&f->open)) != NULL) {
		LIST_REMOVE(s, link);
		kb_pf_close(s->pf);
		free(s);
	}
	if (f->lis)
		evconnlistener_free(f->lis);
	free(f->ns);
	free(f->service);
	free(f);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(arg);
}

/* --exit-with-daemon: kbridge connect started us for the session of the
 * kbridged on KBRIDGE_SOCKET, whose manager address is ours. */
struct watch {
	struct event_base *base;
	struct kb_forward *f;
	const char *addr;	/* 127.0.0.1:PORT, ours */
	uint64_t idle_since;	/* kb_now_ms(), 0 while streams are open */
};

/* Does kbridged still use us: running, not disconnected, our address?
 * 1 yes, 0 no, -1 it is not running at all. */
static int
daemon_uses(const char *addr)
{
	cJSON *st = NULL;
	char err[256];
	int used;

	if (call_ms("GET", KB_API_STATUS, NULL, DAEMON_PROBE_MS, &st, err, sizeof(err)) ==
	    KB_API_DOWN)
		return -1;
	if (st == NULL)		/* it did not answer in time: ask again later */
		return 1;
	used = strcmp(orelse(jstr(st, "state"), "disconnected"), "disconnected") != 0 &&
	    strcmp(orelse(jstr(st, "manager"), ""), addr) == 0;
	cJSON_Delete(st);
	return used;
}

/* Every second: with no stream for IDLE_CHECK_MS, end unless kbridged's
 * session still names us (it is reconnecting, say). Once kbridged has
 * used us and is not running at all (after quit), at once, streams or not.
 * (Before its first stream kbridged may still be starting: sudo may wait
 * for a password.) Its status is asked only while idle. */
static void
on_watch(evutil_socket_t fd, short what, void *arg)
{
	struct watch *w = arg;
	uint64_t now = kb_now_ms();
	int used;

	(void)fd;
	(void)what;
	if (kb_forward_streams(w->f) > 0) {
		w->idle_since = 0;
		/* After quit its socket is gone: the streams still draining
		 * toward the manager are nobody's. */
		if (access(kb_socket_path(), F_OK) == -1 && errno == ENOENT)
			goto end;
		return;
	}
	if (w->idle_since == 0)
		w->idle_since = now;
	if (!kb_forward_served(w->f) && now - w->idle_since < IDLE_CHECK_MS)
		return;
	used = daemon_uses(w->addr);
	if ((used == -1 && kb_forward_served(w->f)) ||
	    (used != 1 && now - w->idle_since >= IDLE_CHECK_MS))
		goto end;
	if (used == 1)
		w->idle_since = now;
	return;
end:
	printf("kbridged no longer uses %s: port-forward ends\n", w->addr);
	fflush(stdout);
	event_base_loopbreak(w->base);
}

/* Serve listen_fd (owned from here) until SIGINT or SIGTERM, or with
 * watch_addr until kbridged no longer uses it. 0, or -1 with err. */
static int
forward_run(struct event_base *base, struct kb_kubeconfig *kc, const char *ns,
    const char *service, int port, int listen_fd, const char *watch_addr, char *err,
    size_t errlen)
{
	struct kb_forward *f;
	struct event *si = NULL, *st = NULL, *wt = NULL;
	struct watch w = { .base = base, .addr = watch_addr };
	struct timeval sec = { 1, 0 };
	int rc = -1;

	if ((f = kb_forward_start(base, kc, ns, service, port, listen_fd, err, errlen)) == NULL)
		return -1;
	w.f = f;
	if ((si = evsignal_new(base, SIGINT, on_signal, base)) == NULL ||
	    (st = evsignal_new(base, SIGTERM, on_signal, base)) == NULL ||
	    evsignal_add(si, NULL) < 0 || evsignal_add(st, NULL) < 0) {
		snprintf(err, errlen, "cannot catch signals");
		goto out;
	}
	if (watch_addr && ((wt = event_new(base, -1, EV_PERSIST, on_watch, &w)) == NULL ||
	    event_add(wt, &sec) < 0)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	event_base_dispatch(base);
	rc = 0;
out:
	if (si)
		event_free(si);
	if (st)
		event_free(st);
	if (wt)
		event_free(wt);
	kb_forward_stop(f);
	return rc;
}

/* An inherited listening TCP socket on 127.0.0.1 (what connect passes):
 * its address in addr, or -1. */
static int
inherited_listener(const char *s, char *addr, size_t addrlen)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	unsigned long fd;
	int on = 0;
	socklen_t ol = sizeof(on);

	if (kb_parse_num(s, 3, 1023, NULL, &fd) < 0 ||
	    getsockname((int)fd, (struct sockaddr *)&sin, &sl) < 0 || sin.sin_family != AF_INET ||
	    sin.sin_addr.s_addr != htonl(INADDR_LOOPBACK) ||
	    getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) < 0 || !on)
		return -1;
	kb_sockaddr_str((struct sockaddr *)&sin, addr, addrlen);
	return (int)fd;
}

/* "LOCALPORT:PORT" or "PORT" (the same port locally). */
static int
ports_arg(const char *s, int *lport, int *port)
{
	unsigned long a, b;
	const char *rest;

	if (kb_parse_num(s, 0, 65535, &rest, &a) < 0)
		return -1;
	if (*rest == '\0') {
		if (a == 0)
			return -1;
		*lport = *port = (int)a;
		return 0;
	}
	if (*rest != ':' || kb_parse_num(rest + 1, 1, 65535, NULL, &b) < 0)
		return -1;
	*lport = (int)a;
	*port = (int)b;
	return 0;
}

int
kb_forward_listen(int port, struct sockaddr_in *bound)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(*bound);
	int fd, one = 1, e;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)bound, &sl) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int
listen_loopback(int port, char *addr, size_t addrlen)
{
	struct sockaddr_in sin;
	int fd;

	if ((fd = kb_forward_listen(port, &sin)) >= 0)
		kb_sockaddr_str((struct sockaddr *)&sin, addr, addrlen);
	return fd;
}



int cmd_port_forward(int, char **); /* in cli/main.c's table */

int
cmd_port_forward(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "listen-fd", required_argument, NULL, OPT_LISTEN_FD },
		{ "exit-with-daemon", no_argument, NULL, OPT_EXIT_WITH_DAEMON },
		LONGOPT_NAMESPACE,
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *listen_fd = NULL;
	int with_daemon = 0;
	struct kb_kubeconfig_opts ko = { .env = getenv("KUBECONFIG"), .home = getenv("HOME") };
	const char *ns = FWD_NS_DEFAULT, *service;
	struct kb_kubeconfig *kc = NULL;
	struct event_base *base = NULL;
	char err[1024], addr[64], buf[SHOWN_MAX + 1];
	int ch, lport, port, fd, ret = 1;

	while ((ch = next_opt(argc, argv, ":n:h", opts)) != -1) {
		switch (ch) {
		case OPT_KUBECONFIG:
			ko.path = optarg;
			break;
		case OPT_CONTEXT:
			ko.context = optarg;
			break;
		case OPT_LISTEN_FD:
			listen_fd = optarg;
			break;
		case OPT_EXIT_WITH_DAEMON:
			with_daemon = 1;
			break;
		case 'n':
			if (!kb_dns_label(optarg)) {
				errorx("%s: bad namespace '%s'", argv[0],
				    shown(optarg, buf, sizeof(buf)));
				return EXIT_USAGE;
			}
			ns = optarg;
			break;
		case 'h':
			print_usage(argv[0]);
			return 0;
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		errorx("%s: needs SERVICE and LOCALPORT:PORT (see 'kbridge %s --help')",
		    argv[0], argv[0]);
		return EXIT_USAGE;
	}
	service = argv[optind];
	if (!kb_dns_label(service)) {
		errorx("%s: bad service name '%s'", argv[0], shown(service, buf, sizeof(buf)));
		return EXIT_USAGE;
	}
	if (ports_arg(argv[optind + 1], &lport, &port) < 0) {
		errorx("%s: bad ports '%s' (LOCALPORT:PORT, 1-65535; LOCALPORT 0: any)",
		    argv[0], shown(argv[optind + 1], buf, sizeof(buf)));
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((kc = kb_kubeconfig_load(&ko, err, sizeof(err))) == NULL) {
		errorx("%s: %s", argv[0], err);
		return 1;
	}
	if (listen_fd) {
		if ((fd = inherited_listener(listen_fd, addr, sizeof(addr))) < 0) {
			errorx("%s: --listen-fd %s is not a socket listening on 127.0.0.1",
			    argv[0], shown(listen_fd, buf, sizeof(buf)));
			goto out;
		}
	} else if ((fd = listen_loopback(lport, addr, sizeof(addr))) < 0) {
		errorx("%s: 127.0.0.1:%d: %s", argv[0], lport, strerror(errno));
		goto out;
	}
	if ((base = event_base_new()) == NULL) {
		close(fd);
		errorx("%s: cannot initialise libevent", argv[0]);
		goto out;
	}
	printf("%s\n", addr);
	fflush(stdout);
	if (forward_run(base, kc, ns, service, port, fd, with_daemon ? addr : NULL, err,
	    sizeof(err)) < 0) {
		errorx("%s: %s", argv[0], err);
		goto out;
	}
	ret = 0;
out:
	if (base)
		event_base_free(base);
	kb_kubeconfig_free(kc);
	return ret;
}
