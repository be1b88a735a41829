/* Snapshot of the user's mailbox list with cheap per-mailbox status. */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mailbox-list-iter.h"
#include "xrep-snapshot.h"

#include <stdlib.h>

struct xrep_snapshot *xrep_snapshot_new(void)
{
	pool_t pool = pool_alloconly_create("xreplicate snapshot", 4096);
	struct xrep_snapshot *snap = p_new(pool, struct xrep_snapshot, 1);

	snap->pool = pool;
	p_array_init(&snap->boxes, pool, 32);
	p_array_init(&snap->by_guid, pool, 32);
	return snap;
}

void xrep_snapshot_free(struct xrep_snapshot **_snap)
{
	struct xrep_snapshot *snap = *_snap;

	if (snap == NULL)
		return;
	*_snap = NULL;
	pool_unref(&snap->pool);
}

void xrep_snapshot_add(struct xrep_snapshot *snap,
		       const struct xrep_mailbox *box)
{
	struct xrep_mailbox *copy = array_append_space(&snap->boxes);

	*copy = *box;
	copy->vname = p_strdup(snap->pool, box->vname);
	snap->finished = FALSE;
}

struct xrep_snapshot *xrep_snapshot_dup(const struct xrep_snapshot *snap)
{
	struct xrep_snapshot *copy = xrep_snapshot_new();
	const struct xrep_mailbox *box;
	struct xrep_mailbox *dest;

	array_foreach(&snap->boxes, box)
	{
		dest = array_append_space(&copy->boxes);
		*dest = *box;
		dest->vname = p_strdup(copy->pool, box->vname);
		dest->ns = NULL;
	}
	array_append_array(&copy->by_guid, &snap->by_guid);
	copy->finished = snap->finished;
	return copy;
}

static int xrep_mailbox_name_cmp(const struct xrep_mailbox *a,
				 const struct xrep_mailbox *b)
{
	return strcmp(a->vname, b->vname);
}

/* qsort() has no context argument: the GUID index sort needs the box array. */
static const struct xrep_mailbox *sort_boxes;

static int xrep_guid_idx_cmp(const void *p1, const void *p2)
{
	const unsigned int *i1 = p1, *i2 = p2;

	return guid_128_cmp(sort_boxes[*i1].guid, sort_boxes[*i2].guid);
}

int xrep_snapshot_finish(struct xrep_snapshot *snap)
{
	const struct xrep_mailbox *boxes;
	unsigned int i, count, n, *idx;

	array_sort(&snap->boxes, xrep_mailbox_name_cmp);
	boxes = array_get(&snap->boxes, &count);
	for (i = 1; i < count; i++) {
		if (strcmp(boxes[i - 1].vname, boxes[i].vname) == 0)
			return -1;
	}

	array_clear(&snap->by_guid);
	for (i = 0; i < count; i++) {
		if (!boxes[i].unreadable)
			array_push_back(&snap->by_guid, &i);
	}
	idx = array_get_modifiable(&snap->by_guid, &n);
	if (n > 1) {
		sort_boxes = boxes;
		qsort(idx, n, sizeof(*idx), xrep_guid_idx_cmp);
		sort_boxes = NULL;
		for (i = 1; i < n; i++) {
			if (guid_128_cmp(boxes[idx[i - 1]].guid,
					 boxes[idx[i]].guid) == 0)
				return -1;
		}
	}
	snap->finished = TRUE;
	return 0;
}

