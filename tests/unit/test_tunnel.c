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
dns_set_cluster(struct kb_dns *d, const char *domain, const char *const *namespaces,
    size_t nnamespaces, const char *connected_ns)
{
	(void)d;
	(void)domain;
	(void)namespaces;
	(void)connected_ns;
	dns_namespaces = nnamespaces;
}

void
intercept_shutdown(void)
{
}

void
control_connect_done(struct kbd *d, int ok, const char *err)
{
	(void)d;
	(void)ok;
	(void)err;
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
answer(struct kbd *d, const char *text)
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
add_lookup(struct kbd *d, uint32_t id)
{
	struct pending_lookup *p = calloc(1, sizeof(*p));

	p->id = id;
	p->done = lookup_done;
	p->next = d->lookups;
	d->lookups = p;
}

int
main(void)
{
	struct kbd d = { 0 };
	struct pending_request *r;

	log_init("test_tunnel", KB_LOG_ERROR);

	/* 2^32 + 1 would wrap to 1 in a conversion to uint32_t. */
	add_lookup(&d, 1);
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":4294967297,\"rcode\":0,\"addrs\":[\"10.0.0.1\"]}")
	    == 0);
	ok(lookups_done == 0 && d.lookups != NULL);
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":1e300,\"rcode\":0}") == 0 && lookups_done == 0);
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":1.5,\"rcode\":0}") == 0 && lookups_done == 0);
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":1,\"rcode\":0,\"ttl\":30}") == 0);
	ok(lookups_done == 1 && last_ttl == 30 && d.lookups == NULL);

	/* A ttl uint32_t cannot hold falls back to the default, 5 s. */
	add_lookup(&d, 2);
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":2,\"rcode\":0,\"ttl\":-5}") == 0);
	ok(lookups_done == 2 && last_ttl == 5);
	add_lookup(&d, 3);
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":3,\"rcode\":0,\"ttl\":1e20}") == 0);
	ok(lookups_done == 3 && last_ttl == 5);
	add_lookup(&d, 4);
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":4,\"rcode\":0,\"ttl\":4294967295}") == 0);
	ok(lookups_done == 4 && last_ttl == 4294967295u);

	/* Results of requests: the same for their ids. */
	r = calloc(1, sizeof(*r));
	r->id = 1;
	r->done = request_done;
	d.requests = r;
	ok(answer(&d, "{\"type\":\"result\",\"id\":4294967297,\"ok\":true}") == 0);
	ok(requests_done == 0 && d.requests == r);
	ok(answer(&d, "{\"type\":\"result\",\"id\":-1e300,\"ok\":true}") == 0 && requests_done == 0);
	ok(answer(&d, "{\"type\":\"result\",\"id\":1,\"ok\":true}") == 0);
	ok(requests_done == 1 && d.requests == NULL);

	/* Malformed answers still end the session. */
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":\"1\",\"rcode\":0}") < 0);
	ok(answer(&d, "{\"type\":\"result\"}") < 0);
	/* Types a manager never sends a daemon, or nobody defined, and
	 * fields of the wrong kind (proto/msg.c's table). */
	ok(answer(&d, "{\"type\":\"resolve\",\"id\":1,\"name\":\"a\",\"qtype\":1}") < 0);
	ok(answer(&d, "{\"type\":\"intercepts\",\"intercepts\":[]}") < 0);
	ok(answer(&d, "{\"type\":\"frobnicate\",\"id\":1}") < 0);
	ok(answer(&d, "{\"type\":\"resolved\",\"id\":1,\"rcode\":0,\"addrs\":{}}") < 0);
	ok(answer(&d, "{\"type\":\"replaced\",\"by\":[]}") < 0);
	ok(answer(&d, "{\"type\":\"replaced\",\"by\":\"192.0.2.7:1\"}") == 0);
	ok(!strcmp(d.replaced_by, "192.0.2.7:1"));

	/* "cluster": the namespaces replace the daemon's and reach its DNS at
	 * once; the subnets are checked (applied at the next connect). */
	snprintf(d.ns, sizeof(d.ns), "default");
	d.dns = (struct kb_dns *)&d; /* only passed to the double */
	ok(answer(&d, "{\"type\":\"cluster\",\"subnets\":[\"10.96.0.0/16\"],"
	    "\"namespaces\":[\"default\",\"late\"]}") == 0);
	ok(d.nnamespaces == 2 && !strcmp(d.namespaces[1], "late") && dns_namespaces == 2);
	ok(d.nsubnets == 1 && d.subnets[0].addr == 0x0a600000u && d.subnets[0].prefix == 16);
	ok(answer(&d, "{\"type\":\"cluster\",\"subnets\":[\"10.96.0.1/16\"],"
	    "\"namespaces\":[\"x\"]}") < 0);
	ok(answer(&d, "{\"type\":\"cluster\",\"subnets\":[],\"namespaces\":[1]}") < 0);
	/* namespaces name DNS labels: they become DNS names on the workstation */
	ok(answer(&d, "{\"type\":\"cluster\",\"subnets\":[],\"namespaces\":[\"a.b\"]}") < 0);
	ok(answer(&d, "{\"type\":\"cluster\",\"namespaces\":[]}") < 0);
	ok(d.nnamespaces == 2 && dns_namespaces == 2);
	ok(answer(&d, "{\"type\":\"cluster\",\"subnets\":[],\"namespaces\":[]}") == 0);
	ok(d.nnamespaces == 0 && dns_namespaces == 0);
	d.dns = NULL;
	return ok_done();
}
