/* Preview URLs: the CLI's preview create, list and remove go to the
 * manager, which serves the URLs. Tokens pass through; none is logged. */
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/http.h>

#include "kbridged.h"

#define TTL_MAX		KB_PREVIEW_TTL_MAX
#define TOKEN_MAX	64

static int
valid_token(const char *t)
{
	size_t n = strlen(t);

	return n > 0 && n <= TOKEN_MAX && strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789") == n;
}

void
preview_http(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), *token;
	cJSON *body = NULL, *msg = NULL;
	int list;

	if (!path)
		path = "";
	list = !strcmp(path, "/v1/preview/list");
	if (!control_relayable(d, req, !list))
		return;
	if ((msg = kb_msg_new(list ? KB_MSG_PREVIEW_LIST : !strcmp(path, "/v1/preview/remove") ?
	    KB_MSG_PREVIEW_REMOVE : KB_MSG_PREVIEW_CREATE)) == NULL) {
		control_error(req, 500, "out of memory");
		return;
	}
	if (list) {
		control_query(req, msg, "namespace");
		control_relay(d, req, msg, NULL, NULL);
		return;
	}
	if ((body = control_body(req)) == NULL) {
		control_error(req, 400, "request body is not a JSON object");
		goto out;
	}
	if (!strcmp(path, "/v1/preview/remove")) {
		if (control_string(req, msg, body, "token", NULL, 1) < 0)
			goto out;
		token = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "token"));
		if (!token || !valid_token(token)) {
			control_error(req, 400,
			    "token must be at most 64 lower-case letters and digits");
			goto out;
		}
	} else {
		if (control_string(req, msg, body, "workload", NULL, 1) < 0 ||
		    control_string(req, msg, body, "namespace", d->ns, 1) < 0 ||
		    control_number(req, msg, body, "ttl", 1, TTL_MAX, 0) < 0 ||
		    control_number(req, msg, body, "service_port", 1, 65535, 0) < 0 ||
		    control_string(req, msg, body, "host", NULL, 0) < 0)
			goto out;
	}
	control_relay(d, req, msg, NULL, NULL);
	msg = NULL;
out:
	cJSON_Delete(msg);
	cJSON_Delete(body);
}
