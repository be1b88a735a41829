/* Pair-level driver: discovery, mailbox create/delete, per-mailbox passes, state commits.
 *
 * Per changed mailbox, a pass = SELECT (QRESYNC from the state's base) on both sides, a
 * plan (plan.c), its execution, and one state transaction recording the pairs and the
 * pre-write UIDNEXT/HIGHESTMODSEQ of that pass. Passes repeat until one finds nothing to
 * do: that pass sees only our own writes echoed back, and its values make the next run's
 * listing match the state, so a run with nothing to do is one LIST-STATUS (or one
 * XREPLICATE CHANGES, sync/xr.h) per server. The first pass may take a side's delta from
 * X-REPLICATE instead of a SELECT; a later pass selects only the sides the previous one
 * wrote to (the other side's unseen changes are left to the next run's listing). The pass
 * after the first one's writes is deferred: settle_deferred sends those of up to 64
 * mailboxes in one write per server.
 * A crash between execution and commit leaves an older state; the next run pairs the
 * copies that arrived by identity instead of copying them again. */
#include "sync/engine.h"

#include "store/store.h"
#include "sync/flags.h"
#include "sync/names.h"
#include "sync/plan.h"
#include "sync/xr.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/imap.h"
#include "twinbox/log.h"
#include "protocol/xrep.h"
#include "twinbox/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_PASSES 4

struct entry {
    char *canon;
    struct tb_mbox_info *box[2];
    struct tb_state_mailbox *st;
    struct tb_xrep_section *sec[2]; /* X-REPLICATE's report on it, per side (borrowed) */
    bool unsettled; /* its last pass still wrote: the state's numbers are pre-write */
    /* Written and committed; the pass that confirms the writes settled is left to
     * settle_deferred, which pipelines it with other mailboxes'. */
    bool deferred, wrote[2], subscribed;
};

struct ctx {
    const struct tb_pair *pair;
    const struct tb_account *const *acct;
    struct tb_store s[2];
    struct tb_store *both[2];
    struct tb_state *st;
    const struct tb_sync_opts *o;
    struct tb_sync_stats *stats;
    char *err;
    size_t errlen;
    int rc;
    char run[64]; /* this run's id for copy intents */
    /* pairs recorded by the copy callbacks of the current pass */
    struct tb_pair_update *copied;
    size_t n_copied, cap_copied;
    /* X-REPLICATE per side: used for discovery; rel: relative to the stored position, so
     * its events and deltas apply (see sync/xr.h). */
    struct tb_xrep_reply xr[2];
    bool xr_used[2], xr_rel[2], xr_logged[2];
    bool xr_drop[2]; /* forget the stored position: the server stopped offering it */
    bool may_defer;  /* sync_messages may leave its settling pass to settle_deferred */
};

static bool wanted(struct ctx *x, const char *canon)
{
    if (x->o->n_only) {
        bool hit = false;
        for (size_t i = 0; i < x->o->n_only && !hit; i++)
            hit = strcmp(x->o->only[i], canon) == 0;
        if (!hit)
            return false;
    }
    return tb_pair_wants(x->pair, canon);
}

static int store_fail(struct ctx *x)
{
    for (int k = 0; k < 2; k++) {
        if (!x->s[k].failed)
            continue;
        snprintf(x->err, x->errlen, "%s", x->s[k].err);
        return x->s[k].err_kind == STORE_ERR_AUTH     ? TB_EXIT_AUTH
               : x->s[k].err_kind == STORE_ERR_CONFIG ? TB_EXIT_CONFIG
                                                      : TB_EXIT_TEMPFAIL;
    }
    snprintf(x->err, x->errlen, "sync failed");
    return TB_EXIT_TEMPFAIL;
}

static int state_fail(struct ctx *x, const char *what)
{
    snprintf(x->err, x->errlen, "pair %s: state: %s: %s", x->pair->name, what,
             tb_state_error(x->st));
    tb_state_rollback(x->st);
    return TB_EXIT_INTERNAL;
}

static void on_copied(void *ud, uint32_t src_uid, uint32_t dst_uid, const char *flags)
{
    /* ud points at the ctx with the destination side encoded in the low bit. */
    uintptr_t v = (uintptr_t)ud;
    struct ctx *x = (struct ctx *)(v & ~(uintptr_t)1);
    int dst = (int)(v & 1);
    if (x->n_copied == x->cap_copied) {
        x->cap_copied = x->cap_copied ? x->cap_copied * 2 : 64;
        x->copied = tb_xrealloc(x->copied, x->cap_copied * sizeof(*x->copied));
    }
    struct tb_pair_update *u = &x->copied[x->n_copied++];
    u->uid[dst] = dst_uid;
    u->uid[1 - dst] = src_uid;
    u->flags = tb_xstrdup(flags);
    u->remove = false;
    x->stats->copied[dst]++;
}

static void print_plan(struct ctx *x, const char *canon, const struct tb_plan *p)
{
    printf("%s: copy a->b %zu, b->a %zu; flag stores a %zu, b %zu; expunge a %zu, b %zu\n", canon,
           p->n_copies[1], p->n_copies[0], p->n_groups[0], p->n_groups[1], p->n_expunge[0],
           p->n_expunge[1]);
    (void)x;
}

