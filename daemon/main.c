/* kbridged: the workstation daemon. It runs as root, keeps the session to the
 * cluster's manager, and owns every change made to the workstation's
 * networking (one link, one nftables table), undone on exit or death. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "api.h"
#include "conn.h"
#include "kbridged.h"
#include "listener.h"
#include "log.h"
#include "util.h"

#define DEFAULT_TUN_ADDR "198.18.0.1"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: kbridged [--socket PATH] [--daemon] [--log FILE] [--owner-uid UID]\n"
	    "                [--instance NAME] [--link-address IP] [-v]\n"
	    "\n"
	    "The kbridge workstation daemon; normally started by 'kbridge connect'.\n"
	    "Started through sudo (SUDO_UID set), it takes no paths from its caller:\n"
	    "the socket is " KB_SOCKET_DEFAULT " (owned by that user) and the\n"
	    "log " KB_RUN_DIR "/kbridged-UID.log; only --daemon and -v are accepted.\n"
	    "\n"
	    "  --socket PATH      control socket (default $KBRIDGE_SOCKET or " KB_SOCKET_DEFAULT ")\n"
	    "  --daemon           go to the background once the socket is listening\n"
	    "  --log FILE         append log lines to FILE (with --daemon)\n"
	    "  --owner-uid UID    the user allowed to use the socket (besides root)\n"
	    "  --instance NAME    nftables table kbridge_NAME instead of kbridge\n"
	    "  --link-address IP  address of the daemon's link (default " DEFAULT_TUN_ADDR ")\n"
	    "  -v, --verbose      debug logging\n");
}

void
kbd_quit(struct kbd *d)
{
	struct timeval tv = { 0, 100000 };

	if (!d->exiting) {
		d->exiting = 1;
		log_info("shutting down");
		/* Pending lookups complete before the DNS proxy goes away. */
		tunnel_stop(d->tunnel, "workstation daemon quit");
		net_down(d);
		control_close(d);
	}
	/* Give the goaway a moment to leave. */
	event_base_loopexit(d->base, &tv);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	log_info("signal %d", (int)sig);
	kbd_quit(arg);
}

/* Fork; the parent exits once the child reports (through a pipe) that its
 * socket listens, so 'kbridge connect' can talk to it right away. */
static int
daemonize(int logfd, int *notify)
{
	int p[2], fd;
	pid_t pid;
	char buf[512];
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		fatal("pipe");
	if ((pid = fork()) < 0)
		fatal("fork");
	if (pid > 0) {
		close(p[1]);
		n = read(p[0], buf, sizeof(buf) - 1);
		if (n <= 0) {
			fprintf(stderr, "kbridged: the daemon exited during start-up\n");
			_exit(1);
		}
		buf[n] = '\0';
		if (strcmp(buf, "ok") != 0) {
			fprintf(stderr, "kbridged: %s\n", buf);
			_exit(1);
		}
		_exit(0);
	}
	close(p[0]);
	setsid();
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		if (logfd < 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (fd > 2)
			close(fd);
	}
	if (logfd >= 0) {
		dup2(logfd, 1);
		dup2(logfd, 2);
		close(logfd);
	}
	*notify = p[1];
	return 0;
}

/* Started through sudo: 1 and the caller's uid, 0 if not (or by root
 * itself), -1 if SUDO_UID is not a uid. */
static int
sudo_caller(uid_t *uid)
{
	const char *s = getenv("SUDO_UID");
	unsigned long v;

	if (s == NULL)
		return 0;
	if (kb_parse_num(s, 0, (uid_t)-2, NULL, &v) < 0)
		return -1;
	*uid = (uid_t)v;
	return v != 0;
}

/* KB_RUN_DIR, made if missing, as a descriptor; it must be root's and
 * writable by nobody else, so no one can plant a symlink or file in it. */
