/* proto/kubeconfig.c: kubeconfig files the test writes in a temporary
 * directory, read as kubectl reads them (KUBECONFIG merge, current-context,
 * relative paths, *-data, token, tokenFile, exec plugins with their cache),
 * the refusals (bad YAML, auth-provider, basic auth, insecure, proxy-url),
 * and the libcurl setup against a loopback TLS server that wants a client
 * certificate and checks the bearer token. */
#include "../../proto/kubeconfig.c"

#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ok.h"

static char tmp[] = "/tmp/kb-kubeconfig.XXXXXX";
static char err[1024];

static char *
path(const char *rel)
{
	static char buf[8][512];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", tmp, rel);
	return buf[i];
}

static void
put(const char *rel, const char *content)
{
	FILE *f;
	char *p = path(rel), *slash;

	for (slash = strchr(p + strlen(tmp) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(p, 0700);
		*slash = '/';
	}
	if ((f = fopen(p, "w")) == NULL || fputs(content, f) < 0 || fclose(f) != 0) {
		perror(p);
		exit(1);
	}
}

static char *
slurp(const char *rel)
{
	char *s = kb_read_file(path(rel), 1 << 20, NULL);

	return s ? s : strdup("");
}

static int
contains(const char *hay, const char *needle)
{
	if (hay == NULL || strstr(hay, needle) == NULL) {
		printf("# \"%s\" not in \"%s\"\n", needle, hay ? hay : "(null)");
		return 0;
	}
	return 1;
}

static int
same(const char *a, const char *b)
{
	if (a == NULL || b == NULL || strcmp(a, b) != 0) {
		printf("# \"%s\" != \"%s\"\n", a ? a : "(null)", b ? b : "(null)");
		return 0;
	}
	return 1;
}

/* ---- certificates ---- */

static char *
pem_x509(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long n;

	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	s = strndup(p, n);
	BIO_free(b);
	return s;
}

static char *
pem_key(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long n;

	PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(b, &p);
	s = strndup(p, n);
	BIO_free(b);
	return s;
}

static void
ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

/* A certificate for key (self-signed when issuer is NULL). */
static X509 *
mkcert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, int serial)
{
	X509 *x = X509_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	if (issuer == NULL) {
		ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		ext(x, x, NID_key_usage, "critical,keyCertSign");
	} else if (strcmp(cn, "server") == 0) {
		ext(x, issuer, NID_ext_key_usage, "serverAuth");
		ext(x, issuer, NID_subject_alt_name, "IP:127.0.0.1,DNS:api.test");
	} else {
		ext(x, issuer, NID_ext_key_usage, "clientAuth");
	}
	X509_sign(x, ikey ? ikey : key, EVP_sha256());
	return x;
}

static EVP_PKEY *ca_key, *srv_key, *cli_key, *other_key;
static X509 *ca_x, *srv_x, *cli_x;
static char *ca_pem, *srv_pem, *srv_key_pem, *cli_pem, *cli_key_pem, *other_key_pem;

static void
make_certs(void)
{
	ca_key = EVP_EC_gen("P-256");
	srv_key = EVP_EC_gen("P-256");
	cli_key = EVP_EC_gen("P-256");
	other_key = EVP_EC_gen("P-256");
	ca_x = mkcert(ca_key, "test-ca", NULL, NULL, 1);
	srv_x = mkcert(srv_key, "server", ca_x, ca_key, 2);
	cli_x = mkcert(cli_key, "alice", ca_x, ca_key, 3);
	ca_pem = pem_x509(ca_x);
	srv_pem = pem_x509(srv_x);
	cli_pem = pem_x509(cli_x);
	srv_key_pem = pem_key(srv_key);
	cli_key_pem = pem_key(cli_key);
	other_key_pem = pem_key(other_key);
}

static char *
b64(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc((n + 2) / 3 * 4 + 1);

	EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)s, (int)n);
	return o;
}

/* ---- loading helpers ---- */

static struct kb_kubeconfig *
load(const char *explicit, const char *env, const char *home, const char *ctx, int flags)
{
	struct kb_kubeconfig_opts o = { explicit, ctx, env, home, flags };

	err[0] = '\0';
	return kb_kubeconfig_load(&o, err, sizeof(err));
}

/* A kubeconfig (in file rel) must fail with an error containing needle. */
static int
fails(const char *rel, const char *yaml, const char *needle)
{
	struct kb_kubeconfig *kc;

	put(rel, yaml);
	if ((kc = load(path(rel), NULL, NULL, NULL, 0)) != NULL) {
		printf("# %s loaded\n", rel);
		kb_kubeconfig_free(kc);
		return 0;
	}
	return contains(err, needle) && strchr(err, '\n') == NULL;
}

