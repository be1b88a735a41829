/* Per-mailbox deltas from Dovecot's transaction log (see xrep-delta.h). */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "mail-storage-private.h"
#include "mail-index-private.h"
#include "mail-index-view-private.h"
#include "mail-index-modseq.h"
#include "mail-transaction-log-private.h"
#include "xrep-delta.h"

/* Accumulated change of one UID over the scanned log range. */
struct uid_change {
	/* the last operation on each flag in the range: added or removed */
	uint8_t add, remove;
	/* keyword index (into scan.kw_names) +1, negated for a removal;
	   one entry per keyword, the last operation wins */
	ARRAY(int) kw;
};

struct delta_scan {
	pool_t pool;
	struct mail_index_view *view;
	uint32_t since_uidnext;
	struct xrep_delta *delta;

	HASH_TABLE(void *, struct uid_change *) changes;
	/* Keyword names seen in the log, interned */
	ARRAY_TYPE(const_string) kw_names;
	/* UIDs with a KEYWORD_RESET (not written by 2.3 itself, but valid
	   in the format): every keyword they lack now counts as removed. */
	ARRAY_TYPE(seq_range) kw_reset;
};

int xrep_delta_open(struct mailbox *box)
{
	/* CONDSTORE makes the index track modseqs; positions need them. */
	if (mailbox_open(box) < 0 ||
	    mailbox_enable(box, MAILBOX_FEATURE_CONDSTORE) < 0)
		return -1;
	/* A full sync picks up changes Dovecot has not indexed yet (e.g. mail
	   dropped into a Maildir by another program) so they enter the log. */
	return mailbox_sync(box, 0);
}

static void delta_init(struct xrep_delta *delta, pool_t pool)
{
	i_zero(delta);
	p_array_init(&delta->expunged, pool, 8);
	p_array_init(&delta->appended, pool, 8);
	p_array_init(&delta->flags, pool, 8);
}

static void delta_fill_state(struct mail_index_view *view,
			     struct xrep_delta *delta)
{
	const struct mail_index_header *hdr = mail_index_get_header(view);

	delta->uidvalidity = hdr->uid_validity;
	delta->uidnext = hdr->next_uid;
	delta->modseq = mail_index_modseq_get_highest(view);
	if (delta->modseq == 0)
		delta->modseq = 1; /* as STATUS reports it */
}

/* Existing UIDs in [uid1, uid2] as seq_ranges; cheap: one binary search. */
static void add_existing_uids(struct mail_index_view *view, uint32_t uid1,
			      uint32_t uid2, ARRAY_TYPE(seq_range) * dest)
{
	uint32_t seq, seq1, seq2, uid;

	if (uid1 > uid2 ||
	    !mail_index_lookup_seq_range(view, uid1, uid2, &seq1, &seq2))
		return;
	for (seq = seq1; seq <= seq2; seq++) {
		mail_index_lookup_uid(view, seq, &uid);
		seq_range_array_add(dest, uid);
	}
}

void xrep_delta_current(struct mailbox *box, bool all_uids, pool_t pool,
			struct xrep_delta *delta_r)
{
	delta_init(delta_r, pool);
	delta_fill_state(box->view, delta_r);
	if (all_uids)
		add_existing_uids(box->view, 1, (uint32_t)-1,
				  &delta_r->appended);
}

static struct uid_change *change_get(struct delta_scan *scan, uint32_t uid)
{
	struct uid_change *change;

	change = hash_table_lookup(scan->changes, POINTER_CAST(uid));
	if (change == NULL) {
		change = p_new(scan->pool, struct uid_change, 1);
		hash_table_insert(scan->changes, POINTER_CAST(uid), change);
	}
	return change;
}

/* The UIDs a log record names are narrowed to those the client knew (below
   the position's UIDNEXT) and that still exist; existing messages are found
   by sequence, so a sparse but wide UID range costs only what exists.
   Returns FALSE if none. */
