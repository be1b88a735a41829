/* Pair-level driver: discovery, renames, the run's order and write batches (entry.c holds a
 * mailbox's create/delete/subscribe, mailbox.c its passes, batch.c the write batches,
 * xrdisc.c the X-REPLICATE discovery).
 *
 * Per changed mailbox, a pass = SELECT (QRESYNC from the state's base) on both sides, a
 * plan (plan.c), its execution, and one state transaction recording the pairs and the
 * pre-write UIDNEXT/HIGHESTMODSEQ of that pass. Passes repeat until one finds nothing to
 * do: that pass sees only our own writes echoed back, and its values make the next run's
 * listing match the state, so a run with nothing to do is one LIST-STATUS (or one
 * XREPLICATE CHANGES, sync/xr.h) per server. The first pass may take a side's delta from
 * X-REPLICATE instead of a SELECT; a later pass selects only the sides the previous one
 * wrote to (the other side's unseen changes are left to the next run's listing). The first
 * passes of consecutive changed mailboxes are written as one batch (batch.c: two round
 * trips for all of them); the pass after the first one's writes is deferred:
 * settle_deferred sends those of up to 64 mailboxes in one write per server.
 * A crash between execution and commit leaves an older state; the next run pairs the
 * copies that arrived by identity instead of copying them again. */
#include "sync/engine.h"

#include "protocol/xrep.h"
#include "store/store.h"
#include "sync/engine_internal.h"
#include "sync/names.h"
#include "util/mutf7.h"
#include "sync/plan.h"
#include "sync/xr.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/imap.h"
#include "twinbox/state.h"
#include "util/uidmap.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool tb_eng_wanted(struct ctx *x, const char *canon)
{
    /* A migration selects by the source's names: a mapped name is judged by its origin. */
    for (size_t i = 0; x->mode && i < x->n_mapped; i++) {
        if (!x->mapped[i].to && strcmp(x->mapped[i].from, canon) == 0)
            return false; /* left out by the mapping (Gmail's \All) or --subscribed-only */
        if (x->mapped[i].to && strcmp(x->mapped[i].to, canon) == 0) {
            canon = x->mapped[i].from;
            break;
        }
    }
    if (x->o->n_only) {
        bool hit = false;
        for (size_t i = 0; i < x->o->n_only && !hit; i++)
            hit = strcmp(x->o->only[i], canon) == 0;
        if (!hit)
            return false;
    }
    if (tb_eng_replica_temp(canon))
        return false; /* replica-init's work on the target side */
    return tb_pair_wants(x->pair, canon);
}

int tb_eng_store_fail(struct ctx *x)
{
    for (int k = 0; k < 2; k++) {
        if (!x->s[k].failed)
            continue;
        *x->err = x->s[k].err;
        return tb_error_exit(x->err->kind);
    }
    tb_error_set(x->err, TB_ERR_INTERNAL, "pair %s: sync failed", x->pair->name);
    return tb_error_exit(x->err->kind);
}

int tb_eng_state_fail(struct ctx *x, const char *what)
{
    tb_error_set(x->err, TB_ERR_INTERNAL, "pair %s: state: %s: %s", x->pair->name, what,
                 tb_state_error(x->st));
    tb_state_rollback(x->st);
    return tb_error_exit(x->err->kind);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->canon, ((const struct entry *)b)->canon);
}

/* discover()'s entries by canonical name, so that joining both listings and the state
 * costs O(n) where a scan per name cost O(n^2) (a million strcmp at 1,000 mailboxes). Open
 * addressing over entry indexes + 1 (0: empty), sized once for every entry discovery can
 * make, so at most half full. Names come from servers: the hash is seeded. */
struct ent_index {
    struct entry *ent; /* borrowed: discover()'s array */
    size_t *slot, mask;
};

static void ent_index_init(struct ent_index *ix, struct entry *ent, size_t cap)
{
    size_t n = 16;
    while (n < 2 * cap)
        n *= 2;
    ix->ent = ent;
    ix->slot = tb_xcalloc(n, sizeof(*ix->slot));
    ix->mask = n - 1;
}

/* The slot holding canon's entry, or the empty one where it would go. */
static size_t *ent_slot(const struct ent_index *ix, const char *canon)
{
    for (size_t i = tb_hash_str(canon) & ix->mask;; i = (i + 1) & ix->mask)
        if (!ix->slot[i] || strcmp(ix->ent[ix->slot[i] - 1].canon, canon) == 0)
            return &ix->slot[i];
}

