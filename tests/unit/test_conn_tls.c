/* kb_conn over TLS 1.3 on a loopback TCP connection: what goes in comes out,
 * byte for byte and in order, both ways, through our own BIOs (ciphertext
 * read in large reads, output encrypted early and written in batches):
 *
 *   1. 6 MiB each way, written in pieces of every size (1 byte to 300 KiB,
 *      the small ones between the large ones); the server stops reading
 *      for 50 ms after 1 MiB, with records left in the read buffer, and
 *      resumes;
 *   2. 300 round trips of 100 bytes: small writes are not held back, and
 *      each record costs one SSL_read (counted here, in front of
 *      OpenSSL's): none that could only say WANT_READ after a short read;
 *   3. the client closes: the server sees end of file (not an error)
 *      after the last byte;
 *   4. a plain OpenSSL client (a thread) sends 200 records of 1,000 bytes
 *      before the server reads any: all of them sit in the read buffer at
 *      once, and a batch ends past READ_BATCH (not on it); the server must
 *      still take every byte without a new socket event. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conn.h"
#include "log.h"

#include "evloop.h"
#include "ok.h"

#define BULK (6 * 1024 * 1024)
#define PAUSE_AT (1024 * 1024)
#define ROUNDS 300
#define SMALL 100

struct side {
	const char *name;
	struct kb_conn *c;
	size_t sent, got;        /* bulk bytes */
	int bad;                 /* first mismatch seen */
	int connected, eof, error;
	int paused_once;
	size_t pong_got;         /* client: bytes of the current round's answer */
	int rounds;
};

static struct side srv = { .name = "server" }, cli = { .name = "client" };
static struct event *resume_ev;

/* conn.c's calls of SSL_read come here first (the test binary defines the
 * symbol); counted while counting is on, in the main thread only. */
static pthread_t main_thread;
static int counting;
static unsigned long ssl_reads;

int
SSL_read(SSL *ssl, void *buf, int num)
{
	static int (*real)(SSL *, void *, int);

	if (!real && (real = (int (*)(SSL *, void *, int))dlsym(RTLD_NEXT, "SSL_read")) == NULL)
		abort();
	if (counting && pthread_equal(pthread_self(), main_thread))
		ssl_reads++;
	return real(ssl, buf, num);
}

static uint8_t
pattern(size_t i)
{
	return (uint8_t)(i * 7 + (i >> 13));
}

/* Queue bulk bytes in pieces of varying size, small ones between large. */
static void
send_bulk(struct side *s, size_t n)
{
	static const size_t sizes[] = { 1, 300 * 1024, 7, 16384, 16383, 65536, 3, 200000 };
	static uint8_t buf[300 * 1024];
	int k = 0;

	while (n > 0) {
		size_t m = sizes[k++ % 8], i;

		if (m > n)
			m = n;
		for (i = 0; i < m; i++)
			buf[i] = pattern(s->sent + i);
		evbuffer_add(kb_conn_output(s->c), buf, m);
		s->sent += m;
		n -= m;
	}
}

static void
check_bulk(struct side *s, struct evbuffer *in)
{
	while (evbuffer_get_length(in) > 0 && s->got < BULK) {
		uint8_t buf[4096];
		size_t n = evbuffer_get_length(in), i;

		if (n > sizeof(buf))
			n = sizeof(buf);
		if (n > BULK - s->got)
			n = BULK - s->got;
		evbuffer_remove(in, buf, n);
		for (i = 0; i < n; i++)
			if (buf[i] != pattern(s->got + i) && !s->bad) {
				printf("# %s: byte %zu is %u, not %u\n", s->name, s->got + i, buf[i],
				    pattern(s->got + i));
				s->bad = 1;
			}
		s->got += n;
	}
}

static void
resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	kb_conn_read_enable(((struct side *)arg)->c, 1);
}

static void
srv_read(struct kb_conn *c, void *arg)
{
	struct evbuffer *in = kb_conn_input(c);

	(void)arg;
	if (srv.got < BULK) {
		check_bulk(&srv, in);
		if (srv.got >= PAUSE_AT && !srv.paused_once) {
			struct timeval tv = { 0, 50000 };
			srv.paused_once = 1;
			kb_conn_read_enable(c, 0);
			evtimer_add(resume_ev, &tv);
		}
		if (srv.got == BULK)
			send_bulk(&srv, BULK);
	}
	/* then: echo the small rounds */
	if (srv.got == BULK && evbuffer_get_length(in) > 0)
		evbuffer_remove_buffer(in, kb_conn_output(c), evbuffer_get_length(in));
}