static bool known_seq_range(struct delta_scan *scan, uint32_t uid1,
			    uint32_t uid2, uint32_t *seq1_r, uint32_t *seq2_r)
{
	if (scan->since_uidnext <= 1)
		uid2 = 0;
	else if (uid2 >= scan->since_uidnext)
		uid2 = scan->since_uidnext - 1;
	if (uid1 == 0)
		uid1 = 1;
	if (uid1 > uid2 || !mail_index_lookup_seq_range(scan->view, uid1, uid2,
							seq1_r, seq2_r)) {
		*seq1_r = 1;
		*seq2_r = 0;
		return FALSE;
	}
	return TRUE;
}

static void scan_flag_update(struct delta_scan *scan, const void *data,
			     uint32_t size)
{
	const struct mail_transaction_flag_update *rec = data, *end;
	struct uid_change *change;
	uint8_t add, remove;
	uint32_t uid, seq, seq1, seq2;

	end = CONST_PTR_OFFSET(data, size - size % sizeof(*rec));
	for (; rec < end; rec++) {
		/* only the IMAP system flags; 0x40/0x80 are Dovecot's own */
		add = rec->add_flags & MAIL_FLAGS_NONRECENT;
		remove = rec->remove_flags & MAIL_FLAGS_NONRECENT;
		if (add == 0 && remove == 0)
			continue; /* modseq-only or internal-bit update */
		if (!known_seq_range(scan, rec->uid1, rec->uid2, &seq1, &seq2))
			continue;
		for (seq = seq1; seq <= seq2; seq++) {
			mail_index_lookup_uid(scan->view, seq, &uid);
			change = change_get(scan, uid);
			/* No inference about the flag's state before this
			   record: Dovecot drops no-op flag updates
			   (AVOID_FLAG_UPDATES) only against the writer's own
			   view, which "is reliable only when syncing"
			   (lib-index), so a logged +X does not prove X was
			   clear.  The last operation per flag, filtered
			   against the current flags, never misses a change. */
			change->add = (change->add & ~remove) | add;
			change->remove = (change->remove & ~add) | remove;
		}
	}
}

static int kw_intern(struct delta_scan *scan, const char *name)
{
	const char *const *names;
	unsigned int i, count;

	names = array_get(&scan->kw_names, &count);
	for (i = 0; i < count; i++) {
		if (strcmp(names[i], name) == 0)
			return (int)i + 1;
	}
	name = p_strdup(scan->pool, name);
	array_push_back(&scan->kw_names, &name);
	return (int)count + 1;
}

static void change_set_kw(struct delta_scan *scan, struct uid_change *change,
			  int kw)
{
	int *op;

	if (!array_is_created(&change->kw))
		p_array_init(&change->kw, scan->pool, 4);
	array_foreach_modifiable(&change->kw, op)
	{
		if (*op == kw || *op == -kw) {
			*op = kw;
			return;
		}
	}
	array_push_back(&change->kw, &kw);
}

static void scan_keyword_update(struct delta_scan *scan, const void *data,
				uint32_t size)
{
	const struct mail_transaction_keyword_update *rec = data;
	const uint32_t *uids, *end;
	size_t uids_offset;
	uint32_t uid, seq, seq1, seq2;
	int kw;

	if (size < sizeof(*rec))
		return;
	uids_offset = sizeof(*rec) + rec->name_size;
	if ((uids_offset % 4) != 0)
		uids_offset += 4 - (uids_offset % 4);
	if (uids_offset > size || rec->name_size == 0 ||
	    (rec->modify_type != MODIFY_ADD &&
	     rec->modify_type != MODIFY_REMOVE))
		return; /* lib-index validated the log; be defensive anyway */

	kw = kw_intern(scan, t_strndup(rec + 1, rec->name_size));
	if (rec->modify_type == MODIFY_REMOVE)
		kw = -kw;
	uids = CONST_PTR_OFFSET(rec, uids_offset);
	end = CONST_PTR_OFFSET(rec, size - (size - uids_offset) % 8);
	for (; uids + 1 < end; uids += 2) {
		if (!known_seq_range(scan, uids[0], uids[1], &seq1, &seq2))
			continue;
		for (seq = seq1; seq <= seq2; seq++) {
			mail_index_lookup_uid(scan->view, seq, &uid);
			change_set_kw(scan, change_get(scan, uid), kw);
		}
	}
}