#define CLUSTER "clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n"
/* A context with user u (HEAD) or without a user (ANON); cluster fields follow. */
#define HEAD "apiVersion: v1\nkind: Config\ncurrent-context: c\n" \
	"contexts:\n- name: c\n  context: {cluster: k, user: u}\n" CLUSTER
#define ANON "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n" CLUSTER

static void
test_merge(void)
{
	struct kb_kubeconfig *kc;
	char *a, *b, env[1200], *ca64 = b64(ca_pem);
	size_t n;

	put("a/ca.crt", ca_pem);
	put("a/certs/client.crt", cli_pem);
	put("a/certs/client.key", cli_key_pem);
	a = "apiVersion: v1\n"
	    "kind: Config\n"
	    "current-context: one\n"
	    "contexts:\n"
	    "- name: one\n"
	    "  context: {cluster: c1, user: u1}\n"
	    "clusters:\n"
	    "- name: c1\n"
	    "  cluster:\n"
	    "    server: https://a.example:6443/\n"
	    "    certificate-authority: ca.crt\n"
	    "users:\n"
	    "- name: u1\n"
	    "  user:\n"
	    "    client-certificate: certs/client.crt\n"
	    "    client-key: certs/client.key\n";
	put("a/config", a);
	if (asprintf(&b, "apiVersion: v1\n"
	    "kind: Config\n"
	    "current-context: two\n"
	    "contexts:\n"
	    "- name: one\n"
	    "  context: {cluster: c2, user: u2}\n"
	    "- name: two\n"
	    "  context:\n"
	    "    cluster: c2\n"
	    "    user: u2\n"
	    "    namespace: ns2\n"
	    "- name: three\n"
	    "  context: {cluster: c1, user: u1}\n"
	    "clusters:\n"
	    "- name: c1\n"
	    "  cluster: {server: https://b-wrong.example}\n"
	    "- name: c2\n"
	    "  cluster:\n"
	    "    server: b.example:8443\n"
	    "    certificate-authority-data: %s\n"
	    "users:\n"
	    "- name: u1\n"
	    "  user: {token: wrong}\n"
	    "- name: u2\n"
	    "  user: {token: tok-b}\n", ca64) < 0)
		exit(1);
	put("b/config", b);
	free(b);

	/* KUBECONFIG: first file wins, missing files are skipped. */
	snprintf(env, sizeof(env), "%s:%s:%s:%s", path("a/config"), path("missing"),
	    path("b/config"), path("a/config"));
	kc = load(NULL, env, "/nonexistent", NULL, 0);
	ok(kc != NULL);
	if (kc == NULL) {
		printf("# %s\n", err);
		return;
	}
	ok(same(kb_kubeconfig_context(kc), "one"));
	ok(same(kb_kubeconfig_cluster(kc), "c1"));
	ok(same(kb_kubeconfig_user(kc), "u1"));
	ok(same(kb_kubeconfig_namespace(kc), "default"));
	ok(same(kb_kubeconfig_server(kc), "https://a.example:6443"));
	ok(same(kb_kubeconfig_ca_pem(kc, &n), ca_pem) && n == strlen(ca_pem));
	ok(same(kb_kubeconfig_cert_pem(kc, &n), cli_pem) && n == strlen(cli_pem));
	ok(same(kb_kubeconfig_key_pem(kc, &n), cli_key_pem) && n == strlen(cli_key_pem));
	ok(kb_kubeconfig_token(kc) == NULL);
	ok(kb_kubeconfig_tls_server_name(kc) == NULL);
	ok(!kb_kubeconfig_has_exec(kc) && !kb_kubeconfig_insecure(kc));
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0);
	kb_kubeconfig_free(kc);

	/* Explicit context from the second file; *-data, token, bare host. */
	kc = load(NULL, env, NULL, "two", 0);
	ok(kc != NULL);
	if (kc != NULL) {
		ok(same(kb_kubeconfig_cluster(kc), "c2"));
		ok(same(kb_kubeconfig_namespace(kc), "ns2"));
		ok(same(kb_kubeconfig_server(kc), "https://b.example:8443"));
		ok(same(kb_kubeconfig_ca_pem(kc, &n), ca_pem) && n == strlen(ca_pem));
		ok(same(kb_kubeconfig_token(kc), "tok-b"));
		ok(kb_kubeconfig_cert_pem(kc, NULL) == NULL);
	}
	kb_kubeconfig_free(kc);

	/* A context of the second file, cluster and user of the first: the
	 * paths are relative to the first file. */
	kc = load(NULL, env, NULL, "three", 0);
	ok(kc != NULL && same(kb_kubeconfig_server(kc), "https://a.example:6443") &&
	    same(kb_kubeconfig_cert_pem(kc, NULL), cli_pem) && kb_kubeconfig_token(kc) == NULL);
	kb_kubeconfig_free(kc);

	/* The second file's current-context when it comes first. */
	snprintf(env, sizeof(env), "%s:%s", path("b/config"), path("a/config"));
	kc = load(NULL, env, NULL, NULL, 0);
	ok(kc != NULL && same(kb_kubeconfig_context(kc), "two"));
	kb_kubeconfig_free(kc);
	kc = load(NULL, env, NULL, "one", 0);
	ok(kc != NULL && same(kb_kubeconfig_cluster(kc), "c2"));
	kb_kubeconfig_free(kc);

	/* --kubeconfig wins over KUBECONFIG; HOME is the last resort. */
	kc = load(path("b/config"), path("a/config"), NULL, NULL, 0);
	ok(kc != NULL && same(kb_kubeconfig_context(kc), "two"));
	kb_kubeconfig_free(kc);
	put("home/.kube/config", a);
	put("home/.kube/ca.crt", ca_pem);
	put("home/.kube/certs/client.crt", cli_pem);
	put("home/.kube/certs/client.key", cli_key_pem);
	kc = load(NULL, "", path("home"), NULL, 0);
	ok(kc != NULL && same(kb_kubeconfig_context(kc), "one") &&
	    same(kb_kubeconfig_cert_pem(kc, NULL), cli_pem));
	kb_kubeconfig_free(kc);

	/* Missing files. */
	ok(load(path("missing"), NULL, NULL, NULL, 0) == NULL && contains(err, path("missing")) &&
	    contains(err, "No such file"));
	snprintf(env, sizeof(env), "%s:%s", path("missing"), path("missing2"));
	ok(load(NULL, env, NULL, NULL, 0) == NULL && contains(err, "none of the files"));
	ok(load(NULL, NULL, path("nohome"), NULL, 0) == NULL &&
	    contains(err, "nohome/.kube/config does not exist"));
	ok(load(NULL, NULL, NULL, NULL, 0) == NULL && contains(err, "no kubeconfig"));

	/* Missing context, cluster, user. */
	ok(load(path("a/config"), NULL, NULL, "nope", 0) == NULL &&
	    contains(err, "context \"nope\" not found"));
	ok(fails("nocur", "current-context: \"\"\ncontexts:\n- name: c\n  context: {cluster: k}\n" CLUSTER,
	    "no current-context: give --context"));
	ok(fails("nocl", "current-context: c\ncontexts:\n- name: c\n  context: {cluster: x}\n",
	    "cluster \"x\" of context \"c\" not found"));
	ok(fails("nouser", HEAD, "user \"u\" of context \"c\" not found"));
	/* A name with line breaks (found by fuzz_kubeconfig) still makes one line. */
	ok(fails("nlname", "current-context: \"a\\nb\\r\"\n" CLUSTER,
	    "context \"a?b?\" not found"));
	free(ca64);
}

