/* Kubeconfig, read as kubectl reads it: the file list (--kubeconfig, else
 * $KUBECONFIG merged first-wins, else $HOME/.kube/config), the context and
 * its cluster and user, paths relative to the file that names them, *-data,
 * tokens, and exec credential plugins (client.authentication.k8s.io/v1 and
 * v1beta1) cached until they expire.
 *
 * CLI side only: this runs the user's plugins and reads the user's files, so
 * it runs as the user. The root daemon must NEVER read a kubeconfig (it would
 * run arbitrary commands as root and read files on the user's behalf); the
 * CLI passes the daemon what it needs.
 *
 * Stricter than kubectl, each with one clear error: the server must be
 * https, insecure-skip-tls-verify needs KB_KC_ALLOW_INSECURE, and proxy-url,
 * username/password (basic auth), auth-provider, impersonation ("as"), an
 * exec plugin combined with static credentials, exec interactiveMode Always
 * (plugins get no terminal), a name or key given twice, and YAML merge keys
 * (<<) are refused. */
#ifndef KB_KUBECONFIG_H
#define KB_KUBECONFIG_H

#include <stddef.h>
#include <time.h>

#include <curl/curl.h>

struct kb_kubeconfig;

/* Accept insecure-skip-tls-verify: true (kb_kubeconfig_insecure() says so,
 * kb_kubeconfig_curl() then skips verification). Refused without it. */
#define KB_KC_ALLOW_INSECURE 0x1
/* Never run an exec plugin (kb_kubeconfig_auth fails instead). */
#define KB_KC_NO_EXEC 0x2

struct kb_kubeconfig_opts {
	const char *path;	/* --kubeconfig FILE (must exist), or NULL */
	const char *context;	/* --context NAME, or NULL for current-context */
	const char *env;	/* $KUBECONFIG as the caller read it, or NULL */
	const char *home;	/* $HOME, or NULL */
	int flags;		/* KB_KC_* */
};

/* Read the files, select the context and resolve its cluster and user
 * (static credentials are read now, an exec plugin runs only in
 * kb_kubeconfig_auth). No getenv: the caller passes $KUBECONFIG and $HOME in
 * o. NULL with one line in err (file:line when it is about a file's
 * content). The caller frees with kb_kubeconfig_free. */
struct kb_kubeconfig *kb_kubeconfig_load(const struct kb_kubeconfig_opts *o, char *err,
    size_t errlen);
/* The same from one file's content in memory (tests, fuzzer); name is used
 * in messages and relative paths are relative to dir (NULL: "."). */
struct kb_kubeconfig *kb_kubeconfig_load_buf(const char *buf, size_t len, const char *name,
    const char *dir, const char *context, int flags, char *err, size_t errlen);
/* Frees kc and everything the getters returned; NULL is fine. */
void kb_kubeconfig_free(struct kb_kubeconfig *kc);

/* Getters: strings owned by kc, valid until kb_kubeconfig_free. */
const char *kb_kubeconfig_context(const struct kb_kubeconfig *kc);	/* context name */
const char *kb_kubeconfig_cluster(const struct kb_kubeconfig *kc);	/* cluster name */
const char *kb_kubeconfig_user(const struct kb_kubeconfig *kc);	/* user name, "" if none */
const char *kb_kubeconfig_namespace(const struct kb_kubeconfig *kc);	/* "default" if unset */
/* The context's kbridge extension (extensions: [{name: kbridge, extension:
 * {never-proxy: [...], also-proxy: [...]}}]): its never-proxy (also 0) or
 * also-proxy (also 1) strings, unchecked; the count. */
