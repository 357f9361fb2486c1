/* DNS message parsing and building for the daemon's proxy (dnsmsg.h): no
 * I/O and no state. */
#include "dnsmsg.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ares.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg.h"

/* The end of the uncompressed name at buf + DNS_HDR (just past its zero
 * label), or 0 if it runs past len or 255 bytes, or is compressed. */
static size_t
name_end(const unsigned char *buf, size_t len)
{
	size_t off;

	for (off = DNS_HDR;; off += 1 + buf[off]) {
		if (off >= len || off - DNS_HDR > 255 || (buf[off] & 0xc0))
			return 0;
		if (buf[off] == 0)
			return off + 1;
	}
}

/* The question's name, lower case without the final dot, into q->name. */
static int
copy_name(const unsigned char *buf, size_t len, struct dns_question *q)
{
	char *name = NULL;
	long enclen;
	size_t i, n;
	int rc = -1;

	if (ares_expand_name(buf + DNS_HDR, buf, (int)len, &name, &enclen) != ARES_SUCCESS)
		return -1;
	n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n < sizeof(q->name)) {
		for (i = 0; i < n; i++)
			q->name[i] = (char)tolower((unsigned char)name[i]);
		q->name[n] = '\0';
		rc = 0;
	}
	ares_free_string(name);
	return rc;
}

int
dns_parse_query(const unsigned char *buf, size_t len, struct dns_question *q)
{
	size_t off;

	if (len < DNS_HDR || len > DNS_MSG_MAX)
		return -1;
	q->id = dns_get16(buf);
	/* Answering a response could ping-pong with another proxy. */
	if (buf[2] & 0x80)
		return -1;
	if ((buf[2] >> 3) & 0xf)
		return DNS_NOTIMP;
	if (dns_get16(buf + 4) != 1)
		return DNS_FORMERR;
	if ((off = name_end(buf, len)) == 0 || off + 4 > len || copy_name(buf, len, q) < 0)
		return DNS_FORMERR;
	q->qtype = dns_get16(buf + off);
	q->qclass = dns_get16(buf + off + 2);
	q->qend = off + 4;
	q->edns = 0;
	/* EDNS0: an OPT record (root name, type 41, CLASS the UDP size)
	 * first in the additional section of a query with nothing else. */
	if (dns_get16(buf + 6) == 0 && dns_get16(buf + 8) == 0 && dns_get16(buf + 10) >= 1 &&
	    q->qend + DNS_OPT_LEN <= len && buf[q->qend] == 0 &&
	    dns_get16(buf + q->qend + 1) == 41) {
		q->edns = dns_get16(buf + q->qend + 3);
		if (q->edns < DNS_UDP_ANSWER_MAX)
			q->edns = DNS_UDP_ANSWER_MAX;
		if (q->edns > DNS_EDNS_MAX)
			q->edns = DNS_EDNS_MAX;
	}
	return 0;
}

size_t
dns_udp_max(uint16_t edns)
{
	return edns ? (size_t)edns - DNS_OPT_LEN : DNS_UDP_ANSWER_MAX;
}

size_t
dns_add_opt(unsigned char *out, size_t len, size_t outmax, uint16_t edns)
{
	if (!edns || len < DNS_HDR || len + DNS_OPT_LEN > outmax)
		return len;
	memset(out + len, 0, DNS_OPT_LEN);
	dns_put16(out + len + 1, 41);
	dns_put16(out + len + 3, DNS_EDNS_MAX);
	dns_put16(out + 10, (uint16_t)(dns_get16(out + 10) + 1));
	return len + DNS_OPT_LEN;
}

/* One resource record at out + off: the question's name, type, IN, ttl,
 * rdata. */
static void
put_record(unsigned char *out, size_t off, int qtype, uint32_t ttl, const unsigned char *rdata,
    size_t rdlen)
{
	dns_put16(out + off, 0xc00c);
	dns_put16(out + off + 2, (uint16_t)qtype);
	dns_put16(out + off + 4, DNS_C_IN);
	out[off + 6] = ttl >> 24;
	out[off + 7] = (ttl >> 16) & 0xff;
	out[off + 8] = (ttl >> 8) & 0xff;
	out[off + 9] = ttl & 0xff;
	dns_put16(out + off + 10, (uint16_t)rdlen);
	memcpy(out + off + 12, rdata, rdlen);
}

size_t
dns_build_answer(unsigned char *out, size_t outmax, const unsigned char *query, size_t qend,
    int rcode, int qtype, const char *const *addrs, size_t naddrs, uint32_t ttl)
{
	unsigned char rdata[16];
	size_t off, i, rdlen = qtype == DNS_T_AAAA ? 16 : 4;
	uint16_t an = 0;

	memset(out, 0, DNS_HDR);
	memcpy(out, query, 2);
	out[2] = 0x80 | (query[2] & 0x79);	/* opcode and RD */
	out[3] = 0x80 | (rcode & 0x0f);
	dns_put16(out + 4, qend > DNS_HDR ? 1 : 0);
	memcpy(out + DNS_HDR, query + DNS_HDR, qend - DNS_HDR);
	off = qend;
	for (i = 0; i < naddrs && rcode == 0; i++) {
		/* An address that does not parse is left out. */
		if (inet_pton(qtype == DNS_T_AAAA ? AF_INET6 : AF_INET, addrs[i], rdata) != 1)
			continue;
		if (off + 12 + rdlen > outmax) {
			out[2] |= 0x02;
			break;
		}
		put_record(out, off, qtype, ttl, rdata, rdlen);
		off += 12 + rdlen;
		an++;
	}
	dns_put16(out + 6, an);
	return off;
}

