/* Reading kubeconfig files (YAML, libyaml) as kubectl does, and running
 * exec credential plugins; CLI side only, as the user (see kubeconfig.h). */
#include "kubeconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml.h>

#include "log.h"
#include "util.h"

#define KC_MAX_FILE (8u << 20)	/* a kubeconfig, a CA bundle, a cert or key file */
#define KC_MAX_FILES 64		/* entries of $KUBECONFIG */
#define KC_EXEC_MAX_OUT (1u << 20)
#define KC_EXEC_TIMEOUT_MS 30000
#define KC_EXEC_V1 "client.authentication.k8s.io/v1"
#define KC_EXEC_V1BETA1 "client.authentication.k8s.io/v1beta1"

/* Tests and the fuzzer replace these. */
static char *(*kc_read_file)(const char *path, size_t max, size_t *lenp) = kb_read_file;
static int kc_exec_timeout_ms = KC_EXEC_TIMEOUT_MS;
extern char **environ;

struct kc_file {
	char *name;	/* for messages */
	char *dir;	/* for relative paths */
	yaml_document_t doc;
	int loaded;
};

struct kc_exec {
	char *api;
	char **argv;	/* command (resolved), args, NULL */
	char **env;	/* "NAME=value", NULL-terminated */
	char *hint;
	int cluster_info;
};

struct kb_kubeconfig {
	int flags;
	char *context, *cluster, *user, *ns;
	char *server, *tls_server_name, *url_base;
	struct curl_slist *connect_to;
	char *ca;
	size_t ca_len;
	int insecure;
	/* current credentials */
	char *token, *cert, *key;
	size_t cert_len, key_len;
	char *token_file;
	struct kc_exec *exec;
	int have_creds;	/* the plugin's credential is cached */
	int stale;	/* refresh asked for */
	time_t expiry;
	/* the context's kbridge extension: never-proxy [0], also-proxy [1] */
	char *ranges[2][KB_KUBECONFIG_RANGES_MAX];
	size_t nranges[2];
	char *vsubnet;	/* and its virtual-subnet, or NULL */
};

/* Errors are one line: names and values from the file (a YAML scalar may
 * hold line breaks) have their control characters shown as '?'. */
static void __attribute__((format(printf, 3, 4)))
kc_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	for (p = err; errlen > 0 && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

static int
kc_dup(char **dst, const char *s)
{
	free(*dst);
	*dst = NULL;
	if (s == NULL)
		return 0;
	return (*dst = strdup(s)) ? 0 : -1;
}

/* A path named in file f: relative ones are relative to f's directory. */
static char *
kc_path(const struct kc_file *f, const char *p)
{
	char *s;

	if (p[0] == '/' || f->dir == NULL)
		return strdup(p);
	while (p[0] == '.' && p[1] == '/')	/* as Go's filepath.Join */
		for (p += 2; *p == '/'; p++)
			;
	return asprintf(&s, "%s/%s", f->dir, p) < 0 ? NULL : s;
}

static char *
kc_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, slash - path);
}

/* ---- YAML access ---- */

static unsigned long
kc_line(const yaml_node_t *n)
{
	return n ? n->start_mark.line + 1 : 0;
}

static int
kc_is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	v = (const char *)n->data.scalar.value;
	return !strcmp(v, "") || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
	    !strcmp(v, "NULL");
}

/* The value of key in map; *out NULL if absent or null. A repeated key is
 * an error: which one kubectl takes is not obvious to a reader. */
static int
kc_get(struct kc_file *f, yaml_node_t *map, const char *key, yaml_node_t **out, char *err,
    size_t errlen)
{
	yaml_node_pair_t *pr;
	int found = 0;

	*out = NULL;
	if (map == NULL)
		return 0;
	if (map->type != YAML_MAPPING_NODE) {
		kc_err(err, errlen, "%s:%lu: expected a mapping", f->name, kc_line(map));
		return -1;
	}
	for (pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = yaml_document_get_node(&f->doc, pr->key);
		yaml_node_t *v = yaml_document_get_node(&f->doc, pr->value);

		if (k == NULL || k->type != YAML_SCALAR_NODE)
			continue;
		/* kubectl (go-yaml) expands merge keys, libyaml does not:
		 * refuse rather than read something else than kubectl. */
		if (k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		    strcmp((const char *)k->data.scalar.value, "<<") == 0) {
			kc_err(err, errlen, "%s:%lu: YAML merge keys (<<) are not supported", f->name,
			    kc_line(k));
			return -1;
		}
		if (strcmp((const char *)k->data.scalar.value, key) != 0)
			continue;
		if (found) {
			kc_err(err, errlen, "%s:%lu: %s is given twice", f->name, kc_line(k), key);
			return -1;
		}
		found = 1;
		*out = v;
	}
	if (*out != NULL && kc_is_null(*out))
		*out = NULL;
	return 0;
}

/* A string field; *out points into the document, NULL if absent or empty. */
static int
kc_str(struct kc_file *f, yaml_node_t *map, const char *key, const char **out, char *err,
    size_t errlen)
{
	yaml_node_t *v;

	*out = NULL;
	if (kc_get(f, map, key, &v, err, errlen) < 0)
		return -1;
	if (v == NULL)
		return 0;
	if (v->type != YAML_SCALAR_NODE) {
		kc_err(err, errlen, "%s:%lu: %s: expected a string", f->name, kc_line(v), key);
		return -1;
	}
	if (strlen((const char *)v->data.scalar.value) != v->data.scalar.length) {
		kc_err(err, errlen, "%s:%lu: %s: contains a NUL byte", f->name, kc_line(v), key);
		return -1;
	}
	if (v->data.scalar.length > 0)
		*out = (const char *)v->data.scalar.value;
	return 0;
}

static int
kc_bool(struct kc_file *f, yaml_node_t *map, const char *key, int *out, char *err, size_t errlen)
{
	/* YAML 1.1 booleans, as go-yaml v2 reads them. */
	static const char *const yes[] = {
		"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"
	};
	static const char *const no[] = {
		"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"
	};
	const char *s;
	size_t i;

	*out = 0;
	if (kc_str(f, map, key, &s, err, errlen) < 0)
		return -1;
	if (s == NULL)
		return 0;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcmp(s, yes[i]))
			return *out = 1, 0;
		if (!strcmp(s, no[i]))
			return 0;
	}
	kc_err(err, errlen, "%s:%lu: %s: \"%s\" is not true or false", f->name, kc_line(map),
	    key, s);
	return -1;
}

static int
kc_parse(struct kc_file *f, const char *buf, size_t len, char *err, size_t errlen)
{
	yaml_parser_t p;
	yaml_node_t *root;
	int rc = -1;

	if (!yaml_parser_initialize(&p)) {
		kc_err(err, errlen, "%s: out of memory", f->name);
		return -1;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&p, &f->doc)) {
		kc_err(err, errlen, "%s:%lu:%lu: %s%s%s", f->name,
		    (unsigned long)p.problem_mark.line + 1, (unsigned long)p.problem_mark.column + 1,
		    p.problem ? p.problem : "invalid YAML", p.context ? " " : "",
		    p.context ? p.context : "");
		goto done;
	}
	f->loaded = 1;
	root = yaml_document_get_root_node(&f->doc);
	if (root != NULL && !kc_is_null(root) && root->type != YAML_MAPPING_NODE) {
		kc_err(err, errlen, "%s:%lu: not a kubeconfig (expected a mapping)", f->name,
		    kc_line(root));
		goto done;
	}
	rc = 0;
done:
	yaml_parser_delete(&p);
	return rc;
}

