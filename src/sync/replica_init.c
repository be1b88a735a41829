/* replica-init: converts a pair synchronised before replica mode (or two accounts never
 * paired) so that the target side takes the reference side's UIDVALIDITY, GUIDs and UIDs.
 * Clients of the target see each rebuilt mailbox's UIDVALIDITY change once; clients of the
 * reference see nothing change (but for INBOX, below).
 *
 * Per mailbox M on both sides whose identity differs (reference R, target T), on T:
 *   1. NEW = "twinbox-replica-new-<R's GUID>" is created with R's UIDVALIDITY and GUID and
 *      filled from R under R's UIDs, then given R's UIDNEXT and HIGHESTMODSEQ;
 *   2. M is renamed to OLD = "twinbox-replica-old-<GUID>", NEW to M (Dovecot keeps a GUID
 *      across a rename);
 *   3. OLD's messages that R does not have (same identity) and the state does not record
 *      as paired (then R expunged them) are copied into M;
 *   4. OLD is deleted, once every copy into M is confirmed.
 * INBOX cannot be renamed (Dovecot refuses): its messages are copied into OLD and expunged
 * once confirmed, the empty INBOX takes R's identity (XREPLICATE RESET), and the replica
 * pass that follows fills it. Its UIDNEXT cannot go down, so R's INBOX messages below T's
 * old UIDNEXT get new UIDs on both sides (the one change R's clients see).
 * Every step is found again from the names on T after a crash (resume); until OLD is
 * deleted, T still holds every message it had. Sync refuses a pair whose T holds these
 * names (tb_eng_replica_temp), so an interrupted init is never taken for deleted mail. */
#include "sync/engine_internal.h"

#include "store/store.h"
#include "sync/names.h"
#include "sync/replica.h"
#include "twinbox/config.h"
#include "twinbox/state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NEW_PREFIX "twinbox-replica-new-"
#define OLD_PREFIX "twinbox-replica-old-"

bool tb_eng_replica_temp(const char *canon)
{
    return strncmp(canon, NEW_PREFIX, strlen(NEW_PREFIX)) == 0 ||
           strncmp(canon, OLD_PREFIX, strlen(OLD_PREFIX)) == 0;
}

/* What a step returns besides 0 and an exit code: the mailbox is left as it is this run
 * (a warning said why). */
#define LEFT (-1)

struct init {
    struct ctx *x;
    struct entry *e;
    int r, t;       /* reference and target side */
    char *rm, *m;   /* M's wire name on R and on T */
    char *nw, *old; /* NEW's and OLD's wire names on T */
    char nw_canon[80], old_canon[80];
    bool inbox;
    bool old_exists; /* OLD is on T (listed, or made by this run) */
};

static const struct tb_mbox_info *listed(struct ctx *x, int k, const char *wire)
{
    for (size_t i = 0; i < x->s[k].n_boxes; i++)
        if (strcmp(x->s[k].boxes[i].name, wire) == 0)
            return &x->s[k].boxes[i];
    return NULL;
}

static int fail(struct init *in, const char *what, const char *why)
{
    tb_eng_warn(in->x, tb_eng_show(in->e),
                "pair %s: replica-init: mailbox %s: %s: %s; left as it was on %s",
                in->x->pair->name, tb_eng_show(in->e), what, why, in->t ? "b" : "a");
    in->x->stats->skipped_mailboxes++;
    return LEFT;
}

static int wait_both(struct init *in)
{
    return tb_store_wait(in->x->both, 2) < 0 ? tb_eng_store_fail(in->x) : 0;
}

/* A full listing with identity of one mailbox (selects it). */
static int list_full(struct init *in, int k, const char *wire, struct tb_delta *d)
{
    memset(d, 0, sizeof(*d));
    tb_store_delta_start(&in->x->s[k], wire, 0, 0, 0, NULL, d);
    int rc = wait_both(in);
    if (rc == 0 && d->unreadable) {
        rc = fail(in, "listing", d->unreadable);
        tb_delta_clear(d);
    }
    return rc;
}

struct tally {
    struct ctx *x;
    uint64_t done, expected;
};

static void counted(void *ud, uint32_t src_uid, uint32_t dst_uid, const char *flags)
{
    (void)src_uid, (void)dst_uid, (void)flags;
    ((struct tally *)ud)->done++;
}

