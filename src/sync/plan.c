#include "sync/plan.h"

#include "util/flags.h"
#include "util/uidmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_msg(const void *a, const void *b)
{
    return cmp_u32(&((const struct tb_msg_info *)a)->uid, &((const struct tb_msg_info *)b)->uid);
}

static const struct tb_msg_info *find_msg(const struct tb_delta *d, uint32_t uid)
{
    struct tb_msg_info key = {.uid = uid};
    return d->n_msgs ? bsearch(&key, d->msgs, d->n_msgs, sizeof(*d->msgs), cmp_msg) : NULL;
}

/* qsort by UID, unless the records are in UID order already (a server's answer is): no
 * O(n log n) pass, and no buffer of glibc's merge sort (1.6 MB for 100,000 records). */
static void sort_msgs(struct tb_delta *d)
{
    for (size_t i = 1; i < d->n_msgs; i++)
        if (d->msgs[i - 1].uid > d->msgs[i].uid) {
            qsort(d->msgs, d->n_msgs, sizeof(*d->msgs), cmp_msg);
            return;
        }
}

static void sort_uids(uint32_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (v[i - 1] > v[i]) {
            qsort(v, n, sizeof(*v), cmp_u32);
            return;
        }
}

static bool in_sorted(const uint32_t *v, size_t n, uint32_t uid)
{
    return n && bsearch(&uid, v, n, sizeof(uint32_t), cmp_u32) != NULL;
}

/* Room for one more in an array grown by doubling: n is its length, its capacity the next
 * power of two (no capacity field needed). */
static void *grow_pow2(void *v, size_t n, size_t size)
{
    if (n && (n & (n - 1)))
        return v; /* not a power of two: there is room */
    return tb_xrealloc(v, (n ? 2 * n : 4) * size);
}

/* Seeded: keywords come from servers. */
static size_t group_hash(char op, const char *flags)
{
    return tb_hash_str(flags) ^ ((uint32_t)(unsigned char)op * 0x9e3779b9u);
}

/* The slot of the group (op, flags) on `side`, or the empty slot where it would go. The
 * table is at most half full. */
static size_t *group_slot(struct tb_plan *p, int side, char op, const char *flags)
{
    size_t mask = p->group_cap[side] - 1;
    for (size_t i = group_hash(op, flags) & mask;; i = (i + 1) & mask) {
        size_t *slot = &p->group_slot[side][i];
        const struct tb_flag_group *g = *slot ? &p->groups[side][*slot - 1] : NULL;
        if (!g || (g->op == op && strcmp(g->flags, flags) == 0))
            return slot;
    }
}

static void group_index_grow(struct tb_plan *p, int side)
{
    free(p->group_slot[side]);
    p->group_cap[side] = p->group_cap[side] ? p->group_cap[side] * 2 : 16;
    p->group_slot[side] = tb_xcalloc(p->group_cap[side], sizeof(size_t));
    for (size_t g = 0; g < p->n_groups[side]; g++) {
        const struct tb_flag_group *x = &p->groups[side][g];
        *group_slot(p, side, x->op, x->flags) = g + 1;
    }
}

/* The UID into the group (op, flags) of `side`, created after the existing ones when new
 * (groups stay in the order of their first UID). */
static void group_add(struct tb_plan *p, int side, char op, const char *flags, uint32_t uid)
{
    if (!flags[0] && op != '=')
        return;
    if ((p->n_groups[side] + 1) * 2 > p->group_cap[side])
        group_index_grow(p, side);
    size_t *slot = group_slot(p, side, op, flags);
    if (!*slot) {
        p->groups[side] = grow_pow2(p->groups[side], p->n_groups[side], sizeof(**p->groups));
        struct tb_flag_group *g = &p->groups[side][p->n_groups[side]++];
        memset(g, 0, sizeof(*g));
        g->op = op;
        g->flags = tb_xstrdup(flags);
        *slot = p->n_groups[side];
    }
    struct tb_flag_group *g = &p->groups[side][*slot - 1];
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 16;
        g->uids = tb_xrealloc(g->uids, g->cap * sizeof(uint32_t));
    }
    g->uids[g->n++] = uid;
}

