/* XREPLICATE CREATE, RESET, RAISE, UIDS: replica mode
   (man/twinbox-xreplicate.7, issue 11).

   CREATE, RESET and RAISE are one mailbox_create() or mailbox_update() each:
   Dovecot's storage already knows how to take a given UIDVALIDITY and GUID
   and how to raise next_uid and highest_modseq (dsync uses the same calls).

   UIDS needs the save path. Dovecot lets a saver ask for a UID
   (mailbox_save_set_uid(), used by dsync); IMAP APPEND never does. A
   mailbox_allocated hook wraps save_begin of every mailbox of a user that
   loaded the plugin and, while the session has a pending list for that
   mailbox, asks for the next UID before Dovecot's own save_begin runs, so
   the literal, LITERAL+, MULTIAPPEND and CATENATE handling stay Dovecot's.
   The commit and rollback wrappers decide whether the UIDs taken by a
   transaction are used up or given back.

   What lib-index does with a requested UID (lib-index
   mail_index_append_finish_uids_full(), run at commit under the mailbox's
   sync lock by every backend): a UID at or above next_uid is kept; a UID
   below it, which happens only if another process took it between our check
   in save_begin and the commit, is silently replaced by a new one. The
   APPENDUID of the tagged OK always shows the UID given; we log a warning
   when it differs. A UID given twice in one transaction would panic
   ("Duplicate UIDs added in transaction"), and next_uid must stay below
   2^32-1: the grammar keeps both out (strictly ascending, at most
   XREP_UID_MAX). */

#include "imap-common.h"
#include "imap-commands.h"
#include "array.h"
#include "guid.h"
#include "hex-binary.h"
#include "seq-range-array.h"
#include "strnum.h"
#include "mail-index.h"
#include "mail-namespace.h"
#include "mail-storage-private.h"
#include "mail-storage-hooks.h"
#include "mailbox-guid-cache.h"
#include "mail-user.h"
#include "module-context.h"
#include "xrep-replica.h"

/* next_uid must stay below 2^32-1 (lib-index asserts it; maildir's uidlist
   uses (uint32_t)-1 as "no UID"), so the highest UID a message can be given
   is 2^32-3 and the highest UIDNEXT a mailbox can be raised to 2^32-2. */
#define XREP_UID_MAX 4294967293U
#define XREP_UIDNEXT_MAX 4294967294U
/* RFC 7162 mod-sequence-value: a positive 63-bit number */
#define XREP_MODSEQ_MAX 9223372036854775807ULL
#define XREP_UIDS_MAX 10000

#define XREP_REPLICA_USER(obj) MODULE_CONTEXT(obj, xrep_replica_user_module)
#define XREP_REPLICA_BOX(obj)                                                  \
	MODULE_CONTEXT_REQUIRE(obj, xrep_replica_storage_module)

struct xrep_replica_user {
	union mail_user_module_context module_ctx;

	/* The pending list: UIDs for the mailbox vname of list. vname is NULL
	   when there is none. uids[0..used) are used up by committed saves,
	   uids[used..used+taken) are held by transaction trans. */
	struct mailbox_list *list;
	char *vname;
	ARRAY(uint32_t) uids;
	unsigned int used, taken;
	struct mailbox_transaction_context *trans;
};

static MODULE_CONTEXT_DEFINE_INIT(xrep_replica_user_module,
				  &mail_user_module_register);
static MODULE_CONTEXT_DEFINE_INIT(xrep_replica_storage_module,
				  &mail_storage_module_register);

/* ---- the pending list and the save path ---------------------------------- */

static void xrep_replica_list_clear(struct xrep_replica_user *ruser)
{
	i_free(ruser->vname);
	ruser->list = NULL;
	array_clear(&ruser->uids);
	ruser->used = ruser->taken = 0;
	ruser->trans = NULL;
}

/* The UID the next save in t to box is to get, if the session has one. */
static bool xrep_replica_next_uid(struct xrep_replica_user *ruser,
				  struct mailbox *box,
				  struct mailbox_transaction_context *t,
				  uint32_t *uid_r)
{
	unsigned int idx;

	if (ruser == NULL || ruser->vname == NULL || box->list != ruser->list ||
	    strcmp(mailbox_get_vname(box), ruser->vname) != 0)
		return FALSE;
	if (ruser->trans != t) {
		/* a new transaction: nothing is held by another one, since
		   every commit and rollback of this mailbox clears trans */
		ruser->trans = NULL;
		ruser->taken = 0;
	}
	idx = ruser->used + ruser->taken;
	if (idx >= array_count(&ruser->uids))
		return FALSE;
	*uid_r = *array_idx(&ruser->uids, idx);
	return TRUE;
}

