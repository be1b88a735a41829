/* A migration's verdict: after the run, both sides of every folder are listed completely
 * (UID, INTERNALDATE and size only, pipelined BATCH folders per round trip) and each source
 * message is accounted for: paired with its copy in the state, left out by the filters,
 * recorded as skipped, or missing. "Every selected source message is on the destination"
 * is then a statement about what the servers hold now, not about what the run did. */
#include "sync/engine_internal.h"

#include "twinbox/state.h"

#include <stdlib.h>
#include <string.h>

#define BATCH 32

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The state's mailboxes, read once for the whole verdict (rows this run created are not in
 * the entries). */
struct rows {
    struct tb_state_mailbox *mb;
    size_t n;
};

static int64_t state_id(const struct rows *rows, const char *canon)
{
    for (size_t i = 0; i < rows->n; i++)
        if (strcmp(rows->mb[i].name, canon) == 0)
            return rows->mb[i].id;
    return -1;
}

/* The source UIDs the state pairs, sorted; -1 on a state error. */
static int paired_uids(struct ctx *x, const struct rows *rows, const struct entry *e,
                       uint32_t **out, size_t *n)
{
    struct tb_state_msg *pairs = NULL;
    size_t np = 0;
    int64_t id = state_id(rows, e->canon);
    *out = NULL;
    *n = 0;
    if (id < 0)
        return 0;
    if (tb_state_messages(x->st, id, &pairs, &np) < 0)
        return -1;
    *out = tb_xmalloc((np + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < np; i++)
        (*out)[i] = pairs[i].uid[x->mode->source];
    qsort(*out, np, sizeof(uint32_t), cmp_u32);
    *n = np;
    tb_state_messages_free(pairs, np);
    return 0;
}

static int judge(struct ctx *x, const struct rows *rows, const struct entry *e,
                 struct tb_delta *d[2])
{
    int s = x->mode->source;
    struct tb_folder_verdict v = {.name = e->canon};
    if (d[0]->unreadable || d[1]->unreadable) {
        v.unreadable = true;
        x->o->verdict(x->o->verdict_ud, &v);
        return 0;
    }
    uint32_t *paired;
    size_t np;
    if (paired_uids(x, rows, e, &paired, &np) < 0)
        return tb_eng_state_fail(x, "read");
    struct tb_state_skip *sk = NULL;
    size_t nsk = 0;
    if (tb_state_skips(x->st, e->canon, &sk, &nsk) < 0) {
        free(paired);
        return tb_eng_state_fail(x, "read");
    }
    v.on_source = d[s]->n_msgs;
    v.on_destination = d[1 - s]->n_msgs;
    for (size_t i = 0; i < d[s]->n_msgs; i++) {
        const struct tb_msg_info *m = &d[s]->msgs[i];
        bool skipped = false;
        for (size_t j = 0; j < nsk && !skipped; j++)
            skipped = sk[j].side == s && sk[j].uid == m->uid;
        if (np && bsearch(&m->uid, paired, np, sizeof(uint32_t), cmp_u32))
            v.copied_ever++;
        else if (!tb_plan_mode_wants(x->mode, m))
            v.filtered++;
        else if (skipped)
            v.skipped++;
        else
            v.missing++;
    }
    tb_state_skips_free(sk, nsk);
    free(paired);
    x->o->verdict(x->o->verdict_ud, &v);
    return 0;
}

int tb_eng_verdict(struct ctx *x, struct entry *ent, size_t n_ent)
{
    struct rows rows = {0};
    if (tb_state_mailboxes(x->st, &rows.mb, &rows.n) < 0)
        return tb_eng_state_fail(x, "read");
    int rc = 0;
    for (size_t i = 0; i < n_ent && rc == 0;) {
        struct entry *batch[BATCH];
        struct tb_delta dd[BATCH][2];
        size_t n = 0;
        for (; i < n_ent && n < BATCH; i++) {
            struct entry *e = &ent[i];
            if (e->skip || !e->box[x->mode->source] || !tb_eng_wanted(x, e->canon))
                continue;
            for (int k = 0; k < 2; k++) {
                char *w = tb_eng_wire(x, e, k);
                tb_store_list_uids_queue(&x->s[k], w, &dd[n][k]);
                free(w);
            }
            batch[n++] = e;
        }
        if (n && tb_store_wait(x->both, 2) < 0)
            rc = tb_eng_store_fail(x);
        for (size_t j = 0; j < n; j++) {
            struct tb_delta *d[2] = {&dd[j][0], &dd[j][1]};
            if (rc == 0)
                rc = judge(x, &rows, batch[j], d);
            tb_delta_clear(d[0]);
            tb_delta_clear(d[1]);
        }
    }
    tb_state_mailboxes_free(rows.mb, rows.n);
    return rc;
}
