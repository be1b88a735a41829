/* One mailbox's passes: SELECT (or X-REPLICATE's delta), plan, execution, commit; and the
 * deferred passes that confirm writes settled, pipelined across mailboxes. See engine.c
 * for the pass structure. */
#include "sync/engine_internal.h"

#include "protocol/xrep.h"
#include "store/store.h"
#include "util/flags.h"
#include "sync/names.h"
#include "sync/plan.h"
#include "sync/replica.h"
#include "sync/xr.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/imap.h"
#include "twinbox/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tb_eng_delta_of_state(struct tb_delta *d, const struct tb_state_side *b)
{
    memset(d, 0, sizeof(*d));
    d->uidvalidity = b->uidvalidity;
    d->uidnext = b->uidnext;
    d->highestmodseq = b->highestmodseq;
}

/* Room for n more copies recorded in o, at once: 100,000 copies would otherwise leave it
 * room for 131,072. */
static void out_reserve(struct pass_out *o, size_t n)
{
    if (o->cap_copied - o->n_copied >= n)
        return;
    o->cap_copied = o->n_copied + n;
    o->copied = tb_xrealloc(o->copied, o->cap_copied * sizeof(*o->copied));
}

void tb_eng_record_copy(struct pass_out *o, int dst, uint32_t src_uid, uint32_t dst_uid,
                        const char *flags)
{
    if (o->n_copied == o->cap_copied) {
        o->cap_copied = o->cap_copied ? o->cap_copied * 2 : 64;
        o->copied = tb_xrealloc(o->copied, o->cap_copied * sizeof(*o->copied));
    }
    struct tb_pair_update *u = &o->copied[o->n_copied++];
    u->uid[dst] = dst_uid;
    u->uid[1 - dst] = src_uid;
    u->flags = tb_strpool_intern(&o->flags, flags); /* 100,000 copies, a few flag lists */
    u->remove = false;
    o->x->stats->copied[dst]++;
}

void tb_eng_on_copied(void *ud, uint32_t src_uid, uint32_t dst_uid, const char *flags)
{
    /* ud points at the pass_out with the destination side encoded in the low bit. */
    uintptr_t v = (uintptr_t)ud;
    tb_eng_record_copy((struct pass_out *)(v & ~(uintptr_t)1), (int)(v & 1), src_uid, dst_uid,
                       flags);
}

/* Dry run: the plan of a pass, as one PLAN event. */
static void report_plan(struct ctx *x, const char *canon, const struct tb_plan *p,
                        const struct tb_replica_plan *rp)
{
    size_t n[2] = {p->n_copies[0], p->n_copies[1]};
    for (size_t i = 0; rp && i < rp->n; i++)
        n[1 - rp->mv[i].from]++;
    struct tb_sync_event ev = {.kind = TB_SYNC_EV_PLAN,
                               .mailbox = canon,
                               .side = -1,
                               .copies = {n[0], n[1]},
                               .stores = {p->n_groups[0], p->n_groups[1]},
                               .expunges = {p->n_expunge[0], p->n_expunge[1]},
                               .renumbered = rp ? rp->renumbered : 0};
    char more[64] = "";
    if (rp && rp->renumbered)
        snprintf(more, sizeof(more), "; new UIDs for %llu", (unsigned long long)rp->renumbered);
    tb_eng_emit(
        x, &ev, "%s: copy a->b %zu, b->a %zu; flag stores a %zu, b %zu; expunge a %zu, b %zu%s",
        canon, n[1], n[0], p->n_groups[0], p->n_groups[1], p->n_expunge[0], p->n_expunge[1], more);
}

/* Before a copy batch: what it may leave behind if this run dies (see tb_state_intents). */
int tb_eng_record_intents(struct ctx *x, const char *canon, const struct tb_plan *p)
{
    if (!p->n_copies[0] && !p->n_copies[1])
        return 0;
    if (tb_state_begin(x->st) < 0)
        return tb_eng_state_fail(x, "begin");
    int r = 0;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; r == 0 && i < p->n_copies[k]; i++) {
            const struct tb_msg_info *m = p->copies[k][i];
            r = tb_state_intent_add(x->st, canon, x->run, k, m->ident, m->size, m->internaldate);
        }
    if (r < 0 || tb_state_commit(x->st) < 0)
        return tb_eng_state_fail(x, "intents");
    return 0;
}