/* Executes the writes of a plan on both sides; fills `modified` with UIDs refused by
 * UNCHANGEDSINCE per side (their pairs keep the old base and are merged next pass). */
/* Before a copy batch: what it may leave behind if this run dies (see tb_state_intents). */
static int record_intents(struct ctx *x, const char *canon, const struct tb_plan *p)
{
    if (!p->n_copies[0] && !p->n_copies[1])
        return 0;
    if (tb_state_begin(x->st) < 0)
        return state_fail(x, "begin");
    int r = 0;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; r == 0 && i < p->n_copies[k]; i++) {
            const struct tb_msg_info *m = p->copies[k][i];
            r = tb_state_intent_add(x->st, canon, x->run, k, m->ident, m->size, m->internaldate);
        }
    if (r < 0 || tb_state_commit(x->st) < 0)
        return state_fail(x, "intents");
    return 0;
}

static int execute(struct ctx *x, const char *wire[2], struct tb_plan *p, struct tb_delta *d[2],
                   struct tb_buf modified[2])
{
    struct tb_copy *cp[2] = {NULL, NULL};
    /* A side whose delta came from X-REPLICATE has not selected the mailbox yet. */
    for (int k = 0; k < 2; k++)
        if (p->n_groups[k] || p->n_expunge[k] || p->n_copies[1 - k])
            tb_store_select(&x->s[k], wire[k]);
    for (int k = 0; k < 2; k++) {
        if (!p->n_copies[k])
            continue;
        cp[k] = tb_copy_new(&x->s[1 - k], &x->s[k], wire[k], on_copied,
                            (void *)((uintptr_t)x | (uintptr_t)k));
        for (size_t i = 0; i < p->n_copies[k]; i++)
            tb_copy_add(cp[k], p->copies[k][i]);
    }
    for (int k = 0; k < 2; k++) {
        for (size_t g = 0; g < p->n_groups[k]; g++) {
            struct tb_buf set;
            tb_buf_init(&set);
            tb_uidset_append(&set, p->groups[k][g].uids, p->groups[k][g].n);
            tb_store_flags(&x->s[k], set.data, p->groups[k][g].op, p->groups[k][g].flags,
                           d[k]->highestmodseq, &modified[k]);
            x->stats->flag_updates += p->groups[k][g].n;
            tb_buf_free(&set);
        }
        if (p->n_expunge[k]) {
            struct tb_buf set;
            tb_buf_init(&set);
            tb_uidset_append(&set, p->expunge[k], p->n_expunge[k]);
            tb_store_expunge(&x->s[k], set.data);
            x->stats->expunges += p->n_expunge[k];
            tb_buf_free(&set);
        }
    }
    int rc = 0;
    for (int k = 0; k < 2; k++)
        if (cp[k] && tb_copy_finish(cp[k], &x->stats->bytes) < 0)
            rc = -1;
    if (rc == 0)
        rc = tb_store_wait(x->both, 2);
    return rc;
}

static bool uid_in(const uint32_t *v, size_t n, uint32_t u)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == u)
            return true;
    return false;
}