static int
open_run_dir(char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (mkdir(KB_RUN_DIR, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", KB_RUN_DIR, strerror(errno));
		return -1;
	}
	if ((fd = open(KB_RUN_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "open %s: %s", KB_RUN_DIR, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 022)) {
		snprintf(err, errlen, "%s must be a directory owned by root and writable only by it",
		    KB_RUN_DIR);
		close(fd);
		return -1;
	}
	return fd;
}

/* The sudo caller's group (SUDO_GID): 1 and *gid, else 0. */
static int
sudo_group(gid_t *gid)
{
	const char *s = getenv("SUDO_GID");
	unsigned long v;

	if (s == NULL || kb_parse_num(s, 0, (gid_t)-2, NULL, &v) < 0)
		return 0;
	*gid = (gid_t)v;
	return 1;
}

/* The log, appended to; never through a symlink. For a sudo caller it is
 * a regular file of root's in KB_RUN_DIR that the caller can read (group
 * theirs, mode 0640; 0644 if sudo named no group) but not write: root's
 * tmpfs is not theirs to fill. One an older kbridged handed to the caller
 * (who may hold it open) is replaced. */
static int
open_log(int dirfd, const char *path, int has_caller, uid_t caller, char *err, size_t errlen)
{
	int flags = O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC;
	struct stat st;
	gid_t gid = 0;
	int fd, has_gid;

	fd = openat(dirfd, path, flags, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open log %s: %s", path,
		    errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		return -1;
	}
	if (!has_caller)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    (st.st_uid != 0 && st.st_uid != caller)) {
		snprintf(err, errlen, "log %s/%s is not a file of this user's daemon", KB_RUN_DIR, path);
		close(fd);
		return -1;
	}
	if (st.st_uid != 0) {
		close(fd);
		if (unlinkat(dirfd, path, 0) < 0 ||
		    (fd = openat(dirfd, path, flags | O_EXCL, 0600)) < 0) {
			snprintf(err, errlen, "log %s/%s: %s", KB_RUN_DIR, path, strerror(errno));
			return -1;
		}
	}
	has_gid = sudo_group(&gid);
	if (fchown(fd, 0, gid) < 0 || fchmod(fd, has_gid ? 0640 : 0644) < 0) {
		snprintf(err, errlen, "log %s/%s: %s", KB_RUN_DIR, path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* The socket's directory also holds the log, so it must exist first. */
static void
make_parent_dir(const char *path)
{
	char dir[4096], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			log_warn("mkdir %s", dir);
	}
}

static void
notify_parent(int fd, const char *msg)
{
	if (fd < 0)
		return;
	if (write(fd, msg, strlen(msg)) < 0)
		log_warn("notify parent");
	close(fd);
}

/* What the command line and the environment ask for. */
struct opts {
	const char *socket_path;
	const char *logfile;
	const char *instance;
	uint32_t tun_addr;
	int background, verbose;
	int has_owner;
	uid_t owner;
	int sudo;		/* started through sudo by caller */
	uid_t caller;
	char sudo_log[64];
	char log_path[4096];	/* logfile made absolute, for status */
};

/* Fill o from argv; 0 to go on, else the exit status (after a message). */
static int
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "daemon", no_argument, NULL, 'd' },
		{ "log", required_argument, NULL, 'l' },
		{ "owner-uid", required_argument, NULL, 'u' },
		{ "instance", required_argument, NULL, 'i' },
		{ "link-address", required_argument, NULL, 'a' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *link_addr = DEFAULT_TUN_ADDR, *chosen = NULL;
	unsigned long num;
	struct in_addr a;
	int c;

	o->socket_path = getenv(KB_SOCKET_ENV) ? getenv(KB_SOCKET_ENV) : KB_SOCKET_DEFAULT;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->socket_path = optarg;
			chosen = "--socket";
			break;
		case 'd':
			o->background = 1;
			break;
		case 'l':
			o->logfile = optarg;
			chosen = "--log";
			break;
		case 'u':
			if (kb_parse_num(optarg, 0, (uid_t)-2, NULL, &num) == 0)
				o->owner = (uid_t)num;
			else {
				fprintf(stderr, "kbridged: invalid --owner-uid '%s'\n", optarg);
				return 2;
			}
			o->has_owner = 1;
			chosen = "--owner-uid";
			break;
		case 'i':
			o->instance = optarg;
			chosen = "--instance";
			break;
		case 'a':
			link_addr = optarg;
			chosen = "--link-address";
			break;
		case 'v':
			o->verbose = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kbridged: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (inet_pton(AF_INET, link_addr, &a) != 1) {
		fprintf(stderr, "kbridged: invalid --link-address '%s'\n", link_addr);
		return 2;
	}
	o->tun_addr = ntohl(a.s_addr);
	/* Through sudo the caller is not root: it may not name files for root
	 * to replace, append to or chown, nor another daemon's table. */
	if ((o->sudo = sudo_caller(&o->caller)) < 0) {
		fprintf(stderr, "kbridged: invalid SUDO_UID '%s'\n", getenv("SUDO_UID"));
		return 2;
	}
	if (o->sudo && chosen) {
		fprintf(stderr, "kbridged: started through sudo (SUDO_UID %lu): %s is not accepted; "
		    "the socket is %s (as root, unset SUDO_UID to choose)\n",
		    (unsigned long)o->caller, chosen, KB_SOCKET_DEFAULT);
		return 2;
	}
	return 0;
}

/* Where the log is, absolute, for 'kbridge logs' (status "daemon.log"). */
static void
log_path_of(struct opts *o)
{
	char cwd[2048];

	if (o->sudo)
		snprintf(o->log_path, sizeof(o->log_path), "%s/%s", KB_RUN_DIR, o->logfile);
	else if (o->logfile[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		snprintf(o->log_path, sizeof(o->log_path), "%s", o->logfile);
	else
		snprintf(o->log_path, sizeof(o->log_path), "%s/%s", cwd, o->logfile);
}

/* As root: the socket and log a sudo caller gets, the log opened, and into
 * the background if asked (*notify: the pipe to the waiting parent).
 * 0, or the exit status after a message. */
static int
set_up_process(struct opts *o, int *notify)
{
	int dirfd = AT_FDCWD, logfd = -1;
	char err[300];

	if (geteuid() != 0) {
		fprintf(stderr, "kbridged: must run as root (it changes the workstation's routes and firewall)\n");
		return 1;
	}
	log_init("kbridged", o->verbose ? KB_LOG_DEBUG : KB_LOG_INFO);
	if (o->sudo) {
		o->socket_path = KB_SOCKET_DEFAULT;
		o->owner = o->caller;
		o->has_owner = 1;
		snprintf(o->sudo_log, sizeof(o->sudo_log), KB_SUDO_LOG_FMT, (unsigned long)o->caller);
		o->logfile = o->sudo_log;
		if ((dirfd = open_run_dir(err, sizeof(err))) < 0) {
			fprintf(stderr, "kbridged: %s\n", err);
			return 1;
		}
	} else {
		make_parent_dir(o->socket_path);
	}
	if (o->background && o->logfile &&
	    (logfd = open_log(dirfd, o->logfile, o->sudo, o->caller, err, sizeof(err))) < 0) {
		fprintf(stderr, "kbridged: %s\n", err);
		return 1;
	}
	if (dirfd >= 0)
		close(dirfd);
	if (logfd >= 0)
		log_path_of(o);
	/* The terminal's Ctrl-C reaches the whole 'kbridge connect' process
	 * group: the start finishes (the parent waits for the child's word)
	 * and the CLI, interrupted, stops the daemon it started. Half a start
	 * would leave a daemon no one knows of. The event loop handles SIGINT
	 * again once it runs. */
	if (o->background) {
		signal(SIGINT, SIG_IGN);
		daemonize(logfd, notify);
	}
	kb_malloc_tune();
	signal(SIGPIPE, SIG_IGN);
	/* Every connection is a descriptor (two when proxied): 1024 is few. */
	if (kb_raise_nofile() < 0)
		log_warn("cannot raise the limit on open files");
	return 0;
}

/* Serve until kbd_quit, then undo everything. 0, or 1 if the control
 * socket could not be set up (the parent, or stderr, is told). */
static int
run(struct kbd *d, const struct opts *o, int notify)
{
	struct event *sigs[3];
	char err[300];
	size_t i;

	if ((d->base = kb_event_base_new()) == NULL || (d->tunnel = tunnel_new(d)) == NULL)
		fatalx("cannot create the event loop");
	if (control_listen(d, o->owner, o->has_owner, err, sizeof(err)) < 0) {
		log_warnx("%s", err);
		if (notify >= 0)
			notify_parent(notify, err);
		else
			fprintf(stderr, "kbridged: %s\n", err);
		return 1;
	}
	sigs[0] = evsignal_new(d->base, SIGTERM, on_signal, d);
	sigs[1] = evsignal_new(d->base, SIGINT, on_signal, d);
	sigs[2] = evsignal_new(d->base, SIGHUP, on_signal, d);
	for (i = 0; i < 3; i++)
		evsignal_add(sigs[i], NULL);
	log_info("kbridged %s listening on %s (pid %ld)", KB_VERSION, d->socket_path,
	    (long)getpid());
	notify_parent(notify, "ok");
	event_base_dispatch(d->base);

	net_down(d);
	control_close(d);
	control_free(d);
	intercept_shutdown(d);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	tunnel_free(d->tunnel);
	event_base_free(d->base);
	log_info("stopped");
	return 0;
}

int
main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct kbd d = { 0 };
	int rc, notify = -1;

	if ((rc = parse_args(argc, argv, &o)) != 0)
		return rc;
	if (kb_random_hex(d.instance_id, (sizeof(d.instance_id) - 1) / 2) < 0)
		fatalx("no randomness");
	if ((rc = set_up_process(&o, &notify)) != 0)
		return rc;
	d.socket_path = o.socket_path;
	d.instance = o.instance;
	d.tun_addr = o.tun_addr;
	d.log_path = o.log_path[0] ? o.log_path : NULL;
	return run(&d, &o, notify);
}
