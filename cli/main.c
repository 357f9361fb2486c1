/* kbridge: the user's command. Talks to kbridged over its Unix socket and
 * starts it when needed. */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "client.h"
#include "cmd.h"
#include "identity.h"
#include "kconnect.h"
#include "kube.h"
#include "manifests.h"
#include "msg.h"
#include "netplan.h"
#include "start.h"
#include "util.h"
#include "vnat.h"

#define PROFILE_MAX	(1024 * 1024)

/* The intercept help says "at most 16". */
_Static_assert(KB_MAX_MATCH_HEADERS == 16, "update the intercept help text");

/* The daemon answers a connect within ~15 s; leave it room. */
#define CONNECT_TIMEOUT_MS	20000
#define PROBE_TIMEOUT_MS	3000
/* How long the manager may take to sign a new certificate. */
#define CSR_TIMEOUT_MS		20000
#define START_WAIT_MS		5000
#define STOP_WAIT_MS		5000
/* Beyond this many namespaces the DNS line stops being readable. */
#define NS_SHOWN		8

enum { OPT_REPLACE = 256, OPT_KUBECONFIG, OPT_CONTEXT, OPT_MANAGER_NS, OPT_MANAGER_ADDR,
    OPT_NEVER_PROXY, OPT_ALSO_PROXY, OPT_VIRTUAL_SUBNET, OPT_TIMEOUT };

/* connect --timeout: at most this long. */
#define CONNECT_TIMEOUT_MAX_S	600
/* The exit status after Ctrl-C (128 + SIGINT, as a shell reports it). */
#define EXIT_INTERRUPTED	130

struct command {
	const char *name;
	int (*run)(int, char **);
	const char *usage;
	const char *summary;
};

volatile sig_atomic_t interrupted;
/* connect's progress line on a terminal (stderr), rewritten in place. */
static int progress_tty;
/* Once Ctrl-C came, connect says so in one line: no other error. */
static int quiet_when_interrupted;
/* -o yaml: print_json writes YAML. -o json or yaml: a failing command's
 * first error (not a warning) is also {"error": ...} on stdout. */
static int out_yaml, out_doc;
static char doc_error[1024];
int output_wide_ok;
int doc_errors_stderr;

static int cmd_connect(int, char **);
static int cmd_status(int, char **);
static int cmd_quit(int, char **);
static int cmd_version(int, char **);
static int cmd_help(int, char **);
static int cmd_completion(int, char **);
int cmd_login(int, char **);	/* cli/identity.c */
int cmd_port_forward(int, char **); /* cli/forward.c */