/* Records one pass: pair changes, copies, and the side values seen by its SELECTs. */
static int commit_pass(struct ctx *x, struct entry *e, struct tb_delta *d[2], struct tb_plan *p,
                       struct tb_buf modified[2], bool reset, bool subscribed,
                       const struct tb_state_intent *sus)
{
    uint32_t *mod[2] = {NULL, NULL};
    size_t n_mod[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        if (modified[k].len)
            tb_uidset_expand(tb_buf_cstr(&modified[k]), &mod[k], &n_mod[k]);
    if (tb_state_begin(x->st) < 0)
        return state_fail(x, "begin");
    struct tb_state_mailbox row = {0};
    if (e->st)
        row = *e->st;
    row.name = e->canon;
    row.subscribed = subscribed;
    /* A store refused as MODIFIED keeps its pair's old base; the other side's change to
     * that message would then be invisible from this pass's HIGHESTMODSEQ on, so the
     * mailbox keeps its previous values and the next pass looks again from there. */
    bool keep = n_mod[0] || n_mod[1];
    for (int k = 0; k < 2; k++) {
        row.side[k].uidvalidity = d[k]->uidvalidity;
        row.side[k].uidnext = keep ? (e->st ? e->st->side[k].uidnext : 0) : d[k]->uidnext;
        row.side[k].highestmodseq =
            keep ? (e->st ? e->st->side[k].highestmodseq : 0) : d[k]->highestmodseq;
    }
    int r = tb_state_mailbox_put(x->st, &row);
    if (r == 0 && reset)
        r = tb_state_msgs_clear(x->st, row.id);
    for (size_t i = 0; r == 0 && i < p->n_updates; i++) {
        struct tb_pair_update *u = &p->updates[i];
        if (u->remove)
            r = tb_state_msg_delete(x->st, row.id, u->uid[0]);
        else if (!uid_in(mod[0], n_mod[0], u->uid[0]) && !uid_in(mod[1], n_mod[1], u->uid[1]))
            r = tb_state_msg_put(x->st, row.id, u->uid[0], u->uid[1], u->flags);
    }
    for (size_t i = 0; r == 0 && i < x->n_copied; i++)
        r = tb_state_msg_put(x->st, row.id, x->copied[i].uid[0], x->copied[i].uid[1],
                             x->copied[i].flags);
    /* This pass's copies are recorded: their intents go; a crashed run's intents go once
     * resolved, or after ten minutes (by then its server has long finished). */
    for (size_t i = 0; r == 0 && i < p->n_resolved; i++)
        r = tb_state_intent_drop(x->st, e->canon, x->run, &sus[p->resolved[i]]);
    if (r == 0)
        r = tb_state_intents_done(x->st, e->canon, x->run, 600);
    free(mod[0]);
    free(mod[1]);
    if (r < 0 || tb_state_commit(x->st) < 0)
        return state_fail(x, "write");
    if (!e->st) {
        e->st = tb_xcalloc(1, sizeof(*e->st));
        e->st->name = tb_xstrdup(e->canon);
    }
    e->st->id = row.id;
    e->st->side[0] = row.side[0];
    e->st->side[1] = row.side[1];
    e->st->subscribed = subscribed;
    return 0;
}

static void clear_copied(struct ctx *x)
{
    for (size_t i = 0; i < x->n_copied; i++)
        free(x->copied[i].flags);
    x->n_copied = 0;
}

/* The first pass's delta of side k from X-REPLICATE instead of a SELECT, where the stored
 * position's numbers for the mailbox are the state's (see sync/xr.h). */
static bool xr_delta(struct ctx *x, struct entry *e, int k, const struct tb_state_msg *pairs,
                     size_t n_pairs, struct tb_delta *out)
{
    const struct tb_xrep_section *sec = e->sec[k];
    const struct tb_state_side *b = &e->st->side[k];
    uint64_t hms = 0;
    if (!x->xr_rel[k] || !sec || sec->uidvalidity != b->uidvalidity ||
        tb_state_xrep_mailbox(x->st, k, e->canon, &hms) < 0 || hms == 0 || hms != b->highestmodseq)
        return false;
    if (!tb_xr_delta(sec, k, pairs, n_pairs, out))
        return false;
    x->stats->xr_deltas++;
    return true;
}

static int sync_messages(struct ctx *x, struct entry *e, bool reset, bool subscribed)
{
    char *wire[2];
    for (int k = 0; k < 2; k++)
        wire[k] = tb_name_wire(e->canon, x->s[k].sep);
    int rc = 0;
    bool settled = false;
    bool wrote[2] = {true, true}; /* by the previous pass, per side */
    for (int pass = 0; pass < MAX_PASSES && rc == 0; pass++) {
        struct tb_delta dd[2], *d[2] = {&dd[0], &dd[1]};
        uint32_t base_next[2] = {0, 0};
        struct tb_state_msg *pairs = NULL;
        size_t n_pairs = 0;
        struct tb_state_intent *sus = NULL;
        size_t n_sus = 0;
        if ((e->st && !reset && tb_state_messages(x->st, e->st->id, &pairs, &n_pairs) < 0) ||
            tb_state_intents(x->st, e->canon, x->run, &sus, &n_sus) < 0) {
            rc = state_fail(x, "read");
            tb_state_intents_free(sus, n_sus);
            tb_state_messages_free(pairs, n_pairs);
            break;
        }
        for (int k = 0; k < 2; k++) {
            const struct tb_state_side *b = e->st && !reset ? &e->st->side[k] : NULL;
            uint64_t base_ms = b ? b->highestmodseq : 0;
            if (pass == 0 && b && e->box[k] && e->box[k]->have_status &&
                e->box[k]->highestmodseq < b->highestmodseq) {
                /* The server's MODSEQs went back (Dovecot rebuilt the index after its
                 * logs were lost): QRESYNC from ours would miss changes. A full
                 * UID/FLAGS listing, diffed against the state's pairs, misses none. */
                tb_log_warn("%s: HIGHESTMODSEQ on %s went back from %llu to %llu; listing "
                            "every message",
                            e->canon, k ? "b" : "a", (unsigned long long)b->highestmodseq,
                            (unsigned long long)e->box[k]->highestmodseq);
                base_ms = 0;
            } else if (pass == 0 && b && xr_delta(x, e, k, pairs, n_pairs, d[k])) {
                continue;
            } else if (pass > 0 && b && !wrote[k]) {
                /* Nothing was written there: its delta is still the one the state now
                 * records. A change made there meanwhile moves its numbers past the
                 * state's, so the next run sees it; only the written side must show
                 * that our writes settled. */
                memset(d[k], 0, sizeof(*d[k]));
                d[k]->uidvalidity = b->uidvalidity;
                d[k]->uidnext = b->uidnext;
                d[k]->highestmodseq = b->highestmodseq;
                continue;
            }
            tb_store_delta_start(&x->s[k], wire[k], b ? b->uidvalidity : 0, base_ms,
                                 b ? b->uidnext : 0, d[k]);
        }
        if (tb_store_wait(x->both, 2) < 0) {
            rc = store_fail(x);
            tb_delta_clear(d[0]);
            tb_delta_clear(d[1]);
            tb_state_intents_free(sus, n_sus);
            tb_state_messages_free(pairs, n_pairs);
            break;
        }
        bool moved = false;
        for (int k = 0; k < 2; k++) {
            base_next[k] = d[k]->full ? 0 : e->st->side[k].uidnext;
            /* Recreated between LIST-STATUS and SELECT: the QRESYNC base does not apply;
             * leave the mailbox to the next run rather than diff against the wrong UIDs. */
            if (!d[k]->full && d[k]->uidvalidity != e->st->side[k].uidvalidity)
                moved = true;
        }
        if (moved) {
            tb_log_warn("%s: UIDVALIDITY changed during the run; skipped until the next run",
                        e->canon);
            tb_delta_clear(d[0]);
            tb_delta_clear(d[1]);
            tb_state_intents_free(sus, n_sus);
            tb_state_messages_free(pairs, n_pairs);
            break;
        }
        {
            struct tb_plan p;
            tb_plan_compute(&p, pairs, n_pairs, d, base_next, sus, n_sus);
            bool writes = tb_plan_has_writes(&p);
            for (int k = 0; k < 2; k++)
                wrote[k] = p.n_copies[k] || p.n_groups[k] || p.n_expunge[k];
            struct tb_buf modified[2];
            tb_buf_init(&modified[0]);
            tb_buf_init(&modified[1]);
            if (p.late)
                tb_log_warn("%s: %llu late copies of an interrupted run found and expunged",
                            e->canon, (unsigned long long)p.late);
            if (x->o->dry_run) {
                print_plan(x, e->canon, &p);
                writes = false;
            } else {
                if (writes)
                    rc = record_intents(x, e->canon, &p);
                if (rc == 0 && writes && execute(x, (const char **)wire, &p, d, modified) < 0)
                    rc = store_fail(x);
                if (rc == 0)
                    rc = commit_pass(x, e, d, &p, modified, reset, subscribed, sus);
                x->stats->conflicts += p.conflicts;
            }
            clear_copied(x);
            tb_buf_free(&modified[0]);
            tb_buf_free(&modified[1]);
            tb_plan_free(&p);
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
        tb_state_intents_free(sus, n_sus);
        tb_state_messages_free(pairs, n_pairs);
        tb_delta_clear(d[0]);
        tb_delta_clear(d[1]);
    }
    e->unsettled = !settled;
    free(wire[0]);
    free(wire[1]);
    return rc;
}

/* The settling passes of the mailboxes written to, in batches: every written side's
 * SELECT+FETCH of a batch goes out in one write (tb_store_delta_queue), instead of one
 * round trip per mailbox. A mailbox whose pass finds nothing to do is settled and
 * committed; one that changed meanwhile gets the ordinary passes. */
#define SETTLE_BATCH 64

static int settle_one(struct ctx *x, struct entry *e, struct tb_delta *d[2])
{
    for (int k = 0; k < 2; k++)
        if (!d[k]->full && d[k]->uidvalidity != e->st->side[k].uidvalidity)
            return sync_messages(x, e, false, e->subscribed); /* moved: look again */
    struct tb_state_msg *pairs = NULL;
    size_t n_pairs = 0;
    struct tb_state_intent *sus = NULL;
    size_t n_sus = 0;
    int rc = 0;
    if (tb_state_messages(x->st, e->st->id, &pairs, &n_pairs) < 0 ||
        tb_state_intents(x->st, e->canon, x->run, &sus, &n_sus) < 0) {
        rc = state_fail(x, "read");
    } else {
        uint32_t base_next[2] = {e->st->side[0].uidnext, e->st->side[1].uidnext};
        struct tb_plan p;
        tb_plan_compute(&p, pairs, n_pairs, d, base_next, sus, n_sus);
        bool writes = tb_plan_has_writes(&p);
        if (!writes) {
            struct tb_buf modified[2];
            tb_buf_init(&modified[0]);
            tb_buf_init(&modified[1]);
            rc = commit_pass(x, e, d, &p, modified, false, e->subscribed, sus);
            e->unsettled = false;
        }
        tb_plan_free(&p);
        if (writes) /* changed meanwhile: the ordinary passes, from the state */
            rc = sync_messages(x, e, false, e->subscribed);
    }
    tb_state_intents_free(sus, n_sus);
    tb_state_messages_free(pairs, n_pairs);
    return rc;
}

static int settle_deferred(struct ctx *x, struct entry *ent, size_t n_ent)
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
                    memset(&dd[j][k], 0, sizeof(dd[j][k]));
                    dd[j][k].uidvalidity = b->uidvalidity;
                    dd[j][k].uidnext = b->uidnext;
                    dd[j][k].highestmodseq = b->highestmodseq;
                    continue;
                }
                char *w = tb_name_wire(e->canon, x->s[k].sep);
                tb_store_delta_queue(&x->s[k], w, b->uidvalidity, b->highestmodseq, b->uidnext,
                                     &dd[j][k]);
                free(w);
            }
        }
        if (n && tb_store_wait(x->both, 2) < 0)
            rc = store_fail(x);
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