/* The mailbox's UIDNEXT as the index has it now: the box's own view may be
   older than the index when another process delivered since it was
   synced. */
static uint32_t xrep_replica_uidnext(struct mailbox *box)
{
	struct mailbox_status status;
	struct mail_index_view *view;
	uint32_t next;

	mailbox_get_open_status(box, STATUS_UIDNEXT, &status);
	next = status.uidnext;
	if (mail_index_refresh(box->index) == 0) {
		view = mail_index_view_open(box->index);
		if (mail_index_get_header(view)->next_uid > next)
			next = mail_index_get_header(view)->next_uid;
		mail_index_view_close(&view);
	}
	return next;
}

static int xrep_replica_save_begin(struct mail_save_context *ctx,
				   struct istream *input)
{
	struct mailbox_transaction_context *t = ctx->transaction;
	struct mailbox *box = t->box;
	union mailbox_module_context *rbox = XREP_REPLICA_BOX(box);
	struct xrep_replica_user *ruser = XREP_REPLICA_USER(box->storage->user);
	uint32_t uid, next;

	/* copies that fall back to saving keep their own UIDs: the list is
	   for APPEND */
	if (!ctx->copying_or_moving &&
	    xrep_replica_next_uid(ruser, box, t, &uid)) {
		next = xrep_replica_uidnext(box);
		if (uid < next) {
			mail_storage_set_error(
				box->storage, MAIL_ERROR_NOTPOSSIBLE,
				t_strdup_printf("XREPLICATE: UID %u is below "
						"UIDNEXT %u",
						uid, next));
			return -1;
		}
		mailbox_save_set_uid(ctx, uid);
		ruser->trans = t;
		ruser->taken++;
	}
	return rbox->super.save_begin(ctx, input);
}

/* Warns about requested UIDs that the commit did not give (see the top of
   the file). */
static void
xrep_replica_check_given(struct xrep_replica_user *ruser, struct mailbox *box,
			 const struct mail_transaction_commit_changes *changes)
{
	unsigned int i;
	uint32_t uid;

	if (!array_is_created(&changes->saved_uids))
		return;
	for (i = ruser->used; i < ruser->used + ruser->taken; i++) {
		uid = *array_idx(&ruser->uids, i);
		if (!seq_range_exists(&changes->saved_uids, uid)) {
			e_warning(box->event,
				  "xreplicate: UID %u was taken by another "
				  "process before the commit; Dovecot gave "
				  "the message another UID (see APPENDUID)",
				  uid);
		}
	}
}

static int xrep_replica_transaction_commit(
	struct mailbox_transaction_context *t,
	struct mail_transaction_commit_changes *changes_r)
{
	struct mailbox *box = t->box;
	union mailbox_module_context *rbox = XREP_REPLICA_BOX(box);
	struct xrep_replica_user *ruser = XREP_REPLICA_USER(box->storage->user);
	bool ours = ruser != NULL && ruser->trans == t && ruser->taken > 0;
	int ret;

	ret = rbox->super.transaction_commit(t, changes_r);
	/* t is freed now */
	if (ours) {
		if (ret == 0) {
			xrep_replica_check_given(ruser, box, changes_r);
			ruser->used += ruser->taken;
		}
		ruser->trans = NULL;
		ruser->taken = 0;
	}
	return ret;
}

static void
xrep_replica_transaction_rollback(struct mailbox_transaction_context *t)
{
	union mailbox_module_context *rbox = XREP_REPLICA_BOX(t->box);
	struct xrep_replica_user *ruser =
		XREP_REPLICA_USER(t->box->storage->user);

	if (ruser != NULL && ruser->trans == t) {
		ruser->trans = NULL;
		ruser->taken = 0;
	}
	rbox->super.transaction_rollback(t);
}

