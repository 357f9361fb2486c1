/* resolv.conf's nameserver lines as the DNS proxy's upstreams (see
 * resolvconf.h). Pure: no I/O, no allocation. */
#include "resolvconf.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string.h>

/* One nameserver's address into up; 0, or -1 if it does not parse. */
static int
resolv_addr(char *word, struct dns_upstream *up)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&up->ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&up->ss;
	char *pct;

	memset(up, 0, sizeof(*up));
	if (inet_pton(AF_INET, word, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(53);
		up->len = sizeof(*s4);
		return 0;
	}
	if ((pct = strchr(word, '%')) != NULL)
		*pct = '\0';
	if (inet_pton(AF_INET6, word, &s6->sin6_addr) != 1)
		return -1;
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(53);
	up->len = sizeof(*s6);
	return 0;
}

size_t
resolv_parse(char *text, struct dns_upstreams *u, resolv_bad_fn bad, void *arg)
{
	char *line, *save = NULL, *tok, *word;
	struct dns_upstream *up;

	memset(u, 0, sizeof(*u));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if ((word = strtok_r(line, " \t\r", &tok)) == NULL || strcmp(word, "nameserver"))
			continue;
		if ((word = strtok_r(NULL, " \t\r", &tok)) == NULL || u->n == DNS_MAX_UPSTREAMS)
			continue;
		up = &u->up[u->n];
		if (resolv_addr(word, up) < 0) {
			if (bad)
				bad(arg, word);
			continue;
		}
		if (up->ss.ss_family == AF_INET)
			u->v4[u->nv4++] =
			    ntohl(((struct sockaddr_in *)&up->ss)->sin_addr.s_addr);
		u->n++;
	}
	return u->n;
}

void
resolv_set_port(struct dns_upstreams *u, uint16_t port)
{
	size_t i;

	for (i = 0; i < u->n; i++) {
		if (u->up[i].ss.ss_family == AF_INET)
			((struct sockaddr_in *)&u->up[i].ss)->sin_port = htons(port);
		else
			((struct sockaddr_in6 *)&u->up[i].ss)->sin6_port = htons(port);
	}
}
