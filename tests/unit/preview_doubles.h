/* Test doubles for what agent/preview.c uses of the rest of the manager,
 * shared by tests/unit/test_preview.c and tests/fuzz/fuzz_http.c: the
 * intercept registry knows one intercept, "icpt1", whose owner has it when
 * owned is set and whose workstation is connected when state is 1. Include
 * after agent/preview.c. */
#ifndef KB_PREVIEW_DOUBLES_H
#define KB_PREVIEW_DOUBLES_H

static int owned = 1, state = 1;
static const char *icpt_id = "icpt1"; /* the intercept the registry knows, alice's */

int
icpt_owned(struct icpt_reg *r, const char *owner, const char *wl, const char *ns, char *id,
    size_t idlen, int *http)
{
	(void)r;
	(void)owner;
	(void)wl;
	(void)ns;
	snprintf(id, idlen, "%s", icpt_id);
	*http = 1;
	return owned ? 0 : -1;
}

int
icpt_state(struct icpt_reg *r, const char *id, const char *owner)
{
	(void)r;
	return strcmp(id, icpt_id) || strcmp(owner, "alice") ? -1 : state;
}

/* No in-cluster store (agent/store.c): a change always fits. */
int
store_changed(char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return 0;
}

void
client_unref(struct client *c)
{
	c->refs--;
}

#endif
