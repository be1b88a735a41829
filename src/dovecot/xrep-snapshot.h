#ifndef XREP_SNAPSHOT_H
#define XREP_SNAPSHOT_H

/* A snapshot is the per-mailbox state an X-REPLICATE position stands for:
   for every selectable mailbox of the user's private namespaces, its GUID,
   name, subscription and (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ).

   Invariant relied upon by the whole plugin: the numbers in a snapshot never
   claim more than was reported to the client.  A snapshot built from the
   current state (xrep_snapshot_build) is only used to *detect* changes; the
   snapshot encoded into a new position token is assembled mailbox by mailbox
   from what the reporter actually sent (xrep-report.c). */

#include "guid.h"

struct mail_user;
struct mail_namespace;

struct xrep_mailbox {
	guid_128_t guid;
	/* Dovecot virtual name, UTF-8, with the namespace's separator. */
	const char *vname;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t modseq;
	/* When these numbers were read from Dovecot (UNIX time).  A log
	   file that recreated the index after this time means the history
	   the numbers belong to is gone (see xrep-delta.c). */
	time_t verified_at;
	bool subscribed;
	/* Only in snapshots built from the live mailbox list: the listing
	   returned the mailbox as selectable, but its status could not be
	   read (permissions, I/O error, deleted meanwhile).  guid is then the
	   GUID Dovecot could still tell, or all zeros; the numbers are zero.
	   Such entries are not in the GUID index and never in a position. */
	bool unreadable;
	/* Only set in snapshots built from the live mailbox list. */
	struct mail_namespace *ns;
};
ARRAY_DEFINE_TYPE(xrep_mailbox, struct xrep_mailbox);

struct xrep_snapshot {
	pool_t pool;
	/* Sorted by vname (strcmp order), names unique. */
	ARRAY_TYPE(xrep_mailbox) boxes;
	/* Indexes into boxes, sorted by GUID; built by xrep_snapshot_finish().
	   Unreadable entries are left out. */
	ARRAY(unsigned int) by_guid;
	/* xrep_snapshot_finish() succeeded and nothing was added since. */
	bool finished;
};

struct xrep_snapshot *xrep_snapshot_new(void);
void xrep_snapshot_free(struct xrep_snapshot **snap);

/* A finished deep copy (namespace pointers dropped). */
struct xrep_snapshot *xrep_snapshot_dup(const struct xrep_snapshot *snap);

/* Append a copy of box (strings are copied into the snapshot's pool). */
void xrep_snapshot_add(struct xrep_snapshot *snap,
		       const struct xrep_mailbox *box);
/* Sort by name and build the GUID index.  Returns -1 if two mailboxes share
   a name, or two readable ones a GUID (a corrupted token, or a broken mail
   store). */
int xrep_snapshot_finish(struct xrep_snapshot *snap);

/* Readable mailboxes only. */
const struct xrep_mailbox *
xrep_snapshot_find_guid(const struct xrep_snapshot *snap,
			const guid_128_t guid);
const struct xrep_mailbox *
xrep_snapshot_find_name(const struct xrep_snapshot *snap, const char *vname);

/* List the user's private mailboxes with their status as Dovecot caches it
   (mailbox list index: no mailbox is opened unless the cache lacks data).
   Every mailbox the listing returns as selectable is in the snapshot: one
   whose status cannot be read is marked unreadable (never left out, which
   would read as a deletion).  Returns 0, or -1 with *error_r set if the
   listing itself failed. */
int xrep_snapshot_build(struct mail_user *user, struct xrep_snapshot **snap_r,
			const char **error_r);

#endif
