/* Virtual addresses for kept-local cluster addresses (see vnat.h): a
 * table of mappings made in order, virtual address = the range's first
 * address + 1 + the mapping's index, and an open-addressed index by real
 * address. Nothing is ever removed, so a virtual address names one real
 * address for the table's whole life. */
#include "vnat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netplan.h"

struct vnat_entry {
	uint32_t real;
	char *name;		/* NULL: none */
};

struct kb_vnat {
	struct kb_cidr sub;
	struct kb_cidr kept[KB_VNAT_RANGES];
	size_t nkept;
	struct vnat_entry *e;	/* cap of them */
	size_t n, cap;
	uint32_t *slot;		/* index + 1 by hash of real; 0 empty */
	size_t nslot;		/* a power of two, at least 2 * cap */
};

int
kb_vnat_kept(const struct kb_cidr *in, size_t nin, const struct kb_cidr *never,
    size_t nnever, struct kb_cidr *out, size_t max)
{
	struct kb_cidr c;
	size_t i, j, k, n = 0;

	for (i = 0; i < nin; i++) {
		for (j = 0; j < nnever; j++) {
			if (kb_cidr_covers(&in[i], &never[j]))
				c = never[j];
			else if (kb_cidr_covers(&never[j], &in[i]))
				c = in[i];
			else
				continue;
			for (k = 0; k < n; k++)
				if (kb_cidr_covers(&out[k], &c))
					break;
			if (k < n)
				continue;
			/* c may hold ranges kept before: they go. */
			for (k = 0; k < n;) {
				if (kb_cidr_covers(&c, &out[k]))
					out[k] = out[--n];
				else
					k++;
			}
			if (n >= max)
				return -1;
			out[n++] = c;
		}
	}
	qsort(out, n, sizeof(*out), kb_cidr_cmp);
	return (int)n;
}

int
kb_vnat_pick(const struct kb_cidr *busy, size_t nbusy, struct kb_cidr *out)
{
	struct kb_cidr c;
	uint32_t i, blocks = 1u << (KB_VNAT_AUTO_PREFIX - KB_VNAT_POOL_PREFIX);
	size_t j;

	for (i = 0; i < blocks; i++) {
		c.addr = KB_VNAT_POOL + (i << (32 - KB_VNAT_AUTO_PREFIX));
		c.prefix = KB_VNAT_AUTO_PREFIX;
		for (j = 0; j < nbusy; j++)
			if (busy[j].prefix > 0 && kb_cidr_overlap(&c, &busy[j]))
				break;
		if (j == nbusy) {
			*out = c;
			return 0;
		}
	}
	return -1;
}

static size_t
vnat_hash(uint32_t a, size_t nslot)
{
	a ^= a >> 16;
	a *= 0x7feb352du;
	a ^= a >> 15;
	a *= 0x846ca68bu;
	a ^= a >> 16;
	return a & (nslot - 1);
}

struct kb_vnat *
kb_vnat_new(const struct kb_cidr *sub, const struct kb_cidr *kept, size_t nkept)
{
	struct kb_vnat *v;
	uint64_t size;

	if (sub->prefix < 8 || sub->prefix > 30 ||
	    (sub->addr & ~(0xffffffffu << (32 - sub->prefix))) != 0)
		return NULL;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return NULL;
	v->sub = *sub;
	size = (uint64_t)1 << (32 - sub->prefix);
	v->cap = size - 2 < KB_VNAT_MAX ? (size_t)(size - 2) : KB_VNAT_MAX;
	for (v->nslot = 8; v->nslot < 2 * v->cap; v->nslot *= 2)
		;
	if ((v->e = calloc(v->cap, sizeof(*v->e))) == NULL ||
	    (v->slot = calloc(v->nslot, sizeof(*v->slot))) == NULL ||
	    kb_vnat_set_kept(v, kept, nkept) < 0) {
		kb_vnat_free(v);
		return NULL;
	}
	return v;
}

void
kb_vnat_free(struct kb_vnat *v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < v->n; i++)
		free(v->e[i].name);
	free(v->e);
	free(v->slot);
	free(v);
}

int
kb_vnat_set_kept(struct kb_vnat *v, const struct kb_cidr *kept, size_t nkept)
{
	if (nkept > KB_VNAT_RANGES)
		return -1;
	memcpy(v->kept, kept, nkept * sizeof(*kept));
	v->nkept = nkept;
	return 0;
}

