/* The per-mailbox plan: pairs, deltas and identities in, writes out. */
#include "store/store.h"
#include "sync/plan.h"
#include "tap.h"

#include <stdlib.h>

static void msg(struct tb_delta *d, uint32_t uid, const char *flags, const char *ident)
{
    d->msgs = realloc(d->msgs, (d->n_msgs + 1) * sizeof(*d->msgs));
    struct tb_msg_info *m = &d->msgs[d->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->uid = uid;
    m->flags = flags ? strdup(flags) : NULL;
    m->ident = ident ? strdup(ident) : NULL;
    m->size = 100;
    m->internaldate = 1000;
}

static const struct tb_flag_group *group(const struct tb_plan *p, int side, char op)
{
    for (size_t i = 0; i < p->n_groups[side]; i++)
        if (p->groups[side][i].op == op)
            return &p->groups[side][i];
    return NULL;
}

int main(void)
{
    /* The design example, in QRESYNC mode: pair (1,11) base \Flagged. */
    struct tb_state_msg pairs[] = {{{1, 11}, "\\Flagged"}, {{2, 12}, ""}, {{3, 13}, "\\Seen"}};
    struct tb_delta a = {0}, b = {0};
    struct tb_delta *d[2] = {&a, &b};
    msg(&a, 1, "\\Answered \\Flagged", NULL);
    msg(&b, 11, "\\Seen", NULL);
    /* uid 2 expunged on a while b set \Seen on its copy: expunge wins. */
    tb_uidset_add(&a.vanished, 2);
    msg(&b, 12, "\\Seen", NULL);
    /* new on a (uid 5), new on b (uid 15, same identity as a's uid 6), new on b (uid 16) */
    msg(&a, 5, "", "<new-a>");
    msg(&a, 6, "\\Seen", "<same>");
    msg(&b, 15, "$X", "<same>");
    msg(&b, 16, "", "<new-b>");
    uint32_t next[2] = {4, 14};
    struct tb_plan p;
    tb_plan_compute(&p, pairs, 3, d, next, NULL, 0, NULL, NULL);
    const struct tb_flag_group *g = group(&p, 0, '=');
    CHECK(g && strcmp(g->flags, "\\Answered \\Seen") == 0 && g->n == 1 && g->uids[0] == 1,
          "a needs +\\Seen -\\Flagged: one FLAGS replace");
    const struct tb_flag_group *plus = group(&p, 0, '+');
    CHECK(group(&p, 0, '-') == NULL && plus && plus->n == 1 && plus->uids[0] == 6,
          "no separate +/- for uid 1 on a (only the matched pair's +$X)");
    g = group(&p, 1, '+');
    CHECK(g && strcmp(g->flags, "\\Answered") == 0 && g->uids[0] == 11, "b gets +\\Answered");
    CHECK(p.conflicts == 1, "one conflict merged");
    CHECK(p.n_expunge[1] == 1 && p.expunge[1][0] == 12 && p.n_expunge[0] == 0,
          "expunge on a is replayed on b despite b's flag change");
    CHECK(p.n_copies[1] == 1 && p.copies[1][0]->uid == 5, "a's new message copied to b");
    CHECK(p.n_copies[0] == 1 && p.copies[0][0]->uid == 16, "b's new message copied to a");
    bool matched = false, removed = false;
    for (size_t i = 0; i < p.n_updates; i++) {
        if (p.updates[i].uid[0] == 6 && p.updates[i].uid[1] == 15)
            matched = strcmp(p.updates[i].flags, "$X \\Seen") == 0;
        if (p.updates[i].uid[0] == 2)
            removed = p.updates[i].remove;
        if (p.updates[i].uid[0] == 1)
            CHECK_STR(p.updates[i].flags, "\\Answered \\Seen", "merged base recorded");
    }
    CHECK(matched, "same identity on both sides is paired with the union of flags");
    CHECK(removed, "expunged pair is dropped");
    CHECK(tb_plan_has_writes(&p), "plan has writes");
    tb_plan_free(&p);
    tb_delta_clear(&a);
    tb_delta_clear(&b);

    /* Full listing (no QRESYNC base): absence means expunged; unchanged flags mean nothing. */
    struct tb_delta fa = {.full = true}, fb = {.full = true};
    struct tb_delta *fd[2] = {&fa, &fb};
    msg(&fa, 1, "\\Flagged", NULL);
    msg(&fb, 11, "\\Flagged", NULL);
    msg(&fa, 3, "\\Seen", NULL);
    uint32_t zero[2] = {0, 0};
    tb_plan_compute(&p, pairs, 3, fd, zero, NULL, 0, NULL, NULL);
    CHECK(p.n_expunge[0] == 1 && p.expunge[0][0] == 3, "pair 3 missing on b: expunged on a");
    CHECK(p.n_expunge[1] == 0, "pair 2 missing on both sides: nothing to expunge");
    CHECK(p.n_groups[0] == 0 && p.n_groups[1] == 0, "no flag stores when nothing changed");
    tb_plan_free(&p);
    tb_delta_clear(&fa);
    tb_delta_clear(&fb);
    {
        /* b cannot keep keywords (PERMANENTFLAGS without \*): base \Seen $Todo, b shows
         * \Seen: not a removal of $Todo; a's +\Flagged goes to b without $Todo. */
        struct tb_state_msg kp[] = {{{1, 21}, "$Todo \\Seen"}};
        struct tb_delta ka = {0}, kb = {0};
        struct tb_delta *kd[2] = {&ka, &kb};
        msg(&ka, 1, "$Todo \\Flagged \\Seen", NULL);
        msg(&kb, 21, "\\Seen", NULL);
        kb.perm_known = true;
        kb.perm = strdup("\\Flagged \\Seen");
        uint32_t kn[2] = {2, 22};
        struct tb_plan kpl;
        tb_plan_compute(&kpl, kp, 1, kd, kn, NULL, 0, NULL, NULL);
        const struct tb_flag_group *kg = group(&kpl, 1, '+');
        CHECK(kg && strcmp(kg->flags, "\\Flagged") == 0 && kpl.n_groups[1] == 1,
              "b gets only what it can keep");
        CHECK(kpl.n_groups[0] == 0, "a keeps $Todo (b never removed it)");
        CHECK(kpl.n_updates == 1 && strcmp(kpl.updates[0].flags, "$Todo \\Flagged \\Seen") == 0,
              "the base keeps the keyword");
        tb_plan_free(&kpl);
        tb_delta_clear(&ka);
        tb_delta_clear(&kb);
    }
    return tap_done();
}