static void xrep_replica_mailbox_allocated(struct mailbox *box)
{
	struct mailbox_vfuncs *v = box->vlast;
	union mailbox_module_context *rbox;

	if (XREP_REPLICA_USER(box->storage->user) == NULL ||
	    v->save_begin == NULL)
		return;
	rbox = p_new(box->pool, union mailbox_module_context, 1);
	rbox->super = *v;
	box->vlast = &rbox->super;
	v->save_begin = xrep_replica_save_begin;
	v->transaction_commit = xrep_replica_transaction_commit;
	v->transaction_rollback = xrep_replica_transaction_rollback;
	MODULE_CONTEXT_SET_SELF(box, xrep_replica_storage_module, rbox);
}

static void xrep_replica_user_deinit(struct mail_user *user)
{
	struct xrep_replica_user *ruser = XREP_REPLICA_USER(user);

	i_free(ruser->vname);
	array_free(&ruser->uids);
	ruser->module_ctx.super.deinit(user);
}

static void xrep_replica_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct xrep_replica_user *ruser;

	ruser = p_new(user->pool, struct xrep_replica_user, 1);
	ruser->module_ctx.super = *v;
	user->vlast = &ruser->module_ctx.super;
	v->deinit = xrep_replica_user_deinit;
	i_array_init(&ruser->uids, 16);
	MODULE_CONTEXT_SET(user, xrep_replica_user_module, ruser);
}

static struct mail_storage_hooks xrep_replica_hooks = {
	.mail_user_created = xrep_replica_user_created,
	.mailbox_allocated = xrep_replica_mailbox_allocated,
};

void xrep_replica_init(struct module *module)
{
	mail_storage_hooks_add(module, &xrep_replica_hooks);
}

void xrep_replica_deinit(void)
{
	mail_storage_hooks_remove(&xrep_replica_hooks);
}

/* ---- argument parsing ---------------------------------------------------- */

static void replica_bad(struct client_command_context *cmd, const char *text)
{
	client_send_command_error(cmd, text);
}

static bool arg_mailbox(const struct imap_arg *arg, const char **name_r)
{
	if (arg->type == IMAP_ARG_NIL) {
		/* an atom NIL is the mailbox "NIL" here */
		*name_r = "NIL";
		return TRUE;
	}
	return imap_arg_get_astring(arg, name_r);
}

/* A decimal atom in [min, max]. */
static bool arg_number(const struct imap_arg *arg, uint64_t min, uint64_t max,
		       uint64_t *num_r)
{
	const char *str;

	return imap_arg_get_atom(arg, &str) && str_to_uint64(str, num_r) == 0 &&
	       *num_r >= min && *num_r <= max;
}

static bool arg_guid(const struct imap_arg *arg, guid_128_t guid_r)
{
	const char *str;
	buffer_t buf;
	unsigned int i;

	if (!imap_arg_get_atom(arg, &str) || strlen(str) != GUID_128_SIZE * 2)
		return FALSE;
	for (i = 0; str[i] != '\0'; i++) {
		if (!i_isxdigit(str[i]))
			return FALSE;
	}
	buffer_create_from_data(&buf, guid_r, GUID_128_SIZE);
	if (hex_to_binary(str, &buf) < 0 || buf.used != GUID_128_SIZE)
		return FALSE;
	return !guid_128_is_empty(guid_r);
}

/* One UID of a UID set at *p, 1 to XREP_UID_MAX; advances *p past it. */
static bool parse_uid(const char **p, uint32_t *uid_r, const char **error_r)
{
	uint64_t n = 0;

	if (**p == '*') {
		*error_r = "\"*\" is not allowed in a UID set.";
		return FALSE;
	}
	while (i_isdigit(**p) && n <= XREP_UID_MAX) {
		n = n * 10 + (uint64_t)(**p - '0');
		(*p)++;
	}
	if (n == 0 || n > XREP_UID_MAX) {
		*error_r = t_strdup_printf("Invalid UID set: UIDs are 1 to %u.",
					   XREP_UID_MAX);
		return FALSE;
	}
	*uid_r = (uint32_t)n;
	return TRUE;
}

/* Parses a UID set (RFC 3501 sequence-set without "*") that expands to a
   strictly ascending list of at most XREP_UIDS_MAX UIDs. */