/* Stores that make side `side` (now `cur`) equal to `want`. */
static void converge(struct tb_plan *p, int side, uint32_t uid, const char *cur, const char *want)
{
    if (tb_flags_equal(cur, want))
        return;
    char *add = tb_flags_minus(want, cur), *rem = tb_flags_minus(cur, want);
    if (add[0] && rem[0])
        group_add(p, side, '=', want, uid);
    else
        group_add(p, side, add[0] ? '+' : '-', add[0] ? add : rem, uid);
    free(add);
    free(rem);
}

/* converge() to what side k's mailbox can keep: a store of flags it cannot keep would be
 * dropped by the store and planned again on every pass. */
static void converge_kept(struct tb_plan *p, const struct tb_delta *d, int side, uint32_t uid,
                          const char *cur, const char *want)
{
    if (!d->perm_known) {
        converge(p, side, uid, cur, want);
        return;
    }
    bool dropped = false;
    char *kept = tb_flags_storable(want, d->perm, d->perm_keywords, &dropped);
    char *now = tb_flags_storable(cur, d->perm, d->perm_keywords, NULL);
    if (dropped && !tb_flags_equal(now, kept))
        p->unstorable++;
    converge(p, side, uid, now, kept);
    free(kept);
    free(now);
}

static void update(struct tb_plan *p, uint32_t ua, uint32_t ub, const char *flags, bool remove)
{
    if (p->n_updates == p->cap_updates) {
        p->cap_updates = p->cap_updates ? p->cap_updates * 2 : 64;
        p->updates = tb_xrealloc(p->updates, p->cap_updates * sizeof(*p->updates));
    }
    struct tb_pair_update *u = &p->updates[p->n_updates++];
    u->uid[0] = ua;
    u->uid[1] = ub;
    u->flags = tb_xstrdup(flags ? flags : "");
    u->remove = remove;
}

static void expunge(struct tb_plan *p, int side, uint32_t uid)
{
    p->expunge[side] = grow_pow2(p->expunge[side], p->n_expunge[side], sizeof(uint32_t));
    p->expunge[side][p->n_expunge[side]++] = uid;
}

static bool has_msgid(const char *ident)
{
    return ident && strcasestr(ident, "message-id:") != NULL;
}

/* Identity (0 when equal): the identity headers and INTERNALDATE, and the size unless the
 * headers hold a Message-ID. Some servers add headers of their own to what they store
 * (mailutils' mbox: X-UID, Status), so a copy's size differs from its original's; with a
 * Message-ID, Date, From, To, Subject and INTERNALDATE all equal, two messages are the same
 * message. Without a Message-ID the size still tells apart messages with equal headers. */