static yaml_node_t *
kc_root(struct kc_file *f)
{
	yaml_node_t *r = yaml_document_get_root_node(&f->doc);

	return r == NULL || r->type != YAML_MAPPING_NODE ? NULL : r;
}

/* The entry called name in list (clusters, users, contexts) of f: 1 with
 * *item (the list entry) and *body (its cluster/user/context mapping, NULL
 * if absent), 0 if f has none, -1 on error (a name given twice). */
static int
kc_find(struct kc_file *f, const char *list, const char *field, const char *name,
    yaml_node_t **item, yaml_node_t **body, char *err, size_t errlen)
{
	yaml_node_t *seq;
	yaml_node_item_t *it;
	int found = 0;

	*item = *body = NULL;
	if (kc_get(f, kc_root(f), list, &seq, err, errlen) < 0)
		return -1;
	if (seq == NULL)
		return 0;
	if (seq->type != YAML_SEQUENCE_NODE) {
		kc_err(err, errlen, "%s:%lu: %s: expected a list", f->name, kc_line(seq), list);
		return -1;
	}
	for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(&f->doc, *it), *b;
		const char *n;

		if (e == NULL || e->type != YAML_MAPPING_NODE) {
			kc_err(err, errlen, "%s:%lu: %s: expected a list of {name, %s}", f->name,
			    kc_line(e ? e : seq), list, field);
			return -1;
		}
		if (kc_str(f, e, "name", &n, err, errlen) < 0)
			return -1;
		if (n == NULL || strcmp(n, name) != 0)
			continue;
		if (found) {
			kc_err(err, errlen, "%s:%lu: %s: \"%s\" is defined twice", f->name,
			    kc_line(e), list, name);
			return -1;
		}
		if (kc_get(f, e, field, &b, err, errlen) < 0)
			return -1;
		if (b != NULL && b->type != YAML_MAPPING_NODE) {
			kc_err(err, errlen, "%s:%lu: %s \"%s\": expected a mapping", f->name,
			    kc_line(b), field, name);
			return -1;
		}
		found = 1;
		*item = e;
		*body = b;
	}
	return found;
}

/* First file that defines the entry wins, as in kubectl's merge. */
static int
kc_find_all(struct kc_file *fs, size_t nf, const char *list, const char *field,
    const char *name, struct kc_file **fo, yaml_node_t **item, yaml_node_t **body, char *err,
    size_t errlen)
{
	size_t i;
	int r;

	for (i = 0; i < nf; i++) {
		if ((r = kc_find(&fs[i], list, field, name, item, body, err, errlen)) != 0) {
			*fo = &fs[i];
			return r;
		}
	}
	return 0;
}

/* ---- content: base64, PEM ---- */

static int
kc_nopass(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* At least one PEM certificate, so that a wrong file fails here, clearly. */
static int
kc_check_ca(const char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x;
	int n = 0;

	if (b == NULL || len > INT_MAX)
		return -1;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		X509_free(x);
		n++;
	}
	BIO_free(b);
	ERR_clear_error();
	return n > 0 ? 0 : -1;
}

