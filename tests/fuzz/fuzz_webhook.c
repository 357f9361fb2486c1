/* libFuzzer target for agent/webhook.c: any bytes as the AdmissionReview
 * the API server (or anything in the cluster that connects) posts to
 * /mutate-pods. The answer, when there is one, must be JSON with the
 * request's uid and allowed: true; any crash, leak or sanitizer report is a
 * bug.
 *
 *   build/fuzz/fuzz_webhook -max_total_time=30 build/fuzz/found-webhook \
 *     tests/fuzz/corpus-webhook
 */
#include "../../agent/webhook.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct webhook_cfg cfg = { .image = "img:1",
		.manager = "kbridge-manager.kbridge.svc:8443" };
	struct webhook_result res;
	char err[200], *out;
	cJSON *ans;

	out = webhook_review(&cfg, (const char *)data, size, &res, err, sizeof(err));
	if (out == NULL)
		return 0;
	ans = cJSON_Parse(out);
	if (ans == NULL || !cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(ans, "response"),
	    "allowed")))
		__builtin_trap();
	cJSON_Delete(ans);
	free(out);
	return 0;
}