static void
test_refusals(void)
{
	struct kb_kubeconfig *kc;
	char yaml[4096];

	/* Bad YAML: one line with the file name and the line. */
	ok(fails("bad", "apiVersion: v1\nclusters:\n- name: x\n   cluster: [\n", path("bad:")));
	ok(contains(err, ":4:"));
	ok(fails("bad2", "clusters:\n  - name: a\n    cluster: {server: x\n", ":4:"));
	ok(fails("list", "- a\n- b\n", "not a kubeconfig"));
	ok(fails("clist", "current-context: c\ncontexts: {c: 1}\n", "contexts: expected a list"));
	ok(fails("dupkey", "current-context: c\ncurrent-context: d\n", "given twice"));
	ok(fails("dupname", HEAD "- name: k\n  cluster: {server: https://x}\nusers:\n- name: u\n",
	    "\"k\" is defined twice"));
	ok(fails("merge", "base: &b {server: https://x}\ncurrent-context: c\n"
	    "contexts:\n- name: c\n  context: {cluster: k}\n"
	    "clusters:\n- name: k\n  cluster:\n    <<: *b\n", ":9: YAML merge keys"));
	ok(fails("nul", HEAD "users:\n- name: u\n  user: {token: \"a\\0b\"}\n", "NUL"));
	ok(fails("noserver", "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
	    "clusters:\n- name: k\n  cluster: {}\n", "cluster \"k\" has no server"));

	/* Users kbridge refuses. */
	snprintf(yaml, sizeof(yaml), HEAD "users:\n- name: u\n  user:\n    auth-provider:\n"
	    "      name: oidc\n      config: {idp-issuer-url: https://x}\n");
	ok(fails("authprov", yaml, "auth-provider oidc is refused"));
	ok(contains(err, "exec credential plugin"));
	snprintf(yaml, sizeof(yaml), HEAD "users:\n- name: u\n  user: {username: a, password: b}\n");
	ok(fails("basic", yaml, "basic authentication) is refused"));
	snprintf(yaml, sizeof(yaml), HEAD "users:\n- name: u\n  user: {token: t, as: admin}\n");
	ok(fails("imp", yaml, "impersonation"));
	snprintf(yaml, sizeof(yaml), HEAD "users:\n- name: u\n  user: {token: \"a b\"}\n");
	ok(fails("tokspace", yaml, "token contains spaces"));
	snprintf(yaml, sizeof(yaml), HEAD "users:\n- name: u\n  user:\n    token: t\n"
	    "    exec: {command: x, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}\n");
	ok(fails("twoauth", yaml, "give only one"));
	snprintf(yaml, sizeof(yaml), HEAD "users:\n- name: u\n  user:\n"
	    "    exec: {command: x, apiVersion: client.authentication.k8s.io/v1alpha1}\n");
	ok(fails("v1alpha1", yaml, "v1alpha1 is not supported"));
	snprintf(yaml, sizeof(yaml), HEAD "users:\n- name: u\n  user:\n"
	    "    exec: {command: x, apiVersion: client.authentication.k8s.io/v1}\n");
	ok(fails("nomode", yaml, "needs interactiveMode"));
	snprintf(yaml, sizeof(yaml), HEAD "users:\n- name: u\n  user:\n"
	    "    exec: {command: x, apiVersion: client.authentication.k8s.io/v1, interactiveMode: Always}\n");
	ok(fails("always", yaml, "without a terminal"));

	/* Client certificates. */
	put("p/c.crt", cli_pem);
	put("p/c.key", cli_key_pem);
	put("p/o.key", other_key_pem);
	ok(fails("p/nokey", HEAD "users:\n- name: u\n  user: {client-certificate: c.crt}\n",
	    "needs its client key"));
	ok(fails("p/mismatch", HEAD "users:\n- name: u\n  user: {client-certificate: c.crt, client-key: o.key}\n",
	    "do not match"));
	ok(fails("p/both", HEAD "users:\n- name: u\n  user: {client-certificate: c.crt, client-certificate-data: eA==, client-key: c.key}\n",
	    "both client-certificate and client-certificate-data"));
	ok(fails("p/nofile", HEAD "users:\n- name: u\n  user: {client-certificate: gone.crt, client-key: c.key}\n",
	    "gone.crt: No such file"));
	ok(fails("p/bad64", ANON "    certificate-authority-data: \"%%%%\"\n", "not valid base64"));
	ok(fails("p/notca", ANON "    certificate-authority: c.key\n", "no PEM certificate"));

	/* Clusters. */
	ok(fails("http", "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
	    "clusters:\n- name: k\n  cluster: {server: \"http://127.0.0.1:8080\"}\n", "is not https"));
	ok(fails("proxy", ANON "    proxy-url: socks5://127.0.0.1:1080\n", "proxy-url is not supported"));
	ok(fails("insecure", ANON "    insecure-skip-tls-verify: true\n", "insecure-skip-tls-verify is refused"));
	ok(fails("insecure2", ANON "    insecure-skip-tls-verify: maybe\n", "not true or false"));
	put("insecure", ANON "    insecure-skip-tls-verify: true\n");
	kc = load(path("insecure"), NULL, NULL, NULL, KB_KC_ALLOW_INSECURE);
	ok(kc != NULL && kb_kubeconfig_insecure(kc) && same(kb_kubeconfig_user(kc), ""));
	kb_kubeconfig_free(kc);

	put("upper", "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\n"
	    "clusters:\n- name: k\n  cluster: {server: \"HTTPS://Api.Example/k8s/\"}\n");
	kc = load(path("upper"), NULL, NULL, NULL, 0);
	ok(kc != NULL && same(kb_kubeconfig_server(kc), "https://Api.Example/k8s"));
	kb_kubeconfig_free(kc);

	/* tls-server-name: the URL names it, CONNECT_TO maps it to the server. */
	put("sni", ANON "    tls-server-name: api.test\n");
	kc = load(path("sni"), NULL, NULL, NULL, 0);
	ok(kc != NULL);
	if (kc != NULL) {
		char *u = kb_kubeconfig_url(kc, "/api");

		ok(same(kb_kubeconfig_tls_server_name(kc), "api.test"));
		ok(same(u, "https://api.test:6443/api"));
		ok(kc->connect_to && same(kc->connect_to->data, "api.test:6443:127.0.0.1:6443"));
		free(u);
	}
	kb_kubeconfig_free(kc);
}

