/* libFuzzer target for the profile parser (proto/profile.c): the input is the
 * content of a profile file, read through kb_profile_load as the daemon and
 * the sidecar read theirs (so a NUL byte or an oversized file goes the same
 * way). A profile that loads must have every field, serialize, parse back to
 * the same fields, and make a client TLS context as tunnel.c does. Any crash,
 * leak, sanitizer report or broken invariant (abort) is a bug. Build and run
 * with `make fuzz`. */
#include <sys/mman.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "log.h"
#include "profile.h"
#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond) do { if (!(cond)) abort(); } while (0)

static int memfd = -1;
static char path[64];

static void
same(const char *a, const char *b)
{
	check(a && b && a[0] && !strcmp(a, b));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_profile p, q;
	char err[300], err2[300];
	SSL_CTX *ctx;
	char *json;

	if (memfd < 0) {
		log_init("fuzz_profile", KB_LOG_ERROR);
		if ((memfd = memfd_create("profile", MFD_CLOEXEC)) < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
	err[0] = '\0';
	if (kb_profile_load(path, &p, err, sizeof(err)) < 0) {
		/* One line naming the file, and nothing left allocated. */
		check(!strncmp(err, "profile ", 8) && !strchr(err, '\n'));
		check(!p.manager && !p.name && !p.role && !p.ca_pem && !p.cert_pem && !p.key_pem);
		return 0;
	}
	check(p.manager && p.name && p.role && p.ca_pem && p.cert_pem && p.key_pem);
	check((json = kb_profile_to_json(&p)) != NULL);
	check(kb_profile_parse(json, &q, err2, sizeof(err2)) == 0);
	same(p.manager, q.manager);
	same(p.name, q.name);
	same(p.role, q.role);
	same(p.ca_pem, q.ca_pem);
	same(p.cert_pem, q.cert_pem);
	same(p.key_pem, q.key_pem);
	free(json);
	kb_profile_free(&q);
	/* What the daemon does next with it; it may still refuse (e.g. a key
	 * type the TLS settings do not allow), but cleanly. */
	if ((ctx = kb_tls_client_ctx(p.ca_pem, p.cert_pem, p.key_pem, err, sizeof(err))) != NULL)
		SSL_CTX_free(ctx);
	kb_profile_free(&p);
	return 0;
}
