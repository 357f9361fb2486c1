/* proto/vnat.c: the kept-local cluster ranges, the choice of a free
 * virtual range, and the table of virtual addresses (1:1, stable, bounded,
 * mapped back), and the reverse names of addresses. */
#include "../../proto/vnat.c"

#include "ok.h"

static struct kb_cidr
C(const char *s)
{
	struct kb_cidr c = { 0, 0 };

	if (kb_cidr_parse(s, &c) < 0) {
		printf("# bad test CIDR %s\n", s);
		exit(1);
	}
	return c;
}

static uint32_t
A(const char *s)
{
	struct kb_cidr c;
	char buf[32];

	snprintf(buf, sizeof(buf), "%s/32", s);
	c = C(buf);
	return c.addr;
}

/* kb_vnat_kept of in/never (NULL-terminated), printed "a b c". */
static const char *
kept(const char **in, const char **never, size_t max)
{
	static char out[1024];
	struct kb_cidr vi[16], vn[16], res[16];
	size_t ni = 0, nn = 0, off = 0;
	char buf[32];
	int n, i;

	while (in && in[ni])
		vi[ni] = C(in[ni]), ni++;
	while (never && never[nn])
		vn[nn] = C(never[nn]), nn++;
	if ((n = kb_vnat_kept(vi, ni, vn, nn, res, max)) < 0)
		return "(too many)";
	out[0] = '\0';
	for (i = 0; i < n; i++)
		off += snprintf(out + off, sizeof(out) - off, "%s%s", i ? " " : "",
		    kb_cidr_str(&res[i], buf, sizeof(buf)));
	return out;
}

static const char *
pick(const char **busy)
{
	static char out[32];
	struct kb_cidr vb[16], c;
	size_t n = 0;

	while (busy && busy[n])
		vb[n] = C(busy[n]), n++;
	if (kb_vnat_pick(vb, n, &c) < 0)
		return "(none)";
	return kb_cidr_str(&c, out, sizeof(out));
}

static void
test_kept(void)
{
	const char *cl[] = { "10.96.0.0/16", "10.244.0.0/16", NULL };
	const char *lan[] = { "10.96.1.0/24", NULL };
	const char *two[] = { "10.96.1.0/24", "10.244.0.0/15", "192.168.0.0/16", NULL };
	const char *nest[] = { "10.96.1.0/24", "10.96.0.0/17", "10.96.1.128/25", NULL };
	const char *wide[] = { "10.0.0.0/8", NULL };

	ok(!strcmp(kept(cl, NULL, 16), ""));
	ok(!strcmp(kept(cl, lan, 16), "10.96.1.0/24"));
	/* a never range wider than a cluster range keeps the cluster range */
	ok(!strcmp(kept(cl, two, 16), "10.96.1.0/24 10.244.0.0/16"));
	ok(!strcmp(kept(cl, wide, 16), "10.96.0.0/16 10.244.0.0/16"));
	/* ranges inside others are kept once, as the widest */
	ok(!strcmp(kept(cl, nest, 16), "10.96.0.0/17"));
	ok(!strcmp(kept(cl, two, 1), "(too many)"));
}

static void
test_pick(void)
{
	const char *none[] = { NULL };
	const char *first[] = { "100.64.0.0/16", "0.0.0.0/0", NULL };
	const char *inside[] = { "100.64.7.0/24", "100.65.0.1/32", NULL };
	const char *wide[] = { "100.64.0.0/11", NULL };
	const char *all[] = { "100.0.0.0/8", NULL };

	ok(!strcmp(pick(none), "100.64.0.0/16"));
	/* the default route (prefix 0) busies nothing */
	ok(!strcmp(pick(first), "100.65.0.0/16"));
	/* a route or address inside a block busies the block */
	ok(!strcmp(pick(inside), "100.66.0.0/16"));
	ok(!strcmp(pick(wide), "100.96.0.0/16"));
	ok(!strcmp(pick(all), "(none)"));
}

