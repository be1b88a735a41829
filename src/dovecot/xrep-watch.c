/* XREPLICATE WATCH: the streaming form, modelled on IDLE (cmd-idle.c).

   Life cycle:
     1. the initial batch (like CHANGES) ends with POSITION, then "+ watching";
     2. on every wake-up a batch of what changed since the last POSITION is
	sent, ending with a new POSITION (nothing at all if nothing changed);
     3. the client's DONE ends the command with a tagged OK.
   Wake-ups come from Dovecot's mailbox-list notifier (inotify on the mailbox
   list index log and on INBOX's index log, which every Dovecot process using
   the list index writes on commit), plus a poll timer as the backstop for
   writers it cannot see; a poll costs one listing of cached status.
   A batch is never interrupted by input: DONE that arrives meanwhile is read
   after the batch, so every batch ends with its POSITION. */

#include "imap-common.h"
#include "istream.h"
#include "ostream.h"
#include "imap-commands.h"
#include "mail-namespace.h"
#include "mailbox-list-notify.h"
#include "xrep-commands.h"
#include "xrep-report.h"

/* Backstop poll for changes the notifier cannot see (NFS, writers without
   the list index).  Cheap: it reads cached status only. */
#define XREP_WATCH_POLL_MSECS (10 * 1000)
/* Keepalive, in case imap_idle_notify_interval is 0. */
#define XREP_WATCH_KEEPALIVE_MSECS (2 * 60 * 1000)

struct xrep_watch {
	struct client_command_context *cmd;
	struct client *client;

	struct xrep_snapshot *pos; /* what the last POSITION stands for */
	struct xrep_report *rep;   /* running batch, or NULL */
	ARRAY(struct mailbox_list_notify *) notifies;
	struct timeout *to_poll, *to_keepalive;
	/* A later batch could not hand out a position (TOOBIG): the command
	   ends with this tagged line, from a timeout, because the batch may
	   run inside a notify callback that must not be deinitialized from
	   within. */
	struct timeout *to_refuse;
	const char *refusal;

	bool watching : 1;     /* "+ watching" sent */
	bool wake_pending : 1; /* woken while a batch ran */
	bool manual_cork : 1;  /* running from a callback, not command_exec */
};

static bool watch_continue(struct client_command_context *cmd);

static void watch_cleanup(struct xrep_watch *ctx)
{
	struct mailbox_list_notify **notify;

	if (array_is_created(&ctx->notifies)) {
		array_foreach_modifiable(&ctx->notifies, notify)
			mailbox_list_notify_deinit(notify);
		array_free(&ctx->notifies);
	}
	timeout_remove(&ctx->to_poll);
	timeout_remove(&ctx->to_keepalive);
	timeout_remove(&ctx->to_refuse);
	if (ctx->rep != NULL)
		xrep_report_deinit(&ctx->rep);
	xrep_snapshot_free(&ctx->pos);
}

static void watch_finish_with(struct xrep_watch *ctx, const char *tagline,
			      bool free_cmd)
{
	struct client *client = ctx->client;

	watch_cleanup(ctx);
	o_stream_cork(client->output);
	io_remove(&client->io);
	client_send_tagline(ctx->cmd, tagline);
	o_stream_uncork(client->output);
	if (client->input_lock == ctx->cmd)
		client->input_lock = NULL;
	if (free_cmd)
		client_command_free(&ctx->cmd);
}

static void watch_finish(struct xrep_watch *ctx, bool done_ok, bool free_cmd)
{
	watch_finish_with(ctx,
			  done_ok ? "OK XREPLICATE WATCH completed."
				  : "BAD Expected DONE.",
			  free_cmd);
}

/* Consume buffered input lines.  Returns TRUE if the command finished. */
static bool watch_handle_input(struct xrep_watch *ctx, bool free_cmd)
{
	const char *line;

	while ((line = i_stream_next_line(ctx->client->input)) != NULL) {
		if (ctx->client->input_skip_line) {
			/* the rest of the WATCH command line itself */
			ctx->client->input_skip_line = FALSE;
			continue;
		}
		watch_finish(ctx, strcasecmp(line, "DONE") == 0, free_cmd);
		return TRUE;
	}
	return FALSE;
}

