/* The manager: accepts daemon sessions, dials cluster addresses for them and
 * resolves cluster names. */
#ifndef KB_MANAGER_H
#define KB_MANAGER_H

/* kbridge-agent manager --state-dir DIR --listen HOST:PORT --subnet CIDR...
 *     --namespace NAME... [--cluster-domain D] [--dns IP[:PORT]] */
int cmd_manager(int argc, char **argv);

#endif