void tb_eng_uidset_of(struct tb_uidset *set, const uint32_t *uids, size_t n)
{
    tb_uidset_init(set);
    for (size_t i = 0; i < n; i++)
        tb_uidset_add(set, uids[i]);
}

/* Submits the writes of a plan on both sides (copies, flag stores, and the expunges, or in a
 * batch their \Deleted alone: the caller expunges later, and the SELECTs do not wait for
 * the previous mailbox's commands); cp receives the copies, to be finished by the caller.
 * `modified` receives the UIDs refused by UNCHANGEDSINCE, and UIDs an expunge left in place, per
 * side (their pairs keep the old base and are merged next pass). */
void tb_eng_submit(struct ctx *x, struct pass_out *o, const char *wire[2], struct tb_plan *p,
                   struct tb_delta *d[2], struct tb_uidset modified[2], bool batched,
                   struct tb_copy *cp[2])
{
    /* A side whose delta came from X-REPLICATE has not selected the mailbox yet. */
    for (int k = 0; k < 2; k++)
        if ((p->n_groups[k] || p->n_expunge[k] || p->n_copies[1 - k]) && batched)
            tb_store_select_queued(&x->s[k], wire[k]);
        else if (p->n_groups[k] || p->n_expunge[k] || p->n_copies[1 - k])
            tb_store_select(&x->s[k], wire[k]);
    out_reserve(o, p->n_copies[0] + p->n_copies[1]);
    for (int k = 0; k < 2; k++) {
        cp[k] = NULL;
        if (!p->n_copies[k])
            continue;
        cp[k] = tb_copy_new(&x->s[1 - k], &x->s[k], wire[k], tb_eng_on_copied, tb_eng_on_skipped,
                            (void *)((uintptr_t)o | (uintptr_t)k));
        tb_copy_set_uid_floor(cp[k], d[k]->uidnext);
        tb_copy_set_source(cp[k], wire[1 - k], d[1 - k]->uidvalidity);
        for (size_t i = 0; i < p->n_copies[k]; i++)
            tb_copy_add(cp[k], p->copies[k][i]);
    }
    tb_eng_apply_stores(x, p, d, modified, batched);
}

/* Executes the writes of a plan on both sides and waits for them. */
static int execute(struct ctx *x, const char *wire[2], struct tb_plan *p, struct tb_delta *d[2],
                   struct tb_uidset modified[2])
{
    struct tb_copy *cp[2];
    tb_eng_submit(x, &x->out, wire, p, d, modified, false, cp);
    int rc = 0;
    for (int k = 0; k < 2; k++)
        if (cp[k] && tb_copy_finish(cp[k], &x->stats->bytes) < 0)
            rc = -1;
    if (rc == 0)
        rc = tb_store_wait(x->both, 2);
    return rc;
}

void tb_eng_apply_stores(struct ctx *x, struct tb_plan *p, struct tb_delta *d[2],
                         struct tb_uidset modified[2], bool mark_only)
{
    for (int k = 0; k < 2; k++) {
        for (size_t g = 0; g < p->n_groups[k]; g++) {
            struct tb_uidset set;
            tb_eng_uidset_of(&set, p->groups[k][g].uids, p->groups[k][g].n);
            tb_store_flags(&x->s[k], &set, p->groups[k][g].op, p->groups[k][g].flags,
                           d[k]->highestmodseq, &modified[k]);
            x->stats->flag_updates += p->groups[k][g].n;
            tb_uidset_free(&set);
        }
        if (p->n_expunge[k]) {
            struct tb_uidset set;
            tb_eng_uidset_of(&set, p->expunge[k], p->n_expunge[k]);
            if (mark_only)
                tb_store_flags(&x->s[k], &set, '+', "\\Deleted", 0, NULL);
            else
                tb_store_expunge(&x->s[k], &set, &modified[k]);
            x->stats->expunges += p->n_expunge[k];
            tb_uidset_free(&set);
        }
    }
}

void tb_eng_warn_late(struct ctx *x, struct entry *e, const struct tb_plan *p)
{
    if (p->late)
        tb_eng_warn(x, tb_eng_show(e),
                    "%s: %llu late copies of an interrupted run found and expunged", tb_eng_show(e),
                    (unsigned long long)p->late);
}

