/* A client profile: one JSON file (mode 0600) with everything a daemon or
 * sidecar needs to reach the manager:
 *   {"manager":"HOST:PORT","name":"alice","role":"kbridge-user",
 *    "ca":"PEM","cert":"PEM","key":"PEM"} */
#ifndef KB_PROFILE_H
#define KB_PROFILE_H

#include <stddef.h>

struct kb_profile {
	char *manager; /* HOST:PORT */
	char *name;
	char *role;    /* KB_ROLE_USER or KB_ROLE_SIDECAR */
	char *ca_pem;
	char *cert_pem;
	char *key_pem;
};

/* Parse a profile from JSON text; every field is checked (PEM blocks must
 * parse, manager must be HOST:PORT). 0, or -1 with a one-line err. */
int kb_profile_parse(const char *json, struct kb_profile *p, char *err, size_t errlen);
/* Read and parse a profile file. 0, or -1 with a one-line err naming the file. */
int kb_profile_load(const char *path, struct kb_profile *p, char *err, size_t errlen);
/* Serialize (malloc'd string). */
char *kb_profile_to_json(const struct kb_profile *p);
void kb_profile_free(struct kb_profile *p);

#endif
