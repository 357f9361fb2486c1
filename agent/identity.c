/* kbridge-agent init and user: the cluster CA, the manager's certificate and
 * client profiles, made with OpenSSL and written mode 0600 (keys never leave
 * the state directory except inside a profile). */
#include "identity.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "profile.h"
#include "tls.h"
#include "util.h"

#define CA_DAYS 3650
#define MANAGER_DAYS 730
#define CLIENT_DAYS 365
/* Back-date notBefore so a peer whose clock is a little behind accepts it. */
#define CLOCK_SKEW_SECONDS 300
#define STATE_FILE_MAX (256 * 1024)

struct certspec {
	const char *cn;
	const char *o;
	int days;
	long seconds;    /* leaf only, optional: a lifetime in seconds instead of days */
	int ca;          /* a CA certificate rather than a TLS leaf */
	const char *eku; /* leaf only: "serverAuth" or "clientAuth" */
	const char *san; /* leaf only, optional: "IP:..." or "DNS:..." */
	const char *ou;  /* optional: a sidecar's workload, "NAME.NAMESPACE" */
};

static int
complain(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("kbridge-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

static int
bad_option(const char *cmd, int c, char **argv)
{
	const char *opt = argv[optind - 1];

	if (c == ':')
		return complain(2, "%s: option '%s' needs a value", cmd, opt);
	if (optopt)
		return complain(2, "%s: unknown option '-%c' (try --help)", cmd, optopt);
	return complain(2, "%s: unknown option '%s' (try --help)", cmd, opt);
}

static const char *
sslerr(void)
{
	static char buf[256];

	return kb_tls_errstr(buf, sizeof(buf));
}

static int
add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *ext;
	int ok;

	if ((ext = X509V3_EXT_conf_nid(NULL, v3, nid, value)) == NULL)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* A certificate for key; self-signed when issuer is NULL. */
static X509 *
make_cert(const struct certspec *cs, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
    char *err, size_t errlen)
{
	unsigned char serial[16];
	X509 *x = NULL;
	X509_NAME *subj;
	X509V3_CTX v3;
	BIGNUM *bn = NULL;
	int ok = 0;

	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3))
		goto done;
	if (RAND_bytes(serial, sizeof(serial)) != 1 ||
	    (bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		goto done;
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -CLOCK_SKEW_SECONDS) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), cs->seconds ? 0 : cs->days,
	    cs->seconds, NULL))
		goto done;
	subj = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_NID(subj, NID_organizationName, MBSTRING_UTF8,
	    (const unsigned char *)cs->o, -1, -1, 0) ||
	    !X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)cs->cn, -1, -1, 0) ||
	    (cs->ou && !X509_NAME_add_entry_by_NID(subj, NID_organizationalUnitName,
	    MBSTRING_UTF8, (const unsigned char *)cs->ou, -1, -1, 0)))
		goto done;
	if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subj) ||
	    !X509_set_pubkey(x, key))
		goto done;

	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	if (cs->ca) {
		if (add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
		    add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
		    add_ext(x, &v3, NID_subject_key_identifier, "hash") < 0)
			goto done;
	} else {
		if (add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
		    add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") < 0 ||
		    add_ext(x, &v3, NID_ext_key_usage, cs->eku) < 0 ||
		    add_ext(x, &v3, NID_subject_key_identifier, "hash") < 0 ||
		    add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") < 0)
			goto done;
		if (cs->san && add_ext(x, &v3, NID_subject_alt_name, cs->san) < 0)
			goto done;
	}
	if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
		goto done;
	ok = 1;
done:
	BN_free(bn);
	if (!ok) {
		snprintf(err, errlen, "cannot create certificate %s: %s", cs->cn, sslerr());
		X509_free(x);
		x = NULL;
	}
	return x;
}

static int
join(char *buf, size_t len, const char *dir, const char *file)
{
	if ((size_t)snprintf(buf, len, "%s/%s", dir, file) >= len)
		return complain(-1, "path %s/%s is too long", dir, file);
	return 0;
}