static void
test_token_file(void)
{
	struct kb_kubeconfig *kc;

	put("t/tok", "  first\n");
	put("t/config", HEAD "users:\n- name: u\n  user: {tokenFile: tok}\n");
	kc = load(path("t/config"), NULL, NULL, NULL, 0);
	ok(kc != NULL && same(kb_kubeconfig_token(kc), "first"));
	if (kc == NULL)
		return;
	put("t/tok", "second");
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 && same(kb_kubeconfig_token(kc), "first"));
	kb_kubeconfig_refresh(kc);
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 && same(kb_kubeconfig_token(kc), "second"));
	put("t/tok", "\n");
	kb_kubeconfig_refresh(kc);
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "empty"));
	kb_kubeconfig_free(kc);
	ok(fails("t/gone", HEAD "users:\n- name: u\n  user: {tokenFile: nothere}\n",
	    "nothere: No such file"));
}

/* ---- exec plugins ---- */

static int
runs(void)
{
	char *s = slurp("x/count");
	int n = (int)strlen(s);

	free(s);
	return n;
}

static void
plugin_says(const char *json)
{
	put("x/out.json", json);
}

static char *
cred(const char *tok, const char *expiry)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "{\"apiVersion\":\"client.authentication.k8s.io/v1\","
	    "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s\"%s%s%s}}", tok,
	    expiry ? ",\"expirationTimestamp\":\"" : "", expiry ? expiry : "", expiry ? "\"" : "");
	return buf;
}

