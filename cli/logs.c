/* kbridge logs, loglevel and gather-logs: the daemon's log where the user
 * can read it, its level changed without a restart, and one archive with
 * everything a bug report needs.
 *
 * The log is read here, as the user: kbridged (root) names its file in its
 * status ("daemon.log"; started through sudo it is KB_RUN_DIR/kbridged-UID.log,
 * the caller's group may read it) and never opens a path the user chose. */
#include <sys/stat.h>
#include <dirent.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "client.h"
#include "cmd.h"
#include "start.h"
#include "util.h"

#define STATUS_TIMEOUT_MS	3000
#define FOLLOW_POLL_US		200000
/* What gather-logs keeps of the daemon's log: its newest bytes. */
#define GATHER_LOG_MAX		(8 * 1024 * 1024)
#define TAR_PATH		"/bin/tar"

/* The daemon's log: the path its status names, else where 'kbridge connect'
 * would have it log. 0, or -1 with err. */
static int
daemon_log_path(char *buf, size_t len, char *err, size_t errlen)
{
	cJSON *resp = NULL;
	const char *p;
	char e[512];
	int rc;

	rc = call_ms("GET", KB_API_STATUS, NULL, STATUS_TIMEOUT_MS, &resp, e, sizeof(e));
	if (rc == 0) {
		p = jstr(cJSON_GetObjectItemCaseSensitive(resp, "daemon"), "log");
		if (p == NULL) {
			snprintf(err, errlen, "kbridged on %s logs to its standard error, "
			    "not to a file", kb_socket_path());
			cJSON_Delete(resp);
			return -1;
		}
		rc = snprintf(buf, len, "%s", p) < (int)len ? 0 : -1;
		cJSON_Delete(resp);
		if (rc < 0)
			snprintf(err, errlen, "log path too long");
		return rc;
	}
	if (rc != KB_API_DOWN) {
		snprintf(err, errlen, "%s", e);
		return -1;
	}
	if (kb_daemon_log(kb_socket_path(), buf, len) < 0) {
		snprintf(err, errlen, "socket path too long");
		return -1;
	}
	return 0;
}

/* Write n bytes of log text to f; control characters other than newline
 * and tab become '?', so the log cannot reprogram a terminal. */
static void
put_log(FILE *f, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		fputc((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ? '?' : c, f);
	}
}

/* The offset where the last `lines` lines of fd begin (size: its size). */
static off_t
tail_start(int fd, off_t size, long lines)
{
	char buf[4096];
	off_t pos = size;
	long seen = 0;
	ssize_t n, i;

	while (pos > 0) {
		n = pos < (off_t)sizeof(buf) ? (ssize_t)pos : (ssize_t)sizeof(buf);
		pos -= n;
		if (pread(fd, buf, (size_t)n, pos) != n)
			return 0;
		for (i = n - 1; i >= 0; i--) {
			/* The final newline ends the last line, it does not start one. */
			if (buf[i] == '\n' && pos + i != size - 1 && ++seen == lines)
				return pos + i + 1;
		}
	}
	return 0;
}

/* Copy fd from *pos to its end onto stdout; -1 on a read error. */
static int
copy_out(int fd, off_t *pos)
{
	char buf[8192];
	ssize_t n;

	while ((n = pread(fd, buf, sizeof(buf), *pos)) > 0) {
		put_log(stdout, buf, (size_t)n);
		*pos += n;
	}
	fflush(stdout);
	return n < 0 ? -1 : 0;
}