static struct entry *find_entry(const struct ent_index *ix, const char *canon)
{
    size_t *slot = ent_slot(ix, canon);
    return *slot ? &ix->ent[*slot - 1] : NULL;
}

/* canon's entry, made as entry *n_ent when new (taking canon); canon is freed otherwise. */
static struct entry *entry_for(struct ent_index *ix, size_t *n_ent, char *canon)
{
    size_t *slot = ent_slot(ix, canon);
    if (*slot) {
        free(canon);
        return &ix->ent[*slot - 1];
    }
    ix->ent[*n_ent].canon = canon;
    *slot = ++*n_ent;
    return &ix->ent[*slot - 1];
}

/* X-REPLICATE's section of mailbox `name` on side k: sections come in the listing's order,
 * so the search starts after the last one found (*next) and wraps around. */
static struct tb_xrep_section *section_of(struct ctx *x, int k, const char *name, size_t *next)
{
    size_t n = x->xr[k].n_sec;
    for (size_t t = 0; t < n; t++) {
        size_t j = (*next + t) % n;
        if (x->xr[k].sec[j].name && strcmp(x->xr[k].sec[j].name, name) == 0) {
            *next = j + 1;
            return &x->xr[k].sec[j];
        }
    }
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A mailbox done (PROGRESS), or all of them (PROGRESS_END): the caller may show a rate. */
static void progress(struct ctx *x, enum tb_sync_event_kind kind, double t0)
{
    if (!x->o->on_event)
        return;
    struct tb_sync_event ev = {
        .kind = kind, .pair = x->pair->name, .side = -1, .stats = x->stats, .elapsed = now() - t0};
    x->o->on_event(x->o->event_ud, &ev);
}

const char *tb_eng_show(struct entry *e)
{
    if (!e->show)
        e->show = tb_mutf7_to_utf8(e->canon);
    return e->show;
}

static void free_entries(struct entry *ent, size_t n_ent)
{
    for (size_t i = 0; i < n_ent; i++) {
        tb_eng_free_pre(&ent[i]);
        tb_uidset_free(&ent[i].copied[0]);
        tb_uidset_free(&ent[i].copied[1]);
        free(ent[i].canon);
        free(ent[i].show);
        if (ent[i].st) {
            free(ent[i].st->name);
            free(ent[i].st);
        }
    }
    free(ent);
}

/* A name one side cannot hold (its separator inside a level, a hierarchy on a flat server)
 * is never mangled into another name: the mailbox is left alone, with one warning. */
static void unrepresentable(struct ctx *x, struct entry *ent, size_t n_ent)
{
    for (size_t i = 0; i < n_ent; i++) {
        for (int k = 0; k < 2 && !ent[i].skip; k++) {
            const char *why = NULL;
            char *w = tb_mbox_wire(tb_store_ns(&x->s[k]), ent[i].canon, &why);
            if (w) {
                free(w);
                continue;
            }
            if (tb_eng_wanted(x, ent[i].canon)) {
                tb_eng_warn(x, ent[i].canon,
                            "pair %s: mailbox %s cannot exist on %s (%s); left alone",
                            x->pair->name, ent[i].canon, k ? "b" : "a", why);
                x->stats->unsyncable_mailboxes++;
            }
            ent[i].skip = true;
        }
    }
}

/* One-way: the destination name of the source's mailbox b (canon: its canonical name,
 * taken). A folder left out is still listed under its own name: one not selected is never
 * taken for one deleted on the source (tb_eng_wanted says no to it). */
static char *source_name(struct ctx *x, const struct ent_index *ix, const struct tb_mbox_info *b,
                         char *canon)
{
    int k = x->mode->source;
    char *mapped = tb_eng_map(x, b, canon);
    const struct tb_sync_map *mp = x->o->map;
    if (!mapped || (mp && mp->subscribed_only && !b->subscribed && strcmp(canon, "INBOX") != 0)) {
        free(mapped);
        x->mapped = tb_xrealloc(x->mapped, (x->n_mapped + 1) * sizeof(*x->mapped));
        x->mapped[x->n_mapped].from = tb_xstrdup(canon);
        x->mapped[x->n_mapped++].to = NULL;
        mapped = tb_xstrdup(canon);
    }
    struct entry *taken = find_entry(ix, mapped);
    if (taken && taken->box[k]) {
        /* Two source folders onto one name: the second keeps its own. */
        tb_eng_warn(x, NULL, "pair %s: mailbox %s would go to %s like %s; kept as %s",
                    x->pair->name, canon, mapped, taken->box[k]->name, canon);
        free(mapped);
        mapped = tb_xstrdup(canon);
    }
    if (mapped && strcmp(mapped, canon) != 0) {
        x->mapped = tb_xrealloc(x->mapped, (x->n_mapped + 1) * sizeof(*x->mapped));
        x->mapped[x->n_mapped].from = tb_xstrdup(canon);
        x->mapped[x->n_mapped++].to = tb_xstrdup(mapped);
    }
    free(canon);
    return mapped;
}

/* LIST-STATUS (or X-REPLICATE) on both sides and the state's mailboxes, joined by
 * canonical name. */
static int discover(struct ctx *x, struct entry **out, size_t *n_out)
{
    struct tb_state_mailbox *smb = NULL;
    size_t n_smb = 0;
    *out = NULL;
    *n_out = 0;
    int rc = x->pair->replica ? tb_eng_replica_check(x) : 0;
    if (rc == 0)
        rc = tb_eng_list_both(x);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < x->n_mapped; i++) {
        free(x->mapped[i].from);
        free(x->mapped[i].to);
    }
    x->n_mapped = 0; /* made again from this listing */
    for (int k = 0; k < 2; k++) {
        const struct tb_ns *ns = tb_store_ns(&x->s[k]);
        struct tb_sync_event ev = {.kind = TB_SYNC_EV_DEBUG, .side = k, .level = 1};
        tb_eng_emit(x, &ev, "pair %s: %s: %s; discovery %s; namespace \"%s\" separator '%c'%s",
                    x->pair->name, k ? "b" : "a", tb_strategy_name(tb_store_strategy(&x->s[k])),
                    tb_imap_has_cap(x->s[k].c, "LIST-STATUS") ? "LIST-STATUS"
                                                              : "LIST, LSUB and STATUS",
                    ns->prefix, ns->sep ? ns->sep : '-',
                    tb_imap_has_cap(x->s[k].c, "UIDPLUS") ? "" : "; no UIDPLUS");
    }
    if (tb_state_mailboxes(x->st, &smb, &n_smb) < 0)
        return tb_eng_state_fail(x, "read");
    size_t cap = x->s[0].n_boxes + x->s[1].n_boxes + n_smb + 1, n_ent = 0;
    struct entry *ent = tb_xcalloc(cap, sizeof(*ent));
    struct ent_index ix;
    ent_index_init(&ix, ent, cap);
    for (int k = 0; k < 2; k++) {
        size_t next_sec = 0;
        for (size_t i = 0; i < x->s[k].n_boxes; i++) {
            struct tb_mbox_info *b = &x->s[k].boxes[i];
            if (b->noselect)
                continue;
            const char *why = NULL;
            char *canon = tb_mbox_canon(tb_store_ns(&x->s[k]), b->name, &why);
            if (!canon) {
                /* Other namespaces are not the account's own mail: left out quietly. */
                if (strcmp(why, "in another user's or a shared namespace") != 0 &&
                    strcmp(why, "outside the personal namespace") != 0)
                    tb_eng_warn(x, NULL, "pair %s: mailbox %s on %s: %s; left out", x->pair->name,
                                b->name, k ? "b" : "a", why);
                continue;
            }
            if (x->mode && k == x->mode->source)
                canon = source_name(x, &ix, b, canon);
            struct entry *e = entry_for(&ix, &n_ent, canon);
            e->box[k] = b;
            /* STATUS lines and sections come in the same order, one each */
            if (x->xr_used[k] && !e->sec[k])
                e->sec[k] = section_of(x, k, b->name, &next_sec);
        }
    }
    for (size_t i = 0; i < n_smb; i++) {
        struct entry *e = entry_for(&ix, &n_ent, tb_xstrdup(smb[i].name));
        e->st = tb_xcalloc(1, sizeof(*e->st));
        *e->st = smb[i];
        e->st->name = tb_xstrdup(smb[i].name);
    }
    tb_state_mailboxes_free(smb, n_smb);
    free(ix.slot);
    unrepresentable(x, ent, n_ent);
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
            tb_xr_event(&x->xr[k], tb_store_ns(&x->s[k]), TB_XREP_RENAMED, e->canon))
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
        if (tb_eng_replica_temp(e->canon))
            continue;
        int k = renamed_side(x, e); /* side where the old mailbox left the name */
        if (k < 0 || (x->mode && k != x->mode->source))
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
        char *new_name =
            x->xr_rel[k] ? tb_xr_renamed_to(&x->xr[k], tb_store_ns(&x->s[k]), e->canon) : NULL;
        bool known = new_name || (x->xr_rel[k] && tb_xr_event(&x->xr[k], tb_store_ns(&x->s[k]),
                                                              TB_XREP_DELETED, e->canon));
        for (size_t j = 0; j < n_ent; j++) {
            struct entry *f = &ent[j];
            if (f->st || !f->box[k] || f->box[1 - k] || tb_eng_replica_temp(f->canon))
                continue;
            if (known ? !new_name || strcmp(new_name, f->canon) != 0
                      : f->box[k]->uidvalidity != e->st->side[k].uidvalidity)
                continue;
            char *from = tb_eng_wire(x, e, 1 - k);
            char *to = tb_name_wire(f->canon, tb_store_ns(&x->s[1 - k]));
            struct tb_sync_event ev = {.kind = TB_SYNC_EV_RENAME,
                                       .mailbox = tb_eng_show(e),
                                       .to = tb_eng_show(f),
                                       .side = 1 - k};
            tb_eng_emit(x, &ev, "%s: renamed on %s to %s, renaming on %s", ev.mailbox,
                        k ? "b" : "a", ev.to, k ? "a" : "b");
            tb_store_rename(&x->s[1 - k], from, to);
            free(from);
            free(to);
            if (tb_store_wait(x->both, 2) < 0)
                rc = tb_eng_store_fail(x);
            else if (tb_state_mailbox_rename(x->st, e->st->id, f->canon) < 0)
                rc = tb_eng_state_fail(x, "rename");
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

/* An interrupted replica-init left its names on a side: a sync would take the mailboxes it
 * renamed away for deleted ones. Only replica-init goes on from there (rebuilding, then
 * listing again). */
static int replica_guard(struct ctx *x, const struct entry *ent, size_t n_ent)
{
    for (size_t i = 0; i < n_ent && !x->o->replica_init; i++)
        if (tb_eng_replica_temp(ent[i].canon)) {
            tb_error_set(x->err, TB_ERR_CONFLICT,
                         "pair %s: mailbox %s is left from an interrupted replica-init; run "
                         "twinbox replica-init %s --reference a|b again",
                         x->pair->name, ent[i].canon, x->pair->name);
            return tb_error_exit(TB_ERR_CONFLICT);
        }
    return 0;
}

static int replica_steps(struct ctx *x, struct entry **ent, size_t *n_ent)
{
    if (!x->o->replica_init || x->o->dry_run)
        return 0;
    int rebuilt = 0;
    int rc = tb_eng_replica_init(x, *ent, *n_ent, x->o->reference, &rebuilt);
    if (rc == 0 && rebuilt) {
        free_entries(*ent, *n_ent);
        rc = discover(x, ent, n_ent);
    }
    return rc;
}

/* Renames found on one side done on the other (and replica mode's one-GUID-one-name
 * renames); the listing is taken again after any. */
static int renames(struct ctx *x, struct entry **ent, size_t *n_ent)
{
    int renamed = 0;
    int rc = detect_renames(x, *ent, *n_ent, &renamed);
    x->stats->renamed += (uint64_t)renamed;
    if (rc == 0 && renamed) {
        free_entries(*ent, *n_ent);
        rc = discover(x, ent, n_ent);
    }
    if (rc == 0 && x->pair->replica)
        rc = tb_eng_replica_renames(x, *ent, *n_ent, &renamed);
    if (rc == 0 && x->pair->replica && renamed) {
        x->stats->renamed += (uint64_t)renamed;
        free_entries(*ent, *n_ent);
        rc = discover(x, ent, n_ent);
    }
    return rc;
}

/* The first passes of the mailboxes collected for a write batch (batch.c). */
static int flush_batch(struct ctx *x, struct entry **batch, size_t *n, double t0, bool *stopped)
{
    size_t done;
    int rc = tb_eng_write_batch(x, batch, *n, &done);
    x->stats->mailboxes_done += done;
    if (done)
        progress(x, TB_SYNC_EV_PROGRESS, t0);
    if (done < *n)
        *stopped = true;
    *n = 0;
    return rc;
}

/* Every wanted mailbox synced, in order (see below), then the run's positions and a
 * migration's verdicts; progress reported after each mailbox. */
static int run_entries(struct ctx *x, struct entry *ent, size_t n_ent)
{
    int rc = 0;
    for (size_t i = 0; i < n_ent; i++)
        if (tb_eng_wanted(x, ent[i].canon))
            x->stats->mailboxes_total++;
    double t0 = now();
    /* Mailboxes gone on one side last and children first, so a parent is deleted after
     * its children (a server may refuse, or keep, a parent that still has children). */
    /* Classified once, before anything runs: syncing an entry gives it a state row. */
    bool *late = tb_xcalloc(n_ent + 1, sizeof(bool));
    for (size_t j = 0; j < n_ent; j++)
        late[j] = ent[j].st && (ent[j].box[0] == NULL) != (ent[j].box[1] == NULL);
    bool stopped = false;
    struct entry **batch = tb_xcalloc(n_ent + 1, sizeof(*batch));
    size_t n_batch = 0;
    uint64_t listed = 0; /* messages the batch lists (new mailboxes) */
    for (int phase = 0; phase < 2 && rc == 0 && !stopped; phase++) {
        for (size_t j = 0; j < n_ent && rc == 0; j++) {
            size_t idx = phase ? n_ent - 1 - j : j;
            struct entry *e = &ent[idx];
            if (late[idx] != (phase == 1) || !tb_eng_wanted(x, e->canon))
                continue;
            if (tb_eng_stopping(x)) {
                stopped = true; /* a batch not written yet is left to the next run */
                break;
            }
            /* Consecutive changed mailboxes are written as one batch; an unchanged one
             * has nothing to write and does not end it. */
            bool batchable = tb_eng_batchable(x, e);
            if (batchable && e->st && tb_eng_unchanged(e)) {
                x->stats->mailboxes_done++; /* as sync_entry: nothing to do */
                progress(x, TB_SYNC_EV_PROGRESS, t0);
                continue;
            }
            if (batchable) {
                if (n_batch == WRITE_BATCH ||
                    (n_batch && listed + tb_eng_batch_listed(e) > BATCH_LISTED))
                    rc = flush_batch(x, batch, &n_batch, t0, &stopped);
                if (stopped)
                    break;
                listed = (n_batch ? listed : 0) + tb_eng_batch_listed(e);
                batch[n_batch++] = e;
                continue;
            }
            rc = flush_batch(x, batch, &n_batch, t0, &stopped);
            if (stopped)
                break;
            if (rc == 0)
                rc = tb_eng_sync_entry(x, e);
            x->stats->mailboxes_done++;
            progress(x, TB_SYNC_EV_PROGRESS, t0);
        }
        if (rc == 0 && !stopped)
            rc = flush_batch(x, batch, &n_batch, t0, &stopped);
        if (rc == 0)
            rc = tb_eng_settle_deferred(x, ent, n_ent);
    }
    free(batch);
    free(late);
    if (rc == 0 && stopped) {
        /* Each mailbox done is in the state; the X-REPLICATE positions would also cover
         * the ones not done, so they stay where they were and the next run does the rest. */
        tb_error_set(x->err, TB_ERR_TEMP, "pair %s: stopped after %llu of %llu mailboxes",
                     x->pair->name, (unsigned long long)x->stats->mailboxes_done,
                     (unsigned long long)x->stats->mailboxes_total);
        rc = tb_error_exit(x->err->kind);
    }
    if (rc == 0 && !x->o->dry_run)
        rc = tb_eng_record_positions(x, ent, n_ent);
    if (rc == 0 && !x->o->dry_run && x->mode && x->o->verdict)
        rc = tb_eng_verdict(x, ent, n_ent);
    progress(x, TB_SYNC_EV_PROGRESS_END, t0);
    return rc;
}

/* A position is stored: discovery starts with XREPLICATE CHANGES, not a listing (and
 * replica mode's listing asks X-GUID, decided after login). */
static bool xr_expected(struct ctx *x, int k)
{
    char *token = NULL;
    bool stored = x->acct[k]->xreplicate && tb_state_xrep_token(x->st, k, &token) == 0 && token;
    free(token);
    return stored;
}

int tb_sync_pair(uv_loop_t *loop, const struct tb_pair *pair, const struct tb_account *acct[2],
                 const char *password[2], struct tb_state *st, const struct tb_sync_opts *o,
                 struct tb_sync_stats *stats, struct tb_error *err)
{
    struct ctx x = {.pair = pair,
                    .acct = acct,
                    .password = password,
                    .loop = loop,
                    .st = st,
                    .o = o,
                    .stats = stats,
                    .err = err,
                    .may_defer = !o->dry_run};
    x.out.x = &x;
    tb_error_clear(err);
    /* Unique per run, not per second: a migration retries within the same second, and a
     * failed attempt's intents must be another run's (suspects) to its retry. */
    static atomic_uint runs;
    snprintf(x.run, sizeof(x.run), "%lld-%d-%u", (long long)time(NULL), (int)getpid(),
             atomic_fetch_add(&runs, 1));
    struct tb_plan_mode mode = {o->source, o->mirror, o->since, o->before, o->max_size};
    if (o->one_way)
        x.mode = &mode;
    for (int k = 0; k < 2; k++) {
        tb_store_init(&x.s[k], loop, acct[k], password[k]);
        x.s[k].read_only = o->one_way && k == o->source;
        x.both[k] = &x.s[k];
        if (!pair->replica && !xr_expected(&x, k))
            tb_store_list_early(&x.s[k]); /* discover() lists first: in the login's flight */
    }
    int rc = 0;
    struct entry *ent = NULL;
    size_t n_ent = 0;
    if (tb_store_wait(x.both, 2) < 0) {
        rc = tb_eng_store_fail(&x);
        goto out;
    }
    rc = discover(&x, &ent, &n_ent);
    if (rc == 0)
        rc = replica_guard(&x, ent, n_ent);
    if (rc == 0 && !o->dry_run)
        rc = renames(&x, &ent, &n_ent);
    if (rc == 0)
        rc = replica_steps(&x, &ent, &n_ent);
    if (rc == 0)
        rc = tb_eng_survey(&x, ent, n_ent);
    if (rc != 0)
        goto out;
    rc = run_entries(&x, ent, n_ent);
    if (rc == 0 && stats->unsyncable_mailboxes) {
        /* Permanent until someone renames them: exit 7, as a refused message does. */
        tb_error_set(err, TB_ERR_CONFLICT,
                     "pair %s: %llu mailbox%s cannot exist on the other side (see the warnings "
                     "above); rename %s to sync %s",
                     pair->name, (unsigned long long)stats->unsyncable_mailboxes,
                     stats->unsyncable_mailboxes == 1 ? "" : "es",
                     stats->unsyncable_mailboxes == 1 ? "it" : "them",
                     stats->unsyncable_mailboxes == 1 ? "it" : "them");
        rc = tb_error_exit(err->kind);
    } else if (rc == 0 && stats->skipped_mailboxes) {
        /* Everything else is done; what was left alone is retried by the next run. */
        tb_error_set(err, TB_ERR_TEMP,
                     "pair %s: %llu mailbox%s left alone this run (see the "
                     "warnings above)",
                     pair->name, (unsigned long long)stats->skipped_mailboxes,
                     stats->skipped_mailboxes == 1 ? "" : "es");
        rc = tb_error_exit(err->kind);
    }
out:
    for (int k = 0; k < 2; k++) {
        stats->turns[k] = tb_imap_turns(x.s[k].c);
        stats->flags_unstorable += x.s[k].flags_dropped;
        stats->xr[k] = x.xr_used[k];
    }
    free_entries(ent, n_ent);
    for (size_t i = 0; i < x.n_mapped; i++) {
        free(x.mapped[i].from);
        free(x.mapped[i].to);
    }
    free(x.mapped);
    tb_xrep_reply_clear(&x.xr[0]);
    tb_xrep_reply_clear(&x.xr[1]);
    tb_eng_out_free(&x.out);
    tb_store_logout(x.both, 2); /* those still working and idle say goodbye */
    for (int k = 0; k < 2; k++)
        tb_store_free(&x.s[k]);
    uv_run(loop, UV_RUN_DEFAULT);
    tb_eng_batch_release(&x);
    tb_uidset_free(&x.displaced[0]);
    tb_uidset_free(&x.displaced[1]);
    return rc;
}

void tb_sync_stats_free(struct tb_sync_stats *s)
{
    for (size_t i = 0; i < s->guard.n_lines; i++)
        free(s->guard.lines[i]);
    free(s->guard.lines);
    s->guard.lines = NULL;
    s->guard.n_lines = 0;
}