static int
write_state(const char *dir, const char *file, const char *data, int mode)
{
	char path[PATH_MAX];

	if (join(path, sizeof(path), dir, file) < 0)
		return -1;
	if (kb_write_file(path, data, strlen(data), mode) < 0)
		return complain(-1, "cannot write %s: %s", path, strerror(errno));
	return 0;
}

/* Read a state file; complains and returns NULL on failure. */
static char *
read_state(const char *dir, const char *file)
{
	char path[PATH_MAX], *s;

	if (join(path, sizeof(path), dir, file) < 0)
		return NULL;
	if ((s = kb_read_file(path, STATE_FILE_MAX, NULL)) == NULL)
		complain(1, "cannot read %s: %s%s", path, strerror(errno),
		    errno == ENOENT ? " (run 'kbridge-agent init' first)" : "");
	return s;
}

static int
state_exists(const char *dir, const char *file)
{
	char path[PATH_MAX];
	struct stat st;

	return join(path, sizeof(path), dir, file) == 0 && lstat(path, &st) == 0;
}

/* A host name or address that goes into a subjectAltName; the character set
 * also keeps it from injecting more names into the extension string. */
static int
san_for_host(const char *host, char *san, size_t len)
{
	unsigned char a[sizeof(struct in6_addr)];
	const char *c;

	if (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1) {
		snprintf(san, len, "IP:%s", host);
		return 0;
	}
	if (strlen(host) > 253 || host[0] == '.' || host[0] == '-')
		return -1;
	for (c = host; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		    (*c >= '0' && *c <= '9') || *c == '.' || *c == '-'))
			return -1;
	snprintf(san, len, "DNS:%s", host);
	return 0;
}

static void
init_usage(FILE *f)
{
	fprintf(f,
	    "usage: kbridge-agent init --state-dir DIR --address HOST:PORT [--force]\n"
	    "\n"
	    "Create the cluster CA and the manager certificate in DIR.\n"
	    "\n"
	    "  --state-dir DIR      where the CA, the manager key and config.json live\n"
	    "                       (created with mode 0700 if missing)\n"
	    "  --address HOST:PORT  where clients reach the manager; goes into every\n"
	    "                       profile and the manager certificate's names\n"
	    "  --force              replace an existing CA (every issued profile stops\n"
	    "                       working)\n");
}