/* A PEM certificate and its unencrypted private key. */
static int
kc_check_pair(const char *cert, size_t certlen, const char *key, size_t keylen, char *err,
    size_t errlen, const char *what)
{
	BIO *b = NULL;
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	int rc = -1;

	if (certlen > INT_MAX || keylen > INT_MAX)
		goto done;
	if ((b = BIO_new_mem_buf(cert, (int)certlen)) == NULL ||
	    (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		kc_err(err, errlen, "%s: client certificate is not a PEM certificate", what);
		goto done;
	}
	BIO_free(b);
	if ((b = BIO_new_mem_buf(key, (int)keylen)) == NULL ||
	    (k = PEM_read_bio_PrivateKey(b, NULL, kc_nopass, NULL)) == NULL) {
		kc_err(err, errlen, "%s: client key is not an unencrypted PEM private key", what);
		goto done;
	}
	if (X509_check_private_key(x, k) != 1) {
		kc_err(err, errlen, "%s: client certificate and key do not match", what);
		goto done;
	}
	rc = 0;
done:
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(k);
	ERR_clear_error();
	return rc;
}

/* A token goes into an HTTP header: refuse what would break it. */
static int
kc_token_ok(const char *t)
{
	for (; *t; t++)
		if ((unsigned char)*t < 0x21 || *t == 0x7f)
			return 0;
	return 1;
}

/* Reads the file named by key (relative to f) or decodes key-data.
 * 0 with *out NULL if neither is given. */
static int
kc_blob(struct kc_file *f, yaml_node_t *map, const char *key, char **out, size_t *outlen,
    const char *what, char *err, size_t errlen)
{
	char datakey[64];
	const char *p, *d;
	char *path;

	*out = NULL;
	snprintf(datakey, sizeof(datakey), "%s-data", key);
	if (kc_str(f, map, key, &p, err, errlen) < 0 ||
	    kc_str(f, map, datakey, &d, err, errlen) < 0)
		return -1;
	if (p != NULL && d != NULL) {
		kc_err(err, errlen, "%s:%lu: %s: both %s and %s are given", f->name,
		    kc_line(map), what, key, datakey);
		return -1;
	}
	if (d != NULL) {
		if ((*out = kb_b64_decode(d, outlen)) == NULL) {
			kc_err(err, errlen, "%s:%lu: %s: %s is not valid base64", f->name,
			    kc_line(map), what, datakey);
			return -1;
		}
		return 0;
	}
	if (p == NULL)
		return 0;
	if ((path = kc_path(f, p)) == NULL) {
		kc_err(err, errlen, "out of memory");
		return -1;
	}
	if ((*out = kc_read_file(path, KC_MAX_FILE, outlen)) == NULL) {
		kc_err(err, errlen, "%s:%lu: %s: %s %s: %s", f->name, kc_line(map), what, key, path,
		    strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

/* ---- cluster, user, context ---- */

static int
kc_server(struct kb_kubeconfig *kc, struct kc_file *f, yaml_node_t *item, const char *s,
    char *err, size_t errlen)
{
	CURLU *u = NULL;
	char *host = NULL, *port = NULL, *map = NULL, *url = NULL;
	const char *p;
	int rc = -1;

	for (p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			break;
	if (*p != '\0') {
		kc_err(err, errlen, "%s:%lu: cluster \"%s\": server contains a space or control character",
		    f->name, kc_line(item), kc->cluster);
		return -1;
	}
	/* kubectl's default scheme for a bare host[:port] with TLS. */
	if (strstr(s, "://") == NULL) {
		if (asprintf(&kc->server, "https://%s", s) < 0)
			kc->server = NULL;
	} else if (strncasecmp(s, "https://", 8) != 0) {
		kc_err(err, errlen, "%s:%lu: cluster \"%s\": server %s is not https: kbridge talks to the API server over TLS only",
		    f->name, kc_line(item), kc->cluster, s);
		return -1;
	} else if ((kc->server = strdup(s)) != NULL) {
		memcpy(kc->server, "https", 5);
	}
	if (kc->server == NULL)
		goto oom;
	if ((u = curl_url()) == NULL)
		goto oom;
	if (curl_url_set(u, CURLUPART_URL, kc->server, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		kc_err(err, errlen, "%s:%lu: cluster \"%s\": server %s is not a valid URL", f->name,
		    kc_line(item), kc->cluster, kc->server);
		goto done;
	}
	/* Drop one trailing '/', so that server + "/api" has one. */
	if (kc->server[strlen(kc->server) - 1] == '/' && kc->server[strlen(kc->server) - 2] != '/')
		kc->server[strlen(kc->server) - 1] = '\0';
	if (kc->tls_server_name != NULL) {
		/* libcurl verifies the URL's host: connect to the server's
		 * address under the tls-server-name. */
		if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
		    curl_url_set(u, CURLUPART_HOST, kc->tls_server_name, 0) != CURLUE_OK ||
		    curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK) {
			kc_err(err, errlen, "%s:%lu: cluster \"%s\": tls-server-name %s is not a valid host name",
			    f->name, kc_line(item), kc->cluster, kc->tls_server_name);
			goto done;
		}
		if (asprintf(&map, "%s:%s:%s:%s", kc->tls_server_name, port, host, port) < 0) {
			map = NULL;
			goto oom;
		}
		if ((kc->connect_to = curl_slist_append(NULL, map)) == NULL)
			goto oom;
		if ((kc->url_base = strdup(url)) == NULL)
			goto oom;
		if (kc->url_base[0] && kc->url_base[strlen(kc->url_base) - 1] == '/')
			kc->url_base[strlen(kc->url_base) - 1] = '\0';
	}
	rc = 0;
	goto done;
oom:
	kc_err(err, errlen, "out of memory");
done:
	curl_free(host);
	curl_free(port);
	curl_free(url);
	free(map);
	curl_url_cleanup(u);
	return rc;
}

static int
kc_cluster(struct kb_kubeconfig *kc, struct kc_file *f, yaml_node_t *item, yaml_node_t *c,
    char *err, size_t errlen)
{
	const char *s;
	char what[300];

	snprintf(what, sizeof(what), "%s: cluster \"%s\"", f->name, kc->cluster);
	if (kc_str(f, c, "proxy-url", &s, err, errlen) < 0)
		return -1;
	if (s != NULL) {
		kc_err(err, errlen, "%s:%lu: cluster \"%s\": proxy-url is not supported by kbridge (it connects to the API server directly); use a context without it",
		    f->name, kc_line(item), kc->cluster);
		return -1;
	}
	if (kc_bool(f, c, "insecure-skip-tls-verify", &kc->insecure, err, errlen) < 0)
		return -1;
	if (kc->insecure && !(kc->flags & KB_KC_ALLOW_INSECURE)) {
		kc_err(err, errlen, "%s:%lu: cluster \"%s\": insecure-skip-tls-verify is refused: kbridge verifies the API server (give the cluster's certificate-authority)",
		    f->name, kc_line(item), kc->cluster);
		return -1;
	}
	if (kc_str(f, c, "tls-server-name", &s, err, errlen) < 0 ||
	    kc_dup(&kc->tls_server_name, s) < 0)
		return -1;
	if (kc_blob(f, c, "certificate-authority", &kc->ca, &kc->ca_len, what, err, errlen) < 0)
		return -1;
	if (kc->ca != NULL && kc->insecure) {
		kc_err(err, errlen, "%s:%lu: cluster \"%s\": certificate-authority with insecure-skip-tls-verify",
		    f->name, kc_line(item), kc->cluster);
		return -1;
	}
	if (kc->ca != NULL && kc_check_ca(kc->ca, kc->ca_len) < 0) {
		kc_err(err, errlen, "%s:%lu: cluster \"%s\": no PEM certificate in its certificate-authority",
		    f->name, kc_line(item), kc->cluster);
		return -1;
	}
	if (kc_str(f, c, "server", &s, err, errlen) < 0)
		return -1;
	if (s == NULL) {
		kc_err(err, errlen, "%s:%lu: cluster \"%s\" has no server", f->name, kc_line(item),
		    kc->cluster);
		return -1;
	}
	return kc_server(kc, f, item, s, err, errlen);
}

static void
kc_exec_free(struct kc_exec *x)
{
	char **p;

	if (x == NULL)
		return;
	for (p = x->argv; p && *p; p++)
		free(*p);
	for (p = x->env; p && *p; p++)
		free(*p);
	free(x->argv);
	free(x->env);
	free(x->api);
	free(x->hint);
	free(x);
}

static int
kc_exec_conf(struct kb_kubeconfig *kc, struct kc_file *f, yaml_node_t *xn, char *err,
    size_t errlen)
{
	struct kc_exec *x;
	yaml_node_t *args, *env;
	yaml_node_item_t *it;
	const char *cmd, *api, *hint, *mode;
	size_t n = 0;

	if (xn->type != YAML_MAPPING_NODE) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": exec: expected a mapping", f->name,
		    kc_line(xn), kc->user);
		return -1;
	}
	if ((x = kc->exec = calloc(1, sizeof(*x))) == NULL)
		goto oom;
	if (kc_str(f, xn, "command", &cmd, err, errlen) < 0 ||
	    kc_str(f, xn, "apiVersion", &api, err, errlen) < 0 ||
	    kc_str(f, xn, "installHint", &hint, err, errlen) < 0 ||
	    kc_str(f, xn, "interactiveMode", &mode, err, errlen) < 0 ||
	    kc_bool(f, xn, "provideClusterInfo", &x->cluster_info, err, errlen) < 0 ||
	    kc_get(f, xn, "args", &args, err, errlen) < 0 ||
	    kc_get(f, xn, "env", &env, err, errlen) < 0)
		return -1;
	if (cmd == NULL) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": exec has no command", f->name,
		    kc_line(xn), kc->user);
		return -1;
	}
	if (api == NULL || (strcmp(api, KC_EXEC_V1) && strcmp(api, KC_EXEC_V1BETA1))) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": exec apiVersion %s is not supported (%s or %s)",
		    f->name, kc_line(xn), kc->user, api ? api : "(none)", KC_EXEC_V1,
		    KC_EXEC_V1BETA1);
		return -1;
	}
	if (mode == NULL && !strcmp(api, KC_EXEC_V1)) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": exec needs interactiveMode with %s",
		    f->name, kc_line(xn), kc->user, KC_EXEC_V1);
		return -1;
	}
	/* kbridge gives plugins no terminal (spec.interactive is false). */
	if (mode != NULL && strcmp(mode, "Never") && strcmp(mode, "IfAvailable")) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": exec interactiveMode %s is not supported: kbridge runs plugins without a terminal (Never or IfAvailable)",
		    f->name, kc_line(xn), kc->user, mode);
		return -1;
	}
	if (args != NULL && args->type != YAML_SEQUENCE_NODE) {
		kc_err(err, errlen, "%s:%lu: exec args: expected a list", f->name, kc_line(args));
		return -1;
	}
	if (env != NULL && env->type != YAML_SEQUENCE_NODE) {
		kc_err(err, errlen, "%s:%lu: exec env: expected a list", f->name, kc_line(env));
		return -1;
	}
	if (kc_dup(&x->api, api) < 0 || kc_dup(&x->hint, hint) < 0)
		goto oom;
	n = args ? (size_t)(args->data.sequence.items.top - args->data.sequence.items.start) : 0;
	if ((x->argv = calloc(n + 2, sizeof(char *))) == NULL)
		goto oom;
	/* As kubectl: a command with a '/' is relative to the kubeconfig's
	 * directory, a bare name is looked up in PATH. */
	x->argv[0] = strchr(cmd, '/') ? kc_path(f, cmd) : strdup(cmd);
	if (x->argv[0] == NULL)
		goto oom;
	n = 1;
	for (it = args ? args->data.sequence.items.start : NULL;
	    args && it < args->data.sequence.items.top; it++) {
		yaml_node_t *a = yaml_document_get_node(&f->doc, *it);

		if (a == NULL || a->type != YAML_SCALAR_NODE ||
		    strlen((const char *)a->data.scalar.value) != a->data.scalar.length) {
			kc_err(err, errlen, "%s:%lu: exec args: expected strings", f->name,
			    kc_line(a ? a : args));
			return -1;
		}
		if ((x->argv[n++] = strdup((const char *)a->data.scalar.value)) == NULL)
			goto oom;
	}
	n = env ? (size_t)(env->data.sequence.items.top - env->data.sequence.items.start) : 0;
	if ((x->env = calloc(n + 1, sizeof(char *))) == NULL)
		goto oom;
	n = 0;
	for (it = env ? env->data.sequence.items.start : NULL;
	    env && it < env->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(&f->doc, *it);
		const char *name, *value;

		if (e == NULL || e->type != YAML_MAPPING_NODE) {
			kc_err(err, errlen, "%s:%lu: exec env: expected a list of {name, value}",
			    f->name, kc_line(e ? e : env));
			return -1;
		}
		if (kc_str(f, e, "name", &name, err, errlen) < 0 ||
		    kc_str(f, e, "value", &value, err, errlen) < 0)
			return -1;
		if (name == NULL || strchr(name, '=') != NULL) {
			kc_err(err, errlen, "%s:%lu: exec env: a name without '=' is needed", f->name,
			    kc_line(e));
			return -1;
		}
		if (asprintf(&x->env[n], "%s=%s", name, value ? value : "") < 0) {
			x->env[n] = NULL;
			goto oom;
		}
		n++;
	}
	return 0;
