#ifndef XREP_DELTA_H
#define XREP_DELTA_H

/* Exact per-mailbox changes between a position (HIGHESTMODSEQ, UIDNEXT) and
   now, read from the mailbox's Dovecot transaction log (dovecot.index.log and
   dovecot.index.log.2).  Every writer of the mailbox, with or without this
   plugin (imap, lda/lmtp, doveadm, dsync, other processes), goes through that
   log, so nothing committed can be missed; what the log no longer holds is
   reported as EXPIRED and never guessed.

   How a flag delta is made exact: the log states, per record, the flags a
   transaction added and removed.  A FLAGS replace is logged as "add the new
   set, remove everything else", so its remove mask names flags that were
   never set; and Dovecot's internal bits (0x40 backend, 0x80 dirty) ride
   along.  We (1) keep only the five IMAP system flags, (2) fold all records
   per UID in log order (a later add cancels an earlier remove and vice
   versa), (3) keep an add only if the flag is set now and a remove only if it
   is unset now (current index record).  What remains can still name a flag
   that was already in that state at the position (e.g. a replace that
   re-asserted \Seen), never a change that did not happen in the other
   direction.  Keyword records are per keyword and exact. */

#include "seq-range-array.h"
#include "mail-types.h"

struct mailbox;

enum xrep_delta_result {
	XREP_DELTA_OK = 0,
	/* The log no longer reaches back to the position (rotated away,
	   index rebuilt), or the position is ahead of the mailbox. */
	XREP_DELTA_EXPIRED,
	XREP_DELTA_ERROR,
};

/* One FLAGS line: the same change at the same MODSEQ for a set of UIDs. */
struct xrep_flag_group {
	ARRAY_TYPE(seq_range) uids;
	uint64_t modseq;
	enum mail_flags add, remove;
	/* NULL-terminated, sorted keyword names */
	const char *const *kw_add, *const *kw_remove;
};

struct xrep_delta {
	ARRAY_TYPE(seq_range) expunged;
	ARRAY_TYPE(seq_range) appended;
	ARRAY(struct xrep_flag_group) flags;

	/* The state the delta brings the client to (the mailbox view the
	   scan read); this is what the next position records. */
	uint32_t uidvalidity, uidnext;
	uint64_t modseq;
};

/* Open (read-only, CONDSTORE enabled) and sync a mailbox of the user.  Returns
   0, or -1 with the storage error available via the box. */
int xrep_delta_open(struct mailbox *box);

/* Changes since (since_modseq, since_uidnext), numbers read from Dovecot at
   since_time, in an opened box.  Allocations
   come from pool. */
enum xrep_delta_result
xrep_delta_scan(struct mailbox *box, uint64_t since_modseq,
		uint32_t since_uidnext, time_t since_time, pool_t pool,
		struct xrep_delta *delta_r, const char **error_r);

/* Only the current state, plus all existing UIDs as "appended" if all_uids
   (used for a mailbox the position did not know). */
void xrep_delta_current(struct mailbox *box, bool all_uids, pool_t pool,
			struct xrep_delta *delta_r);

#endif