static void scan_keyword_reset(struct delta_scan *scan, const void *data,
			       uint32_t size)
{
	const struct mail_transaction_keyword_reset *rec = data, *end;
	struct uid_change *change;
	uint32_t uid, seq, seq1, seq2;

	end = CONST_PTR_OFFSET(data, size - size % sizeof(*rec));
	for (; rec < end; rec++) {
		if (!known_seq_range(scan, rec->uid1, rec->uid2, &seq1, &seq2))
			continue;
		for (seq = seq1; seq <= seq2; seq++) {
			mail_index_lookup_uid(scan->view, seq, &uid);
			change = change_get(scan, uid);
			if (array_is_created(&change->kw))
				array_clear(&change->kw);
			seq_range_array_add(&scan->kw_reset, uid);
		}
	}
}

/* Only EXTERNAL expunge records are expunges that happened; the others are
   requests a later sync carries out (or refuses). */
static void scan_expunge(struct delta_scan *scan, uint32_t type,
			 const void *data, uint32_t size)
{
	uint32_t limit = scan->since_uidnext - 1;

	if ((type & MAIL_TRANSACTION_EXTERNAL) == 0 || scan->since_uidnext <= 1)
		return;
	if ((type & MAIL_TRANSACTION_TYPE_MASK) == MAIL_TRANSACTION_EXPUNGE) {
		const struct mail_transaction_expunge *rec = data, *end;

		end = CONST_PTR_OFFSET(data, size - size % sizeof(*rec));
		for (; rec < end; rec++) {
			if (rec->uid1 == 0 || rec->uid1 > rec->uid2 ||
			    rec->uid1 > limit)
				continue;
			seq_range_array_add_range(&scan->delta->expunged,
						  rec->uid1,
						  I_MIN(rec->uid2, limit));
		}
	} else {
		const struct mail_transaction_expunge_guid *rec = data, *end;

		end = CONST_PTR_OFFSET(data, size - size % sizeof(*rec));
		for (; rec < end; rec++) {
			if (rec->uid != 0 && rec->uid <= limit)
				seq_range_array_add(&scan->delta->expunged,
						    rec->uid);
		}
	}
}

/* Was the log file holding the start of our range written by a different
   index generation than the position's numbers?  When Dovecot loses the
   transaction log (deleted, corrupted) it rebuilds the index and starts a
   new log whose modseqs restart low: the position's MODSEQ then maps to a
   place in a history it never belonged to, and changes made before the loss
   would be silently skipped.  Signs, for a file created after the numbers
   were read: it is an index-creating file (prev_file_seq == 0), or it
   starts below the position's MODSEQ (a rotation never does that).  Clock
   granularity is one second: a rebuild within the same second as the
   position is not caught this way; nor is a rebuilt log that was rotated
   away again before we look, if the file we find starts exactly at the
   position's MODSEQ (Dovecot renumbered the modseqs: plain QRESYNC clients
   share that blind spot). */
static bool scan_other_generation(struct mail_index *index, uint32_t log_seq,
				  uint64_t since_modseq, time_t since_time)
{
	struct mail_transaction_log_file *file;

	for (file = index->log->files; file != NULL; file = file->next) {
		if (file->hdr.file_seq != log_seq)
			continue;
		if ((time_t)file->hdr.create_stamp <= since_time)
			return FALSE;
		return file->hdr.prev_file_seq == 0 ||
		       file->hdr.initial_modseq < since_modseq;
	}
	return FALSE;
}