static bool unchanged(const struct entry *e)
{
    for (int k = 0; k < 2; k++) {
        const struct tb_mbox_info *b = e->box[k];
        const struct tb_state_side *s = &e->st->side[k];
        /* RESYNC ERROR repeats the old numbers of a mailbox the server could not read:
         * look with QRESYNC rather than trust them. */
        if (e->sec[k] && e->sec[k]->resync)
            return false;
        if (!b->have_status || b->uidvalidity != s->uidvalidity || b->uidnext != s->uidnext ||
            b->highestmodseq != s->highestmodseq)
            return false;
    }
    return true;
}

static int sync_entry(struct ctx *x, struct entry *e)
{
    bool present[2] = {e->box[0] != NULL, e->box[1] != NULL};
    bool reset = false;
    if (e->st && (!present[0] || !present[1])) {
        int gone = present[0] ? 1 : 0;
        if (!present[0] && !present[1]) {
            if (!x->o->dry_run && tb_state_mailbox_delete(x->st, e->st->id) < 0)
                return state_fail(x, "delete mailbox");
            return 0;
        }
        /* Deleted on one side: delete on the other only if nothing changed there since the
         * last sync; otherwise recreate it, so nothing unsynced is lost. */
        struct tb_mbox_info *o = e->box[1 - gone];
        const struct tb_state_side *s = &e->st->side[1 - gone];
        bool quiet = o->have_status && o->uidvalidity == s->uidvalidity &&
                     o->uidnext == s->uidnext && o->highestmodseq == s->highestmodseq;
        if (quiet) {
            /* Never delete on the strength of a LIST alone: ask for the name itself. */
            bool still = true;
            if (x->xr_rel[gone] &&
                tb_xr_event(&x->xr[gone], x->s[gone].sep, TB_XREP_DELETED, e->canon, NULL)) {
                still = false; /* X-REPLICATE saw its GUID go */
            } else {
                char *gw = tb_name_wire(e->canon, x->s[gone].sep);
                tb_store_exists(&x->s[gone], gw, &still);
                free(gw);
                if (tb_store_wait(x->both, 2) < 0)
                    return store_fail(x);
            }
            if (still) {
                tb_log_warn("%s: missing from the LIST of %s but STATUS finds it; left alone",
                            e->canon, gone ? "b" : "a");
                return 0;
            }
            printf("%s: deleted on %s, deleting on %s\n", e->canon, gone ? "b" : "a",
                   gone ? "a" : "b");
            if (x->o->dry_run)
                return 0;
            char *w = tb_name_wire(e->canon, x->s[1 - gone].sep);
            tb_store_delete(&x->s[1 - gone], w);
            free(w);
            if (tb_store_wait(x->both, 2) < 0)
                return store_fail(x);
            if (tb_state_mailbox_delete(x->st, e->st->id) < 0)
                return state_fail(x, "delete mailbox");
            x->stats->deleted++;
            return 0;
        }
        reset = true;
    }
    bool subscribed = (e->box[0] && e->box[0]->subscribed) || (e->box[1] && e->box[1]->subscribed);
    if (e->st && present[0] && present[1]) {
        bool sub[2] = {e->box[0]->subscribed, e->box[1]->subscribed};
        subscribed = sub[0] != e->st->subscribed ? sub[0] : sub[1];
        if (e->box[0]->uidvalidity != e->st->side[0].uidvalidity ||
            e->box[1]->uidvalidity != e->st->side[1].uidvalidity)
            reset = true;
        else if (unchanged(e) && sub[0] == sub[1])
            return 0;
    }
    for (int k = 0; k < 2; k++) {
        if (present[k] && e->box[k]->subscribed == subscribed)
            continue;
        if (x->o->dry_run) {
            printf("%s: %s on %s\n", e->canon, present[k] ? "subscribe" : "create", k ? "b" : "a");
            continue;
        }
        char *w = tb_name_wire(e->canon, x->s[k].sep);
        if (!present[k]) {
            const struct tb_mbox_info *src = e->box[1 - k];
            tb_store_create(&x->s[k], w, src ? src->special_use : NULL);
            x->stats->created++;
        }
        if (subscribed || present[k])
            tb_store_subscribe(&x->s[k], w, subscribed);
        free(w);
    }
    if (!x->o->dry_run && tb_store_wait(x->both, 2) < 0)
        return store_fail(x);
    if (x->o->dry_run && (!present[0] || !present[1]))
        return 0;
    return sync_messages(x, e, reset || !e->st, subscribed);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->canon, ((const struct entry *)b)->canon);
}

