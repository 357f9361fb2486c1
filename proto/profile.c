/* Parsing and checking a client profile (JSON): every field present, the
 * manager a HOST:PORT, the PEM blocks loadable. */
#include "profile.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "log.h"
#include "tls.h"
#include "util.h"

/* A profile is a few kilobytes; anything much larger is not one. */
#define PROFILE_MAX (1024 * 1024)

static int
get_field(const cJSON *root, const char *field, char **out, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);

	if (v == NULL) {
		snprintf(err, errlen, "missing field \"%s\"", field);
		return -1;
	}
	if (!cJSON_IsString(v) || v->valuestring == NULL) {
		snprintf(err, errlen, "field \"%s\" is not a string", field);
		return -1;
	}
	if (v->valuestring[0] == '\0') {
		snprintf(err, errlen, "field \"%s\" is empty", field);
		return -1;
	}
	if ((*out = strdup(v->valuestring)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int
kb_profile_parse(const char *json, struct kb_profile *p, char *err, size_t errlen)
{
	cJSON *root;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	char host[256];
	uint16_t port;
	int rc = -1;

	memset(p, 0, sizeof(*p));
	if ((root = cJSON_Parse(json)) == NULL || !cJSON_IsObject(root)) {
		snprintf(err, errlen, "not valid JSON");
		goto done;
	}
	if (get_field(root, "manager", &p->manager, err, errlen) < 0 ||
	    get_field(root, "name", &p->name, err, errlen) < 0 ||
	    get_field(root, "role", &p->role, err, errlen) < 0 ||
	    get_field(root, "ca", &p->ca_pem, err, errlen) < 0 ||
	    get_field(root, "cert", &p->cert_pem, err, errlen) < 0 ||
	    get_field(root, "key", &p->key_pem, err, errlen) < 0)
		goto done;
	if (kb_hostport_parse(p->manager, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "field \"manager\" is not HOST:PORT");
		goto done;
	}
	if (strcmp(p->role, KB_ROLE_USER) != 0 && strcmp(p->role, KB_ROLE_SIDECAR) != 0) {
		snprintf(err, errlen, "field \"role\" is not %s or %s", KB_ROLE_USER,
		    KB_ROLE_SIDECAR);
		goto done;
	}
	if ((cert = kb_pem_cert(p->ca_pem)) == NULL) {
		snprintf(err, errlen, "field \"ca\" is not a PEM certificate");
		goto done;
	}
	X509_free(cert);
	if ((cert = kb_pem_cert(p->cert_pem)) == NULL) {
		snprintf(err, errlen, "field \"cert\" is not a PEM certificate");
		goto done;
	}
	if ((key = kb_pem_key(p->key_pem)) == NULL) {
		snprintf(err, errlen, "field \"key\" is not an unencrypted PEM private key");
		goto done;
	}
	if (!X509_check_private_key(cert, key)) {
		snprintf(err, errlen, "field \"key\" does not match field \"cert\"");
		goto done;
	}
	rc = 0;
done:
	X509_free(cert);
	EVP_PKEY_free(key);
	cJSON_Delete(root);
	/* Failed PEM reads leave errors that would confuse a later TLS error. */
	ERR_clear_error();
	if (rc < 0)
		kb_profile_free(p);
	return rc;
}

int
kb_profile_load(const char *path, struct kb_profile *p, char *err, size_t errlen)
{
	struct stat st;
	char *json, e[256];
	size_t len;
	int rc;

	memset(p, 0, sizeof(*p));
	if ((json = kb_read_file(path, PROFILE_MAX, &len)) == NULL) {
		snprintf(err, errlen, "profile %s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	if (stat(path, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
		log_warnx("profile %s holds a private key but is accessible to group or "
		    "others (mode %04o); chmod 600 it", path, (unsigned)(st.st_mode & 07777));
	if (strlen(json) != len) {
		snprintf(e, sizeof(e), "not valid JSON");
		rc = -1;
	} else {
		rc = kb_profile_parse(json, p, e, sizeof(e));
	}
	if (rc < 0)
		snprintf(err, errlen, "profile %s: %s", path, e);
	OPENSSL_cleanse(json, len);
	free(json);
	return rc;
}

char *
kb_profile_to_json(const struct kb_profile *p)
{
	cJSON *root;
	char *s = NULL;

	if (!p->manager || !p->name || !p->role || !p->ca_pem || !p->cert_pem || !p->key_pem)
		return NULL;
	if ((root = cJSON_CreateObject()) == NULL)
		return NULL;
	if (cJSON_AddStringToObject(root, "manager", p->manager) &&
	    cJSON_AddStringToObject(root, "name", p->name) &&
	    cJSON_AddStringToObject(root, "role", p->role) &&
	    cJSON_AddStringToObject(root, "ca", p->ca_pem) &&
	    cJSON_AddStringToObject(root, "cert", p->cert_pem) &&
	    cJSON_AddStringToObject(root, "key", p->key_pem))
		s = cJSON_Print(root);
	cJSON_Delete(root);
	return s;
}

void
kb_profile_free(struct kb_profile *p)
{
	if (p->key_pem != NULL)
		OPENSSL_cleanse(p->key_pem, strlen(p->key_pem));
	free(p->manager);
	free(p->name);
	free(p->role);
	free(p->ca_pem);
	free(p->cert_pem);
	free(p->key_pem);
	memset(p, 0, sizeof(*p));
}