oom:
	kc_err(err, errlen, "out of memory");
	return -1;
}

static int
kc_read_token_file(struct kb_kubeconfig *kc, char *err, size_t errlen)
{
	const char *why;
	char *t;
	size_t len;

	if ((t = kc_read_file(kc->token_file, KC_MAX_FILE, &len)) == NULL) {
		kc_err(err, errlen, "user \"%s\": tokenFile %s: %s", kc->user, kc->token_file,
		    strerror(errno));
		return -1;
	}
	if (kb_token_trim(t, len, &why) < 0) {
		kc_err(err, errlen, "user \"%s\": tokenFile %s: %s", kc->user, kc->token_file, why);
		free(t);
		return -1;
	}
	free(kc->token);
	kc->token = t;
	return 0;
}

static int
kc_user(struct kb_kubeconfig *kc, struct kc_file *f, yaml_node_t *item, yaml_node_t *u,
    char *err, size_t errlen)
{
	static const char *const imp[] = { "as", "as-uid", "as-groups", "as-user-extra" };
	yaml_node_t *ap, *xn, *v;
	const char *s, *pw, *tf;
	char what[300];
	size_t i;

	for (i = 0; i < sizeof(imp) / sizeof(imp[0]); i++) {
		if (kc_get(f, u, imp[i], &v, err, errlen) < 0)
			return -1;
		if (v != NULL) {
			kc_err(err, errlen, "%s:%lu: user \"%s\": impersonation (%s) is not supported by kbridge",
			    f->name, kc_line(v), kc->user, imp[i]);
			return -1;
		}
	}
	if (kc_str(f, u, "username", &s, err, errlen) < 0 ||
	    kc_str(f, u, "password", &pw, err, errlen) < 0)
		return -1;
	if (s != NULL || pw != NULL) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": username/password (basic authentication) is refused: Kubernetes removed it in 1.19; use a client certificate, a token or an exec plugin",
		    f->name, kc_line(item), kc->user);
		return -1;
	}
	if (kc_get(f, u, "auth-provider", &ap, err, errlen) < 0)
		return -1;
	if (ap != NULL) {
		const char *name = NULL;

		if (ap->type == YAML_MAPPING_NODE && kc_str(f, ap, "name", &name, err, errlen) < 0)
			return -1;
		kc_err(err, errlen, "%s:%lu: user \"%s\": auth-provider %s is refused: kubectl removed auth providers in 1.26; use an exec credential plugin (client.authentication.k8s.io/v1, e.g. kubelogin or gke-gcloud-auth-plugin)",
		    f->name, kc_line(ap), kc->user, name ? name : "(unnamed)");
		return -1;
	}
	snprintf(what, sizeof(what), "%s: user \"%s\"", f->name, kc->user);
	if (kc_blob(f, u, "client-certificate", &kc->cert, &kc->cert_len, what, err, errlen) < 0 ||
	    kc_blob(f, u, "client-key", &kc->key, &kc->key_len, what, err, errlen) < 0)
		return -1;
	if ((kc->cert == NULL) != (kc->key == NULL)) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": a client %s needs its client %s", f->name,
		    kc_line(item), kc->user, kc->cert ? "certificate" : "key",
		    kc->cert ? "key" : "certificate");
		return -1;
	}
	if (kc->cert != NULL &&
	    kc_check_pair(kc->cert, kc->cert_len, kc->key, kc->key_len, err, errlen, what) < 0)
		return -1;
	if (kc_str(f, u, "token", &s, err, errlen) < 0 ||
	    kc_str(f, u, "tokenFile", &tf, err, errlen) < 0 ||
	    kc_get(f, u, "exec", &xn, err, errlen) < 0)
		return -1;
	if (xn != NULL && (s != NULL || tf != NULL || kc->cert != NULL)) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": an exec plugin and a token or client certificate: give only one",
		    f->name, kc_line(item), kc->user);
		return -1;
	}
	if (s != NULL && !kc_token_ok(s)) {
		kc_err(err, errlen, "%s:%lu: user \"%s\": token contains spaces or control characters",
		    f->name, kc_line(item), kc->user);
		return -1;
	}
	if (kc_dup(&kc->token, s) < 0)
		goto oom;
	if (tf != NULL) {
		if ((kc->token_file = kc_path(f, tf)) == NULL)
			goto oom;
		/* As client-go: token wins, tokenFile is read when it is absent
		 * and after a 401. */
		if (kc->token == NULL && kc_read_token_file(kc, err, errlen) < 0)
			return -1;
	}
	if (xn != NULL)
		return kc_exec_conf(kc, f, xn, err, errlen);
	return 0;
oom:
	kc_err(err, errlen, "out of memory");
	return -1;
}

/* The context's extension named "kbridge" (kubectl keeps other tools'
 * extensions as they are, so do we):
 *   extensions: [{name: kbridge, extension: {never-proxy: [CIDR, ...],
 *   also-proxy: [CIDR, ...], virtual-subnet: CIDR|off}}]
 * The CLI checks the ranges themselves. */
static int
kc_extension(struct kb_kubeconfig *kc, struct kc_file *f, yaml_node_t *body, char *err,
    size_t errlen)
{
	static const char *keys[2] = { "never-proxy", "also-proxy" };
	yaml_node_t *list, *e, *x, *l, *v;
	yaml_node_item_t *it, *jt;
	const char *name, *vs;
	size_t k;

	if (kc_get(f, body, "extensions", &list, err, errlen) < 0)
		return -1;
	if (list == NULL)
		return 0;
	if (list->type != YAML_SEQUENCE_NODE) {
		kc_err(err, errlen, "%s:%lu: extensions: expected a list", f->name, kc_line(list));
		return -1;
	}
	for (it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
		if ((e = yaml_document_get_node(&f->doc, *it)) == NULL)
			continue;
		if (kc_str(f, e, "name", &name, err, errlen) < 0)
			return -1;
		if (name == NULL || strcmp(name, "kbridge") != 0)
			continue;
		if (kc_get(f, e, "extension", &x, err, errlen) < 0)
			return -1;
		if (kc_str(f, x, "virtual-subnet", &vs, err, errlen) < 0)
			return -1;
		if (vs != NULL && kc->vsubnet == NULL && kc_dup(&kc->vsubnet, vs) < 0) {
			kc_err(err, errlen, "out of memory");
			return -1;
		}
		for (k = 0; k < 2; k++) {
			if (kc_get(f, x, keys[k], &l, err, errlen) < 0)
				return -1;
			if (l == NULL)
				continue;
			if (l->type != YAML_SEQUENCE_NODE) {
				kc_err(err, errlen, "%s:%lu: extension kbridge: %s: expected a list "
				    "of CIDR ranges", f->name, kc_line(l), keys[k]);
				return -1;
			}
			for (jt = l->data.sequence.items.start; jt < l->data.sequence.items.top;
			    jt++) {
				v = yaml_document_get_node(&f->doc, *jt);
				if (v == NULL || v->type != YAML_SCALAR_NODE ||
				    strlen((const char *)v->data.scalar.value) !=
				    v->data.scalar.length) {
					kc_err(err, errlen, "%s:%lu: extension kbridge: %s: expected "
					    "a list of CIDR ranges", f->name, kc_line(l), keys[k]);
					return -1;
				}
				if (kc->nranges[k] >= KB_KUBECONFIG_RANGES_MAX) {
					kc_err(err, errlen, "%s:%lu: extension kbridge: %s: at most "
					    "%d ranges", f->name, kc_line(l), keys[k],
					    KB_KUBECONFIG_RANGES_MAX);
					return -1;
				}
				if (kc_dup(&kc->ranges[k][kc->nranges[k]],
				    (const char *)v->data.scalar.value) < 0) {
					kc_err(err, errlen, "out of memory");
					return -1;
				}
				kc->nranges[k]++;
			}
		}
	}
	return 0;
}