int
cmd_logs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "tail", required_argument, NULL, 't' },
		LONGOPT_HELP,
		LONGOPT_END
	};
	char path[PATH_MAX], err[600];
	struct stat st, now;
	long lines = -1;
	int ch, ret, follow = 0, fd;
	off_t pos;

	while ((ch = next_opt(argc, argv, ":ft:h", opts)) != -1) {
		if (ch == 'f')
			follow = 1;
		else if (ch == 't') {
			char *end;

			errno = 0;
			lines = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || lines < 0 || lines > 1000000) {
				errorx("logs: --tail must be 0-1000000 lines, not '%s'", optarg);
				return EXIT_USAGE;
			}
		} else if (!std_opt(ch, argv, NULL, NULL, &ret))
			return ret;
	}
	if (no_operands(argc, argv) == -1)
		return EXIT_USAGE;
	if (daemon_log_path(path, sizeof(path), err, sizeof(err)) < 0) {
		errorx("logs: %s", err);
		return 1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0 || fstat(fd, &st) < 0) {
		if (errno == ENOENT)
			errorx("logs: no log at %s (kbridged has not run as this user)", path);
		else
			errorx("logs: cannot read %s: %s", path, strerror(errno));
		return 1;
	}
	pos = lines >= 0 ? tail_start(fd, st.st_size, lines) : 0;
	if (lines == 0)
		pos = st.st_size;
	if (copy_out(fd, &pos) < 0) {
		errorx("logs: cannot read %s: %s", path, strerror(errno));
		close(fd);
		return 1;
	}
	if (follow)
		catch_signals();
	while (follow && !interrupted) {
		usleep(FOLLOW_POLL_US);
		/* A new daemon may have made a new file: read that one. */
		if (stat(path, &now) == 0 && (now.st_ino != st.st_ino || now.st_dev != st.st_dev)) {
			int nfd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

			if (nfd >= 0) {
				copy_out(fd, &pos);
				close(fd);
				fd = nfd;
				fstat(fd, &st);
				pos = 0;
			}
		} else if (fstat(fd, &now) == 0 && now.st_size < pos)
			pos = 0;	/* cut short: from its start */
		if (copy_out(fd, &pos) < 0)
			break;
	}
	close(fd);
	return 0;
}

int
cmd_loglevel(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPT_HELP,
		LONGOPT_END
	};
	cJSON *body, *resp = NULL;
	char err[600];
	int ch, ret, rc;

	while ((ch = next_opt(argc, argv, ":h", opts)) != -1)
		if (!std_opt(ch, argv, NULL, NULL, &ret))
			return ret;
	if (optind >= argc || (strcmp(argv[optind], "debug") && strcmp(argv[optind], "info"))) {
		errorx("loglevel: say debug or info (see 'kbridge loglevel --help')");
		return EXIT_USAGE;
	}
	optind++;
	if (no_operands(argc, argv) == -1)
		return EXIT_USAGE;
	if ((body = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(body, "level", argv[optind - 1]) == NULL) {
		cJSON_Delete(body);
		errorx("out of memory");
		return 1;
	}
	rc = call_ms("POST", KB_API_LOGLEVEL, body, STATUS_TIMEOUT_MS, &resp, err, sizeof(err));
	cJSON_Delete(body);
	if (rc == KB_API_DOWN) {
		errorx("loglevel: kbridged is not running on %s", kb_socket_path());
		return 1;
	}
	if (rc != 0) {
		errorx("loglevel: %s", err);
		return 1;
	}
	printf("kbridged logs at level %s from now on\n", orelse(jstr(resp, "level"), "?"));
	cJSON_Delete(resp);
	return 0;
}

/* --- gather-logs --- */

/* Write len bytes to dir/name (mode 0600, new). 0, or -1 with err. */
static int
write_file(int dirfd, const char *name, const char *s, size_t len, char *err, size_t errlen)
{
	int fd;
	ssize_t n;

	if ((fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0)
		goto fail;
	while (len > 0) {
		if ((n = write(fd, s, len)) < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			goto fail;
		}
		s += n;
		len -= (size_t)n;
	}
	if (close(fd) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "cannot write %s: %s", name, strerror(errno));
	return -1;
}

static int
write_json(int dirfd, const char *name, const cJSON *j, char *err, size_t errlen)
{
	char *s = cJSON_Print(j);
	size_t n;
	int rc;

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	n = strlen(s);
	s[n] = '\n';	/* cJSON_Print's NUL, replaced; the length says where it ends */
	rc = write_file(dirfd, name, s, n + 1, err, errlen);
	free(s);
	return rc;
}

/* The newest GATHER_LOG_MAX bytes of the daemon's log into dir/kbridged.log,
 * or a line saying why there is none. */
static int
gather_daemon_log(int dirfd, char *err, size_t errlen)
{
	char path[PATH_MAX], why[800], *buf;
	struct stat st;
	off_t start;
	ssize_t n;
	int fd, rc;

	if (daemon_log_path(path, sizeof(path), why, sizeof(why)) < 0)
		return write_file(dirfd, "kbridged.log.missing", why, strlen(why), err, errlen);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0 || fstat(fd, &st) < 0) {
		snprintf(why, sizeof(why), "cannot read %.600s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return write_file(dirfd, "kbridged.log.missing", why, strlen(why), err, errlen);
	}
	start = st.st_size > GATHER_LOG_MAX ? st.st_size - GATHER_LOG_MAX : 0;
	if ((buf = malloc(GATHER_LOG_MAX)) == NULL) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	n = pread(fd, buf, GATHER_LOG_MAX, start);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read %.600s: %s", path, strerror(errno));
		free(buf);
		return -1;
	}
	rc = write_file(dirfd, "kbridged.log", buf, (size_t)n, err, errlen);
	free(buf);
	return rc;
}