static void not_copied(void *ud, const struct tb_msg_info *m, const char *reason, bool permanent)
{
    (void)permanent;
    tb_eng_warn(((struct tally *)ud)->x, NULL,
                "replica-init: message UID %" PRIu32 " not copied: %s", m->uid, reason);
}

/* Copies msgs (from side `from`, whose `src_box` the copy selects) into T's `to` (canonical
 * name to_canon), each pinned to a UID: its own when first is 0 (msgs ascending), else first,
 * first + 1, ... Pinned and reserved (tb_state_reserve_put) like a replica pass's copies: a
 * killed run's APPENDs still queued at the server are fenced off by the next run before it
 * lists anything, instead of landing after its listing as second copies. LEFT when not
 * all arrived. */
static int copy_into(struct init *in, int from, const char *src_box, const char *to,
                     const char *to_canon, const struct tb_msg_info **msgs, size_t n,
                     uint32_t first)
{
    if (!n)
        return 0;
    struct ctx *x = in->x;
    uint32_t top = first ? first + (uint32_t)(n - 1) : msgs[n - 1]->uid;
    int rc = tb_eng_replica_reserve(x, to_canon, top);
    if (rc != 0)
        return rc;
    struct tally t = {x, 0, n};
    tb_store_select(&x->s[from], src_box);
    struct tb_copy *cp = tb_copy_new(&x->s[from], &x->s[in->t], to, counted, not_copied, &t);
    /* a copy not placed under its UID is not counted done: the tally says so */
    for (size_t i = 0; i < n; i++)
        tb_copy_add_at(cp, msgs[i], first ? first + (uint32_t)i : msgs[i]->uid);
    if (tb_copy_finish(cp, &x->stats->bytes) < 0)
        return tb_eng_store_fail(x);
    if (tb_state_reserve_done(x->st, to_canon, x->run) < 0)
        return tb_eng_state_fail(x, "reserve");
    x->stats->copied[in->t] += t.done;
    return t.done == t.expected ? 0 : fail(in, "copy", "not every message arrived");
}

static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = (*(const struct tb_msg_info *const *)a)->uid;
    uint32_t y = (*(const struct tb_msg_info *const *)b)->uid;
    return x < y ? -1 : x > y;
}

/* Whether NEW (nd) holds every message of R below NEW's UIDNEXT, each under its UID: what an
 * interrupted run left is then a prefix to go on from. A copy lost or placed elsewhere (a
 * late APPEND of a killed run raced ours) cannot be put back under its UID. */
static bool new_usable(const struct tb_delta *nd, const struct tb_delta *rd)
{
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const struct tb_msg_info *m = &rd->msgs[i];
        if (m->uid >= nd->uidnext)
            continue;
        bool ok = false;
        for (size_t j = 0; j < nd->n_msgs && !ok; j++)
            ok = nd->msgs[j].uid == m->uid && tb_msg_identity_cmp(&nd->msgs[j], m) == 0;
        if (!ok)
            return false;
    }
    return true;
}

static int create_new(struct init *in)
{
    const struct tb_mbox_info *b = in->e->box[in->r];
    struct tb_replica_result res;
    tb_store_replica_create(&in->x->s[in->t], in->nw, b->uidvalidity, b->guid, &res);
    int rc = wait_both(in);
    if (rc == 0 && res.refused)
        rc = fail(in, "XREPLICATE CREATE", res.why);
    return rc;
}

/* Step 1: NEW holds R's messages under R's UIDs, and R's UIDNEXT and HIGHESTMODSEQ. */
static int fill_new(struct init *in, struct tb_delta *rd)
{
    struct ctx *x = in->x;
    struct tb_replica_result res;
    int rc = listed(x, in->t, in->nw) ? 0 : create_new(in);
    struct tb_delta nd;
    if (rc == 0)
        rc = list_full(in, in->t, in->nw, &nd);
    if (rc != 0)
        return rc;
    uint32_t floor = nd.uidnext;
    if (!new_usable(&nd, rd)) {
        /* only copies of R's messages: deleted and made again */
        tb_store_delete(&x->s[in->t], in->nw);
        rc = wait_both(in);
        if (rc == 0)
            rc = create_new(in);
        floor = 1;
    }
    tb_delta_clear(&nd);
    if (rc != 0)
        return rc;
    const struct tb_msg_info **v = tb_xmalloc((rd->n_msgs + 1) * sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < rd->n_msgs; i++)
        if (rd->msgs[i].uid >= floor) /* below: there already (resumed) */
            v[n++] = &rd->msgs[i];
    qsort(v, n, sizeof(*v), cmp_uid);
    rc = copy_into(in, in->r, in->rm, in->nw, in->nw_canon, v, n, 0);
    free(v);
    if (rc != 0)
        return rc;
    tb_store_replica_raise(&x->s[in->t], in->nw, rd->uidnext, rd->highestmodseq, &res);
    rc = wait_both(in);
    if (rc == 0 && res.refused)
        return fail(in, "XREPLICATE RAISE", res.why);
    return rc;
}