static const struct command commands[] = {
	{ "connect", cmd_connect,
	    "usage: kbridge connect [--kubeconfig FILE] [--context NAME]\n"
	    "           [--manager-namespace NS] [--manager-address HOST:PORT]\n"
	    "           [--namespace NS] [--replace] [--timeout DURATION]\n"
	    "           [--output text|json|yaml]\n"
	    "       kbridge connect --profile FILE [--namespace NS] [--replace] ...\n"
	    "\n"
	    "Connect this workstation to the cluster of your kubeconfig (as kubectl\n"
	    "reads it), starting kbridged (through sudo unless root) if it is not\n"
	    "running. Your kbridge certificate comes from the cluster (a\n"
	    "CertificateSigningRequest the kbridge manager signs for you; kept in\n"
	    "~/.cache/kbridge and reused while valid), and kbridged reaches the\n"
	    "manager through the API server's port-forward (a helper process that\n"
	    "runs as you and ends with the session), or at --manager-address.\n"
	    "With --profile, the manager and identity come from a profile file\n"
	    "instead (clusters without an API). An identity has one session: while\n"
	    "it is connected from another workstation, connect is refused unless\n"
	    "--replace ends that session (its intercepts and preview URLs end).\n"
	    "\n"
	    "On a terminal, connect shows its steps on one line of stderr (reading\n"
	    "the kubeconfig, starting kbridged, dialling ADDRESS); into a pipe or\n"
	    "file it writes only the result. Ctrl-C at any moment ends it with one\n"
	    "line and exit status 130, undoing what it did: a kbridged it started\n"
	    "is stopped, with its routes and firewall rules.\n"
	    "\n"
	    "      --kubeconfig FILE     kubeconfig (default: $KUBECONFIG, ~/.kube/config)\n"
	    "      --context NAME        kubeconfig context (default: current-context)\n"
	    "      --manager-namespace NS  where kbridge is installed (default: kbridge)\n"
	    "      --manager-address HOST:PORT  reach the manager there, not through\n"
	    "                            the API server (it is exposed)\n"
	    "  -p, --profile FILE        client profile (JSON) issued by the manager\n"
	    "  -n, --namespace NS        namespace for short names (default: default)\n"
	    "      --replace             take over this identity's session elsewhere\n"
	    "      --never-proxy CIDR    keep this range off the tunnel (repeatable;\n"
	    "                            wins over the cluster's and --also-proxy)\n"
	    "      --also-proxy CIDR     proxy this range too (repeatable): one the\n"
	    "                            manager reaches that the cluster does not list\n"
	    "      --virtual-subnet CIDR|off  where cluster names in never-proxy ranges\n"
	    "                            get virtual addresses (default: a free /16 of\n"
	    "                            100.64.0.0/10); off: they resolve as they are\n"
	    "      --timeout DURATION    wait at most this long for the session\n"
	    "                            (and the certificate): 30, 30s, 2m;\n"
	    "                            default 20s, at most 10m\n"
	    "  -o, --output FMT          text (default), json or yaml\n"
	    "  -h, --help                show this help\n"
	    "\n"
	    "Examples:\n"
	    "  kbridge connect                       # the current kubeconfig context\n"
	    "  kbridge connect --context staging -n shop\n"
	    "  kbridge connect --profile alice.json\n",
	    "connect this workstation to a cluster" },
	{ "status", cmd_status,
	    "usage: kbridge status [--output text|json|yaml]\n"
	    "\n"
	    "Show the state of kbridged and of its session. Exits 0 when\n"
	    "connected, 1 otherwise (not running, connecting, reconnecting,\n"
	    "disconnected).\n"
	    "\n"
	    "  -o, --output FMT     text (default), json or yaml\n"
	    "  -h, --help           show this help\n",
	    "show the daemon's and the session's state" },
	{ "intercept", cmd_intercept,
	    "usage: kbridge intercept WORKLOAD [-n NS] --port LOCAL[:SVCPORT]\n"
	    "           [--address HOST] [--http-header NAME=VALUE]...\n"
	    "           [--http-path-prefix PREFIX]\n"
	    "           [--env-file FILE [--env-syntax docker|sh|json]] [--env-json FILE]\n"
	    "           [--env-all] [--preview-url [--preview-ttl DURATION]\n"
	    "           [--preview-host HOST]] [--wait-timeout DURATION]\n"
	    "           [--service NAME] [--kubeconfig FILE] [--context NAME]\n"
	    "           [--output text|json|yaml] [-- CMD [ARG]...]\n"
	    "\n"
	    "Send traffic of WORKLOAD to localhost:LOCAL on this workstation:\n"
	    "the HTTP requests that carry every --http-header given (and whose\n"
	    "path starts with PREFIX), or without those options all of its\n"
	    "traffic. Requests carrying the header '" KB_INTERCEPT_HEADER ": ID'\n"
	    "(ID is printed) come here too, within PREFIX if one is given.\n"
	    "'kbridge leave WORKLOAD' ends it (the sidecar stays).\n"
	    "\n"
	    "With -- CMD, kbridge runs CMD with the workload's environment over\n"
	    "yours (what --env-file writes) and ends the intercept when CMD ends\n"
	    "(SIGINT, SIGTERM and SIGHUP are passed on to CMD; kbridge waits for\n"
	    "it), exiting with CMD's status (128+N if signal N killed it). What\n"
	    "intercept prints goes to stderr then.\n"
	    "\n"
	    "Connected through a kubeconfig, WORKLOAD is a Deployment, StatefulSet\n"
	    "or ReplicaSet, or a Service that selects exactly one of them. The\n"
	    "sidecar takes over the container port that the workload's Service\n"
	    "(the one selecting its pod template, or --service) sends SVCPORT\n"
	    "(or its only port) to. Without the sidecar, its pod template gets\n"
	    "annotations kbridge.dev/inject and kbridge.dev/port (as you; 'kbridge\n"
	    "uninstall --agents' removes what it added) and intercept waits,\n"
	    "showing progress, until every ready replica runs the sidecar. A\n"
	    "ReplicaSet that no Deployment owns (or a StatefulSet with\n"
	    "updateStrategy OnDelete) keeps its pods when its template changes:\n"
	    "intercept evicts them one at a time, each once the previous one's\n"
	    "replacement is ready.\n"
	    "\n"
	    "  -n, --namespace NS          the workload's namespace (default: the\n"
	    "                              one given to connect)\n"
	    "  -p, --port LOCAL[:SVCPORT]  local port that gets the traffic; SVCPORT\n"
	    "                              the name or number of the Service's\n"
	    "                              port, when it has several\n"
	    "      --address HOST          where LOCAL listens: localhost (default:\n"
	    "                              127.0.0.1, then ::1 as Node and Vite\n"
	    "                              use) or an IPv4 or IPv6 address; a\n"
	    "                              warning if nothing listens there yet\n"
	    "                              (not with -- CMD)\n"
	    "  -H, --http-header N=V       match requests whose header N is V;\n"
	    "                              repeat to require several (at most 16)\n"
	    "      --http-path-prefix P    match requests whose path starts with P\n"
	    "  -e, --env-file FILE         write the workload's environment to FILE\n"
	    "                              (mode 0600); leaves out what would take\n"
	    "                              over your shell (PATH, HOME, LD_*,\n"
	    "                              DYLD_*, SHELL, ...)\n"
	    "      --env-syntax SYNTAX     docker (default: KEY=VALUE, the value as\n"
	    "                              is, for 'docker run --env-file'), sh\n"
	    "                              (KEY='VALUE', for 'set -a; . FILE') or\n"
	    "                              json; a variable SYNTAX cannot hold is\n"
	    "                              left out with an error line naming it\n"
	    "      --env-json FILE         also write it to FILE as a JSON object\n"
	    "      --env-all               write (or give CMD) those too\n"
	    "      --preview-url           also make a preview URL that sends\n"
	    "                              its requests here (see 'kbridge\n"
	    "                              preview create --help')\n"
	    "      --preview-ttl DURATION  the preview URL expires after\n"
	    "                              DURATION (90s, 10m, 2h, 1h30m, 1d; at\n"
	    "                              most 30d)\n"
	    "      --preview-host HOST     the Host header the workload gets\n"
	    "                              through the preview URL\n"
	    "      --wait-timeout DURATION wait at most this long for the sidecar\n"
	    "                              (default 120s)\n"
	    "      --kubeconfig FILE       kubeconfig (default $KUBECONFIG,\n"
	    "                              ~/.kube/config)\n"
	    "      --context NAME          its context (default: connect's)\n"
	    "      --service NAME          the Service whose port to take over, when\n"
	    "                              several select the workload\n"
	    "  -o, --output FMT            text (default), json or yaml (with \"kube\":\n"
	    "                              kind, name, namespace, service,\n"
	    "                              service_port, target_port, replicas,\n"
	    "                              added)\n"
	    "  -h, --help                  show this help\n"
	    "\n"
	    "Examples:\n"
	    "  kbridge intercept web --port 8080 --http-header x-dev=alice\n"
	    "  kbridge intercept cart -n shop --port 3000 --env-file cart.env\n"
	    "  kbridge intercept web --port 8080 -H x-dev=alice -- npm run dev\n",
	    "send a workload's traffic to a local port" },
	{ "leave", cmd_leave,
	    "usage: kbridge leave WORKLOAD [-n NS] [--output text|json|yaml]\n"
	    "\n"
	    "End your intercept of WORKLOAD: its traffic goes to the cluster again.\n"
	    "\n"
	    "  -n, --namespace NS   the workload's namespace (default: the one\n"
	    "                       given to connect)\n"
	    "  -o, --output FMT     text (default), json or yaml\n"
	    "  -h, --help           show this help\n",
	    "end an intercept" },
	{ "list", cmd_list,
	    "usage: kbridge list [-n NS | -A] [--kubeconfig FILE] [--context NAME]\n"
	    "           [--output text|wide|json|yaml]\n"
	    "\n"
	    "List the workloads that can be intercepted and who intercepts them\n"
	    "(yours are marked with *). Connected through a kubeconfig (or given\n"
	    "one): the Deployments, StatefulSets and ReplicaSets from the API,\n"
	    "their kind, ready replicas and whether they have the kbridge sidecar.\n"
	    "\n"
	    "  -n, --namespace NS   only this namespace\n"
	    "  -A, --all-namespaces\n"
	    "                       every namespace (with a kubeconfig)\n"
	    "      --kubeconfig FILE, --context NAME  as for connect\n"
	    "  -o, --output FMT     text (default), wide (a row per intercept: owner,\n"
	    "                       id, match), json or yaml\n"
	    "  -h, --help           show this help\n",
	    "list workloads and their intercepts" },
	{ "preview", cmd_preview,
	    "usage: kbridge preview create WORKLOAD [-n NS] [--ttl DURATION]\n"
	    "           [--service-port PORT] [--host HOST] [--output text|json|yaml]\n"
	    "       kbridge preview list [-n NS] [--output text|wide|json|yaml]\n"
	    "       kbridge preview remove TOKEN|URL [--output text|json|yaml]\n"
	    "\n"
	    "Share your intercept through a secret URL: requests to it reach the\n"
	    "workload carrying your intercept's id, so they come to your\n"
	    "workstation, from any browser or webhook that has the URL and without\n"
	    "kbridge. 'kbridge leave WORKLOAD' ends the intercept's previews.\n"
	    "\n"
	    "  create   make a preview URL for your intercept of WORKLOAD\n"
	    "  list     list the previews (yours, with URL, are marked with *)\n"
	    "  remove   end the preview with TOKEN (or URL)\n"
	    "\n"
	    "'kbridge preview COMMAND --help' describes a command.\n",
	    "share your intercept through a preview URL" },
	{ "preview create", NULL,
	    "usage: kbridge preview create WORKLOAD [-n NS] [--ttl DURATION]\n"
	    "           [--service-port PORT] [--host HOST] [--output text|json|yaml]\n"
	    "\n"
	    "Make a preview URL for your intercept of WORKLOAD ('kbridge intercept'\n"
	    "first). Anyone who has it reaches your workstation through it. Two\n"
	    "forms are printed: http://TOKEN.DOMAIN/ (needs wildcard DNS) and a\n"
	    "link that sets a cookie, so the browser that opens it stays in the\n"
	    "preview; BASE/.kbridge/leave takes that browser out again.\n"
	    "\n"
	    "  -n, --namespace NS          the workload's namespace (default: the\n"
	    "                              one given to connect)\n"
	    "      --ttl DURATION          expire after DURATION: 90, 90s, 10m, 2h,\n"
	    "                              1d or 1h30m (1s to 30d; default: when\n"
	    "                              the intercept ends)\n"
	    "      --service-port PORT     the port of the workload's service to\n"
	    "                              send requests to (default 80)\n"
	    "      --host HOST             the Host header the workload gets (for\n"
	    "                              apps that serve by name; default: the\n"
	    "                              one the browser sent)\n"
	    "  -o, --output FMT            text (default), json or yaml\n"
	    "  -h, --help                  show this help\n",
	    NULL },
	{ "preview list", NULL,
	    "usage: kbridge preview list [-n NS] [--output text|wide|json|yaml]\n"
	    "\n"
	    "List the previews: their owner, whether the owner's workstation serves\n"
	    "them now (active), when they expire, and the URL of yours (marked\n"
	    "with *). Other users' tokens show only their first characters.\n"
	    "\n"
	    "  -n, --namespace NS   only this namespace\n"
	    "  -o, --output FMT     text (default), wide (also intercept, host,\n"
	    "                       created, link), json or yaml\n"
	    "  -h, --help           show this help\n",
	    NULL },
	{ "preview remove", NULL,
	    "usage: kbridge preview remove TOKEN|URL [--output text|json|yaml]\n"
	    "\n"
	    "End one of your previews: its URL answers 404 from now on. TOKEN is\n"
	    "in the URL (and in 'kbridge preview list'); its first characters are\n"
	    "enough when no other preview of yours starts with them, and the\n"
	    "URL itself will do.\n"
	    "\n"
	    "Examples:\n"
	    "  kbridge preview remove http://3f2a9c...preview.example.com/\n"
	    "  kbridge preview remove 3f2a9c\n"
	    "\n"
	    "  -o, --output FMT     text (default), json or yaml\n"
	    "  -h, --help           show this help\n",
	    NULL },
	{ "install", cmd_install,
	    "usage: kbridge install [--kubeconfig FILE] [--context NAME] [--namespace NS]\n"
	    "           [--image IMAGE] [--preview-url-base URL] [--env-secrets]\n"
	    "           [--dry-run] [--output text|json|yaml]\n"
	    "\n"
	    "Install kbridge's manager in the cluster through the Kubernetes API, as\n"
	    "you (your kubeconfig's credentials): the namespace, the manager's\n"
	    "ServiceAccount, its RBAC, Deployment and Service, and the\n"
	    "kbridge-developer ClusterRole and Role that an admin binds to the\n"
	    "people who may use kbridge. Running it again upgrades in place; each\n"
	    "object is reported created, configured or unchanged. Every permission\n"
	    "is checked first: when one is missing, nothing is changed.\n"
	    "\n"
	    "      --kubeconfig FILE  kubeconfig (default $KUBECONFIG, ~/.kube/config)\n"
	    "      --context NAME     kubeconfig context (default current-context)\n"
	    "  -n, --namespace NS     namespace of the manager (default kbridge)\n"
	    "      --image IMAGE      manager image (default " KB_IMAGE_DEFAULT ")\n"
	    "      --preview-url-base URL\n"
	    "                         serve preview URLs on the manager's port 8080,\n"
	    "                         which teammates reach at URL (http[s]://HOST[:PORT],\n"
	    "                         e.g. through an ingress); default: no preview URLs\n"
	    "      --env-secrets      let the manager get Secrets (by name, any namespace)\n"
	    "                         so --env-file has the values a workload's env takes\n"
	    "                         from Secrets; whoever may intercept a workload then\n"
	    "                         reads them. Default: ConfigMaps only\n"
	    "      --dry-run          print the objects instead of applying them\n"
	    "                         (YAML, or a JSON List with -o json), e.g. to\n"
	    "                         commit them for Argo CD or Flux\n"
	    "  -o, --output FMT       text (default), json or yaml\n"
	    "  -h, --help             show this help\n",
	    "install kbridge in the cluster" },
	{ "uninstall", cmd_uninstall,
	    "usage: kbridge uninstall [--kubeconfig FILE] [--context NAME] [--namespace NS]\n"
	    "           [--output text|json|yaml]\n"
	    "       kbridge uninstall --agents [-n NS | -A] [--kubeconfig FILE]\n"
	    "           [--context NAME] [--output text|json|yaml]\n"
	    "\n"
	    "Remove what 'kbridge install' made (objects of its kinds labelled\n"
	    "app.kubernetes.io/managed-by: kbridge) and the manager's CA and state\n"
	    "Secrets, and nothing else: a namespace install did not create,\n"
	    "or that holds objects kbridge did not make, is kept. Running it again\n"
	    "has nothing to do.\n"
	    "\n"
	    "With --agents: remove the sidecar from the workloads of NS (default:\n"
	    "the kubeconfig's namespace; -A: all) where 'kbridge intercept' added it,\n"
	    "restoring their pod templates as they were (a bare ReplicaSet's or\n"
	    "OnDelete StatefulSet's pods are evicted one at a time, to come back\n"
	    "without it).\n"
	    "\n"
	    "      --kubeconfig FILE  kubeconfig (default $KUBECONFIG, ~/.kube/config)\n"
	    "      --context NAME     kubeconfig context (default current-context)\n"
	    "  -n, --namespace NS     namespace of the manager (default kbridge)\n"
	    "  -o, --output FMT       text (default), json or yaml\n"
	    "  -h, --help             show this help\n",
	    "remove kbridge from the cluster" },
	{ "login", cmd_login,
	    "usage: kbridge login [--kubeconfig FILE] [--context NAME] [--namespace NS]\n"
	    "           [--timeout SECONDS] [--output text|json|yaml]\n"
	    "\n"
	    "Get your kbridge certificate from Kubernetes (a CertificateSigningRequest\n"
	    "that kbridge's manager signs for you), or reuse the cached one, and say\n"
	    "whose it is, until when, and where it is cached. A diagnostic: connect\n"
	    "does this itself.\n"
	    "\n"
	    "      --kubeconfig FILE  kubeconfig (default $KUBECONFIG, ~/.kube/config)\n"
	    "      --context NAME     kubeconfig context (default current-context)\n"
	    "  -n, --namespace NS     namespace of the manager (default kbridge)\n"
	    "      --timeout SECONDS  wait this long for the certificate (default 30)\n"
	    "  -o, --output FMT       text (default), json or yaml\n"
	    "  -h, --help             show this help\n",
	    NULL },
	{ "port-forward", cmd_port_forward,
	    "usage: kbridge port-forward [--kubeconfig FILE] [--context NAME] [-n NS]\n"
	    "           SERVICE [LOCALPORT:]PORT\n"
	    "\n"
	    "Forward 127.0.0.1:LOCALPORT to PORT of a ready pod of SERVICE, through\n"
	    "the API server's port-forward as your kubeconfig's user (who needs\n"
	    "create on pods/portforward, get on services, list on pods). Each\n"
	    "connection picks the pod again. Prints the address it listens on;\n"
	    "LOCALPORT 0: any free port. Runs until interrupted.\n"
	    "\n"
	    "      --kubeconfig FILE  kubeconfig (default $KUBECONFIG, ~/.kube/config)\n"
	    "      --context NAME     kubeconfig context (default current-context)\n"
	    "  -n, --namespace NS     namespace of SERVICE (default kbridge)\n"
	    "      --listen-fd N      serve this inherited listening socket (connect)\n"
	    "      --exit-with-daemon\n"
	    "                         end once kbridged no longer uses it (connect)\n"
	    "  -h, --help             show this help\n",
	    NULL },
	{ "quit", cmd_quit,
	    "usage: kbridge quit\n"
	    "\n"
	    "Disconnect, undo every network change and stop kbridged. Your\n"
	    "intercepts and their preview URLs end at once (what ended is\n"
	    "listed): callers get the app in the cluster again right away.\n"
	    "\n"
	    "  -h, --help           show this help\n",
	    "disconnect and stop kbridged" },
	{ "logs", cmd_logs,
	    "usage: kbridge logs [-f] [--tail N]\n"
	    "\n"
	    "Print kbridged's log: one line per event, dated in UTC (ISO 8601).\n"
	    "It is the file the running kbridged names in its status; started\n"
	    "through sudo, " KB_RUN_DIR "/kbridged-UID.log (root's, readable by\n"
	    "your group), started as root, the socket's path with .log added.\n"
	    "\n"
	    "  -f, --follow         keep printing new lines until interrupted\n"
	    "      --tail N         only the last N lines (then new ones with -f)\n"
	    "  -h, --help           show this help\n",
	    "print kbridged's log" },
	{ "loglevel", cmd_loglevel,
	    "usage: kbridge loglevel debug|info\n"
	    "\n"
	    "Make the running kbridged log at this level from now on, without a\n"
	    "restart (debug adds a line per connection, lookup and intercepted\n"
	    "request; info is the default). 'kbridge status -o json' shows it.\n"
	    "\n"
	    "  -h, --help           show this help\n",
	    "change kbridged's log level" },
	{ "gather-logs", cmd_gather_logs,
	    "usage: kbridge gather-logs -o FILE.tar.gz\n"
	    "\n"
	    "Write what a bug report needs into a new archive, FILE.tar.gz:\n"
	    "kbridge-logs/ with kbridged.log (its newest 8 MiB), manager.log\n"
	    "(the manager's recent lines about your session, fetched by kbridged\n"
	    "over the session, at most 12 KiB), sidecar-WORKLOAD.NS-N.log for\n"
	    "each workload you intercept (its sidecars' newest 12 KiB, through\n"
	    "the manager), status.json ('kbridge status -o json') and\n"
	    "version.json ('kbridge version -o json'). What cannot be had is a\n"
	    "NAME.missing file saying why. Read it before you share it: it names\n"
	    "your cluster's addresses and workloads.\n"
	    "\n"
	    "  -o, --output-file FILE  the archive to write (must not exist)\n"
	    "  -h, --help              show this help\n",
	    "write logs, status and versions into a .tar.gz" },
	{ "version", cmd_version,
	    "usage: kbridge version [--output text|json|yaml]\n"
	    "\n"
	    "Print the versions of kbridge and of a running kbridged.\n"
	    "\n"
	    "  -o, --output FMT     text (default), json or yaml ({\"kbridge\": VERSION,\n"
	    "                       \"kbridged\": {\"version\", \"pid\"} or null})\n"
	    "  -h, --help           show this help\n",
	    "print versions" },
	{ "completion", cmd_completion,
	    "usage: kbridge completion bash|zsh|fish\n"
	    "\n"
	    "Print the completion script for bash, zsh or fish: commands,\n"
	    "subcommands and options, and, while connected, the cluster's\n"
	    "namespaces (after -n) and workloads (intercept, leave, preview\n"
	    "create), which it asks kbridged for. make install puts them in\n"
	    "share/bash-completion/completions/kbridge,\n"
	    "share/zsh/vendor-completions/_kbridge and\n"
	    "share/fish/vendor_completions.d/kbridge.fish.\n"
	    "\n"
	    "Examples:\n"
	    "  source <(kbridge completion bash)\n"
	    "  source <(kbridge completion zsh)     # after compinit\n"
	    "  kbridge completion fish | source\n"
	    "\n"
	    "  -h, --help           show this help\n",
	    "print a shell completion script" },
	{ "__complete", cmd_complete,
	    "usage: kbridge __complete namespaces | workloads [NS]\n",
	    NULL },
	{ "help", cmd_help,
	    "usage: kbridge help [COMMAND [SUBCOMMAND]]\n",
	    "show help for a command" },
};

