/* X-REPLICATE in the sync engine: what a reply (store/xrep.c) can replace.
 *
 * Discovery: the reply's STATUS lines are the listing (one command for the account).
 * Events: renames and deletions by mailbox GUID, when the reply is relative to the
 * position stored by the last complete run. Deltas: a mailbox's EXPUNGED and FLAGS lines
 * replace the SELECT of the first pass, but only where the state's numbers for the mailbox
 * equal those the stored position held (tb_state_xrep_mailbox): the server's "+add
 * -remove" is relative to that position, and applying it to any other base would be wrong.
 * Everything else (RESYNC, new messages, no usable number) goes through QRESYNC. */
#ifndef TWINBOX_SYNC_XR_H
#define TWINBOX_SYNC_XR_H

#include "protocol/mboxname.h"
#include "store/store.h"
#include "twinbox/state.h"

#include <stdbool.h>

/* Whether the reply reports event (enum tb_xrep_event) for the canonical name (for
 * RENAMED: the old one). */
bool tb_xr_event(const struct tb_xrep_reply *r, const struct tb_ns *ns, int event,
                 const char *canon);

/* The canonical new name of a mailbox the reply reports renamed from `canon`, or NULL;
 * malloc'd. */
char *tb_xr_renamed_to(const struct tb_xrep_reply *r, const struct tb_ns *ns, const char *canon);

/* Builds a tb_delta for side `side` from a section whose base is the state's: changed
 * messages get base flags + ADD - REMOVE. False (out left empty) when the section has
 * new messages (their bodies need a SELECT anyway) or names a UID the state has not
 * paired. */
bool tb_xr_delta(const struct tb_xrep_section *sec, int side, const struct tb_state_msg *pairs,
                 size_t n_pairs, struct tb_delta *out);

/* One line for the log: the mailboxes the reply could not serve, with the reasons; NULL
 * when it served them all. malloc'd. */
char *tb_xr_resync_summary(const struct tb_xrep_reply *r);

#endif