void tb_eng_plan_stats(struct ctx *x, const struct tb_plan *p)
{
    x->stats->conflicts += p->conflicts;
    x->stats->flags_unstorable += p->unstorable;
    x->stats->matched += p->matched;
    x->stats->filtered += p->filtered;
    x->stats->kept += p->kept;
}

/* set = side k's UIDs of the first n copies of o, as runs: copies arrive mostly in UID
 * order, so 100,000 of them make a few ranges, not 100,000. */
static void note_copied(struct tb_uidset *set, const struct pass_out *o, size_t n, int k)
{
    tb_uidset_free(set);
    uint32_t lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t uid = o->copied[i].uid[k];
        if (!uid)
            continue; /* no APPENDUID: found by identity when settling */
        if (lo && uid == hi + 1) {
            hi = uid;
            continue;
        }
        if (lo)
            tb_uidset_add_range(set, lo, hi);
        lo = hi = uid;
    }
    if (lo)
        tb_uidset_add_range(set, lo, hi);
    tb_uidset_normalize(set);
}

/* Records one pass: pair changes, copies, and the side values seen by its SELECTs. */
int tb_eng_commit_pass(struct ctx *x, struct entry *e, const struct pass_out *o,
                       struct tb_delta *d[2], struct tb_plan *p, struct tb_uidset modified[2],
                       bool reset, bool subscribed, const struct tb_state_intent *sus,
                       struct tb_uidset gone[2])
{
    if (tb_state_begin(x->st) < 0)
        return tb_eng_state_fail(x, "begin");
    struct tb_state_mailbox row = {0};
    if (e->st)
        row = *e->st;
    row.name = e->canon;
    row.subscribed = subscribed;
    /* A store refused as MODIFIED keeps its pair's old base; the other side's change to
     * that message would then be invisible from this pass's HIGHESTMODSEQ on, so the
     * mailbox keeps its previous values and the next pass looks again from there. */
    bool keep = !tb_uidset_empty(&modified[0]) || !tb_uidset_empty(&modified[1]);
    for (int k = 0; k < 2; k++) {
        row.side[k].uidvalidity = d[k]->uidvalidity;
        /* (a reset pass has no previous values: its pairs are gone, so 0, a full listing) */
        bool prev = e->st && !reset;
        row.side[k].uidnext = keep ? (prev ? e->st->side[k].uidnext : 0) : d[k]->uidnext;
        row.side[k].highestmodseq =
            keep ? (prev ? e->st->side[k].highestmodseq : 0) : d[k]->highestmodseq;
    }
    int r = tb_state_mailbox_put(x->st, &row);
    if (r == 0 && reset)
        r = tb_state_msgs_clear(x->st, row.id);
    for (size_t i = 0; r == 0 && i < p->n_updates; i++) {
        struct tb_pair_update *u = &p->updates[i];
        /* A pair whose store was refused (MODIFIED), or whose expunge another client undid
         * (\Deleted cleared before our EXPUNGE), keeps its row: the next pass merges, or
         * expunges, again. */
        if (tb_uidset_has(&modified[0], u->uid[0]) || tb_uidset_has(&modified[1], u->uid[1]))
            continue;
        if (u->remove)
            r = tb_state_msg_delete(x->st, row.id, u->uid[0]);
        else
            r = tb_state_msg_put(x->st, row.id, u->uid[0], u->uid[1], u->flags);
    }
    for (size_t i = 0; r == 0 && i < o->n_copied; i++)
        r = tb_state_msg_put(x->st, row.id, o->copied[i].uid[0], o->copied[i].uid[1],
                             o->copied[i].flags);
    /* This pass's copies are recorded: their intents go; a crashed run's intents go once
     * resolved, or after ten minutes (by then its server has long finished). */
    for (size_t i = 0; r == 0 && i < p->n_resolved; i++)
        r = tb_state_intent_drop(x->st, e->canon, x->run, &sus[p->resolved[i]]);
    if (r == 0)
        r = tb_state_intents_done(x->st, e->canon, x->run, 600);
    /* Messages not copied stay in view through their rows, written with the UIDNEXT that
     * moves past them. */
    if (r == 0)
        r = tb_eng_skip_commit(x, o, p, gone);
    if (r < 0 || tb_state_commit(x->st) < 0)
        return tb_eng_state_fail(x, "write");
    if (!e->st) {
        e->st = tb_xcalloc(1, sizeof(*e->st));
        e->st->name = tb_xstrdup(e->canon);
    }
    e->st->id = row.id;
    e->st->side[0] = row.side[0];
    e->st->side[1] = row.side[1];
    e->st->subscribed = subscribed;
    for (int k = 0; k < 2; k++)
        note_copied(&e->copied[k], o, x->pair->replica ? 0 : o->n_copied, k);
    return 0;
}

