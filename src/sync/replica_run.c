/* Replica mode in the engine: servers that can do it, mailboxes created and aligned with the
 * other side's UIDVALIDITY and GUID, and a pass's moves run in an order that never leaves a
 * message nowhere (see replica.h). */
#include "sync/engine_internal.h"

#include "store/store.h"
#include "sync/names.h"
#include "sync/replica.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A run that died may have left pinned APPENDs queued at a server, which could land after this
 * run read the mailbox and, under a UID this run gives another message or plans again,
 * leave a second copy. Its reservation says how high its UIDs went: both sides' UIDNEXT go
 * past it first, so such an APPEND either landed before this run looks, or is refused. */
static int fence(struct ctx *x)
{
    struct tb_state_reserve *v;
    size_t n;
    if (tb_state_reserves(x->st, &v, &n) < 0)
        return tb_eng_state_fail(x, "read");
    struct tb_replica_result *res = tb_xcalloc(2 * n + 1, sizeof(*res));
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            char *w = tb_name_wire(v[i].mailbox, tb_store_ns(&x->s[k]));
            tb_store_replica_raise(&x->s[k], w, v[i].uid + 1, 0, &res[2 * i + k]);
            free(w);
        }
    int rc = n && tb_store_wait(x->both, 2) < 0 ? tb_eng_store_fail(x) : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        for (int k = 0; k < 2; k++)
            if (res[2 * i + k].refused && !strstr(res[2 * i + k].code, "NONEXISTENT"))
                tb_eng_warn(x, NULL,
                            "pair %s: mailbox %s: %s: fencing an interrupted run's UIDs: %s",
                            x->pair->name, v[i].mailbox, k ? "b" : "a", res[2 * i + k].why);
        if (tb_state_reserve_done(x->st, v[i].mailbox, v[i].run) < 0)
            rc = tb_eng_state_fail(x, "write");
    }
    free(res);
    tb_state_reserves_free(v, n);
    return rc;
}

int tb_eng_replica_check(struct ctx *x)
{
    for (int k = 0; k < 2; k++) {
        if (tb_store_replica_capable(&x->s[k])) {
            x->s[k].want_guid = true;
            continue;
        }
        tb_error_set(x->err, TB_ERR_CONFIG,
                     "pair %s: replica = yes, but %s (%s) does not offer X-REPLICATE-REPLICA "
                     "(Dovecot with twinbox's imap_xreplicate plugin, see twinbox-xreplicate(7))",
                     x->pair->name, k ? "b" : "a", x->s[k].label);
        return tb_error_exit(TB_ERR_CONFIG);
    }
    return x->o->dry_run ? 0 : fence(x);
}

int tb_eng_replica_reserve(struct ctx *x, const char *canon, uint32_t top)
{
    if (tb_state_begin(x->st) < 0 || tb_state_reserve_put(x->st, canon, x->run, top) < 0 ||
        tb_state_commit(x->st) < 0)
        return tb_eng_state_fail(x, "reserve");
    return 0;
}

/* Before a pass pins copies: the highest UID it may use, for fence() should it die. */
static int reserve(struct ctx *x, const struct tb_replica_plan *rp)
{
    uint32_t top = 0;
    for (size_t i = 0; i < rp->n; i++)
        if (rp->mv[i].target > top)
            top = rp->mv[i].target;
    return top ? tb_eng_replica_reserve(x, x->out.mailbox, top) : 0;
}

/* The same mailbox (one GUID) under a name on a only and another on b only: renamed on both
 * sides to different names while apart, or renamed where no position told (the renames by
 * state, detect_renames, ran first). a's name wins: b's is renamed to it, which keeps the
 * GUID, the UIDs and every client's cache of b valid under the new name. */