/* Position the log view just after since_modseq, up to what box->view has
   synced.  Returns 1 ok, 0 history gone, -1 error. */
static int scan_set_range(struct mail_index_view *view,
			  struct mail_transaction_log_view *log_view,
			  uint64_t since_modseq, time_t since_time,
			  const char **error_r)
{
	uint32_t log_seq;
	uoff_t log_offset;
	const char *reason;
	bool reset;
	int ret;

	if (!mail_index_modseq_get_next_log_offset(view, since_modseq, &log_seq,
						   &log_offset)) {
		*error_r = "modseq is older than the transaction log";
		return 0;
	}
	if (scan_other_generation(view->index, log_seq, since_modseq,
				  since_time)) {
		*error_r = "index was recreated after the position";
		return 0;
	}
	ret = mail_transaction_log_view_set(
		log_view, log_seq, log_offset, view->log_file_head_seq,
		view->log_file_head_offset, &reset, &reason);
	if (ret <= 0) {
		*error_r = reason;
		return ret;
	}
	if (reset) {
		/* "reset" means the view starts at a log file that created
		   the index (prev_file_seq == 0).  If that file is where
		   our range starts anyway (a young mailbox), nothing is
		   missing; if the view moved past our start to a later
		   such file, the index was recreated in between. */
		uint32_t cur_seq;
		uoff_t cur_offset;

		mail_transaction_log_view_get_prev_pos(log_view, &cur_seq,
						       &cur_offset);
		if (cur_seq != log_seq) {
			*error_r = "index was recreated within the range";
			return 0;
		}
	}
	return 1;
}

static int scan_log(struct delta_scan *scan, struct mail_index *index,
		    uint64_t since_modseq, time_t since_time,
		    const char **error_r)
{
	struct mail_transaction_log_view *log_view;
	const struct mail_transaction_header *hdr;
	const void *data;
	uint32_t type;
	int ret;

	log_view = mail_transaction_log_view_open(index->log);
	ret = scan_set_range(scan->view, log_view, since_modseq, since_time,
			     error_r);
	if (ret <= 0) {
		mail_transaction_log_view_close(&log_view);
		return ret;
	}
	while ((ret = mail_transaction_log_view_next(log_view, &hdr, &data)) >
	       0) {
		type = hdr->type & MAIL_TRANSACTION_TYPE_MASK;
		switch (type) {
		case MAIL_TRANSACTION_EXPUNGE:
		case MAIL_TRANSACTION_EXPUNGE_GUID:
			scan_expunge(scan, hdr->type, data, hdr->size);
			break;
		case MAIL_TRANSACTION_FLAG_UPDATE:
			scan_flag_update(scan, data, hdr->size);
			break;
		case MAIL_TRANSACTION_KEYWORD_UPDATE:
			T_BEGIN
			{
				scan_keyword_update(scan, data, hdr->size);
			}
			T_END;
			break;
		case MAIL_TRANSACTION_KEYWORD_RESET:
			scan_keyword_reset(scan, data, hdr->size);
			break;
		default:
			/* appends are taken from the index (UIDs >= the
			   position's UIDNEXT); the rest is not visible to
			   IMAP clients */
			break;
		}
	}
	if (ret < 0)
		*error_r = "transaction log read failed";
	else if (mail_transaction_log_view_is_corrupted(log_view)) {
		*error_r = "transaction log is corrupted";
		ret = -1;
	} else {
		ret = 1; /* reached the end of the view: done */
	}
	mail_transaction_log_view_close(&log_view);
	return ret;
}

static int str_cmp_p(const char *const *a, const char *const *b)
{
	return strcmp(*a, *b);
}

