/* The lookups that replaced linear searches (issue 12: no quadratic step at 100,000
 * messages) against the linear searches they replaced, on adversarial inputs: the UID map,
 * a delta's merge of FETCHes (out of order, the same UID twice, a reordered delta), the
 * planner's suspect matching (the same identity many times, on both sides, none) and its
 * flag groups (one per message). Each reference below is the old code's semantics written
 * as plainly as possible. */
#include "store/store.h"
#include "sync/plan.h"
#include "util/uidmap.h"
#include "tap.h"

#include <stdlib.h>

/* A small deterministic generator (xorshift32): the same cases on every run. */
static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(uint32_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return n ? rnd_state % n : rnd_state;
}

/* ---- the UID map ---- */

static bool map_matches(const struct tb_uidmap *m, const uint32_t *keys, const size_t *vals,
                        size_t n, const uint32_t *probes, size_t n_probes)
{
    for (size_t p = 0; p < n_probes; p++) {
        bool want = false;
        size_t want_v = 0, got_v = 0;
        for (size_t i = 0; i < n; i++) /* last put wins */
            if (keys[i] == probes[p]) {
                want = true;
                want_v = vals[i];
            }
        bool got = tb_uidmap_get(m, probes[p], &got_v);
        if (got != want || (got && got_v != want_v))
            return false;
    }
    return true;
}

static void test_uidmap(void)
{
    struct tb_uidmap m;
    tb_uidmap_init(&m);
    size_t v = 7;
    CHECK(!tb_uidmap_get(&m, 0, &v) && !tb_uidmap_get(&m, 1, &v) && v == 7,
          "an empty map has nothing, 0 included");
    enum { N = 3000 };
    static uint32_t keys[N], probes[2 * N];
    static size_t vals[N];
    /* Edge keys, runs of neighbours, multiples of a large power of two (the same low
     * bits), and repeats that overwrite. */
    for (size_t i = 0; i < N; i++) {
        switch (i % 5) {
        case 0:
            keys[i] = (uint32_t)i;
            break;
        case 1:
            keys[i] = (uint32_t)(i % 64) << 26;
            break;
        case 2:
            keys[i] = UINT32_MAX - (uint32_t)(i % 10);
            break;
        case 3:
            keys[i] = rnd(0);
            break;
        default:
            keys[i] = keys[rnd((uint32_t)i)];
            break;
        }
        vals[i] = i * 3;
        tb_uidmap_put(&m, keys[i], vals[i]);
    }
    for (size_t i = 0; i < 2 * N; i++)
        probes[i] = i < N ? keys[i] : (i % 2 ? rnd(0) : (uint32_t)(i % 70) << 26 | 1);
    CHECK(map_matches(&m, keys, vals, N, probes, 2 * N),
          "3000 puts (0, 2^32-1, equal low bits, repeats): every lookup as a linear search");
    size_t distinct = 0;
    for (size_t i = 0; i < N; i++) {
        bool first = true;
        for (size_t j = 0; j < i && first; j++)
            first = keys[j] != keys[i];
        distinct += first;
    }
    CHECK(m.n == distinct, "one entry per distinct UID (%zu)", m.n);
    tb_uidmap_clear(&m);
    CHECK(m.n == 0 && !tb_uidmap_get(&m, keys[0], &v), "cleared: empty again");
    tb_uidmap_put(&m, 5, 0);
    CHECK(tb_uidmap_get(&m, 5, &v) && v == 0, "index 0 is a value like any other");
    tb_uidmap_free(&m);
}

/* ---- a delta's merge ---- */

static void info(struct tb_msg_info *m, uint32_t uid, uint32_t tag)
{
    memset(m, 0, sizeof(*m));
    m->uid = uid;
    char t[32];
    snprintf(t, sizeof(t), "f%u", tag);
    /* Some FETCHes carry flags only, some the rest only: the merge keeps what is absent. */
    if (tag % 3 != 1)
        m->flags = strdup(t);
    if (tag % 3 != 2) {
        snprintf(t, sizeof(t), "i%u", tag);
        m->ident = strdup(t);
        m->size = tag;
        m->internaldate = 1000 + tag;
        m->modseq = tag % 4 ? tag : 0;
    }
}

