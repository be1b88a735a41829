/* The survey: everything a run's removals rest on, found out before the run writes.
 *
 * 1. A state mailbox missing on one side is gone only on positive evidence: X-REPLICATE
 *    reported its GUID deleted, or the server answers STATUS with NO [NONEXISTENT]. A LIST
 *    that had an unreadable line, a mailbox the plugin could not read, any other NO/BAD or
 *    no answer leave it alone this run (one warning). One pipelined round trip.
 * 2. The first pass's deltas of every changed mailbox, pipelined SURVEY_BATCH mailboxes per
 *    round trip (tb_store_delta_queue), or taken from X-REPLICATE; a delta that is not a
 *    complete picture (unreadable line, short listing, NO to its SELECT) leaves its mailbox
 *    alone this run. The deltas are kept for that first pass (entry.pre).
 * 3. Their plans give the exact expunges; with the messages of the mailboxes to delete they
 *    are what the run would remove per side. Above the pair's max-delete the run stops
 *    here, having written nothing (renames, which move no message, were applied before),
 *    unless --force. A dry run reports the same numbers.
 * Renames come before the survey (engine.c) because they change which names pair up. */
#include "sync/engine_internal.h"

#include "protocol/xrep.h"
#include "store/store.h"
#include "sync/names.h"
#include "sync/plan.h"
#include "sync/xr.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/imap.h"
#include "twinbox/state.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SURVEY_BATCH 64

