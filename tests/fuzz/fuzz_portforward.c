/* libFuzzer target for proto/portforward.c: what the API server sends, from
 * the upgrade answer on: the HTTP answer (101 checks, an error's Status
 * body, chunked or not) and then the WebSocket frames (lengths, masking,
 * fragments, control frames, channels, the port prefix, the error channel)
 * into a kb_pf as it is after its request went out; when the answer chose
 * SPDY/3.1+portforward.k8s.io, the binary messages' SPDY frames (replies,
 * data and error streams, FINs, resets, settings, pings, window updates).
 * No network: nothing queued is sent (pf_send is held). Any crash, leak or
 * sanitizer report is a bug.
 *
 *   make -o deps build/fuzz/fuzz_portforward
 *   build/fuzz/fuzz_portforward -max_total_time=30 tests/fuzz/corpus-portforward
 */
#include "../../proto/portforward.c"

#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_done(void *arg, int upgraded, const char *err)
{
	(void)arg;
	(void)upgraded;
	if (err && strlen(err) >= 600)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct event_base *base = event_base_new();
	struct kb_pf *pf = calloc(1, sizeof(*pf));
	int sp[2];

	if (base == NULL || pf == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
		abort();
	pf->base = base;
	pf->ns = strdup("ns1");
	pf->pod = strdup("pod1");
	pf->port = 8443;
	pf->done = fuzz_done;
	pf->sock = sp[1]; /* "connected": only its number is used */
	pf->easy = curl_easy_init(); /* not connected: sending fails */
	pf->rev = event_new(base, sp[1], EV_READ | EV_PERSIST, on_readable, pf);
	pf->wev = event_new(base, sp[1], EV_WRITE, on_writable, pf);
	pf->tries = 2;    /* a 401 is an error, not a retry */
	pf->in_send = 1;  /* what is queued stays queued */
	pf->prefix_left[CH_DATA] = pf->prefix_left[CH_ERROR] = 2;
	strcpy(pf->key, "dGhlIHNhbXBsZSBub25jZQ==");
	evutil_make_socket_nonblocking(sp[0]); /* as kb_pf_new makes the local side */
	pf->local = bufferevent_socket_new(base, sp[0], BEV_OPT_CLOSE_ON_FREE);
	pf->wq = evbuffer_new();
	pf->rq = evbuffer_new();
	pf->sq = evbuffer_new();
	pf->timer = evtimer_new(base, on_timer, pf);
	pf->finish_ev = event_new(base, -1, 0, on_finish, pf);
	bufferevent_setcb(pf->local, on_local_read, on_local_write, on_local_event, pf);
	bufferevent_disable(pf->local, EV_READ | EV_WRITE);
	pf->st = PF_UPGRADE;
	evbuffer_add(pf->rq, data, size);
	if (pf_answer(pf) == 0) {
		/* the connection ends here: what is there is all */
		pf->sock = -1;
		pf_answer(pf);
	}
	if (pf->st == PF_OPEN || pf->st == PF_CLOSING)
		pf_parse(pf);
	if (pf->st == PF_DONE)
		event_base_loop(base, EVLOOP_NONBLOCK); /* on_finish frees pf */
	else
		pf_free(pf);
	close(sp[1]);
	event_base_free(base);
	return 0;
}