int tb_eng_replica_renames(struct ctx *x, struct entry *ent, size_t n_ent, int *renamed)
{
    *renamed = 0;
    for (size_t i = 0; i < n_ent; i++) {
        struct entry *e = &ent[i];
        if (!e->box[0] || e->box[1] || !e->box[0]->guid[0] || tb_eng_replica_temp(e->canon))
            continue;
        for (size_t j = 0; j < n_ent; j++) {
            struct entry *f = &ent[j];
            if (f->box[0] || !f->box[1] || strcmp(f->box[1]->guid, e->box[0]->guid) != 0 ||
                tb_eng_replica_temp(f->canon))
                continue;
            char *to = tb_name_wire(e->canon, tb_store_ns(&x->s[1]));
            struct tb_sync_event ev = {.kind = TB_SYNC_EV_RENAME,
                                       .mailbox = tb_eng_show(f),
                                       .to = tb_eng_show(e),
                                       .side = 1};
            tb_eng_emit(x, &ev,
                        "%s: one mailbox named %s on b; renaming it there (replica: one GUID, one "
                        "name)",
                        ev.to, ev.mailbox);
            tb_store_rename(&x->s[1], f->box[1]->name, to);
            free(to);
            if (tb_store_wait(x->both, 2) < 0)
                return tb_eng_store_fail(x);
            if (f->st && tb_state_mailbox_delete(x->st, f->st->id) < 0)
                return tb_eng_state_fail(x, "rename");
            (*renamed)++;
            break;
        }
    }
    return 0;
}