static bool parse_uid_set(const char *str, ARRAY_TYPE(uint32_t) * uids,
			  const char **error_r)
{
	uint32_t first, last, prev = 0, uid;
	const char *p = str;

	array_clear(uids);
	for (;;) {
		if (!parse_uid(&p, &first, error_r))
			return FALSE;
		last = first;
		if (*p == ':') {
			p++;
			if (!parse_uid(&p, &last, error_r))
				return FALSE;
		}
		if (first <= prev || last < first) {
			*error_r = "UID set is not strictly ascending.";
			return FALSE;
		}
		if (last - first >= XREP_UIDS_MAX - array_count(uids)) {
			*error_r = t_strdup_printf(
				"UID set holds more than %u UIDs.",
				XREP_UIDS_MAX);
			return FALSE;
		}
		for (uid = first;; uid++) {
			array_push_back(uids, &uid);
			if (uid == last)
				break;
		}
		prev = last;
		if (*p == '\0')
			return TRUE;
		if (*p != ',') {
			*error_r = "Invalid UID set: expected \",\" or \":\".";
			return FALSE;
		}
		p++;
	}
}

/* ---- the subcommands ------------------------------------------------------
 */

/* Whether a mailbox of the user other than (self_list, self_vname) has guid.
   The GUID caches are refreshed first, so mailboxes created or renamed by
   other processes are seen; a cached name is checked against the mailbox
   itself before it counts. Shared namespaces (other users' mailboxes) and
   aliases are not looked at. */
static bool xrep_guid_in_use(struct mail_user *user, const guid_128_t guid,
			     struct mailbox_list *self_list,
			     const char *self_vname)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	struct mailbox_metadata md;
	const char *vname;
	bool same;

	for (ns = user->namespaces; ns != NULL; ns = ns->next) {
		if (ns->alias_for != NULL ||
		    ns->type == MAIL_NAMESPACE_TYPE_SHARED)
			continue;
		mailbox_guid_cache_refresh(ns->list);
		/* < 0: some mailbox's GUID could not be read (logged by
		   Dovecot); what could be read still counts */
		(void)mailbox_guid_cache_find(ns->list, guid, &vname);
		if (vname == NULL ||
		    (ns->list == self_list && strcmp(vname, self_vname) == 0))
			continue;
		box = mailbox_alloc(ns->list, vname, MAILBOX_FLAG_READONLY);
		same = mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &md) ==
			       0 &&
		       guid_128_equals(md.guid, guid);
		mailbox_free(&box);
		if (same)
			return TRUE;
	}
	return FALSE;
}

static void send_guid_in_use(struct client_command_context *cmd)
{
	client_send_tagline(cmd, "NO [XREPLICATE-GUIDINUSE] Another mailbox "
				 "has this mailbox GUID.");
}

/* Parses "<mailbox> <uidvalidity> <guid>" of CREATE and RESET. */
static bool parse_identity_args(struct client_command_context *cmd,
				const struct imap_arg *args,
				const char **name_r,
				struct mailbox_update *update_r)
{
	uint64_t uidvalidity;

	i_zero(update_r);
	if (!arg_mailbox(&args[0], name_r) || IMAP_ARG_IS_EOL(&args[1]) ||
	    IMAP_ARG_IS_EOL(&args[2])) {
		replica_bad(cmd, "Expected <mailbox> <uidvalidity> <guid>.");
		return FALSE;
	}
	if (!arg_number(&args[1], 1, (uint32_t)-1, &uidvalidity)) {
		replica_bad(cmd, "Invalid UIDVALIDITY: expected 1 to "
				 "4294967295.");
		return FALSE;
	}
	if (!arg_guid(&args[2], update_r->mailbox_guid)) {
		replica_bad(cmd, "Invalid mailbox GUID: expected 32 hex "
				 "digits, not all zero.");
		return FALSE;
	}
	if (!IMAP_ARG_IS_EOL(&args[3])) {
		replica_bad(cmd, "Too many arguments: expected <mailbox> "
				 "<uidvalidity> <guid>.");
		return FALSE;
	}
	update_r->uid_validity = (uint32_t)uidvalidity;
	return TRUE;
}