static void
test_exec(void)
{
	struct kb_kubeconfig *kc;
	char yaml[2048], *s, *j;
	int n;

	/* The plugin counts its runs, records what it got and prints out.json
	 * (or fails as fail.txt says). */
	put("x/bin/plugin.sh", "#!/bin/sh\n"
	    "d=$(dirname \"$0\")/..\n"
	    "printf x >>\"$d/count\"\n"
	    "printf '%s' \"$KUBERNETES_EXEC_INFO\" >\"$d/info\"\n"
	    "printf '%s %s %s' \"$1\" \"$2\" \"$PLUGIN_ENV\" >\"$d/args\"\n"
	    "if [ -s \"$d/fail.txt\" ]; then cat \"$d/fail.txt\" >&2; exit 3; fi\n"
	    "if [ -s \"$d/sleep\" ]; then exec sleep 10; fi\n"
	    "if [ -s \"$d/big\" ]; then exec head -c 2000000 /dev/zero; fi\n"
	    "cat \"$d/out.json\"\n");
	chmod(path("x/bin/plugin.sh"), 0755);
	put("x/ca.crt", ca_pem);
	snprintf(yaml, sizeof(yaml), HEAD "    certificate-authority: ca.crt\n"
	    "users:\n- name: u\n  user:\n    exec:\n"
	    "      apiVersion: client.authentication.k8s.io/v1\n"
	    "      command: ./bin/plugin.sh\n"
	    "      args: [get-token, \"--x=1 2\"]\n"
	    "      env:\n      - name: PLUGIN_ENV\n        value: from-kubeconfig\n"
	    "      installHint: |\n        install the plugin\n        with care\n"
	    "      provideClusterInfo: true\n"
	    "      interactiveMode: IfAvailable\n");
	put("x/config", yaml);
	kc = load(path("x/config"), NULL, NULL, NULL, 0);
	ok(kc != NULL && kb_kubeconfig_has_exec(kc));
	if (kc == NULL) {
		printf("# %s\n", err);
		return;
	}
	/* The plugin runs only when asked for credentials. */
	ok(runs() == 0 && kb_kubeconfig_token(kc) == NULL);
	plugin_says(cred("tok1", NULL));
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0);
	ok(runs() == 1 && same(kb_kubeconfig_token(kc), "tok1") && kb_kubeconfig_expiry(kc) == 0);
	s = slurp("x/args");
	ok(same(s, "get-token --x=1 2 from-kubeconfig"));
	free(s);
	s = slurp("x/info");
	ok(contains(s, "\"apiVersion\":\"client.authentication.k8s.io/v1\""));
	ok(contains(s, "\"kind\":\"ExecCredential\""));
	ok(contains(s, "\"interactive\":false"));
	ok(contains(s, "\"server\":\"https://127.0.0.1:6443\""));
	j = b64(ca_pem);
	ok(contains(s, j));
	free(j);
	free(s);

	/* Cached: no expiry means until a 401. */
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 && runs() == 1);
	plugin_says(cred("tok2", "2999-01-02T03:04:05.123+01:00"));
	kb_kubeconfig_refresh(kc);
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 && runs() == 2 &&
	    same(kb_kubeconfig_token(kc), "tok2"));
	ok(kb_kubeconfig_expiry(kc) == 32472241445L - 3600);
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 && runs() == 2);

	/* Expired: runs again, each time. */
	plugin_says(cred("tok3", "2020-01-01T00:00:00Z"));
	kb_kubeconfig_refresh(kc);
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 && runs() == 3 &&
	    same(kb_kubeconfig_token(kc), "tok3"));
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 && runs() == 4);

	/* A client certificate from the plugin. */
	{
		cJSON *o = cJSON_CreateObject(), *st;

		cJSON_AddStringToObject(o, "apiVersion", "client.authentication.k8s.io/v1");
		cJSON_AddStringToObject(o, "kind", "ExecCredential");
		st = cJSON_AddObjectToObject(o, "status");
		cJSON_AddStringToObject(st, "clientCertificateData", cli_pem);
		cJSON_AddStringToObject(st, "clientKeyData", cli_key_pem);
		j = cJSON_Print(o);
		plugin_says(j);
		free(j);
		kb_kubeconfig_refresh(kc);
		ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 &&
		    same(kb_kubeconfig_cert_pem(kc, NULL), cli_pem) &&
		    same(kb_kubeconfig_key_pem(kc, NULL), cli_key_pem) &&
		    kb_kubeconfig_token(kc) == NULL);
		cJSON_ReplaceItemInObject(st, "clientKeyData", cJSON_CreateString(other_key_pem));
		j = cJSON_Print(o);
		plugin_says(j);
		free(j);
		cJSON_Delete(o);
		kb_kubeconfig_refresh(kc);
		ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "do not match"));
	}

	/* Failures: one line with the command, stderr's last line, the hint. */
	n = runs();
	put("x/fail.txt", "some progress\nerror: you are not logged in\n\n");
	kb_kubeconfig_refresh(kc);
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && runs() == n + 1);
	/* The relative command is resolved against the kubeconfig's directory. */
	ok(contains(err, path("x/bin/plugin.sh failed (exit 3): error: you are not logged in")));
	ok(contains(err, "; install the plugin with care") && strchr(err, '\n') == NULL);
	/* The failed run did not clear the refresh: the next call tries again. */
	put("x/fail.txt", "");
	plugin_says("not json");
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "printed no JSON"));
	plugin_says("{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\"}}");
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "no ExecCredential"));
	plugin_says("{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{}}");
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "neither"));
	plugin_says(cred("t", "tomorrow"));
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "expirationTimestamp"));
	plugin_says(cred("a\\nb", NULL));
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "control characters"));
	put("x/big", "1");
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "more than 1 MiB"));
	put("x/big", "");
	put("x/sleep", "1");
	kc_exec_timeout_ms = 1000;
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && contains(err, "timed out"));
	kc_exec_timeout_ms = KC_EXEC_TIMEOUT_MS;
	put("x/sleep", "");
	plugin_says(cred("tok5", NULL));
	ok(kb_kubeconfig_auth(kc, err, sizeof(err)) == 0 && same(kb_kubeconfig_token(kc), "tok5"));
	kb_kubeconfig_free(kc);

	/* KB_KC_NO_EXEC: never run. */
	n = runs();
	kc = load(path("x/config"), NULL, NULL, NULL, KB_KC_NO_EXEC);
	ok(kc != NULL && kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 && runs() == n &&
	    contains(err, "not run here"));
	kb_kubeconfig_free(kc);

	/* A plugin that is not installed: PATH lookup for a bare name. */
	put("y/config", HEAD "users:\n- name: u\n  user:\n    exec:\n"
	    "      apiVersion: client.authentication.k8s.io/v1beta1\n"
	    "      command: kb-no-such-plugin\n"
	    "      installHint: apt install kb-no-such-plugin\n");
	kc = load(path("y/config"), NULL, NULL, NULL, 0);
	ok(kc != NULL && kb_kubeconfig_auth(kc, err, sizeof(err)) == -1 &&
	    contains(err, "exec plugin kb-no-such-plugin not found") &&
	    contains(err, "apt install kb-no-such-plugin"));
	kb_kubeconfig_free(kc);
}