#define NCOMMANDS	(sizeof(commands) / sizeof(commands[0]))

/* connect's current step on a terminal, in place of the previous one. */
static void __attribute__((format(printf, 1, 2)))
progress(const char *fmt, ...)
{
	va_list ap;

	if (!progress_tty)
		return;
	fputs("\r\033[K", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" ...", stderr);
	fflush(stderr);
}

/* Erase the progress line (and a "^C" the terminal echoed onto it). */
static void
progress_clear(void)
{
	if (progress_tty)
		fputs("\r\033[K", stderr);
}

void
errorx(const char *fmt, ...)
{
	va_list ap;

	if (quiet_when_interrupted && interrupted)
		return;
	progress_clear();
	fputs("kbridge: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (out_doc && doc_error[0] == '\0' && strncmp(fmt, "warning:", 8) != 0) {
		va_start(ap, fmt);
		vsnprintf(doc_error, sizeof(doc_error), fmt, ap);
		va_end(ap);
	}
}

/* After a failed command run with -o json or yaml: its error as one JSON
 * line (also a YAML flow mapping) on stdout, or stderr if so set. */
static void
print_doc_error(void)
{
	cJSON *j;
	char *s;

	if (!out_doc || doc_error[0] == '\0')
		return;
	if ((j = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(j, "error", doc_error) == NULL ||
	    (s = cJSON_PrintUnformatted(j)) == NULL) {
		cJSON_Delete(j);
		return;
	}
	fprintf(doc_errors_stderr ? stderr : stdout, "%s\n", s);
	free(s);
	cJSON_Delete(j);
}

static void
main_usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: kbridge COMMAND [OPTIONS]\n\ncommands:\n");
	for (i = 0; i < NCOMMANDS; i++)
		if (commands[i].summary)
			fprintf(f, "  %-12s %s\n", commands[i].name,
			    commands[i].summary);
	fprintf(f, "\n'kbridge COMMAND --help' describes a command.\n"
	    "The daemon's socket is $KBRIDGE_SOCKET, else %s.\n",
	    KB_SOCKET_DEFAULT);
}

/* A command, or a subcommand ("preview create"), which has only its usage
 * here. */
static const struct command *
find_command(const char *name)
{
	size_t i;

	for (i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* getopt_long with our own one-line messages; returns the option, -1 at the
 * end, or 0 after reporting a usage error. */
int
next_opt(int argc, char **argv, const char *shortopts,
    const struct option *longopts)
{
	int ch;

	opterr = 0;
	ch = getopt_long(argc, argv, shortopts, longopts, NULL);
	if (ch == '?') {
		if (optopt)
			errorx("%s: unknown option -%c (see 'kbridge %s "
			    "--help')", argv[0], optopt, argv[0]);
		else
			errorx("%s: unknown option %s (see 'kbridge %s "
			    "--help')", argv[0], argv[optind - 1], argv[0]);
		return 0;
	}
	if (ch == ':') {
		errorx("%s: option %s needs a value", argv[0],
		    argv[optind - 1]);
		return 0;
	}
	return ch;
}

int
no_operands(int argc, char **argv)
{
	if (optind < argc) {
		errorx("%s: unexpected argument '%s' (see 'kbridge %s "
		    "--help')", argv[0], argv[optind], argv[0]);
		return -1;
	}
	return 0;
}

int
parse_output(const char *cmd, const char *arg, enum output *out)
{
	if (strcmp(arg, "text") == 0 || strcmp(arg, "wide") == 0)
		*out = arg[0] == 'w' ? OUT_WIDE : OUT_TEXT;
	else if (strcmp(arg, "json") == 0 || strcmp(arg, "yaml") == 0)
		*out = OUT_JSON;
	else
		goto bad;
	if (*out == OUT_WIDE && !output_wide_ok)
		goto bad;
	out_yaml = strcmp(arg, "yaml") == 0;
	out_doc = *out == OUT_JSON;
	return 0;
bad:
	errorx("%s: --output must be text, %sjson or yaml, not '%s'", cmd,
	    output_wide_ok ? "wide, " : "", arg);
	return -1;
}

void
print_usage(const char *name)
{
	fputs(find_command(name)->usage, stdout);
}

void
print_json(const cJSON *j)
{
	char err[256], *s;
	cJSON *d;

	if ((d = cJSON_Duplicate(j, 1)) == NULL) {
		errorx("out of memory");
		exit(1);
	}
	sort_lists(d);
	sort_keys(d);
	if (out_yaml) {
		if (kb_yaml_write_doc(stdout, d, err, sizeof(err)) == -1) {
			errorx("%s", err);
			exit(1);
		}
		cJSON_Delete(d);
		return;
	}
	if ((s = cJSON_Print(d)) == NULL) {
		errorx("out of memory");
		exit(1);
	}
	printf("%s\n", s);
	free(s);
	cJSON_Delete(d);
}

/* Helpers that read an optional field of the daemon's answer. */
const char *
jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

int
jnum(const cJSON *o, const char *key, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(v))
		return 0;
	*out = v->valuedouble;
	return 1;
}

/* Join the strings of a JSON array; at most max items, then "(+N more)". */
static void
jjoin(const cJSON *o, const char *key, size_t max, char *buf, size_t len)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key), *v;
	size_t n = 0, total = 0, off = 0;

	buf[0] = '\0';
	cJSON_ArrayForEach(v, a) {
		if (!cJSON_IsString(v))
			continue;
		total++;
		if (n >= max || off >= len)
			continue;
		off += snprintf(buf + off, len - off, "%s%s", n ? ", " : "",
		    v->valuestring);
		n++;
	}
	if (total > n && off < len)
		snprintf(buf + off, len - off, ", ... (+%zu more)", total - n);
}