/* Select the context and resolve it across the files (first wins). */
static struct kb_kubeconfig *
kc_resolve(struct kc_file *fs, size_t nf, const char *context, int flags, const char *where,
    char *err, size_t errlen)
{
	struct kb_kubeconfig *kc;
	struct kc_file *f;
	yaml_node_t *item, *body;
	const char *s, *cl, *us, *ns;
	size_t i;
	int r;

	if ((kc = calloc(1, sizeof(*kc))) == NULL) {
		kc_err(err, errlen, "out of memory");
		return NULL;
	}
	kc->flags = flags;
	if (context == NULL || context[0] == '\0') {
		for (i = 0; i < nf && context == NULL; i++) {
			if (kc_str(&fs[i], kc_root(&fs[i]), "current-context", &s, err, errlen) < 0)
				goto fail;
			context = s;
		}
		if (context == NULL) {
			kc_err(err, errlen, "%s: no current-context: give --context", where);
			goto fail;
		}
	}
	if (kc_dup(&kc->context, context) < 0)
		goto oom;
	if ((r = kc_find_all(fs, nf, "contexts", "context", context, &f, &item, &body, err,
	    errlen)) < 0)
		goto fail;
	if (r == 0) {
		kc_err(err, errlen, "%s: context \"%s\" not found", where, context);
		goto fail;
	}
	if (kc_str(f, body, "cluster", &cl, err, errlen) < 0 ||
	    kc_str(f, body, "user", &us, err, errlen) < 0 ||
	    kc_str(f, body, "namespace", &ns, err, errlen) < 0 ||
	    kc_extension(kc, f, body, err, errlen) < 0)
		goto fail;
	if (cl == NULL) {
		kc_err(err, errlen, "%s:%lu: context \"%s\" has no cluster", f->name, kc_line(item),
		    context);
		goto fail;
	}
	if (kc_dup(&kc->cluster, cl) < 0 || kc_dup(&kc->user, us ? us : "") < 0 ||
	    kc_dup(&kc->ns, ns ? ns : "default") < 0)
		goto oom;
	if ((r = kc_find_all(fs, nf, "clusters", "cluster", kc->cluster, &f, &item, &body, err,
	    errlen)) < 0)
		goto fail;
	if (r == 0) {
		kc_err(err, errlen, "%s: cluster \"%s\" of context \"%s\" not found", where,
		    kc->cluster, context);
		goto fail;
	}
	if (kc_cluster(kc, f, item, body, err, errlen) < 0)
		goto fail;
	if (kc->user[0] != '\0') {
		if ((r = kc_find_all(fs, nf, "users", "user", kc->user, &f, &item, &body, err,
		    errlen)) < 0)
			goto fail;
		if (r == 0) {
			kc_err(err, errlen, "%s: user \"%s\" of context \"%s\" not found", where,
			    kc->user, context);
			goto fail;
		}
		if (kc_user(kc, f, item, body, err, errlen) < 0)
			goto fail;
	}
	return kc;
oom:
	kc_err(err, errlen, "out of memory");
fail:
	kb_kubeconfig_free(kc);
	return NULL;
}

static void
kc_files_free(struct kc_file *fs, size_t nf)
{
	size_t i;

	for (i = 0; i < nf; i++) {
		if (fs[i].loaded)
			yaml_document_delete(&fs[i].doc);
		free(fs[i].name);
		free(fs[i].dir);
	}
	free(fs);
}

struct kb_kubeconfig *
kb_kubeconfig_load_buf(const char *buf, size_t len, const char *name, const char *dir,
    const char *context, int flags, char *err, size_t errlen)
{
	struct kc_file f = { 0 };
	struct kb_kubeconfig *kc = NULL;

	if ((f.name = strdup(name ? name : "kubeconfig")) == NULL ||
	    (f.dir = strdup(dir ? dir : ".")) == NULL) {
		kc_err(err, errlen, "out of memory");
		goto done;
	}
	if (kc_parse(&f, buf, len, err, errlen) == 0)
		kc = kc_resolve(&f, 1, context, flags, f.name, err, errlen);
done:
	if (f.loaded)
		yaml_document_delete(&f.doc);
	free(f.name);
	free(f.dir);
	return kc;
}

struct kb_kubeconfig *
kb_kubeconfig_load(const struct kb_kubeconfig_opts *o, char *err, size_t errlen)
{
	struct kc_file *fs = NULL;
	struct kb_kubeconfig *kc = NULL;
	char *list = NULL, *tok, *save = NULL, *where = NULL;
	size_t nf = 0, i, wlen = 0;
	int explicit = o->path != NULL && o->path[0] != '\0';

	if ((fs = calloc(KC_MAX_FILES, sizeof(*fs))) == NULL)
		goto oom;
	if (explicit) {
		list = strdup(o->path);
	} else if (o->env != NULL && o->env[0] != '\0') {
		list = strdup(o->env);
	} else {
		if (o->home == NULL || o->home[0] == '\0') {
			kc_err(err, errlen, "no kubeconfig: give --kubeconfig, or set KUBECONFIG or HOME");
			goto done;
		}
		if (asprintf(&list, "%s/.kube/config", o->home) < 0)
			list = NULL;
	}
	if (list == NULL)
		goto oom;
	/* An explicit file is one path even with a ':' in its name. */
	for (tok = explicit ? list : strtok_r(list, ":", &save); tok != NULL;
	    tok = explicit ? NULL : strtok_r(NULL, ":", &save)) {
		struct kc_file *f;
		char *buf;
		size_t len;

		for (i = 0; i < nf && strcmp(fs[i].name, tok) != 0; i++)
			;
		if (i < nf)
			continue;	/* listed twice: kubectl reads it once */
		if (nf == KC_MAX_FILES) {
			kc_err(err, errlen, "KUBECONFIG lists more than %d files", KC_MAX_FILES);
			goto done;
		}
		if ((buf = kc_read_file(tok, KC_MAX_FILE, &len)) == NULL) {
			/* Missing files in $KUBECONFIG are skipped, as kubectl does. */
			if (errno == ENOENT && !explicit && o->env != NULL && o->env[0] != '\0')
				continue;
			if (errno == ENOENT && !explicit) {
				kc_err(err, errlen, "no kubeconfig: %s does not exist (give --kubeconfig or set KUBECONFIG)",
				    tok);
				goto done;
			}
			kc_err(err, errlen, "kubeconfig %s: %s", tok,
			    errno == EFBIG ? "larger than 8 MiB" : strerror(errno));
			goto done;
		}
		f = &fs[nf++];
		if ((f->name = strdup(tok)) == NULL || (f->dir = kc_dirname(tok)) == NULL) {
			free(buf);
			goto oom;
		}
		i = kc_parse(f, buf, len, err, errlen);
		free(buf);
		if (i != 0)
			goto done;
		wlen += strlen(tok) + 1;
	}
	if (nf == 0) {
		kc_err(err, errlen, "no kubeconfig: none of the files in KUBECONFIG exists");
		goto done;
	}
	if ((where = calloc(1, wlen)) == NULL)
		goto oom;
	for (i = 0; i < nf; i++) {
		if (i)
			strcat(where, ":");
		strcat(where, fs[i].name);
	}
	kc = kc_resolve(fs, nf, o->context, o->flags, where, err, errlen);
	goto done;
oom:
	kc_err(err, errlen, "out of memory");
done:
	if (fs)
		kc_files_free(fs, nf);
	free(list);
	free(where);
	return kc;
}

