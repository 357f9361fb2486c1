/* The link of a workstation daemon or a sidecar to the manager: dial it
 * (TCP + TLS), start the session and send our hello on success, word the
 * failure for the user otherwise, and pace the retries (exponential backoff
 * from 100 ms to 2 s). The caller owns the session once it exists and
 * decides whether and when to try again. */
#ifndef KB_MLINK_H
#define KB_MLINK_H

#include <openssl/ssl.h>

struct cJSON;
struct event_base;
struct kb_conn;
struct kb_session;
struct kb_session_cbs;

struct kb_mlink {
	/* Set by the caller. */
	struct event_base *base;
	const char *manager;            /* HOST:PORT */
	SSL_CTX *ctx;
	int mark;                       /* SO_MARK of our socket, or 0 */
	unsigned timeout_ms;            /* TCP and TLS together */
	const struct kb_session_cbs *session;
	/* Connected: our hello (ownership passes). */
	struct cJSON *(*hello)(void *arg);
	/* The session exists and our hello is on its way. */
	void (*up)(void *arg, struct kb_session *s);
	/* The attempt failed: one line that says why. */
	void (*failed)(void *arg, const char *why);
	void *arg;
	/* Ours. */
	struct kb_conn *connecting;
	unsigned backoff_ms;
};

/* Start an attempt (up or failed is called later, or failed at once). */
void kb_mlink_dial(struct kb_mlink *l);
/* Abandon the attempt in progress, if any (no callback). */
void kb_mlink_cancel(struct kb_mlink *l);
/* The delay before the next attempt: 100 ms, doubling up to 2 s. */
unsigned kb_mlink_backoff(struct kb_mlink *l);
/* The session came up: the next failure starts the backoff over. */
void kb_mlink_backoff_reset(struct kb_mlink *l);

#endif