/* CREATE <mailbox> <uidvalidity> <guid> */
static void cmd_replica_create(struct client_command_context *cmd,
			       const struct imap_arg *args)
{
	struct mailbox_update update;
	struct mail_namespace *ns;
	struct mailbox *box;
	enum mailbox_existence existence;
	const char *name;

	if (!parse_identity_args(cmd, args, &name, &update))
		return;
	if ((ns = client_find_namespace(cmd, &name)) == NULL)
		return;
	box = mailbox_alloc(ns->list, name, 0);
	if (mailbox_exists(box, FALSE, &existence) < 0)
		client_send_box_error(cmd, box);
	else if (existence == MAILBOX_EXISTENCE_SELECT)
		client_send_tagline(cmd, "NO [ALREADYEXISTS] Mailbox already "
					 "exists.");
	else if (xrep_guid_in_use(cmd->client->user, update.mailbox_guid,
				  ns->list, mailbox_get_vname(box)))
		send_guid_in_use(cmd);
	else if (mailbox_create(box, &update, FALSE) < 0)
		client_send_box_error(cmd, box);
	else
		client_send_tagline(cmd, "OK XREPLICATE CREATE completed.");
	mailbox_free(&box);
}

static bool is_selected(struct client_command_context *cmd,
			struct mail_namespace *ns, struct mailbox *box)
{
	return cmd->client->mailbox != NULL &&
	       mailbox_equals(cmd->client->mailbox, ns, mailbox_get_vname(box));
}

/* RESET <mailbox> <uidvalidity> <guid> */
static void cmd_replica_reset(struct client_command_context *cmd,
			      const struct imap_arg *args)
{
	struct mailbox_update update;
	struct mailbox_status status;
	struct mail_namespace *ns;
	struct mailbox *box;
	const char *name;

	if (!parse_identity_args(cmd, args, &name, &update))
		return;
	if ((ns = client_find_namespace(cmd, &name)) == NULL)
		return;
	box = mailbox_alloc(ns->list, name, 0);
	if (is_selected(cmd, ns, box)) {
		/* a new UIDVALIDITY under the session's own view */
		client_send_tagline(cmd, "NO [INUSE] Mailbox is selected in "
					 "this session: CLOSE or UNSELECT it "
					 "first.");
	} else if (mailbox_sync(box, 0) < 0 ||
		   mailbox_get_status(box, STATUS_MESSAGES, &status) < 0) {
		client_send_box_error(cmd, box);
	} else if (status.messages > 0) {
		client_send_tagline(
			cmd, t_strdup_printf("NO [XREPLICATE-NOTEMPTY] Mailbox "
					     "holds %u messages.",
					     status.messages));
	} else if (xrep_guid_in_use(cmd->client->user, update.mailbox_guid,
				    ns->list, mailbox_get_vname(box))) {
		send_guid_in_use(cmd);
	} else if (mailbox_update(box, &update) < 0) {
		client_send_box_error(cmd, box);
	} else {
		client_send_tagline(cmd, "OK XREPLICATE RESET completed.");
	}
	mailbox_free(&box);
}

/* RAISE <mailbox> <uidnext> <highestmodseq> */
static void cmd_replica_raise(struct client_command_context *cmd,
			      const struct imap_arg *args)
{
	struct mailbox_update update;
	struct mailbox_status status;
	struct mail_namespace *ns;
	struct mailbox *box;
	const char *name;
	uint64_t uidnext, modseq;

	if (!arg_mailbox(&args[0], &name) || IMAP_ARG_IS_EOL(&args[1]) ||
	    IMAP_ARG_IS_EOL(&args[2])) {
		replica_bad(cmd,
			    "Expected <mailbox> <uidnext> <highestmodseq>.");
		return;
	}
	if (!arg_number(&args[1], 0, XREP_UIDNEXT_MAX, &uidnext)) {
		replica_bad(cmd, t_strdup_printf("Invalid UIDNEXT: expected 0 "
						 "to %u.",
						 XREP_UIDNEXT_MAX));
		return;
	}
	if (!arg_number(&args[2], 0, XREP_MODSEQ_MAX, &modseq)) {
		replica_bad(cmd, "Invalid HIGHESTMODSEQ: expected 0 to "
				 "9223372036854775807.");
		return;
	}
	if (!IMAP_ARG_IS_EOL(&args[3])) {
		replica_bad(cmd, "Too many arguments: expected <mailbox> "
				 "<uidnext> <highestmodseq>.");
		return;
	}
	if ((ns = client_find_namespace(cmd, &name)) == NULL)
		return;

	i_zero(&update);
	update.min_next_uid = (uint32_t)uidnext;
	update.min_highest_modseq = modseq;
	box = mailbox_alloc(ns->list, name, 0);
	/* as STATUS HIGHESTMODSEQ does: modseqs are kept from now on */
	if (mailbox_enable(box, MAILBOX_FEATURE_CONDSTORE) < 0 ||
	    ((uidnext != 0 || modseq != 0) &&
	     mailbox_update(box, &update) < 0) ||
	    mailbox_sync(box, 0) < 0 ||
	    mailbox_get_status(box,
			       STATUS_UIDVALIDITY | STATUS_UIDNEXT |
				       STATUS_HIGHESTMODSEQ,
			       &status) < 0) {
		client_send_box_error(cmd, box);
	} else {
		client_send_tagline(
			cmd,
			t_strdup_printf(
				"OK [XREPLICATE-RAISED %u %u %llu] "
				"XREPLICATE RAISE completed.",
				status.uidvalidity, status.uidnext,
				(unsigned long long)status.highest_modseq));
	}
	mailbox_free(&box);
}

