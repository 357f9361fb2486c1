/* The CLI's side of the daemon's control API: HTTP/1.1 + JSON over the
 * daemon's Unix socket (libcurl), as proto/API.md describes. */
#ifndef KB_CLI_CLIENT_H
#define KB_CLI_CLIENT_H

#include <signal.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "api.h"	/* KB_SOCKET_DEFAULT, the endpoints and limits */

/* kb_api results other than 0 (an HTTP answer arrived). */
#define KB_API_ERROR	-1	/* transport or protocol failure; err says why */
#define KB_API_DOWN	-2	/* nobody listens: no socket file, or refused */

/* Socket path: $KBRIDGE_SOCKET, else KB_SOCKET_DEFAULT. */
const char *kb_socket_path(void);
/* Once per process; requests abort early once *stop becomes nonzero. */
int kb_client_init(volatile sig_atomic_t *stop);
void kb_client_cleanup(void);
/* One request; on 0, *status is the HTTP code and *resp the parsed body
 * (caller frees; NULL if empty). *status is also set when an answer came
 * whose body is not JSON. body may be NULL. */
int kb_api(const char *method, const char *path, const cJSON *body,
    long timeout_ms, long *status, cJSON **resp, char *err, size_t errlen);
/* One-line reason of a non-2xx answer: the daemon's "error", else the code. */
const char *kb_api_errmsg(long status, const cJSON *resp, char *buf,
    size_t len);
/* Poll GET /v1/status until the daemon answers (up) or stops answering
 * (!up), for at most timeout_ms. 0 once reached, -1 otherwise. */
int kb_api_wait(int up, long timeout_ms);

#endif