/* ---- libcurl against a loopback TLS server ---- */

struct srv {
	SSL_CTX *ctx;
	int fd;
	char req[4096];
	char peer[64];
};

static void *
serve(void *arg)
{
	struct srv *s = arg;
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
	int c = accept(s->fd, NULL, NULL), n, len = 0;
	SSL *ssl;
	X509 *peer;

	if (c < 0)
		return NULL;
	ssl = SSL_new(s->ctx);
	SSL_set_fd(ssl, c);
	if (SSL_accept(ssl) == 1) {
		if ((peer = SSL_get1_peer_certificate(ssl)) != NULL) {
			X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
			    s->peer, sizeof(s->peer));
			X509_free(peer);
		}
		while (len < (int)sizeof(s->req) - 1 && !strstr(s->req, "\r\n\r\n") &&
		    (n = SSL_read(ssl, s->req + len, (int)sizeof(s->req) - 1 - len)) > 0)
			len += n;
		SSL_write(ssl, resp, (int)strlen(resp));
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	close(c);
	return NULL;
}

static size_t
sink(char *p, size_t sz, size_t n, void *u)
{
	(void)p, (void)u;
	return sz * n;
}

/* One request through kb_kubeconfig_curl; the curl result. */
static CURLcode
request(struct kb_kubeconfig *kc, struct srv *s, int need_cert)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	pthread_t th;
	CURL *c;
	CURLcode cc;
	char *url, *u;

	memset(s->req, 0, sizeof(s->req));
	s->peer[0] = '\0';
	SSL_CTX_set_verify(s->ctx, need_cert ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT :
	    SSL_VERIFY_NONE, NULL);
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	bind(s->fd, (struct sockaddr *)&sa, sizeof(sa));
	listen(s->fd, 1);
	getsockname(s->fd, (struct sockaddr *)&sa, &sl);
	pthread_create(&th, NULL, serve, s);
	u = kb_kubeconfig_url(kc, "/version");
	/* The kubeconfig's port is a placeholder: the server's is random. */
	if (asprintf(&url, "%.*s:%d/version", (int)(strrchr(u, ':') - u), u, ntohs(sa.sin_port)) < 0)
		exit(1);
	free(u);
	c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	if (kb_kubeconfig_curl(kc, c, err, sizeof(err)) < 0) {
		printf("# %s\n", err);
		cc = CURLE_FAILED_INIT;
	} else {
		cc = curl_easy_perform(c);
	}
	if (cc != CURLE_OK)
		printf("# curl: %s\n", curl_easy_strerror(cc));
	curl_easy_cleanup(c);
	free(url);
	/* Unblock accept if curl never connected. */
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(th, NULL);
	close(s->fd);
	return cc;
}