bool tb_eng_side_unchanged(const struct entry *e, int k)
{
    const struct tb_mbox_info *b = e->box[k];
    const struct tb_state_side *s = &e->st->side[k];
    /* RESYNC repeats the old numbers of a mailbox the server could not serve: look with
     * QRESYNC rather than trust them. */
    if (e->sec[k] && e->sec[k]->resync)
        return false;
    /* Without HIGHESTMODSEQ (a server without CONDSTORE) a flag change moves none of the
     * numbers: only an empty mailbox is known unchanged, the others are listed every run. */
    return b && b->have_status && b->uidvalidity == s->uidvalidity && b->uidnext == s->uidnext &&
           b->highestmodseq == s->highestmodseq && (b->highestmodseq > 0 || b->messages == 0);
}

/* Starts the deltas of a pass. Pass 0 takes what the survey read (entry.pre); a side it did
 * not read is the state's when unchanged, else SELECT+FETCH (skipped UIDs by name). A later
 * pass selects only the sides the previous one wrote to: a change made on the other side
 * meanwhile moves its numbers past the state's, so the next run sees it. */
static int start_deltas(struct ctx *x, struct entry *e, char *wire[2], int pass, bool reset,
                        const bool wrote[2], struct tb_delta *d[2])
{
    bool waiting = false;
    for (int k = 0; k < 2; k++) {
        const struct tb_state_side *b = e->st && !reset ? &e->st->side[k] : NULL;
        if (pass == 0 && e->pre[k]) {
            *d[k] = *e->pre[k]; /* moved */
            free(e->pre[k]);
            e->pre[k] = NULL;
            continue;
        }
        if (b &&
            ((pass == 0 && tb_eng_side_unchanged(e, k) && !e->due[k]) || (pass > 0 && !wrote[k]))) {
            tb_eng_delta_of_state(d[k], b);
            continue;
        }
        struct tb_uidset extra;
        tb_uidset_init(&extra);
        int rc = pass == 0 && b ? tb_eng_skip_refetch(x, e->canon, k, b->uidvalidity, &extra) : 0;
        if (rc == 0 && e->creating) /* nothing in flight but the CREATE (engine.c) */
            tb_store_delta_queue(&x->s[k], wire[k], b ? b->uidvalidity : 0,
                                 b ? b->highestmodseq : 0, b ? b->uidnext : 0,
                                 pass == 0 && b ? &extra : NULL, d[k]);
        else if (rc == 0 && pass > 0 && b) /* after writes: the last commit's copies */
            tb_store_delta_start_known(&x->s[k], wire[k], b->uidvalidity, b->highestmodseq,
                                       b->uidnext, &e->copied[k], d[k]);
        else if (rc == 0)
            tb_store_delta_start(&x->s[k], wire[k], b ? b->uidvalidity : 0,
                                 b ? b->highestmodseq : 0, b ? b->uidnext : 0,
                                 pass == 0 && b ? &extra : NULL, d[k]);
        waiting = waiting || rc == 0;
        tb_uidset_free(&extra);
        if (rc != 0)
            return rc;
    }
    bool creating = e->creating;
    e->creating = false;
    if ((waiting || creating) && tb_store_wait(x->both, 2) < 0)
        return tb_eng_store_fail(x);
    return 0;
}

/* Whether a side's UIDVALIDITY moved since the state's base: the mailbox was recreated
 * between the listing and the SELECT, or the server gave it a new one (GNU mailutils'
 * maildir does on the first APPEND to an empty mailbox). */
static bool revalidated(const struct entry *e, struct tb_delta *d[2])
{
    for (int k = 0; k < 2; k++)
        if (!d[k]->unreadable && !d[k]->full && e->st &&
            d[k]->uidvalidity != e->st->side[k].uidvalidity)
            return true;
    return false;
}