const char *
orelse(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

static void
dns_line(const cJSON *st, char *buf, size_t len)
{
	char nss[1024];

	jjoin(st, "namespaces", NS_SHOWN, nss, sizeof(nss));
	snprintf(buf, len, "*.%s, NAME.NAMESPACE[.svc] for namespaces %s; "
	    "NAME in %s", orelse(jstr(st, "cluster_domain"), "cluster.local"),
	    nss[0] ? nss : "(none)", orelse(jstr(st, "namespace"), "default"));
}

/* " (through the API server's port-forward)" when it is so. */
static const char *
kube_via(const cJSON *st)
{
	const char *via = jstr(cJSON_GetObjectItemCaseSensitive(st, "kube"), "via");

	return via && !strcmp(via, "port-forward") ? " (the API server's port-forward)" : "";
}

/* The kubeconfig context and cluster the session was made with. Their
 * names come from the user's own kubeconfig but pass through put(). */
static void
print_kube(const cJSON *k, const char *indent)
{
	const char *s;

	if ((s = jstr(k, "context")) != NULL) {
		printf("%s%-17s", indent, "context:");
		put(s);
		putchar('\n');
	}
	if ((s = jstr(k, "cluster")) != NULL) {
		printf("%s%-17s", indent, "cluster:");
		put(s);
		if ((s = jstr(k, "server")) != NULL)
			put_in(" (", s, ")");
		putchar('\n');
	}
}

/* At most this many virtual addresses in the text status (json: all the
 * daemon lists). */
#define VNAT_TEXT_MAX 16

/* "virtual subnet: 100.64.0.0/16 for 10.96.1.0/24 (2 of 4096 used)" and a
 * line "100.64.0.1 -> 10.96.1.1 web.default.svc.cluster.local" for each
 * mapping, under a 17-wide label. */
static void
print_vnat(const cJSON *v, const char *indent)
{
	const cJSON *m, *used, *cap;
	char buf[2048];
	int i = 0;

	if (!cJSON_IsObject(v))
		return;
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "off"))) {
		printf("%s%-17soff\n", indent, "virtual subnet:");
		return;
	}
	jjoin(v, "translated", KB_VNAT_RANGES, buf, sizeof(buf));
	used = cJSON_GetObjectItemCaseSensitive(v, "used");
	cap = cJSON_GetObjectItemCaseSensitive(v, "cap");
	printf("%s%-17s", indent, "virtual subnet:");
	put_in("", orelse(jstr(v, "subnet"), "?"), " for ");
	put_in("", buf, NULL);
	if (cJSON_IsNumber(used) && cJSON_IsNumber(cap))
		printf(" (%.0f of %.0f used)", used->valuedouble, cap->valuedouble);
	putchar('\n');
	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(v, "map")) {
		if (i++ == VNAT_TEXT_MAX) {
			printf("%s%-17s... (-o json lists them all)\n", indent, "");
			break;
		}
		printf("%s%-17s", indent, "");
		put_in("", orelse(jstr(m, "virtual"), "?"), " -> ");
		put_in("", orelse(jstr(m, "real"), "?"), NULL);
		if (jstr(m, "name"))
			put_in(" ", jstr(m, "name"), NULL);
		putchar('\n');
	}
}

/* The proxied, never-proxy and also-proxy ranges, and "10.96.0.0/16
 * overlaps 10.96.5.0/24 on eth1" for each overlap, under a 17-wide label. */
static void
print_ranges(const cJSON *st, const char *indent)
{
	const cJSON *o;
	char buf[2048];
	int first = 1;

	jjoin(st, "proxied", 64, buf, sizeof(buf));
	if (buf[0])
		printf("%s%-17s%s\n", indent, "proxied:", buf);
	jjoin(st, "never_proxy", KB_NETPLAN_USER_MAX, buf, sizeof(buf));
	if (buf[0])
		printf("%s%-17s%s\n", indent, "never proxied:", buf);
	jjoin(st, "also_proxy", KB_NETPLAN_USER_MAX, buf, sizeof(buf));
	if (buf[0])
		printf("%s%-17s%s\n", indent, "also proxied:", buf);
	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(st, "overlaps")) {
		printf("%s%-17s", indent, first ? "overlaps:" : "");
		put_in("", orelse(jstr(o, "subnet"), "?"), " overlaps ");
		put_in("", orelse(jstr(o, "route"), "?"), " on ");
		put_in("", orelse(jstr(o, "link"), "?"), NULL);
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "never_proxy")))
			printf(" (kept local: never-proxy)");
		putchar('\n');
		first = 0;
	}
	print_vnat(cJSON_GetObjectItemCaseSensitive(st, "vnat"), indent);
}

static void
print_connected(const cJSON *st)
{
	char subnets[1024], dns[2048];

	jjoin(st, "subnets", 64, subnets, sizeof(subnets));
	dns_line(st, dns, sizeof(dns));
	printf("Connected to %s%s as %s (namespace %s)\n",
	    orelse(jstr(st, "manager"), "?"), kube_via(st), orelse(jstr(st, "user"), "?"),
	    orelse(jstr(st, "namespace"), "default"));
	print_kube(cJSON_GetObjectItemCaseSensitive(st, "kube"), "  ");
	printf("  cluster subnets: %s\n", subnets[0] ? subnets : "(none)");
	print_ranges(st, "  ");
	printf("  DNS:             %s\n", dns);
}

static const char *
human_bytes(double v, char *buf, size_t len)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	size_t u = 0;

	while (v >= 1024 && u < sizeof(unit) / sizeof(unit[0]) - 1) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%.0f B", v);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

/* "2026-11-28T10:00:00Z (1h 2m ago)"; the raw text if it does not parse. */
static const char *
since(const char *iso, char *buf, size_t len)
{
	struct tm tm = { 0 };
	const char *end;
	long d;

	end = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end == NULL || (*end != 'Z' && *end != '\0') ||
	    (d = (long)(time(NULL) - timegm(&tm))) < 0) {
		snprintf(buf, len, "%s", iso);
		return buf;
	}
	if (d < 60)
		snprintf(buf, len, "%s (%lds ago)", iso, d);
	else if (d < 3600)
		snprintf(buf, len, "%s (%ldm %lds ago)", iso, d / 60, d % 60);
	else if (d < 86400)
		snprintf(buf, len, "%s (%ldh %ldm ago)", iso, d / 3600,
		    d % 3600 / 60);
	else
		snprintf(buf, len, "%s (%ldd %ldh ago)", iso, d / 86400,
		    d % 86400 / 3600);
	return buf;
}

/* "intercepts:      web.default -> localhost:8080" and one more line each. */
static void
print_intercepts(const cJSON *a)
{
	const cJSON *i;
	double port;
	int first = 1;

	cJSON_ArrayForEach(i, a) {
		printf("%-17s", first ? "intercepts:" : "");
		put_in("", orelse(jstr(i, "workload"), "?"), ".");
		put_in("", orelse(jstr(i, "namespace"), "?"), NULL);
		if (jnum(i, "port", &port))
			printf(strchr(orelse(jstr(i, "address"), ""), ':') ? " -> [%s]:%.0f" :
			    " -> %s:%.0f", orelse(jstr(i, "address"), "localhost"), port);
		putchar('\n');
		first = 0;
	}
}

#define LINE(label, ...) do {					\
	printf("%-17s", label ":");				\
	printf(__VA_ARGS__);					\
	putchar('\n');						\
} while (0)

static void
print_status(const cJSON *st)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(st, "daemon");
	const cJSON *dns = cJSON_GetObjectItemCaseSensitive(st, "dns");
	const char *state = orelse(jstr(st, "state"), "unknown"), *s;
	char buf[2048], b1[32], b2[32];
	double n, m;

	if (jnum(d, "pid", &n))
		LINE("kbridged", "running (pid %.0f, version %s)", n,
		    orelse(jstr(d, "version"), "?"));
	else
		LINE("kbridged", "running");
	LINE("socket", "%s", orelse(jstr(d, "socket"), kb_socket_path()));
	LINE("state", "%s", state);
	if ((s = jstr(st, "user")) != NULL)
		LINE("user", "%s", s);
	if ((s = jstr(st, "manager")) != NULL)
		LINE("manager", "%s%s", s, kube_via(st));
	print_kube(cJSON_GetObjectItemCaseSensitive(st, "kube"), "");
	if ((s = jstr(st, "namespace")) != NULL)
		LINE("namespace", "%s", s);
	if (strcmp(state, "disconnected") != 0) {
		jjoin(st, "subnets", 64, buf, sizeof(buf));
		if (buf[0])
			LINE("cluster subnets", "%s", buf);
		print_ranges(st, "");
		if (cJSON_GetObjectItemCaseSensitive(st, "namespaces")) {
			dns_line(st, buf, sizeof(buf));
			LINE("DNS", "%s", buf);
		}
		if (jnum(dns, "port", &n)) {
			jjoin(dns, "upstreams", 8, buf, sizeof(buf));
			LINE("DNS proxy", "port %.0f, upstreams %s", n,
			    buf[0] ? buf : "(none)");
		}
		if ((s = jstr(st, "link")) != NULL)
			LINE("network", "link %s, nftables table %s", s,
			    orelse(jstr(st, "table"), "?"));
		if ((s = jstr(st, "connected_since")) != NULL)
			LINE("connected since", "%s",
			    since(s, buf, sizeof(buf)));
		if (jnum(st, "streams", &n))
			LINE("streams", "%.0f", n);
		if (jnum(st, "bytes_in", &n) && jnum(st, "bytes_out", &m))
			LINE("bytes in/out", "%s / %s",
			    human_bytes(n, b1, sizeof(b1)),
			    human_bytes(m, b2, sizeof(b2)));
	}
	if (jnum(st, "reconnects", &n))
		LINE("reconnects", "%.0f", n);
	if ((s = jstr(st, "replaced_by")) != NULL)
		LINE("session", "replaced by another session from %s", s);
	if ((s = jstr(st, "last_error")) != NULL)
		LINE("last error", "%s", s);
	print_intercepts(cJSON_GetObjectItemCaseSensitive(st, "intercepts"));
}

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

void
catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Read the profile here, as the invoking user, so that a root daemon never
 * opens a user's files on the user's behalf. */
static cJSON *
load_profile(const char *path)
{
	struct stat sb;
	char *text;
	cJSON *p;
	size_t len;

	if ((text = kb_read_file(path, PROFILE_MAX, &len)) == NULL) {
		errorx("cannot read profile %s: %s", path, strerror(errno));
		return NULL;
	}
	p = cJSON_ParseWithLength(text, len);
	free(text);
	if (p == NULL) {
		errorx("profile %s is not valid JSON", path);
		return NULL;
	}
	if (!cJSON_IsObject(p)) {
		errorx("profile %s is not a JSON object", path);
		cJSON_Delete(p);
		return NULL;
	}
	/* It holds the private key: others reading it could be you. */
	if (stat(path, &sb) == 0 && (sb.st_mode & 044))
		errorx("warning: profile %s is readable by %s (mode %04o): it holds your "
		    "private key; run 'chmod 600 %s'", path, sb.st_mode & 004 ? "everyone" :
		    "its group", (unsigned)(sb.st_mode & 07777), path);
	return p;
}

/* Undo a daemon this invocation started, so a failed connect leaves
 * neither a daemon nor rules behind. */
static int
stop_started_daemon(void)
{
	char err[512];
	cJSON *resp;
	int rc;

	interrupted = 0;
	rc = call_ms("POST", KB_API_QUIT, NULL, STOP_WAIT_MS, &resp, err,
	    sizeof(err));
	cJSON_Delete(resp);
	if (rc == KB_API_DOWN || kb_api_wait(0, STOP_WAIT_MS) == 0)
		return 0;
	errorx("the kbridged started for this connect did not stop; "
	    "run 'kbridge quit'");
	return -1;
}

/* With KBRIDGE_TIMING set: where connect's time went, one line on stderr
 * (scripts/benchmarks/k8sconnect reads it). t: the start, after prepare
 * (kubeconfig, identity, permissions, the forwarder started), after the
 * daemon answers (started if it was not), after its connect (session up). */
