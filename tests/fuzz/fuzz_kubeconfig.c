/* libFuzzer target for proto/kubeconfig.c: the YAML parse and the resolve
 * of a kubeconfig from memory (no file is read, no plugin runs), and, for
 * an input that starts with "EXEC\n", the parse of an exec plugin's
 * ExecCredential output. Any crash, leak or sanitizer report is a bug.
 *
 *   clang -g -O1 -D_GNU_SOURCE -Iproto -fsanitize=fuzzer,address,undefined \
 *     tests/fuzz/fuzz_kubeconfig.c proto/util.c proto/log.c \
 *     -o build/fuzz/fuzz_kubeconfig -lyaml -lcjson -lcurl -lssl -lcrypto
 *   build/fuzz/fuzz_kubeconfig -max_total_time=30 build/fuzz/corpus-kubeconfig \
 *     tests/fuzz/corpus-kubeconfig
 */
#include "../../proto/kubeconfig.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Paths named in the input: a token for tokenFile-like names, else none
 * (a real read could block on a FIFO or take a while on /dev/zero). */
static char *
fuzz_read_file(const char *path, size_t max, size_t *lenp)
{
	(void)max;
	if (strstr(path, "token") != NULL) {
		if (lenp)
			*lenp = 6;
		return strdup(" tok\n\n");
	}
	errno = ENOENT;
	return NULL;
}

static const char exec_kubeconfig[] =
	"current-context: c\n"
	"contexts: [{name: c, context: {cluster: k, user: u}}]\n"
	"clusters: [{name: k, cluster: {server: \"https://127.0.0.1:6443\"}}]\n"
	"users: [{name: u, user: {exec: {command: plugin, "
	"apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}}}]\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_kubeconfig *kc;
	char err[512], *u;
	size_t n;

	kc_read_file = fuzz_read_file;
	if (size >= 5 && memcmp(data, "EXEC\n", 5) == 0) {
		kc = kb_kubeconfig_load_buf(exec_kubeconfig, sizeof(exec_kubeconfig) - 1, "fuzz",
		    "/nonexistent", NULL, KB_KC_NO_EXEC, err, sizeof(err));
		if (kc == NULL)
			abort();
		if (kc_exec_parse(kc, (const char *)data + 5, size - 5, err, sizeof(err)) == 0 &&
		    kb_kubeconfig_token(kc) == NULL && kb_kubeconfig_cert_pem(kc, &n) == NULL)
			abort();	/* a credential was accepted without one */
		kb_kubeconfig_free(kc);
		return 0;
	}
	kc = kb_kubeconfig_load_buf((const char *)data, size, "fuzz", "/nonexistent", NULL,
	    KB_KC_NO_EXEC | KB_KC_ALLOW_INSECURE, err, sizeof(err));
	if (kc == NULL) {
		/* One line, always. */
		if (err[0] == '\0' || strchr(err, '\n') != NULL)
			abort();
		return 0;
	}
	if (strncmp(kb_kubeconfig_server(kc), "https://", 8) != 0 ||
	    kb_kubeconfig_context(kc) == NULL || kb_kubeconfig_namespace(kc) == NULL)
		abort();
	(void)kb_kubeconfig_ca_pem(kc, &n);
	(void)kb_kubeconfig_auth(kc, err, sizeof(err));
	kb_kubeconfig_refresh(kc);
	(void)kb_kubeconfig_auth(kc, err, sizeof(err));
	if ((u = kb_kubeconfig_url(kc, "/api")) != NULL)
		free(u);
	kb_kubeconfig_free(kc);
	return 0;
}
