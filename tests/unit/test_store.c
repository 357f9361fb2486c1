/* The in-cluster manager's state (agent/store.c): the document's codec
 * (round trip; corrupt, foreign and oversize input refused with an error),
 * the previews and intercepts through it and back into their registries
 * (agent/preview.c, agent/intercepts.c: invalid entries dropped), the
 * resume rule (only the owner identity gets its intercept id back), and a
 * change that would not fit the Secret refused with 507, nothing kept.
 *
 * The API is not here (tests/e2e/k8srestart.sh writes and reads the real
 * Secret across a replaced manager pod); the sessions are NULL (answers are
 * the functions' return values), the cluster DNS is a double. */
#include "../../agent/applat.c"
#include "../../agent/batch.c"
#include "../../agent/httpproxy.c"
#include "../../agent/identity.c"
#include "../../agent/incluster.c"
#include "../../agent/intercepts.c"
#include "../../agent/podenv.c"
#include "../../agent/podenvapi.c"
/* Both have a static do_list. */
#define do_list preview_do_list
#include "../../agent/h1h2.c"
#include "../../agent/preview.c"
#undef do_list
#include "../../agent/store.c"

#include "ok.h"

void
resolver_lookup(struct kb_resolver *r, const char *name, int qtype, resolver_cb cb, void *arg)
{
	(void)r;
	(void)name;
	(void)qtype;
	cb(arg, 3, NULL, 0, 0);
}

void
client_unref(struct client *c)
{
	c->refs--;
}

#define ALICE_ID "0123456789abcdef01234567"
#define BOB_ID   "89abcdef0123456789abcdef"
#define CAROL_ID "fedcba9876543210fedcba98"
#define TOKEN    "abcdefghijklmnopqrstuvwxyz"

static struct icpt_reg *reg;

static cJSON *
json(const char *s)
{
	cJSON *j = cJSON_Parse(s);

	if (!j) {
		fprintf(stderr, "bad test JSON: %s\n", s);
		exit(1);
	}
	return j;
}

static const char *intercepts_ok =
    "[{\"id\":\"" ALICE_ID "\",\"owner\":\"alice\",\"instance\":\"i-alice\",\"workload\":\"web\","
    "\"namespace\":\"default\",\"protocol\":\"http\",\"port\":3000,\"match\":{\"global\":false,"
    "\"headers\":[{\"name\":\"x-dev\",\"value\":\"alice\"}],\"path_prefix\":null}},"
    "{\"id\":\"" BOB_ID "\",\"owner\":\"bob\",\"instance\":\"i-bob\",\"workload\":\"web\","
    "\"namespace\":\"default\",\"protocol\":\"http\",\"port\":4000,\"match\":{\"global\":false,"
    "\"headers\":[{\"name\":\"x-dev\",\"value\":\"bob\"}],\"path_prefix\":\"/api\"}},"
    "{\"id\":\"" CAROL_ID "\",\"owner\":\"carol\",\"instance\":\"i-carol\",\"workload\":\"db\","
    "\"namespace\":\"shop\",\"protocol\":\"tcp\",\"port\":5432,\"match\":{\"global\":true,"
    "\"headers\":[],\"path_prefix\":null}}]";