static void watch_input(struct xrep_watch *ctx)
{
	struct client *client = ctx->client;
	bool finished = FALSE;

	client->last_input = ioloop_time;
	timeout_reset(client->to_idle);

	switch (i_stream_read(client->input)) {
	case -1:
		client_disconnect(client, NULL);
		finished = TRUE;
		break;
	case -2:
		/* a line longer than the input buffer: not DONE */
		client->input_skip_line = TRUE;
		watch_finish(ctx, FALSE, TRUE);
		finished = TRUE;
		break;
	default:
		/* during a batch, lines wait in the buffer (see header);
		   after a refusal the tagged NO answers whatever came */
		if (ctx->rep == NULL && ctx->watching &&
		    ctx->refusal == NULL)
			finished = watch_handle_input(ctx, TRUE);
		break;
	}
	if (finished)
		client_continue_pending_input(client);
}

static void watch_start_batch(struct xrep_watch *ctx)
{
	i_assert(ctx->rep == NULL);
	ctx->wake_pending = FALSE;
	ctx->rep = xrep_report_init(ctx->client, xrep_snapshot_dup(ctx->pos),
				    XREP_REPORT_SKIP_EMPTY);
}

/* Called by the notifier, the poll timer, or both; batches coalesce. */
static void watch_wake(struct xrep_watch *ctx)
{
	struct client *client = ctx->client;

	if (ctx->refusal != NULL)
		return;
	if (ctx->rep != NULL || !ctx->watching) {
		ctx->wake_pending = TRUE;
		return;
	}
	watch_start_batch(ctx);
	ctx->manual_cork = TRUE;
	(void)watch_continue(ctx->cmd);
	if (client->disconnected)
		client_destroy(client, NULL);
}

static void watch_refuse(struct xrep_watch *ctx)
{
	struct client *client = ctx->client;

	watch_finish_with(ctx, ctx->refusal, TRUE);
	client_continue_pending_input(client);
}

/* The notifier's records are not read: the batch compares positions, and
   the notifier decides to call us from stat() of the log files alone.
   Reading them (mailbox_list_notify_next()) crashes Dovecot 2.3.19 when the
   mailbox list index log rotated past a file its view still needed ("Missing
   middle file" while many mailboxes are created quickly): its view sync
   then leaves the log view without a current file, and
   mail_transaction_log_view_mark() dereferences it. */
static void watch_notify_callback(struct xrep_watch *ctx)
{
	watch_wake(ctx);
}

static void watch_keepalive(struct xrep_watch *ctx)
{
	struct client *client = ctx->client;

	if (client->output_cmd_lock == NULL && ctx->rep == NULL &&
	    o_stream_get_buffer_used_size(client->output) == 0) {
		o_stream_cork(client->output);
		client_send_line(client, "* OK Still here");
		o_stream_uncork(client->output);
	}
	timeout_reset(client->to_idle);
}

static void watch_start_waiting(struct xrep_watch *ctx)
{
	const enum mailbox_list_notify_event mask =
		MAILBOX_LIST_NOTIFY_CREATE | MAILBOX_LIST_NOTIFY_DELETE |
		MAILBOX_LIST_NOTIFY_RENAME | MAILBOX_LIST_NOTIFY_SUBSCRIBE |
		MAILBOX_LIST_NOTIFY_UNSUBSCRIBE |
		MAILBOX_LIST_NOTIFY_UIDVALIDITY | MAILBOX_LIST_NOTIFY_STATUS;
	struct client *client = ctx->client;
	struct mailbox_list_notify *notify;
	struct mail_namespace *ns;
	unsigned int keepalive = client->set->imap_idle_notify_interval;

	i_array_init(&ctx->notifies, 4);
	for (ns = client->user->namespaces; ns != NULL; ns = ns->next) {
		if (ns->type != MAIL_NAMESPACE_TYPE_PRIVATE ||
		    ns->alias_for != NULL)
			continue;
		if (mailbox_list_notify_init(ns->list, mask, &notify) < 0)
			continue; /* no list index: the poll timer covers it */
		array_push_back(&ctx->notifies, &notify);
		mailbox_list_notify_wait(notify, watch_notify_callback, ctx);
	}
	ctx->to_poll = timeout_add(XREP_WATCH_POLL_MSECS, watch_wake, ctx);
	ctx->to_keepalive = timeout_add(
		keepalive == 0 ? XREP_WATCH_KEEPALIVE_MSECS : keepalive * 1000,
		watch_keepalive, ctx);
}

