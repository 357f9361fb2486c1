/* The objects `kbridge install` applies and `kbridge uninstall` removes,
 * built in one place as data (cJSON), and a YAML emitter for them (libyaml,
 * for --dry-run -o yaml). */
#ifndef KB_MANIFESTS_H
#define KB_MANIFESTS_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "msg.h"
#include "tls.h"

#define KB_INSTALL_NS_DEFAULT	"kbridge"
#define KB_IMAGE_DEFAULT	"ghcr.io/kbridge/kbridge-agent:" KB_MANIFEST_VERSION
#define KB_MANIFEST_VERSION	KB_VERSION
#define KB_MANAGER_NAME		"kbridge-manager"
#define KB_DEVELOPER_NAME	"kbridge-developer"
/* Made by the manager at its first start, never by install: the CA key
 * stays out of the hands of whoever runs install. */
#define KB_CA_SECRET		"kbridge-manager-ca"
/* The manager's previews and intercepts (preview tokens are bearer
 * secrets: a Secret), made by the manager at its first change. */
#define KB_STATE_SECRET		"kbridge-manager-state"
/* The CertificateSigningRequest signer the manager approves and signs. */
#define KB_SIGNER_NAME		KB_SIGNER_DEVELOPER
/* The CA certificate (public part only), published by the manager for
 * developers (`kbridge login` checks the certificate it gets with it). */
#define KB_CA_CONFIGMAP		"kbridge-manager-ca"
#define KB_LABEL_MANAGED_BY	"app.kubernetes.io/managed-by"
#define KB_LABEL_PART_OF	"app.kubernetes.io/part-of"
#define KB_MANAGER_TLS_PORT	8443
#define KB_MANAGER_PREVIEW_PORT	8080
/* The injection webhook: the manager's container port, the Service's. */
#define KB_MANAGER_WEBHOOK_PORT	8444
#define KB_WEBHOOK_SERVICE_PORT	443
/* The MutatingWebhookConfiguration (cluster-wide: one install per cluster). */
#define KB_WEBHOOK_NAME		"kbridge-injector"
#define KB_RUN_AS		65532

/* Where an object lives in the API. */
struct kb_kind {
	const char *kind;
	const char *api_version;
	const char *plural;
	int namespaced;
};

struct kb_manifest_opts {
	const char *ns;		/* the install namespace */
	const char *image;	/* the manager's image */
	/* How teammates reach preview URLs (http[s]://HOST[:PORT]); NULL: the
	 * manager serves no preview URLs (no preview port). */
	const char *preview_url;
	/* --env-secrets: the manager may get Secrets (any namespace, by name;
	 * no list or watch) to give --env-file the values a workload's env
	 * takes from Secrets. Off: ConfigMaps only. */
	int env_secrets;
};

/* The objects in apply order (dependencies first): a cJSON array the
 * caller frees. The options must be valid (checked by the caller). NULL
 * only when out of memory. */
cJSON *kb_manifests(const struct kb_manifest_opts *o);
/* Every kind an install has (*n of them). */
const struct kb_kind *kb_manifest_kinds(size_t *n);
/* The kind table entry for obj's kind, NULL if not one of ours. */
const struct kb_kind *kb_manifest_kind(const cJSON *obj);
/* The API path of obj ("/api/v1/namespaces/NS/services/NAME"); with
 * name 0 its collection. Malloc'd, NULL on failure. */
char *kb_manifest_path(const cJSON *obj, int name);
/* Does obj carry app.kubernetes.io/managed-by: kbridge? */
int kb_manifest_ours(const cJSON *obj);

/* Write the array's objects as a YAML stream, one document each ("---"),
 * strings quoted where plain YAML would read them as another type. 0, or
 * -1 with err. */
int kb_yaml_write(FILE *f, const cJSON *docs, char *err, size_t errlen);
/* One document (-o yaml), the same way. */
int kb_yaml_write_doc(FILE *f, const cJSON *doc, char *err, size_t errlen);

#endif