static struct entry *find_entry(struct entry *v, size_t n, const char *canon)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].canon, canon) == 0)
            return &v[i];
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One terminal line, rewritten in place: mailboxes, messages and bytes, rate, ETA. The
 * ETA extrapolates from the share of mailboxes done: rough, but needs no pre-scan. */
static void progress(const char *pair, const struct tb_sync_stats *st, double t0)
{
    double dt = now() - t0, mb = (double)st->bytes / 1e6;
    double eta = st->mailboxes_done ? dt * (double)(st->mailboxes_total - st->mailboxes_done) /
                                          (double)st->mailboxes_done
                                    : 0;
    fprintf(stderr, "\r%s: %llu/%llu mailboxes, %llu messages, %.1f MB, %.1f MB/s, ETA %.0fs\033[K",
            pair, (unsigned long long)st->mailboxes_done, (unsigned long long)st->mailboxes_total,
            (unsigned long long)(st->copied[0] + st->copied[1]), mb, dt > 0 ? mb / dt : 0, eta);
}

static void free_entries(struct entry *ent, size_t n_ent)
{
    for (size_t i = 0; i < n_ent; i++) {
        free(ent[i].canon);
        if (ent[i].st) {
            free(ent[i].st->name);
            free(ent[i].st);
        }
    }
    free(ent);
}

