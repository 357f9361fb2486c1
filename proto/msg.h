/* The control-message vocabulary (PROTOCOL.md §3-4): the version, the hello
 * roles, the shared names and limits, and one table of CONTROL message types
 * with the fields each must carry. Every program sends and receives control
 * messages through it, so the contract lives here and nowhere else. */
#ifndef KB_MSG_H
#define KB_MSG_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

#define KB_VERSION "0.1.0"
#define KB_SOFTWARE "kbridge/" KB_VERSION

/* The "role" of a HELLO (not the certificate role, see tls.h). */
#define KB_HELLO_ROLE_DAEMON "daemon"
#define KB_HELLO_ROLE_SIDECAR "sidecar"

/* The header that routes a request to one intercept by its id (§4.4). */
#define KB_INTERCEPT_HEADER "x-kbridge-intercept-id"
/* Headers an intercept may require (§4.3). */
#define KB_MAX_MATCH_HEADERS 16
/* A preview's longest life, in seconds (§4.5). */
#define KB_PREVIEW_TTL_MAX (30 * 24 * 3600)

enum kb_msg_type {
	KB_MSG_RESOLVE,		/* daemon -> manager */
	KB_MSG_RESOLVED,	/* manager -> daemon */
	KB_MSG_INTERCEPT,	/* daemon -> manager, answered by result */
	KB_MSG_LEAVE,
	KB_MSG_LEAVE_ALL,
	KB_MSG_LIST,
	KB_MSG_PREVIEW_CREATE,
	KB_MSG_PREVIEW_LIST,
	KB_MSG_PREVIEW_REMOVE,
	KB_MSG_RESULT,		/* manager -> daemon */
	KB_MSG_REPLACED,	/* manager -> daemon */
	KB_MSG_INTERCEPTS,	/* manager -> sidecar */
	KB_MSG_CLUSTER,		/* manager -> daemon: new subnets and namespaces */
	KB_MSG_LOGS,		/* daemon -> manager: its recent lines about us */
	KB_MSG_LOGLEVEL,	/* daemon -> manager: its debug lines about us on or off */
	KB_MSG__COUNT
};

/* The wire name of a type ("resolve", ...); NULL if out of range. */
const char *kb_msg_name(enum kb_msg_type type);
/* The type of a wire name. 0, or -1 if there is no such type. */
int kb_msg_lookup(const char *name, enum kb_msg_type *type);

/* Check a received CONTROL message against the table: its "type" and
 * every field the type defines (JSON type, integer ranges, string and
 * array lengths). Returns
 *   0    valid: *type is set and the handler may trust the fields;
 *   -1   a protocol error (no or unknown type, a field the peer's software
 *        always sends right is wrong): the session ends; err says why;
 *   >0   a request whose field is invalid: *type is set and the receiver
 *        answers a result with this status (400, 404) and err as the text.
 * Fields the table does not name are ignored. */
int kb_msg_parse(const struct cJSON *msg, enum kb_msg_type *type, char *err, size_t errlen);

/* DNS records in "resolved" (PROTOCOL.md 4.2): at most this many, each
 * record's "data" at most this long. */
#define KB_DNS_RECORDS_MAX	32
#define KB_DNS_DATA_MAX		1024

/* May a "resolve" ask for this type? A, AAAA, and (to a manager that says
 * "dns_records") NS CNAME PTR MX SRV, whose names the manager decodes,
 * and TXT and any other type whose data holds no name that may be
 * compressed; not the meta types (OPT, AXFR, ANY...). */
int kb_dns_qtype_ok(unsigned qtype);
/* A name as records carry it: dotted labels of 1-63 letters, digits, '-',
 * '_' or '*', 253 characters at most, no final dot. */
int kb_dns_name_ok(const char *s);

/* One element of "records", checked: pointers into the JSON. */
struct kb_dns_record {
	const char *name;	/* kb_dns_name_ok */
	uint16_t type;		/* kb_dns_qtype_ok */
	uint32_t ttl;		/* 0..2^31-1 */
	const char *data;	/* text as PROTOCOL.md 4.2 says, KB_DNS_DATA_MAX at most;
				 * its syntax is checked where it is encoded */
};
/* 0, or -1 if rec is not a valid record. */
int kb_msg_dns_record(const struct cJSON *rec, struct kb_dns_record *out);

/* The most of the manager's log a "logs" result carries (bytes of text
 * before JSON escaping; the message must fit one frame). */
#define KB_LOGS_MAX		(12 * 1024)
/* The highest replica index "logs" may name. */
#define KB_LOGS_REPLICA_MAX	63

/* A new message object with its "type" set; NULL on allocation failure. */
struct cJSON *kb_msg_new(enum kb_msg_type type);
/* The "result" answering request id: {"type", "id", "ok"} and, unless ok,
 * "status" and "error". NULL on allocation failure. */
struct cJSON *kb_msg_result(double id, int ok, int status, const char *error);

#endif
