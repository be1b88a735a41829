/* X-REPLICATE: IMAP command and capability (man/twinbox-xreplicate.7).

   Loaded into the imap process only (mail_plugins in protocol imap).  It
   hooks nothing on the mail path: ordinary clients pay nothing; all work is
   done inside the XREPLICATE command, from Dovecot's own transaction logs and
   mailbox list index, so changes made by processes that never load this
   plugin (lda, lmtp, doveadm, dsync) are seen as well. */

#include "imap-common.h"
#include "imap-commands.h"
#include "mail-user.h"
#include "module-context.h"
#include "xrep-commands.h"
#include "xrep-position.h"
#include "xrep-replica.h"
#include "xrep-report.h"

#define XREP_CAPABILITY "X-REPLICATE"

const char *imap_xreplicate_plugin_version = DOVECOT_ABI_VERSION;
/* The plugin runs inside the imap binary only. */
const char imap_xreplicate_plugin_binary_dependency[] = "imap";

void imap_xreplicate_plugin_init(struct module *module);
void imap_xreplicate_plugin_deinit(void);

static struct module *imap_xreplicate_module;
static imap_client_created_func_t *next_hook_client_created;

struct cmd_xreplicate_context {
	struct xrep_report *rep;
};

static void cmd_xreplicate_free(struct cmd_xreplicate_context *ctx)
{
	if (ctx->rep != NULL)
		xrep_report_deinit(&ctx->rep);
}

static bool cmd_xreplicate_continue(struct client_command_context *cmd)
{
	struct cmd_xreplicate_context *ctx = cmd->context;
	struct xrep_snapshot *result;
	const char *error;
	int ret;

	if (cmd->cancel) {
		cmd_xreplicate_free(ctx);
		return TRUE;
	}
	ret = xrep_report_more(ctx->rep, &error);
	if (ret == 0)
		return FALSE;
	if (ret < 0 && xrep_report_toobig(ctx->rep)) {
		/* not an error of the server: the client falls back */
		client_send_tagline(cmd, t_strconcat("NO [XREPLICATE-TOOBIG] ",
						     error, NULL));
	} else if (ret < 0) {
		e_error(cmd->client->event, "xreplicate: %s", error);
		client_send_internal_error(cmd);
	} else {
		result = xrep_report_take_result(ctx->rep);
		xrep_snapshot_free(&result);
		client_send_tagline(cmd, "OK XREPLICATE completed.");
	}
	cmd_xreplicate_free(ctx);
	return TRUE;
}

static bool cmd_xreplicate_report(struct client_command_context *cmd,
				  struct xrep_snapshot *old, const char *token)
{
	struct cmd_xreplicate_context *ctx;

	ctx = p_new(cmd->pool, struct cmd_xreplicate_context, 1);
	ctx->rep = xrep_report_init(cmd->client, old, XREP_REPORT_ALL_STATUS);
	if (token != NULL)
		xrep_report_set_prev_position(ctx->rep, token);
	cmd->context = ctx;
	if (cmd_xreplicate_continue(cmd))
		return TRUE;
	cmd->state = CLIENT_COMMAND_STATE_WAIT_OUTPUT;
	cmd->func = cmd_xreplicate_continue;
	return FALSE;
}

/* Returns the decoded position, or NULL after sending the tagged error. */
static struct xrep_snapshot *
cmd_xreplicate_token(struct client_command_context *cmd, const char *text)
{
	struct xrep_position_settings set;
	struct xrep_snapshot *snap;
	const char *reason;

	xrep_position_settings_read(cmd->client, &set);
	switch (xrep_position_parse(cmd->client->user, &set, text, &snap,
				    &reason)) {
	case XREP_TOKEN_OK:
		return snap;
	case XREP_TOKEN_INTERNAL:
		e_error(cmd->client->event, "xreplicate: %s", reason);
		client_send_internal_error(cmd);
		return NULL;
	case XREP_TOKEN_MALFORMED:
		/* not client_send_command_error(): its "Error in IMAP
		   command" prefix would hide the response code */
		client_send_tagline(cmd,
				    t_strconcat("BAD [XREPLICATE-BADTOKEN] ",
						reason, NULL));
		return NULL;
	case XREP_TOKEN_FOREIGN:
		break;
	}
	client_send_tagline(
		cmd, t_strconcat("NO [XREPLICATE-BADTOKEN] ", reason, NULL));
	return NULL;
}