static bool xr_wanted(struct ctx *x, int k)
{
    const struct tb_account *a = x->acct[k];
    return a->xreplicate && tb_imap_has_cap(x->s[k].c, "X-REPLICATE");
}

/* Each side's listing: XREPLICATE CHANGES from the stored position where the server offers
 * it, POSITION when there is none or it was refused, LIST-STATUS when that fails too.
 * Round 0 asks; rounds 1 and 2 retry only the sides whose answer was unusable. */
static int list_both(struct ctx *x)
{
    char *token[2] = {NULL, NULL};
    int step[2] = {0, 0}; /* 0 CHANGES/POSITION, 1 POSITION, 2 LIST-STATUS, 3 done */
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        tb_xrep_reply_clear(&x->xr[k]);
        x->xr_used[k] = x->xr_rel[k] = false;
        if (!xr_wanted(x, k) && x->acct[k]->xreplicate && !x->xr_logged[k]) {
            /* Offered before (a position is stored), not now: say so once, forget it. */
            if (tb_state_xrep_token(x->st, k, &token[k]) < 0)
                rc = state_fail(x, "read");
            else if (token[k])
                tb_log_warn("%s: the server no longer offers X-REPLICATE; falling back to "
                            "QRESYNC",
                            x->s[k].label);
            x->xr_drop[k] = token[k] != NULL;
            x->xr_logged[k] = true;
            free(token[k]);
            token[k] = NULL;
        }
        if (!xr_wanted(x, k))
            step[k] = 2;
        else if (tb_state_xrep_token(x->st, k, &token[k]) < 0)
            rc = state_fail(x, "read");
        else if (!token[k])
            step[k] = 1;
    }
    for (int round = 0; round < 3 && rc == 0; round++) {
        bool busy = false;
        for (int k = 0; k < 2; k++) {
            if (step[k] == 3 || (round > 0 && step[k] < round))
                continue;
            busy = true;
            if (step[k] == 2)
                tb_store_list_start(&x->s[k]);
            else
                tb_store_xrep_start(&x->s[k], step[k] == 0 ? token[k] : NULL, &x->xr[k]);
        }
        if (!busy)
            break;
        if (tb_store_wait(x->both, 2) < 0) {
            rc = store_fail(x);
            break;
        }
        for (int k = 0; k < 2; k++) {
            if (step[k] == 3 || (round > 0 && step[k] < round))
                continue;
            struct tb_xrep_reply *r = &x->xr[k];
            if (step[k] == 2 || !r->refused) {
                x->xr_used[k] = step[k] < 2;
                x->xr_rel[k] = step[k] == 0;
                step[k] = 3;
                continue;
            }
            if (!x->xr_logged[k])
                tb_log_warn("%s: X-REPLICATE %s: %s; falling back to QRESYNC%s", x->s[k].label,
                            step[k] == 0 ? "position refused" : "failed", r->reason,
                            step[k] == 0 ? " and a new position" : "");
            x->xr_logged[k] = true;
            tb_xrep_reply_clear(r);
            step[k]++;
        }
    }
    for (int k = 0; k < 2 && rc == 0; k++) {
        char *why = x->xr_used[k] ? tb_xr_resync_summary(&x->xr[k]) : NULL;
        if (why && !x->xr_logged[k])
            tb_log_warn("%s: X-REPLICATE cannot serve %s; falling back to QRESYNC there",
                        x->s[k].label, why);
        x->xr_logged[k] = x->xr_logged[k] || why;
        free(why);
    }
    free(token[0]);
    free(token[1]);
    return rc;
}

/* LIST-STATUS (or X-REPLICATE) on both sides and the state's mailboxes, joined by
 * canonical name. */
