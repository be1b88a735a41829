/* Writes the XREPLICATE responses for "old position -> now" (see header). */

#include "imap-common.h"
#include "array.h"
#include "ioloop.h"
#include "str.h"
#include "ostream.h"
#include "imap-quote.h"
#include "imap-util.h"
#include "imap-utf7.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "xrep-delta.h"
#include "xrep-position.h"
#include "xrep-report.h"

/* Pause between mailboxes once this much output is waiting for the client. */
#define XREP_REPORT_OUTPUT_PAUSE (128 * 1024)

enum report_stage {
	STAGE_LIST = 0,
	STAGE_MAILBOX_EVENTS,
	STAGE_SECTIONS,
	STAGE_POSITION,
	STAGE_DONE,
};

struct xrep_report {
	struct client *client;
	enum xrep_report_flags flags;
	enum report_stage stage;
	struct xrep_position_settings set;
	char *prev_position; /* the position text the command was given */

	struct xrep_snapshot *old;    /* NULL for POSITION */
	struct xrep_snapshot *cur;    /* listing, cheap cached status */
	struct xrep_snapshot *result; /* what has been reported */
	unsigned int next_idx;        /* next cur mailbox for STAGE_SECTIONS */
	unsigned int emitted;         /* lines emitted, POSITION excluded */

	/* Unreadable mailboxes (old != NULL only), see match_unreadable():
	   per cur mailbox, the old entry it stands for; per old mailbox, the
	   name under which the new position keeps it unchanged, or NULL. */
	const struct xrep_mailbox **claim;
	const char **held_name;

	char *error;
	bool toobig;
};

struct xrep_report *xrep_report_init(struct client *client,
				     struct xrep_snapshot *old,
				     enum xrep_report_flags flags)
{
	struct xrep_report *rep = i_new(struct xrep_report, 1);

	rep->client = client;
	rep->old = old;
	rep->flags = flags;
	rep->result = xrep_snapshot_new();
	xrep_position_settings_read(client, &rep->set);
	return rep;
}

void xrep_report_set_prev_position(struct xrep_report *rep, const char *text)
{
	i_free(rep->prev_position);
	rep->prev_position = i_strdup(text);
}

bool xrep_report_toobig(const struct xrep_report *rep)
{
	return rep->toobig;
}

void xrep_report_deinit(struct xrep_report **_rep)
{
	struct xrep_report *rep = *_rep;

	*_rep = NULL;
	xrep_snapshot_free(&rep->old);
	xrep_snapshot_free(&rep->cur);
	xrep_snapshot_free(&rep->result);
	i_free(rep->claim);
	i_free(rep->held_name);
	i_free(rep->prev_position);
	i_free(rep->error);
	i_free(rep);
}

static int report_fail(struct xrep_report *rep, const char *error,
		       const char **error_r)
{
	i_free(rep->error);
	rep->error = i_strdup(error);
	*error_r = rep->error;
	return -1;
}

static bool old_is_held(const struct xrep_report *rep,
			const struct xrep_mailbox *o)
{
	return rep->held_name != NULL &&
	       rep->held_name[o - array_front(&rep->old->boxes)] != NULL;
}

struct xrep_snapshot *xrep_report_take_result(struct xrep_report *rep)
{
	struct xrep_snapshot *result = rep->result;

	i_assert(rep->stage == STAGE_DONE);
	rep->result = NULL;
	return result;
}

/* Mailbox names go out in modified UTF-7, always as a quoted string or a
   literal (never an atom), like LIST does for clients without UTF8=ACCEPT. */
static void append_mailbox(string_t *dest, const char *vname)
{
	string_t *mutf7 = t_str_new(64);

	if (imap_utf8_to_utf7(vname, mutf7) < 0) {
		/* cannot happen for names Dovecot lists (they are UTF-8) */
		str_truncate(mutf7, 0);
		str_append(mutf7, vname);
	}
	imap_append_string(dest, str_c(mutf7));
}

static string_t *line_begin(const char *what, const guid_128_t guid)
{
	string_t *line = t_str_new(128);

	str_printfa(line, "* XREPLICATE %s %s", what, guid_128_to_string(guid));
	return line;
}