/* A delta the pass must not act on: the mailbox is left alone this run. */
bool tb_eng_unusable(struct ctx *x, struct entry *e, struct tb_delta *d[2])
{
    for (int k = 0; k < 2; k++) {
        const char *why = d[k]->unreadable;
        if (!why)
            continue;
        tb_eng_warn(x, tb_eng_show(e), "pair %s: mailbox %s: %s: %s; left alone this run",
                    x->pair->name, tb_eng_show(e), k ? "b" : "a", why);
        x->stats->skipped_mailboxes++;
        return true;
    }
    return false;
}

/* The pass's plan; in replica mode turned into moves (rp, else left empty). -1: the mailbox
 * is left alone this run (warned). A UID-pinned copy cannot land twice, so replica mode
 * needs no crash suspects (and their late-copy expunge would hit the first leg of a
 * renumbering whose original was already expunged). */
int tb_eng_plan(struct ctx *x, struct entry *e, struct pass_io *io, struct tb_delta *d[2],
                const uint32_t base_next[2], struct tb_plan *p, struct tb_replica_plan *rp)
{
    bool replica = x->pair->replica;
    tb_plan_compute(p, io->pairs, io->n_pairs, d, base_next, replica ? NULL : io->sus,
                    replica ? 0 : io->n_sus, &io->sk, x->mode);
    memset(rp, 0, sizeof(*rp));
    char why[256];
    if (replica && tb_replica_plan(rp, p, io->pairs, io->n_pairs, d, why, sizeof(why)) < 0) {
        tb_eng_warn(x, tb_eng_show(e), "pair %s: mailbox %s: %s; left alone this run",
                    x->pair->name, tb_eng_show(e), why);
        x->stats->skipped_mailboxes++;
        return -1;
    }
    return 0;
}

bool tb_eng_replica_writes(const struct ctx *x, const struct tb_replica_plan *rp,
                           struct tb_delta *d[2], int k)
{
    const struct tb_delta *cd[2] = {d[0], d[1]};
    return x->pair->replica && tb_replica_writes(rp, cd, k);
}

int tb_eng_pass_io_load(struct ctx *x, struct entry *e, bool reset, struct pass_io *io)
{
    memset(io, 0, sizeof(*io));
    if ((e->st && !reset && tb_state_messages(x->st, e->st->id, &io->pairs, &io->n_pairs) < 0) ||
        tb_state_intents(x->st, e->canon, x->run, &io->sus, &io->n_sus) < 0)
        return tb_eng_state_fail(x, "read");
    return 0;
}

void tb_eng_pass_io_free(struct pass_io *io)
{
    tb_state_intents_free(io->sus, io->n_sus);
    tb_state_messages_free(io->pairs, io->n_pairs);
    tb_plan_skips_free(&io->sk);
    tb_uidset_free(&io->gone[0]);
    tb_uidset_free(&io->gone[1]);
}

/* Plans one pass from its deltas, runs it and records it; *writes says whether it wrote. */
static int run_pass(struct ctx *x, struct entry *e, char *wire[2], struct tb_delta *d[2],
                    struct pass_io *io, bool reset, bool subscribed, bool wrote[2], bool *writes)
{
    uint32_t base_next[2];
    for (int k = 0; k < 2; k++) {
        base_next[k] = d[k]->full ? 0 : e->st->side[k].uidnext;
        x->out.uidvalidity[k] = d[k]->uidvalidity;
    }
    x->out.mailbox = e->canon;
    struct tb_plan p;
    struct tb_replica_plan rp;
    if (tb_eng_plan(x, e, io, d, base_next, &p, &rp) < 0) {
        tb_plan_free(&p);
        *writes = false;
        return 0; /* left alone: warned */
    }
    *writes = tb_plan_has_writes(&p) || tb_eng_replica_writes(x, &rp, d, 0) ||
              tb_eng_replica_writes(x, &rp, d, 1);
    for (int k = 0; k < 2; k++)
        wrote[k] =
            p.n_copies[k] || p.n_groups[k] || p.n_expunge[k] || tb_eng_replica_writes(x, &rp, d, k);
    struct tb_uidset modified[2];
    tb_uidset_init(&modified[0]);
    tb_uidset_init(&modified[1]);
    tb_eng_warn_late(x, e, &p);
    int rc = 0;
    if (x->o->dry_run) {
        report_plan(x, tb_eng_show(e), &p, x->pair->replica ? &rp : NULL);
        *writes = false;
    } else {
        if (*writes)
            rc = tb_eng_record_intents(x, e->canon, &p);
        if (rc == 0 && *writes && x->pair->replica)
            rc = tb_eng_replica_execute(x, (const char **)wire, &p, &rp, d, modified);
        else if (rc == 0 && *writes && execute(x, (const char **)wire, &p, d, modified) < 0)
            rc = tb_eng_store_fail(x);
        if (rc == 0)
            rc = tb_eng_commit_pass(x, e, &x->out, d, &p, modified, reset, subscribed, io->sus,
                                    io->gone);
        tb_eng_plan_stats(x, &p);
    }
    tb_eng_out_clear(&x->out);
    tb_uidset_free(&modified[0]);
    tb_uidset_free(&modified[1]);
    tb_plan_free(&p);
    tb_replica_plan_free(&rp);
    return rc;
}

