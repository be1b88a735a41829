/* Internals of the sync engine shared by its files: engine.c (discovery, mailbox
 * create/rename/delete, the run), mailbox.c (a mailbox's passes and their commits),
 * xrdisc.c (discovery and positions with X-REPLICATE). Not part of any public API. */
#ifndef TWINBOX_SYNC_ENGINE_INTERNAL_H
#define TWINBOX_SYNC_ENGINE_INTERNAL_H

#include "store/store.h"
#include "sync/engine.h"
#include "sync/plan.h"
#include "twinbox/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_PASSES  4
#define WRITE_BATCH 64 /* mailboxes at most in one write batch (batch.c) */

/* What the survey found out about a state mailbox present on one side only. */
enum gone_verdict {
    GONE_NA,       /* not such a mailbox */
    GONE_DELETE,   /* gone for sure, the other side has nothing new: delete it there */
    GONE_RECREATE, /* gone for sure, the other side changed: create it again, copy back */
    GONE_UNKNOWN,  /* no positive evidence either way: left alone this run */
};

struct entry {
    char *canon;
    char *show; /* canon in UTF-8, for messages (tb_eng_show) */
    struct tb_mbox_info *box[2];
    struct tb_state_mailbox *st;
    struct tb_xrep_section *sec[2]; /* X-REPLICATE's report on it, per side (borrowed) */
    /* Set by the survey (survey.c) before anything is written. */
    enum gone_verdict gone;
    bool skip;               /* left alone this run (a warning said why) */
    struct tb_delta *pre[2]; /* the first pass's deltas, read by the survey (owned) */
    uint64_t n_pairs;        /* message pairs the state records for it */
    int due[2];              /* skipped messages to retry, per side holding them */
    bool unsettled;          /* its last pass still wrote: the state's numbers are pre-write */
    /* Written and committed; the pass that confirms the writes settled is left to
     * settle_deferred, which pipelines it with other mailboxes'. */
    bool deferred, wrote[2], subscribed;
    /* The UIDs its last committed pass gave its copies (and their sources), per side
     * (none in replica mode): paired in the state, at or above the UIDNEXT that commit
     * recorded (read before the writes). The passes after it (settling, or the ordinary
     * ones of this run) ask only their flags, and on the rungs below QRESYNC take one no
     * longer there as expunged. Owned; freed with the entry. */
    struct tb_uidset copied[2];
    /* A CREATE (and SUBSCRIBE) sent and not waited for: the first pass's SELECTs follow
     * without a fence, and its wait covers them (start_deltas). */
    bool creating;
};

struct ctx;

/* What a pass's writes report as they complete (the copy callbacks), recorded with its
 * commit: x->out for a mailbox's passes run one at a time, one per mailbox of a write batch
 * (batch.c). The copy callbacks' ud is the pass_out with the destination side in its low
 * bit. */
struct pass_out {
    struct ctx *x;
    const char *mailbox;           /* canonical name (the entry's) */
    uint32_t uidvalidity[2];       /* of the pass's sides, for skipped rows */
    struct tb_pair_update *copied; /* their flags interned in `flags` */
    size_t n_copied, cap_copied;
    struct tb_strpool flags;
    struct tb_state_skip *skipped;
    size_t n_skipped, cap_skipped;
};