static void report_send(struct xrep_report *rep, string_t *line)
{
	rep->emitted++;
	/* client_send_line_next() queues the line even when it reports a
	   full buffer; pausing is decided per mailbox, see pause_output() */
	(void)client_send_line_next(rep->client, str_c(line));
}

static bool pause_output(struct xrep_report *rep)
{
	return o_stream_get_buffer_used_size(rep->client->output) >=
	       XREP_REPORT_OUTPUT_PAUSE;
}

static void send_mailbox_event(struct xrep_report *rep, const guid_128_t guid,
			       const char *event, const char *name1,
			       const char *name2)
{
	string_t *line = line_begin("MAILBOX", guid);

	str_printfa(line, " %s ", event);
	append_mailbox(line, name1);
	if (name2 != NULL) {
		str_append_c(line, ' ');
		append_mailbox(line, name2);
	}
	report_send(rep, line);
}

/* Before stage 1: what the unreadable mailboxes of the listing stand for.
   An unreadable mailbox is never reported DELETED or RENAMED; the new
   position keeps the old entry it stands for unchanged, so the reply after
   it becomes readable again reports the delta (or the rename) since then.
   It stands for the old entry with the GUID Dovecot could still tell for it,
   else the old entry of the same name (unless that GUID is listed readable
   elsewhere).  One with neither is of unknown identity: it may be any
   missing mailbox renamed, so then no missing mailbox is reported DELETED
   in this reply (kept under its old name), except those whose names are
   taken by a readable mailbox now (they get the ordinary rules). */
static void match_unreadable(struct xrep_report *rep)
{
	const struct xrep_mailbox *cur, *old, *o;
	unsigned int i, cur_count, old_count, oi;
	bool unidentified = FALSE;

	cur = array_get(&rep->cur->boxes, &cur_count);
	old = array_get(&rep->old->boxes, &old_count);
	for (i = 0; i < cur_count; i++) {
		if (cur[i].unreadable)
			break;
	}
	if (i == cur_count)
		return;
	rep->claim = i_new(const struct xrep_mailbox *, cur_count);
	rep->held_name = i_new(const char *, old_count + 1);

	/* by the GUID Dovecot could still read */
	for (i = 0; i < cur_count; i++) {
		if (!cur[i].unreadable || guid_128_is_empty(cur[i].guid) ||
		    xrep_snapshot_find_guid(rep->cur, cur[i].guid) != NULL)
			continue;
		o = xrep_snapshot_find_guid(rep->old, cur[i].guid);
		if (o == NULL || rep->held_name[o - old] != NULL)
			continue;
		rep->claim[i] = o;
		/* renamed while unreadable: kept under the old name, so the
		   rename is reported once it can be read, unless another
		   mailbox has taken that name */
		rep->held_name[o - old] =
			xrep_snapshot_find_name(rep->cur, o->vname) == NULL
				? o->vname
				: cur[i].vname;
	}
	/* by name */
	for (i = 0; i < cur_count; i++) {
		if (!cur[i].unreadable || rep->claim[i] != NULL ||
		    !guid_128_is_empty(cur[i].guid))
			continue;
		o = xrep_snapshot_find_name(rep->old, cur[i].vname);
		if (o != NULL && rep->held_name[o - old] == NULL &&
		    xrep_snapshot_find_guid(rep->cur, o->guid) == NULL) {
			rep->claim[i] = o;
			rep->held_name[o - old] = o->vname;
		} else {
			unidentified = TRUE;
		}
	}
	if (!unidentified)
		return;
	for (oi = 0; oi < old_count; oi++) {
		if (rep->held_name[oi] == NULL &&
		    xrep_snapshot_find_guid(rep->cur, old[oi].guid) == NULL &&
		    xrep_snapshot_find_name(rep->cur, old[oi].vname) == NULL)
			rep->held_name[oi] = old[oi].vname;
	}
}

/* Stage 1.  Renames are by GUID: Dovecot keeps a mailbox's GUID across
   RENAME, while DELETE + CREATE of the same name yields a new one.
   Unreadable mailboxes get no events (see match_unreadable()). */