/* Net keyword change of one UID, filtered against the keywords it has now. */
static void change_keywords(struct delta_scan *scan,
			    const struct uid_change *change, uint32_t uid,
			    uint32_t seq, ARRAY_TYPE(const_string) * add,
			    ARRAY_TYPE(const_string) * remove)
{
	const ARRAY_TYPE(keywords) *all =
		mail_index_get_keywords(scan->view->index);
	const char *const *names;
	ARRAY_TYPE(keyword_indexes) now_idx;
	ARRAY_TYPE(const_string) now;
	const unsigned int *idx;
	const char *name, *const *np;
	const int *op;
	unsigned int count;
	bool set;

	names = array_get(&scan->kw_names, &count);
	t_array_init(&now_idx, 8);
	t_array_init(&now, 8);
	mail_index_lookup_keywords(scan->view, seq, &now_idx);
	array_foreach(&now_idx, idx)
	{
		if (*idx < array_count(all))
			array_push_back(&now, array_idx(all, *idx));
	}
	if (array_is_created(&change->kw)) {
		array_foreach(&change->kw, op)
		{
			unsigned int idx = (*op < 0 ? -*op : *op) - 1;

			if (idx >= count)
				continue; /* cannot happen: ops come from
					     kw_intern */
			name = names[idx];
			set = FALSE;
			array_foreach(&now, np) set =
				set || strcmp(*np, name) == 0;
			if (*op > 0 && set)
				array_push_back(add, &name);
			else if (*op < 0 && !set)
				array_push_back(remove, &name);
		}
	}
	if (seq_range_exists(&scan->kw_reset, uid)) {
		/* reset: whatever it had may have been removed; report the
		   keywords of the mailbox it does not have now */
		array_foreach(all, np)
		{
			set = FALSE;
			const char *const *np2;
			array_foreach(&now, np2) set =
				set || strcmp(*np2, *np) == 0;
			bool listed = FALSE;
			const char *const *rp;
			array_foreach(remove, rp) listed =
				listed || strcmp(*rp, *np) == 0;
			if (!set && !listed)
				array_push_back(remove, np);
		}
	}
	array_sort(add, str_cmp_p);
	array_sort(remove, str_cmp_p);
}

static const char *const *kw_list_dup(pool_t pool,
				      const ARRAY_TYPE(const_string) * list)
{
	const char **ret;
	unsigned int i, count = array_count(list);

	ret = p_new(pool, const char *, count + 1);
	for (i = 0; i < count; i++)
		ret[i] = p_strdup(pool, array_idx_elem(list, i));
	return ret;
}

static int uint32_cmp_p(const uint32_t *a, const uint32_t *b)
{
	return *a < *b ? -1 : (*a > *b ? 1 : 0);
}

/* Turn the per-UID accumulator into FLAGS groups: one group per distinct
   (modseq, added, removed), UIDs ascending, groups in first-UID order. */