static void
test_curl(void)
{
	struct kb_kubeconfig *kc;
	struct srv s = { 0 };
	X509_STORE *st;
	char yaml[4096], *ca64 = b64(ca_pem), *c64 = b64(cli_pem), *k64 = b64(cli_key_pem);
	curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

	ok(v->version_num >= 0x074d00);	/* 7.77: CURLOPT_CAINFO_BLOB */
	s.ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(s.ctx, srv_x);
	SSL_CTX_use_PrivateKey(s.ctx, srv_key);
	st = SSL_CTX_get_cert_store(s.ctx);
	X509_STORE_add_cert(st, ca_x);

	/* Client certificate and CA from -data, nothing on disk. */
	snprintf(yaml, sizeof(yaml), "current-context: c\ncontexts:\n- name: c\n"
	    "  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster:\n"
	    "    server: https://127.0.0.1:1\n    certificate-authority-data: %s\n"
	    "users:\n- name: u\n  user:\n    client-certificate-data: %s\n"
	    "    client-key-data: %s\n", ca64, c64, k64);
	kc = kb_kubeconfig_load_buf(yaml, strlen(yaml), "mem", NULL, NULL, 0, err, sizeof(err));
	ok(kc != NULL);
	if (kc != NULL) {
		ok(request(kc, &s, 1) == CURLE_OK && same(s.peer, "alice"));
		ok(strstr(s.req, "Authorization") == NULL);
	}
	kb_kubeconfig_free(kc);

	/* A bearer token, and tls-server-name (the certificate names api.test). */
	snprintf(yaml, sizeof(yaml), "current-context: c\ncontexts:\n- name: c\n"
	    "  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster:\n"
	    "    server: https://127.0.0.1:1\n    tls-server-name: api.test\n"
	    "    certificate-authority-data: %s\n"
	    "users:\n- name: u\n  user: {token: sekret.tok-en}\n", ca64);
	kc = kb_kubeconfig_load_buf(yaml, strlen(yaml), "mem", NULL, NULL, 0, err, sizeof(err));
	ok(kc != NULL);
	if (kc != NULL) {
		/* CONNECT_TO carries the placeholder port: point it at the server. */
		curl_slist_free_all(kc->connect_to);
		kc->connect_to = curl_slist_append(NULL, "api.test::127.0.0.1:");
		ok(request(kc, &s, 0) == CURLE_OK);
		ok(contains(s.req, "\r\nAuthorization: Bearer sekret.tok-en\r\n"));
		ok(contains(s.req, "GET /version HTTP/1.1\r\nHost: api.test:"));
	}
	kb_kubeconfig_free(kc);

	/* Only the kubeconfig's CA: a server it did not sign fails. */
	snprintf(yaml, sizeof(yaml), "current-context: c\ncontexts:\n- name: c\n"
	    "  context: {cluster: k}\nclusters:\n- name: k\n  cluster:\n"
	    "    server: https://127.0.0.1:1\n    certificate-authority-data: %s\n", c64);
	kc = kb_kubeconfig_load_buf(yaml, strlen(yaml), "mem", NULL, NULL, 0, err, sizeof(err));
	ok(kc != NULL && request(kc, &s, 0) == CURLE_PEER_FAILED_VERIFICATION);
	kb_kubeconfig_free(kc);

	SSL_CTX_free(s.ctx);
	free(ca64);
	free(c64);
	free(k64);
}