static void send_mailbox_events(struct xrep_report *rep)
{
	const struct xrep_mailbox *o, *c;

	array_foreach(&rep->old->boxes, o) T_BEGIN
	{
		if (xrep_snapshot_find_guid(rep->cur, o->guid) == NULL &&
		    !old_is_held(rep, o))
			send_mailbox_event(rep, o->guid, "DELETED", o->vname,
					   NULL);
	}
	T_END;
	array_foreach(&rep->cur->boxes, c) T_BEGIN
	{
		if (c->unreadable) {
			/* nothing: see match_unreadable() */
		} else {
			o = xrep_snapshot_find_guid(rep->old, c->guid);
			if (o == NULL)
				send_mailbox_event(rep, c->guid, "CREATED",
						   c->vname, NULL);
			else if (strcmp(o->vname, c->vname) != 0)
				send_mailbox_event(rep, c->guid, "RENAMED",
						   o->vname, c->vname);
			if ((o == NULL && c->subscribed) ||
			    (o != NULL && o->subscribed != c->subscribed)) {
				send_mailbox_event(rep, c->guid,
						   c->subscribed
							   ? "SUBSCRIBED"
							   : "UNSUBSCRIBED",
						   c->vname, NULL);
			}
		}
	}
	T_END;
}

static void send_status(struct xrep_report *rep, const struct xrep_mailbox *box)
{
	string_t *line = line_begin("STATUS", box->guid);

	str_append_c(line, ' ');
	append_mailbox(line, box->vname);
	str_printfa(line,
		    " (UIDVALIDITY %u UIDNEXT %u HIGHESTMODSEQ %" PRIu64
		    ") (%s)",
		    box->uidvalidity, box->uidnext, box->modseq,
		    box->subscribed ? "\\Subscribed" : "");
	report_send(rep, line);
}

static void send_resync(struct xrep_report *rep, const struct xrep_mailbox *box,
			const char *reason)
{
	string_t *line = line_begin("RESYNC", box->guid);

	str_printfa(line, " %s ", reason);
	append_mailbox(line, box->vname);
	report_send(rep, line);
}

/* A mailbox that exists but could not be read: a RESYNC line without a
   STATUS line.  Only in replies that list every mailbox (not in later WATCH
   batches, where a mailbox not mentioned is one with nothing to report). */
static void send_unreadable(struct xrep_report *rep, const guid_128_t guid,
			    const char *vname)
{
	string_t *line;

	if ((rep->flags & XREP_REPORT_ALL_STATUS) == 0)
		return;
	line = line_begin("RESYNC", guid);
	str_append(line, " UNREADABLE ");
	append_mailbox(line, vname);
	report_send(rep, line);
}

static void send_uidset(struct xrep_report *rep, const char *what,
			const guid_128_t guid,
			const ARRAY_TYPE(seq_range) * uids)
{
	string_t *line;

	if (array_count(uids) == 0)
		return;
	line = line_begin(what, guid);
	str_append_c(line, ' ');
	imap_write_seq_range(line, uids);
	report_send(rep, line);
}

static void send_flag_group(struct xrep_report *rep, const guid_128_t guid,
			    const struct xrep_flag_group *group)
{
	string_t *line = line_begin("FLAGS", guid);

	str_append_c(line, ' ');
	imap_write_seq_range(line, &group->uids);
	str_printfa(line, " MODSEQ %" PRIu64 " ADD (", group->modseq);
	imap_write_flags(line, group->add, group->kw_add);
	str_append(line, ") REMOVE (");
	imap_write_flags(line, group->remove, group->kw_remove);
	str_append_c(line, ')');
	report_send(rep, line);
}

static void set_numbers(struct xrep_mailbox *dest, const struct xrep_delta *d)
{
	dest->verified_at = ioloop_time;
	dest->uidvalidity = d->uidvalidity;
	dest->uidnext = d->uidnext;
	dest->modseq = d->modseq;
}

/* A mailbox whose numbers moved: open it and read its transaction log.
   Fills res with the numbers the next position may claim.  Returns FALSE if
   the mailbox could not be opened: it was reported UNREADABLE (no STATUS),
   and res holds the old entry to keep if *keep_r. */