/* UIDS <mailbox> <uid-set> | UIDS <mailbox> NIL */
static void cmd_replica_uids(struct client_command_context *cmd,
			     const struct imap_arg *args)
{
	struct xrep_replica_user *ruser = XREP_REPLICA_USER(cmd->client->user);
	ARRAY_TYPE(uint32_t) uids;
	struct mail_namespace *ns;
	struct mailbox *box;
	enum mailbox_existence existence;
	const char *name, *set, *error;

	if (!arg_mailbox(&args[0], &name) || IMAP_ARG_IS_EOL(&args[1])) {
		replica_bad(cmd, "Expected <mailbox> <uid-set> or <mailbox> "
				 "NIL.");
		return;
	}
	if (!IMAP_ARG_IS_EOL(&args[2])) {
		replica_bad(cmd, "Too many arguments: expected <mailbox> "
				 "<uid-set> or <mailbox> NIL.");
		return;
	}
	if (ruser == NULL) {
		client_send_internal_error(cmd);
		return;
	}
	if (args[1].type == IMAP_ARG_NIL) {
		xrep_replica_list_clear(ruser);
		client_send_tagline(cmd, "OK XREPLICATE UIDS cleared.");
		return;
	}
	if (!imap_arg_get_atom(&args[1], &set)) {
		replica_bad(cmd, "Expected a UID set (atom) or NIL.");
		return;
	}
	t_array_init(&uids, 64);
	if (!parse_uid_set(set, &uids, &error)) {
		replica_bad(cmd, error);
		return;
	}
	if ((ns = client_find_namespace(cmd, &name)) == NULL)
		return;
	box = mailbox_alloc(ns->list, name, 0);
	if (mailbox_exists(box, FALSE, &existence) < 0) {
		client_send_box_error(cmd, box);
	} else if (existence != MAILBOX_EXISTENCE_SELECT) {
		client_send_tagline(cmd, "NO [NONEXISTENT] Mailbox doesn't "
					 "exist.");
	} else {
		xrep_replica_list_clear(ruser);
		ruser->list = ns->list;
		ruser->vname = i_strdup(mailbox_get_vname(box));
		array_append_array(&ruser->uids, &uids);
		client_send_tagline(cmd, "OK XREPLICATE UIDS completed.");
	}
	mailbox_free(&box);
}

bool xrep_replica_is_subcommand(const char *sub)
{
	return strcasecmp(sub, "CREATE") == 0 ||
	       strcasecmp(sub, "RESET") == 0 || strcasecmp(sub, "RAISE") == 0 ||
	       strcasecmp(sub, "UIDS") == 0;
}

bool xrep_cmd_replica(struct client_command_context *cmd, const char *sub,
		      const struct imap_arg *args)
{
#if DOVECOT_VERSION_MAJOR == 2 && DOVECOT_VERSION_MINOR < 4
	/* 2.3 answers a missing mailbox with [NONEXISTENT] only for commands
	   that ask for it; 2.4 always does */
	cmd->cmd_flags |= COMMAND_FLAG_USE_NONEXISTENT;
#endif
	if (strcasecmp(sub, "CREATE") == 0)
		cmd_replica_create(cmd, args);
	else if (strcasecmp(sub, "RESET") == 0)
		cmd_replica_reset(cmd, args);
	else if (strcasecmp(sub, "RAISE") == 0)
		cmd_replica_raise(cmd, args);
	else
		cmd_replica_uids(cmd, args);
	return TRUE;
}
