/* Write batches: the first passes of consecutive mailboxes that change, written together.
 *
 * Written alone, a mailbox's first pass costs three round trips per server: its SELECT with
 * the FETCHes and STOREs, its UID EXPUNGE (fenced behind the \Deleted STORE, which a server
 * may otherwise run after it), and the APPENDs of the bodies the other side sent; a new
 * mailbox one more for its listing. A batch lists its new mailboxes in one flight, then
 * sends every mailbox's SELECT, FETCHes and STOREs in one flight, then, after one fence,
 * SELECT and UID EXPUNGE of each mailbox with expunges while the APPENDs follow the
 * bodies: two round trips for the writes of the whole batch. Each mailbox is committed on
 * its own once its round's commands completed, and settled later with the others
 * (tb_eng_settle_deferred).
 *
 * Invariants:
 * - A server runs a session's commands in order (a SELECT waits for the commands before
 *   it), so what is sent between mailbox N's SELECT and N+1's applies to N. A copy whose
 *   FETCHes do not all fit its window sends more later, to whatever is selected then: the
 *   round waits until they are all out before mailbox N+1 (the bodies before them keep
 *   flowing, so the pipe does not drain between mailboxes).
 * - Memory stays bounded: the copies reading from one server share one window of bytes
 *   held (copy.c), however many mailboxes a round runs. A round takes mailboxes while
 *   their copies add up to at most ROUND_BYTES, which bounds how much is committed at
 *   once, not memory; a batch lists at most BATCH_LISTED messages of new mailboxes (one
 *   alone may list more).
 * - Two rounds at most are in flight: round N+1 is submitted, then N completed (its
 *   copies, and each server's commands up to N's mark, tb_store_mark) and committed
 *   while N+1's commands run. A round's writes are its own mailboxes', planned from the
 *   survey and the state, so committing N later changes nothing N+1 sends.
 * - Only passes that need nothing read in between (tb_eng_batchable): a mailbox with state
 *   takes its deltas from the survey or the state (the same UIDVALIDITY), a new one is
 *   listed in full; UIDPLUS on both sides; no replica mode (its moves are ordered legs);
 *   not a dry run.
 * - A batch's pass_outs and UID sets are written by command callbacks: after a failure
 *   those may still fire until the connections close, so a failed batch is kept until the
 *   run ends (tb_eng_batch_release). */
#include "sync/engine_internal.h"

#include "store/store.h"
#include "sync/replica.h"
#include "twinbox/config.h"
#include "twinbox/imap.h"

#include <stdlib.h>
#include <string.h>

#define ROUND_BYTES (128u << 20)

static uint64_t round_bytes(void)
{
    /* Tests shorten it to run many rounds over a few small mailboxes. */
    const char *e = getenv("TWINBOX_TEST_ROUND_BYTES");
    unsigned long long v = e ? strtoull(e, NULL, 10) : 0;
    return v >= 1 && v <= ROUND_BYTES ? v : ROUND_BYTES;
}

struct bpass {
    struct entry *e;
    char *wire[2];
    struct tb_delta dd[2];
    struct pass_io io;
    struct tb_plan p;
    struct tb_uidset modified[2];
    struct tb_copy *cp[2];
    struct pass_out out;
    bool fresh;      /* no state: listed in full by the batch, recorded from scratch */
    bool subscribed; /* as recorded */
    bool done;       /* nothing to write: ended before its pass, or left alone (warned) */
    bool planned, writes;
};

struct write_batch {
    struct write_batch *next;
    size_t n;
    struct bpass bp[];
};

bool tb_eng_batchable(struct ctx *x, const struct entry *e)
{
    if (x->o->dry_run || x->pair->replica || !x->may_defer || x->o->full_resync || e->skip ||
        !tb_imap_has_cap(x->s[0].c, "UIDPLUS") || !tb_imap_has_cap(x->s[1].c, "UIDPLUS"))
        return false;
    if (!e->st)
        return e->box[0] || e->box[1]; /* new: created where missing, listed by the batch */
    if (!e->box[0] || !e->box[1] || e->box[0]->subscribed != e->box[1]->subscribed)
        return false;
    for (int k = 0; k < 2; k++) {
        const struct tb_delta *d = e->pre[k];
        uint32_t v = e->st->side[k].uidvalidity;
        if (e->box[k]->uidvalidity != v)
            return false;
        /* A side the survey did not read must be the state's (start_deltas' pass 0). */
        if (d ? d->unreadable || (!d->full && d->uidvalidity != v)
              : !tb_eng_side_unchanged(e, k) || e->due[k])
            return false;
    }
    return true;
}

uint64_t tb_eng_batch_listed(const struct entry *e)
{
    if (e->st)
        return 0;
    return (e->box[0] ? e->box[0]->messages : 0) + (e->box[1] ? e->box[1]->messages : 0);
}

/* The new mailboxes of the batch: what tb_eng_sync_entry does before the passes (CREATE
 * where missing, subscriptions), then both sides listed in full, all in one flight. */
