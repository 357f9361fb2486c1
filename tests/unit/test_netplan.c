/* proto/netplan.c: which ranges go through kbridge (cluster subnets plus
 * also-proxy, less never-proxy), the overlap tests behind the status's
 * "overlaps", and the strict check of a user's CIDR. */
#include "../../proto/netplan.c"

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

/* The plan of in/also/never (NULL-terminated lists) printed "a b c". */
static const char *
plan(const char **in, const char **also, const char **never, size_t max)
{
	static char out[4096];
	struct kb_cidr vi[16], va[16], vn[16], res[KB_NETPLAN_MAX];
	size_t ni = 0, na = 0, nn = 0, off = 0;
	char buf[32];
	int n, i;

	while (in && in[ni])
		vi[ni] = C(in[ni]), ni++;
	while (also && also[na])
		va[na] = C(also[na]), na++;
	while (never && never[nn])
		vn[nn] = C(never[nn]), nn++;
	n = kb_netplan(vi, ni, va, na, vn, nn, res, max);
	if (n < 0)
		return "(too many)";
	out[0] = '\0';
	for (i = 0; i < n; i++)
		off += snprintf(out + off, sizeof(out) - off, "%s%s", i ? " " : "",
		    kb_cidr_str(&res[i], buf, sizeof(buf)));
	printf("# plan: %s\n", out);
	return out;
}

#define L(...) ((const char *[]){ __VA_ARGS__, NULL })

static int
user_bad(const char *s, const char *want)
{
	struct kb_cidr c;
	char err[200] = "";
	int rc = kb_netplan_user_cidr(s, &c, err, sizeof(err));

	printf("# %s -> %s\n", s, err);
	return rc == -1 && strstr(err, want) != NULL && !strchr(err, '\n');
}

int
main(void)
{
	struct kb_cidr a = C("10.96.0.0/16"), b = C("10.96.5.0/24"), c = C("10.97.0.0/16");
	struct kb_cidr c1;
	char err[200];

	/* Overlap and cover. */
	ok(kb_cidr_overlap(&a, &b) && kb_cidr_overlap(&b, &a));
	ok(kb_cidr_covers(&a, &b) && !kb_cidr_covers(&b, &a));
	ok(kb_cidr_covers(&a, &a));
	ok(!kb_cidr_overlap(&a, &c));
	ok(kb_cidr_overlap(&(struct kb_cidr){ 0x0a000000u, 8 }, &c));

	/* The plan: plain, duplicates and nested ranges merged, sorted. */
	ok(!strcmp(plan(L("10.96.0.0/16", "10.244.0.0/16"), NULL, NULL, 16),
	    "10.96.0.0/16 10.244.0.0/16"));
	ok(!strcmp(plan(L("10.244.0.0/16", "10.96.0.0/16"), L("10.96.0.0/16"), NULL, 16),
	    "10.96.0.0/16 10.244.0.0/16"));
	ok(!strcmp(plan(L("10.96.0.0/16", "10.244.0.0/16"), L("10.0.0.0/8"), NULL, 16),
	    "10.0.0.0/8"));
	ok(!strcmp(plan(L("10.96.0.0/16"), L("172.20.0.0/16"), NULL, 16),
	    "10.96.0.0/16 172.20.0.0/16"));
	ok(!strcmp(plan(NULL, NULL, NULL, 16), ""));

	/* never-proxy wins: a hole is cut, the rest split into CIDRs. */
	ok(!strcmp(plan(L("10.96.0.0/16"), NULL, L("10.96.0.0/16"), 16), ""));
	ok(!strcmp(plan(L("10.96.0.0/16"), NULL, L("10.0.0.0/8"), 16), ""));
	ok(!strcmp(plan(L("10.96.0.0/16", "10.244.0.0/16"), NULL, L("10.244.0.0/16"), 16),
	    "10.96.0.0/16"));
	ok(!strcmp(plan(L("10.96.0.0/16"), NULL, L("10.96.255.0/24"), 16),
	    "10.96.0.0/17 10.96.128.0/18 10.96.192.0/19 10.96.224.0/20 10.96.240.0/21 "
	    "10.96.248.0/22 10.96.252.0/23 10.96.254.0/24"));
	ok(!strcmp(plan(L("10.96.0.0/30"), NULL, L("10.96.0.1/32"), 16),
	    "10.96.0.0/32 10.96.0.2/31"));
	ok(!strcmp(plan(L("10.96.0.0/16"), L("10.0.0.0/8"), L("10.96.0.0/16"), 16),
	    "10.0.0.0/10 10.64.0.0/11 10.97.0.0/16 10.98.0.0/15 10.100.0.0/14 "
	    "10.104.0.0/13 10.112.0.0/12 10.128.0.0/9"));
	/* A never-proxy range outside every proxied one changes nothing. */
	ok(!strcmp(plan(L("10.96.0.0/16"), NULL, L("192.168.1.0/24"), 16), "10.96.0.0/16"));
	/* Bounded: more ranges than room is an error, not a cut list. */
	ok(!strcmp(plan(L("10.96.0.0/16"), NULL, L("10.96.255.0/24"), 4), "(too many)"));
	ok(!strcmp(plan(L("10.96.0.0/16"), NULL, L("10.96.0.1/32", "10.96.200.7/32"), 64),
	    plan(L("10.96.0.0/16"), NULL, L("10.96.200.7/32", "10.96.0.1/32"), 64)));

	/* Lists compare by value, padding aside. */
	{
		struct kb_cidr x[2], y[2];

		memset(x, 0xaa, sizeof(x));
		memset(y, 0x55, sizeof(y));
		x[0] = a, y[0] = a;
		x[1].addr = y[1].addr = b.addr;
		x[1].prefix = y[1].prefix = b.prefix;
		ok(kb_cidr_list_eq(x, 2, y, 2));
		ok(!kb_cidr_list_eq(x, 2, y, 1));
		y[1].prefix = 25;
		ok(!kb_cidr_list_eq(x, 2, y, 2));
		ok(kb_cidr_list_eq(NULL, 0, NULL, 0));
	}

	/* The user's ranges: strict syntax, not loopback and the like. */
	ok(kb_netplan_user_cidr("10.96.0.0/16", &c1, err, sizeof(err)) == 0 &&
	    c1.addr == a.addr && c1.prefix == 16);
	ok(kb_netplan_user_cidr("192.168.7.9/32", &c1, err, sizeof(err)) == 0);
	ok(user_bad("10.96.0.1/16", "not a CIDR"));
	ok(user_bad("10.96.0.0", "not a CIDR"));
	ok(user_bad("10.96.0.0/33", "not a CIDR"));
	ok(user_bad("10.96.0.0/", "not a CIDR"));
	ok(user_bad("10.96.0.0/+16", "not a CIDR"));
	ok(user_bad("10.96.0.0/016x", "not a CIDR"));
	ok(user_bad(" 10.96.0.0/16", "not a CIDR"));
	ok(user_bad("10.096.0.0/16", "not a CIDR"));
	ok(user_bad("0.0.0.0/0", "every address"));
	ok(user_bad("127.0.0.0/8", "127.0.0.0/8"));
	ok(user_bad("64.0.0.0/2", "127.0.0.0/8"));
	ok(user_bad("127.0.0.53/32", "127.0.0.0/8"));
	ok(user_bad("169.254.0.0/16", "169.254.0.0/16"));
	ok(user_bad("224.0.0.0/4", "224.0.0.0/3"));
	ok(user_bad("0.0.0.0/8", "0.0.0.0/8"));
	ok(user_bad("10.96.0.0/16\n", "not a CIDR"));
	return ok_done();
}
