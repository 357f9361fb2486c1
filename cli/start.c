/* Starting kbridged for the CLI: found ($KBRIDGED, next to the CLI, PATH),
 * run directly or through sudo (never a shell), its log per user in KB_RUN_DIR. */
#include "start.h"
#include "client.h"

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DAEMON_NAME	"kbridged"

static int
executable(const char *path, char *buf, size_t len)
{
	char real[PATH_MAX];

	if (access(path, X_OK) != 0 || realpath(path, real) == NULL)
		return 0;
	/* sudo's secure_path would not find a relative name: keep it absolute */
	return snprintf(buf, len, "%s", real) < (int)len;
}

static int
search_path(const char *name, char *buf, size_t len)
{
	const char *p = getenv("PATH");
	char cand[PATH_MAX];
	size_t n;

	if (p == NULL || *p == '\0')
		p = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*p) {
		n = strcspn(p, ":");
		if (snprintf(cand, sizeof(cand), "%.*s/%s", (int)n,
		    n ? p : ".", name) < (int)sizeof(cand) &&
		    executable(cand, buf, len))
			return 1;
		p += n;
		if (*p == ':')
			p++;
	}
	return 0;
}

int
kb_daemon_find(char *buf, size_t len, char *err, size_t errlen)
{
	const char *env = getenv("KBRIDGED");
	char self[PATH_MAX], cand[PATH_MAX], *slash;
	ssize_t n;

	if (env && *env) {
		if (strchr(env, '/') ? executable(env, buf, len) :
		    search_path(env, buf, len))
			return 0;
		snprintf(err, errlen, "KBRIDGED=%s is not an executable", env);
		return -1;
	}
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			if (snprintf(cand, sizeof(cand), "%s/%s", self,
			    DAEMON_NAME) < (int)sizeof(cand) &&
			    executable(cand, buf, len))
				return 0;
		}
	}
	if (search_path(DAEMON_NAME, buf, len))
		return 0;
	snprintf(err, errlen, "cannot find %s (next to kbridge or in PATH; "
	    "set KBRIDGED)", DAEMON_NAME);
	return -1;
}

/* Keep the tail: the useful line is the last one written before exit. */
static void
keep_tail(char *out, size_t *olen, size_t cap, const char *p, size_t n)
{
	if (n >= cap) {
		p += n - (cap - 1);
		n = cap - 1;
	}
	if (*olen + n >= cap) {
		size_t drop = *olen + n - (cap - 1);

		memmove(out, out + drop, *olen - drop);
		*olen -= drop;
	}
	memcpy(out + *olen, p, n);
	*olen += n;
	out[*olen] = '\0';
}

/* Last non-empty line, without a "2026-12-03T18:10:14.123Z prog[level] " log
 * prefix. */
static const char *
last_line(char *s)
{
	char *end = s + strlen(s), *line, *tag;

	while (end > s && (end[-1] == '\n' || end[-1] == '\r' ||
	    end[-1] == ' '))
		*--end = '\0';
	if (end == s)
		return NULL;
	line = strrchr(s, '\n');
	line = line ? line + 1 : s;
	if (strlen(line) > 11 && line[0] >= '0' && line[0] <= '9' &&
	    line[4] == '-' && line[10] == 'T' &&
	    (tag = strstr(line, "] ")) != NULL)
		line = tag + 2;
	return line;
}