static int list_fresh(struct ctx *x, struct bpass *bp, size_t n)
{
    bool waiting = false;
    for (size_t i = 0; i < n; i++) {
        struct bpass *b = &bp[i];
        if (b->e->st)
            continue;
        b->fresh = true;
        bool reset;
        int rc = tb_eng_entry_begin(x, b->e, &reset, &b->subscribed);
        if (rc != 1) {
            b->done = true;
            if (rc != 0)
                return rc;
            continue;
        }
        for (int k = 0; k < 2; k++) {
            b->wire[k] = tb_eng_wire(x, b->e, k);
            tb_store_delta_queue(&x->s[k], b->wire[k], 0, 0, 0, NULL, &b->dd[k]);
        }
        b->e->creating = false; /* the wait below covers its CREATE */
        waiting = true;
    }
    if (waiting && tb_store_wait(x->both, 2) < 0)
        return tb_eng_store_fail(x);
    return 0;
}

/* A mailbox with state: its deltas moved from the survey's, else the state's. */
static void take_deltas(struct ctx *x, struct bpass *b)
{
    struct entry *e = b->e;
    b->subscribed = e->box[0]->subscribed; /* the same on both sides (tb_eng_batchable) */
    for (int k = 0; k < 2; k++) {
        b->wire[k] = tb_eng_wire(x, e, k);
        if (e->pre[k]) {
            b->dd[k] = *e->pre[k]; /* moved */
            free(e->pre[k]);
            e->pre[k] = NULL;
        } else {
            tb_eng_delta_of_state(&b->dd[k], &e->st->side[k]);
        }
    }
}

/* The pass's deltas, what it reads from the state, and its plan. A pass without writes is
 * committed here: settled. */
static int prepare(struct ctx *x, struct bpass *b)
{
    struct entry *e = b->e;
    struct tb_delta *d[2] = {&b->dd[0], &b->dd[1]};
    b->out.x = x;
    b->out.mailbox = e->canon;
    if (!b->fresh)
        take_deltas(x, b);
    for (int k = 0; k < 2; k++) {
        tb_uidset_init(&b->modified[k]);
        b->out.uidvalidity[k] = d[k]->uidvalidity;
    }
    if (b->fresh && tb_eng_unusable(x, e, d)) {
        b->done = true; /* nothing recorded: the next run looks again */
        e->unsettled = true;
        return 0;
    }
    int rc = tb_eng_pass_io_load(x, e, b->fresh, &b->io);
    if (rc == 0)
        rc = tb_eng_skip_classify(x, e->canon, d, &b->io.sk, b->io.gone);
    if (rc != 0)
        return rc;
    uint32_t base_next[2];
    for (int k = 0; k < 2; k++)
        base_next[k] = d[k]->full || !e->st ? 0 : e->st->side[k].uidnext;
    struct tb_replica_plan rp;
    int left = tb_eng_plan(x, e, &b->io, d, base_next, &b->p, &rp);
    tb_replica_plan_free(&rp);
    b->planned = true;
    if (left < 0)
        return 0; /* left alone, warned (only replica mode's plans are refused) */
    b->writes = tb_plan_has_writes(&b->p);
    tb_eng_warn_late(x, e, &b->p);
    tb_eng_plan_stats(x, &b->p);
    if (!b->writes) {
        rc = tb_eng_commit_pass(x, e, &b->out, d, &b->p, b->modified, b->fresh, b->subscribed,
                                b->io.sus, b->io.gone);
        e->unsettled = false;
    }
    tb_eng_free_pre(e);
    return rc;
}

static uint64_t copy_bytes(const struct tb_plan *p)
{
    uint64_t n = 0;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < p->n_copies[k]; i++)
            n += p->copies[k][i]->size;
    return n;
}

/* The expunges of the round's passes (their \Deleted went out with their stores): per
 * server, each mailbox selected again and expunged, the first after one fence. Last
 * mailbox first: it is still selected. */
static void expunge_marked(struct ctx *x, struct bpass *bp, size_t n)
{
    for (int k = 0; k < 2; k++)
        for (size_t j = n; j-- > 0;) {
            struct tb_plan *p = &bp[j].p;
            if (!bp[j].writes || !p->n_expunge[k])
                continue;
            struct tb_uidset set;
            tb_eng_uidset_of(&set, p->expunge[k], p->n_expunge[k]);
            tb_store_select_queued(&x->s[k], bp[j].wire[k]);
            tb_store_expunge_marked(&x->s[k], &set, &bp[j].modified[k]);
            tb_uidset_free(&set);
        }
}

/* Passes [first, end) of a batch, submitted; mark: each store's tb_store_mark after them. */
struct round {
    size_t first, end;
    uint64_t mark[2];
};

/* Waits for the round's writes (the next round's may be in flight), then commits each
 * pass and leaves it to be settled. */