const struct xrep_mailbox *
xrep_snapshot_find_guid(const struct xrep_snapshot *snap, const guid_128_t guid)
{
	const struct xrep_mailbox *boxes;
	const unsigned int *idx;
	unsigned int count, lo = 0, hi, mid;
	int cmp;

	if (!snap->finished)
		return NULL; /* not finished: treat as empty */
	boxes = array_get(&snap->boxes, &count);
	idx = array_get(&snap->by_guid, &hi);
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		cmp = guid_128_cmp(guid, boxes[idx[mid]].guid);
		if (cmp == 0)
			return &boxes[idx[mid]];
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct xrep_mailbox *
xrep_snapshot_find_name(const struct xrep_snapshot *snap, const char *vname)
{
	const struct xrep_mailbox *boxes;
	unsigned int count, lo = 0, hi, mid;
	int cmp;

	boxes = array_get(&snap->boxes, &count);
	hi = count;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		cmp = strcmp(vname, boxes[mid].vname);
		if (cmp == 0)
			return &boxes[mid];
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Status of one listed mailbox.  The fast path reads the mailbox list index
   only.  A mailbox opens (index files, never message bodies) only when the
   cache lacks data: no UIDVALIDITY yet, or HIGHESTMODSEQ <= 1, which is what
   Dovecot reports while modseq tracking is still off for the index; we turn
   it on (CONDSTORE), because positions are expressed in modseqs and the
   transaction log carries modseqs only once tracking is enabled.
   Returns 0 if filled, -1 if the mailbox cannot be read (error in box). */
static int xrep_mailbox_get_state(struct mailbox *box, struct xrep_mailbox *out)
{
	const enum mailbox_status_items items =
		STATUS_UIDVALIDITY | STATUS_UIDNEXT | STATUS_HIGHESTMODSEQ;
	struct mailbox_metadata metadata;
	struct mailbox_status status;

	if (mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &metadata) < 0)
		return -1;
	/* known from here on, even if the status cannot be read */
	memcpy(out->guid, metadata.guid, sizeof(out->guid));
	if (mailbox_get_status(box, items, &status) < 0)
		return -1;
	if (status.uidvalidity == 0 || status.highest_modseq <= 1) {
		if (mailbox_enable(box, MAILBOX_FEATURE_CONDSTORE) < 0 ||
		    mailbox_sync(box, 0) < 0 ||
		    mailbox_get_status(box, items, &status) < 0)
			return -1;
	}
	out->uidvalidity = status.uidvalidity;
	out->uidnext = status.uidnext;
	out->modseq = status.highest_modseq;
	out->verified_at = ioloop_time;
	return 0;
}

/* A listed mailbox whose status cannot be read stays in the snapshot,
   marked unreadable: left out, it would read as deleted. */
static void xrep_mailbox_set_unreadable(struct mail_user *user,
					struct mailbox *box,
					struct xrep_mailbox *mbox)
{
	enum mail_error error;
	const char *errstr = mailbox_get_last_internal_error(box, &error);

	mbox->unreadable = TRUE;
	mbox->uidvalidity = 0;
	mbox->uidnext = 0;
	mbox->modseq = 0;
	mbox->verified_at = 0;
	if (error == MAIL_ERROR_NOTFOUND) {
		/* deleted while listing: the next reply reports it */
		e_debug(user->event, "xreplicate: %s: %s", mbox->vname,
			errstr);
	} else {
		e_warning(user->event,
			  "xreplicate: %s: cannot read mailbox, "
			  "reported UNREADABLE: %s",
			  mbox->vname, errstr);
	}
}

/* Mark every readable mailbox that shares its GUID with another one
   unreadable, of unknown identity. */
static void xrep_snapshot_unread_guid_conflicts(struct mail_user *user,
						struct xrep_snapshot *snap)
{
	struct xrep_mailbox *boxes;
	ARRAY(unsigned int) idx;
	const unsigned int *ip;
	unsigned int i, j, count, n;

	boxes = array_get_modifiable(&snap->boxes, &count);
	t_array_init(&idx, count + 1);
	for (i = 0; i < count; i++) {
		if (!boxes[i].unreadable)
			array_push_back(&idx, &i);
	}
	ip = array_get_modifiable(&idx, &n);
	if (n > 1) {
		sort_boxes = boxes;
		qsort(array_front_modifiable(&idx), n, sizeof(*ip),
		      xrep_guid_idx_cmp);
		sort_boxes = NULL;
	}
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n; j++) {
			if (guid_128_cmp(boxes[ip[i]].guid,
					 boxes[ip[j]].guid) != 0)
				break;
		}
		if (j - i < 2)
			continue;
		e_warning(user->event,
			  "xreplicate: %u mailboxes share the GUID %s "
			  "(%s, ...): reported UNREADABLE",
			  j - i, guid_128_to_string(boxes[ip[i]].guid),
			  boxes[ip[i]].vname);
		for (; i < j; i++) {
			boxes[ip[i]].unreadable = TRUE;
			guid_128_empty(boxes[ip[i]].guid);
			boxes[ip[i]].uidvalidity = 0;
			boxes[ip[i]].uidnext = 0;
			boxes[ip[i]].modseq = 0;
			boxes[ip[i]].verified_at = 0;
		}
	}
}