static int discover(struct ctx *x, struct entry **out, size_t *n_out)
{
    struct tb_state_mailbox *smb = NULL;
    size_t n_smb = 0;
    *out = NULL;
    *n_out = 0;
    int rc = list_both(x);
    if (rc != 0)
        return rc;
    if (tb_state_mailboxes(x->st, &smb, &n_smb) < 0)
        return state_fail(x, "read");
    size_t cap = x->s[0].n_boxes + x->s[1].n_boxes + n_smb + 1, n_ent = 0;
    struct entry *ent = tb_xcalloc(cap, sizeof(*ent));
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < x->s[k].n_boxes; i++) {
            struct tb_mbox_info *b = &x->s[k].boxes[i];
            if (b->noselect)
                continue;
            char *canon = tb_name_canon(b->name, b->sep ? b->sep : x->s[k].sep);
            struct entry *e = find_entry(ent, n_ent, canon);
            if (!e) {
                e = &ent[n_ent++];
                e->canon = canon;
            } else {
                free(canon);
            }
            e->box[k] = b;
            /* STATUS lines and sections come in the same order, one each */
            for (size_t j = 0; x->xr_used[k] && j < x->xr[k].n_sec && !e->sec[k]; j++)
                if (x->xr[k].sec[j].name && strcmp(x->xr[k].sec[j].name, b->name) == 0)
                    e->sec[k] = &x->xr[k].sec[j];
        }
    }
    for (size_t i = 0; i < n_smb; i++) {
        struct entry *e = find_entry(ent, n_ent, smb[i].name);
        if (!e) {
            e = &ent[n_ent++];
            e->canon = tb_xstrdup(smb[i].name);
        }
        e->st = tb_xcalloc(1, sizeof(*e->st));
        *e->st = smb[i];
        e->st->name = tb_xstrdup(smb[i].name);
    }
    tb_state_mailboxes_free(smb, n_smb);
    qsort(ent, n_ent, sizeof(*ent), cmp_entry); /* parents before children */
    *out = ent;
    *n_out = n_ent;
    return 0;
}

/* A mailbox renamed on side k keeps its UIDVALIDITY: the state's name is gone on k, and a
 * name unknown to the state has that UIDVALIDITY there. Renaming it on the other side too
 * moves no message. Children move with their parent, so a candidate under a parent renamed
 * in the same run is left to the next discovery. Returns the number of renames. */
/* The side on which a state mailbox was renamed away, or -1: its name is gone there, or
 * (known only from X-REPLICATE's GUIDs) the name holds a new mailbox while the old one
 * was renamed, and the other side still has the old one. */
static int renamed_side(struct ctx *x, const struct entry *e)
{
    if (!e->st)
        return -1;
    if ((e->box[0] != NULL) != (e->box[1] != NULL))
        return e->box[0] ? 1 : 0;
    for (int k = 0; k < 2 && e->box[0]; k++)
        if (x->xr_rel[k] && e->box[k]->uidvalidity != e->st->side[k].uidvalidity &&
            e->box[1 - k]->uidvalidity == e->st->side[1 - k].uidvalidity &&
            tb_xr_event(&x->xr[k], x->s[k].sep, TB_XREP_RENAMED, e->canon, NULL))
            return k;
    return -1;
}

static int detect_renames(struct ctx *x, struct entry *ent, size_t n_ent, int *renamed)
{
    *renamed = 0;
    char **done = NULL;
    size_t n_done = 0;
    int rc = 0;
    for (size_t i = 0; i < n_ent && rc == 0; i++) {
        struct entry *e = &ent[i];
        int k = renamed_side(x, e); /* side where the old mailbox left the name */
        if (k < 0)
            continue;
        bool under = false;
        for (size_t d = 0; d < n_done && !under; d++) {
            size_t l = strlen(done[d]);
            under = strncmp(e->canon, done[d], l) == 0 && e->canon[l] == '/';
        }
        if (under)
            continue;
        /* By GUID when X-REPLICATE reported what became of the old name; else (no
         * X-REPLICATE, or a mailbox created after the stored position, which the
         * position does not know) by UIDVALIDITY. */
        char *new_name = x->xr_rel[k] ? tb_xr_renamed_to(&x->xr[k], x->s[k].sep, e->canon) : NULL;
        bool known = new_name || (x->xr_rel[k] && tb_xr_event(&x->xr[k], x->s[k].sep,
                                                              TB_XREP_DELETED, e->canon, NULL));
        for (size_t j = 0; j < n_ent; j++) {
            struct entry *f = &ent[j];
            if (f->st || !f->box[k] || f->box[1 - k])
                continue;
            if (known ? !new_name || strcmp(new_name, f->canon) != 0
                      : f->box[k]->uidvalidity != e->st->side[k].uidvalidity)
                continue;
            char *from = tb_name_wire(e->canon, x->s[1 - k].sep);
            char *to = tb_name_wire(f->canon, x->s[1 - k].sep);
            printf("%s: renamed on %s to %s, renaming on %s\n", e->canon, k ? "b" : "a", f->canon,
                   k ? "a" : "b");
            tb_store_rename(&x->s[1 - k], from, to);
            free(from);
            free(to);
            if (tb_store_wait(x->both, 2) < 0)
                rc = store_fail(x);
            else if (tb_state_mailbox_rename(x->st, e->st->id, f->canon) < 0)
                rc = state_fail(x, "rename");
            if (rc != 0)
                break;
            done = tb_xrealloc(done, (n_done + 1) * sizeof(*done));
            done[n_done++] = tb_xstrdup(e->canon);
            (*renamed)++;
            break;
        }
        free(new_name);
    }
    for (size_t d = 0; d < n_done; d++)
        free(done[d]);
    free(done);
    return rc;
}