static int complete(struct ctx *x, struct bpass *all, const struct round *r)
{
    struct bpass *bp = all + r->first;
    size_t n = r->end - r->first;
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++)
            if (bp[i].cp[k] && tb_copy_finish_own(bp[i].cp[k], &x->stats->bytes) < 0)
                rc = -1;
    if (rc == 0)
        rc = tb_store_wait_marks(x->both, 2, r->mark);
    if (rc != 0)
        return tb_eng_store_fail(x);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct bpass *b = &bp[i];
        struct entry *e = b->e;
        if (!b->writes)
            continue;
        struct tb_delta *d[2] = {&b->dd[0], &b->dd[1]};
        rc = tb_eng_commit_pass(x, e, &b->out, d, &b->p, b->modified, b->fresh, b->subscribed,
                                b->io.sus, b->io.gone);
        e->deferred = true;
        e->unsettled = true;
        e->subscribed = b->subscribed;
        for (int k = 0; k < 2; k++)
            e->wrote[k] = b->p.n_copies[k] || b->p.n_groups[k] || b->p.n_expunge[k];
    }
    return rc;
}

/* One round from bp[*i] on: passes planned and submitted while the round has room, then
 * their expunges; *r says what to complete. */
static int submit_round(struct ctx *x, struct bpass *bp, size_t n, size_t *i, struct round *r)
{
    size_t first = *i;
    uint64_t bytes = 0;
    int rc = 0;
    while (*i < n && rc == 0) {
        struct bpass *b = &bp[*i];
        if (!b->planned && !b->done && (rc = prepare(x, b)) != 0)
            break;
        if (b->done || !b->writes) {
            (*i)++;
            continue;
        }
        uint64_t need = copy_bytes(&b->p);
        if (bytes && (bytes + need > round_bytes() || tb_eng_stopping(x)))
            break; /* the next round's */
        bytes += need;
        if ((rc = tb_eng_record_intents(x, b->e->canon, &b->p)) != 0)
            break;
        const char *wire[2] = {b->wire[0], b->wire[1]};
        struct tb_delta *d[2] = {&b->dd[0], &b->dd[1]};
        tb_eng_submit(x, &b->out, wire, &b->p, d, b->modified, true, b->cp);
        (*i)++;
        /* Nothing may select another mailbox before this one's FETCHes are all out: wait
         * for room in the window, while the bodies before it flow. */
        for (int k = 0; k < 2 && rc == 0; k++)
            if (b->cp[k] && tb_copy_fetch_all(b->cp[k]) < 0)
                rc = tb_eng_store_fail(x);
    }
    expunge_marked(x, bp + first, *i - first);
    r->first = first;
    r->end = *i;
    for (int k = 0; k < 2; k++)
        r->mark[k] = tb_store_mark(&x->s[k]);
    return rc;
}

static void bpass_free(struct bpass *b)
{
    for (int k = 0; k < 2; k++) {
        free(b->wire[k]);
        tb_delta_clear(&b->dd[k]);
        tb_uidset_free(&b->modified[k]);
    }
    tb_eng_pass_io_free(&b->io);
    if (b->planned)
        tb_plan_free(&b->p);
    tb_eng_out_free(&b->out);
}

int tb_eng_write_batch(struct ctx *x, struct entry **v, size_t n, size_t *done)
{
    *done = 0;
    if (!n)
        return 0;
    struct write_batch *wb = tb_xcalloc(1, sizeof(*wb) + n * sizeof(wb->bp[0]));
    wb->n = n;
    for (size_t i = 0; i < n; i++)
        wb->bp[i].e = v[i];
    int rc = list_fresh(x, wb->bp, n);
    size_t i = 0;
    /* Each round is submitted before the one before it is completed, so the pipe does not
     * drain between them (the bench's initial sync in 20 rounds, median of 3: at 50 ms
     * 8.36 s drained, 4.99 s overlapped, 5.11 s in the usual two rounds; at 0 ms 4.83 and
     * 4.30 s). Every round submitted is completed, in order, also after a failure; the
     * first error wins. Stopping (the daemon's SIGTERM) waits for the rounds in flight,
     * not the batch: the mailboxes not written yet are the next run's (new ones may exist,
     * empty, by then). */
    struct round prev;
    bool have_prev = false;
    while (i < n && rc == 0 && !tb_eng_stopping(x)) {
        struct round cur;
        int rs = submit_round(x, wb->bp, n, &i, &cur);
        if (have_prev) {
            int r = complete(x, wb->bp, &prev);
            rc = rc ? rc : r;
        }
        prev = cur;
        have_prev = true;
        rc = rc ? rc : rs;
    }
    if (have_prev) {
        int r = complete(x, wb->bp, &prev);
        rc = rc ? rc : r;
    }
    *done = i;
    if (rc != 0) {
        wb->next = x->spent;
        x->spent = wb;
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        bpass_free(&wb->bp[i]);
    free(wb);
    return 0;
}

void tb_eng_batch_release(struct ctx *x)
{
    while (x->spent) {
        struct write_batch *wb = x->spent;
        x->spent = wb->next;
        for (size_t i = 0; i < wb->n; i++)
            bpass_free(&wb->bp[i]);
        free(wb);
    }
}