/* XREPLICATE POSITION | CHANGES <token> | WATCH <token> |
   CREATE / RESET / RAISE / UIDS (xrep-replica.c) */
static bool cmd_xreplicate(struct client_command_context *cmd)
{
	const struct imap_arg *args;
	const char *sub, *token;
	struct xrep_snapshot *old;
	bool watch;

	if (!client_read_args(cmd, 0, 0, &args))
		return FALSE;

	if (!mail_user_is_plugin_loaded(cmd->client->user,
					imap_xreplicate_module)) {
		client_send_command_error(cmd, "Unknown command.");
		return TRUE;
	}
	if (!imap_arg_get_atom(&args[0], &sub)) {
		client_send_command_error(
			cmd, "Expected subcommand POSITION, CHANGES, WATCH, "
			     "CREATE, RESET, RAISE or UIDS.");
		return TRUE;
	}
	if (xrep_replica_is_subcommand(sub))
		return xrep_cmd_replica(cmd, sub, &args[1]);
	if (strcasecmp(sub, "POSITION") == 0) {
		if (!IMAP_ARG_IS_EOL(&args[1])) {
			client_send_command_error(
				cmd, "POSITION takes no arguments.");
			return TRUE;
		}
		return cmd_xreplicate_report(cmd, NULL, NULL);
	}
	if (strcasecmp(sub, "CHANGES") == 0)
		watch = FALSE;
	else if (strcasecmp(sub, "WATCH") == 0)
		watch = TRUE;
	else {
		client_send_command_error(cmd,
					  "Unknown XREPLICATE subcommand.");
		return TRUE;
	}
	if (IMAP_ARG_IS_EOL(&args[1]) ||
	    !imap_arg_get_astring(&args[1], &token)) {
		client_send_command_error(
			cmd, "Expected a position token (atom or string).");
		return TRUE;
	}
	if (!IMAP_ARG_IS_EOL(&args[2])) {
		client_send_command_error(
			cmd,
			"Too many arguments: expected one position token.");
		return TRUE;
	}
	if ((old = cmd_xreplicate_token(cmd, token)) == NULL)
		return TRUE;
	return watch ? xrep_cmd_watch(cmd, old, token)
		     : cmd_xreplicate_report(cmd, old, token);
}

static void imap_xreplicate_client_created(struct client **client)
{
	if (mail_user_is_plugin_loaded((*client)->user,
				       imap_xreplicate_module)) {
		client_add_capability(*client, XREP_CAPABILITY);
		client_add_capability(*client, XREP_REPLICA_CAPABILITY);
	}
	if (next_hook_client_created != NULL)
		next_hook_client_created(client);
}

void imap_xreplicate_plugin_init(struct module *module)
{
	/* BREAKS_SEQS: Dovecot then waits for pipelined commands that use
	   sequence numbers to finish first, so our output (and WATCH's hold
	   on the input) never interleaves with a running FETCH or STORE. */
	command_register("XREPLICATE", cmd_xreplicate,
			 COMMAND_FLAG_BREAKS_SEQS);
	imap_xreplicate_module = module;
	xrep_replica_init(module);
	next_hook_client_created =
		imap_client_created_hook_set(imap_xreplicate_client_created);
}

void imap_xreplicate_plugin_deinit(void)
{
	command_unregister("XREPLICATE");
	xrep_replica_deinit();
	imap_client_created_hook_set(next_hook_client_created);
}