void
kb_kubeconfig_free(struct kb_kubeconfig *kc)
{
	size_t i, j;

	if (kc == NULL)
		return;
	free(kc->context);
	free(kc->cluster);
	free(kc->user);
	free(kc->ns);
	free(kc->server);
	free(kc->tls_server_name);
	free(kc->url_base);
	curl_slist_free_all(kc->connect_to);
	free(kc->ca);
	free(kc->token);
	if (kc->cert)
		OPENSSL_cleanse(kc->cert, kc->cert_len);
	free(kc->cert);
	if (kc->key)
		OPENSSL_cleanse(kc->key, kc->key_len);
	free(kc->key);
	free(kc->token_file);
	kc_exec_free(kc->exec);
	for (i = 0; i < 2; i++)
		for (j = 0; j < kc->nranges[i]; j++)
			free(kc->ranges[i][j]);
	free(kc->vsubnet);
	free(kc);
}

const char *
kb_kubeconfig_virtual_subnet(const struct kb_kubeconfig *kc)
{
	return kc->vsubnet;
}

size_t
kb_kubeconfig_ranges(const struct kb_kubeconfig *kc, int also, const char *const **out)
{
	*out = (const char *const *)kc->ranges[also ? 1 : 0];
	return kc->nranges[also ? 1 : 0];
}

const char *
kb_kubeconfig_context(const struct kb_kubeconfig *kc)
{
	return kc->context;
}

const char *
kb_kubeconfig_cluster(const struct kb_kubeconfig *kc)
{
	return kc->cluster;
}

const char *
kb_kubeconfig_user(const struct kb_kubeconfig *kc)
{
	return kc->user;
}

const char *
kb_kubeconfig_namespace(const struct kb_kubeconfig *kc)
{
	return kc->ns;
}

const char *
kb_kubeconfig_server(const struct kb_kubeconfig *kc)
{
	return kc->server;
}

const char *
kb_kubeconfig_tls_server_name(const struct kb_kubeconfig *kc)
{
	return kc->tls_server_name;
}

int
kb_kubeconfig_insecure(const struct kb_kubeconfig *kc)
{
	return kc->insecure;
}

int
kb_kubeconfig_has_exec(const struct kb_kubeconfig *kc)
{
	return kc->exec != NULL;
}

const char *
kb_kubeconfig_token(const struct kb_kubeconfig *kc)
{
	return kc->token;
}

time_t
kb_kubeconfig_expiry(const struct kb_kubeconfig *kc)
{
	return kc->expiry;
}

const char *
kb_kubeconfig_ca_pem(const struct kb_kubeconfig *kc, size_t *len)
{
	if (len)
		*len = kc->ca_len;
	return kc->ca;
}

const char *
kb_kubeconfig_cert_pem(const struct kb_kubeconfig *kc, size_t *len)
{
	if (len)
		*len = kc->cert_len;
	return kc->cert;
}

const char *
kb_kubeconfig_key_pem(const struct kb_kubeconfig *kc, size_t *len)
{
	if (len)
		*len = kc->key_len;
	return kc->key;
}

/* ---- exec credential plugins ---- */

/* RFC 3339 ("2026-12-03T10:00:00Z", fraction and offset allowed) to time_t. */
static int
kc_rfc3339(const char *s, time_t *out)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec, n = 0, oh, om;
	long off = 0;
	time_t t;

	if (sscanf(s, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
	    n != 19)
		return -1;
	s += n;
	if (*s == '.') {
		if (s[1] < '0' || s[1] > '9')
			return -1;
		for (s++; *s >= '0' && *s <= '9'; s++)
			;
	}
	if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0') {
		off = 0;
	} else if ((s[0] == '+' || s[0] == '-') && sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
	    n == 5 && s[6] == '\0' && oh < 24 && om < 60) {
		off = (oh * 60L + om) * 60 * (s[0] == '-' ? -1 : 1);
	} else {
		return -1;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	*out = t - off;
	return 0;
}

/* KUBERNETES_EXEC_INFO: what client-go gives a plugin. */
static char *
kc_exec_info(const struct kb_kubeconfig *kc)
{
	cJSON *j = cJSON_CreateObject(), *spec, *cl;
	char *s = NULL, *b64 = NULL;

	if (j == NULL || !cJSON_AddStringToObject(j, "apiVersion", kc->exec->api) ||
	    !cJSON_AddStringToObject(j, "kind", "ExecCredential") ||
	    (spec = cJSON_AddObjectToObject(j, "spec")) == NULL ||
	    !cJSON_AddFalseToObject(spec, "interactive"))
		goto done;
	if (kc->exec->cluster_info) {
		if ((cl = cJSON_AddObjectToObject(spec, "cluster")) == NULL ||
		    !cJSON_AddStringToObject(cl, "server", kc->server))
			goto done;
		if (kc->tls_server_name &&
		    !cJSON_AddStringToObject(cl, "tls-server-name", kc->tls_server_name))
			goto done;
		if (kc->insecure && !cJSON_AddTrueToObject(cl, "insecure-skip-tls-verify"))
			goto done;
		if (kc->ca != NULL && ((b64 = kb_b64_encode(kc->ca, kc->ca_len)) == NULL ||
		    !cJSON_AddStringToObject(cl, "certificate-authority-data", b64)))
			goto done;
	}
	s = cJSON_PrintUnformatted(j);
done:
	free(b64);
	cJSON_Delete(j);
	return s;
}

/* The environment plus the plugin's additions (which win) and the info. */
static char **
kc_exec_env(const struct kc_exec *x, char *info)
{
	size_t n = 0, m = 0, i, k;
	char **env, **p;

	for (p = environ; p && *p; p++)
		n++;
	for (p = x->env; *p; p++)
		m++;
	if ((env = calloc(n + m + 2, sizeof(char *))) == NULL)
		return NULL;
	for (i = 0, k = 0; i < n; i++) {
		const char *e = environ[i], *eq = strchr(e, '=');
		size_t nl = eq ? (size_t)(eq - e) : strlen(e);
		int over = nl == strlen("KUBERNETES_EXEC_INFO") &&
		    !strncmp(e, "KUBERNETES_EXEC_INFO", nl);

		for (p = x->env; *p && !over; p++)
			over = !strncmp(*p, e, nl) && (*p)[nl] == '=';
		if (!over)
			env[k++] = (char *)e;
	}
	for (p = x->env; *p; p++)
		env[k++] = *p;
	env[k++] = info;
	env[k] = NULL;
	return env;
}

