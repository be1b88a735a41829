/* Replica mode's plan (sync/replica.c): which UID each new message gets on both sides. */
#include "store/store.h"
#include "sync/plan.h"
#include "sync/replica.h"
#include "tap.h"

#include <stdlib.h>

static void msg(struct tb_delta *d, uint32_t uid, const char *ident)
{
    d->msgs = realloc(d->msgs, (d->n_msgs + 1) * sizeof(*d->msgs));
    struct tb_msg_info *m = &d->msgs[d->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->uid = uid;
    m->flags = strdup("");
    m->ident = strdup(ident);
    m->size = 100;
    m->internaldate = 1000;
}

static const struct tb_replica_move *find(const struct tb_replica_plan *rp, int from, uint32_t uid)
{
    for (size_t i = 0; i < rp->n; i++)
        if (rp->mv[i].from == from && rp->mv[i].m->uid == uid)
            return &rp->mv[i];
    return NULL;
}

/* Both sides at UIDNEXT 3 with pairs (1,1) (2,2); then a: 3 <x>, 4 <y>; b: 3 <z>. */
static void conflict(void)
{
    struct tb_state_msg pairs[] = {{{1, 1}, ""}, {{2, 2}, ""}};
    struct tb_delta a = {.uidnext = 5, .highestmodseq = 40}, b = {.uidnext = 4, .highestmodseq = 7};
    struct tb_delta *d[2] = {&a, &b};
    msg(&a, 3, "<x>");
    msg(&a, 4, "<y>");
    msg(&b, 3, "<z>");
    uint32_t base[2] = {3, 3};
    struct tb_plan p;
    tb_plan_compute(&p, pairs, 2, d, base, NULL, 0, NULL, NULL);
    struct tb_replica_plan rp;
    char why[200];
    CHECK(tb_replica_plan(&rp, &p, pairs, 2, d, why, sizeof(why)) == 0, "plan made");
    CHECK(p.n_copies[0] == 0 && p.n_copies[1] == 0, "the copies became moves");
    const struct tb_replica_move *x = find(&rp, 0, 3), *y = find(&rp, 0, 4), *z = find(&rp, 1, 3);
    CHECK(y && y->target == 4 && !y->second_leg, "a's 4 is free on b: kept");
    /* UID 3 named two messages: both get new UIDs above both UIDNEXTs, b's first */
    CHECK(z && z->target == 5 && z->second_leg, "b's 3 -> 5 on both sides");
    CHECK(x && x->target == 6 && x->second_leg, "a's 3 -> 6 on both sides");
    CHECK(rp.renumbered == 2 && rp.next_uid == 7, "two renumbered, UIDNEXT 7 on both");
    CHECK(rp.highestmodseq == 40, "HIGHESTMODSEQ raised to the higher side's");
    const struct tb_delta *cd[2] = {&a, &b};
    CHECK(tb_replica_writes(&rp, cd, 0) && tb_replica_writes(&rp, cd, 1), "both sides written");
    tb_replica_plan_free(&rp);
    tb_plan_free(&p);
    tb_delta_clear(&a);
    tb_delta_clear(&b);
}

/* The same message new on both sides under two UIDs (a copy confirmed after a crash). */
static void matched(void)
{
    struct tb_delta a = {.uidnext = 8}, b = {.uidnext = 12};
    struct tb_delta *d[2] = {&a, &b};
    msg(&a, 7, "<m>");
    msg(&b, 11, "<m>"); /* 11 >= a's UIDNEXT: a takes it */
    msg(&a, 5, "<n>");
    msg(&b, 6, "<n>"); /* 6 < a's UIDNEXT 8: a new UID on both */
    uint32_t base[2] = {0, 0};
    struct tb_plan p;
    tb_plan_compute(&p, NULL, 0, d, base, NULL, 0, NULL, NULL);
    struct tb_replica_plan rp;
    char why[200];
    CHECK(tb_replica_plan(&rp, &p, NULL, 0, d, why, sizeof(why)) == 0, "plan made");
    CHECK(p.n_updates == 0, "no pair of two UIDs is recorded");
    const struct tb_replica_move *m = find(&rp, 1, 11);
    CHECK(m && m->target == 11 && m->drop == 7 && !m->second_leg,
          "<m>: a drops 7 and takes b's 11");
    const struct tb_replica_move *n = find(&rp, 0, 5);
    CHECK(n && n->target == 12 && n->drop == 6 && n->second_leg,
          "<n>: b drops 6, both get 12 (above both UIDNEXTs)");
    tb_replica_plan_free(&rp);
    tb_plan_free(&p);
    tb_delta_clear(&a);
    tb_delta_clear(&b);
}

/* A UID the other side used for a message since expunged is not reused; a pair of two UIDs
 * (synchronised before replica mode) is refused. */
static void used_and_legacy(void)
{
    struct tb_delta a = {.uidnext = 5}, b = {.uidnext = 4};
    struct tb_delta *d[2] = {&a, &b};
    msg(&b, 3, "<late>"); /* a had UID 3 once (its UIDNEXT is 5) */
    uint32_t base[2] = {3, 3};
    struct tb_plan p;
    tb_plan_compute(&p, NULL, 0, d, base, NULL, 0, NULL, NULL);
    struct tb_replica_plan rp;
    char why[200];
    CHECK(tb_replica_plan(&rp, &p, NULL, 0, d, why, sizeof(why)) == 0, "plan made");
    CHECK(rp.n == 1 && rp.mv[0].target == 5 && rp.mv[0].second_leg, "b's 3 -> 5 on both");
    tb_replica_plan_free(&rp);
    tb_plan_free(&p);
    struct tb_state_msg legacy[] = {{{1, 9}, ""}};
    tb_plan_compute(&p, legacy, 1, d, base, NULL, 0, NULL, NULL);
    CHECK(tb_replica_plan(&rp, &p, legacy, 1, d, why, sizeof(why)) < 0 &&
              strstr(why, "replica-init"),
          "a pair of two UIDs is refused, naming replica-init");
    tb_replica_plan_free(&rp);
    tb_plan_free(&p);
    tb_delta_clear(&a);
    tb_delta_clear(&b);
}

int main(void)
{
    conflict();
    matched();
    used_and_legacy();
    return tap_done();
}