size_t
dns_build_rcode(unsigned char *out, size_t outmax, const unsigned char *query, size_t qend,
    int rcode)
{
	return dns_build_answer(out, outmax, query, qend, rcode, 0, NULL, 0, 0);
}

int
dns_same_question(const unsigned char *a, size_t alen, const unsigned char *b, size_t qend)
{
	size_t i;

	if (alen < qend || dns_get16(a + 4) != dns_get16(b + 4))
		return 0;
	for (i = DNS_HDR; i < qend - 4; i++)
		if (tolower(a[i]) != tolower(b[i]))
			return 0;
	return !memcmp(a + qend - 4, b + qend - 4, 4);
}

/* The dotted name s (kb_dns_name_ok) in wire form into w[wmax]: its
 * length, or 0. */
static size_t
wire_name(unsigned char *w, size_t wmax, const char *s)
{
	size_t off = 0, len;
	const char *dot;

	if (!kb_dns_name_ok(s))
		return 0;
	for (;;) {
		dot = strchr(s, '.');
		len = dot ? (size_t)(dot - s) : strlen(s);
		if (off + 1 + len + 1 > wmax)
			return 0;
		w[off] = (unsigned char)len;
		memcpy(w + off + 1, s, len);
		off += 1 + len;
		if (!dot)
			break;
		s = dot + 1;
	}
	w[off++] = 0;
	return off;
}

/* A decimal 0-65535 followed by one space at *s; *s moves past it. */
static int
take_u16(const char **s, unsigned char *w)
{
	const char *p = *s;
	unsigned long v = 0;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++)
		if ((v = v * 10 + (unsigned long)(*p - '0')) > 65535)
			return -1;
	if (*p != ' ')
		return -1;
	dns_put16(w, (uint16_t)v);
	*s = p + 1;
	return 0;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* rr's data in wire form into w[wmax]: its length, or -1 if it does not
 * parse. */
static long
wire_rdata(const struct dns_rr *rr, unsigned char *w, size_t wmax)
{
	const char *p = rr->data;
	size_t fixed = 0, n, i;
	int hi, lo;

	switch (rr->type) {
	case DNS_T_A:
		return inet_pton(AF_INET, p, w) == 1 ? 4 : -1;
	case DNS_T_AAAA:
		return inet_pton(AF_INET6, p, w) == 1 ? 16 : -1;
	case DNS_T_SRV:
		if (take_u16(&p, w) < 0 || take_u16(&p, w + 2) < 0 || take_u16(&p, w + 4) < 0)
			return -1;
		fixed = 6;
		break;
	case DNS_T_MX:
		if (take_u16(&p, w) < 0)
			return -1;
		fixed = 2;
		break;
	case DNS_T_NS:
	case DNS_T_CNAME:
	case DNS_T_PTR:
		break;
	default:
		/* data passed through, in hex */
		if ((n = strlen(p)) % 2 || n / 2 > wmax || n / 2 > 65535)
			return -1;
		for (i = 0; i < n / 2; i++) {
			if ((hi = hexval(p[2 * i])) < 0 || (lo = hexval(p[2 * i + 1])) < 0)
				return -1;
			w[i] = (unsigned char)(hi << 4 | lo);
		}
		return (long)(n / 2);
	}
	if ((n = wire_name(w + fixed, wmax - fixed, p)) == 0)
		return -1;
	return (long)(fixed + n);
}

size_t
dns_build_records(unsigned char *out, size_t outmax, const unsigned char *query, size_t qend,
    int rcode, const struct dns_rr *rrs, size_t n, const char *asked, int *bad)
{
	unsigned char owner[256], rdata[DNS_RR_DATA_MAX];
	size_t off, i, olen;
	long rdlen;
	uint16_t an = 0;

	*bad = 0;
	off = dns_build_answer(out, outmax, query, qend, rcode, 0, NULL, 0, 0);
	for (i = 0; i < n && rcode == 0; i++) {
		if ((rdlen = wire_rdata(&rrs[i], rdata, sizeof(rdata))) < 0) {
			*bad = 1;
			return 0;
		}
		/* The asked name is the question's (a pointer to it): a
		 * client that typed web.default gets web.default's records. */
		if (qend > DNS_HDR && !strcasecmp(rrs[i].name, asked)) {
			dns_put16(owner, 0xc00c);
			olen = 2;
		} else if ((olen = wire_name(owner, sizeof(owner), rrs[i].name)) == 0) {
			*bad = 1;
			return 0;
		}
		if (off + olen + 10 + (size_t)rdlen > outmax) {
			out[2] |= 0x02;	/* TC */
			break;
		}
		memcpy(out + off, owner, olen);
		off += olen;
		dns_put16(out + off, rrs[i].type);
		dns_put16(out + off + 2, DNS_C_IN);
		out[off + 4] = rrs[i].ttl >> 24;
		out[off + 5] = (rrs[i].ttl >> 16) & 0xff;
		out[off + 6] = (rrs[i].ttl >> 8) & 0xff;
		out[off + 7] = rrs[i].ttl & 0xff;
		dns_put16(out + off + 8, (uint16_t)rdlen);
		memcpy(out + off + 10, rdata, (size_t)rdlen);
		off += 10 + (size_t)rdlen;
		an++;
	}
	dns_put16(out + 6, an);
	return off;
}