static void leave_alone(struct ctx *x, struct entry *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void leave_alone(struct ctx *x, struct entry *e, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    tb_eng_warn(x, NULL, "pair %s: mailbox %s: %s; left alone this run", x->pair->name,
                tb_eng_show(e), why);
    e->skip = true;
    x->stats->skipped_mailboxes++;
}

/* X-REPLICATE reported the mailbox but could not read it (a RESYNC without STATUS). */
static bool xr_unreadable(struct ctx *x, int k, const char *canon)
{
    if (!x->xr_used[k])
        return false;
    for (size_t i = 0; i < x->xr[k].n_sec; i++) {
        const struct tb_xrep_section *sec = &x->xr[k].sec[i];
        if (sec->closed || !sec->name)
            continue;
        char *c = tb_name_canon(sec->name, tb_store_ns(&x->s[k]));
        bool hit = strcmp(c, canon) == 0;
        free(c);
        if (hit)
            return true;
    }
    return false;
}

static const char *side_name(int k)
{
    return k ? "b" : "a";
}

/* Why side k's listing cannot prove that `canon` is absent there, or NULL. */
static const char *absence_unproven(struct ctx *x, int k, const char *canon)
{
    if (x->s[k].list_incomplete)
        return x->s[k].list_bad;
    if (xr_unreadable(x, k, canon))
        return "X-REPLICATE could not read it";
    return NULL;
}

static bool quiet(const struct entry *e, int k)
{
    const struct tb_mbox_info *o = e->box[k];
    const struct tb_state_side *s = &e->st->side[k];
    return o && o->have_status && o->uidvalidity == s->uidvalidity && o->uidnext == s->uidnext &&
           o->highestmodseq == s->highestmodseq && (o->highestmodseq > 0 || o->messages == 0);
}

/* Step 1: a verdict for every wanted state mailbox present on one side only; mailboxes new
 * on one side whose absence on the other is not proven are left alone too (a CREATE there
 * could collide with the unseen mailbox). */
static int check_gone(struct ctx *x, struct entry *ent, size_t n_ent)
{
    struct tb_exists *ex = tb_xcalloc(n_ent + 1, sizeof(*ex));
    bool *asked = tb_xcalloc(n_ent + 1, sizeof(bool));
    bool any = false;
    for (size_t i = 0; i < n_ent; i++) {
        struct entry *e = &ent[i];
        if (!tb_eng_wanted(x, e->canon) || (e->box[0] != NULL) == (e->box[1] != NULL))
            continue;
        int g = e->box[0] ? 1 : 0; /* the side it is missing on */
        const char *why = absence_unproven(x, g, e->canon);
        if (why) {
            leave_alone(x, e, "missing on %s, but that listing is not complete (%s)", side_name(g),
                        why);
            continue;
        }
        if (!e->st)
            continue; /* new on one side: created on the other */
        if (x->mode && !(g == x->mode->source && x->mode->mirror))
            continue; /* one-way: nothing is removed on this evidence (sync_entry) */
        if (strcmp(e->canon, "INBOX") == 0) {
            /* INBOX always exists (RFC 3501); some servers create it only on first use. */
            leave_alone(x, e, "INBOX is missing from the LIST of %s", side_name(g));
            continue;
        }
        if (x->xr_rel[g] &&
            tb_xr_event(&x->xr[g], tb_store_ns(&x->s[g]), TB_XREP_DELETED, e->canon)) {
            e->gone = quiet(e, 1 - g) ? GONE_DELETE : GONE_RECREATE;
            continue;
        }
        char *w = tb_eng_wire(x, e, g);
        if (!w) {
            leave_alone(x, e, "missing on %s under a name mapped from another", side_name(g));
            continue;
        }
        tb_store_exists(&x->s[g], w, &ex[i]);
        free(w);
        asked[i] = any = true;
    }
    int rc = 0;
    if (any && tb_store_wait(x->both, 2) < 0)
        rc = tb_eng_store_fail(x);
    for (size_t i = 0; i < n_ent && rc == 0; i++) {
        struct entry *e = &ent[i];
        if (!asked[i])
            continue;
        int g = e->box[0] ? 1 : 0;
        if (ex[i].state == TB_EXISTS_NO)
            e->gone = quiet(e, 1 - g) ? GONE_DELETE : GONE_RECREATE;
        else if (ex[i].state == TB_EXISTS_YES)
            leave_alone(x, e, "missing from the LIST of %s, but STATUS finds it", side_name(g));
        else
            leave_alone(x, e, "missing from the LIST of %s, and %s", side_name(g), ex[i].why);
    }
    free(ex);
    free(asked);
    return rc;
}

/* A changed mailbox known to both sides and the state, synced from the state's base. */
static bool needs_delta(struct ctx *x, const struct entry *e)
{
    if (e->skip || !e->st || !e->box[0] || !e->box[1] || !tb_eng_wanted(x, e->canon) ||
        x->o->full_resync)
        return false; /* a full resync removes nothing: it matches everything again */
    for (int k = 0; k < 2; k++)
        if (e->box[k]->uidvalidity != e->st->side[k].uidvalidity)
            return false; /* re-matched from scratch: nothing is removed */
    return !tb_eng_side_unchanged(e, 0) || !tb_eng_side_unchanged(e, 1) || e->due[0] || e->due[1];
}

/* The X-REPLICATE delta of side k, where the stored position's numbers are the state's. */
static bool xr_delta(struct ctx *x, struct entry *e, int k, const struct tb_state_msg *pairs,
                     size_t n_pairs, struct tb_delta *out)
{
    const struct tb_xrep_section *sec = e->sec[k];
    const struct tb_state_side *b = &e->st->side[k];
    uint64_t hms = 0;
    if (!x->xr_rel[k] || !sec || e->due[k] || sec->uidvalidity != b->uidvalidity ||
        tb_state_xrep_mailbox(x->st, k, e->canon, &hms) < 0 || hms == 0 || hms != b->highestmodseq)
        return false;
    /* A pair at or above the state's UIDNEXT is a copy written after those numbers were
     * read (by a run that died, or left the mailbox, before it read them again). The
     * position holds the same UIDNEXT, so the server never reports that UID's expunge
     * ("expunges of messages the position did not know are not reported"): only QRESYNC
     * from the state's numbers sees it. */
    for (size_t i = 0; i < n_pairs; i++)
        if (pairs[i].uid[k] >= b->uidnext)
            return false;
    if (!tb_xr_delta(sec, k, pairs, n_pairs, out))
        return false;
    x->stats->xr_deltas++;
    return true;
}

/* Starts side k's first-pass delta: the state's numbers when that side did not change, the
 * X-REPLICATE delta when usable, else SELECT+FETCH queued behind the batch's others. */
static int start_delta(struct ctx *x, struct entry *e, int k, const struct tb_state_msg *pairs,
                       size_t n_pairs)
{
    const struct tb_state_side *b = &e->st->side[k];
    struct tb_delta *d = e->pre[k] = tb_xcalloc(1, sizeof(*d));
    if (tb_eng_side_unchanged(e, k) && !e->due[k]) {
        tb_eng_delta_of_state(d, b);
        return 0;
    }
    uint64_t base_ms = b->highestmodseq;
    if (e->box[k]->have_status && e->box[k]->highestmodseq < b->highestmodseq) {
        /* The server's MODSEQs went back (Dovecot rebuilt the index after its logs were
         * lost): QRESYNC from ours would miss changes. A full UID/FLAGS listing, diffed
         * against the state's pairs, misses none. */
        tb_eng_warn(x, NULL,
                    "%s: HIGHESTMODSEQ on %s went back from %llu to %llu; listing every message",
                    e->canon, side_name(k), (unsigned long long)b->highestmodseq,
                    (unsigned long long)e->box[k]->highestmodseq);
        base_ms = 0;
    } else if (xr_delta(x, e, k, pairs, n_pairs, d)) {
        return 0;
    }
    struct tb_uidset extra;
    tb_uidset_init(&extra);
    int rc = tb_eng_skip_refetch(x, e->canon, k, b->uidvalidity, &extra);
    if (rc == 0) {
        char *w = tb_eng_wire(x, e, k);
        tb_store_delta_queue(&x->s[k], w, b->uidvalidity, base_ms, b->uidnext, &extra, d);
        free(w);
    }
    tb_uidset_free(&extra);
    return rc;
}

static void free_pre(struct entry *e)
{
    for (int k = 0; k < 2; k++) {
        if (e->pre[k])
            tb_delta_clear(e->pre[k]);
        free(e->pre[k]);
        e->pre[k] = NULL;
    }
}

static void guard_line(struct ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void guard_line(struct ctx *x, const char *fmt, ...)
{
    char line[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    x->stats->guard.lines =
        tb_xrealloc(x->stats->guard.lines, (x->stats->guard.n_lines + 1) * sizeof(char *));
    x->stats->guard.lines[x->stats->guard.n_lines++] = tb_xstrdup(line);
}

/* The plan of a surveyed mailbox, for its expunges only. A delta that cannot be used leaves
 * the mailbox alone (and frees it). */
static int count_expunges(struct ctx *x, struct entry *e)
{
    for (int k = 0; k < 2; k++) {
        struct tb_delta *d = e->pre[k];
        if (d->unreadable) {
            leave_alone(x, e, "%s: %s", side_name(k), d->unreadable);
            free_pre(e);
            return 0;
        }
        if (!d->full && d->uidvalidity != e->st->side[k].uidvalidity) {
            leave_alone(x, e, "UIDVALIDITY changed on %s during the run", side_name(k));
            free_pre(e);
            return 0;
        }
    }
    struct tb_state_msg *pairs = NULL;
    size_t n_pairs = 0;
    struct tb_state_intent *sus = NULL;
    size_t n_sus = 0;
    struct tb_plan_skips sk = {0};
    struct tb_uidset gone[2];
    tb_uidset_init(&gone[0]);
    tb_uidset_init(&gone[1]);
    int rc = 0;
    if (tb_state_messages(x->st, e->st->id, &pairs, &n_pairs) < 0 ||
        tb_state_intents(x->st, e->canon, x->run, &sus, &n_sus) < 0) {
        rc = tb_eng_state_fail(x, "read");
    } else if ((rc = tb_eng_skip_classify(x, e->canon, e->pre, &sk, gone)) == 0) {
        uint32_t base_next[2];
        for (int k = 0; k < 2; k++)
            base_next[k] = e->pre[k]->full ? 0 : e->st->side[k].uidnext;
        struct tb_plan p;
        tb_plan_compute(&p, pairs, n_pairs, e->pre, base_next, sus, n_sus, &sk, x->mode);
        for (int k = 0; k < 2; k++) {
            if (!p.n_expunge[k])
                continue;
            x->stats->guard.remove[k] += p.n_expunge[k];
            guard_line(x, "%s: %zu expunged on %s", tb_eng_show(e), p.n_expunge[k], side_name(k));
        }
        tb_plan_free(&p);
    }
    tb_plan_skips_free(&sk);
    tb_uidset_free(&gone[0]);
    tb_uidset_free(&gone[1]);
    tb_state_intents_free(sus, n_sus);
    tb_state_messages_free(pairs, n_pairs);
    return rc;
}

/* Step 2 and 3: the deltas, SURVEY_BATCH mailboxes per round trip, and their expunges. */
static int read_deltas(struct ctx *x, struct entry *ent, size_t n_ent)
{
    int rc = 0;
    for (size_t i = 0; i < n_ent && rc == 0;) {
        struct entry *batch[SURVEY_BATCH];
        size_t n = 0;
        for (; i < n_ent && n < SURVEY_BATCH && rc == 0; i++) {
            if (!needs_delta(x, &ent[i]))
                continue;
            struct entry *e = batch[n++] = &ent[i];
            struct tb_state_msg *pairs = NULL;
            size_t n_pairs = 0;
            if (tb_state_messages(x->st, e->st->id, &pairs, &n_pairs) < 0) {
                rc = tb_eng_state_fail(x, "read");
                break;
            }
            for (int k = 0; k < 2 && rc == 0; k++)
                rc = start_delta(x, e, k, pairs, n_pairs);
            tb_state_messages_free(pairs, n_pairs);
        }
        if (rc == 0 && n && tb_store_wait(x->both, 2) < 0)
            rc = tb_eng_store_fail(x);
        for (size_t j = 0; j < n && rc == 0; j++)
            rc = count_expunges(x, batch[j]);
    }
    return rc;
}

static uint64_t box_messages(const struct entry *e, int k)
{
    uint64_t m = e->box[k] ? e->box[k]->messages : 0;
    return m > e->n_pairs ? m : e->n_pairs;
}

static bool over_limit(const struct tb_pair *pair, uint64_t remove, uint64_t total)
{
    switch (pair->max_delete) {
    case TB_MAXDEL_UNLIMITED:
        return false;
    case TB_MAXDEL_COUNT:
        return remove > pair->max_delete_value;
    case TB_MAXDEL_PERCENT:
        return remove * 100 > pair->max_delete_value * total;
    case TB_MAXDEL_DEFAULT:
        break;
    }
    return (remove * 10 > total && remove > 100) || (total > 10 && remove >= total);
}

static int guard(struct ctx *x, struct entry *ent, size_t n_ent)
{
    for (size_t i = 0; i < n_ent; i++) {
        struct entry *e = &ent[i];
        if (!tb_eng_wanted(x, e->canon))
            continue;
        for (int k = 0; k < 2; k++)
            if (e->box[k])
                x->stats->guard.total[k] += box_messages(e, k);
        int keep = e->box[0] ? 0 : 1; /* the side still holding it */
        bool deletes = !x->mode || (keep != x->mode->source && x->mode->mirror);
        if (deletes && (e->gone == GONE_DELETE || (x->mode && e->gone == GONE_RECREATE))) {
            int k = keep; /* the side it would be deleted on */
            uint64_t n = box_messages(e, k);
            x->stats->guard.remove[k] += n;
            guard_line(x, "%s: deleted on %s, so deleted on %s with its %llu messages",
                       tb_eng_show(e), side_name(1 - k), side_name(k), (unsigned long long)n);
        }
    }
    x->stats->guard.checked = true;
    for (int k = 0; k < 2; k++)
        if (over_limit(x->pair, x->stats->guard.remove[k], x->stats->guard.total[k]))
            x->stats->guard.tripped = true;
    if (!x->stats->guard.tripped || x->o->force)
        return TB_EXIT_OK;
    int k = over_limit(x->pair, x->stats->guard.remove[0], x->stats->guard.total[0]) ? 0 : 1;
    tb_error_set(x->err, TB_ERR_CONFLICT,
                 "pair %s: the run would remove %llu of the %llu messages on %s (%s), more than "
                 "max-delete allows; nothing was changed: check, then run with --force",
                 x->pair->name, (unsigned long long)x->stats->guard.remove[k],
                 (unsigned long long)x->stats->guard.total[k], side_name(k), x->acct[k]->name);
    return tb_error_exit(x->err->kind);
}

static int cmp_count(const void *a, const void *b)
{
    int64_t x = ((const struct tb_state_count *)a)->mailbox;
    int64_t y = ((const struct tb_state_count *)b)->mailbox;
    return x < y ? -1 : x > y;
}

int tb_eng_survey(struct ctx *x, struct entry *ent, size_t n_ent)
{
    /* Two reads of the state for all mailboxes, not two per mailbox: the pairs of each,
     * and whether any message was ever skipped (rare: then each mailbox looks for its). */
    struct tb_state_count *counts = NULL;
    size_t n_counts = 0;
    bool skipped = true;
    if (tb_state_message_counts(x->st, &counts, &n_counts) < 0 ||
        tb_state_skips_exist(x->st, &skipped) < 0) {
        free(counts);
        return tb_eng_state_fail(x, "read");
    }
    for (size_t i = 0; i < n_ent; i++) {
        struct entry *e = &ent[i];
        if (e->st) {
            struct tb_state_count key = {.mailbox = e->st->id}, *c = NULL;
            if (n_counts)
                c = bsearch(&key, counts, n_counts, sizeof(*counts), cmp_count);
            e->n_pairs = c ? c->n : 0;
        }
        e->due[0] = e->due[1] = 0;
        int rc = skipped ? tb_eng_skip_due(x, e) : 0;
        if (rc != 0) {
            free(counts);
            return rc;
        }
    }
    free(counts);
    int rc = check_gone(x, ent, n_ent);
    if (rc == 0)
        rc = read_deltas(x, ent, n_ent);
    if (rc == 0)
        rc = guard(x, ent, n_ent);
    return rc;
}

void tb_eng_free_pre(struct entry *e)
{
    free_pre(e);
}
