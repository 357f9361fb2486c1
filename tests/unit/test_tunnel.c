/* The daemon's handling of the manager's answers (daemon/tunnel.c): an id
 * or a ttl outside uint32_t's range neither matches a request it does not
 * name nor turns into another number (both found by tests/fuzz/fuzz_control). */
#include "../../daemon/tunnel.c"

#include "ok.h"

/* tunnel.c is linked alone: the network setup, the control API and the
 * intercepts are not under test. */
#include "net_doubles.h"

static size_t dns_namespaces = 999;

void
net_namespaces(struct kbd *d, const struct kbd_cluster *c)
{
	(void)d;
	dns_namespaces = c->nnamespaces;
}

void
net_status_json(const struct kbd *d, cJSON *j)
{
	(void)d;
	(void)j;
}

cJSON *
intercept_status(const struct kbd *d)
{
	(void)d;
	return cJSON_CreateArray();
}

void
intercept_shutdown(struct kbd *d)
{
	(void)d;
}

static int connect_failures;

void
control_connect_done(struct kbd *d, int ok, const char *err)
{
	(void)d;
	(void)err;
	connect_failures += !ok;
}

void
intercept_restore(struct kbd *d)
{
	(void)d;
}

void
intercept_deliver(struct kbd *d, struct kb_stream *st, const struct kb_open *o)
{
	(void)d;
	(void)st;
	(void)o;
}

static int lookups_done, requests_done;
static uint32_t last_ttl;

static void
lookup_done(void *ctx, int rcode, const char *const *addrs, size_t n, uint32_t ttl)
{
	(void)ctx;
	(void)rcode;
	(void)addrs;
	(void)n;
	lookups_done++;
	last_ttl = ttl;
}

static void
request_done(void *ctx, const cJSON *res, const char *err)
{
	(void)ctx;
	(void)res;
	(void)err;
	requests_done++;
}

/* The manager's message text, as the session hands it to on_control. */
static int
answer(struct tunnel *d, const char *text)
{
	cJSON *msg = cJSON_Parse(text);
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(msg, "type");
	int rc;

	if (!cJSON_IsString(type))
		abort();
	rc = on_control(NULL, msg, type->valuestring, d);
	cJSON_Delete(msg);
	return rc;
}

static void
add_lookup(struct tunnel *t, uint32_t id)
{
	struct pending *p = calloc(1, sizeof(*p));

	p->id = id;
	p->resolved = lookup_done;
	p->next = t->pending;
	t->pending = p;
}

