/* The manager's route indexes at a team's scale (agent/intercepts.c,
 * agent/preview.c over proto/htab.c): 100 workloads with sidecars, 5,000
 * intercepts of 50 owners, 1,024 previews. Each intercept is found by id
 * and by owner and workload, the overlap rules hold within a workload
 * whatever the others hold, a workload that empties leaves the index and
 * can come back, an intercept that ends takes its previews out of both
 * preview indexes, and shutdown empties everything.
 *
 * The sessions are NULL (answers are the functions' return values), the
 * cluster DNS is a double; e2e/intercept, e2e/preview and e2e/registry run
 * the same code with real sessions. */
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

#define NWL	100
#define NOWN	50
#define NPV	32	/* owners and workloads with previews: 32 x 32 = 1,024 */

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

static struct client sidecars[NWL], owners[NOWN];
static char ids[NOWN][NWL][ID_LEN + 1];
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

static int
sidecar_hello(int k)
{
	char buf[300], reason[300];
	cJSON *h;
	int r;

	snprintf(sidecars[k].name, sizeof(sidecars[k].name), "w%d.default", k);
	snprintf(sidecars[k].workload, sizeof(sidecars[k].workload), "w%d.default", k);
	sidecars[k].kind = CLIENT_SIDECAR;
	snprintf(buf, sizeof(buf), "{\"workload\":\"w%d\",\"namespace\":\"default\","
	    "\"protocol\":\"http\",\"env\":{}}", k);
	h = json(buf);
	r = icpt_sidecar_hello(reg, &sidecars[k], h, reason, sizeof(reason));
	cJSON_Delete(h);
	return r;
}

/* owner's intercept on wl with header x-dev: value (or global): its status. */
static int
intercept(struct client *c, int wl, const char *value, char *id)
{
	char buf[400];
	cJSON *q, *r;
	int st;

	if (value)
		snprintf(buf, sizeof(buf), "{\"type\":\"intercept\",\"id\":1,\"workload\":\"w%d\","
		    "\"namespace\":\"default\",\"port\":3000,\"headers\":[{\"name\":\"x-dev\","
		    "\"value\":\"%s\"}]}", wl, value);
	else
		snprintf(buf, sizeof(buf), "{\"type\":\"intercept\",\"id\":1,\"workload\":\"w%d\","
		    "\"namespace\":\"default\",\"port\":3000}", wl);
	q = json(buf);
	r = icpt_request(reg, c, KB_MSG_INTERCEPT, q);
	st = cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")) ? 200 :
	    (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "status"));
	if (st == 200 && id)
		snprintf(id, ID_LEN + 1, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(
		    cJSON_GetObjectItem(r, "intercept"), "id")));
	cJSON_Delete(r);
	cJSON_Delete(q);
	return st;
}

static int
leave(struct client *c, int wl)
{
	char buf[200];
	cJSON *q, *r;
	int st;

	snprintf(buf, sizeof(buf), "{\"type\":\"leave\",\"id\":2,\"workload\":\"w%d\","
	    "\"namespace\":\"default\"}", wl);
	q = json(buf);
	r = icpt_request(reg, c, KB_MSG_LEAVE, q);
	st = cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")) ? 200 :
	    (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "status"));
	cJSON_Delete(r);
	cJSON_Delete(q);
	return st;
}

static void
test_intercepts(void)
{
	struct client zed = { .name = "zed", .instance = "i-zed" };
	char id[ID_LEN + 1], wl[16];
	int i, k, good = 1, http;

	for (k = 0; k < NWL; k++)
		good &= sidecar_hello(k) == 0;
	ok(good && reg->by_name.n == NWL);
	for (i = 0; i < NOWN; i++) {
		snprintf(owners[i].name, sizeof(owners[i].name), "u%d", i);
		snprintf(owners[i].instance, sizeof(owners[i].instance), "i-u%d", i);
		owners[i].kind = CLIENT_DAEMON;
		for (k = 0; k < NWL; k++)
			good &= intercept(&owners[i], k, owners[i].name, ids[i][k]) == 200;
	}
	ok(good && reg->by_id.n == NOWN * NWL);
	/* Each by owner and workload, and by id with its owner only. */
	for (i = 0; i < NOWN; i++)
		for (k = 0; k < NWL; k++) {
			snprintf(wl, sizeof(wl), "w%d", k);
			good &= icpt_owned(reg, owners[i].name, wl, "default", id, sizeof(id),
			    &http) == 0 &&
			    !strcmp(id, ids[i][k]) && http;
			good &= icpt_state(reg, ids[i][k], owners[i].name) == 0;
			good &= icpt_state(reg, ids[i][k], owners[(i + 1) % NOWN].name) == -1;
			good &= find_id(reg, ids[i][k])->w == find_workload(reg, wl, "default");
		}
	ok(good);
	ok(icpt_state(reg, "000000000000000000000000", "u0") == -1);
	ok(icpt_owned(reg, "zed", "w0", "default", id, sizeof(id), &http) == -1);
	ok(icpt_owned(reg, "u0", "w100", "default", id, sizeof(id), &http) == -1);
	/* The overlap rules, within the workload, as before. */
	ok(intercept(&owners[0], 7, "again", NULL) == 409);
	ok(intercept(&zed, 5, "u3", NULL) == 409);
	ok(intercept(&zed, 6, NULL, NULL) == 409);
	ok(intercept(&zed, 100, "zed", NULL) == 404);
	ok(intercept(&zed, 5, "zed", id) == 200 && icpt_state(reg, id, "zed") == 0);
	ok(reg->by_id.n == NOWN * NWL + 1);
	/* Ended: out of the index; the others on that workload stay. */
	ok(leave(&owners[0], 0) == 200 && icpt_state(reg, ids[0][0], "u0") == -1);
	ok(leave(&owners[0], 0) == 404);
	ok(icpt_state(reg, ids[1][0], "u1") == 0 && reg->by_id.n == NOWN * NWL);
	/* A workload whose intercepts and sidecar are gone leaves the index,
	 * and comes back with its sidecar. */
	for (i = 1; i < NOWN; i++)
		good &= leave(&owners[i], 0) == 200;
	icpt_client_gone(reg, &sidecars[0]);
	ok(good && find_workload(reg, "w0", "default") == NULL && reg->by_name.n == NWL - 1);
	ok(sidecar_hello(0) == 0 && find_workload(reg, "w0", "default") != NULL &&
	    reg->by_name.n == NWL);
	ok(intercept(&owners[0], 0, "u0", ids[0][0]) == 200);
	/* The daemon quits: all its intercepts end, and only its. */
	cJSON_Delete(icpt_end_all(reg, &zed, "test"));
	ok(icpt_state(reg, id, "zed") == -1 && reg->by_id.n == NOWN * NWL - (NOWN - 1));
}