/* Each invalid for another reason: dropped, the rest kept. */
static const char *intercepts_bad =
    "[{\"id\":\"" ALICE_ID "\",\"owner\":\"mallory\",\"workload\":\"api\",\"namespace\":\"default\","
    "\"protocol\":\"http\",\"port\":1,\"match\":{\"global\":true,\"headers\":[]}},"
    "{\"id\":\"XYZ\",\"owner\":\"dave\",\"workload\":\"api\",\"namespace\":\"default\","
    "\"protocol\":\"http\",\"port\":1,\"match\":{\"global\":true,\"headers\":[]}},"
    "{\"id\":\"aaaaaaaaaaaaaaaaaaaaaaaa\",\"owner\":\"dave\",\"workload\":\"web\","
    "\"namespace\":\"default\",\"protocol\":\"http\",\"port\":1,\"match\":{\"global\":true,"
    "\"headers\":[]}},"
    "{\"id\":\"bbbbbbbbbbbbbbbbbbbbbbbb\",\"owner\":\"erin\",\"workload\":\"Bad_Name\","
    "\"namespace\":\"default\",\"protocol\":\"http\",\"port\":1,\"match\":{\"global\":true}},"
    "{\"id\":\"cccccccccccccccccccccccc\",\"owner\":\"erin\",\"workload\":\"api\","
    "\"namespace\":\"default\",\"protocol\":\"http\",\"port\":70000,\"match\":{\"global\":true}},"
    "{\"id\":\"dddddddddddddddddddddddd\",\"owner\":\"erin\",\"workload\":\"api\","
    "\"namespace\":\"default\",\"protocol\":\"http\",\"port\":80,\"match\":{\"headers\":"
    "[{\"name\":\"bad header\",\"value\":\"v\"}]}},"
    "{\"id\":\"eeeeeeeeeeeeeeeeeeeeeeee\",\"owner\":\"erin\",\"workload\":\"db2\","
    "\"namespace\":\"default\",\"protocol\":\"tcp\",\"port\":80,\"match\":{\"headers\":"
    "[{\"name\":\"x\",\"value\":\"v\"}]}},"
    "7, null, {}]";

static cJSON *
previews_ok(time_t now)
{
	char buf[1000];

	snprintf(buf, sizeof(buf), "[{\"token\":\"" TOKEN "\",\"workload\":\"web\","
	    "\"namespace\":\"default\",\"owner\":\"alice\",\"intercept_id\":\"" ALICE_ID "\","
	    "\"host\":\"shop.example.com\",\"address\":\"10.96.0.20\",\"port\":80,"
	    "\"created\":%lld,\"expires\":%lld}]", (long long)now - 10, (long long)now + 3600);
	return json(buf);
}

static cJSON *
previews_bad(time_t now)
{
	char buf[2000];

	snprintf(buf, sizeof(buf), "[{\"token\":\"bcdefghijklmnopqrstuvwxyza\",\"workload\":\"web\","
	    "\"namespace\":\"default\",\"owner\":\"alice\",\"intercept_id\":\"" ALICE_ID "\","
	    "\"host\":\"\",\"address\":\"10.96.0.20\",\"port\":80,\"created\":1,\"expires\":%lld},"
	    "{\"token\":\"SHORT\",\"workload\":\"web\",\"namespace\":\"default\",\"owner\":\"bob\","
	    "\"intercept_id\":\"" BOB_ID "\",\"host\":\"\",\"address\":\"10.96.0.20\",\"port\":80,"
	    "\"created\":1,\"expires\":0},"
	    "{\"token\":\"" TOKEN "\",\"workload\":\"web\",\"namespace\":\"default\","
	    "\"owner\":\"bob\",\"intercept_id\":\"" BOB_ID "\",\"host\":\"\","
	    "\"address\":\"10.96.0.20\",\"port\":80,\"created\":1,\"expires\":0},"
	    "{\"token\":\"cdefghijklmnopqrstuvwxyzab\",\"workload\":\"web\",\"namespace\":\"default\","
	    "\"owner\":\"bob\",\"intercept_id\":\"" BOB_ID "\",\"host\":\"\","
	    "\"address\":\"not-an-address\",\"port\":80,\"created\":1,\"expires\":0}, \"x\"]",
	    (long long)now - 5);
	return json(buf);
}

