/* A peer of the manager: a workstation daemon or a sidecar. */
#ifndef KB_AGENT_CLIENT_H
#define KB_AGENT_CLIENT_H

#include <stdint.h>

#include "listener.h"

struct manager;
struct kb_conn;
struct kb_session;

enum client_kind { CLIENT_UNKNOWN, CLIENT_DAEMON, CLIENT_SIDECAR };

/* Lookups and intercept bridges in flight hold a reference, so a session
 * that ends meanwhile is not used after free (sess is NULL then). */
struct client {
	struct manager *m;
	struct client *next, **prevp;
	struct kb_conn *handshake; /* until the TLS handshake is done */
	struct kb_session *sess;
	struct kb_pool_entry pre; /* in the manager's pool until its hello */
	int authed;	/* holds one of the manager's session slots */
	enum client_kind kind;
	char peer[64];
	char name[64];  /* certificate CN: the user, or the sidecar's identity */
	char role[32];  /* certificate O */
	char workload[130]; /* a sidecar certificate's OU: the workload "NAME.NS" it is bound to */
	char instance[40]; /* a daemon process's id: a reconnect, or a new daemon? */
	int replaceable;   /* its hello says it understands "replaced" */
	int leaving;       /* it sent goaway: its session no longer holds its identity */
	int cluster_updates; /* ... and "cluster" */
	int logs;          /* a sidecar whose hello says it answers "logs" */
	uint64_t logs_ms;  /* a daemon's last "logs" of the manager's ring */
	unsigned log_waits; /* its "logs" waiting for a sidecar */
	int debug;         /* its developer asked for its debug lines (kbridge loglevel debug) */
	uint64_t debug_s;  /* ... the second of the last such line, and how many in it */
	unsigned debug_n;
	int refs;
	/* manager.c's per-session limits: connects and lookups in flight, and
	 * what was refused (logged when first refused, counted at the end) */
	unsigned dials, lookups;
	unsigned long over_dials, over_lookups, denied;
};

/* Drop a reference; the last one frees the client. */
void client_unref(struct client *c);
/* The developer a peer is (its certificate's user), the tag of the log
 * lines about its session; NULL for a sidecar or the manager's own. */
const char *client_user(const struct client *c);
/* May a debug line about c's session be logged? At the manager's level
 * debug; or when its developer asked, a bounded number a second. */
int client_debug(struct client *c);

#endif
