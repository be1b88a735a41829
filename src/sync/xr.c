#include "sync/xr.h"

#include "protocol/xrep.h"
#include "util/flags.h"
#include "sync/names.h"
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

/* Index of the first event of that kind whose (old) name is `canon`, or -1. */
static long find_event(const struct tb_xrep_reply *r, const struct tb_ns *ns, int event,
                       const char *canon)
{
    for (size_t i = 0; i < r->n_ev; i++) {
        if (r->ev[i].event != event)
            continue;
        char *a = tb_name_canon(r->ev[i].name, ns);
        bool hit = strcmp(a, canon) == 0;
        free(a);
        if (hit)
            return (long)i;
    }
    return -1;
}

bool tb_xr_event(const struct tb_xrep_reply *r, const struct tb_ns *ns, int event,
                 const char *canon)
{
    return find_event(r, ns, event, canon) >= 0;
}

char *tb_xr_renamed_to(const struct tb_xrep_reply *r, const struct tb_ns *ns, const char *canon)
{
    long i = find_event(r, ns, TB_XREP_RENAMED, canon);
    return i >= 0 && r->ev[i].new_name ? tb_name_canon(r->ev[i].new_name, ns) : NULL;
}

/* Pairs are sorted by uid a; side b looks up through an index sorted by uid b. */
static _Thread_local const struct tb_state_msg *g_pairs;

static int cmp_by_b(const void *x, const void *y)
{
    uint32_t a = g_pairs[*(const size_t *)x].uid[1], b = g_pairs[*(const size_t *)y].uid[1];
    return a < b ? -1 : a > b;
}

static uint32_t uid_at(const struct tb_state_msg *pairs, const size_t *by_b, int side, size_t i)
{
    return side ? pairs[by_b[i]].uid[1] : pairs[i].uid[0];
}

/* Index of the first pair whose UID on `side` is >= uid. */
static size_t lower_bound(const struct tb_state_msg *pairs, const size_t *by_b, size_t n, int side,
                          uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (uid_at(pairs, by_b, side, mid) < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void add_changed(struct tb_delta *out, const struct tb_state_msg *pm,
                        const struct tb_xrep_flagchg *f, uint32_t uid)
{
    char *kept = tb_flags_minus(pm->flags, f->remove);
    struct tb_buf b;
    tb_buf_init(&b);
    tb_buf_printf(&b, "%s %s", kept, f->add);
    free(kept);
    if (out->n_msgs == out->cap_msgs) {
        out->cap_msgs = out->cap_msgs ? out->cap_msgs * 2 : 64;
        out->msgs = tb_xrealloc(out->msgs, out->cap_msgs * sizeof(*out->msgs));
    }
    struct tb_msg_info *m = &out->msgs[out->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->uid = uid;
    m->modseq = f->modseq;
    m->flags = tb_flags_canon(tb_buf_cstr(&b));
    tb_buf_free(&b);
}

/* The changed messages of one FLAGS line: every UID of its set must be a recorded pair
 * (or expunged in the same report); false otherwise. Work is bounded by the pairs, never
 * by the size of the set the server sent. */
static bool apply_line(const struct tb_xrep_section *sec, const struct tb_xrep_flagchg *f, int side,
                       const struct tb_state_msg *pairs, const size_t *by_b, size_t n_pairs,
                       struct tb_delta *out)
{
    struct tb_uidset *ex = (struct tb_uidset *)&sec->expunged; /* normalizes lazily */
    for (size_t r = 0; r < f->uids.n; r++) {
        const struct tb_uidrange *rg = &f->uids.r[r];
        size_t i = lower_bound(pairs, by_b, n_pairs, side, rg->lo);
        uint64_t covered = 0;
        for (; i < n_pairs && uid_at(pairs, by_b, side, i) <= rg->hi; i++) {
            uint32_t uid = uid_at(pairs, by_b, side, i);
            if (tb_uidset_has(ex, uid))
                continue; /* gone: its last flags do not matter (counted below) */
            covered++;
            add_changed(out, side ? &pairs[by_b[i]] : &pairs[i], f, uid);
        }
        /* UIDs of the range that are no pair must all be expunged: count them. */
        uint64_t span = (uint64_t)rg->hi - rg->lo + 1;
        if (covered < span) {
            tb_uidset_normalize(ex);
            size_t lo = 0, hi = ex->n; /* first expunged range ending at or after rg->lo */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (ex->r[mid].hi < rg->lo)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            uint64_t in_ex = 0;
            for (size_t e = lo; e < ex->n && ex->r[e].lo <= rg->hi; e++) {
                uint32_t a = ex->r[e].lo > rg->lo ? ex->r[e].lo : rg->lo;
                uint32_t b = ex->r[e].hi < rg->hi ? ex->r[e].hi : rg->hi;
                in_ex += (uint64_t)b - a + 1;
            }
            /* Live pairs plus expunged UIDs must cover the range: any other UID is one the
             * state does not know, and the delta cannot be applied. */
            if (covered + in_ex < span)
                return false;
        }
    }
    return true;
}

bool tb_xr_delta(const struct tb_xrep_section *sec, int side, const struct tb_state_msg *pairs,
                 size_t n_pairs, struct tb_delta *out)
{
    memset(out, 0, sizeof(*out));
    if (!sec->closed || sec->resync || !tb_uidset_empty(&sec->appended))
        return false;
    size_t *by_b = NULL;
    if (side == 1 && sec->n_flags && n_pairs) {
        by_b = tb_xcalloc(n_pairs, sizeof(size_t));
        for (size_t i = 0; i < n_pairs; i++)
            by_b[i] = i;
        g_pairs = pairs; /* per thread; qsort has no context argument */
        qsort(by_b, n_pairs, sizeof(size_t), cmp_by_b);
    }
    out->uidvalidity = sec->uidvalidity;
    out->uidnext = sec->uidnext;
    out->highestmodseq = sec->highestmodseq;
    /* One FLAGS line per UID (man/twinbox-xreplicate.7): a UID in two lines would give the
     * plan two records for one message. */
    struct tb_uidset all;
    tb_uidset_init(&all);
    uint64_t sum = 0;
    for (size_t i = 0; i < sec->n_flags; i++) {
        struct tb_uidset *u = (struct tb_uidset *)&sec->flags[i].uids;
        tb_uidset_add_set(&all, u);
        sum += tb_uidset_count(u);
    }
    bool ok = tb_uidset_count(&all) == sum;
    tb_uidset_free(&all);
    for (size_t i = 0; i < sec->n_flags && ok; i++)
        ok = apply_line(sec, &sec->flags[i], side, pairs, by_b, n_pairs, out);
    free(by_b);
    if (!ok) {
        tb_delta_clear(out);
        return false;
    }
    tb_uidset_add_set(&out->vanished, &sec->expunged);
    return true;
}

char *tb_xr_resync_summary(const struct tb_xrep_reply *r)
{
    struct tb_buf b;
    tb_buf_init(&b);
    size_t n = 0;
    for (size_t i = 0; i < r->n_sec; i++) {
        const struct tb_xrep_section *s = &r->sec[i];
        if (!s->resync || !s->closed)
            continue; /* unreadable (no STATUS): the survey reports each one */
        if (n < 5)
            tb_buf_printf(&b, "%s%s %s", n ? ", " : "", s->name ? s->name : s->guid, s->resync);
        n++;
    }
    if (!n) {
        tb_buf_free(&b);
        return NULL;
    }
    if (n > 5)
        tb_buf_printf(&b, " and %zu more", n - 5);
    char *line = tb_xstrdup(tb_buf_cstr(&b));
    tb_buf_free(&b);
    return line;
}