static void
connect_timing(const uint64_t t[4], uint64_t prep_us)
{
	struct kapi_waited w;
	const char *e = getenv("KBRIDGE_TIMING");

	if (e == NULL || *e == '\0')
		return;
	kapi_waited(&w);
	fprintf(stderr, "kbridge: timing: prepare_ms=%.1f api_ms=%.1f api_requests=%u "
	    "csr_wait_ms=%.1f daemon_ms=%.1f connect_ms=%.1f total_ms=%.1f\n",
	    prep_us / 1e3, w.us / 1e3, w.requests, kb_csr_slept_us() / 1e3,
	    (t[2] - t[1]) / 1e3, (t[3] - t[2]) / 1e3, (t[3] - t[0]) / 1e3);
}

/* Add a --never-proxy/--also-proxy range to *a,
 * made on first use. 0, or -1 after a one-line error. */
static int
add_range(cJSON **a, const char *opt, const char *arg)
{
	struct kb_cidr c, o;
	const cJSON *e;
	char why[160];

	if (kb_netplan_user_cidr(arg, &c, why, sizeof(why)) < 0) {
		errorx("connect: %s: %s", opt, why);
		return -1;
	}
	if (*a == NULL && (*a = cJSON_CreateArray()) == NULL) {
		errorx("out of memory");
		return -1;
	}
	if (cJSON_GetArraySize(*a) >= KB_NETPLAN_USER_MAX) {
		errorx("connect: at most %d %s ranges", KB_NETPLAN_USER_MAX, opt);
		return -1;
	}
	cJSON_ArrayForEach(e, *a)
		if (kb_cidr_parse(e->valuestring, &o) == 0 && o.addr == c.addr &&
		    o.prefix == c.prefix) {
			errorx("connect: %s %s is given twice", opt, arg);
			return -1;
		}
	if (!cJSON_AddItemToArray(*a, cJSON_CreateString(arg))) {
		errorx("out of memory");
		return -1;
	}
	return 0;
}

/* The profile's "virtual_subnet" (checked), for *vsub unless the command
 * line gave one (kept in buf); it leaves the profile object. */
static int
profile_vsubnet(cJSON *prof, const char **vsub, char *buf, size_t len, const char *where)
{
	struct kb_cidr c;
	char why[160];
	cJSON *v;
	int rc = 0;

	if ((v = cJSON_DetachItemFromObjectCaseSensitive(prof, "virtual_subnet")) == NULL)
		return 0;
	if (!cJSON_IsString(v) || strlen(v->valuestring) >= len) {
		errorx("connect: %s virtual_subnet must be off or a CIDR range", where);
		rc = -1;
	} else if (kb_vnat_user_subnet(v->valuestring, &c, why, sizeof(why)) < 0) {
		errorx("connect: %s virtual_subnet: %s", where, why);
		rc = -1;
	} else if (*vsub == NULL) {
		snprintf(buf, len, "%s", v->valuestring);
		*vsub = buf;
	}
	cJSON_Delete(v);
	return rc;
}

/* A profile's own "never_proxy" and "also_proxy" lists (ranges for that
 * cluster, from the profile file or the kubeconfig context's kbridge
 * extension) join the command line's; they leave the profile object, as
 * does its "virtual_subnet" (profile_vsubnet). */
static int
profile_ranges(cJSON *prof, cJSON **never, cJSON **also, const char **vsub, char *vbuf,
    size_t vlen, const char *where)
{
	static const char *keys[] = { "never_proxy", "also_proxy" };
	cJSON **dst[] = { never, also };
	char opt[64];
	cJSON *l, *e;
	int i, rc = 0;

	if (profile_vsubnet(prof, vsub, vbuf, vlen, where) < 0)
		return -1;

	for (i = 0; i < 2 && rc == 0; i++) {
		if ((l = cJSON_DetachItemFromObjectCaseSensitive(prof, keys[i])) == NULL)
			continue;
		snprintf(opt, sizeof(opt), "%s %s", where, keys[i]);
		if (!cJSON_IsArray(l)) {
			errorx("connect: %s must be a list of CIDR ranges", opt);
			rc = -1;
		}
		cJSON_ArrayForEach(e, l) {
			if (rc == 0 && !cJSON_IsString(e)) {
				errorx("connect: %s must be a list of CIDR ranges", opt);
				rc = -1;
			}
			if (rc == 0 && add_range(dst[i], opt, e->valuestring) < 0)
				rc = -1;
		}
		cJSON_Delete(l);
	}
	return rc;
}

/* Does the status st show the same never_proxy and also_proxy lists? */
static int
same_ranges(const cJSON *st, const cJSON *never, const cJSON *also)
{
	const cJSON *sn = cJSON_GetObjectItemCaseSensitive(st, "never_proxy");
	const cJSON *sa = cJSON_GetObjectItemCaseSensitive(st, "also_proxy");

	return cJSON_GetArraySize(sn) == cJSON_GetArraySize(never) &&
	    cJSON_GetArraySize(sa) == cJSON_GetArraySize(also) &&
	    (!never || cJSON_Compare(sn, never, 1)) && (!also || cJSON_Compare(sa, also, 1));
}

static int
cmd_connect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "profile", required_argument, NULL, 'p' },
		{ "replace", no_argument, NULL, OPT_REPLACE },
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ "context", required_argument, NULL, OPT_CONTEXT },
		{ "manager-namespace", required_argument, NULL, OPT_MANAGER_NS },
		{ "manager-address", required_argument, NULL, OPT_MANAGER_ADDR },
		{ "never-proxy", required_argument, NULL, OPT_NEVER_PROXY },
		{ "also-proxy", required_argument, NULL, OPT_ALSO_PROXY },
		{ "virtual-subnet", required_argument, NULL, OPT_VIRTUAL_SUBNET },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		LONGOPT_NAMESPACE,
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	struct kconnect_opts ko = { .install_ns = KB_INSTALL_NS_DEFAULT,
	    .timeout_ms = CSR_TIMEOUT_MS };
	const char *profile = NULL, *ns = NULL, *sock = kb_socket_path();
	enum output out = OUT_TEXT;
	cJSON *body = NULL, *prof = NULL, *kube = NULL, *resp = NULL;
	cJSON *never = NULL, *also = NULL;
	const char *vsub = NULL;
	struct kb_cidr vc;
	char vbuf[64];
	char err[1024], where[PATH_MAX + 64], addr[300];
	int ch, rc, started = 0, asked = 0, ret, replace = 0, kopt = 0;
	char hbuf[256];
	uint16_t hport;
	long timeout_s = CONNECT_TIMEOUT_MS / 1000;
	sigset_t block, old;
	pid_t fwd = -1;
	uint64_t t[4] = { kapi_now_us(), 0, 0, 0 }, prep_us = 0;

	while ((ch = next_opt(argc, argv, ":p:n:o:h", opts)) != -1) {
		if (ch == OPT_REPLACE)
			replace = 1;
		else if (ch == 'p')
			profile = optarg;
		else if (ch == OPT_KUBECONFIG)
			ko.kubeconfig = optarg, kopt = 1;
		else if (ch == OPT_CONTEXT)
			ko.context = optarg, kopt = 1;
		else if (ch == OPT_MANAGER_NS)
			ko.install_ns = optarg, kopt = 1;
		else if (ch == OPT_MANAGER_ADDR)
			ko.manager_address = optarg, kopt = 1;
		else if (ch == OPT_VIRTUAL_SUBNET) {
			if (kb_vnat_user_subnet(optarg, &vc, err, sizeof(err)) < 0) {
				errorx("connect: --virtual-subnet: %s", err);
				ret = EXIT_USAGE;
				goto done;
			}
			vsub = optarg;
		} else if (ch == OPT_TIMEOUT) {
			if (duration_arg("--timeout", optarg, &timeout_s) == -1) {
				ret = EXIT_USAGE;
				goto done;
			}
			if (timeout_s > CONNECT_TIMEOUT_MAX_S) {
				errorx("connect: --timeout is at most %ds", CONNECT_TIMEOUT_MAX_S);
				ret = EXIT_USAGE;
				goto done;
			}
		} else if (ch == OPT_NEVER_PROXY || ch == OPT_ALSO_PROXY) {
			if (add_range(ch == OPT_NEVER_PROXY ? &never : &also,
			    ch == OPT_NEVER_PROXY ? "--never-proxy" : "--also-proxy",
			    optarg) < 0) {
				ret = EXIT_USAGE;
				goto done;
			}
		} else if (!std_opt(ch, argv, &ns, &out, &ret))
			goto done;
	}
	ret = EXIT_USAGE;
	if (no_operands(argc, argv) == -1)
		goto done;
	if (profile && kopt) {
		errorx("connect: --profile names the manager and identity; it cannot be "
		    "combined with --kubeconfig, --context or --manager-*");
		goto done;
	}
	if (namespace_arg(argv[0], ns) == -1)
		goto done;
	if (!kb_dns_label(ko.install_ns)) {
		errorx("connect: invalid --manager-namespace '%s'", ko.install_ns);
		goto done;
	}
	if (ko.manager_address && kb_hostport_parse(ko.manager_address, hbuf, sizeof(hbuf),
	    &hport) < 0) {
		errorx("connect: --manager-address must be HOST:PORT");
		goto done;
	}
	ret = 1;
	if ((long)ko.timeout_ms > timeout_s * 1000)
		ko.timeout_ms = (int)(timeout_s * 1000);
	/* Ctrl-C aborts the API requests and still lets us clean up. */
	catch_signals();
	quiet_when_interrupted = 1;
	progress_tty = isatty(STDERR_FILENO);
	if (profile)
		snprintf(where, sizeof(where), "profile %s", profile);
	else
		snprintf(where, sizeof(where), "kubeconfig %s%s%.256s", ko.kubeconfig ?
		    ko.kubeconfig : getenv("KUBECONFIG") && *getenv("KUBECONFIG") ?
		    getenv("KUBECONFIG") : "~/.kube/config", ko.context ? ", context " : "",
		    ko.context ? ko.context : "");
	if (profile) {
		if ((prof = load_profile(profile)) == NULL)
			goto done;
		if (profile_ranges(prof, &never, &also, &vsub, vbuf, sizeof(vbuf),
		    "the profile's") < 0) {
			cJSON_Delete(prof);
			ret = EXIT_USAGE;
			goto done;
		}
	} else {
		/* Connected already the same way: nothing to start. */
		if (call_ms("GET", KB_API_STATUS, NULL, PROBE_TIMEOUT_MS, &resp, err,
		    sizeof(err)) == 0 && strcmp(orelse(jstr(resp, "state"), ""), "connected") == 0 &&
		    strcmp(orelse(jstr(resp, "namespace"), ""), ns ? ns : "default") == 0 &&
		    kconnect_same(&ko, resp) && same_ranges(resp, never, also) && !vsub) {
			if (out == OUT_JSON)
				print_json(resp);
			else
				print_connected(resp);
			ret = 0;
			goto done;
		}
		cJSON_Delete(resp);
		resp = NULL;
		prep_us = kapi_now_us();
		progress("reading %s, getting your kbridge certificate", where);
		if (kconnect_prepare(&ko, &prof, &kube, &fwd) == -1)
			goto done;
		prep_us = kapi_now_us() - prep_us;
		if (profile_ranges(prof, &never, &also, &vsub, vbuf, sizeof(vbuf),
		    "the context's") < 0) {
			cJSON_Delete(prof);
			ret = EXIT_USAGE;
			goto done;
		}
	}
	snprintf(addr, sizeof(addr), "%s", orelse(jstr(prof, "manager"), "?"));
	if ((body = cJSON_CreateObject()) == NULL ||
	    !cJSON_AddItemToObject(body, "profile", prof)) {
		cJSON_Delete(prof);
		errorx("out of memory");
		goto done;
	}
	if (kube && !cJSON_AddItemToObject(body, "kube", kube)) {
		cJSON_Delete(kube);
		errorx("out of memory");
		goto done;
	}
	if (never && cJSON_AddItemToObject(body, "never_proxy", never))
		never = NULL;
	if (also && cJSON_AddItemToObject(body, "also_proxy", also))
		also = NULL;
	if (never || also ||
	    (vsub && cJSON_AddStringToObject(body, "virtual_subnet", vsub) == NULL) ||
	    (ns && cJSON_AddStringToObject(body, "namespace", ns) == NULL) ||
	    (replace && cJSON_AddTrueToObject(body, "replace") == NULL)) {
		errorx("out of memory");
		goto done;
	}

	t[1] = kapi_now_us();
	rc = call_ms("GET", KB_API_STATUS, NULL, PROBE_TIMEOUT_MS, &resp, err,
	    sizeof(err));
	cJSON_Delete(resp);
	resp = NULL;
	if (rc == -1) {
		errorx("%s", err);
		goto done;
	}
	if (rc == KB_API_DOWN) {
		progress("starting kbridged%s", geteuid() != 0 ? " through sudo" : "");
		/* sudo may ask for a password: its prompt on a line of its own. */
		if (geteuid() != 0 && progress_tty)
			fputc('\n', stderr);
		rc = kb_daemon_start(sock, err, sizeof(err));
		/* Interrupted, it may be up all the same: stopped below. */
		if (rc == 0 || interrupted)
			started = 1;
		/* A connect run at the same time may have started it first:
		 * then both use that one. */
		if (rc == -1 && (interrupted || kb_api_wait(1, PROBE_TIMEOUT_MS / 3) == -1)) {
			errorx("%s", err);
			goto done;
		}
		progress("waiting for kbridged on %s", sock);
		if (rc == 0 && kb_api_wait(1, START_WAIT_MS) == -1) {
			char logpath[PATH_MAX];

			if (kb_daemon_log(sock, logpath, sizeof(logpath)) == -1)
				snprintf(logpath, sizeof(logpath), "its log");
			errorx("kbridged does not answer on %s (see %s, or 'kbridge logs')", sock,
			    logpath);
			goto done;
		}
	}

	t[2] = kapi_now_us();
	if (kube && !ko.manager_address)
		progress("dialling the manager through the API server's port-forward (%s)",
		    orelse(jstr(kube, "server"), "?"));
	else
		progress("dialling %s", addr);
	asked = 1;
	rc = call_ms("POST", KB_API_CONNECT, body, timeout_s * 1000, &resp,
	    err, sizeof(err));
	t[3] = kapi_now_us();
	if (rc == KB_API_DOWN)
		snprintf(err, sizeof(err), "kbridged stopped answering on %s (see 'kbridge logs')",
		    sock);
	else if (rc != 0 && strncmp(err, "kbridged did not answer within", 30) == 0)
		snprintf(err, sizeof(err), "no session within %lds (--timeout)", timeout_s);
	if (rc != 0) {
		errorx("connect to %s failed: %s (%s)", addr, err, where);
		goto done;
	}
	if (interrupted)
		goto done;
	progress("session up");
	progress_clear();
	if (out == OUT_JSON)
		print_json(resp);
	else
		print_connected(resp);
	connect_timing(t, prep_us);
	ret = 0;