static bool send_changed_section(struct xrep_report *rep,
				 const struct xrep_mailbox *o,
				 const struct xrep_mailbox *c,
				 struct xrep_mailbox *res, bool *keep_r)
{
	pool_t pool;
	const struct xrep_flag_group *group;
	struct xrep_delta delta;
	struct mailbox *box;
	const char *error;

	box = mailbox_alloc(c->ns->list, c->vname, MAILBOX_FLAG_READONLY);
	if (xrep_delta_open(box) < 0) {
		e_warning(rep->client->event,
			  "xreplicate: %s: cannot open mailbox, "
			  "reported UNREADABLE: %s",
			  c->vname, mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		/* the listing could read its GUID: CREATED or RENAMED (if
		   any) already named it under this GUID */
		send_unreadable(rep, c->guid, c->vname);
		/* keep the old numbers: the next reply retries */
		*keep_r = o != NULL;
		if (o != NULL) {
			*res = *o;
			res->vname = c->vname;
			res->subscribed = c->subscribed;
		}
		return FALSE;
	}
	pool = pool_alloconly_create("xreplicate delta", 4096);
	if (o == NULL) {
		/* unknown to the position: all of it is new */
		xrep_delta_current(box, TRUE, pool, &delta);
		set_numbers(res, &delta);
		send_uidset(rep, "APPENDED", c->guid, &delta.appended);
	} else
		switch (xrep_delta_scan(box, o->modseq, o->uidnext,
					o->verified_at, pool, &delta, &error)) {
		case XREP_DELTA_OK:
			set_numbers(res, &delta);
			if (delta.uidvalidity != o->uidvalidity) {
				/* changed between listing and opening */
				send_resync(rep, c, "UIDVALIDITY");
				break;
			}
			send_uidset(rep, "EXPUNGED", c->guid, &delta.expunged);
			array_foreach(&delta.flags, group)
				send_flag_group(rep, c->guid, group);
			send_uidset(rep, "APPENDED", c->guid, &delta.appended);
			break;
		case XREP_DELTA_EXPIRED:
			e_debug(rep->client->event,
				"xreplicate: %s: cannot serve "
				"modseq %" PRIu64 ": %s",
				c->vname, o->modseq, error);
			set_numbers(res, &delta);
			send_resync(rep, c,
				    delta.uidvalidity != o->uidvalidity
					    ? "UIDVALIDITY"
					    : "EXPIRED");
			break;
		case XREP_DELTA_ERROR:
			e_error(rep->client->event,
				"xreplicate: %s: transaction log: %s",
				c->vname, error);
			*res = *o;
			res->vname = c->vname;
			res->subscribed = c->subscribed;
			send_resync(rep, c, "ERROR");
			break;
		}
	mailbox_free(&box);
	pool_unref(&pool);
	return TRUE;
}

/* Stage 2 for mailbox idx of the current listing. */
static void send_section(struct xrep_report *rep, unsigned int idx)
{
	static const guid_128_t unknown_guid = {0};
	const struct xrep_mailbox *c = array_idx(&rep->cur->boxes, idx);
	const struct xrep_mailbox *o, *same_name;
	struct xrep_mailbox res = *c;
	bool changed = TRUE, readable = TRUE, keep = TRUE;

	if (c->unreadable) {
		/* no STATUS; the position keeps what it had for it (added
		   in stage 3, see match_unreadable()) */
		o = rep->claim == NULL ? NULL : rep->claim[idx];
		send_unreadable(rep, o != NULL ? o->guid : unknown_guid,
				c->vname);
		return;
	}
	o = rep->old == NULL ? NULL
			     : xrep_snapshot_find_guid(rep->old, c->guid);
	if (rep->old == NULL) {
		/* POSITION: the cached numbers are what we report */
	} else if (o == NULL) {
		same_name = xrep_snapshot_find_name(rep->old, c->vname);
		if (same_name != NULL &&
		    xrep_snapshot_find_guid(rep->cur, same_name->guid) ==
			    NULL &&
		    !old_is_held(rep, same_name)) {
			/* deleted and created again under the same name */
			send_resync(rep, c, "RECREATED");
		} else {
			readable = send_changed_section(rep, NULL, c, &res,
							&keep);
		}
	} else if (o->uidvalidity != c->uidvalidity) {
		send_resync(rep, c, "UIDVALIDITY");
	} else if (o->modseq == c->modseq && o->uidnext == c->uidnext) {
		/* the numbers are still the ones read back then */
		res.verified_at = o->verified_at;
		changed = FALSE;
	} else {
		readable = send_changed_section(rep, o, c, &res, &keep);
	}

	if (readable &&
	    (changed || (rep->flags & XREP_REPORT_ALL_STATUS) != 0)) {
		/* STATUS always shows the numbers the new position records
		   for the mailbox */
		send_status(rep, &res);
	}
	if (!keep)
		return;
	res.ns = NULL;
	xrep_snapshot_add(rep->result, &res);
}

/* Stage 3: the old entries kept unchanged for unreadable mailboxes. */
static void add_held(struct xrep_report *rep)
{
	const struct xrep_mailbox *old;
	struct xrep_mailbox box;
	unsigned int i, count;

	if (rep->held_name == NULL)
		return;
	old = array_get(&rep->old->boxes, &count);
	for (i = 0; i < count; i++) {
		if (rep->held_name[i] == NULL)
			continue;
		box = old[i];
		box.vname = rep->held_name[i];
		xrep_snapshot_add(rep->result, &box);
	}
}

static int send_position(struct xrep_report *rep, const char **error_r)
{
	string_t *line = t_str_new(256);
	const char *error;

	str_append(line, "* XREPLICATE POSITION ");
	switch (xrep_position_make(rep->client->user, &rep->set, rep->result,
				   rep->prev_position, line, &error)) {
	case XREP_POSITION_OK:
		(void)client_send_line_next(rep->client, str_c(line));
		return 0;
	case XREP_POSITION_TOOBIG:
		rep->toobig = TRUE;
		break;
	case XREP_POSITION_FAILED:
		break;
	}
	return report_fail(rep, error, error_r);
}

int xrep_report_more(struct xrep_report *rep, const char **error_r)
{
	unsigned int count;
	int ret = 0;

	switch (rep->stage) {
	case STAGE_LIST:
		if (xrep_snapshot_build(rep->client->user, &rep->cur, error_r) <
		    0)
			return report_fail(rep, *error_r, error_r);
		if (xrep_position_would_be_refused(
			    &rep->set, rep->cur, rep->client->user->username)) {
			/* refused before anything is sent */
			rep->toobig = TRUE;
			return report_fail(
				rep,
				t_strdup_printf(
					"Position too large for an inline "
					"token (limit %zu bytes) and "
					"server-side positions are disabled",
					rep->set.inline_max),
				error_r);
		}
		rep->stage = rep->old == NULL ? STAGE_SECTIONS
					      : STAGE_MAILBOX_EVENTS;
		return xrep_report_more(rep, error_r);
	case STAGE_MAILBOX_EVENTS:
		match_unreadable(rep);
		send_mailbox_events(rep);
		rep->stage = STAGE_SECTIONS;
		/* fall through */
	case STAGE_SECTIONS:
		count = array_count(&rep->cur->boxes);
		while (rep->next_idx < count) {
			T_BEGIN
			{
				send_section(rep, rep->next_idx);
			}
			T_END;
			rep->next_idx++;
			if (pause_output(rep) && rep->next_idx < count)
				return 0;
		}
		rep->stage = STAGE_POSITION;
		/* fall through */
	case STAGE_POSITION:
		add_held(rep);
		/* result was filled from cur, which is sorted and unique,
		   and from old entries no longer listed under their names */
		if (xrep_snapshot_finish(rep->result) < 0)
			return report_fail(rep, "duplicate mailbox in result",
					   error_r);
		if (rep->emitted > 0 ||
		    (rep->flags & XREP_REPORT_SKIP_EMPTY) == 0)
			T_BEGIN
			{
				ret = send_position(rep, error_r);
			}
		T_END;
		if (ret < 0)
			return -1;
		rep->stage = STAGE_DONE;
		/* fall through */
	case STAGE_DONE:
		break;
	}
	return 1;
}