static bool has_identity(const struct tb_delta *d, const struct tb_msg_info *m)
{
    for (size_t i = 0; i < d->n_msgs; i++)
        if (tb_msg_identity_cmp(m, &d->msgs[i]) == 0)
            return true;
    return false;
}

/* Whether m (in T's old mailbox) is to be kept: neither R nor T's new M (a resumed run's
 * copy) has a message of its identity, and the state does not pair it (a paired message
 * missing on R was expunged there). */
static bool t_only(const struct tb_msg_info *m, const struct tb_delta *rd,
                   const struct tb_delta *md, const struct tb_state_msg *pairs, size_t n_pairs,
                   int t)
{
    for (size_t i = 0; i < n_pairs; i++)
        if (pairs[i].uid[t] == m->uid)
            return false;
    return !has_identity(rd, m) && !has_identity(md, m);
}

/* Steps 3 and 4: T's own messages from OLD into M, then OLD deleted. */
static int settle_old(struct init *in, struct tb_delta *rd)
{
    struct ctx *x = in->x;
    if (!in->old_exists)
        return 0;
    struct tb_delta od, md;
    int rc = list_full(in, in->t, in->m, &md);
    if (rc != 0)
        return rc;
    rc = list_full(in, in->t, in->old, &od);
    if (rc != 0) {
        tb_delta_clear(&md);
        return rc;
    }
    struct tb_state_msg *pairs = NULL;
    size_t n_pairs = 0;
    if (in->e->st && tb_state_messages(x->st, in->e->st->id, &pairs, &n_pairs) < 0)
        rc = tb_eng_state_fail(x, "read");
    const struct tb_msg_info **v = tb_xmalloc((od.n_msgs + 1) * sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; rc == 0 && i < od.n_msgs; i++)
        if (t_only(&od.msgs[i], rd, &md, pairs, n_pairs, in->t))
            v[n++] = &od.msgs[i];
    tb_state_messages_free(pairs, n_pairs);
    if (rc == 0)
        rc = copy_into(in, in->t, in->old, in->m, in->e->canon, v, n, md.uidnext);
    free(v);
    tb_delta_clear(&od);
    tb_delta_clear(&md);
    if (rc != 0)
        return rc;
    tb_store_delete(&x->s[in->t], in->old);
    in->old_exists = false;
    return wait_both(in);
}

/* INBOX: its messages into OLD (confirmed, then expunged), its identity reset to R's. */
static int empty_inbox(struct init *in)
{
    struct ctx *x = in->x;
    if (!in->old_exists) {
        tb_store_create(&x->s[in->t], in->old, NULL);
        int rc = wait_both(in);
        if (rc != 0)
            return rc;
        in->old_exists = true;
    }
    struct tb_delta id, od;
    int rc = list_full(in, in->t, in->old, &od);
    if (rc == 0) {
        rc = list_full(in, in->t, in->m, &id);
        if (rc != 0)
            tb_delta_clear(&od);
    }
    if (rc != 0)
        return rc;
    /* resumed: what OLD holds already is not copied again */
    const struct tb_msg_info **v = tb_xmalloc((id.n_msgs + 1) * sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < id.n_msgs; i++) {
        bool there = false;
        for (size_t j = 0; j < od.n_msgs && !there; j++)
            there = tb_msg_identity_cmp(&id.msgs[i], &od.msgs[j]) == 0;
        if (!there)
            v[n++] = &id.msgs[i];
    }
    rc = copy_into(in, in->t, in->m, in->old, in->old_canon, v, n, od.uidnext);
    free(v);
    if (rc == 0 && id.n_msgs) {
        struct tb_uidset all;
        tb_uidset_init(&all);
        for (size_t i = 0; i < id.n_msgs; i++)
            tb_uidset_add(&all, id.msgs[i].uid);
        tb_store_select(&x->s[in->t], in->m);
        tb_store_expunge(&x->s[in->t], &all, NULL);
        tb_uidset_free(&all);
        rc = wait_both(in);
    }
    tb_delta_clear(&id);
    tb_delta_clear(&od);
    if (rc != 0)
        return rc;
    const struct tb_mbox_info *b = in->e->box[in->r];
    struct tb_replica_result res;
    tb_store_replica_reset(&x->s[in->t], in->m, b->uidvalidity, b->guid, &res);
    rc = wait_both(in);
    if (rc == 0 && res.refused)
        return fail(in, "XREPLICATE RESET", res.why);
    x->xr_drop[in->t] = true; /* the stored position knows the old GUID */
    return rc;
}