int
cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "address", required_argument, NULL, 'a' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *address = NULL;
	char host[256], san[300], err[512];
	EVP_PKEY *ca_key = NULL, *mgr_key = NULL;
	X509 *ca = NULL, *mgr = NULL;
	char *ca_crt = NULL, *ca_keypem = NULL, *mgr_crt = NULL, *mgr_keypem = NULL;
	char *config = NULL;
	cJSON *cfg = NULL;
	struct stat st;
	uint16_t port;
	int c, force = 0, rc = 1;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:a:fh", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 'a':
			address = optarg;
			break;
		case 'f':
			force = 1;
			break;
		case 'h':
			init_usage(stdout);
			return 0;
		default:
			return bad_option("init", c, argv);
		}
	}
	if (optind < argc)
		return complain(2, "init: unexpected argument '%s' (try --help)", argv[optind]);
	if (dir == NULL || address == NULL)
		return complain(2, "init: --state-dir and --address are required (try --help)");
	if (kb_hostport_parse(address, host, sizeof(host), &port) < 0)
		return complain(2, "init: --address '%s' is not HOST:PORT", address);
	if (san_for_host(host, san, sizeof(san)) < 0)
		return complain(2, "init: --address '%s': '%s' is not a host name or IP address",
		    address, host);

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return complain(1, "cannot create %s: %s", dir, strerror(errno));
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return complain(1, "%s is not a directory", dir);
	if (!force && (state_exists(dir, KB_STATE_CA_CERT) || state_exists(dir, KB_STATE_CA_KEY)))
		return complain(1, "%s already holds a cluster CA (use --force to replace it)", dir);

	ERR_clear_error();
	{
		const struct certspec ca_spec = {
			.cn = "kbridge cluster CA", .o = "kbridge", .days = CA_DAYS, .ca = 1,
		};
		const struct certspec mgr_spec = {
			.cn = KB_ROLE_MANAGER, .o = KB_ROLE_MANAGER, .days = MANAGER_DAYS,
			.eku = "serverAuth", .san = san,
		};

		if ((ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL ||
		    (mgr_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL) {
			complain(1, "cannot generate a key: %s", sslerr());
			goto done;
		}
		if ((ca = make_cert(&ca_spec, ca_key, NULL, NULL, err, sizeof(err))) == NULL ||
		    (mgr = make_cert(&mgr_spec, mgr_key, ca, ca_key, err, sizeof(err))) == NULL) {
			complain(1, "%s", err);
			goto done;
		}
	}
	if ((ca_crt = kb_cert_pem(ca)) == NULL || (ca_keypem = kb_key_pem(ca_key)) == NULL ||
	    (mgr_crt = kb_cert_pem(mgr)) == NULL || (mgr_keypem = kb_key_pem(mgr_key)) == NULL) {
		complain(1, "cannot encode PEM: %s", sslerr());
		goto done;
	}
	if ((cfg = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(cfg, "address", address) == NULL ||
	    (config = cJSON_Print(cfg)) == NULL) {
		complain(1, "out of memory");
		goto done;
	}

	/* Keys first: a certificate without its key would be useless. */
	if (write_state(dir, KB_STATE_CA_KEY, ca_keypem, 0600) < 0 ||
	    write_state(dir, KB_STATE_CA_CERT, ca_crt, 0644) < 0 ||
	    write_state(dir, KB_STATE_MGR_KEY, mgr_keypem, 0600) < 0 ||
	    write_state(dir, KB_STATE_MGR_CERT, mgr_crt, 0644) < 0 ||
	    write_state(dir, KB_STATE_CONFIG, config, 0644) < 0)
		goto done;

	printf("created cluster CA: %s/%s, %s/%s (valid %d years)\n", dir, KB_STATE_CA_CERT,
	    dir, KB_STATE_CA_KEY, CA_DAYS / 365);
	printf("created manager certificate for %s: %s/%s, %s/%s (valid %d years)\n", san,
	    dir, KB_STATE_MGR_CERT, dir, KB_STATE_MGR_KEY, MANAGER_DAYS / 365);
	printf("wrote %s/%s: clients will dial %s\n", dir, KB_STATE_CONFIG, address);
	rc = 0;
done:
	kb_free_secret(ca_keypem);
	kb_free_secret(mgr_keypem);
	free(ca_crt);
	free(mgr_crt);
	free(config);
	cJSON_Delete(cfg);
	X509_free(ca);
	X509_free(mgr);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(mgr_key);
	ERR_clear_error();
	return rc;
}

static void
issue_usage(FILE *f)
{
	fprintf(f,
	    "usage: kbridge-agent issue --state-dir DIR --name NAME --out FILE\n"
	    "       kbridge-agent issue --state-dir DIR --sidecar --workload NAME\n"
	    "                           [--namespace NS] [--name NAME] --out FILE\n"
	    "\n"
	    "Write a client profile (certificate, key, CA, manager address) signed by\n"
	    "the cluster CA in DIR.\n"
	    "\n"
	    "  --state-dir DIR     the directory made by 'kbridge-agent init'\n"
	    "  --name NAME         the user (or sidecar) name: 1-63 characters of\n"
	    "                      a-z 0-9 . _ - starting with a letter or digit\n"
	    "                      (a sidecar's defaults to WORKLOAD.NAMESPACE)\n"
	    "  --out FILE          where to write the profile (mode 0600)\n"
	    "  --sidecar           issue a sidecar identity instead of a user one\n"
	    "  --workload NAME     the one workload the sidecar may speak for (required\n"
	    "                      with --sidecar; bound into the certificate)\n"
	    "  --namespace NS      the workload's namespace (default: default)\n");
}

/* What issue's command line says. */
struct issue_opts {
	const char *dir, *name, *out, *wl, *wns;
	int sidecar;
	char bound[2 * 64 + 2];	/* a sidecar's WORKLOAD.NAMESPACE */
};

/* The options into o: -1 to go on, or the exit status (0 after --help, 2
 * for a bad command line). */
static int
issue_parse(int argc, char **argv, struct issue_opts *o)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' },
		{ "out", required_argument, NULL, 'o' },
		{ "sidecar", no_argument, NULL, 's' },
		{ "workload", required_argument, NULL, 'w' },
		{ "namespace", required_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":d:n:o:shw:N:", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o->dir = optarg;
			break;
		case 'n':
			o->name = optarg;
			break;
		case 'o':
			o->out = optarg;
			break;
		case 's':
			o->sidecar = 1;
			break;
		case 'w':
			o->wl = optarg;
			break;
		case 'N':
			o->wns = optarg;
			break;
		case 'h':
			issue_usage(stdout);
			return 0;
		default:
			return bad_option("issue", c, argv);
		}
	}
	if (optind < argc)
		return complain(2, "issue: unexpected argument '%s' (try --help)", argv[optind]);
	if (!o->sidecar && (o->wl || o->wns))
		return complain(2, "issue: --workload and --namespace are for --sidecar identities");
	if (o->sidecar) {
		/* A sidecar speaks for one workload: the manager takes no other
		 * from it, so a leaked sidecar key cannot pose as another. */
		if (o->wl == NULL)
			return complain(2, "issue: --sidecar needs --workload NAME (the workload "
			    "it may speak for)");
		if (o->wns == NULL)
			o->wns = "default";
		if (!kb_dns_label(o->wl) || !kb_dns_label(o->wns))
			return complain(2, "issue: invalid workload '%s' or namespace '%s': use "
			    "DNS labels (a-z 0-9 -)", o->wl, o->wns);
		snprintf(o->bound, sizeof(o->bound), "%s.%s", o->wl, o->wns);
		if (o->name == NULL)
			o->name = o->bound;
	}
	if (o->dir == NULL || o->name == NULL || o->out == NULL)
		return complain(2, "issue: --state-dir, --name and --out are required (try --help)");
	if (!kb_identity_name(o->name))
		return complain(2, "issue: invalid name '%s': use 1-%d characters of a-z 0-9 . _ - "
		    "starting with a letter or digit", o->name, KB_IDENTITY_NAME_MAX);
	return -1;
}

