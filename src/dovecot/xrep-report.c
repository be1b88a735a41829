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
#include "xrep-token.h"
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

	struct xrep_snapshot *old;    /* NULL for POSITION */
	struct xrep_snapshot *cur;    /* listing, cheap cached status */
	struct xrep_snapshot *result; /* what has been reported */
	unsigned int next_idx;        /* next cur mailbox for STAGE_SECTIONS */
	unsigned int emitted;         /* lines emitted, POSITION excluded */
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
	return rep;
}

void xrep_report_deinit(struct xrep_report **_rep)
{
	struct xrep_report *rep = *_rep;

	*_rep = NULL;
	xrep_snapshot_free(&rep->old);
	xrep_snapshot_free(&rep->cur);
	xrep_snapshot_free(&rep->result);
	i_free(rep);
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

/* Stage 1.  Renames are by GUID: Dovecot keeps a mailbox's GUID across
   RENAME, while DELETE + CREATE of the same name yields a new one. */
static void send_mailbox_events(struct xrep_report *rep)
{
	const struct xrep_mailbox *o, *c;

	array_foreach(&rep->old->boxes, o) T_BEGIN
	{
		if (xrep_snapshot_find_guid(rep->cur, o->guid) == NULL)
			send_mailbox_event(rep, o->guid, "DELETED", o->vname,
					   NULL);
	}
	T_END;
	array_foreach(&rep->cur->boxes, c) T_BEGIN
	{
		o = xrep_snapshot_find_guid(rep->old, c->guid);
		if (o == NULL)
			send_mailbox_event(rep, c->guid, "CREATED", c->vname,
					   NULL);
		else if (strcmp(o->vname, c->vname) != 0)
			send_mailbox_event(rep, c->guid, "RENAMED", o->vname,
					   c->vname);
		if ((o == NULL && c->subscribed) ||
		    (o != NULL && o->subscribed != c->subscribed)) {
			send_mailbox_event(rep, c->guid,
					   c->subscribed ? "SUBSCRIBED"
							 : "UNSUBSCRIBED",
					   c->vname, NULL);
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
   Fills res with the numbers the next position may claim. */
static void send_changed_section(struct xrep_report *rep,
				 const struct xrep_mailbox *o,
				 const struct xrep_mailbox *c,
				 struct xrep_mailbox *res)
{
	pool_t pool = pool_alloconly_create("xreplicate delta", 4096);
	const struct xrep_flag_group *group;
	struct xrep_delta delta;
	struct mailbox *box;
	const char *error;

	box = mailbox_alloc(c->ns->list, c->vname, MAILBOX_FLAG_READONLY);
	if (xrep_delta_open(box) < 0) {
		i_error("xreplicate: %s: %s", c->vname,
			mailbox_get_last_internal_error(box, NULL));
		/* keep the old numbers: the next call retries */
		send_resync(rep, c, "ERROR");
		*res = *o;
		res->vname = c->vname;
		res->subscribed = c->subscribed;
	} else if (o == NULL) {
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
			i_error("xreplicate: %s: transaction log: %s", c->vname,
				error);
			*res = *o;
			res->vname = c->vname;
			res->subscribed = c->subscribed;
			send_resync(rep, c, "ERROR");
			break;
		}
	mailbox_free(&box);
	pool_unref(&pool);
}

/* Stage 2 for one mailbox c of the current listing. */
static void send_section(struct xrep_report *rep, const struct xrep_mailbox *c)
{
	const struct xrep_mailbox *o, *same_name;
	struct xrep_mailbox res = *c;
	bool changed = TRUE;

	o = rep->old == NULL ? NULL
			     : xrep_snapshot_find_guid(rep->old, c->guid);
	if (rep->old == NULL) {
		/* POSITION: the cached numbers are what we report */
	} else if (o == NULL) {
		same_name = xrep_snapshot_find_name(rep->old, c->vname);
		if (same_name != NULL &&
		    xrep_snapshot_find_guid(rep->cur, same_name->guid) ==
			    NULL) {
			/* deleted and created again under the same name */
			send_resync(rep, c, "RECREATED");
		} else {
			send_changed_section(rep, NULL, c, &res);
		}
	} else if (o->uidvalidity != c->uidvalidity) {
		send_resync(rep, c, "UIDVALIDITY");
	} else if (o->modseq == c->modseq && o->uidnext == c->uidnext) {
		/* the numbers are still the ones read back then */
		res.verified_at = o->verified_at;
		changed = FALSE;
	} else {
		send_changed_section(rep, o, c, &res);
	}

	if (changed || (rep->flags & XREP_REPORT_ALL_STATUS) != 0) {
		/* STATUS always shows the numbers the new position records
		   for the mailbox */
		send_status(rep, &res);
	}
	res.ns = NULL;
	xrep_snapshot_add(rep->result, &res);
}

static void send_position(struct xrep_report *rep)
{
	string_t *line = t_str_new(256);

	str_append(line, "* XREPLICATE POSITION ");
	xrep_token_encode(rep->result, rep->client->user->username, line);
	(void)client_send_line_next(rep->client, str_c(line));
}

int xrep_report_more(struct xrep_report *rep, const char **error_r)
{
	const struct xrep_mailbox *boxes;
	unsigned int count;

	switch (rep->stage) {
	case STAGE_LIST:
		if (xrep_snapshot_build(rep->client->user, &rep->cur, error_r) <
		    0)
			return -1;
		rep->stage = rep->old == NULL ? STAGE_SECTIONS
					      : STAGE_MAILBOX_EVENTS;
		return xrep_report_more(rep, error_r);
	case STAGE_MAILBOX_EVENTS:
		send_mailbox_events(rep);
		rep->stage = STAGE_SECTIONS;
		/* fall through */
	case STAGE_SECTIONS:
		boxes = array_get(&rep->cur->boxes, &count);
		while (rep->next_idx < count) {
			T_BEGIN
			{
				send_section(rep, &boxes[rep->next_idx]);
			}
			T_END;
			rep->next_idx++;
			if (pause_output(rep) && rep->next_idx < count)
				return 0;
		}
		rep->stage = STAGE_POSITION;
		/* fall through */
	case STAGE_POSITION:
		/* result was filled from cur, which is sorted and unique */
		if (xrep_snapshot_finish(rep->result) < 0) {
			*error_r = "duplicate mailbox in result";
			return -1;
		}
		if (rep->emitted > 0 ||
		    (rep->flags & XREP_REPORT_SKIP_EMPTY) == 0)
			T_BEGIN
			{
				send_position(rep);
			}
		T_END;
		rep->stage = STAGE_DONE;
		/* fall through */
	case STAGE_DONE:
		break;
	}
	return 1;
}
