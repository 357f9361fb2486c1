/* A hash index of borrowed byte-string keys: open addressing, linear
 * probing, backward-shift deletion, a load factor of at most 1/2. */
#include "htab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct kb_hslot {
	const void *key;	/* NULL: free */
	size_t len;
	uint64_t hash;
	void *val;
};

#define MIN_CAP 16

static uint64_t seed;
static int seeded;

static uint64_t
mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

uint64_t
kb_htab_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h;
	size_t i;

	if (!seeded) {
		/* Without randomness the seed stays a constant: lookups still work. */
		if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
			seed = 0x6b62726964676521ULL;
		seeded = 1;
	}
	h = seed ^ (0xcbf29ce484222325ULL + len);
	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
		if ((i & 7) == 7)
			h = mix(h);
	}
	return mix(h ^ seed);
}

static struct kb_hslot *
find(const struct kb_htab *t, const void *key, size_t len, uint64_t h)
{
	size_t i, mask = t->cap - 1;

	if (t->cap == 0)
		return NULL;
	for (i = h & mask; t->slots[i].key; i = (i + 1) & mask)
		if (t->slots[i].hash == h && t->slots[i].len == len &&
		    memcmp(t->slots[i].key, key, len) == 0)
			return &t->slots[i];
	return NULL;
}

static void
place(struct kb_hslot *slots, size_t cap, const struct kb_hslot *s)
{
	size_t i, mask = cap - 1;

	for (i = s->hash & mask; slots[i].key; i = (i + 1) & mask)
		;
	slots[i] = *s;
}

static int
grow(struct kb_htab *t)
{
	size_t cap = t->cap ? t->cap * 2 : MIN_CAP, i;
	struct kb_hslot *s;

	if (cap < t->cap || cap > SIZE_MAX / sizeof(*s))
		return -1;
	if ((s = calloc(cap, sizeof(*s))) == NULL)
		return -1;
	for (i = 0; i < t->cap; i++)
		if (t->slots[i].key)
			place(s, cap, &t->slots[i]);
	free(t->slots);
	t->slots = s;
	t->cap = cap;
	return 0;
}

int
kb_htab_put(struct kb_htab *t, const void *key, size_t len, void *val)
{
	struct kb_hslot s = { .key = key, .len = len, .val = val };

	s.hash = kb_htab_hash(key, len);
	if (find(t, key, len, s.hash)) {
		errno = EEXIST;
		return -1;
	}
	if ((t->n + 1) * 2 > t->cap && grow(t) < 0) {
		errno = ENOMEM;
		return -1;
	}
	place(t->slots, t->cap, &s);
	t->n++;
	return 0;
}

void *
kb_htab_get(const struct kb_htab *t, const void *key, size_t len)
{
	struct kb_hslot *s = find(t, key, len, kb_htab_hash(key, len));

	return s ? s->val : NULL;
}

void *
kb_htab_del(struct kb_htab *t, const void *key, size_t len)
{
	struct kb_hslot *s = find(t, key, len, kb_htab_hash(key, len));
	size_t i, j, home, mask = t->cap - 1;
	void *val;

	if (!s)
		return NULL;
	val = s->val;
	/* Shift back the entries after it whose probe passed over its slot. */
	i = (size_t)(s - t->slots);
	for (j = (i + 1) & mask; t->slots[j].key; j = (j + 1) & mask) {
		home = t->slots[j].hash & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	memset(&t->slots[i], 0, sizeof(t->slots[i]));
	t->n--;
	return val;
}

void
kb_htab_clear(struct kb_htab *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = t->n = 0;
}
