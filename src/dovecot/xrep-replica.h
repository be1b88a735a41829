#ifndef XREP_REPLICA_H
#define XREP_REPLICA_H

/* Replica mode: XREPLICATE CREATE, RESET, RAISE and UIDS
   (man/twinbox-xreplicate.7), which let a client give a mailbox the
   UIDVALIDITY, mailbox GUID, UIDs and HIGHESTMODSEQ another server has.

   UIDS leaves a list of UIDs in the session (one list per mail_user); the
   storage hooks installed by xrep_replica_init() give them, one each, to the
   messages the session then APPENDs to that mailbox. Committed APPENDs use up
   their UIDs; a failed or rolled back APPEND gives them back. */

#define XREP_REPLICA_CAPABILITY "X-REPLICATE-REPLICA"

struct module;
struct client_command_context;
struct imap_arg;

void xrep_replica_init(struct module *module);
void xrep_replica_deinit(void);

/* TRUE when sub names one of the replica subcommands (case-insensitive). */
bool xrep_replica_is_subcommand(const char *sub);

/* Runs replica subcommand sub with its arguments (args[0] is the first
   argument after the subcommand) and sends the tagged reply. Returns TRUE,
   like a command func that has finished. */
bool xrep_cmd_replica(struct client_command_context *cmd, const char *sub,
		      const struct imap_arg *args);

#endif