done:
	/* A second Ctrl-C does not cut the undoing short (it is bounded). */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old);
	if (ret != 0 && interrupted) {
		ret = EXIT_INTERRUPTED;
		interrupted = 0;
	}
	/* (the one line when it fails) */
	if (ret != 0 && started && stop_started_daemon() < 0)
		started = -1;
	if (ret != 0)
		kconnect_abort(fwd);
	if (ret == EXIT_INTERRUPTED && started >= 0) {
		progress_clear();
		fprintf(stderr, "kbridge: connect interrupted; %s\n", !started && asked ?
		    "kbridged was running before and carries on ('kbridge quit' stops it)" :
		    "nothing was left running");
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	progress_clear();
	cJSON_Delete(resp);
	cJSON_Delete(body);
	cJSON_Delete(never);
	cJSON_Delete(also);
	return ret;
}

static int
cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	enum output out = OUT_TEXT;
	cJSON *resp = NULL;
	char err[1024];
	int rc;

	if (!std_opts_only(argc, argv, ":o:h", opts, NULL, &out, &rc))
		return rc;

	rc = call_ms("GET", KB_API_STATUS, NULL, PROBE_TIMEOUT_MS, &resp, err,
	    sizeof(err));
	if (rc == KB_API_DOWN) {
		if (out == OUT_JSON) {
			if ((resp = cJSON_CreateObject()) == NULL ||
			    cJSON_AddNullToObject(resp, "daemon") == NULL ||
			    cJSON_AddStringToObject(resp, "state", "not running") == NULL) {
				errorx("status: out of memory");
				cJSON_Delete(resp);
				return 1;
			}
			print_json(resp);
			cJSON_Delete(resp);
		} else
			printf("kbridged: not running\n");
		return 1;
	}
	if (rc != 0) {
		errorx("status: %s", err);
		return 1;
	}
	sort_lists(resp);
	if (out == OUT_JSON)
		print_json(resp);
	else
		print_status(resp);
	/* For scripts: 0 only while connected. */
	rc = jstr(resp, "state") && !strcmp(jstr(resp, "state"), "connected") ? 0 : 1;
	cJSON_Delete(resp);
	return rc;
}

/* What quit ended at once on the manager: intercepts and their previews. */
static void
print_ended(const cJSON *resp)
{
	const cJSON *ended = cJSON_GetObjectItemCaseSensitive(resp, "ended"), *i;
	const char *s;
	double n;

	cJSON_ArrayForEach(i, ended) {
		put_in("Ended intercept of ", orelse(jstr(i, "workload"), "?"), ".");
		put_in("", orelse(jstr(i, "namespace"), "?"), ": its traffic goes to the "
		    "cluster again");
		if (jnum(i, "previews_ended", &n) && n > 0)
			printf("; %.0f preview URL%s ended", n, n == 1 ? "" : "s");
		putchar('\n');
	}
	if ((s = jstr(resp, "warning")) != NULL)
		put_in("warning: ", s, "\n");
}

static int
cmd_quit(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPT_HELP,
		LONGOPT_END
	};
	cJSON *resp = NULL;
	char err[1024];
	int rc;

	if (!std_opts_only(argc, argv, ":h", opts, NULL, NULL, &rc))
		return rc;

	rc = call_ms("POST", KB_API_QUIT, NULL, STOP_WAIT_MS, &resp, err,
	    sizeof(err));
	if (rc == KB_API_DOWN) {
		printf("kbridged: not running\n");
		return 0;
	}
	if (rc != 0) {
		errorx("quit failed: %s", err);
		return 1;
	}
	print_ended(resp);
	cJSON_Delete(resp);
	if (kb_api_wait(0, STOP_WAIT_MS) == -1) {
		errorx("kbridged did not stop within %d s", STOP_WAIT_MS / 1000);
		return 1;
	}
	printf("kbridged stopped\n");
	return 0;
}

/* The versions, and the running daemon's (d, pid) if up. */
static cJSON *
versions(int up, const cJSON *d, double pid)
{
	cJSON *j, *kd;

	if ((j = cJSON_CreateObject()) == NULL ||
	    cJSON_AddStringToObject(j, "kbridge", KB_VERSION) == NULL ||
	    (up ? (kd = cJSON_AddObjectToObject(j, "kbridged")) == NULL ||
	    cJSON_AddStringToObject(kd, "version", orelse(jstr(d, "version"), "?")) ==
	    NULL || cJSON_AddNumberToObject(kd, "pid", pid) == NULL :
	    cJSON_AddNullToObject(j, "kbridged") == NULL)) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

cJSON *
version_json(void)
{
	const cJSON *d = NULL;
	cJSON *resp = NULL, *j;
	char err[256];
	double pid = 0;
	int up;

	up = call_ms("GET", KB_API_STATUS, NULL, 1000, &resp, err, sizeof(err)) == 0 &&
	    jnum(d = cJSON_GetObjectItemCaseSensitive(resp, "daemon"), "pid", &pid);
	j = versions(up, d, pid);
	cJSON_Delete(resp);
	return j;
}

static int
cmd_version(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPT_OUTPUT,
		LONGOPT_HELP,
		LONGOPT_END
	};
	enum output out = OUT_TEXT;
	const cJSON *d = NULL;
	cJSON *resp = NULL, *j;
	char err[256];
	double pid = 0;
	int ret, up;

	if (!std_opts_only(argc, argv, ":o:h", opts, NULL, &out, &ret))
		return ret;
	ret = 0;
	up = call_ms("GET", KB_API_STATUS, NULL, 1000, &resp, err, sizeof(err)) == 0 &&
	    jnum(d = cJSON_GetObjectItemCaseSensitive(resp, "daemon"), "pid", &pid);
	if (out == OUT_JSON) {
		if ((j = versions(up, d, pid)) == NULL) {
			errorx("version: out of memory");
			ret = 1;
		} else
			print_json(j);
		cJSON_Delete(j);
	} else {
		printf("kbridge  %s\n", KB_VERSION);
		if (up)
			printf("kbridged %s (pid %.0f)\n",
			    orelse(jstr(d, "version"), "?"), pid);
	}
	cJSON_Delete(resp);
	return ret;
}

/* --- kbridge completion bash|zsh|fish --- */

#define COMP_OPTS_MAX	64

/* Hidden commands ("__complete") are for the completions themselves. */
#define HIDDEN(c)	((c)->name[0] == '_')

/* Is s the name of a subcommand of c ("preview create" of "preview")? */
static int
is_sub(const struct command *c, const struct command *s)
{
	size_t n = strlen(c->name);

	return !strncmp(s->name, c->name, n) && s->name[n] == ' ';
}

static int
has_subs(const struct command *c)
{
	size_t i;

	for (i = 0; i < NCOMMANDS; i++)
		if (is_sub(c, &commands[i]))
			return 1;
	return 0;
}

/* The long options of a usage text, from its synopsis (up to the first
 * empty line) and its option lines ("  -n, --ns X", "      --a FILE, --b
 * NAME  what they do"), each once: their names (not NUL-terminated) in
 * opts and lengths in len, at most COMP_OPTS_MAX; the count. */
