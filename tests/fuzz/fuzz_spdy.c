/* libFuzzer target for proto/spdy.c: what the kubelet's side sends through
 * the SPDY tunnel, as a byte stream of frames parsed in order with one
 * connection's inflate context (header blocks of SYN_REPLY, HEADERS and
 * SYN_STREAM decompressed with the SPDY/3 dictionary, their pairs checked),
 * SETTINGS entries read, header look-ups, and the flow-control accounting
 * fed with the window updates and settings found. Any crash, leak or
 * sanitizer report is a bug.
 *
 *   make -o deps build/fuzz/fuzz_spdy
 *   build/fuzz/fuzz_spdy -max_total_time=30 tests/fuzz/corpus-spdy
 */
#include "../../proto/spdy.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kb_spdy *s = kb_spdy_new();
	struct kb_spdy_frame f;
	struct kb_spdy_flow w;
	size_t off = 0, need, i;
	uint32_t j, id, v;
	char err[200];
	int r, fl;

	if (s == NULL)
		abort();
	kb_spdy_flow_init(&w);
	while (off < size) {
		r = kb_spdy_parse(s, data + off, size - off, 1u << 20, &f, &need, err, sizeof(err));
		if (r < 0) {
			if (strlen(err) == 0 || strchr(err, '\n'))
				abort();
			break;
		}
		if (r == 0) {
			if (need <= size - off)
				abort(); /* "more" with enough bytes there */
			break;
		}
		if (need < KB_SPDY_HDR || need > size - off || need != KB_SPDY_HDR + f.len)
			abort();
		for (i = 0; i < f.npairs; i++)
			if (f.name[i][0] == '\0' || kb_spdy_header(&f, f.name[i]) == NULL)
				abort();
		if (f.type == KB_SPDY_SETTINGS)
			for (j = 0; j < f.nsettings; j++) {
				kb_spdy_setting(&f, j, &id, &fl, &v);
				if (id == KB_SPDY_SETTINGS_INITIAL_WINDOW)
					kb_spdy_flow_initial(&w, v);
			}
		if (f.type == KB_SPDY_WINDOW_UPDATE)
			kb_spdy_flow_update(&w, f.value);
		if (f.type == KB_SPDY_DATA) {
			kb_spdy_flow_sent(&w, kb_spdy_flow_allowed(&w, f.len));
			kb_spdy_flow_consumed(&w, f.len);
		}
		if (w.send > (int64_t)KB_SPDY_WINDOW_MAX)
			abort();
		off += need;
	}
	kb_spdy_free(s);
	return 0;
}