static void
ping(void)
{
	uint8_t buf[SMALL];

	memset(buf, 'a' + cli.rounds % 26, sizeof(buf));
	evbuffer_add(kb_conn_output(cli.c), buf, sizeof(buf));
}

static void
cli_read(struct kb_conn *c, void *arg)
{
	struct evbuffer *in = kb_conn_input(c);

	(void)arg;
	if (cli.got < BULK) {
		check_bulk(&cli, in);
		if (cli.got == BULK)
			ping();
	}
	while (cli.got == BULK && cli.rounds < ROUNDS && evbuffer_get_length(in) > 0) {
		uint8_t buf[SMALL];
		size_t n = evbuffer_get_length(in), i;

		if (n > SMALL - cli.pong_got)
			n = SMALL - cli.pong_got;
		evbuffer_remove(in, buf, n);
		for (i = 0; i < n; i++)
			if (buf[i] != 'a' + cli.rounds % 26)
				cli.bad = 1;
		if ((cli.pong_got += n) == SMALL) {
			cli.pong_got = 0;
			if (++cli.rounds < ROUNDS)
				ping();
		}
	}
	if (evbuffer_get_length(in) > 0 && cli.rounds == ROUNDS)
		cli.bad = 1;
}

static void
on_event(struct kb_conn *c, int what, void *arg)
{
	struct side *s = arg;
	char err[200];

	(void)c;
	if (what == KB_CONN_CONNECTED) {
		s->connected = 1;
		if (s == &cli)
			send_bulk(&cli, BULK);
		return;
	}
	if (what == KB_CONN_EOF)
		s->eof = 1;
	else
		printf("# %s: event %d: %s\n", s->name, what, kb_conn_error(c, err, sizeof(err)));
	s->error = what != KB_CONN_EOF;
	kb_conn_free(s->c);
	s->c = NULL;
}

static const struct kb_conn_cbs srv_cbs = { srv_read, NULL, on_event };

/* 4: small records, all waiting before the first read */
#define SMALLREC 1000
#define NSMALLREC 200
static struct {
	struct kb_conn *c;
	SSL_CTX *ctx;
	int fd, written, connected, error;
	size_t got;
} four;

static void *
four_client(void *arg)
{
	SSL *ssl = SSL_new(four.ctx);
	char buf[SMALLREC];
	int i;

	(void)arg;
	memset(buf, 'r', sizeof(buf));
	SSL_set_fd(ssl, four.fd);
	if (SSL_connect(ssl) == 1)
		for (i = 0; i < NSMALLREC; i++)
			if (SSL_write(ssl, buf, sizeof(buf)) != (int)sizeof(buf))
				break;
	__atomic_store_n(&four.written, 1, __ATOMIC_SEQ_CST);
	/* held open until the server has read: closing would end it early */
	while (__atomic_load_n(&four.got, __ATOMIC_SEQ_CST) < (size_t)SMALLREC * NSMALLREC &&
	    !__atomic_load_n(&four.error, __ATOMIC_SEQ_CST))
		usleep(10000);
	SSL_free(ssl);
	return NULL;
}

static void
four_read(struct kb_conn *c, void *arg)
{
	struct evbuffer *in = kb_conn_input(c);

	(void)arg;
	__atomic_add_fetch(&four.got, evbuffer_get_length(in), __ATOMIC_SEQ_CST);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void
four_event(struct kb_conn *c, int what, void *arg)
{
	(void)arg;
	if (what == KB_CONN_CONNECTED) {
		/* nothing read until the client has sent everything */
		four.connected = 1;
		kb_conn_read_enable(c, 0);
		return;
	}
	__atomic_store_n(&four.error, 1, __ATOMIC_SEQ_CST);
}

static const struct kb_conn_cbs four_cbs = { four_read, NULL, four_event };

static int
pred_four_written(void *arg)
{
	(void)arg;
	return __atomic_load_n(&four.written, __ATOMIC_SEQ_CST) || four.error;
}

static int
pred_four_got(void *arg)
{
	(void)arg;
	return four.got >= (size_t)SMALLREC * NSMALLREC || four.error;
}
static const struct kb_conn_cbs cli_cbs = { cli_read, NULL, on_event };

/* A throwaway self-signed P-256 certificate: the test is about the byte
 * path, not about identities (test_identity checks those). */
static SSL_CTX *
server_ctx(void)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!key || !x || !ctx)
		abort();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)"test_conn_tls", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, key);
	if (!X509_sign(x, key, EVP_sha256()) || !SSL_CTX_use_certificate(ctx, x) ||
	    !SSL_CTX_use_PrivateKey(ctx, key))
		abort();
	X509_free(x);
	EVP_PKEY_free(key);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* as proto/tls.c sets it */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static SSL_CTX *
