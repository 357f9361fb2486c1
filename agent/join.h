/* Two connected sockets joined: bytes flow both ways, a half-close on one
 * side reaches the other, an error resets both. Frees itself when done. */
#ifndef KB_JOIN_H
#define KB_JOIN_H

struct event_base;

/* Take ownership of the non-blocking sockets a and b. done (may be NULL)
 * is called with arg once both are closed, when the join ends. -1 if out
 * of memory (both are closed then, and done is not called). */
int join_start(struct event_base *base, int a, int b, void (*done)(void *), void *arg);

#endif