/* The manager's recent log lines about this user, through kbridged. */
static int
gather_manager_log(int dirfd, char *err, size_t errlen)
{
	cJSON *resp = NULL;
	const char *log;
	char why[800];
	int rc;

	rc = call_ms("GET", KB_API_MANAGER_LOG, NULL, API_TIMEOUT_MS, &resp, why, sizeof(why));
	if (rc == 0 && (log = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(resp,
	    "log"))) != NULL) {
		rc = write_file(dirfd, "manager.log", log, strlen(log), err, errlen);
		cJSON_Delete(resp);
		return rc;
	}
	cJSON_Delete(resp);
	if (rc == 0)
		snprintf(why, sizeof(why), "kbridged's answer has no log");
	strncat(why, "\n", sizeof(why) - strlen(why) - 1);
	return write_file(dirfd, "manager.log.missing", why, strlen(why), err, errlen);
}

/* For each of the user's intercepts (in status st), its sidecars' newest
 * lines (the manager hands them only to whoever intercepts the workload):
 * sidecar-WORKLOAD.NS-REPLICA.log, or .missing with why. At most 8
 * replicas each. */
#define GATHER_REPLICAS_MAX	8

static int
gather_sidecar_logs(int dirfd, const cJSON *st, char *err, size_t errlen)
{
	const cJSON *i;
	const char *wl, *ns, *log;
	cJSON *body, *resp;
	char name[300], why[800];
	double nrep;
	int k, n, rc;

	cJSON_ArrayForEach(i, cJSON_GetObjectItemCaseSensitive(st, "intercepts")) {
		wl = jstr(i, "workload");
		ns = jstr(i, "namespace");
		if (!wl || !ns || !kb_dns_label(wl) || !kb_dns_label(ns))
			continue;
		for (k = 0, n = 1; k < n && k < GATHER_REPLICAS_MAX; k++) {
			resp = NULL;
			if ((body = cJSON_CreateObject()) == NULL ||
			    !cJSON_AddStringToObject(body, "workload", wl) ||
			    !cJSON_AddStringToObject(body, "namespace", ns) ||
			    !cJSON_AddNumberToObject(body, "replica", k)) {
				cJSON_Delete(body);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			rc = call_ms("POST", KB_API_SIDECAR_LOG, body, API_TIMEOUT_MS, &resp, why,
			    sizeof(why));
			cJSON_Delete(body);
			log = rc == 0 ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(resp,
			    "log")) : NULL;
			if (log) {
				snprintf(name, sizeof(name), "sidecar-%s.%s-%d.log", wl, ns, k);
				rc = write_file(dirfd, name, log, strlen(log), err, errlen);
				if (jnum(resp, "replicas", &nrep) && nrep > n)
					n = (int)nrep;
			} else {
				if (rc == 0)
					snprintf(why, sizeof(why), "kbridged's answer has no log");
				strncat(why, "\n", sizeof(why) - strlen(why) - 1);
				snprintf(name, sizeof(name), "sidecar-%s.%s-%d.log.missing", wl, ns, k);
				rc = write_file(dirfd, name, why, strlen(why), err, errlen);
			}
			cJSON_Delete(resp);
			if (rc < 0)
				return -1;
		}
	}
	return 0;
}

/* kbridge status -o json as it would print. */
static cJSON *
status_json(void)
{
	cJSON *resp = NULL;
	char err[600];
	int rc;

	rc = call_ms("GET", KB_API_STATUS, NULL, STATUS_TIMEOUT_MS, &resp, err, sizeof(err));
	if (rc == 0)
		return resp;
	if ((resp = cJSON_CreateObject()) == NULL)
		return NULL;
	cJSON_AddNullToObject(resp, "daemon");
	cJSON_AddStringToObject(resp, "state", rc == KB_API_DOWN ? "not running" : "unknown");
	if (rc != KB_API_DOWN)
		cJSON_AddStringToObject(resp, "error", err);
	return resp;
}