/* The last non-empty line of s, flattened (for one-line errors). */
static void
kc_last_line(char *s, size_t len, char *out, size_t outlen)
{
	char *end = s + len, *start;
	size_t i;

	while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	for (start = end; start > s && start[-1] != '\n'; start--)
		;
	snprintf(out, outlen, "%.*s", (int)(end - start), start);
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < 0x20)
			out[i] = ' ';
}

static void
kc_exec_fail(const struct kb_kubeconfig *kc, char *err, size_t errlen, const char *what,
    const char *detail)
{
	char hint[512] = "";
	size_t i;

	if (kc->exec->hint) {
		snprintf(hint, sizeof(hint), "; %s", kc->exec->hint);
		for (i = 0; hint[i]; i++)
			if ((unsigned char)hint[i] < 0x20)
				hint[i] = ' ';
	}
	kc_err(err, errlen, "user \"%s\": exec plugin %s %s%s%s%s", kc->user,
	    kc->exec->argv[0], what, detail && *detail ? ": " : "", detail ? detail : "", hint);
}

/* Runs the plugin with stdin /dev/null; its stdout (at most 1 MiB) in *out,
 * the tail of its stderr in errtail. */
static int
kc_exec_run(struct kb_kubeconfig *kc, char **out, size_t *outlen, char *errtail,
    size_t taillen, char *err, size_t errlen)
{
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, ps[2] = { -1, -1 }, devnull = -1;
	char *info = NULL, *infoenv = NULL, **envp = NULL, *buf = NULL, ebuf[4096], msg[64];
	size_t len = 0, cap = 0, elen = 0;
	uint64_t deadline;
	int status, rc = -1, cerr = 0, i;
	pid_t pid = -1;
	ssize_t n;

	*out = NULL;
	errtail[0] = '\0';
	if ((info = kc_exec_info(kc)) == NULL ||
	    asprintf(&infoenv, "KUBERNETES_EXEC_INFO=%s", info) < 0 ||
	    (envp = kc_exec_env(kc->exec, infoenv)) == NULL) {
		kc_err(err, errlen, "out of memory");
		goto done;
	}
	if ((devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0 || pipe2(po, O_CLOEXEC) < 0 ||
	    pipe2(pe, O_CLOEXEC) < 0 || pipe2(ps, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		kc_exec_fail(kc, err, errlen, "cannot start", strerror(errno));
		goto done;
	}
	if (pid == 0) {
		sigset_t all;

		/* The plugin gets default signals, whatever the CLI set. */
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(devnull, 0) >= 0 && dup2(po[1], 1) >= 0 && dup2(pe[1], 2) >= 0)
			execvpe(kc->exec->argv[0], kc->exec->argv, envp);
		cerr = errno;
		(void)!write(ps[1], &cerr, sizeof(cerr));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	close(ps[1]);
	po[1] = pe[1] = ps[1] = -1;
	/* The status pipe closes on exec, or carries exec's errno. */
	while ((n = read(ps[0], &cerr, sizeof(cerr))) < 0 && errno == EINTR)
		;
	if (n == sizeof(cerr)) {
		kc_exec_fail(kc, err, errlen, cerr == ENOENT ? "not found" : "cannot run",
		    strerror(cerr));
		goto done;
	}
	deadline = kb_now_ms() + (uint64_t)kc_exec_timeout_ms;
	while (po[0] >= 0 || pe[0] >= 0) {
		struct pollfd pfd[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
		uint64_t now = kb_now_ms();
		int r;

		if (now >= deadline) {
			snprintf(msg, sizeof(msg), "timed out after %d s", kc_exec_timeout_ms / 1000);
			kc_exec_fail(kc, err, errlen, msg, NULL);
			goto done;
		}
		if ((r = poll(pfd, 2, (int)(deadline - now))) < 0 && errno != EINTR) {
			kc_exec_fail(kc, err, errlen, "poll", strerror(errno));
			goto done;
		}
		if (r <= 0)
			continue;
		if (pfd[0].revents) {
			if (cap - len < 4096) {
				char *nb;

				cap = cap ? cap * 2 : 16384;
				if ((nb = realloc(buf, cap + 1)) == NULL) {
					kc_err(err, errlen, "out of memory");
					goto done;
				}
				buf = nb;
			}
			if ((n = read(po[0], buf + len, cap - len)) <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				close(po[0]);
				po[0] = -1;
			}
			len += n > 0 ? (size_t)n : 0;
			if (len > KC_EXEC_MAX_OUT) {
				kc_exec_fail(kc, err, errlen, "wrote more than 1 MiB", NULL);
				goto done;
			}
		}
		if (pfd[1].revents) {
			if (elen == sizeof(ebuf)) {	/* keep the tail */
				memmove(ebuf, ebuf + sizeof(ebuf) / 2, sizeof(ebuf) / 2);
				elen = sizeof(ebuf) / 2;
			}
			if ((n = read(pe[0], ebuf + elen, sizeof(ebuf) - elen)) <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				close(pe[0]);
				pe[0] = -1;
			}
			elen += n > 0 ? (size_t)n : 0;
		}
	}
	kc_last_line(ebuf, elen, errtail, taillen);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			kc_exec_fail(kc, err, errlen, "waitpid", strerror(errno));
			pid = -1;
			goto done;
		}
	}
	pid = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFEXITED(status))
			snprintf(msg, sizeof(msg), "failed (exit %d)", WEXITSTATUS(status));
		else
			snprintf(msg, sizeof(msg), "failed (signal %d)", WTERMSIG(status));
		kc_exec_fail(kc, err, errlen, msg, errtail);
		goto done;
	}
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		kc_err(err, errlen, "out of memory");
		goto done;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	buf = NULL;
	rc = 0;
done:
	if (pid > 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	for (i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
		if (ps[i] >= 0)
			close(ps[i]);
	}
	if (devnull >= 0)
		close(devnull);
	free(buf);
	free(envp);
	free(infoenv);
	free(info);
	return rc;
}

/* Parse the plugin's ExecCredential and make it the current credential. */
static int
kc_exec_parse(struct kb_kubeconfig *kc, const char *out, size_t len, char *err, size_t errlen)
{
	cJSON *j = cJSON_ParseWithLength(out, len), *st;
	const char *api, *kind, *tok, *crt, *key, *exp;
	char *ntok = NULL, *ncrt = NULL, *nkey = NULL;
	time_t expiry = 0;
	int rc = -1;

	if (j == NULL || !cJSON_IsObject(j)) {
		kc_exec_fail(kc, err, errlen, "printed no JSON object", NULL);
		goto done;
	}
	api = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "apiVersion"));
	kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "kind"));
	if (api == NULL || strcmp(api, kc->exec->api) != 0 || kind == NULL ||
	    strcmp(kind, "ExecCredential") != 0) {
		kc_exec_fail(kc, err, errlen, "printed no ExecCredential", kc->exec->api);
		goto done;
	}
	st = cJSON_GetObjectItemCaseSensitive(j, "status");
	tok = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "token"));
	crt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "clientCertificateData"));
	key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "clientKeyData"));
	exp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "expirationTimestamp"));
	if (tok && !*tok)
		tok = NULL;
	if (crt && !*crt)
		crt = NULL;
	if (key && !*key)
		key = NULL;
	if (!cJSON_IsObject(st) || (tok == NULL && crt == NULL && key == NULL)) {
		kc_exec_fail(kc, err, errlen, "gave neither status.token nor status.clientCertificateData", NULL);
		goto done;
	}
	if ((crt == NULL) != (key == NULL)) {
		kc_exec_fail(kc, err, errlen, "gave a client certificate without key, or a key without certificate", NULL);
		goto done;
	}
	if (tok != NULL && !kc_token_ok(tok)) {
		kc_exec_fail(kc, err, errlen, "gave a token with spaces or control characters", NULL);
		goto done;
	}
	if (exp != NULL && kc_rfc3339(exp, &expiry) < 0) {
		kc_exec_fail(kc, err, errlen, "gave a bad status.expirationTimestamp", exp);
		goto done;
	}
	if (crt != NULL) {
		char what[300];

		snprintf(what, sizeof(what), "user \"%s\": exec plugin %s", kc->user,
		    kc->exec->argv[0]);
		if (kc_check_pair(crt, strlen(crt), key, strlen(key), err, errlen, what) < 0)
			goto done;
	}
	if ((tok && (ntok = strdup(tok)) == NULL) || (crt && (ncrt = strdup(crt)) == NULL) ||
	    (key && (nkey = strdup(key)) == NULL)) {
		kc_err(err, errlen, "out of memory");
		goto done;
	}
	free(kc->token);
	if (kc->cert)
		OPENSSL_cleanse(kc->cert, kc->cert_len);
	free(kc->cert);
	if (kc->key)
		OPENSSL_cleanse(kc->key, kc->key_len);
	free(kc->key);
	kc->token = ntok;
	kc->cert = ncrt;
	kc->cert_len = crt ? strlen(crt) : 0;
	kc->key = nkey;
	kc->key_len = key ? strlen(key) : 0;
	ntok = ncrt = nkey = NULL;
	kc->expiry = expiry;
	kc->have_creds = 1;
	rc = 0;
