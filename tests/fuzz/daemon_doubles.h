/* Doubles for the parts of kbridged that change the host (tun device,
 * routes, nftables, DNS redirection, child processes): the fuzzers run the
 * daemon's session and control API, not its network setup. */
#ifndef KB_FUZZ_DAEMON_DOUBLES_H
#define KB_FUZZ_DAEMON_DOUBLES_H

#include "../../daemon/firewall.h"
#include "../../daemon/kbridged.h"
#include "../../daemon/tun.h"
#include "../unit/net_doubles.h"

void
net_namespaces(struct kbd *d, const struct kbd_cluster *c)
{
	(void)d;
	(void)c;
}

void
net_status_json(const struct kbd *d, cJSON *j)
{
	(void)d;
	cJSON_AddStringToObject(j, "link", "kb0");
	cJSON_AddStringToObject(j, "table", "kbridge");
}

/* Keeps the ranges, as the real one does after checking the workstation's
 * addresses (not the fuzzer's business). */
int
net_user_ranges(struct kbd *d, const struct kb_cidr *never, size_t nnever,
    const struct kb_cidr *also, size_t nalso, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	memcpy(d->never, never, nnever * sizeof(never[0]));
	d->nnever = nnever;
	memcpy(d->also, also, nalso * sizeof(also[0]));
	d->nalso = nalso;
	return 0;
}

void
net_virtual_subnet(struct kbd *d, const char *spec)
{
	(void)d;
	(void)spec;
}

int
net_same_virtual_subnet(const struct kbd *d, const char *spec)
{
	(void)d;
	(void)spec;
	return 1;
}

int
fw_mark_socket(int fd)
{
	(void)fd;
	return 0;
}

void
kbd_quit(struct kbd *d)
{
	d->exiting = 1;
}

/* tunnel.c trims the heap 200 ms after a hello: do it now, so an input
 * leaves nothing allocated behind (libFuzzer runs a slow leak check after
 * any input that does). */
static int
fz_find_trim(const struct event_base *base, const struct event *ev, void *arg)
{
	struct event **found = arg;

	(void)base;
	if (event_get_callback(ev) == trim_heap && !*found)
		*found = (struct event *)ev;
	return 0;
}

static void
fz_trim_now(struct event_base *base)
{
	struct event *ev;

	for (;;) {
		ev = NULL;
		event_base_foreach_event(base, fz_find_trim, &ev);
		if (!ev)
			break;
		event_active(ev, EV_TIMEOUT, 1);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
}

#endif