static void
test_codec(void)
{
	cJSON *p = json("[{\"token\":\"" TOKEN "\"}]"), *i = json("[{\"id\":\"x\"}]"), *d;
	char err[300], *t, *half;
	size_t n;
	static const char *bad[] = {
		"", "{", "null", "[]", "{\"version\":2,\"previews\":[],\"intercepts\":[]}",
		"{\"version\":\"1\",\"previews\":[],\"intercepts\":[]}",
		"{\"version\":1,\"previews\":{},\"intercepts\":[]}",
		"{\"version\":1,\"previews\":[]}", "\x01\x02\xff\xfe",
	};

	t = store_encode(p, i, STORE_MAX, err, sizeof(err));
	ok(t != NULL);
	d = store_decode(t, strlen(t), STORE_MAX, err, sizeof(err));
	ok(d != NULL && cJSON_Compare(cJSON_GetObjectItem(d, "previews"), p, 1) &&
	    cJSON_Compare(cJSON_GetObjectItem(d, "intercepts"), i, 1));
	cJSON_Delete(d);
	/* Truncated anywhere: refused, no crash. */
	for (n = 0; n < strlen(t); n++) {
		half = strndup(t, n);
		d = store_decode(half, n, STORE_MAX, err, sizeof(err));
		if (d)
			fprintf(stderr, "accepted %zu bytes of %zu\n", n, strlen(t));
		ok(d == NULL && err[0]);
		free(half);
	}
	for (n = 0; n < sizeof(bad) / sizeof(bad[0]); n++) {
		err[0] = '\0';
		ok(store_decode(bad[n], strlen(bad[n]), STORE_MAX, err, sizeof(err)) == NULL &&
		    err[0]);
	}
	/* Oversize: refused both ways, with a clear error. */
	ok(store_decode(t, strlen(t), strlen(t) - 1, err, sizeof(err)) == NULL &&
	    strstr(err, "more than"));
	ok(store_encode(p, i, strlen(t) - 1, err, sizeof(err)) == NULL &&
	    strstr(err, "more than its Secret holds"));
	free(t);
	cJSON_Delete(p);
	cJSON_Delete(i);
}

static cJSON *
request(const char *resume, const char *wl, const char *value)
{
	char buf[600];

	snprintf(buf, sizeof(buf), "{\"type\":\"intercept\",\"id\":1,\"workload\":\"%s\","
	    "\"namespace\":\"default\",\"port\":3000,\"headers\":[{\"name\":\"x-dev\","
	    "\"value\":\"%s\"}]%s%s%s}", wl, value, resume ? ",\"resume\":\"" : "",
	    resume ? resume : "", resume ? "\"" : "");
	return json(buf);
}

static int
status_of(const cJSON *r)
{
	return cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")) ? 200 :
	    (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "status"));
}

/* Only the owner identity resumes its id; nobody takes another's. */
static void
test_resume(void)
{
	struct client alice = { .name = "alice", .instance = "i-alice-2" };
	struct client bob = { .name = "bob", .instance = "i-bob-2" };
	cJSON *q, *r, *l = json(intercepts_ok);
	const char *id;

	ok(icpt_restore(reg, l) == 3);
	/* bob asks for alice's id, on her workload, with her match. */
	q = request(ALICE_ID, "web", "alice");
	r = icpt_request(reg, &bob, KB_MSG_INTERCEPT, q);
	ok(status_of(r) == 403 && strstr(cJSON_GetStringValue(cJSON_GetObjectItem(r, "error")),
	    "not yours to resume"));
	cJSON_Delete(r);
	ok(icpt_state(reg, ALICE_ID, "alice") == 0 && icpt_state(reg, ALICE_ID, "bob") == -1);
	/* alice gets hers back, on her workload only. */
	cJSON_Delete(q);
	q = request(ALICE_ID, "api", "alice");
	r = icpt_request(reg, &alice, KB_MSG_INTERCEPT, q);
	ok(status_of(r) == 403);
	cJSON_Delete(r);
	cJSON_Delete(q);
	q = request(ALICE_ID, "web", "alice");
	r = icpt_request(reg, &alice, KB_MSG_INTERCEPT, q);
	id = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "intercept"), "id"));
	ok(status_of(r) == 200 && id && !strcmp(id, ALICE_ID));
	ok(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "intercept"), "active")));
	cJSON_Delete(r);
	/* Once more from a second workstation of alice's: hers is taken. */
	{
		struct client alice2 = { .name = "alice", .instance = "i-alice-3" };

		r = icpt_request(reg, &alice2, KB_MSG_INTERCEPT, q);
		ok(status_of(r) == 403);
		cJSON_Delete(r);
	}
	cJSON_Delete(q);
	/* Kept nowhere but in a preview (a manager without the store):
	 * the preview's owner only. */
	icpt_clear(reg);
	{
		cJSON *p = previews_ok(time(NULL));

		ok(preview_restore(p) == 1);
		cJSON_Delete(p);
	}
	q = request(ALICE_ID, "web", "bob");
	r = icpt_request(reg, &bob, KB_MSG_INTERCEPT, q);
	ok(status_of(r) == 403);
	cJSON_Delete(r);
	/* alice's goes on (then: no sidecar in this test, 404). */
	r = icpt_request(reg, &alice, KB_MSG_INTERCEPT, q);
	ok(status_of(r) == 404);
	cJSON_Delete(r);
	cJSON_Delete(q);
	preview_shutdown();
	cJSON_Delete(l);
}

