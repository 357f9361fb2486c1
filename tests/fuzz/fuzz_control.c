/* libFuzzer target for the control messages (HELLO and CONTROL frames, JSON,
 * see proto/PROTOCOL.md) as the real handlers see them: the manager's
 * (agent/manager.c with agent/intercepts.c and agent/preview.c: hello,
 * resolve, intercept, leave, list, preview-*), the daemon's (daemon/tunnel.c:
 * the manager's hello, resolved, result) and the sidecar's (agent/sidecar.c:
 * intercepts). Each input gets fresh connections (socketpairs) to a real
 * kb_session of the chosen side; the fuzzer is the peer and writes frames
 * whose payloads come from the input. Any crash, leak or sanitizer report is
 * a bug. Build and run with `make fuzz`.
 *
 * Input: byte 0 chooses the side (0 manager, 1 daemon, 2 sidecar, modulo 3);
 * then records: one byte (peer = its low bits modulo the side's number of
 * peers; bit 7 = send a HELLO even if one was sent), two bytes of length
 * (little endian), the payload. A peer's first record is its HELLO, the
 * others are CONTROL frames. */
#include <sys/socket.h>

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "control.h"
#include "frame.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PEERS 4

static struct event_base *fbase;
static const struct fz_side *const sides[] = { &fz_manager, &fz_daemon, &fz_sidecar };
static int ready[3];

void
fz_loop(void)
{
	int i;

	for (i = 0; i < 4; i++)
		event_base_loop(fbase, EVLOOP_NONBLOCK);
}

static void
drain(int *fds, int n)
{
	char buf[65536];
	ssize_t r;
	int i;

	for (i = 0; i < n; i++) {
		while (fds[i] >= 0 && (r = read(fds[i], buf, sizeof(buf))) != 0) {
			if (r > 0)
				continue;
			break;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int peers[MAX_PEERS], hello[MAX_PEERS] = { 0 }, sv[2], i, k, rounds;
	const struct fz_side *side;
	uint8_t hdr[KB_FRAME_HDR];
	size_t len;
	int which;

	if (!fbase) {
		log_init("fuzz_control", getenv("FZ_DEBUG") ? KB_LOG_DEBUG : KB_LOG_ERROR);
		signal(SIGPIPE, SIG_IGN);
		fbase = event_base_new();
	}
	if (size < 1)
		return 0;
	which = data[0] % 3;
	side = sides[which];
	data++;
	size--;
	if (!ready[which]) {
		side->setup(fbase);
		ready[which] = 1;
	}
	for (i = 0; i < side->npeers; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
			abort();
		peers[i] = sv[1];
		side->start(i, sv[0]);
	}
	fz_loop();
	drain(peers, side->npeers);
	while (size >= 3) {
		i = (data[0] & 0x7f) % side->npeers;
		k = (data[0] & 0x80) || !hello[i];
		len = (size_t)data[1] | (size_t)data[2] << 8;
		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		hello[i] = 1;
		/* Oversized payloads keep their length: the session must refuse them. */
		kb_frame_header_encode(hdr, k ? KB_F_HELLO : KB_F_CONTROL, 0, (uint16_t)len);
		if (write(peers[i], hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr) && len > 0 &&
		    write(peers[i], data, len) < 0)
			(void)0;
		data += len;
		size -= len;
		fz_loop();
		side->poke();
		fz_loop();
		drain(peers, side->npeers);
	}
	for (i = 0; i < side->npeers; i++)
		close(peers[i]);
	for (rounds = 0; rounds < 100 && !side->ended(); rounds++)
		fz_loop();
	if (!side->ended())
		abort();
	side->finish();
	return 0;
}