const struct kb_cidr *
kb_vnat_subnet(const struct kb_vnat *v)
{
	return &v->sub;
}

const struct kb_cidr *
kb_vnat_kept_ranges(const struct kb_vnat *v, size_t *n)
{
	*n = v->nkept;
	return v->kept;
}

int
kb_vnat_translates(const struct kb_vnat *v, uint32_t real)
{
	size_t i;

	for (i = 0; i < v->nkept; i++)
		if (kb_cidr_contains(&v->kept[i], real))
			return 1;
	return 0;
}

/* The slot of real: its entry's, or the empty one where it would go. */
static size_t
vnat_find(const struct kb_vnat *v, uint32_t real)
{
	size_t h = vnat_hash(real, v->nslot);

	while (v->slot[h] != 0 && v->e[v->slot[h] - 1].real != real)
		h = (h + 1) & (v->nslot - 1);
	return h;
}

int
kb_vnat_map(struct kb_vnat *v, uint32_t real, const char *name, uint32_t *virt)
{
	struct vnat_entry *e;
	size_t h;

	if (!kb_vnat_translates(v, real))
		return -1;
	h = vnat_find(v, real);
	if (v->slot[h] == 0) {
		if (v->n >= v->cap)
			return -1;
		e = &v->e[v->n];
		e->real = real;
		e->name = NULL;
		v->slot[h] = (uint32_t)++v->n;
	}
	e = &v->e[v->slot[h] - 1];
	if (e->name == NULL && name != NULL && *name != '\0' &&
	    strlen(name) < KB_VNAT_NAME_MAX)
		e->name = strdup(name);	/* out of memory: no name, still mapped */
	*virt = v->sub.addr + v->slot[h];
	return 0;
}

/* The index of virt's entry, or -1. */
static long
vnat_index(const struct kb_vnat *v, uint32_t virt)
{
	uint32_t off;

	if (!kb_cidr_contains(&v->sub, virt))
		return -1;
	off = virt - v->sub.addr;
	if (off == 0 || off > v->n)
		return -1;
	return (long)off - 1;
}

int
kb_vnat_real(const struct kb_vnat *v, uint32_t virt, uint32_t *real)
{
	long i = vnat_index(v, virt);

	if (i < 0)
		return -1;
	*real = v->e[i].real;
	return 0;
}

const char *
kb_vnat_name(const struct kb_vnat *v, uint32_t virt)
{
	long i = vnat_index(v, virt);

	return i < 0 ? NULL : v->e[i].name;
}

size_t
kb_vnat_count(const struct kb_vnat *v)
{
	return v->n;
}

size_t
kb_vnat_cap(const struct kb_vnat *v)
{
	return v->cap;
}

int
kb_vnat_get(const struct kb_vnat *v, size_t i, uint32_t *virt, uint32_t *real,
    const char **name)
{
	if (i >= v->n)
		return -1;
	*virt = v->sub.addr + 1 + (uint32_t)i;
	*real = v->e[i].real;
	*name = v->e[i].name;
	return 0;
}

int
kb_vnat_ptr_addr(const char *name, uint32_t *addr)
{
	unsigned long b[4];
	const char *p = name;
	char *end;
	int i;

	for (i = 0; i < 4; i++) {
		/* decimal octets, no sign, no leading zero but "0" itself */
		if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
			return -1;
		b[i] = strtoul(p, &end, 10);
		if (b[i] > 255 || end - p > 3 || *end != '.')
			return -1;
		p = end + 1;
	}
	if (strcmp(p, "in-addr.arpa") != 0)
		return -1;
	*addr = (uint32_t)(b[3] << 24 | b[2] << 16 | b[1] << 8 | b[0]);
	return 0;
}

int
kb_vnat_user_subnet(const char *s, struct kb_cidr *out, char *err, size_t errlen)
{
	if (strcmp(s, "off") == 0)
		return 1;
	if (kb_netplan_user_cidr(s, out, err, errlen) < 0)
		return -1;
	if (out->prefix < 8 || out->prefix > 30) {
		snprintf(err, errlen, "virtual subnet %s: from /8 to /30", s);
		return -1;
	}
	return 0;
}