/* Through the codec and back into the registries: the same state. */
static void
test_round_trip(void)
{
	time_t now = time(NULL);
	cJSON *li = json(intercepts_ok), *lp = previews_ok(now), *bad, *d1, *d2, *doc;
	char err[300], *t;

	ok(icpt_restore(reg, li) == 3 && preview_restore(lp) == 1);
	bad = json(intercepts_bad);
	ok(icpt_restore(reg, bad) == 0);
	cJSON_Delete(bad);
	bad = previews_bad(now);
	ok(preview_restore(bad) == 0);
	cJSON_Delete(bad);
	d1 = icpt_dump(reg);
	d2 = preview_dump();
	ok(cJSON_Compare(d1, li, 1));
	ok(cJSON_Compare(d2, lp, 1));
	t = store_encode(d2, d1, STORE_MAX, err, sizeof(err));
	ok(t != NULL);
	cJSON_Delete(d1);
	cJSON_Delete(d2);
	/* A restart: nothing in memory, then the document. */
	icpt_clear(reg);
	preview_shutdown();
	d1 = icpt_dump(reg);
	ok(cJSON_GetArraySize(d1) == 0);
	cJSON_Delete(d1);
	doc = store_decode(t, strlen(t), STORE_MAX, err, sizeof(err));
	ok(doc != NULL);
	ok(icpt_restore(reg, cJSON_GetObjectItem(doc, "intercepts")) == 3);
	ok(preview_restore(cJSON_GetObjectItem(doc, "previews")) == 1);
	d1 = icpt_dump(reg);
	d2 = preview_dump();
	ok(cJSON_Compare(d1, li, 1) && cJSON_Compare(d2, lp, 1));
	/* Restored intercepts wait for their workstations. */
	ok(icpt_state(reg, ALICE_ID, "alice") == 0 && icpt_state(reg, CAROL_ID, "carol") == 0);
	cJSON_Delete(d1);
	cJSON_Delete(d2);
	cJSON_Delete(doc);
	free(t);
	icpt_clear(reg);
	preview_shutdown();
	cJSON_Delete(li);
	cJSON_Delete(lp);
}

