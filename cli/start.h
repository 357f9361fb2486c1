/* Finding and starting the root daemon kbridged for the CLI. */
#ifndef KB_START_H
#define KB_START_H

#include <stddef.h>

#include "api.h"	/* KB_RUN_DIR */

/* Absolute path of kbridged: $KBRIDGED, next to this program, or PATH.
 * 0, or -1 with a one-line err. */
int kb_daemon_find(char *buf, size_t len, char *err, size_t errlen);
/* Start kbridged --daemon on sock (through sudo unless we are root, which
 * must then be KB_SOCKET_DEFAULT: "sudo kbridged --daemon" is all we run) and
 * wait for its parent, which exits 0 once the socket listens. 0, or -1 with
 * a one-line err (the daemon's or sudo's own message when there is one). */
int kb_daemon_start(const char *sock, char *err, size_t errlen);
/* The log of the daemon kb_daemon_start starts: sock.log, or through sudo
 * the fixed per-user one in KB_RUN_DIR. 0 or -1 (too long). */
int kb_daemon_log(const char *sock, char *buf, size_t len);

#endif
