/* Replica mode's plan: which UID each new message gets on both sides (see replica.h). */
#include "sync/replica.h"

#include "util/buf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void push(struct tb_replica_plan *rp, size_t *cap, const struct tb_msg_info *m, int from,
                 uint32_t target, uint32_t drop, bool second_leg)
{
    if (rp->n == *cap) {
        *cap = *cap ? *cap * 2 : 32;
        rp->mv = tb_xrealloc(rp->mv, *cap * sizeof(*rp->mv));
    }
    rp->mv[rp->n++] = (struct tb_replica_move){
        .m = m, .from = from, .target = target, .drop = drop, .second_leg = second_leg};
}

static int cmp_msg_uid(const void *a, const void *b)
{
    uint32_t x = (*(const struct tb_msg_info *const *)a)->uid;
    uint32_t y = (*(const struct tb_msg_info *const *)b)->uid;
    return x < y ? -1 : x > y;
}

/* Side k's delta messages, sorted by UID, for lookups (pointers borrowed). */
static const struct tb_msg_info **by_uid(const struct tb_delta *d)
{
    const struct tb_msg_info **v = tb_xmalloc((d->n_msgs + 1) * sizeof(*v));
    for (size_t i = 0; i < d->n_msgs; i++)
        v[i] = &d->msgs[i];
    qsort(v, d->n_msgs, sizeof(*v), cmp_msg_uid);
    return v;
}

static const struct tb_msg_info *find(const struct tb_msg_info **v, size_t n, uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid]->uid < uid)
            lo = mid + 1;
        else if (v[mid]->uid > uid)
            hi = mid;
        else
            return v[mid];
    }
    return NULL;
}

/* Pairs matched by identity this pass under two UIDs: one UID for both (replica.h). */
static void plan_matched(struct tb_replica_plan *rp, size_t *cap, struct tb_plan *p,
                         struct tb_delta *d[2], const uint32_t next[2])
{
    const struct tb_msg_info **v[2] = {by_uid(d[0]), by_uid(d[1])};
    size_t keep = 0;
    for (size_t i = 0; i < p->n_updates; i++) {
        struct tb_pair_update *u = &p->updates[i];
        const struct tb_msg_info *m[2] = {NULL, NULL};
        if (!u->remove && u->uid[0] != u->uid[1]) {
            m[0] = find(v[0], d[0]->n_msgs, u->uid[0]);
            m[1] = find(v[1], d[1]->n_msgs, u->uid[1]);
        }
        if (!m[0] || !m[1]) {
            p->updates[keep++] = *u;
            continue;
        }
        int y = u->uid[1] > u->uid[0]; /* the side holding the higher UID */
        int x = 1 - y;
        if (u->uid[y] >= next[x])
            push(rp, cap, m[y], y, u->uid[y], u->uid[x], false);
        else
            push(rp, cap, m[0], 0, 0, u->uid[1], true); /* target assigned below */
        free(u->flags);
    }
    p->n_updates = keep;
    free(v[0]);
    free(v[1]);
}

static int cmp_move(const void *a, const void *b)
{
    const struct tb_replica_move *x = a, *y = b;
    if (x->from != y->from)
        return x->from > y->from ? -1 : 1; /* by destination 1-from: a first */
    return x->target < y->target ? -1 : x->target > y->target;
}

int tb_replica_plan(struct tb_replica_plan *rp, struct tb_plan *p, const struct tb_state_msg *pairs,
                    size_t n_pairs, struct tb_delta *d[2], char *why, size_t whylen)
{
    memset(rp, 0, sizeof(*rp));
    for (size_t i = 0; i < n_pairs; i++)
        if (pairs[i].uid[0] != pairs[i].uid[1]) {
            snprintf(why, whylen,
                     "message UID %" PRIu32 " on a is UID %" PRIu32
                     " on b (synchronised before replica mode; run twinbox replica-init)",
                     pairs[i].uid[0], pairs[i].uid[1]);
            return -1;
        }
    uint32_t next[2] = {d[0]->uidnext, d[1]->uidnext};
    size_t cap = 0;
    for (int k = 0; k < 2; k++) {
        /* copies[k]: new on side 1-k, to side k */
        for (size_t i = 0; i < p->n_copies[k]; i++) {
            const struct tb_msg_info *m = p->copies[k][i];
            bool keep = m->uid >= next[k];
            push(rp, &cap, m, 1 - k, keep ? m->uid : 0, 0, !keep);
        }
        p->n_copies[k] = 0;
    }
    plan_matched(rp, &cap, p, d, next);
    /* New UIDs: above everything either side has handed out; b's messages first, so both
     * sides receive their copies in ascending order (replica_run.c's stages). */
    uint32_t fresh = next[0] > next[1] ? next[0] : next[1];
    for (int from = 1; from >= 0; from--)
        for (size_t i = 0; i < rp->n; i++)
            if (!rp->mv[i].target && rp->mv[i].from == from) {
                rp->mv[i].target = fresh++;
                rp->renumbered++;
            }
    if (rp->n > 1)
        qsort(rp->mv, rp->n, sizeof(*rp->mv), cmp_move);
    rp->next_uid = fresh;
    rp->highestmodseq =
        d[0]->highestmodseq > d[1]->highestmodseq ? d[0]->highestmodseq : d[1]->highestmodseq;
    return 0;
}

bool tb_replica_writes(const struct tb_replica_plan *rp, const struct tb_delta *d[2], int k)
{
    if (d[k]->uidnext < rp->next_uid)
        return true;
    for (size_t i = 0; i < rp->n; i++)
        if (rp->mv[i].from != k || rp->mv[i].second_leg)
            return true;
    return false;
}

void tb_replica_plan_free(struct tb_replica_plan *rp)
{
    free(rp->mv);
    memset(rp, 0, sizeof(*rp));
}