/* A change that would not fit the Secret: refused, nothing kept. */
static void
test_full(struct event_base *base)
{
	struct client sc = { .name = "sidecar-web", .workload = "web.default",
	    .kind = CLIENT_SIDECAR };
	struct client zed = { .name = "zed", .instance = "i-zed" };
	cJSON *l = cJSON_CreateArray(), *o, *hs, *h, *r, *q, *hello, *d;
	char id[ID_LEN + 1], val[1100], reason[200], *kept;
	int k, j;
	size_t before;

	/* 63 owners with 16 headers of 1000 bytes each: just under 1 MiB. */
	for (k = 0; k < 63; k++) {
		o = cJSON_CreateObject();
		snprintf(id, sizeof(id), "%024x", k + 1);
		cJSON_AddStringToObject(o, "id", id);
		snprintf(reason, sizeof(reason), "user%d", k);
		cJSON_AddStringToObject(o, "owner", reason);
		cJSON_AddStringToObject(o, "workload", "web");
		cJSON_AddStringToObject(o, "namespace", "default");
		cJSON_AddStringToObject(o, "protocol", "http");
		cJSON_AddNumberToObject(o, "port", 80);
		hs = cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "match"), "headers");
		for (j = 0; j < 16; j++) {
			h = cJSON_CreateObject();
			snprintf(reason, sizeof(reason), "x-h%d", j);
			cJSON_AddStringToObject(h, "name", reason);
			snprintf(val, sizeof(val), "%d-%0990d", k, j);
			cJSON_AddStringToObject(h, "value", val);
			cJSON_AddItemToArray(hs, h);
		}
		cJSON_AddItemToArray(l, o);
	}
	ok(icpt_restore(reg, l) == 63);
	/* The store as store_open leaves it (no API: nothing is sent while the
	 * loop does not run). */
	sto.on = 1;
	sto.base = base;
	sto.icpts = reg;
	sto.timer = evtimer_new(base, on_timer, NULL);
	d = icpt_dump(reg);
	before = (size_t)cJSON_GetArraySize(d);
	cJSON_Delete(d);
	hello = json("{\"workload\":\"web\",\"namespace\":\"default\",\"protocol\":\"http\"}");
	ok(icpt_sidecar_hello(reg, &sc, hello, reason, sizeof(reason)) == 0);
	cJSON_Delete(hello);
	/* It fits now. */
	ok(store_changed(reason, sizeof(reason)) == 0 && sto.pending != NULL);
	kept = sto.pending;
	ok(strlen(kept) > STORE_MAX - 16000);
	/* zed's, as large as theirs, would not. */
	q = json("{\"type\":\"intercept\",\"id\":1,\"workload\":\"web\",\"namespace\":\"default\","
	    "\"port\":80}");
	hs = cJSON_AddArrayToObject(q, "headers");
	for (j = 0; j < 16; j++) {
		h = cJSON_CreateObject();
		snprintf(reason, sizeof(reason), "x-h%d", j);
		cJSON_AddStringToObject(h, "name", reason);
		snprintf(val, sizeof(val), "zed-%0990d", j);
		cJSON_AddStringToObject(h, "value", val);
		cJSON_AddItemToArray(hs, h);
	}
	r = icpt_request(reg, &zed, KB_MSG_INTERCEPT, q);
	ok(status_of(r) == 507 && strstr(cJSON_GetStringValue(cJSON_GetObjectItem(r, "error")),
	    "more than its Secret holds"));
	cJSON_Delete(r);
	cJSON_Delete(q);
	d = icpt_dump(reg);
	ok((size_t)cJSON_GetArraySize(d) == before);
	cJSON_Delete(d);
	ok(sto.pending == kept);
	/* Ending one always fits (and is what gets written). */
	icpt_clear(reg);
	ok(store_changed(reason, sizeof(reason)) == 0 && sto.pending != kept &&
	    strstr(sto.pending, "\"intercepts\":[]"));
	store_close();
	ok(sto.pending == NULL && sto.timer == NULL);
	cJSON_Delete(l);
}

int
main(void)
{
	struct event_base *base = event_base_new();

	log_init("test_store", KB_LOG_WARN);
	if ((reg = icpt_new(base, 10000)) == NULL) {
		fprintf(stderr, "test_store: out of memory\n");
		return 1;
	}
	test_codec();
	test_round_trip();
	test_resume();
	test_full(base);
	icpt_free(reg);
	event_base_free(base);
	return ok_done();
}