static void build_flag_groups(struct delta_scan *scan)
{
	struct hash_iterate_context *iter;
	/* key -> group index + 1 (the groups array may move as it grows) */
	HASH_TABLE(char *, void *) by_key;
	ARRAY(uint32_t) uids;
	struct uid_change *change;
	struct xrep_flag_group *group;
	const struct mail_index_record *rec;
	void *key, *value;
	const uint32_t *uidp;
	uint32_t seq, uid;
	uint8_t now, add, remove;

	t_array_init(&uids, hash_table_count(scan->changes) + 1);
	iter = hash_table_iterate_init(scan->changes);
	while (hash_table_iterate(iter, scan->changes, &key, &change)) {
		uid = POINTER_CAST_TO(key, uint32_t);
		array_push_back(&uids, &uid);
	}
	hash_table_iterate_deinit(&iter);
	array_sort(&uids, uint32_cmp_p);

	hash_table_create(&by_key, scan->pool, 0, str_hash, strcmp);
	array_foreach(&uids, uidp) T_BEGIN
	{
		ARRAY_TYPE(const_string) kw_add, kw_remove;
		string_t *k = t_str_new(64);
		const char *const *kp;

		change = hash_table_lookup(scan->changes, POINTER_CAST(*uidp));
		if (seq_range_exists(&scan->delta->expunged, *uidp) ||
		    !mail_index_lookup_seq(scan->view, *uidp, &seq))
			change = NULL; /* gone: its expunge says it all */
		if (change != NULL) {
			rec = mail_index_lookup(scan->view, seq);
			now = rec->flags & MAIL_FLAGS_NONRECENT;
			/* kept only where the current flags agree: an add
			   undone later, or a removal of a flag set again, is
			   dropped */
			add = change->add & now;
			remove = change->remove & ~now;
			t_array_init(&kw_add, 4);
			t_array_init(&kw_remove, 4);
			change_keywords(scan, change, *uidp, seq, &kw_add,
					&kw_remove);
			if (add == 0 && remove == 0 &&
			    array_count(&kw_add) == 0 &&
			    array_count(&kw_remove) == 0)
				change = NULL; /* changed and changed back */
		}
		if (change != NULL) {
			uint64_t modseq =
				mail_index_modseq_lookup(scan->view, seq);

			str_printfa(k, "%" PRIu64 " %u %u", modseq, add,
				    remove);
			array_foreach(&kw_add, kp) str_printfa(k, " +%s", *kp);
			array_foreach(&kw_remove, kp)
				str_printfa(k, " -%s", *kp);
			value = hash_table_lookup(by_key, str_c(k));
			if (value == NULL) {
				group = array_append_space(&scan->delta->flags);
				p_array_init(&group->uids, scan->pool, 4);
				group->modseq = modseq;
				group->add = add;
				group->remove = remove;
				group->kw_add =
					kw_list_dup(scan->pool, &kw_add);
				group->kw_remove =
					kw_list_dup(scan->pool, &kw_remove);
				hash_table_insert(
					by_key, p_strdup(scan->pool, str_c(k)),
					POINTER_CAST(array_count(
						&scan->delta->flags)));
			} else {
				group = array_idx_modifiable(
					&scan->delta->flags,
					POINTER_CAST_TO(value, unsigned int) -
						1);
			}
			seq_range_array_add(&group->uids, *uidp);
		}
	}
	T_END;
	hash_table_destroy(&by_key);
}

enum xrep_delta_result
xrep_delta_scan(struct mailbox *box, uint64_t since_modseq,
		uint32_t since_uidnext, time_t since_time, pool_t pool,
		struct xrep_delta *delta_r, const char **error_r)
{
	struct delta_scan scan;
	int ret;

	*error_r = NULL;
	delta_init(delta_r, pool);
	delta_fill_state(box->view, delta_r);
	if (since_modseq > delta_r->modseq ||
	    since_uidnext > delta_r->uidnext) {
		*error_r = "position is ahead of the mailbox";
		return XREP_DELTA_EXPIRED;
	}
	if (since_modseq == delta_r->modseq &&
	    since_uidnext == delta_r->uidnext)
		return XREP_DELTA_OK;

	i_zero(&scan);
	scan.pool = pool;
	scan.view = box->view;
	scan.since_uidnext = since_uidnext;
	scan.delta = delta_r;
	hash_table_create_direct(&scan.changes, pool, 0);
	p_array_init(&scan.kw_names, pool, 8);
	p_array_init(&scan.kw_reset, pool, 4);

	ret = scan_log(&scan, box->index, since_modseq, since_time, error_r);
	if (ret > 0)
		T_BEGIN
		{
			build_flag_groups(&scan);
			if (since_uidnext < delta_r->uidnext)
				add_existing_uids(
					scan.view, I_MAX(since_uidnext, 1),
					(uint32_t)-1, &delta_r->appended);
		}
	T_END;
	hash_table_destroy(&scan.changes);
	if (ret < 0)
		return XREP_DELTA_ERROR;
	return ret == 0 ? XREP_DELTA_EXPIRED : XREP_DELTA_OK;
}
