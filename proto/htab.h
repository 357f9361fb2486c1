/* A hash index: byte-string keys to pointers, for lookups whose cost must
 * not grow with the number of entries (a manager's intercepts, workloads
 * and previews, looked up per request). Open addressing with linear
 * probing and backward-shift deletion (no tombstones); the hash is keyed
 * with a random seed per process, so a peer cannot choose keys that
 * collide. The table borrows its keys: they are the value's own bytes and
 * must stay unchanged while it is in the table. */
#ifndef KB_HTAB_H
#define KB_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct kb_hslot;

/* Zero-initialized is an empty table (it allocates on first insert). */
struct kb_htab {
	struct kb_hslot *slots;
	size_t cap;	/* a power of two, or 0 */
	size_t n;
};

/* Add key -> val: 0, or -1 (errno EEXIST: the key is there already;
 * ENOMEM: out of memory, the table is unchanged). val must not be NULL. */
int kb_htab_put(struct kb_htab *t, const void *key, size_t len, void *val);
/* The value of key, or NULL. */
void *kb_htab_get(const struct kb_htab *t, const void *key, size_t len);
/* Remove key: its value, or NULL if it was not there. */
void *kb_htab_del(struct kb_htab *t, const void *key, size_t len);
/* Free the slots (not the values); the table is empty again. */
void kb_htab_clear(struct kb_htab *t);
/* The seeded hash of the table (for tests). */
uint64_t kb_htab_hash(const void *key, size_t len);

#endif
