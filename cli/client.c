/* kb_api: one HTTP request to kbridged over its Unix socket with libcurl,
 * bounded in time and size, and abandoned early on Ctrl-C. */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "util.h"

/* Bounds what a confused peer can make us buffer. */
#define RESP_MAX	(4 * 1024 * 1024)

struct buf {
	char *data;
	size_t len, cap;
	int overflow;
};

static volatile sig_atomic_t *client_stop;

const char *
kb_socket_path(void)
{
	const char *s = getenv(KB_SOCKET_ENV);

	return s && *s ? s : KB_SOCKET_DEFAULT;
}

int
kb_client_init(volatile sig_atomic_t *stop)
{
	client_stop = stop;
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void
kb_client_cleanup(void)
{
	curl_global_cleanup();
}

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t len = size * n;

	if (b->len + len > RESP_MAX) {
		b->overflow = 1;
		return 0;
	}
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *nd;

		while (cap < b->len + len + 1)
			cap *= 2;
		if ((nd = realloc(b->data, cap)) == NULL)
			return 0;
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return len;
}

/* Lets Ctrl-C end a long connect so the caller can still clean up. */
static int
on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
    curl_off_t un)
{
	(void)arg; (void)dt; (void)dn; (void)ut; (void)un;
	return client_stop && *client_stop;
}

static int
transport_error(CURL *c, CURLcode cc, long timeout_ms, const char *sock,
    char *err, size_t errlen)
{
	long oserr = 0;

	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &oserr);
		if (oserr == ENOENT || oserr == ECONNREFUSED || oserr == ENOTDIR)
			return KB_API_DOWN;
		if (oserr == EACCES || oserr == EPERM)
			snprintf(err, errlen, "permission denied on %s "
			    "(kbridged belongs to another user)", sock);
		else if (oserr)
			snprintf(err, errlen, "cannot reach kbridged at %s: %s",
			    sock, strerror((int)oserr));
		else
			snprintf(err, errlen, "cannot reach kbridged at %s",
			    sock);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(err, errlen, "kbridged did not answer within %ld s",
		    (timeout_ms + 999) / 1000);
		break;
	case CURLE_ABORTED_BY_CALLBACK:
		snprintf(err, errlen, "interrupted");
		break;
	case CURLE_GOT_NOTHING:
		snprintf(err, errlen, "kbridged closed the connection "
		    "without an answer");
		break;
	default:
		snprintf(err, errlen, "talking to kbridged: %s",
		    curl_easy_strerror(cc));
		break;
	}
	return KB_API_ERROR;
}

int
kb_api(const char *method, const char *path, const cJSON *body,
    long timeout_ms, long *status, cJSON **resp, char *err, size_t errlen)
{
	const char *sock = kb_socket_path();
	struct curl_slist *hdr = NULL;
	struct buf b = { 0 };
	char url[512], *req = NULL;
	CURL *c;
	CURLcode cc;
	int rc = KB_API_ERROR;

	*status = 0;
	*resp = NULL;
	if (strlen(sock) >= 108) {
		snprintf(err, errlen, "socket path too long: %s", sock);
		return KB_API_ERROR;
	}
	if ((c = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return KB_API_ERROR;
	}
	snprintf(url, sizeof(url), "http://kbridged%s", path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	/* http_proxy in the environment must not divert a local socket. */
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
	    timeout_ms < 2000 ? timeout_ms : 2000L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	hdr = curl_slist_append(hdr, "Accept: application/json");
	/* Profiles exceed 1 KiB; without this curl waits for 100-continue. */
	hdr = curl_slist_append(hdr, "Expect:");
	if (body || strcmp(method, "POST") == 0) {
		if ((req = body ? cJSON_PrintUnformatted(body) : strdup("{}"))
		    == NULL) {
			snprintf(err, errlen, "out of memory");
			goto done;
		}
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(req));
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);

	if ((cc = curl_easy_perform(c)) != CURLE_OK) {
		if (b.overflow)
			snprintf(err, errlen, "answer from kbridged too large");
		else
			rc = transport_error(c, cc, timeout_ms, sock, err,
			    errlen);
		goto done;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (b.len > 0 && (*resp = cJSON_ParseWithLength(b.data, b.len))
	    == NULL) {
		snprintf(err, errlen, "kbridged answered HTTP %ld with "
		    "invalid JSON", *status);
		goto done;
	}
	rc = 0;
done:
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	free(req);
	free(b.data);
	return rc;
}

const char *
kb_api_errmsg(long status, const cJSON *resp, char *buf, size_t len)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(resp, "error");
	char *p;

	if (cJSON_IsString(e) && e->valuestring[0])
		snprintf(buf, len, "%s", e->valuestring);
	else
		snprintf(buf, len, "kbridged answered HTTP %ld", status);
	/* It may quote other users' input: keep it one harmless line. */
	for (p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return buf;
}

int
kb_api_wait(int up, long timeout_ms)
{
	uint64_t end = kb_now_ms() + (uint64_t)timeout_ms;
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	char err[256];
	cJSON *resp;
	long status;
	int rc;

	for (;;) {
		rc = kb_api("GET", KB_API_STATUS, NULL, 1000, &status, &resp,
		    err, sizeof(err));
		cJSON_Delete(resp);
		if (up ? rc == 0 : rc == KB_API_DOWN)
			return 0;
		if (kb_now_ms() >= end || (client_stop && *client_stop))
			return -1;
		nanosleep(&ts, NULL);
	}
}