client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		abort();
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static int
pred_bulk(void *arg)
{
	(void)arg;
	return (srv.got == BULK && cli.got == BULK) || srv.bad || cli.bad || srv.error ||
	    cli.error;
}

static int
pred_rounds(void *arg)
{
	(void)arg;
	return cli.rounds == ROUNDS || cli.bad || srv.error || cli.error;
}

static int
pred_eof(void *arg)
{
	(void)arg;
	return srv.eof || srv.error;
}

int
main(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	SSL_CTX *sctx, *cctx;
	int l, w, r;

	signal(SIGPIPE, SIG_IGN);
	main_thread = pthread_self();
	log_init("test_conn_tls", KB_LOG_WARN);
	base = event_base_new();
	sctx = server_ctx();
	cctx = client_ctx();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sin, &len) < 0)
		abort();
	w = socket(AF_INET, SOCK_STREAM, 0);
	if (w < 0 || connect(w, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    (r = accept(l, NULL, NULL)) < 0)
		abort();
	close(l);
	evutil_make_socket_nonblocking(w);
	evutil_make_socket_nonblocking(r);
	resume_ev = evtimer_new(base, resume, &srv);

	srv.c = kb_conn_new(base, r, SSL_new(sctx), 1);
	cli.c = kb_conn_new(base, w, SSL_new(cctx), 0);
	ok(srv.c && cli.c);
	kb_conn_setcb(srv.c, &srv_cbs, &srv);
	kb_conn_setcb(cli.c, &cli_cbs, &cli);

	/* 1 */
	ok(run_until(pred_bulk, NULL, 30000));
	printf("# bulk: server got %zu, client got %zu (of %d each)\n", srv.got, cli.got, BULK);
	ok(srv.connected && cli.connected);
	ok(srv.got == BULK && !srv.bad);
	ok(cli.got == BULK && !cli.bad);
	ok(srv.paused_once);
	ok(!srv.error && !cli.error);

	/* 2 */
	counting = 1;
	ok(run_until(pred_rounds, NULL, 10000));
	counting = 0;
	printf("# %d of %d small round trips, %lu SSL_read calls for their %d records\n",
	    cli.rounds, ROUNDS, ssl_reads, 2 * ROUNDS);
	ok(cli.rounds == ROUNDS && !cli.bad);
	/* one per record; a few more where a read event found a record split */
	ok(ssl_reads >= 2 * ROUNDS - 1 && ssl_reads <= 2 * ROUNDS + ROUNDS / 10);

	/* 3 */
	kb_conn_close_flushed(cli.c);
	cli.c = NULL;
	ok(run_until(pred_eof, NULL, 5000));
	ok(srv.eof && !srv.error);

	/* 4 */
	{
		pthread_t t;
		int w4, r4;

		l = socket(AF_INET, SOCK_STREAM, 0);
		len = sizeof(sin);
		sin.sin_port = 0;
		if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&sin, &len) < 0)
			abort();
		w4 = socket(AF_INET, SOCK_STREAM, 0);
		if (w4 < 0 || connect(w4, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		    (r4 = accept(l, NULL, NULL)) < 0)
			abort();
		close(l);
		evutil_make_socket_nonblocking(r4);
		four.fd = w4;
		four.ctx = cctx;
		four.c = kb_conn_new(base, r4, SSL_new(sctx), 1);
		ok(four.c != NULL);
		kb_conn_setcb(four.c, &four_cbs, NULL);
		if (pthread_create(&t, NULL, four_client, NULL) != 0)
			abort();
		ok(run_until(pred_four_written, NULL, 10000));
		run_for(100);	/* the last records reach the socket */
		/* (the read right after the handshake may have taken a first part) */
		ok(four.connected);
		printf("# small records: %zu read before the pause ended\n", four.got);
		kb_conn_read_enable(four.c, 1);
		ok(run_until(pred_four_got, NULL, 5000));
		printf("# small records: server got %zu of %d\n", four.got,
		    SMALLREC * NSMALLREC);
		ok(four.got == (size_t)SMALLREC * NSMALLREC && !four.error);
		__atomic_store_n(&four.error, 1, __ATOMIC_SEQ_CST); /* lets the thread go */
		pthread_join(t, NULL);
		close(w4);
		kb_conn_free(four.c);
	}

	run_for(10);
	if (srv.c)
		kb_conn_free(srv.c);
	event_free(resume_ev);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	event_base_free(base);
	libevent_global_shutdown();
	return ok_done();
}