/* The CA and the manager's address, from the state directory. */
struct issue_ca {
	char *crt, *keytext, *config;	/* the files as read */
	X509 *ca;
	EVP_PKEY *key;
	cJSON *cfg;
	char *addr;			/* in cfg */
};

static void
issue_ca_free(struct issue_ca *ca)
{
	kb_free_secret(ca->keytext);
	free(ca->crt);
	free(ca->config);
	cJSON_Delete(ca->cfg);
	X509_free(ca->ca);
	EVP_PKEY_free(ca->key);
}

/* Load what dir holds into ca: 0, or -1 (said why). */
static int
issue_load_ca(const char *dir, struct issue_ca *ca)
{
	const cJSON *addr;
	char host[256];
	uint16_t port;
	int rc = -1;

	if ((ca->crt = read_state(dir, KB_STATE_CA_CERT)) == NULL ||
	    (ca->keytext = read_state(dir, KB_STATE_CA_KEY)) == NULL ||
	    (ca->config = read_state(dir, KB_STATE_CONFIG)) == NULL)
		goto done;
	if ((ca->ca = kb_pem_cert(ca->crt)) == NULL) {
		complain(1, "%s/%s: not a PEM certificate", dir, KB_STATE_CA_CERT);
		goto done;
	}
	if ((ca->key = kb_pem_key(ca->keytext)) == NULL) {
		complain(1, "%s/%s: not an unencrypted PEM private key", dir, KB_STATE_CA_KEY);
		goto done;
	}
	if (!X509_check_private_key(ca->ca, ca->key)) {
		complain(1, "%s/%s does not match %s/%s", dir, KB_STATE_CA_KEY, dir,
		    KB_STATE_CA_CERT);
		goto done;
	}
	if ((ca->cfg = cJSON_Parse(ca->config)) == NULL ||
	    !cJSON_IsString(addr = cJSON_GetObjectItemCaseSensitive(ca->cfg, "address")) ||
	    kb_hostport_parse(addr->valuestring, host, sizeof(host), &port) < 0) {
		complain(1, "%s/%s: no \"address\":\"HOST:PORT\"", dir, KB_STATE_CONFIG);
		goto done;
	}
	ca->addr = addr->valuestring;
	rc = 0;
done:
	return rc;
}

