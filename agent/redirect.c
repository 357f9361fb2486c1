/* kbridge-agent redirect (see redirect.h): one nftables table in the
 * pod's network namespace, loaded in one batch through libnftables. */
#include "redirect.h"

#include <fcntl.h>
#include <getopt.h>
#include <nftables/libnftables.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static void
redirect_usage(FILE *f)
{
	fprintf(f,
	    "usage: kbridge-agent redirect --port N --to P\n"
	    "\n"
	    "In this network namespace (a pod's: the init container kbridge-redirect\n"
	    "runs it with NET_ADMIN), send TCP connections that arrive for port N from\n"
	    "outside (IPv4 and IPv6) to port P, where the sidecar listens; connections\n"
	    "made inside the namespace to port N still reach the app. Loads nftables\n"
	    "table inet " KB_REDIRECT_TABLE ", replacing it if it is there; nothing else is\n"
	    "touched. Exits 0 when done, 1 on failure (nothing installed), 2 on bad\n"
	    "arguments.\n"
	    "\n"
	    "  --port N   the Service's numeric targetPort (1-65535)\n"
	    "  --to P     the sidecar's port (1-65535, not N)\n");
}

static int
complain(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("kbridge-agent: redirect: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

int
redirect_script(unsigned port, unsigned to, char *buf, size_t len)
{
	int n;

	/* Declaring the table first makes the delete succeed when it is
	 * absent; the whole script is one batch, so the old table stays if
	 * the new one cannot be loaded. */
	n = snprintf(buf, len,
	    "table inet " KB_REDIRECT_TABLE "\n"
	    "delete table inet " KB_REDIRECT_TABLE "\n"
	    "table inet " KB_REDIRECT_TABLE " {\n"
	    "\tchain prerouting {\n"
	    "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
	    "\t\ttcp dport %u redirect to :%u\n"
	    "\t}\n"
	    "}\n", port, to);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* A port option's value: 1-65535, plain decimal. */
static int
port_arg(const char *opt, const char *s, unsigned long *out)
{
	if (s[0] == '0' || kb_parse_num(s, 1, 65535, NULL, out) < 0)
		return complain(2, "%s '%.32s' is not a port (1-65535)", opt, s);
	return 0;
}

static int
load(const char *script, char *err, size_t errlen)
{
	struct nft_ctx *nft;
	const char *e;
	size_t n;
	int rc, saved, null;

	if ((nft = nft_ctx_new(NFT_CTX_DEFAULT)) == NULL) {
		snprintf(err, errlen, "cannot open an nftables context");
		return -1;
	}
	if (nft_ctx_buffer_output(nft) != 0 || nft_ctx_buffer_error(nft) != 0) {
		nft_ctx_free(nft);
		snprintf(err, errlen, "cannot open an nftables context");
		return -1;
	}
	/* libnftables prints some errors on stderr itself (EPERM: "... (you
	 * must be root)"); its error buffer has them too, for our one line. */
	fflush(stderr);
	if ((saved = dup(STDERR_FILENO)) >= 0 &&
	    (null = open("/dev/null", O_WRONLY | O_CLOEXEC)) >= 0) {
		dup2(null, STDERR_FILENO);
		close(null);
	}
	rc = nft_run_cmd_from_buffer(nft, script);
	if (saved >= 0) {
		dup2(saved, STDERR_FILENO);
		close(saved);
	}
	if (rc != 0) {
		if ((e = nft_ctx_get_error_buffer(nft)) == NULL)
			e = "";
		if (strncmp(e, "Error: ", 7) == 0)
			e += 7;
		if ((n = strcspn(e, "\n")) == 0)
			snprintf(err, errlen, "nft: command failed");
		else
			snprintf(err, errlen, "nft: %.*s%s", (int)n, e,
			    memmem(e, n, "not permitted", 13) ? " (it needs CAP_NET_ADMIN here)" : "");
	}
	nft_ctx_free(nft);
	return rc == 0 ? 0 : -1;
}

int
cmd_redirect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "to", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *port_s = NULL, *to_s = NULL;
	unsigned long port, to;
	char script[512], err[256];
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (port_s)
				return complain(2, "--port given twice");
			port_s = optarg;
			break;
		case 't':
			if (to_s)
				return complain(2, "--to given twice");
			to_s = optarg;
			break;
		case 'h':
			redirect_usage(stdout);
			return 0;
		case ':':
			return complain(2, "option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return complain(2, "unknown option '-%c' (try --help)", optopt);
			return complain(2, "unknown option '%s' (try --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return complain(2, "unexpected argument '%.64s' (try --help)", argv[optind]);
	if (!port_s || !to_s)
		return complain(2, "--port and --to are required (try --help)");
	if (port_arg("--port", port_s, &port) || port_arg("--to", to_s, &to))
		return 2;
	if (port == to)
		return complain(2, "--port and --to are both %lu", port);
	if (redirect_script(port, to, script, sizeof(script)) < 0)
		return complain(1, "internal error: script too long");
	if (load(script, err, sizeof(err)) < 0)
		return complain(1, "cannot redirect tcp port %lu to %lu: %s", port, to, err);
	printf("kbridge-agent: redirect: tcp port %lu to %lu in this network namespace "
	    "(table inet " KB_REDIRECT_TABLE ")\n", port, to);
	return 0;
}
