/* proto/htab.c, the manager's hash index (intercepts by id, workloads by
 * name, previews by token and key): insert, lookup, delete, growth,
 * clustering of colliding probes, and a long random run against a plain
 * array as the model. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "htab.h"
#include "ok.h"

#define NKEYS 5000

static char keys[NKEYS][16];
static int in[NKEYS];

static int
model_agrees(struct kb_htab *t)
{
	size_t i, n = 0;

	for (i = 0; i < NKEYS; i++) {
		void *v = kb_htab_get(t, keys[i], strlen(keys[i]));

		if (in[i] ? v != &keys[i] : v != NULL)
			return 0;
		n += in[i];
	}
	return n == t->n;
}

int
main(void)
{
	struct kb_htab t = { 0 }, small = { 0 };
	char a[] = "ab", b[] = "abc", z1[] = { 'x', 0, 'y' }, z2[] = { 'x', 0, 'z' };
	size_t i, k, n, same[5];
	int v1, v2, v3, good = 1;
	unsigned r = 12345;

	/* Empty table. */
	ok(kb_htab_get(&t, "x", 1) == NULL);
	ok(kb_htab_del(&t, "x", 1) == NULL);
	ok(t.n == 0 && t.cap == 0);

	/* Keys are bytes with a length: prefixes and embedded zeros differ. */
	ok(kb_htab_put(&t, a, 2, &v1) == 0);
	ok(kb_htab_put(&t, b, 3, &v2) == 0);
	ok(kb_htab_put(&t, z1, 3, &v3) == 0);
	ok(kb_htab_get(&t, "ab", 2) == &v1);
	ok(kb_htab_get(&t, "abc", 3) == &v2);
	ok(kb_htab_get(&t, "a", 1) == NULL);
	ok(kb_htab_get(&t, z1, 3) == &v3);
	ok(kb_htab_get(&t, z2, 3) == NULL);
	/* A second value for a key is refused, the first stays. */
	errno = 0;
	ok(kb_htab_put(&t, "ab", 2, &v2) == -1 && errno == EEXIST);
	ok(kb_htab_get(&t, a, 2) == &v1 && t.n == 3);
	ok(kb_htab_del(&t, "abc", 3) == &v2);
	ok(kb_htab_get(&t, "abc", 3) == NULL && kb_htab_get(&t, a, 2) == &v1 && t.n == 2);
	ok(kb_htab_del(&t, "abc", 3) == NULL);
	kb_htab_clear(&t);
	ok(t.n == 0 && t.cap == 0 && kb_htab_get(&t, a, 2) == NULL);

	/* Growth: thousands of keys, load factor at most 1/2, all found. */
	for (i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof(keys[i]), "key-%zu", i);
	for (i = 0; i < NKEYS; i++) {
		good &= kb_htab_put(&t, keys[i], strlen(keys[i]), &keys[i]) == 0;
		in[i] = 1;
	}
	ok(good);
	ok(t.n == NKEYS && t.cap >= 2 * NKEYS && (t.cap & (t.cap - 1)) == 0);
	ok(model_agrees(&t));

	/* Collisions: in a 16-slot table, keys of the same home slot probe
	 * on; deleting from the middle of a cluster keeps the rest found. */
	for (i = 0; i < 8; i++)
		good &= kb_htab_put(&small, keys[i], strlen(keys[i]), &keys[i]) == 0;
	ok(good && small.cap == 16);
	/* Five keys of one home slot (hash & 15): a chain of probes that
	 * deletion at its head, middle and end must keep intact. */
	for (i = 100, n = 0; i < NKEYS && n < 5; i++)
		if ((kb_htab_hash(keys[i], strlen(keys[i])) & 15) ==
		    (kb_htab_hash(keys[100], strlen(keys[100])) & 15))
			same[n++] = i;
	ok(n == 5);
	{
		struct kb_htab c = { 0 };

		for (k = 0; k < n; k++)
			good &= kb_htab_put(&c, keys[same[k]], strlen(keys[same[k]]), &keys[same[k]]) == 0;
		good &= c.cap == 16;
		good &= kb_htab_del(&c, keys[same[2]], strlen(keys[same[2]])) == &keys[same[2]];
		good &= kb_htab_del(&c, keys[same[0]], strlen(keys[same[0]])) == &keys[same[0]];
		good &= kb_htab_del(&c, keys[same[4]], strlen(keys[same[4]])) == &keys[same[4]];
		for (k = 0; k < n; k++)
			good &= kb_htab_get(&c, keys[same[k]], strlen(keys[same[k]])) ==
			    (k == 1 || k == 3 ? &keys[same[k]] : NULL);
		ok(good && c.n == 2);
		kb_htab_clear(&c);
	}
	for (i = 0; i < 8; i += 2)
		good &= kb_htab_del(&small, keys[i], strlen(keys[i])) == &keys[i];
	for (i = 0; i < 8; i++)
		good &= kb_htab_get(&small, keys[i], strlen(keys[i])) == (i % 2 ? &keys[i] : NULL);
	ok(good && small.n == 4);
	/* Filled to the load limit over and over with the same slots. */
	for (k = 0; k < 200; k++) {
		for (i = 8 + k % 7; i < 16 + k % 7; i++)
			if (kb_htab_get(&small, keys[i], strlen(keys[i])) == NULL)
				good &= kb_htab_put(&small, keys[i], strlen(keys[i]), &keys[i]) == 0;
		for (i = 8 + k % 7; i < 16 + k % 7; i++)
			good &= kb_htab_del(&small, keys[i], strlen(keys[i])) == &keys[i];
	}
	for (i = 0; i < 8; i++)
		good &= kb_htab_get(&small, keys[i], strlen(keys[i])) == (i % 2 ? &keys[i] : NULL);
	ok(good && small.n == 4);
	kb_htab_clear(&small);

	/* A long random run of puts and deletes against the model. */
	for (k = 0; k < 200000; k++) {
		r = r * 1103515245 + 12345;
		i = (r >> 8) % NKEYS;
		if (in[i]) {
			good &= kb_htab_del(&t, keys[i], strlen(keys[i])) == &keys[i];
			in[i] = 0;
		} else {
			good &= kb_htab_put(&t, keys[i], strlen(keys[i]), &keys[i]) == 0;
			in[i] = 1;
		}
		if (k % 20000 == 0)
			good &= model_agrees(&t);
	}
	ok(good);
	ok(model_agrees(&t));
	/* Everything out: the table is empty, nothing is found. */
	for (i = 0; i < NKEYS; i++)
		if (in[i]) {
			good &= kb_htab_del(&t, keys[i], strlen(keys[i])) == &keys[i];
			in[i] = 0;
		}
	ok(good && t.n == 0 && model_agrees(&t));
	kb_htab_clear(&t);
	return ok_done();
}
