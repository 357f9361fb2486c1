/* Cluster identities: the CA, the manager certificate, client profiles. */
#ifndef KB_IDENTITY_H
#define KB_IDENTITY_H

/* kbridge-agent init --state-dir DIR --address HOST:PORT [--force] */
int cmd_init(int argc, char **argv);
/* kbridge-agent issue --state-dir DIR --name NAME --out FILE [--sidecar] */
int cmd_issue(int argc, char **argv);

/* Files in the state directory. */
#define KB_STATE_CA_CERT "ca.crt"
#define KB_STATE_CA_KEY "ca.key"
#define KB_STATE_MGR_CERT "manager.crt"
#define KB_STATE_MGR_KEY "manager.key"
#define KB_STATE_CONFIG "config.json" /* {"address":"HOST:PORT"} */

#endif
