/* Skipped messages in the engine (rows: tb_state_skip in twinbox/state.h).
 *
 * A copy that fails for one message is recorded, not retried in a loop and not lost: the
 * UIDNEXT the pass records moves past it, so the row is what keeps it in view. A row is
 * "due" (the plan treats its message as new again) when the source failed to deliver it and
 * fewer than TB_SKIP_MAX_ATTEMPTS runs tried, when its flags changed since, or on
 * --retry-skipped; at most once per run. Otherwise it is "held" (never new). A row whose
 * message is gone (absent from a listing that asked for it, or VANISHED) or whose mailbox
 * changed UIDVALIDITY is dropped; so is one whose message got copied or paired. */
#include "sync/engine_internal.h"

#include "util/flags.h"
#include "twinbox/config.h"
#include "twinbox/state.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool due(const struct ctx *x, const struct tb_state_skip *r)
{
    if (strcmp(r->run, x->run) == 0)
        return false; /* tried in this run already */
    return x->o->retry_skipped || (!r->permanent && r->attempts < TB_SKIP_MAX_ATTEMPTS);
}

int tb_eng_skip_due(struct ctx *x, struct entry *e)
{
    e->due[0] = e->due[1] = 0;
    if (!e->st)
        return 0;
    struct tb_state_skip *rows = NULL;
    size_t n = 0;
    if (tb_state_skips(x->st, e->canon, &rows, &n) < 0)
        return tb_eng_state_fail(x, "read");
    for (size_t i = 0; i < n; i++) {
        int k = rows[i].side & 1;
        if (rows[i].uidvalidity == e->st->side[k].uidvalidity && due(x, &rows[i]))
            e->due[k]++;
    }
    tb_state_skips_free(rows, n);
    return 0;
}

int tb_eng_skip_refetch(struct ctx *x, const char *canon, int k, uint32_t uidvalidity,
                        struct tb_uidset *out)
{
    struct tb_state_skip *rows = NULL;
    size_t n = 0;
    if (tb_state_skips(x->st, canon, &rows, &n) < 0)
        return tb_eng_state_fail(x, "read");
    for (size_t i = 0; i < n; i++)
        if (rows[i].side == k && rows[i].uidvalidity == uidvalidity)
            tb_uidset_add(out, rows[i].uid);
    tb_state_skips_free(rows, n);
    return 0;
}

static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = ((const struct tb_msg_info *)a)->uid, y = ((const struct tb_msg_info *)b)->uid;
    return x < y ? -1 : x > y;
}

static const struct tb_msg_info *find(const struct tb_delta *d, uint32_t uid)
{
    struct tb_msg_info key = {.uid = uid};
    return d->n_msgs ? bsearch(&key, d->msgs, d->n_msgs, sizeof(*d->msgs), cmp_uid) : NULL;
}

int tb_eng_skip_classify(struct ctx *x, const char *canon, struct tb_delta *d[2],
                         struct tb_plan_skips *out, struct tb_uidset gone[2])
{
    memset(out, 0, sizeof(*out));
    struct tb_state_skip *rows = NULL;
    size_t n = 0;
    if (tb_state_skips(x->st, canon, &rows, &n) < 0)
        return tb_eng_state_fail(x, "read");
    for (int k = 0; k < 2 && n; k++)
        if (d[k]->n_msgs > 1)
            qsort(d[k]->msgs, d[k]->n_msgs, sizeof(*d[k]->msgs), cmp_uid);
    for (size_t i = 0; i < n; i++) {
        const struct tb_state_skip *r = &rows[i];
        int k = r->side & 1;
        if (r->uidvalidity != d[k]->uidvalidity) {
            tb_uidset_add(&gone[k], r->uid); /* another mailbox now: the UID means nothing */
            continue;
        }
        const struct tb_msg_info *m = find(d[k], r->uid);
        if (!m && (d[k]->full || d[k]->by_name || tb_uidset_has(&d[k]->vanished, r->uid))) {
            tb_uidset_add(&gone[k], r->uid); /* asked for by name and not there */
            continue;
        }
        bool changed =
            m && m->flags && !tb_flags_equal(m->flags, r->flags) && strcmp(r->run, x->run) != 0;
        if (m && m->ident && (due(x, r) || changed))
            tb_uidset_add(&out->due[k], r->uid);
        else
            tb_uidset_add(&out->held[k], r->uid);
    }
    tb_state_skips_free(rows, n);
    return 0;
}

void tb_plan_skips_free(struct tb_plan_skips *s)
{
    for (int k = 0; k < 2; k++) {
        tb_uidset_free(&s->held[k]);
        tb_uidset_free(&s->due[k]);
    }
}

