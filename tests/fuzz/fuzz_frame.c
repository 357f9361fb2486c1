/* libFuzzer target for the frame decoder: the input is a byte stream as it
 * would arrive from a peer. Frames are decoded one after the other as a
 * session does, and every accepted payload goes through its own decoder
 * (OPEN, GOAWAY, JSON). Any crash, sanitizer report or broken invariant
 * (abort) is a bug. Build and run with `make fuzz`. */
#include "../../proto/frame.c"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond) do { if (!(cond)) abort(); } while (0)

/* Numbers come as doubles; converting one outside int's range is undefined,
 * so a session must range-check first, as here. */
static int
json_int(const cJSON *v, int *out)
{
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX))
		return -1;
	*out = (int)v->valuedouble;
	return *out == v->valuedouble ? 0 : -1;
}

/* What the session does with a hello or control payload. */
static void
json_payload(const struct kb_frame *f)
{
	const cJSON *v, *t;
	cJSON *j;
	char *s;
	int n;

	j = cJSON_ParseWithLength((const char *)f->payload, f->len);
	if (j == NULL)
		return;
	if (!cJSON_IsObject(j))
		goto done;
	if (f->type == KB_F_HELLO) {
		(void)json_int(cJSON_GetObjectItemCaseSensitive(j, "proto"), &n);
		v = cJSON_GetObjectItemCaseSensitive(j, "subnets");
		cJSON_ArrayForEach(t, v)
			(void)cJSON_GetStringValue(t);
	} else {
		t = cJSON_GetObjectItemCaseSensitive(j, "type");
		if (cJSON_IsString(t)) {
			(void)json_int(cJSON_GetObjectItemCaseSensitive(j, "id"), &n);
			(void)json_int(cJSON_GetObjectItemCaseSensitive(j, "ttl"), &n);
			v = cJSON_GetObjectItemCaseSensitive(j, "name");
			(void)cJSON_GetStringValue(v);
			v = cJSON_GetObjectItemCaseSensitive(j, "addrs");
			cJSON_ArrayForEach(t, v)
				(void)cJSON_GetStringValue(t);
		}
	}
	/* Logging a message prints it back. */
	s = cJSON_PrintUnformatted(j);
	free(s);
done:
	cJSON_Delete(j);
}

static void
frame_payload(const struct kb_frame *f)
{
	uint8_t enc[2 + KB_OPEN_REF_MAX];
	struct kb_open o;
	const char *err = NULL, *text;
	char str[64];
	size_t n, textlen;
	uint32_t last;
	uint8_t code;

	switch (f->type) {
	case KB_F_HELLO:
	case KB_F_CONTROL:
		json_payload(f);
		break;
	case KB_F_OPEN:
		check(kb_open_decode(f->payload, f->len, &o, &err) == 0);
		kb_open_str(&o, str, sizeof(str));
		n = kb_open_encode(&o, enc);
		check(n == f->len && memcmp(enc, f->payload, n) == 0);
		break;
	case KB_F_RESET:
		check(strcmp(kb_reset_reason_name(f->payload[0]), "unknown") != 0);
		check(memchr(f->payload + 1, '\0', f->len - 1) == NULL);
		break;
	case KB_F_GOAWAY:
		check(kb_goaway_decode(f->payload, f->len, &last, &code, &text, &textlen) == 0);
		check(code <= KB_GOAWAY_MAX && textlen == (size_t)f->len - 5);
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t hdr[KB_FRAME_HDR];
	struct kb_frame f, f2;
	const char *err;
	long r;

	while (size > 0) {
		err = NULL;
		r = kb_frame_decode(data, size, &f, &err);
		if (r == 0)
			break;
		if (r < 0) {
			check(r == -1 && err != NULL);
			break;
		}
		check((size_t)r <= size && (size_t)r == KB_FRAME_HDR + (size_t)f.len);
		check(f.payload == data + KB_FRAME_HDR);
		(void)kb_frame_type_name(f.type);

		/* Re-encoding the header must give back the same bytes. */
		kb_frame_header_encode(hdr, f.type, f.stream, f.len);
		check(memcmp(hdr, data, KB_FRAME_HDR) == 0);
		check(kb_frame_header_decode(hdr, &f2, &err) == 0);
		check(kb_frame_payload_check(&f, &err) == 0);

		frame_payload(&f);
		data += r;
		size -= (size_t)r;
	}
	return 0;
}