/* After a complete run: each X-REPLICATE side's new position, and per mailbox the number
 * it holds where that equals the state's (a settled mailbox the position saw as the state
 * records it). A failed run stores nothing: the old position and its numbers stay
 * consistent with each other, and the state's newer numbers simply do not match them. */
static int record_positions(struct ctx *x, struct entry *ent, size_t n_ent)
{
    if (!x->xr_used[0] && !x->xr_used[1] && !x->xr_drop[0] && !x->xr_drop[1])
        return 0;
    if (tb_state_begin(x->st) < 0)
        return state_fail(x, "begin");
    int r = 0;
    for (int k = 0; k < 2 && r == 0; k++) {
        if (x->xr_drop[k])
            r = tb_state_xrep_set(x->st, k, NULL);
        if (!x->xr_used[k] || !x->xr[k].position)
            continue;
        r = tb_state_xrep_set(x->st, k, x->xr[k].position);
        for (size_t i = 0; i < n_ent && r == 0; i++) {
            const struct entry *e = &ent[i];
            const struct tb_xrep_section *sec = e->sec[k];
            if (!e->st || !sec || e->unsettled || sec->uidvalidity != e->st->side[k].uidvalidity ||
                sec->uidnext != e->st->side[k].uidnext ||
                sec->highestmodseq != e->st->side[k].highestmodseq)
                continue;
            r = tb_state_xrep_mailbox_put(x->st, k, e->canon, sec->highestmodseq);
        }
    }
    if (r < 0 || tb_state_commit(x->st) < 0)
        return state_fail(x, "positions");
    return 0;
}

int tb_sync_pair(uv_loop_t *loop, const struct tb_pair *pair, const struct tb_account *acct[2],
                 const char *password[2], struct tb_state *st, const struct tb_sync_opts *o,
                 struct tb_sync_stats *stats, char *err, size_t errlen)
{
    struct ctx x = {.pair = pair,
                    .acct = acct,
                    .st = st,
                    .o = o,
                    .stats = stats,
                    .err = err,
                    .errlen = errlen,
                    .may_defer = !o->dry_run};
    snprintf(x.run, sizeof(x.run), "%lld-%d", (long long)time(NULL), (int)getpid());
    for (int k = 0; k < 2; k++) {
        tb_store_init(&x.s[k], loop, acct[k], password[k]);
        x.both[k] = &x.s[k];
    }
    int rc = 0;
    struct entry *ent = NULL;
    size_t n_ent = 0;
    if (tb_store_wait(x.both, 2) < 0) {
        rc = store_fail(&x);
        goto out;
    }
    rc = discover(&x, &ent, &n_ent);
    if (rc == 0 && !o->dry_run) {
        int renamed = 0;
        rc = detect_renames(&x, ent, n_ent, &renamed);
        stats->renamed += (uint64_t)renamed;
        if (rc == 0 && renamed) {
            free_entries(ent, n_ent);
            rc = discover(&x, &ent, &n_ent);
        }
    }
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < n_ent; i++)
        if (wanted(&x, ent[i].canon))
            stats->mailboxes_total++;
    bool tty = isatty(2);
    double t0 = now();
    /* Mailboxes gone on one side last and children first, so a parent is deleted after
     * its children (a server may refuse, or keep, a parent that still has children). */
    /* Classified once, before anything runs: syncing an entry gives it a state row. */
    bool *late = tb_xcalloc(n_ent + 1, sizeof(bool));
    for (size_t j = 0; j < n_ent; j++)
        late[j] = ent[j].st && (ent[j].box[0] == NULL) != (ent[j].box[1] == NULL);
    for (int phase = 0; phase < 2 && rc == 0; phase++) {
        for (size_t j = 0; j < n_ent && rc == 0; j++) {
            size_t idx = phase ? n_ent - 1 - j : j;
            struct entry *e = &ent[idx];
            if (late[idx] != (phase == 1) || !wanted(&x, e->canon))
                continue;
            rc = sync_entry(&x, e);
            stats->mailboxes_done++;
            if (tty)
                progress(pair->name, stats, t0);
        }
        if (rc == 0)
            rc = settle_deferred(&x, ent, n_ent);
    }
    free(late);
    if (rc == 0 && !o->dry_run)
        rc = record_positions(&x, ent, n_ent);
    if (tty)
        fprintf(stderr, "\r\033[K");
    for (int k = 0; k < 2; k++) {
        stats->turns[k] = tb_imap_turns(x.s[k].c);
        stats->xr[k] = x.xr_used[k];
    }
out:
    free_entries(ent, n_ent);
    tb_xrep_reply_clear(&x.xr[0]);
    tb_xrep_reply_clear(&x.xr[1]);
    clear_copied(&x);
    free(x.copied);
    if (rc == 0)
        tb_store_logout(x.both, 2);
    for (int k = 0; k < 2; k++)
        tb_store_free(&x.s[k]);
    uv_run(loop, UV_RUN_DEFAULT);
    return rc;
}