static size_t
usage_options(const char *usage, const char **opts, size_t *len)
{
	const char *p, *end, *gap;
	size_t n, nopts = 0, i;
	int synopsis = 1;

	for (p = usage; *p; p = *end ? end + 1 : end) {
		end = p + strcspn(p, "\n");
		if (end == p)
			synopsis = 0;
		/* Option lines are indented; the text's own are not. */
		if (synopsis)
			gap = end;
		else if (*p != ' ' || *(p += strspn(p, " ")) != '-')
			continue;
		/* The option column ends where two spaces start the text. */
		else if ((gap = strstr(p, "  ")) == NULL || gap > end)
			gap = end;
		for (; (p = strstr(p, "--")) != NULL && p < gap; p += 2 + n) {
			n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
			for (i = 0; i < nopts && (len[i] != n || strncmp(opts[i], p + 2, n)); i++)
				;
			if (n == 0 || i < nopts || nopts == COMP_OPTS_MAX)
				continue;
			opts[nopts] = p + 2;
			len[nopts++] = n;
		}
	}
	return nopts;
}

/* Those options, each after pre ("--"), separated by sep. */
static void
put_options_as(FILE *f, const char *usage, const char *pre, const char *sep)
{
	const char *opts[COMP_OPTS_MAX];
	size_t i, n, len[COMP_OPTS_MAX];

	n = usage_options(usage, opts, len);
	for (i = 0; i < n; i++)
		fprintf(f, "%s%s%.*s", i ? sep : "", pre, (int)len[i], opts[i]);
}

static void
put_options(FILE *f, const char *usage)
{
	put_options_as(f, usage, "--", " ");
}

/* Does the long option name[0..n) take a value? Its option line (not the
 * synopsis) has a placeholder after it ("--port LOCAL[:SVCPORT]"). Its
 * short form, if any, in *shortopt. */
static int
takes_value(const char *usage, const char *name, size_t n, char *shortopt)
{
	const char *p, *end, *gap, *o;

	*shortopt = '\0';
	p = strstr(usage, "\n\n");
	for (p = p ? p + 2 : usage; *p; p = *end ? end + 1 : end) {
		end = p + strcspn(p, "\n");
		if (*p != ' ' || *(p += strspn(p, " ")) != '-')
			continue;
		if ((gap = strstr(p, "  ")) == NULL || gap > end)
			gap = end;
		for (o = p; (o = strstr(o, "--")) != NULL && o < gap; o += 2)
			if (!strncmp(o + 2, name, n) && (o[2 + n] == ' ' ||
			    o[2 + n] == ',' || o + 2 + n == gap))
				break;
		if (o == NULL || o >= gap)
			continue;
		if (p[1] != '-' && p[2] == ',')
			*shortopt = p[1];
		o += 2 + n;
		return o < gap && o[0] == ' ' && o[1] != '-' && o[1] != ' ';
	}
	return 0;
}

/* The options of usage that take a value, short and long ("-n --namespace
 * --port ..."), separated by sep. */
static void
put_valued(FILE *f, const char *usage, const char *sep)
{
	const char *p, *end, *gap;
	char s;
	size_t n;
	int first = 1;

	p = strstr(usage, "\n\n");
	for (p = p ? p + 2 : usage; *p; p = *end ? end + 1 : end) {
		end = p + strcspn(p, "\n");
		if (*p != ' ' || *(p += strspn(p, " ")) != '-')
			continue;
		if ((gap = strstr(p, "  ")) == NULL || gap > end)
			gap = end;
		for (; (p = strstr(p, "--")) != NULL && p < gap; p += 2 + n) {
			n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
			if (n == 0 || !takes_value(usage, p + 2, n, &s))
				continue;
			if (s)
				fprintf(f, "%s-%c", first ? "" : sep, s), first = 0;
			fprintf(f, "%s--%.*s", first ? "" : sep, (int)n, p + 2);
			first = 0;
		}
	}
}

/* The commands a user sees, each followed by sep. */
static void
put_commands(FILE *f, const char *sep)
{
	size_t i;

	for (i = 0; i < NCOMMANDS; i++)
		if (commands[i].run && !HIDDEN(&commands[i]))
			fprintf(f, "%s%s", commands[i].name, sep);
}

/* s in single quotes for zsh ('\'' for a quote) or fish (\' and \\). */
static void
put_quoted(FILE *f, const char *s, int fish)
{
	fputc('\'', f);
	for (; *s; s++)
		if (*s == '\'')
			fputs(fish ? "\\'" : "'\\''", f);
		else if (*s == '\\' && fish)
			fputs("\\\\", f);
		else
			fputc(*s, f);
	fputc('\'', f);
}

/* The part of the bash and zsh functions that offers names from kbridged:
 * namespaces after -n/--namespace, workloads for the WORKLOAD operand of
 * intercept, leave and preview create (none given yet, the word no
 * option's value). W(i) is word i (1: kbridge), $cword the current one;
 * reply is how the shell offers words. */
static void
put_names_part(FILE *f, int zsh)
{
	const char *w = zsh ? "words" : "COMP_WORDS", *cw = zsh ? "CURRENT" : "COMP_CWORD";
	int o = zsh ? 1 : 0;	/* zsh's arrays start at 1 */

	fprintf(f, "\t# Names from kbridged: namespaces, workloads.\n"
	    "\tlocal prev=${%s[%s-1]} ns= first= w\n"
	    "\tif [[ $prev == -n || $prev == --namespace ]]; then\n", w, cw);
	fputs(zsh ? "\t\tcompadd -- ${(f)\"$(kbridge __complete namespaces 2>/dev/null)\"}\n" :
	    "\t\tCOMPREPLY=($(compgen -W \"$(kbridge __complete namespaces 2>/dev/null)\" "
	    "-- \"$cur\"))\n", f);
	fprintf(f, "\t\treturn 0\n\tfi\n"
	    "\tcase ${%s[%d]} in\n"
	    "\tintercept|leave) first=%d ;;\n"
	    "\tpreview) [[ ${%s[%d]} == create ]] && first=%d ;;\n"
	    "\tesac\n"
	    "\tif [[ -n $first && $cur != -* && \" $valued \" != *\" $prev \"* ]]; then\n"
	    "\t\tfor ((i = first; i < %s; i++)); do\n"
	    "\t\t\tw=${%s[i]}\n"
	    "\t\t\tif [[ \" $valued \" == *\" $w \"* ]]; then\n"
	    "\t\t\t\t[[ $w == -n || $w == --namespace ]] && ns=${%s[i+1]}\n"
	    "\t\t\t\t((i++))\n"
	    "\t\t\telif [[ $w != -* ]]; then\n"
	    "\t\t\t\tfirst=\n"
	    "\t\t\tfi\n"
	    "\t\tdone\n"
	    "\t\tif [[ -n $first ]]; then\n",
	    w, 1 + o, 2 + o, w, 2 + o, 3 + o, cw, w, w);
	fputs(zsh ? "\t\t\tcompadd -- ${(f)\"$(kbridge __complete workloads $ns 2>/dev/null)\"}\n" :
	    "\t\t\tCOMPREPLY=($(compgen -W \"$(kbridge __complete workloads ${ns:+\"$ns\"} "
	    "2>/dev/null)\" -- \"$cur\"))\n", f);
	fputs("\t\t\treturn 0\n\t\tfi\n\tfi\n", f);
}

/* The case of a command for the bash and zsh scripts: offer (what to
 * offer after '-' or as a subcommand) and valued (options with a value). */
static void
put_case(FILE *f, const struct command *c, const char *indent)
{
	if (c->run == cmd_help) {
		fprintf(f, "%s\toffer=\"", indent);
		put_commands(f, " ");
		fputs("\" ;;\n", f);
		return;
	}
	if (c->run == cmd_completion) {
		fprintf(f, "%s\toffer=\"bash zsh fish\" ;;\n", indent);
		return;
	}
	if (c->run == cmd_loglevel) {
		fprintf(f, "%s\toffer=\"debug info --help\" ;;\n", indent);
		return;
	}
	fprintf(f, "%s\toffer=\"", indent);
	put_options(f, c->usage);
	fprintf(f, "\"\n%s\tvalued=\"", indent);
	put_valued(f, c->usage, " ");
	fputs("\" ;;\n", f);
}

/* The bash or zsh function's body from the command's case on. */
static void
put_cases(FILE *f, int zsh)
{
	const struct command *c;
	size_t i, n;
	int o = zsh ? 1 : 0;
	const char *w = zsh ? "words" : "COMP_WORDS", *cw = zsh ? "CURRENT" : "COMP_CWORD";

	fprintf(f, "\tcase ${%s[%d]} in\n", w, 1 + o);
	for (i = 0; i < NCOMMANDS; i++) {
		c = &commands[i];
		if (c->run == NULL || HIDDEN(c))
			continue;
		fprintf(f, "\t%s)\n", c->name);
		if (!has_subs(c)) {
			put_case(f, c, "\t");
			continue;
		}
		/* Subcommands ("preview create"): theirs after the second word. */
		fprintf(f, "\t\tif ((%s == %d)); then\n\t\t\toffer=\"", cw, 2 + o);
		for (n = 0; n < NCOMMANDS; n++)
			if (is_sub(c, &commands[n]))
				fprintf(f, "%s ", commands[n].name + strlen(c->name) + 1);
		fprintf(f, "--help\"\n\t\telse\n\t\t\tcase ${%s[%d]} in\n", w, 2 + o);
		for (n = 0; n < NCOMMANDS; n++)
			if (is_sub(c, &commands[n])) {
				fprintf(f, "\t\t\t%s)\n", commands[n].name + strlen(c->name) + 1);
				put_case(f, &commands[n], "\t\t\t");
			}
		fputs("\t\t\tesac\n\t\tfi\n\t\t;;\n", f);
	}
	fputs("\tesac\n", f);
	put_names_part(f, zsh);
}

/* The bash completion script, made from the commands and their usage
 * texts, so that it names every command and option there is. */
static void
put_bash_completion(FILE *f)
{
	fputs("# bash completion for kbridge (printed by 'kbridge completion bash')\n"
	    "_kbridge()\n{\n"
	    "\tlocal cur=${COMP_WORDS[COMP_CWORD]} i offer= valued=\n"
	    "\tCOMPREPLY=()\n"
	    "\t# After 'intercept ... --' comes a command of its own.\n"
	    "\tfor ((i = 2; i < COMP_CWORD; i++)); do\n"
	    "\t\tif [[ ${COMP_WORDS[i]} == -- ]]; then\n"
	    "\t\t\t((i + 1 == COMP_CWORD)) && COMPREPLY=($(compgen -c -- \"$cur\"))\n"
	    "\t\t\treturn 0\n"
	    "\t\tfi\n"
	    "\tdone\n"
	    "\tif ((COMP_CWORD == 1)); then\n"
	    "\t\tCOMPREPLY=($(compgen -W \"", f);
	put_commands(f, " ");
	fputs("--help --version\" -- \"$cur\"))\n"
	    "\t\treturn 0\n"
	    "\tfi\n", f);
	put_cases(f, 0);
	fputs("\t# Options where one is begun, else what bash completes by default\n"
	    "\t# (file names, as for --env-file and --profile).\n"
	    "\tif [[ $cur == -* || ${COMP_WORDS[1]} == help ||\n"
	    "\t    ${COMP_WORDS[1]} == completion || ${COMP_WORDS[1]} == loglevel ||\n"
	    "\t    ( ${COMP_WORDS[1]} == preview && $COMP_CWORD == 2 ) ]]; then\n"
	    "\t\tCOMPREPLY=($(compgen -W \"$offer\" -- \"$cur\"))\n"
	    "\tfi\n"
	    "\treturn 0\n"
	    "}\n"
	    "complete -o default -F _kbridge kbridge\n", f);
}