int tb_eng_skip_commit(struct ctx *x, const struct pass_out *o, const struct tb_plan *p,
                       struct tb_uidset gone[2])
{
    const char *canon = o->mailbox;
    int r = 0;
    for (size_t i = 0; r == 0 && i < o->n_skipped; i++)
        r = tb_state_skip_put(x->st, &o->skipped[i]);
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; r == 0 && i < gone[k].n; i++)
            for (uint64_t u = gone[k].r[i].lo; r == 0 && u <= gone[k].r[i].hi; u++)
                r = tb_state_skip_drop(x->st, canon, k, (uint32_t)u);
    /* Rows only exist for messages this mailbox skipped before: only those UIDs are
     * dropped (one DELETE per row that exists, not two per message copied or paired). */
    struct tb_state_skip *rows = NULL;
    size_t n = 0;
    struct tb_uidset has[2];
    tb_uidset_init(&has[0]);
    tb_uidset_init(&has[1]);
    if (r == 0 && (r = tb_state_skips(x->st, canon, &rows, &n)) == 0 && n) {
        for (size_t i = 0; i < n; i++)
            tb_uidset_add(&has[rows[i].side & 1], rows[i].uid);
        for (size_t i = 0; r == 0 && i < o->n_copied; i++)
            for (int k = 0; k < 2 && r == 0; k++)
                if (tb_uidset_has(&has[k], o->copied[i].uid[k]))
                    r = tb_state_skip_drop(x->st, canon, k, o->copied[i].uid[k]);
        for (size_t i = 0; r == 0 && p && i < p->n_updates; i++)
            for (int k = 0; k < 2 && r == 0; k++)
                if (!p->updates[i].remove && tb_uidset_has(&has[k], p->updates[i].uid[k]))
                    r = tb_state_skip_drop(x->st, canon, k, p->updates[i].uid[k]);
    }
    tb_uidset_free(&has[0]);
    tb_uidset_free(&has[1]);
    tb_state_skips_free(rows, n);
    return r;
}

/* The Message-ID in an identity text ("Message-ID: <a@b> Date: ..."), or "". */
static char *msgid_of(const char *ident)
{
    const char *p = ident ? strcasestr(ident, "message-id:") : NULL;
    if (!p)
        return tb_xstrdup("");
    p += 11;
    while (*p == ' ')
        p++;
    size_t n = 0;
    while (p[n] && p[n] != ' ' && n < 200)
        n++;
    return tb_xstrndup(p, n);
}

/* How often earlier runs tried (and failed) to copy this message: one row looked up, not
 * every row of the mailbox read once per skipped message. A failed read counts as none,
 * as before. */
static int attempts_so_far(struct ctx *x, const char *mailbox, int side, uint32_t uid)
{
    int attempts = 0;
    if (tb_state_skip_attempts(x->st, mailbox, side, uid, &attempts) < 0)
        attempts = 0;
    return attempts;
}

/* tb_copy_skipped_fn: ud is the pass_out with the destination side in the low bit. */
void tb_eng_on_skipped(void *ud, const struct tb_msg_info *m, const char *reason, bool permanent)
{
    uintptr_t v = (uintptr_t)ud;
    struct pass_out *o = (struct pass_out *)(v & ~(uintptr_t)1);
    struct ctx *x = o->x;
    int dst = (int)(v & 1), src = 1 - dst;
    if (o->n_skipped == o->cap_skipped) {
        o->cap_skipped = o->cap_skipped ? o->cap_skipped * 2 : 16;
        o->skipped = tb_xrealloc(o->skipped, o->cap_skipped * sizeof(*o->skipped));
    }
    struct tb_state_skip *k = &o->skipped[o->n_skipped++];
    memset(k, 0, sizeof(*k));
    k->mailbox = tb_xstrdup(o->mailbox);
    k->side = src;
    k->uidvalidity = o->uidvalidity[src];
    k->uid = m->uid;
    k->size = m->size;
    k->msgid = msgid_of(m->ident);
    k->flags = tb_xstrdup(m->flags ? m->flags : "");
    k->reason = tb_xstrdup(reason);
    k->permanent = permanent;
    k->run = tb_xstrdup(x->run);
    /* Not delivered by the source is most often a race (expunged between the listing and
     * the FETCH; Dovecot then answers BODY[] NIL): the next runs retry it and drop it once
     * it is gone. Only a refusal, or the last of those tries, needs a person. */
    bool last =
        permanent || attempts_so_far(x, o->mailbox, src, m->uid) + 1 >= TB_SKIP_MAX_ATTEMPTS;
    if (last)
        x->stats->skipped_messages++;
    else
        x->stats->retry_messages++;
    tb_eng_warn(x, NULL,
                "%s: mailbox %s: message UID %u (%u bytes, Message-ID %s) not copied to %s: "
                "%s%s",
                x->acct[src]->name, o->mailbox, m->uid, m->size, k->msgid[0] ? k->msgid : "none",
                x->acct[dst]->name, reason, last ? "" : "; the next run tries again");
}

void tb_eng_out_clear(struct pass_out *o)
{
    /* The arrays go too: a pass after a 100,000-message copy copies little or nothing. */
    free(o->copied);
    o->copied = NULL;
    o->n_copied = o->cap_copied = 0;
    tb_strpool_free(&o->flags);
    for (size_t i = 0; i < o->n_skipped; i++) {
        free(o->skipped[i].mailbox);
        free(o->skipped[i].msgid);
        free(o->skipped[i].flags);
        free(o->skipped[i].reason);
        free(o->skipped[i].run);
    }
    o->n_skipped = 0;
}

void tb_eng_out_free(struct pass_out *o)
{
    tb_eng_out_clear(o);
    free(o->skipped);
    o->skipped = NULL;
    o->cap_skipped = 0;
}