int tb_msg_identity_cmp(const struct tb_msg_info *x, const struct tb_msg_info *y)
{
    int c = strcmp(x->ident ? x->ident : "", y->ident ? y->ident : "");
    if (c)
        return c;
    if (x->internaldate != y->internaldate)
        return x->internaldate < y->internaldate ? -1 : 1;
    if (!has_msgid(x->ident) && x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return 0;
}

/* Sort order for the merge-join: identity, then UID so equal identities pair in order. */
int tb_msg_identity_sort(const void *a, const void *b)
{
    const struct tb_msg_info *x = *(const struct tb_msg_info *const *)a;
    const struct tb_msg_info *y = *(const struct tb_msg_info *const *)b;
    int c = tb_msg_identity_cmp(x, y);
    return c ? c : (x->uid < y->uid ? -1 : x->uid > y->uid);
}

/* The suspects, found by identity in O(log n) instead of a scan of every suspect (and of
 * every resolved one) per new message. `ref` holds them sorted by side, identity, and
 * suspect index last, so the suspects matching a message form one run in which the first
 * unused one is the one with the lowest index: the one a front-to-back scan would pick.
 * next[q] is the first position from q on that may be unused (a "next free" forest with
 * path compression): a resolved suspect is stepped over in amortized O(1). */
struct sus_ref {
    const struct tb_state_intent *s;
    size_t i;   /* index into the suspects given */
    bool msgid; /* its identity holds a Message-ID: the size is not part of it */
};

struct sus_index {
    struct sus_ref *ref;
    size_t n;
    size_t *pos;  /* pos[i]: where suspect i is in ref */
    size_t *next; /* n + 1 entries; next[n] == n */
};

/* A suspect's or message's identity as the suspect matching compares it. */
struct sus_key {
    int side;
    const char *ident;
    int64_t internaldate;
    uint32_t size;
    bool msgid;
};

static int key_cmp(const struct sus_key *k, const struct sus_ref *r)
{
    if (k->side != r->s->side)
        return k->side < r->s->side ? -1 : 1;
    int c = strcmp(k->ident, r->s->ident ? r->s->ident : "");
    if (c)
        return c;
    if (k->internaldate != r->s->internaldate)
        return k->internaldate < r->s->internaldate ? -1 : 1;
    /* Equal identity text: both hold a Message-ID or neither does. */
    if (!k->msgid && k->size != r->s->size)
        return k->size < r->s->size ? -1 : 1;
    return 0;
}

static int ref_sort(const void *a, const void *b)
{
    const struct sus_ref *x = a, *y = b;
    struct sus_key k = {x->s->side, x->s->ident ? x->s->ident : "", x->s->internaldate, x->s->size,
                        x->msgid};
    int c = key_cmp(&k, y);
    return c ? c : (x->i < y->i ? -1 : x->i > y->i);
}

static void sus_index_init(struct sus_index *x, const struct tb_state_intent *sus, size_t n)
{
    x->n = n;
    x->ref = tb_xmalloc((n + 1) * sizeof(*x->ref));
    x->pos = tb_xmalloc((n + 1) * sizeof(*x->pos));
    x->next = tb_xmalloc((n + 1) * sizeof(*x->next));
    for (size_t i = 0; i < n; i++)
        x->ref[i] = (struct sus_ref){&sus[i], i, has_msgid(sus[i].ident)};
    if (n > 1)
        qsort(x->ref, n, sizeof(*x->ref), ref_sort);
    for (size_t q = 0; q <= n; q++) {
        x->next[q] = q;
        if (q < n)
            x->pos[x->ref[q].i] = q;
    }
}

static void sus_index_free(struct sus_index *x)
{
    free(x->ref);
    free(x->pos);
    free(x->next);
}

/* The first position from q on not yet used, shortening the path walked. */
static size_t first_free(struct sus_index *x, size_t q)
{
    size_t r = q;
    while (x->next[r] != r)
        r = x->next[r];
    while (x->next[q] != r) {
        size_t up = x->next[q];
        x->next[q] = r;
        q = up;
    }
    return r;
}

/* Index of the first unused suspect copy to `side` with m's identity, or -1. */
static long suspect(struct sus_index *x, int side, const struct tb_msg_info *m)
{
    if (!x->n)
        return -1;
    struct sus_key k = {side, m->ident ? m->ident : "", m->internaldate, m->size,
                        has_msgid(m->ident)};
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(&k, &x->ref[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t q = first_free(x, lo);
    return q < x->n && key_cmp(&k, &x->ref[q]) == 0 ? (long)x->ref[q].i : -1;
}

static void resolve(struct tb_plan *p, struct sus_index *x, long i)
{
    if (i < 0)
        return;
    size_t q = x->pos[i];
    x->next[q] = q + 1;
    p->resolved = grow_pow2(p->resolved, p->n_resolved, sizeof(*p->resolved));
    p->resolved[p->n_resolved++] = (size_t)i;
}

/* A message of side k not paired yet: is it one to copy (or match) now? */
static bool is_fresh(const struct tb_msg_info *m, int k, uint32_t base_next,
                     struct tb_plan_skips *skips)
{
    if (!m->flags)
        return false;
    if (skips && tb_uidset_has(&skips->held[k], m->uid))
        return false;
    if (m->uid >= base_next)
        return true;
    return skips && m->ident && tb_uidset_has(&skips->due[k], m->uid);
}

/* Side k's messages that are new (not paired, fresh), sorted by identity; *n of them. */
static const struct tb_msg_info **fresh_of(const struct tb_delta *d, int k, const uint32_t *paired,
                                           size_t n_pairs, uint32_t base_next,
                                           struct tb_plan_skips *skips, size_t *n)
{
    /* Counted first: on a settling pass every message of the side just written to is a
     * pair, and an array for all of them would be 800 KB per 100,000 for nothing. */
    *n = 0;
    for (int fill = 0; fill < 2; fill++) {
        const struct tb_msg_info **v = fill ? tb_xmalloc((*n + 1) * sizeof(*v)) : NULL;
        size_t j = 0;
        for (size_t i = 0; i < d->n_msgs; i++) {
            const struct tb_msg_info *m = &d->msgs[i];
            if (in_sorted(paired, n_pairs, m->uid) || !is_fresh(m, k, base_next, skips))
                continue;
            if (fill)
                v[j] = m;
            j++;
        }
        *n = j;
        if (fill) {
            if (j > 1)
                qsort(v, j, sizeof(*v), tb_msg_identity_sort);
            return v;
        }
    }
    return NULL; /* not reached */
}

/* What side k's flags say once the flags its mailbox cannot keep (PERMANENTFLAGS) are
 * counted as unchanged: a keyword a server cannot store was never removed there, it stays
 * recorded for the side that has it. The store leaves such flags out of its writes. */
static char *kept_as_is(const struct tb_delta *d, const char *flags, const char *base)
{
    if (!d->perm_known)
        return tb_xstrdup(flags);
    bool dropped = false;
    char *storable = tb_flags_storable(base, d->perm, d->perm_keywords, &dropped);
    if (!dropped) {
        free(storable);
        return tb_xstrdup(flags);
    }
    char *lost = tb_flags_minus(base, storable);
    char *r = tb_flags_union(flags, lost);
    free(storable);
    free(lost);
    return r;
}

/* One-way: a pair's flags. Only the source's changes travel; the destination gets them
 * merged into its own flags, and the base follows the source. */
static void one_way_flags(struct tb_plan *p, const struct tb_plan_mode *mode,
                          struct tb_delta *delta[2], const struct tb_state_msg *pr,
                          const char *f[2])
{
    int s = mode->source, d = 1 - s;
    if (tb_flags_equal(f[s], pr->flags))
        return;
    char *merged = tb_flags_merge(pr->flags, f[s], f[d]);
    converge_kept(p, delta[d], d, pr->uid[d], f[d], merged);
    update(p, pr->uid[0], pr->uid[1], f[s], false);
    free(merged);
}

/* One-way: whether a new source message passes the filters. */
bool tb_plan_mode_wants(const struct tb_plan_mode *mode, const struct tb_msg_info *m)
{
    if (mode->since && m->internaldate < mode->since)
        return false;
    if (mode->before && m->internaldate >= mode->before)
        return false;
    return !mode->max_size || m->size <= mode->max_size;
}

void tb_plan_compute(struct tb_plan *p, const struct tb_state_msg *pairs, size_t n_pairs,
                     struct tb_delta *delta[2], const uint32_t base_next[2],
                     const struct tb_state_intent *sus, size_t n_sus, struct tb_plan_skips *skips,
                     const struct tb_plan_mode *mode)
{
    memset(p, 0, sizeof(*p));
    uint32_t *paired[2];
    for (int k = 0; k < 2; k++) {
        sort_msgs(delta[k]);
        paired[k] = tb_xmalloc((n_pairs + 1) * sizeof(uint32_t));
        for (size_t i = 0; i < n_pairs; i++)
            paired[k][i] = pairs[i].uid[k];
        sort_uids(paired[k], n_pairs);
    }

    for (size_t i = 0; i < n_pairs; i++) {
        const struct tb_state_msg *pr = &pairs[i];
        const struct tb_msg_info *m[2];
        bool gone[2];
        for (int k = 0; k < 2; k++) {
            m[k] = find_msg(delta[k], pr->uid[k]);
            /* A full listing proves absence; a QRESYNC delta reports it as VANISHED. */
            gone[k] =
                delta[k]->full ? m[k] == NULL : tb_uidset_has(&delta[k]->vanished, pr->uid[k]);
        }
        if (gone[0] || gone[1]) {
            /* Expunge wins over a concurrent flag change. One-way: only onto the
             * destination, and only when mirroring. */
            for (int k = 0; k < 2; k++) {
                if (gone[k])
                    continue;
                if (!mode || (k != mode->source && mode->mirror))
                    expunge(p, k, pr->uid[k]);
                else if (k != mode->source)
                    p->kept++;
            }
            update(p, pr->uid[0], pr->uid[1], NULL, true);
            continue;
        }
        const char *f[2];
        if (mode) {
            for (int k = 0; k < 2; k++)
                f[k] = m[k] && m[k]->flags ? m[k]->flags : pr->flags;
            one_way_flags(p, mode, delta, pr, f);
            continue;
        }
        char *seen[2];
        for (int k = 0; k < 2; k++) {
            f[k] = m[k] && m[k]->flags ? m[k]->flags : pr->flags;
            seen[k] = kept_as_is(delta[k], f[k], pr->flags);
        }
        char *merged = tb_flags_merge(pr->flags, seen[0], seen[1]);
        if (!tb_flags_equal(seen[0], pr->flags) && !tb_flags_equal(seen[1], pr->flags) &&
            !tb_flags_equal(seen[0], seen[1]))
            p->conflicts++;
        for (int k = 0; k < 2; k++)
            converge_kept(p, delta[k], k, pr->uid[k], f[k], merged);
        if (!tb_flags_equal(merged, pr->flags))
            update(p, pr->uid[0], pr->uid[1], merged, false);
        free(merged);
        free(seen[0]);
        free(seen[1]);
    }

    /* New on each side: not paired, and at or above the recorded UIDNEXT. */
    const struct tb_msg_info **fresh[2];
    size_t n_fresh[2];
    for (int k = 0; k < 2; k++)
        fresh[k] = fresh_of(delta[k], k, paired[k], n_pairs, base_next[k], skips, &n_fresh[k]);
    struct sus_index sx;
    sus_index_init(&sx, sus, n_sus);
    /* Merge-join by identity: copies that already exist on both sides (first sync of two
     * non-empty accounts, or copies that arrived before a crash) are paired, not copied. */
    size_t i = 0, j = 0;
    for (int k = 0; k < 2; k++) {
        p->copies[k] = tb_xmalloc((n_fresh[1 - k] + 1) * sizeof(*p->copies[k]));
        p->n_copies[k] = 0;
    }
    while (i < n_fresh[0] || j < n_fresh[1]) {
        int c = i >= n_fresh[0]   ? 1
                : j >= n_fresh[1] ? -1
                                  : tb_msg_identity_cmp(fresh[0][i], fresh[1][j]);
        if (c == 0) {
            const struct tb_msg_info *a = fresh[0][i++], *b = fresh[1][j++];
            p->matched++;
            /* A crashed run's copy that arrived in time: found, and paired here. */
            long s0 = suspect(&sx, 0, a);
            resolve(p, &sx, s0 >= 0 ? s0 : suspect(&sx, 1, b));
            char *merged = tb_flags_merge("", a->flags, b->flags);
            for (int k = 0; k < 2; k++)
                if (!mode || k != mode->source)
                    converge_kept(p, delta[k], k, k ? b->uid : a->uid, k ? b->flags : a->flags,
                                  merged);
            update(p, a->uid, b->uid, merged, false);
            free(merged);
        } else {
            int k = c < 0 ? 0 : 1; /* the side holding the unmatched new message */
            const struct tb_msg_info *m = c < 0 ? fresh[0][i++] : fresh[1][j++];
            long s = suspect(&sx, k, m);
            if (s >= 0) {
                resolve(p, &sx, s);
                expunge(p, k, m->uid);
                p->late++;
            } else if (mode && k != mode->source) {
                /* one-way: the destination's own messages stay where they are */
            } else if (mode && !tb_plan_mode_wants(mode, m)) {
                p->filtered++;
            } else {
                p->copies[1 - k][p->n_copies[1 - k]++] = m;
            }
        }
    }
    sus_index_free(&sx);
    for (int k = 0; k < 2; k++) {
        free(fresh[k]);
        free(paired[k]);
        free(p->group_slot[k]);
        p->group_slot[k] = NULL;
        p->group_cap[k] = 0;
        for (size_t g = 0; g < p->n_groups[k]; g++)
            if (p->groups[k][g].n > 1)
                qsort(p->groups[k][g].uids, p->groups[k][g].n, sizeof(uint32_t), cmp_u32);
        if (p->n_expunge[k] > 1)
            qsort(p->expunge[k], p->n_expunge[k], sizeof(uint32_t), cmp_u32);
    }
}

bool tb_plan_has_writes(const struct tb_plan *p)
{
    for (int k = 0; k < 2; k++)
        if (p->n_copies[k] || p->n_groups[k] || p->n_expunge[k])
            return true;
    return false;
}

void tb_plan_free(struct tb_plan *p)
{
    for (int k = 0; k < 2; k++) {
        free(p->copies[k]);
        for (size_t g = 0; g < p->n_groups[k]; g++) {
            free(p->groups[k][g].flags);
            free(p->groups[k][g].uids);
        }
        free(p->groups[k]);
        free(p->group_slot[k]);
        free(p->expunge[k]);
    }
    for (size_t i = 0; i < p->n_updates; i++)
        free(p->updates[i].flags);
    free(p->updates);
    free(p->resolved);
    memset(p, 0, sizeof(*p));
}
