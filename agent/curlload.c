/* libcurl for kbridge-agent, loaded when first used: the manager talks to the
 * Kubernetes API (proto/kubeapi.c) only with --in-cluster, and libcurl
 * brings 28 more shared objects (GnuTLS, Kerberos, LDAP, ...) whose pages
 * and constructors cost an idle manager about 3.5 MB. kbridge-agent is
 * linked without -lcurl; these functions, the ones it calls, open
 * libcurl.so.4 at the first call and forward to it. The CLI and the tests
 * link libcurl as usual. */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#include "log.h"

#define CURL_SONAME "libcurl.so.4"

static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	char *(*easy_escape)(CURL *, const char *, int);
	void (*free)(void *);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_cleanup)(CURLM *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
	CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
} fn;

static const struct {
	const char *name;
	size_t off;
} syms[] = {
#define SYM(f) { "curl_" #f, offsetof(__typeof__(fn), f) }
	SYM(global_init), SYM(easy_init), SYM(easy_setopt), SYM(easy_getinfo),
	SYM(easy_cleanup), SYM(easy_strerror), SYM(easy_escape), SYM(free),
	SYM(multi_init), SYM(multi_add_handle), SYM(multi_remove_handle),
	SYM(multi_cleanup), SYM(multi_info_read), SYM(multi_setopt),
	SYM(multi_socket_action), SYM(multi_assign), SYM(slist_append),
	SYM(slist_free_all),
#undef SYM
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;

static void
load_once(void)
{
	void *lib = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	size_t i;

	if (!lib) {
		log_warnx("cannot load %s: %s", CURL_SONAME, dlerror());
		return;
	}
	for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *p = dlsym(lib, syms[i].name);

		if (!p) {
			log_warnx("%s has no %s", CURL_SONAME, syms[i].name);
			dlclose(lib);
			return;
		}
		*(void **)((char *)&fn + syms[i].off) = p;
	}
	loaded = 1;
}

static int
load(void)
{
	pthread_once(&once, load_once);
	return loaded;
}

/* What a setopt call passes after the option, by the option's type (the
 * ranges of curl.h's CURLOPTTYPE_*, which multi options use too). */
enum arg { ARG_LONG, ARG_PTR, ARG_OFF };

static enum arg
opt_arg(int opt)
{
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		return ARG_LONG;
	if (opt >= CURLOPTTYPE_OFF_T && opt < CURLOPTTYPE_BLOB)
		return ARG_OFF;
	return ARG_PTR; /* object and function pointers, blobs */
}

CURLcode
curl_global_init(long flags)
{
	return load() ? fn.global_init(flags) : CURLE_FAILED_INIT;
}

CURL *
curl_easy_init(void)
{
	return load() ? fn.easy_init() : NULL;
}

CURLcode
curl_easy_setopt(CURL *curl, CURLoption opt, ...)
{
	va_list ap;
	CURLcode rc;

	if (!load())
		return CURLE_FAILED_INIT;
	va_start(ap, opt);
	switch (opt_arg((int)opt)) {
	case ARG_LONG:
		rc = fn.easy_setopt(curl, opt, va_arg(ap, long));
		break;
	case ARG_OFF:
		rc = fn.easy_setopt(curl, opt, va_arg(ap, curl_off_t));
		break;
	default:
		rc = fn.easy_setopt(curl, opt, va_arg(ap, void *));
		break;
	}
	va_end(ap);
	return rc;
}

CURLcode
curl_easy_getinfo(CURL *curl, CURLINFO info, ...)
{
	va_list ap;
	CURLcode rc;

	if (!load())
		return CURLE_FAILED_INIT;
	va_start(ap, info);
	rc = fn.easy_getinfo(curl, info, va_arg(ap, void *)); /* always a pointer */
	va_end(ap);
	return rc;
}

void
curl_easy_cleanup(CURL *curl)
{
	if (curl && load())
		fn.easy_cleanup(curl);
}

const char *
curl_easy_strerror(CURLcode rc)
{
	return load() ? fn.easy_strerror(rc) : "libcurl could not be loaded";
}

char *
curl_easy_escape(CURL *curl, const char *s, int len)
{
	return load() ? fn.easy_escape(curl, s, len) : NULL;
}

void
curl_free(void *p)
{
	if (p && load())
		fn.free(p);
}

CURLM *
curl_multi_init(void)
{
	return load() ? fn.multi_init() : NULL;
}

CURLMcode
curl_multi_add_handle(CURLM *m, CURL *curl)
{
	return load() ? fn.multi_add_handle(m, curl) : CURLM_INTERNAL_ERROR;
}

CURLMcode
curl_multi_remove_handle(CURLM *m, CURL *curl)
{
	return load() ? fn.multi_remove_handle(m, curl) : CURLM_INTERNAL_ERROR;
}

CURLMcode
curl_multi_cleanup(CURLM *m)
{
	return m && load() ? fn.multi_cleanup(m) : CURLM_OK;
}

CURLMsg *
curl_multi_info_read(CURLM *m, int *left)
{
	if (!load()) {
		*left = 0;
		return NULL;
	}
	return fn.multi_info_read(m, left);
}

CURLMcode
curl_multi_setopt(CURLM *m, CURLMoption opt, ...)
{
	va_list ap;
	CURLMcode rc;

	if (!load())
		return CURLM_INTERNAL_ERROR;
	va_start(ap, opt);
	switch (opt_arg((int)opt)) {
	case ARG_LONG:
		rc = fn.multi_setopt(m, opt, va_arg(ap, long));
		break;
	case ARG_OFF:
		rc = fn.multi_setopt(m, opt, va_arg(ap, curl_off_t));
		break;
	default:
		rc = fn.multi_setopt(m, opt, va_arg(ap, void *));
		break;
	}
	va_end(ap);
	return rc;
}

CURLMcode
curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running)
{
	return load() ? fn.multi_socket_action(m, s, ev, running) : CURLM_INTERNAL_ERROR;
}

CURLMcode
curl_multi_assign(CURLM *m, curl_socket_t s, void *p)
{
	return load() ? fn.multi_assign(m, s, p) : CURLM_INTERNAL_ERROR;
}

struct curl_slist *
curl_slist_append(struct curl_slist *list, const char *s)
{
	return load() ? fn.slist_append(list, s) : NULL;
}

void
curl_slist_free_all(struct curl_slist *list)
{
	if (list && load())
		fn.slist_free_all(list);
}
