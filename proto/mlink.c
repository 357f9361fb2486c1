/* Dialing the manager for a daemon or sidecar: TCP, TLS, session, hello,
 * and a backoff from 100 ms to 2 s between failed tries. */
#include "mlink.h"

#include <stdio.h>

#include <cjson/cJSON.h>

#include "conn.h"
#include "session.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

/* One line for a failed TCP or TLS connection to the manager. */
static void
describe(struct kb_mlink *l, struct kb_conn *c, int what, char *buf, size_t len)
{
	char why[200];

	if (what & KB_CONN_TIMEOUT) {
		snprintf(buf, len, "cannot reach manager %s: timed out after %u s", l->manager,
		    (l->timeout_ms + 999) / 1000);
		return;
	}
	kb_conn_error(c, why, sizeof(why));
	switch (kb_conn_failure(c)) {
	case KB_CONN_FAIL_PEER_CERT:
		snprintf(buf, len, "the manager's certificate is not trusted by this profile (%s)", why);
		break;
	case KB_CONN_FAIL_PEER_REFUSED:
		snprintf(buf, len, "the manager refused this profile's certificate (%s)", why);
		break;
	case KB_CONN_FAIL_HANDSHAKE_EOF:
		snprintf(buf, len, "the manager closed the connection during the TLS handshake");
		break;
	case KB_CONN_FAIL_TLS:
		snprintf(buf, len, "TLS with the manager failed: %s", why);
		break;
	default:
		snprintf(buf, len, "cannot reach manager: %s", why);
		break;
	}
}

static void
connected(struct kb_conn *c, int what, void *arg)
{
	struct kb_mlink *l = arg;
	struct kb_session *s;
	char err[300];

	l->connecting = NULL;
	if (!(what & KB_CONN_CONNECTED)) {
		describe(l, c, what, err, sizeof(err));
		kb_conn_free(c);
		l->failed(l->arg, err);
		return;
	}
	kb_conn_set_timeout(c, 0);
	if ((s = kb_session_new(c, 1, l->session, l->arg)) == NULL) {
		l->failed(l->arg, "out of memory");
		return;
	}
	l->up(l->arg, s);
	kb_session_send_hello(s, l->hello(l->arg));
}

static const struct kb_conn_cbs mlink_cbs = { .on_event = connected };

void
kb_mlink_dial(struct kb_mlink *l)
{
	char err[300], msg[330];

	l->connecting = kb_conn_dial(l->base, l->manager, l->ctx, l->mark, l->timeout_ms, err,
	    sizeof(err));
	if (!l->connecting) {
		/* conn.c does not know whom it dials: say it here. */
		snprintf(msg, sizeof(msg), "cannot reach manager: %s", err);
		l->failed(l->arg, msg);
		return;
	}
	kb_conn_setcb(l->connecting, &mlink_cbs, l);
}

void
kb_mlink_cancel(struct kb_mlink *l)
{
	if (l->connecting) {
		kb_conn_free(l->connecting);
		l->connecting = NULL;
	}
}

unsigned
kb_mlink_backoff(struct kb_mlink *l)
{
	unsigned ms = l->backoff_ms ? l->backoff_ms : BACKOFF_MIN_MS;

	l->backoff_ms = ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
	return ms;
}

void
kb_mlink_backoff_reset(struct kb_mlink *l)
{
	l->backoff_ms = 0;
}