/* A new key and certificate signed by ca, written as a profile to o->out:
 * 0, or -1 (said why). */
static int
issue_write(const struct issue_opts *o, const struct issue_ca *ca)
{
	const struct certspec spec = {
		.cn = o->name, .o = o->sidecar ? KB_ROLE_SIDECAR : KB_ROLE_USER,
		.days = CLIENT_DAYS, .eku = "clientAuth", .ou = o->sidecar ? o->bound : NULL,
	};
	char *crt = NULL, *keypem = NULL, *json = NULL;
	char err[512];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	struct kb_profile p;
	int rc = -1;

	if ((key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL) {
		complain(1, "cannot generate a key: %s", sslerr());
		goto done;
	}
	if ((x = make_cert(&spec, key, ca->ca, ca->key, err, sizeof(err))) == NULL) {
		complain(1, "%s", err);
		goto done;
	}
	if ((crt = kb_cert_pem(x)) == NULL || (keypem = kb_key_pem(key)) == NULL) {
		complain(1, "cannot encode PEM: %s", sslerr());
		goto done;
	}

	p.manager = ca->addr;
	p.name = (char *)o->name;
	p.role = o->sidecar ? KB_ROLE_SIDECAR : KB_ROLE_USER;
	p.ca_pem = ca->crt;
	p.cert_pem = crt;
	p.key_pem = keypem;
	if ((json = kb_profile_to_json(&p)) == NULL) {
		complain(1, "out of memory");
		goto done;
	}
	if (kb_write_file(o->out, json, strlen(json), 0600) < 0) {
		complain(1, "cannot write %s: %s", o->out, strerror(errno));
		goto done;
	}
	if (o->sidecar)
		printf("wrote sidecar profile %s for workload %s to %s\n", o->name, o->bound, o->out);
	else
		printf("wrote profile for %s to %s\n", o->name, o->out);
	rc = 0;
done:
	kb_free_secret(json);
	kb_free_secret(keypem);
	free(crt);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

int
cmd_issue(int argc, char **argv)
{
	struct issue_opts o;
	struct issue_ca ca = { 0 };
	int rc;

	if ((rc = issue_parse(argc, argv, &o)) >= 0)
		return rc;
	ERR_clear_error();
	rc = issue_load_ca(o.dir, &ca) == 0 && issue_write(&o, &ca) == 0 ? 0 : 1;
	issue_ca_free(&ca);
	ERR_clear_error();
	return rc;
}

/* --- in memory, for the in-cluster manager (its state is a Secret) --- */

int
identity_ca_new(char **crt, char **key, char *err, size_t errlen)
{
	const struct certspec spec = {
		.cn = "kbridge cluster CA", .o = "kbridge", .days = CA_DAYS, .ca = 1,
	};
	EVP_PKEY *k;
	X509 *x = NULL;

	*crt = *key = NULL;
	ERR_clear_error();
	if ((k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL) {
		snprintf(err, errlen, "cannot generate a key: %s", sslerr());
		return -1;
	}
	if ((x = make_cert(&spec, k, NULL, NULL, err, errlen)) != NULL &&
	    ((*crt = kb_cert_pem(x)) == NULL || (*key = kb_key_pem(k)) == NULL))
		snprintf(err, errlen, "cannot encode PEM: %s", sslerr());
	X509_free(x);
	EVP_PKEY_free(k);
	if (!*crt || !*key) {
		free(*crt);
		kb_free_secret(*key);
		*crt = *key = NULL;
		return -1;
	}
	return 0;
}

/* The CA from PEM into *ca and *key: 0, or -1 with err. */
static int
load_ca(const char *ca_crt, const char *ca_keytext, X509 **ca, EVP_PKEY **key, char *err,
    size_t errlen)
{
	*ca = kb_pem_cert(ca_crt);
	*key = kb_pem_key(ca_keytext);
	if (*ca && *key && X509_check_private_key(*ca, *key))
		return 0;
	X509_free(*ca);
	EVP_PKEY_free(*key);
	*ca = NULL;
	*key = NULL;
	snprintf(err, errlen, "the CA is not a PEM certificate with its unencrypted key");
	return -1;
}

int
identity_manager_cert(const char *ca_crt, const char *ca_keytext, const char *san, char **crt,
    char **key, char *err, size_t errlen)
{
	const struct certspec spec = {
		.cn = KB_ROLE_MANAGER, .o = KB_ROLE_MANAGER, .days = MANAGER_DAYS,
		.eku = "serverAuth", .san = san,
	};
	EVP_PKEY *ca_key = NULL, *k = NULL;
	X509 *ca = NULL, *x = NULL;
	int rc = -1;

	*crt = *key = NULL;
	ERR_clear_error();
	if (load_ca(ca_crt, ca_keytext, &ca, &ca_key, err, errlen) < 0)
		goto done;
	if ((k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL) {
		snprintf(err, errlen, "cannot generate a key: %s", sslerr());
		goto done;
	}
	if ((x = make_cert(&spec, k, ca, ca_key, err, errlen)) == NULL)
		goto done;
	if ((*crt = kb_cert_pem(x)) == NULL || (*key = kb_key_pem(k)) == NULL) {
		snprintf(err, errlen, "cannot encode PEM: %s", sslerr());
		free(*crt);
		*crt = NULL;
		goto done;
	}
	rc = 0;
done:
	X509_free(ca);
	X509_free(x);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(k);
	ERR_clear_error();
	return rc;
}

/* A leaf for pub, signed by the CA, as spec says: 0, or -1 with err. */
static int
leaf_for_key(const struct certspec *spec, const char *ca_crt, const char *ca_keytext,
    EVP_PKEY *pub, char **crt, char *err, size_t errlen)
{
	EVP_PKEY *ca_key = NULL;
	X509 *ca = NULL, *x = NULL;

	*crt = NULL;
	ERR_clear_error();
	if (!kb_identity_name(spec->cn))
		snprintf(err, errlen, "'%s' is not a kbridge name", spec->cn);
	else if (spec->seconds <= 0)
		snprintf(err, errlen, "a certificate needs a lifetime");
	else if (load_ca(ca_crt, ca_keytext, &ca, &ca_key, err, errlen) == 0 &&
	    (x = make_cert(spec, pub, ca, ca_key, err, errlen)) != NULL &&
	    (*crt = kb_cert_pem(x)) == NULL)
		snprintf(err, errlen, "cannot encode PEM: %s", sslerr());
	X509_free(ca);
	X509_free(x);
	EVP_PKEY_free(ca_key);
	ERR_clear_error();
	return *crt ? 0 : -1;
}

int
identity_user_cert(const char *ca_crt, const char *ca_keytext, EVP_PKEY *pub, const char *name,
    long seconds, char **crt, char *err, size_t errlen)
{
	const struct certspec spec = {
		.cn = name, .o = KB_ROLE_USER, .days = CLIENT_DAYS, .seconds = seconds,
		.eku = "clientAuth",
	};

	return leaf_for_key(&spec, ca_crt, ca_keytext, pub, crt, err, errlen);
}

int
identity_sidecar_cert(const char *ca_crt, const char *ca_keytext, EVP_PKEY *pub,
    const char *workload, const char *ns, long seconds, char **crt, char *err, size_t errlen)
{
	char bound[2 * 64 + 2];
	const struct certspec spec = {
		.cn = bound, .o = KB_ROLE_SIDECAR, .days = CLIENT_DAYS, .seconds = seconds,
		.eku = "clientAuth", .ou = bound,
	};

	*crt = NULL;
	if (!kb_dns_label(workload) || !kb_dns_label(ns)) {
		snprintf(err, errlen, "'%s.%s' is not a workload NAME.NAMESPACE", workload, ns);
		return -1;
	}
	snprintf(bound, sizeof(bound), "%s.%s", workload, ns);
	return leaf_for_key(&spec, ca_crt, ca_keytext, pub, crt, err, errlen);
}

void
identity_free_secret(char *s)
{
	kb_free_secret(s);
}
