#ifndef XREP_COMMANDS_H
#define XREP_COMMANDS_H

struct client_command_context;
struct xrep_snapshot;

/* XREPLICATE WATCH: report changes since pos (given as token), then stream
   new ones until the client sends DONE.  Takes ownership of pos.  Returns
   like a command func. */
bool xrep_cmd_watch(struct client_command_context *cmd,
		    struct xrep_snapshot *pos, const char *token);

#endif