static int
rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

/* The context's kbridge extension: never-proxy and also-proxy ranges;
 * other tools' extensions are left alone; a malformed one is refused. */
static void
test_extension(void)
{
	struct kb_kubeconfig *kc;
	const char *const *v;

	put("ext/config", "current-context: c\n"
	    "contexts:\n"
	    "- name: c\n"
	    "  context:\n"
	    "    cluster: k\n"
	    "    extensions:\n"
	    "    - name: telepresence.io\n"
	    "      extension: {never-proxy: [1.2.3.0/24], other: x}\n"
	    "    - name: kbridge\n"
	    "      extension:\n"
	    "        never-proxy: [10.96.200.0/24, 10.244.9.0/24]\n"
	    "        also-proxy:\n"
	    "        - 172.20.0.0/16\n"
	    "        virtual-subnet: 100.100.0.0/16\n"
	    "- name: plain\n"
	    "  context: {cluster: k}\n" CLUSTER);
	kc = load(path("ext/config"), NULL, NULL, NULL, 0);
	ok(kc != NULL);
	if (kc != NULL) {
		ok(kb_kubeconfig_ranges(kc, 0, &v) == 2 && same(v[0], "10.96.200.0/24") &&
		    same(v[1], "10.244.9.0/24"));
		ok(kb_kubeconfig_ranges(kc, 1, &v) == 1 && same(v[0], "172.20.0.0/16"));
		ok(same(kb_kubeconfig_virtual_subnet(kc), "100.100.0.0/16"));
		kb_kubeconfig_free(kc);
	} else {
		printf("# %s\n", err);
	}
	kc = load(path("ext/config"), NULL, NULL, "plain", 0);
	ok(kc != NULL && kb_kubeconfig_ranges(kc, 0, &v) == 0 &&
	    kb_kubeconfig_ranges(kc, 1, &v) == 0 && kb_kubeconfig_virtual_subnet(kc) == NULL);
	kb_kubeconfig_free(kc);
	ok(fails("ext/bad1", "current-context: c\ncontexts:\n- name: c\n  context:\n"
	    "    cluster: k\n    extensions: {name: kbridge}\n" CLUSTER,
	    "extensions: expected a list"));
	ok(fails("ext/bad2", "current-context: c\ncontexts:\n- name: c\n  context:\n"
	    "    cluster: k\n    extensions:\n    - name: kbridge\n"
	    "      extension: {never-proxy: 10.0.0.0/8}\n" CLUSTER,
	    "extension kbridge: never-proxy: expected a list of CIDR ranges"));
	ok(fails("ext/bad3", "current-context: c\ncontexts:\n- name: c\n  context:\n"
	    "    cluster: k\n    extensions:\n    - name: kbridge\n"
	    "      extension: {also-proxy: [[10.0.0.0/8]]}\n" CLUSTER,
	    "also-proxy: expected a list of CIDR ranges"));
	ok(fails("ext/bad4", "current-context: c\ncontexts:\n- name: c\n  context:\n"
	    "    cluster: k\n    extensions:\n    - name: kbridge\n"
	    "      extension: [never-proxy]\n" CLUSTER, "expected a mapping"));
	ok(fails("ext/bad5", "current-context: c\ncontexts:\n- name: c\n  context:\n"
	    "    cluster: k\n    extensions:\n    - name: kbridge\n"
	    "      extension: {virtual-subnet: [off]}\n" CLUSTER,
	    "virtual-subnet: expected a string"));
}

int
main(void)
{
	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	make_certs();
	test_merge();
	test_refusals();
	test_token_file();
	test_exec();
	test_curl();
	test_extension();
	nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	X509_free(ca_x);
	X509_free(srv_x);
	X509_free(cli_x);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(srv_key);
	EVP_PKEY_free(cli_key);
	EVP_PKEY_free(other_key);
	free(ca_pem);
	free(srv_pem);
	free(cli_pem);
	free(srv_key_pem);
	free(cli_key_pem);
	free(other_key_pem);
	curl_global_cleanup();
	return ok_done();
}
