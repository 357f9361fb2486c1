/* Identities end to end: init a cluster CA, issue profiles, and check that
 * real TLS 1.3 handshakes accept exactly the right peers. */
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ok.h"

#include "../../agent/identity.c"

static char root[] = "/tmp/kb-test-identity.XXXXXX";
/* The workload the server saw in the last handshake's client certificate. */
static char srv_workload[140];

static int
run(int (*cmd)(int, char **), ...)
{
	char *argv[16];
	va_list ap;
	int argc = 0;

	va_start(ap, cmd);
	while (argc < 15 && (argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	fflush(stdout);
	return cmd(argc, argv);
}

static char *
path(const char *a, const char *b)
{
	static char buf[8][PATH_MAX];
	static int n;
	char *p = buf[n++ % 8];

	snprintf(p, PATH_MAX, "%s/%s", a, b);
	return p;
}

static int
file_mode(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static char *
slurp(const char *p)
{
	char *s = kb_read_file(p, 1 << 20, NULL);

	if (s == NULL) {
		fprintf(stderr, "cannot read %s\n", p);
		exit(1);
	}
	return s;
}

static int
step(SSL *ssl, int *done, const char *side, char *why, size_t whylen)
{
	char e[512];
	int r;

	if (*done)
		return 0;
	if ((r = SSL_do_handshake(ssl)) == 1) {
		*done = 1;
		return 0;
	}
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		snprintf(why, whylen, "%s: %s", side, kb_tls_errstr(e, sizeof(e)));
		return -1;
	}
}

/* A complete handshake over a socketpair. 0 when both sides finish, with the
 * identity each side sees; -1 with the first side's error otherwise. */
static int
handshake(SSL_CTX *sctx, SSL_CTX *cctx, char *srv_sees, char *cli_sees, char *why,
    size_t whylen)
{
	char name[128], role[128];
	SSL *s = NULL, *c = NULL;
	int sv[2], sdone = 0, cdone = 0, i, rc = -1;

	snprintf(why, whylen, "no progress");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	s = SSL_new(sctx);
	c = SSL_new(cctx);
	SSL_set_fd(s, sv[0]);
	SSL_set_fd(c, sv[1]);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	for (i = 0; i < 1000 && !(sdone && cdone); i++) {
		if (step(c, &cdone, "client", why, whylen) < 0 ||
		    step(s, &sdone, "server", why, whylen) < 0)
			goto done;
	}
	if (!(sdone && cdone))
		goto done;
	if (SSL_version(s) != TLS1_3_VERSION) {
		snprintf(why, whylen, "not TLS 1.3");
		goto done;
	}
	srv_sees[0] = cli_sees[0] = '\0';
	if (kb_tls_peer_identity(s, name, sizeof(name), role, sizeof(role)) == 0)
		sprintf(srv_sees, "%s/%s", name, role);
	if (kb_tls_peer_workload(s, srv_workload, sizeof(srv_workload)) < 0)
		snprintf(srv_workload, sizeof(srv_workload), "(error)");
	if (kb_tls_peer_identity(c, name, sizeof(name), role, sizeof(role)) == 0)
		sprintf(cli_sees, "%s/%s", name, role);
	rc = 0;
done:
	SSL_free(s);
	SSL_free(c);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

/* A profile's JSON with one field changed (value NULL: removed). */
static char *
edit_profile(const char *json, const char *field, const char *value)
{
	cJSON *o = cJSON_Parse(json);
	char *s;

	cJSON_DeleteItemFromObjectCaseSensitive(o, field);
	if (value)
		cJSON_AddStringToObject(o, field, value);
	s = cJSON_Print(o);
	cJSON_Delete(o);
	return s;
}

static int
parse_fails_with(const char *json, const char *needle)
{
	struct kb_profile p;
	char err[256] = "";
	int rc = kb_profile_parse(json, &p, err, sizeof(err));

	if (rc == 0) {
		kb_profile_free(&p);
		return 0;
	}
	printf("# %s\n", err);
	return strstr(err, needle) != NULL && strchr(err, '\n') == NULL;
}

static SSL_CTX *
server_from_state(const char *dir)
{
	char *ca = slurp(path(dir, "ca.crt"));
	char *crt = slurp(path(dir, "manager.crt"));
	char *key = slurp(path(dir, "manager.key"));
	char err[256];
	SSL_CTX *ctx = kb_tls_server_ctx(ca, crt, key, err, sizeof(err));

	if (ctx == NULL)
		printf("# server ctx: %s\n", err);
	free(ca);
	free(crt);
	free(key);
	return ctx;
}

static SSL_CTX *
client_from_profile(const struct kb_profile *p)
{
	char err[256];
	SSL_CTX *ctx = kb_tls_client_ctx(p->ca_pem, p->cert_pem, p->key_pem, err, sizeof(err));

	if (ctx == NULL)
		printf("# client ctx: %s\n", err);
	return ctx;
}

/* A leaf signed by the CA in dir with any role/EKU combination, as PEMs. */
static void
forge(const char *dir, const char *o, const char *eku, char **crt, char **keyp)
{
	char *ca_text = slurp(path(dir, "ca.crt")), *ca_keytext = slurp(path(dir, "ca.key"));
	BIO *b1 = BIO_new_mem_buf(ca_text, -1), *b2 = BIO_new_mem_buf(ca_keytext, -1);
	X509 *ca = PEM_read_bio_X509(b1, NULL, NULL, NULL);
	EVP_PKEY *ca_key = PEM_read_bio_PrivateKey(b2, NULL, NULL, NULL);
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct certspec spec = { .cn = "forged", .o = o, .days = 1, .eku = eku };
	char err[256];
	X509 *x = make_cert(&spec, key, ca, ca_key, err, sizeof(err));

	*crt = kb_cert_pem(x);
	*keyp = kb_key_pem(key);
	X509_free(x);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	X509_free(ca);
	BIO_free(b1);
	BIO_free(b2);
	free(ca_text);
	free(ca_keytext);
}

static int
rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void
test_init(const char *a, const char *b)
{
	char *ca1, *ca2, *cfg;

	ok(run(cmd_init, "init", "--help", NULL) == 0);
	ok(run(cmd_init, "init", "--state-dir", a, NULL) == 2);
	ok(run(cmd_init, "init", "--state-dir", a, "--address", "nocolon", NULL) == 2);
	ok(run(cmd_init, "init", "--state-dir", a, "--address", "a,DNS:evil:1", NULL) == 2);
	ok(run(cmd_init, "init", "--state-dir", a, "--address", "a,b:1", NULL) == 2);
	ok(run(cmd_init, "init", "--bogus", NULL) == 2);
	ok(run(cmd_init, "init", "--state-dir", NULL) == 2);

	ok(run(cmd_init, "init", "--state-dir", a, "--address", "127.0.0.1:7443", NULL) == 0);
	ok(file_mode(a) == 0700);
	ok(file_mode(path(a, "ca.key")) == 0600);
	ok(file_mode(path(a, "ca.crt")) == 0644);
	ok(file_mode(path(a, "manager.key")) == 0600);
	ok(file_mode(path(a, "manager.crt")) == 0644);
	ok(file_mode(path(a, "config.json")) == 0644);
	cfg = slurp(path(a, "config.json"));
	ok(strstr(cfg, "\"address\"") && strstr(cfg, "\"127.0.0.1:7443\""));
	free(cfg);

	/* Refuses to replace the CA by accident, and leaves it untouched. */
	ca1 = slurp(path(a, "ca.crt"));
	ok(run(cmd_init, "init", "--state-dir", a, "--address", "127.0.0.1:7443", NULL) == 1);
	ca2 = slurp(path(a, "ca.crt"));
	ok(strcmp(ca1, ca2) == 0);
	free(ca2);
	ok(run(cmd_init, "init", "--force", "--state-dir", a, "--address", "127.0.0.1:7443",
	    NULL) == 0);
	ca2 = slurp(path(a, "ca.crt"));
	ok(strcmp(ca1, ca2) != 0);
	free(ca1);
	free(ca2);

	ok(run(cmd_init, "init", "--state-dir", b, "--address", "manager.example:443", NULL) == 0);
}

static void
test_issue(const char *dir, const char *a, const char *b)
{
	char name63[64], name64[65];
	struct kb_profile p, q;
	char err[256], *json;

	ok(run(cmd_issue, "issue", "--help", NULL) == 0);
	ok(run(cmd_issue, "issue", "--state-dir", a, "--name", "alice", NULL) == 2);
	ok(run(cmd_issue, "issue", "--state-dir", path(dir, "nothing"), "--name", "alice",
	    "--out", path(dir, "x.json"), NULL) == 1);

	ok(run(cmd_issue, "issue", "--state-dir", a, "--name", "alice",
	    "--out", path(dir, "alice.json"), NULL) == 0);
	ok(file_mode(path(dir, "alice.json")) == 0600);
	/* A sidecar identity is bound to one workload, and only with --sidecar. */
	ok(run(cmd_issue, "issue", "--state-dir", a, "--name", "web.default", "--sidecar",
	    "--out", path(dir, "web.json"), NULL) == 2);
	ok(run(cmd_issue, "issue", "--state-dir", a, "--name", "alice", "--workload", "web",
	    "--out", path(dir, "web.json"), NULL) == 2);
	ok(run(cmd_issue, "issue", "--state-dir", a, "--sidecar", "--workload", "Web",
	    "--out", path(dir, "web.json"), NULL) == 2);
	ok(run(cmd_issue, "issue", "--state-dir", a, "--sidecar", "--workload", "web",
	    "--namespace", "a.b", "--out", path(dir, "web.json"), NULL) == 2);
	ok(access(path(dir, "web.json"), F_OK) < 0);
	ok(run(cmd_issue, "issue", "--state-dir", a, "--sidecar", "--workload", "web",
	    "--out", path(dir, "web.json"), NULL) == 0);
	ok(run(cmd_issue, "issue", "--state-dir", a, "--sidecar", "--workload", "echo",
	    "--namespace", "shop", "--name", "echo-1", "--out", path(dir, "echo.json"), NULL) == 0);
	ok(file_mode(path(dir, "web.json")) == 0600);
	ok(run(cmd_issue, "issue", "--state-dir", b, "--name", "mallory",
	    "--out", path(dir, "mallory.json"), NULL) == 0);

	memset(name63, 'a', 63);
	name63[63] = '\0';
	memset(name64, 'a', 64);
	name64[64] = '\0';
	ok(kb_identity_name(name63));
	ok(kb_identity_name("a") && kb_identity_name("0x") && kb_identity_name("bob_1.dev-2"));
	ok(!kb_identity_name(name64));
	ok(!kb_identity_name(""));
	ok(!kb_identity_name("-bob") && !kb_identity_name(".bob") && !kb_identity_name("_bob"));
	ok(!kb_identity_name("Bob") && !kb_identity_name("a/b") && !kb_identity_name("a b"));
	ok(run(cmd_issue, "issue", "--state-dir", a, "--name", "../evil",
	    "--out", path(dir, "evil.json"), NULL) == 2);
	ok(run(cmd_issue, "issue", "--state-dir", a, "--name", name64,
	    "--out", path(dir, "evil.json"), NULL) == 2);
	ok(access(path(dir, "evil.json"), F_OK) < 0);

	ok(kb_profile_load(path(dir, "alice.json"), &p, err, sizeof(err)) == 0);
	ok(p.name && strcmp(p.name, "alice") == 0);
	ok(p.role && strcmp(p.role, KB_ROLE_USER) == 0);
	ok(p.manager && strcmp(p.manager, "127.0.0.1:7443") == 0);
	json = kb_profile_to_json(&p);
	ok(json && kb_profile_parse(json, &q, err, sizeof(err)) == 0);
	ok(strcmp(p.manager, q.manager) == 0 && strcmp(p.name, q.name) == 0 &&
	    strcmp(p.role, q.role) == 0 && strcmp(p.ca_pem, q.ca_pem) == 0 &&
	    strcmp(p.cert_pem, q.cert_pem) == 0 && strcmp(p.key_pem, q.key_pem) == 0);
	free(json);
	kb_profile_free(&q);
	kb_profile_free(&p);

	ok(kb_profile_load(path(dir, "web.json"), &p, err, sizeof(err)) == 0);
	ok(p.role && strcmp(p.role, KB_ROLE_SIDECAR) == 0);
	ok(p.name && strcmp(p.name, "web.default") == 0);
	kb_profile_free(&p);
	ok(kb_profile_load(path(dir, "mallory.json"), &p, err, sizeof(err)) == 0);
	ok(p.manager && strcmp(p.manager, "manager.example:443") == 0);
	kb_profile_free(&p);
}

static void
test_profile_errors(const char *dir)
{
	struct kb_profile p, other;
	char err[256], *good, *bad;

	ok(kb_profile_load(path(dir, "missing.json"), &p, err, sizeof(err)) < 0);
	printf("# %s\n", err);
	ok(strstr(err, "missing.json: cannot read: No such file or directory") != NULL);

	ok(kb_write_file(path(dir, "corrupt.json"), "{\"manager\":", 11, 0600) == 0);
	ok(kb_profile_load(path(dir, "corrupt.json"), &p, err, sizeof(err)) < 0);
	printf("# %s\n", err);
	ok(strstr(err, "corrupt.json: not valid JSON") != NULL);
	ok(p.manager == NULL && p.key_pem == NULL);

	/* Too open a profile only warns. */
	ok(chmod(path(dir, "web.json"), 0644) == 0);
	ok(kb_profile_load(path(dir, "web.json"), &p, err, sizeof(err)) == 0);
	kb_profile_free(&p);
	ok(chmod(path(dir, "web.json"), 0600) == 0);

	good = slurp(path(dir, "alice.json"));
	ok(parse_fails_with("[1,2]", "not valid JSON"));
	bad = edit_profile(good, "key", NULL);
	ok(parse_fails_with(bad, "missing field \"key\""));
	free(bad);
	bad = edit_profile(good, "name", "");
	ok(parse_fails_with(bad, "field \"name\" is empty"));
	free(bad);
	bad = edit_profile(good, "cert", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
	ok(parse_fails_with(bad, "field \"cert\" is not a PEM certificate"));
	free(bad);
	bad = edit_profile(good, "ca", "hello");
	ok(parse_fails_with(bad, "field \"ca\" is not a PEM certificate"));
	free(bad);
	bad = edit_profile(good, "key", "not a key");
	ok(parse_fails_with(bad, "field \"key\" is not"));
	free(bad);
	bad = edit_profile(good, "manager", "example.com");
	ok(parse_fails_with(bad, "field \"manager\" is not HOST:PORT"));
	free(bad);
	bad = edit_profile(good, "role", KB_ROLE_MANAGER);
	ok(parse_fails_with(bad, "field \"role\""));
	free(bad);

	ok(kb_profile_load(path(dir, "web.json"), &other, err, sizeof(err)) == 0);
	bad = edit_profile(good, "key", other.key_pem);
	ok(parse_fails_with(bad, "does not match"));
	free(bad);
	kb_profile_free(&other);

	{
		cJSON *o = cJSON_Parse(good);

		cJSON_ReplaceItemInObjectCaseSensitive(o, "name", cJSON_CreateNumber(3));
		bad = cJSON_Print(o);
		cJSON_Delete(o);
		ok(parse_fails_with(bad, "field \"name\" is not a string"));
		free(bad);
	}
	free(good);
}

static void
test_tls(const char *dir, const char *a, const char *b)
{
	struct kb_profile alice, web, mallory;
	SSL_CTX *sctx, *cctx, *bad;
	char s_sees[300], c_sees[300], why[512], err[256];
	char *crt, *key, *ca;

	ok(kb_profile_load(path(dir, "alice.json"), &alice, err, sizeof(err)) == 0);
	ok(kb_profile_load(path(dir, "web.json"), &web, err, sizeof(err)) == 0);
	ok(kb_profile_load(path(dir, "mallory.json"), &mallory, err, sizeof(err)) == 0);
	ok((sctx = server_from_state(a)) != NULL);
	ok((cctx = client_from_profile(&alice)) != NULL);

	ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) == 0);
	printf("# server sees %s, client sees %s\n", s_sees, c_sees);
	ok(strcmp(s_sees, "alice/" KB_ROLE_USER) == 0);
	ok(strcmp(c_sees, KB_ROLE_MANAGER "/" KB_ROLE_MANAGER) == 0);
	SSL_CTX_free(cctx);

	ok(srv_workload[0] == '\0');
	ok((cctx = client_from_profile(&web)) != NULL);
	ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) == 0);
	ok(strcmp(s_sees, "web.default/" KB_ROLE_SIDECAR) == 0);
	/* The manager reads the bound workload from the verified certificate. */
	ok(strcmp(srv_workload, "web.default") == 0);
	SSL_CTX_free(cctx);
	{
		struct kb_profile echo;

		ok(kb_profile_load(path(dir, "echo.json"), &echo, err, sizeof(err)) == 0);
		ok((cctx = client_from_profile(&echo)) != NULL);
		ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) == 0);
		printf("# echo sidecar: %s, workload %s\n", s_sees, srv_workload);
		ok(strcmp(s_sees, "echo-1/" KB_ROLE_SIDECAR) == 0);
		ok(strcmp(srv_workload, "echo.shop") == 0);
		SSL_CTX_free(cctx);
		kb_profile_free(&echo);
	}
	/* A sidecar certificate of before (no workload): "" for the manager,
	 * which refuses it (agent/intercepts.c). */
	forge(a, KB_ROLE_SIDECAR, "clientAuth", &crt, &key);
	ok((cctx = kb_tls_client_ctx(alice.ca_pem, crt, key, err, sizeof(err))) != NULL);
	ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) == 0);
	ok(strcmp(s_sees, "forged/" KB_ROLE_SIDECAR) == 0 && srv_workload[0] == '\0');
	SSL_CTX_free(cctx);
	free(crt);
	kb_free_secret(key);

	/* A client with no certificate at all. */
	cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) < 0);
	printf("# no client cert: %s\n", why);
	ok(strncmp(why, "server:", 7) == 0);
	SSL_CTX_free(cctx);

	/* A client that trusts our manager but holds a certificate of another CA. */
	ok((cctx = kb_tls_client_ctx(alice.ca_pem, mallory.cert_pem, mallory.key_pem, err,
	    sizeof(err))) != NULL);
	ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) < 0);
	printf("# foreign CA client: %s\n", why);
	ok(strncmp(why, "server:", 7) == 0);
	SSL_CTX_free(cctx);

	/* The other cluster's profile does not trust our manager either. */
	ok((cctx = client_from_profile(&mallory)) != NULL);
	ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) < 0);
	printf("# foreign CA server: %s\n", why);
	ok(strncmp(why, "client:", 7) == 0);
	SSL_CTX_free(cctx);

	/* A manager certificate presented by a client (wrong purpose). */
	crt = slurp(path(a, "manager.crt"));
	key = slurp(path(a, "manager.key"));
	ok((cctx = kb_tls_client_ctx(alice.ca_pem, crt, key, err, sizeof(err))) != NULL);
	ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) < 0);
	printf("# manager cert as client: %s\n", why);
	ok(strncmp(why, "server:", 7) == 0);
	SSL_CTX_free(cctx);
	free(crt);
	free(key);

	/* A client certificate for TLS clients but with the manager's role. */
	forge(a, KB_ROLE_MANAGER, "clientAuth", &crt, &key);
	ok((cctx = kb_tls_client_ctx(alice.ca_pem, crt, key, err, sizeof(err))) != NULL);
	ok(handshake(sctx, cctx, s_sees, c_sees, why, sizeof(why)) < 0);
	printf("# manager role as client: %s\n", why);
	ok(strncmp(why, "server:", 7) == 0 && strstr(why, "role") != NULL);
	SSL_CTX_free(cctx);
	free(crt);
	kb_free_secret(key);

	/* A "manager" serving a user's certificate (wrong purpose). */
	ok((bad = kb_tls_server_ctx(alice.ca_pem, alice.cert_pem, alice.key_pem, err,
	    sizeof(err))) != NULL);
	ok((cctx = client_from_profile(&web)) != NULL);
	ok(handshake(bad, cctx, s_sees, c_sees, why, sizeof(why)) < 0);
	printf("# user cert as server: %s\n", why);
	ok(strncmp(why, "client:", 7) == 0);
	SSL_CTX_free(bad);

	/* A server certificate with a user's role: only the role check stops it. */
	forge(a, KB_ROLE_USER, "serverAuth", &crt, &key);
	ok((bad = kb_tls_server_ctx(alice.ca_pem, crt, key, err, sizeof(err))) != NULL);
	ok(handshake(bad, cctx, s_sees, c_sees, why, sizeof(why)) < 0);
	printf("# user role as server: %s\n", why);
	ok(strncmp(why, "client:", 7) == 0 && strstr(why, "role") != NULL);
	SSL_CTX_free(bad);
	SSL_CTX_free(cctx);
	free(crt);
	kb_free_secret(key);

	/* Context construction errors. */
	ok(kb_tls_server_ctx("junk", alice.cert_pem, alice.key_pem, err, sizeof(err)) == NULL);
	printf("# %s\n", err);
	ok(strstr(err, "CA") != NULL);
	ok(kb_tls_client_ctx(alice.ca_pem, "junk", alice.key_pem, err, sizeof(err)) == NULL);
	printf("# %s\n", err);
	ok(strstr(err, "certificate") != NULL);
	ok(kb_tls_client_ctx(alice.ca_pem, alice.cert_pem, "junk", err, sizeof(err)) == NULL);
	printf("# %s\n", err);
	ok(strstr(err, "key") != NULL);
	ok(kb_tls_client_ctx(alice.ca_pem, alice.cert_pem, web.key_pem, err, sizeof(err)) == NULL);
	printf("# %s\n", err);
	ok(strstr(err, "does not match") != NULL);
	ok(ERR_peek_error() == 0);

	ca = slurp(path(b, "ca.crt"));
	ok(strcmp(ca, mallory.ca_pem) == 0);
	free(ca);
	SSL_CTX_free(sctx);
	kb_profile_free(&alice);
	kb_profile_free(&web);
	kb_profile_free(&mallory);
}

int
main(void)
{
	char a[PATH_MAX], b[PATH_MAX];

	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(root) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(a, sizeof(a), "%s/cluster-a", root);
	snprintf(b, sizeof(b), "%s/cluster-b", root);

	test_init(a, b);
	test_issue(root, a, b);
	test_profile_errors(root);
	test_tls(root, a, b);

	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return ok_done();
}