static void
test_table(void)
{
	struct kb_cidr sub = C("100.64.0.0/16"), k[2] = { C("10.96.1.0/24"), C("10.244.0.0/16") };
	struct kb_cidr tiny = C("198.18.0.0/30"), bad = C("100.64.0.0/31");
	struct kb_vnat *v, *t;
	uint32_t virt, virt2, real, i;
	const char *name;
	size_t n;
	int full;

	ok(kb_vnat_new(&bad, k, 1) == NULL);
	bad = C("0.0.0.0/0");
	ok(kb_vnat_new(&bad, k, 1) == NULL);
	ok((v = kb_vnat_new(&sub, k, 1)) != NULL);
	if (!v)
		return;
	ok(kb_vnat_cap(v) == KB_VNAT_MAX);
	ok(kb_vnat_translates(v, A("10.96.1.1")));
	ok(!kb_vnat_translates(v, A("10.96.2.1")));
	ok(kb_vnat_map(v, A("10.96.2.1"), "x", &virt) == -1);
	/* the first mapping gets the range's second address */
	ok(kb_vnat_map(v, A("10.96.1.1"), "web.default.svc.cluster.local", &virt) == 0 &&
	    virt == A("100.64.0.1"));
	/* the same real address, the same virtual one; the first name stays */
	ok(kb_vnat_map(v, A("10.96.1.1"), "other.default.svc.cluster.local", &virt2) == 0 &&
	    virt2 == virt);
	ok(!strcmp(kb_vnat_name(v, virt), "web.default.svc.cluster.local"));
	ok(kb_vnat_map(v, A("10.96.1.7"), NULL, &virt2) == 0 && virt2 == A("100.64.0.2"));
	ok(kb_vnat_name(v, virt2) == NULL);
	ok(kb_vnat_real(v, virt, &real) == 0 && real == A("10.96.1.1"));
	ok(kb_vnat_real(v, virt2, &real) == 0 && real == A("10.96.1.7"));
	/* addresses that map nothing: the range's first, beyond the last made, outside */
	ok(kb_vnat_real(v, A("100.64.0.0"), &real) == -1);
	ok(kb_vnat_real(v, A("100.64.0.3"), &real) == -1);
	ok(kb_vnat_real(v, A("10.96.1.1"), &real) == -1);
	ok(kb_vnat_name(v, A("100.64.0.3")) == NULL);
	ok(kb_vnat_count(v) == 2);
	ok(kb_vnat_get(v, 1, &virt, &real, &name) == 0 && virt == A("100.64.0.2") &&
	    real == A("10.96.1.7") && name == NULL);
	ok(kb_vnat_get(v, 2, &virt, &real, &name) == -1);
	/* the kept ranges change: old mappings stay, new ranges translate */
	ok(kb_vnat_set_kept(v, k, 2) == 0);
	ok(kb_vnat_map(v, A("10.244.3.4"), "p", &virt) == 0 && virt == A("100.64.0.3"));
	ok(kb_vnat_real(v, A("100.64.0.1"), &real) == 0 && real == A("10.96.1.1"));
	ok(kb_vnat_kept_ranges(v, &n) != NULL && n == 2);
	ok(kb_vnat_set_kept(v, k, KB_VNAT_RANGES + 1) == -1);
	/* the cap: a full table maps no new address, old ones still work */
	full = 0;
	for (i = 0; i < 70000 && !full; i++)
		full = kb_vnat_map(v, A("10.244.0.0") + i, NULL, &virt) < 0;
	ok(full && kb_vnat_count(v) == KB_VNAT_MAX);
	ok(kb_vnat_map(v, A("10.96.1.1"), NULL, &virt) == 0 && virt == A("100.64.0.1"));
	kb_vnat_free(v);

	/* a /30 has two usable addresses */
	ok((t = kb_vnat_new(&tiny, k, 2)) != NULL);
	if (!t)
		return;
	ok(kb_vnat_cap(t) == 2);
	ok(kb_vnat_map(t, A("10.96.1.1"), NULL, &virt) == 0 && virt == A("198.18.0.1"));
	ok(kb_vnat_map(t, A("10.96.1.2"), NULL, &virt) == 0 && virt == A("198.18.0.2"));
	ok(kb_vnat_map(t, A("10.96.1.3"), NULL, &virt) == -1);
	ok(kb_vnat_real(t, A("198.18.0.3"), &real) == -1);
	kb_vnat_free(t);
	kb_vnat_free(NULL);
}

static void
test_ptr(void)
{
	uint32_t a;

	ok(kb_vnat_ptr_addr("1.0.64.100.in-addr.arpa", &a) == 0 && a == A("100.64.0.1"));
	ok(kb_vnat_ptr_addr("255.255.255.255.in-addr.arpa", &a) == 0 && a == 0xffffffffu);
	ok(kb_vnat_ptr_addr("0.0.64.100.in-addr.arpa", &a) == 0 && a == A("100.64.0.0"));
	ok(kb_vnat_ptr_addr("256.0.64.100.in-addr.arpa", &a) == -1);
	ok(kb_vnat_ptr_addr("01.0.64.100.in-addr.arpa", &a) == -1);
	ok(kb_vnat_ptr_addr("-1.0.64.100.in-addr.arpa", &a) == -1);
	ok(kb_vnat_ptr_addr("0.64.100.in-addr.arpa", &a) == -1);
	ok(kb_vnat_ptr_addr("1.1.0.64.100.in-addr.arpa", &a) == -1);
	ok(kb_vnat_ptr_addr("1.0.64.100.in-addr.arpa.x", &a) == -1);
	ok(kb_vnat_ptr_addr("1.0.64.100", &a) == -1);
	ok(kb_vnat_ptr_addr("", &a) == -1);
}

static void
test_user(void)
{
	struct kb_cidr c;
	char err[160];

	ok(kb_vnat_user_subnet("off", &c, err, sizeof(err)) == 1);
	ok(kb_vnat_user_subnet("100.100.0.0/16", &c, err, sizeof(err)) == 0 &&
	    c.addr == A("100.100.0.0") && c.prefix == 16);
	ok(kb_vnat_user_subnet("198.18.4.0/30", &c, err, sizeof(err)) == 0);
	ok(kb_vnat_user_subnet("198.18.4.0/31", &c, err, sizeof(err)) == -1 &&
	    strstr(err, "/8 to /30"));
	ok(kb_vnat_user_subnet("10.0.0.0/7", &c, err, sizeof(err)) == -1);
	ok(kb_vnat_user_subnet("Off", &c, err, sizeof(err)) == -1 && strstr(err, "not a CIDR"));
	ok(kb_vnat_user_subnet("169.254.0.0/16", &c, err, sizeof(err)) == -1);
}

int
main(void)
{
	test_user();
	test_kept();
	test_pick();
	test_table();
	test_ptr();
	return ok_done();
}