static int rebuild(struct init *in)
{
    struct ctx *x = in->x;
    const struct tb_mbox_info *tb = in->e->box[in->t];
    bool aligned = tb && tb->uidvalidity == in->e->box[in->r]->uidvalidity &&
                   strcmp(tb->guid, in->e->box[in->r]->guid) == 0;
    struct tb_delta rd;
    int rc = list_full(in, in->r, in->rm, &rd);
    if (rc != 0)
        return rc == LEFT ? 0 : rc;
    if (in->inbox && !aligned) {
        rc = empty_inbox(in);
    } else if (!in->inbox && tb && !aligned) {
        rc = fill_new(in, &rd);
        if (rc == 0) {
            tb_store_rename(&x->s[in->t], in->m, in->old);
            rc = wait_both(in);
            in->old_exists = rc == 0;
        }
        if (rc == 0) {
            tb_store_rename(&x->s[in->t], in->nw, in->m);
            rc = wait_both(in);
        }
        x->xr_drop[in->t] = true; /* the stored position knows the old GUID */
    } else if (!in->inbox && !tb && listed(x, in->t, in->nw)) {
        /* interrupted between the two renames: M is OLD by now */
        tb_store_rename(&x->s[in->t], in->nw, in->m);
        rc = wait_both(in);
    }
    if (rc == 0)
        rc = settle_old(in, &rd);
    if (rc == 0 && in->e->st && tb_state_mailbox_delete(x->st, in->e->st->id) < 0)
        rc = tb_eng_state_fail(x, "delete mailbox");
    tb_delta_clear(&rd);
    return rc == LEFT ? 0 : rc;
}

int tb_eng_replica_init(struct ctx *x, struct entry *ent, size_t n_ent, int ref, int *rebuilt)
{
    *rebuilt = 0;
    const struct tb_ns *ns = tb_store_ns(&x->s[1 - ref]);
    for (size_t i = 0; i < n_ent; i++) {
        struct entry *e = &ent[i];
        const struct tb_mbox_info *rb = e->box[ref];
        if (!rb || tb_eng_replica_temp(e->canon) || !tb_eng_wanted(x, e->canon))
            continue;
        struct init in = {.x = x, .e = e, .r = ref, .t = 1 - ref};
        in.inbox = strcasecmp(e->canon, "INBOX") == 0;
        snprintf(in.nw_canon, sizeof(in.nw_canon), NEW_PREFIX "%s", rb->guid);
        in.nw = tb_name_wire(in.nw_canon, ns);
        snprintf(in.old_canon, sizeof(in.old_canon), OLD_PREFIX "%s", rb->guid);
        in.old = tb_name_wire(in.old_canon, ns);
        in.m = tb_eng_wire(x, e, in.t);
        in.rm = tb_eng_wire(x, e, ref);
        in.old_exists = listed(x, in.t, in.old) != NULL;
        const struct tb_mbox_info *tb = e->box[in.t];
        bool pending = listed(x, in.t, in.nw) || in.old_exists;
        bool aligned = tb && tb->uidvalidity == rb->uidvalidity && strcmp(tb->guid, rb->guid) == 0;
        int rc = 0;
        if (!rb->guid[0]) {
            rc = fail(&in, "reference", "its GUID is unknown");
        } else if ((tb || pending) && (!aligned || pending)) {
            struct tb_sync_event ev = {
                .kind = TB_SYNC_EV_REPLICA_REBUILD, .mailbox = tb_eng_show(e), .side = in.t};
            tb_eng_emit(x, &ev, "%s: replica-init: rebuilding on %s from %s", ev.mailbox,
                        in.t ? "b" : "a", ref ? "b" : "a");
            rc = rebuild(&in);
            (*rebuilt)++;
        }
        free(in.nw);
        free(in.old);
        free(in.m);
        free(in.rm);
        if (rc != 0 && rc != LEFT)
            return rc;
    }
    return 0;
}