/* One selectable mailbox of the listing, readable or not. */
static void xrep_snapshot_add_listed(struct mail_user *user,
				     struct xrep_snapshot *snap,
				     struct mail_namespace *ns,
				     const char *vname, bool subscribed)
{
	struct xrep_mailbox mbox;
	struct mailbox *box;

	i_zero(&mbox);
	mbox.vname = vname;
	mbox.ns = ns;
	mbox.subscribed = subscribed;
	box = mailbox_alloc(ns->list, vname, MAILBOX_FLAG_READONLY);
	if (xrep_mailbox_get_state(box, &mbox) < 0)
		xrep_mailbox_set_unreadable(user, box, &mbox);
	xrep_snapshot_add(snap, &mbox);
	mailbox_free(&box);
}

int xrep_snapshot_build(struct mail_user *user, struct xrep_snapshot **snap_r,
			const char **error_r)
{
	static const char *const patterns[] = {"*", NULL};
	const enum mailbox_list_iter_flags flags =
		MAILBOX_LIST_ITER_SKIP_ALIASES |
		MAILBOX_LIST_ITER_NO_AUTO_BOXES |
		MAILBOX_LIST_ITER_RETURN_SUBSCRIBED;
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	struct xrep_snapshot *snap;
	struct mailbox *box;
	struct mail_namespace *inbox_ns;
	enum mail_error error;
	char *errstr = NULL; /* heap: outlives the data stack frame */
	bool inbox_listed = FALSE;
	int ret = 0;

	/* A fresh account's INBOX does not exist on disk until something
	   opens it, and is then not listed: open it (which creates it, as
	   any client's SELECT would), so the listing never lacks the one
	   mailbox IMAP says always exists. */
	inbox_ns = mail_namespace_find_inbox(user->namespaces);
	if (inbox_ns != NULL) {
		box = mailbox_alloc(inbox_ns->list, "INBOX", 0);
		(void)mailbox_open(box);
		mailbox_free(&box);
	}

	snap = xrep_snapshot_new();
	iter = mailbox_list_iter_init_namespaces(
		user->namespaces, patterns, MAIL_NAMESPACE_TYPE_PRIVATE, flags);
	while ((info = mailbox_list_iter_next(iter)) != NULL)
		T_BEGIN
		{
			if ((info->flags &
			     (MAILBOX_NONEXISTENT | MAILBOX_NOSELECT)) == 0) {
				if (info->ns == inbox_ns &&
				    strcmp(info->vname, "INBOX") == 0)
					inbox_listed = TRUE;
				xrep_snapshot_add_listed(user, snap, info->ns,
							 info->vname,
							 (info->flags &
							  MAILBOX_SUBSCRIBED) != 0);
			}
		}
	T_END;
	if (!inbox_listed && inbox_ns != NULL)
		T_BEGIN
		{
			/* The INBOX that was just created is not in the
			   mailbox list index yet (listed from the next
			   listing on): it exists, so it is in the snapshot. */
			enum mailbox_existence existence;

			box = mailbox_alloc(inbox_ns->list, "INBOX",
					    MAILBOX_FLAG_READONLY);
			if (mailbox_exists(box, FALSE, &existence) == 0 &&
			    existence == MAILBOX_EXISTENCE_SELECT) {
				xrep_snapshot_add_listed(
					user, snap, inbox_ns, "INBOX",
					mailbox_is_subscribed(box));
			}
			mailbox_free(&box);
		}
	T_END;
	if (mailbox_list_iter_deinit(&iter) < 0) {
		errstr = i_strdup(mailbox_list_get_last_internal_error(
			user->namespaces->list, &error));
		ret = -1;
	}
	if (ret == 0 && xrep_snapshot_finish(snap) < 0) {
		/* Two mailboxes with one GUID (Dovecot's dsync repairs
		   these): neither can be told apart from the other, so both
		   are reported unreadable rather than with a wrong history,
		   and not the whole command fails. */
		xrep_snapshot_unread_guid_conflicts(user, snap);
		if (xrep_snapshot_finish(snap) < 0) {
			errstr = i_strdup("Duplicate mailbox names in the "
					  "mailbox list");
			ret = -1;
		}
	}
	if (ret < 0) {
		*error_r = t_strdup(errstr);
		i_free(errstr);
		xrep_snapshot_free(&snap);
		return -1;
	}
	*snap_r = snap;
	return 0;
}