struct ctx {
    const struct tb_pair *pair;
    const struct tb_account *const *acct;
    const char *const *password; /* the caller's, for a reconnect */
    uv_loop_t *loop;
    struct tb_store s[2];
    struct tb_store *both[2];
    struct tb_state *st;
    const struct tb_sync_opts *o;
    const struct tb_plan_mode *mode; /* one-way (migrate), or NULL */
    /* one-way: source names discovery mapped to other names, or (to NULL) left out
     * (tb_eng_wanted) */
    struct {
        char *from, *to;
    } * mapped;
    size_t n_mapped;
    struct tb_sync_stats *stats;
    struct tb_error *err;
    int rc;
    char run[64];        /* this run's id for copy intents */
    struct pass_out out; /* of the pass running alone (not in a write batch) */
    /* X-REPLICATE per side: used for discovery; rel: relative to the stored position, so
     * its events and deltas apply (see sync/xr.h). */
    struct tb_xrep_reply xr[2];
    bool xr_used[2], xr_rel[2], xr_logged[2];
    bool xr_drop[2]; /* forget the stored position: the server stopped offering it */
    bool may_defer;  /* sync_messages may leave its settling pass to settle_deferred */
    struct tb_replica_plan *replica_plan; /* replica mode: the moves whose copies are running */
    /* Source UIDs per side of replica copies not placed under their UID. Owned by the run,
     * not the pass: a copy's callback may still fire after a failed pass returned. */
    struct tb_uidset displaced[2];
    struct write_batch *spent; /* batch.c: failed batches, kept until the run ends */
};

/* events.c: an event of this run (its pair filled in, its text formatted from fmt) through
 * x->o->on_event; a warning (TB_SYNC_EV_WARNING) about mailbox (UTF-8, or NULL). */