static void
test_previews(void)
{
	cJSON *a = cJSON_CreateArray(), *o;
	struct preview *p;
	char tok[NPV][NPV][TOKEN_LEN + 1], extra[TOKEN_LEN + 1];
	uint64_t key;
	int i, k, good = 1;

	for (i = 0; i < NPV; i++)
		for (k = 0; k < NPV; k++) {
			good &= make_token(tok[i][k]) == 0;
			o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "token", tok[i][k]);
			cJSON_AddStringToObject(o, "workload", "w0");
			cJSON_AddStringToObject(o, "namespace", "default");
			cJSON_AddStringToObject(o, "owner", owners[i].name);
			cJSON_AddStringToObject(o, "intercept_id", ids[i][k]);
			cJSON_AddStringToObject(o, "host", "");
			cJSON_AddStringToObject(o, "address", "10.96.0.20");
			cJSON_AddNumberToObject(o, "port", 80);
			cJSON_AddNumberToObject(o, "expires", 0);
			cJSON_AddItemToArray(a, o);
		}
	/* One more than the cluster's 1,024: dropped. */
	good &= make_token(extra) == 0;
	o = cJSON_Duplicate(cJSON_GetArrayItem(a, 0), 1);
	cJSON_ReplaceItemInObject(o, "token", cJSON_CreateString(extra));
	cJSON_AddItemToArray(a, o);
	ok(good && preview_restore(a) == NPV * NPV);
	cJSON_Delete(a);
	ok(pv.by_token.n == NPV * NPV && pv.by_key.n == NPV * NPV && !find_token(extra, TOKEN_LEN));
	for (i = 0; i < NPV; i++)
		for (k = 0; k < NPV; k++) {
			p = find_token(tok[i][k], TOKEN_LEN);
			good &= p && !strcmp(p->icpt, ids[i][k]) &&
			    kb_htab_get(&pv.by_key, &p->key, sizeof(p->key)) == p;
		}
	ok(good);
	/* Not a token: upper case, short, or one letter off. */
	memcpy(extra, tok[3][4], sizeof(extra));
	extra[0] = extra[0] == 'a' ? 'b' : 'a';
	ok(!find_token(extra, TOKEN_LEN) && !find_token(tok[3][4], TOKEN_LEN - 1));
	/* An intercept ends: its preview leaves both indexes, no other does. */
	p = find_token(tok[5][6], TOKEN_LEN);
	key = p->key;
	ok(preview_intercept_ended(ids[5][6], 0) == 1);
	ok(!find_token(tok[5][6], TOKEN_LEN) && !kb_htab_get(&pv.by_key, &key, sizeof(key)));
	ok(find_token(tok[5][7], TOKEN_LEN) && pv.by_token.n == NPV * NPV - 1 &&
	    pv.by_key.n == NPV * NPV - 1);
	preview_shutdown();
	ok(pv.by_token.n == 0 && pv.by_key.n == 0 && !find_token(tok[0][0], TOKEN_LEN));
}

int
main(void)
{
	struct event_base *base = event_base_new();

	log_init("test_routes", KB_LOG_WARN);
	if ((reg = icpt_new(base, 10000)) == NULL) {
		fprintf(stderr, "test_routes: out of memory\n");
		return 1;
	}
	test_intercepts();
	test_previews();
	icpt_clear(reg);
	ok(reg->by_id.n == 0 && reg->by_name.n == 0 && TAILQ_EMPTY(&reg->workloads) &&
	    icpt_state(reg, ids[1][1], "u1") == -1);
	icpt_free(reg);
	event_base_free(base);
	return ok_done();
}