/* The passes of a mailbox from pass `first` on. Only pass 0, the run's first look at the
 * mailbox, may take its deltas from what was read before anything was written (the survey,
 * the listing, X-REPLICATE); a run that comes back to a mailbox it wrote to (first > 0)
 * reads both sides again from the state's numbers, so what it records is what it read. */
static int sync_passes(struct ctx *x, struct entry *e, bool reset, bool subscribed, int first)
{
    char *wire[2];
    for (int k = 0; k < 2; k++)
        wire[k] = tb_eng_wire(x, e, k);
    int rc = 0;
    bool settled = false;
    bool wrote[2] = {true, true}; /* by the previous pass, per side */
    for (int pass = first; pass < MAX_PASSES && rc == 0; pass++) {
        struct tb_delta dd[2], *d[2] = {&dd[0], &dd[1]};
        memset(dd, 0, sizeof(dd));
        struct pass_io io;
        bool writes = false;
        rc = tb_eng_pass_io_load(x, e, reset, &io);
        if (rc == 0)
            rc = start_deltas(x, e, wire, pass, reset, wrote, d);
        if (rc == 0 && tb_eng_unusable(x, e, d)) {
            /* Nothing recorded: the next run looks again. Not settled: a pass of this run
             * may have committed numbers older than its writes, which no X-REPLICATE
             * position may stand for. */
            pass = MAX_PASSES;
        } else if (rc == 0 && revalidated(e, d) && !reset && pass + 1 < MAX_PASSES) {
            /* The base does not apply: matched again by identity from both listings, as a
             * UIDVALIDITY change found by the listing is (nothing is removed that way). */
            reset = true;
            wrote[0] = wrote[1] = true;
        } else if (rc == 0 && revalidated(e, d)) {
            tb_eng_warn(x, tb_eng_show(e),
                        "pair %s: mailbox %s: UIDVALIDITY changed during the run; left alone "
                        "this run",
                        x->pair->name, e->canon);
            x->stats->skipped_mailboxes++;
            pass = MAX_PASSES;
        } else if (rc == 0 && (rc = tb_eng_skip_classify(x, e->canon, d, &io.sk, io.gone)) == 0) {
            rc = run_pass(x, e, wire, d, &io, reset, subscribed, wrote, &writes);
            reset = false;
            if (!writes) {
                pass = MAX_PASSES; /* settled: the state matches both sides */
                settled = true;
            } else if (rc == 0 && x->may_defer && pass == 0) {
                e->deferred = true;
                e->wrote[0] = wrote[0];
                e->wrote[1] = wrote[1];
                e->subscribed = subscribed;
                pass = MAX_PASSES;
            }
        }
        tb_eng_pass_io_free(&io);
        tb_delta_clear(d[0]);
        tb_delta_clear(d[1]);
    }
    e->unsettled = !settled;
    tb_eng_free_pre(e);
    free(wire[0]);
    free(wire[1]);
    return rc;
}

int tb_eng_sync_messages(struct ctx *x, struct entry *e, bool reset, bool subscribed)
{
    return sync_passes(x, e, reset, subscribed, 0);
}

