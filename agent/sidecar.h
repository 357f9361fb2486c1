/* The sidecar: in a workload's pod, in front of the app.
 *
 * State. cmd_sidecar() allocates one struct sidecar (private to
 * sidecar.c) for the run, owns it and frees it after the event loop and
 * everything made from it are gone; every callback (listener, session,
 * link, timers, signals, the HTTP proxy's upstreams, streams, dials,
 * joins) gets it, or something that points to it, through its arg
 * pointer. sidecar.c has no other mutable state at file scope. A client
 * connection's record (struct sc_client: its place among its address's
 * connections, --max-per-address) belongs to whoever holds the connection
 * (the dial to the app, the join, a whole-TCP intercept's stream, the HTTP
 * proxy) and goes when that closes it; a stream's record (struct
 * sc_stream) goes with the stream.
 *
 * Threads. Everything runs on the event loop's thread, except the
 * certificate renewal (--enroll; sidecar_enroll.h's sc_renewal_start, at
 * 2/3 of the certificate's lifetime or every --renew-after seconds):
 *   - On its own thread it runs sidecar_enroll() and nothing else: a new
 *     key, the token file read, a blocking TCP connect and TLS handshake
 *     with a TLS context of its own, one HTTPS POST, the answer parsed
 *     into a kb_profile of its own. It logs nothing (errors go into its
 *     result), takes no lock and calls no libevent function.
 *   - It shares with the loop only the strings it was started with
 *     (--enroll, --token, $KBRIDGE_CA, the manager's address): borrowed
 *     from struct sidecar, read by both, written by neither while it
 *     runs, freed only after sc_renewal_free() has joined the thread.
 *   - The hand-over: the thread fills its result (rc, profile, workload,
 *     expiry, error) in its struct sc_renewal, then writes one byte to a
 *     pipe; the loop's event on that pipe calls pthread_join() (which
 *     orders the thread's writes before the loop's reads) and only then
 *     gives the result to renewed(), on the loop's thread. The new TLS
 *     context is made there and swapped in for the next dials; the
 *     session up now keeps its own (SSL objects hold a reference). One
 *     renewal at a time; sc_renewal_free() joins the thread (at most
 *     SC_ENROLL_TIMEOUT_MS) before the strings go at teardown.
 *   - proto/sendmany.c's per-thread (__thread) io_uring ring is not used
 *     there: only the loop's thread sends through kb_sendmany (the HTTP
 *     proxy's writes, batch.c), so only it has a ring, which hp_fini() frees. The
 *     renewal thread's sends are plain SSL_write()s on its own socket.
 *   - SIGPIPE is ignored for the whole process before the thread starts;
 *     SIGTERM and SIGINT may land on either thread: libevent's handler
 *     only writes to its socketpair, and the loop exits. */
#ifndef KB_SIDECAR_H
#define KB_SIDECAR_H

/* kbridge-agent sidecar --profile FILE --workload NAME --namespace NS
 *     --listen HOST:PORT --app HOST:PORT [--protocol http|tcp]
 * The exit status: 0, 1 (setup failed: one line on stderr), 2 (usage). */
int cmd_sidecar(int argc, char **argv);

#endif
