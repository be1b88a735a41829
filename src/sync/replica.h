/* Replica mode (pair key replica = yes): both sides keep one UID per message, the same
 * UIDVALIDITY and mailbox GUID, so a client's cache stays valid when it fails over.
 *
 * A pass's plan (plan.h, computed without crash suspects: a UID-pinned APPEND cannot land
 * twice) is turned into moves. Every message ends under one UID on both sides:
 * - kept: a new message whose UID is free on the other side (at or above its UIDNEXT) is
 *   copied there under the same UID;
 * - renumbered: a new message whose UID the other side used already (for another message,
 *   or for one since expunged) gets a new UID above both sides' UIDNEXT: first copied to the
 *   other side under it, then, once that copy is confirmed, expunged on its own side and
 *   copied back under the new UID (second leg). At every step the message exists on one
 *   side at least, and whatever a crash leaves is resolved by the same rules next pass;
 * - the same message new on both sides under different UIDs (a copy confirmed after a
 *   crash) keeps the higher UID where it is free, else gets a new one; the other side's
 *   copy is expunged before it receives the one under the agreed UID.
 * Pure data, computed without I/O (replica.c); run by replica_run.c. */
#ifndef TWINBOX_SYNC_REPLICA_H
#define TWINBOX_SYNC_REPLICA_H

#include "store/store.h"
#include "sync/plan.h"
#include "twinbox/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tb_replica_move {
    const struct tb_msg_info *m; /* on side `from`, under m->uid (borrowed from the delta) */
    int from;
    uint32_t target; /* its UID on side 1-from (and, after a second leg, on `from`) */
    uint32_t drop;   /* 0, or side 1-from's copy of m under another UID: expunged first */
    bool second_leg; /* renumbered: then expunged on `from` and copied back under target */
    bool landed;     /* set by the run: the copy to 1-from is confirmed under target */
};

struct tb_replica_plan {
    struct tb_replica_move *mv; /* kept and renumbered, sorted by (1-from, target) */
    size_t n;
    uint32_t next_uid;      /* UIDNEXT both sides get after the pass */
    uint64_t highestmodseq; /* HIGHESTMODSEQ a written side gets before its writes */
    uint64_t renumbered;    /* messages given a new UID */
};

/* Moves p's copies, and its pairs matched by identity under different UIDs, into rp (p is
 * left with its flag stores, expunges and same-UID pairs). -1 when the state holds a pair
 * of two UIDs (a pair synchronised before replica mode: replica-init converts it); why
 * says so. */
int tb_replica_plan(struct tb_replica_plan *rp, struct tb_plan *p, const struct tb_state_msg *pairs,
                    size_t n_pairs, struct tb_delta *d[2], char *why, size_t whylen);
/* Whether side k is written by the moves or must have its UIDNEXT raised. */
bool tb_replica_writes(const struct tb_replica_plan *rp, const struct tb_delta *d[2], int k);
void tb_replica_plan_free(struct tb_replica_plan *rp);

#endif