#define KB_KUBECONFIG_RANGES_MAX 32
size_t kb_kubeconfig_ranges(const struct kb_kubeconfig *kc, int also, const char *const **out);
/* The extension's virtual-subnet string (unchecked), or NULL. */
const char *kb_kubeconfig_virtual_subnet(const struct kb_kubeconfig *kc);
/* https://host[:port][/path], no trailing '/'. */
const char *kb_kubeconfig_server(const struct kb_kubeconfig *kc);
const char *kb_kubeconfig_tls_server_name(const struct kb_kubeconfig *kc); /* NULL if unset */
/* The CA bundle (PEM, NUL-terminated), NULL: the system's roots. */
const char *kb_kubeconfig_ca_pem(const struct kb_kubeconfig *kc, size_t *len);
/* insecure-skip-tls-verify was set (and allowed by KB_KC_ALLOW_INSECURE). */
int kb_kubeconfig_insecure(const struct kb_kubeconfig *kc);
/* Does the user have an exec plugin? */
int kb_kubeconfig_has_exec(const struct kb_kubeconfig *kc);

/* Make the credentials current: runs the exec plugin (blocking, at most
 * 30 s, 1 MiB of output) when its cached credential is missing, expired or
 * refreshed, and re-reads tokenFile after kb_kubeconfig_refresh. 0, or -1
 * with one line in err (the plugin's command, its stderr's last line and
 * its installHint). */
int kb_kubeconfig_auth(struct kb_kubeconfig *kc, char *err, size_t errlen);
/* The API answered 401: the next kb_kubeconfig_auth runs the plugin again
 * (or re-reads tokenFile). */
void kb_kubeconfig_refresh(struct kb_kubeconfig *kc);
/* Credentials as of the last kb_kubeconfig_auth (static ones from load):
 * owned by kc, valid until the next kb_kubeconfig_auth or free; NULL if
 * none. PEM strings are NUL-terminated. */
const char *kb_kubeconfig_token(const struct kb_kubeconfig *kc);
const char *kb_kubeconfig_cert_pem(const struct kb_kubeconfig *kc, size_t *len);
const char *kb_kubeconfig_key_pem(const struct kb_kubeconfig *kc, size_t *len);
/* The plugin credential's expiry (0: none, or not from a plugin). */
time_t kb_kubeconfig_expiry(const struct kb_kubeconfig *kc);

/* Runs kb_kubeconfig_auth, then sets on c: CA, client cert and key as
 * in-memory blobs (copied by libcurl, nothing written to disk), the token
 * as a Bearer Authorization (libcurl sends it only to this host), peer and
 * host verification on, and for tls-server-name a CONNECT_TO mapping (the
 * URL's host must then be kb_kubeconfig_url's). c keeps a pointer to a list
 * owned by kc: kc must outlive c's transfers. Proxies from the environment
 * apply, as in kubectl, unless the caller sets CURLOPT_PROXY. 0 or -1 with
 * err. */
int kb_kubeconfig_curl(struct kb_kubeconfig *kc, CURL *c, char *err, size_t errlen);
/* The URL for an API path ("/api/v1/namespaces"): server + path, with the
 * host replaced by tls-server-name when set (see kb_kubeconfig_curl).
 * Malloc'd, the caller frees; NULL on failure. */
char *kb_kubeconfig_url(const struct kb_kubeconfig *kc, const char *path);

/* One blocking request to the API server (the CLI's; the manager uses
 * kubeapi.h). */
struct kb_kube_request {
	const char *method;		/* GET, POST, PATCH... */
	const char *path;		/* for kb_kubeconfig_url */
	const char *ctype;		/* body's Content-Type */
	const char *body;		/* NUL-terminated; NULL: none */
	const char *user_agent;
	long timeout_ms;
	size_t max_body;		/* a longer answer fails the request */
	/* Called while the transfer runs: nonzero aborts it. NULL: none. */
	int (*progress)(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un);
};

/* Send r on c (reset first, and after: its connections stay open for the
 * next request) with kc's credentials (kb_kubeconfig_curl), asking for
 * JSON. A 401 refreshes the credentials and tries once more. 0 with
 * *status and the answer's body (*out NUL-terminated, the caller frees;
 * NULL when empty; *outlen), or -1 with err ("SERVER: libcurl's reason")
 * when no answer came. */
int kb_kubeconfig_request(struct kb_kubeconfig *kc, CURL *c, const struct kb_kube_request *r,
    long *status, char **out, size_t *outlen, char *err, size_t errlen);

#endif