int
main(void)
{
	struct kbd kbd = { 0 };
	struct tunnel *d = tunnel_new(&kbd);
	struct pending *r;

	log_init("test_tunnel", KB_LOG_ERROR);
	kbd.tunnel = d;

	/* 2^32 + 1 would wrap to 1 in a conversion to uint32_t. */
	add_lookup(d, 1);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":4294967297,\"rcode\":0,\"addrs\":[\"10.0.0.1\"]}")
	    == 0);
	ok(lookups_done == 0 && d->pending != NULL);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":1e300,\"rcode\":0}") == 0 && lookups_done == 0);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":1.5,\"rcode\":0}") == 0 && lookups_done == 0);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":1,\"rcode\":0,\"ttl\":30}") == 0);
	ok(lookups_done == 1 && last_ttl == 30 && d->pending == NULL);

	/* A ttl uint32_t cannot hold falls back to the default, 5 s. */
	add_lookup(d, 2);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":2,\"rcode\":0,\"ttl\":-5}") == 0);
	ok(lookups_done == 2 && last_ttl == 5);
	add_lookup(d, 3);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":3,\"rcode\":0,\"ttl\":1e20}") == 0);
	ok(lookups_done == 3 && last_ttl == 5);
	add_lookup(d, 4);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":4,\"rcode\":0,\"ttl\":4294967295}") == 0);
	ok(lookups_done == 4 && last_ttl == 4294967295u);

	/* Results of requests: the same for their ids. */
	r = calloc(1, sizeof(*r));
	r->id = 1;
	r->done = request_done;
	d->pending = r;
	ok(answer(d, "{\"type\":\"result\",\"id\":4294967297,\"ok\":true}") == 0);
	ok(requests_done == 0 && d->pending == r);
	ok(answer(d, "{\"type\":\"result\",\"id\":-1e300,\"ok\":true}") == 0 && requests_done == 0);
	ok(answer(d, "{\"type\":\"result\",\"id\":1,\"ok\":true}") == 0);
	ok(requests_done == 1 && d->pending == NULL);

	/* One table for both kinds: an answer of the other kind does not
	 * complete a request, whatever its id. */
	add_lookup(d, 5);
	ok(answer(d, "{\"type\":\"result\",\"id\":5,\"ok\":true}") == 0);
	ok(lookups_done == 4 && requests_done == 1 && d->pending != NULL);
	r = calloc(1, sizeof(*r));
	r->id = 6;
	r->done = request_done;
	r->next = d->pending;
	d->pending = r;
	ok(answer(d, "{\"type\":\"resolved\",\"id\":6,\"rcode\":0}") == 0);
	ok(lookups_done == 4 && d->pending == r);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":5,\"rcode\":0}") == 0);
	ok(lookups_done == 5 && d->pending == r);
	/* A lost session fails whatever waits, each kind its own way. */
	add_lookup(d, 7);
	fail_pending(d);
	ok(lookups_done == 6 && requests_done == 2 && d->pending == NULL);

	/* Malformed answers still end the session. */
	ok(answer(d, "{\"type\":\"resolved\",\"id\":\"1\",\"rcode\":0}") < 0);
	ok(answer(d, "{\"type\":\"result\"}") < 0);
	/* Types a manager never sends a daemon, or nobody defined, and
	 * fields of the wrong kind (proto/msg.c's table). */
	ok(answer(d, "{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":1}") < 0);
	ok(answer(d, "{\"type\":\"intercepts\",\"intercepts\":[]}") < 0);
	ok(answer(d, "{\"type\":\"frobnicate\",\"id\":1}") < 0);
	ok(answer(d, "{\"type\":\"resolved\",\"id\":1,\"rcode\":0,\"addrs\":{}}") < 0);
	ok(answer(d, "{\"type\":\"replaced\",\"by\":[]}") < 0);
	ok(answer(d, "{\"type\":\"replaced\",\"by\":\"192.0.2.7:1\"}") == 0);
	ok(!strcmp(d->replaced_by, "192.0.2.7:1"));

	/* "cluster": the namespaces replace the daemon's and reach its DNS at
	 * once; the subnets are checked (applied at the next connect). */
	snprintf(d->cl.ns, sizeof(d->cl.ns), "default");
	ok(answer(d, "{\"type\":\"cluster\",\"subnets\":[\"10.96.0.0/16\"],"
	    "\"namespaces\":[\"default\",\"late\"]}") == 0);
	ok(d->cl.nnamespaces == 2 && !strcmp(d->cl.namespaces[1], "late") && dns_namespaces == 2);
	ok(d->cl.nsubnets == 1 && d->cl.subnets[0].addr == 0x0a600000u && d->cl.subnets[0].prefix == 16);
	ok(answer(d, "{\"type\":\"cluster\",\"subnets\":[\"10.96.0.1/16\"],"
	    "\"namespaces\":[\"x\"]}") < 0);
	ok(answer(d, "{\"type\":\"cluster\",\"subnets\":[],\"namespaces\":[1]}") < 0);
	/* namespaces name DNS labels: they become DNS names on the workstation */
	ok(answer(d, "{\"type\":\"cluster\",\"subnets\":[],\"namespaces\":[\"a.b\"]}") < 0);
	ok(answer(d, "{\"type\":\"cluster\",\"namespaces\":[]}") < 0);
	ok(d->cl.nnamespaces == 2 && dns_namespaces == 2);
	ok(answer(d, "{\"type\":\"cluster\",\"subnets\":[],\"namespaces\":[]}") == 0);
	ok(d->cl.nnamespaces == 0 && dns_namespaces == 0);

	/* A local failure while reconnecting (the network cannot be set up
	 * again): the explicit give-up flag ends the session for good, with no
	 * retry (there is no retry timer here: a retry would crash) and the
	 * waiting connects told, instead of a fake "connecting" state. */
	{
		cJSON *h = cJSON_Parse("{\"user\":\"alice\",\"cluster_domain\":\"cluster.local\","
		    "\"subnets\":[],\"namespaces\":[\"default\"]}");
		char reason[200];

		d->profile.manager = strdup("manager.example:7443");
		d->profile.name = strdup("alice");
		d->have_profile = 1;
		d->replaced_by[0] = '\0';
		d->state = KBD_RECONNECTING;
		net_up_fails = 1;
		ok(on_hello(NULL, h, reason, sizeof(reason), d) < 0);
		ok(strstr(reason, "no tun device") != NULL && d->give_up);
		ok(d->state == KBD_RECONNECTING);	/* the state itself is not faked */
		lost(d, reason);
		ok(d->state == KBD_DISCONNECTED && !d->have_profile && !d->give_up);
		ok(connect_failures == 1 && tunnel_profile(d) == NULL);
		cJSON_Delete(h);
	}
	tunnel_free(d);
	return ok_done();
}
