/* The one place the daemon runs external commands. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

static kb_exec_fn exec_runner;

void
kb_exec_set_runner(kb_exec_fn fn)
{
	exec_runner = fn;
}

/* "ip route add ..." for logs and error messages; truncated if long. */
static void
exec_cmdline(char *const argv[], char *buf, size_t len)
{
	size_t off = 0;
	int i, n;

	buf[0] = '\0';
	for (i = 0; argv[i] != NULL && off < len; i++) {
		n = snprintf(buf + off, len - off, "%s%s", i ? " " : "", argv[i]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

/* Keep the first line of what the child wrote; drain the rest so it never blocks. */
static void
exec_read_stderr(int fd, char *line, size_t len)
{
	char buf[512];
	size_t off = 0;
	ssize_t n;
	int done = 0;

	line[0] = '\0';
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && !done; i++) {
			if (buf[i] == '\n' && off > 0) {
				done = 1;
			} else if (buf[i] != '\n' && off + 1 < len) {
				line[off++] = buf[i];
				line[off] = '\0';
			}
		}
	}
}

static int
exec_spawn(char *const argv[], char *err, size_t errlen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	char cmd[256], line[256];
	int pfd[2] = { -1, -1 };
	int status, rc, ret = -1, fa_ok = 0, attr_ok = 0;
	pid_t pid;

	exec_cmdline(argv, cmd, sizeof(cmd));
	log_debug("exec: %s", cmd);

	if (pipe2(pfd, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "%s: pipe: %s", cmd, strerror(errno));
		goto done;
	}
	if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
		snprintf(err, errlen, "%s: spawn setup: %s", cmd, strerror(rc));
		goto done;
	}
	fa_ok = 1;
	if ((rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) != 0 ||
	    (rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0)) != 0 ||
	    (rc = posix_spawn_file_actions_adddup2(&fa, pfd[1], 2)) != 0 ||
	    /* The child must not inherit the TUN or nftables descriptors:
	     * they would outlive a killed daemon and keep its changes alive. */
	    (rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) != 0) {
		snprintf(err, errlen, "%s: spawn setup: %s", cmd, strerror(rc));
		goto done;
	}
	if ((rc = posix_spawnattr_init(&attr)) != 0) {
		snprintf(err, errlen, "%s: spawn setup: %s", cmd, strerror(rc));
		goto done;
	}
	attr_ok = 1;
	/* The daemon may block or ignore signals; the tool should see defaults. */
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

	if ((rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ)) != 0) {
		snprintf(err, errlen, "%s: %s", cmd, strerror(rc));
		goto done;
	}
	close(pfd[1]);
	pfd[1] = -1;
	exec_read_stderr(pfd[0], line, sizeof(line));

	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			snprintf(err, errlen, "%s: waitpid: %s", cmd, strerror(errno));
			goto done;
		}
	}
	if (WIFSIGNALED(status)) {
		snprintf(err, errlen, "%s: killed by signal %d", cmd, WTERMSIG(status));
		goto done;
	}
	ret = WEXITSTATUS(status);
	if (ret != 0) {
		if (line[0] != '\0')
			snprintf(err, errlen, "%s: %s", cmd, line);
		else
			snprintf(err, errlen, "%s: exit status %d", cmd, ret);
		log_debug("exec: failed: %s", err);
	}
done:
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (pfd[0] != -1)
		close(pfd[0]);
	if (pfd[1] != -1)
		close(pfd[1]);
	return ret;
}

int
kb_exec(char *const argv[], char *err, size_t errlen)
{
	char dummy[1];

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (argv == NULL || argv[0] == NULL) {
		snprintf(err, errlen, "exec: empty command");
		return -1;
	}
	if (exec_runner != NULL)
		return exec_runner(argv, err, errlen);
	return exec_spawn(argv, err, errlen);
}
