/* Preview URLs: the CLI's preview create, list and remove go to the
 * manager, which serves the URLs. Tokens pass through; none is logged. */
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/http.h>

#include "api.h"
#include "kbridged.h"

void
preview_http(struct evhttp_request *req, void *arg)
{
	struct kbd *d = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	cJSON *body = NULL, *msg = NULL;
	int list;

	if (!path)
		path = "";
	list = !strcmp(path, KB_API_PREVIEW_LIST);
	/* Every field checked (proto/api.c) before any reaches the manager. */
	if (control_request(req, !list, &body) < 0)
		return;
	if (!control_relayable(d, req))
		goto out;
	if ((msg = kb_msg_new(list ? KB_MSG_PREVIEW_LIST : !strcmp(path, KB_API_PREVIEW_REMOVE) ?
	    KB_MSG_PREVIEW_REMOVE : KB_MSG_PREVIEW_CREATE)) == NULL) {
		control_error(req, 500, "out of memory");
		goto out;
	}
	if (list) {
		control_query(req, msg, "namespace");
		control_relay(d, req, msg, NULL, NULL);
		return;
	}
	if (!strcmp(path, KB_API_PREVIEW_REMOVE)) {
		if (control_string(req, msg, body, "token", NULL, 1) < 0)
			goto out;
	} else {
		if (control_string(req, msg, body, "workload", NULL, 1) < 0 ||
		    control_string(req, msg, body, "namespace", tunnel_namespace(d->tunnel), 1) < 0 ||
		    control_number(req, msg, body, "ttl", 1, KB_API_TTL_MAX, 0) < 0 ||
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