done:
	free(ntok);
	free(ncrt);
	free(nkey);
	cJSON_Delete(j);
	return rc;
}

int
kb_kubeconfig_auth(struct kb_kubeconfig *kc, char *err, size_t errlen)
{
	char *out, tail[512];
	size_t len = 0;
	int rc;

	if (kc->exec == NULL) {
		if (kc->stale && kc->token_file && kc_read_token_file(kc, err, errlen) < 0)
			return -1;
		kc->stale = 0;
		return 0;
	}
	/* Cached until it expires, as client-go does; no expiry: until a 401. */
	if (kc->have_creds && !kc->stale && (kc->expiry == 0 || time(NULL) < kc->expiry))
		return 0;
	if (kc->flags & KB_KC_NO_EXEC) {
		kc_err(err, errlen, "user \"%s\": exec plugin %s: not run here", kc->user,
		    kc->exec->argv[0]);
		return -1;
	}
	log_debug("kubeconfig: running exec plugin %s for user %s", kc->exec->argv[0], kc->user);
	if (kc_exec_run(kc, &out, &len, tail, sizeof(tail), err, errlen) < 0)
		return -1;
	rc = kc_exec_parse(kc, out, len, err, errlen);
	OPENSSL_cleanse(out, len);
	free(out);
	if (rc == 0)
		kc->stale = 0;
	return rc;
}

void
kb_kubeconfig_refresh(struct kb_kubeconfig *kc)
{
	kc->stale = 1;
}

/* ---- libcurl ---- */

char *
kb_kubeconfig_url(const struct kb_kubeconfig *kc, const char *path)
{
	const char *base = kc->url_base ? kc->url_base : kc->server;
	char *s;

	return asprintf(&s, "%s%s", base, path) < 0 ? NULL : s;
}

int
kb_kubeconfig_curl(struct kb_kubeconfig *kc, CURL *c, char *err, size_t errlen)
{
	struct curl_blob b;
	CURLcode cc = CURLE_OK;
	const char *opt = "";

	if (kb_kubeconfig_auth(kc, err, errlen) < 0)
		return -1;
#define SET(o, v) do {							\
	if (cc == CURLE_OK && (cc = curl_easy_setopt(c, o, v)) != CURLE_OK)	\
		opt = #o;							\
} while (0)
	SET(CURLOPT_SSL_VERIFYPEER, kc->insecure ? 0L : 1L);
	SET(CURLOPT_SSL_VERIFYHOST, kc->insecure ? 0L : 2L);
	if (kc->ca != NULL) {
		/* Only this CA, not the system's roots, as kubectl. */
		b = (struct curl_blob){ kc->ca, kc->ca_len, CURL_BLOB_COPY };
		SET(CURLOPT_CAINFO, (char *)NULL);
		SET(CURLOPT_CAPATH, (char *)NULL);
		SET(CURLOPT_CAINFO_BLOB, &b);
	}
	if (kc->cert != NULL) {
		b = (struct curl_blob){ kc->cert, kc->cert_len, CURL_BLOB_COPY };
		SET(CURLOPT_SSLCERTTYPE, "PEM");
		SET(CURLOPT_SSLCERT_BLOB, &b);
		b = (struct curl_blob){ kc->key, kc->key_len, CURL_BLOB_COPY };
		SET(CURLOPT_SSLKEYTYPE, "PEM");
		SET(CURLOPT_SSLKEY_BLOB, &b);
	}
	if (kc->token != NULL) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		SET(CURLOPT_XOAUTH2_BEARER, kc->token);
	}
	if (kc->connect_to != NULL)
		SET(CURLOPT_CONNECT_TO, kc->connect_to);
#undef SET
	if (cc != CURLE_OK) {
		kc_err(err, errlen, "libcurl: %s: %s (kbridge needs libcurl 7.77 or later with OpenSSL)",
		    opt, curl_easy_strerror(cc));
		return -1;
	}
	return 0;
}

struct kc_body {
	char *p;
	size_t len, max;
};

static size_t
kc_on_body(char *p, size_t size, size_t n, void *arg)
{
	struct kc_body *b = arg;
	char *q;

	if (b->len + size * n > b->max || (q = realloc(b->p, b->len + size * n + 1)) == NULL)
		return 0;
	memcpy(q + b->len, p, size * n);
	b->len += size * n;
	q[b->len] = '\0';
	b->p = q;
	return size * n;
}

int
kb_kubeconfig_request(struct kb_kubeconfig *kc, CURL *c, const struct kb_kube_request *r,
    long *status, char **out, size_t *outlen, char *err, size_t errlen)
{
	struct curl_slist *hdr = NULL;
	struct kc_body b = { .max = r->max_body };
	char *url, ct[96];
	CURLcode cc;
	int tries, rc = -1;

	*out = NULL;
	*outlen = 0;
	if ((url = kb_kubeconfig_url(kc, r->path)) == NULL) {
		kc_err(err, errlen, "out of memory");
		return -1;
	}
	for (tries = 0; tries < 2; tries++) {
		free(b.p);
		b.p = NULL;
		b.len = 0;
		curl_slist_free_all(hdr);
		hdr = NULL;
		curl_easy_reset(c);
		if (kb_kubeconfig_curl(kc, c, err, errlen) == -1)
			goto out;
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, kc_on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(c, CURLOPT_USERAGENT, r->user_agent);
		if (r->progress) {
			curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
			curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, r->progress);
		}
		hdr = curl_slist_append(hdr, "Accept: application/json");
		if (r->body) {
			snprintf(ct, sizeof(ct), "Content-Type: %s", r->ctype);
			hdr = curl_slist_append(hdr, ct);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
		}
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		if ((cc = curl_easy_perform(c)) != CURLE_OK) {
			kc_err(err, errlen, "%s: %s", kc->server, curl_easy_strerror(cc));
			goto out;
		}
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
		if (*status != 401)
			break;
		kb_kubeconfig_refresh(kc);
	}
	*out = b.p;
	*outlen = b.len;
	b.p = NULL;
	rc = 0;
out:
	/* The handle must not keep pointers to what is freed here. */
	curl_easy_reset(c);
	curl_slist_free_all(hdr);
	free(b.p);
	free(url);
	return rc;
}
