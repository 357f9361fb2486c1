/* The sidecar: in a workload's pod, in front of the app. */
#ifndef KB_SIDECAR_H
#define KB_SIDECAR_H

/* kbridge-agent sidecar --profile FILE --workload NAME --namespace NS
 *     --listen HOST:PORT --app HOST:PORT [--protocol http|tcp] */
int cmd_sidecar(int argc, char **argv);

#endif