/* The zsh completion (a #compdef file for fpath, or sourced): the bash
 * script's logic on zsh's words and CURRENT, commands with their
 * summaries. */
static void
put_zsh_completion(FILE *f)
{
	size_t i;

	fputs("#compdef kbridge\n"
	    "# zsh completion for kbridge (printed by 'kbridge completion zsh')\n"
	    "_kbridge()\n{\n"
	    "\tlocal cur=${words[CURRENT]} i offer= valued=\n"
	    "\tlocal -a cmds\n"
	    "\t# After 'intercept ... --' comes a command of its own.\n"
	    "\tfor ((i = 3; i < CURRENT; i++)); do\n"
	    "\t\tif [[ ${words[i]} == -- ]]; then\n"
	    "\t\t\twords=(\"${(@)words[i+1,-1]}\")\n"
	    "\t\t\t((CURRENT -= i))\n"
	    "\t\t\t_normal\n"
	    "\t\t\treturn\n"
	    "\t\tfi\n"
	    "\tdone\n"
	    "\tif ((CURRENT == 2)); then\n"
	    "\t\tcmds=(\n", f);
	for (i = 0; i < NCOMMANDS; i++) {
		if (commands[i].run == NULL || HIDDEN(&commands[i]))
			continue;
		fputs("\t\t    ", f);
		if (commands[i].summary) {
			char buf[256];

			snprintf(buf, sizeof(buf), "%s:%s", commands[i].name,
			    commands[i].summary);
			put_quoted(f, buf, 0);
		} else
			put_quoted(f, commands[i].name, 0);
		fputc('\n', f);
	}
	fputs("\t\t)\n"
	    "\t\t_describe command cmds\n"
	    "\t\treturn\n"
	    "\tfi\n", f);
	put_cases(f, 1);
	fputs("\tif [[ $cur == -* || ${words[2]} == help || ${words[2]} == completion ||\n"
	    "\t    ( ${words[2]} == preview && $CURRENT == 3 ) ]]; then\n"
	    "\t\tcompadd -- ${=offer}\n"
	    "\telse\n"
	    "\t\t_files\n"
	    "\tfi\n"
	    "}\n"
	    "# Loaded from fpath (#compdef) it completes; sourced, it registers.\n"
	    "if [[ $funcstack[1] == _kbridge ]]; then\n"
	    "\t_kbridge \"$@\"\n"
	    "else\n"
	    "\tcompdef _kbridge kbridge\n"
	    "fi\n", f);
}

/* fish: one 'complete' line per option of c, under condition cond. */
static void
put_fish_options(FILE *f, const struct command *c, const char *cond)
{
	const char *opts[COMP_OPTS_MAX];
	size_t i, n, len[COMP_OPTS_MAX];
	char s;
	int valued;

	n = usage_options(c->usage, opts, len);
	for (i = 0; i < n; i++) {
		valued = takes_value(c->usage, opts[i], len[i], &s);
		fprintf(f, "complete -c kbridge -n '%s'", cond);
		if (s)
			fprintf(f, " -s %c", s);
		fprintf(f, " -l %.*s", (int)len[i], opts[i]);
		if (len[i] == 9 && !strncmp(opts[i], "namespace", 9))
			fputs(" -x -a '(kbridge __complete namespaces 2>/dev/null)'", f);
		else if (valued)
			fputs(" -r", f);
		fputc('\n', f);
	}
}

/* The fish completion: commands with their summaries, subcommands,
 * options, and names from kbridged. */
static void
put_fish_completion(FILE *f)
{
	const struct command *c;
	char cond[256];
	size_t i, n;

	fputs("# fish completion for kbridge (printed by 'kbridge completion fish')\n"
	    "# __kbridge_using CMD [SUB]: the command line's command (and subcommand)\n"
	    "function __kbridge_using\n"
	    "\tset -l w (commandline -opc)\n"
	    "\ttest \"$w[2]\" = \"$argv[1]\"; or return 1\n"
	    "\ttest (count $argv) -lt 2; or test \"$w[3]\" = \"$argv[2]\"\n"
	    "end\n"
	    "# __kbridge_workload FIRST OPT...: no WORKLOAD yet from word FIRST on (the\n"
	    "# OPTs take a value), and the word is no option's value\n"
	    "function __kbridge_workload\n"
	    "\tset -l w (commandline -opc)\n"
	    "\tset -l i $argv[1]\n"
	    "\tset -e argv[1]\n"
	    "\twhile test $i -le (count $w)\n"
	    "\t\tif contains -- $w[$i] $argv\n"
	    "\t\t\ttest $i -lt (count $w); or return 1\n"
	    "\t\t\tset i (math $i + 2)\n"
	    "\t\telse if string match -q -- '-*' $w[$i]\n"
	    "\t\t\tset i (math $i + 1)\n"
	    "\t\telse\n"
	    "\t\t\treturn 1\n"
	    "\t\tend\n"
	    "\tend\n"
	    "\treturn 0\n"
	    "end\n"
	    "# The -n/--namespace given on the command line, if any\n"
	    "function __kbridge_ns\n"
	    "\tset -l w (commandline -opc)\n"
	    "\tfor i in (seq 2 (math (count $w) - 1))\n"
	    "\t\tcontains -- $w[$i] -n --namespace; and echo $w[(math $i + 1)]\n"
	    "\tend\n"
	    "end\n"
	    "complete -c kbridge -n 'test (count (commandline -opc)) -eq 1' -l help -s h\n"
	    "complete -c kbridge -n 'test (count (commandline -opc)) -eq 1' -l version\n", f);
	for (i = 0; i < NCOMMANDS; i++) {
		c = &commands[i];
		if (c->run == NULL || HIDDEN(c))
			continue;
		fputs("complete -c kbridge -n 'test (count (commandline -opc)) -eq 1' -f -a ", f);
		put_quoted(f, c->name, 1);
		if (c->summary) {
			fputs(" -d ", f);
			put_quoted(f, c->summary, 1);
		}
		fputc('\n', f);
	}
	for (i = 0; i < NCOMMANDS; i++) {
		c = &commands[i];
		if (c->run == NULL || HIDDEN(c))
			continue;
		snprintf(cond, sizeof(cond), "__kbridge_using %s", c->name);
		if (c->run == cmd_help) {
			fprintf(f, "complete -c kbridge -n '%s' -f -a '", cond);
			put_commands(f, " ");
			fputs("'\n", f);
			continue;
		}
		if (c->run == cmd_completion) {
			fprintf(f, "complete -c kbridge -n '%s' -f -a 'bash zsh fish'\n", cond);
			continue;
		}
		if (!has_subs(c)) {
			put_fish_options(f, c, cond);
			continue;
		}
		for (n = 0; n < NCOMMANDS; n++) {
			if (!is_sub(c, &commands[n]))
				continue;
			fprintf(f, "complete -c kbridge -n '%s; and test (count (commandline "
			    "-opc)) -eq 2' -f -a '%s'\n", cond, commands[n].name + strlen(c->name) + 1);
			snprintf(cond, sizeof(cond), "__kbridge_using %s", commands[n].name);
			put_fish_options(f, &commands[n], cond);
			snprintf(cond, sizeof(cond), "__kbridge_using %s", c->name);
		}
	}
	/* The WORKLOAD operand of intercept, leave and preview create. */
	for (i = 0; i < NCOMMANDS; i++) {
		c = &commands[i];
		if (c->run != cmd_intercept && c->run != cmd_leave &&
		    strcmp(c->name, "preview create") != 0)
			continue;
		fprintf(f, "complete -c kbridge -n '__kbridge_using %s; and __kbridge_workload %d ",
		    c->name, strchr(c->name, ' ') ? 4 : 3);
		put_valued(f, c->usage, " ");
		fputs("' -f -a '(kbridge __complete workloads (__kbridge_ns) 2>/dev/null)'\n", f);
	}
}

static int
cmd_completion(int argc, char **argv)
{
	static const struct option opts[] = {
		LONGOPT_HELP,
		LONGOPT_END
	};
	const char *sh;
	int ch, ret;

	while ((ch = next_opt(argc, argv, ":h", opts)) != -1)
		if (!std_opt(ch, argv, NULL, NULL, &ret))
			return ret;
	sh = optind < argc ? argv[optind] : "";
	if (strcmp(sh, "bash") && strcmp(sh, "zsh") && strcmp(sh, "fish")) {
		errorx("completion: missing or unknown shell (bash, zsh or fish)");
		return EXIT_USAGE;
	}
	optind++;
	if (no_operands(argc, argv) == -1)
		return EXIT_USAGE;
	if (!strcmp(sh, "bash"))
		put_bash_completion(stdout);
	else if (!strcmp(sh, "zsh"))
		put_zsh_completion(stdout);
	else
		put_fish_completion(stdout);
	return fflush(stdout) == EOF ? 1 : 0;
}

static int
cmd_help(int argc, char **argv)
{
	const struct command *c;
	char sub[64];

	if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0) {
		main_usage(stdout);
		return 0;
	}
	if ((c = find_command(argv[1])) == NULL || c->run == NULL) {
		errorx("help: unknown command '%s' (see 'kbridge --help')",
		    argv[1]);
		return EXIT_USAGE;
	}
	if (argc == 3)
		snprintf(sub, sizeof(sub), "%s %s", argv[1], argv[2]);
	if (argc > 3 || (argc == 3 && (c = find_command(sub)) == NULL)) {
		errorx("help: unexpected argument '%s'", argv[2]);
		return EXIT_USAGE;
	}
	fputs(c->usage, stdout);
	return 0;
}

int
main(int argc, char *argv[])
{
	const struct command *c;
	int ret;

	if (argc < 2) {
		errorx("missing command (see 'kbridge --help')");
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		main_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		argv[1] = "version";
	if ((c = find_command(argv[1])) == NULL || c->run == NULL) {
		if (argv[1][0] == '-')
			errorx("unknown option %s (see 'kbridge --help')",
			    argv[1]);
		else
			errorx("unknown command '%s' (see 'kbridge --help')",
			    argv[1]);
		return EXIT_USAGE;
	}
	if (kb_client_init(&interrupted) == -1) {
		errorx("cannot initialise libcurl");
		return 1;
	}
	ret = c->run(argc - 1, argv + 1);
	if (ret != 0)
		print_doc_error();
	kb_client_cleanup();
	return ret;
}