/* The old merge: a scan from the front unless the UID is above the last one. */
static void ref_merge(struct tb_delta *d, struct tb_msg_info *m)
{
    size_t from = d->n_msgs && m->uid > d->msgs[d->n_msgs - 1].uid ? d->n_msgs : 0;
    for (size_t i = from; i < d->n_msgs; i++) {
        if (d->msgs[i].uid != m->uid)
            continue;
        struct tb_msg_info *x = &d->msgs[i];
        if (m->flags) {
            free(x->flags);
            x->flags = m->flags;
            m->flags = NULL;
        }
        if (m->ident) {
            free(x->ident);
            x->ident = m->ident;
            m->ident = NULL;
        }
        if (m->size)
            x->size = m->size;
        if (m->internaldate)
            x->internaldate = m->internaldate;
        if (m->modseq)
            x->modseq = m->modseq;
        free(m->flags);
        free(m->ident);
        m->flags = m->ident = NULL;
        return;
    }
    d->msgs = realloc(d->msgs, (d->n_msgs + 1) * sizeof(*d->msgs));
    d->msgs[d->n_msgs++] = *m;
    d->cap_msgs = d->n_msgs;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_delta(const struct tb_delta *a, const struct tb_delta *b)
{
    if (a->n_msgs != b->n_msgs)
        return false;
    for (size_t i = 0; i < a->n_msgs; i++) {
        const struct tb_msg_info *x = &a->msgs[i], *y = &b->msgs[i];
        if (x->uid != y->uid || !str_eq(x->flags, y->flags) || !str_eq(x->ident, y->ident) ||
            x->size != y->size || x->internaldate != y->internaldate || x->modseq != y->modseq)
            return false;
    }
    return true;
}

/* Reverses a delta's records in place: a reordering that, unlike qsort, treats records of
 * the same UID the same way in both deltas. */
static void reverse(struct tb_delta *d)
{
    for (size_t i = 0, j = d->n_msgs; i + 1 < j; i++, j--) {
        struct tb_msg_info t = d->msgs[i];
        d->msgs[i] = d->msgs[j - 1];
        d->msgs[j - 1] = t;
    }
}

/* Feeds the same UID sequence to both merges; `reorder` > 0: after that many, both deltas'
 * records are reversed in place (as the planner sorts a delta it reads). */
static bool merge_case(const uint32_t *uids, size_t n, size_t reorder)
{
    struct tb_delta got = {0}, want = {0};
    for (size_t i = 0; i < n; i++) {
        if (reorder && i == reorder) {
            reverse(&got);
            reverse(&want);
        }
        struct tb_msg_info a, b;
        info(&a, uids[i], (uint32_t)i);
        info(&b, uids[i], (uint32_t)i);
        tb_delta_merge(&got, &a);
        ref_merge(&want, &b);
        if (a.flags || a.ident)
            return false; /* the merge takes the record's strings */
    }
    bool ok = same_delta(&got, &want);
    tb_delta_clear(&got);
    tb_delta_clear(&want);
    return ok;
}

static void test_delta_merge(void)
{
    enum { N = 2000 };
    static uint32_t u[N];
    CHECK(merge_case(u, 0, 0), "no FETCH: an empty delta");
    for (size_t i = 0; i < N; i++)
        u[i] = (uint32_t)(i + 1);
    CHECK(merge_case(u, N, 0), "ascending UIDs: appended in order");
    for (size_t i = 0; i < N; i++)
        u[i] = (uint32_t)(N - i);
    CHECK(merge_case(u, N, 0), "descending UIDs (every one below the last)");
    for (size_t i = 0; i < N; i++)
        u[i] = (uint32_t)(i < N / 2 ? i + 1 : i - N / 2 + 1);
    CHECK(merge_case(u, N, 0), "every UID twice: the SELECT's changes, then the FETCH");
    for (size_t i = 0; i < N; i++)
        u[i] = 1 + rnd(300);
    CHECK(merge_case(u, N, 0), "random UIDs from a small range: many repeats, any order");
    CHECK(merge_case(u, N, N / 3), "the same after the delta's records were reordered");
    for (size_t i = 0; i < N; i++)
        u[i] = i % 2 ? UINT32_MAX : 1 + rnd(5);
    CHECK(merge_case(u, N, 7), "the largest UID again and again, small ones in between");
}

/* ---- the planner's suspects ---- */

static bool has_msgid(const char *ident)
{
    return ident && strstr(ident, "Message-ID:") != NULL;
}

/* The old matching: the first suspect, front to back, of that side and identity that no
 * earlier resolution took. */
static long ref_suspect(const struct tb_state_intent *sus, size_t n, const bool *used, int side,
                        const struct tb_msg_info *m)
{
    for (size_t i = 0; i < n; i++)
        if (!used[i] && sus[i].side == side && (sus[i].size == m->size || has_msgid(m->ident)) &&
            sus[i].internaldate == m->internaldate &&
            strcmp(sus[i].ident, m->ident ? m->ident : "") == 0)
            return (long)i;
    return -1;
}

/* The planner's walk over the new messages (merge-join by identity), with ref_suspect:
 * the resolved suspects in order, and the late copies expunged per side. */
static void ref_plan(struct tb_delta *d[2], const struct tb_state_intent *sus, size_t n_sus,
                     size_t *resolved, size_t *n_resolved, size_t late[2])
{
    const struct tb_msg_info **f[2];
    bool *used = calloc(n_sus + 1, 1);
    *n_resolved = late[0] = late[1] = 0;
    for (int k = 0; k < 2; k++) {
        f[k] = malloc((d[k]->n_msgs + 1) * sizeof(*f[k]));
        for (size_t i = 0; i < d[k]->n_msgs; i++)
            f[k][i] = &d[k]->msgs[i];
        qsort(f[k], d[k]->n_msgs, sizeof(*f[k]), tb_msg_identity_sort);
    }
    size_t i = 0, j = 0;
    while (i < d[0]->n_msgs || j < d[1]->n_msgs) {
        int c = i >= d[0]->n_msgs   ? 1
                : j >= d[1]->n_msgs ? -1
                                    : tb_msg_identity_cmp(f[0][i], f[1][j]);
        long s;
        if (c == 0) {
            s = ref_suspect(sus, n_sus, used, 0, f[0][i++]);
            if (s < 0)
                s = ref_suspect(sus, n_sus, used, 1, f[1][j++]);
            else
                j++;
        } else {
            int k = c < 0 ? 0 : 1;
            s = ref_suspect(sus, n_sus, used, k, k ? f[1][j++] : f[0][i++]);
            late[k] += s >= 0;
        }
        if (s >= 0) {
            used[s] = true;
            resolved[(*n_resolved)++] = (size_t)s;
        }
    }
    free(f[0]);
    free(f[1]);
    free(used);
}

static const char *idents[] = {"Message-ID: <a@x> Subject: a", "Message-ID: <b@x> Subject: b",
                               "Subject: no id", "Subject: other", ""};

static void new_msg(struct tb_delta *d, uint32_t uid, const char *ident, uint32_t size,
                    int64_t date)
{
    d->msgs = realloc(d->msgs, (d->n_msgs + 1) * sizeof(*d->msgs));
    struct tb_msg_info *m = &d->msgs[d->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->uid = uid;
    m->flags = strdup("");
    m->ident = strdup(ident);
    m->size = size;
    m->internaldate = date;
    d->cap_msgs = d->n_msgs;
}

/* One planner case against the reference; every message is new (no base). */
static bool suspect_case(struct tb_delta *d[2], const struct tb_state_intent *sus, size_t n_sus)
{
    size_t *want = malloc((n_sus + 1) * sizeof(size_t)), n_want, late[2];
    ref_plan(d, sus, n_sus, want, &n_want, late);
    uint32_t next[2] = {0, 0};
    struct tb_plan p;
    tb_plan_compute(&p, NULL, 0, d, next, sus, n_sus, NULL, NULL);
    bool ok = p.n_resolved == n_want && p.late == late[0] + late[1] && p.n_expunge[0] == late[0] &&
              p.n_expunge[1] == late[1];
    for (size_t i = 0; ok && i < n_want; i++)
        ok = p.resolved[i] == want[i];
    tb_plan_free(&p);
    free(want);
    return ok;
}

static void free_delta(struct tb_delta *d)
{
    tb_delta_clear(d);
}

static void test_suspects(void)
{
    struct tb_delta a = {0}, b = {0};
    struct tb_delta *d[2] = {&a, &b};
    CHECK(suspect_case(d, NULL, 0), "nothing new, no suspects");

    /* 300 copies of one message on a, 100 on b; 250 suspects of it, most to a, some to b,
     * some of another size (no Message-ID: the size counts). */
    enum { NS = 250 };
    static struct tb_state_intent sus[NS];
    for (uint32_t u = 1; u <= 300; u++)
        new_msg(&a, u, idents[2], 100, 1000);
    for (uint32_t u = 1; u <= 100; u++)
        new_msg(&b, u, idents[2], 100, 1000);
    for (size_t i = 0; i < NS; i++)
        sus[i] = (struct tb_state_intent){.side = i % 5 == 4,
                                          .ident = (char *)idents[2],
                                          .size = i % 7 == 3 ? 101 : 100,
                                          .internaldate = 1000};
    CHECK(suspect_case(d, sus, NS),
          "one identity 400 times, 250 suspects on both sides: resolved in the same order");
    CHECK(suspect_case(d, NULL, 0), "the same messages without suspects");
    free_delta(&a);
    free_delta(&b);

    /* Random small worlds: few identities, dates and sizes, many collisions. */
    bool all = true;
    for (int t = 0; t < 400 && all; t++) {
        size_t na = rnd(30), nb = rnd(30), ns = rnd(40);
        for (size_t i = 0; i < na; i++)
            new_msg(&a, (uint32_t)(i + 1), idents[rnd(5)], 100 + rnd(2), 1000 + rnd(2));
        for (size_t i = 0; i < nb; i++)
            new_msg(&b, (uint32_t)(i + 1), idents[rnd(5)], 100 + rnd(2), 1000 + rnd(2));
        for (size_t i = 0; i < ns; i++)
            sus[i] = (struct tb_state_intent){.side = (int)rnd(2),
                                              .ident = (char *)idents[rnd(5)],
                                              .size = 100 + rnd(2),
                                              .internaldate = 1000 + rnd(2)};
        all = suspect_case(d, sus, ns);
        if (!all)
            printf("# case %d: %zu on a, %zu on b, %zu suspects\n", t, na, nb, ns);
        free_delta(&a);
        free_delta(&b);
    }
    CHECK(all, "400 random cases (5 identities, with and without Message-ID): as the scan");
}

/* ---- flag groups ---- */

static void test_groups(void)
{
    /* 3000 pairs, each getting a keyword of its own on b, every third the same one: one
     * group per distinct keyword, in the order of first use, each UID in its own. */
    enum { N = 3000 };
    static struct tb_state_msg pairs[N];
    struct tb_delta a = {0}, b = {0};
    struct tb_delta *d[2] = {&a, &b};
    char kw[32];
    for (size_t i = 0; i < N; i++) {
        pairs[i] = (struct tb_state_msg){{(uint32_t)i + 1, (uint32_t)i + 1}, strdup("")};
        snprintf(kw, sizeof(kw), "$k%zu", i % 3 ? i : 0);
        new_msg(&a, (uint32_t)i + 1, "", 100, 1000);
        free(a.msgs[i].flags);
        a.msgs[i].flags = strdup(kw);
        free(a.msgs[i].ident);
        a.msgs[i].ident = NULL;
    }
    a.full = b.full = false;
    uint32_t next[2] = {N + 1, N + 1};
    struct tb_plan p;
    tb_plan_compute(&p, pairs, N, d, next, NULL, 0, NULL, NULL);
    bool ok = p.n_groups[1] == N - (N / 3 - 1) && p.n_groups[0] == 0;
    for (size_t g = 0; ok && g < p.n_groups[1]; g++) {
        const struct tb_flag_group *x = &p.groups[1][g];
        /* the first group is $k0 (UIDs 1, 4, 7, ...); then $k1, $k2, $k4, $k5, ... */
        size_t first = g == 0 ? 0 : g + (g - 1) / 2;
        snprintf(kw, sizeof(kw), "$k%zu", g == 0 ? (size_t)0 : first);
        ok = x->op == '+' && strcmp(x->flags, kw) == 0 &&
             (g == 0 ? x->n == N / 3 && x->uids[0] == 1 && x->uids[x->n - 1] == N - 2
                     : x->n == 1 && x->uids[0] == first + 1);
        if (!ok)
            printf("# group %zu: %c %s, %zu UIDs, first %u\n", g, x->op, x->flags, x->n,
                   x->uids[0]);
    }
    CHECK(ok, "%zu groups for %d keywords: first-use order, every UID in its keyword's group",
          p.n_groups[1], N);
    CHECK(p.n_updates == N, "every pair's base updated once (%zu)", p.n_updates);
    tb_plan_free(&p);
    for (size_t i = 0; i < N; i++)
        free(pairs[i].flags);
    free_delta(&a);
    free_delta(&b);
}

int main(void)
{
    test_uidmap();
    test_delta_merge();
    test_suspects();
    test_groups();
    return tap_done();
}