/* Run tar as this user: -czf out -C dir NAME. 0, or -1 with err. */
static int
run_tar(const char *out, const char *dir, const char *name, char *err, size_t errlen)
{
	char *argv[] = { "tar", "-czf", (char *)out, "-C", (char *)dir, "--owner=0",
	    "--group=0", "--numeric-owner", (char *)name, NULL };
	pid_t pid, w;
	int st;

	if ((pid = fork()) < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		execv(TAR_PATH, argv);
		dprintf(STDERR_FILENO, "kbridge: gather-logs: cannot run %s: %s\n", TAR_PATH,
		    strerror(errno));
		_exit(127);
	}
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (w < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		unlink(out);	/* it did not exist before: nothing half-written stays */
		snprintf(err, errlen, "%s could not write %.900s", TAR_PATH, out);
		return -1;
	}
	return 0;
}

/* Remove what gather-logs put in its temporary directory, and it. */
static void
remove_tmp(const char *tmp, int dirfd)
{
	char sub[PATH_MAX];
	struct dirent *e;
	DIR *dir;

	if (dirfd >= 0) {
		/* Only files of ours are in it (mode 0700, made by mkdtemp). */
		if ((dir = fdopendir(dup(dirfd))) != NULL) {
			while ((e = readdir(dir)) != NULL)
				if (e->d_name[0] != '.')
					unlinkat(dirfd, e->d_name, 0);
			closedir(dir);
		}
		close(dirfd);
	}
	snprintf(sub, sizeof(sub), "%.1100s/kbridge-logs", tmp);
	rmdir(sub);
	rmdir(tmp);
}

int
cmd_gather_logs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output-file", required_argument, NULL, 'o' },
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *out = NULL, *tmpdir = getenv("TMPDIR");
	char tmp[PATH_MAX], sub[PATH_MAX], abs[PATH_MAX], cwd[PATH_MAX], err[1024];
	cJSON *j;
	size_t n;
	int ch, ret, dirfd = -1, rc = 1;

	while ((ch = next_opt(argc, argv, ":o:h", opts)) != -1) {
		if (ch == 'o')
			out = optarg;
		else if (!std_opt(ch, argv, NULL, NULL, &ret))
			return ret;
	}
	if (no_operands(argc, argv) == -1)
		return EXIT_USAGE;
	if (out == NULL || (n = strlen(out)) < 8 || strcmp(out + n - 7, ".tar.gz") != 0) {
		errorx("gather-logs: say where: -o FILE.tar.gz");
		return EXIT_USAGE;
	}
	if (out[0] != '/') {
		if (getcwd(cwd, sizeof(cwd)) == NULL ||
		    snprintf(abs, sizeof(abs), "%s/%s", cwd, out) >= (int)sizeof(abs)) {
			errorx("gather-logs: cannot make %s absolute", out);
			return 1;
		}
		out = abs;
	}
	if (access(out, F_OK) == 0) {
		errorx("gather-logs: %s exists; not replacing it", out);
		return 1;
	}
	if (access(TAR_PATH, X_OK) != 0) {
		errorx("gather-logs: needs %s: %s", TAR_PATH, strerror(errno));
		return 1;
	}
	if (tmpdir == NULL || tmpdir[0] != '/' || strlen(tmpdir) > 1024)
		tmpdir = "/tmp";
	snprintf(tmp, sizeof(tmp), "%s/kbridge-gather.XXXXXX", tmpdir);
	if (mkdtemp(tmp) == NULL) {
		errorx("gather-logs: cannot make a directory in %s: %s", tmpdir, strerror(errno));
		return 1;
	}
	snprintf(sub, sizeof(sub), "%.1100s/kbridge-logs", tmp);
	if (mkdir(sub, 0700) < 0 ||
	    (dirfd = open(sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		errorx("gather-logs: %s: %s", sub, strerror(errno));
		goto done;
	}
	if ((j = status_json()) == NULL || write_json(dirfd, "status.json", j, err,
	    sizeof(err)) < 0 || gather_sidecar_logs(dirfd, j, err, sizeof(err)) < 0) {
		cJSON_Delete(j);
		goto fail;
	}
	cJSON_Delete(j);
	if ((j = version_json()) == NULL || write_json(dirfd, "version.json", j, err,
	    sizeof(err)) < 0) {
		cJSON_Delete(j);
		goto fail;
	}
	cJSON_Delete(j);
	if (gather_daemon_log(dirfd, err, sizeof(err)) < 0 ||
	    gather_manager_log(dirfd, err, sizeof(err)) < 0 ||
	    run_tar(out, tmp, "kbridge-logs", err, sizeof(err)) < 0)
		goto fail;
	printf("wrote %s\n", out);
	rc = 0;
	goto done;
fail:
	errorx("gather-logs: %s", err);
done:
	remove_tmp(tmp, dirfd);
	return rc;
}