/* The command function: runs the current batch, then waits for input. */
static bool watch_continue(struct client_command_context *cmd)
{
	struct xrep_watch *ctx = cmd->context;
	struct client *client = ctx->client;
	struct xrep_snapshot *result;
	const char *error;
	int ret;

	if (cmd->cancel) {
		watch_cleanup(ctx);
		return TRUE;
	}
	if (ctx->manual_cork)
		o_stream_cork(client->output);

	while (ctx->rep != NULL) {
		ret = xrep_report_more(ctx->rep, &error);
		if (ret == 0) {
			/* output buffer full: resumed from client_output() */
			cmd->state = CLIENT_COMMAND_STATE_WAIT_OUTPUT;
			o_stream_set_flush_pending(client->output, TRUE);
			if (ctx->manual_cork) {
				ctx->manual_cork = FALSE;
				o_stream_uncork(client->output);
			}
			return FALSE;
		}
		if (ret < 0 && xrep_report_toobig(ctx->rep)) {
			/* no position can be handed out: the client falls
			   back; a batch already sent is void without its
			   POSITION */
			const char *tagline = p_strconcat(
				cmd->pool, "NO [XREPLICATE-TOOBIG] ", error,
				NULL);

			xrep_report_deinit(&ctx->rep);
			if (ctx->manual_cork) {
				ctx->manual_cork = FALSE;
				o_stream_uncork(client->output);
			}
			if (!ctx->watching) {
				/* the first batch: still in the command */
				watch_finish_with(ctx, tagline, FALSE);
				return TRUE;
			}
			ctx->refusal = tagline;
			ctx->to_refuse = timeout_add_short(0, watch_refuse, ctx);
			cmd->state = CLIENT_COMMAND_STATE_WAIT_INPUT;
			return FALSE;
		}
		if (ret < 0) {
			/* the position is unchanged: the next wake retries */
			e_error(client->event, "xreplicate: %s", error);
			client_send_line(client, "* NO [SERVERBUG] XREPLICATE: "
						 "temporary failure, retrying");
		} else {
			result = xrep_report_take_result(ctx->rep);
			xrep_snapshot_free(&ctx->pos);
			ctx->pos = result;
		}
		xrep_report_deinit(&ctx->rep);
		if (!ctx->watching) {
			ctx->watching = TRUE;
			client_send_line(client, "+ watching");
			watch_start_waiting(ctx);
		}
		if (ctx->wake_pending)
			watch_start_batch(ctx);
	}

	cmd->state = CLIENT_COMMAND_STATE_WAIT_INPUT;
	if (ctx->manual_cork) {
		ctx->manual_cork = FALSE;
		o_stream_uncork(client->output);
	}
	if (client->output->closed) {
		watch_finish(ctx, FALSE, FALSE);
		return TRUE;
	}
	/* DONE may have arrived while the batch ran */
	if (watch_handle_input(ctx, FALSE))
		return TRUE;
	if (client->io == NULL) {
		client->io = io_add_istream(client->input, watch_input, ctx);
		i_stream_set_input_pending(client->input, TRUE);
	}
	return FALSE;
}

bool xrep_cmd_watch(struct client_command_context *cmd,
		    struct xrep_snapshot *pos, const char *token)
{
	struct client *client = cmd->client;
	struct xrep_watch *ctx;

	ctx = p_new(cmd->pool, struct xrep_watch, 1);
	ctx->cmd = cmd;
	ctx->client = client;
	ctx->rep = xrep_report_init(client, pos, XREP_REPORT_ALL_STATUS);
	xrep_report_set_prev_position(ctx->rep, token);

	/* Like IDLE: the command owns the input until DONE.  input_lock
	   makes Dovecot hand any buffered input to this command rather than
	   parse it as new commands. */
	client->input_lock = cmd;
	io_remove(&client->io);
	client->io = io_add_istream(client->input, watch_input, ctx);

	cmd->func = watch_continue;
	cmd->context = ctx;
	return watch_continue(cmd);
}