void tb_eng_emit(struct ctx *x, struct tb_sync_event *ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tb_eng_warn(struct ctx *x, const char *mailbox, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One line into x->err from the failed store / the state's last error; the exit code. */
int tb_eng_store_fail(struct ctx *x);
int tb_eng_state_fail(struct ctx *x, const char *what);

/* survey.c: before any write, the facts the run's decisions rest on: which mailboxes are
 * really gone (positive evidence), the first pass's deltas of every changed mailbox, and
 * the mass-change guard over what all of it would remove. Fills stats->guard; returns an
 * exit code (CONFLICT when the guard stops the run). */
int tb_eng_survey(struct ctx *x, struct entry *ent, size_t n_ent);
bool tb_eng_wanted(struct ctx *x, const char *canon);
/* "Nothing changed since the state": the delta of a side a pass does not look at. */
void tb_eng_delta_of_state(struct tb_delta *d, const struct tb_state_side *b);
/* Whether side k's listing shows the numbers the state recorded (and nothing says they
 * cannot be trusted). */
bool tb_eng_side_unchanged(const struct entry *e, int k);

void tb_eng_free_pre(struct entry *e);

/* skips.c: skipped messages of one mailbox pass */
/* Counts e->due[k]: the skipped messages of side k a pass should retry now. */
int tb_eng_skip_due(struct ctx *x, struct entry *e);
/* tb_copy_skipped_fn; ud as for the copy's done callback (pass_out | destination side). */
void tb_eng_on_skipped(void *ud, const struct tb_msg_info *m, const char *reason, bool permanent);
/* The UIDs of side k a pass-0 delta must fetch by name (skipped messages, to retry them or
 * see that they changed or went away); empty when there are none. */
int tb_eng_skip_refetch(struct ctx *x, const char *canon, int k, uint32_t uidvalidity,
                        struct tb_uidset *out);
/* Classifies the mailbox's skipped messages against this pass's deltas into the plan's
 * held/due sets; rows whose message is gone (into `gone`) are dropped in the pass's
 * transaction by tb_eng_skip_commit. */
int tb_eng_skip_classify(struct ctx *x, const char *canon, struct tb_delta *d[2],
                         struct tb_plan_skips *out, struct tb_uidset gone[2]);
/* Inside the pass's transaction: records this pass's skipped copies, drops the rows of
 * messages now paired or gone. */
int tb_eng_skip_commit(struct ctx *x, const struct pass_out *o, const struct tb_plan *p,
                       struct tb_uidset gone[2]);
/* Forgets what o recorded (after its commit); _free also releases its arrays. */
void tb_eng_out_clear(struct pass_out *o);
void tb_eng_out_free(struct pass_out *o);
void tb_plan_skips_free(struct tb_plan_skips *s);

/* mailbox.c */
int tb_eng_sync_messages(struct ctx *x, struct entry *e, bool reset, bool subscribed);
/* What a pass reads from the state: the mailbox's pairs, crash suspects (intents), its
 * skipped messages classified, and the skipped rows whose message is gone. */
struct pass_io {
    struct tb_state_msg *pairs;
    size_t n_pairs;
    struct tb_state_intent *sus;
    size_t n_sus;
    struct tb_plan_skips sk;
    struct tb_uidset gone[2];
};
int tb_eng_pass_io_load(struct ctx *x, struct entry *e, bool reset, struct pass_io *io);
/* A delta the pass must not act on: warned, the mailbox is left alone this run. */
bool tb_eng_unusable(struct ctx *x, struct entry *e, struct tb_delta *d[2]);
void tb_eng_pass_io_free(struct pass_io *io);
struct tb_replica_plan;
/* The pass's plan (rp: replica mode's moves). -1: the mailbox is left alone (warned). */
int tb_eng_plan(struct ctx *x, struct entry *e, struct pass_io *io, struct tb_delta *d[2],
                const uint32_t base_next[2], struct tb_plan *p, struct tb_replica_plan *rp);
bool tb_eng_replica_writes(const struct ctx *x, const struct tb_replica_plan *rp,
                           struct tb_delta *d[2], int k);
/* Before a pass's copies are sent: what they may leave behind if the run dies. */
int tb_eng_record_intents(struct ctx *x, const char *canon, const struct tb_plan *p);
/* Records a pass (its pairs, o's copies and skips, the sides' numbers) in one transaction. */
int tb_eng_commit_pass(struct ctx *x, struct entry *e, const struct pass_out *o,
                       struct tb_delta *d[2], struct tb_plan *p, struct tb_uidset modified[2],
                       bool reset, bool subscribed, const struct tb_state_intent *sus,
                       struct tb_uidset gone[2]);
/* tb_copied_fn: ud is the pass_out with the destination side in the low bit. */
void tb_eng_on_copied(void *ud, uint32_t src_uid, uint32_t dst_uid, const char *flags);
/* A copy confirmed under dst_uid on side dst: recorded as a pair with the pass. */
void tb_eng_record_copy(struct pass_out *o, int dst, uint32_t src_uid, uint32_t dst_uid,
                        const char *flags);
/* The plan's flag stores and expunges, submitted (not waited for); mark_only: the
 * expunges' +FLAGS \Deleted alone (tb_store_expunge_marked follows). */
void tb_eng_apply_stores(struct ctx *x, struct tb_plan *p, struct tb_delta *d[2],
                         struct tb_uidset modified[2], bool mark_only);
/* The copies, stores and expunges of a plan, submitted (see mailbox.c). */
void tb_eng_submit(struct ctx *x, struct pass_out *o, const char *wire[2], struct tb_plan *p,
                   struct tb_delta *d[2], struct tb_uidset modified[2], bool batched,
                   struct tb_copy *cp[2]);
/* A plan's counters (conflicts, matched ...) added to the run's stats. */
void tb_eng_plan_stats(struct ctx *x, const struct tb_plan *p);
/* The warning for a plan that expunges late copies of an interrupted run (none: nothing). */
void tb_eng_warn_late(struct ctx *x, struct entry *e, const struct tb_plan *p);
/* Whether the run was asked to stop (the daemon's SIGTERM). */
static inline bool tb_eng_stopping(const struct ctx *x)
{
    return x->o->stop && __atomic_load_n(x->o->stop, __ATOMIC_RELAXED);
}
void tb_eng_uidset_of(struct tb_uidset *set, const uint32_t *uids, size_t n);

/* entry.c: a mailbox of the run synced (created, deleted, subscribed, its passes); whether
 * nothing changed on either side since the state (then it has nothing to do). */
int tb_eng_sync_entry(struct ctx *x, struct entry *e);
bool tb_eng_unchanged(const struct entry *e);
/* What tb_eng_sync_entry does before the passes. 1: the passes follow, from scratch when
 * *reset (no usable state); else the entry is done (0) or the run failed (exit code). */
int tb_eng_entry_begin(struct ctx *x, struct entry *e, bool *reset, bool *subscribed);

/* batch.c: write batches (the first passes of consecutive changed mailboxes written in one
 * flight per server). Whether e's first pass can go into one (sync_entry would do nothing
 * else for it than its passes); the batch of n, synced, each left to settle_deferred;
 * *done: how many were (fewer when the run was asked to stop). */
bool tb_eng_batchable(struct ctx *x, const struct entry *e);
/* The messages a batch lists for e (a new mailbox is listed in full; 0 for one with state):
 * a batch's listings stay bounded by BATCH_LISTED. */
uint64_t tb_eng_batch_listed(const struct entry *e);
#define BATCH_LISTED 20000
int tb_eng_write_batch(struct ctx *x, struct entry **v, size_t n, size_t *done);
/* At the end of the run: the batches a failure left behind (their copies' callbacks may
 * have fired until the connections closed). */
void tb_eng_batch_release(struct ctx *x);

/* replica_run.c: replica mode (pair key replica; see sync/replica.h) */
/* Both servers offer X-REPLICATE-REPLICA (else a config error, its exit code); listings then
 * ask for mailbox GUIDs. */
int tb_eng_replica_check(struct ctx *x);
/* One GUID under a name on a only and another on b only: b's renamed to a's (a wins). */
int tb_eng_replica_renames(struct ctx *x, struct entry *ent, size_t n_ent, int *renamed);
/* Creates e on side k (wire name) with the other side's UIDVALIDITY and GUID. 0 done, -1 left
 * alone this run (warned), else an exit code. */
int tb_eng_replica_create(struct ctx *x, struct entry *e, int k, const char *wire);
/* A mailbox on both sides with different UIDVALIDITY or GUID: an empty side takes the
 * other's (*reset set: matched afresh), else it is left alone. Returns as create. */
int tb_eng_replica_align(struct ctx *x, struct entry *e, bool *reset);
/* replica_init.c: the names an interrupted replica-init leaves on the target side (never
 * synchronised), and the rebuild of every mailbox whose identity differs from the
 * reference side's; *rebuilt counts them (the listing is stale then). */
bool tb_eng_replica_temp(const char *canon);
int tb_eng_replica_init(struct ctx *x, struct entry *ent, size_t n_ent, int ref, int *rebuilt);
/* Records, in its own transaction, the highest UID this run may pin copies to in `canon`
 * (see state/reserve.c). 0, or an exit code. */
int tb_eng_replica_reserve(struct ctx *x, const char *canon, uint32_t top);
/* Runs a replica pass: raises, stores, moves (two legs), raises; -1 when a store failed. */
int tb_eng_replica_execute(struct ctx *x, const char *wire[2], struct tb_plan *p,
                           struct tb_replica_plan *rp, struct tb_delta *d[2],
                           struct tb_uidset modified[2]);
int tb_eng_settle_deferred(struct ctx *x, struct entry *ent, size_t n_ent);

/* The entry's name as people read it (UTF-8), made on first use. */
const char *tb_eng_show(struct entry *e);

/* mapping.c: a migration's destination name for a source mailbox (NULL: left out, e.g.
 * Gmail's \\All), and the wire name of an entry on side k (the listing's, else derived;
 * NULL for a source name that cannot be derived back from a mapped one). */
char *tb_eng_map(struct ctx *x, const struct tb_mbox_info *b, const char *canon);
char *tb_eng_wire(struct ctx *x, const struct entry *e, int k);

/* verdict.c: a migration's per-folder verdict after the run (opts->verdict). */
int tb_eng_verdict(struct ctx *x, struct entry *ent, size_t n_ent);

/* xrdisc.c */
int tb_eng_list_both(struct ctx *x);
int tb_eng_record_positions(struct ctx *x, struct entry *ent, size_t n_ent);

#endif
