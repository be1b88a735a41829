#ifndef XREP_REPORT_H
#define XREP_REPORT_H

/* The reporter compares a position (old snapshot) with the mailboxes now and
   writes the untagged XREPLICATE responses for the difference, in the order
   man/twinbox-xreplicate.7 specifies:

     1. mailbox events for the whole account (DELETED, CREATED, RENAMED,
	SUBSCRIBED, UNSUBSCRIBED)
     2. one section per existing mailbox, in name order: RESYNC, or
	EXPUNGED / FLAGS / APPENDED; then its STATUS (always in CHANGES;
	in WATCH batches only for mailboxes that changed); a mailbox that
	cannot be read gets RESYNC UNREADABLE alone
     3. POSITION <token> for exactly what 1 and 2 reported (an inline token
	or a handle, xrep-position.h).

   It is resumable: when the client's output buffer fills it returns 0 at a
   mailbox boundary and continues on the next call, so a large account never
   buffers more than one mailbox's delta in memory. */

#include "xrep-snapshot.h"

struct client;
struct xrep_report;

enum xrep_report_flags {
	/* STATUS for every mailbox, changed or not (CHANGES, POSITION). */
	XREP_REPORT_ALL_STATUS = 0x01,
	/* Emit nothing at all, not even POSITION, when nothing changed
	   (WATCH wake-ups that found nothing). */
	XREP_REPORT_SKIP_EMPTY = 0x02,
};

/* old == NULL reports no differences: only STATUS lines and the position of
   the current state (the POSITION command).  old is owned by the report. */
struct xrep_report *xrep_report_init(struct client *client,
				     struct xrep_snapshot *old,
				     enum xrep_report_flags flags);
/* The position text the command was given: a handle whose stored position
   equals the result is handed out again. */
void xrep_report_set_prev_position(struct xrep_report *rep, const char *text);
/* 1 = finished, 0 = output buffer full (call again when it drains),
   -1 = failed (nothing after the already sent lines is valid; *error_r,
   valid until deinit). */
int xrep_report_more(struct xrep_report *rep, const char **error_r);
/* After more() returned -1: the position would be too large to hand out
   (inline too long, server-side positions off): [XREPLICATE-TOOBIG]. */
bool xrep_report_toobig(const struct xrep_report *rep);
/* After more() returned 1: the snapshot the emitted POSITION stands for.
   Ownership moves to the caller. */
struct xrep_snapshot *xrep_report_take_result(struct xrep_report *rep);
void xrep_report_deinit(struct xrep_report **rep);

#endif