static void
run_child(char *const argv[], int out, int sudo)
{
	/* Root starts it directly: a SUDO_UID left from "sudo -s" would make it
	 * refuse the paths we give. */
	if (!sudo) {
		unsetenv("SUDO_UID");
		unsetenv("SUDO_GID");
		unsetenv("SUDO_USER");
		unsetenv("SUDO_COMMAND");
	}
	/* The daemon must not write into our stdout (it may carry JSON). */
	if (dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0)
		_exit(127);
	execvp(argv[0], argv);
	dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Where the daemon that kb_daemon_start starts for sock logs. */
int
kb_daemon_log(const char *sock, char *buf, size_t len)
{
	if (geteuid() != 0)
		return snprintf(buf, len, KB_RUN_DIR "/" KB_SUDO_LOG_FMT,
		    (unsigned long)getuid()) < (int)len ? 0 : -1;
	return snprintf(buf, len, "%s.log", sock) < (int)len ? 0 : -1;
}

int
kb_daemon_start(const char *sock, char *err, size_t errlen)
{
	char daemon[PATH_MAX], logpath[PATH_MAX], out[1024], chunk[512];
	char *argv[12];
	const char *line;
	size_t olen = 0;
	int pfd[2], st = 0, i = 0, exited = 0, eof = 0, sudo = geteuid() != 0, tty;
	struct pollfd pf;
	ssize_t n;
	pid_t pid, w;

	if (kb_daemon_find(daemon, sizeof(daemon), err, errlen) == -1)
		return -1;
	if (kb_daemon_log(sock, logpath, sizeof(logpath)) == -1) {
		snprintf(err, errlen, "socket path too long: %s", sock);
		return -1;
	}
	/*
	 * Through sudo the daemon takes no paths from us: its socket is fixed
	 * (and given to us), so that is the only one we can reach it on. The
	 * sudoers rule names exactly this command line.
	 */
	if (sudo && strcmp(sock, KB_SOCKET_DEFAULT) != 0) {
		snprintf(err, errlen, "kbridged started through sudo listens on %s, not on "
		    "KBRIDGE_SOCKET=%s (unset it)", KB_SOCKET_DEFAULT, sock);
		return -1;
	}
	if (sudo) {
		argv[i++] = "sudo";
		/* No terminal to type a password on: sudo must not wait for one. */
		if ((tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
			argv[i++] = "-n";
		else
			close(tty);
		argv[i++] = daemon;
		argv[i++] = "--daemon";
	} else {
		argv[i++] = daemon;
		argv[i++] = "--daemon";
		argv[i++] = "--socket";
		argv[i++] = (char *)sock;
		argv[i++] = "--log";
		argv[i++] = logpath;
	}
	argv[i] = NULL;

	if (pipe2(pfd, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0)
		run_child(argv, pfd[1], sudo);
	close(pfd[1]);
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);

	/*
	 * The daemon's background child may keep the pipe open, so EOF never
	 * comes: read until our direct child exits, then drain what is left.
	 */
	pf.fd = pfd[0];
	pf.events = POLLIN;
	for (;;) {
		if (!exited) {
			w = waitpid(pid, &st, eof ? 0 : WNOHANG);
			if (w == pid || (w == -1 && errno != EINTR))
				exited = 1;
		}
		if (eof) {
			if (exited)
				break;
			continue;
		}
		if (!exited && poll(&pf, 1, 100) <= 0)
			continue;
		if ((n = read(pfd[0], chunk, sizeof(chunk))) > 0)
			keep_tail(out, &olen, sizeof(out), chunk, (size_t)n);
		else if (n == 0)
			eof = 1;
		else if (errno != EINTR && exited)
			break;
	}
	close(pfd[0]);
	out[olen] = '\0';

	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if ((line = last_line(out)) != NULL) {
		if (strncmp(line, DAEMON_NAME ":", strlen(DAEMON_NAME) + 1) == 0)
			snprintf(err, errlen, "%s", line);
		else if (sudo && strncmp(line, "sudo:", 5) == 0)
			snprintf(err, errlen, "cannot start %s as root through sudo (%s): "
			    "add the sudoers rule 'ALL ALL=(root) NOPASSWD: %s --daemon' (see "
			    "README), or run connect on a terminal to type your password",
			    DAEMON_NAME, line + 5 + strspn(line + 5, " "), daemon);
		else
			snprintf(err, errlen, "cannot start %s: %s",
			    DAEMON_NAME, line);
	} else if (WIFSIGNALED(st))
		snprintf(err, errlen, "cannot start %s: killed by signal %d",
		    DAEMON_NAME, WTERMSIG(st));
	else
		snprintf(err, errlen, "cannot start %s: exit status %d",
		    DAEMON_NAME, WEXITSTATUS(st));
	return -1;
}
