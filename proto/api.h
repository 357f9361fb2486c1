/* The control API between the CLI (cli/) and its daemon (daemon/control.c):
 * HTTP/1.1 + JSON on a Unix socket. proto/API.md documents it; the names
 * and limits here are the ones both sides use, and kb_api_check is what the
 * daemon accepts before anything reaches the manager. */
#ifndef KB_API_H
#define KB_API_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "msg.h"

/* Where the daemon listens unless KBRIDGE_SOCKET (CLI) or --socket (daemon)
 * says otherwise; the directory also holds the daemons' logs. */
#define KB_RUN_DIR		"/run/kbridge"
#define KB_SOCKET_DEFAULT	KB_RUN_DIR "/kbridged.sock"
#define KB_SOCKET_ENV		"KBRIDGE_SOCKET"
/* The log of a daemon started through sudo, in KB_RUN_DIR (the caller's uid). */
#define KB_SUDO_LOG_FMT		"kbridged-%lu.log"

/* Endpoints (version 1: a change that breaks a caller gets /v2/). */
#define KB_API_STATUS		"/v1/status"		/* GET */
#define KB_API_CONNECT		"/v1/connect"		/* POST */
#define KB_API_QUIT		"/v1/quit"		/* POST */
#define KB_API_INTERCEPT	"/v1/intercept"		/* POST */
#define KB_API_LEAVE		"/v1/leave"		/* POST */
#define KB_API_LIST		"/v1/list"		/* GET ?namespace= */
#define KB_API_PREVIEW_CREATE	"/v1/preview/create"	/* POST */
#define KB_API_PREVIEW_LIST	"/v1/preview/list"	/* GET ?namespace= */
#define KB_API_PREVIEW_REMOVE	"/v1/preview/remove"	/* POST */
#define KB_API_LOGLEVEL		"/v1/loglevel"		/* POST */
#define KB_API_MANAGER_LOG	"/v1/manager-log"	/* GET */
#define KB_API_SIDECAR_LOG	"/v1/sidecar-log"	/* POST */

/* Limits of request fields (the manager's own are the same or larger). */
#define KB_API_BODY_MAX		(256 * 1024)
#define KB_API_HEADERS_MAX	KB_MAX_MATCH_HEADERS	/* match headers of one intercept */
#define KB_API_HDR_NAME_MAX	256
#define KB_API_HDR_VALUE_MAX	1024
#define KB_API_PATH_PREFIX_MAX	1024
#define KB_API_HOST_MAX		255
#define KB_API_TTL_MAX		((long)KB_PREVIEW_TTL_MAX)	/* a preview's lifetime, seconds */
#define KB_API_TOKEN_MAX	64			/* a preview's token */
#define KB_API_KUBE_NAME_MAX	253			/* a kubeconfig context or cluster name */
#define KB_API_KUBE_SERVER_MAX	2048			/* the API server's URL */

/* Is body (a parsed request object, may be NULL for "no body") acceptable
 * for the POST endpoint path? Every field is checked against API.md: types,
 * bounds, names, and no field the endpoint does not know. 0, or -1 with a
 * one-line err (the 400 answer). */
int kb_api_check(const char *path, const cJSON *body, char *err, size_t errlen);
/* The raw body before parsing: -1 with err if it holds a NUL byte or a
 * \u0000 escape, which a C string would silently cut short. */
int kb_api_check_raw(const char *txt, size_t len, char *err, size_t errlen);
/* Field checks the CLI and the daemon share: 1 if acceptable. */
int kb_api_header_name(const char *s);
int kb_api_header_value(const char *s);
int kb_api_path_prefix(const char *s);
int kb_api_host(const char *s);
int kb_api_token(const char *s);
/* Where the daemon delivers an intercept's traffic: "localhost" (127.0.0.1,
 * then ::1) or an IPv4 or IPv6 address, not unspecified, multicast or
 * broadcast. With sa non-NULL also the address (AF_UNSPEC for localhost)
 * and port there. */
int kb_api_address(const char *s, uint16_t port, struct sockaddr_storage *sa,
    socklen_t *salen);

#endif