/* The settling passes of the mailboxes written to, in batches: every written side's
 * SELECT+FETCH of a batch goes out in one write (tb_store_delta_queue), instead of one
 * round trip per mailbox. A mailbox whose pass finds nothing to do is settled and
 * committed; one that changed meanwhile gets the ordinary passes. */
#define SETTLE_BATCH 64

static int settle_one(struct ctx *x, struct entry *e, struct tb_delta *d[2])
{
    for (int k = 0; k < 2; k++)
        if (d[k]->unreadable || (!d[k]->full && d[k]->uidvalidity != e->st->side[k].uidvalidity))
            return sync_passes(x, e, false, e->subscribed, 1); /* look again */
    struct pass_io io;
    int rc = tb_eng_pass_io_load(x, e, false, &io);
    if (rc == 0)
        rc = tb_eng_skip_classify(x, e->canon, d, &io.sk, io.gone);
    if (rc == 0) {
        uint32_t base_next[2] = {e->st->side[0].uidnext, e->st->side[1].uidnext};
        struct tb_plan p;
        struct tb_replica_plan rp;
        if (tb_eng_plan(x, e, &io, d, base_next, &p, &rp) < 0) {
            tb_plan_free(&p); /* left alone, warned: not settled, nothing recorded */
            tb_eng_pass_io_free(&io);
            return 0;
        }
        bool writes = tb_plan_has_writes(&p) || tb_eng_replica_writes(x, &rp, d, 0) ||
                      tb_eng_replica_writes(x, &rp, d, 1);
        if (!writes) {
            struct tb_uidset modified[2];
            tb_uidset_init(&modified[0]);
            tb_uidset_init(&modified[1]);
            struct pass_out none = {.x = x, .mailbox = e->canon};
            rc = tb_eng_commit_pass(x, e, &none, d, &p, modified, false, e->subscribed, io.sus,
                                    io.gone);
            e->unsettled = false;
        }
        tb_plan_free(&p);
        tb_replica_plan_free(&rp);
        /* Changed meanwhile: the ordinary passes, from the state. Not from pass 0: its
         * sources (the listing, the survey, X-REPLICATE) predate this run's writes and
         * what this pass just saw; a pass 0 on them found nothing to do and recorded the
         * mailbox as settled on numbers older than its own copies, and the X-REPLICATE
         * position stored for them could then never report those copies' expunges. */
        if (writes)
            rc = sync_passes(x, e, false, e->subscribed, 1);
    }
    tb_eng_pass_io_free(&io);
    return rc;
}

int tb_eng_settle_deferred(struct ctx *x, struct entry *ent, size_t n_ent)
{
    int rc = 0;
    struct entry *batch[SETTLE_BATCH];
    struct tb_delta dd[SETTLE_BATCH][2];
    bool may_defer = x->may_defer;
    x->may_defer = false; /* the passes started from here finish their mailbox */
    for (size_t i = 0; i < n_ent && rc == 0;) {
        size_t n = 0;
        for (; i < n_ent && n < SETTLE_BATCH; i++)
            if (ent[i].deferred)
                batch[n++] = &ent[i];
        for (size_t j = 0; j < n; j++) {
            struct entry *e = batch[j];
            e->deferred = false;
            for (int k = 0; k < 2; k++) {
                const struct tb_state_side *b = &e->st->side[k];
                if (!e->wrote[k]) {
                    /* as in sync_messages: the unwritten side's delta is the state's */
                    tb_eng_delta_of_state(&dd[j][k], b);
                    continue;
                }
                char *w = tb_eng_wire(x, e, k);
                tb_store_delta_examine_queue(&x->s[k], w, b->uidvalidity, b->highestmodseq,
                                             b->uidnext, &e->copied[k], &dd[j][k]);
                free(w);
            }
        }
        if (n && tb_store_wait(x->both, 2) < 0)
            rc = tb_eng_store_fail(x);
        for (size_t j = 0; j < n; j++) {
            struct tb_delta *d[2] = {&dd[j][0], &dd[j][1]};
            if (rc == 0)
                rc = settle_one(x, batch[j], d);
            tb_delta_clear(d[0]);
            tb_delta_clear(d[1]);
        }
    }
    x->may_defer = may_defer;
    return rc;
}