/* One mailbox left alone this run, with its cause. */
static int leave(struct ctx *x, struct entry *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int leave(struct ctx *x, struct entry *e, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    tb_eng_warn(x, NULL, "pair %s: mailbox %s: %s; left alone this run", x->pair->name,
                tb_eng_show(e), line);
    x->stats->skipped_mailboxes++;
    return -1;
}

int tb_eng_replica_create(struct ctx *x, struct entry *e, int k, const char *wire)
{
    const struct tb_mbox_info *src = e->box[1 - k];
    if (!src || !src->have_status || !src->uidvalidity || !src->guid[0])
        return leave(x, e, "%s: its UIDVALIDITY or GUID is unknown", k ? "a" : "b");
    struct tb_replica_result res;
    tb_store_replica_create(&x->s[k], wire, src->uidvalidity, src->guid, &res);
    if (tb_store_wait(x->both, 2) < 0)
        return tb_eng_store_fail(x);
    if (res.refused)
        return leave(x, e, "XREPLICATE CREATE on %s: %s", k ? "b" : "a", res.why);
    x->stats->created++;
    return 0;
}

static bool aligned(const struct tb_mbox_info *a, const struct tb_mbox_info *b)
{
    return a->uidvalidity == b->uidvalidity && strcmp(a->guid, b->guid) == 0;
}

int tb_eng_replica_align(struct ctx *x, struct entry *e, bool *reset)
{
    const struct tb_mbox_info *b[2] = {e->box[0], e->box[1]};
    if (!b[0] || !b[1] || aligned(b[0], b[1]))
        return 0;
    if (!b[0]->guid[0] || !b[1]->guid[0])
        return leave(x, e, "a side did not report its mailbox GUID");
    /* An empty side takes the other's identity; otherwise both hold mail under their own
     * UIDs, and only replica-init can renumber one of them. The server checks emptiness (a
     * listing from X-REPLICATE has no MESSAGES): b is tried first, then a. */
    struct tb_replica_result res = {0};
    for (int k = 1; k >= 0; k--) {
        if (b[k]->messages != 0)
            continue;
        if (x->o->dry_run) {
            struct tb_sync_event ev = {
                .kind = TB_SYNC_EV_REPLICA_RESET, .mailbox = tb_eng_show(e), .side = k};
            tb_eng_emit(x, &ev, "%s: reset UIDVALIDITY and GUID on %s", ev.mailbox, k ? "b" : "a");
            return -1;
        }
        char *w = tb_eng_wire(x, e, k);
        tb_store_replica_reset(&x->s[k], w, b[1 - k]->uidvalidity, b[1 - k]->guid, &res);
        free(w);
        if (tb_store_wait(x->both, 2) < 0)
            return tb_eng_store_fail(x);
        if (!res.refused) {
            /* The position read at discovery knows the old GUID: it would report the
             * mailbox RECREATED next run. Forgotten; the next run starts from POSITION. */
            x->xr_drop[k] = true;
            *reset = true;
            return 0;
        }
    }
    if (res.refused && !strstr(res.code, "XREPLICATE-NOTEMPTY"))
        return leave(x, e, "XREPLICATE RESET: %s", res.why);
    return leave(x, e,
                 "UIDVALIDITY or GUID differ and both sides hold mail (run twinbox replica-init)");
}

static void on_replica_copied(void *ud, uint32_t src_uid, uint32_t dst_uid, const char *flags)
{
    uintptr_t v = (uintptr_t)ud;
    struct pass_out *o = (struct pass_out *)(v & ~(uintptr_t)1);
    struct ctx *x = o->x;
    int dst = (int)(v & 1);
    if (src_uid == dst_uid) {
        tb_eng_record_copy(o, dst, src_uid, dst_uid, flags);
        return;
    }
    /* a first leg: the message is safe on dst under its new UID */
    struct tb_replica_plan *rp = x->replica_plan;
    for (size_t i = 0; rp && i < rp->n; i++) {
        struct tb_replica_move *mv = &rp->mv[i];
        if (1 - mv->from == dst && mv->target == dst_uid && mv->m->uid == src_uid)
            mv->landed = true;
    }
}

/* The stage (1..3) of a move's first leg (copy to 1-from under target) or second leg (copy
 * back under target). Renumbered messages of b have the lower new UIDs (replica.c), so
 * every side receives its copies in ascending UID order across the stages: a gets b's
 * first legs (1), then its own second legs (3); b gets its own second legs and a's first
 * legs (2). */
static int stage_of(const struct tb_replica_move *mv, int leg)
{
    if (leg == 1)
        return !mv->second_leg || mv->from == 1 ? 1 : 2;
    return mv->from == 1 ? 2 : 3;
}

/* Expunges before a stage's copies: the receiving side's other copy of a first leg (drop),
 * and, for a second leg, the original once its first leg landed. */
static void stage_expunges(struct ctx *x, struct tb_replica_plan *rp, int stage,
                           struct tb_uidset modified[2])
{
    for (int k = 0; k < 2; k++) {
        struct tb_uidset set;
        tb_uidset_init(&set);
        for (size_t i = 0; i < rp->n; i++) {
            const struct tb_replica_move *mv = &rp->mv[i];
            if (mv->drop && 1 - mv->from == k && stage_of(mv, 1) == stage)
                tb_uidset_add(&set, mv->drop);
            if (mv->second_leg && mv->landed && mv->from == k && stage_of(mv, 2) == stage)
                tb_uidset_add(&set, mv->m->uid);
        }
        if (!tb_uidset_empty(&set)) {
            tb_store_expunge(&x->s[k], &set, &modified[k]);
            x->stats->expunges += tb_uidset_count(&set);
        }
        tb_uidset_free(&set);
    }
}

static int cmp_target(const void *a, const void *b)
{
    uint32_t x = (*(const struct tb_replica_move *const *)a)->target;
    uint32_t y = (*(const struct tb_replica_move *const *)b)->target;
    return x < y ? -1 : x > y;
}

/* One stage's copies into side k, in ascending target order. */
static int stage_copies(struct ctx *x, const char *wire[2], struct tb_replica_plan *rp, int stage,
                        int k, struct tb_uidset *displaced)
{
    const struct tb_replica_move **v = tb_xmalloc((rp->n + 1) * sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < rp->n; i++) {
        const struct tb_replica_move *mv = &rp->mv[i];
        bool leg1 = 1 - mv->from == k && stage_of(mv, 1) == stage;
        bool leg2 = mv->from == k && mv->second_leg && mv->landed && stage_of(mv, 2) == stage;
        if (leg1 || leg2)
            v[n++] = mv;
    }
    qsort(v, n, sizeof(*v), cmp_target);
    int rc = 0;
    if (n) {
        struct tb_copy *cp =
            tb_copy_new(&x->s[1 - k], &x->s[k], wire[k], on_replica_copied, tb_eng_on_skipped,
                        (void *)((uintptr_t)&x->out | (uintptr_t)k));
        tb_copy_set_displaced(cp, displaced);
        for (size_t i = 0; i < n; i++) {
            struct tb_msg_info m = *v[i]->m;
            if (v[i]->from == k)
                m.uid = v[i]->target; /* a second leg: from the other side's copy */
            tb_copy_add_at(cp, &m, v[i]->target);
        }
        rc = tb_copy_finish(cp, &x->stats->bytes);
    }
    free(v);
    return rc;
}

/* A copy not placed under its UID leaves its source UID in `modified` of the source side:
 * the pass then keeps the mailbox's old numbers (commit_pass), so the next pass sees the
 * message, and whatever took its UID, as new again. */
static int stages(struct ctx *x, const char *wire[2], struct tb_replica_plan *rp,
                  struct tb_uidset modified[2])
{
    int rc = 0;
    for (int stage = 1; stage <= 3 && rc == 0; stage++) {
        stage_expunges(x, rp, stage, modified);
        for (int k = 0; k < 2 && rc == 0; k++)
            rc = stage_copies(x, wire, rp, stage, k, &x->displaced[1 - k]);
        if (rc == 0)
            rc = tb_store_wait(x->both, 2);
    }
    uint64_t n = 0;
    for (int k = 0; k < 2; k++) {
        n += tb_uidset_count(&x->displaced[k]);
        tb_uidset_add_set(&modified[k], &x->displaced[k]);
        tb_uidset_clear(&x->displaced[k]);
    }
    if (n)
        tb_eng_warn(x, NULL,
                    "pair %s: %" PRIu64 " copies could not take the UID planned (something "
                    "took it meanwhile); planned again next pass",
                    x->pair->name, n);
    return rc;
}

/* XREPLICATE RAISE on the sides in `which` (0: leave that number), waited for; a refusal
 * fails the store, as the writes it stands before or after cannot be trusted without it. */
static int raise_sides(struct ctx *x, const char *wire[2], const bool which[2], uint32_t uidnext,
                       uint64_t modseq)
{
    struct tb_replica_result res[2];
    memset(res, 0, sizeof(res));
    for (int k = 0; k < 2; k++)
        if (which[k])
            tb_store_replica_raise(&x->s[k], wire[k], uidnext, modseq, &res[k]);
    if (tb_store_wait(x->both, 2) < 0)
        return tb_eng_store_fail(x);
    for (int k = 0; k < 2; k++)
        if (res[k].refused) {
            tb_store_fail(&x->s[k], TB_ERR_PROTOCOL, "mailbox %s: XREPLICATE RAISE: %s", wire[k],
                          res[k].why);
            return tb_eng_store_fail(x);
        }
    return 0;
}

int tb_eng_replica_execute(struct ctx *x, const char *wire[2], struct tb_plan *p,
                           struct tb_replica_plan *rp, struct tb_delta *d[2],
                           struct tb_uidset modified[2])
{
    int rc = reserve(x, rp);
    if (rc != 0)
        return rc;
    const struct tb_delta *cd[2] = {d[0], d[1]};
    bool writes[2], low[2];
    for (int k = 0; k < 2; k++) {
        writes[k] = p->n_groups[k] || p->n_expunge[k] || tb_replica_writes(rp, cd, k);
        low[k] = writes[k] && d[k]->highestmodseq < rp->highestmodseq;
    }
    /* Before any write: a client of the other side that cached its HIGHESTMODSEQ must see
     * this side's coming changes above it after a failover. */
    if ((low[0] || low[1]) && (rc = raise_sides(x, wire, low, 0, rp->highestmodseq)) != 0)
        return rc;
    for (int k = 0; k < 2; k++)
        if (writes[k] || rp->n) /* a source of copies is selected too */
            tb_store_select(&x->s[k], wire[k]);
    tb_eng_apply_stores(x, p, d, modified, false);
    x->replica_plan = rp;
    rc = stages(x, wire, rp, modified);
    x->replica_plan = NULL;
    /* every pinned APPEND was answered: nothing of this pass can land later */
    if (rc == 0 && tb_state_reserve_done(x->st, x->out.mailbox, x->run) < 0)
        return tb_eng_state_fail(x, "reserve");
    for (size_t i = 0; i < rp->n; i++)
        x->stats->renumbered += rp->mv[i].second_leg && rp->mv[i].landed;
    if (rc != 0)
        return tb_eng_store_fail(x);
    /* After the appends: no side may hand out a UID the other has used. */
    bool behind[2];
    for (int k = 0; k < 2; k++)
        behind[k] = d[k]->uidnext < rp->next_uid || writes[k];
    return raise_sides(x, wire, behind, rp->next_uid, 0);
}
